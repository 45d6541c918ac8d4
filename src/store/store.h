/* store.h -- the store port: everything concertd keeps durably.
 *
 * A port is a struct of function pointers plus the adapter's own state: each
 * adapter (sqlite.c, later pg.c) embeds struct store as its first member and
 * fills in ops. Callers only ever see struct store *.
 *
 * Threads: every op may be called from any thread at once. Adapters keep a
 * connection (and its prepared statements) per calling thread.
 *
 * Memory: rows returned by list_* are allocated from the caller's arena and
 * live as long as it does. Ops return 0 or a negative enum err and never
 * leave a half-done change behind.
 *
 * Not here: business rules (service/), HTTP (http/, api/). */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct arena;
struct store;

#define STORE_TITLE_MAX 200 /* concert title, venue */
#define STORE_GRADE_MAX 32  /* seat grade label */

struct store_concert {
    int64_t id;
    const char *title;
    const char *venue;
};

struct store_session {
    int64_t id;
    int64_t concert_id;
    int64_t starts_at_ms; /* epoch ms */
    int64_t total_seats;
    int64_t available_seats; /* seats neither held nor sold */
};

struct store_seat {
    int64_t id; /* global seat id */
    int64_t session_id;
    int64_t number; /* 1..N within its session */
    const char *grade;
    int64_t price; /* won */
};

/* A waiting-room token as the store keeps it (see queue/local.c). States
 * only move forward: WAITING < ACTIVATED < EXPIRED. */
enum store_token_state {
    STORE_TOKEN_WAITING = 1,
    STORE_TOKEN_ACTIVATED = 2,
    STORE_TOKEN_EXPIRED = 3,
};

struct store_token {
    const char *token;
    int64_t user_id;
    int64_t seq;          /* arrival order: the line is sorted by it */
    int state;            /* enum store_token_state */
    int64_t entered_at;   /* epoch ms */
    int64_t activated_at; /* ACTIVATED: when; else 0 */
    int64_t expires_at;   /* ACTIVATED: when it runs out; EXPIRED: when it did */
};

typedef int (*store_token_fn)(void *ctx, const struct store_token *t);

/* Demo or load-test data for `concertd seed`. */
struct store_seed {
    int64_t concerts; /* how many concerts to add */
    int64_t sessions_per_concert;
    int64_t seats_per_session; /* seats numbered 1..N */
    int64_t price;             /* > 0: every seat costs this; 0: price by grade */
    int64_t users;             /* users 1..N ensured to exist */
    int64_t balance; /* > 0: each of those users is charged up to this balance (ledgered) */
    const char *active_tokens; /* non-NULL: pattern with "{n}"; users 1..N get an ACTIVATED
                                  token named by it, valid for active_ttl_ms */
    int64_t active_ttl_ms;
};

/* One real event for `concertd import` (see docs/import-format.md). */
struct store_block {
    const char *grade;
    int64_t price;
    int64_t first, last; /* seat numbers first..last inclusive */
};
struct store_event {
    const char *title;
    const char *venue;
    const int64_t *starts_at_ms; /* one session per entry */
    size_t nsessions;
    const struct store_block *blocks;
    size_t nblocks;
};

struct store_ops {
    /* Applies the numbered migrations not yet applied; idempotent. */
    int (*migrate)(struct store *s);
    /* Cheap liveness check of the backend (a trivial query). 0 or ERR_UNAVAILABLE. */
    int (*ping)(struct store *s);

    int (*list_concerts)(struct store *s, struct arena *a, struct store_concert **out, size_t *n);
    /* ERR_NOT_FOUND when the concert does not exist. Sessions by start time, id. */
    int (*list_sessions)(struct store *s, struct arena *a, int64_t concert_id,
                         struct store_session **out, size_t *n);
    /* ERR_NOT_FOUND when the session does not exist or is not the concert's. */
    int (*get_session)(struct store *s, int64_t concert_id, int64_t session_id,
                       struct store_session *out);
    /* Available seats of session session_id of concert concert_id with number
     * > after, in seat-number order, at most limit of them: one read, an
     * index range scan. ERR_NOT_FOUND when the session does not exist or is
     * not the concert's (checked with a second lookup only when no seat
     * comes back). */
    int (*list_available_seats)(struct store *s, struct arena *a, int64_t concert_id,
                                int64_t session_id, int64_t after, int64_t limit,
                                struct store_seat **out, size_t *n);

    /* Bulk writes for the CLI; each runs as one transaction. *concert_id (may be
     * NULL) receives the id import created. */
    int (*seed)(struct store *s, const struct store_seed *opt);
    int (*import_event)(struct store *s, const struct store_event *ev, int64_t *concert_id);

    /* The waiting room (queue/local.c). queue_save writes tokens (insert, or
     * update by token) in one transaction; a state never moves backwards,
     * whatever order writes land in, and a live token expires any older live
     * token of its user. queue_load calls each() for every live token in
     * arrival order and sets *next_seq above every seq ever used. */
    int (*queue_save)(struct store *s, const struct store_token *t, size_t n);
    int (*queue_load)(struct store *s, store_token_fn each, void *ctx, int64_t *next_seq);

    /* Closes every connection and frees s. */
    void (*close)(struct store *s);
};

struct store {
    const struct store_ops *ops;
    const char *kind; /* "sqlite", "postgres" */
};

/* Opens the adapter named by url ("sqlite:PATH", "sqlite://PATH" or a bare path).
 * Does not migrate. Returns 0 and sets *out, or a negative enum err with errbuf set. */
int store_open(const char *url, struct store **out, char *errbuf, size_t errlen);

/* Adapter constructors, called by store_open(). */
int store_sqlite_open(const char *path, struct store **out, char *errbuf, size_t errlen);
