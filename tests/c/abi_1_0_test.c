/*
 * abi_1_0_test.c: what ABI 2 changed since ABI 1, tested from C against
 * include/servicepoint.h only (issue 10, items 4 and 5):
 *   - one name, one concept: sp_manager_set/get_max_service_point_idle_time;
 *   - a getter for every setter: the TLS options and the request description;
 *   - sp_strerror from the enum: every code has its own text, unknown numbers one text;
 *   - sp_statistics without undefined bytes, closed_in_flight, closed_address_gone, pipelined
 *     and pipeline_replays appended;
 *   - mutable handles where a function changes state (a compile-time check: the calls
 *     below pass `sp_X *`, and the getters accept `const sp_X *`).
 *
 * Exit status: 0 if every CHECK passed, 1 otherwise.
 */
#include "servicepoint.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int g_passed;
static int g_failed;

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

#define CHECK_RC(call, want)                                                               \
    do {                                                                                   \
        sp_result got_ = (call);                                                           \
        sp_result want_ = (want);                                                          \
        if (got_ == want_) {                                                               \
            g_passed++;                                                                    \
        } else {                                                                           \
            g_failed++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n    returned %d (%s), expected %d\n", \
                    __FILE__, __LINE__, #call, (int)got_, sp_strerror(got_), (int)want_);  \
        }                                                                                  \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, SP_OK)

/* Getters take const handles: these pointers are what a read-only caller holds. */
static int32_t get_int(sp_result (*f)(const sp_manager *, int32_t *), const sp_manager *m) {
    int32_t v = -7;
    CHECK_OK(f(m, &v));
    return v;
}

static int32_t req_int(sp_result (*f)(const sp_http_request *, int32_t *),
                       const sp_http_request *r) {
    int32_t v = -7;
    CHECK_OK(f(r, &v));
    return v;
}

static void test_version(void) {
    CHECK(SP_ABI_VERSION == 2);
    CHECK(sp_abi_version() == SP_ABI_VERSION);
}

static void test_manager_names_and_tls_getters(void) {
    sp_manager *m = NULL;
    CHECK_OK(sp_manager_new(&m));
    CHECK(get_int(sp_manager_get_max_service_point_idle_time, m) == 100000);
    CHECK_OK(sp_manager_set_max_service_point_idle_time(m, 2500));
    CHECK(get_int(sp_manager_get_max_service_point_idle_time, m) == 2500);
    CHECK_RC(sp_manager_set_max_service_point_idle_time(m, -2), SP_E_OUT_OF_RANGE);
    CHECK(get_int(sp_manager_get_max_service_point_idle_time, m) == 2500);

    CHECK(get_int(sp_manager_get_system_roots, m) == 1);
    CHECK_OK(sp_manager_set_system_roots(m, 0));
    CHECK(get_int(sp_manager_get_system_roots, m) == 0);
    CHECK(get_int(sp_manager_get_min_tls_version, m) == SP_TLS_1_2);
    CHECK_OK(sp_manager_set_min_tls_version(m, SP_TLS_1_3));
    CHECK(get_int(sp_manager_get_min_tls_version, m) == SP_TLS_1_3);
    CHECK_RC(sp_manager_set_min_tls_version(m, 11), SP_E_OUT_OF_RANGE);
    CHECK(get_int(sp_manager_get_min_tls_version, m) == SP_TLS_1_3);
    CHECK(get_int(sp_manager_get_ca_count, m) == 0);
    CHECK(get_int(sp_manager_has_client_certificate, m) == 0);
    CHECK(get_int(sp_manager_has_certificate_validator, m) == 0);
    CHECK_RC(sp_manager_get_ca_count(m, NULL), SP_E_NULL_POINTER);
    sp_manager_free(m);
    CHECK_RC(sp_manager_get_system_roots(m, &(int32_t){0}), SP_E_INVALID_HANDLE);
}

static void test_request_getters(void) {
    sp_http_request *r = NULL;
    char buf[64];
    char small[5];
    size_t len = 0;

    CHECK_OK(sp_http_request_new("PUT", "HTTP://Example.COM:80/p?q=1#frag", &r));
    CHECK(req_int(sp_http_request_get_keep_alive, r) == -1);
    CHECK(req_int(sp_http_request_get_timeout, r) == 100000);
    CHECK(req_int(sp_http_request_get_read_timeout, r) == 300000);
    CHECK(req_int(sp_http_request_get_retryable, r) == 0);

    CHECK_OK(sp_http_request_get_method(r, buf, sizeof buf, &len));
    CHECK(len == 3 && strcmp(buf, "PUT") == 0);
    CHECK_OK(sp_http_request_get_url(r, NULL, 0, &len));
    CHECK(len == strlen("http://example.com/p?q=1"));
    CHECK_OK(sp_http_request_get_url(r, buf, sizeof buf, &len));
    CHECK(strcmp(buf, "http://example.com/p?q=1") == 0);
    /* snprintf-style: cut and NUL-terminated, the whole length reported. */
    memset(small, 'x', sizeof small);
    CHECK_OK(sp_http_request_get_url(r, small, sizeof small, &len));
    CHECK(len == strlen("http://example.com/p?q=1") && memcmp(small, "http\0", 5) == 0);
    CHECK_RC(sp_http_request_get_url(r, NULL, 4, &len), SP_E_NULL_POINTER);
    CHECK_OK(sp_http_request_get_connection_group(r, buf, sizeof buf, &len));
    CHECK(len == 0 && buf[0] == '\0');

    CHECK_OK(sp_http_request_set_keep_alive(r, 0));
    CHECK_OK(sp_http_request_set_timeout(r, SP_INFINITE));
    CHECK_OK(sp_http_request_set_read_timeout(r, 1234));
    CHECK_OK(sp_http_request_set_retryable(r, 1));
    CHECK_OK(sp_http_request_set_connection_group(r, "group-a"));
    CHECK(req_int(sp_http_request_get_keep_alive, r) == 0);
    CHECK(req_int(sp_http_request_get_timeout, r) == -1);
    CHECK(req_int(sp_http_request_get_read_timeout, r) == 1234);
    CHECK(req_int(sp_http_request_get_retryable, r) == 1);
    CHECK_OK(sp_http_request_get_connection_group(r, buf, sizeof buf, &len));
    CHECK(len == 7 && strcmp(buf, "group-a") == 0);
    /* -1 returns keep-alive to the manager's default. */
    CHECK_OK(sp_http_request_set_keep_alive(r, -1));
    CHECK(req_int(sp_http_request_get_keep_alive, r) == -1);
    CHECK_RC(sp_http_request_set_keep_alive(r, 2), SP_E_OUT_OF_RANGE);
    CHECK(req_int(sp_http_request_get_keep_alive, r) == -1);
    sp_http_request_free(r);
    CHECK_RC(sp_http_request_get_method(r, buf, sizeof buf, &len), SP_E_INVALID_HANDLE);
}

static void test_strerror(void) {
    int code;
    /* The last code: update when one is appended. */
    for (code = SP_OK; code <= SP_E_PROXY_CONNECT; code++)
        CHECK(strcmp(sp_strerror(code), "unknown result code") != 0);
    CHECK(strcmp(sp_strerror(SP_E_CONNECTION_RESET), "connection reset by the server") == 0);
    CHECK(strcmp(sp_strerror(SP_E_PROXY_CONNECT + 1), "unknown result code") == 0);
    CHECK(strcmp(sp_strerror(-1), "unknown result code") == 0);
}

static void test_statistics_bytes(void) {
    sp_manager *m = NULL;
    sp_point *p = NULL;
    unsigned char raw[sizeof(sp_statistics) + 8];
    sp_statistics st;
    size_t i;
    uint32_t size = (uint32_t)sizeof(sp_statistics);
    int all_zero = 1;

    /* No padding: the u32 pair, then 8-byte counters, pipeline_replays last. */
    CHECK(offsetof(sp_statistics, reserved) == 4);
    CHECK(offsetof(sp_statistics, open) == 8);
    CHECK(offsetof(sp_statistics, closed_in_flight) == 160);
    CHECK(offsetof(sp_statistics, closed_address_gone) == 168);
    CHECK(offsetof(sp_statistics, pipeline_replays) + 8 == sizeof(sp_statistics));

    CHECK_OK(sp_manager_new(&m));
    CHECK_OK(sp_find(m, "http://127.0.0.1:9/", &p));
    memset(raw, 0xA5, sizeof raw);
    memcpy(raw, &size, sizeof size);
    CHECK_OK(sp_get_statistics(p, (sp_statistics *)(void *)raw));
    for (i = 4; i < sizeof(sp_statistics); i++)
        if (raw[i] != 0) all_zero = 0;
    CHECK(all_zero); /* reserved and every counter of a new service point */
    for (i = sizeof(sp_statistics); i < sizeof raw; i++) CHECK(raw[i] == 0xA5);
    memcpy(&st, raw, sizeof st);
    CHECK(st.struct_size == sizeof(sp_statistics) && st.closed_in_flight == 0 &&
          st.closed_address_gone == 0 && st.pipelined == 0 && st.pipeline_replays == 0);
    sp_point_free(p);
    sp_manager_free(m);
}

int main(void) {
    test_version();
    test_manager_names_and_tls_getters();
    test_request_getters();
    test_strerror();
    test_statistics_bytes();
    printf("abi_1_0_test: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
