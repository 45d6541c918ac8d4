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
struct batch_job;
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

/* ---- booking: holds, balance, payments ------------------------------------
 * Types of the booking ops (sqlite_booking.c). Every booking write is one
 * durable transaction, committed before the op returns (group commit: many
 * concurrent writes share one commit). The rules (what may be held, paid,
 * cancelled; limits; overflow) are the service's: ops that must decide
 * inside their transaction call the service's check function they are given. */

/* Seat status, seats.status. */
enum store_seat_status { STORE_SEAT_FREE = 0, STORE_SEAT_HELD = 1, STORE_SEAT_SOLD = 2 };

/* Reservation status, reservations.status, as stored (a HELD reservation
 * past its expiry is EXPIRED to everyone before the sweeper writes it). */
enum store_res_status {
    STORE_RES_HELD = 0,
    STORE_RES_PAYMENT_PENDING,
    STORE_RES_CONFIRMED,
    STORE_RES_CANCELLED,
    STORE_RES_EXPIRED,
};

struct store_reservation {
    int64_t id;
    int64_t user_id;
    int64_t session_id;
    int status; /* enum store_res_status */
    int64_t total_price;
    int64_t created_at_ms, expires_at_ms, updated_at_ms;
    struct store_seat *seats; /* by seat number; NULL/0 where an op says so */
    size_t nseats;
};

/* A hold request: distinct seat ids of session session_id of concert_id. */
struct store_hold {
    int64_t concert_id, session_id, user_id;
    const int64_t *seat_ids;
    size_t nseats;
    int64_t now_ms, expires_at_ms;
    /* > 0: ERR_LIMIT, nothing written, when the user already has this many
     * live holds (HELD and unexpired, or PAYMENT_PENDING). Counted inside
     * the hold's transaction, so concurrent holds cannot pass it. */
    int64_t max_live_holds;
    /* Out, with ERR_NOT_FOUND or ERR_CONFLICT: the seat at fault (id 0 when
     * the session itself is not found) and, for a conflict, its status. */
    int64_t bad_seat_id, bad_seat_number;
    int bad_seat_status;
};

struct store_payment {
    int64_t id;
    int64_t reservation_id;
    int64_t user_id;
    int64_t amount;
    const char *method; /* "balance" or "card" */
    int64_t paid_at_ms;
};

/* The service's decision inside a transaction, on the rows as they are:
 * 0 to go ahead or a negative enum err to refuse. */
typedef int (*store_res_check)(const struct store_reservation *r, int64_t user_id, int64_t balance,
                               int64_t now_ms);
typedef int (*store_credit_check)(int64_t balance, int64_t amount, int64_t *after);

struct store_charge {
    int64_t user_id, amount, now_ms;
    store_credit_check credit; /* new balance, or ERR_INVALID on overflow */
    int64_t balance;           /* out: the balance after the charge */
};

struct store_pay {
    int64_t reservation_id, user_id, now_ms;
    const char *method;    /* only "balance" moves money here */
    store_res_check check; /* ERR_FORBIDDEN, ERR_CONFLICT, ERR_INSUFFICIENT, or 0 */
    struct store_payment out;
    /* Out, whenever the reservation was found: it as read before the
     * payment (no seats), and the payer's balance then. */
    struct store_reservation res;
    int64_t balance;
};

/* ---- card payments (sqlite_booking.c) -------------------------------------
 * A card payment is an attempt row (payments, method card) that is PENDING
 * from before the gateway is asked until its outcome is known; meanwhile
 * the reservation is PAYMENT_PENDING (its seats stay held, the hold does
 * not expire). The attempt's gateway key is stored with it first, so a
 * crash at any instant leaves a PENDING row the reconciler settles by
 * asking the gateway for that key (service/payment.c). */

enum store_pay_status { STORE_PAY_PENDING = 0, STORE_PAY_COMPLETED, STORE_PAY_FAILED };

#define STORE_CARD_KEY_MAX 64

struct store_card {
    int64_t reservation_id, user_id, now_ms;
    /* The service's verdict on the reservation (balance is passed as 0):
     * 0 to start a new attempt, 1 to report the PENDING attempt there is
     * (nothing written), or the error (ERR_FORBIDDEN, ERR_CONFLICT). */
    store_res_check check;
    /* The gateway key of the reservation's attempt number attempt (1, 2, ...). */
    void (*make_key)(int64_t reservation_id, int64_t attempt, char *buf, size_t len);
    /* Out, whenever the reservation was found: it as read (no seats). */
    struct store_reservation res;
    /* Out, on 0: the PENDING attempt, new or (existing = 1) found. */
    int existing;
    int64_t payment_id, amount, created_at_ms;
    char key[STORE_CARD_KEY_MAX + 1];
};

/* Decides what a failed card attempt leaves of its reservation: HELD while
 * the hold time lasts, else EXPIRED (seats released). */
typedef int (*store_res_after_fail)(const struct store_reservation *r, int64_t now_ms);

struct store_card_settle {
    int64_t payment_id, now_ms;
    int approved;          /* 1: COMPLETED with charge_id; 0: FAILED */
    const char *charge_id; /* may be NULL */
    store_res_after_fail after_fail;
    /* Out: the attempt as it is afterwards. changed = 0 when it was settled
     * already (by another thread) and nothing was written. */
    int changed;
    int status;     /* enum store_pay_status */
    int res_status; /* enum store_res_status */
    struct store_payment out;
};

/* A PENDING card attempt, for the reconciler. */
struct store_card_pending {
    int64_t payment_id, reservation_id, user_id, amount, created_at_ms;
    const char *key;
};

/* An outbox event (table outbox), for the relay. */
struct store_event_row {
    int64_t id; /* publication order */
    const char *topic;
    int64_t aggregate_id;
    const char *payload; /* JSON object */
    int64_t created_at_ms;
};

/* Idempotency-Key handling for charge and pay (invariant 4). The key row is
 * written in the same transaction as the money movement, so of concurrent
 * duplicates exactly one moves money and the others replay its response. */
struct store_idem {
    const char *scope; /* whose keys: "u42" */
    const char *key;   /* 1..64 bytes */
    const char *hash;  /* fingerprint of the request (method, path, body) */
    int64_t ttl_ms;    /* rows older than this are forgotten */
    /* Called inside the transaction with the op's outcome (0, with the op's
     * out fields set, or the op's business error) to make the response that
     * is stored; status >= 500 is not stored. body lives in the caller's
     * arena. */
    void (*render)(void *ctx, int err, int *status, const char **body, size_t *len);
    void *ctx;
    /* Out: 1 when a stored response was found and is returned instead. */
    int replayed;
    int status;
    const char *body; /* copied into the op's arena */
    size_t len;
};

/* What the store reports to /metrics. */
struct store_stats {
    uint64_t commit_batches;    /* group commits done since start */
    uint64_t commit_jobs;       /* writes they carried */
    uint64_t commit_pending;    /* writes waiting for the committer now */
    int64_t outbox_unpublished; /* events the relay has not published yet */
    int64_t outbox_oldest_ms;   /* created_at of the oldest of them; 0 when none */
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
    /* The classic API names a session (its "schedule") without its concert
     * and its seats by number; these two reads serve it.
     *
     * Available seats of session session_id (of whichever concert) in
     * seat-number order, skipping the first offset of them, at most limit:
     * numbered pages. One range scan of the index list_available_seats uses,
     * which steps over offset entries first, so a page costs offset + limit
     * entries. ERR_NOT_FOUND when the session does not exist (checked with a
     * second lookup only when no seat comes back). */
    int (*list_available_seats_at)(struct store *s, struct arena *a, int64_t session_id,
                                   int64_t offset, int64_t limit, struct store_seat **out,
                                   size_t *n);
    /* The ids of the seats numbered numbers[0..n) in session session_id of
     * concert concert_id: ids[i] for numbers[i]. A read of rows that never
     * change; it says nothing about whether the seats are free. ERR_NOT_FOUND
     * with *bad set to the first number that is no seat of the session, or
     * to 0 when the session does not exist or is not the concert's. */
    int (*seat_ids_by_number)(struct store *s, int64_t concert_id, int64_t session_id,
                              const int64_t *numbers, size_t n, int64_t *ids, int64_t *bad);

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
    /* ---- booking (sqlite_booking.c) -------------------------------------- */
    /* All-or-nothing hold of h->seat_ids for h->user_id (created on first
     * use), HELD until h->expires_at_ms. ERR_NOT_FOUND: no such session of
     * the concert, or a seat that is unknown or of another session (checked
     * for every seat before any is taken); ERR_CONFLICT: a seat is held by a
     * live hold or sold. Seats of a hold past its expiry are taken back from
     * it first (it becomes EXPIRED). *out gets the reservation with its seats. */
    int (*hold_seats)(struct store *s, struct arena *a, struct store_hold *h,
                      struct store_reservation *out);
    /* The reservation with its seats, as stored. ERR_NOT_FOUND. */
    int (*get_reservation)(struct store *s, struct arena *a, int64_t id,
                           struct store_reservation *out);
    /* Cancels reservation id for caller: check (see store_res_check, called
     * with balance 0) returns 0 to cancel (seats released), 1 to change
     * nothing, or the error. *out gets the reservation as it is afterwards. */
    int (*cancel_reservation)(struct store *s, struct arena *a, int64_t id, int64_t caller,
                              int64_t now_ms, store_res_check check, struct store_reservation *out);
    /* Expires at most max HELD reservations with expires_at <= now_ms,
     * releasing their seats; *n gets how many (NULL allowed). */
    int (*expire_holds)(struct store *s, int64_t now_ms, int64_t max, int64_t *n);
    /* The balance of user_id; 0 for a user never seen. */
    int (*get_balance)(struct store *s, int64_t user_id, int64_t *balance);
    /* Adds c->amount to the user's balance (creating the user) with a CHARGE
     * ledger row. idem may be NULL. */
    int (*charge)(struct store *s, struct arena *a, struct store_charge *c,
                  struct store_idem *idem);
    /* Pays reservation p->reservation_id from p->user_id's balance: debit,
     * PAYMENT ledger row, payment COMPLETED, reservation CONFIRMED, seats
     * SOLD and a payment.completed outbox event, in one transaction.
     * ERR_NOT_FOUND for an unknown reservation, else p->check's verdict.
     * idem may be NULL. */
    int (*pay)(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem);
    /* Card payments (see struct store_card). card_begin, in one job: reads
     * the reservation, asks c->check, and either reports the reservation's
     * PENDING attempt or writes a new one (payments PENDING with the key
     * c->make_key gives, reservation PAYMENT_PENDING). ERR_NOT_FOUND. */
    int (*card_begin)(struct store *s, struct store_card *c);
    /* Settles PENDING attempt x->payment_id. Approved: payment COMPLETED
     * with the gateway's charge id, reservation CONFIRMED, seats SOLD and a
     * payment.completed outbox event (no balance moves). Failed: payment
     * FAILED, reservation HELD or EXPIRED (seats released) as x->after_fail
     * says. One transaction; with idem (may be NULL) the response rendered
     * with err 0 is stored in it. ERR_NOT_FOUND for an unknown attempt. */
    int (*card_settle)(struct store *s, struct arena *a, struct store_card_settle *x,
                       struct store_idem *idem);
    /* PENDING card attempts created before created_before_ms, oldest first,
     * at most max (into a). */
    int (*card_list_pending)(struct store *s, struct arena *a, int64_t created_before_ms,
                             int64_t max, struct store_card_pending **out, size_t *n);
    /* Looks idem's key up without writing: idem->replayed set with the
     * stored response, or left 0 when there is none younger than
     * idem->ttl_ms; ERR_IDEMPOTENCY when the key was used for another request. */
    int (*idem_get)(struct store *s, struct arena *a, struct store_idem *idem, int64_t now_ms);
    /* Deletes stored idempotent responses created before before_ms. */
    int (*purge_idempotency)(struct store *s, int64_t before_ms, int64_t *n);
    /* ---- end of booking ---------------------------------------------------- */

    /* Figures for /metrics: counters in memory plus one small read of the
     * outbox's unpublished index. Fields it cannot read stay 0. */
    void (*stats)(struct store *s, struct store_stats *out);
    /* The outbox (sqlite_outbox.c): at most max unpublished events in id
     * order (into a); marking sets published_at of the ids given. */
    int (*outbox_list)(struct store *s, struct arena *a, int64_t max, struct store_event_row **out,
                       size_t *n);
    int (*outbox_mark)(struct store *s, const int64_t *ids, size_t n, int64_t now_ms);

    /* A number that changes after every write this process commits, read
     * before a read whose answer is to be cached: an answer cached under
     * version v is what the same read returns for as long as the version is
     * still v. NULL when other processes write the same data all the time
     * (PostgreSQL: the other instances), which turns such caches off. */
    uint64_t (*write_version)(struct store *s);
    /* Lets the adapter keep up to bytes of seats in memory to answer seat
     * pages (0: none; sqlite_seatmap.c). Called once, before serving. NULL
     * where the adapter has no such cache. */
    void (*set_seat_cache)(struct store *s, size_t bytes);
    /* Queues job to run on the thread that commits writes, inside its next
     * batch (core/batch.h), and returns at once: 0, or ERR_UNAVAILABLE
     * when the store is closing (job->done is then never called). NULL
     * where writes have no single committer to run it (PostgreSQL). */
    int (*run_batched)(struct store *s, struct batch_job *job);

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

/* The demo layout of `concertd seed`, shared by the adapters (seed.c): the
 * venue of demo concert concert_id, and the seat blocks of each session (by
 * grade when o->price is 0: first 20 %, at least one, VIP; next 30 % R; the
 * rest S; else all R at o->price); returns how many of b it filled. */
const char *store_seed_venue(int64_t concert_id);
size_t store_seed_blocks(const struct store_seed *o, struct store_block b[3]);

/* The text the adapters store for reservation and payment statuses and
 * token states (status.c): name ("" when out of range) and back (-1, or 0
 * for tokens, when unknown). */
const char *store_res_status_name(int status);
int store_res_status_of(const char *text);
const char *store_pay_status_name(int status);
int store_pay_status_of(const char *text);
const char *store_token_state_name(int state);
int store_token_state_of(const char *text);

/* Adapter constructors, called by store_open(). */
int store_sqlite_open(const char *path, struct store **out, char *errbuf, size_t errlen);
/* url: a libpq connection URI (postgres://user@host:port/db?...). */
int store_pg_open(const char *url, struct store **out, char *errbuf, size_t errlen);
