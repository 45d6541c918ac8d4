/* sqlite_booking.c -- the booking ops of the SQLite store: holds, their
 * expiry and cancellation, balances, payments, and idempotent responses.
 *
 * Every write here is a job for the group committer (sq_write in
 * sqlite_commit.c), so it runs serialized with every other request-time
 * write, inside one transaction that is durable before the op returns. Reads
 * (get_reservation, get_balance) use the calling thread's connection.
 * Not here: the rules (service/booking.c decides what may be held, paid or
 * cancelled and hands its checks in as function pointers), HTTP, the schema
 * (schema/sqlite/0001_init.sql).
 *
 * Design notes
 *
 *   1. Seats are claimed with UPDATE ... WHERE status = 0 inside the job;
 *      since jobs run one at a time on one connection, "read the seat, see it
 *      free, claim it" cannot interleave with another hold (invariant 1).
 *      Every existence check (session, each seat) runs before any seat is
 *      claimed, and a failed job is rolled back to its savepoint, so a
 *      refused hold leaves nothing behind.
 *   2. sessions.available_seats moves in the same job as seats.status:
 *      -n on a hold, +released on cancel and expiry, unchanged on sale
 *      (held and sold are both unavailable). See sqlite.c design note 3.
 *   3. A seat held by a reservation whose hold has run out is taken back
 *      (that reservation becomes EXPIRED) by the hold that wants it, in the
 *      same job: expiry is checked at use, not only by the sweeper.
 *   4. Idempotency (charge, pay): the job looks the key up first. A stored
 *      response with the same request hash is returned as is; another hash
 *      is ERR_IDEMPOTENCY. Otherwise the op runs inside a SAVEPOINT step;
 *      when it ends in a business error (404, 403, 409, 402, 400) its step
 *      is rolled back, and either way the caller's render() makes the
 *      response, which is stored with the key in the same transaction as the
 *      money movement. Concurrent duplicates are jobs of the one committer:
 *      the first stores the key, the later ones find it and replay.
 *   5. Balance changes always write a balance_ledger row with the balance
 *      after it (invariant 2: balance = sum of the user's ledger amounts).
 *   6. Card payments take two jobs around the gateway call: card_begin
 *      writes the PENDING attempt with its gateway key (reservation
 *      PAYMENT_PENDING) before the gateway is asked, card_settle writes the
 *      outcome. Only a PENDING attempt is settled, inside the job, so of a
 *      request and the reconciler settling the same attempt, the first one
 *      writes and the second reads what it wrote (changed = 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "store/sqlite_int.h"

#define MOD "store"

/* ---- SQL ------------------------------------------------------------------ */

static const char SQL_USER_ENSURE[] = "INSERT INTO users (id, balance, created_at)"
                                      " VALUES (?1, 0, ?2) ON CONFLICT (id) DO NOTHING";
static const char SQL_BALANCE[] = "SELECT balance FROM users WHERE id = ?1";
static const char SQL_SET_BALANCE[] = "UPDATE users SET balance = ?2 WHERE id = ?1";
static const char SQL_LEDGER[] =
    "INSERT INTO balance_ledger (user_id, kind, amount, balance_after, ref, created_at)"
    " VALUES (?1, ?6, ?2, ?3, nullif(?4, 0), ?5)";
static const char SQL_SESSION_OF[] = "SELECT 1 FROM sessions WHERE id = ?1 AND concert_id = ?2";
static const char SQL_SEAT[] = "SELECT session_id, seat_number, grade, price, status,"
                               " coalesce(reservation_id, 0) FROM seats WHERE id = ?1";
static const char SQL_RES[] =
    "SELECT id, user_id, session_id, status, total_price, created_at, expires_at, updated_at"
    " FROM reservations WHERE id = ?1";
static const char SQL_RES_SEATS[] =
    "SELECT st.id, st.session_id, st.seat_number, st.grade, st.price"
    " FROM reservation_seats rs JOIN seats st ON st.id = rs.seat_id"
    " WHERE rs.reservation_id = ?1 ORDER BY st.seat_number";
static const char SQL_RES_NSEATS[] =
    "SELECT count(*) FROM reservation_seats WHERE reservation_id = ?1";
static const char SQL_INS_RES[] =
    "INSERT INTO reservations (user_id, session_id, status, total_price, created_at, expires_at,"
    " updated_at) VALUES (?1, ?2, 'HELD', ?3, ?4, ?5, ?4)";
static const char SQL_CLAIM_SEAT[] =
    "UPDATE seats SET status = 1, reservation_id = ?2 WHERE id = ?1 AND status = 0";
static const char SQL_INS_RES_SEAT[] =
    "INSERT INTO reservation_seats (reservation_id, seat_id) VALUES (?1, ?2)";
static const char SQL_SESSION_AVAIL[] =
    "UPDATE sessions SET available_seats = available_seats + ?2 WHERE id = ?1";
static const char SQL_RELEASE_SEATS[] =
    "UPDATE seats SET status = 0, reservation_id = NULL"
    " WHERE id IN (SELECT seat_id FROM reservation_seats WHERE reservation_id = ?1)"
    " AND reservation_id = ?1 AND status = 1 RETURNING id";
static const char SQL_SELL_SEATS[] =
    "UPDATE seats SET status = 2"
    " WHERE id IN (SELECT seat_id FROM reservation_seats WHERE reservation_id = ?1)"
    " AND reservation_id = ?1 AND status = 1";
static const char SQL_SET_RES_STATUS[] =
    "UPDATE reservations SET status = ?3, updated_at = ?2 WHERE id = ?1";
static const char SQL_HOLD_EXPIRED[] =
    "SELECT 1 FROM reservations WHERE id = ?1 AND status = 'HELD' AND expires_at <= ?2";
static const char SQL_LIVE_HOLDS[] =
    "SELECT count(*) FROM reservations WHERE user_id = ?1 AND (status = 'PAYMENT_PENDING' OR "
    "(status = 'HELD' AND expires_at > ?2))";
static const char SQL_ANY_EXPIRED[] =
    "SELECT 1 FROM reservations WHERE status = 'HELD' AND expires_at <= ?1 LIMIT 1";
static const char SQL_EXPIRED_HOLDS[] =
    "SELECT id, session_id FROM reservations WHERE status = 'HELD' AND expires_at <= ?1"
    " ORDER BY expires_at LIMIT ?2";
static const char SQL_INS_PAYMENT[] =
    "INSERT INTO payments (reservation_id, user_id, amount, method, status, idempotency_key,"
    " created_at, updated_at) VALUES (?1, ?2, ?3, ?5, 'COMPLETED', ?6, ?4, ?4)";
static const char SQL_OUTBOX_PAYMENT[] =
    "INSERT INTO outbox (topic, aggregate_id, payload, created_at)"
    " VALUES ('payment.completed', ?1, json_object('paymentId', ?1, 'reservationId', ?2,"
    " 'userId', ?3, 'amount', ?4, 'method', ?6, 'paidAt', ?5), ?5)";
static const char SQL_IDEM_GET[] =
    "SELECT request_hash, status_code, response FROM idempotency_keys"
    " WHERE scope = ?1 AND key = ?2 AND created_at > ?3 AND status_code IS NOT NULL";
static const char SQL_IDEM_PUT[] =
    "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, created_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (scope, key) DO UPDATE SET"
    " request_hash = excluded.request_hash, status_code = excluded.status_code,"
    " response = excluded.response, created_at = excluded.created_at";
static const char SQL_IDEM_PURGE[] = "DELETE FROM idempotency_keys WHERE created_at < ?1";

/* ---- small helpers ---------------------------------------------------------- */

/* A prepared statement of c bound with int parameters; NULL (logged) on failure. */
static sqlite3_stmt *bound(struct conn *c, const char *sql, int n, const int64_t *v) {
    sqlite3_stmt *st = sq_stmt(c, sql);
    if (st) sq_bind_ints(st, n, v);
    return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC); /* the statement is reset before s dies */
}

/* Runs a bound statement that writes; *changes (may be NULL) gets the rows it changed. */
static int exec_changes(struct conn *c, sqlite3_stmt *st, const char *op, int64_t *changes) {
    int err = sq_exec_st(c, st, op);
    if (err == 0 && changes) *changes = sqlite3_changes64(c->db);
    return err;
}

static int ints_changes(struct conn *c, const char *sql, int n, const int64_t *v,
                        int64_t *changes) {
    sqlite3_stmt *st = bound(c, sql, n, v);
    return st ? exec_changes(c, st, sql, changes) : ERR_IO;
}

/* Errors that are an answer to the request rather than a failure of the store. */
static int is_business(int err) {
    return err == ERR_NOT_FOUND || err == ERR_FORBIDDEN || err == ERR_CONFLICT ||
           err == ERR_INSUFFICIENT || err == ERR_INVALID;
}

static int ensure_user(struct conn *c, int64_t user_id, int64_t now) {
    int64_t v[2] = {user_id, now};
    return sq_exec_ints(c, SQL_USER_ENSURE, 2, v);
}

/* The user's balance; 0 for a user not stored yet. */
static int balance_of(struct conn *c, int64_t user_id, int64_t *balance) {
    int err = sq_query_int(c, SQL_BALANCE, 1, &user_id, balance);
    if (err == ERR_NOT_FOUND) {
        *balance = 0;
        return 0;
    }
    return err;
}

/* Sets the balance and writes its ledger row (design note 5). ref 0 = none. */
static int move_balance(struct conn *c, int64_t user_id, const char *kind, int64_t amount,
                        int64_t after, int64_t ref, int64_t now) {
    int64_t b[2] = {user_id, after};
    int err = sq_exec_ints(c, SQL_SET_BALANCE, 2, b);
    if (err) return err;
    int64_t v[5] = {user_id, amount, after, ref, now};
    sqlite3_stmt *st = bound(c, SQL_LEDGER, 5, v);
    if (!st) return ERR_IO;
    bind_text(st, 6, kind);
    return sq_exec_st(c, st, "ledger");
}

/* ---- reservations: reading -------------------------------------------------- */

static void read_res_seat(sqlite3_stmt *st, struct arena *a, void *out) {
    struct store_seat *x = out;
    x->id = sqlite3_column_int64(st, 0);
    x->session_id = sqlite3_column_int64(st, 1);
    x->number = sqlite3_column_int64(st, 2);
    x->grade = sq_col_str(st, 3, a);
    x->price = sqlite3_column_int64(st, 4);
}

/* The reservation row, without its seats. ERR_NOT_FOUND. */
static int read_res(struct conn *c, int64_t id, struct store_reservation *r) {
    sqlite3_stmt *st = bound(c, SQL_RES, 1, &id);
    if (!st) return ERR_IO;
    int rc = sqlite3_step(st), err = 0;
    if (rc == SQLITE_ROW) {
        memset(r, 0, sizeof(*r));
        r->id = sqlite3_column_int64(st, 0);
        r->user_id = sqlite3_column_int64(st, 1);
        r->session_id = sqlite3_column_int64(st, 2);
        r->status = store_res_status_of((const char *)sqlite3_column_text(st, 3));
        r->total_price = sqlite3_column_int64(st, 4);
        r->created_at_ms = sqlite3_column_int64(st, 5);
        r->expires_at_ms = sqlite3_column_int64(st, 6);
        r->updated_at_ms = sqlite3_column_int64(st, 7);
        if (r->status < 0) err = ERR_INTERNAL;
    } else {
        err = rc == SQLITE_DONE ? ERR_NOT_FOUND : sq_fail(c, "reservation", rc);
    }
    sqlite3_reset(st);
    return err;
}

/* The reservation with its seats, into a. */
static int read_res_full(struct conn *c, struct arena *a, int64_t id, struct store_reservation *r) {
    int err = read_res(c, id, r);
    if (err) return err;
    sqlite3_stmt *st = bound(c, SQL_RES_SEATS, 1, &id);
    if (!st) return ERR_IO;
    struct rows rows = {.size = sizeof(struct store_seat)};
    err = sq_collect(c, st, "reservation_seats", a, &rows, read_res_seat);
    r->seats = rows.items;
    r->nseats = rows.n;
    return err;
}

int sqb_get_reservation(struct store *s, struct arena *a, int64_t id,
                        struct store_reservation *out) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    return read_res_full(c, a, id, out);
}

static int set_res_status(struct conn *c, int64_t id, int status, int64_t now) {
    int64_t v[2] = {id, now};
    sqlite3_stmt *st = bound(c, SQL_SET_RES_STATUS, 2, v);
    if (!st) return ERR_IO;
    bind_text(st, 3, store_res_status_name(status));
    return sq_exec_st(c, st, "reservation_status");
}

/* Releases the reservation's held seats (counter included) and sets its status. */
static int release_res(struct conn *c, int64_t id, int64_t session_id, int status, int64_t now) {
    int64_t released = 0;
    sqlite3_stmt *st = bound(c, SQL_RELEASE_SEATS, 1, &id);
    if (!st) return ERR_IO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sq_seat_changed(c, session_id, sqlite3_column_int64(st, 0), 1);
        released++;
    }
    sqlite3_reset(st);
    int err = rc == SQLITE_DONE ? 0 : sq_fail(c, "release_seats", rc);
    if (err) return err;
    int64_t av[2] = {session_id, released};
    if (released) err = sq_exec_ints(c, SQL_SESSION_AVAIL, 2, av);
    return err ? err : set_res_status(c, id, status, now);
}

/* ---- holds -------------------------------------------------------------------- */

struct seat_row {
    int64_t session_id, status, holder;
};

/* Reads seat id into *seat (into a) and *row. ERR_NOT_FOUND when there is none. */
static int read_seat(struct conn *c, struct arena *a, int64_t id, struct store_seat *seat,
                     struct seat_row *row) {
    sqlite3_stmt *st = bound(c, SQL_SEAT, 1, &id);
    if (!st) return ERR_IO;
    int rc = sqlite3_step(st), err = 0;
    if (rc == SQLITE_ROW) {
        seat->id = id;
        seat->session_id = row->session_id = sqlite3_column_int64(st, 0);
        seat->number = sqlite3_column_int64(st, 1);
        seat->grade = sq_col_str(st, 2, a);
        seat->price = sqlite3_column_int64(st, 3);
        row->status = sqlite3_column_int64(st, 4);
        row->holder = sqlite3_column_int64(st, 5);
    } else {
        err = rc == SQLITE_DONE ? ERR_NOT_FOUND : sq_fail(c, "seat", rc);
    }
    sqlite3_reset(st);
    return err;
}

/* Design note 3: frees the seats of reservation rid when its hold ran out.
 * *freed = 1 when it did. */
static int take_back_expired(struct conn *c, int64_t rid, int64_t session_id, int64_t now,
                             int *freed) {
    int64_t v[2] = {rid, now}, one;
    int err = sq_query_int(c, SQL_HOLD_EXPIRED, 2, v, &one);
    *freed = 0;
    if (err == ERR_NOT_FOUND) return 0;
    if (err) return err;
    err = release_res(c, rid, session_id, STORE_RES_EXPIRED, now);
    if (err == 0) *freed = 1;
    return err;
}

static int cmp_seat_number(const void *x, const void *y) {
    const struct store_seat *a = x, *b = y;
    return (a->number > b->number) - (a->number < b->number);
}

struct hold_job {
    struct store_hold *h;
    struct arena *a;
    struct store_reservation *out;
};

/* Every seat exists and is of the session (design note 1: before any write). */
static int hold_read_seats(struct conn *c, struct hold_job *j, struct seat_row *rows) {
    struct store_hold *h = j->h;
    int64_t v[2] = {h->session_id, h->concert_id}, one;
    int err = sq_query_int(c, SQL_SESSION_OF, 2, v, &one);
    if (err) return err;
    for (size_t i = 0; i < h->nseats; i++) {
        err = read_seat(c, j->a, h->seat_ids[i], &j->out->seats[i], &rows[i]);
        if (err == 0 && rows[i].session_id != h->session_id) err = ERR_NOT_FOUND;
        if (err) {
            if (err == ERR_NOT_FOUND) h->bad_seat_id = h->seat_ids[i];
            return err;
        }
    }
    return 0;
}

/* Every seat is free, or held by a hold that ran out and is taken back. */
static int hold_check_free(struct conn *c, struct hold_job *j, struct seat_row *rows) {
    struct store_hold *h = j->h;
    for (size_t i = 0; i < h->nseats; i++) {
        int freed = 0, err = 0;
        if (rows[i].status == STORE_SEAT_HELD)
            err = take_back_expired(c, rows[i].holder, h->session_id, h->now_ms, &freed);
        if (err) return err;
        if (rows[i].status != STORE_SEAT_FREE && !freed) {
            h->bad_seat_id = h->seat_ids[i];
            h->bad_seat_number = j->out->seats[i].number;
            h->bad_seat_status = (int)rows[i].status;
            return ERR_CONFLICT;
        }
    }
    return 0;
}

/* Inserts the reservation, claims its seats, moves the session's counter. */
static int hold_claim(struct conn *c, struct hold_job *j, int64_t total) {
    struct store_hold *h = j->h;
    int64_t v[5] = {h->user_id, h->session_id, total, h->now_ms, h->expires_at_ms};
    int err = sq_exec_ints(c, SQL_INS_RES, 5, v);
    if (err) return err;
    int64_t rid = sqlite3_last_insert_rowid(c->db);
    for (size_t i = 0; i < h->nseats && err == 0; i++) {
        int64_t claim[2] = {h->seat_ids[i], rid}, changed = 0;
        err = ints_changes(c, SQL_CLAIM_SEAT, 2, claim, &changed);
        if (err == 0 && changed != 1) err = ERR_CONFLICT; /* cannot happen: checked above */
        if (err == 0) sq_seat_changed(c, h->session_id, h->seat_ids[i], 0);
        int64_t link[2] = {rid, h->seat_ids[i]};
        if (err == 0) err = sq_exec_ints(c, SQL_INS_RES_SEAT, 2, link);
    }
    int64_t av[2] = {h->session_id, -(int64_t)h->nseats};
    if (err == 0) err = sq_exec_ints(c, SQL_SESSION_AVAIL, 2, av);
    if (err == 0) j->out->id = rid;
    return err;
}

/* ERR_LIMIT when the user holds h->max_live_holds live holds already. */
static int hold_check_cap(struct conn *c, const struct store_hold *h) {
    if (h->max_live_holds <= 0) return 0;
    int64_t v[2] = {h->user_id, h->now_ms}, n = 0;
    int err = sq_query_int(c, SQL_LIVE_HOLDS, 2, v, &n);
    if (err) return err;
    return n >= h->max_live_holds ? ERR_LIMIT : 0;
}

static int hold_apply(struct conn *c, void *arg) {
    struct hold_job *j = arg;
    struct store_hold *h = j->h;
    struct seat_row *rows = arena_calloc(j->a, h->nseats, sizeof(*rows));
    int err = hold_read_seats(c, j, rows);
    if (err == 0) err = hold_check_cap(c, h);
    if (err == 0) err = hold_check_free(c, j, rows);
    int64_t total = 0;
    for (size_t i = 0; err == 0 && i < h->nseats; i++)
        if (__builtin_add_overflow(total, j->out->seats[i].price, &total)) err = ERR_INVALID;
    if (err == 0) err = ensure_user(c, h->user_id, h->now_ms);
    if (err == 0) err = hold_claim(c, j, total);
    if (err) return err;
    struct store_reservation *r = j->out;
    r->user_id = h->user_id;
    r->session_id = h->session_id;
    r->status = STORE_RES_HELD;
    r->total_price = total;
    r->created_at_ms = r->updated_at_ms = h->now_ms;
    r->expires_at_ms = h->expires_at_ms;
    return 0;
}

int sqb_hold_seats(struct store *s, struct arena *a, struct store_hold *h,
                   struct store_reservation *out) {
    if (h->nseats == 0 || !h->seat_ids) return ERR_INVALID;
    h->bad_seat_id = h->bad_seat_number = 0;
    h->bad_seat_status = 0;
    memset(out, 0, sizeof(*out));
    out->seats = arena_calloc(a, h->nseats, sizeof(*out->seats));
    out->nseats = h->nseats;
    struct hold_job j = {h, a, out};
    int err = sq_write((struct sqlite_store *)s, hold_apply, &j);
    if (err == 0) qsort(out->seats, out->nseats, sizeof(*out->seats), cmp_seat_number);
    return err;
}

/* ---- cancel and expire ------------------------------------------------------------ */

struct cancel_job {
    int64_t id, caller, now;
    store_res_check check;
    struct arena *a;
    struct store_reservation *out;
};

static int cancel_apply(struct conn *c, void *arg) {
    struct cancel_job *j = arg;
    struct store_reservation r;
    int err = read_res(c, j->id, &r);
    if (err) return err;
    int verdict = j->check(&r, j->caller, 0, j->now);
    if (verdict < 0) return verdict;
    if (verdict == 0) err = release_res(c, r.id, r.session_id, STORE_RES_CANCELLED, j->now);
    return err ? err : read_res_full(c, j->a, j->id, j->out);
}

int sqb_cancel_reservation(struct store *s, struct arena *a, int64_t id, int64_t caller,
                           int64_t now_ms, store_res_check check, struct store_reservation *out) {
    struct cancel_job j = {id, caller, now_ms, check, a, out};
    return sq_write((struct sqlite_store *)s, cancel_apply, &j);
}

struct expire_job {
    int64_t now, max, n;
};

static int expire_apply(struct conn *c, void *arg) {
    struct expire_job *j = arg;
    int64_t v[2] = {j->now, j->max};
    sqlite3_stmt *st = bound(c, SQL_EXPIRED_HOLDS, 2, v);
    if (!st) return ERR_IO;
    /* Collect first: the release statements must not run while st is open on them. */
    int64_t ids[2 * 256];
    size_t n = 0;
    int rc = SQLITE_DONE;
    while (n < 256 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ids[2 * n] = sqlite3_column_int64(st, 0);
        ids[2 * n + 1] = sqlite3_column_int64(st, 1);
        n++;
    }
    int err = (n == 256 || rc == SQLITE_DONE) ? 0 : sq_fail(c, "expired_holds", rc);
    sqlite3_reset(st);
    for (size_t i = 0; i < n && err == 0; i++)
        err = release_res(c, ids[2 * i], ids[2 * i + 1], STORE_RES_EXPIRED, j->now);
    if (err == 0) j->n = (int64_t)n;
    return err;
}

int sqb_expire_holds(struct store *s, int64_t now_ms, int64_t max, int64_t *n) {
    if (n) *n = 0;
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t one; /* a read first: no write at all when nothing is due */
    int err = sq_query_int(c, SQL_ANY_EXPIRED, 1, &now_ms, &one);
    if (err == ERR_NOT_FOUND) return 0;
    if (err) return err;
    struct expire_job j = {now_ms, max < 1 ? 1 : (max > 256 ? 256 : max), 0};
    err = sq_write((struct sqlite_store *)s, expire_apply, &j);
    if (err == 0 && n) *n = j.n;
    return err;
}

/* ---- idempotent jobs (design note 4) ------------------------------------------------ */

struct idem_job {
    struct store_idem *idem; /* NULL: no key */
    struct arena *a;
    int64_t now;
    int (*op)(struct conn *c, void *arg);
    void *arg;
    int op_err; /* the op's business error, answered and stored */
};

/* 0 and nothing set: no live key. 0 and idem->replayed: a stored response. */
static int idem_lookup(struct conn *c, struct idem_job *j) {
    struct store_idem *idem = j->idem;
    sqlite3_stmt *st = sq_stmt(c, SQL_IDEM_GET);
    if (!st) return ERR_IO;
    bind_text(st, 1, idem->scope);
    bind_text(st, 2, idem->key);
    sqlite3_bind_int64(st, 3, j->now - idem->ttl_ms);
    int rc = sqlite3_step(st), err = 0;
    if (rc == SQLITE_ROW) {
        const char *hash = (const char *)sqlite3_column_text(st, 0);
        if (!hash || strcmp(hash, idem->hash) != 0) {
            err = ERR_IDEMPOTENCY;
        } else {
            idem->replayed = 1;
            idem->status = sqlite3_column_int(st, 1);
            idem->body = sq_col_str(st, 2, j->a);
            idem->len = (size_t)sqlite3_column_bytes(st, 2);
        }
    } else if (rc != SQLITE_DONE) {
        err = sq_fail(c, "idempotency_get", rc);
    }
    sqlite3_reset(st);
    return err;
}

static int idem_store(struct conn *c, struct idem_job *j, int status, const char *body,
                      size_t len) {
    struct store_idem *idem = j->idem;
    sqlite3_stmt *st = sq_stmt(c, SQL_IDEM_PUT);
    if (!st) return ERR_IO;
    bind_text(st, 1, idem->scope);
    bind_text(st, 2, idem->key);
    bind_text(st, 3, idem->hash);
    sqlite3_bind_int(st, 4, status);
    sqlite3_bind_text(st, 5, body, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, j->now);
    return sq_exec_st(c, st, "idempotency_put");
}

static int idem_apply(struct conn *c, void *arg) {
    struct idem_job *j = arg;
    if (!j->idem) return j->op(c, j->arg);
    int err = idem_lookup(c, j);
    if (err || j->idem->replayed) return err;
    err = sq_savepoint(c, SQ_SP_STEP);
    if (err) return err;
    int op_err = j->op(c, j->arg);
    err = sq_release(c, SQ_SP_STEP, op_err);
    if (err && !(err == op_err && is_business(op_err))) return err;
    int status = 0;
    const char *body = NULL;
    size_t len = 0;
    j->idem->render(j->idem->ctx, op_err, &status, &body, &len);
    j->op_err = op_err;
    return status >= 500 ? (op_err ? op_err : ERR_INTERNAL) : idem_store(c, j, status, body, len);
}

int sqb_idem_get(struct store *s, struct arena *a, struct store_idem *idem, int64_t now_ms) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    idem->replayed = 0;
    struct idem_job j = {idem, a, now_ms, NULL, NULL, 0};
    return idem_lookup(c, &j);
}

/* Runs op as one job, with idempotency when idem is not NULL. Returns the
 * op's result, or 0 with idem->replayed set. */
static int run_idempotent(struct store *s, struct arena *a, struct store_idem *idem, int64_t now,
                          int (*op)(struct conn *, void *), void *arg) {
    if (idem) {
        idem->replayed = 0;
        idem->body = NULL;
        idem->len = 0;
    }
    struct idem_job j = {idem, a, now, op, arg, 0};
    int err = sq_write((struct sqlite_store *)s, idem_apply, &j);
    return err ? err : j.op_err;
}

/* ---- balance ---------------------------------------------------------------------------- */

int sqb_get_balance(struct store *s, int64_t user_id, int64_t *balance) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    return balance_of(c, user_id, balance);
}

static int charge_op(struct conn *c, void *arg) {
    struct store_charge *ch = arg;
    int64_t balance = 0, after;
    /* Read first: the insert of a user never seen is needed once per user,
     * and a charge is on the committer, the thread every write waits for. */
    int err = sq_query_int(c, SQL_BALANCE, 1, &ch->user_id, &balance);
    if (err == ERR_NOT_FOUND) err = ensure_user(c, ch->user_id, ch->now_ms);
    if (err == 0) err = ch->credit(balance, ch->amount, &after);
    if (err == 0) err = move_balance(c, ch->user_id, "CHARGE", ch->amount, after, 0, ch->now_ms);
    if (err == 0) ch->balance = after;
    return err;
}

int sqb_charge(struct store *s, struct arena *a, struct store_charge *c, struct store_idem *idem) {
    if (c->amount <= 0 || !c->credit) return ERR_INVALID;
    return run_idempotent(s, a, idem, c->now_ms, charge_op, c);
}

/* ---- payments ----------------------------------------------------------------------------- */

struct pay_job {
    struct store_pay *p;
    const char *key; /* Idempotency-Key, kept on the payment row; NULL = none */
};

/* Seats of the reservation from HELD to SOLD: all of them, or ERR_INTERNAL. */
static int sell_seats(struct conn *c, int64_t rid) {
    int64_t sold = 0, want = 0;
    int err = ints_changes(c, SQL_SELL_SEATS, 1, &rid, &sold);
    if (err == 0) err = sq_query_int(c, SQL_RES_NSEATS, 1, &rid, &want);
    if (err == 0 && sold != want) {
        LOG_ERROR(MOD, "op=pay reservation=%lld msg=\"%lld of %lld seats were held\"",
                  (long long)rid, (long long)sold, (long long)want);
        err = ERR_INTERNAL;
    }
    return err;
}

static int insert_payment(struct conn *c, struct pay_job *j, const struct store_reservation *r) {
    struct store_pay *p = j->p;
    int64_t v[4] = {r->id, p->user_id, r->total_price, p->now_ms};
    sqlite3_stmt *st = bound(c, SQL_INS_PAYMENT, 4, v);
    if (!st) return ERR_IO;
    bind_text(st, 5, p->method);
    if (j->key)
        bind_text(st, 6, j->key);
    else
        sqlite3_bind_null(st, 6);
    int err = sq_exec_st(c, st, "insert_payment");
    if (err) return err;
    p->out.id = sqlite3_last_insert_rowid(c->db);
    int64_t e[5] = {p->out.id, r->id, p->user_id, r->total_price, p->now_ms};
    st = bound(c, SQL_OUTBOX_PAYMENT, 5, e);
    if (!st) return ERR_IO;
    bind_text(st, 6, p->method);
    return sq_exec_st(c, st, "outbox_payment");
}

static int pay_op(struct conn *c, void *arg) {
    struct pay_job *j = arg;
    struct store_pay *p = j->p;
    struct store_reservation r;
    int64_t balance = 0;
    int err = read_res(c, p->reservation_id, &r);
    if (err == 0) err = balance_of(c, p->user_id, &balance);
    if (err) return err;
    p->res = r;
    p->balance = balance;
    err = p->check(&r, p->user_id, balance, p->now_ms);
    if (err) return err;
    if (strcmp(p->method, "balance") != 0 || balance < r.total_price) return ERR_INTERNAL;
    err = insert_payment(c, j, &r);
    if (err == 0)
        err = move_balance(c, p->user_id, "PAYMENT", -r.total_price, balance - r.total_price,
                           p->out.id, p->now_ms);
    if (err == 0) err = set_res_status(c, r.id, STORE_RES_CONFIRMED, p->now_ms);
    if (err == 0) err = sell_seats(c, r.id);
    if (err) return err;
    p->out.reservation_id = r.id;
    p->out.user_id = p->user_id;
    p->out.amount = r.total_price;
    p->out.method = p->method;
    p->out.paid_at_ms = p->now_ms;
    return 0;
}

int sqb_pay(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem) {
    if (!p->check || !p->method) return ERR_INVALID;
    memset(&p->out, 0, sizeof(p->out));
    memset(&p->res, 0, sizeof(p->res));
    p->balance = 0;
    struct pay_job j = {p, idem ? idem->key : NULL};
    return run_idempotent(s, a, idem, p->now_ms, pay_op, &j);
}

/* ---- card payments (design note 6) ------------------------------------------------------ */

static const char SQL_CARD_PENDING_OF[] =
    "SELECT id, amount, coalesce(idempotency_key, ''), created_at FROM payments"
    " WHERE reservation_id = ?1 AND status = 'PENDING'";
static const char SQL_CARD_ATTEMPTS[] = "SELECT count(*) FROM payments WHERE reservation_id = ?1";
static const char SQL_CARD_INSERT[] =
    "INSERT INTO payments (reservation_id, user_id, amount, method, status, idempotency_key,"
    " created_at, updated_at) VALUES (?1, ?2, ?3, 'card', 'PENDING', ?5, ?4, ?4)";
static const char SQL_CARD_GET[] = "SELECT reservation_id, user_id, amount, status FROM payments "
                                   "WHERE id = ?1 AND method = 'card'";
static const char SQL_CARD_SET[] =
    "UPDATE payments SET status = ?3, gateway_charge_id = ?4, updated_at = ?2"
    " WHERE id = ?1 AND status = 'PENDING'";
static const char SQL_CARD_LIST[] =
    "SELECT id, reservation_id, user_id, amount, created_at, coalesce(idempotency_key, '')"
    " FROM payments WHERE status = 'PENDING' AND method = 'card' AND created_at < ?1"
    " ORDER BY updated_at, id LIMIT ?2";

/* The reservation's PENDING attempt into c; ERR_NOT_FOUND when there is none. */
static int card_read_pending(struct conn *c, struct store_card *k) {
    sqlite3_stmt *st = bound(c, SQL_CARD_PENDING_OF, 1, &k->reservation_id);
    if (!st) return ERR_IO;
    int rc = sqlite3_step(st), err = 0;
    if (rc == SQLITE_ROW) {
        k->payment_id = sqlite3_column_int64(st, 0);
        k->amount = sqlite3_column_int64(st, 1);
        snprintf(k->key, sizeof(k->key), "%s", (const char *)sqlite3_column_text(st, 2));
        k->created_at_ms = sqlite3_column_int64(st, 3);
    } else {
        err = rc == SQLITE_DONE ? ERR_NOT_FOUND : sq_fail(c, "card_pending_of", rc);
    }
    sqlite3_reset(st);
    return err;
}

static int card_begin_apply(struct conn *c, void *arg) {
    struct store_card *k = arg;
    int err = read_res(c, k->reservation_id, &k->res);
    if (err) return err;
    int verdict = k->check(&k->res, k->user_id, 0, k->now_ms);
    if (verdict < 0) return verdict;
    if (verdict == 1) {
        k->existing = 1;
        err = card_read_pending(c, k);
        return err == ERR_NOT_FOUND ? ERR_INTERNAL : err; /* PAYMENT_PENDING without one */
    }
    int64_t attempts = 0;
    err = sq_query_int(c, SQL_CARD_ATTEMPTS, 1, &k->reservation_id, &attempts);
    if (err) return err;
    k->make_key(k->reservation_id, attempts + 1, k->key, sizeof(k->key));
    int64_t v[4] = {k->reservation_id, k->user_id, k->res.total_price, k->now_ms};
    sqlite3_stmt *st = bound(c, SQL_CARD_INSERT, 4, v);
    if (!st) return ERR_IO;
    bind_text(st, 5, k->key);
    err = sq_exec_st(c, st, "card_insert");
    if (err) return err;
    k->payment_id = sqlite3_last_insert_rowid(c->db);
    k->amount = k->res.total_price;
    k->created_at_ms = k->now_ms;
    return set_res_status(c, k->reservation_id, STORE_RES_PAYMENT_PENDING, k->now_ms);
}

int sqb_card_begin(struct store *s, struct store_card *c) {
    if (!c->check || !c->make_key) return ERR_INVALID;
    c->existing = 0;
    c->payment_id = c->amount = c->created_at_ms = 0;
    c->key[0] = '\0';
    memset(&c->res, 0, sizeof(c->res));
    return sq_write((struct sqlite_store *)s, card_begin_apply, c);
}

/* The attempt's row into x->out and x->status. */
static int card_read(struct conn *c, struct store_card_settle *x) {
    sqlite3_stmt *st = bound(c, SQL_CARD_GET, 1, &x->payment_id);
    if (!st) return ERR_IO;
    int rc = sqlite3_step(st), err = 0;
    if (rc == SQLITE_ROW) {
        x->out.id = x->payment_id;
        x->out.reservation_id = sqlite3_column_int64(st, 0);
        x->out.user_id = sqlite3_column_int64(st, 1);
        x->out.amount = sqlite3_column_int64(st, 2);
        x->out.method = "card";
        x->status = store_pay_status_of((const char *)sqlite3_column_text(st, 3));
        if (x->status < 0) err = ERR_INTERNAL;
    } else {
        err = rc == SQLITE_DONE ? ERR_NOT_FOUND : sq_fail(c, "card_get", rc);
    }
    sqlite3_reset(st);
    return err;
}

static int card_settle_op(struct conn *c, void *arg) {
    struct store_card_settle *x = arg;
    struct store_reservation r = {0}; /* read_res fills it; the analyzer cannot see sq_fail < 0 */
    int err = card_read(c, x);
    if (err == 0) err = read_res(c, x->out.reservation_id, &r);
    if (err) return err;
    x->res_status = r.status;
    if (x->status != STORE_PAY_PENDING) return 0; /* settled already: report it */
    if (r.status != STORE_RES_PAYMENT_PENDING) return ERR_INTERNAL;
    int to = x->approved ? STORE_PAY_COMPLETED : STORE_PAY_FAILED;
    int64_t v[2] = {x->payment_id, x->now_ms};
    sqlite3_stmt *st = bound(c, SQL_CARD_SET, 2, v);
    if (!st) return ERR_IO;
    bind_text(st, 3, store_pay_status_name(to));
    if (x->approved && x->charge_id)
        bind_text(st, 4, x->charge_id);
    else
        sqlite3_bind_null(st, 4);
    err = sq_exec_st(c, st, "card_set");
    if (err) return err;
    int res_to = x->approved ? STORE_RES_CONFIRMED : x->after_fail(&r, x->now_ms);
    if (res_to == STORE_RES_CONFIRMED) {
        int64_t e[5] = {x->payment_id, r.id, x->out.user_id, x->out.amount, x->now_ms};
        err = set_res_status(c, r.id, STORE_RES_CONFIRMED, x->now_ms);
        if (err == 0) err = sell_seats(c, r.id);
        if (err == 0 && !(st = bound(c, SQL_OUTBOX_PAYMENT, 5, e))) err = ERR_IO;
        if (err == 0) {
            bind_text(st, 6, "card");
            err = sq_exec_st(c, st, "outbox_payment");
        }
    } else if (res_to == STORE_RES_HELD) {
        err = set_res_status(c, r.id, STORE_RES_HELD, x->now_ms);
    } else {
        err = release_res(c, r.id, r.session_id, STORE_RES_EXPIRED, x->now_ms);
    }
    if (err) return err;
    x->changed = 1;
    x->status = to;
    x->res_status = res_to;
    x->out.paid_at_ms = x->now_ms;
    return 0;
}

int sqb_card_settle(struct store *s, struct arena *a, struct store_card_settle *x,
                    struct store_idem *idem) {
    if (!x->after_fail) return ERR_INVALID;
    x->changed = 0;
    x->status = x->res_status = -1;
    memset(&x->out, 0, sizeof(x->out));
    return run_idempotent(s, a, idem, x->now_ms, card_settle_op, x);
}

static void read_card_pending(sqlite3_stmt *st, struct arena *a, void *out) {
    struct store_card_pending *p = out;
    p->payment_id = sqlite3_column_int64(st, 0);
    p->reservation_id = sqlite3_column_int64(st, 1);
    p->user_id = sqlite3_column_int64(st, 2);
    p->amount = sqlite3_column_int64(st, 3);
    p->created_at_ms = sqlite3_column_int64(st, 4);
    p->key = sq_col_str(st, 5, a);
}

int sqb_card_list_pending(struct store *s, struct arena *a, int64_t created_before_ms, int64_t max,
                          struct store_card_pending **out, size_t *n) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t v[2] = {created_before_ms, max};
    sqlite3_stmt *st = bound(c, SQL_CARD_LIST, 2, v);
    if (!st) return ERR_IO;
    struct rows rows = {.size = sizeof(struct store_card_pending)};
    int err = sq_collect(c, st, "card_list_pending", a, &rows, read_card_pending);
    *out = rows.items;
    *n = rows.n;
    return err;
}

/* ---- housekeeping ----------------------------------------------------------------------- */

struct purge_job {
    int64_t before, n;
};

static int purge_apply(struct conn *c, void *arg) {
    struct purge_job *j = arg;
    return ints_changes(c, SQL_IDEM_PURGE, 1, &j->before, &j->n);
}

int sqb_purge_idempotency(struct store *s, int64_t before_ms, int64_t *n) {
    struct purge_job j = {before_ms, 0};
    int err = sq_write((struct sqlite_store *)s, purge_apply, &j);
    if (err == 0 && n) *n = j.n;
    return err;
}
