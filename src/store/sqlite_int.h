/* sqlite_int.h -- what the files of the SQLite adapter share.
 *
 * sqlite.c owns connections, migrations, the catalog reads and the bulk
 * loads; sqlite_commit.c the group committer (sq_write); the other
 * sqlite_*.c files implement further groups of store ops with the helpers
 * declared here. Nothing outside src/store/ includes this, except the
 * adapter's unit tests.
 *
 * Statements: every file keeps its SQL in static strings and passes them to
 * sq_stmt(), which prepares each once per connection and finds it again by
 * the string's address (a string with the same text at another address is
 * another statement). */
#pragma once
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct arena;

#define SQ_CACHED_STATEMENTS 256 /* prepared statements per connection; a power of 2 */

struct sqlite_store;

struct conn {
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[SQ_CACHED_STATEMENTS]; /* open addressing by the SQL's address */
    struct sqlite_store *owner;
    struct conn *next;      /* registry: every connection of the store */
    struct conn *next_idle; /* idle list: connections of exited threads */
};

/* A seat whose availability a job changed (sqlite_seatmap.c design note 2). */
struct sq_seat_change {
    int64_t session_id, seat_id;
    int avail; /* 1: free now; 0: held */
};

/* The group committer's state (sqlite_commit.c); guarded by mu. */
struct sq_job;
struct sq_commit {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* committer: a job was queued, or stop */
    pthread_t thread;
    int running; /* the thread was started (lazily, by the first sq_write) */
    int stop;    /* close(): finish what is queued, then exit */
    struct sq_job *head, *tail;
    size_t pending;
    uint64_t batches, jobs; /* totals, for tests and metrics */
    _Atomic uint64_t version; /* batches run; raised before their writers wake */
    /* The running batch's seat changes; the committer's alone, no lock. */
    struct sq_seat_change *changes;
    size_t nchanges, capchanges;
};

struct sq_seatmap;

struct sqlite_store {
    struct store base; /* must be first */
    char *path;
    pthread_key_t key;  /* the calling thread's struct conn */
    pthread_mutex_t mu; /* guards all, idle */
    struct conn *all;
    struct conn *idle;
    struct sq_commit commit;
    struct sq_seatmap *seats; /* NULL: off (sqlite_seatmap.c) */
};

/* The calling thread's connection; NULL (logged) when none can be opened. */
struct conn *sq_conn(struct store *s);
/* Wall clock, epoch milliseconds. */
int64_t sq_now_ms(void);

/* sql (a string with static storage) prepared on c, once; NULL (logged)
 * when it does not prepare. */
sqlite3_stmt *sq_stmt(struct conn *c, const char *sql);
/* Maps a failed SQLite call to an enum err and logs it with the op's name:
 * a constraint is ERR_INVALID, busy/locked ERR_UNAVAILABLE, the rest ERR_IO. */
int sq_fail(struct conn *c, const char *op, int rc);
/* Binds int64 parameters ?1..?n. */
void sq_bind_ints(sqlite3_stmt *st, int n, const int64_t *v);
/* Steps a statement that returns no rows (or whose rows are ignored), resets it. */
int sq_exec_st(struct conn *c, sqlite3_stmt *st, const char *op);
/* sq_stmt(sql) with int parameters: no rows wanted / column 0 of its one row
 * (ERR_NOT_FOUND when there is none). */
int sq_exec_ints(struct conn *c, const char *sql, int n, const int64_t *v);
int sq_query_int(struct conn *c, const char *sql, int n, const int64_t *v, int64_t *out);

/* BEGIN IMMEDIATE; and COMMIT when err is 0, else ROLLBACK (returns the first error). */
int sq_tx_begin(struct conn *c);
int sq_tx_end(struct conn *c, int err);

/* Result rows into the caller's arena. */
struct rows {
    void *items;
    size_t n, cap, size;
};
typedef void (*row_reader)(sqlite3_stmt *st, struct arena *a, void *out);
/* Appends one zeroed element, doubling the array in the arena when full. */
void *sq_rows_push(struct arena *a, struct rows *r);
/* Column i as a string copied into a ("" for NULL). */
const char *sq_col_str(sqlite3_stmt *st, int i, struct arena *a);
/* Steps a bound statement to the end, reading each row into r; resets it. */
int sq_collect(struct conn *c, sqlite3_stmt *st, const char *op, struct arena *a, struct rows *r,
               row_reader read);

/* sqlite_queue.c: the waiting room's store ops, and the tokens of a seed
 * (run inside the seed's transaction). */
int sq_queue_save(struct store *s, const struct store_token *t, size_t n);
int sq_queue_load(struct store *s, store_token_fn each, void *ctx, int64_t *next_seq);
int sq_seed_tokens(struct conn *c, const struct store_seed *o);
/* ---- group commit (sqlite_commit.c) --------------------------------------
 *
 * sq_write() is how every request-time write reaches the database. The
 * caller's apply(c, arg) runs on the committer thread's own connection,
 * inside a transaction the committer owns, together with the jobs of other
 * concurrent writers: one BEGIN IMMEDIATE, then per job SAVEPOINT, apply,
 * RELEASE (or ROLLBACK TO when apply fails, so one job's failure leaves the
 * others' changes alone), then one COMMIT (synchronous=FULL) for the batch.
 * sq_write returns only after that COMMIT: 0 when apply returned 0 and the
 * commit is durable; apply's own error; or the COMMIT's error, which every
 * job of the batch gets.
 *
 * apply must: not BEGIN/COMMIT/ROLLBACK itself (savepoints of its own are
 * fine); not call sq_write; not block on anything but SQLite; leave its
 * results in arg (the caller reads them after sq_write returns; they are
 * meaningful only when it returns 0). It may read what earlier jobs of the
 * batch wrote. The caller is blocked meanwhile, so arg and anything it
 * points at (such as the caller's arena) may be used freely.
 *
 * The committer thread starts with the first sq_write and is stopped and
 * joined by the store's close(), which first lets it finish what is queued. */
#define SQ_BATCH_MAX 256 /* jobs per transaction */

typedef int (*sq_apply)(struct conn *c, void *arg);
int sq_write(struct sqlite_store *ss, sq_apply apply, void *arg);

void sq_commit_init(struct sqlite_store *ss);
/* Starts the committer now rather than on the first write, so it watches
 * for other processes' commits (sqlite_commit.c design note 7). */
int sq_commit_start(struct sqlite_store *ss);
/* Lets the committer finish what is queued, joins it and frees its state:
 * the store is closing, and no sq_write may run at the same time or after. */
void sq_commit_stop(struct sqlite_store *ss);
/* Jobs queued and not yet taken by the committer; totals of batches and jobs
 * committed or failed so far (either pointer may be NULL). */
size_t sq_commit_pending(struct sqlite_store *ss);
void sq_commit_totals(struct sqlite_store *ss, uint64_t *batches, uint64_t *jobs);
uint64_t sq_write_version(struct store *s); /* store.h write_version */
int sq_run_batched(struct store *s, struct batch_job *job); /* store.h run_batched */
/* Inside a job: seat seat_id of session_id became free (avail 1) or held
 * (0). Kept if the job succeeds, applied to the seat map after the COMMIT. */
void sq_seat_changed(struct conn *c, int64_t session_id, int64_t seat_id, int avail);

/* ---- seat map (sqlite_seatmap.c) ----------------------------------------- */

/* NULL when cap is 0 (off). */
struct sq_seatmap *sq_seatmap_new(size_t cap);
void sq_seatmap_free(struct sq_seatmap *m);
/* The page from memory (loading the session on first use): 0, ERR_NOT_FOUND
 * (no such session of that concert), or another error after which the
 * caller answers from SQL (ERR_LIMIT: not cached; m NULL, over the cap or a
 * load that raced a commit). */
int sq_seatmap_page(struct sq_seatmap *m, struct conn *c, int64_t concert_id, int64_t session_id,
                    int64_t after, int64_t limit, struct arena *a, struct store_seat **out,
                    size_t *n);
/* Forgets every session (another process wrote; sqlite_seatmap.c note 4). */
void sq_seatmap_flush(struct sq_seatmap *m);
/* Applies a committed batch's changes (the committer, before waking writers). */
void sq_seatmap_apply(struct sq_seatmap *m, const struct sq_seat_change *ch, size_t n);

/* Savepoints: SQ_SP_JOB is the committer's around each job; apply functions
 * use SQ_SP_STEP for an inner all-or-nothing step. sq_release() rolls back
 * to the savepoint first when err is not 0, and returns err, or its own
 * failure. */
enum sq_savepoint { SQ_SP_JOB, SQ_SP_STEP };
int sq_savepoint(struct conn *c, enum sq_savepoint sp);
int sq_release(struct conn *c, enum sq_savepoint sp, int err);

/* sqlite_outbox.c: the relay's reads and marks. */
int sq_outbox_list(struct store *s, struct arena *a, int64_t max, struct store_event_row **out,
                   size_t *n);
int sq_outbox_mark(struct store *s, const int64_t *ids, size_t n, int64_t now_ms);

/* ---- booking ops (sqlite_booking.c), for the ops table in sqlite.c ------- */
int sqb_hold_seats(struct store *s, struct arena *a, struct store_hold *h,
                   struct store_reservation *out);
int sqb_get_reservation(struct store *s, struct arena *a, int64_t id,
                        struct store_reservation *out);
int sqb_cancel_reservation(struct store *s, struct arena *a, int64_t id, int64_t caller,
                           int64_t now_ms, store_res_check check, struct store_reservation *out);
int sqb_expire_holds(struct store *s, int64_t now_ms, int64_t max, int64_t *n);
int sqb_get_balance(struct store *s, int64_t user_id, int64_t *balance);
int sqb_charge(struct store *s, struct arena *a, struct store_charge *c, struct store_idem *idem);
int sqb_pay(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem);
int sqb_card_begin(struct store *s, struct store_card *c);
int sqb_card_settle(struct store *s, struct arena *a, struct store_card_settle *x,
                    struct store_idem *idem);
int sqb_card_list_pending(struct store *s, struct arena *a, int64_t created_before_ms, int64_t max,
                          struct store_card_pending **out, size_t *n);
int sqb_idem_get(struct store *s, struct arena *a, struct store_idem *idem, int64_t now_ms);
int sqb_purge_idempotency(struct store *s, int64_t before_ms, int64_t *n);
