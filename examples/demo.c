/*
 * demo.c: servicepoint as a C user meets it, written only against include/servicepoint.h.
 *
 *   demo                 runs a tour against an embedded loopback HTTP/1.1 server: keep-alive
 *                        reuse, the connection limit under 4 threads, lease timeout 0, 100
 *                        asynchronous requests from one thread through a limit of 4 (and a
 *                        cancel), then what the server saw next to the library's statistics.
 *   demo URL [URL...]    fetches each URL (GET) through one manager.
 *
 * Exit status: 0 on success; 1 if a request failed or the tour saw something unexpected.
 */
#define _POSIX_C_SOURCE 200809L

#include "servicepoint.h"
#include "support/loopback_server.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One request's outcome, as the table rows show it. */
typedef struct outcome {
    sp_result rc;
    int32_t status;
    size_t bytes;
    uint64_t conn_id;
    int32_t reused;
    int32_t client_port;
} outcome;


/* Step 4: one thread, 100 asynchronous requests, a completion queue polled with poll(2). */
#define ASYNC_N 100
/* Step 5: requests pipelined behind a slow one. */
#define PIPE_N 15
typedef struct async_tally {
    int ok, canceled, failed, callbacks;
} async_tally;

static void on_async_response(void *userdata, sp_result rc, sp_response *resp) {
    async_tally *t = userdata;
    t->callbacks++;
    if (rc == SP_OK) {
        const uint8_t *body = NULL;
        size_t len = 0;
        /* A queued callback runs on this program's thread: blocking reads are fine here. */
        if (sp_response_read_all(resp, &body, &len) == SP_OK)
            t->ok++;
        else
            t->failed++;
        sp_response_free(resp);
    } else if (rc == SP_E_CANCELED) {
        t->canceled++;
    } else {
        t->failed++;
        fprintf(stderr, "  async request failed: %s\n", sp_last_error());
    }
}

static void print_statistics(const sp_point *p);

/* GETs `url`, reads the body to its end and releases the response. */
static outcome get(sp_manager *m, const char *url) {
    outcome o = {SP_OK, 0, 0, 0, 0, 0};
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    const uint8_t *body = NULL;
    o.rc = sp_http_request_new("GET", url, &req);
    if (o.rc == SP_OK) o.rc = sp_request(m, req, &resp);
    if (o.rc == SP_OK) o.rc = sp_response_status(resp, &o.status);
    if (o.rc == SP_OK) o.rc = sp_response_connection_id(resp, &o.conn_id);
    if (o.rc == SP_OK) o.rc = sp_response_connection_reused(resp, &o.reused);
    if (o.rc == SP_OK) o.rc = sp_response_local_port(resp, &o.client_port);
    /* Reading to the end is what hands the connection back to the pool. */
    if (o.rc == SP_OK) o.rc = sp_response_read_all(resp, &body, &o.bytes);
    sp_response_free(resp);
    sp_http_request_free(req);
    return o;
}

static void print_error(const char *what, sp_result rc) {
    printf("  %s failed: %s (code %d)\n    detail: %s\n", what, sp_strerror(rc), (int)rc,
           sp_last_error());
}

static void print_header(void) {
    printf("  %-8s %6s %7s %8s %7s %12s\n", "request", "status", "bytes", "conn-id", "reused",
           "client-port");
}

static void print_row(const char *label, const outcome *o) {
    printf("  %-8s %6d %7zu %8" PRIu64 " %7s %12d\n", label, (int)o->status, o->bytes,
           o->conn_id, o->reused ? "yes" : "no", (int)o->client_port);
}

/* Adds id to the set unless present; returns the set's new size. */
static int add_distinct(uint64_t *set, int n, uint64_t id) {
    for (int i = 0; i < n; i++)
        if (set[i] == id) return n;
    set[n] = id;
    return n + 1;
}

static int g_unexpected;

static void expect(int cond, const char *what) {
    printf("  [%s] %s\n", cond ? "ok" : "UNEXPECTED", what);
    if (!cond) g_unexpected++;
}

/* ------------------------------------------------------------------------------------------
 * URL mode
 * ---------------------------------------------------------------------------------------- */

static int fetch_urls(int n, char **urls) {
    sp_manager *m = NULL;
    sp_result rc = sp_manager_new(&m);
    if (rc != SP_OK) {
        print_error("sp_manager_new", rc);
        return 1;
    }
    int failures = 0;
    printf("  %-6s %7s %8s %7s  %s\n", "status", "bytes", "conn-id", "reused", "url");
    for (int i = 0; i < n; i++) {
        outcome o = get(m, urls[i]);
        if (o.rc != SP_OK) {
            printf("  %-6s %7s %8s %7s  %s\n", "-", "-", "-", "-", urls[i]);
            printf("         error: %s (code %d)\n         detail: %s\n", sp_strerror(o.rc),
                   (int)o.rc, sp_last_error());
            failures++;
            continue;
        }
        printf("  %-6d %7zu %8" PRIu64 " %7s  %s\n", (int)o.status, o.bytes, o.conn_id,
               o.reused ? "yes" : "no", urls[i]);
    }
    sp_manager_free(m);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------------------------------
 * The tour against the loopback server
 * ---------------------------------------------------------------------------------------- */

enum { THREADS = 4, PER_THREAD = 3 };

typedef struct worker {
    sp_manager *m;
    const char *url;
    outcome out[PER_THREAD];
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) w->out[i] = get(w->m, w->url);
    return NULL;
}

static void print_statistics(const sp_point *p) {
    sp_statistics st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st; /* tells the library which version of the struct we know */
    sp_result rc = sp_get_statistics(p, &st);
    if (rc != SP_OK) {
        print_error("sp_get_statistics", rc);
        g_unexpected++;
        return;
    }
    printf("  connections  open %" PRIu64 ", idle %" PRIu64 ", busy %" PRIu64
           ", waiting requests %" PRIu64 "\n",
           st.open, st.idle, st.busy, st.waiting);
    printf("  totals       connections opened %" PRIu64 ", requests %" PRIu64
           ", reuses %" PRIu64 ", retries %" PRIu64 "\n",
           st.connections_opened, st.requests, st.reuses, st.retries);
    printf("  closed by    lease %" PRIu64 ", idle %" PRIu64 ", keep-alive off %" PRIu64
           ", server %" PRIu64 ", stale %" PRIu64 ",\n"
           "               error %" PRIu64 ", max requests %" PRIu64 ", group %" PRIu64
           ", abandoned %" PRIu64 "\n",
           st.closed_lease, st.closed_idle, st.closed_keep_alive_off, st.closed_server,
           st.closed_stale, st.closed_error, st.closed_max_requests, st.closed_group,
           st.closed_abandoned);
    printf("  pipelining   requests pipelined %" PRIu64 ", replayed %" PRIu64 "\n", st.pipelined,
           st.pipeline_replays);
}

static int tour(void) {
    int rc_exit = 1;
    lb_server *srv = lb_start();
    if (!srv) {
        perror("starting the loopback server");
        return 1;
    }
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_result rc;
    char hello[128], slow[128];
    snprintf(hello, sizeof hello, "http://127.0.0.1:%d/hello", lb_port(srv));
    snprintf(slow, sizeof slow, "http://127.0.0.1:%d/slow?ms=30", lb_port(srv));
    printf("embedded loopback server listening on 127.0.0.1:%d\n", lb_port(srv));

    if ((rc = sp_manager_new(&m)) != SP_OK) {
        print_error("sp_manager_new", rc);
        goto done;
    }
    if ((rc = sp_find(m, hello, &p)) != SP_OK) {
        print_error("sp_find", rc);
        goto done;
    }
    const char *address = NULL;
    if ((rc = sp_get_address(p, &address)) != SP_OK) {
        print_error("sp_get_address", rc);
        goto done;
    }
    printf("service point for %s: %s\n", hello, address);
    /* Seed 000's example: the receive buffer size on the underlying socket, then the
     * connection lease timeout to infinite, before the request. */
    if ((rc = sp_set_receive_buffer_size(p, 2048)) != SP_OK) {
        print_error("sp_set_receive_buffer_size", rc);
        goto done;
    }
    if ((rc = sp_set_lease_timeout(p, SP_INFINITE)) != SP_OK) {
        print_error("sp_set_lease_timeout", rc);
        goto done;
    }

    /* 1. Sequential requests share one kept-alive connection. */
    printf("\n1) 6 sequential GETs of /hello, receive buffer 2048 bytes, lease timeout infinite "
           "(SP_INFINITE)\n");
    print_header();
    uint64_t ids[32];
    int nids = 0, reuse_ok = 1;
    for (int i = 0; i < 6; i++) {
        outcome o = get(m, hello);
        if (o.rc != SP_OK) {
            print_error("GET /hello", o.rc);
            goto done;
        }
        char label[16];
        snprintf(label, sizeof label, "#%d", i + 1);
        print_row(label, &o);
        nids = add_distinct(ids, nids, o.conn_id);
        reuse_ok &= o.reused == (i > 0);
    }
    expect(nids == 1, "all 6 requests on one connection");
    expect(reuse_ok, "the first opened it, the other 5 reused it");

    /* 2. Concurrency under the connection limit: the rest wait in the FIFO queue. */
    if ((rc = sp_set_connection_limit(p, 2)) != SP_OK) {
        print_error("sp_set_connection_limit", rc);
        goto done;
    }
    printf("\n2) %d threads x %d GETs of /slow?ms=30, connection limit 2\n", THREADS,
           PER_THREAD);
    worker w[THREADS];
    pthread_t th[THREADS];
    int started = 0;
    for (; started < THREADS; started++) {
        w[started].m = m;
        w[started].url = slow;
        if (pthread_create(&th[started], NULL, worker_main, &w[started]) != 0) break;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    print_header();
    nids = 0;
    int all_ok = started == THREADS;
    for (int t = 0; t < started; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            const outcome *o = &w[t].out[i];
            char label[16];
            snprintf(label, sizeof label, "t%d #%d", t + 1, i + 1);
            if (o->rc != SP_OK) {
                printf("  %-8s error: %s: %s\n", label, sp_strerror(o->rc), sp_last_error());
                all_ok = 0;
                continue;
            }
            print_row(label, o);
            nids = add_distinct(ids, nids, o->conn_id);
        }
    }
    char what[96];
    snprintf(what, sizeof what, "all %d requests succeeded", THREADS * PER_THREAD);
    expect(all_ok, what);
    snprintf(what, sizeof what, "%d distinct connection(s) used, at most 2", nids);
    expect(nids <= 2, what);

    /* 3. Lease timeout 0: every request says "Connection: close" and gets a new connection;
     * the idle connections left from step 2 are closed rather than reused. */
    if ((rc = sp_set_lease_timeout(p, 0)) != SP_OK) {
        print_error("sp_set_lease_timeout", rc);
        goto done;
    }
    printf("\n3) lease timeout 0: 3 GETs of /hello\n");
    print_header();
    int conns_before = lb_connections(srv);
    int requests_before = lb_requests(srv);
    int closes_before = lb_count_requests_with_connection_close(srv);
    int reused_count = 0;
    nids = 0;
    for (int i = 0; i < 3; i++) {
        outcome o = get(m, hello);
        if (o.rc != SP_OK) {
            print_error("GET /hello", o.rc);
            goto done;
        }
        char label[16];
        snprintf(label, sizeof label, "#%d", i + 1);
        print_row(label, &o);
        nids = add_distinct(ids, nids, o.conn_id);
        reused_count += o.reused != 0;
    }
    expect(nids == 3, "each request on a connection of its own");
    expect(lb_count_requests_with_connection_close(srv) - closes_before == 3 &&
               lb_requests(srv) - requests_before == 3,
           "the server saw \"Connection: close\" on all 3");
    int32_t open_now = -1;
    sp_get_current_connections(p, &open_now);
    expect(open_now == 0, "every connection closed after its request (none left open)");
    expect(reused_count == 0, "no idle connection from step 2 was reused");
    printf("  (%d new connection(s) opened)\n", lb_connections(srv) - conns_before);


    /* 4. Asynchronous requests: 100 from one thread through a limit of 4, one canceled. */
    if ((rc = sp_set_lease_timeout(p, SP_INFINITE)) != SP_OK ||
        (rc = sp_set_connection_limit(p, 4)) != SP_OK) {
        print_error("sp_set_connection_limit", rc);
        goto done;
    }
    printf("\n4) %d asynchronous GETs of /slow?ms=30 from one thread, connection limit 4; "
           "the last one canceled\n", ASYNC_N);
    {
        sp_completion_queue *queue = NULL;
        sp_http_request *req = NULL;
        sp_operation *ops[ASYNC_N] = {0};
        async_tally tally = {0, 0, 0, 0};
        int conns_at_start = lb_connections(srv);
        if ((rc = sp_completion_queue_new(&queue)) != SP_OK ||
            (rc = sp_http_request_new("GET", slow, &req)) != SP_OK) {
            print_error("setup of step 4", rc);
            sp_completion_queue_free(queue);
            goto done;
        }
        for (int i = 0; i < ASYNC_N && rc == SP_OK; i++)
            rc = sp_request_async_queued(m, req, queue, on_async_response, &tally, &ops[i]);
        if (rc != SP_OK) print_error("sp_request_async_queued", rc);
        /* They run on this thread, inside sp_completion_queue_run: one pass with no callbacks
         * (max 0) starts them, 4 on connections and the rest in the queue. */
        size_t started = 0;
        sp_completion_queue_run(queue, 0, &started);
        printf("  issued %d requests without blocking; after one sp_completion_queue_run pass "
               "(4 busy, the rest queued):\n",
               ASYNC_N);
        print_statistics(p);
        sp_statistics queued;
        memset(&queued, 0, sizeof queued);
        queued.struct_size = sizeof queued;
        sp_get_statistics(p, &queued);
        expect(queued.busy == 4 && queued.waiting == ASYNC_N - 4,
               "4 requests on connections, 96 waiting in the queue");
        sp_operation_cancel(ops[ASYNC_N - 1]);
        int fd = -1;
        sp_completion_queue_fd(queue, &fd);
        for (int spins = 0; tally.callbacks < ASYNC_N && spins < 2000; spins++) {
            struct pollfd pfd = {fd, POLLIN, 0};
            if (poll(&pfd, 1, 10) > 0) {
                size_t ran = 0;
                sp_completion_queue_run(queue, ASYNC_N, &ran);
            }
        }
        printf("  completed: %d OK, %d canceled, %d failed (%d callbacks)\n", tally.ok,
               tally.canceled, tally.failed, tally.callbacks);
        expect(tally.callbacks == ASYNC_N && tally.ok == ASYNC_N - 1 && tally.canceled == 1,
               "every callback once: 99 responses and the canceled one");
        expect(lb_connections(srv) - conns_at_start <= 4,
               "the server saw at most 4 new connections for 99 requests");
        for (int i = 0; i < ASYNC_N; i++) sp_operation_free(ops[i]);
        sp_http_request_free(req);
        sp_completion_queue_free(queue);
    }

    /* 5. Pipelining: limit 1, requests queued behind a slow one are written on its connection
     * before its answer arrives, and answered in order. A connection group of their own keeps
     * the idle connections of step 4 out of it (each group has its own connections). */
    printf("\n5) pipelining on, connection limit 1, connection group \"pipelined\": /slow?ms=30, "
           "then %d GETs of /hello queued behind it\n",
           PIPE_N);
    if ((rc = sp_set_connection_limit(p, 1)) != SP_OK || (rc = sp_set_pipelining(p, 1)) != SP_OK) {
        print_error("sp_set_pipelining", rc);
        goto done;
    }
    {
        sp_completion_queue *queue = NULL;
        sp_http_request *first = NULL, *next = NULL;
        sp_operation *ops[PIPE_N + 1] = {0};
        async_tally tally = {0, 0, 0, 0};
        sp_statistics before;
        memset(&before, 0, sizeof before);
        before.struct_size = sizeof before;
        sp_get_statistics(p, &before);
        int conns_before = lb_connections(srv), requests_before = lb_requests(srv);
        if ((rc = sp_completion_queue_new(&queue)) != SP_OK ||
            (rc = sp_http_request_new("GET", slow, &first)) != SP_OK ||
            (rc = sp_http_request_new("GET", hello, &next)) != SP_OK ||
            (rc = sp_http_request_set_connection_group(first, "pipelined")) != SP_OK ||
            (rc = sp_http_request_set_connection_group(next, "pipelined")) != SP_OK ||
            (rc = sp_request_async_queued(m, first, queue, on_async_response, &tally, &ops[0])) !=
                SP_OK) {
            print_error("setup of step 5", rc);
        } else {
            size_t started = 0;
            sp_completion_queue_run(queue, 0, &started); /* the slow one takes the connection */
            for (int i = 1; i <= PIPE_N && rc == SP_OK; i++)
                rc = sp_request_async_queued(m, next, queue, on_async_response, &tally, &ops[i]);
            int fd = -1;
            sp_completion_queue_fd(queue, &fd);
            for (int spins = 0; tally.callbacks < PIPE_N + 1 && spins < 2000; spins++) {
                struct pollfd pfd = {fd, POLLIN, 0};
                if (poll(&pfd, 1, 10) > 0) {
                    size_t ran = 0;
                    sp_completion_queue_run(queue, PIPE_N + 1, &ran);
                }
            }
        }
        sp_statistics after;
        memset(&after, 0, sizeof after);
        after.struct_size = sizeof after;
        sp_get_statistics(p, &after);
        printf("  completed: %d OK, %d failed; %" PRIu64 " written behind another request on "
               "one connection, %" PRIu64 " replayed\n",
               tally.ok, tally.failed, after.pipelined - before.pipelined,
               after.pipeline_replays - before.pipeline_replays);
        expect(tally.ok == PIPE_N + 1, "every pipelined request got its response");
        expect(after.pipelined - before.pipelined == PIPE_N,
               "the queued requests were all pipelined (sp_statistics.pipelined)");
        expect(lb_connections(srv) - conns_before == 1 &&
                   lb_requests(srv) - requests_before == PIPE_N + 1,
               "the server saw one connection for the group and each request once");
        for (int i = 0; i <= PIPE_N; i++) sp_operation_free(ops[i]);
        sp_http_request_free(first);
        sp_http_request_free(next);
        sp_completion_queue_free(queue);
    }

    /* What really went over the wire. */
    printf("\nWhat the server saw\n");
    printf("  %-10s %12s %9s\n", "connection", "client-port", "requests");
    int nconns = lb_connections(srv);
    for (int i = 0; i < nconns; i++)
        printf("  %-10d %12d %9d\n", i + 1, lb_conn_peer_port(srv, i), lb_conn_requests(srv, i));
    printf("  %d connection(s), %d request(s), %d with \"Connection: close\"\n", nconns,
           lb_requests(srv), lb_count_requests_with_connection_close(srv));

    printf("\nService point statistics (sp_get_statistics)\n");
    print_statistics(p);

    rc_exit = g_unexpected ? 1 : 0;
    printf("\n%s\n", rc_exit == 0 ? "demo finished: everything as expected"
                                  : "demo finished: something was unexpected (see above)");
done:
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
    return rc_exit;
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: %s [URL...]\n"
               "  without URLs: a tour against an embedded loopback HTTP/1.1 server\n"
               "  with URLs:    GET each one through one connection manager\n",
               argv[0]);
        return 0;
    }
    printf("servicepoint demo: library %s (ABI %u), header %s\n", sp_version(), sp_abi_version(),
           SP_VERSION_STRING);
    if (sp_abi_version() != SP_ABI_VERSION) {
        fprintf(stderr, "ABI mismatch: library %u, header %d\n", sp_abi_version(),
                SP_ABI_VERSION);
        return 1;
    }
    return argc > 1 ? fetch_urls(argc - 1, argv + 1) : tour();
}
