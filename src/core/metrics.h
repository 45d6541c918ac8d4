/* metrics.h -- the metrics registry and the Prometheus text format.
 *
 * The hot path (one HTTP request) only increments counters of its own
 * thread: every thread that observes gets its own block of counters, found
 * through a thread-local pointer, and a scrape adds the blocks up. Nothing
 * on the request path takes a lock or touches a shared cache line.
 *
 * Routes are slots: slot 0 is "unmatched" (404, 405, bad path parameter),
 * slots 1..n the route patterns given to metrics_set_routes() at start.
 *
 * Not here: what the numbers of other layers are (api/metrics.c gathers
 * them through the ports and writes them with the helpers below). */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct arena;

#define METRICS_ROUTES_MAX 96 /* slots, "unmatched" included */
#define METRICS_METHODS 7     /* enum api_method bits, in order */

/* Sets the route slots: patterns[i] becomes slot i + 1. Call once, before
 * any observation. Extra patterns past METRICS_ROUTES_MAX - 1 share slot 0. */
void metrics_set_routes(const char *const *patterns, int n);

/* One finished HTTP request. method_index is the bit number of its enum
 * api_method (0 = GET ...). */
void metrics_http_observe(int slot, int method_index, int status, int64_t latency_us);

/* Requests being answered now (a gauge; +1 / -1 from http/). */
void metrics_in_flight(int delta);

/* ---- domain counters: each call is one increment of the caller thread's
 * own counters, like metrics_http_observe. Always on (--metrics off only
 * stops the per-request counting). */

enum metrics_hold {
    METRICS_HOLD_CREATED,
    METRICS_HOLD_EXPIRED,
    METRICS_HOLD_CONFIRMED,
    METRICS_HOLDS
};
enum metrics_pay_method { METRICS_PAY_BALANCE, METRICS_PAY_CARD, METRICS_PAY_METHODS };
enum metrics_pay_result {
    METRICS_PAY_COMPLETED,    /* paid: the hold is CONFIRMED */
    METRICS_PAY_PENDING,      /* card: the gateway's answer is unknown (reconciler settles it) */
    METRICS_PAY_DECLINED,     /* card: the gateway declined */
    METRICS_PAY_INSUFFICIENT, /* balance: below the price */
    METRICS_PAY_NOT_PAYABLE,  /* not a live hold (expired, paid, cancelled) */
    METRICS_PAY_UNAVAILABLE,  /* card: breaker open, or no attempt could be begun */
    METRICS_PAY_ERROR,        /* the store or another dependency failed */
    METRICS_PAY_RESULTS
};

/* n holds created, expired or confirmed. */
void metrics_holds(enum metrics_hold what, uint64_t n);
/* One payment attempt's outcome. */
void metrics_payment(enum metrics_pay_method method, enum metrics_pay_result result);
/* One group commit of the store: the writes it carried and how long its
 * transaction took (BEGIN to COMMIT returned). Called by the committer. */
void metrics_commit(uint64_t jobs, int64_t latency_us);

/* The Prometheus text exposition, built in an arena. */
struct mtext {
    struct arena *a;
    char *buf;
    size_t len, cap;
};

void mtext_init(struct mtext *t, struct arena *a);
void mtext_printf(struct mtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "# HELP name help\n# TYPE name type\n" */
void mtext_family(struct mtext *t, const char *name, const char *type, const char *help);
/* One sample: name{labels} value; labels may be NULL or "" for none. */
void mtext_sample(struct mtext *t, const char *name, const char *labels, double value);
/* A whole one-sample family. */
void mtext_gauge(struct mtext *t, const char *name, const char *help, double value);
void mtext_counter(struct mtext *t, const char *name, const char *help, double value);

/* concertd_http_requests_total{route,method,status} and
 * concertd_http_request_duration_seconds{route} (histogram), summed over
 * every thread's counters. */
void metrics_write_http(struct mtext *t);

/* concertd_holds_total{event}, concertd_payments_total{method,result},
 * concertd_store_commit_duration_seconds and concertd_store_commit_batch_size
 * (histograms), summed over every thread's counters. */
void metrics_write_domain(struct mtext *t);

/* concertd_http_requests_in_flight, and the process: resident memory, CPU
 * seconds, open file descriptors, start time, build info (version label). */
void metrics_write_process(struct mtext *t, const char *version);
