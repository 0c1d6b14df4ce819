/*
 * test_errors.c: the servicepoint C ABI tested from C, against include/servicepoint.h only;
 * error codes: NULL, bad URLs, freed and wrong-kind handles, a refused connection,
 * a malformed response and the server closing, response and queue timeouts.
 *
 * Run all: ./test_errors; one test: ./test_errors NAME; --list for the names.
 * Exit status: 0 if every CHECK passed, 1 otherwise (2: bad arguments).
 */
#include "test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_malformed_and_close(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256], url_close[256], url_hello[256];
    make_url(url, sizeof url, srv, "/malformed");
    make_url(url_close, sizeof url_close, srv, "/close");
    make_url(url_hello, sizeof url_hello, srv, "/hello");
    fetched f = {0};

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    CHECK_RC(sp_request(m, req, &resp), SP_E_PROTOCOL);
    CHECK(resp == NULL); /* out-parameters are written only on SP_OK */
    CHECK(sp_last_error()[0] != '\0');
    CHECK(sp_last_error_request_sent() == 1);
    printf("  /malformed: %s: %s\n", sp_strerror(SP_E_PROTOCOL), sp_last_error());

    /* The server's "Connection: close" is honoured: the next request opens a new one. */
    CHECK_OK(fetch(m, "GET", url_close, NULL, 0, &f));
    CHECK(f.status == 200);
    uint64_t closed_id = f.conn_id;
    fetched_free(&f);
    CHECK_OK(fetch(m, "GET", url_hello, NULL, 0, &f));
    CHECK(f.status == 200 && body_is(&f, LB_HELLO_BODY));
    CHECK(f.conn_id != closed_id && f.reused == 0);
    fetched_free(&f);
    CHECK(lb_connections(srv) == 3);
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.closed_server >= 1);
    CHECK(st.closed_error >= 1);

    /* 404 is a response like any other. */
    make_url(url, sizeof url, srv, "/no-such-page");
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.status == 404 && body_is(&f, LB_NOT_FOUND_BODY));

cleanup:
    fetched_free(&f);
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

static void test_errors(void) {
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    int32_t v = 0;

    /* NULL pointers. */
    CHECK_RC(sp_manager_new(NULL), SP_E_NULL_POINTER);
    REQUIRE_OK(sp_manager_new(&m));
    p = (sp_point *)(uintptr_t)0x1; /* must stay untouched on failure */
    CHECK_RC(sp_find(m, NULL, &p), SP_E_NULL_POINTER);
    CHECK(p == (sp_point *)(uintptr_t)0x1);
    p = NULL;
    CHECK_RC(sp_find(m, "http://127.0.0.1/", NULL), SP_E_NULL_POINTER);
    CHECK_RC(sp_find(NULL, "http://127.0.0.1/", &p), SP_E_INVALID_HANDLE);
    CHECK_RC(sp_http_request_new(NULL, "http://127.0.0.1/", &req), SP_E_NULL_POINTER);
    CHECK_RC(sp_http_request_new("GET", NULL, &req), SP_E_NULL_POINTER);
    CHECK_RC(sp_http_request_new("GET", "http://127.0.0.1/", NULL), SP_E_NULL_POINTER);
    CHECK_RC(sp_manager_get_default_connection_limit(m, NULL), SP_E_NULL_POINTER);
    CHECK(sp_last_error()[0] != '\0');

    /* Bad URLs. */
    CHECK_RC(sp_find(m, "http://127.0.0.1/\xff\xfe", &p), SP_E_INVALID_UTF8);
    CHECK_RC(sp_http_request_new("GET", "http://exa\xc3mple/", &req), SP_E_INVALID_UTF8);
    CHECK_RC(sp_find(m, "not a url", &p), SP_E_INVALID_URL);
    CHECK_RC(sp_find(m, "http://", &p), SP_E_INVALID_URL);
    CHECK_RC(sp_find(m, "http://127.0.0.1:99999/", &p), SP_E_INVALID_URL);
    CHECK_RC(sp_http_request_new("GET", "::::", &req), SP_E_INVALID_URL);
    CHECK_RC(sp_find(m, "ftp://example.com/file", &p), SP_E_UNSUPPORTED_SCHEME);
    CHECK_RC(sp_http_request_new("GET", "ftp://example.com/file", &req),
             SP_E_UNSUPPORTED_SCHEME);
    CHECK_RC(sp_http_request_new("GE T", "http://127.0.0.1/", &req), SP_E_INVALID_ARGUMENT);
    CHECK_RC(sp_http_request_new("", "http://127.0.0.1/", &req), SP_E_INVALID_ARGUMENT);
    CHECK(req == NULL && p == NULL);

    /* A freed request description passed back. */
    REQUIRE_OK(sp_http_request_new("GET", "http://127.0.0.1:9/", &req));
    sp_http_request_free(req);
    CHECK_RC(sp_http_request_add_header(req, "X-A", "b"), SP_E_INVALID_HANDLE);
    CHECK_RC(sp_http_request_set_timeout(req, 1000), SP_E_INVALID_HANDLE);
    CHECK_RC(sp_request(m, req, &resp), SP_E_INVALID_HANDLE);
    CHECK(resp == NULL);
    sp_http_request_free(req); /* double free: ignored */
    req = NULL;

    /* A handle of the wrong kind. */
    CHECK_RC(sp_get_lease_timeout((const sp_point *)m, &v), SP_E_INVALID_HANDLE);
    CHECK_RC(sp_set_lease_timeout((sp_point *)m, 100), SP_E_INVALID_HANDLE);
    CHECK(strstr(sp_last_error(), "manager") != NULL);
    REQUIRE_OK(sp_find(m, "http://127.0.0.1:9/", &p));
    CHECK_RC(sp_manager_get_max_service_point_idle_time((const sp_manager *)p, &v), SP_E_INVALID_HANDLE);
    CHECK_RC(sp_response_status((const sp_response *)p, &v), SP_E_INVALID_HANDLE);
    sp_manager_free((sp_manager *)p); /* wrong kind: ignored, the point still works */
    sp_point_free((sp_point *)m);     /* likewise for the manager */
    CHECK_OK(sp_get_lease_timeout(p, &v));
    CHECK_OK(sp_manager_get_max_service_point_idle_time(m, &v));
    /* Never issued at all. */
    CHECK_RC(sp_get_lease_timeout((const sp_point *)(uintptr_t)0x10, &v), SP_E_INVALID_HANDLE);
    CHECK_RC(sp_get_lease_timeout(NULL, &v), SP_E_INVALID_HANDLE);

    /* _free(NULL) is a no-op for every kind. */
    sp_manager_free(NULL);
    sp_point_free(NULL);
    sp_http_request_free(NULL);
    sp_response_free(NULL);

cleanup:
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
}

/* Connecting to a loopback port where nothing listens. A socket bound but not listening
 * refuses connections and keeps the port from being taken by someone else meanwhile. */
static void test_connect_refused(void) {
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
          getsockname(fd, (struct sockaddr *)&addr, &alen) == 0);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", ntohs(addr.sin_port));

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    CHECK_RC(sp_request(m, req, &resp), SP_E_CONNECT);
    CHECK(resp == NULL);
    CHECK(sp_last_error()[0] != '\0');
    CHECK(sp_last_error_request_sent() == 0);
    printf("  refused: %s: %s\n", sp_strerror(SP_E_CONNECT), sp_last_error());
cleanup:
    if (fd >= 0) close(fd);
    sp_http_request_free(req);
    sp_manager_free(m);
}

/* Response and queue timeouts each fail with their own code, and within bounds. */
static void test_timeouts(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *slow = NULL, *hold = NULL, *quick = NULL;
    sp_response *held = NULL, *resp = NULL;
    char url_slow[256], url_big[256], url_hello[256];
    make_url(url_slow, sizeof url_slow, srv, "/slow?ms=5000");
    make_url(url_big, sizeof url_big, srv, "/big?n=1000000");
    make_url(url_hello, sizeof url_hello, srv, "/hello");

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url_hello, &p));
    REQUIRE_OK(sp_http_request_new("GET", url_slow, &slow));
    CHECK_RC(sp_http_request_set_timeout(slow, -2), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_http_request_set_timeout(slow, 200));
    CHECK_RC(sp_request(m, slow, &resp), SP_E_RESPONSE_TIMEOUT);
    CHECK(sp_last_error_request_sent() == 1);

    /* Limit 1 and a held response: the next request waits in the queue, then times out. */
    CHECK_OK(sp_set_connection_limit(p, 1));
    REQUIRE_OK(sp_http_request_new("GET", url_big, &hold));
    REQUIRE_OK(sp_request(m, hold, &held));
    REQUIRE_OK(sp_http_request_new("GET", url_hello, &quick));
    CHECK_OK(sp_http_request_set_timeout(quick, 200));
    CHECK_RC(sp_request(m, quick, &resp), SP_E_QUEUE_TIMEOUT);
    CHECK(sp_last_error_request_sent() == 0);
    printf("  queue: %s\n", sp_last_error());
    sp_response_free(held);
    held = NULL;
    /* Once the held response is released, the queue moves. */
    CHECK_OK(sp_request(m, quick, &resp));

cleanup:
    sp_response_free(resp);
    sp_response_free(held);
    sp_http_request_free(slow);
    sp_http_request_free(hold);
    sp_http_request_free(quick);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv); /* also cuts the 5 s /slow sleeper short */
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"malformed_and_close", test_malformed_and_close},
        {"errors", test_errors},
        {"connect_refused", test_connect_refused},
        {"timeouts", test_timeouts},
    };
    return RUN_TESTS("errors", tests, argc, argv);
}
