/*
 * Reliability guarantees seen from a C host (issue 9):
 *  - no SIGPIPE: a large upload to a server that answers 413 and closes leaves the process
 *    alive (C keeps SIGPIPE's default action, which kills) and the 413 reaches the caller;
 *  - fork(): a child never uses its parent's pooled connections, and its runtime and reaper
 *    work, even when forked while two threads of the parent are inside sp_request();
 *  - callbacks: a body reader may call a setter of its own request, and a blocking call from
 *    inside it returns SP_E_WRONG_THREAD at once.
 * Every wait is bounded (alarm() in children, loop counts everywhere).
 */
#define _POSIX_C_SOURCE 200809L
#include "loopback_server.h"
#include <servicepoint.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
static int checks;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(cond)) {                                                                         \
            failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                             \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, " (last error: %s)\n", sp_last_error());                         \
        }                                                                                      \
    } while (0)

static char base[64];

/* PUT /echo with `token` as the body; returns 1 if the response body is exactly `token`. */
static int echo_matches(sp_manager *m, const char *token) {
    char url[128];
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    const uint8_t *body = NULL;
    size_t len = 0;
    int ok = 0;
    snprintf(url, sizeof url, "%s/echo", base);
    if (sp_http_request_new("PUT", url, &req) != SP_OK) return 0;
    sp_http_request_set_body(req, (const uint8_t *)token, strlen(token));
    sp_http_request_set_timeout(req, 5000);
    sp_http_request_set_read_timeout(req, 5000);
    if (sp_request(m, req, &resp) == SP_OK && sp_response_read_all(resp, &body, &len) == SP_OK)
        ok = len == strlen(token) && memcmp(body, token, len) == 0;
    if (!ok) {
        uint64_t id = 0;
        int32_t reused = -1;
        sp_response_connection_id(resp, &id);
        sp_response_connection_reused(resp, &reused);
        fprintf(stderr, "pid %d %s: conn %llu reused %d len %zu error %s\n", (int)getpid(),
                token, (unsigned long long)id, (int)reused, len, sp_last_error());
    }
    sp_response_free(resp);
    sp_http_request_free(req);
    return ok;
}

/* ---- no SIGPIPE ---- */

/* A server that reads the request head, answers 413, half-closes (FIN), then resets (RST)
 * with the upload unread: the client's next write fails with EPIPE, which raises SIGPIPE
 * unless the write says MSG_NOSIGNAL. Serves `rounds` connections. */
typedef struct {
    int listen_fd;
    int rounds;
} rude_server;

static void *rude_serve(void *arg) {
    rude_server *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        int fd = accept(r->listen_fd, NULL, NULL);
        if (fd < 0) return NULL;
        char buf[4096];
        size_t seen = 0;
        char last4[4] = {0};
        while (memcmp(last4, "\r\n\r\n", 4) != 0 && seen < 65536) {
            ssize_t n = recv(fd, buf, 1, 0);
            if (n <= 0) break;
            memmove(last4, last4 + 1, 3);
            last4[3] = buf[0];
            seen++;
        }
        const char *reply = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\n"
                            "Connection: close\r\n\r\ntoo big";
        send(fd, reply, strlen(reply), MSG_NOSIGNAL);
        shutdown(fd, SHUT_WR);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    return NULL;
}

static void test_no_sigpipe_on_early_413(void) {
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    CHECK(sa.sa_handler == SIG_DFL, "SIGPIPE keeps its default action in this test");
    rude_server rude = {socket(AF_INET, SOCK_STREAM, 0), 3};
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(rude.listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(rude.listen_fd, 8) != 0 ||
        getsockname(rude.listen_fd, (struct sockaddr *)&addr, &alen) != 0) {
        CHECK(0, "rude server listens");
        return;
    }
    pthread_t th;
    pthread_create(&th, NULL, rude_serve, &rude);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/upload", (int)ntohs(addr.sin_port));
    sp_manager *m = NULL;
    sp_manager_new(&m);
    size_t big = 32u << 20;
    uint8_t *body = malloc(big);
    memset(body, 'x', big);
    for (int round = 0; round < rude.rounds; round++) {
        sp_http_request *req = NULL;
        sp_response *resp = NULL;
        sp_http_request_new("POST", url, &req);
        sp_http_request_set_body(req, body, big);
        sp_http_request_set_timeout(req, 10000);
        sp_result rc = sp_request(m, req, &resp);
        /* Being alive to check this is the main point; the answer should be the 413. */
        int32_t status = 0;
        const uint8_t *text = NULL;
        size_t len = 0;
        if (rc == SP_OK) {
            sp_response_status(resp, &status);
            sp_response_read_all(resp, &text, &len);
        }
        CHECK(rc == SP_OK && status == 413 && len == 7 && memcmp(text, "too big", 7) == 0,
              "round %d: 413 delivered (rc %d, status %d)", round, (int)rc, (int)status);
        sp_response_free(resp);
        sp_http_request_free(req);
    }
    pthread_join(th, NULL);
    close(rude.listen_fd);
    sigaction(SIGPIPE, NULL, &sa);
    CHECK(sa.sa_handler == SIG_DFL, "the library did not change SIGPIPE's disposition");
    CHECK(echo_matches(m, "after the 413"), "the manager still works");
    free(body);
    sp_manager_free(m);
}

/* ---- fork ---- */

typedef struct {
    sp_manager *m;
    volatile int stop;
    int mismatches;
    int done;
} busy_thread;

static void *parent_requests(void *arg) {
    busy_thread *t = arg;
    char token[64];
    for (int i = 0; i < 100000 && !t->stop; i++) {
        snprintf(token, sizeof token, "parent-%p-%d", (void *)t, i);
        if (!echo_matches(t->m, token)) t->mismatches++;
        t->done++;
    }
    return NULL;
}

/* In the child: its own requests with its own bodies, then the reaper must close an idle
 * connection. Exit status 0 on success. */
static int child_body(sp_manager *m, int requests) {
    alarm(20); /* a hang kills the child with SIGALRM, which the parent reports */
    char token[64];
    for (int i = 0; i < requests; i++) {
        snprintf(token, sizeof token, "child-%d-%d", (int)getpid(), i);
        if (!echo_matches(m, token)) {
            fprintf(stderr, "child %d: request %d got another body (%s)\n", (int)getpid(), i,
                    sp_last_error());
            return 1;
        }
    }
    sp_point *p = NULL;
    if (sp_find(m, base, &p) != SP_OK) return 2;
    sp_set_max_idle_time(p, 50);
    int reaped = 0;
    for (int i = 0; i < 250 && !reaped; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int32_t current = -1;
        sp_get_current_connections(p, &current);
        reaped = current == 0;
    }
    sp_set_max_idle_time(p, 100000);
    sp_point_free(p);
    if (!reaped) {
        fprintf(stderr, "child %d: the reaper did not close the idle connection\n",
                (int)getpid());
        return 3;
    }
    return 0;
}

static int wait_child(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "child %d killed by signal %d\n", (int)pid, WTERMSIG(status));
        return -1;
    }
    return WEXITSTATUS(status);
}

static void test_fork(void) {
    sp_manager *m = NULL;
    sp_manager_new(&m);
    sp_point *p = NULL;
    sp_find(m, base, &p);
    sp_set_connection_limit(p, 4);
    CHECK(echo_matches(m, "warm"), "warm-up");

    /* 1. Parent and child each send 1,000 requests on the same manager at once. */
    pthread_t th;
    busy_thread t = {m, 0, 0, 0};
    pthread_create(&th, NULL, parent_requests, &t);
    pid_t pid = fork();
    if (pid == 0) _exit(child_body(m, 1000));
    int rc = wait_child(pid);
    while (t.done < 1000) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    t.stop = 1;
    pthread_join(th, NULL);
    CHECK(rc == 0, "child with 1,000 requests: exit %d", rc);
    CHECK(t.mismatches == 0, "parent bodies all its own (%d mismatches of %d)", t.mismatches,
          t.done);

    /* 2. Thirty forks while two parent threads are inside sp_request(). */
    busy_thread a = {m, 0, 0, 0}, b = {m, 0, 0, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, parent_requests, &a);
    pthread_create(&tb, NULL, parent_requests, &b);
    int bad = 0;
    for (int i = 0; i < 30; i++) {
        pid_t c = fork();
        if (c == 0) _exit(child_body(m, 20));
        if (wait_child(c) != 0) bad++;
    }
    a.stop = b.stop = 1;
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(bad == 0, "%d of 30 children failed or hung", bad);
    CHECK(a.mismatches + b.mismatches == 0, "parent threads got only their own bodies");
    CHECK(echo_matches(m, "parent after the forks"), "the parent's pool still works");
    sp_point_free(p);
    sp_manager_free(m);
}

/* ---- callbacks ---- */

typedef struct {
    sp_manager *m;
    sp_http_request *self;
    int calls;
    sp_result setter_rc;
    sp_result request_rc;
} reentrant;

static int32_t reentrant_reader(void *userdata, uint8_t *buf, size_t cap, size_t *out_n) {
    reentrant *r = userdata;
    if (r->calls++ == 0) {
        r->setter_rc = sp_http_request_set_timeout(r->self, 4000);
        sp_response *inner = NULL;
        r->request_rc = sp_request(r->m, r->self, &inner);
        sp_response_free(inner);
        const char *text = "from the reader";
        size_t n = strlen(text) < cap ? strlen(text) : cap;
        memcpy(buf, text, n);
        *out_n = n;
        return 0;
    }
    *out_n = 0;
    return 0;
}

static void test_reentrant_callback(void) {
    sp_manager *m = NULL;
    sp_manager_new(&m);
    char url[128];
    snprintf(url, sizeof url, "%s/echo", base);
    sp_http_request *req = NULL;
    sp_http_request_new("POST", url, &req);
    reentrant r = {m, req, 0, -1, -1};
    sp_http_request_set_body_reader(req, reentrant_reader, &r);
    sp_response *resp = NULL;
    time_t start = time(NULL);
    sp_result rc = sp_request(m, req, &resp);
    const uint8_t *body = NULL;
    size_t len = 0;
    if (rc == SP_OK) sp_response_read_all(resp, &body, &len);
    CHECK(rc == SP_OK && len == 15 && memcmp(body, "from the reader", 15) == 0,
          "the request completed (rc %d)", (int)rc);
    CHECK(r.setter_rc == SP_OK, "a setter from inside the reader works (rc %d)",
          (int)r.setter_rc);
    CHECK(r.request_rc == SP_E_WRONG_THREAD, "sp_request from inside the reader (rc %d)",
          (int)r.request_rc);
    CHECK(time(NULL) - start < 3, "no wait");
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
}

int main(int argc, char **argv) {
    /* "fork" runs the fork test alone, in a build without AddressSanitizer: under ASan on a
     * saturated machine a few children in 30 hung (likely, not confirmed: ASan's fork handling
     * holds its allocator lock while the library's prepare handler waits for threads blocked
     * in malloc); everything else runs sanitized. */
    int fork_only = argc > 1 && strcmp(argv[1], "fork") == 0;
    signal(SIGPIPE, SIG_DFL);
    lb_server *server = lb_start();
    if (!server) {
        perror("lb_start");
        return 1;
    }
    snprintf(base, sizeof base, "http://127.0.0.1:%d", lb_port(server));
    if (fork_only) {
        test_fork();
    } else {
        test_no_sigpipe_on_early_413();
        test_reentrant_callback();
    }
    lb_stop(server);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
