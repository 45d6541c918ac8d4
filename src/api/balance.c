/* balance.c -- the balance routes: look a balance up, charge it.
 *
 *   GET  /api/v1/users/{uid}/balance
 *   POST /api/v1/users/{uid}/balance/charge  {"amount":N}   (Idempotency-Key honoured)
 *
 * Decode, call service/booking, encode. A charge's response is made inside
 * the store's transaction (render_charge) so that, with an Idempotency-Key,
 * the very bytes sent are the ones stored for replay. The classic routes
 * (classic.c) read and charge through api_balance_read and api_charge with
 * their own encoder. */
#include <assert.h>
#include <stdio.h>

#include "api/auth.h"
#include "api/idempotency.h"
#include "api/routes.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "service/booking.h"
#include "store/store.h"

static const char *const charge_keys[] = {"amount", NULL};

static void reply_balance(struct api_req *r, struct api_res *w, int64_t uid, int64_t balance) {
    struct jw j;
    jw_init(&j, r->arena, 64);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "userId", uid);
    jw_kv_i64(&j, "balance", balance);
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, 200, body, len);
}

void api_balance_get(struct api_req *r, struct api_res *w) {
    if (api_auth_user(r, w, r->params[0])) return;
    api_balance_read(r, w, r->params[0], reply_balance);
}

void api_balance_read(struct api_req *r, struct api_res *w, int64_t uid, api_balance_reply reply) {
    int64_t balance = 0;
    r->user_id = uid;
    int rc = booking_balance(r->env->store, uid, &balance);
    if (rc)
        api_fail(r, w, rc, NULL);
    else
        reply(r, w, uid, balance);
}

struct charge_ctx {
    struct api_req *r;
    struct api_res *w;
    struct store_charge *c;
    api_balance_reply reply;
    int rendered;
};

/* The response to a charge that ran with outcome err (0 or a business error). */
static void render_charge(void *ctx, int err, int *status, const char **body, size_t *len) {
    struct charge_ctx *x = ctx;
    if (err == ERR_INVALID)
        api_fail(x->r, x->w, err,
                 arena_sprintf(x->r->arena,
                               "a charge of %lld would overflow the balance of user %lld",
                               (long long)x->c->amount, (long long)x->c->user_id));
    else if (err)
        api_fail(x->r, x->w, err, NULL);
    else
        x->reply(x->r, x->w, x->c->user_id, x->c->balance);
    x->rendered = 1;
    *status = x->w->status;
    *body = x->w->body;
    *len = x->w->body_len;
}

/* The caller and the body, on the event thread: a charge reaches the
 * store's committer (http/server.c note 8) decoded, and a bad one never
 * does. */
void api_balance_charge_check(struct api_req *r, struct api_res *w) {
    if (api_auth_user(r, w, r->params[0])) return;
    json_t *o = api_body_object(r, w, charge_keys);
    if (!o) return;
    char err[256] = "";
    int64_t *amount = arena_alloc(r->arena, sizeof(*amount));
    int rc = jd_i64(o, "amount", 1, INT64_MIN, INT64_MAX, amount, err, sizeof(err));
    json_decref(o);
    if (rc)
        api_fail(r, w, ERR_INVALID, err);
    else
        r->state = amount;
}

void api_balance_charge(struct api_req *r, struct api_res *w) {
    const int64_t *amount = r->state; /* api_balance_charge_check passed it */
    assert(amount);
    api_charge(r, w, r->params[0], *amount, reply_balance);
}

void api_charge(struct api_req *r, struct api_res *w, int64_t uid, int64_t amount,
                api_balance_reply reply) {
    struct store_charge c = {.user_id = uid, .amount = amount, .now_ms = time_now_ms()};
    r->user_id = uid;
    struct store_idem idem;
    int use_idem;
    if (api_idem_begin(r, w, c.user_id, &idem, &use_idem)) return;
    struct charge_ctx x = {r, w, &c, reply, 0};
    idem.render = render_charge;
    idem.ctx = &x;
    struct booking_rules b;
    booking_rules_from_config(r->env->cfg, &b);
    char err[256] = "";
    int rc =
        booking_charge(r->env->store, r->arena, &b, &c, use_idem ? &idem : NULL, err, sizeof(err));
    if (use_idem && idem.replayed && rc == 0) {
        api_idem_replay(w, &idem);
    } else if (rc == ERR_INVALID && err[0]) {
        api_fail(r, w, rc, err);
    } else if (rc == 0 || rc == ERR_INVALID) {
        int status;
        const char *body;
        size_t len;
        if (!x.rendered) render_charge(&x, rc, &status, &body, &len);
    } else {
        api_fail(r, w, rc, NULL);
    }
}
