/* servicepoint from C, asynchronously: sp_async_bench URL SECONDS IN_FLIGHT LIMIT [new|reuse]
 * One thread, one manager, one service point with connection limit LIMIT (keep-alive), and
 * IN_FLIGHT requests kept in flight the way a C event loop would: sp_request_async_queued with
 * one completion queue whose descriptor is watched with poll(2); when it is readable,
 * sp_completion_queue_run runs the callbacks on this thread. A response callback takes what
 * has arrived of the body with sp_response_read_now (which never waits) and, while nothing has,
 * waits for more with sp_response_read_async_queued (64 KiB at most per read) on the same
 * queue, whose callback takes what has arrived again; at the end of the body it frees the
 * response and sends the next request from the same slot. This is the guide's pattern for an
 * event loop, which does not know a body's size in advance (a blocking sp_response_read_all
 * would stall the loop whenever the body is not already there).
 * MODE "new" (default) makes a request description per request (sp_http_request_new, the URL
 * parsed each time) and frees it with the response, as sp_bench's default; "reuse" sends one
 * description for every request (a description is borrowed only by the call).
 * Each phase (warm-up, measured) starts IN_FLIGHT requests and ends when the clock has passed
 * its stop time and the requests in flight have finished: the last few requests of a phase
 * run with fewer in flight. Prints bench_common.h's RESULT line; CPU is the whole process's
 * (this thread and the library's runtime threads). */
#include "bench_common.h"
#include "async_body.h"
#include <poll.h>
#include <servicepoint.h>
#include <stdint.h>
#include <string.h>

#define MAX_SLOTS 256

typedef struct {
    async_body body; /* first: a callback's async_body * is its slot */
    sp_http_request *request;
} slot;

static sp_manager *manager;
static sp_completion_queue *queue;
static sp_http_request *shared_request;
static const char *url;
static int reuse;
static long long body_bytes;
static slot slots[MAX_SLOTS];
static bench_thread *current;
static int in_flight;

static void on_response(void *userdata, sp_result rc, sp_response *response);

static void start(slot *s) {
    s->request = shared_request;
    if (!reuse && sp_http_request_new("GET", url, &s->request) != SP_OK) {
        current->errors++;
        return;
    }
    if (sp_request_async_queued(manager, s->request, queue, on_response, s, &s->body.op) != SP_OK) {
        current->errors++;
        if (!reuse) sp_http_request_free(s->request);
        return;
    }
    in_flight++;
}

/* The request in slot s is over (done or failed): free it and, before the stop time, send the
 * next one from the same slot. */
static void finish(slot *s) {
    if (!reuse) sp_http_request_free(s->request);
    s->request = NULL;
    in_flight--;
    if (now_s() < current->stop_at) start(s);
}

static void body_done(async_body *body, sp_result rc) {
    slot *s = (slot *)body;
    body_bytes += body->bytes;
    body->bytes = 0;
    if (rc == SP_OK)
        current->requests++;
    else
        current->errors++;
    finish(s);
}

static void on_response(void *userdata, sp_result rc, sp_response *response) {
    slot *s = userdata;
    sp_operation_free(s->body.op);
    s->body.op = NULL;
    if (rc != SP_OK) {
        if (current->errors++ == 0) fprintf(stderr, "request: %s\n", sp_last_error());
        finish(s);
        return;
    }
    s->body.response = response;
    s->body.queue = queue;
    s->body.done = body_done;
    async_body_take(&s->body);
}

static int slot_count;

/* One phase: the event loop. */
static void *loop(void *arg) {
    current = arg;
    int32_t fd = -1;
    if (sp_completion_queue_fd(queue, &fd) != SP_OK) {
        current->errors++;
        return NULL;
    }
    for (int i = 0; i < slot_count; i++) start(&slots[i]);
    while (in_flight > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) {
            fprintf(stderr, "poll: nothing completed in 10 s (%d in flight)\n", in_flight);
            current->errors++;
            break;
        }
        size_t ran = 0;
        if (sp_completion_queue_run(queue, SIZE_MAX, &ran) != SP_OK) {
            current->errors++;
            break;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: sp_async_bench URL SECONDS IN_FLIGHT LIMIT [new|reuse]\n");
        return 2;
    }
    url = argv[1];
    slot_count = atoi(argv[3]);
    reuse = argc == 6 && strcmp(argv[5], "reuse") == 0;
    if (slot_count < 1 || slot_count > MAX_SLOTS) return 2;
    sp_point *point = NULL;
    if (sp_manager_new(&manager) != SP_OK || sp_find(manager, url, &point) != SP_OK ||
        sp_set_connection_limit(point, atoi(argv[4])) != SP_OK || sp_set_lease_timeout(point, -1) != SP_OK ||
        sp_completion_queue_new(&queue) != SP_OK) {
        fprintf(stderr, "setup: %s\n", sp_last_error());
        return 2;
    }
    /* HTTPS: trust the bench's CA (verification stays on). */
    const char *ca = getenv("BENCH_CA");
    if (ca && *ca && sp_manager_add_ca_file(manager, ca) != SP_OK) {
        fprintf(stderr, "CA: %s\n", sp_last_error());
        return 2;
    }
    if (reuse && sp_http_request_new("GET", url, &shared_request) != SP_OK) return 2;
    /* One event-loop thread per phase (bench_run's threads run one after the other). */
    int rc = bench_run(1, atof(argv[2]), loop);
    fprintf(stderr, "body bytes read: %lld\n", body_bytes);
    sp_completion_queue_free(queue);
    if (reuse) sp_http_request_free(shared_request);
    sp_point_free(point);
    sp_manager_free(manager);
    return rc;
}
