/*
 * test_support.c: helpers and the runner shared by the C API tests (see test_support.h).
 */
#include "test_support.h"

#include <time.h>

int g_passed;
int g_failed;

/* The sanitized builds' ASan defaults, so that "./test_point lease" run by hand behaves as under
 * ctest: the Rust runtime's threads and thread-locals live until exit and look like leaks to
 * LeakSanitizer (real leaks are the valgrind tests' job). $ASAN_OPTIONS still overrides it;
 * the valgrind builds never call it. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

lb_server *start_server(void) {
    lb_server *s = lb_start();
    if (!s) {
        perror("lb_start");
        exit(2);
    }
    return s;
}

void make_url(char *buf, size_t cap, lb_server *s, const char *path) {
    snprintf(buf, cap, "http://127.0.0.1:%d%s", lb_port(s), path);
}

void fetched_free(fetched *f) {
    free(f->body);
    memset(f, 0, sizeof *f);
}

sp_result fetch(sp_manager *m, const char *method, const char *url, const void *body,
                size_t body_len, fetched *out) {
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

sp_result get_stats(const sp_point *p, sp_statistics *st) {
    memset(st, 0, sizeof *st);
    st->struct_size = sizeof *st;
    return sp_get_statistics(p, st);
}

int body_is(const fetched *f, const char *text) {
    return f->len == strlen(text) && memcmp(f->body, text, f->len) == 0;
}

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int wait_conn_closed(lb_server *srv, int i, int timeout_ms) {
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (lb_conn_is_open(srv, i) == 0) return 1;
        sleep_ms(10);
    }
    return 0;
}

static void usage(const char *topic, const test_case *tests, size_t count, FILE *out) {
    fprintf(out, "usage: test_%s [--list] [TEST...]\n"
                 "  TEST: a test's name, or a part of names (runs every test it is part of)\n"
                 "tests:",
            topic);
    for (size_t i = 0; i < count; i++) fprintf(out, " %s", tests[i].name);
    fprintf(out, "\n");
}

int run_tests(const char *topic, const test_case *tests, size_t count, int argc, char **argv) {
    /* Output order matters more than speed here: stdout and stderr interleave readably. */
    setvbuf(stdout, NULL, _IONBF, 0);

    unsigned char *selected = xmalloc(count);
    memset(selected, argc > 1 ? 0 : 1, count);
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--list") == 0) {
            for (size_t i = 0; i < count; i++) printf("%s\n", tests[i].name);
            free(selected);
            return 0;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(topic, tests, count, stdout);
            free(selected);
            return 0;
        }
        int exact = 0, matched = 0;
        for (size_t i = 0; i < count; i++) {
            if (strcmp(tests[i].name, arg) == 0) {
                selected[i] = 1;
                exact = matched = 1;
            }
        }
        for (size_t i = 0; !exact && i < count; i++) {
            if (strstr(tests[i].name, arg) != NULL) {
                selected[i] = 1;
                matched = 1;
            }
        }
        if (!matched) {
            fprintf(stderr, "test_%s: no test matches \"%s\"\n", topic, arg);
            usage(topic, tests, count, stderr);
            free(selected);
            return 2;
        }
    }

    int ran = 0;
    for (size_t i = 0; i < count; i++) {
        if (!selected[i]) continue;
        int failed_before = g_failed;
        printf("== %s.%s\n", topic, tests[i].name);
        tests[i].fn();
        printf("   %s\n", g_failed == failed_before ? "ok" : "FAILED");
        ran++;
    }
    free(selected);
    printf("%s: %d test(s), %d checks passed, %d failed\n", topic, ran, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
