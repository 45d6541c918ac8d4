/* queue.c -- the waiting-room routes: enter, poll, leave, stats, the admin
 * limits, and the gate the protected routes call.
 *
 * The poll (GET with QUEUE-TOKEN) is the hottest route on an on-sale day:
 * it reads memory through the waitroom service and never touches SQL. */
#include <assert.h>
#include <string.h>

#include "api/auth.h"
#include "api/limits.h"
#include "api/routes.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "service/waitroom.h"

#define TOKEN_HEADER "QUEUE-TOKEN"

static void write_view(struct api_req *r, struct api_res *w, int status,
                       const struct waitroom_view *v, int with_until) {
    struct jw j;
    jw_init(&j, r->arena, 192);
    jw_obj_begin(&j);
    jw_kv_str(&j, "token", v->t.token);
    jw_kv_i64(&j, "userId", v->t.user_id);
    jw_kv_str(&j, "status", queue_state_name(v->t.state));
    jw_kv_i64(&j, "position", v->t.position);
    jw_kv_i64(&j, "etaSeconds", v->eta_seconds);
    if (with_until) {
        jw_key(&j, "activeUntil");
        jw_time(&j, v->t.active_until);
    }
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, status, body, len);
}

/* A waiting-room failure: says which dependency is down (Redis, with
 * --queue redis://) rather than "a dependency". */
static void queue_fail(struct api_req *r, struct api_res *w, int rc) {
    api_fail(r, w, rc, rc == ERR_UNAVAILABLE ? API_QUEUE_DOWN : NULL);
}

static void token_missing(struct api_req *r, struct api_res *w) {
    api_error(r, w, 401, "TOKEN_MISSING", "the %s header is required", TOKEN_HEADER);
}

static void token_invalid(struct api_req *r, struct api_res *w) {
    api_error(r, w, 401, "TOKEN_INVALID", "unknown queue token");
}

/* Entering's precheck (api.h), on the event thread: the body, the bearer,
 * then the rate limits; the user goes to api_queue_enter in r->user_id. */
void api_queue_enter_check(struct api_req *r, struct api_res *w) {
    char err[160];
    json_t *o = jd_parse_object(r->body, r->body_len, err, sizeof(err));
    static const char *const keys[] = {"userId", NULL};
    int64_t user = 0;
    if (!o || jd_only_keys(o, keys, err, sizeof(err)) ||
        jd_i64_or_str(o, "userId", 1, 1, INT64_MAX, &user, err, sizeof(err))) {
        json_decref(o);
        api_error(r, w, 400, "INVALID_REQUEST", "%s", err);
        return;
    }
    json_decref(o);
    r->user_id = user;
    if (api_auth_user(r, w, user)) return;
    api_limit(r, w, API_LIMIT_ENTER, user);
}

void api_queue_enter(struct api_req *r, struct api_res *w) {
    int64_t user = r->user_id; /* api_queue_enter_check passed it */
    assert(user > 0);
    struct waitroom_view v;
    int created = 0;
    int rc = waitroom_enter(r->env->waitroom, user, time_now_ms(), &v, &created);
    if (rc) {
        queue_fail(r, w, rc);
        return;
    }
    write_view(r, w, created ? 201 : 200, &v, 0);
}

/* The request's QUEUE-TOKEN, read (and polled) into *v when given and
 * known, and, with authentication on, the bearer's. Nonzero with the
 * 401/403/503 written otherwise. */
static int own_token(struct api_req *r, struct api_res *w, const char **token,
                     struct waitroom_view *v) {
    *token = r->header(r, TOKEN_HEADER);
    if (!*token || !**token) {
        token_missing(r, w);
        return ERR_INVALID;
    }
    int rc = waitroom_status(r->env->waitroom, *token, time_now_ms(), v);
    if (rc == ERR_NOT_FOUND)
        token_invalid(r, w);
    else if (rc)
        queue_fail(r, w, rc);
    else
        rc = api_auth_user(r, w, v->t.user_id);
    if (rc == 0) r->user_id = v->t.user_id;
    return rc;
}

void api_queue_status(struct api_req *r, struct api_res *w) {
    const char *token;
    struct waitroom_view v;
    if (own_token(r, w, &token, &v) == 0) write_view(r, w, 200, &v, 1);
}

void api_queue_leave(struct api_req *r, struct api_res *w) {
    const char *token;
    struct waitroom_view v;
    if (own_token(r, w, &token, &v)) return;
    int rc = waitroom_leave(r->env->waitroom, token, time_now_ms());
    if (rc == ERR_NOT_FOUND)
        token_invalid(r, w); /* it expired between the two calls */
    else if (rc)
        queue_fail(r, w, rc);
    else
        api_json(w, 204, "", 0);
}

static void write_stats(struct api_req *r, struct api_res *w) {
    struct waitroom_stats st;
    int rc = waitroom_stats(r->env->waitroom, time_now_ms(), &st);
    if (rc) {
        queue_fail(r, w, rc);
        return;
    }
    struct jw j;
    jw_init(&j, r->arena, 160);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "waiting", st.waiting);
    jw_kv_i64(&j, "active", st.active);
    jw_kv_i64(&j, "maxActive", st.max_active);
    jw_kv_i64(&j, "admitPerSec", st.admit_per_sec);
    jw_kv_i64(&j, "admittedLastMinute", st.admitted_last_minute);
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, 200, body, len);
}

void api_queue_stats(struct api_req *r, struct api_res *w) {
    write_stats(r, w);
}

/* Compares in time that depends only on the lengths, not on where the
 * strings first differ. */
static int same_secret(const char *given, const char *want) {
    size_t gl = strlen(given), wl = strlen(want);
    unsigned char d = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++) d |= (unsigned char)(want[i] ^ (i < gl ? given[i] : 0));
    return d == 0;
}

void api_admin_waiting_room(struct api_req *r, struct api_res *w) {
    const char *want = r->env->cfg->admin_key;
    const char *given = r->header(r, "X-Admin-Key");
    if (!want || !given || !same_secret(given, want)) {
        api_error(r, w, 401, "UNAUTHORIZED", "%s",
                  want ? "a valid X-Admin-Key header is required"
                       : "admin routes are disabled: start concertd with --admin-key");
        return;
    }
    char err[160];
    json_t *o = jd_parse_object(r->body, r->body_len, err, sizeof(err));
    static const char *const keys[] = {"maxActive", "admitPerSec", NULL};
    int64_t max_active = 0, admit = 0;
    int ra = 1, rb = 1;
    if (o && !jd_only_keys(o, keys, err, sizeof(err))) {
        ra = jd_i64(o, "maxActive", 0, 1, WAITROOM_MAX_ACTIVE_MAX, &max_active, err, sizeof(err));
        if (ra >= 0)
            rb = jd_i64(o, "admitPerSec", 0, 1, WAITROOM_ADMIT_PER_SEC_MAX, &admit, err,
                        sizeof(err));
        if (ra == 1 && rb == 1) {
            snprintf(err, sizeof(err), "give maxActive, admitPerSec or both");
            ra = ERR_INVALID;
        }
    } else {
        ra = ERR_INVALID;
    }
    json_decref(o);
    if (ra < 0 || rb < 0) {
        api_error(r, w, 400, "INVALID_REQUEST", "%s", err);
        return;
    }
    int rc = waitroom_set_limits(r->env->waitroom, max_active, admit);
    if (rc) {
        queue_fail(r, w, rc);
        return;
    }
    write_stats(r, w);
}

int api_gate_check(struct api_req *r, struct api_res *w, int64_t want_user, int *verdict,
                   int64_t *user) {
    enum waitroom_gate g;
    int rc = waitroom_check(r->env->waitroom, r->header(r, TOKEN_HEADER), want_user, time_now_ms(),
                            &g, user);
    if (rc) {
        queue_fail(r, w, rc);
        return rc;
    }
    /* With authentication on, a queue token serves only its owner's JWT. */
    if (*user > 0 && g != GATE_MISSING && g != GATE_INVALID) {
        rc = api_auth_user(r, w, *user);
        if (rc) return rc;
    }
    *verdict = (int)g;
    if (user && *user > 0) r->user_id = *user;
    return 0;
}

void api_gate_refuse(struct api_req *r, struct api_res *w, int verdict) {
    switch ((enum waitroom_gate)verdict) {
    case GATE_OK: break;
    case GATE_MISSING: token_missing(r, w); break;
    case GATE_INVALID: token_invalid(r, w); break;
    case GATE_NOT_ACTIVE:
        api_error(r, w, 403, "TOKEN_NOT_ACTIVE", "the queue token is not ACTIVATED");
        break;
    case GATE_FORBIDDEN:
        api_error(r, w, 403, "FORBIDDEN", "the queue token belongs to another user");
        break;
    }
}

int api_gate(struct api_req *r, struct api_res *w, int64_t want_user, int64_t *user) {
    int verdict;
    int64_t owner;
    int rc = api_gate_check(r, w, want_user, &verdict, &owner);
    if (rc) return rc;
    if (verdict == GATE_OK) {
        if (user) *user = owner;
        return 0;
    }
    api_gate_refuse(r, w, verdict);
    return ERR_FORBIDDEN;
}
