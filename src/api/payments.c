/* payments.c -- paying a held reservation.
 *
 *   POST /api/v1/payments  {"userId","reservationId","method"?}   (Idempotency-Key honoured)
 *
 * Decode, call service/booking (balance) or service/payment (card), encode,
 * map errors: 404 unknown reservation, 403 another user's, 409
 * RESERVATION_NOT_PAYABLE, 402 INSUFFICIENT_BALANCE or PAYMENT_DECLINED,
 * 503 GATEWAY_UNAVAILABLE for card payments when no gateway is configured
 * or the circuit breaker is open (with Retry-After), 202 PENDING when the
 * gateway's answer is unknown. A final response is made inside the store's
 * transaction (render_payment, render_card) so that, with an
 * Idempotency-Key, the bytes sent are the ones stored for replay. The
 * classic payment route (classic.c) pays through api_pay with its own
 * encoder and the amount its client states. A completed payment expires
 * the payer's waiting-room token (here for balance payments; card payments
 * through service/payment's on_paid). */
#include <stdio.h>
#include <string.h>

#include "api/idempotency.h"
#include "api/routes.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "service/booking.h"
#include "service/payment.h"
#include "service/waitroom.h"
#include "store/store.h"

static const char *const pay_keys[] = {"userId", "reservationId", "method", NULL};

static void write_payment(struct api_req *r, struct api_res *w, const struct store_payment *p,
                          int status, const char *state) {
    struct jw j;
    jw_init(&j, r->arena, 192);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "paymentId", p->id);
    jw_kv_i64(&j, "reservationId", p->reservation_id);
    jw_kv_i64(&j, "userId", p->user_id);
    jw_kv_i64(&j, "amount", p->amount);
    jw_kv_str(&j, "method", p->method);
    jw_kv_str(&j, "status", state);
    if (p->paid_at_ms) {
        jw_key(&j, "paidAt");
        jw_time(&j, p->paid_at_ms);
    }
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, status, body, len);
}

/* The v1 answer to a completed payment (an api_payment_reply). */
static void reply_payment(struct api_req *r, struct api_res *w, const struct store_payment *p) {
    write_payment(r, w, p, 201, "COMPLETED");
}

/* The refusals balance and card payments share: 404, 403, 409, and the rest. */
static void refuse(struct api_req *r, struct api_res *w, int err, int64_t rid, int64_t user_id,
                   const struct store_reservation *res, int64_t now_ms) {
    switch (err) {
    case ERR_NOT_FOUND:
        api_fail(r, w, err, arena_sprintf(r->arena, "reservation %lld not found", (long long)rid));
        break;
    case ERR_FORBIDDEN:
        api_fail(r, w, err,
                 arena_sprintf(r->arena, "reservation %lld is not a reservation of user %lld",
                               (long long)rid, (long long)user_id));
        break;
    case ERR_CONFLICT:
        api_error(r, w, 409, "RESERVATION_NOT_PAYABLE", "reservation %lld is %s, not a live hold",
                  (long long)rid, booking_status_name(booking_effective_status(res, now_ms)));
        break;
    default: api_fail(r, w, err, NULL); break;
    }
}

/* The answer to a balance payment refused with err; stated: the amount the
 * payer stated (classic), or NULL. */
static void refuse_payment(struct api_req *r, struct api_res *w, int err, const struct store_pay *p,
                           const int64_t *stated) {
    long long rid = p->reservation_id;
    switch (err) {
    case ERR_INSUFFICIENT:
        api_fail(r, w, err,
                 arena_sprintf(r->arena,
                               "balance %lld of user %lld is less than the price %lld of "
                               "reservation %lld",
                               (long long)p->balance, (long long)p->user_id,
                               (long long)p->res.total_price, rid));
        break;
    case ERR_MISMATCH:
        api_error(r, w, 409, "AMOUNT_MISMATCH",
                  "amount %lld is not the price %lld of reservation %lld; nothing was paid",
                  (long long)(stated ? *stated : 0), (long long)p->res.total_price, rid);
        break;
    default: refuse(r, w, err, p->reservation_id, p->user_id, &p->res, p->now_ms); break;
    }
}

struct pay_ctx {
    struct api_req *r;
    struct api_res *w;
    struct store_pay *p;
    const int64_t *stated;
    api_payment_reply reply;
    int rendered;
};

/* The response to a payment that ran with outcome err (0 or a business error). */
static void render_payment(void *ctx, int err, int *status, const char **body, size_t *len) {
    struct pay_ctx *x = ctx;
    if (err == 0)
        x->reply(x->r, x->w, &x->p->out);
    else
        refuse_payment(x->r, x->w, err, x->p, x->stated);
    x->rendered = 1;
    *status = x->w->status;
    *body = x->w->body;
    *len = x->w->body_len;
}

struct card_ctx {
    struct api_req *r;
    struct api_res *w;
    struct card_pay *c;
    int64_t now_ms;
    int rendered;
};

/* The final response to a card payment: 201, 402 declined, or a refusal. */
static void render_card(void *ctx, int err, int *status, const char **body, size_t *len) {
    struct card_ctx *x = ctx;
    struct card_pay *c = x->c;
    if (err == 0) {
        write_payment(x->r, x->w, &c->payment, 201, "COMPLETED");
    } else if (err == ERR_DECLINED) {
        api_error(x->r, x->w, 402, "PAYMENT_DECLINED",
                  "the card payment of reservation %lld was declined by the payment gateway; "
                  "the hold is kept until it expires",
                  (long long)c->reservation_id);
    } else {
        refuse(x->r, x->w, err, c->reservation_id, c->user_id, &c->res, x->now_ms);
    }
    x->rendered = 1;
    *status = x->w->status;
    *body = x->w->body;
    *len = x->w->body_len;
}

static int decode_payment(struct api_req *r, struct api_res *w, struct store_pay *p) {
    json_t *o = api_body_object(r, w, pay_keys);
    if (!o) return ERR_INVALID;
    char err[256];
    const char *method = NULL;
    int rc = jd_i64_or_str(o, "userId", 1, 1, INT64_MAX, &p->user_id, err, sizeof(err));
    if (rc == 0)
        rc = jd_i64(o, "reservationId", 1, 1, INT64_MAX, &p->reservation_id, err, sizeof(err));
    if (rc == 0) rc = jd_str(o, "method", 0, 16, &method, err, sizeof(err));
    if (rc == 0) rc = booking_check_method(method, err, sizeof(err));
    if (rc == 0) p->method = arena_strdup(r->arena, method ? method : "balance");
    json_decref(o);
    if (rc < 0) api_fail(r, w, ERR_INVALID, err);
    return rc < 0 ? rc : 0;
}

static int business(int err) {
    return err == 0 || err == ERR_NOT_FOUND || err == ERR_FORBIDDEN || err == ERR_CONFLICT ||
           err == ERR_INSUFFICIENT || err == ERR_MISMATCH || err == ERR_DECLINED;
}

/* Card payments (service/payment.c): 201, 202 PENDING, 402, 503. */
static void pay_card(struct api_req *r, struct api_res *w, const struct store_pay *p,
                     struct store_idem *idem) {
    if (!r->env->payments) {
        api_error(r, w, 503, "GATEWAY_UNAVAILABLE",
                  "card payments need the payment gateway, which is not configured");
        return;
    }
    struct card_pay c = {.reservation_id = p->reservation_id, .user_id = p->user_id};
    struct card_ctx x = {r, w, &c, p->now_ms, 0};
    if (idem) {
        idem->render = render_card;
        idem->ctx = &x;
    }
    int rc = payment_card(r->env->payments, r->arena, &c, idem);
    if (idem && idem->replayed && rc == 0) {
        api_idem_replay(w, idem);
    } else if (rc == ERR_UNAVAILABLE && c.retry_after_ms > 0) {
        int64_t secs = (c.retry_after_ms + 999) / 1000;
        api_error(r, w, 503, "GATEWAY_UNAVAILABLE",
                  "the payment gateway is failing, so card payments are paused (circuit "
                  "breaker open); retry after %lld s",
                  (long long)secs);
        api_add_header(w, "Retry-After", arena_sprintf(r->arena, "%lld", (long long)secs));
    } else if (rc == 0 && c.outcome == CARD_PENDING) {
        write_payment(r, w, &c.payment, 202, "PENDING");
    } else if (business(rc)) {
        int status;
        const char *body;
        size_t len;
        if (!x.rendered) render_card(&x, rc, &status, &body, &len);
        /* service/payment expires the waiting-room token (on_paid), also
         * when the reconciler settles a PENDING payment later. */
    } else {
        api_fail(r, w, rc, NULL);
    }
}

int api_pay_replay(struct api_req *r, struct api_res *w, int64_t user) {
    if (user <= 0 || !r->header(r, "Idempotency-Key")) return 0;
    struct api_res scratch = {0}; /* errors here are not the answer: the gate's is */
    struct store_idem idem;
    int use = 0;
    if (api_idem_begin(r, &scratch, user, &idem, &use) || !use) return 0;
    idem.ttl_ms = BOOKING_IDEM_TTL_MS;
    struct store *s = r->env->store;
    if (s->ops->idem_get(s, r->arena, &idem, time_now_ms()) || !idem.replayed) return 0;
    api_idem_replay(w, &idem);
    return 1;
}

/* Paying expires the payer's waiting-room token, so a retry of a payment
 * that went through (same Idempotency-Key, same body) arrives with an
 * EXPIRED token. It still gets the first answer back (invariant 4): when
 * the token is the payer's and the key has a stored response for this very
 * request, that is replayed. Anything else keeps the gate's 403. Returns 1
 * when it answered. */
static int replay_after_paying(struct api_req *r, struct api_res *w, int64_t token_user) {
    if (token_user <= 0 || !r->header(r, "Idempotency-Key")) return 0;
    struct api_res scratch = {0};
    struct store_pay p = {0};
    if (decode_payment(r, &scratch, &p) || p.user_id != token_user) return 0;
    return api_pay_replay(r, w, token_user);
}

void api_payment_create(struct api_req *r, struct api_res *w) {
    int64_t caller;
    int verdict;
    struct store_pay p = {.now_ms = time_now_ms()};
    if (api_gate_check(r, w, 0, &verdict, &caller)) return;
    if (verdict != GATE_OK) {
        if (verdict != GATE_NOT_ACTIVE || !replay_after_paying(r, w, caller))
            api_gate_refuse(r, w, verdict);
        return;
    }
    if (decode_payment(r, w, &p)) return;
    if (caller != p.user_id) {
        api_fail(r, w, ERR_FORBIDDEN,
                 arena_sprintf(r->arena, "userId %lld is not the caller", (long long)p.user_id));
        return;
    }
    if (p.method && strcmp(p.method, "card") == 0) { /* NULL: absent, a balance payment */
        struct store_idem idem;
        int use_idem;
        if (api_idem_begin(r, w, p.user_id, &idem, &use_idem)) return;
        pay_card(r, w, &p, use_idem ? &idem : NULL);
        return;
    }
    api_pay(r, w, &p, NULL, reply_payment);
}

void api_pay(struct api_req *r, struct api_res *w, struct store_pay *p, const int64_t *stated,
             api_payment_reply reply) {
    struct store_idem idem;
    int use_idem;
    if (api_idem_begin(r, w, p->user_id, &idem, &use_idem)) return;
    struct pay_ctx x = {r, w, p, stated, reply, 0};
    idem.render = render_payment;
    idem.ctx = &x;
    struct store *s = r->env->store;
    struct store_idem *ip = use_idem ? &idem : NULL;
    int rc =
        stated ? booking_pay_amount(s, r->arena, p, *stated, ip) : booking_pay(s, r->arena, p, ip);
    if (use_idem && idem.replayed && rc == 0) {
        api_idem_replay(w, &idem);
    } else if (business(rc)) {
        int status;
        const char *body;
        size_t len;
        if (!x.rendered) render_payment(&x, rc, &status, &body, &len);
        /* Paid: the user's waiting-room token has done its job (DESIGN.md
         * 3). The payment is committed whatever this says. */
        if (rc == 0) waitroom_paid(r->env->waitroom, p->user_id, time_now_ms());
    } else {
        api_fail(r, w, rc, NULL);
    }
}
