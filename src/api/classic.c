/* classic.c -- the classic API (DESIGN.md 4.2): the routes the second
 * report's client calls, as one more route table over the services v1 uses.
 *
 *   POST /api/token                        {"userId"}            enter the waiting room
 *   GET  /api/token/{userId}                                     the user's live token (404: none)
 *   GET  /api/token/status/{userId}                              true / false, nothing else
 *   PUT  /api/balance/charge               {"userId","amount"}   -> the new balance
 *   GET  /api/balance/{userId}
 *   GET  /api/concerts                                           a bare array
 *   GET  /api/concerts/schedules/{concertId}                     sessions, as "schedules"
 *   GET  /api/concerts/seats/{scheduleId}?page=&size=            available seats, numbered pages
 *   POST /api/reservations/seats           {"userId","concertId","scheduleId","seatIdList"}
 *   POST /api/reservations/payments        {"userId","reservationId","amount"}
 *
 * Here: decoding these requests and encoding these shapes, which are not
 * v1's (bare arrays, "amount" for a balance, seat numbers as seat ids).
 * Not here: any rule. The waiting room, holds, balances and payments are the
 * services' (waitroom_*, booking_*, catalog_*); charging and paying, with
 * Idempotency-Key and the token expiry after a payment, go through the same
 * calls as v1 (api_charge, api_pay) with this file's encoders.
 *
 * Who the caller is: this client sends no QUEUE-TOKEN. A request names its
 * user in the path or the body (userId, a JSON number or a decimal string)
 * and/or in a userId header; when both name one they must agree (403
 * FORBIDDEN). Holds and payments need that user to hold an ACTIVATED token
 * (waitroom_check_user): 401 TOKEN_MISSING when the user holds none, 403
 * TOKEN_NOT_ACTIVE when it is WAITING or its time is up. The body is
 * decoded before the gate, since it is where the user is named. */
#include <assert.h>

#include "api/auth.h"
#include "api/limits.h"
#include "api/routes.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"
#include "core/num.h"
#include "core/timeutil.h"
#include "service/booking.h"
#include "service/catalog.h"
#include "service/waitroom.h"
#include "store/store.h"

#define USER_HEADER "userId"

/* ---- who the caller is ----------------------------------------------------- */

/* The user the request is made by: named (by the path or body; 0 when
 * neither names one) and/or the userId header. Writes the 400/403 and
 * returns nonzero when they disagree, the header is not a positive int64,
 * or nobody is named. */
static int caller_of(struct api_req *r, struct api_res *w, int64_t named, int64_t *user) {
    const char *h = r->header(r, USER_HEADER);
    int64_t hv = 0;
    if (h && (num_parse_i64(h, 0, &hv) || hv < 1)) {
        api_error(r, w, 400, "INVALID_REQUEST", "header %s must be a positive integer",
                  USER_HEADER);
        return ERR_INVALID;
    }
    if (named && hv && named != hv) {
        api_error(r, w, 403, "FORBIDDEN", "header %s (%lld) and the request's userId (%lld) differ",
                  USER_HEADER, (long long)hv, (long long)named);
        return ERR_FORBIDDEN;
    }
    if (!named && !hv) {
        api_error(r, w, 400, "INVALID_REQUEST", "field \"userId\" is required (or the %s header)",
                  USER_HEADER);
        return ERR_INVALID;
    }
    *user = named ? named : hv;
    r->user_id = *user;
    return api_auth_user(r, w, *user);
}

/* Decodes the body as an object with only the keys allowed and resolves the
 * caller from its optional userId. NULL with the 4xx written otherwise; the
 * caller json_decref()s the result. */
static json_t *body_of(struct api_req *r, struct api_res *w, const char *const *allowed,
                       int64_t *user) {
    json_t *o = api_body_object(r, w, allowed);
    if (!o) return NULL;
    char err[256];
    int64_t named = 0;
    if (jd_i64_or_str(o, "userId", 0, 1, INT64_MAX, &named, err, sizeof(err)) < 0) {
        api_fail(r, w, ERR_INVALID, err);
    } else if (caller_of(r, w, named, user) == 0) {
        return o;
    }
    json_decref(o);
    return NULL;
}

/* The waiting-room gate by user: the verdict, or nonzero with the 503 written. */
static int gate_of(struct api_req *r, struct api_res *w, int64_t user, enum waitroom_gate *g) {
    int rc = waitroom_check_user(r->env->waitroom, user, time_now_ms(), g);
    if (rc) api_fail(r, w, rc, rc == ERR_UNAVAILABLE ? API_QUEUE_DOWN : NULL);
    return rc;
}

static void gate_refuse(struct api_req *r, struct api_res *w, int64_t user, enum waitroom_gate g) {
    if (g == GATE_MISSING)
        api_error(r, w, 401, "TOKEN_MISSING", "user %lld holds no queue token", (long long)user);
    else
        api_error(r, w, 403, "TOKEN_NOT_ACTIVE", "the queue token of user %lld is not ACTIVATED",
                  (long long)user);
}

/* 0 when user may hold and pay; else the 401/403/503 is written. */
static int gate(struct api_req *r, struct api_res *w, int64_t user) {
    enum waitroom_gate g;
    if (gate_of(r, w, user, &g)) return ERR_UNAVAILABLE;
    if (g == GATE_OK) return 0;
    gate_refuse(r, w, user, g);
    return ERR_FORBIDDEN;
}

static void finish(struct api_res *w, struct jw *j) {
    size_t len;
    char *body = jw_finish(j, &len);
    api_json(w, 200, body, len);
}

/* ---- the waiting room ------------------------------------------------------- */

static void reply_token(struct api_req *r, struct api_res *w, const struct waitroom_view *v) {
    struct jw j;
    jw_init(&j, r->arena, 160);
    jw_obj_begin(&j);
    jw_kv_str(&j, "token", v->t.token);
    jw_kv_i64(&j, "userId", v->t.user_id);
    jw_kv_str(&j, "status", queue_state_name(v->t.state));
    jw_kv_i64(&j, "position", v->t.position);
    jw_obj_end(&j);
    finish(w, &j);
}

/* Entering's precheck (api.h): the body, the caller, the rate limits; the
 * user goes to classic_token_enter in r->user_id. */
static void classic_token_enter_check(struct api_req *r, struct api_res *w) {
    static const char *const keys[] = {"userId", NULL};
    int64_t user;
    json_t *o = body_of(r, w, keys, &user);
    if (!o) return;
    json_decref(o);
    api_limit(r, w, API_LIMIT_ENTER, user);
}

static void classic_token_enter(struct api_req *r, struct api_res *w) {
    int64_t user = r->user_id; /* classic_token_enter_check passed it */
    assert(user > 0);
    struct waitroom_view v;
    int created;
    int rc = waitroom_enter(r->env->waitroom, user, time_now_ms(), &v, &created);
    if (rc)
        api_fail(r, w, rc, NULL);
    else
        reply_token(r, w, &v); /* 200 whether new or not: this client expects 200 */
}

/* The user's live token, polled (so a WAITING one is not dropped as idle).
 * Nonzero with the error written, except ERR_NOT_FOUND, which is returned
 * for the route to answer. */
static int poll_user(struct api_req *r, struct api_res *w, struct waitroom_view *v) {
    int64_t user;
    if (caller_of(r, w, r->params[0], &user)) return ERR_INVALID;
    int rc = waitroom_poll_user(r->env->waitroom, user, time_now_ms(), v);
    if (rc && rc != ERR_NOT_FOUND) api_fail(r, w, rc, NULL);
    return rc;
}

static void classic_token_get(struct api_req *r, struct api_res *w) {
    struct waitroom_view v;
    int rc = poll_user(r, w, &v);
    if (rc == ERR_NOT_FOUND)
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "user %lld holds no live queue token",
                               (long long)r->params[0]));
    else if (rc == 0)
        reply_token(r, w, &v);
}

/* The body is exactly "true" or "false": the client compares the raw bytes. */
static void classic_token_status(struct api_req *r, struct api_res *w) {
    struct waitroom_view v;
    int rc = poll_user(r, w, &v);
    if (rc && rc != ERR_NOT_FOUND) return;
    int active = rc == 0 && waitroom_ticket_active(&v.t, time_now_ms());
    api_json(w, 200, active ? "true" : "false", active ? 4 : 5);
}

/* ---- balances ------------------------------------------------------------------ */

static void reply_amount(struct api_req *r, struct api_res *w, int64_t user, int64_t balance) {
    struct jw j;
    jw_init(&j, r->arena, 64);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "userId", user);
    jw_kv_i64(&j, "amount", balance);
    jw_obj_end(&j);
    finish(w, &j);
}

static void classic_balance_get(struct api_req *r, struct api_res *w) {
    int64_t user;
    if (caller_of(r, w, r->params[0], &user) == 0) api_balance_read(r, w, user, reply_amount);
}

/* The caller and the amount, on the event thread: the charge reaches the
 * store's committer decoded (api.h batched), or not at all. */
static void classic_balance_charge_check(struct api_req *r, struct api_res *w) {
    static const char *const keys[] = {"userId", "amount", NULL};
    int64_t *v = arena_alloc(r->arena, 2 * sizeof(*v)); /* user, amount */
    json_t *o = body_of(r, w, keys, &v[0]);
    if (!o) return;
    char err[256];
    int rc = jd_i64(o, "amount", 1, INT64_MIN, INT64_MAX, &v[1], err, sizeof(err));
    json_decref(o);
    if (rc)
        api_fail(r, w, ERR_INVALID, err);
    else
        r->state = v;
}

static void classic_balance_charge(struct api_req *r, struct api_res *w) {
    const int64_t *v = r->state; /* classic_balance_charge_check passed it */
    assert(v);
    api_charge(r, w, v[0], v[1], reply_amount); /* the service bounds the amount */
}

/* ---- the catalog ------------------------------------------------------------------ */

static void classic_concerts(struct api_req *r, struct api_res *w) {
    api_concerts_reply(r, w, 0);
}

static void classic_schedules(struct api_req *r, struct api_res *w) {
    struct store *s = r->env->store;
    int64_t cid = r->params[0];
    struct store_session *ss;
    size_t n;
    int rc = s->ops->list_sessions(s, r->arena, cid, &ss, &n);
    if (rc) {
        api_fail(r, w, rc,
                 rc == ERR_NOT_FOUND
                     ? arena_sprintf(r->arena, "concert %lld not found", (long long)cid)
                     : NULL);
        return;
    }
    struct jw j;
    jw_init(&j, r->arena, 16 + n * 112);
    jw_arr_begin(&j);
    for (size_t i = 0; i < n; i++) {
        jw_obj_begin(&j);
        jw_kv_i64(&j, "scheduleId", ss[i].id);
        jw_kv_i64(&j, "concertId", ss[i].concert_id);
        jw_key(&j, "startsAt");
        jw_time(&j, ss[i].starts_at_ms);
        jw_kv_i64(&j, "availableSeats", ss[i].available_seats);
        jw_obj_end(&j);
    }
    jw_arr_end(&j);
    finish(w, &j);
}

/* seatId is the seat number: the one id this client knows a seat by. */
static void classic_seats(struct api_req *r, struct api_res *w) {
    int64_t sid = r->params[0], page, size;
    if (api_query_i64(r, w, "page", 0, 0, CATALOG_PAGE_INDEX_MAX, &page) ||
        api_query_i64(r, w, "size", CATALOG_PAGE_DEFAULT, 1, CATALOG_PAGE_MAX, &size))
        return;
    struct catalog_seat_page p;
    int rc = catalog_seat_numbered_page(r->env->store, r->arena, sid, page, size, &p);
    if (rc) {
        api_fail(r, w, rc,
                 rc == ERR_NOT_FOUND
                     ? arena_sprintf(r->arena, "schedule %lld not found", (long long)sid)
                     : NULL);
        return;
    }
    struct jw j;
    jw_init(&j, r->arena, 16 + p.n * 72);
    jw_arr_begin(&j);
    for (size_t i = 0; i < p.n; i++) {
        jw_obj_begin(&j);
        jw_kv_i64(&j, "seatId", p.seats[i].number);
        jw_kv_i64(&j, "seatNumber", p.seats[i].number);
        jw_kv_str(&j, "grade", p.seats[i].grade);
        jw_kv_i64(&j, "price", p.seats[i].price);
        jw_obj_end(&j);
    }
    jw_arr_end(&j);
    finish(w, &j);
}

/* ---- holds and payments ----------------------------------------------------------- */

/* concertId, scheduleId and seatIdList (seat numbers) into h. */
static int decode_hold(struct api_req *r, struct api_res *w, json_t *o, struct store_hold *h) {
    char err[256];
    int rc = jd_i64(o, "concertId", 1, 1, INT64_MAX, &h->concert_id, err, sizeof(err));
    if (rc == 0) rc = jd_i64(o, "scheduleId", 1, 1, INT64_MAX, &h->session_id, err, sizeof(err));
    if (rc == 0)
        rc = api_decode_ids(r, o, "seatIdList", &h->seat_ids, &h->nseats, err, sizeof(err));
    if (rc) api_fail(r, w, ERR_INVALID, err);
    return rc;
}

static void reply_hold(struct api_req *r, struct api_res *w, const struct store_reservation *res) {
    struct jw j;
    jw_init(&j, r->arena, 160);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "reservationId", res->id);
    jw_kv_str(&j, "status", booking_status_name(res->status));
    jw_kv_i64(&j, "totalPrice", res->total_price);
    jw_key(&j, "expiresAt");
    jw_time(&j, res->expires_at_ms);
    jw_obj_end(&j);
    finish(w, &j);
}

/* The hold's precheck (api.h): the body, the caller, the gate, the rate
 * limits; the decoded hold goes to classic_reserve in r->state. */
static void classic_reserve_check(struct api_req *r, struct api_res *w) {
    static const char *const keys[] = {"userId", "concertId", "scheduleId", "seatIdList", NULL};
    struct store_hold *h = arena_calloc(r->arena, 1, sizeof(*h));
    json_t *o = body_of(r, w, keys, &h->user_id);
    if (!o) return;
    int rc = decode_hold(r, w, o, h);
    json_decref(o);
    if (rc || gate(r, w, h->user_id) || api_limit(r, w, API_LIMIT_HOLD, h->user_id)) return;
    r->state = h;
}

static void classic_reserve(struct api_req *r, struct api_res *w) {
    struct store_hold *h = r->state; /* classic_reserve_check passed it */
    assert(h);
    struct booking_rules b;
    booking_rules_from_config(r->env->cfg, &b);
    struct store_reservation res;
    char err[256] = "";
    int rc =
        booking_hold_numbers(r->env->store, r->arena, &b, h, time_now_ms(), &res, err, sizeof(err));
    if (rc)
        api_hold_refused(r, w, rc, h, err);
    else
        reply_hold(r, w, &res);
}

static void reply_payment(struct api_req *r, struct api_res *w, const struct store_payment *p) {
    struct jw j;
    jw_init(&j, r->arena, 128);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "paymentId", p->id);
    jw_kv_i64(&j, "reservationId", p->reservation_id);
    jw_kv_i64(&j, "amount", p->amount);
    jw_kv_str(&j, "status", "COMPLETED");
    jw_obj_end(&j);
    finish(w, &j);
}

static void classic_pay(struct api_req *r, struct api_res *w) {
    static const char *const keys[] = {"userId", "reservationId", "amount", NULL};
    struct store_pay p = {.now_ms = time_now_ms(), .method = "balance"};
    json_t *o = body_of(r, w, keys, &p.user_id);
    if (!o) return;
    char err[256];
    int64_t amount;
    int rc = jd_i64(o, "reservationId", 1, 1, INT64_MAX, &p.reservation_id, err, sizeof(err));
    if (rc == 0) rc = jd_i64(o, "amount", 1, 0, INT64_MAX, &amount, err, sizeof(err));
    json_decref(o);
    if (rc) {
        api_fail(r, w, ERR_INVALID, err);
        return;
    }
    enum waitroom_gate g;
    if (gate_of(r, w, p.user_id, &g)) return;
    if (g != GATE_OK) { /* paying expired the token: a retry may still get its answer */
        if (!api_pay_replay(r, w, p.user_id)) gate_refuse(r, w, p.user_id, g);
        return;
    }
    api_pay(r, w, &p, &amount, reply_payment);
}

/* ---- the table ------------------------------------------------------------------------ */

const struct api_route api_routes_classic[] = {
    {API_POST, "/api/token", classic_token_enter, classic_token_enter_check, 0},
    {API_GET, "/api/token/{userId}", classic_token_get, NULL, 0},
    {API_GET, "/api/token/status/{userId}", classic_token_status, NULL, 0},
    {API_PUT, "/api/balance/charge", classic_balance_charge, classic_balance_charge_check, 1},
    {API_GET, "/api/balance/{userId}", classic_balance_get, NULL, 0},
    {API_GET, "/api/concerts", classic_concerts, NULL, 0},
    {API_GET, "/api/concerts/schedules/{concertId}", classic_schedules, NULL, 0},
    {API_GET, "/api/concerts/seats/{scheduleId}", classic_seats, NULL, 0},
    {API_POST, "/api/reservations/seats", classic_reserve, classic_reserve_check, 1},
    {API_POST, "/api/reservations/payments", classic_pay, NULL, 0},
    {0, NULL, NULL, NULL, 0},
};
