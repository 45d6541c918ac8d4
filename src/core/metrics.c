/* metrics.c -- per-thread counters added up at scrape, and the Prometheus
 * text format (see metrics.h).
 *
 * A thread's block is allocated on its first observation and put on a
 * global list (the only lock, taken once per thread). Blocks are never
 * freed: a thread that exits leaves its counts behind, which is what a
 * counter must do. The scrape reads other threads' counters without a lock;
 * each is a naturally aligned 64-bit word written by one thread, so a read
 * sees the old or the new value, never a torn one (relaxed atomics say so
 * to the compiler). */
#include "core/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/xmalloc.h"

/* Status codes get their own slot; anything else counts under its class. */
static const int STATUSES[] = {200, 201, 202, 204, 400, 401, 402, 403,
                               404, 405, 409, 413, 429, 431, 500, 503};
#define NSTATUS (sizeof(STATUSES) / sizeof(STATUSES[0]))
#define NSLOT_STATUS (NSTATUS + 5) /* + 1xx..5xx classes for the others */

/* Upper bounds of the latency histogram, in microseconds. */
static const int64_t BUCKETS_US[] = {250,   500,   1000,   2500,   5000,    10000,
                                     25000, 50000, 100000, 250000, 1000000, 2500000};
#define NBUCKET (sizeof(BUCKETS_US) / sizeof(BUCKETS_US[0]))

/* Group commit latency (us) and batch size (writes); SQ_BATCH_MAX is 256. */
static const int64_t COMMIT_US[] = {100,   250,   500,    1000,   2500,   5000,
                                    10000, 25000, 100000, 250000, 1000000};
#define NCOMMIT (sizeof(COMMIT_US) / sizeof(COMMIT_US[0]))
static const int64_t BATCH[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
#define NBATCH (sizeof(BATCH) / sizeof(BATCH[0]))

struct block {
    _Atomic uint64_t count[METRICS_ROUTES_MAX][METRICS_METHODS][NSLOT_STATUS];
    _Atomic uint64_t bucket[METRICS_ROUTES_MAX][NBUCKET + 1]; /* + the +Inf bucket */
    _Atomic uint64_t sum_us[METRICS_ROUTES_MAX];
    _Atomic uint64_t holds[METRICS_HOLDS];
    _Atomic uint64_t pay[METRICS_PAY_METHODS][METRICS_PAY_RESULTS];
    _Atomic uint64_t commit_bucket[NCOMMIT + 1], commit_sum_us;
    _Atomic uint64_t batch_bucket[NBATCH + 1], batch_sum;
    struct block *next;
};

static const char *route_names[METRICS_ROUTES_MAX] = {"unmatched"};
static int nroutes = 1;
static pthread_mutex_t blocks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct block *blocks;
static _Thread_local struct block *mine;

static atomic_long in_flight;
static int64_t start_time_s;

void metrics_in_flight(int delta) {
    atomic_fetch_add_explicit(&in_flight, delta, memory_order_relaxed);
}

static const char *const METHOD_NAMES[METRICS_METHODS] = {"GET",    "HEAD",  "POST",   "PUT",
                                                          "DELETE", "PATCH", "OPTIONS"};

void metrics_set_routes(const char *const *patterns, int n) {
    start_time_s = (int64_t)time(NULL);
    nroutes = 1;
    for (int i = 0; i < n && nroutes < METRICS_ROUTES_MAX; i++)
        route_names[nroutes++] = patterns[i];
}

static struct block *my_block(void) {
    if (mine) return mine;
    mine = xcalloc(1, sizeof(*mine));
    pthread_mutex_lock(&blocks_mu);
    mine->next = blocks;
    blocks = mine;
    pthread_mutex_unlock(&blocks_mu);
    return mine;
}

static size_t status_slot(int status) {
    for (size_t i = 0; i < NSTATUS; i++)
        if (STATUSES[i] == status) return i;
    int cls = status / 100;
    return NSTATUS + (size_t)(cls >= 1 && cls <= 5 ? cls - 1 : 4);
}

static void bump(_Atomic uint64_t *c, uint64_t by) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

/* Counts v (>= 0) in the first bucket whose bound is >= v, or +Inf. */
static void hist_observe(_Atomic uint64_t *buckets, _Atomic uint64_t *sum, const int64_t *bounds,
                         size_t n, int64_t v) {
    if (v < 0) v = 0;
    size_t k = 0;
    while (k < n && v > bounds[k]) k++;
    bump(&buckets[k], 1);
    bump(sum, (uint64_t)v);
}

void metrics_http_observe(int slot, int method_index, int status, int64_t latency_us) {
    if (slot < 0 || slot >= nroutes) slot = 0;
    if (method_index < 0 || method_index >= METRICS_METHODS) method_index = 0;
    struct block *b = my_block();
    bump(&b->count[slot][method_index][status_slot(status)], 1);
    hist_observe(b->bucket[slot], &b->sum_us[slot], BUCKETS_US, NBUCKET, latency_us);
}

void metrics_holds(enum metrics_hold what, uint64_t n) {
    if ((unsigned)what < METRICS_HOLDS && n) bump(&my_block()->holds[what], n);
}

void metrics_payment(enum metrics_pay_method method, enum metrics_pay_result result) {
    if ((unsigned)method < METRICS_PAY_METHODS && (unsigned)result < METRICS_PAY_RESULTS)
        bump(&my_block()->pay[method][result], 1);
}

void metrics_commit(uint64_t jobs, int64_t latency_us) {
    struct block *b = my_block();
    hist_observe(b->commit_bucket, &b->commit_sum_us, COMMIT_US, NCOMMIT, latency_us);
    hist_observe(b->batch_bucket, &b->batch_sum, BATCH, NBATCH, (int64_t)jobs);
}

/* ---- text format -------------------------------------------------------- */

void mtext_init(struct mtext *t, struct arena *a) {
    t->a = a;
    t->cap = 16384;
    t->buf = arena_alloc(a, t->cap);
    t->len = 0;
    t->buf[0] = '\0';
}

void mtext_printf(struct mtext *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2;
        while (cap - t->len <= (size_t)n) cap *= 2;
        char *nb = arena_alloc(t->a, cap);
        memcpy(nb, t->buf, t->len + 1);
        t->buf = nb;
        t->cap = cap;
    }
}

void mtext_family(struct mtext *t, const char *name, const char *type, const char *help) {
    mtext_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void mtext_sample(struct mtext *t, const char *name, const char *labels, double value) {
    if (labels && *labels)
        mtext_printf(t, "%s{%s} %.17g\n", name, labels, value);
    else
        mtext_printf(t, "%s %.17g\n", name, value);
}

void mtext_gauge(struct mtext *t, const char *name, const char *help, double value) {
    mtext_family(t, name, "gauge", help);
    mtext_sample(t, name, NULL, value);
}

void mtext_counter(struct mtext *t, const char *name, const char *help, double value) {
    mtext_family(t, name, "counter", help);
    mtext_sample(t, name, NULL, value);
}

static uint64_t get(const _Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void status_label(size_t s, char *buf, size_t len) {
    if (s < NSTATUS)
        snprintf(buf, len, "%d", STATUSES[s]);
    else
        snprintf(buf, len, "%zuxx", s - NSTATUS + 1);
}

/* The list only grows at its head, so walking from a snapshot is safe. */
static struct block *blocks_head(void) {
    pthread_mutex_lock(&blocks_mu);
    struct block *head = blocks;
    pthread_mutex_unlock(&blocks_mu);
    return head;
}

#define METRICS_LABEL_MAX 256

/* The _bucket, _sum and _count samples of one histogram: per[] holds the
 * n + 1 bucket counts (the last is +Inf), bounds and sum are in units of
 * 1/scale. labels is "" or ends with a comma. skip_empty: write nothing
 * when nothing was observed. */
static void write_hist(struct mtext *t, const char *name, const char *labels, const int64_t *bounds,
                       size_t n, double scale, const uint64_t *per, uint64_t sum, int skip_empty) {
    uint64_t total = 0, cum = 0;
    for (size_t k = 0; k <= n; k++) total += per[k];
    if (!total && skip_empty) return;
    for (size_t k = 0; k < n; k++) {
        cum += per[k];
        mtext_printf(t, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, (double)bounds[k] / scale,
                     (unsigned long long)cum);
    }
    mtext_printf(t, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)total);
    size_t ll = strlen(labels);
    char plain[METRICS_LABEL_MAX];
    snprintf(plain, sizeof(plain), "%.*s", (int)(ll ? ll - 1 : 0), labels); /* no comma */
    const char *open = ll ? "{" : "", *close = ll ? "}" : "";
    mtext_printf(t, "%s_sum%s%s%s %.6f\n", name, open, plain, close, (double)sum / scale);
    mtext_printf(t, "%s_count%s%s%s %llu\n", name, open, plain, close, (unsigned long long)total);
}

void metrics_write_http(struct mtext *t) {
    struct block *head = blocks_head();
    mtext_family(t, "concertd_http_requests_total", "counter",
                 "HTTP requests answered, by route template, method and status");
    char status[8];
    for (int r = 0; r < nroutes; r++)
        for (int m = 0; m < METRICS_METHODS; m++)
            for (size_t s = 0; s < NSLOT_STATUS; s++) {
                uint64_t n = 0;
                for (struct block *b = head; b; b = b->next) n += get(&b->count[r][m][s]);
                if (!n) continue;
                status_label(s, status, sizeof(status));
                mtext_printf(t,
                             "concertd_http_requests_total{route=\"%s\",method=\"%s\","
                             "status=\"%s\"} %llu\n",
                             route_names[r], METHOD_NAMES[m], status, (unsigned long long)n);
            }
    mtext_family(t, "concertd_http_request_duration_seconds", "histogram",
                 "time from the request's first byte to its answer, by route template");
    for (int r = 0; r < nroutes; r++) {
        uint64_t sum = 0, per[NBUCKET + 1] = {0};
        for (struct block *b = head; b; b = b->next) {
            for (size_t k = 0; k <= NBUCKET; k++) per[k] += get(&b->bucket[r][k]);
            sum += get(&b->sum_us[r]);
        }
        char labels[METRICS_LABEL_MAX];
        snprintf(labels, sizeof(labels), "route=\"%s\",", route_names[r]);
        write_hist(t, "concertd_http_request_duration_seconds", labels, BUCKETS_US, NBUCKET, 1e6,
                   per, sum, 1);
    }
}

static const char *const HOLD_EVENTS[METRICS_HOLDS] = {"created", "expired", "confirmed"};
static const char *const PAY_METHODS[METRICS_PAY_METHODS] = {"balance", "card"};
static const char *const PAY_RESULTS[METRICS_PAY_RESULTS] = {
    "completed",   "pending",     "declined", "insufficient_balance",
    "not_payable", "unavailable", "error"};

/* Adds up every block's n counters starting at offset off (bytes) in the block. */
static void sum_blocks(struct block *head, size_t off, size_t n, uint64_t *out) {
    memset(out, 0, n * sizeof(*out));
    for (struct block *b = head; b; b = b->next) {
        const _Atomic uint64_t *c = (const _Atomic uint64_t *)(const void *)((const char *)b + off);
        for (size_t k = 0; k < n; k++) out[k] += get(&c[k]);
    }
}

void metrics_write_domain(struct mtext *t) {
    struct block *head = blocks_head();
    uint64_t holds[METRICS_HOLDS], pay[METRICS_PAY_METHODS * METRICS_PAY_RESULTS];
    sum_blocks(head, offsetof(struct block, holds), METRICS_HOLDS, holds);
    mtext_family(t, "concertd_holds_total", "counter",
                 "seat holds created, expired (TTL passed) and confirmed (paid)");
    for (int e = 0; e < METRICS_HOLDS; e++)
        mtext_printf(t, "concertd_holds_total{event=\"%s\"} %llu\n", HOLD_EVENTS[e],
                     (unsigned long long)holds[e]);
    sum_blocks(head, offsetof(struct block, pay), METRICS_PAY_METHODS * METRICS_PAY_RESULTS, pay);
    mtext_family(t, "concertd_payments_total", "counter", "payment attempts by method and result");
    for (int m = 0; m < METRICS_PAY_METHODS; m++)
        for (int r = 0; r < METRICS_PAY_RESULTS; r++)
            mtext_printf(t, "concertd_payments_total{method=\"%s\",result=\"%s\"} %llu\n",
                         PAY_METHODS[m], PAY_RESULTS[r],
                         (unsigned long long)pay[m * METRICS_PAY_RESULTS + (size_t)r]);
    uint64_t per[NCOMMIT + 1], sum;
    sum_blocks(head, offsetof(struct block, commit_bucket), NCOMMIT + 1, per);
    sum_blocks(head, offsetof(struct block, commit_sum_us), 1, &sum);
    mtext_family(t, "concertd_store_commit_duration_seconds", "histogram",
                 "time of one group commit, BEGIN to COMMIT");
    write_hist(t, "concertd_store_commit_duration_seconds", "", COMMIT_US, NCOMMIT, 1e6, per, sum,
               0);
    uint64_t bper[NBATCH + 1];
    sum_blocks(head, offsetof(struct block, batch_bucket), NBATCH + 1, bper);
    sum_blocks(head, offsetof(struct block, batch_sum), 1, &sum);
    mtext_family(t, "concertd_store_commit_batch_size", "histogram",
                 "writes carried by one group commit");
    write_hist(t, "concertd_store_commit_batch_size", "", BATCH, NBATCH, 1, bper, sum, 0);
}

/* Resident pages from /proc/self/statm, in bytes; 0 when unreadable. */
static double resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f) return 0;
    int ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
    fclose(f);
    return ok ? (double)resident * (double)sysconf(_SC_PAGESIZE) : 0;
}

static double open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    double n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void metrics_write_process(struct mtext *t, const char *version) {
    mtext_gauge(t, "concertd_http_requests_in_flight", "requests being answered now",
                (double)atomic_load_explicit(&in_flight, memory_order_relaxed));
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    mtext_counter(t, "concertd_process_cpu_seconds_total", "user and system CPU time", cpu);
    mtext_gauge(t, "concertd_process_resident_memory_bytes", "resident set size", resident_bytes());
    mtext_gauge(t, "concertd_process_open_fds", "open file descriptors", open_fds());
    mtext_gauge(t, "concertd_process_start_time_seconds", "start time, Unix seconds",
                (double)start_time_s);
    mtext_family(t, "concertd_build_info", "gauge", "always 1; the version is a label");
    mtext_printf(t, "concertd_build_info{version=\"%s\"} 1\n", version);
}
