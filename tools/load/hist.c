/* hist.c -- the log-linear latency histogram (hist.h). */
#include "hist.h"

#include <string.h>

void hist_init(struct hist *h) {
    memset(h, 0, sizeof(*h));
    h->min_us = UINT64_MAX;
}

static unsigned msb(uint64_t v) {
    return 63u - (unsigned)__builtin_clzll(v);
}

static size_t bucket_of(uint64_t us) {
    if (us < HIST_LINEAR) return (size_t)us;
    unsigned m = msb(us); /* >= 7 */
    if (m >= HIST_MAX_BITS) return HIST_BUCKETS - 1;
    uint64_t sub = (us >> (m - 6)) - HIST_SUB; /* 0..63 */
    return HIST_LINEAR + (size_t)(m - 7) * HIST_SUB + (size_t)sub;
}

/* The midpoint of bucket i, in us. */
static double bucket_mid(size_t i) {
    if (i < HIST_LINEAR) return (double)i;
    size_t k = i - HIST_LINEAR;
    unsigned m = (unsigned)(k / HIST_SUB) + 7;
    uint64_t lo = ((uint64_t)(HIST_SUB + k % HIST_SUB)) << (m - 6);
    uint64_t width = (uint64_t)1 << (m - 6);
    return (double)lo + (double)(width - 1) / 2.0;
}

void hist_record(struct hist *h, uint64_t us) {
    h->b[bucket_of(us)]++;
    h->count++;
    h->sum_us += us;
    if (us < h->min_us) h->min_us = us;
    if (us > h->max_us) h->max_us = us;
}

void hist_merge(struct hist *into, const struct hist *from) {
    if (!from->count) return;
    for (size_t i = 0; i < HIST_BUCKETS; i++) into->b[i] += from->b[i];
    into->count += from->count;
    into->sum_us += from->sum_us;
    if (from->min_us < into->min_us) into->min_us = from->min_us;
    if (from->max_us > into->max_us) into->max_us = from->max_us;
}

double hist_pct(const struct hist *h, double p) {
    if (!h->count) return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->count + 0.5);
    if (want < 1) want = 1;
    if (want >= h->count) return (double)h->max_us;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            double v = bucket_mid(i);
            if (v > (double)h->max_us) v = (double)h->max_us;
            if (v < (double)h->min_us) v = (double)h->min_us;
            return v;
        }
    }
    return (double)h->max_us;
}

double hist_mean(const struct hist *h) {
    return h->count ? (double)h->sum_us / (double)h->count : 0;
}
