/* waitroom.h -- the waiting room's rules (DESIGN.md section 3).
 *
 * The line itself is behind the queue port; this module decides what to do
 * with it: how many to admit each tick (at most admit_per_sec per second,
 * never more than max_active ACTIVATED), how long tokens live, the ETA shown
 * to people waiting, who passes the gate, and the run-time limits.
 *
 * A ticker thread calls waitroom_tick() every tick_ms with the clock given
 * in the options; tests call it directly with their own times. */
#pragma once
#include <stdint.h>

#include "queue/queue.h"

#define WAITROOM_MAX_ACTIVE_MAX 10000000
#define WAITROOM_ADMIT_PER_SEC_MAX 1000000

struct waitroom;

struct waitroom_opts {
    int64_t max_active;
    int64_t admit_per_sec;
    int64_t active_ttl_ms;
    int64_t waiting_idle_ms;
    int64_t tick_ms;
    int64_t (*now_ms)(void); /* the ticker's clock: epoch ms */
};

struct waitroom_view {
    struct queue_ticket t;
    int64_t eta_seconds; /* WAITING: expected wait; else 0 */
};

struct waitroom_stats {
    int64_t waiting, active;
    int64_t max_active, admit_per_sec;
    int64_t admitted_last_minute;
    int64_t admitted_total, expired_total; /* since start */
};

/* What the gate says about a request's token. */
enum waitroom_gate {
    GATE_OK = 0,
    GATE_MISSING,    /* no token: 401 TOKEN_MISSING */
    GATE_INVALID,    /* unknown or malformed token: 401 TOKEN_INVALID */
    GATE_NOT_ACTIVE, /* WAITING or EXPIRED: 403 TOKEN_NOT_ACTIVE */
    GATE_FORBIDDEN,  /* another user's token: 403 FORBIDDEN */
};

/* Does not start the ticker. */
struct waitroom *waitroom_new(struct queue *q, const struct waitroom_opts *o);
/* Starts / stops the ticker thread. stop joins it; free stops it first. */
int waitroom_start(struct waitroom *w);
void waitroom_stop(struct waitroom *w);
void waitroom_free(struct waitroom *w);

/* One admission step at time now (what the ticker runs). */
int waitroom_tick(struct waitroom *w, int64_t now);

/* POST: *created is 1 for a new token (201), 0 for the user's live one (200). */
int waitroom_enter(struct waitroom *w, int64_t user_id, int64_t now, struct waitroom_view *out,
                   int *created);
/* GET by the token's holder: counts as a poll. ERR_NOT_FOUND for an unknown token. */
int waitroom_status(struct waitroom *w, const char *token, int64_t now, struct waitroom_view *out);
int waitroom_leave(struct waitroom *w, const char *token, int64_t now);
/* The user's live token (classic API: tokens by user id). ERR_NOT_FOUND
 * when the user holds none. Not a poll. */
int waitroom_status_of_user(struct waitroom *w, int64_t user_id, int64_t now,
                            struct waitroom_view *out);
/* A poll by user id (classic API): the user's live token as
 * waitroom_status_of_user gives it, and, when it is WAITING, counted as a
 * poll by its holder so that it is not dropped as idle (the classic client
 * knows no token, it polls by user id). ERR_NOT_FOUND when the user holds
 * no live token. */
int waitroom_poll_user(struct waitroom *w, int64_t user_id, int64_t now, struct waitroom_view *out);
/* Whether t passes the gate at now: ACTIVATED and its time not up (an
 * ACTIVATED token the ticker has not swept yet is already expired here). */
int waitroom_ticket_active(const struct queue_ticket *t, int64_t now);
/* The gate by user id (classic API): GATE_OK when the user holds an
 * ACTIVATED token whose time is not up, GATE_NOT_ACTIVE when the user's
 * token is WAITING or past its time, GATE_MISSING when the user has none. */
int waitroom_check_user(struct waitroom *w, int64_t user_id, int64_t now, enum waitroom_gate *gate);
/* After a payment: the user's token has done its job. */
int waitroom_paid(struct waitroom *w, int64_t user_id, int64_t now);

/* The gate. token may be NULL (header absent). want_user > 0: the request
 * names that user, who must be the token's. *user gets the token's user.
 * Returns 0 with *gate set, or a negative enum err when the queue failed. */
int waitroom_check(struct waitroom *w, const char *token, int64_t want_user, int64_t now,
                   enum waitroom_gate *gate, int64_t *user);

int waitroom_stats(struct waitroom *w, int64_t now, struct waitroom_stats *out);
/* Whether the line's keeper (memory, or Redis) answers: 0 or ERR_UNAVAILABLE. */
int waitroom_ping(struct waitroom *w);
/* Run-time limits; 0 leaves one unchanged. ERR_INVALID when out of bounds. */
int waitroom_set_limits(struct waitroom *w, int64_t max_active, int64_t admit_per_sec);
