/*
 * abi_misuse_runner.c: runs the misuse cases that gen_abi_misuse.py generates from
 * include/servicepoint.h (see abi_misuse.h).
 *
 *   abi_misuse            run every case
 *   abi_misuse TEXT       run the cases whose label contains TEXT, e.g. "sp_response_read("
 *   abi_misuse --list     print the labels
 *
 * A misuse that crashes must not hide the cases after it, so the cases run in a child process
 * (fork, before this process touches the library or starts a thread). The child reports on a
 * pipe which case it starts and how each ended; if it dies (signal, sanitizer exit, Rust abort,
 * per-case timeout), the parent reports that case as crashed and forks a new child for the
 * rest. Each case gets a fresh fixture (a live handle of every kind against one loopback
 * server per child) and afterwards every fixture handle must still work: a _free that frees
 * a handle of another kind, or a call that corrupts one, fails the case.
 *
 * Environment: ABI_MISUSE_CASE_TIMEOUT seconds per case (default 30).
 * Exit status: 0 if every case passed, 1 otherwise, 2 on a setup error.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include "abi_misuse.h"
#include "loopback_server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

unsigned char am_foreign_object[64];
int am_userdata;

static lb_server *g_server;
static char g_url[128];
static size_t g_current;     /* index into am_cases of the running case */
static int g_case_failed;    /* a check of the current case failed */

/* ---- checks ------------------------------------------------------------------------------ */

static void label(size_t k, char *buf, size_t cap) {
    snprintf(buf, cap, "%s(%s = %s)", am_cases[k].func, am_cases[k].param, am_cases[k].misuse);
}

void am_fail(const char *what) {
    char l[256];
    label(g_current, l, sizeof l);
    fprintf(stderr, "FAIL [%zu] %s: %s\n", g_current, l, what);
    g_case_failed = 1;
}

void am_check_rc(sp_result got, int want) {
    char msg[512];
    if (want == AM_NO_CHECK) return;
    if (want == AM_ANY_ERROR) {
        if (got != SP_OK) return;
        snprintf(msg, sizeof msg, "returned SP_OK, expected an error");
    } else {
        if ((int)got == want) return;
        snprintf(msg, sizeof msg, "returned %d (%s), expected %d (%s); sp_last_error: \"%.200s\"",
                 (int)got, sp_strerror(got), want, sp_strerror(want),
                 got != SP_OK && sp_last_error() ? sp_last_error() : "");
    }
    am_fail(msg);
}

/* A NUL within this many bytes, or the message is treated as unterminated. */
#define AM_MAX_MESSAGE 65536

void am_check_cstr(const char *s, const char *what) {
    char msg[256];
    size_t i;
    if (!s) {
        snprintf(msg, sizeof msg, "%s is NULL", what);
        am_fail(msg);
        return;
    }
    for (i = 0; i < AM_MAX_MESSAGE; i++)
        if (s[i] == 0) return;
    snprintf(msg, sizeof msg, "%s has no NUL in its first %d bytes", what, AM_MAX_MESSAGE);
    am_fail(msg);
}

/* Before each case the runner makes a call fail with a message containing this, so a failing
 * call that leaves the previous message in place is caught. */
#define AM_STALE_MARKER "abi-misuse-stale"

static void prime_last_error(void) {
    sp_http_request *r = NULL;
    if (sp_http_request_new("GET", AM_STALE_MARKER "://x", &r) == SP_OK) {
        sp_http_request_free(r);
        am_fail("setup: priming sp_last_error() with an unsupported scheme succeeded");
    } else if (!sp_last_error() || !strstr(sp_last_error(), AM_STALE_MARKER)) {
        am_fail("setup: the priming failure's message does not name the URL");
    }
}

void am_check_last_error(void) {
    const char *e = sp_last_error();
    am_check_cstr(e, "sp_last_error() after a failure");
    if (!e) return;
    if (e[0] == 0) am_fail("sp_last_error() is empty after a failure");
    else if (strstr(e, AM_STALE_MARKER))
        am_fail("sp_last_error() still holds the previous failure's message");
}

void am_check_unchanged(const void *now, const void *before, size_t n, const char *what) {
    char msg[256];
    if (memcmp(now, before, n) == 0) return;
    snprintf(msg, sizeof msg, "out-parameter %s was written although the call failed", what);
    am_fail(msg);
}

void am_check_filled(const uint8_t *buf, size_t n, uint8_t fill, const char *what) {
    char msg[256];
    size_t i;
    for (i = 0; i < n; i++) {
        if (buf[i] != fill) {
            snprintf(msg, sizeof msg, "buffer %s was written (byte %zu) although the call failed",
                     what, i);
            am_fail(msg);
            return;
        }
    }
}

/* ---- guard buffers ------------------------------------------------------------------------ */

#define AM_MAX_GUARDS 16
static struct {
    void *base;
    size_t len;
} g_guards[AM_MAX_GUARDS];
static int g_guard_count;

uint8_t *am_guard_buf(size_t n, uint8_t fill) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (n + page - 1) / page;
    size_t len;
    uint8_t *base;
    if (data_pages == 0) data_pages = 1;
    len = (data_pages + 1) * page;
    if (g_guard_count == AM_MAX_GUARDS) {
        fprintf(stderr, "abi_misuse: too many guard buffers in one case\n");
        exit(2);
    }
    base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base + data_pages * page, page, PROT_NONE) != 0) {
        perror("abi_misuse: mmap/mprotect");
        exit(2);
    }
    g_guards[g_guard_count].base = base;
    g_guards[g_guard_count].len = len;
    g_guard_count++;
    memset(base, fill, data_pages * page);
    return base + data_pages * page - n;
}

static void guards_release(void) {
    while (g_guard_count > 0) {
        g_guard_count--;
        munmap(g_guards[g_guard_count].base, g_guards[g_guard_count].len);
    }
}

/* ---- fixture ------------------------------------------------------------------------------ */

const char *am_url(void) { return g_url; }

/* The fixture operation's completion: frees its response (nothing else to do). */
static void fixture_done(void *userdata, sp_result result, sp_response *response) {
    (void)userdata;
    (void)result;
    sp_response_free(response);
}

static int fixture_open(am_fixture *f) {
    memset(f, 0, sizeof *f);
    if (sp_manager_new(&f->manager) != SP_OK) return -1;
    if (sp_find(f->manager, g_url, &f->point) != SP_OK) return -1;
    if (sp_http_request_new("GET", g_url, &f->request) != SP_OK) return -1;
    if (sp_request(f->manager, f->request, &f->response) != SP_OK) return -1;
    if (sp_request_async(f->manager, f->request, fixture_done, NULL, &f->operation) != SP_OK)
        return -1;
    if (sp_completion_queue_new(&f->queue) != SP_OK) return -1;
    if (sp_cancel_token_new(&f->token) != SP_OK) return -1;
    return 0;
}

static void fixture_close(am_fixture *f) {
    sp_operation_free(f->operation);
    sp_completion_queue_free(f->queue);
    sp_cancel_token_free(f->token);
    sp_response_free(f->response);
    sp_http_request_free(f->request);
    sp_point_free(f->point);
    sp_manager_free(f->manager);
    memset(f, 0, sizeof *f);
}

/* Every fixture handle still answers as its own kind. */
static void fixture_check_alive(am_fixture *f) {
    int32_t v;
    char msg[256];
    sp_result rc;
    if ((rc = sp_manager_get_default_connection_limit(f->manager, &v)) != SP_OK) {
        snprintf(msg, sizeof msg, "afterwards the fixture's manager is dead: %s", sp_strerror(rc));
        am_fail(msg);
    }
    if ((rc = sp_get_connection_limit(f->point, &v)) != SP_OK) {
        snprintf(msg, sizeof msg, "afterwards the fixture's point is dead: %s", sp_strerror(rc));
        am_fail(msg);
    }
    if ((rc = sp_http_request_set_retryable(f->request, 0)) != SP_OK) {
        snprintf(msg, sizeof msg, "afterwards the fixture's request is dead: %s", sp_strerror(rc));
        am_fail(msg);
    }
    if ((rc = sp_response_status(f->response, &v)) != SP_OK) {
        snprintf(msg, sizeof msg, "afterwards the fixture's response is dead: %s", sp_strerror(rc));
        am_fail(msg);
    }
    if ((rc = sp_operation_is_done(f->operation, &v)) != SP_OK) {
        snprintf(msg, sizeof msg, "afterwards the fixture's operation is dead: %s", sp_strerror(rc));
        am_fail(msg);
    }
    size_t n;
    if ((rc = sp_completion_queue_len(f->queue, &n)) != SP_OK) {
        snprintf(msg, sizeof msg, "afterwards the fixture's queue is dead: %s", sp_strerror(rc));
        am_fail(msg);
    }
    if ((rc = sp_cancel_token_is_canceled(f->token, &v)) != SP_OK) {
        snprintf(msg, sizeof msg, "afterwards the fixture's token is dead: %s", sp_strerror(rc));
        am_fail(msg);
    }
}

sp_operation *am_freed_operation(am_fixture *f) {
    sp_operation *op = NULL;
    if (sp_request_async(f->manager, f->request, fixture_done, NULL, &op) != SP_OK)
        am_fail("setup: sp_request_async for a freed handle");
    sp_operation_free(op);
    return op;
}

sp_completion_queue *am_freed_queue(am_fixture *f) {
    sp_completion_queue *q = NULL;
    (void)f;
    if (sp_completion_queue_new(&q) != SP_OK) am_fail("setup: sp_completion_queue_new");
    sp_completion_queue_free(q);
    return q;
}

sp_cancel_token *am_freed_token(am_fixture *f) {
    sp_cancel_token *t = NULL;
    (void)f;
    if (sp_cancel_token_new(&t) != SP_OK) am_fail("setup: sp_cancel_token_new");
    sp_cancel_token_free(t);
    return t;
}

sp_manager *am_freed_manager(am_fixture *f) {
    sp_manager *m = NULL;
    (void)f;
    if (sp_manager_new(&m) != SP_OK) am_fail("setup: sp_manager_new for a freed handle");
    sp_manager_free(m);
    return m;
}

sp_point *am_freed_point(am_fixture *f) {
    sp_point *p = NULL;
    if (sp_find(f->manager, g_url, &p) != SP_OK) am_fail("setup: sp_find for a freed handle");
    sp_point_free(p);
    return p;
}

sp_http_request *am_freed_request(am_fixture *f) {
    sp_http_request *r = NULL;
    (void)f;
    if (sp_http_request_new("GET", g_url, &r) != SP_OK)
        am_fail("setup: sp_http_request_new for a freed handle");
    sp_http_request_free(r);
    return r;
}

sp_response *am_freed_response(am_fixture *f) {
    sp_response *r = NULL;
    if (sp_request(f->manager, f->request, &r) != SP_OK)
        am_fail("setup: sp_request for a freed handle");
    sp_response_free(r);
    return r;
}

/* ---- child: run cases, report on the pipe ------------------------------------------------- */

static void report(int fd, const char *line) {
    size_t off = 0, len = strlen(line);
    while (off < len) {
        ssize_t n = write(fd, line + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(3);
        off += (size_t)n;
    }
}

static int child_main(const size_t *sel, size_t nsel, size_t from, int fd, unsigned timeout) {
    size_t i;
    char line[64];
    g_server = lb_start();
    if (!g_server) {
        perror("abi_misuse: lb_start");
        return 2;
    }
    snprintf(g_url, sizeof g_url, "http://127.0.0.1:%d/hello", lb_port(g_server));
    for (i = from; i < nsel; i++) {
        am_fixture f;
        g_current = sel[i];
        g_case_failed = 0;
        snprintf(line, sizeof line, "S %zu\n", i);
        report(fd, line);
        alarm(timeout);
        if (fixture_open(&f) != 0) {
            am_fail("setup: could not make the fixture");
        } else {
            prime_last_error();
            am_cases[g_current].run(&f);
            fixture_check_alive(&f);
        }
        fixture_close(&f);
        guards_release();
        alarm(0);
        snprintf(line, sizeof line, "E %zu %d\n", i, g_case_failed);
        report(fd, line);
    }
    lb_stop(g_server);
    report(fd, "D\n");
    return 0;
}

/* ---- parent ------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *t = getenv("ABI_MISUSE_CASE_TIMEOUT");
    unsigned timeout = t && atoi(t) > 0 ? (unsigned)atoi(t) : 30;
    size_t *sel = calloc(am_case_count ? am_case_count : 1, sizeof *sel);
    size_t nsel = 0, k, from = 0, passed = 0, failed = 0, crashed = 0;
    char l[256];

    if (!sel) return 2;
    for (k = 0; k < am_case_count; k++) {
        label(k, l, sizeof l);
        if (filter && strcmp(filter, "--list") == 0) {
            printf("[%zu] %s\n", k, l);
            continue;
        }
        if (!filter || strstr(l, filter)) sel[nsel++] = k;
    }
    if (filter && strcmp(filter, "--list") == 0) return 0;
    printf("abi_misuse: %zu functions, %zu cases generated from the header; running %zu\n",
           am_function_count, am_case_count, nsel);
    fflush(stdout);

    while (from < nsel) {
        int fds[2], status = 0, done = 0;
        long started = -1;
        pid_t pid;
        FILE *in;
        char buf[128];
        if (pipe(fds) != 0) {
            perror("pipe");
            return 2;
        }
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            close(fds[0]);
            exit(child_main(sel, nsel, from, fds[1], timeout));
        }
        close(fds[1]);
        in = fdopen(fds[0], "r");
        if (!in) return 2;
        while (fgets(buf, sizeof buf, in)) {
            size_t i;
            int f;
            if (sscanf(buf, "S %zu", &i) == 1) {
                started = (long)i;
            } else if (sscanf(buf, "E %zu %d", &i, &f) == 2) {
                if (f) failed++;
                else passed++;
                started = -1;
            } else if (buf[0] == 'D') {
                done = 1;
            }
        }
        fclose(in);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        if (done && WIFEXITED(status) && WEXITSTATUS(status) == 0) break;
        if (started < 0) {
            /* Died between cases (fixture teardown at exit, the server, a leak report). */
            fprintf(stderr, "abi_misuse: child died outside a case (status 0x%x)\n", status);
            failed++;
            break;
        }
        label(sel[started], l, sizeof l);
        if (WIFSIGNALED(status))
            fprintf(stderr, "CRASH [%zu] %s: killed by signal %d%s\n", sel[started], l,
                    WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (case timeout)" : "");
        else
            fprintf(stderr, "CRASH [%zu] %s: process exited with status %d mid-case "
                    "(sanitizer report or Rust abort above)\n", sel[started], l,
                    WEXITSTATUS(status));
        crashed++;
        failed++;
        from = (size_t)started + 1;
    }
    free(sel);
    printf("abi_misuse: %zu cases: %zu passed, %zu failed (%zu crashed)\n", nsel, passed, failed,
           crashed);
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed ? 1 : 0;
}
