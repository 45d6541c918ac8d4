/* breaker.h -- a circuit breaker in front of the payment gateway (DESIGN.md 1).
 *
 * Count-based sliding window: the outcomes of the last `window` calls made
 * while CLOSED. Once at least `min_calls` are in it and the share of
 * failures (errors, and calls slower than `slow_ms`) reaches
 * `failure_rate_pct`, the breaker OPENs: calls are refused without reaching
 * the gateway for `open_ms`. Then it is HALF_OPEN: `half_open_calls` trial
 * calls are let through; if all succeed it CLOSEs (empty window), if any
 * fails it OPENs again for another `open_ms`.
 *
 * Pure logic: no I/O, no clock of its own (every call takes now_ms, any
 * monotonic ms clock). Thread-safe: one mutex per breaker. State changes
 * are reported through the callback given to breaker_new, called with the
 * breaker's lock held: it must not call back into the breaker (log, count). */
#pragma once
#include <stdint.h>

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 };

struct breaker_opts {
    int window;           /* calls remembered while CLOSED (1..BREAKER_WINDOW_MAX) */
    int min_calls;        /* calls in the window before the rate is judged (1..window) */
    int failure_rate_pct; /* failures in the window, in %, that open the breaker (1..100) */
    int64_t open_ms;      /* how long OPEN lasts before trial calls */
    int half_open_calls;  /* trial calls in HALF_OPEN (>= 1) */
    int64_t slow_ms;      /* a call that took at least this long counts as failed (0 = off) */
};

#define BREAKER_WINDOW_MAX 1000

typedef void (*breaker_change_fn)(void *ctx, int from, int to, int64_t now_ms);

struct breaker;

/* NULL when the options are out of range. on_change may be NULL. */
struct breaker *breaker_new(const struct breaker_opts *o, breaker_change_fn on_change, void *ctx);
void breaker_free(struct breaker *b);

/* A permit for one call. */
struct breaker_ticket {
    uint64_t generation; /* the state the call was permitted in */
    int trial;           /* a HALF_OPEN trial call */
};

/* May a call go out now? 0 with *t filled: make the call, then report it
 * with breaker_record (or breaker_cancel when it was never made).
 * ERR_UNAVAILABLE: refused; *retry_after_ms (may be NULL) says when a call
 * may be permitted again (at least 1). */
int breaker_acquire(struct breaker *b, int64_t now_ms, struct breaker_ticket *t,
                    int64_t *retry_after_ms);
/* The outcome of a permitted call: ok = the gateway answered (approved or
 * declined alike), duration_ms how long it took. Outcomes of calls
 * permitted before the last state change are ignored. */
void breaker_record(struct breaker *b, const struct breaker_ticket *t, int ok, int64_t duration_ms,
                    int64_t now_ms);
/* The permitted call was not made: gives a trial permit back. */
void breaker_cancel(struct breaker *b, const struct breaker_ticket *t);
/* The state at now_ms (OPEN turns HALF_OPEN once its interval is over). */
int breaker_state(struct breaker *b, int64_t now_ms);
const char *breaker_state_name(int state);
