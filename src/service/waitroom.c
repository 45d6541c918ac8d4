/* waitroom.c -- the waiting room's rules (see waitroom.h).
 *
 * Admission budget: each tick adds admit_per_sec x elapsed to a budget and
 * admits floor(budget) from the head (fewer when max_active is reached or
 * the line is empty). Budget left unused does not pile up past one tick's
 * worth (or one token), so after a quiet spell the line moves at the
 * configured rate instead of in a burst.
 *
 * ETA: position / rate, where rate is what was admitted over the last
 * minute (over the time since the first admission, when that is shorter),
 * or the configured admit_per_sec before anything was admitted in that
 * window. Admissions are counted per second in a ring of 60 buckets.
 *
 * What the window counts is the queue's admission counter (counts()) as it
 * moved over each tick, not what this process admitted: with a shared
 * queue (Redis) only one instance admits, and every instance must show the
 * same rate and ETAs. With the local queue the two are the same. */
#include "service/waitroom.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define MOD "waitroom"
#define WINDOW_S 60

struct waitroom {
    struct queue *q;
    struct waitroom_opts o;
    atomic_llong max_active, admit_per_sec;

    pthread_mutex_t mu;    /* guards what follows */
    int64_t budget;        /* admissions allowed now, in thousandths (exact) */
    int64_t last_tick;     /* epoch ms of the previous tick; 0 before the first */
    int64_t first_admit;   /* epoch ms of the first admission; 0 before */
    int64_t seen_admitted; /* the queue's admission counter at the last tick; -1 before */
    int64_t bucket_sec[WINDOW_S], bucket_n[WINDOW_S];

    pthread_t thread;
    int running;
    pthread_cond_t wake; /* CLOCK_MONOTONIC */
    int stopping;
};

struct waitroom *waitroom_new(struct queue *q, const struct waitroom_opts *o) {
    struct waitroom *w = xcalloc(1, sizeof(*w));
    w->q = q;
    w->o = *o;
    atomic_init(&w->max_active, o->max_active);
    atomic_init(&w->admit_per_sec, o->admit_per_sec);
    w->seen_admitted = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    return w;
}

/* ---- admission ---------------------------------------------------------- */

static void record_admitted(struct waitroom *w, int64_t now, int64_t n) {
    if (n <= 0) return;
    int64_t sec = now / 1000;
    size_t b = (size_t)(sec % WINDOW_S);
    if (w->bucket_sec[b] != sec) {
        w->bucket_sec[b] = sec;
        w->bucket_n[b] = 0;
    }
    w->bucket_n[b] += n;
    if (!w->first_admit) w->first_admit = now;
}

/* Admitted during the last WINDOW_S seconds (the current one included). */
static int64_t admitted_in_window(const struct waitroom *w, int64_t now) {
    int64_t sec = now / 1000, n = 0;
    for (size_t b = 0; b < WINDOW_S; b++)
        if (w->bucket_sec[b] > sec - WINDOW_S && w->bucket_sec[b] <= sec) n += w->bucket_n[b];
    return n;
}

/* Records what the queue admitted since the last call (by anyone). A
 * failed read leaves it for the next one. */
static void observe_admitted(struct waitroom *w, int64_t now) {
    struct queue_counts c;
    if (w->q->ops->counts(w->q, &c)) return;
    pthread_mutex_lock(&w->mu);
    if (w->seen_admitted >= 0) record_admitted(w, now, c.admitted - w->seen_admitted);
    w->seen_admitted = c.admitted;
    pthread_mutex_unlock(&w->mu);
}

/* Takes the shared limits, where the queue keeps some (Redis): those set
 * through any instance's admin route. */
static void adopt_limits(struct waitroom *w, int64_t max_active, int64_t admit_per_sec) {
    if (max_active > 0 && max_active <= WAITROOM_MAX_ACTIVE_MAX)
        atomic_store(&w->max_active, max_active);
    if (admit_per_sec > 0 && admit_per_sec <= WAITROOM_ADMIT_PER_SEC_MAX)
        atomic_store(&w->admit_per_sec, admit_per_sec);
}

int waitroom_tick(struct waitroom *w, int64_t now) {
    int64_t shared_max = 0, shared_rate = 0;
    if (w->q->ops->limits && w->q->ops->limits(w->q, 0, &shared_max, &shared_rate) == 0)
        adopt_limits(w, shared_max, shared_rate);
    int64_t rate = atomic_load(&w->admit_per_sec), max_active = atomic_load(&w->max_active);
    if (w->seen_admitted < 0) observe_admitted(w, now); /* the counter before our first tick */
    pthread_mutex_lock(&w->mu);
    int64_t dt = w->last_tick ? now - w->last_tick : w->o.tick_ms;
    if (dt < 0) dt = 0;       /* the wall clock stepped back */
    if (dt > 1000) dt = 1000; /* or forward, or we were stopped */
    w->last_tick = now;
    /* per second x ms = thousandths of an admission */
    int64_t cap = rate * (dt > w->o.tick_ms ? dt : w->o.tick_ms);
    if (cap < 1000) cap = 1000;
    w->budget += rate * dt;
    if (w->budget > cap) w->budget = cap;
    int64_t want = w->budget / 1000, admitted = 0;
    pthread_mutex_unlock(&w->mu);
    /* The ticker is the only caller outside tests, so nothing changes the
     * budget between here and the lock below. */
    int rc = w->q->ops->tick(w->q, now, max_active, want, w->o.active_ttl_ms, w->o.waiting_idle_ms,
                             &admitted);
    pthread_mutex_lock(&w->mu);
    w->budget -= admitted * 1000;
    pthread_mutex_unlock(&w->mu);
    if (rc == 0) observe_admitted(w, now);
    return rc;
}

static void *ticker(void *arg) {
    struct waitroom *w = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    int failing = 0; /* log an outage when it starts and ends, not every tick */
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        pthread_mutex_unlock(&w->mu);
        int rc = waitroom_tick(w, w->o.now_ms());
        if (rc && !failing)
            LOG_WARN(MOD, "op=tick err=%s msg=\"ticks fail until it clears\"", err_str(rc));
        if (!rc && failing) LOG_INFO(MOD, "op=tick msg=\"ticking again\"");
        failing = rc != 0;
        next.tv_nsec += (long)(w->o.tick_ms % 1000) * 1000000L;
        next.tv_sec += (time_t)(w->o.tick_ms / 1000) + next.tv_nsec / 1000000000L;
        next.tv_nsec %= 1000000000L;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1) next = now; /* far behind: do not race to catch up */
        pthread_mutex_lock(&w->mu);
        while (!w->stopping && pthread_cond_timedwait(&w->wake, &w->mu, &next) == 0) continue;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int waitroom_start(struct waitroom *w) {
    if (w->running) return 0;
    w->stopping = 0;
    if (pthread_create(&w->thread, NULL, ticker, w) != 0) return ERR_INTERNAL;
    w->running = 1;
    return 0;
}

void waitroom_stop(struct waitroom *w) {
    if (!w->running) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->running = 0;
}

void waitroom_free(struct waitroom *w) {
    if (!w) return;
    waitroom_stop(w);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* ---- what people see ------------------------------------------------------ */

static int64_t eta_seconds(struct waitroom *w, int64_t now, int64_t position) {
    pthread_mutex_lock(&w->mu);
    int64_t n = admitted_in_window(w, now);
    int64_t span = w->first_admit ? (now - w->first_admit) / 1000 + 1 : WINDOW_S;
    pthread_mutex_unlock(&w->mu);
    if (span > WINDOW_S) span = WINDOW_S;
    double rate = n > 0 ? (double)n / (double)span : (double)atomic_load(&w->admit_per_sec);
    double eta = (double)position / rate;
    int64_t s = (int64_t)eta;
    return (double)s < eta ? s + 1 : s;
}

static void view_of(struct waitroom *w, int64_t now, struct waitroom_view *out) {
    out->eta_seconds = out->t.state == QUEUE_WAITING ? eta_seconds(w, now, out->t.position) : 0;
}

int waitroom_enter(struct waitroom *w, int64_t user_id, int64_t now, struct waitroom_view *out,
                   int *created) {
    if (user_id <= 0) return ERR_INVALID;
    int rc = w->q->ops->enter(w->q, user_id, now, &out->t, created);
    if (rc == 0) view_of(w, now, out);
    return rc;
}

int waitroom_status(struct waitroom *w, const char *token, int64_t now, struct waitroom_view *out) {
    if (!queue_token_valid(token)) return ERR_NOT_FOUND;
    int rc = w->q->ops->lookup(w->q, token, now, 1, &out->t);
    if (rc == 0) view_of(w, now, out);
    return rc;
}

int waitroom_leave(struct waitroom *w, const char *token, int64_t now) {
    if (!queue_token_valid(token)) return ERR_NOT_FOUND;
    return w->q->ops->leave(w->q, token, now);
}

int waitroom_status_of_user(struct waitroom *w, int64_t user_id, int64_t now,
                            struct waitroom_view *out) {
    if (user_id <= 0) return ERR_NOT_FOUND;
    int rc = w->q->ops->lookup_user(w->q, user_id, now, &out->t);
    if (rc == 0) view_of(w, now, out);
    return rc;
}

int waitroom_poll_user(struct waitroom *w, int64_t user_id, int64_t now,
                       struct waitroom_view *out) {
    if (user_id <= 0) return ERR_NOT_FOUND;
    int rc = w->q->ops->lookup_user(w->q, user_id, now, &out->t);
    if (rc == 0 && out->t.state == QUEUE_WAITING) {
        /* The touch goes by token; the token may have moved on in between. */
        char token[sizeof(out->t.token)];
        memcpy(token, out->t.token, sizeof(token));
        rc = w->q->ops->lookup(w->q, token, now, 1, &out->t);
        if (rc == 0 && out->t.state == QUEUE_EXPIRED) rc = ERR_NOT_FOUND;
    }
    if (rc == 0) view_of(w, now, out);
    return rc;
}

int waitroom_ticket_active(const struct queue_ticket *t, int64_t now) {
    return t->state == QUEUE_ACTIVATED && t->active_until > now;
}

int waitroom_check_user(struct waitroom *w, int64_t user_id, int64_t now,
                        enum waitroom_gate *gate) {
    struct queue_ticket t;
    int rc = user_id > 0 ? w->q->ops->lookup_user(w->q, user_id, now, &t) : ERR_NOT_FOUND;
    if (rc == ERR_NOT_FOUND) {
        *gate = GATE_MISSING;
        return 0;
    }
    if (rc) return rc;
    *gate = waitroom_ticket_active(&t, now) ? GATE_OK : GATE_NOT_ACTIVE;
    return 0;
}

int waitroom_paid(struct waitroom *w, int64_t user_id, int64_t now) {
    return w->q->ops->expire_user(w->q, user_id, now);
}

int waitroom_check(struct waitroom *w, const char *token, int64_t want_user, int64_t now,
                   enum waitroom_gate *gate, int64_t *user) {
    *user = 0;
    if (!token || !*token) {
        *gate = GATE_MISSING;
        return 0;
    }
    struct queue_ticket t;
    int rc = queue_token_valid(token) ? w->q->ops->lookup(w->q, token, now, 0, &t) : ERR_NOT_FOUND;
    if (rc == ERR_NOT_FOUND) {
        *gate = GATE_INVALID;
        return 0;
    }
    if (rc) return rc;
    *user = t.user_id;
    if (!waitroom_ticket_active(&t, now))
        *gate = GATE_NOT_ACTIVE;
    else if (want_user > 0 && want_user != t.user_id)
        *gate = GATE_FORBIDDEN;
    else
        *gate = GATE_OK;
    return 0;
}

int waitroom_stats(struct waitroom *w, int64_t now, struct waitroom_stats *out) {
    struct queue_counts c;
    int rc = w->q->ops->counts(w->q, &c);
    if (rc) return rc;
    out->waiting = c.waiting;
    out->active = c.active;
    out->max_active = atomic_load(&w->max_active);
    out->admit_per_sec = atomic_load(&w->admit_per_sec);
    pthread_mutex_lock(&w->mu);
    out->admitted_last_minute = admitted_in_window(w, now);
    pthread_mutex_unlock(&w->mu);
    out->admitted_total = c.admitted;
    out->expired_total = c.expired;
    return 0;
}

int waitroom_ping(struct waitroom *w) {
    return w->q->ops->ping(w->q);
}

int waitroom_set_limits(struct waitroom *w, int64_t max_active, int64_t admit_per_sec) {
    if (max_active < 0 || max_active > WAITROOM_MAX_ACTIVE_MAX || admit_per_sec < 0 ||
        admit_per_sec > WAITROOM_ADMIT_PER_SEC_MAX)
        return ERR_INVALID;
    if (w->q->ops->limits) { /* shared: every instance's ticker picks them up */
        int rc = w->q->ops->limits(w->q, 1, &max_active, &admit_per_sec);
        if (rc) return rc;
    }
    adopt_limits(w, max_active, admit_per_sec);
    LOG_INFO(MOD, "limits max_active=%lld admit_per_sec=%lld",
             (long long)atomic_load(&w->max_active), (long long)atomic_load(&w->admit_per_sec));
    return 0;
}
