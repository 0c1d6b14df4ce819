/* servicepoint from C: sp_bench URL SECONDS THREADS LIMIT LEASE_MS [MODE]
 * One manager, one service point with connection limit LIMIT and lease timeout LEASE_MS
 * (-1 keep-alive, 0 new connection per request); each thread sends GETs and reads every
 * response to the end.
 * MODE "new" (default) is the code a user writes (README's example): per request
 * sp_http_request_new (the URL parsed each time, as libcurl parses CURLOPT_URL on every
 * curl_easy_perform), sp_request, sp_response_read_all, sp_response_free,
 * sp_http_request_free. MODE "reuse" keeps one request description per thread and streams the
 * body into a 64 KiB buffer with sp_response_read: the cheapest way to use the library. */
#include "bench_common.h"
#include <servicepoint.h>
#include <string.h>

static sp_manager *manager;
static const char *url;
static int reuse;
static _Atomic long long body_bytes;
static sp_http_request *requests[64];

static void *worker(void *arg) {
    bench_thread *t = arg;
    static _Thread_local uint8_t buf[65536];
    while (now_s() < t->stop_at) {
        for (int k = 0; k < 64; k++) { /* check the clock every 64 requests */
            sp_http_request *request = requests[t->index];
            sp_response *resp = NULL;
            size_t total = 0;
            if (!reuse && sp_http_request_new("GET", url, &request) != SP_OK) {
                t->errors++;
                continue;
            }
            if (sp_request(manager, request, &resp) != SP_OK) {
                t->errors++;
            } else if (reuse) {
                size_t n = 0;
                do {
                    if (sp_response_read(resp, buf, sizeof buf, &n) != SP_OK) {
                        t->errors++;
                        break;
                    }
                    total += n;
                } while (n > 0);
            } else {
                const uint8_t *body = NULL;
                if (sp_response_read_all(resp, &body, &total) != SP_OK) t->errors++;
            }
            body_bytes += (long long)total;
            sp_response_free(resp);
            if (!reuse) sp_http_request_free(request);
            t->requests++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: sp_bench URL SECONDS THREADS LIMIT LEASE_MS [new|reuse]\n");
        return 2;
    }
    url = argv[1];
    reuse = argc == 7 && strcmp(argv[6], "reuse") == 0;
    int threads = atoi(argv[3]);
    sp_point *point = NULL;
    if (sp_manager_new(&manager) != SP_OK || sp_find(manager, url, &point) != SP_OK ||
        sp_set_connection_limit(point, atoi(argv[4])) != SP_OK ||
        sp_set_lease_timeout(point, atoi(argv[5])) != SP_OK) {
        fprintf(stderr, "setup: %s\n", sp_last_error());
        return 2;
    }
    /* HTTPS: trust the bench's CA (verification stays on). */
    const char *ca = getenv("BENCH_CA");
    if (ca && *ca && sp_manager_add_ca_file(manager, ca) != SP_OK) {
        fprintf(stderr, "CA: %s\n", sp_last_error());
        return 2;
    }
    for (int i = 0; reuse && i < threads && i < 64; i++) {
        if (sp_http_request_new("GET", url, &requests[i]) != SP_OK) return 2;
    }
    int rc = bench_run(threads, atof(argv[2]), worker);
    fprintf(stderr, "body bytes read: %lld\n", (long long)body_bytes);
    for (int i = 0; reuse && i < threads && i < 64; i++) sp_http_request_free(requests[i]);
    sp_point_free(point);
    sp_manager_free(manager);
    return rc;
}
