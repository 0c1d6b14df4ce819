/* libcurl from C: curl_bench URL SECONDS THREADS FORBID_REUSE
 * One easy handle per thread, reused for every request (libcurl's connection cache keeps the
 * connection); FORBID_REUSE=1 sets CURLOPT_FORBID_REUSE (a new connection per request). */
#include "bench_common.h"
#include <curl/curl.h>

static const char *url;
static long forbid_reuse;

static size_t discard(char *ptr, size_t size, size_t nmemb, void *user) {
    (void)ptr;
    (void)user;
    return size * nmemb;
}

static void *worker(void *arg) {
    bench_thread *t = arg;
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, forbid_reuse);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    /* HTTPS: verify against the bench's CA, as servicepoint does. The easy handle's session
     * cache (on by default) resumes sessions on new connections. */
    const char *ca = getenv("BENCH_CA");
    if (ca && *ca) curl_easy_setopt(easy, CURLOPT_CAINFO, ca);
    while (now_s() < t->stop_at) {
        for (int k = 0; k < 64; k++) {
            if (curl_easy_perform(easy) != CURLE_OK) t->errors++;
            else t->requests++;
        }
    }
    curl_easy_cleanup(easy);
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
    int rc = bench_run(atoi(argv[3]), atof(argv[2]), worker);
    curl_global_cleanup();
    return rc;
}
