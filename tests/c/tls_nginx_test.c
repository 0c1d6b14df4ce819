/* HTTPS against a real nginx (started by tests/nginx/tls_nginx.sh with a certificate from a
 * CA generated for the run): tls_nginx_test BASE_URL CA_FILE CERT_FILE KEY_FILE
 * Checks, from C: the CA-file and CA-PEM options make the certificate trusted; keep-alive over
 * TLS uses one handshake; lease timeout 0 resumes sessions; without the CA (system roots only,
 * or none) the certificate is rejected with SP_E_TLS_UNKNOWN_ISSUER; the host-name check
 * applies; the minimum TLS version, the client certificate and the validation callback; the
 * read-only facts (the certificate's DER, and per response the TLS version, cipher suite and
 * resumption, as nginx reports them at /tls). */
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

/* Decodes the first PEM certificate of `pem` into `out` (DER); returns its length, 0 on error. */
static size_t pem_to_der(const char *pem, uint8_t *out, size_t cap) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *begin = strstr(pem, "-----BEGIN CERTIFICATE-----");
    const char *end = begin ? strstr(begin, "-----END CERTIFICATE-----") : NULL;
    if (!begin || !end) return 0;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (const char *c = begin + strlen("-----BEGIN CERTIFICATE-----"); c < end; c++) {
        const char *pos = *c ? strchr(alphabet, *c) : NULL;
        if (!pos) continue; /* line breaks, '=' padding */
        acc = (acc << 6) | (uint32_t)(pos - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap) return 0;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

/* GETs url and reads what nginx negotiated ("$ssl_protocol $ssl_cipher $ssl_session_reused")
 * into `nginx`, and the response's TLS facts. */
static sp_result get_tls(sp_manager *m, const char *url, char *nginx, size_t cap,
                         int32_t *version, char *suite, size_t suite_cap, int32_t *resumed) {
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    const uint8_t *data = NULL;
    const char *name = NULL;
    size_t len = 0;
    nginx[0] = suite[0] = 0;
    sp_result rc = sp_http_request_new("GET", url, &req);
    if (rc == SP_OK) rc = sp_request(m, req, &resp);
    if (rc == SP_OK) rc = sp_response_read_all(resp, &data, &len);
    if (rc == SP_OK) snprintf(nginx, cap, "%.*s", (int)len, (const char *)data);
    if (rc == SP_OK) rc = sp_response_tls_version(resp, version);
    if (rc == SP_OK) rc = sp_response_tls_resumed(resp, resumed);
    if (rc == SP_OK) rc = sp_response_tls_cipher_suite(resp, &name);
    if (rc == SP_OK) snprintf(suite, suite_cap, "%s", name);
    sp_response_free(resp);
    sp_http_request_free(req);
    return rc;
}

/* The client's TLS facts agree with nginx's "$ssl_protocol $ssl_cipher $ssl_session_reused". */
static int same_session(const char *nginx, int32_t version, const char *suite, int32_t resumed) {
    char protocol[32], cipher[128], reused[8];
    if (sscanf(nginx, "%31s %127s %7s", protocol, cipher, reused) != 3) return 0;
    int want_version = strcmp(protocol, "TLSv1.3") == 0   ? SP_TLS_1_3
                       : strcmp(protocol, "TLSv1.2") == 0 ? SP_TLS_1_2
                                                          : -1;
    /* OpenSSL names TLS 1.3 suites as IANA does; its TLS 1.2 names are its own. */
    int same_suite = version == SP_TLS_1_3 ? strcmp(cipher, suite) == 0
                                           : strncmp(suite, "TLS_ECDHE_", 10) == 0;
    return version == want_version && same_suite && resumed == (strcmp(reused, "r") == 0);
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

    /* The read-only facts, compared with what nginx negotiated and the certificate it serves. */
    {
        char tls_url[512], nginx[256], suite[128];
        int32_t version = 0, resumed = -1;
        snprintf(tls_url, sizeof tls_url, "%s/tls", argv[1]);
        sp_manager *fm = NULL;
        sp_point *fp = NULL;
        const char *name = NULL;
        size_t der_len = 0, pem_len = 0;
        CHECK(sp_manager_new(&fm) == SP_OK);
        CHECK(sp_manager_add_ca_file(fm, argv[2]) == SP_OK);
        CHECK(sp_find(fm, tls_url, &fp) == SP_OK);
        CHECK(sp_get_connection_name(fp, &name) == SP_OK && strcmp(name, "https") == 0);
        CHECK(sp_get_certificate(fp, NULL, 0, &der_len) == SP_E_NOT_FOUND);
        CHECK(get_tls(fm, tls_url, nginx, sizeof nginx, &version, suite, sizeof suite,
                      &resumed) == SP_OK);
        printf("nginx negotiated \"%s\"; the response says TLS %d, %s, resumed %d\n", nginx,
               (int)version, suite, (int)resumed);
        CHECK(same_session(nginx, version, suite, resumed) && resumed == 0);
        /* The certificate: its DER is the PEM nginx serves, decoded. */
        char *pem = slurp(argv[3], &pem_len);
        uint8_t want[8192], got[8192];
        size_t want_len = pem ? pem_to_der(pem, want, sizeof want) : 0;
        CHECK(want_len > 0);
        CHECK(sp_get_certificate(fp, NULL, 0, &der_len) == SP_OK && der_len == want_len);
        CHECK(sp_get_certificate(fp, got, sizeof got, &der_len) == SP_OK);
        CHECK(der_len == want_len && memcmp(got, want, want_len) == 0);
        free(pem);
        /* New connections resume the session: both sides say so. */
        CHECK(sp_set_lease_timeout(fp, 0) == SP_OK);
        for (int i = 0; i < 2; i++) {
            CHECK(get_tls(fm, tls_url, nginx, sizeof nginx, &version, suite, sizeof suite,
                          &resumed) == SP_OK);
            CHECK(same_session(nginx, version, suite, resumed) && resumed == 1);
        }
        int32_t protocol = 0;
        CHECK(sp_get_protocol_version(fp, &protocol) == SP_OK && protocol == 11);
        sp_point_free(fp);
        sp_manager_free(fm);
    }

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
