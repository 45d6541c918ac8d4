/* sqlite.c -- the SQLite store adapter (embedded mode).
 *
 * Implements the store port (store.h) over one SQLite file in WAL mode:
 * schema migrations, the read paths of the booking flow, and the bulk writes
 * of `concertd seed` and `concertd import`. Not here: business rules
 * (service/), group commit of the request writes (sqlite_commit.c), the
 * booking ops (sqlite_booking.c), the schema itself
 * (schema/sqlite/NNNN_*.sql, embedded at build time as
 * store_sqlite_migrations[]).
 *
 * Design notes
 *
 *   1. Per-thread connections. A SQLite connection is used by one thread at
 *      a time, so each thread gets its own, opened lazily on its first call
 *      and found again through a pthread key. WAL lets all of them read at
 *      once while one writes. Each connection prepares its statements once,
 *      on first use (SQLITE_PREPARE_PERSISTENT), and resets every statement
 *      right after use so no read snapshot outlives a call.
 *   2. Registry. Every connection is on the store's `all` list from birth to
 *      close(), which finalizes and closes each exactly once. When a thread
 *      exits, the key's destructor parks its connection on the `idle` list,
 *      where the next new thread picks it up: the number of connections is
 *      the peak number of threads, not the number ever started. close() must
 *      not race with exits of threads that used the store (the server joins
 *      its workers first); close() deletes the key, so later exits are no-ops.
 *   3. Counter maintenance. sessions.available_seats is the number of the
 *      session's seats with status 0. Whatever inserts seats or changes
 *      seats.status updates it in the same transaction (here: the seat
 *      inserts of seed and import); the sessions list reads it and never
 *      counts seats. A CHECK keeps it within 0..total_seats.
 *   4. The seat page is one index range scan of the partial covering index
 *      seats_available (session_id, status, seat_number, grade, price)
 *      WHERE status = 0: partial, so held and sold seats are not in it and
 *      LIMIT n reads n entries; covering, so the 10M-row table is never
 *      visited (status must be an index column for SQLite to see that). The
 *      unit test checks the plan with EXPLAIN QUERY PLAN. The classic API's
 *      numbered page (list_available_seats_at) scans the same index by
 *      session alone and steps over OFFSET entries first: its cost grows
 *      with the page number, bounded by the seats of one session.
 *   5. Bulk inserts generate seat numbers inside SQLite (a recursive CTE in
 *      one INSERT ... SELECT per block), in (session, seat number) order so
 *      every b-tree is appended at its right edge. The seed is one ordinary
 *      transaction, committed with synchronous=FULL like any other, then the
 *      WAL is checkpointed and truncated so a large seed does not leave a
 *      WAL the size of the database behind. */
#include "store/store.h"

#include <assert.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "store/sqlite_int.h"

#define MOD "store"
#define BUSY_TIMEOUT_MS 5000
/* The database file grows in steps of this many bytes (SQLITE_FCNTL_CHUNK_SIZE),
 * so a stream of inserts extends it (and its metadata) rarely rather than
 * page by page. */
#define FILE_CHUNK (32 * 1024 * 1024)
#define DAY_MS (86400 * (int64_t)1000)
#define SEED_FIRST_START_MS ((int64_t)1798797600 * 1000) /* 2027-01-01T10:00:00Z */

/* Generated from schema/sqlite/NNNN_*.sql by cmake/embed_sql.cmake; NULL-terminated. */
extern const char *const store_sqlite_migrations[];

/* Run on every new connection. journal_size_limit trims the WAL after a
 * checkpoint resets it. No mmap: a reader that finds the database changed
 * since its last transaction unmaps and maps the file again, so under a
 * stream of commits every read paid an munmap, a TLB shoot-down on every
 * core and fresh page faults (perf: 12 % of the balance bench in munmap).
 * With mmap_size = 0 reads go through each connection's page cache and
 * pread: balance charge + lookup rose from 22,663 to 33,217 req/s at 64
 * workers, the booking flow from 15,736 to 20,420; the read-only seat page
 * stayed at ~23,000 (bench/balance.sh, booking.sh, seat_page.sh, 2026-11-21). */
static const char CONN_PRAGMAS[] = "PRAGMA synchronous = FULL;"
                                   "PRAGMA foreign_keys = ON;"
                                   "PRAGMA cache_size = -16384;" /* KiB per connection */
                                   "PRAGMA mmap_size = 0;"
                                   "PRAGMA temp_store = MEMORY;"
                                   "PRAGMA journal_size_limit = 67108864;";

/* The seat page. Exported (not in store.h) so the unit test can EXPLAIN it. */
extern const char store_sqlite_sql_available_seats[];
const char store_sqlite_sql_available_seats[] =
    "SELECT st.id, st.seat_number, st.grade, st.price FROM sessions ss"
    " JOIN seats st ON st.session_id = ss.id AND st.status = 0 AND st.seat_number > ?3"
    " WHERE ss.id = ?1 AND ss.concert_id = ?2"
    " ORDER BY st.seat_number LIMIT ?4";
/* The classic API's numbered seat page: the same index, by session alone. */
extern const char store_sqlite_sql_available_seats_at[];
const char store_sqlite_sql_available_seats_at[] =
    "SELECT id, seat_number, grade, price FROM seats WHERE session_id = ?1 AND status = 0"
    " ORDER BY seat_number LIMIT ?3 OFFSET ?2";

enum st_id {
    ST_PING,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_VERSION,
    ST_CONCERTS,
    ST_CONCERT_EXISTS,
    ST_SESSIONS,
    ST_SESSION,
    ST_SEATS,
    ST_SEATS_AT,
    ST_SESSION_EXISTS,
    ST_SEAT_BY_NUMBER,
    ST_MAX_CONCERT,
    ST_INS_CONCERT,
    ST_INS_SESSION,
    ST_INS_BLOCK,
    ST_SET_SESSION_SEATS,
    ST_SEED_USERS,
    ST_SEED_LEDGER,
    ST_SEED_BALANCE,
    ST_COUNT
};

static const char *const SQL[ST_COUNT] = {
    [ST_PING] = "SELECT 1",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_VERSION] = "PRAGMA user_version",
    [ST_CONCERTS] = "SELECT id, title, venue FROM concerts ORDER BY id",
    [ST_CONCERT_EXISTS] = "SELECT 1 FROM concerts WHERE id = ?1",
    [ST_SESSIONS] = "SELECT id, concert_id, starts_at, total_seats, available_seats FROM sessions"
                    " WHERE concert_id = ?1 ORDER BY starts_at, id",
    [ST_SESSION] = "SELECT id, concert_id, starts_at, total_seats, available_seats FROM sessions"
                   " WHERE id = ?1 AND concert_id = ?2",
    [ST_SEATS] = store_sqlite_sql_available_seats,
    [ST_SEATS_AT] = store_sqlite_sql_available_seats_at,
    [ST_SESSION_EXISTS] = "SELECT 1 FROM sessions WHERE id = ?1",
    [ST_SEAT_BY_NUMBER] = "SELECT st.id FROM sessions ss"
                          " JOIN seats st ON st.session_id = ss.id AND st.seat_number = ?3"
                          " WHERE ss.id = ?1 AND ss.concert_id = ?2",
    [ST_MAX_CONCERT] = "SELECT coalesce(max(id), 0) FROM concerts",
    [ST_INS_CONCERT] =
        "INSERT INTO concerts (id, title, venue, created_at) VALUES (?1, ?2, ?3, ?4)",
    [ST_INS_SESSION] = "INSERT INTO sessions (concert_id, starts_at) VALUES (?1, ?2)",
    [ST_INS_BLOCK] = "WITH RECURSIVE n(x) AS (SELECT ?2 UNION ALL SELECT x + 1 FROM n WHERE x < ?3)"
                     " INSERT INTO seats (session_id, seat_number, grade, price)"
                     " SELECT ?1, x, ?4, ?5 FROM n",
    [ST_SET_SESSION_SEATS] =
        "UPDATE sessions SET total_seats = ?2, available_seats = ?2 WHERE id = ?1",
    [ST_SEED_USERS] =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)"
        " INSERT OR IGNORE INTO users (id, balance, created_at) SELECT x, 0, ?2 FROM n",
    [ST_SEED_LEDGER] =
        "INSERT INTO balance_ledger (user_id, kind, amount, balance_after, ref, created_at)"
        " SELECT id, 'CHARGE', ?2 - balance, ?2, NULL, ?3 FROM users"
        " WHERE id BETWEEN 1 AND ?1 AND balance < ?2",
    [ST_SEED_BALANCE] = "UPDATE users SET balance = ?2 WHERE id BETWEEN 1 AND ?1 AND balance < ?2",
};

static const struct store_ops sqlite_ops;

/* ---- connections ------------------------------------------------------ */

int64_t sq_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Callback for PRAGMA journal_mode: records the mode SQLite actually chose. */
static int journal_mode_cb(void *arg, int ncol, char **vals, char **names) {
    (void)names;
    if (ncol > 0 && vals[0]) snprintf(arg, 16, "%s", vals[0]);
    return 0;
}

/* Opens and configures one connection. The first read of the file happens
 * here (journal_mode), so a file that is not a database fails now. */
static int conn_db_open(const char *path, sqlite3 **out, char *errbuf, size_t errlen) {
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    char mode[16] = "";
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
        rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", journal_mode_cb, mode, NULL);
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, CONN_PRAGMAS, NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        int chunk = FILE_CHUNK;
        sqlite3_file_control(db, "main", SQLITE_FCNTL_CHUNK_SIZE, &chunk);
    }
    if (rc != SQLITE_OK) {
        snprintf(errbuf, errlen, "cannot open database %s: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return ERR_IO;
    }
    if (strcmp(mode, "wal") != 0) {
        snprintf(errbuf, errlen, "cannot open database %s: WAL mode refused (journal_mode=%s)",
                 path, mode);
        sqlite3_close(db);
        return ERR_IO;
    }
    *out = db;
    return 0;
}

/* Opens a connection and adds it to the registry. */
static struct conn *conn_new(struct sqlite_store *ss, char *errbuf, size_t errlen) {
    sqlite3 *db;
    if (conn_db_open(ss->path, &db, errbuf, errlen) != 0) return NULL;
    struct conn *c = xcalloc(1, sizeof(*c));
    c->db = db;
    c->owner = ss;
    pthread_mutex_lock(&ss->mu);
    c->next = ss->all;
    ss->all = c;
    pthread_mutex_unlock(&ss->mu);
    return c;
}

static void conn_free(struct conn *c) {
    for (int i = 0; i < SQ_CACHED_STATEMENTS; i++) sqlite3_finalize(c->cache[i].st);
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK) LOG_ERROR(MOD, "op=close rc=%d msg=%s", rc, sqlite3_errstr(rc));
    free(c);
}

/* pthread key destructor: the owning thread exited; park its connection. */
static void conn_park(void *p) {
    struct conn *c = p;
    struct sqlite_store *ss = c->owner;
    if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&ss->mu);
    c->next_idle = ss->idle;
    ss->idle = c;
    pthread_mutex_unlock(&ss->mu);
}

/* The calling thread's connection: its own, a parked one, or a new one.
 * NULL (logged) when a new connection cannot be opened. */
static struct conn *conn_get(struct sqlite_store *ss) {
    struct conn *c = pthread_getspecific(ss->key);
    if (c) return c;
    pthread_mutex_lock(&ss->mu);
    c = ss->idle;
    if (c) ss->idle = c->next_idle;
    pthread_mutex_unlock(&ss->mu);
    if (!c) {
        char err[512];
        c = conn_new(ss, err, sizeof(err));
        if (!c) {
            LOG_ERROR(MOD, "op=connect %s", err);
            return NULL;
        }
    }
    c->next_idle = NULL;
    pthread_setspecific(ss->key, c);
    return c;
}

struct conn *sq_conn(struct store *s) {
    return conn_get((struct sqlite_store *)s);
}

/* ---- statements and errors -------------------------------------------- */

/* Maps a failed SQLite call to an enum err and logs it with the op's name. */
int sq_fail(struct conn *c, const char *op, int rc) {
    int constraint = (rc & 0xff) == SQLITE_CONSTRAINT; /* bad input, not a broken store */
    LOG_AT(constraint ? LOG_LEVEL_WARN : LOG_LEVEL_ERROR, MOD, "op=%s rc=%d msg=\"%s\"", op, rc,
           sqlite3_errmsg(c->db));
    if (constraint) return ERR_INVALID;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return ERR_UNAVAILABLE;
    default: return ERR_IO;
    }
}

sqlite3_stmt *sq_stmt(struct conn *c, const char *sql) {
    uintptr_t h = (uintptr_t)sql;
    h ^= h >> 17;
    h *= 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < SQ_CACHED_STATEMENTS; i++) {
        size_t at = (size_t)(h + i) & (SQ_CACHED_STATEMENTS - 1);
        if (c->cache[at].sql == sql) return c->cache[at].st;
        if (c->cache[at].sql) continue;
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK) {
            LOG_ERROR(MOD, "op=prepare rc=%d msg=\"%s\" sql=\"%s\"", rc, sqlite3_errmsg(c->db),
                      sql);
            return NULL;
        }
        c->cache[at].sql = sql;
        c->cache[at].st = st;
        return st;
    }
    LOG_ERROR(MOD, "op=prepare msg=\"more than %d statements\" sql=\"%s\"", SQ_CACHED_STATEMENTS,
              sql);
    return NULL;
}

static sqlite3_stmt *stmt(struct conn *c, enum st_id id) {
    return sq_stmt(c, SQL[id]);
}

void sq_bind_ints(sqlite3_stmt *st, int n, const int64_t *v) {
    for (int i = 0; i < n; i++) sqlite3_bind_int64(st, i + 1, v[i]);
}

int sq_exec_st(struct conn *c, sqlite3_stmt *st, const char *op) {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) continue;
    int err = rc == SQLITE_DONE ? 0 : sq_fail(c, op, rc);
    sqlite3_reset(st);
    return err;
}

int sq_exec_ints(struct conn *c, const char *sql, int n, const int64_t *v) {
    sqlite3_stmt *st = sq_stmt(c, sql);
    if (!st) return ERR_IO;
    sq_bind_ints(st, n, v);
    return sq_exec_st(c, st, sql);
}

int sq_query_int(struct conn *c, const char *sql, int n, const int64_t *v, int64_t *out) {
    sqlite3_stmt *st = sq_stmt(c, sql);
    if (!st) return ERR_IO;
    sq_bind_ints(st, n, v);
    int rc = sqlite3_step(st);
    int err = 0;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        err = rc == SQLITE_DONE ? ERR_NOT_FOUND : sq_fail(c, sql, rc);
    sqlite3_reset(st);
    return err;
}

static int exec_ints(struct conn *c, enum st_id id, int n, const int64_t *v) {
    return sq_exec_ints(c, SQL[id], n, v);
}

static int query_int(struct conn *c, enum st_id id, int n, const int64_t *v, int64_t *out) {
    return sq_query_int(c, SQL[id], n, v, out);
}

int sq_tx_begin(struct conn *c) {
    return exec_ints(c, ST_BEGIN, 0, NULL);
}

int sq_tx_end(struct conn *c, int err) {
    if (err == 0) {
        err = exec_ints(c, ST_COMMIT, 0, NULL);
        if (err == 0) return 0;
    }
    if (!sqlite3_get_autocommit(c->db)) exec_ints(c, ST_ROLLBACK, 0, NULL);
    return err;
}

/* The calling thread's connection and its prepared statement id. */
static int use_stmt(struct store *s, enum st_id id, struct conn **c, sqlite3_stmt **st) {
    *c = sq_conn(s);
    if (!*c) return ERR_UNAVAILABLE;
    *st = stmt(*c, id);
    return *st ? 0 : ERR_IO;
}

/* ---- result rows into the caller's arena ------------------------------ */

void *sq_rows_push(struct arena *a, struct rows *r) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        void *items = arena_alloc(a, cap * r->size);
        if (r->n) memcpy(items, r->items, r->n * r->size);
        r->items = items;
        r->cap = cap;
    }
    void *p = (char *)r->items + r->n++ * r->size;
    memset(p, 0, r->size);
    return p;
}

const char *sq_col_str(sqlite3_stmt *st, int i, struct arena *a) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? arena_strndup(a, (const char *)t, (size_t)sqlite3_column_bytes(st, i)) : "";
}

int sq_collect(struct conn *c, sqlite3_stmt *st, const char *op, struct arena *a, struct rows *r,
               row_reader read) {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) read(st, a, sq_rows_push(a, r));
    int err = rc == SQLITE_DONE ? 0 : sq_fail(c, op, rc);
    sqlite3_reset(st);
    return err;
}

static void read_concert(sqlite3_stmt *st, struct arena *a, void *out) {
    struct store_concert *x = out;
    x->id = sqlite3_column_int64(st, 0);
    x->title = sq_col_str(st, 1, a);
    x->venue = sq_col_str(st, 2, a);
}

static void read_session(sqlite3_stmt *st, struct arena *a, void *out) {
    (void)a;
    struct store_session *x = out;
    x->id = sqlite3_column_int64(st, 0);
    x->concert_id = sqlite3_column_int64(st, 1);
    x->starts_at_ms = sqlite3_column_int64(st, 2);
    x->total_seats = sqlite3_column_int64(st, 3);
    x->available_seats = sqlite3_column_int64(st, 4);
}

/* ---- ops: reads --------------------------------------------------------- */

static int sq_ping(struct store *s) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t one = 0;
    return query_int(c, ST_PING, 0, NULL, &one) == 0 && one == 1 ? 0 : ERR_UNAVAILABLE;
}

static int sq_list_concerts(struct store *s, struct arena *a, struct store_concert **out,
                            size_t *n) {
    struct conn *c;
    sqlite3_stmt *st;
    int err = use_stmt(s, ST_CONCERTS, &c, &st);
    if (err) return err;
    struct rows r = {.size = sizeof(**out)};
    err = sq_collect(c, st, "list_concerts", a, &r, read_concert);
    if (err) return err;
    *out = r.items;
    *n = r.n;
    return 0;
}

static int sq_list_sessions(struct store *s, struct arena *a, int64_t concert_id,
                            struct store_session **out, size_t *n) {
    struct conn *c;
    sqlite3_stmt *st;
    int err = use_stmt(s, ST_SESSIONS, &c, &st);
    if (err) return err;
    sqlite3_bind_int64(st, 1, concert_id);
    struct rows r = {.size = sizeof(**out)};
    err = sq_collect(c, st, "list_sessions", a, &r, read_session);
    if (err == 0 && r.n == 0) { /* none: is there such a concert at all? */
        int64_t one;
        err = query_int(c, ST_CONCERT_EXISTS, 1, &concert_id, &one);
    }
    if (err) return err;
    *out = r.items;
    *n = r.n;
    return 0;
}

static int sq_get_session(struct store *s, int64_t concert_id, int64_t session_id,
                          struct store_session *out) {
    struct conn *c;
    sqlite3_stmt *st;
    int err = use_stmt(s, ST_SESSION, &c, &st);
    if (err) return err;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, concert_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_session(st, NULL, out);
    else
        err = rc == SQLITE_DONE ? ERR_NOT_FOUND : sq_fail(c, "get_session", rc);
    sqlite3_reset(st);
    return err;
}

static void read_seat(sqlite3_stmt *st, struct arena *a, void *out) {
    struct store_seat *x = out;
    x->id = sqlite3_column_int64(st, 0);
    x->number = sqlite3_column_int64(st, 1);
    x->grade = sq_col_str(st, 2, a);
    x->price = sqlite3_column_int64(st, 3);
}

/* The session check rides on the seat query (a join on the session's primary
 * key), so a page is one read transaction; only an empty page needs the
 * second lookup to tell "no seats left" from "no such session". */
static int sq_list_available_seats(struct store *s, struct arena *a, int64_t concert_id,
                                   int64_t session_id, int64_t after, int64_t limit,
                                   struct store_seat **out, size_t *n) {
    if (limit < 0) return ERR_INVALID;
    struct sqlite_store *ss = (struct sqlite_store *)s;
    if (ss->seats) { /* from memory when it can (sqlite_seatmap.c) */
        struct conn *mc = sq_conn(s);
        if (!mc) return ERR_UNAVAILABLE;
        int err = sq_seatmap_page(ss->seats, mc, concert_id, session_id, after, limit, a, out, n);
        if (err == 0 || err == ERR_NOT_FOUND) return err;
    }
    struct conn *c;
    sqlite3_stmt *st;
    int err = use_stmt(s, ST_SEATS, &c, &st);
    if (err) return err;
    int64_t args[4] = {session_id, concert_id, after, limit};
    sq_bind_ints(st, 4, args);
    struct rows r = {.size = sizeof(**out)};
    if (limit > 0 && limit <= 1024) { /* one allocation for a full page */
        r.cap = (size_t)limit;
        r.items = arena_alloc(a, r.cap * r.size);
    }
    err = sq_collect(c, st, "list_available_seats", a, &r, read_seat);
    if (err) return err;
    if (r.n == 0) {
        struct store_session sess;
        err = sq_get_session(s, concert_id, session_id, &sess);
        if (err) return err;
    }
    for (size_t i = 0; i < r.n; i++) ((struct store_seat *)r.items)[i].session_id = session_id;
    *out = r.items;
    *n = r.n;
    return 0;
}

static int sq_list_available_seats_at(struct store *s, struct arena *a, int64_t session_id,
                                      int64_t offset, int64_t limit, struct store_seat **out,
                                      size_t *n) {
    if (limit < 0 || offset < 0) return ERR_INVALID;
    struct conn *c;
    sqlite3_stmt *st;
    int err = use_stmt(s, ST_SEATS_AT, &c, &st);
    if (err) return err;
    int64_t args[3] = {session_id, offset, limit};
    sq_bind_ints(st, 3, args);
    struct rows r = {.size = sizeof(**out)};
    err = sq_collect(c, st, "list_available_seats_at", a, &r, read_seat);
    if (err == 0 && r.n == 0) { /* none: is there such a session at all? */
        int64_t one;
        err = query_int(c, ST_SESSION_EXISTS, 1, &session_id, &one);
    }
    if (err) return err;
    for (size_t i = 0; i < r.n; i++) ((struct store_seat *)r.items)[i].session_id = session_id;
    *out = r.items;
    *n = r.n;
    return 0;
}

static int sq_seat_ids_by_number(struct store *s, int64_t concert_id, int64_t session_id,
                                 const int64_t *numbers, size_t n, int64_t *ids, int64_t *bad) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t args[3] = {session_id, concert_id, numbers[i]};
        int err = query_int(c, ST_SEAT_BY_NUMBER, 3, args, &ids[i]);
        if (err != ERR_NOT_FOUND) {
            if (err) return err;
            continue;
        }
        struct store_session sess; /* no such seat: or no such session? */
        err = sq_get_session(s, concert_id, session_id, &sess);
        if (err == 0) *bad = numbers[i];
        return err ? err : ERR_NOT_FOUND;
    }
    return 0;
}

/* ---- ops: bulk writes --------------------------------------------------- */

/* Inserts the seats of blocks into session sid and sets its seat counters
 * (design note 3). */
static int add_session_seats(struct conn *c, int64_t sid, const struct store_block *b, size_t nb) {
    sqlite3_stmt *st = stmt(c, ST_INS_BLOCK);
    if (!st) return ERR_IO;
    int64_t seats = 0;
    for (size_t i = 0; i < nb; i++) {
        if (b[i].first < 1 || b[i].last < b[i].first || !b[i].grade) return ERR_INVALID;
        int64_t args[3] = {sid, b[i].first, b[i].last};
        sq_bind_ints(st, 3, args);
        sqlite3_bind_text(st, 4, b[i].grade, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 5, b[i].price);
        int err = sq_exec_st(c, st, "insert_seats");
        if (err) return err;
        seats += sqlite3_changes64(c->db);
    }
    int64_t args[2] = {sid, seats};
    return exec_ints(c, ST_SET_SESSION_SEATS, 2, args);
}

/* Inserts one session of concert cid with the seats of blocks. */
static int add_session(struct conn *c, int64_t cid, int64_t starts_at, const struct store_block *b,
                       size_t nb) {
    int64_t args[2] = {cid, starts_at};
    int err = exec_ints(c, ST_INS_SESSION, 2, args);
    if (err) return err;
    return add_session_seats(c, sqlite3_last_insert_rowid(c->db), b, nb);
}

/* Inserts a concert; id 0 lets SQLite choose. *out receives the id. */
static int add_concert(struct conn *c, int64_t id, const char *title, const char *venue,
                       int64_t *out) {
    sqlite3_stmt *st = stmt(c, ST_INS_CONCERT);
    if (!st) return ERR_IO;
    if (id > 0)
        sqlite3_bind_int64(st, 1, id);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_text(st, 2, title, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, venue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, sq_now_ms());
    int err = sq_exec_st(c, st, "insert_concert");
    if (err == 0 && out) *out = sqlite3_last_insert_rowid(c->db);
    return err;
}

static int seed_concerts(struct conn *c, const struct store_seed *o) {
    struct store_block b[3];
    size_t nb = store_seed_blocks(o, b);
    int64_t base = 0;
    int err = query_int(c, ST_MAX_CONCERT, 0, NULL, &base);
    for (int64_t i = 1; err == 0 && i <= o->concerts; i++) {
        int64_t id = base + i;
        char title[32];
        snprintf(title, sizeof(title), "Concert %lld", (long long)id);
        err = add_concert(c, id, title, store_seed_venue(id), NULL);
        for (int64_t k = 0; err == 0 && k < o->sessions_per_concert; k++)
            err = add_session(c, id, SEED_FIRST_START_MS + k * DAY_MS, b, nb);
    }
    return err;
}

/* Users 1..users exist; those below o->balance are charged up to it, with a
 * ledger row each so balance == sum(ledger) holds (invariant 2). */
static int seed_users(struct conn *c, const struct store_seed *o) {
    if (o->users <= 0) return 0;
    int64_t t = sq_now_ms();
    int64_t ua[2] = {o->users, t};
    int err = exec_ints(c, ST_SEED_USERS, 2, ua);
    if (err || o->balance <= 0) return err;
    int64_t la[3] = {o->users, o->balance, t};
    err = exec_ints(c, ST_SEED_LEDGER, 3, la);
    return err ? err : exec_ints(c, ST_SEED_BALANCE, 2, la);
}

/* Shrinks the WAL a large transaction left behind; only logs on failure. */
static void checkpoint(struct conn *c) {
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc != SQLITE_OK) LOG_WARN(MOD, "op=checkpoint rc=%d msg=\"%s\"", rc, sqlite3_errmsg(c->db));
}

static int sq_seed(struct store *s, const struct store_seed *o) {
    if (o->concerts < 0 || o->sessions_per_concert < 0 || o->seats_per_session < 0 ||
        o->price < 0 || o->users < 0 || o->balance < 0)
        return ERR_INVALID;
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int err = sq_tx_begin(c);
    if (err) return err;
    err = seed_concerts(c, o);
    if (err == 0) err = seed_users(c, o);
    if (err == 0) err = sq_seed_tokens(c, o);
    err = sq_tx_end(c, err);
    if (err == 0) checkpoint(c);
    return err;
}

static int sq_import_event(struct store *s, const struct store_event *ev, int64_t *concert_id) {
    if (!ev->title || !ev->venue || (ev->nsessions && !ev->starts_at_ms) ||
        (ev->nblocks && !ev->blocks))
        return ERR_INVALID;
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int err = sq_tx_begin(c);
    if (err) return err;
    int64_t cid = 0;
    err = add_concert(c, 0, ev->title, ev->venue, &cid);
    for (size_t i = 0; err == 0 && i < ev->nsessions; i++)
        err = add_session(c, cid, ev->starts_at_ms[i], ev->blocks, ev->nblocks);
    err = sq_tx_end(c, err);
    if (err == 0 && concert_id) *concert_id = cid;
    return err;
}

/* ---- migrations, open, close -------------------------------------------- */

static int64_t migrations_known(void) {
    int64_t n = 0;
    while (store_sqlite_migrations[n]) n++;
    return n;
}

/* Applies migration v (0-based) and sets user_version = v + 1; the caller
 * holds the write transaction. */
static int apply_migration(struct conn *c, int64_t v) {
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, store_sqlite_migrations[v], NULL, NULL, &msg);
    if (rc == SQLITE_OK) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)(v + 1));
        sqlite3_free(msg);
        rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    }
    if (rc != SQLITE_OK) {
        LOG_ERROR(MOD, "op=migrate version=%lld rc=%d msg=\"%s\"", (long long)(v + 1), rc,
                  msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return ERR_IO;
    }
    return 0;
}

/* One migration per transaction, re-reading user_version under the write
 * lock each time, so concurrent migrators apply each step exactly once. */
static int sq_migrate(struct store *s) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t known = migrations_known();
    for (;;) {
        int64_t v = 0;
        int err = sq_tx_begin(c);
        if (err == 0) err = query_int(c, ST_USER_VERSION, 0, NULL, &v);
        if (err == 0 && v > known) {
            LOG_ERROR(MOD,
                      "op=migrate msg=\"database schema version %lld is newer than this"
                      " concertd knows (%lld); upgrade concertd\"",
                      (long long)v, (long long)known);
            err = ERR_CONFLICT;
        }
        if (err || v == known) return sq_tx_end(c, err);
        err = sq_tx_end(c, apply_migration(c, v));
        if (err) return err;
        LOG_INFO(MOD, "op=migrate version=%lld", (long long)(v + 1));
    }
}

static void sq_set_seat_cache(struct store *s, size_t bytes) {
    struct sqlite_store *ss = (struct sqlite_store *)s;
    assert(!ss->seats); /* once, before serving */
    ss->seats = sq_seatmap_new(bytes);
    if (ss->seats && sq_commit_start(ss)) { /* it watches other processes' writes */
        sq_seatmap_free(ss->seats);
        ss->seats = NULL;
    }
}

static void sq_close(struct store *s) {
    struct sqlite_store *ss = (struct sqlite_store *)s;
    if (!ss) return;
    sq_commit_stop(ss); /* before the key goes: the committer's exit parks its connection */
    pthread_key_delete(ss->key);
    struct conn *c = ss->all;
    while (c) {
        struct conn *next = c->next;
        conn_free(c);
        c = next;
    }
    pthread_mutex_destroy(&ss->mu);
    sq_seatmap_free(ss->seats);
    free(ss->path);
    free(ss);
}

int store_sqlite_open(const char *path, struct store **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (!path || !*path || strcmp(path, ":memory:") == 0) {
        /* every thread would get its own empty in-memory database */
        snprintf(errbuf, errlen, "sqlite needs a file path (got \"%s\")", path ? path : "");
        return ERR_INVALID;
    }
    struct sqlite_store *ss = xcalloc(1, sizeof(*ss));
    ss->base.ops = &sqlite_ops;
    ss->base.kind = "sqlite";
    ss->path = xstrdup(path);
    pthread_mutex_init(&ss->mu, NULL);
    if (pthread_key_create(&ss->key, conn_park) != 0) {
        snprintf(errbuf, errlen, "cannot open database %s: out of thread keys", path);
        pthread_mutex_destroy(&ss->mu);
        free(ss->path);
        free(ss);
        return ERR_IO;
    }
    sq_commit_init(ss);
    struct conn *c = conn_new(ss, errbuf, errlen); /* fails now on a bad path */
    if (!c) {
        sq_close(&ss->base);
        return ERR_IO;
    }
    pthread_setspecific(ss->key, c);
    *out = &ss->base;
    return 0;
}

static const char SQL_OUTBOX_LAG[] =
    "SELECT count(*), coalesce((SELECT created_at FROM outbox WHERE published_at IS NULL"
    " ORDER BY id LIMIT 1), 0) FROM outbox WHERE published_at IS NULL";

static void sq_stats(struct store *s, struct store_stats *out) {
    struct sqlite_store *ss = (struct sqlite_store *)s;
    sq_commit_totals(ss, &out->commit_batches, &out->commit_jobs);
    out->commit_pending = sq_commit_pending(ss);
    struct conn *c = sq_conn(s);
    sqlite3_stmt *st = c ? sq_stmt(c, SQL_OUTBOX_LAG) : NULL;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        out->outbox_unpublished = sqlite3_column_int64(st, 0);
        out->outbox_oldest_ms = sqlite3_column_int64(st, 1);
    }
    if (st) sqlite3_reset(st);
}

static const struct store_ops sqlite_ops = {
    .migrate = sq_migrate,
    .ping = sq_ping,
    .write_version = sq_write_version,
    .run_batched = sq_run_batched,
    .set_seat_cache = sq_set_seat_cache,
    .list_concerts = sq_list_concerts,
    .list_sessions = sq_list_sessions,
    .get_session = sq_get_session,
    .list_available_seats = sq_list_available_seats,
    .list_available_seats_at = sq_list_available_seats_at,
    .seat_ids_by_number = sq_seat_ids_by_number,
    .seed = sq_seed,
    .import_event = sq_import_event,
    .queue_save = sq_queue_save,
    .queue_load = sq_queue_load,
    .outbox_list = sq_outbox_list,
    .outbox_mark = sq_outbox_mark,
    /* booking (sqlite_booking.c) */
    .hold_seats = sqb_hold_seats,
    .get_reservation = sqb_get_reservation,
    .cancel_reservation = sqb_cancel_reservation,
    .expire_holds = sqb_expire_holds,
    .get_balance = sqb_get_balance,
    .charge = sqb_charge,
    .pay = sqb_pay,
    .card_begin = sqb_card_begin,
    .card_settle = sqb_card_settle,
    .card_list_pending = sqb_card_list_pending,
    .idem_get = sqb_idem_get,
    .purge_idempotency = sqb_purge_idempotency,
    .stats = sq_stats,
    .close = sq_close,
};
