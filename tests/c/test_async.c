/*
 * C API tests, topic "async": sp_request_async and sp_response_read_async complete exactly
 * once (on a runtime thread, or through a completion queue drained with poll(2) on the
 * test's thread), share connections and the FIFO queue with blocking requests, end with
 * SP_E_CANCELED after sp_operation_cancel (a queued request is never sent), a cancel
 * token stops a blocking sp_request from another thread, and asynchronous requests queued at
 * the limit are pipelined when the service point allows it.
 */
#include "test_support.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

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

/* A 1 MiB GET, answered, its body unread: the body-reading tests read it, then check that the
 * next request reuses the connection. */
typedef struct {
    lb_server *srv;
    sp_manager *m;
    sp_http_request *req;
    sp_response *resp;
    char url[256];
} big_get;

static sp_result big_get_open(big_get *g) {
    memset(g, 0, sizeof *g);
    g->srv = start_server();
    make_url(g->url, sizeof g->url, g->srv, "/big?n=1048576");
    sp_result rc = sp_manager_new(&g->m);
    if (rc == SP_OK) rc = sp_http_request_new("GET", g->url, &g->req);
    if (rc == SP_OK) rc = sp_request(g->m, g->req, &g->resp);
    return rc;
}

/* The body was read to the end: the server sees the next request on the same connection. */
static void big_get_check_reuse(big_get *g) {
    fetched f;
    sp_result rc = fetch(g->m, "GET", g->url, NULL, 0, &f);
    CHECK_OK(rc);
    if (rc == SP_OK) {
        CHECK(f.reused == 1);
        fetched_free(&f);
    }
    CHECK(lb_connections(g->srv) == 1);
}

static void big_get_close(big_get *g) {
    sp_response_free(g->resp);
    sp_http_request_free(g->req);
    sp_manager_free(g->m);
    lb_stop(g->srv);
}

/* A 1 MiB body read with sp_response_read_async, chunk by chunk, matches the server's bytes;
 * the connection then goes back to the pool. (One read at a time per response: the core's
 * tests check that a second one is refused.) */
static void test_async_body_read(void) {
    big_get g;
    REQUIRE_OK(big_get_open(&g));
    reading r;
    memset(&r, 0, sizeof r);
    for (int round = 0; round < 10000; round++) {
        int before = atomic_load(&r.calls);
        size_t had = atomic_load(&r.bytes);
        sp_operation *op = NULL;
        REQUIRE_OK(sp_response_read_async(g.resp, 65536, on_read, &r, &op));
        for (int i = 0; i < 2500 && atomic_load(&r.calls) <= before; i++) sleep_ms(2);
        sp_operation_free(op);
        if (r.last != SP_OK) break;
        if (atomic_load(&r.bytes) == had && atomic_load(&r.calls) > before) break; /* len 0 */
    }
    CHECK(r.last == SP_OK);
    CHECK(atomic_load(&r.bytes) == 1048576);
    big_get_check_reuse(&g);
cleanup:
    big_get_close(&g);
}

/* sp_response_read_now never waits: a 1 MiB body read the way an event loop reads it (what has
 * arrived with sp_response_read_now, sp_response_read_async only while nothing has) matches
 * the server's bytes, *out_done says when it ended (then a read gives 0 and done again), and
 * the connection goes back to the pool: the next request reuses it. */
static void test_read_now_then_async(void) {
    big_get g;
    REQUIRE_OK(big_get_open(&g));
    sp_response *resp = g.resp;
    static uint8_t buf[65536];
    size_t total = 0;
    int done = 0, waits = 0, mismatch = 0;
    for (int round = 0; round < 100000 && !done; round++) {
        size_t n = 0;
        REQUIRE_OK(sp_response_read_now(resp, buf, sizeof buf, &n, &done));
        for (size_t i = 0; i < n; i++)
            if (buf[i] != (uint8_t)lb_big_byte(total + i)) mismatch = 1;
        total += n;
        if (n == 0 && !done) {
            /* Nothing has arrived: wait for it without blocking the thread. */
            reading r;
            memset(&r, 0, sizeof r);
            atomic_store(&r.bytes, total);
            sp_operation *op = NULL;
            REQUIRE_OK(sp_response_read_async(resp, sizeof buf, on_read, &r, &op));
            for (int i = 0; i < 2500 && atomic_load(&r.calls) == 0; i++) sleep_ms(2);
            sp_operation_free(op);
            CHECK(r.last == SP_OK);
            if (r.last != SP_OK) goto cleanup;
            total = atomic_load(&r.bytes);
            waits++;
        }
    }
    CHECK(done == 1);
    CHECK(mismatch == 0);
    CHECK(total == 1048576);
    size_t n = 7;
    done = 0;
    CHECK_OK(sp_response_read_now(resp, buf, sizeof buf, &n, &done));
    CHECK(n == 0 && done == 1);
    CHECK_RC(sp_response_read_now(resp, buf, 0, &n, &done), SP_E_INVALID_ARGUMENT);
    big_get_check_reuse(&g);
    printf("  (1 MiB: %d asynchronous reads while nothing had arrived)\n", waits);
cleanup:
    big_get_close(&g);
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


/* ---- stress ------------------------------------------------------------------------------ */

#define STRESS_ASYNC 1000
#define STRESS_THREADS 8
#define STRESS_PER_THREAD 40
#define STRESS_LIMIT 8

typedef struct {
    pthread_mutex_t mu;
    sp_response *items[STRESS_ASYNC];
    int count;
    int closed; /* no more will come */
} response_bag;

typedef struct {
    atomic_int calls[STRESS_ASYNC];
    response_bag bag;
    lb_server *srv;
    sp_manager *manager;
    sp_point *point;
    atomic_int stop;
    atomic_int max_busy;
    char urls[4][256];
} stress_state;

static stress_state *g_stress;

static void stress_done(void *userdata, sp_result result, sp_response *response) {
    size_t i = (size_t)(uintptr_t)userdata;
    atomic_fetch_add(&g_stress->calls[i], 1);
    (void)result;
    if (response == NULL) return;
    response_bag *b = &g_stress->bag;
    pthread_mutex_lock(&b->mu);
    b->items[b->count++] = response; /* freed later, by another thread, in random order */
    pthread_mutex_unlock(&b->mu);
}

static unsigned next_rand(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

/* Frees collected responses in random order, reading some bodies first. */
static void *stress_freer(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    response_bag *b = &g_stress->bag;
    for (;;) {
        sp_response *r = NULL;
        int done = 0;
        pthread_mutex_lock(&b->mu);
        if (b->count > 0) {
            int k = (int)(next_rand(&seed) % (unsigned)b->count);
            r = b->items[k];
            b->items[k] = b->items[--b->count];
        } else if (b->closed) {
            done = 1;
        }
        pthread_mutex_unlock(&b->mu);
        if (done) return NULL;
        if (!r) {
            sleep_ms(1);
            continue;
        }
        if (next_rand(&seed) % 2) {
            const uint8_t *body = NULL;
            size_t len = 0;
            (void)sp_response_read_all(r, &body, &len); /* may fail after the manager is freed */
        }
        sp_response_free(r);
    }
}

/* Blocking requests with random early frees and cancels from another thread. */
static void *stress_blocking(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    sp_cancel_token *token = NULL;
    if (sp_cancel_token_new(&token) != SP_OK) return NULL;
    for (int i = 0; i < STRESS_PER_THREAD && !atomic_load(&g_stress->stop); i++) {
        sp_http_request *req = NULL;
        if (sp_http_request_new("GET", g_stress->urls[next_rand(&seed) % 4], &req) != SP_OK) break;
        (void)sp_http_request_set_timeout(req, 5000);
        if (next_rand(&seed) % 8 == 0) {
            (void)sp_http_request_set_cancel_token(req, token);
            if (next_rand(&seed) % 2) sp_cancel_token_cancel(token);
        }
        sp_response *resp = NULL;
        if (sp_request(g_stress->manager, req, &resp) == SP_OK) {
            if (next_rand(&seed) % 3) {
                const uint8_t *body = NULL;
                size_t len = 0;
                (void)sp_response_read_all(resp, &body, &len);
            }
            sp_response_free(resp);
        }
        sp_cancel_token_reset(token);
        sp_http_request_free(req);
    }
    sp_cancel_token_free(token);
    return NULL;
}

/* Watches the point's busy connections (the client's side of the limit). */
static void *stress_monitor(void *arg) {
    (void)arg;
    while (!atomic_load(&g_stress->stop)) {
        int32_t n = 0;
        if (sp_get_current_connections(g_stress->point, &n) == SP_OK &&
            n > atomic_load(&g_stress->max_busy))
            atomic_store(&g_stress->max_busy, n);
        sleep_ms(1);
    }
    return NULL;
}

/* 8 threads of blocking requests plus 1,000 asynchronous ones on one manager (limit 8),
 * random cancels, responses freed in random order from other threads, the manager freed while
 * operations are in flight: every callback fires exactly once, the limit holds, the server saw
 * exactly the connections the client opened, and (under ASan/valgrind) nothing leaks. */
static void test_stress_blocking_and_async_with_cancels_and_manager_free(void) {
    stress_state *st = calloc(1, sizeof *st);
    sp_operation **ops = calloc(STRESS_ASYNC, sizeof *ops);
    pthread_t blocking[STRESS_THREADS], freers[2], monitor;
    int started_blocking = 0, started_freers = 0, started_monitor = 0;
    if (!st || !ops) {
        CHECK(!"out of memory");
        free(st);
        free(ops);
        return;
    }
    g_stress = st;
    pthread_mutex_init(&st->bag.mu, NULL);
    st->srv = start_server();
    make_url(st->urls[0], sizeof st->urls[0], st->srv, "/hello");
    make_url(st->urls[1], sizeof st->urls[1], st->srv, "/big?n=20000");
    make_url(st->urls[2], sizeof st->urls[2], st->srv, "/slow?ms=3");
    make_url(st->urls[3], sizeof st->urls[3], st->srv, "/chunked");
    REQUIRE_OK(sp_manager_new(&st->manager));
    REQUIRE_OK(sp_find(st->manager, st->urls[0], &st->point));
    REQUIRE_OK(sp_set_connection_limit(st->point, STRESS_LIMIT));
    pthread_create(&monitor, NULL, stress_monitor, NULL);
    started_monitor = 1;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&freers[i], NULL, stress_freer, (void *)(uintptr_t)(77 + i)) == 0)
            started_freers++;
    for (int i = 0; i < STRESS_THREADS; i++)
        if (pthread_create(&blocking[i], NULL, stress_blocking, (void *)(uintptr_t)(1 + i)) == 0)
            started_blocking++;
    unsigned seed = 4242;
    int issued = 0;
    for (int i = 0; i < STRESS_ASYNC; i++) {
        sp_http_request *req = NULL;
        REQUIRE_OK(sp_http_request_new("GET", st->urls[next_rand(&seed) % 4], &req));
        sp_result rc = sp_request_async(st->manager, req, stress_done, (void *)(uintptr_t)i, &ops[i]);
        sp_http_request_free(req); /* the operation keeps what it needs */
        REQUIRE_OK(rc);
        issued++;
        if (next_rand(&seed) % 5 == 0) {
            /* cancel a random earlier one (maybe done, queued or in flight) */
            int k = (int)(next_rand(&seed) % (unsigned)(i + 1));
            CHECK_OK(sp_operation_cancel(ops[k]));
        }
    }
    /* Let some finish, then free the manager with the rest in flight or queued. */
    for (int waited = 0; waited < 3000; waited += 5) {
        int done = 0;
        for (int i = 0; i < issued; i++) done += atomic_load(&st->calls[i]) > 0;
        if (done >= issued / 2) break;
        sleep_ms(5);
    }
    atomic_store(&st->stop, 1);
    for (int i = 0; i < started_blocking; i++) pthread_join(blocking[i], NULL);
    started_blocking = 0;
    sp_statistics stats;
    memset(&stats, 0, sizeof stats);
    CHECK_OK(get_stats(st->point, &stats));
    sp_point_free(st->point);
    st->point = NULL;
    sp_manager_free(st->manager);
    st->manager = NULL;
    /* Every callback exactly once, also for operations the manager free ended. */
    for (int waited = 0; waited < 10000; waited += 10) {
        int done = 0;
        for (int i = 0; i < issued; i++) done += atomic_load(&st->calls[i]) > 0;
        if (done == issued) break;
        sleep_ms(10);
    }
    sleep_ms(50);
    int once = 0;
    for (int i = 0; i < issued; i++) once += atomic_load(&st->calls[i]) == 1;
    CHECK(once == STRESS_ASYNC);
    CHECK(atomic_load(&st->max_busy) <= STRESS_LIMIT);
    /* Every connection the client counted as opened reached the server. */
    CHECK((uint64_t)lb_connections(st->srv) >= stats.connections_opened);
cleanup:
    atomic_store(&st->stop, 1);
    if (started_monitor) pthread_join(monitor, NULL);
    for (int i = 0; i < started_blocking; i++) pthread_join(blocking[i], NULL);
    pthread_mutex_lock(&st->bag.mu);
    st->bag.closed = 1;
    pthread_mutex_unlock(&st->bag.mu);
    for (int i = 0; i < started_freers; i++) pthread_join(freers[i], NULL);
    for (int i = 0; i < STRESS_ASYNC; i++) sp_operation_free(ops[i]);
    sp_point_free(st->point);
    sp_manager_free(st->manager);
    lb_stop(st->srv);
    pthread_mutex_destroy(&st->bag.mu);
    free(ops);
    free(st);
    g_stress = NULL;
}

/* Pipelining: settings validated; at limit 1, five GETs queued behind a slow one are written
 * on its connection when its answer arrives (the server sees one connection), and each gets
 * its own response, in order. */
static void test_pipelining(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *slow = NULL, *hello = NULL;
    sp_operation *ops[6] = {0};
    completion c[6];
    memset(c, 0, sizeof c);
    char url[256], slow_url[256];
    make_url(url, sizeof url, srv, "/hello");
    make_url(slow_url, sizeof slow_url, srv, "/slow?ms=200");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    int32_t v = -5;
    CHECK_OK(sp_get_pipelining(p, &v));
    CHECK(v == 0);
    CHECK_OK(sp_get_pipeline_depth(p, &v));
    CHECK(v == 8);
    CHECK_RC(sp_set_pipelining(p, 2), SP_E_OUT_OF_RANGE);
    CHECK_RC(sp_set_pipeline_depth(p, 0), SP_E_OUT_OF_RANGE);
    CHECK_RC(sp_set_pipeline_depth(p, 65), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_get_pipeline_depth(p, &v));
    CHECK(v == 8); /* a rejected value changes nothing */
    CHECK_OK(sp_set_pipeline_depth(p, 6));
    CHECK_OK(sp_set_pipelining(p, 1));
    CHECK_OK(sp_get_pipelining(p, &v));
    CHECK(v == 1);
    REQUIRE_OK(sp_set_connection_limit(p, 1));
    REQUIRE_OK(sp_http_request_new("GET", slow_url, &slow));
    REQUIRE_OK(sp_http_request_new("GET", url, &hello));
    CHECK_OK(sp_http_request_get_pipelined(hello, &v));
    CHECK(v == -1);
    CHECK_RC(sp_http_request_set_pipelined(hello, 3), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_http_request_set_pipelined(hello, 1));
    CHECK_OK(sp_http_request_get_pipelined(hello, &v));
    CHECK(v == 1);
    fetched f;
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f)); /* the server answers HTTP/1.1: it qualifies */
    fetched_free(&f);
    REQUIRE_OK(sp_request_async(m, slow, on_response, &c[0], &ops[0]));
    for (int waited = 0; lb_requests(srv) < 2 && waited < 5000; waited += 2) sleep_ms(2);
    for (int i = 1; i < 6; i++) REQUIRE_OK(sp_request_async(m, hello, on_response, &c[i], &ops[i]));
    for (int i = 0; i < 6; i++) {
        CHECK(wait_calls(&c[i], 1, 5000));
        CHECK_RC(c[i].result, SP_OK);
        if (!c[i].response) continue;
        const uint8_t *body = NULL;
        size_t len = 0;
        CHECK_OK(sp_response_read_all(c[i].response, &body, &len));
        const char *want = i == 0 ? "slow\n" : LB_HELLO_BODY;
        CHECK(len == strlen(want) && memcmp(body, want, len) == 0);
        sp_response_free(c[i].response);
        c[i].response = NULL;
    }
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.pipelined == 5 && st.pipeline_replays == 0);
    CHECK(lb_connections(srv) == 1 && lb_requests(srv) == 7);
    CHECK_OK(sp_get_supports_pipelining(p, &v));
    CHECK(v == 1);
cleanup:
    for (int i = 0; i < 6; i++) sp_operation_free(ops[i]);
    sp_http_request_free(slow);
    sp_http_request_free(hello);
    sp_point_free(p);
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
        {"read_now_then_async", test_read_now_then_async},
        {"manager_free_ends_pending_requests", test_manager_free_ends_pending_requests},
        {"pipelining", test_pipelining},
        {"stress_blocking_and_async_with_cancels_and_manager_free",
         test_stress_blocking_and_async_with_cancels_and_manager_free},
    };
    return RUN_TESTS("async", tests, argc, argv);
}
