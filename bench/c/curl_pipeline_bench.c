/* libcurl over a slow link, for comparison with sp_pipeline_bench: curl_pipeline_bench URL
 * COUNT. One multi handle limited to one connection to the host
 * (CURLMOPT_MAX_HOST_CONNECTIONS 1; libcurl removed pipelining in 7.62, so requests take
 * turns), a warm-up transfer, then COUNT transfers added at once. Prints the same PIPELINE
 * line as sp_pipeline_bench (pipelined and replays 0). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static size_t discard(char *p, size_t size, size_t n, void *u) {
    (void)p;
    (void)u;
    return size * n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long errors;

static int run(CURLM *multi, CURL **easy, int n) {
    for (int i = 0; i < n; i++) curl_multi_add_handle(multi, easy[i]);
    int running = n;
    while (running > 0) {
        if (curl_multi_perform(multi, &running) != CURLM_OK) return -1;
        if (running > 0 && curl_multi_poll(multi, NULL, 0, 30000, NULL) != CURLM_OK) return -1;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg == CURLMSG_DONE) {
                if (msg->data.result != CURLE_OK) errors++;
                curl_multi_remove_handle(multi, msg->easy_handle);
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: curl_pipeline_bench URL COUNT\n");
        return 2;
    }
    int count = atoi(argv[2]);
    if (count < 1) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    CURL **easy = calloc((size_t)count, sizeof *easy);
    for (int i = 0; i < count; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, argv[1]);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
    }
    if (run(multi, easy, 1) != 0) return 1; /* warm-up: opens the connection */
    double start = now_s();
    int rc = run(multi, easy, count);
    double took = now_s() - start;
    printf("PIPELINE requests=%d seconds=%.4f rps=%.1f pipelined=0 replays=0 connections=-1 "
           "errors=%ld\n",
           count, took, count / took, errors);
    for (int i = 0; i < count; i++) curl_easy_cleanup(easy[i]);
    free(easy);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    return rc == 0 && errors == 0 ? 0 : 1;
}
