/* Client memory per idle keep-alive connection: sp_idle URL N
 * Opens N connections to one service point (N responses held at once with limit N), then
 * releases them all to the pool and reports how much the process's resident memory grew per
 * idle connection (user-space memory; kernel socket buffers are not in RSS). */
#include <servicepoint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: sp_idle URL N\n");
        return 2;
    }
    int n = atoi(argv[2]);
    sp_manager *m = NULL;
    sp_point *p = NULL;
    sp_http_request *req = NULL;
    sp_response **held = calloc((size_t)n, sizeof *held);
    if (!held || sp_manager_new(&m) != SP_OK || sp_find(m, argv[1], &p) != SP_OK ||
        sp_set_connection_limit(p, n) != SP_OK || sp_http_request_new("GET", argv[1], &req) != SP_OK) {
        fprintf(stderr, "setup: %s\n", sp_last_error());
        return 2;
    }
    /* Warm up allocator and runtime with one request, then measure. */
    sp_response *warm = NULL;
    if (sp_request(m, req, &warm) != SP_OK) return 2;
    sp_response_free(warm);
    long before = rss_kib();
    for (int i = 0; i < n; i++) {
        if (sp_request(m, req, &held[i]) != SP_OK) {
            fprintf(stderr, "request %d: %s\n", i, sp_last_error());
            return 1;
        }
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *data;
        size_t len;
        sp_response_read_all(held[i], &data, &len);
        sp_response_free(held[i]);
    }
    int open = 0;
    sp_get_current_connections(p, &open);
    long after = rss_kib();
    printf("RESULT idle_connections=%d rss_growth_kib=%ld bytes_per_idle_connection=%ld\n", open,
           after - before, open ? (after - before) * 1024 / open : 0);
    sp_http_request_free(req);
    sp_point_free(p);
    sp_manager_free(m);
    free(held);
    return 0;
}
