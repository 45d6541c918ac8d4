/* booking.h -- the rules of holds, balances and payments (DESIGN.md 3).
 *
 * What a hold may contain, when a reservation may be seen, cancelled or
 * paid, how a balance may grow, how long a hold and an idempotent response
 * live, and the sweeper that expires holds on time. Requests come in decoded
 * (api/), changes go out through the store port, atomically: where a rule
 * must be decided on the rows inside the store's transaction, the store is
 * handed the check function from here.
 *
 * No I/O of its own: no SQL, no HTTP. Times are epoch ms passed in by the
 * caller, so every rule is testable without a clock. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct config;

#define BOOKING_SEATS_LIMIT 100                         /* --max-seats-per-hold's upper bound */
#define BOOKING_IDEM_KEY_MAX 64                         /* Idempotency-Key length */
#define BOOKING_IDEM_TTL_MS (24 * 3600 * (int64_t)1000) /* stored responses live 24 h */
#define BOOKING_SWEEP_INTERVAL_MS 200                   /* expired holds go within ~1/5 s */
#define BOOKING_SWEEP_BATCH 256                         /* holds expired per transaction */
#define BOOKING_PURGE_INTERVAL_MS (60 * (int64_t)1000)  /* idempotency rows purged this often */

struct booking_rules {
    int64_t hold_ttl_ms;
    int64_t max_seats_per_hold;
    int64_t max_charge;
    int64_t max_live_holds; /* per user; 0: no cap */
};

void booking_rules_from_config(const struct config *c, struct booking_rules *out);

/* "HELD", "CONFIRMED", ... for an enum store_res_status. */
const char *booking_status_name(int status);
/* The status everyone sees: a HELD reservation past its expiry is EXPIRED,
 * whether or not the sweeper has written that yet. */
int booking_effective_status(const struct store_reservation *r, int64_t now_ms);

/* ---- checks of requests (ERR_INVALID with errbuf saying what is wrong) ---- */

/* 1..max_seats_per_hold (at most BOOKING_SEATS_LIMIT) positive, distinct
 * seat ids (or seat numbers: the messages name neither the field nor the kind). */
int booking_check_seats(const struct booking_rules *b, const int64_t *ids, size_t n, char *errbuf,
                        size_t errlen);
/* A charge of 1..max_charge won. */
int booking_check_amount(const struct booking_rules *b, int64_t amount, char *errbuf,
                         size_t errlen);
/* An Idempotency-Key: 1..BOOKING_IDEM_KEY_MAX visible ASCII characters. */
int booking_check_idem_key(const char *key, char *errbuf, size_t errlen);
/* "balance" or "card"; NULL means "balance". */
int booking_check_method(const char *method, char *errbuf, size_t errlen);

/* ---- decisions on stored rows (the store calls these inside its transaction) */

/* balance + amount, or ERR_INVALID when it would overflow int64. */
int booking_credit(int64_t balance, int64_t amount, int64_t *after);
/* Whether user_id may pay r now with balance: ERR_FORBIDDEN (not the owner),
 * ERR_CONFLICT (not a live hold), ERR_INSUFFICIENT, or 0. */
int booking_can_pay(const struct store_reservation *r, int64_t user_id, int64_t balance,
                    int64_t now_ms);
/* Whether caller (0 = not known, no owner check) may cancel r now: 0 to
 * cancel a live hold, 1 when it is cancelled already (nothing to do),
 * ERR_FORBIDDEN, or ERR_CONFLICT (expired, paid). balance is unused. */
int booking_can_cancel(const struct store_reservation *r, int64_t caller, int64_t balance,
                       int64_t now_ms);

/* ---- operations ------------------------------------------------------------ */

/* Holds h->seat_ids of h->session_id (concert h->concert_id) for h->user_id
 * from now for the hold TTL. ERR_INVALID (errbuf) for a bad seat list; the
 * store's ERR_NOT_FOUND / ERR_CONFLICT with h->bad_seat_* set. */
int booking_hold(struct store *s, struct arena *a, const struct booking_rules *b,
                 struct store_hold *h, int64_t now_ms, struct store_reservation *out, char *errbuf,
                 size_t errlen);
/* booking_hold for seats named by their numbers within the session, as
 * the classic API names them: h->seat_ids holds seat numbers. They are
 * checked like seat ids, mapped to the seat ids through the store and held;
 * h->seat_ids points at the numbers again on return. ERR_NOT_FOUND with
 * h->bad_seat_id 0 and h->bad_seat_number set for a number that is no seat
 * of the session (both 0: no such session of the concert); otherwise as
 * booking_hold. */
int booking_hold_numbers(struct store *s, struct arena *a, const struct booking_rules *b,
                         struct store_hold *h, int64_t now_ms, struct store_reservation *out,
                         char *errbuf, size_t errlen);
/* The reservation with its effective status; ERR_FORBIDDEN when caller is
 * known and not the owner. */
int booking_get(struct store *s, struct arena *a, int64_t id, int64_t caller, int64_t now_ms,
                struct store_reservation *out);
/* Cancels a live hold (seats released); see booking_can_cancel. */
int booking_cancel(struct store *s, struct arena *a, int64_t id, int64_t caller, int64_t now_ms,
                   struct store_reservation *out);
/* The balance of user_id (0 for a user never seen). */
int booking_balance(struct store *s, int64_t user_id, int64_t *balance);
/* Charges amount to user_id; idem may be NULL. */
int booking_charge(struct store *s, struct arena *a, const struct booking_rules *b,
                   struct store_charge *c, struct store_idem *idem, char *errbuf, size_t errlen);
/* Pays p->reservation_id for p->user_id from the balance. Method "card"
 * is not paid here (ERR_UNAVAILABLE): it goes through the payment gateway,
 * service/payment.h. idem may be NULL. */
int booking_pay(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem);
/* booking_pay for a payer who states the amount (the classic API): when
 * the reservation is p->user_id's and amount is not its price, ERR_MISMATCH
 * and nothing is paid. p->res gets the reservation whenever it was found
 * (for the caller's message). A reservation's price never changes once
 * held, so checking it before the payment's transaction decides exactly
 * what checking it inside would. */
int booking_pay_amount(struct store *s, struct arena *a, struct store_pay *p, int64_t amount,
                       struct store_idem *idem);

/* ---- the sweeper ------------------------------------------------------------- */

/* One pass at now_ms: expires every due hold (in batches), and purges
 * idempotency rows older than BOOKING_IDEM_TTL_MS when purge is set.
 * *expired (may be NULL) gets how many holds it expired. */
int booking_sweep(struct store *s, int64_t now_ms, int purge, int64_t *expired);

/* A thread that runs booking_sweep every interval_ms (purging once every
 * BOOKING_PURGE_INTERVAL_MS) until stopped. Stop it before closing s. */
struct booking_sweeper;
int booking_sweeper_start(struct store *s, int64_t interval_ms, struct booking_sweeper **out);
void booking_sweeper_stop(struct booking_sweeper *sw);
