/* HTTPS against a real nginx (started by tests/nginx/tls_nginx.sh with a certificate from a
 * CA generated for the run): tls_nginx_test BASE_URL CA_FILE CERT_FILE KEY_FILE
 * Checks, from C: the CA-file and CA-PEM options make the certificate trusted; keep-alive over
 * TLS uses one handshake; lease timeout 0 resumes sessions; without the CA (system roots only,
 * or none) the certificate is rejected with SP_E_TLS_UNKNOWN_ISSUER; the host-name check
 * applies; the minimum TLS version, the client certificate and the validation callback. */
#include <servicepoint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
#define CHECK(expr)                                                                    \
    do {                                                                               \
        if (expr) {                                                                    \
            passed++;                                                                  \
        } else {                                                                       \
            failed++;                                                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__,     \
                    __LINE__, #expr, sp_last_error());                                 \
        }                                                                              \
    } while (0)

/* GETs url through m; returns the sp_result and the body length in *len. */
static sp_result get(sp_manager *m, const char *url, size_t *len) {
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    const uint8_t *data = NULL;
    *len = 0;
    sp_result rc = sp_http_request_new("GET", url, &req);
    if (rc == SP_OK) rc = sp_request(m, req, &resp);
    if (rc == SP_OK) rc = sp_response_read_all(resp, &data, len);
    sp_response_free(resp);
    sp_http_request_free(req);
    return rc;
}

/* Reads a whole (small) file; NULL on error. The caller frees it. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(65536);
    *len = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf) buf[*len] = 0;
    return buf;
}

static uint64_t get_stats_resumed(const sp_point *p) {
    sp_statistics st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    return sp_get_statistics(p, &st) == SP_OK ? st.tls_resumed_handshakes : 0;
}

typedef struct {
    int calls;
    int accept;
    int saw_localhost;
    int32_t builtin;
    size_t count;
} validator_log;

static int32_t validator(void *userdata, const char *host, const uint8_t *const *certs,
                         const size_t *cert_lens, size_t count, int32_t builtin_result) {
    validator_log *log = userdata;
    log->calls++;
    log->saw_localhost = strcmp(host, "localhost") == 0;
    log->builtin = builtin_result;
    log->count = count;
    /* The end-entity certificate is DER: a SEQUENCE (0x30). */
    if (count == 0 || cert_lens[0] < 2 || certs[0][0] != 0x30) return 0;
    return log->accept;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: tls_nginx_test BASE_URL CA_FILE CERT_FILE KEY_FILE\n");
        return 2;
    }
    char url[512];
    snprintf(url, sizeof url, "%s/index.html", argv[1]);
    size_t len = 0;

    /* Trusted through the CA file. */
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_statistics st;
    CHECK(sp_manager_new(&m) == SP_OK);
    CHECK(sp_manager_add_ca_file(m, argv[2]) == SP_OK);
    CHECK(sp_manager_add_ca_file(m, "/nonexistent/ca.pem") == SP_E_INVALID_ARGUMENT);
    CHECK(sp_find(m, url, &p) == SP_OK);
    for (int i = 0; i < 20; i++) CHECK(get(m, url, &len) == SP_OK && len > 0);
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK(sp_get_statistics(p, &st) == SP_OK);
    CHECK(st.connections_opened == 1 && st.tls_full_handshakes == 1 && st.requests == 20);
    /* Lease 0: a new connection per request, resuming the session nginx issued. */
    CHECK(sp_set_lease_timeout(p, 0) == SP_OK);
    for (int i = 0; i < 5; i++) CHECK(get(m, url, &len) == SP_OK);
    CHECK(sp_get_statistics(p, &st) == SP_OK);
    CHECK(st.connections_opened == 6);
    CHECK(st.tls_resumed_handshakes >= 4);
    printf("nginx over TLS: %llu full and %llu resumed handshakes for %llu requests\n",
           (unsigned long long)st.tls_full_handshakes, (unsigned long long)st.tls_resumed_handshakes,
           (unsigned long long)st.requests);
    sp_point_free(p);
    sp_manager_free(m);

    /* Not trusted: the CA is unknown to the system's store and to an empty one. */
    for (int system_roots = 1; system_roots >= 0; system_roots--) {
        sp_manager *bare = NULL;
        CHECK(sp_manager_new(&bare) == SP_OK);
        CHECK(sp_manager_set_system_roots(bare, system_roots) == SP_OK);
        CHECK(get(bare, url, &len) == SP_E_TLS_UNKNOWN_ISSUER);
        CHECK(strstr(sp_last_error(), "unknown authority") != NULL);
        sp_manager_free(bare);
    }

    /* The certificate names localhost and 127.0.0.1, not 127.0.0.2 (same server, loopback). */
    const char *port = strrchr(argv[1], ':');
    if (port) {
        char other[512];
        snprintf(other, sizeof other, "https://127.0.0.2%s/index.html", port);
        sp_manager *m2 = NULL;
        CHECK(sp_manager_new(&m2) == SP_OK);
        CHECK(sp_manager_add_ca_file(m2, argv[2]) == SP_OK);
        sp_result rc = get(m2, other, &len);
        /* nginx listens on 127.0.0.1 only, so 127.0.0.2 may refuse the connection instead. */
        CHECK(rc == SP_E_TLS_HOSTNAME_MISMATCH || rc == SP_E_CONNECT);
        sp_manager_free(m2);
    }

    /* The CA as PEM bytes; the minimum TLS version. */
    size_t ca_len = 0, cert_len = 0, key_len = 0;
    char *ca = slurp(argv[2], &ca_len), *cert = slurp(argv[3], &cert_len), *key = slurp(argv[4], &key_len);
    CHECK(ca && cert && key);
    if (ca && cert && key) {
        sp_manager *pem = NULL;
        CHECK(sp_manager_new(&pem) == SP_OK);
        CHECK(sp_manager_add_ca_pem(pem, (const uint8_t *)"junk", 4) == SP_E_INVALID_ARGUMENT);
        CHECK(sp_manager_add_ca_pem(pem, NULL, 4) == SP_E_NULL_POINTER);
        CHECK(sp_manager_add_ca_pem(pem, (const uint8_t *)ca, ca_len) == SP_OK);
        CHECK(sp_manager_set_system_roots(pem, 0) == SP_OK);
        CHECK(sp_manager_set_min_tls_version(pem, 11) == SP_E_OUT_OF_RANGE);
        CHECK(sp_manager_set_min_tls_version(pem, SP_TLS_1_3) == SP_OK);
        CHECK(get(pem, url, &len) == SP_OK && len > 0);
        /* A client certificate: bad PEM refused; a certificate with its key accepted (nginx
         * does not ask for one here, so the request goes on as before). */
        CHECK(sp_manager_set_client_certificate(pem, (const uint8_t *)"x", 1, (const uint8_t *)key,
                                                key_len) == SP_E_INVALID_ARGUMENT);
        CHECK(sp_manager_set_client_certificate(pem, (const uint8_t *)cert, cert_len,
                                                (const uint8_t *)key, key_len) == SP_OK);
        sp_point *pp = NULL;
        CHECK(sp_find(pem, url, &pp) == SP_OK && sp_set_lease_timeout(pp, 0) == SP_OK);
        CHECK(get(pem, url, &len) == SP_OK && len > 0);
        sp_point_free(pp);
        sp_manager_free(pem);
    }
    free(ca);
    free(cert);
    free(key);

    /* The validation callback: sees the host, the DER chain and the built-in verdict (the CA
     * is not trusted here), and decides; NULL removes it. */
    validator_log log = {0, 1, 0, 0, 0};
    sp_manager *cb = NULL;
    sp_point *cp = NULL;
    CHECK(sp_manager_new(&cb) == SP_OK);
    CHECK(sp_manager_set_system_roots(cb, 0) == SP_OK);
    CHECK(sp_find(cb, url, &cp) == SP_OK && sp_set_lease_timeout(cp, 0) == SP_OK);
    CHECK(sp_manager_set_certificate_validator(cb, validator, &log) == SP_OK);
    CHECK(get(cb, url, &len) == SP_OK && len > 0);
    CHECK(log.calls == 1 && log.saw_localhost && log.count >= 1);
    CHECK(log.builtin == SP_E_TLS_UNKNOWN_ISSUER);
    /* A new connection resumes the session the callback accepted: no new verification. */
    log.accept = 0;
    CHECK(get(cb, url, &len) == SP_OK);
    CHECK(log.calls == 1);
    CHECK(get_stats_resumed(cp) >= 1);
    /* Installing a validator again starts a fresh session cache: it decides again. */
    CHECK(sp_manager_set_certificate_validator(cb, validator, &log) == SP_OK);
    CHECK(get(cb, url, &len) == SP_E_TLS_CERTIFICATE);
    CHECK(log.calls == 2);
    CHECK(sp_manager_set_certificate_validator(cb, NULL, NULL) == SP_OK);
    CHECK(get(cb, url, &len) == SP_E_TLS_UNKNOWN_ISSUER);
    CHECK(log.calls == 2);
    sp_point_free(cp);
    sp_manager_free(cb);

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
