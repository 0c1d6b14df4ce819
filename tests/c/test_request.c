/*
 * test_request.c: the servicepoint C ABI tested from C, against include/servicepoint.h only;
 * request bodies (in memory, empty, streamed by a callback, a failing callback)
 * and the remaining request options (read timeout, retryable), the head in one call and the
 * manager's DNS refresh timeout.
 *
 * Run all: ./test_request; one test: ./test_request NAME; --list for the names.
 * Exit status: 0 if every CHECK passed, 1 otherwise (2: bad arguments).
 */
#include "test_support.h"

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

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"post_echo", test_post_echo},
        {"body_reader", test_body_reader},
        {"head_options_dns", test_head_options_dns},
    };
    return RUN_TESTS("request", tests, argc, argv);
}
