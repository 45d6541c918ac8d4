/* redis.c -- the distributed queue adapter: the waiting line in Redis,
 * shared by every concertd instance that names the same Redis and prefix
 * (--queue redis://HOST[:PORT][/DB], --queue-prefix).
 *
 * Responsible for the line's state and for admitting from it atomically
 * across instances. Not here: how many to admit when (service/waitroom.c),
 * Redis's durability (its AOF/RDB configuration, the operator's job).
 *
 * Design notes
 *
 *   1. Every op is one Lua script (queue/redis_lua.h), run with EVALSHA and,
 *      when Redis answers NOSCRIPT (restarted, SCRIPT FLUSH), with EVAL of
 *      the full text, which caches it again. A script runs alone in Redis,
 *      so enter, poll, leave and admit each read and write the line with no
 *      other client's command in between: the same guarantee local.c gets
 *      from its mutex, across instances.
 *   2. max_active holds across instances because the admission counts the
 *      active set (ZCARD) and activates in the same script. The lease
 *      (SET P lease ID NX PX lease_ms, renewed by the holder on each of its
 *      ticks, taken over by another instance only after it ran out) makes
 *      one instance admit per tick, so the admission rate is admit_per_sec
 *      for the whole cluster, not once per instance. A clean shutdown gives
 *      the lease up; a killed holder's lease runs out after lease_ms.
 *   3. Positions are exact: WAITING tokens sit in a sorted set scored by an
 *      arrival counter (INCR), and a position is ZRANK + 1, O(log n),
 *      whichever instance the users entered through.
 *   4. Connections: a small pool (at most POOL_MAX) shared by all threads.
 *      A thread takes an idle connection, or opens one, and gives it back;
 *      a connection that failed (NULL reply: reset, timeout) is closed, and
 *      the next op opens a new one. Redis down: ops return ERR_UNAVAILABLE
 *      (503 at the API) after at most REDIS_TIMEOUT_MS; nothing is cached
 *      locally, so every instance sees the same line when Redis returns.
 *   5. Times come from the caller (epoch ms), as with every adapter: the
 *      instances' clocks must agree (NTP), or TTLs and idle drops move by
 *      the skew.
 *   6. Run-time limits (the admin route) are stored in Redis and read by
 *      every instance's ticker, so the lease holder admits by them whichever
 *      instance took the change.
 *   7. Expired tokens keep their hash for KEEP_EXPIRED_MS, so their holders
 *      read EXPIRED for a day; then Redis frees them (TOKEN_INVALID).
 *   8. Reads that need no script skip Lua, which costs Redis ~20 us a call
 *      against ~1-2 us for a plain command: the gate's lookup (no touch)
 *      is one HMGET of the token's hash, atomic by itself; only a WAITING
 *      token, whose exact position needs ZRANK in the same step, goes
 *      through the script. The counts are three reads in one MULTI/EXEC,
 *      as atomic as the script was. Everything that writes stays a
 *      script (note 1). */
#include <assert.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/num.h"
#include "core/url.h"
#include "core/xmalloc.h"
#include "queue/queue.h"
#include "queue/redis_lua.h"

#define MOD "queue"
#define REDIS_DEFAULT_PORT 6379
#define REDIS_TIMEOUT_MS 2000
#define POOL_MAX 64
#define KEEP_EXPIRED_MS (24 * 3600 * 1000)
#define TICK_BATCH 10000 /* most expiries of each kind and admissions per tick */
#define GRANT_BATCH 1000 /* tokens per GRANT script call */
#define NUM_LEN 24

enum script {
    S_ENTER,
    S_LOOKUP,
    S_LOOKUP_USER,
    S_EXPIRE,
    S_TICK,
    S_RELEASE,
    S_GRANT,
    S_LIMITS,
    NSCRIPTS
};

static const char *const script_src[NSCRIPTS] = {
    [S_ENTER] = LUA_ENTER,   [S_LOOKUP] = LUA_LOOKUP, [S_LOOKUP_USER] = LUA_LOOKUP_USER,
    [S_EXPIRE] = LUA_EXPIRE, [S_TICK] = LUA_TICK,     [S_RELEASE] = LUA_RELEASE,
    [S_LIMITS] = LUA_LIMITS, [S_GRANT] = LUA_GRANT,
};

struct redis_queue {
    struct queue base; /* must be first */
    char *host;
    int port;
    int64_t db;
    char *prefix;
    int64_t lease_ms;
    char id[80];     /* this instance, in the lease */
    atomic_int down; /* the last connect failed: log the outage once */

    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t freed;
    redisContext *idle[POOL_MAX];
    int nidle, total;
    char sha[NSCRIPTS][41]; /* "" until SCRIPT LOAD answered */
    int holding;            /* the last tick held the lease */
};

static const struct queue_ops redis_ops;

/* ---- connections ---------------------------------------------------------- */

static struct timeval timeout_tv(void) {
    return (struct timeval){.tv_sec = REDIS_TIMEOUT_MS / 1000,
                            .tv_usec = (REDIS_TIMEOUT_MS % 1000) * 1000};
}

/* A reply of the type wanted, else logs why and frees it: 0 or -1. */
static int reply_ok(redisContext *c, redisReply *r, int type, const char *what) {
    if (r && r->type == type) return 0;
    LOG_WARN(MOD, "op=%s queue=redis err=\"%s\"", what,
             !r                             ? c->errstr
             : r->type == REDIS_REPLY_ERROR ? r->str
                                            : "unexpected reply");
    if (r) freeReplyObject(r);
    return -1;
}

/* Loads the scripts once per process (their SHA1s never change); a Redis
 * that lost them later answers NOSCRIPT and gets the full text. */
static int load_scripts(struct redis_queue *q, redisContext *c) {
    pthread_mutex_lock(&q->mu);
    int have = q->sha[NSCRIPTS - 1][0] != '\0';
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; !have && i < NSCRIPTS; i++) {
        redisReply *r = redisCommand(c, "SCRIPT LOAD %s", script_src[i]);
        if (reply_ok(c, r, REDIS_REPLY_STRING, "script_load")) return -1;
        pthread_mutex_lock(&q->mu);
        snprintf(q->sha[i], sizeof(q->sha[i]), "%s", r->str);
        pthread_mutex_unlock(&q->mu);
        freeReplyObject(r);
    }
    return 0;
}

static redisContext *conn_open(struct redis_queue *q) {
    redisContext *c = redisConnectWithTimeout(q->host, q->port, timeout_tv());
    if (!c || c->err) {
        if (!atomic_exchange(&q->down, 1)) /* once per outage, not once per try */
            LOG_WARN(MOD, "op=connect queue=redis addr=%s:%d err=\"%s\"", q->host, q->port,
                     c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    if (atomic_exchange(&q->down, 0))
        LOG_INFO(MOD, "op=connect queue=redis addr=%s:%d msg=\"reachable again\"", q->host,
                 q->port);
    int bad = redisSetTimeout(c, timeout_tv()) != REDIS_OK;
    if (!bad && q->db) {
        redisReply *r = redisCommand(c, "SELECT %lld", (long long)q->db);
        bad = reply_ok(c, r, REDIS_REPLY_STATUS, "select");
        if (!bad) freeReplyObject(r);
    }
    if (bad || load_scripts(q, c)) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* An idle connection (*fresh = 0) or a new one (*fresh = 1); NULL when
 * Redis cannot be reached. */
static redisContext *conn_take(struct redis_queue *q, int *fresh) {
    pthread_mutex_lock(&q->mu);
    while (q->nidle == 0 && q->total >= POOL_MAX) pthread_cond_wait(&q->freed, &q->mu);
    *fresh = q->nidle == 0;
    if (q->nidle > 0) {
        redisContext *c = q->idle[--q->nidle];
        pthread_mutex_unlock(&q->mu);
        return c;
    }
    q->total++;
    pthread_mutex_unlock(&q->mu);
    redisContext *c = conn_open(q);
    if (!c) {
        pthread_mutex_lock(&q->mu);
        q->total--;
        pthread_cond_signal(&q->freed);
        pthread_mutex_unlock(&q->mu);
    }
    return c;
}

/* Gives c back; a broken one (c->err set) is closed instead, and so are
 * the idle ones: they were most likely cut by the same restart or outage. */
static void conn_put(struct redis_queue *q, redisContext *c) {
    pthread_mutex_lock(&q->mu);
    if (c->err) {
        redisFree(c);
        q->total--;
        while (q->nidle > 0) {
            redisFree(q->idle[--q->nidle]);
            q->total--;
        }
    } else {
        q->idle[q->nidle++] = c;
    }
    pthread_cond_signal(&q->freed);
    pthread_mutex_unlock(&q->mu);
}

/* ---- running a script ----------------------------------------------------- */

/* A script's arguments after the prefix: strings, or numbers formatted into
 * num (so no pointer moves once added; cap is fixed at init). */
struct args {
    const char **v;
    size_t *len;
    char (*num)[NUM_LEN];
    size_t n, cap;
};

static void args_init(struct args *a, size_t cap) {
    a->cap = cap + 4; /* EVALSHA, sha, numkeys, prefix */
    a->v = xcalloc(a->cap, sizeof(*a->v));
    a->len = xcalloc(a->cap, sizeof(*a->len));
    a->num = xcalloc(a->cap, sizeof(*a->num));
    a->n = 4;
}

static void args_free(struct args *a) {
    free(a->v);
    free(a->len);
    free(a->num);
}

static void arg_str(struct args *a, const char *s) {
    assert(a->n < a->cap); /* sized by the caller */
    a->v[a->n] = s;
    a->len[a->n++] = strlen(s);
}

static void arg_i64(struct args *a, int64_t v) {
    snprintf(a->num[a->n], NUM_LEN, "%lld", (long long)v);
    arg_str(a, a->num[a->n]);
}

/* One try of run() on c: the reply, or NULL with c->err set. */
static redisReply *eval_on(struct redis_queue *q, redisContext *c, enum script s, struct args *a) {
    char sha[41];
    pthread_mutex_lock(&q->mu);
    memcpy(sha, q->sha[s], sizeof(sha));
    pthread_mutex_unlock(&q->mu);
    a->v[2] = "0";
    a->len[2] = 1;
    a->v[3] = q->prefix;
    a->len[3] = strlen(q->prefix);
    redisReply *r = NULL;
    for (int full = sha[0] == '\0'; full < 2; full++) {
        a->v[0] = full ? "EVAL" : "EVALSHA";
        a->v[1] = full ? script_src[s] : sha;
        a->len[0] = strlen(a->v[0]);
        a->len[1] = strlen(a->v[1]);
        r = redisCommandArgv(c, (int)a->n, a->v, a->len);
        if (!r || r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) != 0) break;
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

/* What run_with() sends on a connection: one try, the reply or NULL with
 * c->err set. */
typedef redisReply *(*redis_send)(struct redis_queue *q, redisContext *c, void *ctx);

/* Runs send on a pooled connection; *out gets the reply (the caller frees
 * it). ERR_UNAVAILABLE when Redis cannot be reached or refuses.
 *
 * A pooled connection that fails (Redis restarted, an idle cut) is tried
 * again once on a new one. The command may then run twice, if the first
 * reply was lost after Redis ran it: every script and read is safe to
 * repeat (enter finds the token the first run made and answers 200 instead
 * of 201; a second tick admits only within max_active). */
static int run_with(struct redis_queue *q, redis_send send, void *ctx, redisReply **out) {
    redisReply *r = NULL;
    redisContext *c = NULL;
    for (int fresh = 0, tries = 0; tries < 2 && !r; tries++) {
        if (c) conn_put(q, c); /* closes the broken one and the idle ones */
        c = conn_take(q, &fresh);
        if (!c) return ERR_UNAVAILABLE;
        r = send(q, c, ctx);
        if (fresh) break;
    }
    int rc = 0;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        LOG_WARN(MOD, "op=eval queue=redis err=\"%s\"", r ? r->str : c->errstr);
        if (r) freeReplyObject(r);
        rc = ERR_UNAVAILABLE;
    }
    conn_put(q, c); /* closes it when the reply never came (c->err) */
    if (rc == 0) *out = r;
    return rc;
}

struct eval_ctx {
    enum script s;
    struct args *a;
};

static redisReply *send_eval(struct redis_queue *q, redisContext *c, void *ctx) {
    struct eval_ctx *e = ctx;
    return eval_on(q, c, e->s, e->a);
}

/* Runs script s with a's arguments (run_with). */
static int run(struct redis_queue *q, enum script s, struct args *a, redisReply **out) {
    struct eval_ctx e = {s, a};
    return run_with(q, send_eval, &e, out);
}

/* An integer from an integer or numeric string reply. */
static int reply_i64(const redisReply *r, int64_t *v) {
    if (r->type == REDIS_REPLY_INTEGER) {
        *v = r->integer;
        return 0;
    }
    if (r->type == REDIS_REPLY_STRING && num_parse_i64n(r->str, r->len, 1, v) == 0) return 0;
    return -1;
}

/* {token, user, state, position, active_until} into *t. */
static int parse_ticket(const redisReply *r, struct queue_ticket *t) {
    int64_t state;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 5 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len > QUEUE_TOKEN_MAX ||
        reply_i64(r->element[1], &t->user_id) || reply_i64(r->element[2], &state) ||
        reply_i64(r->element[3], &t->position) || reply_i64(r->element[4], &t->active_until) ||
        state < QUEUE_WAITING || state > QUEUE_EXPIRED) {
        LOG_ERROR(MOD, "op=parse queue=redis msg=\"a ticket reply of an unexpected shape\"");
        return ERR_INTERNAL;
    }
    memcpy(t->token, r->element[0]->str, r->element[0]->len);
    t->token[r->element[0]->len] = '\0';
    t->state = (int)state;
    return 0;
}

/* Runs a script that answers a ticket or nil (ERR_NOT_FOUND). */
static int run_ticket(struct redis_queue *q, enum script s, struct args *a,
                      struct queue_ticket *out, int *created) {
    redisReply *r;
    int rc = run(q, s, a, &r);
    args_free(a);
    if (rc) return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = ERR_NOT_FOUND;
    } else {
        rc = parse_ticket(r, out);
        if (rc == 0 && created) {
            int64_t c = 0;
            rc = r->elements > 5 && reply_i64(r->element[5], &c) == 0 ? 0 : ERR_INTERNAL;
            *created = c == 1;
        }
    }
    freeReplyObject(r);
    return rc;
}

/* ---- ops -------------------------------------------------------------- */

static int rq_enter(struct queue *qq, int64_t user_id, int64_t now, struct queue_ticket *out,
                    int *created) {
    char token[QUEUE_TOKEN_MAX + 1];
    if (queue_new_token(token)) return ERR_IO;
    struct args a;
    args_init(&a, 3);
    arg_i64(&a, user_id);
    arg_str(&a, token);
    arg_i64(&a, now);
    return run_ticket((struct redis_queue *)qq, S_ENTER, &a, out, created);
}

/* Design note 8: HMGET of the token's hash, no script. */
static redisReply *send_hmget_token(struct redis_queue *q, redisContext *c, void *ctx) {
    return redisCommand(c, "HMGET %st:%s u s a", q->prefix, (const char *)ctx);
}

/* The ticket of token from the HMGET reply r: 0 with *out, ERR_NOT_FOUND,
 * 1 when it is WAITING (its position needs the script), ERR_INTERNAL for a
 * reply of another shape. */
static int hash_ticket(const redisReply *r, const char *token, struct queue_ticket *out) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return ERR_INTERNAL;
    if (r->element[0]->type == REDIS_REPLY_NIL) return ERR_NOT_FOUND;
    int64_t state = 0, user = 0, until = 0;
    int bad = reply_i64(r->element[0], &user) || reply_i64(r->element[1], &state) ||
              state < QUEUE_WAITING || state > QUEUE_EXPIRED;
    if (!bad && state == QUEUE_ACTIVATED) bad = reply_i64(r->element[2], &until);
    if (bad) return ERR_INTERNAL;
    if (state == QUEUE_WAITING) return 1;
    snprintf(out->token, sizeof(out->token), "%s", token);
    out->user_id = user;
    out->state = (int)state;
    out->position = 0;
    out->active_until = until;
    return 0;
}

/* The fast lookup (design note 8): 0 with *out, ERR_NOT_FOUND, or 1 when
 * the token is WAITING and the script must tell its position. */
static int lookup_plain(struct redis_queue *q, const char *token, struct queue_ticket *out) {
    redisReply *r;
    int rc = run_with(q, send_hmget_token, (void *)token, &r);
    if (rc) return rc;
    rc = hash_ticket(r, token, out);
    freeReplyObject(r);
    if (rc == ERR_INTERNAL)
        LOG_ERROR(MOD, "op=parse queue=redis msg=\"a token hash of an unexpected shape\"");
    return rc;
}

static int rq_lookup(struct queue *qq, const char *token, int64_t now, int touch,
                     struct queue_ticket *out) {
    if (!touch && strlen(token) <= QUEUE_TOKEN_MAX) {
        int rc = lookup_plain((struct redis_queue *)qq, token, out);
        if (rc <= 0) return rc;
    }
    struct args a;
    args_init(&a, 3);
    arg_str(&a, token);
    arg_i64(&a, now);
    arg_str(&a, touch ? "1" : "0");
    return run_ticket((struct redis_queue *)qq, S_LOOKUP, &a, out, NULL);
}

static int rq_lookup_user(struct queue *qq, int64_t user_id, int64_t now,
                          struct queue_ticket *out) {
    (void)now;
    struct args a;
    args_init(&a, 1);
    arg_i64(&a, user_id);
    return run_ticket((struct redis_queue *)qq, S_LOOKUP_USER, &a, out, NULL);
}

/* Runs a script that answers one integer into *v. */
static int run_int(struct redis_queue *q, enum script s, struct args *a, int64_t *v) {
    redisReply *r;
    int rc = run(q, s, a, &r);
    args_free(a);
    if (rc) return rc;
    rc = reply_i64(r, v) ? ERR_INTERNAL : 0;
    freeReplyObject(r);
    return rc;
}

static int expire_where(struct redis_queue *q, const char *token, int64_t user_id) {
    struct args a;
    args_init(&a, 3);
    arg_str(&a, token);
    arg_i64(&a, user_id);
    arg_i64(&a, KEEP_EXPIRED_MS);
    int64_t v = 0;
    int rc = run_int(q, S_EXPIRE, &a, &v);
    return rc ? rc : v < 0 ? ERR_NOT_FOUND : 0;
}

static int rq_leave(struct queue *qq, const char *token, int64_t now) {
    (void)now;
    return expire_where((struct redis_queue *)qq, token, 0);
}

static int rq_expire_user(struct queue *qq, int64_t user_id, int64_t now) {
    (void)now;
    return expire_where((struct redis_queue *)qq, "", user_id);
}

/* Reads n integers of an array reply. */
static int reply_ints(const redisReply *r, int64_t *v, size_t n) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements < n) return ERR_INTERNAL;
    for (size_t i = 0; i < n; i++)
        if (reply_i64(r->element[i], &v[i])) return ERR_INTERNAL;
    return 0;
}

/* Runs a script that answers an array of n integers into v. */
static int run_ints(struct redis_queue *q, enum script s, struct args *a, int64_t *v, size_t n) {
    redisReply *r;
    int rc = run(q, s, a, &r);
    args_free(a);
    if (rc) return rc;
    rc = reply_ints(r, v, n);
    freeReplyObject(r);
    return rc;
}

static int rq_tick(struct queue *qq, int64_t now, int64_t max_active, int64_t max_admit,
                   int64_t active_ttl_ms, int64_t waiting_idle_ms, int64_t *admitted) {
    struct redis_queue *q = (struct redis_queue *)qq;
    struct args a;
    args_init(&a, 9);
    arg_str(&a, q->id);
    arg_i64(&a, q->lease_ms);
    arg_i64(&a, now);
    arg_i64(&a, max_active);
    arg_i64(&a, max_admit);
    arg_i64(&a, active_ttl_ms);
    arg_i64(&a, waiting_idle_ms);
    arg_i64(&a, KEEP_EXPIRED_MS);
    arg_i64(&a, TICK_BATCH);
    int64_t v[2] = {0, 0};
    *admitted = 0;
    int rc = run_ints(q, S_TICK, &a, v, 2);
    if (rc) return rc;
    *admitted = v[1];
    pthread_mutex_lock(&q->mu);
    int was = q->holding;
    q->holding = v[0] == 1;
    pthread_mutex_unlock(&q->mu);
    if (was != (v[0] == 1))
        LOG_INFO(MOD, "op=lease queue=redis id=%s %s", q->id, v[0] == 1 ? "taken" : "lost");
    return 0;
}

/* Design note 8: the counts in one MULTI/EXEC, sent in one write; the
 * EXEC reply, or NULL with c->err set. */
static redisReply *send_counts(struct redis_queue *q, redisContext *c, void *ctx) {
    (void)ctx;
    const char *p = q->prefix;
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "ZCARD %sline", p);
    redisAppendCommand(c, "ZCARD %sactive", p);
    redisAppendCommand(c, "HMGET %sstats expired admitted", p);
    redisAppendCommand(c, "EXEC");
    redisReply *r = NULL;
    for (int i = 0; i < 5; i++) {
        void *x = NULL;
        if (redisGetReply(c, &x) != REDIS_OK) {
            if (r) freeReplyObject(r);
            return NULL;
        }
        if (r) freeReplyObject(r);
        r = x; /* the last one, EXEC's, is kept */
    }
    return r;
}

/* {waiting, active, expired, admitted} from EXEC's reply; a missing
 * counter is 0. */
static int counts_of(const redisReply *r, int64_t *v) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || reply_i64(r->element[0], &v[0]) ||
        reply_i64(r->element[1], &v[1]) || r->element[2]->type != REDIS_REPLY_ARRAY ||
        r->element[2]->elements != 2)
        return ERR_INTERNAL;
    for (size_t i = 0; i < 2; i++) {
        const redisReply *e = r->element[2]->element[i];
        v[2 + i] = 0;
        if (e->type != REDIS_REPLY_NIL && reply_i64(e, &v[2 + i])) return ERR_INTERNAL;
    }
    return 0;
}

static int rq_counts(struct queue *qq, struct queue_counts *out) {
    redisReply *r;
    int64_t v[4];
    int rc = run_with((struct redis_queue *)qq, send_counts, NULL, &r);
    if (rc) return rc;
    rc = counts_of(r, v);
    freeReplyObject(r);
    if (rc) {
        LOG_ERROR(MOD, "op=counts queue=redis msg=\"a reply of an unexpected shape\"");
        return rc;
    }
    *out =
        (struct queue_counts){.waiting = v[0], .active = v[1], .expired = v[2], .admitted = v[3]};
    return 0;
}

static int rq_limits(struct queue *qq, int set, int64_t *max_active, int64_t *admit_per_sec) {
    struct args a;
    args_init(&a, 2);
    arg_i64(&a, set ? *max_active : 0);
    arg_i64(&a, set ? *admit_per_sec : 0);
    int64_t v[2];
    int rc = run_ints((struct redis_queue *)qq, S_LIMITS, &a, v, 2);
    if (rc) return rc;
    *max_active = v[0];
    *admit_per_sec = v[1];
    return 0;
}

static int rq_ping(struct queue *qq) {
    struct redis_queue *q = (struct redis_queue *)qq;
    int rc = -1;
    for (int fresh = 0, tries = 0; tries < 2 && rc && !fresh; tries++) {
        redisContext *c = conn_take(q, &fresh); /* a stale pooled one: once more */
        if (!c) return ERR_UNAVAILABLE;
        redisReply *r = redisCommand(c, "PING");
        rc = reply_ok(c, r, REDIS_REPLY_STATUS, "ping");
        if (rc == 0) freeReplyObject(r);
        conn_put(q, c);
    }
    return rc ? ERR_UNAVAILABLE : 0;
}

static void rq_close(struct queue *qq) {
    struct redis_queue *q = (struct redis_queue *)qq;
    if (q->holding) { /* hand the admissions over now, not after the lease */
        struct args a;
        args_init(&a, 1);
        arg_str(&a, q->id);
        int64_t v;
        if (run_int(q, S_RELEASE, &a, &v) == 0)
            LOG_INFO(MOD, "op=lease queue=redis id=%s released", q->id);
    }
    assert(q->nidle == q->total);
    for (int i = 0; i < q->nidle; i++) redisFree(q->idle[i]);
    pthread_cond_destroy(&q->freed);
    pthread_mutex_destroy(&q->mu);
    free(q->host);
    free(q->prefix);
    free(q);
}

static const struct queue_ops redis_ops = {
    .enter = rq_enter,
    .lookup = rq_lookup,
    .lookup_user = rq_lookup_user,
    .leave = rq_leave,
    .expire_user = rq_expire_user,
    .tick = rq_tick,
    .counts = rq_counts,
    .limits = rq_limits,
    .ping = rq_ping,
    .close = rq_close,
};

/* ---- opening, seeding ----------------------------------------------------- */

int queue_redis_open(const char *url, const struct queue_redis_opts *o, struct queue **out,
                     char *errbuf, size_t errlen) {
    struct redis_queue *q = xcalloc(1, sizeof(*q));
    const char *db;
    if (url_split(url, "redis://", REDIS_DEFAULT_PORT, &q->host, &q->port, &db) ||
        (db && (num_parse_i64n(db, strlen(db), 0, &q->db) || q->db > 1000))) {
        snprintf(errbuf, errlen, "--queue %s: want local or redis://HOST[:PORT][/DB]", url);
        free(q->host);
        free(q);
        return ERR_INVALID;
    }
    q->base.ops = &redis_ops;
    q->base.kind = "redis";
    q->prefix = xstrdup(o->prefix);
    q->lease_ms = o->lease_ms;
    char rnd[QUEUE_TOKEN_MAX + 1], host[40] = "";
    if (queue_new_token(rnd)) {
        snprintf(errbuf, errlen, "cannot draw a random instance id");
        free(q->host);
        free(q->prefix);
        free(q);
        return ERR_IO;
    }
    gethostname(host, sizeof(host) - 1);
    snprintf(q->id, sizeof(q->id), "%s:%d:%.8s", host, (int)getpid(), rnd);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->freed, NULL);
    /* Redis may come up after concertd: the ops answer 503 until it does. */
    if (rq_ping(&q->base))
        LOG_WARN(MOD, "op=open queue=redis addr=%s:%d msg=\"not reachable yet, will retry\"",
                 q->host, q->port);
    LOG_INFO(MOD, "queue=redis addr=%s:%d db=%lld prefix=%s id=%s lease_ms=%lld", q->host, q->port,
             (long long)q->db, q->prefix, q->id, (long long)q->lease_ms);
    *out = &q->base;
    return 0;
}

int queue_redis_grant(struct queue *qq, const char *const *tokens, const int64_t *users, size_t n,
                      int64_t active_until) {
    struct redis_queue *q = (struct redis_queue *)qq;
    for (size_t at = 0; at < n; at += GRANT_BATCH) {
        size_t k = n - at < GRANT_BATCH ? n - at : GRANT_BATCH;
        struct args a;
        args_init(&a, 2 + 2 * k);
        arg_i64(&a, active_until);
        arg_i64(&a, KEEP_EXPIRED_MS);
        for (size_t i = at; i < at + k; i++) {
            arg_str(&a, tokens[i]);
            arg_i64(&a, users[i]);
        }
        int64_t v;
        int rc = run_int(q, S_GRANT, &a, &v);
        if (rc) return rc;
    }
    return 0;
}
