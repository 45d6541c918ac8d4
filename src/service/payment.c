/* payment.c -- card payments through the payment gateway, the circuit
 * breaker in front of it, and the reconciler (see payment.h).
 *
 * Responsible for deciding when the gateway is asked, with which key, and
 * what its answer makes of the payment and the reservation. Not here: the
 * wire protocol (gateway/http.c), the rows (store/sqlite_booking.c), HTTP
 * (api/payments.c), the breaker's state machine (breaker.c).
 *
 * Design notes
 *
 *   1. Never charge twice, never lose a charge. The attempt (payments
 *      PENDING, reservation PAYMENT_PENDING) is committed with its gateway
 *      key before the gateway is asked. The key is derived from the
 *      reservation and the attempt number ("res-<id>-<n>"), so the request
 *      can be repeated by anyone at any time with the same key and the
 *      gateway charges it at most once. A crash between the gateway's
 *      approval and our commit leaves a PENDING attempt that the reconciler
 *      settles from the gateway's answer for that key after the restart.
 *      A new payment request for a reservation with a PENDING attempt asks
 *      the gateway about that attempt instead of charging again.
 *   2. A declined attempt is FAILED and its hold is kept (HELD again, or
 *      EXPIRED when its time ran out meanwhile: PAYMENT_PENDING stops the
 *      clock for nobody). The next attempt gets the next number, hence a
 *      new key: a gateway replays a key's first outcome, so a reused key
 *      could never be approved.
 *   3. NOT_FOUND means "never charged" only for an attempt older than the
 *      gateway timeout plus PAYMENT_NOT_FOUND_GRACE_MS: by then our own
 *      charge request for it has ended (the adapter's timeout bounds it),
 *      so the lookup cannot have overtaken it. A younger attempt stays
 *      PENDING. Such an attempt is FAILED and its reservation HELD again.
 *   4. The breaker sees every charge: approved and declined are successes
 *      (the gateway works), unknown and slower-than-timeout are failures.
 *      While it is OPEN a card payment is refused before anything is
 *      written. Lookups (reconciler, retried requests) bypass it: they
 *      learn where money may already have moved, and are paced.
 *   5. With an Idempotency-Key, a final answer (approved 201, declined
 *      402) is rendered inside the transaction that settles the attempt
 *      and stored with it; 202 PENDING and 503 are not stored, so a retry
 *      asks again and gets the outcome known by then. */
#include "service/payment.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "core/xmalloc.h"
#include "gateway/gateway.h"
#include "service/booking.h"

#define MOD "payment"
#define PAYMENT_BEGIN_ROUNDS 3 /* attempts one request may settle and begin */

struct payments {
    struct store *store;
    struct gateway *gw;
    struct payment_opts o;
    struct breaker *breaker;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled by stop */
    int started, stop;
};

/* ---- rules -------------------------------------------------------------------- */

int payment_can_pay_card(const struct store_reservation *r, int64_t user_id, int64_t balance,
                         int64_t now_ms) {
    (void)balance;
    if (r->user_id != user_id) return ERR_FORBIDDEN;
    int status = booking_effective_status(r, now_ms);
    if (status == STORE_RES_PAYMENT_PENDING) return 1;
    return status == STORE_RES_HELD ? 0 : ERR_CONFLICT;
}

void payment_key(int64_t reservation_id, int64_t attempt, char *buf, size_t len) {
    snprintf(buf, len, "res-%lld-%lld", (long long)reservation_id, (long long)attempt);
}

int payment_after_fail(const struct store_reservation *r, int64_t now_ms) {
    return r->expires_at_ms > now_ms ? STORE_RES_HELD : STORE_RES_EXPIRED;
}

/* ---- settling an attempt ------------------------------------------------------------ */

/* What a settled attempt answers: 0 with c filled (COMPLETED), ERR_DECLINED. */
static int card_result(struct payments *p, struct card_pay *c, const struct store_card_settle *x) {
    if (x->status == STORE_PAY_FAILED) return ERR_DECLINED;
    if (x->status != STORE_PAY_COMPLETED) return ERR_INTERNAL;
    c->outcome = CARD_COMPLETED;
    c->payment = x->out;
    if (!c->payment.paid_at_ms) c->payment.paid_at_ms = p->o.now_ms();
    return 0;
}

struct render_ctx {
    struct payments *p;
    struct card_pay *c;
    struct store_card_settle *x;
    struct store_idem *outer; /* the caller's, with its render */
};

/* Design note 5: the caller's render, with the settled attempt's answer. */
static void render_settled(void *ctx, int err, int *status, const char **body, size_t *len) {
    struct render_ctx *r = ctx;
    if (err == 0) err = card_result(r->p, r->c, r->x);
    r->outer->render(r->outer->ctx, err, status, body, len);
}

/* Settles attempt id: approved (1), or failed (0: declined; -1: never
 * charged). c and idem may be NULL. */
static int settle(struct payments *p, struct arena *a, int64_t id, int approved,
                  const char *charge_id, struct card_pay *c, struct store_idem *idem,
                  struct store_card_settle *x) {
    *x = (struct store_card_settle){.payment_id = id,
                                    .now_ms = p->o.now_ms(),
                                    .approved = approved > 0,
                                    .charge_id = charge_id,
                                    .after_fail = payment_after_fail};
    struct store_idem inner;
    struct render_ctx rc = {p, c, x, idem};
    if (idem && c) {
        inner = *idem;
        inner.render = render_settled;
        inner.ctx = &rc;
    }
    int err = p->store->ops->card_settle(p->store, a, x, idem && c ? &inner : NULL);
    if (idem && c) {
        idem->replayed = inner.replayed;
        idem->status = inner.status;
        idem->body = inner.body;
        idem->len = inner.len;
    }
    if (err) {
        LOG_ERROR(MOD, "op=settle payment=%lld approved=%d err=%s", (long long)id, approved,
                  err_str(err));
        return err;
    }
    if (x->changed) {
        LOG_INFO(MOD, "op=settle payment=%lld reservation=%lld status=%s", (long long)id,
                 (long long)x->out.reservation_id,
                 x->status == STORE_PAY_COMPLETED ? "COMPLETED" : "FAILED");
        if (x->status == STORE_PAY_COMPLETED) metrics_holds(METRICS_HOLD_CONFIRMED, 1);
        metrics_payment(METRICS_PAY_CARD, x->status == STORE_PAY_COMPLETED ? METRICS_PAY_COMPLETED
                                          : approved < 0                   ? METRICS_PAY_ERROR
                                                                           : METRICS_PAY_DECLINED);
        if (x->status == STORE_PAY_COMPLETED && p->o.on_paid)
            p->o.on_paid(p->o.on_paid_ctx, x->out.user_id, x->now_ms);
    }
    return 0;
}

/* Asks the gateway about a PENDING attempt and settles it when the answer
 * is final (design note 3). x->status stays PENDING when it is not;
 * *never_charged is set when it was settled FAILED from a NOT_FOUND. */
static int reconcile_one(struct payments *p, struct arena *a, int64_t id, const char *key,
                         int64_t created_at_ms, struct card_pay *c, struct store_idem *idem,
                         struct store_card_settle *x, int *never_charged) {
    struct gw_result g;
    *never_charged = 0;
    x->status = STORE_PAY_PENDING;
    x->changed = 0;
    if (p->gw->ops->lookup(p->gw, key, &g)) g.outcome = GW_UNKNOWN;
    switch (g.outcome) {
    case GW_APPROVED: return settle(p, a, id, 1, g.charge_id, c, idem, x);
    case GW_DECLINED: return settle(p, a, id, 0, NULL, c, idem, x);
    case GW_NOT_FOUND:
        if (p->o.now_ms() - created_at_ms < p->o.timeout_ms + PAYMENT_NOT_FOUND_GRACE_MS) return 0;
        *never_charged = 1;
        return settle(p, a, id, -1, NULL, NULL, NULL, x);
    default: return 0;
    }
}

/* ---- paying -------------------------------------------------------------------------- */

static void pending_answer(struct card_pay *c, const struct store_card *k) {
    c->outcome = CARD_PENDING;
    c->payment = (struct store_payment){.id = k->payment_id,
                                        .reservation_id = k->reservation_id,
                                        .user_id = c->user_id,
                                        .amount = k->amount,
                                        .method = "card"};
}

/* Charges the new attempt k with the breaker's permit t (design notes 1, 4). */
static int charge(struct payments *p, struct arena *a, struct card_pay *c,
                  const struct store_card *k, const struct breaker_ticket *t,
                  struct store_idem *idem) {
    struct gw_result g;
    int64_t t0 = p->o.mono_ms();
    if (p->gw->ops->charge(p->gw, k->key, c->user_id, k->amount, &g)) g.outcome = GW_UNKNOWN;
    int64_t t1 = p->o.mono_ms();
    breaker_record(p->breaker, t, g.outcome == GW_APPROVED || g.outcome == GW_DECLINED, t1 - t0,
                   t1);
    if (g.outcome != GW_APPROVED && g.outcome != GW_DECLINED) {
        LOG_WARN(MOD, "op=charge payment=%lld key=%s outcome=UNKNOWN http_status=%d ms=%lld",
                 (long long)k->payment_id, k->key, g.http_status, (long long)(t1 - t0));
        pending_answer(c, k);
        metrics_payment(METRICS_PAY_CARD, METRICS_PAY_PENDING);
        return 0;
    }
    struct store_card_settle x;
    if (settle(p, a, k->payment_id, g.outcome == GW_APPROVED, g.charge_id, c, idem, &x)) {
        pending_answer(c, k); /* the gateway answered; the reconciler will record it */
        return 0;
    }
    if (idem && idem->replayed) return 0;
    return card_result(p, c, &x);
}

static int pay_card(struct payments *p, struct arena *a, struct card_pay *c,
                    struct store_idem *idem) {
    c->outcome = 0;
    c->retry_after_ms = 0;
    memset(&c->payment, 0, sizeof(c->payment));
    memset(&c->res, 0, sizeof(c->res));
    if (c->user_id <= 0 || c->reservation_id <= 0) return ERR_INVALID;
    if (idem) {
        idem->ttl_ms = BOOKING_IDEM_TTL_MS;
        int err = p->store->ops->idem_get(p->store, a, idem, p->o.now_ms());
        if (err || idem->replayed) return err;
    }
    struct breaker_ticket t;
    if (breaker_acquire(p->breaker, p->o.mono_ms(), &t, &c->retry_after_ms)) return ERR_UNAVAILABLE;
    for (int round = 0;; round++) {
        struct store_card k = {.reservation_id = c->reservation_id,
                               .user_id = c->user_id,
                               .now_ms = p->o.now_ms(),
                               .check = payment_can_pay_card,
                               .make_key = payment_key};
        int err = p->store->ops->card_begin(p->store, &k);
        c->res = k.res;
        if (err == 0 && !k.existing) return charge(p, a, c, &k, &t, idem);
        breaker_cancel(p->breaker, &t);
        if (err) return err;
        /* An attempt is in flight: ask about it, never charge again (note 1). */
        struct store_card_settle x;
        int never_charged;
        err =
            reconcile_one(p, a, k.payment_id, k.key, k.created_at_ms, c, idem, &x, &never_charged);
        if (err || x.status == STORE_PAY_PENDING) {
            pending_answer(c, &k);
            return 0;
        }
        if (!never_charged) return idem && idem->replayed ? 0 : card_result(p, c, &x);
        /* Never charged: the hold is live again (or expired), so a new
         * attempt. Each round settles one attempt; a few rounds can only be
         * lost to concurrent requests for the same reservation. */
        if (round == PAYMENT_BEGIN_ROUNDS - 1) {
            c->retry_after_ms = 1000;
            return ERR_UNAVAILABLE;
        }
        if (breaker_acquire(p->breaker, p->o.mono_ms(), &t, &c->retry_after_ms))
            return ERR_UNAVAILABLE;
    }
}

/* Completed, declined and pending are counted where they happen; here the
 * refusals that are payments' outcomes (not the request's own mistakes). */
int payment_card(struct payments *p, struct arena *a, struct card_pay *c, struct store_idem *idem) {
    int err = pay_card(p, a, c, idem);
    switch (err) {
    case ERR_UNAVAILABLE: metrics_payment(METRICS_PAY_CARD, METRICS_PAY_UNAVAILABLE); break;
    case ERR_CONFLICT: metrics_payment(METRICS_PAY_CARD, METRICS_PAY_NOT_PAYABLE); break;
    case 0:
    case ERR_DECLINED:
    case ERR_FORBIDDEN:
    case ERR_NOT_FOUND:
    case ERR_INVALID:
    case ERR_IDEMPOTENCY: break;
    default: metrics_payment(METRICS_PAY_CARD, METRICS_PAY_ERROR); break;
    }
    return err;
}

/* ---- the reconciler ------------------------------------------------------------------------ */

int payment_reconcile(struct payments *p, int64_t *settled) {
    struct arena *a = arena_create();
    struct store_card_pending *list = NULL;
    size_t n = 0;
    int64_t done = 0;
    int err = p->store->ops->card_list_pending(p->store, a, p->o.now_ms() - p->o.timeout_ms,
                                               PAYMENT_RECONCILE_BATCH, &list, &n);
    for (size_t i = 0; err == 0 && i < n; i++) {
        struct store_card_settle x;
        int never_charged;
        err = reconcile_one(p, a, list[i].payment_id, list[i].key, list[i].created_at_ms, NULL,
                            NULL, &x, &never_charged);
        if (err == 0 && x.changed) done++;
    }
    arena_destroy(a);
    if (settled) *settled = done;
    return err;
}

static int reconciler_wait(struct payments *p) {
    struct timespec until;
    time_mono_deadline(p->o.reconcile_interval_ms, &until);
    pthread_mutex_lock(&p->mu);
    while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) continue;
    int stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static void *reconciler_main(void *arg) {
    struct payments *p = arg;
    while (!reconciler_wait(p)) {
        int64_t n = 0;
        int err = payment_reconcile(p, &n);
        if (err) LOG_WARN(MOD, "op=reconcile err=%s", err_str(err));
        if (n) LOG_INFO(MOD, "op=reconcile settled=%lld", (long long)n);
    }
    return NULL;
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static void on_breaker(void *ctx, int from, int to, int64_t now_ms) {
    (void)ctx;
    (void)now_ms;
    LOG_WARN(MOD, "op=breaker from=%s to=%s", breaker_state_name(from), breaker_state_name(to));
}

int payments_new(struct store *s, struct gateway *g, const struct payment_opts *o,
                 struct payments **out) {
    struct breaker *b = breaker_new(&o->breaker, on_breaker, NULL);
    if (!b) return ERR_INVALID;
    struct payments *p = xcalloc(1, sizeof(*p));
    p->store = s;
    p->gw = g;
    p->o = *o;
    if (p->o.reconcile_interval_ms <= 0) p->o.reconcile_interval_ms = PAYMENT_RECONCILE_INTERVAL_MS;
    if (!p->o.now_ms) p->o.now_ms = time_now_ms;
    if (!p->o.mono_ms) p->o.mono_ms = time_mono_ms;
    p->breaker = b;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &attr);
    pthread_condattr_destroy(&attr);
    *out = p;
    return 0;
}

int payments_start(struct payments *p) {
    if (pthread_create(&p->thread, NULL, reconciler_main, p) != 0) return ERR_UNAVAILABLE;
    p->started = 1;
    return 0;
}

int payment_breaker_state(struct payments *p) {
    return breaker_state(p->breaker, p->o.mono_ms());
}

void payments_free(struct payments *p) {
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    breaker_free(p->breaker);
    free(p);
}
