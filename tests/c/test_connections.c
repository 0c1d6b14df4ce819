/*
 * test_connections.c: the servicepoint C ABI tested from C, against include/servicepoint.h only;
 * connection reuse: sequential keep-alive on one connection, a response freed
 * with its body unread (closed or drained), keep-alive off per request, threads sharing a
 * limit of 2.
 *
 * Run all: ./test_connections; one test: ./test_connections NAME; --list for the names.
 * Exit status: 0 if every CHECK passed, 1 otherwise (2: bad arguments).
 */
#include "test_support.h"

#include <pthread.h>

/* 20 sequential keep-alive GETs: one connection, 20 requests on it, 19 reuses. */
static void test_sequential_keepalive(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    uint64_t first_id = 0;
    int32_t first_port = 0;
    int ids_equal = 1, reuse_flags_ok = 1, bodies_ok = 1;

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    for (int i = 0; i < 20; i++) {
        fetched f;
        sp_result rc = fetch(m, "GET", url, NULL, 0, &f);
        CHECK_OK(rc);
        if (rc != SP_OK) goto cleanup;
        if (i == 0) {
            first_id = f.conn_id;
            first_port = f.local_port;
        }
        ids_equal &= f.conn_id == first_id;
        reuse_flags_ok &= f.reused == (i > 0);
        bodies_ok &= f.status == 200 && body_is(&f, LB_HELLO_BODY);
        fetched_free(&f);
    }
    CHECK(ids_equal);
    CHECK(reuse_flags_ok);
    CHECK(bodies_ok);

    /* What the server saw. */
    CHECK(lb_connections(srv) == 1);
    CHECK(lb_requests(srv) == 20);
    CHECK(lb_conn_requests(srv, 0) == 20);
    CHECK(lb_conn_peer_port(srv, 0) == first_port);
    CHECK(lb_count_requests_with_connection_close(srv) == 0);

    /* What the library counted must agree. */
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.connections_opened == 1);
    CHECK(st.connections_opened == (uint64_t)lb_connections(srv));
    CHECK(st.requests == 20);
    CHECK(st.reuses == 19);
    CHECK(st.reuses == (uint64_t)lb_conn_requests(srv, 0) - 1);
    CHECK(st.open == 1 && st.idle == 1 && st.busy == 0 && st.waiting == 0);
    int32_t current = -1;
    CHECK_OK(sp_get_current_connections(p, &current));
    CHECK(current == 1);
    printf("  server: %d connection(s), %d requests; stats: opened %llu, reuses %llu\n",
           lb_connections(srv), lb_requests(srv), (unsigned long long)st.connections_opened,
           (unsigned long long)st.reuses);

cleanup:
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Freeing a response with its body unread: a big remainder closes the connection, a small
 * one is drained and the connection reused; either way the next request works. */
static void test_free_before_read(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *big = NULL, *small = NULL;
    sp_response *resp = NULL;
    char url_big[256], url_small[256], url_hello[256];
    make_url(url_big, sizeof url_big, srv, "/big?n=1000000");
    make_url(url_small, sizeof url_small, srv, "/big?n=1000");
    make_url(url_hello, sizeof url_hello, srv, "/hello");
    fetched f = {0};
    uint64_t id = 0;

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url_hello, &p));

    /* 1 MB unread: far over the drain limit, so the connection must be closed. */
    REQUIRE_OK(sp_http_request_new("GET", url_big, &big));
    REQUIRE_OK(sp_request(m, big, &resp));
    CHECK_OK(sp_response_connection_id(resp, &id));
    sp_response_free(resp);
    resp = NULL;
    CHECK_OK(fetch(m, "GET", url_hello, NULL, 0, &f));
    CHECK(f.status == 200 && body_is(&f, LB_HELLO_BODY));
    CHECK(f.conn_id != id && f.reused == 0);
    fetched_free(&f);
    CHECK(lb_connections(srv) == 2);
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.closed_abandoned == 1);

    /* 1000 bytes unread: drained, and the same connection serves the next request. */
    REQUIRE_OK(sp_http_request_new("GET", url_small, &small));
    REQUIRE_OK(sp_request(m, small, &resp));
    CHECK_OK(sp_response_connection_id(resp, &id));
    sp_response_free(resp);
    resp = NULL;
    CHECK_OK(fetch(m, "GET", url_hello, NULL, 0, &f));
    CHECK(f.status == 200 && body_is(&f, LB_HELLO_BODY));
    CHECK(f.conn_id == id && f.reused == 1);
    fetched_free(&f);
    CHECK(lb_connections(srv) == 2);
    CHECK(lb_requests(srv) == 4);

cleanup:
    fetched_free(&f);
    sp_response_free(resp);
    sp_http_request_free(big);
    sp_http_request_free(small);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Keep-alive off on one request: "Connection: close" goes out, the connection is not reused. */
static void test_keep_alive_off(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    fetched f = {0};

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    CHECK_OK(sp_http_request_set_keep_alive(req, 0));
    CHECK_RC(sp_http_request_set_keep_alive(req, 2), SP_E_OUT_OF_RANGE);
    REQUIRE_OK(sp_request(m, req, &resp));
    const uint8_t *data;
    size_t len;
    CHECK_OK(sp_response_read_all(resp, &data, &len));
    sp_response_free(resp);
    resp = NULL;
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.reused == 0);
    CHECK(lb_connections(srv) == 2);
    lb_request_record r;
    CHECK(lb_request_at(srv, 0, &r) == 0 && r.has_connection &&
          strcmp(r.connection, "close") == 0);
    /* The first request of the new connection announces keep-alive. */
    CHECK(lb_request_at(srv, 1, &r) == 0 && strcmp(r.connection, "keep-alive") == 0);

cleanup:
    fetched_free(&f);
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

/* 4 threads x 3 requests through one manager with connection limit 2. */
typedef struct worker {
    sp_manager *m;
    const char *url;
    int ok;
    uint64_t ids[3];
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int i = 0; i < 3; i++) {
        fetched f;
        if (fetch(w->m, "GET", w->url, NULL, 0, &f) == SP_OK && f.status == 200) w->ok++;
        w->ids[i] = f.conn_id;
        fetched_free(&f);
    }
    return NULL;
}

static void test_threads(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/slow?ms=30");
    worker w[4];
    pthread_t th[4];
    int started = 0;

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    CHECK_OK(sp_set_connection_limit(p, 2));
    for (; started < 4; started++) {
        w[started] = (worker){m, url, 0, {0}};
        if (pthread_create(&th[started], NULL, worker_main, &w[started]) != 0) break;
    }
    CHECK(started == 4);
    uint64_t distinct[12];
    int ndistinct = 0, ok = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        for (int j = 0; j < 3; j++) {
            int seen = 0;
            for (int k = 0; k < ndistinct; k++) seen |= distinct[k] == w[i].ids[j];
            if (!seen) distinct[ndistinct++] = w[i].ids[j];
        }
    }
    CHECK(ok == 12);
    CHECK(ndistinct == 2);
    CHECK(lb_connections(srv) == 2);
    CHECK(lb_requests(srv) == 12);
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.connections_opened == 2 && st.requests == 12 && st.reuses == 10);
    printf("  12 requests on %d connections (server saw %d)\n", ndistinct, lb_connections(srv));

cleanup:
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"sequential_keepalive", test_sequential_keepalive},
        {"free_before_read", test_free_before_read},
        {"keep_alive_off", test_keep_alive_off},
        {"threads", test_threads},
    };
    return RUN_TESTS("connections", tests, argc, argv);
}
