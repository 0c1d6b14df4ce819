/* Shared by the C bench clients: timing, CPU accounting and the result line the driver
 * (bench/run.py) parses. Each client runs THREADS threads for a 0.3 s warm-up, then for
 * SECONDS (the measured steady state), and prints one line:
 *   RESULT requests=<n> seconds=<wall> cpu_us_per_req=<user+sys of this process per request>
 *          user_us_per_req=<user> sys_us_per_req=<sys> vcsw_per_req=<voluntary context
 *          switches per request> max_rss_kib=<peak RSS> errors=<n>
 * CPU and context switches are getrusage(RUSAGE_SELF) differences around the measured phase
 * only: this process's threads, not the server, not start-up, not the warm-up.
 * Under callgrind (valgrind --tool=callgrind --instr-atstart=no) only the measured phase is
 * instrumented, so the instruction total divided by requests is instructions per request.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

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
    struct rusage r0, r1;
    CALLGRIND_START_INSTRUMENTATION;
    getrusage(RUSAGE_SELF, &r0);
    double w0 = now_s();
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
    double wall = now_s() - w0;
    getrusage(RUSAGE_SELF, &r1);
    CALLGRIND_STOP_INSTRUMENTATION;
    double user = tv_s(r1.ru_utime) - tv_s(r0.ru_utime), sys = tv_s(r1.ru_stime) - tv_s(r0.ru_stime);
    double per = n ? 1e6 / (double)n : 0.0;
    printf("RESULT requests=%ld seconds=%.3f cpu_us_per_req=%.2f user_us_per_req=%.2f "
           "sys_us_per_req=%.2f vcsw_per_req=%.2f max_rss_kib=%ld errors=%ld\n",
           n, wall, (user + sys) * per, user * per, sys * per,
           n ? (double)(r1.ru_nvcsw - r0.ru_nvcsw) / (double)n : 0.0, max_rss_kib(), errors);
    return errors ? 1 : 0;
}

#endif
