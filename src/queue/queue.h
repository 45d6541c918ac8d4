/* queue.h -- the queue port: the waiting room's line of tokens.
 *
 * A token moves WAITING -> ACTIVATED -> EXPIRED. The adapter keeps the line
 * (arrival order), answers exact positions, admits from the head and expires
 * what ran out, atomically with respect to every other call, so that with
 * several instances (the Redis adapter) the active count never passes the
 * limit. What to admit when is decided by the caller (service/waitroom.c);
 * the adapter only does it.
 *
 * Adapters: queue/local.c (embedded: memory, written through to the store
 * port), queue/redis.c (distributed: the line in Redis, shared by every
 * instance). Each embeds struct queue as its
 * first member. Every op may be called from any thread at once.
 *
 * Times are epoch milliseconds passed in by the caller, so tests drive the
 * clock. Ops return 0 or a negative enum err. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct queue;

#define QUEUE_TOKEN_MAX 31 /* bytes; generated tokens are 22 */

enum queue_state {
    QUEUE_WAITING = 1,
    QUEUE_ACTIVATED = 2,
    QUEUE_EXPIRED = 3,
};

struct queue_ticket {
    char token[QUEUE_TOKEN_MAX + 1];
    int64_t user_id;
    int state;            /* enum queue_state */
    int64_t position;     /* WAITING: live WAITING tokens ahead + 1; else 0 */
    int64_t active_until; /* ACTIVATED: when it expires (epoch ms); else 0 */
};

struct queue_counts {
    int64_t waiting; /* live WAITING tokens */
    int64_t active;  /* ACTIVATED tokens not yet expired */
    int64_t expired;  /* tokens that expired since start (TTL, idle, leave, paid) */
    int64_t admitted; /* tokens admitted since start; moves with active, under
                       * the same lock, so a reader never sees one without the other */
};

struct queue_ops {
    /* Returns the user's live token (*created = 0) or issues a new WAITING
     * one at the back of the line (*created = 1). Durable before it returns. */
    int (*enter)(struct queue *q, int64_t user_id, int64_t now, struct queue_ticket *out,
                 int *created);
    /* Looks a token up. touch: a poll by its holder, which keeps a WAITING
     * token from being dropped as idle. ERR_NOT_FOUND for an unknown token. */
    int (*lookup)(struct queue *q, const char *token, int64_t now, int touch,
                  struct queue_ticket *out);
    /* The user's live (WAITING or ACTIVATED) token, as lookup() without a
     * touch. ERR_NOT_FOUND when the user holds none. */
    int (*lookup_user)(struct queue *q, int64_t user_id, int64_t now, struct queue_ticket *out);
    /* The holder leaves: the token expires now (an ACTIVATED one frees its
     * slot for the next admission). ERR_NOT_FOUND for an unknown token;
     * leaving twice is fine. */
    int (*leave)(struct queue *q, const char *token, int64_t now);
    /* Expires the user's live token, if any (after the user paid). */
    int (*expire_user)(struct queue *q, int64_t user_id, int64_t now);
    /* One admission step: first expires ACTIVATED tokens whose time is up and
     * drops WAITING tokens not polled since now - waiting_idle_ms; then
     * activates up to max_admit tokens from the head of the line, never
     * letting the active count pass max_active. Each activated token stays
     * ACTIVATED until now + active_ttl_ms. *admitted gets how many. */
    int (*tick)(struct queue *q, int64_t now, int64_t max_active, int64_t max_admit,
                int64_t active_ttl_ms, int64_t waiting_idle_ms, int64_t *admitted);
    int (*counts)(struct queue *q, struct queue_counts *out);
    /* Run-time limits shared by every instance on the same line; NULL for
     * an adapter whose limits are per process (local). set: first stores
     * the nonzero ones of *max_active, *admit_per_sec. Then reads both back
     * (0: never set, the caller keeps its own). */
    int (*limits)(struct queue *q, int set, int64_t *max_active, int64_t *admit_per_sec);
    /* Cheap liveness check. 0 or ERR_UNAVAILABLE. */
    int (*ping)(struct queue *q);
    void (*close)(struct queue *q);
};

struct queue {
    const struct queue_ops *ops;
    const char *kind; /* "local", "redis" */
};

struct store;

/* The embedded adapter: the line in memory, every enter, admission and
 * leave written through to store (polls never write). Loads the line the
 * store holds, so positions survive a restart. */
int queue_local_open(struct store *store, int64_t now, struct queue **out, char *errbuf,
                     size_t errlen);

struct queue_redis_opts {
    const char *prefix; /* of every key: deployments sharing a Redis differ in it */
    int64_t lease_ms;   /* the admitting instance's lease; another takes over after it */
};

/* The distributed adapter: url is redis://HOST[:PORT][/DB]. Opens even when
 * Redis is not reachable yet (its ops answer ERR_UNAVAILABLE until it is);
 * ERR_INVALID with a message for a bad url. */
int queue_redis_open(const char *url, const struct queue_redis_opts *o, struct queue **out,
                     char *errbuf, size_t errlen);
/* Gives users[i] the ACTIVATED token tokens[i] until active_until (concertd
 * seed --active-tokens), expiring any other live token they held. q must be
 * a Redis queue. */
int queue_redis_grant(struct queue *q, const char *const *tokens, const int64_t *users, size_t n,
                      int64_t active_until);

/* A fresh token: 128 bits from getrandom, base64url, 22 characters + NUL. */
int queue_new_token(char out[QUEUE_TOKEN_MAX + 1]);
/* 1..QUEUE_TOKEN_MAX characters from A-Z a-z 0-9 - _ . ~ (URL-safe). */
int queue_token_valid(const char *token);
/* The state's name: "WAITING", "ACTIVATED", "EXPIRED". */
const char *queue_state_name(int state);
