/*
 * test_response.c: the servicepoint C ABI tested from C, against include/servicepoint.h only;
 * reading responses: headers and their getters (and request header
 * validation), small reads of a 1 MB body, chunked bodies with trailers, a response freed
 * twice, no TLS facts on a plain http response.
 *
 * Run all: ./test_response; one test: ./test_response NAME; --list for the names.
 * Exit status: 0 if every CHECK passed, 1 otherwise (2: bad arguments).
 */
#include "test_support.h"

/* sp_response_read in 7-byte pieces reassembles a 1 MB body byte for byte. */
static void test_small_reads(void) {
    enum { N = 1000000 };
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/big?n=1000000");
    uint8_t *got = xmalloc(N + 16);

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    const char *cl = NULL;
    CHECK_OK(sp_response_header(resp, "Content-Length", &cl));
    CHECK(cl && strcmp(cl, "1000000") == 0);

    size_t total = 0;
    long reads = 0;
    sp_result rc = SP_OK;
    /* Bounded: a correct library ends after N/1 reads at most. */
    while (reads <= N) {
        uint8_t piece[7];
        size_t n = 99;
        rc = sp_response_read(resp, piece, sizeof piece, &n);
        if (rc != SP_OK || n == 0) break;
        if (n > sizeof piece || total + n > N + 16) {
            rc = SP_E_PROTOCOL; /* the library wrote more than asked: fail below */
            break;
        }
        memcpy(got + total, piece, n);
        total += n;
        reads++;
    }
    CHECK_OK(rc);
    CHECK(total == N);
    int same = total == N;
    for (size_t i = 0; same && i < N; i++) same = got[i] == (uint8_t)lb_big_byte(i);
    CHECK(same);
    printf("  %zu bytes in %ld reads, byte-exact: %s\n", total, reads, same ? "yes" : "NO");

    /* After the end, reading again keeps saying "end". */
    size_t n = 99;
    uint8_t b[7];
    CHECK_OK(sp_response_read(resp, b, sizeof b, &n));
    CHECK(n == 0);

cleanup:
    free(got);
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

static void test_chunked(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/chunked");

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    const char *te = NULL;
    CHECK_OK(sp_response_header(resp, "transfer-encoding", &te));
    CHECK(te && strcmp(te, "chunked") == 0);
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(sp_response_read_all(resp, &data, &len));
    CHECK(len == strlen(LB_CHUNKED_BODY) && data &&
          memcmp(data, LB_CHUNKED_BODY, len) == 0);
    const char *trailer = NULL;
    CHECK_OK(sp_response_trailer(resp, "x-trailer", &trailer));
    CHECK(trailer && strcmp(trailer, "done") == 0);
    CHECK_RC(sp_response_trailer(resp, "X-Missing", &trailer), SP_E_NOT_FOUND);
    sp_response_free(resp);
    resp = NULL;

    /* The chunked response left the connection reusable. */
    fetched f;
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.reused == 1 && body_is(&f, LB_CHUNKED_BODY));
    fetched_free(&f);
    CHECK(lb_connections(srv) == 1);

cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

static void test_headers(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    CHECK_OK(sp_http_request_add_header(req, "X-Test", "1"));
    CHECK_OK(sp_http_request_add_header(req, "Accept", "text/plain"));
    CHECK_RC(sp_http_request_add_header(req, "Bad Name", "x"), SP_E_INVALID_ARGUMENT);
    CHECK_RC(sp_http_request_add_header(req, "X-Evil", "a\r\nInjected: 1"),
             SP_E_INVALID_ARGUMENT);
    CHECK_RC(sp_http_request_add_header(req, "Content-Length", "5"), SP_E_INVALID_ARGUMENT);
    CHECK_RC(sp_http_request_add_header(req, "Transfer-Encoding", "chunked"),
             SP_E_INVALID_ARGUMENT);
    CHECK_RC(sp_http_request_add_header(req, NULL, "x"), SP_E_NULL_POINTER);
    REQUIRE_OK(sp_request(m, req, &resp));

    int32_t version = 0;
    CHECK_OK(sp_response_http_version(resp, &version));
    CHECK(version == 11);
    const char *reason = NULL;
    CHECK_OK(sp_response_reason(resp, &reason));
    CHECK(reason && strcmp(reason, "OK") == 0);

    const char *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(sp_response_header(resp, "Content-Length", &a));
    CHECK_OK(sp_response_header(resp, "content-length", &b));
    CHECK_OK(sp_response_header(resp, "CONTENT-LENGTH", &c));
    CHECK(a && b && c && strcmp(a, "14") == 0 && strcmp(b, "14") == 0 && strcmp(c, "14") == 0);
    const char *missing = (const char *)"sentinel";
    CHECK_RC(sp_response_header(resp, "X-Not-There", &missing), SP_E_NOT_FOUND);
    CHECK(strcmp(missing, "sentinel") == 0);
    CHECK(strstr(sp_last_error(), "X-Not-There") != NULL);

    size_t count = 0;
    CHECK_OK(sp_response_header_count(resp, &count));
    CHECK(count == 3); /* Server, Content-Type, Content-Length as the server sends them */
    const char *name = NULL, *value = NULL;
    CHECK_OK(sp_response_header_at(resp, 0, &name, &value));
    CHECK(name && value && strcmp(name, "Server") == 0 && strcmp(value, "lb-loopback") == 0);
    CHECK_RC(sp_response_header_at(resp, count, &name, &value), SP_E_OUT_OF_RANGE);
    CHECK_RC(sp_response_header(resp, NULL, &value), SP_E_NULL_POINTER);
    CHECK_RC(sp_response_header(resp, "Server", NULL), SP_E_NULL_POINTER);

cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

/* A response freed twice (and used after free) is an error, never a crash. */
static void test_response_double_free(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    sp_response_free(resp);
    sp_response_free(resp);
    int32_t status = 0;
    CHECK_RC(sp_response_status(resp, &status), SP_E_INVALID_HANDLE);
    uint8_t buf[4];
    size_t n = 0;
    CHECK_RC(sp_response_read(resp, buf, sizeof buf, &n), SP_E_INVALID_HANDLE);
    resp = NULL;
    /* The request description is reusable. */
    REQUIRE_OK(sp_request(m, req, &resp));
    CHECK_OK(sp_response_status(resp, &status));
    CHECK(status == 200);
cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

/* A response over plain http has no TLS facts: SP_E_NOT_FOUND, out-parameters untouched. */
static void test_no_tls_facts(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    int32_t v = 77;
    const char *name = "untouched";
    CHECK_RC(sp_response_tls_version(resp, &v), SP_E_NOT_FOUND);
    CHECK_RC(sp_response_tls_resumed(resp, &v), SP_E_NOT_FOUND);
    CHECK(v == 77);
    CHECK_RC(sp_response_tls_cipher_suite(resp, &name), SP_E_NOT_FOUND);
    CHECK(strcmp(name, "untouched") == 0);
    CHECK(strstr(sp_last_error(), "no TLS") != NULL);
    CHECK_RC(sp_response_tls_version(resp, NULL), SP_E_NULL_POINTER);
cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"small_reads", test_small_reads},
        {"chunked", test_chunked},
        {"headers", test_headers},
        {"response_double_free", test_response_double_free},
        {"no_tls_facts", test_no_tls_facts},
    };
    return RUN_TESTS("response", tests, argc, argv);
}
