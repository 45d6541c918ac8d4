/* hist.h -- an HDR-style latency histogram: log-linear buckets of
 * microseconds, fixed size, mergeable by adding counts.
 *
 * Values below 128 us have a bucket each; above, every power of two is cut
 * into 64 equal buckets, so a recorded value is off by at most 1/64 (1.6 %)
 * and reported at its bucket's midpoint (within 0.8 %). Range: up to 2^40 us
 * (12 days); larger values land in the last bucket. min, max and the sum are
 * kept exactly. Recording is a few integer operations and one increment; no
 * allocation, no sorting. Not here: thread safety (each thread owns its
 * histograms and the main thread merges them when the run is over). */
#pragma once
#include <stdint.h>

#define HIST_LINEAR 128
#define HIST_SUB 64
#define HIST_MAX_BITS 40
#define HIST_BUCKETS (HIST_LINEAR + (HIST_MAX_BITS - 7) * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t min_us, max_us;
    uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t us);
void hist_merge(struct hist *into, const struct hist *from);
/* The value at percentile p (0..100], in us; 0 for an empty histogram. */
double hist_pct(const struct hist *h, double p);
double hist_mean(const struct hist *h);
