/* test_sqlite_booking.c -- the booking ops of the SQLite store
 * (src/store/sqlite_booking.c) against real SQLite files: holds are all or
 * nothing and keep sessions.available_seats exact, expired holds give their
 * seats back (sweeper and at use), cancel, charge and pay write every row
 * they must (ledger, payment, outbox), and idempotent responses are stored
 * with the money movement and replayed, and card attempts are written
 * PENDING before the gateway call and settled exactly once. A raw
 * connection checks the rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "service/booking.h"
#include "service/payment.h"
#include "store/store.h"
#include "testdb.h"

#define NOW ((int64_t)1800000000000)
#define TTL 300000

struct fx {
    struct testdb db;
    struct store *s;
    struct arena *a;
};

static int setup(void **state) {
    struct fx *f = calloc(1, sizeof(*f));
    testdb_init(&f->db, "booking");
    char err[256];
    if (store_sqlite_open(f->db.path, &f->s, err, sizeof(err)) != 0) fail_msg("open: %s", err);
    assert_int_equal(f->s->ops->migrate(f->s), 0);
    /* 2 concerts x 2 sessions x 10 seats at 1000 won: session 1 has seats 1..10,
     * session 2 seats 11..20, ... */
    struct store_seed o = {
        .concerts = 2, .sessions_per_concert = 2, .seats_per_session = 10, .price = 1000};
    assert_int_equal(f->s->ops->seed(f->s, &o), 0);
    f->a = arena_create();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    f->s->ops->close(f->s);
    arena_destroy(f->a);
    testdb_remove(&f->db);
    free(f);
    return 0;
}

static int hold(struct fx *f, int64_t user, int64_t session, const int64_t *ids, size_t n,
                int64_t now, struct store_hold *h, struct store_reservation *out) {
    *h = (struct store_hold){.concert_id = session <= 2 ? 1 : 2,
                             .session_id = session,
                             .user_id = user,
                             .seat_ids = ids,
                             .nseats = n,
                             .now_ms = now,
                             .expires_at_ms = now + TTL};
    return f->s->ops->hold_seats(f->s, f->a, h, out);
}

static int64_t available(struct fx *f, int64_t session) {
    return testdb_intf(&f->db, "SELECT available_seats FROM sessions WHERE id = %lld",
                       (long long)session);
}

/* Invariant checks every test ends with. */
static void assert_consistent(struct fx *f) {
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM sessions ss WHERE available_seats <>"
                                         " (SELECT count(*) FROM seats WHERE session_id = ss.id"
                                         " AND status = 0)"),
                     0);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM users u WHERE balance <>"
                                         " (SELECT coalesce(sum(amount), 0) FROM balance_ledger"
                                         " WHERE user_id = u.id)"),
                     0);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM seats st WHERE status <> 0 AND"
                                 " (SELECT status FROM reservations WHERE id = st.reservation_id)"
                                 " NOT IN ('HELD', 'PAYMENT_PENDING', 'CONFIRMED')"),
                     0);
}

/* ---- holds -------------------------------------------------------------------- */

static void test_hold_takes_every_seat_and_moves_the_counter(void **state) {
    struct fx *f = *state;
    int64_t ids[3] = {3, 1, 2};
    struct store_hold h;
    struct store_reservation r;
    assert_int_equal(hold(f, 42, 1, ids, 3, NOW, &h, &r), 0);
    assert_true(r.id > 0);
    assert_int_equal(r.user_id, 42);
    assert_int_equal(r.status, STORE_RES_HELD);
    assert_int_equal(r.total_price, 3000);
    assert_int_equal(r.expires_at_ms, NOW + TTL);
    assert_int_equal(r.nseats, 3);
    for (size_t i = 0; i < 3; i++) assert_int_equal(r.seats[i].number, (int64_t)i + 1);
    assert_int_equal(available(f, 1), 7);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM seats WHERE status = 1 AND"
                                 " reservation_id = %lld",
                                 (long long)r.id),
                     3);
    assert_int_equal(
        testdb_intf(&f->db, "SELECT count(*) FROM users WHERE id = 42 AND balance = 0"), 1);
    struct store_reservation g;
    assert_int_equal(f->s->ops->get_reservation(f->s, f->a, r.id, &g), 0);
    assert_int_equal(g.nseats, 3);
    assert_int_equal(g.total_price, 3000);
    assert_consistent(f);
}

static void test_hold_with_one_taken_seat_takes_none(void **state) {
    struct fx *f = *state;
    int64_t first[1] = {5}, second[3] = {4, 5, 6};
    struct store_hold h;
    struct store_reservation r;
    assert_int_equal(hold(f, 1, 1, first, 1, NOW, &h, &r), 0);
    assert_int_equal(hold(f, 2, 1, second, 3, NOW, &h, &r), ERR_CONFLICT);
    assert_int_equal(h.bad_seat_id, 5);
    assert_int_equal(h.bad_seat_number, 5);
    assert_int_equal(h.bad_seat_status, STORE_SEAT_HELD);
    assert_int_equal(available(f, 1), 9);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM reservations"), 1);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM users WHERE id = 2"), 0);
    assert_consistent(f);
}

static void test_hold_of_foreign_or_unknown_seat_is_not_found(void **state) {
    struct fx *f = *state;
    int64_t foreign[2] = {1, 11}, unknown[2] = {2, 999};
    struct store_hold h;
    struct store_reservation r;
    assert_int_equal(hold(f, 1, 1, foreign, 2, NOW, &h, &r), ERR_NOT_FOUND);
    assert_int_equal(h.bad_seat_id, 11);
    assert_int_equal(hold(f, 1, 1, unknown, 2, NOW, &h, &r), ERR_NOT_FOUND);
    assert_int_equal(h.bad_seat_id, 999);
    h = (struct store_hold){.concert_id = 2,
                            .session_id = 1,
                            .user_id = 1,
                            .seat_ids = foreign,
                            .nseats = 1,
                            .now_ms = NOW,
                            .expires_at_ms = NOW + TTL};
    assert_int_equal(f->s->ops->hold_seats(f->s, f->a, &h, &r), ERR_NOT_FOUND);
    assert_int_equal(h.bad_seat_id, 0); /* the session is not concert 2's */
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM seats WHERE status <> 0"), 0);
    assert_consistent(f);
}

static void test_hold_takes_back_seats_of_a_hold_that_ran_out(void **state) {
    struct fx *f = *state;
    int64_t a[2] = {7, 8}, b[1] = {8};
    struct store_hold h;
    struct store_reservation ra, rb;
    assert_int_equal(hold(f, 1, 1, a, 2, NOW, &h, &ra), 0);
    assert_int_equal(hold(f, 2, 1, b, 1, NOW + TTL - 1, &h, &rb), ERR_CONFLICT);
    assert_int_equal(hold(f, 2, 1, b, 1, NOW + TTL, &h, &rb), 0);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM reservations WHERE id = %lld AND"
                                 " status = 'EXPIRED'",
                                 (long long)ra.id),
                     1);
    assert_int_equal(testdb_intf(&f->db, "SELECT status FROM seats WHERE id = 7"), 0);
    assert_int_equal(testdb_intf(&f->db, "SELECT reservation_id FROM seats WHERE id = 8"), rb.id);
    assert_int_equal(available(f, 1), 9);
    assert_consistent(f);
}

static void test_expire_holds_releases_only_due_holds(void **state) {
    struct fx *f = *state;
    int64_t a[2] = {1, 2}, b[1] = {3};
    struct store_hold h;
    struct store_reservation ra, rb;
    assert_int_equal(hold(f, 1, 1, a, 2, NOW, &h, &ra), 0);
    assert_int_equal(hold(f, 1, 1, b, 1, NOW + 1000, &h, &rb), 0);
    int64_t n = -1;
    assert_int_equal(f->s->ops->expire_holds(f->s, NOW + TTL - 1, 256, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(f->s->ops->expire_holds(f->s, NOW + TTL, 256, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(available(f, 1), 9);
    assert_int_equal(
        testdb_intf(&f->db, "SELECT count(*) FROM reservations WHERE status = 'EXPIRED'"), 1);
    assert_int_equal(f->s->ops->expire_holds(f->s, NOW + 10 * TTL, 256, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(available(f, 1), 10);
    assert_consistent(f);
}

static void test_cancel_releases_seats_once(void **state) {
    struct fx *f = *state;
    int64_t a[2] = {12, 13};
    struct store_hold h;
    struct store_reservation r, c;
    assert_int_equal(hold(f, 5, 2, a, 2, NOW, &h, &r), 0);
    assert_int_equal(available(f, 2), 8);
    assert_int_equal(
        f->s->ops->cancel_reservation(f->s, f->a, r.id, 6, NOW, booking_can_cancel, &c),
        ERR_FORBIDDEN);
    assert_int_equal(
        f->s->ops->cancel_reservation(f->s, f->a, r.id, 5, NOW, booking_can_cancel, &c), 0);
    assert_int_equal(c.status, STORE_RES_CANCELLED);
    assert_int_equal(c.nseats, 2);
    assert_int_equal(available(f, 2), 10);
    assert_int_equal(
        f->s->ops->cancel_reservation(f->s, f->a, r.id, 5, NOW, booking_can_cancel, &c), 0);
    assert_int_equal(available(f, 2), 10);
    assert_int_equal(f->s->ops->cancel_reservation(f->s, f->a, 999, 5, NOW, booking_can_cancel, &c),
                     ERR_NOT_FOUND);
    assert_consistent(f);
}

/* ---- balance and payments ------------------------------------------------------ */

static int charge(struct fx *f, int64_t user, int64_t amount, struct store_idem *idem,
                  int64_t *balance) {
    struct store_charge c = {
        .user_id = user, .amount = amount, .now_ms = NOW, .credit = booking_credit};
    int err = f->s->ops->charge(f->s, f->a, &c, idem);
    if (balance) *balance = c.balance;
    return err;
}

static int pay(struct fx *f, int64_t user, int64_t rid, struct store_idem *idem,
               struct store_pay *p) {
    *p = (struct store_pay){.reservation_id = rid,
                            .user_id = user,
                            .now_ms = NOW,
                            .method = "balance",
                            .check = booking_can_pay};
    return f->s->ops->pay(f->s, f->a, p, idem);
}

static void test_charge_creates_user_and_ledgers_every_change(void **state) {
    struct fx *f = *state;
    int64_t b = -1;
    assert_int_equal(f->s->ops->get_balance(f->s, 77, &b), 0);
    assert_int_equal(b, 0);
    assert_int_equal(charge(f, 77, 500, NULL, &b), 0);
    assert_int_equal(b, 500);
    assert_int_equal(charge(f, 77, 250, NULL, &b), 0);
    assert_int_equal(b, 750);
    assert_int_equal(f->s->ops->get_balance(f->s, 77, &b), 0);
    assert_int_equal(b, 750);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM balance_ledger WHERE user_id = 77 AND"
                                 " kind = 'CHARGE'"),
                     2);
    assert_int_equal(charge(f, 77, INT64_MAX - 750, NULL, &b), 0);
    assert_int_equal(charge(f, 77, 1, NULL, &b), ERR_INVALID); /* would overflow */
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM balance_ledger WHERE user_id = 77"),
                     3);
    assert_consistent(f);
}

static void test_pay_moves_money_confirms_sells_and_records_everything(void **state) {
    struct fx *f = *state;
    int64_t ids[2] = {1, 2};
    struct store_hold h;
    struct store_reservation r;
    struct store_pay p;
    assert_int_equal(hold(f, 9, 1, ids, 2, NOW, &h, &r), 0);
    assert_int_equal(pay(f, 9, r.id, NULL, &p), ERR_INSUFFICIENT);
    assert_int_equal(p.balance, 0);
    assert_int_equal(p.res.total_price, 2000);
    assert_int_equal(charge(f, 9, 2500, NULL, NULL), 0);
    assert_int_equal(pay(f, 10, r.id, NULL, &p), ERR_FORBIDDEN);
    assert_int_equal(pay(f, 9, 999, NULL, &p), ERR_NOT_FOUND);
    assert_int_equal(pay(f, 9, r.id, NULL, &p), 0);
    assert_true(p.out.id > 0);
    assert_int_equal(p.out.amount, 2000);
    assert_int_equal(testdb_intf(&f->db, "SELECT balance FROM users WHERE id = 9"), 500);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM seats WHERE status = 2 AND"
                                 " reservation_id = %lld",
                                 (long long)r.id),
                     2);
    assert_int_equal(
        testdb_intf(&f->db, "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'"), 1);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM payments WHERE status = 'COMPLETED' AND"
                                 " amount = 2000"),
                     1);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT' AND"
                                 " amount = -2000 AND ref = %lld",
                                 (long long)p.out.id),
                     1);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM outbox WHERE topic = 'payment.completed'"
                                 " AND aggregate_id = %lld AND"
                                 " json_extract(payload, '$.amount') = 2000",
                                 (long long)p.out.id),
                     1);
    assert_int_equal(available(f, 1), 8);
    assert_int_equal(pay(f, 9, r.id, NULL, &p), ERR_CONFLICT); /* paid at most once */
    assert_int_equal(testdb_intf(&f->db, "SELECT balance FROM users WHERE id = 9"), 500);
    assert_consistent(f);
}

static void test_pay_of_a_hold_past_its_time_is_refused(void **state) {
    struct fx *f = *state;
    int64_t ids[1] = {4};
    struct store_hold h;
    struct store_reservation r;
    struct store_pay p;
    assert_int_equal(hold(f, 9, 1, ids, 1, NOW - TTL, &h, &r), 0); /* expires at NOW */
    assert_int_equal(charge(f, 9, 5000, NULL, NULL), 0);
    assert_int_equal(pay(f, 9, r.id, NULL, &p), ERR_CONFLICT);
    assert_int_equal(testdb_intf(&f->db, "SELECT balance FROM users WHERE id = 9"), 5000);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM payments"), 0);
    assert_consistent(f);
}

/* ---- idempotency ------------------------------------------------------------------ */

struct render_ctx {
    struct arena *a;
    int calls;
};

static void render(void *ctx, int err, int *status, const char **body, size_t *len) {
    struct render_ctx *x = ctx;
    x->calls++;
    *status = err == 0 ? 200 : err == ERR_INSUFFICIENT ? 402 : 409;
    *body = arena_sprintf(x->a, "{\"err\":%d,\"call\":%d}", err, x->calls);
    *len = strlen(*body);
}

static struct store_idem idem_of(struct render_ctx *x, const char *key, const char *hash) {
    return (struct store_idem){.scope = "u9",
                               .key = key,
                               .hash = hash,
                               .ttl_ms = BOOKING_IDEM_TTL_MS,
                               .render = render,
                               .ctx = x};
}

static void test_same_key_replays_the_first_response_and_moves_no_money(void **state) {
    struct fx *f = *state;
    struct render_ctx x = {f->a, 0};
    struct store_idem i1 = idem_of(&x, "k1", "h1"), i2 = idem_of(&x, "k1", "h1");
    int64_t b;
    assert_int_equal(charge(f, 9, 100, &i1, &b), 0);
    assert_int_equal(i1.replayed, 0);
    assert_int_equal(x.calls, 1);
    assert_int_equal(charge(f, 9, 100, &i2, &b), 0);
    assert_int_equal(i2.replayed, 1);
    assert_int_equal(i2.status, 200);
    assert_string_equal(i2.body, "{\"err\":0,\"call\":1}");
    assert_int_equal(i2.len, strlen(i2.body));
    assert_int_equal(x.calls, 1);
    assert_int_equal(testdb_intf(&f->db, "SELECT balance FROM users WHERE id = 9"), 100);

    struct store_idem other = idem_of(&x, "k1", "h2");
    assert_int_equal(charge(f, 9, 100, &other, &b), ERR_IDEMPOTENCY);
    struct store_idem fresh = idem_of(&x, "k2", "h2");
    assert_int_equal(charge(f, 9, 100, &fresh, &b), 0);
    assert_int_equal(fresh.replayed, 0);
    assert_int_equal(testdb_intf(&f->db, "SELECT balance FROM users WHERE id = 9"), 200);
    assert_consistent(f);
}

static void test_refused_payment_is_stored_and_replayed_too(void **state) {
    struct fx *f = *state;
    int64_t ids[1] = {6};
    struct store_hold h;
    struct store_reservation r;
    struct store_pay p;
    struct render_ctx x = {f->a, 0};
    assert_int_equal(hold(f, 9, 1, ids, 1, NOW, &h, &r), 0);
    struct store_idem i1 = idem_of(&x, "p", "hp"), i2 = idem_of(&x, "p", "hp");
    assert_int_equal(pay(f, 9, r.id, &i1, &p), ERR_INSUFFICIENT);
    assert_int_equal(x.calls, 1);
    assert_int_equal(charge(f, 9, 5000, NULL, NULL), 0);
    assert_int_equal(pay(f, 9, r.id, &i2, &p), 0); /* the stored 402, not a payment */
    assert_int_equal(i2.replayed, 1);
    assert_int_equal(i2.status, 402);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM payments"), 0);
    struct store_idem i3 = idem_of(&x, "p2", "hp");
    assert_int_equal(pay(f, 9, r.id, &i3, &p), 0);
    assert_int_equal(i3.replayed, 0);
    assert_int_equal(
        testdb_intf(&f->db, "SELECT count(*) FROM payments WHERE idempotency_key = 'p2'"), 1);
    assert_consistent(f);
}

static void test_keys_older_than_their_ttl_are_forgotten_and_purged(void **state) {
    struct fx *f = *state;
    struct render_ctx x = {f->a, 0};
    struct store_idem i1 = idem_of(&x, "old", "h");
    assert_int_equal(charge(f, 9, 100, &i1, NULL), 0);
    struct store_charge c = {
        .user_id = 9, .amount = 100, .now_ms = NOW + BOOKING_IDEM_TTL_MS, .credit = booking_credit};
    struct store_idem i2 = idem_of(&x, "old", "h");
    assert_int_equal(f->s->ops->charge(f->s, f->a, &c, &i2), 0);
    assert_int_equal(i2.replayed, 0);
    assert_int_equal(testdb_intf(&f->db, "SELECT balance FROM users WHERE id = 9"), 200);
    int64_t n = 0;
    assert_int_equal(f->s->ops->purge_idempotency(f->s, NOW + 1, &n), 0);
    assert_int_equal(n, 0); /* the row was renewed by the second charge */
    assert_int_equal(f->s->ops->purge_idempotency(f->s, NOW + BOOKING_IDEM_TTL_MS + 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM idempotency_keys"), 0);
}

/* ---- card payments --------------------------------------------------------- */

static int card_begin(struct fx *f, int64_t rid, int64_t user, int64_t now, struct store_card *k) {
    *k = (struct store_card){.reservation_id = rid,
                             .user_id = user,
                             .now_ms = now,
                             .check = payment_can_pay_card,
                             .make_key = payment_key};
    return f->s->ops->card_begin(f->s, k);
}

static int card_settle(struct fx *f, int64_t id, int approved, int64_t now,
                       struct store_card_settle *x) {
    *x = (struct store_card_settle){.payment_id = id,
                                    .now_ms = now,
                                    .approved = approved,
                                    .charge_id = approved ? "ch_9" : NULL,
                                    .after_fail = payment_after_fail};
    return f->s->ops->card_settle(f->s, f->a, x, NULL);
}

static void test_card_begin_writes_the_attempt_first_and_the_hold_stops_expiring(void **state) {
    struct fx *f = *state;
    int64_t ids[] = {3, 4};
    struct store_hold h;
    struct store_reservation r;
    assert_int_equal(hold(f, 7, 1, ids, 2, NOW, &h, &r), 0);
    struct store_card k;
    assert_int_equal(card_begin(f, r.id, 8, NOW, &k), ERR_FORBIDDEN);
    assert_int_equal(card_begin(f, 99, 7, NOW, &k), ERR_NOT_FOUND);
    assert_int_equal(card_begin(f, r.id, 7, NOW + 1, &k), 0);
    assert_int_equal(k.existing, 0);
    assert_string_equal(k.key, "res-1-1");
    assert_int_equal(k.amount, 2000);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM payments WHERE status = 'PENDING' AND"
                                 " method = 'card' AND idempotency_key = 'res-1-1'"),
                     1);
    assert_int_equal(testdb_intf(&f->db, "SELECT status = 'PAYMENT_PENDING' FROM reservations"), 1);
    /* a second request finds the attempt in flight, writes nothing */
    struct store_card again;
    assert_int_equal(card_begin(f, r.id, 7, NOW + 2, &again), 0);
    assert_int_equal(again.existing, 1);
    assert_int_equal(again.payment_id, k.payment_id);
    assert_string_equal(again.key, "res-1-1");
    assert_int_equal(again.created_at_ms, NOW + 1);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM payments"), 1);
    /* past the hold's time: the sweeper leaves it, the seats stay taken */
    int64_t n = -1;
    assert_int_equal(f->s->ops->expire_holds(f->s, NOW + TTL + 1, 100, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(available(f, 1), 8);
    struct store_card_pending *list;
    size_t len;
    assert_int_equal(f->s->ops->card_list_pending(f->s, f->a, NOW + 1, 10, &list, &len), 0);
    assert_int_equal(len, 0); /* created at NOW + 1: not before it */
    assert_int_equal(f->s->ops->card_list_pending(f->s, f->a, NOW + 2, 10, &list, &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(list[0].payment_id, k.payment_id);
    assert_string_equal(list[0].key, "res-1-1");
    assert_int_equal(list[0].amount, 2000);
    assert_consistent(f);
}

static void test_card_settle_approved_confirms_sells_and_records_once(void **state) {
    struct fx *f = *state;
    int64_t ids[] = {5};
    struct store_hold h;
    struct store_reservation r;
    assert_int_equal(hold(f, 7, 1, ids, 1, NOW, &h, &r), 0);
    struct store_card k;
    assert_int_equal(card_begin(f, r.id, 7, NOW, &k), 0);
    struct store_card_settle x;
    assert_int_equal(card_settle(f, k.payment_id, 1, NOW + 10, &x), 0);
    assert_int_equal(x.changed, 1);
    assert_int_equal(x.status, STORE_PAY_COMPLETED);
    assert_int_equal(x.res_status, STORE_RES_CONFIRMED);
    assert_int_equal(x.out.amount, 1000);
    assert_int_equal(x.out.user_id, 7);
    assert_int_equal(x.out.paid_at_ms, NOW + 10);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM payments WHERE status = 'COMPLETED'"
                                         " AND gateway_charge_id = 'ch_9'"),
                     1);
    assert_int_equal(testdb_intf(&f->db, "SELECT status FROM seats WHERE id = 5"), 2);
    assert_int_equal(testdb_intf(&f->db,
                                 "SELECT count(*) FROM outbox WHERE topic = 'payment.completed'"
                                 " AND json_extract(payload, '$.method') = 'card'"),
                     1);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM balance_ledger"), 0);
    /* settling again (the reconciler after the request) changes nothing */
    assert_int_equal(card_settle(f, k.payment_id, 0, NOW + 20, &x), 0);
    assert_int_equal(x.changed, 0);
    assert_int_equal(x.status, STORE_PAY_COMPLETED);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM outbox"), 1);
    assert_int_equal(card_settle(f, 999, 1, NOW, &x), ERR_NOT_FOUND);
    assert_consistent(f);
}

static void test_card_settle_failed_gives_the_hold_back_or_expires_it(void **state) {
    struct fx *f = *state;
    int64_t ids[] = {6, 7};
    struct store_hold h;
    struct store_reservation r;
    assert_int_equal(hold(f, 7, 1, ids, 2, NOW, &h, &r), 0);
    struct store_card k;
    assert_int_equal(card_begin(f, r.id, 7, NOW, &k), 0);
    struct store_card_settle x;
    assert_int_equal(card_settle(f, k.payment_id, 0, NOW + 10, &x), 0);
    assert_int_equal(x.status, STORE_PAY_FAILED);
    assert_int_equal(x.res_status, STORE_RES_HELD);
    assert_int_equal(available(f, 1), 8);
    /* the next attempt gets the next key; failing after the hold's time expires it */
    assert_int_equal(card_begin(f, r.id, 7, NOW + 20, &k), 0);
    assert_int_equal(k.existing, 0);
    assert_string_equal(k.key, "res-1-2");
    assert_int_equal(card_settle(f, k.payment_id, 0, NOW + TTL, &x), 0);
    assert_int_equal(x.res_status, STORE_RES_EXPIRED);
    assert_int_equal(available(f, 1), 10);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM payments WHERE status = 'FAILED'"),
                     2);
    assert_int_equal(testdb_intf(&f->db, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(card_begin(f, r.id, 7, NOW + TTL, &k), ERR_CONFLICT);
    assert_consistent(f);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    log_init(getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
    const struct CMUnitTest tests[] = {
        T(test_hold_takes_every_seat_and_moves_the_counter),
        T(test_hold_with_one_taken_seat_takes_none),
        T(test_hold_of_foreign_or_unknown_seat_is_not_found),
        T(test_hold_takes_back_seats_of_a_hold_that_ran_out),
        T(test_expire_holds_releases_only_due_holds),
        T(test_cancel_releases_seats_once),
        T(test_charge_creates_user_and_ledgers_every_change),
        T(test_pay_moves_money_confirms_sells_and_records_everything),
        T(test_pay_of_a_hold_past_its_time_is_refused),
        T(test_same_key_replays_the_first_response_and_moves_no_money),
        T(test_refused_payment_is_stored_and_replayed_too),
        T(test_keys_older_than_their_ttl_are_forgotten_and_purged),
        T(test_card_begin_writes_the_attempt_first_and_the_hold_stops_expiring),
        T(test_card_settle_approved_confirms_sells_and_records_once),
        T(test_card_settle_failed_gives_the_hold_back_or_expires_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
