/*
 * test_manager.c: the servicepoint C ABI tested from C, against include/servicepoint.h only;
 * the manager and finding service points: the version, the .NET ServicePoint example
 * flow, one service point per origin, the manager's defaults, max service points, and what
 * outstanding handles do once the manager is freed.
 *
 * Run all: ./test_manager; one test: ./test_manager NAME; --list for the names.
 * Exit status: 0 if every CHECK passed, 1 otherwise (2: bad arguments).
 */
#include "test_support.h"

static void test_version(void) {
    const char *v = sp_version();
    CHECK(v != NULL);
    if (v) {
        printf("  library %s, header %s, ABI %u\n", v, SP_VERSION_STRING, sp_abi_version());
        CHECK(strstr(v, SP_VERSION_STRING) != NULL);
    }
    CHECK(sp_abi_version() == SP_ABI_VERSION);
    CHECK(sp_strerror(SP_OK) != NULL && sp_strerror(SP_E_CONNECT) != NULL);
    CHECK(strcmp(sp_strerror(SP_E_CONNECT), sp_strerror(SP_E_PROTOCOL)) != 0);
    CHECK(sp_strerror(123456) != NULL); /* unknown codes still get a text */
    CHECK(sp_last_error() != NULL);
}

/* The .NET documentation's ServicePoint example: find the service point for a URL, set its
 * ConnectionLeaseTimeout to infinite, read it back, request a page and print it. */
static void test_seed_flow(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256], want_addr[64];
    make_url(url, sizeof url, srv, "/hello");
    snprintf(want_addr, sizeof want_addr, "http://127.0.0.1:%d", lb_port(srv));

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    const char *addr = NULL;
    CHECK_OK(sp_get_address(p, &addr));
    CHECK(addr && strcmp(addr, want_addr) == 0);
    printf("  service point %s\n", addr ? addr : "(null)");

    CHECK_OK(sp_set_lease_timeout(p, SP_INFINITE));
    int32_t lease = 0;
    CHECK_OK(sp_get_lease_timeout(p, &lease));
    CHECK(lease == -1 && lease == SP_INFINITE);

    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    int32_t status = 0;
    CHECK_OK(sp_response_status(resp, &status));
    CHECK(status == 200);
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(sp_response_read_all(resp, &data, &len));
    CHECK(len == strlen(LB_HELLO_BODY) && data && memcmp(data, LB_HELLO_BODY, len) == 0);
    printf("  GET %s -> %d, page: %.*s", url, (int)status, (int)len, data ? (const char *)data : "");

cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* The same origin always gives the same service point; another port gives another. */
static void test_find_same_point(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *a = NULL, *b = NULL, *c = NULL;
    char u1[256], u2[256], u3[256];
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d/a", lb_port(srv));
    snprintf(u2, sizeof u2, "HTTP://user@127.0.0.1:%d/b?q=1#frag", lb_port(srv));
    snprintf(u3, sizeof u3, "http://127.0.0.1:%d/", lb_port(srv) == 1 ? 2 : 1);

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, u1, &a));
    REQUIRE_OK(sp_find(m, u2, &b));
    CHECK_OK(sp_set_connection_limit(a, 7));
    int32_t limit = 0;
    CHECK_OK(sp_get_connection_limit(b, &limit));
    CHECK(limit == 7);
    int32_t count = 0;
    CHECK_OK(sp_manager_get_service_point_count(m, &count));
    CHECK(count == 1);
    REQUIRE_OK(sp_find(m, u3, &c));
    CHECK_OK(sp_manager_get_service_point_count(m, &count));
    CHECK(count == 2);
    CHECK_OK(sp_get_connection_limit(c, &limit));
    CHECK(limit == 2); /* the manager's default, untouched by the other point */

cleanup:
    sp_point_free(a);
    sp_point_free(b);
    sp_point_free(c);
    sp_manager_free(m);
    lb_stop(srv);
}

static void test_manager_defaults(void) {
    sp_manager *m = NULL;
    int32_t v = -100;
    REQUIRE_OK(sp_manager_new(&m));
    CHECK_OK(sp_manager_get_default_connection_limit(m, &v));
    CHECK(v == 2);
    CHECK_OK(sp_manager_get_max_service_point_idle_time(m, &v));
    CHECK(v == 100000);
    CHECK_OK(sp_manager_get_max_service_points(m, &v));
    CHECK(v == 0);
    CHECK_OK(sp_manager_get_keep_alive_default(m, &v));
    CHECK(v == 1);

    CHECK_RC(sp_manager_set_default_connection_limit(m, 0), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_manager_get_default_connection_limit(m, &v));
    CHECK(v == 2);
    CHECK_RC(sp_manager_set_max_service_points(m, -1), SP_E_OUT_OF_RANGE);
    CHECK_RC(sp_manager_set_max_service_point_idle_time(m, -2), SP_E_OUT_OF_RANGE);
    CHECK_RC(sp_manager_set_keep_alive_default(m, 2), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_manager_set_default_connection_limit(m, 5));
    CHECK_OK(sp_manager_get_default_connection_limit(m, &v));
    CHECK(v == 5);
cleanup:
    sp_manager_free(m);
}

/* After sp_manager_free, service point handles fail cleanly, and a response that was still
 * out can be read to its end (its connection is closed when it is released). */
static void test_manager_closed(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/big?n=100000");
    int32_t v = 0;

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    sp_manager_free(m);
    m = NULL;

    CHECK_RC(sp_get_lease_timeout(p, &v), SP_E_MANAGER_CLOSED);
    CHECK_RC(sp_set_lease_timeout(p, 1000), SP_E_MANAGER_CLOSED);
    const char *addr = NULL;
    CHECK_RC(sp_get_address(p, &addr), SP_E_MANAGER_CLOSED);
    sp_statistics st;
    CHECK_RC(get_stats(p, &st), SP_E_MANAGER_CLOSED);

    /* Freeing the manager shut the response's connection down: its body read ends at once
     * with the same code (DESIGN: outstanding handles return an error). */
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_RC(sp_response_read_all(resp, &data, &len), SP_E_MANAGER_CLOSED);
    sp_response_free(resp);
    resp = NULL;
    CHECK(lb_connections(srv) == 1);

cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Max service points 1: an unused service point is evicted for a new origin; one with a live
 * handle is not, and then the new origin is refused. */
static void test_max_service_points(void) {
    sp_manager *m = NULL;
    sp_point *p1 = NULL, *p2 = NULL, *p3 = NULL;
    int32_t count = 0;
    REQUIRE_OK(sp_manager_new(&m));
    CHECK_OK(sp_manager_set_max_service_points(m, 1));
    REQUIRE_OK(sp_find(m, "http://127.0.0.1:9/", &p1));
    sp_point_free(p1);
    p1 = NULL;
    REQUIRE_OK(sp_find(m, "http://127.0.0.2:9/", &p2)); /* evicts 127.0.0.1:9 */
    CHECK_OK(sp_manager_get_service_point_count(m, &count));
    CHECK(count == 1);
    CHECK_RC(sp_find(m, "http://127.0.0.3:9/", &p3), SP_E_TOO_MANY_SERVICE_POINTS);
    CHECK(p3 == NULL);
cleanup:
    sp_point_free(p1);
    sp_point_free(p2);
    sp_point_free(p3);
    sp_manager_free(m);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"version", test_version},
        {"seed_flow", test_seed_flow},
        {"find_same_point", test_find_same_point},
        {"manager_defaults", test_manager_defaults},
        {"manager_closed", test_manager_closed},
        {"max_service_points", test_max_service_points},
    };
    return RUN_TESTS("manager", tests, argc, argv);
}
