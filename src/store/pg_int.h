/* pg_int.h -- what the files of the PostgreSQL adapter share.
 *
 * pg.c owns connections (per thread, with reconnect), statements, errors,
 * migrations, the catalog reads and the bulk loads; pg_commit.c the group
 * committer (pg_write); pg_booking.c the booking ops; pg_queue.c the
 * waiting room's tokens and the outbox. Nothing outside src/store/ includes
 * this.
 *
 * Statements: every file keeps its SQL in static strings and passes them to
 * pg_exec(), which prepares each once per connection (a server-side
 * prepared statement, named by its slot) and finds it again by the string's
 * address. Parameters and results travel in text format. */
#pragma once
#include <libpq-fe.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct arena;

#define PG_CACHED_STATEMENTS 256 /* prepared statements per connection; a power of 2 */
#define PG_MAX_PARAMS 12

struct pg_store;

/* Changes of sessions.available_seats a transaction owes (pg_commit.c note 5). */
struct pg_avail_change {
    int64_t session_id, delta;
};
struct pg_avail {
    struct pg_avail_change *v;
    size_t n, cap;
};

struct pgconn {
    PGconn *db;
    struct pg_avail job_avail, batch_avail;  /* the running job's; the batch's so far */
    const char *cache[PG_CACHED_STATEMENTS]; /* prepared SQL by slot; open addressing */
    struct pg_store *owner;
    struct pgconn *next;      /* registry: every connection of the store */
    struct pgconn *next_idle; /* idle list: connections of exited threads */
    char sqlstate[6];         /* of the last failed statement; "" when none */
    int retry;                /* that failure may pass in a new transaction (pg_retryable) */
    int owe_savepoint;        /* RELEASE job; SAVEPOINT job rides on the next statement */
    int lost_savepoint;       /* that prefix failed: the job's savepoint is not known */
    PGresult *ahead;          /* the running job's statement, sent ahead (pg_take_ahead) */
};

#define PG_BATCH_MAX 64 /* jobs per transaction */
#define PG_COMMITTERS 6 /* committer threads of the shared lane, each with its own connection */
#define PG_KEYED_LANES                                                                             \
    2 /* lanes of one committer each, for jobs with a key (pg_commit.c note 7)                     \
       */
#define PG_LANES (PG_KEYED_LANES + 1)

/* The group committer's state (pg_commit.c); guarded by mu. */
struct pg_job;
struct pg_lane {
    struct pg_store *owner;
    pthread_cond_t wake; /* its committers: a job was queued, or stop */
    struct pg_job *head, *tail;
    int want, nthreads; /* committers it runs; started (lazily, by the first pg_write) */
    pthread_t threads[PG_COMMITTERS];
};
struct pg_commit {
    pthread_mutex_t mu;
    struct pg_lane lanes[PG_LANES]; /* keyed ones first, the shared one last */
    int stop;                       /* close(): finish what is queued, then exit */
    size_t pending;
    uint64_t batches, jobs, retries; /* totals, for metrics and tests */
};

struct pg_store {
    struct store base; /* must be first */
    char *url;
    pthread_key_t key;  /* the calling thread's struct pgconn */
    pthread_mutex_t mu; /* guards all, idle */
    struct pgconn *all;
    struct pgconn *idle;
    struct pg_commit commit;
};

/* Parameters of one statement, as text (NULL = SQL NULL). */
struct pg_args {
    int n;
    const char *v[PG_MAX_PARAMS];
    char buf[PG_MAX_PARAMS][24];
};
void pg_arg_int(struct pg_args *a, int64_t v);
/* v > 0, else NULL. */
void pg_arg_opt(struct pg_args *a, int64_t v);
/* s is not copied: it must outlive the statement. */
void pg_arg_str(struct pg_args *a, const char *s);
/* pg_args holding the n ints of v. */
void pg_args_ints(struct pg_args *a, int n, const int64_t *v);

/* The calling thread's connection, (re)connected; NULL (logged) when the
 * server cannot be reached. */
struct pgconn *pg_conn(struct store *s);
int64_t pg_now_ms(void);

/* Runs sql (static storage) with args on c as a prepared statement. 0 with
 * *res set (the caller PQclear()s it; res may be NULL to discard it), or:
 * ERR_INVALID for a constraint violation (bad input), ERR_UNAVAILABLE when
 * the server is unreachable or the statement was a deadlock victim
 * (c->sqlstate says which), ERR_IO otherwise; logged with op. A statement
 * sent outside a transaction on a connection found dead is retried once on
 * a new connection. */
int pg_exec(struct pgconn *c, const char *sql, const struct pg_args *a, PGresult **res,
            const char *op);
/* pg_exec of n (<= 4) statements inside a transaction, sent together in
 * one round trip (pipeline mode; pg.c note 6): res[i] gets statement i's
 * result (the caller PQclear()s each). On the first failure every res[i] is
 * NULL and its error is returned. */
int pg_exec_many(struct pgconn *c, size_t n, const char *const *sql, const struct pg_args *const *a,
                 PGresult **res, const char *op);
/* The statements of a batch's jobs sent ahead (pg_commit.c note 8): in a
 * transaction whose savepoint job is fresh, sql[0..n) with RELEASE job;
 * SAVEPOINT job between each two, in one round trip. res[i] gets statement
 * i's result, success or failure (the caller PQclear()s it), or NULL when
 * it did not run: after the first failure the transaction is aborted and
 * ROLLBACK TO job undoes just the failed statement. 0, or the error of a
 * savepoint statement or a broken connection (lost_savepoint; all NULL). */
int pg_exec_ahead(struct pgconn *c, size_t n, const char *const *sql,
                  const struct pg_args *const *a, PGresult **res, const char *op);
/* Simple protocol, no parameters (BEGIN, COMMIT, SAVEPOINT, DDL). */
int pg_simple(struct pgconn *c, const char *sql, const char *op);
/* pg_exec, then the rows it changed. */
int pg_exec_changes(struct pgconn *c, const char *sql, const struct pg_args *a, int64_t *changes,
                    const char *op);
/* Column 0 of the first row as an int; ERR_NOT_FOUND when there is no row. */
int pg_query_int(struct pgconn *c, const char *sql, const struct pg_args *a, int64_t *out,
                 const char *op);
/* Cell (row, col) as an int (0 for NULL) / as a string copied into a ("" for NULL). */
int64_t pg_int(const PGresult *r, int row, int col);
const char *pg_str(const PGresult *r, int row, int col, struct arena *a);
/* 1 when the last failure of c was a deadlock, a serialization failure, or
 * a waiting_tokens unique race (pg.c note 3): the job may run again in a
 * new transaction. */
int pg_retryable(const struct pgconn *c);

/* Result rows into the caller's arena: read(r, i, a, out) fills one element. */
typedef void (*pg_row_reader)(const PGresult *r, int row, struct arena *a, void *out);
/* *out gets PQntuples rows of size bytes each, read by read; *n their count. */
void pg_collect(const PGresult *r, struct arena *a, size_t size, pg_row_reader read, void **out,
                size_t *n);

/* BEGIN; and COMMIT when err is 0, else ROLLBACK (returns the first error). */
int pg_tx_begin(struct pgconn *c);
int pg_tx_end(struct pgconn *c, int err);

/* ---- group commit (pg_commit.c) ------------------------------------------
 *
 * pg_write() is how every request-time write reaches the database: as in
 * the SQLite adapter (see sq_write in sqlite_int.h), apply(c, arg) runs on a
 * committer thread's own connection inside a transaction that carries the
 * jobs of other concurrent writers, each between SAVEPOINT job and RELEASE
 * (or ROLLBACK TO when it fails), and pg_write returns only after the
 * COMMIT of that transaction. apply must not BEGIN/COMMIT, nor call
 * pg_write; it may be run more than once (a deadlock victim is rolled back
 * to its savepoint and run again in the next transaction), so it must set
 * its out fields afresh each time. */
typedef int (*pg_apply)(struct pgconn *c, void *arg);
/* Inside a job: sessions.available_seats of session_id moves by delta when
 * the job's transaction commits (applied by the committer, in session
 * order, right before COMMIT; dropped with the job when it fails). */
void pg_move_avail(struct pgconn *c, int64_t session_id, int64_t delta);
int pg_write(struct pg_store *ps, pg_apply apply, void *arg);
/* pg_write on the keyed lane of key (> 0): jobs of one key run on one
 * committer, in few transactions (pg_commit.c note 7). */
int pg_write_keyed(struct pg_store *ps, int64_t key, pg_apply apply, void *arg);
/* What a keyed job tells its committer before it runs:
 *   - the rows it will lock, which the committer locks for the whole batch
 *     first, in one ordered statement (pg_commit.c note 9);
 *   - a statement it may send ahead, with those of the other jobs of the
 *     batch, in one round trip (pg_commit.c note 8). It must change
 *     nothing when apply then fails: apply's own savepoint starts after
 *     it. */
struct pg_ahead {
    const int64_t *seat_ids; /* seats it locks FOR UPDATE */
    size_t nseats;
    int64_t user_id;     /* > 0: the user row it locks FOR NO KEY UPDATE */
    const char *sql;     /* NULL: nothing to send ahead */
    struct pg_args args; /* sql's arguments; not copied */
};
/* pg_write_keyed with what the job tells its committer (NULL: nothing). */
int pg_write_ahead(struct pg_store *ps, int64_t key, const struct pg_ahead *ahead, pg_apply apply,
                   void *arg);
/* Inside apply: the result of the job's statement sent ahead (the caller
 * PQclear()s it), or NULL when it was not (then apply runs it itself). */
PGresult *pg_take_ahead(struct pgconn *c);
/* The savepoint bookkeeping owed before the next statement on c (pg.c note
 * 6): sent with it, in one round trip. */
#define PG_OWED_SAVEPOINT "RELEASE job; SAVEPOINT job"
void pg_commit_init(struct pg_store *ps);
void pg_commit_stop(struct pg_store *ps);
size_t pg_commit_pending(struct pg_store *ps);
void pg_commit_totals(struct pg_store *ps, uint64_t *batches, uint64_t *jobs);

/* An inner all-or-nothing step of an apply function: SAVEPOINT step, and
 * its end, which rolls back to it first when err is not 0; returns err, or
 * its own failure. */
int pg_step_begin(struct pgconn *c);
int pg_step_end(struct pgconn *c, int err);

/* pg_queue.c: the waiting room's tokens, the seed's tokens (inside the
 * seed's transaction), and the outbox. */
int pg_queue_save(struct store *s, const struct store_token *t, size_t n);
int pg_queue_load(struct store *s, store_token_fn each, void *ctx, int64_t *next_seq);
int pg_seed_tokens(struct pgconn *c, const struct store_seed *o);
int pg_outbox_list(struct store *s, struct arena *a, int64_t max, struct store_event_row **out,
                   size_t *n);
int pg_outbox_mark(struct store *s, const int64_t *ids, size_t n, int64_t now_ms);

/* ---- booking ops (pg_booking.c), for the ops table in pg.c ------------- */
int pgb_hold_seats(struct store *s, struct arena *a, struct store_hold *h,
                   struct store_reservation *out);
int pgb_get_reservation(struct store *s, struct arena *a, int64_t id,
                        struct store_reservation *out);
int pgb_cancel_reservation(struct store *s, struct arena *a, int64_t id, int64_t caller,
                           int64_t now_ms, store_res_check check, struct store_reservation *out);
int pgb_expire_holds(struct store *s, int64_t now_ms, int64_t max, int64_t *n);
int pgb_get_balance(struct store *s, int64_t user_id, int64_t *balance);
int pgb_charge(struct store *s, struct arena *a, struct store_charge *c, struct store_idem *idem);
int pgb_pay(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem);
int pgb_card_begin(struct store *s, struct store_card *c);
int pgb_card_settle(struct store *s, struct arena *a, struct store_card_settle *x,
                    struct store_idem *idem);
int pgb_card_list_pending(struct store *s, struct arena *a, int64_t created_before_ms, int64_t max,
                          struct store_card_pending **out, size_t *n);
int pgb_idem_get(struct store *s, struct arena *a, struct store_idem *idem, int64_t now_ms);
int pgb_purge_idempotency(struct store *s, int64_t before_ms, int64_t *n);
