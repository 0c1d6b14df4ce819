/* servicepoint under contention from C:
 *   sp_contend BASE_URL ONE_PORT MANY_FIRST_PORT SECONDS THREADS_MANY THREADS_ONE
 * One manager shared by two groups of threads running at the same time:
 * - THREADS_MANY threads over 64 service points (ports MANY_FIRST_PORT .. +63, connection
 *   limit 4 each); each thread owns 64 request descriptions, one per origin, and sends GETs
 *   round-robin over them starting at its own offset;
 * - THREADS_ONE threads on one service point (ONE_PORT) with connection limit THREADS_ONE,
 *   each with its own request description.
 * Every response is read to the end into a buffer and freed, as a user would. BASE_URL is the
 * scheme and host ("http://127.0.0.1"); every request GETs /small. The RESULT line counts all
 * requests and the whole process's CPU. */
#include "bench_common.h"
#include <servicepoint.h>
#include <string.h>

#define ORIGINS 64

static sp_manager *manager;
static int threads_many;
static sp_http_request *many_req[64][ORIGINS];
static sp_http_request *one_req[64];
static _Atomic long long body_bytes;

static int fetch(sp_http_request *request, uint8_t *buf, size_t cap, bench_thread *t) {
    sp_response *resp = NULL;
    if (sp_request(manager, request, &resp) != SP_OK) {
        t->errors++;
        return 0;
    }
    size_t n = 0, total = 0;
    do {
        if (sp_response_read(resp, buf, cap, &n) != SP_OK) {
            t->errors++;
            break;
        }
        total += n;
    } while (n > 0);
    body_bytes += (long long)total;
    sp_response_free(resp);
    t->requests++;
    return 1;
}

static void *worker(void *arg) {
    bench_thread *t = arg;
    static _Thread_local uint8_t buf[16384];
    int many = t->index < threads_many;
    unsigned next = (unsigned)t->index * 4; /* spread the starting origins */
    while (now_s() < t->stop_at) {
        for (int k = 0; k < 64; k++) {
            if (many) {
                fetch(many_req[t->index][next % ORIGINS], buf, sizeof buf, t);
                next++;
            } else {
                fetch(one_req[t->index - threads_many], buf, sizeof buf, t);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: sp_contend BASE_URL ONE_PORT MANY_FIRST_PORT SECONDS THREADS_MANY THREADS_ONE\n");
        return 2;
    }
    const char *base = argv[1];
    int one_port = atoi(argv[2]), first = atoi(argv[3]);
    double seconds = atof(argv[4]);
    threads_many = atoi(argv[5]);
    int threads_one = atoi(argv[6]);
    if (threads_many < 0 || threads_one < 0 || threads_many + threads_one < 1 ||
        threads_many + threads_one > 64) {
        fprintf(stderr, "1 to 64 threads in all\n");
        return 2;
    }
    char url[256];
    sp_point *points[ORIGINS + 1] = {0};
    if (sp_manager_new(&manager) != SP_OK) return 2;
    for (int o = 0; o < ORIGINS && threads_many; o++) {
        snprintf(url, sizeof url, "%s:%d/small", base, first + o);
        if (sp_find(manager, url, &points[o]) != SP_OK ||
            sp_set_connection_limit(points[o], 4) != SP_OK ||
            sp_set_lease_timeout(points[o], SP_INFINITE) != SP_OK) {
            fprintf(stderr, "setup: %s\n", sp_last_error());
            return 2;
        }
        for (int t = 0; t < threads_many; t++)
            if (sp_http_request_new("GET", url, &many_req[t][o]) != SP_OK) return 2;
    }
    snprintf(url, sizeof url, "%s:%d/small", base, one_port);
    if (threads_one) {
        if (sp_find(manager, url, &points[ORIGINS]) != SP_OK ||
            sp_set_connection_limit(points[ORIGINS], threads_one) != SP_OK ||
            sp_set_lease_timeout(points[ORIGINS], SP_INFINITE) != SP_OK) {
            fprintf(stderr, "setup: %s\n", sp_last_error());
            return 2;
        }
        for (int t = 0; t < threads_one; t++)
            if (sp_http_request_new("GET", url, &one_req[t]) != SP_OK) return 2;
    }
    int rc = bench_run(threads_many + threads_one, seconds, worker);
    fprintf(stderr, "body bytes read: %lld\n", (long long)body_bytes);
    for (int t = 0; t < threads_many; t++)
        for (int o = 0; o < ORIGINS; o++) sp_http_request_free(many_req[t][o]);
    for (int t = 0; t < threads_one; t++) sp_http_request_free(one_req[t]);
    for (int o = 0; o <= ORIGINS; o++) sp_point_free(points[o]);
    sp_manager_free(manager);
    return rc;
}
