/* breaker.c -- the circuit breaker's state machine (see breaker.h).
 *
 * Responsible for deciding whether a call to the payment gateway may go
 * out, from the outcomes of earlier calls. Not here: the calls themselves
 * (gateway/), what a refused payment answers (service/payment.c, api/),
 * logging (the caller's on_change callback).
 *
 * Design notes
 *
 *   1. States: CLOSED --failure rate reached--> OPEN --open_ms passed-->
 *      HALF_OPEN --all trials ok--> CLOSED; HALF_OPEN --a trial fails-->
 *      OPEN. OPEN turns HALF_OPEN lazily, at the first look after its
 *      interval (acquire or state), so no timer is needed.
 *   2. Every state change bumps a generation. A call reports with the
 *      generation it was permitted in; a report from an older generation
 *      (a slow call that started while CLOSED and ends after the breaker
 *      opened) is ignored, so it can neither close nor reopen the breaker.
 *   3. The window is a ring of the last `window` outcomes of CLOSED calls;
 *      it is emptied whenever the breaker CLOSEs, so old failures do not
 *      count against a gateway that has recovered.
 *   4. HALF_OPEN lets out at most half_open_calls trials at once and in
 *      total; a cancelled trial gives its permit back. */
#include "service/breaker.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/err.h"
#include "core/xmalloc.h"

struct breaker {
    pthread_mutex_t mu;
    struct breaker_opts o;
    breaker_change_fn on_change;
    void *ctx;
    int state;
    uint64_t generation;
    int64_t opened_at;
    unsigned char *ring; /* 1 = failed */
    int head, count, failures;
    int trials_out, trials_ok; /* HALF_OPEN: permits given, successes reported */
};

const char *breaker_state_name(int state) {
    switch (state) {
    case BREAKER_CLOSED: return "closed";
    case BREAKER_OPEN: return "open";
    case BREAKER_HALF_OPEN: return "half_open";
    }
    return "unknown";
}

struct breaker *breaker_new(const struct breaker_opts *o, breaker_change_fn on_change, void *ctx) {
    if (o->window < 1 || o->window > BREAKER_WINDOW_MAX || o->min_calls < 1 ||
        o->min_calls > o->window || o->failure_rate_pct < 1 || o->failure_rate_pct > 100 ||
        o->open_ms < 1 || o->half_open_calls < 1 || o->slow_ms < 0)
        return NULL;
    struct breaker *b = xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    b->o = *o;
    b->on_change = on_change;
    b->ctx = ctx;
    b->ring = xcalloc((size_t)o->window, 1);
    b->state = BREAKER_CLOSED;
    return b;
}

void breaker_free(struct breaker *b) {
    if (!b) return;
    pthread_mutex_destroy(&b->mu);
    free(b->ring);
    free(b);
}

/* Under mu. */
static void move_to(struct breaker *b, int to, int64_t now_ms) {
    int from = b->state;
    b->state = to;
    b->generation++;
    b->trials_out = b->trials_ok = 0;
    if (to == BREAKER_OPEN) b->opened_at = now_ms;
    if (to == BREAKER_CLOSED) b->head = b->count = b->failures = 0;
    if (b->on_change) b->on_change(b->ctx, from, to, now_ms);
}

/* Under mu: design note 1's lazy OPEN -> HALF_OPEN. */
static void tick(struct breaker *b, int64_t now_ms) {
    if (b->state == BREAKER_OPEN && now_ms - b->opened_at >= b->o.open_ms)
        move_to(b, BREAKER_HALF_OPEN, now_ms);
}

int breaker_state(struct breaker *b, int64_t now_ms) {
    pthread_mutex_lock(&b->mu);
    tick(b, now_ms);
    int s = b->state;
    pthread_mutex_unlock(&b->mu);
    return s;
}

int breaker_acquire(struct breaker *b, int64_t now_ms, struct breaker_ticket *t,
                    int64_t *retry_after_ms) {
    pthread_mutex_lock(&b->mu);
    tick(b, now_ms);
    int err = 0;
    int64_t wait = 0;
    t->generation = b->generation;
    t->trial = 0;
    if (b->state == BREAKER_OPEN) {
        err = ERR_UNAVAILABLE;
        wait = b->opened_at + b->o.open_ms - now_ms;
    } else if (b->state == BREAKER_HALF_OPEN) {
        if (b->trials_out < b->o.half_open_calls) {
            b->trials_out++;
            t->trial = 1;
        } else {
            err = ERR_UNAVAILABLE; /* the trials are out; their outcome decides */
            wait = 1000;
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (err && retry_after_ms) *retry_after_ms = wait > 0 ? wait : 1;
    return err;
}

/* Under mu: one CLOSED outcome into the window (design note 3). */
static void window_add(struct breaker *b, int failed, int64_t now_ms) {
    if (b->count == b->o.window) {
        b->failures -= b->ring[b->head];
        b->count--;
    }
    b->ring[b->head] = (unsigned char)failed;
    b->head = (b->head + 1) % b->o.window;
    b->count++;
    b->failures += failed;
    if (b->count >= b->o.min_calls &&
        (int64_t)b->failures * 100 >= (int64_t)b->o.failure_rate_pct * b->count)
        move_to(b, BREAKER_OPEN, now_ms);
}

void breaker_record(struct breaker *b, const struct breaker_ticket *t, int ok, int64_t duration_ms,
                    int64_t now_ms) {
    int failed = !ok || (b->o.slow_ms > 0 && duration_ms >= b->o.slow_ms);
    pthread_mutex_lock(&b->mu);
    tick(b, now_ms);
    if (t->generation == b->generation) { /* design note 2 */
        if (b->state == BREAKER_CLOSED) {
            window_add(b, failed, now_ms);
        } else if (b->state == BREAKER_HALF_OPEN && t->trial) {
            if (failed)
                move_to(b, BREAKER_OPEN, now_ms);
            else if (++b->trials_ok == b->o.half_open_calls)
                move_to(b, BREAKER_CLOSED, now_ms);
        }
    }
    pthread_mutex_unlock(&b->mu);
}

void breaker_cancel(struct breaker *b, const struct breaker_ticket *t) {
    pthread_mutex_lock(&b->mu);
    if (t->trial && t->generation == b->generation && b->state == BREAKER_HALF_OPEN &&
        b->trials_out > 0)
        b->trials_out--;
    pthread_mutex_unlock(&b->mu);
}
