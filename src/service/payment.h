/* payment.h -- card payments through the payment gateway (DESIGN.md 3, 4.1).
 *
 * A card payment of a live hold: the circuit breaker may refuse it at once
 * (ERR_UNAVAILABLE with a retry-after); otherwise a PENDING attempt with a
 * gateway key derived from the reservation is stored, the gateway is asked
 * to charge that key, and the outcome is stored: approved -> CONFIRMED
 * (no balance moves), declined -> ERR_DECLINED with the hold kept, unknown
 * (timeout, 5xx, no connection) -> PENDING, left to the reconciler thread,
 * which asks the gateway by key until it knows.
 *
 * Rules only: the gateway and the store are ports; times come from the
 * clocks in the options. Not here: HTTP (api/payments.c), SQL (store/). */
#pragma once
#include <stdint.h>

#include "service/breaker.h"
#include "store/store.h"

struct arena;
struct gateway;

#define PAYMENT_RECONCILE_INTERVAL_MS 250 /* the reconciler looks this often */
#define PAYMENT_RECONCILE_BATCH 64        /* attempts per look */
#define PAYMENT_NOT_FOUND_GRACE_MS 1000   /* see payment.c design note 3 */

struct payment_opts {
    int64_t timeout_ms; /* the gateway's request timeout (--pg-timeout) */
    struct breaker_opts breaker;
    int64_t reconcile_interval_ms; /* 0: PAYMENT_RECONCILE_INTERVAL_MS */
    int64_t (*now_ms)(void);       /* wall clock, epoch ms */
    int64_t (*mono_ms)(void);      /* monotonic ms, for the breaker and durations */
    /* Called after a payment is confirmed (by a request or the reconciler);
     * may be NULL. */
    void (*on_paid)(void *ctx, int64_t user_id, int64_t now_ms);
    void *on_paid_ctx;
};

struct payments;

/* ERR_INVALID when the breaker options are out of range (min calls above
 * the window). g stays the caller's, and must outlive *out. */
int payments_new(struct store *s, struct gateway *g, const struct payment_opts *o,
                 struct payments **out);
/* Starts the reconciler thread. */
int payments_start(struct payments *p);
/* Stops the reconciler (if started) and frees p. */
void payments_free(struct payments *p);

enum card_outcome { CARD_COMPLETED = 1, CARD_PENDING };

struct card_pay {
    int64_t reservation_id, user_id;
    /* Out, on 0: COMPLETED (payment confirmed, paid_at set) or PENDING. */
    int outcome;
    struct store_payment payment;
    /* Out, whenever the reservation was read: it as it was (no seats). */
    struct store_reservation res;
    /* Out, with ERR_UNAVAILABLE: when to try again, ms. */
    int64_t retry_after_ms;
};

/* Pays c->reservation_id for c->user_id by card. 0 (see c->outcome);
 * ERR_DECLINED; ERR_UNAVAILABLE (breaker open); the store's ERR_NOT_FOUND,
 * ERR_FORBIDDEN, ERR_CONFLICT (not a live hold). With idem (may be NULL),
 * a final answer (0 COMPLETED, or ERR_DECLINED) is rendered and stored in
 * the transaction that settles the payment, and a stored one is replayed
 * (0 with idem->replayed). */
int payment_card(struct payments *p, struct arena *a, struct card_pay *c, struct store_idem *idem);

/* The reconciler's one pass (what its thread runs every interval):
 * settles every PENDING attempt whose outcome the gateway now knows.
 * *settled (may be NULL) gets how many. */
int payment_reconcile(struct payments *p, int64_t *settled);

/* The breaker's state now (enum breaker_state). */
int payment_breaker_state(struct payments *p);

/* ---- rules, exposed for tests ----------------------------------------------- */

/* store_card.check: ERR_FORBIDDEN (not the owner), 1 when PAYMENT_PENDING
 * (the attempt in flight is reconciled instead of charging again), 0 for a
 * live hold, else ERR_CONFLICT. balance is unused. */
int payment_can_pay_card(const struct store_reservation *r, int64_t user_id, int64_t balance,
                         int64_t now_ms);
/* store_card.make_key: "res-<reservation>-<attempt>". */
void payment_key(int64_t reservation_id, int64_t attempt, char *buf, size_t len);
/* store_card_settle.after_fail: HELD while the hold lasts, else EXPIRED. */
int payment_after_fail(const struct store_reservation *r, int64_t now_ms);
