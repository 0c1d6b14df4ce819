/* servicepoint from C: sp_bench URL SECONDS THREADS LIMIT LEASE_MS
 * One manager, one service point with connection limit LIMIT and lease timeout LEASE_MS
 * (-1 keep-alive, 0 new connection per request); each thread sends GETs and streams the body
 * into one buffer. */
#include "bench_common.h"
#include <servicepoint.h>

static sp_manager *manager;
static _Atomic long long body_bytes;
static sp_http_request *requests[64];

static void *worker(void *arg) {
    bench_thread *t = arg;
    static _Thread_local uint8_t buf[65536];
    while (now_s() < t->stop_at) {
        for (int k = 0; k < 64; k++) { /* check the clock every 64 requests */
            sp_response *resp = NULL;
            if (sp_request(manager, requests[t->index], &resp) != SP_OK) {
                t->errors++;
                continue;
            }
            size_t n = 0, total = 0;
            do {
                if (sp_response_read(resp, buf, sizeof buf, &n) != SP_OK) {
                    t->errors++;
                    break;
                }
                total += n;
            } while (n > 0);
            body_bytes += (long long)total;
            sp_response_free(resp);
            t->requests++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: sp_bench URL SECONDS THREADS LIMIT LEASE_MS\n");
        return 2;
    }
    const char *url = argv[1];
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
    for (int i = 0; i < threads && i < 64; i++) {
        if (sp_http_request_new("GET", url, &requests[i]) != SP_OK) return 2;
    }
    int rc = bench_run(threads, atof(argv[2]), worker);
    fprintf(stderr, "body bytes read: %lld\n", (long long)body_bytes);
    for (int i = 0; i < threads && i < 64; i++) sp_http_request_free(requests[i]);
    sp_point_free(point);
    sp_manager_free(manager);
    return rc;
}
