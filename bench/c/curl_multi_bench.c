/* libcurl's multi interface from C: curl_multi_bench URL SECONDS IN_FLIGHT LIMIT
 * One thread, one multi handle with CURLMOPT_MAX_HOST_CONNECTIONS LIMIT (and a connection
 * cache of that size, CURLMOPT_MAXCONNECTS), IN_FLIGHT easy handles kept in flight: the loop
 * is curl_multi_perform + curl_multi_info_read, then curl_multi_poll; a finished easy handle is
 * removed and added again (its connection went back to the multi handle's cache, so the next
 * transfer reuses a keep-alive connection). Each easy handle is set up once, as curl_bench's;
 * the body goes to a write callback that consumes it. Each phase (warm-up, measured) adds
 * IN_FLIGHT transfers and ends when the clock has passed its stop time and the transfers in
 * flight have finished. Prints bench_common.h's RESULT line. */
#include "bench_common.h"
#include <curl/curl.h>

#define MAX_HANDLES 256

static const char *url;
static long long body_bytes;
static CURLM *multi;
static CURL *handles[MAX_HANDLES];
static int handle_count;

static size_t discard(char *ptr, size_t size, size_t nmemb, void *user) {
    (void)ptr;
    (void)user;
    body_bytes += (long long)(size * nmemb);
    return size * nmemb;
}

static CURL *make_handle(void) {
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    /* HTTPS: verify against the bench's CA, as servicepoint does. */
    const char *ca = getenv("BENCH_CA");
    if (ca && *ca) curl_easy_setopt(easy, CURLOPT_CAINFO, ca);
    return easy;
}

static void *loop(void *arg) {
    bench_thread *t = arg;
    int in_flight = 0;
    for (int i = 0; i < handle_count; i++) {
        if (curl_multi_add_handle(multi, handles[i]) == CURLM_OK) in_flight++;
        else t->errors++;
    }
    while (in_flight > 0) {
        int running = 0;
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            t->errors++;
            break;
        }
        CURLMsg *msg;
        int left;
        int stop = now_s() >= t->stop_at;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *easy = msg->easy_handle;
            if (msg->data.result == CURLE_OK) {
                t->requests++;
            } else if (t->errors++ == 0) {
                fprintf(stderr, "transfer: %s\n", curl_easy_strerror(msg->data.result));
            }
            curl_multi_remove_handle(multi, easy);
            in_flight--;
            if (!stop && curl_multi_add_handle(multi, easy) == CURLM_OK) in_flight++;
        }
        if (in_flight > 0 && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK) {
            t->errors++;
            break;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: curl_multi_bench URL SECONDS IN_FLIGHT LIMIT\n");
        return 2;
    }
    url = argv[1];
    handle_count = atoi(argv[3]);
    long limit = atol(argv[4]);
    if (handle_count < 1 || handle_count > MAX_HANDLES) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, limit);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, limit);
    for (int i = 0; i < handle_count; i++) handles[i] = make_handle();
    int rc = bench_run(1, atof(argv[2]), loop);
    fprintf(stderr, "body bytes read: %lld\n", body_bytes);
    for (int i = 0; i < handle_count; i++) curl_easy_cleanup(handles[i]);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    return rc;
}
