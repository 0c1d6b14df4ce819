/* Shared by the asynchronous C bench clients: a response body read the way the guide tells an
 * event loop to read it. What has arrived is taken with sp_response_read_now (which never
 * waits); only while nothing has does sp_response_read_async_queued wait on the completion
 * queue, and its callback takes what has arrived again. At the end of the body (or on an
 * error) the reader's `done` callback runs with SP_OK (or the error) and the response freed. */
#ifndef ASYNC_BODY_H
#define ASYNC_BODY_H

#include <servicepoint.h>
#include <stdint.h>
#include <stdio.h>

#define ASYNC_BODY_READ_MAX 65536

typedef struct async_body {
    sp_response *response;
    sp_operation *op;
    sp_completion_queue *queue;
    long long bytes;
    /* Runs once the body has ended or failed; the response is freed by then. */
    void (*done)(struct async_body *body, sp_result rc);
} async_body;

static void async_body_take(async_body *b);

/* Body errors are counted by the callers; the first one is shown. */
static int async_body_shown;

static void async_body_end(async_body *b, sp_result rc) {
    if (rc != SP_OK && !async_body_shown++) fprintf(stderr, "body: %s\n", sp_last_error());
    sp_response_free(b->response);
    b->response = NULL;
    b->done(b, rc);
}

static void async_body_on_read(void *userdata, sp_result rc, const uint8_t *data, size_t len) {
    async_body *b = userdata;
    (void)data;
    sp_operation_free(b->op);
    b->op = NULL;
    b->bytes += (long long)len;
    if (rc != SP_OK || len == 0)
        async_body_end(b, rc);
    else
        async_body_take(b);
}

/* Starts (or goes on) reading `b->response`'s body. */
static void async_body_take(async_body *b) {
    static uint8_t buf[ASYNC_BODY_READ_MAX];
    for (;;) {
        size_t n = 0;
        int32_t done = 0;
        sp_result rc = sp_response_read_now(b->response, buf, sizeof buf, &n, &done);
        if (rc != SP_OK) {
            async_body_end(b, rc);
            return;
        }
        b->bytes += (long long)n;
        if (done) {
            async_body_end(b, SP_OK);
            return;
        }
        if (n == 0) break;
    }
    sp_result rc = sp_response_read_async_queued(b->response, b->queue, ASYNC_BODY_READ_MAX,
                                                 async_body_on_read, b, &b->op);
    if (rc != SP_OK) async_body_end(b, rc);
}

#endif
