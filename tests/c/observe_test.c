/*
 * Logging and metrics from C: the log callback sees connections opened, reused and closed
 * (with the reason) and nothing when off; histograms count every request's queue wait and
 * every closed connection's lifetime, per service point and manager-wide.
 */
#define _POSIX_C_SOURCE 200809L
#include "loopback_server.h"
#include <servicepoint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;
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

typedef struct {
    int lines;
    int opened, reused, closed;
    int max_level;
    char last[512];
} log_seen;

static void on_log(void *userdata, int32_t level, const char *message) {
    log_seen *s = userdata;
    s->lines++;
    if (level > s->max_level) s->max_level = level;
    if (strstr(message, " opened to ")) s->opened++;
    if (strstr(message, " reused for request ")) s->reused++;
    if (strstr(message, " closed after ")) s->closed++;
    snprintf(s->last, sizeof s->last, "%s", message);
}

static void get(sp_manager *m, const char *url) {
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    const uint8_t *body;
    size_t len;
    sp_http_request_new("GET", url, &req);
    if (sp_request(m, req, &resp) == SP_OK) sp_response_read_all(resp, &body, &len);
    sp_response_free(resp);
    sp_http_request_free(req);
}

int main(void) {
    lb_server *srv = lb_start();
    if (!srv) return 1;
    char hello[128], bye[128];
    snprintf(hello, sizeof hello, "http://127.0.0.1:%d/hello", lb_port(srv));
    snprintf(bye, sizeof bye, "http://127.0.0.1:%d/close", lb_port(srv));
    sp_manager *m = NULL;
    sp_manager_new(&m);

    int32_t level = -1;
    CHECK(sp_manager_get_log_level(m, &level) == SP_OK && level == SP_LOG_OFF, "off by default");
    log_seen seen = {0, 0, 0, 0, 0, ""};
    CHECK(sp_manager_set_log_callback(m, 9, on_log, &seen) == SP_E_OUT_OF_RANGE, "bad level");
    CHECK(sp_manager_set_log_callback(m, SP_LOG_DEBUG, on_log, &seen) == SP_OK, "set");
    get(m, hello);
    get(m, hello);
    get(m, bye);
    CHECK(seen.opened == 1 && seen.reused == 2 && seen.closed == 1,
          "opened %d reused %d closed %d (last: %s)", seen.opened, seen.reused, seen.closed,
          seen.last);
    CHECK(strstr(seen.last, "because the server ends it") != NULL, "reason: %s", seen.last);
    CHECK(sp_manager_set_log_callback(m, SP_LOG_WARN, on_log, &seen) == SP_OK, "warn only");
    int before = seen.lines;
    get(m, hello);
    CHECK(seen.lines == before, "no Info/Debug at Warn");
    CHECK(sp_manager_set_log_callback(m, SP_LOG_OFF, NULL, NULL) == SP_OK, "off");

    sp_point *p = NULL;
    sp_find(m, hello, &p);
    sp_histogram h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    CHECK(sp_get_histogram(p, SP_METRIC_QUEUE_WAIT, &h) == SP_OK, "queue histogram");
    uint64_t sum = 0;
    for (uint32_t i = 0; i < h.bucket_count; i++) sum += h.buckets[i];
    CHECK(h.count == 4 && sum == 4 && h.bucket_count == SP_HISTOGRAM_BUCKETS,
          "4 requests, count %llu", (unsigned long long)h.count);
    CHECK(sp_get_histogram(p, SP_METRIC_CONNECTION_LIFETIME, &h) == SP_OK && h.count == 1,
          "one closed connection");
    CHECK(sp_get_histogram(p, 7, &h) == SP_E_OUT_OF_RANGE, "unknown metric");
    CHECK(sp_manager_get_histogram(m, SP_METRIC_QUEUE_WAIT, &h) == SP_OK && h.count == 4,
          "manager-wide");
    CHECK(sp_histogram_bound_us(0) == 100 && sp_histogram_bound_us(SP_HISTOGRAM_BUCKETS - 1) ==
                                                 UINT64_MAX,
          "bounds");
    sp_histogram small;
    small.struct_size = 4;
    CHECK(sp_get_histogram(p, SP_METRIC_QUEUE_WAIT, &small) == SP_E_INVALID_ARGUMENT, "small");

    sp_statistics st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK(sp_manager_get_statistics(m, &st) == SP_OK && st.requests == 4 && st.closed_server == 1,
          "manager-wide statistics: %llu requests", (unsigned long long)st.requests);

    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    int32_t retried = -1;
    sp_http_request_new("GET", hello, &req);
    CHECK(sp_request(m, req, &resp) == SP_OK && sp_response_retried(resp, &retried) == SP_OK &&
              retried == 0,
          "not retried");
    sp_response_free(resp);
    sp_http_request_free(req);

    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
