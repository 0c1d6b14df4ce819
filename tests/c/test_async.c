/*
 * C API tests, topic "async": sp_request_async and sp_response_read_async complete exactly
 * once (on a runtime thread, or through a completion queue drained with poll(2) on the
 * test's thread), share connections and the FIFO queue with blocking requests, end with
 * SP_E_CANCELED after sp_operation_cancel (a queued request is never sent), and a cancel
 * token stops a blocking sp_request from another thread.
 */
#include "test_support.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct {
    atomic_int calls;
    sp_result result;
    sp_response *response;
    char message[256];
} completion;

static void on_response(void *userdata, sp_result result, sp_response *response) {
    completion *c = userdata;
    c->result = result;
    c->response = response;
    if (result != SP_OK) snprintf(c->message, sizeof c->message, "%s", sp_last_error());
    atomic_fetch_add(&c->calls, 1);
}

static int wait_calls(completion *c, int n, int timeout_ms) {
    for (int waited = 0; atomic_load(&c->calls) < n && waited < timeout_ms; waited += 2)
        sleep_ms(2);
    return atomic_load(&c->calls) >= n;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* An async GET on a runtime thread, then a blocking GET that reuses its connection. */
static void test_async_then_blocking_share_a_connection(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_operation *op = NULL;
    completion c;
    memset(&c, 0, sizeof c);
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request_async(m, req, on_response, &c, &op));
    CHECK(wait_calls(&c, 1, 5000));
    CHECK(c.result == SP_OK && c.response != NULL);
    const uint8_t *body = NULL;
    size_t len = 0;
    if (c.response) {
        CHECK_OK(sp_response_read_all(c.response, &body, &len));
        CHECK(len == strlen(LB_HELLO_BODY) && memcmp(body, LB_HELLO_BODY, len) == 0);
        sp_response_free(c.response);
    }
    int32_t done = 0;
    CHECK_OK(sp_operation_is_done(op, &done));
    CHECK(done == 1);
    fetched f;
    REQUIRE_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.reused == 1);
    fetched_free(&f);
    CHECK(lb_connections(srv) == 1 && lb_requests(srv) == 2);
    sleep_ms(20);
    CHECK(atomic_load(&c.calls) == 1); /* exactly once */
cleanup:
    sp_operation_free(op);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Drains `queue` with poll(2) on its descriptor until `n` completions arrived. */
static int drain_until(sp_completion_queue *queue, completion *c, int n, int timeout_ms) {
    int fd = -1;
    if (sp_completion_queue_fd(queue, &fd) != SP_OK) return 0;
    double end = now_ms() + timeout_ms;
    while (atomic_load(&c->calls) < n && now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) > 0) {
            size_t ran = 0;
            if (sp_completion_queue_run(queue, 64, &ran) != SP_OK) return 0;
        }
    }
    return atomic_load(&c->calls) >= n;
}

static pthread_t g_main_thread;
static atomic_int g_wrong_thread;

static void on_response_main_thread(void *userdata, sp_result result, sp_response *response) {
    if (!pthread_equal(pthread_self(), g_main_thread)) atomic_fetch_add(&g_wrong_thread, 1);
    on_response(userdata, result, response);
}

/* Completions through a queue run on the thread that drains it; limit 1 keeps them in order. */
static void test_completion_queue_runs_callbacks_on_the_draining_thread(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_completion_queue *q = NULL;
    sp_operation *ops[8] = {0};
    completion c;
    memset(&c, 0, sizeof c);
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    g_main_thread = pthread_self();
    atomic_store(&g_wrong_thread, 0);
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    REQUIRE_OK(sp_set_connection_limit(p, 1));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_completion_queue_new(&q));
    for (int i = 0; i < 8; i++)
        REQUIRE_OK(sp_request_async_queued(m, req, q, on_response_main_thread, &c, &ops[i]));
    /* Nothing runs until the queue is drained: each completion waits there, holding its
     * response (and the only connection), so drain one at a time and free each. */
    for (int i = 0; i < 8; i++) {
        CHECK(drain_until(q, &c, i + 1, 5000));
        if (c.response) {
            const uint8_t *body = NULL;
            size_t len = 0;
            CHECK_OK(sp_response_read_all(c.response, &body, &len));
            CHECK(len == strlen(LB_HELLO_BODY));
            sp_response_free(c.response);
            c.response = NULL;
        }
    }
    CHECK(atomic_load(&c.calls) == 8);
    CHECK(atomic_load(&g_wrong_thread) == 0);
    CHECK(lb_connections(srv) == 1 && lb_requests(srv) == 8);
    size_t len = 99;
    CHECK_OK(sp_completion_queue_len(q, &len));
    CHECK(len == 0);
cleanup:
    for (int i = 0; i < 8; i++) sp_operation_free(ops[i]);
    sp_completion_queue_free(q);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Limit 1, held by a blocking response: an async request queues; canceling it ends it with
 * SP_E_CANCELED and the server never sees it. */
static void test_cancel_of_a_queued_request_never_sends_it(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_response *held = NULL;
    sp_operation *op = NULL;
    completion c;
    memset(&c, 0, sizeof c);
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    REQUIRE_OK(sp_set_connection_limit(p, 1));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &held));
    REQUIRE_OK(sp_request_async(m, req, on_response, &c, &op));
    sleep_ms(50);
    CHECK(atomic_load(&c.calls) == 0); /* queued behind the held response */
    double t0 = now_ms();
    CHECK_OK(sp_operation_cancel(op));
    CHECK(wait_calls(&c, 1, 1000));
    CHECK(now_ms() - t0 < 50.0 + 100.0); /* 50 ms target, slack for a loaded machine */
    CHECK(c.result == SP_E_CANCELED && c.response == NULL);
    CHECK(strstr(c.message, "canceled") != NULL);
    sp_response_free(held);
    held = NULL;
    fetched f;
    REQUIRE_OK(fetch(m, "GET", url, NULL, 0, &f)); /* the pool is fine */
    fetched_free(&f);
    CHECK(lb_requests(srv) == 2); /* the held one and the last: never the canceled one */
    CHECK(atomic_load(&c.calls) == 1);
cleanup:
    sp_response_free(held);
    sp_operation_free(op);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* An in-flight async request to a slow URL: cancel closes its connection promptly. */
static void test_cancel_in_flight_closes_the_connection(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_operation *op = NULL;
    completion c;
    memset(&c, 0, sizeof c);
    char url[256];
    make_url(url, sizeof url, srv, "/slow?ms=5000");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request_async(m, req, on_response, &c, &op));
    for (int i = 0; i < 200 && lb_requests(srv) < 1; i++) sleep_ms(5);
    CHECK(lb_requests(srv) == 1);
    double t0 = now_ms();
    CHECK_OK(sp_operation_cancel(op));
    CHECK(wait_calls(&c, 1, 1000));
    CHECK(now_ms() - t0 < 150.0);
    CHECK(c.result == SP_E_CANCELED);
    /* Closed, not pooled half-read: the next request needs a new connection. */
    char hello[256];
    make_url(hello, sizeof hello, srv, "/hello");
    fetched f;
    REQUIRE_OK(fetch(m, "GET", hello, NULL, 0, &f));
    CHECK(f.reused == 0);
    fetched_free(&f);
    CHECK(lb_connections(srv) == 2);
cleanup:
    sp_operation_free(op);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

typedef struct {
    sp_cancel_token *token;
    int delay_ms;
} canceler;

static void *cancel_later(void *arg) {
    canceler *k = arg;
    sleep_ms(k->delay_ms);
    sp_cancel_token_cancel(k->token);
    return NULL;
}

/* A cancel token stops a blocking sp_request from another thread (HttpWebRequest.Abort). */
static void test_cancel_token_stops_a_blocking_request(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_cancel_token *token = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/slow?ms=5000");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_cancel_token_new(&token));
    REQUIRE_OK(sp_http_request_set_cancel_token(req, token));
    canceler k = {token, 200};
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, &k);
    double t0 = now_ms();
    CHECK_RC(sp_request(m, req, &resp), SP_E_CANCELED);
    double took = now_ms() - t0;
    pthread_join(t, NULL);
    CHECK(took >= 150.0 && took < 200.0 + 150.0);
    int32_t canceled = 0;
    CHECK_OK(sp_cancel_token_is_canceled(token, &canceled));
    CHECK(canceled == 1);
    /* Canceled stays canceled until reset; after reset the description works again. */
    CHECK_RC(sp_request(m, req, &resp), SP_E_CANCELED);
    CHECK_OK(sp_cancel_token_reset(token));
    char hello[256];
    make_url(hello, sizeof hello, srv, "/hello");
    fetched f;
    REQUIRE_OK(fetch(m, "GET", hello, NULL, 0, &f));
    CHECK(f.reused == 0); /* the canceled request's connection was closed, not pooled */
    fetched_free(&f);
    CHECK(lb_connections(srv) == 2);
cleanup:
    sp_response_free(resp);
    sp_cancel_token_free(token);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

typedef struct {
    atomic_int calls;
    atomic_size_t bytes;
    sp_result last;
} reading;

static void on_read(void *userdata, sp_result result, const uint8_t *data, size_t len) {
    reading *r = userdata;
    if (result == SP_OK && len > 0 && data != NULL) {
        size_t at = atomic_load(&r->bytes);
        for (size_t i = 0; i < len; i++)
            if (data[i] != (uint8_t)lb_big_byte(at + i)) r->last = SP_E_PROTOCOL;
        atomic_fetch_add(&r->bytes, len);
    }
    if (result != SP_OK) r->last = result;
    atomic_fetch_add(&r->calls, 1);
}

/* A 1 MiB body read with sp_response_read_async, chunk by chunk, matches the server's bytes;
 * the connection then goes back to the pool. */
static void test_async_body_read(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/big?n=1048576");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    reading r;
    memset(&r, 0, sizeof r);
    for (int round = 0; round < 10000; round++) {
        int before = atomic_load(&r.calls);
        size_t had = atomic_load(&r.bytes);
        sp_operation *op = NULL;
        REQUIRE_OK(sp_response_read_async(resp, 65536, on_read, &r, &op));
        /* One read at a time: a second one is refused while it runs (or it already ended). */
        sp_operation *second = NULL;
        sp_result rc2 = sp_response_read_async(resp, 16, on_read, &r, &second);
        if (rc2 == SP_OK) {
            /* the first had already completed: wait for both */
            before--;
            sp_operation_free(second);
        } else {
            CHECK(rc2 == SP_E_INVALID_ARGUMENT);
        }
        for (int i = 0; i < 2500 && atomic_load(&r.calls) <= before; i++) sleep_ms(2);
        sp_operation_free(op);
        if (r.last != SP_OK) break;
        if (atomic_load(&r.bytes) == had && atomic_load(&r.calls) > before) break; /* len 0 */
    }
    CHECK(r.last == SP_OK);
    CHECK(atomic_load(&r.bytes) == 1048576);
    fetched f;
    REQUIRE_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.reused == 1);
    fetched_free(&f);
    CHECK(lb_connections(srv) == 1);
cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Freeing the manager ends pending async requests with SP_E_MANAGER_CLOSED, exactly once. */
static void test_manager_free_ends_pending_requests(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_operation *ops[4] = {0};
    completion c[4];
    memset(c, 0, sizeof c);
    char url[256];
    make_url(url, sizeof url, srv, "/slow?ms=5000");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    for (int i = 0; i < 4; i++) REQUIRE_OK(sp_request_async(m, req, on_response, &c[i], &ops[i]));
    sleep_ms(100);
    sp_manager_free(m);
    m = NULL;
    for (int i = 0; i < 4; i++) {
        CHECK(wait_calls(&c[i], 1, 2000));
        CHECK(c[i].result == SP_E_MANAGER_CLOSED);
    }
    sleep_ms(20);
    for (int i = 0; i < 4; i++) CHECK(atomic_load(&c[i].calls) == 1);
cleanup:
    for (int i = 0; i < 4; i++) sp_operation_free(ops[i]);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"async_then_blocking_share_a_connection", test_async_then_blocking_share_a_connection},
        {"completion_queue_runs_callbacks_on_the_draining_thread",
         test_completion_queue_runs_callbacks_on_the_draining_thread},
        {"cancel_of_a_queued_request_never_sends_it",
         test_cancel_of_a_queued_request_never_sends_it},
        {"cancel_in_flight_closes_the_connection", test_cancel_in_flight_closes_the_connection},
        {"cancel_token_stops_a_blocking_request", test_cancel_token_stops_a_blocking_request},
        {"async_body_read", test_async_body_read},
        {"manager_free_ends_pending_requests", test_manager_free_ends_pending_requests},
    };
    return RUN_TESTS("async", tests, argc, argv);
}
