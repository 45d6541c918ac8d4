/* pg_booking.c -- the booking ops of the PostgreSQL store: holds, their
 * expiry and cancellation, balances, payments, and idempotent responses.
 *
 * The same ops with the same results as sqlite_booking.c; every write is a
 * job for the group committer (pg_write), reads use the calling thread's
 * connection. Not here: the rules (service/ hands its checks in), HTTP, the
 * schema (schema/pg/).
 *
 * Design notes
 *
 *   1. Isolation: READ COMMITTED with conditional updates and row locks,
 *      not SERIALIZABLE and not FOR UPDATE SKIP LOCKED. Other transactions
 *      (the other committer thread, other concertd instances) write at the
 *      same time, so unlike SQLite a job cannot rely on being alone:
 *        - A seat is claimed with UPDATE seats SET status = 1 ... WHERE
 *          id = $1 AND status = 0. A concurrent claim of the same seat
 *          blocks on the row lock until the first transaction ends, then
 *          PostgreSQL re-evaluates the WHERE on the committed row (READ
 *          COMMITTED's EvalPlanQual): status is 1, no row changes, and the
 *          job answers SEAT_UNAVAILABLE. Exactly one hold wins (invariant 1)
 *          without retries or serialization failures. SKIP LOCKED would
 *          suit "any free seat" allocation, but fans pick seat ids: skipping
 *          a locked seat would only turn "wait 1 ms for the answer" into a
 *          wrong "unavailable" when the other hold then fails.
 *        - Decisions the service makes on a row (pay, cancel, card begin
 *          and settle: the reservation; charge and pay: the user's
 *          balance) read it with SELECT ... FOR UPDATE, so the row cannot
 *          change between the check and the write, and a second writer
 *          waits and then sees the first one's result (no lost update of
 *          a balance, no double payment: invariants 2 and 4).
 *        - State changes that may race are conditional: a hold expires
 *          only WHERE status = 'HELD' AND expires_at <= now, so the sweeper
 *          of two instances, or a hold taking seats back, expire it once.
 *        - Idempotency keys are claimed first with INSERT ... ON CONFLICT:
 *          a duplicate request on another instance blocks on the claim
 *          until the first transaction commits, then replays its response.
 *      Rows are locked reservation first, then its seats, except by holds:
 *      their committer locks every seat of its batch first, in id order
 *      (pg_commit.c note 9), so two holds never wait on each other in a
 *      cycle, and a hold taking back an expired hold's seats locks that
 *      reservation after them. What still deadlocks (that take-back
 *      against a sweep of the same reservation, a payment against a
 *      capped hold of its own user) is run again (pg_commit.c note 3).
 *   2. sessions.available_seats moves in the same transaction as
 *      seats.status, as in sqlite_booking.c note 2, but the job only records
 *      the change (pg_move_avail): the committer applies the batch's changes
 *      right before COMMIT, so the hot counter row of a popular session is
 *      locked for the commit alone, not for the whole batch.
 *   3. A seat held by a reservation whose hold has run out is taken back by
 *      the hold that wants it (sqlite_booking.c note 3).
 *   4. Every balance change writes a balance_ledger row (invariant 2).
 *   5. Card payments: card_begin and card_settle are two jobs around the
 *      gateway call (sqlite_booking.c note 6). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "store/pg_int.h"

#define MOD "store"

/* ---- SQL ------------------------------------------------------------------ */

static const char SQL_USER_ENSURE[] = "INSERT INTO users (id, balance, created_at)"
                                      " VALUES ($1, 0, $2) ON CONFLICT (id) DO NOTHING";
static const char SQL_BALANCE[] = "SELECT balance FROM users WHERE id = $1";
/* NO KEY UPDATE: a balance is not a key, so the foreign-key checks of other
 * users' rows pointing at this one (FOR KEY SHARE) need not wait for it. */
static const char SQL_BALANCE_LOCK[] =
    "SELECT balance FROM users WHERE id = $1 FOR NO KEY UPDATE";
static const char SQL_LIVE_HOLDS[] =
    "SELECT count(*) FROM reservations WHERE user_id = $1 AND (status = 'PAYMENT_PENDING' OR "
    "(status = 'HELD' AND expires_at > $2))";
/* Statements that belong together are one statement (data-modifying WITH):
 * each statement is a round trip the committer waits for. */
static const char SQL_MOVE_BALANCE[] =
    "WITH u AS (UPDATE users SET balance = $3 WHERE id = $1)"
    " INSERT INTO balance_ledger (user_id, kind, amount, balance_after, ref, created_at)"
    " VALUES ($1, $6, $2, $3, $4, $5)";
/* The session (no row: not the concert's) with the requested seats that exist. */
static const char SQL_HOLD_READ[] =
    "SELECT st.id, st.session_id, st.seat_number, st.grade, st.price, st.status,"
    " coalesce(st.reservation_id, 0) FROM sessions ss LEFT JOIN seats st"
    " ON st.id = ANY ($3::bigint[]) WHERE ss.id = $1 AND ss.concert_id = $2";
#define RES_COLS "id, user_id, session_id, status, total_price, created_at, expires_at, updated_at"
static const char SQL_RES[] = "SELECT " RES_COLS " FROM reservations WHERE id = $1";
static const char SQL_RES_LOCK[] = "SELECT " RES_COLS " FROM reservations WHERE id = $1 FOR UPDATE";
static const char SQL_RES_SEATS[] =
    "SELECT st.id, st.session_id, st.seat_number, st.grade, st.price"
    " FROM reservation_seats rs JOIN seats st ON st.id = rs.seat_id"
    " WHERE rs.reservation_id = $1 ORDER BY st.seat_number";
/* The reservation (its user made on first use) and the claim of its seats,
 * in one statement: each seat that is free is taken and linked to it
 * (design note 1); the reservation's id and how many seats were claimed.
 * Its committer locked the seats already (pg_commit.c note 9). The foreign
 * keys to the new reservation are checked at the end of the statement,
 * when it exists. */
static const char SQL_HOLD[] =
    "WITH u AS (INSERT INTO users (id, balance, created_at) VALUES ($1, 0, $4)"
    " ON CONFLICT (id) DO NOTHING),"
    " r AS (INSERT INTO reservations (user_id, session_id, status, total_price, created_at,"
    " expires_at, updated_at) VALUES ($1, $2, 'HELD', $3, $4, $5, $4) RETURNING id),"
    " c AS (UPDATE seats SET status = 1, reservation_id = (SELECT id FROM r)"
    " WHERE id = ANY ($6::bigint[]) AND status = 0 RETURNING id),"
    " i AS (INSERT INTO reservation_seats (reservation_id, seat_id)"
    " SELECT (SELECT id FROM r), id FROM c RETURNING 1)"
    " SELECT (SELECT id FROM r), (SELECT count(*) FROM i)";
/* A hold in one statement when every seat is there and free (the usual
 * case): the session's seats asked for, locked FOR UPDATE when free (a
 * concurrent claim is waited for, then its seat is no longer free: READ
 * COMMITTED re-checks status on the committed row, design note 1); only if
 * all $7 are, the user (made on first use), the reservation and the claim
 * of each. The claimed seats, or no row when anything was missing, taken
 * or the total overflows: then nothing was written and hold_apply goes the
 * long way, which names the fault or takes expired holds' seats back. It
 * may be sent ahead (pg_commit.c note 8). $1 user, $2 session, $3 concert,
 * $4 now, $5 expiry, $6 seat ids, $7 their count. */
static const char SQL_HOLD_FAST[] =
    "WITH want AS (SELECT st.id, st.price FROM seats st JOIN sessions ss ON ss.id = st.session_id"
    " AND ss.concert_id = $3 WHERE st.id = ANY ($6::bigint[]) AND st.session_id = $2"
    " AND st.status = 0 ORDER BY st.id FOR UPDATE OF st),"
    " ok AS (SELECT sum(price) AS total FROM want"
    " HAVING count(*) = $7 AND sum(price) <= 9223372036854775807),"
    " u AS (INSERT INTO users (id, balance, created_at) SELECT $1, 0, $4 FROM ok"
    " ON CONFLICT (id) DO NOTHING),"
    " r AS (INSERT INTO reservations (user_id, session_id, status, total_price, created_at,"
    " expires_at, updated_at) SELECT $1, $2, 'HELD', total, $4, $5, $4 FROM ok RETURNING id),"
    " c AS (UPDATE seats SET status = 1, reservation_id = r.id FROM r"
    " WHERE seats.id IN (SELECT id FROM want)"
    " RETURNING r.id AS rid, seats.id, seats.seat_number, seats.grade, seats.price),"
    " i AS (INSERT INTO reservation_seats (reservation_id, seat_id) SELECT rid, id FROM c)"
    " SELECT rid, id, seat_number, grade, price FROM c";
/* The seats of a hold that claimed fewer than it asked for: whose are they? */
static const char SQL_SEATS_HOLDER[] =
    "SELECT id, status, coalesce(reservation_id, 0) FROM seats WHERE id = ANY ($1::bigint[])";
/* By the reservation's seat list (primary keys), not by seats.reservation_id (no index). */
static const char SQL_RELEASE_SEATS[] =
    "UPDATE seats SET status = 0, reservation_id = NULL"
    " WHERE id IN (SELECT seat_id FROM reservation_seats WHERE reservation_id = $1)"
    " AND reservation_id = $1 AND status = 1";
/* CONFIRMED, its held seats SOLD: how many were sold, and how many it has. */
static const char SQL_CONFIRM[] =
    "WITH r AS (UPDATE reservations SET status = 'CONFIRMED', updated_at = $2 WHERE id = $1),"
    " s AS (UPDATE seats SET status = 2"
    " WHERE id IN (SELECT seat_id FROM reservation_seats WHERE reservation_id = $1)"
    " AND reservation_id = $1 AND status = 1 RETURNING 1)"
    " SELECT (SELECT count(*) FROM s),"
    " (SELECT count(*) FROM reservation_seats WHERE reservation_id = $1)";
static const char SQL_SET_RES_STATUS[] =
    "UPDATE reservations SET status = $3, updated_at = $2 WHERE id = $1";
static const char SQL_EXPIRE_HOLD[] =
    "UPDATE reservations SET status = 'EXPIRED', updated_at = $2"
    " WHERE id = $1 AND status = 'HELD' AND expires_at <= $2 RETURNING session_id";
static const char SQL_ANY_EXPIRED[] =
    "SELECT 1 FROM reservations WHERE status = 'HELD' AND expires_at <= $1 LIMIT 1";
static const char SQL_EXPIRED_HOLDS[] =
    "SELECT id FROM reservations WHERE status = 'HELD' AND expires_at <= $1"
    " ORDER BY expires_at LIMIT $2";
/* The payment.completed event's payload, byte for byte as the SQLite adapter's
 * json_object() makes it. */
#define PAYLOAD(id, rid, uid, amount, method, at)                                                  \
    "format('{\"paymentId\":%s,\"reservationId\":%s,\"userId\":%s,\"amount\":%s,"                  \
    "\"method\":\"%s\",\"paidAt\":%s}', " id ", " rid ", " uid ", " amount ", " method ", " at ")"
/* A balance payment in one statement: the payment and its event, the
 * balance and its ledger row, the reservation CONFIRMED and its held seats
 * SOLD. $1 reservation, $2 user, $3 amount, $4 now, $5 method, $6
 * Idempotency-Key, $7 the balance after. The payment's id, how many seats
 * were sold and how many the reservation has (they must agree). */
static const char SQL_PAY[] =
    "WITH p AS (INSERT INTO payments (reservation_id, user_id, amount, method, status,"
    " idempotency_key, created_at, updated_at)"
    " VALUES ($1, $2, $3, $5, 'COMPLETED', $6, $4, $4) RETURNING id),"
    " o AS (INSERT INTO outbox (topic, aggregate_id, payload, created_at)"
    " SELECT 'payment.completed', p.id, "
    /* payload */ PAYLOAD("p.id", "$1::bigint", "$2::bigint", "$3::bigint", "$5::text",
                          "$4::bigint")
    /* created_at */
    ", $4 FROM p),"
    " u AS (UPDATE users SET balance = $7 WHERE id = $2),"
    " l AS (INSERT INTO balance_ledger (user_id, kind, amount, balance_after, ref, created_at)"
    " SELECT $2, 'PAYMENT', -$3::bigint, $7, p.id, $4 FROM p),"
    " r AS (UPDATE reservations SET status = 'CONFIRMED', updated_at = $4 WHERE id = $1),"
    " s AS (UPDATE seats SET status = 2"
    " WHERE id IN (SELECT seat_id FROM reservation_seats WHERE reservation_id = $1)"
    " AND reservation_id = $1 AND status = 1 RETURNING 1)"
    " SELECT p.id, (SELECT count(*) FROM s),"
    " (SELECT count(*) FROM reservation_seats WHERE reservation_id = $1) FROM p";
/* The event of a card payment: payment, reservation, user, amount, method, time. */
static const char SQL_OUTBOX[] = "INSERT INTO outbox (topic, aggregate_id, payload, created_at)"
                                 " VALUES ('payment.completed', $1, "
    /* payload */ PAYLOAD("$1::bigint", "$2::bigint", "$3::bigint", "$4::bigint", "$5::text",
                          "$6::bigint")
    /* created_at */ ", $6)";
static const char SQL_IDEM_CLAIM[] =
    "INSERT INTO idempotency_keys AS k (scope, key, request_hash, status_code, response,"
    " created_at) VALUES ($1, $2, $3, NULL, NULL, $4) ON CONFLICT (scope, key) DO UPDATE SET"
    " request_hash = excluded.request_hash, status_code = NULL, response = NULL,"
    " created_at = excluded.created_at WHERE k.created_at <= $5 RETURNING 1";
static const char SQL_IDEM_GET[] =
    "SELECT request_hash, status_code, response FROM idempotency_keys"
    " WHERE scope = $1 AND key = $2 AND created_at > $3 AND status_code IS NOT NULL";
static const char SQL_IDEM_PUT[] =
    "UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE scope = $1 AND key = $2";
static const char SQL_IDEM_PURGE[] = "DELETE FROM idempotency_keys WHERE created_at < $1";
static const char SQL_CARD_PENDING_OF[] =
    "SELECT id, amount, coalesce(idempotency_key, ''), created_at FROM payments"
    " WHERE reservation_id = $1 AND status = 'PENDING'";
static const char SQL_CARD_ATTEMPTS[] = "SELECT count(*) FROM payments WHERE reservation_id = $1";
static const char SQL_CARD_INSERT[] =
    "INSERT INTO payments (reservation_id, user_id, amount, method, status, idempotency_key,"
    " created_at, updated_at) VALUES ($1, $2, $3, 'card', 'PENDING', $5, $4, $4) RETURNING id";
static const char SQL_CARD_GET[] = "SELECT reservation_id, user_id, amount, status FROM payments"
                                   " WHERE id = $1 AND method = 'card'";
static const char SQL_CARD_SET[] =
    "UPDATE payments SET status = $3, gateway_charge_id = $4, updated_at = $2"
    " WHERE id = $1 AND status = 'PENDING'";
static const char SQL_CARD_LIST[] =
    "SELECT id, reservation_id, user_id, amount, created_at, coalesce(idempotency_key, '')"
    " FROM payments WHERE status = 'PENDING' AND method = 'card' AND created_at < $1"
    " ORDER BY updated_at, id LIMIT $2";

/* ---- small helpers -------------------------------------------------------- */

static int exec_ints(struct pgconn *c, const char *sql, int n, const int64_t *v, const char *op) {
    struct pg_args a;
    pg_args_ints(&a, n, v);
    return pg_exec(c, sql, &a, NULL, op);
}

static int changes_ints(struct pgconn *c, const char *sql, int n, const int64_t *v,
                        int64_t *changes, const char *op) {
    struct pg_args a;
    pg_args_ints(&a, n, v);
    return pg_exec_changes(c, sql, &a, changes, op);
}

static int query_ints(struct pgconn *c, const char *sql, int n, const int64_t *v, int64_t *out,
                      const char *op) {
    struct pg_args a;
    pg_args_ints(&a, n, v);
    return pg_query_int(c, sql, &a, out, op);
}

static int is_business(int err) {
    return err == ERR_NOT_FOUND || err == ERR_FORBIDDEN || err == ERR_CONFLICT ||
           err == ERR_INSUFFICIENT || err == ERR_INVALID;
}

static int ensure_user(struct pgconn *c, int64_t user_id, int64_t now) {
    int64_t v[2] = {user_id, now};
    return exec_ints(c, SQL_USER_ENSURE, 2, v, "ensure_user");
}

/* The user's balance (sql: plain or FOR UPDATE); 0 for a user not stored yet. */
static int balance_of(struct pgconn *c, const char *sql, int64_t user_id, int64_t *balance) {
    int err = query_ints(c, sql, 1, &user_id, balance, "balance");
    if (err == ERR_NOT_FOUND) {
        *balance = 0;
        return 0;
    }
    return err;
}

/* Sets the balance and writes its ledger row (design note 4). ref 0 = none. */
static int move_balance(struct pgconn *c, int64_t user_id, const char *kind, int64_t amount,
                        int64_t after, int64_t ref, int64_t now) {
    struct pg_args a = {0};
    pg_arg_int(&a, user_id);
    pg_arg_int(&a, amount);
    pg_arg_int(&a, after);
    pg_arg_opt(&a, ref);
    pg_arg_int(&a, now);
    pg_arg_str(&a, kind);
    return pg_exec(c, SQL_MOVE_BALANCE, &a, NULL, "move_balance");
}

/* ---- reservations: reading --------------------------------------------------- */

static void read_res_seat(const PGresult *r, int i, struct arena *a, void *out) {
    struct store_seat *x = out;
    x->id = pg_int(r, i, 0);
    x->session_id = pg_int(r, i, 1);
    x->number = pg_int(r, i, 2);
    x->grade = pg_str(r, i, 3, a);
    x->price = pg_int(r, i, 4);
}

/* The reservation row of res (SQL_RES or SQL_RES_LOCK) into r, and clears
 * res. ERR_NOT_FOUND. */
static int res_of(PGresult *res, struct store_reservation *r) {
    if (PQntuples(res) == 0) {
        PQclear(res);
        return ERR_NOT_FOUND;
    }
    memset(r, 0, sizeof(*r));
    r->id = pg_int(res, 0, 0);
    r->user_id = pg_int(res, 0, 1);
    r->session_id = pg_int(res, 0, 2);
    r->status = store_res_status_of(PQgetvalue(res, 0, 3));
    r->total_price = pg_int(res, 0, 4);
    r->created_at_ms = pg_int(res, 0, 5);
    r->expires_at_ms = pg_int(res, 0, 6);
    r->updated_at_ms = pg_int(res, 0, 7);
    PQclear(res);
    return r->status < 0 ? ERR_INTERNAL : 0;
}

/* The reservation row without its seats (sql: plain or FOR UPDATE). ERR_NOT_FOUND. */
static int read_res(struct pgconn *c, const char *sql, int64_t id, struct store_reservation *r) {
    struct pg_args a;
    pg_args_ints(&a, 1, &id);
    PGresult *res;
    int err = pg_exec(c, sql, &a, &res, "reservation");
    return err ? err : res_of(res, r);
}

static int read_res_full(struct pgconn *c, struct arena *a, int64_t id,
                         struct store_reservation *r) {
    int err = read_res(c, SQL_RES, id, r);
    if (err) return err;
    struct pg_args args;
    pg_args_ints(&args, 1, &id);
    PGresult *res;
    err = pg_exec(c, SQL_RES_SEATS, &args, &res, "reservation_seats");
    if (err) return err;
    pg_collect(res, a, sizeof(struct store_seat), read_res_seat, (void **)&r->seats, &r->nseats);
    PQclear(res);
    return 0;
}

int pgb_get_reservation(struct store *s, struct arena *a, int64_t id,
                        struct store_reservation *out) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    return read_res_full(c, a, id, out);
}

static int set_res_status(struct pgconn *c, int64_t id, int status, int64_t now) {
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    pg_arg_int(&a, now);
    pg_arg_str(&a, store_res_status_name(status));
    return pg_exec(c, SQL_SET_RES_STATUS, &a, NULL, "reservation_status");
}

/* Releases the reservation's held seats and moves the session's counter. */
static int release_seats(struct pgconn *c, int64_t id, int64_t session_id) {
    int64_t released = 0;
    int err = changes_ints(c, SQL_RELEASE_SEATS, 1, &id, &released, "release_seats");
    if (err == 0 && released) pg_move_avail(c, session_id, released);
    return err;
}

/* release_seats and the reservation's new status; its row is locked already. */
static int release_res(struct pgconn *c, int64_t id, int64_t session_id, int status, int64_t now) {
    int err = release_seats(c, id, session_id);
    return err ? err : set_res_status(c, id, status, now);
}

/* Expires reservation rid when it is HELD and its hold ran out (a conditional
 * update: of concurrent sweepers and holds exactly one does it), releasing
 * its seats. *freed = 1 when this call did. */
static int take_back_expired(struct pgconn *c, int64_t rid, int64_t now, int *freed) {
    int64_t v[2] = {rid, now}, session_id = 0;
    *freed = 0;
    int err = query_ints(c, SQL_EXPIRE_HOLD, 2, v, &session_id, "expire_hold");
    if (err == ERR_NOT_FOUND) return 0;
    if (err == 0) err = release_seats(c, rid, session_id);
    if (err == 0) *freed = 1;
    return err;
}

/* ---- holds -------------------------------------------------------------------- */

struct seat_row {
    int64_t session_id, status, holder;
};

static int cmp_seat_number(const void *x, const void *y) {
    const struct store_seat *a = x, *b = y;
    return (a->number > b->number) - (a->number < b->number);
}

struct hold_job {
    struct store_hold *h;
    struct arena *a;
    struct store_reservation *out;
    struct pg_ahead fast; /* its seats, and SQL_HOLD_FAST with its arguments */
};

/* Marks seat i as the one at fault with the status it has. */
static int seat_conflict(struct hold_job *j, size_t i, int64_t status) {
    j->h->bad_seat_id = j->h->seat_ids[i];
    j->h->bad_seat_number = j->out->seats[i].number;
    j->h->bad_seat_status = (int)status;
    return ERR_CONFLICT;
}

/* The seat ids as a PostgreSQL array literal, in a. */
static const char *id_array(struct arena *a, const int64_t *ids, size_t n) {
    size_t cap = 3 + n * 21, len = 1;
    char *out = arena_alloc(a, cap);
    out[0] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%" PRId64, i ? "," : "", ids[i]);
    snprintf(out + len, cap - len, "}");
    return out;
}

/* Reads seat i's row of r (the one with its id) into the job; 0 when there is none. */
static int take_seat_row(const PGresult *r, struct hold_job *j, size_t i, struct seat_row *row) {
    for (int k = 0; k < PQntuples(r); k++) {
        if (pg_int(r, k, 0) != j->h->seat_ids[i]) continue;
        struct store_seat *seat = &j->out->seats[i];
        seat->id = j->h->seat_ids[i];
        seat->session_id = row->session_id = pg_int(r, k, 1);
        seat->number = pg_int(r, k, 2);
        seat->grade = pg_str(r, k, 3, j->a);
        seat->price = pg_int(r, k, 4);
        row->status = pg_int(r, k, 5);
        row->holder = pg_int(r, k, 6);
        return 1;
    }
    return 0;
}

/* The session and every seat, read at once before any write: each seat
 * exists and is of the session, else ERR_NOT_FOUND naming the first one
 * (in request order) that is not. */
static int hold_read_seats(struct pgconn *c, struct hold_job *j, struct seat_row *rows) {
    struct store_hold *h = j->h;
    struct pg_args args = {0};
    pg_arg_int(&args, h->session_id);
    pg_arg_int(&args, h->concert_id);
    pg_arg_str(&args, id_array(j->a, h->seat_ids, h->nseats));
    PGresult *r;
    int err = pg_exec(c, SQL_HOLD_READ, &args, &r, "hold_read");
    if (err) return err;
    if (PQntuples(r) == 0) err = ERR_NOT_FOUND; /* no such session of the concert */
    for (size_t i = 0; err == 0 && i < h->nseats; i++) {
        if (take_seat_row(r, j, i, &rows[i]) && rows[i].session_id == h->session_id) continue;
        h->bad_seat_id = h->seat_ids[i];
        err = ERR_NOT_FOUND;
    }
    PQclear(r);
    return err;
}

/* Every seat is free, or held by a hold that ran out and is taken back. */
static int hold_check_free(struct pgconn *c, struct hold_job *j, struct seat_row *rows) {
    for (size_t i = 0; i < j->h->nseats; i++) {
        int freed = 0, err = 0;
        if (rows[i].status == STORE_SEAT_HELD)
            err = take_back_expired(c, rows[i].holder, j->h->now_ms, &freed);
        if (err) return err;
        if (rows[i].status != STORE_SEAT_FREE && !freed) return seat_conflict(j, i, rows[i].status);
    }
    return 0;
}

/* Not every seat could be claimed for reservation rid: another transaction
 * took one meanwhile (design note 1). The conflict names the first seat, in
 * request order, that is not rid's, with the status it has now. */
static int claim_conflict(struct pgconn *c, struct hold_job *j, const char *ids, int64_t rid) {
    struct pg_args a = {0};
    pg_arg_str(&a, ids);
    PGresult *r;
    int err = pg_exec(c, SQL_SEATS_HOLDER, &a, &r, "seats_holder");
    if (err) return err;
    err = ERR_INTERNAL; /* every seat is rid's: the count was wrong */
    for (size_t i = 0; err == ERR_INTERNAL && i < j->h->nseats; i++)
        for (int k = 0; k < PQntuples(r); k++)
            if (pg_int(r, k, 0) == j->h->seat_ids[i] && pg_int(r, k, 2) != rid) {
                int64_t status = pg_int(r, k, 1);
                err = seat_conflict(j, i, status ? status : STORE_SEAT_HELD);
                break;
            }
    PQclear(r);
    return err;
}

/* The reservation and its seats in one statement (SQL_HOLD). */
static int hold_claim(struct pgconn *c, struct hold_job *j, int64_t total) {
    struct store_hold *h = j->h;
    int64_t v[5] = {h->user_id, h->session_id, total, h->now_ms, h->expires_at_ms};
    struct pg_args a;
    pg_args_ints(&a, 5, v);
    const char *ids = id_array(j->a, h->seat_ids, h->nseats);
    pg_arg_str(&a, ids);
    PGresult *r;
    int err = pg_exec(c, SQL_HOLD, &a, &r, "hold");
    if (err) return err;
    int64_t rid = pg_int(r, 0, 0), claimed = pg_int(r, 0, 1);
    PQclear(r);
    if (claimed != (int64_t)h->nseats) return claim_conflict(c, j, ids, rid);
    pg_move_avail(c, h->session_id, -(int64_t)h->nseats);
    j->out->id = rid;
    return 0;
}

/* ERR_LIMIT when the user holds h->max_live_holds live holds already. Under
 * READ COMMITTED two committers could each count the same holds and both
 * insert one more, so the user's row is locked first (made if new): holds of
 * one user then count one after the other, as on SQLite's single writer. */
static int hold_check_cap(struct pgconn *c, const struct store_hold *h) {
    if (h->max_live_holds <= 0) return 0;
    int64_t balance, n = 0, v[2] = {h->user_id, h->now_ms};
    int err = ensure_user(c, h->user_id, h->now_ms);
    if (err == 0) err = balance_of(c, SQL_BALANCE_LOCK, h->user_id, &balance);
    if (err == 0) err = query_ints(c, SQL_LIVE_HOLDS, 2, v, &n, "live_holds");
    if (err) return err;
    return n >= h->max_live_holds ? ERR_LIMIT : 0;
}

/* SQL_HOLD_FAST: 0 with the reservation in j->out and *total, 1 when the
 * long way must decide (nothing was written), or an error. */
static int hold_fast(struct pgconn *c, struct hold_job *j, int64_t *total) {
    struct store_hold *h = j->h;
    PGresult *r = pg_take_ahead(c); /* sent ahead with the batch, or now */
    int ahead = r != NULL;
    if (!r) {
        int err = pg_exec(c, SQL_HOLD_FAST, &j->fast.args, &r, "hold_fast");
        if (err) return err;
    }
    int rows = PQntuples(r);
    if (rows != (int)h->nseats) {
        PQclear(r);
        if (rows == 0) return 1;
        /* all or none: the locks hold the seats. Written ahead, the claim
         * stands outside this job's savepoint: fail the whole batch. */
        if (ahead) c->lost_savepoint = 1;
        return ERR_INTERNAL;
    }
    *total = 0;
    for (int i = 0; i < rows; i++) {
        struct store_seat *seat = &j->out->seats[i];
        seat->id = pg_int(r, i, 1);
        seat->session_id = h->session_id;
        seat->number = pg_int(r, i, 2);
        seat->grade = pg_str(r, i, 3, j->a);
        seat->price = pg_int(r, i, 4);
        *total += seat->price; /* no overflow: the statement checked the sum */
    }
    j->out->id = pg_int(r, 0, 0);
    PQclear(r);
    pg_move_avail(c, h->session_id, -(int64_t)h->nseats);
    return 0;
}

/* The long way: read every seat, name the first fault, take back seats of
 * expired holds, then claim. */
static int hold_slow(struct pgconn *c, struct hold_job *j, int64_t *total) {
    struct store_hold *h = j->h;
    struct seat_row *rows = arena_calloc(j->a, h->nseats, sizeof(*rows));
    int err = hold_read_seats(c, j, rows);
    if (err == 0) err = hold_check_cap(c, h);
    if (err == 0) err = hold_check_free(c, j, rows);
    *total = 0;
    for (size_t i = 0; err == 0 && i < h->nseats; i++)
        if (__builtin_add_overflow(*total, j->out->seats[i].price, total)) err = ERR_INVALID;
    return err ? err : hold_claim(c, j, *total); /* creates the user on first use */
}

static int hold_apply(struct pgconn *c, void *arg) {
    struct hold_job *j = arg;
    struct store_hold *h = j->h;
    h->bad_seat_id = h->bad_seat_number = 0;
    h->bad_seat_status = 0;
    int64_t total = 0;
    /* At the cap, the long way tells which refusal comes first. */
    int err = hold_check_cap(c, h);
    if (err == 0) err = hold_fast(c, j, &total);
    if (err == 1 || err == ERR_LIMIT) err = hold_slow(c, j, &total);
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

int pgb_hold_seats(struct store *s, struct arena *a, struct store_hold *h,
                   struct store_reservation *out) {
    if (h->nseats == 0 || !h->seat_ids) return ERR_INVALID;
    memset(out, 0, sizeof(*out));
    out->seats = arena_calloc(a, h->nseats, sizeof(*out->seats));
    out->nseats = h->nseats;
    /* Its seats are locked with the batch's (pg_commit.c note 9). With the
     * live-hold cap, so is the user's row, and the cap's check comes first:
     * nothing is sent ahead. */
    int capped = h->max_live_holds > 0;
    struct hold_job j = {h, a, out,
                         {h->seat_ids, h->nseats, capped ? h->user_id : 0,
                          capped ? NULL : SQL_HOLD_FAST, {0}}};
    int64_t v[5] = {h->user_id, h->session_id, h->concert_id, h->now_ms, h->expires_at_ms};
    pg_args_ints(&j.fast.args, 5, v);
    pg_arg_str(&j.fast.args, id_array(a, h->seat_ids, h->nseats));
    pg_arg_int(&j.fast.args, (int64_t)h->nseats);
    int err = pg_write_ahead((struct pg_store *)s, h->session_id, &j.fast, hold_apply, &j);
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

static int cancel_apply(struct pgconn *c, void *arg) {
    struct cancel_job *j = arg;
    struct store_reservation r;
    int err = read_res(c, SQL_RES_LOCK, j->id, &r);
    if (err) return err;
    int verdict = j->check(&r, j->caller, 0, j->now);
    if (verdict < 0) return verdict;
    if (verdict == 0) err = release_res(c, r.id, r.session_id, STORE_RES_CANCELLED, j->now);
    return err ? err : read_res_full(c, j->a, j->id, j->out);
}

int pgb_cancel_reservation(struct store *s, struct arena *a, int64_t id, int64_t caller,
                           int64_t now_ms, store_res_check check, struct store_reservation *out) {
    struct cancel_job j = {id, caller, now_ms, check, a, out};
    return pg_write((struct pg_store *)s, cancel_apply, &j);
}

struct expire_job {
    int64_t now, max, n;
};

static int expire_apply(struct pgconn *c, void *arg) {
    struct expire_job *j = arg;
    int64_t v[2] = {j->now, j->max};
    struct pg_args a;
    pg_args_ints(&a, 2, v);
    PGresult *r;
    j->n = 0;
    int err = pg_exec(c, SQL_EXPIRED_HOLDS, &a, &r, "expired_holds");
    if (err) return err;
    for (int i = 0; i < PQntuples(r) && err == 0; i++) {
        int freed = 0;
        err = take_back_expired(c, pg_int(r, i, 0), j->now, &freed);
        j->n += freed;
    }
    PQclear(r);
    return err;
}

int pgb_expire_holds(struct store *s, int64_t now_ms, int64_t max, int64_t *n) {
    if (n) *n = 0;
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t one; /* a read first: no write at all when nothing is due */
    int err = query_ints(c, SQL_ANY_EXPIRED, 1, &now_ms, &one, "any_expired");
    if (err == ERR_NOT_FOUND) return 0;
    if (err) return err;
    struct expire_job j = {now_ms, max < 1 ? 1 : (max > 256 ? 256 : max), 0};
    err = pg_write((struct pg_store *)s, expire_apply, &j);
    if (err == 0 && n) *n = j.n;
    return err;
}

/* ---- idempotent jobs ------------------------------------------------------------- */

struct idem_job {
    struct store_idem *idem; /* NULL: no key */
    struct arena *a;
    int64_t now;
    int (*op)(struct pgconn *c, void *arg);
    void *arg;
    int op_err; /* the op's business error, answered and stored */
};

/* The stored response of the key: 0 with idem->replayed, 0 with nothing
 * (none younger than the TTL), or ERR_IDEMPOTENCY for another request. */
static int idem_lookup(struct pgconn *c, struct store_idem *idem, struct arena *a, int64_t now) {
    struct pg_args args = {0};
    pg_arg_str(&args, idem->scope);
    pg_arg_str(&args, idem->key);
    pg_arg_int(&args, now - idem->ttl_ms);
    PGresult *r;
    int err = pg_exec(c, SQL_IDEM_GET, &args, &r, "idempotency_get");
    if (err) return err;
    if (PQntuples(r) > 0) {
        if (strcmp(PQgetvalue(r, 0, 0), idem->hash) != 0) {
            err = ERR_IDEMPOTENCY;
        } else {
            idem->replayed = 1;
            idem->status = (int)pg_int(r, 0, 1);
            idem->body = pg_str(r, 0, 2, a);
            idem->len = (size_t)PQgetlength(r, 0, 2);
        }
    }
    PQclear(r);
    return err;
}

/* Claims the key for this transaction (design note 1): 1 when claimed, 0
 * when a live row of another, committed, request is there. */
static int idem_claim(struct pgconn *c, struct idem_job *j, int *claimed) {
    struct store_idem *idem = j->idem;
    struct pg_args args = {0};
    pg_arg_str(&args, idem->scope);
    pg_arg_str(&args, idem->key);
    pg_arg_str(&args, idem->hash);
    pg_arg_int(&args, j->now);
    pg_arg_int(&args, j->now - idem->ttl_ms);
    PGresult *r;
    int err = pg_exec(c, SQL_IDEM_CLAIM, &args, &r, "idempotency_claim");
    if (err) return err;
    *claimed = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

static int idem_store(struct pgconn *c, struct store_idem *idem, int status, const char *body,
                      size_t len, struct arena *a) {
    struct pg_args args = {0};
    pg_arg_str(&args, idem->scope);
    pg_arg_str(&args, idem->key);
    pg_arg_int(&args, status);
    pg_arg_str(&args, arena_strndup(a, body ? body : "", len));
    return pg_exec(c, SQL_IDEM_PUT, &args, NULL, "idempotency_put");
}

static int idem_apply(struct pgconn *c, void *arg) {
    struct idem_job *j = arg;
    j->op_err = 0;
    if (!j->idem) return j->op(c, j->arg);
    struct store_idem *idem = j->idem;
    idem->replayed = 0;
    idem->body = NULL;
    idem->len = 0;
    int claimed = 0;
    int err = idem_claim(c, j, &claimed);
    if (err) return err;
    if (!claimed) {
        err = idem_lookup(c, idem, j->a, j->now);
        return err ? err : (idem->replayed ? 0 : ERR_INTERNAL);
    }
    err = pg_step_begin(c);
    if (err) return err;
    int op_err = j->op(c, j->arg);
    err = pg_step_end(c, op_err);
    if (err && !(err == op_err && is_business(op_err))) return err;
    int status = 0;
    const char *body = NULL;
    size_t len = 0;
    idem->render(idem->ctx, op_err, &status, &body, &len);
    j->op_err = op_err;
    if (status >= 500) return op_err ? op_err : ERR_INTERNAL; /* the claim is rolled back */
    return idem_store(c, idem, status, body, len, j->a);
}

int pgb_idem_get(struct store *s, struct arena *a, struct store_idem *idem, int64_t now_ms) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    idem->replayed = 0;
    return idem_lookup(c, idem, a, now_ms);
}

/* Runs op as one job, with idempotency when idem is not NULL. Returns the
 * op's result, or 0 with idem->replayed set. */
static int run_idempotent(struct store *s, struct arena *a, struct store_idem *idem, int64_t now,
                          int (*op)(struct pgconn *, void *), void *arg) {
    struct idem_job j = {idem, a, now, op, arg, 0};
    int err = pg_write((struct pg_store *)s, idem_apply, &j);
    return err ? err : j.op_err;
}

/* ---- balance ------------------------------------------------------------------------ */

int pgb_get_balance(struct store *s, int64_t user_id, int64_t *balance) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    return balance_of(c, SQL_BALANCE, user_id, balance);
}

static int charge_op(struct pgconn *c, void *arg) {
    struct store_charge *ch = arg;
    int64_t balance, after;
    int err = ensure_user(c, ch->user_id, ch->now_ms);
    if (err == 0) err = balance_of(c, SQL_BALANCE_LOCK, ch->user_id, &balance);
    if (err == 0) err = ch->credit(balance, ch->amount, &after);
    if (err == 0) err = move_balance(c, ch->user_id, "CHARGE", ch->amount, after, 0, ch->now_ms);
    if (err == 0) ch->balance = after;
    return err;
}

int pgb_charge(struct store *s, struct arena *a, struct store_charge *c, struct store_idem *idem) {
    if (c->amount <= 0 || !c->credit) return ERR_INVALID;
    return run_idempotent(s, a, idem, c->now_ms, charge_op, c);
}

/* ---- payments ----------------------------------------------------------------------- */

struct pay_job {
    struct store_pay *p;
    const char *key; /* Idempotency-Key, kept on the payment row; NULL = none */
};

/* ERR_INTERNAL (logged) unless every seat of reservation rid was sold. */
static int all_sold(int64_t rid, int64_t sold, int64_t want) {
    if (sold == want) return 0;
    LOG_ERROR(MOD,
              "op=pay reservation=%" PRId64 " msg=\"%" PRId64 " of %" PRId64 " seats were held\"",
              rid, sold, want);
    return ERR_INTERNAL;
}

/* The reservation CONFIRMED and its seats from HELD to SOLD: all of them, or
 * ERR_INTERNAL. */
static int confirm_res(struct pgconn *c, int64_t rid, int64_t now) {
    int64_t v[2] = {rid, now};
    struct pg_args a;
    pg_args_ints(&a, 2, v);
    PGresult *r;
    int err = pg_exec(c, SQL_CONFIRM, &a, &r, "confirm");
    if (err) return err;
    int64_t sold = pg_int(r, 0, 0), want = pg_int(r, 0, 1);
    PQclear(r);
    return all_sold(rid, sold, want);
}

/* The payment.completed event of card payment p, in its transaction. */
static int outbox_payment(struct pgconn *c, const struct store_payment *p) {
    int64_t v[4] = {p->id, p->reservation_id, p->user_id, p->amount};
    struct pg_args a;
    pg_args_ints(&a, 4, v);
    pg_arg_str(&a, p->method);
    pg_arg_int(&a, p->paid_at_ms);
    return pg_exec(c, SQL_OUTBOX, &a, NULL, "outbox_payment");
}

/* The balance payment of reservation r, whose price the balance covers, in
 * one statement (SQL_PAY): payment, event, balance, ledger, confirmation. */
static int pay_write(struct pgconn *c, struct pay_job *j, const struct store_reservation *r,
                     int64_t balance) {
    struct store_pay *p = j->p;
    struct pg_args a = {0};
    pg_arg_int(&a, r->id);
    pg_arg_int(&a, p->user_id);
    pg_arg_int(&a, r->total_price);
    pg_arg_int(&a, p->now_ms);
    pg_arg_str(&a, p->method);
    pg_arg_str(&a, j->key);
    pg_arg_int(&a, balance - r->total_price);
    PGresult *res;
    int err = pg_exec(c, SQL_PAY, &a, &res, "pay");
    if (err) return err;
    int64_t sold = pg_int(res, 0, 1), want = pg_int(res, 0, 2);
    p->out.id = pg_int(res, 0, 0);
    PQclear(res);
    err = all_sold(r->id, sold, want);
    if (err) return err;
    p->out.reservation_id = r->id;
    p->out.user_id = p->user_id;
    p->out.amount = r->total_price;
    p->out.method = p->method;
    p->out.paid_at_ms = p->now_ms;
    return 0;
}

/* The reservation, then the payer's balance, both locked (design note 1),
 * in one round trip; a payer not stored yet has 0. */
static int pay_lock(struct pgconn *c, const struct store_pay *p, struct store_reservation *r,
                    int64_t *balance) {
    static const char *const sql[2] = {SQL_RES_LOCK, SQL_BALANCE_LOCK};
    struct pg_args ra, ba;
    pg_args_ints(&ra, 1, &p->reservation_id);
    pg_args_ints(&ba, 1, &p->user_id);
    const struct pg_args *args[2] = {&ra, &ba};
    PGresult *res[2];
    int err = pg_exec_many(c, 2, sql, args, res, "pay_lock");
    if (err) return err;
    *balance = PQntuples(res[1]) > 0 ? pg_int(res[1], 0, 0) : 0;
    PQclear(res[1]);
    return res_of(res[0], r);
}

static int pay_op(struct pgconn *c, void *arg) {
    struct pay_job *j = arg;
    struct store_pay *p = j->p;
    struct store_reservation r;
    int64_t balance = 0;
    memset(&p->out, 0, sizeof(p->out));
    int err = pay_lock(c, p, &r, &balance);
    if (err) return err;
    p->res = r;
    p->balance = balance;
    err = p->check(&r, p->user_id, balance, p->now_ms);
    if (err) return err;
    if (strcmp(p->method, "balance") != 0 || balance < r.total_price) return ERR_INTERNAL;
    return pay_write(c, j, &r, balance);
}

int pgb_pay(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem) {
    if (!p->check || !p->method) return ERR_INVALID;
    memset(&p->out, 0, sizeof(p->out));
    memset(&p->res, 0, sizeof(p->res));
    p->balance = 0;
    struct pay_job j = {p, idem ? idem->key : NULL};
    return run_idempotent(s, a, idem, p->now_ms, pay_op, &j);
}

/* ---- card payments (design note 5) ------------------------------------------------- */

static int card_read_pending(struct pgconn *c, struct store_card *k) {
    struct pg_args a;
    pg_args_ints(&a, 1, &k->reservation_id);
    PGresult *r;
    int err = pg_exec(c, SQL_CARD_PENDING_OF, &a, &r, "card_pending_of");
    if (err) return err;
    if (PQntuples(r) > 0) {
        k->payment_id = pg_int(r, 0, 0);
        k->amount = pg_int(r, 0, 1);
        snprintf(k->key, sizeof(k->key), "%s", PQgetvalue(r, 0, 2));
        k->created_at_ms = pg_int(r, 0, 3);
    } else {
        err = ERR_NOT_FOUND;
    }
    PQclear(r);
    return err;
}

static int card_begin_apply(struct pgconn *c, void *arg) {
    struct store_card *k = arg;
    k->existing = 0;
    int err = read_res(c, SQL_RES_LOCK, k->reservation_id, &k->res);
    if (err) return err;
    int verdict = k->check(&k->res, k->user_id, 0, k->now_ms);
    if (verdict < 0) return verdict;
    if (verdict == 1) {
        k->existing = 1;
        err = card_read_pending(c, k);
        return err == ERR_NOT_FOUND ? ERR_INTERNAL : err; /* PAYMENT_PENDING without one */
    }
    int64_t attempts = 0;
    err = query_ints(c, SQL_CARD_ATTEMPTS, 1, &k->reservation_id, &attempts, "card_attempts");
    if (err) return err;
    k->make_key(k->reservation_id, attempts + 1, k->key, sizeof(k->key));
    int64_t v[4] = {k->reservation_id, k->user_id, k->res.total_price, k->now_ms};
    struct pg_args a;
    pg_args_ints(&a, 4, v);
    pg_arg_str(&a, k->key);
    err = pg_query_int(c, SQL_CARD_INSERT, &a, &k->payment_id, "card_insert");
    if (err) return err;
    k->amount = k->res.total_price;
    k->created_at_ms = k->now_ms;
    return set_res_status(c, k->reservation_id, STORE_RES_PAYMENT_PENDING, k->now_ms);
}

int pgb_card_begin(struct store *s, struct store_card *c) {
    if (!c->check || !c->make_key) return ERR_INVALID;
    c->existing = 0;
    c->payment_id = c->amount = c->created_at_ms = 0;
    c->key[0] = '\0';
    memset(&c->res, 0, sizeof(c->res));
    return pg_write((struct pg_store *)s, card_begin_apply, c);
}

/* The attempt's row into x->out and x->status. */
static int card_read(struct pgconn *c, struct store_card_settle *x) {
    struct pg_args a;
    pg_args_ints(&a, 1, &x->payment_id);
    PGresult *r;
    int err = pg_exec(c, SQL_CARD_GET, &a, &r, "card_get");
    if (err) return err;
    if (PQntuples(r) > 0) {
        x->out.id = x->payment_id;
        x->out.reservation_id = pg_int(r, 0, 0);
        x->out.user_id = pg_int(r, 0, 1);
        x->out.amount = pg_int(r, 0, 2);
        x->out.method = "card";
        x->status = store_pay_status_of(PQgetvalue(r, 0, 3));
        if (x->status < 0) err = ERR_INTERNAL;
    } else {
        err = ERR_NOT_FOUND;
    }
    PQclear(r);
    return err;
}

/* Writes the attempt's outcome; the reservation r is locked. */
static int card_settle_write(struct pgconn *c, struct store_card_settle *x,
                             const struct store_reservation *r, int to, int res_to) {
    struct pg_args a = {0};
    pg_arg_int(&a, x->payment_id);
    pg_arg_int(&a, x->now_ms);
    pg_arg_str(&a, store_pay_status_name(to));
    pg_arg_str(&a, x->approved ? x->charge_id : NULL);
    int err = pg_exec(c, SQL_CARD_SET, &a, NULL, "card_set");
    if (err) return err;
    if (res_to == STORE_RES_CONFIRMED) {
        x->out.paid_at_ms = x->now_ms;
        err = confirm_res(c, r->id, x->now_ms);
        if (err == 0) err = outbox_payment(c, &x->out);
        return err;
    }
    if (res_to == STORE_RES_HELD) return set_res_status(c, r->id, STORE_RES_HELD, x->now_ms);
    return release_res(c, r->id, r->session_id, STORE_RES_EXPIRED, x->now_ms);
}

static int card_settle_op(struct pgconn *c, void *arg) {
    struct store_card_settle *x = arg;
    struct store_reservation r;
    x->changed = 0;
    x->status = x->res_status = -1;
    memset(&x->out, 0, sizeof(x->out));
    int err = card_read(c, x);
    if (err == 0) err = read_res(c, SQL_RES_LOCK, x->out.reservation_id, &r);
    if (err == 0 && x->status == STORE_PAY_PENDING) err = card_read(c, x); /* after the lock */
    if (err) return err;
    x->res_status = r.status;
    if (x->status != STORE_PAY_PENDING) return 0; /* settled already: report it */
    if (r.status != STORE_RES_PAYMENT_PENDING) return ERR_INTERNAL;
    int to = x->approved ? STORE_PAY_COMPLETED : STORE_PAY_FAILED;
    int res_to = x->approved ? STORE_RES_CONFIRMED : x->after_fail(&r, x->now_ms);
    err = card_settle_write(c, x, &r, to, res_to);
    if (err) return err;
    x->changed = 1;
    x->status = to;
    x->res_status = res_to;
    x->out.paid_at_ms = x->now_ms;
    return 0;
}

int pgb_card_settle(struct store *s, struct arena *a, struct store_card_settle *x,
                    struct store_idem *idem) {
    if (!x->after_fail) return ERR_INVALID;
    x->changed = 0;
    x->status = x->res_status = -1;
    memset(&x->out, 0, sizeof(x->out));
    return run_idempotent(s, a, idem, x->now_ms, card_settle_op, x);
}

static void read_card_pending(const PGresult *r, int i, struct arena *a, void *out) {
    struct store_card_pending *p = out;
    p->payment_id = pg_int(r, i, 0);
    p->reservation_id = pg_int(r, i, 1);
    p->user_id = pg_int(r, i, 2);
    p->amount = pg_int(r, i, 3);
    p->created_at_ms = pg_int(r, i, 4);
    p->key = pg_str(r, i, 5, a);
}

int pgb_card_list_pending(struct store *s, struct arena *a, int64_t created_before_ms, int64_t max,
                          struct store_card_pending **out, size_t *n) {
    *out = NULL;
    *n = 0;
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int64_t v[2] = {created_before_ms, max};
    struct pg_args args;
    pg_args_ints(&args, 2, v);
    PGresult *r;
    int err = pg_exec(c, SQL_CARD_LIST, &args, &r, "card_list_pending");
    if (err) return err;
    pg_collect(r, a, sizeof(**out), read_card_pending, (void **)out, n);
    PQclear(r);
    return 0;
}

/* ---- housekeeping -------------------------------------------------------------------- */

struct purge_job {
    int64_t before, n;
};

static int purge_apply(struct pgconn *c, void *arg) {
    struct purge_job *j = arg;
    return changes_ints(c, SQL_IDEM_PURGE, 1, &j->before, &j->n, "idempotency_purge");
}

int pgb_purge_idempotency(struct store *s, int64_t before_ms, int64_t *n) {
    struct purge_job j = {before_ms, 0};
    int err = pg_write((struct pg_store *)s, purge_apply, &j);
    if (err == 0 && n) *n = j.n;
    return err;
}
