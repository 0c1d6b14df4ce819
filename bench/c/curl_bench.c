/* libcurl from C: curl_bench URL SECONDS THREADS FORBID_REUSE
 * One easy handle per thread, set up once and reused for every request, warm-up included
 * (libcurl's connection cache, DNS cache and TLS session cache live in the handle, so the
 * measured phase starts with a warm connection, as servicepoint's pool does); the body goes to
 * a write callback that consumes it. FORBID_REUSE=1 sets CURLOPT_FORBID_REUSE (a new
 * connection per request). libcurl's defaults otherwise: TCP_NODELAY on, no progress meter
 * (CURLOPT_NOPROGRESS defaults to 1), no header callback. */
#include "bench_common.h"
#include <curl/curl.h>

static const char *url;
static long forbid_reuse;
static _Atomic long long body_bytes;

static size_t discard(char *ptr, size_t size, size_t nmemb, void *user) {
    (void)ptr;
    (void)user;
    body_bytes += (long long)(size * nmemb);
    return size * nmemb;
}

static CURL *handles[64];

static CURL *make_handle(void) {
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, forbid_reuse);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    /* HTTPS: verify against the bench's CA, as servicepoint does. The easy handle's session
     * cache (on by default) resumes sessions on new connections. */
    const char *ca = getenv("BENCH_CA");
    if (ca && *ca) curl_easy_setopt(easy, CURLOPT_CAINFO, ca);
    return easy;
}

static void *worker(void *arg) {
    bench_thread *t = arg;
    CURL *easy = handles[t->index];
    while (now_s() < t->stop_at) {
        for (int k = 0; k < 64; k++) {
            if (curl_easy_perform(easy) != CURLE_OK) t->errors++;
            else t->requests++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: curl_bench URL SECONDS THREADS FORBID_REUSE\n");
        return 2;
    }
    url = argv[1];
    forbid_reuse = atol(argv[4]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int threads = atoi(argv[3]);
    for (int i = 0; i < threads && i < 64; i++) handles[i] = make_handle();
    int rc = bench_run(threads, atof(argv[2]), worker);
    fprintf(stderr, "body bytes read: %lld\n", (long long)body_bytes);
    for (int i = 0; i < threads && i < 64; i++) curl_easy_cleanup(handles[i]);
    curl_global_cleanup();
    return rc;
}
