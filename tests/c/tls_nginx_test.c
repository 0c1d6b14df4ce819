/* HTTPS against a real nginx (started by tests/nginx/tls_nginx.sh with a certificate from a
 * CA generated for the run): tls_nginx_test BASE_URL CA_FILE
 * Checks, from C: the CA-file option makes the certificate trusted; keep-alive over TLS uses
 * one handshake; lease timeout 0 resumes sessions; without the CA (system roots only, or none)
 * the certificate is rejected with SP_E_TLS_UNKNOWN_ISSUER; the host-name check applies. */
#include <servicepoint.h>
#include <stdio.h>
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

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: tls_nginx_test BASE_URL CA_FILE\n");
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

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
