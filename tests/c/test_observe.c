/*
 * C API tests, topic "observe": the log callback sees connections opened, reused and closed
 * (with the reason) and nothing when off; histograms count every request's queue wait and
 * every closed connection's lifetime, per service point and manager-wide; a response says
 * whether it was retried.
 */
#include "test_support.h"

typedef struct {
    int lines;
    int opened, reused, closed;
    char last[512];
} log_seen;

static void on_log(void *userdata, int32_t level, const char *message) {
    log_seen *s = userdata;
    (void)level;
    s->lines++;
    if (strstr(message, " opened to ")) s->opened++;
    if (strstr(message, " reused for request ")) s->reused++;
    if (strstr(message, " closed after ")) s->closed++;
    snprintf(s->last, sizeof s->last, "%s", message);
}

static void get_body(sp_manager *m, const char *url) {
    fetched f;
    if (fetch(m, "GET", url, NULL, 0, &f) == SP_OK) fetched_free(&f);
}

static void test_log_callback(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    char hello[256], bye[256];
    make_url(hello, sizeof hello, srv, "/hello");
    make_url(bye, sizeof bye, srv, "/close");
    REQUIRE_OK(sp_manager_new(&m));
    int32_t level = -1;
    CHECK_OK(sp_manager_get_log_level(m, &level));
    CHECK(level == SP_LOG_OFF);
    log_seen seen;
    memset(&seen, 0, sizeof seen);
    CHECK_RC(sp_manager_set_log_callback(m, 9, on_log, &seen), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_manager_set_log_callback(m, SP_LOG_DEBUG, on_log, &seen));
    get_body(m, hello);
    get_body(m, hello);
    get_body(m, bye);
    CHECK(seen.opened == 1 && seen.reused == 2 && seen.closed == 1);
    CHECK(strstr(seen.last, "because the server ends it") != NULL);
    CHECK_OK(sp_manager_set_log_callback(m, SP_LOG_WARN, on_log, &seen));
    int before = seen.lines;
    get_body(m, hello);
    CHECK(seen.lines == before); /* no Info/Debug at Warn */
    CHECK_OK(sp_manager_set_log_callback(m, SP_LOG_OFF, NULL, NULL));
cleanup:
    sp_manager_free(m);
    lb_stop(srv);
}

static void test_histograms_and_totals(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_point *p = NULL;
    char hello[256], bye[256];
    make_url(hello, sizeof hello, srv, "/hello");
    make_url(bye, sizeof bye, srv, "/close");
    REQUIRE_OK(sp_manager_new(&m));
    get_body(m, hello);
    get_body(m, hello);
    get_body(m, bye);
    get_body(m, hello);
    REQUIRE_OK(sp_find(m, hello, &p));
    sp_histogram h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    CHECK_OK(sp_get_histogram(p, SP_METRIC_QUEUE_WAIT, &h));
    uint64_t sum = 0;
    for (uint32_t i = 0; i < h.bucket_count; i++) sum += h.buckets[i];
    CHECK(h.count == 4 && sum == 4 && h.bucket_count == SP_HISTOGRAM_BUCKETS);
    CHECK_OK(sp_get_histogram(p, SP_METRIC_CONNECTION_LIFETIME, &h));
    CHECK(h.count == 1); /* the connection /close ended */
    CHECK_RC(sp_get_histogram(p, 7, &h), SP_E_OUT_OF_RANGE);
    CHECK_OK(sp_manager_get_histogram(m, SP_METRIC_QUEUE_WAIT, &h));
    CHECK(h.count == 4);
    CHECK(sp_histogram_bound_us(0) == 100);
    CHECK(sp_histogram_bound_us(SP_HISTOGRAM_BUCKETS - 1) == UINT64_MAX);
    sp_histogram small;
    small.struct_size = 4;
    CHECK_RC(sp_get_histogram(p, SP_METRIC_QUEUE_WAIT, &small), SP_E_INVALID_ARGUMENT);
    sp_statistics st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(sp_manager_get_statistics(m, &st));
    CHECK(st.requests == 4 && st.closed_server == 1 && st.open == 1 && st.idle == 1);
    CHECK(lb_requests(srv) == 4);
cleanup:
    sp_point_free(p);
    sp_manager_free(m);
    lb_stop(srv);
}

static void test_retried_flag(void) {
    lb_server *srv = start_server();
    sp_manager *m = NULL;
    sp_http_request *req = NULL;
    sp_response *resp = NULL;
    char hello[256];
    make_url(hello, sizeof hello, srv, "/hello");
    REQUIRE_OK(sp_manager_new(&m));
    REQUIRE_OK(sp_http_request_new("GET", hello, &req));
    REQUIRE_OK(sp_request(m, req, &resp));
    int32_t retried = -1;
    CHECK_OK(sp_response_retried(resp, &retried));
    CHECK(retried == 0);
cleanup:
    sp_response_free(resp);
    sp_http_request_free(req);
    sp_manager_free(m);
    lb_stop(srv);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"log_callback", test_log_callback},
        {"histograms_and_totals", test_histograms_and_totals},
        {"retried_flag", test_retried_flag},
    };
    return RUN_TESTS("observe", tests, argc, argv);
}
