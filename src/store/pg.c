/* pg.c -- the PostgreSQL store adapter (distributed mode).
 *
 * Implements the store port (store.h) over libpq with the same semantics as
 * the SQLite adapter: migrations (schema/pg/NNNN_*.sql, embedded at build
 * time as store_pg_migrations[]), connections, statements and errors, the
 * read paths of the booking flow, and the bulk writes of `concertd seed`
 * and `concertd import`. Not here: the group committer (pg_commit.c), the
 * booking ops (pg_booking.c), tokens and outbox (pg_queue.c), business
 * rules (service/).
 *
 * Design notes
 *
 *   1. Per-thread connections, as in sqlite.c: each thread gets its own
 *      PGconn on first use, found again through a pthread key, parked on
 *      the idle list when the thread exits, closed by close(). Each
 *      connection prepares a statement once, on first use, as a named
 *      server-side prepared statement (slot number = name).
 *   2. Reconnect. A connection that libpq reports as bad is replaced by a
 *      new one (its prepared statements are forgotten and prepared again)
 *      the next time its thread asks for it. A statement sent outside a
 *      transaction that fails because the connection turns out to be dead
 *      (PostgreSQL restarted since its last use) is sent once more on a new
 *      connection: it cannot have taken effect. Inside a transaction nothing
 *      is retried here; the committer fails the batch with ERR_UNAVAILABLE
 *      (503), so a 2xx is never sent for a change that may be lost.
 *   3. Errors: a constraint violation (SQLSTATE class 23) is bad input
 *      (ERR_INVALID); a dead server, a shutdown or a deadlock victim is
 *      ERR_UNAVAILABLE; anything else ERR_IO. The SQLSTATE of the last
 *      failure stays on the connection so the committer can tell a
 *      deadlock (run the job again) from the rest. So is a unique violation
 *      of waiting_tokens' seq or live-user index: two committers saving two
 *      states of one new token (or a user's old and new token) at once; ON
 *      CONFLICT (token) only arbitrates the token's own key, so the later
 *      insert fails instead of merging, and merges when run again.
 *   4. Counter maintenance and the seat page as in sqlite.c notes 3 and 4;
 *      the page is one range scan of the partial covering index
 *      seats_available (session_id, seat_number) INCLUDE (grade, price, id)
 *      WHERE status = 0.
 *   5. Bulk inserts generate seats inside PostgreSQL (generate_series, one
 *      INSERT ... SELECT per block of seats), in one transaction with one
 *      durable COMMIT. Ids come from identity columns, so later inserts
 *      never collide with seeded rows.
 *   6. Owed savepoints. Between two jobs of a batch the committer owes
 *      RELEASE job; SAVEPOINT job (pg_commit.c note 6). It is not sent on
 *      its own: the next statement carries it, in the same round trip: a
 *      simple query as a prefix of its text, a prepared one in pipeline
 *      mode (libpq >= 14) as two statements queued before it and one sync.
 *      If the prefix fails, the job's savepoint is not known any more
 *      (lost_savepoint): the committer fails the whole batch instead of
 *      rolling back to a savepoint that may be the previous job's. */
#include "store/store.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "store/pg_int.h"

#define MOD "store"
#define DAY_MS (86400 * (int64_t)1000)
#define SEED_FIRST_START_MS ((int64_t)1798797600 * 1000) /* 2027-01-01T10:00:00Z */
#define MIGRATE_LOCK "7403162"                           /* pg_advisory_xact_lock key */

/* Generated from schema/pg/NNNN_*.sql by cmake/embed_sql.cmake; NULL-terminated. */
extern const char *const store_pg_migrations[];

static const char SQL_PING[] = "SELECT 1";
static const char SQL_CONCERTS[] = "SELECT id, title, venue FROM concerts ORDER BY id";
static const char SQL_CONCERT_EXISTS[] = "SELECT 1 FROM concerts WHERE id = $1";
static const char SQL_SESSIONS[] =
    "SELECT id, concert_id, starts_at, total_seats, available_seats FROM sessions"
    " WHERE concert_id = $1 ORDER BY starts_at, id";
static const char SQL_SESSION[] =
    "SELECT id, concert_id, starts_at, total_seats, available_seats FROM sessions"
    " WHERE id = $1 AND concert_id = $2";
static const char SQL_SEATS[] =
    "SELECT st.id, st.seat_number, st.grade, st.price FROM sessions ss"
    " JOIN seats st ON st.session_id = ss.id AND st.status = 0 AND st.seat_number > $3"
    " WHERE ss.id = $1 AND ss.concert_id = $2 ORDER BY st.seat_number LIMIT $4";
static const char SQL_SEATS_AT[] =
    "SELECT id, seat_number, grade, price FROM seats WHERE session_id = $1 AND status = 0"
    " ORDER BY seat_number LIMIT $3 OFFSET $2";
static const char SQL_SESSION_EXISTS[] = "SELECT 1 FROM sessions WHERE id = $1";
static const char SQL_SEAT_BY_NUMBER[] =
    "SELECT st.id FROM sessions ss JOIN seats st ON st.session_id = ss.id"
    " AND st.seat_number = $3 WHERE ss.id = $1 AND ss.concert_id = $2";
static const char SQL_NEXT_CONCERT[] = "SELECT nextval(pg_get_serial_sequence('concerts', 'id'))";
static const char SQL_INS_CONCERT[] =
    "INSERT INTO concerts (id, title, venue, created_at) VALUES ($1, $2, $3, $4)";
static const char SQL_INS_CONCERT_AUTO[] =
    "INSERT INTO concerts (title, venue, created_at) VALUES ($1, $2, $3) RETURNING id";
static const char SQL_INS_SESSION[] =
    "INSERT INTO sessions (concert_id, starts_at) VALUES ($1, $2) RETURNING id";
static const char SQL_INS_BLOCK[] =
    "INSERT INTO seats (session_id, seat_number, grade, price)"
    " SELECT $1, g, $4, $5 FROM generate_series($2::bigint, $3::bigint) AS g";
static const char SQL_SET_SESSION_SEATS[] =
    "UPDATE sessions SET total_seats = $2, available_seats = $2 WHERE id = $1";
static const char SQL_SEED_USERS[] =
    "INSERT INTO users (id, balance, created_at) SELECT g, 0, $2"
    " FROM generate_series(1, $1::bigint) AS g ON CONFLICT (id) DO NOTHING";
static const char SQL_SEED_LEDGER[] =
    "INSERT INTO balance_ledger (user_id, kind, amount, balance_after, ref, created_at)"
    " SELECT id, 'CHARGE', $2::bigint - balance, $2, NULL, $3 FROM users"
    " WHERE id BETWEEN 1 AND $1 AND balance < $2";
static const char SQL_SEED_BALANCE[] =
    "UPDATE users SET balance = $2 WHERE id BETWEEN 1 AND $1 AND balance < $2";
static const char SQL_OUTBOX_LAG[] =
    "SELECT count(*), coalesce((SELECT created_at FROM outbox WHERE published_at IS NULL"
    " ORDER BY id LIMIT 1), 0) FROM outbox WHERE published_at IS NULL";

static const struct store_ops pg_ops;

int64_t pg_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- parameters and results ---------------------------------------------- */

void pg_arg_int(struct pg_args *a, int64_t v) {
    if (a->n >= PG_MAX_PARAMS) return;
    snprintf(a->buf[a->n], sizeof(a->buf[a->n]), "%" PRId64, v);
    a->v[a->n] = a->buf[a->n];
    a->n++;
}

void pg_arg_opt(struct pg_args *a, int64_t v) {
    if (v > 0)
        pg_arg_int(a, v);
    else if (a->n < PG_MAX_PARAMS)
        a->v[a->n++] = NULL;
}

void pg_arg_str(struct pg_args *a, const char *s) {
    if (a->n < PG_MAX_PARAMS) a->v[a->n++] = s;
}

void pg_args_ints(struct pg_args *a, int n, const int64_t *v) {
    a->n = 0;
    for (int i = 0; i < n; i++) pg_arg_int(a, v[i]);
}

int64_t pg_int(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *pg_str(const PGresult *r, int row, int col, struct arena *a) {
    if (PQgetisnull(r, row, col)) return "";
    return arena_strndup(a, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

void pg_collect(const PGresult *r, struct arena *a, size_t size, pg_row_reader read, void **out,
                size_t *n) {
    int rows = PQntuples(r);
    char *items = rows > 0 ? arena_calloc(a, (size_t)rows, size) : NULL;
    for (int i = 0; i < rows; i++) read(r, i, a, items + (size_t)i * size);
    *out = items;
    *n = (size_t)rows;
}

/* ---- connections ------------------------------------------------------- */

/* Server notices ("relation ... already exists, skipping") go to the debug
 * log instead of libpq's default, stderr. */
static void on_notice(void *arg, const char *msg) {
    (void)arg;
    LOG_DEBUG(MOD, "op=notice msg=\"%.*s\"", (int)strcspn(msg, "\n"), msg);
}

/* A new PGconn to url; bad (logged) when the server cannot be reached. Our
 * defaults come first so settings in the URL override them. */
static PGconn *connect_url(const char *url) {
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"5", "concertd", url, NULL};
    PGconn *db = PQconnectdbParams(keys, vals, 1);
    if (db && PQstatus(db) == CONNECTION_OK) {
        PQsetErrorVerbosity(db, PQERRORS_TERSE);
        PQsetNoticeProcessor(db, on_notice, NULL);
        return db;
    }
    LOG_WARN(MOD, "op=connect msg=\"%s\"", db ? PQerrorMessage(db) : "out of memory");
    return db;
}

static int reconnect(struct pgconn *c) {
    if (c->db) PQfinish(c->db);
    memset(c->cache, 0, sizeof(c->cache));
    c->owe_savepoint = 0;
    c->db = connect_url(c->owner->url);
    return c->db && PQstatus(c->db) == CONNECTION_OK ? 0 : ERR_UNAVAILABLE;
}

/* A registered connection; its PGconn may be bad (the next pg_conn retries). */
static struct pgconn *conn_new(struct pg_store *ps) {
    struct pgconn *c = xcalloc(1, sizeof(*c));
    c->owner = ps;
    c->db = connect_url(ps->url);
    pthread_mutex_lock(&ps->mu);
    c->next = ps->all;
    ps->all = c;
    pthread_mutex_unlock(&ps->mu);
    return c;
}

/* pthread key destructor: the owning thread exited; park its connection. */
static void conn_park(void *p) {
    struct pgconn *c = p;
    struct pg_store *ps = c->owner;
    if (c->db && PQtransactionStatus(c->db) != PQTRANS_IDLE) pg_simple(c, "ROLLBACK", "park");
    pthread_mutex_lock(&ps->mu);
    c->next_idle = ps->idle;
    ps->idle = c;
    pthread_mutex_unlock(&ps->mu);
}

struct pgconn *pg_conn(struct store *s) {
    struct pg_store *ps = (struct pg_store *)s;
    struct pgconn *c = pthread_getspecific(ps->key);
    if (!c) {
        pthread_mutex_lock(&ps->mu);
        c = ps->idle;
        if (c) ps->idle = c->next_idle;
        pthread_mutex_unlock(&ps->mu);
        if (!c) c = conn_new(ps);
        c->next_idle = NULL;
        pthread_setspecific(ps->key, c);
    }
    if (!c->db || PQstatus(c->db) != CONNECTION_OK) {
        if (reconnect(c) != 0) return NULL;
    }
    return c;
}

/* ---- statements and errors ---------------------------------------------- */

/* Design note 3. */
static int fail(struct pgconn *c, const PGresult *r, const char *op) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *constraint = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
    c->retry = strcmp(c->sqlstate, "40P01") == 0 || strcmp(c->sqlstate, "40001") == 0 ||
               (strcmp(c->sqlstate, "23505") == 0 && constraint &&
                strncmp(constraint, "waiting_tokens_", 15) == 0);
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (!msg || !*msg) msg = PQerrorMessage(c->db);
    int err;
    if (PQstatus(c->db) != CONNECTION_OK || strncmp(c->sqlstate, "08", 2) == 0 ||
        strncmp(c->sqlstate, "57P", 3) == 0 || pg_retryable(c))
        err = ERR_UNAVAILABLE;
    else if (strncmp(c->sqlstate, "23", 2) == 0)
        err = ERR_INVALID;
    else
        err = ERR_IO;
    size_t len = strcspn(msg, "\n");
    LOG_AT(err == ERR_IO ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, MOD, "op=%s sqlstate=%s msg=\"%.*s\"",
           op, c->sqlstate[0] ? c->sqlstate : "-", (int)len, msg);
    return err;
}

int pg_retryable(const struct pgconn *c) {
    return c->retry;
}

static int ok_status(ExecStatusType st) {
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* The statement name of sql on c, preparing it first if needed; -1 on failure. */
static int prepared_slot(struct pgconn *c, const char *sql, const char *op, int *err) {
    uintptr_t h = (uintptr_t)sql;
    h ^= h >> 17;
    h *= 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < PG_CACHED_STATEMENTS; i++) {
        size_t at = (size_t)(h + i) & (PG_CACHED_STATEMENTS - 1);
        if (c->cache[at] == sql) return (int)at;
        if (c->cache[at]) continue;
        char name[16];
        snprintf(name, sizeof(name), "s%zu", at);
        PGresult *r = PQprepare(c->db, name, sql, 0, NULL);
        if (!r || !ok_status(PQresultStatus(r))) {
            *err = fail(c, r, op);
            PQclear(r);
            return -1;
        }
        PQclear(r);
        c->cache[at] = sql;
        return (int)at;
    }
    LOG_ERROR(MOD, "op=prepare msg=\"more than %d statements\"", PG_CACHED_STATEMENTS);
    *err = ERR_IO;
    return -1;
}

#define PIPE_MAX 4 /* statements of one pg_exec_many() */

/* Sends the prepared statements names[0..n) in one pipeline and one round
 * trip, preceded by the owed savepoint statements (design note 6), if any,
 * and, when between is set, with RELEASE job; SAVEPOINT job between each
 * two (pg_exec_ahead). out[i] gets statement i's result, or NULL when it
 * did not run (an earlier statement failed). 0, or the error of a
 * savepoint statement or a broken connection (lost_savepoint set; the outs
 * are cleared). Results come in order, each but the sync's followed by a
 * NULL. */
static int pipeline(struct pgconn *c, size_t n, char names[][16], const struct pg_args *const *a,
                    int between, PGresult **out, const char *op) {
    static const char *const owed[] = {"RELEASE job", "SAVEPOINT job"};
    PGconn *db = c->db;
    int first_owed = c->owe_savepoint;
    c->owe_savepoint = 0;
    /* item k: statement stmt[k], or a savepoint statement when -1 */
    int *stmt = xmalloc((3 * n + 2) * sizeof(*stmt));
    size_t items = 0;
    int ok = PQenterPipelineMode(db), err = 0;
    for (size_t i = 0; ok && i < n; i++) {
        out[i] = NULL;
        int ctl = i == 0 ? first_owed : between;
        for (size_t k = 0; ok && ctl && k < 2; k++) {
            ok = PQsendQueryParams(db, owed[k], 0, NULL, NULL, NULL, NULL, 0);
            stmt[items++] = -1;
        }
        ok = ok && PQsendQueryPrepared(db, names[i], a[i] ? a[i]->n : 0, a[i] ? a[i]->v : NULL,
                                       NULL, NULL, 0);
        stmt[items++] = (int)i;
    }
    ok = ok && PQpipelineSync(db);
    int synced = 0;
    for (size_t k = 0, nulls = 0; ok && !synced && nulls < 8;) {
        PGresult *r = PQgetResult(db);
        if (!r) {
            if (PQstatus(db) != CONNECTION_OK) break;
            nulls++;
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        synced = st == PGRES_PIPELINE_SYNC;
        int is = !synced && k < items ? stmt[k] : -2;
        if (is == -1 && st != PGRES_COMMAND_OK && st != PGRES_PIPELINE_ABORTED && !err) {
            c->lost_savepoint = 1;
            err = fail(c, r, op);
        }
        if (is >= 0 && st != PGRES_PIPELINE_ABORTED)
            out[is] = r;
        else
            PQclear(r);
        if (!synced) k++;
    }
    free(stmt);
    if (!synced || !PQexitPipelineMode(db)) { /* broken: pg_conn() connects anew */
        c->lost_savepoint = 1;
        if (!err) err = fail(c, NULL, op);
        PQfinish(c->db);
        c->db = NULL;
    }
    if (err)
        for (size_t i = 0; i < n; i++) {
            PQclear(out[i]);
            out[i] = NULL;
        }
    return err;
}

/* The names of the prepared statements sql[0..n), preparing them first if
 * needed: 0 or the error. */
static int prepared_names(struct pgconn *c, size_t n, const char *const *sql, char names[][16],
                          const char *op) {
    int err = 0;
    for (size_t i = 0; i < n; i++) {
        int slot = prepared_slot(c, sql[i], op, &err);
        if (slot < 0) return err;
        snprintf(names[i], sizeof(names[i]), "s%d", slot);
    }
    return 0;
}

int pg_exec_ahead(struct pgconn *c, size_t n, const char *const *sql,
                  const struct pg_args *const *a, PGresult **res, const char *op) {
    for (size_t i = 0; i < n; i++) res[i] = NULL;
    char(*names)[16] = xmalloc(n * sizeof(*names));
    int err = prepared_names(c, n, sql, names, op);
    if (err == 0) err = pipeline(c, n, names, a, 1, res, op);
    free(names);
    return err;
}

/* The statement's result: 0, or the error (logged; *r cleared). */
static int result_ok(struct pgconn *c, PGresult **r, const char *op) {
    if (*r && ok_status(PQresultStatus(*r))) {
        c->sqlstate[0] = '\0';
        c->retry = 0;
        return 0;
    }
    int err = fail(c, *r, op);
    PQclear(*r);
    *r = NULL;
    return err;
}

int pg_exec_many(struct pgconn *c, size_t n, const char *const *sql, const struct pg_args *const *a,
                 PGresult **res, const char *op) {
    assert(n > 0 && n <= PIPE_MAX);
    char names[PIPE_MAX][16];
    for (size_t i = 0; i < n; i++) res[i] = NULL;
    int err = prepared_names(c, n, sql, names, op);
    if (err) return err;
    err = pipeline(c, n, names, a, 0, res, op);
    for (size_t i = 0; err == 0 && i < n; i++) err = result_ok(c, &res[i], op);
    if (err)
        for (size_t i = 0; i < n; i++) {
            PQclear(res[i]);
            res[i] = NULL;
        }
    return err;
}

static int exec_once(struct pgconn *c, const char *sql, const struct pg_args *a, PGresult **res,
                     const char *op) {
    int err = 0;
    int slot = prepared_slot(c, sql, op, &err);
    if (slot < 0) return err;
    char name[1][16];
    snprintf(name[0], sizeof(name[0]), "s%d", slot);
    PGresult *r = NULL;
    if (c->owe_savepoint) {
        err = pipeline(c, 1, name, &a, 0, &r, op);
        if (err) return err;
    } else {
        r = PQexecPrepared(c->db, name[0], a ? a->n : 0, a ? a->v : NULL, NULL, NULL, 0);
    }
    err = result_ok(c, &r, op);
    if (err) return err;
    if (res)
        *res = r;
    else
        PQclear(r);
    return 0;
}

/* Design note 2: once more on a new connection when the old one was dead
 * and the statement ran outside a transaction. */
static int dead_before(struct pgconn *c, int idle) {
    return idle && PQstatus(c->db) != CONNECTION_OK && reconnect(c) == 0;
}

int pg_exec(struct pgconn *c, const char *sql, const struct pg_args *a, PGresult **res,
            const char *op) {
    if (res) *res = NULL;
    int idle = PQtransactionStatus(c->db) == PQTRANS_IDLE;
    int err = exec_once(c, sql, a, res, op);
    if (err && dead_before(c, idle)) err = exec_once(c, sql, a, res, op);
    return err;
}

static int simple_once(struct pgconn *c, const char *sql, const char *op) {
    PGresult *r = PQexec(c->db, sql);
    int err = 0;
    if (!r || !ok_status(PQresultStatus(r))) {
        err = fail(c, r, op);
    } else {
        c->sqlstate[0] = '\0';
        c->retry = 0;
    }
    PQclear(r);
    return err;
}

int pg_simple(struct pgconn *c, const char *sql, const char *op) {
    if (c->owe_savepoint) { /* design note 6: as a prefix */
        c->owe_savepoint = 0;
        size_t len = sizeof(PG_OWED_SAVEPOINT "; ") + strlen(sql);
        char *both = xmalloc(len);
        snprintf(both, len, "%s; %s", PG_OWED_SAVEPOINT, sql);
        int err = simple_once(c, both, op);
        free(both);
        return err;
    }
    int idle = PQtransactionStatus(c->db) == PQTRANS_IDLE;
    int err = simple_once(c, sql, op);
    if (err && dead_before(c, idle)) err = simple_once(c, sql, op);
    return err;
}

int pg_exec_changes(struct pgconn *c, const char *sql, const struct pg_args *a, int64_t *changes,
                    const char *op) {
    PGresult *r;
    int err = pg_exec(c, sql, a, &r, op);
    if (err) return err;
    if (changes) *changes = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

int pg_query_int(struct pgconn *c, const char *sql, const struct pg_args *a, int64_t *out,
                 const char *op) {
    PGresult *r;
    int err = pg_exec(c, sql, a, &r, op);
    if (err) return err;
    if (PQntuples(r) > 0)
        *out = pg_int(r, 0, 0);
    else
        err = ERR_NOT_FOUND;
    PQclear(r);
    return err;
}

int pg_tx_begin(struct pgconn *c) {
    return pg_simple(c, "BEGIN", "begin");
}

int pg_tx_end(struct pgconn *c, int err) {
    if (err == 0 && PQtransactionStatus(c->db) != PQTRANS_INTRANS) err = ERR_IO;
    if (err == 0) {
        err = pg_simple(c, "COMMIT", "commit");
        if (err == 0) return 0;
    }
    if (PQtransactionStatus(c->db) != PQTRANS_IDLE) pg_simple(c, "ROLLBACK", "rollback");
    return err;
}

/* ---- ops: reads ---------------------------------------------------------- */

/* The calling thread's connection running sql with args: 0 and *res, or the error. */
static int query(struct store *s, const char *sql, const struct pg_args *a, PGresult **res,
                 const char *op) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    return pg_exec(c, sql, a, res, op);
}

/* 0 when sql with args finds a row, ERR_NOT_FOUND when it does not. */
static int exists(struct store *s, const char *sql, const struct pg_args *a, const char *op) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t one;
    return pg_query_int(c, sql, a, &one, op);
}

static int pg_ping(struct store *s) {
    PGresult *r;
    int err = query(s, SQL_PING, NULL, &r, "ping");
    if (err) return ERR_UNAVAILABLE;
    PQclear(r);
    return 0;
}

static void read_concert(const PGresult *r, int i, struct arena *a, void *out) {
    struct store_concert *x = out;
    x->id = pg_int(r, i, 0);
    x->title = pg_str(r, i, 1, a);
    x->venue = pg_str(r, i, 2, a);
}

static void read_session(const PGresult *r, int i, struct arena *a, void *out) {
    (void)a;
    struct store_session *x = out;
    x->id = pg_int(r, i, 0);
    x->concert_id = pg_int(r, i, 1);
    x->starts_at_ms = pg_int(r, i, 2);
    x->total_seats = pg_int(r, i, 3);
    x->available_seats = pg_int(r, i, 4);
}

static void read_seat(const PGresult *r, int i, struct arena *a, void *out) {
    struct store_seat *x = out;
    x->id = pg_int(r, i, 0);
    x->number = pg_int(r, i, 1);
    x->grade = pg_str(r, i, 2, a);
    x->price = pg_int(r, i, 3);
}

/* Runs sql and reads its rows into *out and *n. */
static int list(struct store *s, struct arena *a, const char *sql, const struct pg_args *args,
                size_t size, pg_row_reader read, void **out, size_t *n, const char *op) {
    PGresult *r;
    int err = query(s, sql, args, &r, op);
    if (err) return err;
    pg_collect(r, a, size, read, out, n);
    PQclear(r);
    return 0;
}

static int pg_list_concerts(struct store *s, struct arena *a, struct store_concert **out,
                            size_t *n) {
    return list(s, a, SQL_CONCERTS, NULL, sizeof(**out), read_concert, (void **)out, n,
                "list_concerts");
}

static int pg_list_sessions(struct store *s, struct arena *a, int64_t concert_id,
                            struct store_session **out, size_t *n) {
    struct pg_args args = {0};
    pg_arg_int(&args, concert_id);
    int err = list(s, a, SQL_SESSIONS, &args, sizeof(**out), read_session, (void **)out, n,
                   "list_sessions");
    if (err == 0 && *n == 0) err = exists(s, SQL_CONCERT_EXISTS, &args, "concert_exists");
    return err;
}

static int pg_get_session(struct store *s, int64_t concert_id, int64_t session_id,
                          struct store_session *out) {
    int64_t v[2] = {session_id, concert_id};
    struct pg_args args;
    pg_args_ints(&args, 2, v);
    PGresult *r;
    int err = query(s, SQL_SESSION, &args, &r, "get_session");
    if (err) return err;
    if (PQntuples(r) > 0)
        read_session(r, 0, NULL, out);
    else
        err = ERR_NOT_FOUND;
    PQclear(r);
    return err;
}

/* Sets session_id on every seat of a page. */
static void seats_of_session(struct store_seat *seats, size_t n, int64_t session_id) {
    for (size_t i = 0; i < n; i++) seats[i].session_id = session_id;
}

static int pg_list_available_seats(struct store *s, struct arena *a, int64_t concert_id,
                                   int64_t session_id, int64_t after, int64_t limit,
                                   struct store_seat **out, size_t *n) {
    if (limit < 0) return ERR_INVALID;
    int64_t v[4] = {session_id, concert_id, after, limit};
    struct pg_args args;
    pg_args_ints(&args, 4, v);
    int err = list(s, a, SQL_SEATS, &args, sizeof(**out), read_seat, (void **)out, n,
                   "list_available_seats");
    if (err == 0 && *n == 0) { /* none: is there such a session of the concert? */
        struct store_session sess;
        err = pg_get_session(s, concert_id, session_id, &sess);
    }
    if (err == 0) seats_of_session(*out, *n, session_id);
    return err;
}

static int pg_list_available_seats_at(struct store *s, struct arena *a, int64_t session_id,
                                      int64_t offset, int64_t limit, struct store_seat **out,
                                      size_t *n) {
    if (limit < 0 || offset < 0) return ERR_INVALID;
    int64_t v[3] = {session_id, offset, limit};
    struct pg_args args;
    pg_args_ints(&args, 3, v);
    int err = list(s, a, SQL_SEATS_AT, &args, sizeof(**out), read_seat, (void **)out, n,
                   "list_available_seats_at");
    if (err == 0 && *n == 0) {
        pg_args_ints(&args, 1, &session_id);
        err = exists(s, SQL_SESSION_EXISTS, &args, "session_exists");
    }
    if (err == 0) seats_of_session(*out, *n, session_id);
    return err;
}

static int pg_seat_ids_by_number(struct store *s, int64_t concert_id, int64_t session_id,
                                 const int64_t *numbers, size_t n, int64_t *ids, int64_t *bad) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t v[3] = {session_id, concert_id, numbers[i]};
        struct pg_args args;
        pg_args_ints(&args, 3, v);
        int err = pg_query_int(c, SQL_SEAT_BY_NUMBER, &args, &ids[i], "seat_by_number");
        if (err != ERR_NOT_FOUND) {
            if (err) return err;
            continue;
        }
        struct store_session sess; /* no such seat: or no such session? */
        err = pg_get_session(s, concert_id, session_id, &sess);
        if (err == 0) *bad = numbers[i];
        return err ? err : ERR_NOT_FOUND;
    }
    return 0;
}

/* ---- ops: bulk writes ------------------------------------------------------ */

/* Inserts the seats of blocks into session sid and sets its seat counters. */
static int add_session_seats(struct pgconn *c, int64_t sid, const struct store_block *b,
                             size_t nb) {
    int64_t seats = 0;
    for (size_t i = 0; i < nb; i++) {
        if (b[i].first < 1 || b[i].last < b[i].first || !b[i].grade) return ERR_INVALID;
        int64_t v[3] = {sid, b[i].first, b[i].last}, changed = 0;
        struct pg_args args;
        pg_args_ints(&args, 3, v);
        pg_arg_str(&args, b[i].grade);
        pg_arg_int(&args, b[i].price);
        int err = pg_exec_changes(c, SQL_INS_BLOCK, &args, &changed, "insert_seats");
        if (err) return err;
        seats += changed;
    }
    int64_t v[2] = {sid, seats};
    struct pg_args args;
    pg_args_ints(&args, 2, v);
    return pg_exec(c, SQL_SET_SESSION_SEATS, &args, NULL, "session_seats");
}

static int add_session(struct pgconn *c, int64_t cid, int64_t starts_at,
                       const struct store_block *b, size_t nb) {
    int64_t v[2] = {cid, starts_at}, sid = 0;
    struct pg_args args;
    pg_args_ints(&args, 2, v);
    int err = pg_query_int(c, SQL_INS_SESSION, &args, &sid, "insert_session");
    return err ? err : add_session_seats(c, sid, b, nb);
}

/* Inserts a concert; id 0 lets the identity choose. *out receives the id. */
static int add_concert(struct pgconn *c, int64_t id, const char *title, const char *venue,
                       int64_t *out) {
    *out = id;
    struct pg_args args = {0};
    if (id > 0) pg_arg_int(&args, id);
    pg_arg_str(&args, title);
    pg_arg_str(&args, venue);
    pg_arg_int(&args, pg_now_ms());
    if (id > 0) return pg_exec(c, SQL_INS_CONCERT, &args, NULL, "insert_concert");
    return pg_query_int(c, SQL_INS_CONCERT_AUTO, &args, out, "insert_concert");
}

static int seed_concerts(struct pgconn *c, const struct store_seed *o) {
    struct store_block b[3];
    size_t nb = store_seed_blocks(o, b);
    int err = 0;
    for (int64_t i = 1; err == 0 && i <= o->concerts; i++) {
        int64_t id = 0;
        err = pg_query_int(c, SQL_NEXT_CONCERT, NULL, &id, "next_concert");
        if (err) break;
        char title[32];
        snprintf(title, sizeof(title), "Concert %" PRId64, id);
        err = add_concert(c, id, title, store_seed_venue(id), &id);
        for (int64_t k = 0; err == 0 && k < o->sessions_per_concert; k++)
            err = add_session(c, id, SEED_FIRST_START_MS + k * DAY_MS, b, nb);
    }
    return err;
}

/* Users 1..users exist; those below o->balance are charged up to it, with a
 * ledger row each (invariant 2). */
static int seed_users(struct pgconn *c, const struct store_seed *o) {
    if (o->users <= 0) return 0;
    int64_t t = pg_now_ms();
    int64_t ua[2] = {o->users, t};
    struct pg_args args;
    pg_args_ints(&args, 2, ua);
    int err = pg_exec(c, SQL_SEED_USERS, &args, NULL, "seed_users");
    if (err || o->balance <= 0) return err;
    int64_t la[3] = {o->users, o->balance, t};
    pg_args_ints(&args, 3, la);
    err = pg_exec(c, SQL_SEED_LEDGER, &args, NULL, "seed_ledger");
    pg_args_ints(&args, 2, la);
    return err ? err : pg_exec(c, SQL_SEED_BALANCE, &args, NULL, "seed_balance");
}

static int pg_seed(struct store *s, const struct store_seed *o) {
    if (o->concerts < 0 || o->sessions_per_concert < 0 || o->seats_per_session < 0 ||
        o->price < 0 || o->users < 0 || o->balance < 0)
        return ERR_INVALID;
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int err = pg_tx_begin(c);
    if (err) return err;
    err = seed_concerts(c, o);
    if (err == 0) err = seed_users(c, o);
    if (err == 0) err = pg_seed_tokens(c, o);
    return pg_tx_end(c, err);
}

static int pg_import_event(struct store *s, const struct store_event *ev, int64_t *concert_id) {
    if (!ev->title || !ev->venue || (ev->nsessions && !ev->starts_at_ms) ||
        (ev->nblocks && !ev->blocks))
        return ERR_INVALID;
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int err = pg_tx_begin(c);
    if (err) return err;
    int64_t cid = 0;
    err = add_concert(c, 0, ev->title, ev->venue, &cid);
    for (size_t i = 0; err == 0 && i < ev->nsessions; i++)
        err = add_session(c, cid, ev->starts_at_ms[i], ev->blocks, ev->nblocks);
    err = pg_tx_end(c, err);
    if (err == 0 && concert_id) *concert_id = cid;
    return err;
}

/* ---- migrations, open, close ------------------------------------------------ */

static const char SQL_VERSION_TABLE[] =
    "CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL)";
static const char SQL_VERSION[] = "SELECT coalesce(max(version), 0) FROM schema_version";
static const char SQL_SET_VERSION[] = "INSERT INTO schema_version (version) VALUES ($1)";

static int64_t migrations_known(void) {
    int64_t n = 0;
    while (store_pg_migrations[n]) n++;
    return n;
}

/* The applied version, read in the caller's transaction under the migration
 * lock, so concurrent migrators (instances starting together) take turns. */
static int locked_version(struct pgconn *c, int64_t *v) {
    int err = pg_simple(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", "migrate_lock");
    if (err == 0) err = pg_simple(c, SQL_VERSION_TABLE, "schema_version");
    return err ? err : pg_query_int(c, SQL_VERSION, NULL, v, "schema_version");
}

/* One migration per transaction (DDL is transactional in PostgreSQL). */
static int pg_migrate(struct store *s) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t known = migrations_known();
    for (;;) {
        int64_t v = 0;
        int err = pg_tx_begin(c);
        if (err) return err;
        err = locked_version(c, &v);
        if (err == 0 && v > known) {
            LOG_ERROR(MOD,
                      "op=migrate msg=\"database schema version %" PRId64
                      " is newer than this concertd knows (%" PRId64 "); upgrade concertd\"",
                      v, known);
            err = ERR_CONFLICT;
        }
        if (err || v == known) return pg_tx_end(c, err);
        err = pg_simple(c, store_pg_migrations[v], "migrate");
        struct pg_args args = {0};
        pg_arg_int(&args, v + 1);
        if (err == 0) err = pg_exec(c, SQL_SET_VERSION, &args, NULL, "migrate");
        err = pg_tx_end(c, err);
        if (err) return err;
        LOG_INFO(MOD, "op=migrate version=%" PRId64, v + 1);
    }
}

static void pg_close(struct store *s) {
    struct pg_store *ps = (struct pg_store *)s;
    if (!ps) return;
    pg_commit_stop(ps); /* before the key goes: committers' exits park their connections */
    pthread_key_delete(ps->key);
    struct pgconn *c = ps->all;
    while (c) {
        struct pgconn *next = c->next;
        if (c->db) PQfinish(c->db);
        free(c->job_avail.v);
        free(c->batch_avail.v);
        free(c);
        c = next;
    }
    pthread_mutex_destroy(&ps->mu);
    free(ps->url);
    free(ps);
}

int store_pg_open(const char *url, struct store **out, char *errbuf, size_t errlen) {
    *out = NULL;
    struct pg_store *ps = xcalloc(1, sizeof(*ps));
    ps->base.ops = &pg_ops;
    ps->base.kind = "postgres";
    ps->url = xstrdup(url);
    pthread_mutex_init(&ps->mu, NULL);
    if (pthread_key_create(&ps->key, conn_park) != 0) {
        snprintf(errbuf, errlen, "out of thread keys");
        pthread_mutex_destroy(&ps->mu);
        free(ps->url);
        free(ps);
        return ERR_IO;
    }
    pg_commit_init(ps);
    struct pgconn *c = conn_new(ps); /* fails now on a bad URL or a server that is down */
    pthread_setspecific(ps->key, c);
    if (!c->db || PQstatus(c->db) != CONNECTION_OK) {
        const char *msg = c->db ? PQerrorMessage(c->db) : "out of memory";
        snprintf(errbuf, errlen, "cannot connect to PostgreSQL: %.*s", (int)strcspn(msg, "\n"),
                 msg);
        pg_close(&ps->base);
        return ERR_UNAVAILABLE;
    }
    *out = &ps->base;
    return 0;
}

static void pg_stats(struct store *s, struct store_stats *out) {
    struct pg_store *ps = (struct pg_store *)s;
    pg_commit_totals(ps, &out->commit_batches, &out->commit_jobs);
    out->commit_pending = pg_commit_pending(ps);
    PGresult *r;
    if (query(s, SQL_OUTBOX_LAG, NULL, &r, "outbox_lag") != 0) return;
    if (PQntuples(r) > 0) {
        out->outbox_unpublished = pg_int(r, 0, 0);
        out->outbox_oldest_ms = pg_int(r, 0, 1);
    }
    PQclear(r);
}

static const struct store_ops pg_ops = {
    .migrate = pg_migrate,
    .ping = pg_ping,
    .list_concerts = pg_list_concerts,
    .list_sessions = pg_list_sessions,
    .get_session = pg_get_session,
    .list_available_seats = pg_list_available_seats,
    .list_available_seats_at = pg_list_available_seats_at,
    .seat_ids_by_number = pg_seat_ids_by_number,
    .seed = pg_seed,
    .import_event = pg_import_event,
    .queue_save = pg_queue_save,
    .queue_load = pg_queue_load,
    .outbox_list = pg_outbox_list,
    .outbox_mark = pg_outbox_mark,
    .hold_seats = pgb_hold_seats,
    .get_reservation = pgb_get_reservation,
    .cancel_reservation = pgb_cancel_reservation,
    .expire_holds = pgb_expire_holds,
    .get_balance = pgb_get_balance,
    .charge = pgb_charge,
    .pay = pgb_pay,
    .card_begin = pgb_card_begin,
    .card_settle = pgb_card_settle,
    .card_list_pending = pgb_card_list_pending,
    .idem_get = pgb_idem_get,
    .purge_idempotency = pgb_purge_idempotency,
    .stats = pg_stats,
    .close = pg_close,
};
