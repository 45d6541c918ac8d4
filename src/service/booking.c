/* booking.c -- holds, balances and payments: the rules (see booking.h).
 *
 * Responsible for deciding: what a hold may contain, when it ends, who may
 * see, cancel or pay a reservation, whether a balance may take a charge, and
 * for expiring holds on time (the sweeper thread). Not here: how rows are
 * read and written (the store port; sqlite_booking.c), HTTP and JSON (api/).
 *
 * Design notes
 *
 *   1. The reservation state machine:
 *        HELD --pay--> CONFIRMED
 *        HELD --DELETE--> CANCELLED
 *        HELD --expires_at passes--> EXPIRED
 *        HELD --card payment sent--> PAYMENT_PENDING --approved--> CONFIRMED
 *        PAYMENT_PENDING --declined / never charged--> HELD, or EXPIRED
 *                                                      once expires_at passed
 *      (card payments: service/payment.c). PAYMENT_PENDING does not expire
 *      and cannot be cancelled: the gateway may have taken the money.
 *      Nothing leaves CONFIRMED, CANCELLED or EXPIRED.
 *      A HELD reservation whose expires_at has passed is EXPIRED to every
 *      rule here the moment it passes (booking_effective_status), before
 *      the sweeper writes it: it can no longer be paid or cancelled, and its
 *      seats go to the next hold that asks for them.
 *   2. Decisions that must hold at commit time (may this user pay this
 *      reservation with this balance?) are pure functions of the rows; the
 *      store calls them inside its transaction with the rows it read there,
 *      so the decision and the write are atomic.
 *   3. The sweeper expires due holds every BOOKING_SWEEP_INTERVAL_MS, so a
 *      hold's seats come back within its TTL plus about a fifth of a second
 *      even when nobody asks for them. Each pass is a cheap read when
 *      nothing is due. It also purges idempotency rows past their 24 h.
 *   4. Balances are int64 won and never negative: a charge that would
 *      overflow is refused (ERR_INVALID), a payment needs balance >= price.
 *   5. Every limit comes from struct booking_rules (the config table), so
 *      nothing here hard-codes an operator's choice. */
#include "service/booking.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "core/xmalloc.h"

#define MOD "booking"

void booking_rules_from_config(const struct config *c, struct booking_rules *out) {
    out->hold_ttl_ms = c->hold_ttl_ms;
    out->max_seats_per_hold = c->max_seats_per_hold;
    out->max_charge = c->max_charge;
    out->max_live_holds = c->max_live_holds;
}

const char *booking_status_name(int status) {
    switch (status) {
    case STORE_RES_HELD: return "HELD";
    case STORE_RES_PAYMENT_PENDING: return "PAYMENT_PENDING";
    case STORE_RES_CONFIRMED: return "CONFIRMED";
    case STORE_RES_CANCELLED: return "CANCELLED";
    case STORE_RES_EXPIRED: return "EXPIRED";
    }
    return "UNKNOWN";
}

int booking_effective_status(const struct store_reservation *r, int64_t now_ms) {
    if (r->status == STORE_RES_HELD && r->expires_at_ms <= now_ms) return STORE_RES_EXPIRED;
    return r->status;
}

/* ---- checks of requests ----------------------------------------------------- */

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

int booking_check_seats(const struct booking_rules *b, const int64_t *ids, size_t n, char *errbuf,
                        size_t errlen) {
    int64_t max =
        b->max_seats_per_hold < BOOKING_SEATS_LIMIT ? b->max_seats_per_hold : BOOKING_SEATS_LIMIT;
    if (n == 0 || n > (size_t)max) {
        snprintf(errbuf, errlen, "a hold must list 1 to %lld seats (got %zu)", (long long)max, n);
        return ERR_INVALID;
    }
    int64_t sorted[BOOKING_SEATS_LIMIT];
    for (size_t i = 0; i < n; i++) {
        if (ids[i] <= 0) {
            snprintf(errbuf, errlen, "seat list entry %zu must be a positive integer", i);
            return ERR_INVALID;
        }
        sorted[i] = ids[i];
    }
    qsort(sorted, n, sizeof(sorted[0]), cmp_i64);
    for (size_t i = 1; i < n; i++) {
        if (sorted[i] == sorted[i - 1]) {
            snprintf(errbuf, errlen, "the seat list names seat %lld more than once",
                     (long long)sorted[i]);
            return ERR_INVALID;
        }
    }
    return 0;
}

int booking_check_amount(const struct booking_rules *b, int64_t amount, char *errbuf,
                         size_t errlen) {
    if (amount < 1 || amount > b->max_charge) {
        snprintf(errbuf, errlen, "field \"amount\" must be between 1 and %lld",
                 (long long)b->max_charge);
        return ERR_INVALID;
    }
    return 0;
}

int booking_check_idem_key(const char *key, char *errbuf, size_t errlen) {
    size_t n = strlen(key);
    int visible = 1;
    for (size_t i = 0; i < n && visible; i++) visible = key[i] > 0x20 && key[i] < 0x7f;
    if (n == 0 || n > BOOKING_IDEM_KEY_MAX || !visible) {
        snprintf(errbuf, errlen,
                 "header Idempotency-Key must be 1 to %d visible ASCII characters (got %zu bytes)",
                 BOOKING_IDEM_KEY_MAX, n);
        return ERR_INVALID;
    }
    return 0;
}

int booking_check_method(const char *method, char *errbuf, size_t errlen) {
    if (!method || strcmp(method, "balance") == 0 || strcmp(method, "card") == 0) return 0;
    snprintf(errbuf, errlen, "field \"method\" must be \"balance\" or \"card\"");
    return ERR_INVALID;
}

/* ---- decisions on stored rows ------------------------------------------------- */

int booking_credit(int64_t balance, int64_t amount, int64_t *after) {
    if (balance < 0 || amount < 0 || __builtin_add_overflow(balance, amount, after))
        return ERR_INVALID;
    return 0;
}

int booking_can_pay(const struct store_reservation *r, int64_t user_id, int64_t balance,
                    int64_t now_ms) {
    if (r->user_id != user_id) return ERR_FORBIDDEN;
    if (booking_effective_status(r, now_ms) != STORE_RES_HELD) return ERR_CONFLICT;
    if (balance < r->total_price) return ERR_INSUFFICIENT;
    return 0;
}

int booking_can_cancel(const struct store_reservation *r, int64_t caller, int64_t balance,
                       int64_t now_ms) {
    (void)balance;
    if (caller != 0 && r->user_id != caller) return ERR_FORBIDDEN;
    switch (booking_effective_status(r, now_ms)) {
    case STORE_RES_HELD: return 0;
    case STORE_RES_CANCELLED: return 1;
    default: return ERR_CONFLICT;
    }
}

/* ---- operations ------------------------------------------------------------------ */

int booking_hold(struct store *s, struct arena *a, const struct booking_rules *b,
                 struct store_hold *h, int64_t now_ms, struct store_reservation *out, char *errbuf,
                 size_t errlen) {
    int err = booking_check_seats(b, h->seat_ids, h->nseats, errbuf, errlen);
    if (err) return err;
    if (h->user_id <= 0) {
        snprintf(errbuf, errlen, "field \"userId\" must be a positive integer");
        return ERR_INVALID;
    }
    h->now_ms = now_ms;
    h->expires_at_ms = now_ms + b->hold_ttl_ms;
    h->max_live_holds = b->max_live_holds;
    err = s->ops->hold_seats(s, a, h, out);
    if (err == 0) metrics_holds(METRICS_HOLD_CREATED, 1);
    return err;
}

int booking_hold_numbers(struct store *s, struct arena *a, const struct booking_rules *b,
                         struct store_hold *h, int64_t now_ms, struct store_reservation *out,
                         char *errbuf, size_t errlen) {
    int err = booking_check_seats(b, h->seat_ids, h->nseats, errbuf, errlen);
    if (err) return err;
    const int64_t *numbers = h->seat_ids;
    int64_t ids[BOOKING_SEATS_LIMIT], bad = 0; /* booking_check_seats bounds nseats */
    h->bad_seat_id = h->bad_seat_number = 0;
    err =
        s->ops->seat_ids_by_number(s, h->concert_id, h->session_id, numbers, h->nseats, ids, &bad);
    if (err) {
        if (err == ERR_NOT_FOUND) h->bad_seat_number = bad;
        return err;
    }
    h->seat_ids = ids;
    err = booking_hold(s, a, b, h, now_ms, out, errbuf, errlen);
    h->seat_ids = numbers;
    return err;
}

int booking_get(struct store *s, struct arena *a, int64_t id, int64_t caller, int64_t now_ms,
                struct store_reservation *out) {
    int err = s->ops->get_reservation(s, a, id, out);
    if (err) return err;
    if (caller != 0 && out->user_id != caller) return ERR_FORBIDDEN;
    out->status = booking_effective_status(out, now_ms);
    return 0;
}

int booking_cancel(struct store *s, struct arena *a, int64_t id, int64_t caller, int64_t now_ms,
                   struct store_reservation *out) {
    int err = s->ops->cancel_reservation(s, a, id, caller, now_ms, booking_can_cancel, out);
    if (err == 0) out->status = booking_effective_status(out, now_ms);
    return err;
}

int booking_balance(struct store *s, int64_t user_id, int64_t *balance) {
    if (user_id <= 0) return ERR_INVALID;
    return s->ops->get_balance(s, user_id, balance);
}

int booking_charge(struct store *s, struct arena *a, const struct booking_rules *b,
                   struct store_charge *c, struct store_idem *idem, char *errbuf, size_t errlen) {
    int err = booking_check_amount(b, c->amount, errbuf, errlen);
    if (err) return err;
    if (c->user_id <= 0) {
        snprintf(errbuf, errlen, "user id must be a positive integer");
        return ERR_INVALID;
    }
    c->credit = booking_credit;
    if (idem) idem->ttl_ms = BOOKING_IDEM_TTL_MS;
    return s->ops->charge(s, a, c, idem);
}

/* A balance payment's outcome in /metrics; refusals of the request itself
 * (not the caller's, no such reservation, bad input) are not payments. */
static void count_payment(int err) {
    switch (err) {
    case 0:
        metrics_payment(METRICS_PAY_BALANCE, METRICS_PAY_COMPLETED);
        metrics_holds(METRICS_HOLD_CONFIRMED, 1);
        break;
    case ERR_INSUFFICIENT: metrics_payment(METRICS_PAY_BALANCE, METRICS_PAY_INSUFFICIENT); break;
    case ERR_CONFLICT: metrics_payment(METRICS_PAY_BALANCE, METRICS_PAY_NOT_PAYABLE); break;
    case ERR_FORBIDDEN:
    case ERR_NOT_FOUND:
    case ERR_INVALID:
    case ERR_IDEMPOTENCY: break;
    default: metrics_payment(METRICS_PAY_BALANCE, METRICS_PAY_ERROR); break;
    }
}

int booking_pay(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem) {
    if (!p->method) p->method = "balance";
    if (strcmp(p->method, "card") == 0) return ERR_UNAVAILABLE; /* no gateway yet */
    if (strcmp(p->method, "balance") != 0 || p->user_id <= 0 || p->reservation_id <= 0)
        return ERR_INVALID;
    p->check = booking_can_pay;
    if (idem) idem->ttl_ms = BOOKING_IDEM_TTL_MS;
    int err = s->ops->pay(s, a, p, idem);
    if (!idem || !idem->replayed) count_payment(err);
    return err;
}

int booking_pay_amount(struct store *s, struct arena *a, struct store_pay *p, int64_t amount,
                       struct store_idem *idem) {
    if (p->user_id <= 0 || p->reservation_id <= 0) return ERR_INVALID;
    struct store_reservation r;
    int err = s->ops->get_reservation(s, a, p->reservation_id, &r);
    if (err) return err;
    if (r.user_id != p->user_id) { /* the owner check comes first, as in booking_can_pay */
        p->res = r;
        return ERR_FORBIDDEN;
    }
    if (r.total_price != amount) {
        p->res = r;
        return ERR_MISMATCH;
    }
    return booking_pay(s, a, p, idem);
}

/* ---- the sweeper ------------------------------------------------------------------- */

int booking_sweep(struct store *s, int64_t now_ms, int purge, int64_t *expired) {
    int64_t total = 0, n;
    int err;
    do { /* a full batch may mean more are due */
        n = 0;
        err = s->ops->expire_holds(s, now_ms, BOOKING_SWEEP_BATCH, &n);
        total += n;
    } while (err == 0 && n == BOOKING_SWEEP_BATCH);
    metrics_holds(METRICS_HOLD_EXPIRED, (uint64_t)total);
    if (err == 0 && purge) err = s->ops->purge_idempotency(s, now_ms - BOOKING_IDEM_TTL_MS, NULL);
    if (expired) *expired = total;
    return err;
}

struct booking_sweeper {
    struct store *store;
    int64_t interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled by stop */
    int stop;
};

/* Sleeps interval_ms on the monotonic clock or until stopped; 1 when stopped. */
static int sweeper_wait(struct booking_sweeper *sw) {
    struct timespec until;
    time_mono_deadline(sw->interval_ms, &until);
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop && pthread_cond_timedwait(&sw->cv, &sw->mu, &until) == 0) continue;
    int stop = sw->stop;
    pthread_mutex_unlock(&sw->mu);
    return stop;
}

static void *sweeper_main(void *p) {
    struct booking_sweeper *sw = p;
    int64_t last_purge = 0;
    while (!sweeper_wait(sw)) {
        int64_t now = time_now_ms(), n = 0;
        int purge = now - last_purge >= BOOKING_PURGE_INTERVAL_MS;
        int err = booking_sweep(sw->store, now, purge, &n);
        if (err)
            LOG_WARN(MOD, "op=sweep err=%s", err_str(err));
        else if (purge)
            last_purge = now;
        if (n) LOG_DEBUG(MOD, "op=sweep expired=%lld", (long long)n);
    }
    return NULL;
}

int booking_sweeper_start(struct store *s, int64_t interval_ms, struct booking_sweeper **out) {
    struct booking_sweeper *sw = xcalloc(1, sizeof(*sw));
    sw->store = s;
    sw->interval_ms = interval_ms > 0 ? interval_ms : BOOKING_SWEEP_INTERVAL_MS;
    pthread_mutex_init(&sw->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&sw->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&sw->thread, NULL, sweeper_main, sw) != 0) {
        pthread_cond_destroy(&sw->cv);
        pthread_mutex_destroy(&sw->mu);
        free(sw);
        return ERR_UNAVAILABLE;
    }
    *out = sw;
    return 0;
}

void booking_sweeper_stop(struct booking_sweeper *sw) {
    if (!sw) return;
    pthread_mutex_lock(&sw->mu);
    sw->stop = 1;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    pthread_cond_destroy(&sw->cv);
    pthread_mutex_destroy(&sw->mu);
    free(sw);
}
