/*
 * c_api_test.c: the servicepoint C ABI tested from C, against include/servicepoint.h only.
 *
 * Every test talks to the embedded loopback server (examples/support/loopback_server.c) and
 * checks both sides: what the library reports (status, connection ids, statistics) and what
 * the server actually saw on the wire (connections, requests per connection, Connection
 * headers). Each test starts its own server and manager so counts are exact.
 *
 * Exit status: 0 if every CHECK passed, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include "servicepoint.h"
#include "loopback_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int g_passed;
static int g_failed;

/* A failing CHECK reports where, what, and the library's detail for the calling thread
 * (which may be stale if the failing expression was not a library call). */
#define CHECK(expr)                                                                        \
    do {                                                                                   \
        if (expr) {                                                                        \
            g_passed++;                                                                    \
        } else {                                                                           \
            g_failed++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n    sp_last_error: \"%s\"\n",         \
                    __FILE__, __LINE__, #expr, sp_last_error());                           \
        }                                                                                  \
    } while (0)

/* CHECK that a call returns a given code, printing both codes' names when it does not. */
#define CHECK_RC(call, want)                                                               \
    do {                                                                                   \
        sp_result got_ = (call);                                                           \
        sp_result want_ = (want);                                                          \
        if (got_ == want_) {                                                               \
            g_passed++;                                                                    \
        } else {                                                                           \
            g_failed++;                                                                    \
            fprintf(stderr,                                                                \
                    "%s:%d: CHECK failed: %s\n    returned %d (%s), expected %d (%s)\n"     \
                    "    sp_last_error: \"%s\"\n",                                         \
                    __FILE__, __LINE__, #call, (int)got_, sp_strerror(got_), (int)want_,   \
                    sp_strerror(want_), sp_last_error());                                  \
        }                                                                                  \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, SP_OK)

/* For the setup steps a test cannot continue without. */
#define REQUIRE_OK(call)                                                                   \
    do {                                                                                   \
        sp_result req_rc_ = (call);                                                        \
        CHECK_RC(req_rc_, SP_OK);                                                          \
        if (req_rc_ != SP_OK) goto cleanup;                                                \
    } while (0)

/* ------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------- */

/* Tests do not try to survive out-of-memory. */
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static lb_server *start_server(void) {
    lb_server *s = lb_start();
    if (!s) {
        perror("lb_start");
        exit(2);
    }
    return s;
}

static void make_url(char *buf, size_t cap, lb_server *s, const char *path) {
    snprintf(buf, cap, "http://127.0.0.1:%d%s", lb_port(s), path);
}

/* What one request/response exchange gave. */
typedef struct fetched {
    int32_t status;
    uint8_t *body; /* malloc'd copy (NUL-terminated for convenience); free with fetched_free */
    size_t len;
    uint64_t conn_id;
    int32_t reused;
    int32_t local_port;
} fetched;

static void fetched_free(fetched *f) {
    free(f->body);
    memset(f, 0, sizeof *f);
}

/* Sends `method url` (with an optional body), reads the whole body and frees the response.
 * Returns the first failing call's code. */
static sp_result fetch(sp_manager *m, const char *method, const char *url,
                       const void *body, size_t body_len, fetched *out) {
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    const uint8_t *data = NULL;
    memset(out, 0, sizeof *out);
    sp_result rc = sp_http_request_new(method, url, &req);
    if (rc == SP_OK && body) rc = sp_http_request_set_body(req, body, body_len);
    if (rc == SP_OK) rc = sp_request(m, req, &resp);
    if (rc == SP_OK) rc = sp_response_status(resp, &out->status);
    if (rc == SP_OK) rc = sp_response_connection_id(resp, &out->conn_id);
    if (rc == SP_OK) rc = sp_response_connection_reused(resp, &out->reused);
    if (rc == SP_OK) rc = sp_response_local_port(resp, &out->local_port);
    if (rc == SP_OK) rc = sp_response_read_all(resp, &data, &out->len);
    if (rc == SP_OK) {
        out->body = xmalloc(out->len + 1);
        if (out->len) memcpy(out->body, data, out->len);
        out->body[out->len] = 0;
    }
    sp_response_free(resp);
    sp_http_request_free(req);
    return rc;
}

static sp_result get_stats(const sp_point *p, sp_statistics *st) {
    memset(st, 0, sizeof *st);
    st->struct_size = sizeof *st;
    return sp_get_statistics(p, st);
}

static int body_is(const fetched *f, const char *text) {
    return f->len == strlen(text) && memcmp(f->body, text, f->len) == 0;
}

/* ------------------------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------------------------- */

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

/* Lease timeout 0: every request says "Connection: close" and gets its own connection. */
static void test_lease_zero(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    uint64_t ids[3] = {0};

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    CHECK_OK(sp_set_lease_timeout(p, 0));
    int32_t lease = -5;
    CHECK_OK(sp_get_lease_timeout(p, &lease));
    CHECK(lease == 0);
    for (int i = 0; i < 3; i++) {
        fetched f;
        CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
        CHECK(f.status == 200 && f.reused == 0);
        ids[i] = f.conn_id;
        fetched_free(&f);
    }
    CHECK(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    CHECK(lb_connections(srv) == 3);
    CHECK(lb_requests(srv) == 3);
    CHECK(lb_count_requests_with_connection_close(srv) == 3);
    for (int i = 0; i < 3; i++) {
        lb_request_record r;
        CHECK(lb_request_at(srv, i, &r) == 0 && r.conn_index == i &&
              strcmp(r.connection, "close") == 0);
        CHECK(lb_conn_requests(srv, i) == 1);
    }
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.connections_opened == 3 && st.reuses == 0 && st.open == 0);

    /* Back to infinite: connections are kept again. */
    CHECK_OK(sp_set_lease_timeout(p, SP_INFINITE));
    fetched a, b;
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &a));
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &b));
    CHECK(a.conn_id == b.conn_id && b.reused == 1);
    fetched_free(&a);
    fetched_free(&b);
    CHECK(lb_connections(srv) == 4);

cleanup:
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

/* Out-of-range settings are refused and change nothing. */
static void test_ranges(void) {
    sp_manager *m = NULL;
    sp_point *p = NULL;
    int32_t v = 0;
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, "http://127.0.0.1:9/", &p));

    CHECK_OK(sp_set_lease_timeout(p, 5000));
    CHECK_RC(sp_set_lease_timeout(p, -2), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_get_lease_timeout(p, &v));
    CHECK(v == 5000);
    CHECK_RC(sp_set_lease_timeout(p, INT32_MIN), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_get_lease_timeout(p, &v));
    CHECK(v == 5000);

    CHECK_RC(sp_set_connection_limit(p, 0), SP_E_OUT_OF_RANGE);
    CHECK_RC(sp_set_connection_limit(p, -1), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_get_connection_limit(p, &v));
    CHECK(v == 2);

    CHECK_RC(sp_set_max_idle_time(p, -2), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_set_max_idle_time(p, SP_INFINITE));
    CHECK_OK(sp_get_max_idle_time(p, &v));
    CHECK(v == -1);
    CHECK_RC(sp_set_max_requests_per_connection(p, -1), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_get_max_requests_per_connection(p, &v));
    CHECK(v == 0);

    /* Statistics: too small a struct_size is refused; a smaller (older) one is honoured. */
    sp_statistics st;
    memset(&st, 0xAB, sizeof st);
    st.struct_size = 2;
    CHECK_RC(sp_get_statistics(p, &st), SP_E_INVALID_ARGUMENT);
    memset(&st, 0xAB, sizeof st);
    st.struct_size = (uint32_t)offsetof(sp_statistics, idle);
    CHECK_OK(sp_get_statistics(p, &st));
    CHECK(st.open == 0);
    CHECK(st.idle == 0xABABABABABABABABull); /* beyond struct_size: untouched */

cleanup:
    sp_point_free(p);
    sp_manager_free(m);
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

static void test_post_echo(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/echo");
    const char *msg = "name=servicepoint&lang=C";
    fetched f = {0};
    size_t big_len = 300000;
    uint8_t *big = xmalloc(big_len);
    for (size_t i = 0; i < big_len; i++) big[i] = (uint8_t)(i * 7 + 3);

    REQUIRE_OK(sp_manager_new(&m));
    CHECK_OK(fetch(m, "POST", url, msg, strlen(msg), &f));
    CHECK(f.status == 200 && body_is(&f, msg));
    fetched_free(&f);

    CHECK_OK(fetch(m, "PUT", url, big, big_len, &f));
    CHECK(f.status == 200 && f.len == big_len && memcmp(f.body, big, big_len) == 0);
    fetched_free(&f);

    /* An empty body: NULL data with length 0 is allowed. */
    sp_http_request *req = NULL;
    CHECK_OK(sp_http_request_new("POST", url, &req));
    CHECK_OK(sp_http_request_set_body(req, NULL, 0));
    CHECK_RC(sp_http_request_set_body(req, NULL, 5), SP_E_NULL_POINTER);
    sp_http_request_free(req);

    lb_request_record r;
    CHECK(lb_request_at(srv, 0, &r) == 0 && strcmp(r.method, "POST") == 0 &&
          strcmp(r.path, "/echo") == 0 && r.body_len == (long long)strlen(msg));
    CHECK(lb_request_at(srv, 1, &r) == 0 && strcmp(r.method, "PUT") == 0 &&
          r.body_len == (long long)big_len);
    CHECK(lb_connections(srv) == 1); /* bodies do not cost the connection */

cleanup:
    free(big);
    fetched_free(&f);
    sp_manager_free(m);
    lb_stop(srv);
}

/* A streamed request body, produced by a callback in pieces. */
typedef struct body_source {
    const uint8_t *data;
    size_t len, pos, step;
    int calls;
    int fail_at_call; /* return an error on this call (1-based); 0 never */
} body_source;

static int32_t body_source_read(void *userdata, uint8_t *buf, size_t cap, size_t *out_n) {
    body_source *s = userdata;
    s->calls++;
    if (s->fail_at_call && s->calls == s->fail_at_call) return -1;
    size_t n = s->len - s->pos;
    if (n > s->step) n = s->step;
    if (n > cap) n = cap;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    *out_n = n;
    return 0;
}

static void test_body_reader(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/echo");
    size_t len = 100000;
    uint8_t *payload = xmalloc(len);
    for (size_t i = 0; i < len; i++) payload[i] = (uint8_t)('A' + i % 23);

    REQUIRE_OK(sp_manager_new(&m));
    body_source src = {payload, len, 0, 997, 0, 0};
    REQUIRE_OK(sp_http_request_new("POST", url, &req));
    CHECK_RC(sp_http_request_set_body_reader(req, NULL, &src), SP_E_NULL_POINTER);
    CHECK_OK(sp_http_request_set_body_reader(req, body_source_read, &src));
    REQUIRE_OK(sp_request(m, req, &resp));
    int32_t status = 0;
    CHECK_OK(sp_response_status(resp, &status));
    CHECK(status == 200);
    const uint8_t *data = NULL;
    size_t got = 0;
    CHECK_OK(sp_response_read_all(resp, &data, &got));
    CHECK(got == len && data && memcmp(data, payload, len) == 0);
    CHECK(src.calls > 1 && src.pos == len);
    sp_response_free(resp);
    resp = NULL;
    sp_http_request_free(req);
    req = NULL;

    lb_request_record r;
    CHECK(lb_request_at(srv, 0, &r) == 0 && r.body_len == (long long)len);

    /* A callback that fails aborts the request with SP_E_BODY_SOURCE. */
    body_source bad = {payload, len, 0, 1000, 0, 3};
    REQUIRE_OK(sp_http_request_new("POST", url, &req));
    CHECK_OK(sp_http_request_set_body_reader(req, body_source_read, &bad));
    CHECK_RC(sp_request(m, req, &resp), SP_E_BODY_SOURCE);
    CHECK(resp == NULL);
    CHECK(bad.calls == 3);

    /* Afterwards the manager works normally. */
    fetched f;
    CHECK_OK(fetch(m, "POST", url, "ok", 2, &f));
    CHECK(f.status == 200 && body_is(&f, "ok"));
    fetched_free(&f);

cleanup:
    free(payload);
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

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (polling every 10 ms, at most timeout_ms) until the server sees connection `i`
 * closed. Returns 1 if it did. */
static int wait_conn_closed(lb_server *srv, int i, int timeout_ms) {
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (lb_conn_is_open(srv, i) == 0) return 1;
        sleep_ms(10);
    }
    return 0;
}

/* Lease timeout N: a connection older than N ms gets "Connection: close" on its next request
 * and is closed after it; the request after that opens a new connection. */
static void test_lease_expiry(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    fetched f = {0};

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    CHECK_OK(sp_set_lease_timeout(p, 150));
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
    fetched_free(&f);
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f)); /* young: reused, kept */
    CHECK(f.reused == 1);
    fetched_free(&f);
    sleep_ms(250);
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f)); /* old: reused one last time, then closed */
    CHECK(f.reused == 1);
    fetched_free(&f);
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.reused == 0);
    fetched_free(&f);

    CHECK(lb_connections(srv) == 2);
    CHECK(lb_conn_requests(srv, 0) == 3);
    lb_request_record r;
    CHECK(lb_request_at(srv, 1, &r) == 0 && !r.has_connection);
    CHECK(lb_request_at(srv, 2, &r) == 0 && strcmp(r.connection, "close") == 0);
    CHECK(lb_count_requests_with_connection_close(srv) == 1);
    CHECK(wait_conn_closed(srv, 0, 2000));
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.closed_lease == 1);

cleanup:
    fetched_free(&f);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Max idle time: the reaper closes an idle connection on its own, without a request. */
static void test_idle_reaper(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    fetched f = {0};
    int64_t since = 0;

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    CHECK_OK(sp_set_max_idle_time(p, 100));
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
    fetched_free(&f);
    CHECK_OK(sp_get_idle_since(p, &since));
    CHECK(since > 1600000000000LL); /* Unix ms, after 2020 */
    CHECK(wait_conn_closed(srv, 0, 3000));
    int32_t current = -1;
    CHECK_OK(sp_get_current_connections(p, &current));
    CHECK(current == 0);
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.closed_idle == 1 && st.open == 0);
    CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
    CHECK(f.status == 200 && f.reused == 0);
    CHECK(lb_connections(srv) == 2);

cleanup:
    fetched_free(&f);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Max requests per connection 3: the third carries "Connection: close"; 5 requests take 2
 * connections (3 + 2). */
static void test_max_requests(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    int32_t v = 0;

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    CHECK_OK(sp_set_max_requests_per_connection(p, 3));
    CHECK_OK(sp_get_max_requests_per_connection(p, &v));
    CHECK(v == 3);
    for (int i = 0; i < 5; i++) {
        fetched f;
        CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
        fetched_free(&f);
    }
    CHECK(lb_connections(srv) == 2);
    CHECK(lb_conn_requests(srv, 0) == 3 && lb_conn_requests(srv, 1) == 2);
    lb_request_record r;
    CHECK(lb_request_at(srv, 2, &r) == 0 && strcmp(r.connection, "close") == 0);
    CHECK(lb_count_requests_with_connection_close(srv) == 1);
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.closed_max_requests == 1);

cleanup:
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* Connection groups are separate pools; closing one closes its idle connections. */
static void test_groups(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *a = NULL, *b = NULL;
    sp_response *ra = NULL, *rb = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    uint64_t ida = 0, idb = 0;
    const uint8_t *data;
    size_t len;
    int32_t existed = -1;

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    REQUIRE_OK(sp_http_request_new("GET", url, &a));
    REQUIRE_OK(sp_http_request_new("GET", url, &b));
    CHECK_OK(sp_http_request_set_connection_group(b, "tenant-b"));
    CHECK_RC(sp_http_request_set_connection_group(b, NULL), SP_E_NULL_POINTER);
    REQUIRE_OK(sp_request(m, a, &ra));
    CHECK_OK(sp_response_read_all(ra, &data, &len));
    CHECK_OK(sp_response_connection_id(ra, &ida));
    REQUIRE_OK(sp_request(m, b, &rb));
    CHECK_OK(sp_response_read_all(rb, &data, &len));
    CHECK_OK(sp_response_connection_id(rb, &idb));
    CHECK(ida != idb); /* group b does not borrow the default group's idle connection */
    CHECK(lb_connections(srv) == 2);

    CHECK_OK(sp_close_connection_group(p, "tenant-b", &existed));
    CHECK(existed == 1);
    CHECK_OK(sp_close_connection_group(p, "no-such-group", &existed));
    CHECK(existed == 0);
    CHECK_OK(sp_close_connection_group(p, "tenant-b", NULL));
    CHECK(wait_conn_closed(srv, 1, 2000));
    CHECK(lb_conn_is_open(srv, 0) == 1); /* the default group's connection is untouched */
    sp_statistics st;
    CHECK_OK(get_stats(p, &st));
    CHECK(st.closed_group == 1);

cleanup:
    sp_response_free(ra);
    sp_response_free(rb);
    sp_http_request_free(a);
    sp_http_request_free(b);
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

/* Lease timeout 0 set while idle connections exist. Whatever connection each request gets,
 * every request carries "Connection: close", no connection serves two requests after the
 * switch, and nothing stays open.
 * (The header says each request "gets a new connection"; the library instead lets an idle
 * connection serve one last request, as .NET Framework does. Not asserted either way here;
 * see the report.) */
static void test_lease_zero_warm_pool(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_response *r1 = NULL, *r2 = NULL;
    char url[256];
    make_url(url, sizeof url, srv, "/hello");
    const uint8_t *data;
    size_t len;
    uint64_t ids[3] = {0};

    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_find(m, url, &p));
    /* Two responses held at once take two connections; both then go back idle. */
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    REQUIRE_OK(sp_request(m, req, &r1));
    REQUIRE_OK(sp_request(m, req, &r2));
    CHECK_OK(sp_response_read_all(r1, &data, &len));
    CHECK_OK(sp_response_read_all(r2, &data, &len));
    sp_response_free(r1);
    sp_response_free(r2);
    r1 = r2 = NULL;
    CHECK(lb_connections(srv) == 2);

    CHECK_OK(sp_set_lease_timeout(p, 0));
    for (int i = 0; i < 3; i++) {
        fetched f;
        CHECK_OK(fetch(m, "GET", url, NULL, 0, &f));
        CHECK(f.status == 200 && body_is(&f, LB_HELLO_BODY));
        ids[i] = f.conn_id;
        fetched_free(&f);
    }
    CHECK(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    CHECK(lb_count_requests_with_connection_close(srv) == 3);
    /* Lease 0 applies to the connections opened before it too: the two idle ones are closed,
     * not reused, and each of the 3 requests gets a new connection (2 + 3 in all). */
    int nconns = lb_connections(srv);
    CHECK(nconns == 5);
    for (int i = 0; i < nconns; i++) {
        CHECK(lb_conn_requests(srv, i) == 1);
        CHECK(wait_conn_closed(srv, i, 2000));
    }
    int32_t current = -1;
    CHECK_OK(sp_get_current_connections(p, &current));
    CHECK(current == 0);

cleanup:
    sp_response_free(r1);
    sp_response_free(r2);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

/* The head in one call (sp_response_head), the remaining request options, and the manager's
 * DNS refresh timeout. */
static void test_head_options_dns(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char url[256], echo[256];
    make_url(url, sizeof url, srv, "/hello");
    make_url(echo, sizeof echo, srv, "/echo");
    const char *text = NULL, *value = NULL;
    size_t len = 0;
    int32_t v = 0;

    REQUIRE_OK(sp_manager_new(&m));
    /* DnsRefreshTimeout: .NET's default, settable to 0 or -1, validated. */
    CHECK_OK(sp_manager_get_dns_refresh_timeout(m, &v));
    CHECK(v == 120000);
    CHECK_OK(sp_manager_set_dns_refresh_timeout(m, 0));
    CHECK_RC(sp_manager_set_dns_refresh_timeout(m, -2), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_manager_get_dns_refresh_timeout(m, &v));
    CHECK(v == 0);
    CHECK_RC(sp_manager_get_dns_refresh_timeout(m, NULL), SP_E_NULL_POINTER);

    /* Read timeout and retry flag: validated; a request carrying them works. */
    REQUIRE_OK(sp_http_request_new("GET", url, &req));
    CHECK_RC(sp_http_request_set_read_timeout(req, -2), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_http_request_set_read_timeout(req, 5000));
    CHECK_RC(sp_http_request_set_retryable(req, 2), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_http_request_set_retryable(req, 1));
    REQUIRE_OK(sp_request(m, req, &resp));

    /* The head as text: status line, the fields the other getters report, a blank line. */
    CHECK_OK(sp_response_head(resp, &text, &len));
    CHECK(text != NULL && strlen(text) == len);
    CHECK(text != NULL && strncmp(text, "HTTP/1.1 200 ", 13) == 0);
    CHECK(len >= 4 && strcmp(text + len - 4, "\r\n\r\n") == 0);
    CHECK_OK(sp_response_header(resp, "content-length", &value));
    char line[64];
    snprintf(line, sizeof line, "\r\nContent-Length: %s\r\n", value ? value : "?");
    CHECK(text != NULL && strstr(text, line) != NULL);
    CHECK_RC(sp_response_head(resp, NULL, &len), SP_E_NULL_POINTER);
    sp_response_free(resp);
    resp = NULL;
    CHECK_RC(sp_response_head(resp, &text, &len), SP_E_INVALID_HANDLE);

    /* A POST marked retryable is sent once when nothing fails. */
    sp_http_request_free(req);
    req = NULL;
    REQUIRE_OK(sp_http_request_new("POST", echo, &req));
    CHECK_OK(sp_http_request_set_body(req, (const uint8_t *)"x", 1));
    CHECK_OK(sp_http_request_set_retryable(req, 1));
    REQUIRE_OK(sp_request(m, req, &resp));
    CHECK(lb_requests(srv) == 2);

cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

int main(void) {
    /* Output order matters more than speed here: stdout and stderr interleave readably. */
    setvbuf(stdout, NULL, _IONBF, 0);

    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"version", test_version},
        {"seed_flow", test_seed_flow},
        {"find_same_point", test_find_same_point},
        {"manager_defaults", test_manager_defaults},
        {"sequential_keepalive", test_sequential_keepalive},
        {"free_before_read", test_free_before_read},
        {"small_reads", test_small_reads},
        {"chunked", test_chunked},
        {"malformed_and_close", test_malformed_and_close},
        {"lease_zero", test_lease_zero},
        {"keep_alive_off", test_keep_alive_off},
        {"ranges", test_ranges},
        {"headers", test_headers},
        {"errors", test_errors},
        {"response_double_free", test_response_double_free},
        {"connect_refused", test_connect_refused},
        {"manager_closed", test_manager_closed},
        {"post_echo", test_post_echo},
        {"body_reader", test_body_reader},
        {"threads", test_threads},
        {"timeouts", test_timeouts},
        {"lease_expiry", test_lease_expiry},
        {"idle_reaper", test_idle_reaper},
        {"max_requests", test_max_requests},
        {"groups", test_groups},
        {"max_service_points", test_max_service_points},
        {"lease_zero_warm_pool", test_lease_zero_warm_pool},
        {"head_options_dns", test_head_options_dns},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int failed_before = g_failed;
        printf("== %s\n", tests[i].name);
        tests[i].fn();
        printf("   %s\n", g_failed == failed_before ? "ok" : "FAILED");
    }
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
