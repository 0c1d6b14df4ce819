/* servicepoint from C over a slow link: sp_pipeline_bench URL COUNT DEPTH
 * One thread, one manager, one service point with connection limit 1, COUNT GETs sent at
 * once the way an event loop would (sp_request_async_queued on one completion queue whose
 * descriptor is polled; each body read as async_body.h reads it). DEPTH 0 leaves
 * pipelining off (the default); DEPTH N turns it on with that depth. A warm-up request first
 * opens the connection (and shows the server answers HTTP/1.1). Prints one line:
 *   PIPELINE requests=<n> seconds=<wall> rps=<n/s> pipelined=<n> replays=<n> connections=<n>
 *            errors=<n>
 * (bench/pipeline.sh runs it through bench/delay_proxy.py). */
#include "async_body.h"
#include <poll.h>
#include <servicepoint.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_COUNT 4096

static sp_completion_queue *queue;
static async_body slots[MAX_COUNT];
static int pending;
static long errors;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void body_done(async_body *b, sp_result rc) {
    (void)b;
    if (rc != SP_OK) errors++;
    pending--;
}

static void on_response(void *userdata, sp_result rc, sp_response *response) {
    async_body *b = userdata;
    sp_operation_free(b->op);
    b->op = NULL;
    if (rc != SP_OK) {
        if (errors++ == 0) fprintf(stderr, "request: %s\n", sp_last_error());
        pending--;
        return;
    }
    b->response = response;
    b->queue = queue;
    b->done = body_done;
    async_body_take(b);
}

static int drain(void) {
    int32_t fd = -1;
    if (sp_completion_queue_fd(queue, &fd) != SP_OK) return -1;
    while (pending > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 30000) <= 0) {
            fprintf(stderr, "poll: nothing completed in 30 s (%d pending)\n", pending);
            return -1;
        }
        size_t ran = 0;
        if (sp_completion_queue_run(queue, SIZE_MAX, &ran) != SP_OK) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: sp_pipeline_bench URL COUNT DEPTH\n");
        return 2;
    }
    const char *url = argv[1];
    int count = atoi(argv[2]);
    int depth = atoi(argv[3]);
    if (count < 1 || count > MAX_COUNT) return 2;
    sp_manager *manager = NULL;
    sp_point *point = NULL;
    sp_http_request *request = NULL;
    if (sp_manager_new(&manager) != SP_OK || sp_find(manager, url, &point) != SP_OK ||
        sp_set_connection_limit(point, 1) != SP_OK ||
        sp_http_request_new("GET", url, &request) != SP_OK ||
        sp_completion_queue_new(&queue) != SP_OK) {
        fprintf(stderr, "setup: %s\n", sp_last_error());
        return 1;
    }
    if (depth > 0 && (sp_set_pipeline_depth(point, depth) != SP_OK ||
                      sp_set_pipelining(point, 1) != SP_OK)) {
        fprintf(stderr, "pipelining: %s\n", sp_last_error());
        return 1;
    }
    /* Warm-up: opens the connection. */
    pending = 1;
    if (sp_request_async_queued(manager, request, queue, on_response, &slots[0], &slots[0].op) !=
            SP_OK ||
        drain() != 0) {
        fprintf(stderr, "warm-up failed: %s\n", sp_last_error());
        return 1;
    }
    double start = now_s();
    pending = count;
    for (int i = 0; i < count; i++) {
        if (sp_request_async_queued(manager, request, queue, on_response, &slots[i],
                                    &slots[i].op) != SP_OK) {
            errors++;
            pending--;
        }
    }
    int rc = drain();
    double took = now_s() - start;
    sp_statistics st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    sp_get_statistics(point, &st);
    printf("PIPELINE requests=%d seconds=%.4f rps=%.1f pipelined=%llu replays=%llu "
           "connections=%llu errors=%ld\n",
           count, took, count / took, (unsigned long long)st.pipelined,
           (unsigned long long)st.pipeline_replays, (unsigned long long)st.connections_opened,
           errors);
    sp_completion_queue_free(queue);
    sp_http_request_free(request);
    sp_point_free(point);
    sp_manager_free(manager);
    return rc == 0 && errors == 0 ? 0 : 1;
}
