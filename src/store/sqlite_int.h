/* sqlite_int.h -- what the files of the SQLite adapter share.
 *
 * sqlite.c owns connections, migrations, the catalog reads and the bulk
 * loads; the other sqlite_*.c files implement further groups of store ops
 * with the helpers declared here. Nothing outside src/store/ includes this.
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

struct sqlite_store {
    struct store base; /* must be first */
    char *path;
    pthread_key_t key;  /* the calling thread's struct conn */
    pthread_mutex_t mu; /* guards all, idle */
    struct conn *all;
    struct conn *idle;
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
