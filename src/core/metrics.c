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

struct block {
    _Atomic uint64_t count[METRICS_ROUTES_MAX][METRICS_METHODS][NSLOT_STATUS];
    _Atomic uint64_t bucket[METRICS_ROUTES_MAX][NBUCKET + 1]; /* + the +Inf bucket */
    _Atomic uint64_t sum_us[METRICS_ROUTES_MAX];
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

void metrics_http_observe(int slot, int method_index, int status, int64_t latency_us) {
    if (slot < 0 || slot >= nroutes) slot = 0;
    if (method_index < 0 || method_index >= METRICS_METHODS) method_index = 0;
    if (latency_us < 0) latency_us = 0;
    struct block *b = my_block();
    bump(&b->count[slot][method_index][status_slot(status)], 1);
    size_t k = 0;
    while (k < NBUCKET && latency_us > BUCKETS_US[k]) k++;
    bump(&b->bucket[slot][k], 1);
    bump(&b->sum_us[slot], (uint64_t)latency_us);
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

void metrics_write_http(struct mtext *t) {
    pthread_mutex_lock(&blocks_mu);
    struct block *head = blocks;
    pthread_mutex_unlock(&blocks_mu);
    /* The list only grows at its head, so walking from a snapshot is safe. */
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
        uint64_t cum = 0, sum = 0, per[NBUCKET + 1] = {0};
        for (struct block *b = head; b; b = b->next) {
            for (size_t k = 0; k <= NBUCKET; k++) per[k] += get(&b->bucket[r][k]);
            sum += get(&b->sum_us[r]);
        }
        uint64_t total = 0;
        for (size_t k = 0; k <= NBUCKET; k++) total += per[k];
        if (!total) continue;
        for (size_t k = 0; k < NBUCKET; k++) {
            cum += per[k];
            mtext_printf(t,
                         "concertd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                         "%llu\n",
                         route_names[r], (double)BUCKETS_US[k] / 1e6, (unsigned long long)cum);
        }
        mtext_printf(t,
                     "concertd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                     "%llu\n",
                     route_names[r], (unsigned long long)total);
        mtext_printf(t, "concertd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                     route_names[r], (double)sum / 1e6);
        mtext_printf(t, "concertd_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                     route_names[r], (unsigned long long)total);
    }
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
