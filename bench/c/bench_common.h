/* Shared by the C bench clients: timing, CPU accounting and the result line the driver
 * (bench/run.py) parses. Each client runs THREADS threads for SECONDS and prints one line:
 *   RESULT requests=<n> seconds=<wall> cpu_us_per_req=<user+sys of this process per request>
 *          max_rss_kib=<peak RSS> errors=<n>
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Peak resident set from VmHWM: ru_maxrss survives execve on Linux, so it would report the
 * high-water mark of the process that forked the bench client. */
static long max_rss_kib(void) {
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    }
    fclose(f);
    return kib;
}

typedef struct {
    int index;
    double stop_at;
    long requests;
    long errors;
} bench_thread;

/* Runs `body` on `threads` threads for `seconds` after a short warm-up and prints RESULT. */
static int bench_run(int threads, double seconds, void *(*body)(void *)) {
    bench_thread t[64];
    pthread_t tid[64];
    if (threads < 1 || threads > 64) return 2;
    /* Warm-up: connections opened, caches hot. */
    double warm = now_s() + 0.3;
    for (int i = 0; i < threads; i++) {
        t[i] = (bench_thread){i, warm, 0, 0};
        pthread_create(&tid[i], NULL, body, &t[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    double c0 = cpu_s(), w0 = now_s();
    for (int i = 0; i < threads; i++) {
        t[i] = (bench_thread){i, w0 + seconds, 0, 0};
        pthread_create(&tid[i], NULL, body, &t[i]);
    }
    long n = 0, errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        n += t[i].requests;
        errors += t[i].errors;
    }
    double wall = now_s() - w0, cpu = cpu_s() - c0;
    printf("RESULT requests=%ld seconds=%.3f cpu_us_per_req=%.2f max_rss_kib=%ld errors=%ld\n", n,
           wall, n ? cpu * 1e6 / (double)n : 0.0, max_rss_kib(), errors);
    return errors ? 1 : 0;
}

#endif
