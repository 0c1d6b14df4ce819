/*
 * test_support.h: what the C API tests (test_*.c, one executable per topic) share: the
 * CHECK/REQUIRE macros, the helpers every topic uses, and the runner behind each main().
 *
 * Include it first (it sets _POSIX_C_SOURCE before any system header).
 *
 * Every test talks to the embedded loopback server (examples/support/loopback_server.c) and
 * checks both sides: what the library reports (status, connection ids, statistics) and what
 * the server actually saw on the wire (connections, requests per connection, Connection
 * headers). Each test starts its own server and manager so counts are exact.
 */
#ifndef SERVICEPOINT_TEST_SUPPORT_H
#define SERVICEPOINT_TEST_SUPPORT_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "servicepoint.h"
#include "loopback_server.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks passed and failed so far in this process (test_support.c). */
extern int g_passed;
extern int g_failed;

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

/* For the setup steps a test cannot continue without: jumps to the test's `cleanup:`. */
#define REQUIRE_OK(call)                                                                   \
    do {                                                                                   \
        sp_result req_rc_ = (call);                                                        \
        CHECK_RC(req_rc_, SP_OK);                                                          \
        if (req_rc_ != SP_OK) goto cleanup;                                                \
    } while (0)

/* ------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------- */

/* malloc that exits on out-of-memory: tests do not try to survive it. */
void *xmalloc(size_t n);

/* Starts a loopback server; exits if it cannot. */
lb_server *start_server(void);

/* "http://127.0.0.1:<port><path>" for server `s`. */
void make_url(char *buf, size_t cap, lb_server *s, const char *path);

/* What one request/response exchange gave. */
typedef struct fetched {
    int32_t status;
    uint8_t *body; /* malloc'd copy (NUL-terminated for convenience); free with fetched_free */
    size_t len;
    uint64_t conn_id;
    int32_t reused;
    int32_t local_port;
} fetched;

void fetched_free(fetched *f);

/* Sends `method url` (with an optional body), reads the whole body and frees the response.
 * Returns the first failing call's code. */
sp_result fetch(sp_manager *m, const char *method, const char *url, const void *body,
                size_t body_len, fetched *out);

/* sp_get_statistics with struct_size set. */
sp_result get_stats(const sp_point *p, sp_statistics *st);

/* 1 if the fetched body is exactly `text`. */
int body_is(const fetched *f, const char *text);

void sleep_ms(int ms);

/* Milliseconds on the monotonic clock, for measuring how long a call took. */
double now_ms(void);

/* Waits (polling every 10 ms, at most timeout_ms) until the server sees connection `i`
 * closed. Returns 1 if it did. */
int wait_conn_closed(lb_server *srv, int i, int timeout_ms);

/* ------------------------------------------------------------------------------------------
 * Runner
 * ---------------------------------------------------------------------------------------- */

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* Runs the tests of one topic and returns the exit status (0 if every CHECK passed, 1 if one
 * failed, 2 for a bad command line). With arguments, runs only the tests they select: an
 * argument equal to a test's name selects that test; otherwise it selects every test whose
 * name contains it. `--list` prints the names. */
int run_tests(const char *topic, const test_case *tests, size_t count, int argc, char **argv);

#define RUN_TESTS(topic, tests, argc, argv)                                                \
    run_tests((topic), (tests), sizeof(tests) / sizeof((tests)[0]), (argc), (argv))

#endif
