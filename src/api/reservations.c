/* reservations.c -- the hold routes: hold seats of a session, read a
 * reservation, cancel it.
 *
 *   POST   /api/v1/concerts/{cid}/sessions/{sid}/reservations  {"userId","seatIds":[..]}
 *   GET    /api/v1/reservations/{rid}
 *   DELETE /api/v1/reservations/{rid}
 *
 * Decode, call service/booking, encode, map errors to statuses. Every route
 * is behind the waiting-room gate (api_gate): the caller is the user of the
 * ACTIVATED QUEUE-TOKEN, and the owner checks follow from it. */
#include <assert.h>
#include <stdio.h>

#include "api/limits.h"
#include "api/routes.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "service/booking.h"
#include "store/store.h"

static const char *const hold_keys[] = {"userId", "seatIds", NULL};

/* Writes the reservation JSON every route here answers with. */
static void reply_reservation(struct api_req *r, struct api_res *w, int status,
                              const struct store_reservation *res) {
    struct jw j;
    jw_init(&j, r->arena, 256 + res->nseats * 80);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "reservationId", res->id);
    jw_kv_i64(&j, "userId", res->user_id);
    jw_kv_i64(&j, "sessionId", res->session_id);
    jw_key(&j, "seats");
    jw_arr_begin(&j);
    for (size_t i = 0; i < res->nseats; i++) {
        jw_obj_begin(&j);
        jw_kv_i64(&j, "seatId", res->seats[i].id);
        jw_kv_i64(&j, "seatNumber", res->seats[i].number);
        jw_kv_str(&j, "grade", res->seats[i].grade);
        jw_kv_i64(&j, "price", res->seats[i].price);
        jw_obj_end(&j);
    }
    jw_arr_end(&j);
    jw_kv_i64(&j, "totalPrice", res->total_price);
    jw_kv_str(&j, "status", booking_status_name(res->status));
    jw_key(&j, "expiresAt");
    jw_time(&j, res->expires_at_ms);
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, status, body, len);
}

static int decode_hold(struct api_req *r, struct api_res *w, struct store_hold *h) {
    json_t *o = api_body_object(r, w, hold_keys);
    if (!o) return ERR_INVALID;
    char err[256];
    int rc = jd_i64_or_str(o, "userId", 1, 1, INT64_MAX, &h->user_id, err, sizeof(err));
    if (rc == 0) rc = api_decode_ids(r, o, "seatIds", &h->seat_ids, &h->nseats, err, sizeof(err));
    json_decref(o);
    if (rc) api_fail(r, w, ERR_INVALID, err);
    return rc;
}

/* The caller, if known, must be the user the request names. */
static int check_caller(struct api_req *r, struct api_res *w, int64_t caller, int64_t user) {
    if (caller == user) return 0;
    api_fail(r, w, ERR_FORBIDDEN,
             arena_sprintf(r->arena, "userId %lld is not the caller", (long long)user));
    return ERR_FORBIDDEN;
}

void api_hold_refused(struct api_req *r, struct api_res *w, int rc, const struct store_hold *h,
                      const char *errbuf) {
    long long cid = h->concert_id, sid = h->session_id;
    if (rc == ERR_INVALID && errbuf[0]) {
        api_fail(r, w, rc, errbuf);
    } else if (rc == ERR_NOT_FOUND && h->bad_seat_id) {
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "seat %lld is not a seat of session %lld",
                               (long long)h->bad_seat_id, sid));
    } else if (rc == ERR_NOT_FOUND && h->bad_seat_number) {
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "session %lld has no seat number %lld", sid,
                               (long long)h->bad_seat_number));
    } else if (rc == ERR_NOT_FOUND) {
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "session %lld of concert %lld not found", sid, cid));
    } else if (rc == ERR_LIMIT) {
        api_error(r, w, 409, "TOO_MANY_HOLDS",
                  "user %lld already has %lld live holds, the most allowed; pay for or cancel "
                  "one first",
                  (long long)h->user_id, (long long)h->max_live_holds);
    } else if (rc == ERR_CONFLICT) {
        api_error(r, w, 409, "SEAT_UNAVAILABLE", "seat %lld (number %lld) of session %lld is %s",
                  (long long)h->bad_seat_id, (long long)h->bad_seat_number, sid,
                  h->bad_seat_status == STORE_SEAT_SOLD ? "already sold" : "already held");
    } else {
        api_fail(r, w, rc, NULL);
    }
}

/* The hold's precheck (api.h), on the event thread: the gate, the body,
 * the caller, then the rate limits, so a flood's 429s never reach the
 * write pool. The decoded hold goes to api_reservation_create. */
void api_reservation_check(struct api_req *r, struct api_res *w) {
    int64_t caller;
    struct store_hold *h = arena_calloc(r->arena, 1, sizeof(*h));
    h->concert_id = r->params[0];
    h->session_id = r->params[1];
    if (api_gate(r, w, 0, &caller) || decode_hold(r, w, h) ||
        check_caller(r, w, caller, h->user_id) || api_limit(r, w, API_LIMIT_HOLD, h->user_id))
        return;
    r->state = h;
}

void api_reservation_create(struct api_req *r, struct api_res *w) {
    struct store_hold *h = r->state; /* api_reservation_check passed it */
    assert(h);
    struct booking_rules b;
    booking_rules_from_config(r->env->cfg, &b);
    struct store_reservation res;
    char err[256] = "";
    int rc = booking_hold(r->env->store, r->arena, &b, h, time_now_ms(), &res, err, sizeof(err));
    if (rc) {
        api_hold_refused(r, w, rc, h, err);
        return;
    }
    reply_reservation(r, w, 201, &res);
}

void api_reservation_get(struct api_req *r, struct api_res *w) {
    int64_t caller, rid = r->params[0];
    if (api_gate(r, w, 0, &caller)) return;
    struct store_reservation res;
    int rc = booking_get(r->env->store, r->arena, rid, caller, time_now_ms(), &res);
    if (rc == ERR_NOT_FOUND)
        api_fail(r, w, rc, arena_sprintf(r->arena, "reservation %lld not found", (long long)rid));
    else if (rc == ERR_FORBIDDEN)
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "reservation %lld is not yours", (long long)rid));
    else if (rc)
        api_fail(r, w, rc, NULL);
    else
        reply_reservation(r, w, 200, &res);
}

void api_reservation_cancel(struct api_req *r, struct api_res *w) {
    int64_t caller, rid = r->params[0];
    if (api_gate(r, w, 0, &caller)) return;
    struct store_reservation res;
    int64_t now = time_now_ms();
    int rc = booking_cancel(r->env->store, r->arena, rid, caller, now, &res);
    if (rc == ERR_CONFLICT && booking_get(r->env->store, r->arena, rid, 0, now, &res) == 0) {
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "reservation %lld is %s and cannot be cancelled",
                               (long long)rid, booking_status_name(res.status)));
        return;
    }
    if (rc == ERR_NOT_FOUND || rc == ERR_FORBIDDEN) {
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "reservation %lld %s", (long long)rid,
                               rc == ERR_NOT_FOUND ? "not found" : "is not yours"));
        return;
    }
    if (rc)
        api_fail(r, w, rc, NULL);
    else
        reply_reservation(r, w, 200, &res);
}
