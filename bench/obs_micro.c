/* obs_micro.c -- what one request's observability costs, in nanoseconds,
 * measured directly rather than as a difference of two noisy throughputs:
 *
 *   obs_micro N
 *       calls metrics_http_observe() N times (the per-request counting of
 *       --metrics on), then log_access() N / 10 times as concertd serve
 *       does (buffered per thread, a flusher thread writes) and N / 10 times
 *       unbuffered (a write(2) each), to stderr: point it at a file. Prints
 *       "observe_ns=.. access_line_ns=.. access_line_unbuffered_ns=.."
 *       (each the best of 5 passes, per call; the buffered figure includes
 *       the flusher's writes: the run ends with a flush).
 *
 * bench/obs_cost.sh builds it from src/core with cc and divides these by
 * the CPU time concertd spends per poll request. Part of bench/, not of
 * concertd. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    if (n <= 0) {
        fprintf(stderr, "usage: obs_micro N\n");
        return 1;
    }
    static const char *const routes[] = {"/api/v1/waiting-queues", "/api/v1/concerts"};
    metrics_set_routes(routes, 2);
    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    double best_obs = 1e18, best_log = 1e18, best_raw = 1e18;
    struct log_access a = {.request_id = "9f86d081884c7d65",
                           .method = "GET",
                           .route = "/api/v1/waiting-queues",
                           .status = 200,
                           .user_id = 42};
    long lines = n / 10 > 0 ? n / 10 : 1;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) metrics_http_observe(1, 0, 200, 40 + (i & 1023));
        double t1 = now_ns();
        if (log_access_buffer_start()) return 1;
        for (long i = 0; i < lines; i++) {
            a.latency_us = 40 + (i & 1023);
            log_access(&a);
        }
        log_access_buffer_stop();
        double t2 = now_ns();
        for (long i = 0; i < lines; i++) {
            a.latency_us = 40 + (i & 1023);
            log_access(&a);
        }
        double t3 = now_ns();
        if ((t1 - t0) / (double)n < best_obs) best_obs = (t1 - t0) / (double)n;
        if ((t2 - t1) / (double)lines < best_log) best_log = (t2 - t1) / (double)lines;
        if ((t3 - t2) / (double)lines < best_raw) best_raw = (t3 - t2) / (double)lines;
    }
    printf("observe_ns=%.1f access_line_ns=%.1f access_line_unbuffered_ns=%.1f\n", best_obs,
           best_log, best_raw);
    return 0;
}
