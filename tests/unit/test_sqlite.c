/* test_sqlite.c -- tests of store/sqlite.c and store/store.c against real
 * SQLite files in a fresh temporary directory per test (removed after).
 * Raw SQL through a separate connection sets up states the port cannot make
 * (held and sold seats, newer schemas) and checks what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "store/store.h"
#include "testdb.h"

extern const char *const store_sqlite_migrations[];
extern const char store_sqlite_sql_available_seats[];
extern const char store_sqlite_sql_available_seats_at[];

#define DAY_MS (86400 * (int64_t)1000)
#define FIRST_START_MS ((int64_t)1798797600 * 1000) /* 2027-01-01T10:00:00Z */

struct fx {
    struct testdb db;
    struct store *s;
    struct arena *a;
};

/* ---- fixtures and raw SQL ---------------------------------------------- */

static struct fx *fx_new(void) {
    struct fx *f = calloc(1, sizeof(*f));
    testdb_init(&f->db, "test");
    f->a = arena_create();
    return f;
}

/* A fresh directory and an opened, unmigrated store. */
static int setup_raw(void **state) {
    struct fx *f = fx_new();
    char err[256];
    if (store_sqlite_open(f->db.path, &f->s, err, sizeof(err)) != 0) fail_msg("open: %s", err);
    *state = f;
    return 0;
}

/* A fresh directory and an opened, migrated store. */
static int setup(void **state) {
    setup_raw(state);
    struct fx *f = *state;
    return f->s->ops->migrate(f->s) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    struct fx *f = *state;
    if (f->s) f->s->ops->close(f->s);
    arena_destroy(f->a);
    testdb_remove(&f->db);
    free(f);
    return 0;
}

static int64_t migrations_known(void) {
    int64_t n = 0;
    while (store_sqlite_migrations[n]) n++;
    return n;
}

static void seed(struct fx *f, int64_t concerts, int64_t sessions, int64_t seats, int64_t price,
                 int64_t users, int64_t balance) {
    struct store_seed o = {.concerts = concerts,
                           .sessions_per_concert = sessions,
                           .seats_per_session = seats,
                           .price = price,
                           .users = users,
                           .balance = balance};
    assert_int_equal(f->s->ops->seed(f->s, &o), 0);
}

/* All concerts, by id. */
static size_t concerts_of(struct fx *f, struct store_concert **out) {
    size_t n = 0;
    assert_int_equal(f->s->ops->list_concerts(f->s, f->a, out, &n), 0);
    return n;
}

/* All available seats of session sid of concert cid (up to 10,000). */
static size_t seats_of(struct fx *f, int64_t cid, int64_t sid, struct store_seat **out) {
    size_t n = 0;
    assert_int_equal(f->s->ops->list_available_seats(f->s, f->a, cid, sid, 0, 10000, out, &n), 0);
    return n;
}

/* ---- migrate ------------------------------------------------------------- */

static void test_migrate_sets_user_version_and_is_idempotent(void **state) {
    struct fx *f = *state;
    assert_true(migrations_known() >= 1);
    assert_int_equal(testdb_int(&f->db, "PRAGMA user_version"), migrations_known());
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM sqlite_master WHERE name = 'seats'"),
                     1);
    assert_int_equal(f->s->ops->migrate(f->s), 0);
    assert_int_equal(testdb_int(&f->db, "PRAGMA user_version"), migrations_known());

    struct store *other; /* a second process-like instance sees nothing to do */
    char err[256];
    assert_int_equal(store_open(f->db.path, &other, err, sizeof(err)), 0);
    assert_int_equal(other->ops->migrate(other), 0);
    other->ops->close(other);
    assert_int_equal(testdb_int(&f->db, "PRAGMA user_version"), migrations_known());
}

static void test_migrate_refuses_database_with_newer_schema(void **state) {
    struct fx *f = *state;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)migrations_known() + 1);
    testdb_exec(&f->db, sql);
    assert_int_equal(f->s->ops->migrate(f->s), ERR_CONFLICT);
    assert_int_equal(testdb_int(&f->db, "PRAGMA user_version"), migrations_known() + 1);
}

static void test_migrate_failure_rolls_back_whole_migration(void **state) {
    struct fx *f = *state; /* unmigrated; a stray table makes 0001 fail half-way */
    testdb_exec(&f->db, "CREATE TABLE outbox (x INTEGER)");
    assert_int_equal(f->s->ops->migrate(f->s), ERR_IO);
    assert_int_equal(testdb_int(&f->db, "PRAGMA user_version"), 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM sqlite_master WHERE name = 'users'"),
                     0);
}

static void test_reads_before_migrate_fail_without_crashing(void **state) {
    struct fx *f = *state;
    struct store_concert *c;
    size_t n;
    assert_int_equal(f->s->ops->list_concerts(f->s, f->a, &c, &n), ERR_IO);
    assert_int_equal(f->s->ops->ping(f->s), 0);
}

/* ---- seed ------------------------------------------------------------------ */

/* Checks seats numbered 1..n in order with grades VIP, R, S in the given counts. */
static void assert_grades(struct store_seat *seats, size_t n, size_t vip, size_t r) {
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(seats[i].number, (int64_t)i + 1);
        const char *g = i < vip ? "VIP" : i < vip + r ? "R" : "S";
        int64_t price = i < vip ? 150000 : i < vip + r ? 120000 : 90000;
        assert_string_equal(seats[i].grade, g);
        assert_int_equal(seats[i].price, price);
    }
}

static void test_seed_creates_exact_counts_grades_and_prices(void **state) {
    struct fx *f = *state;
    seed(f, 2, 3, 10, 0, 0, 0);
    struct store_concert *c;
    size_t n = concerts_of(f, &c);
    assert_int_equal(n, 2);
    assert_int_equal(c[0].id, 1);
    assert_string_equal(c[0].title, "Concert 1");
    assert_string_equal(c[1].title, "Concert 2");
    assert_true(strlen(c[0].venue) > 0 && strcmp(c[0].venue, c[1].venue) != 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM sessions"), 6);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM seats"), 60);

    struct store_session *ss;
    assert_int_equal(f->s->ops->list_sessions(f->s, f->a, 2, &ss, &n), 0);
    assert_int_equal(n, 3);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(ss[k].concert_id, 2);
        assert_int_equal(ss[k].starts_at_ms, FIRST_START_MS + (int64_t)k * DAY_MS);
        assert_int_equal(ss[k].total_seats, 10);
        assert_int_equal(ss[k].available_seats, 10);
        struct store_seat *seats;
        assert_int_equal(seats_of(f, 2, ss[k].id, &seats), 10);
        assert_grades(seats, 10, 2, 3);
    }
}

static void test_seed_small_sessions_still_get_one_vip_seat(void **state) {
    struct fx *f = *state;
    seed(f, 1, 1, 3, 0, 0, 0);
    seed(f, 1, 1, 1, 0, 0, 0);
    struct store_seat *seats;
    assert_int_equal(seats_of(f, 1, 1, &seats), 3);
    assert_grades(seats, 3, 1, 0);
    assert_int_equal(seats_of(f, 2, 2, &seats), 1);
    assert_grades(seats, 1, 1, 0);
}

static void test_seed_with_price_gives_every_seat_grade_r_at_that_price(void **state) {
    struct fx *f = *state;
    seed(f, 1, 2, 7, 55000, 0, 0);
    struct store_seat *seats;
    assert_int_equal(seats_of(f, 1, 2, &seats), 7);
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(seats[i].grade, "R");
        assert_int_equal(seats[i].price, 55000);
    }
}

static const char BALANCE_MISMATCHES[] =
    "SELECT count(*) FROM users u WHERE balance <>"
    " (SELECT coalesce(sum(amount), 0) FROM balance_ledger l WHERE l.user_id = u.id)";

static void test_seed_twice_continues_ids_and_tops_up_balances_with_ledger(void **state) {
    struct fx *f = *state;
    seed(f, 1, 1, 5, 0, 3, 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM users WHERE balance = 0"), 3);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM balance_ledger"), 0);
    testdb_exec(&f->db,
                "UPDATE users SET balance = 5000 WHERE id = 2;"
                "INSERT INTO balance_ledger (user_id, kind, amount, balance_after, created_at)"
                " VALUES (2, 'CHARGE', 5000, 5000, 0)");

    seed(f, 1, 1, 5, 0, 5, 3000);
    struct store_concert *c;
    size_t n = concerts_of(f, &c);
    assert_int_equal(n, 2);
    assert_int_equal(c[1].id, 2);
    assert_string_equal(c[1].title, "Concert 2");
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM users"), 5);
    assert_int_equal(testdb_int(&f->db, "SELECT balance FROM users WHERE id = 2"), 5000);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM users WHERE balance = 3000"), 4);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM balance_ledger"), 5);
    assert_int_equal(testdb_int(&f->db, BALANCE_MISMATCHES), 0);

    seed(f, 0, 0, 0, 0, 5, 3000); /* already there: no new ledger rows */
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM balance_ledger"), 5);
    assert_int_equal(testdb_int(&f->db, BALANCE_MISMATCHES), 0);
}

static void test_seed_rejects_negative_counts(void **state) {
    struct fx *f = *state;
    struct store_seed o = {.concerts = 1, .sessions_per_concert = 1, .seats_per_session = -1};
    assert_int_equal(f->s->ops->seed(f->s, &o), ERR_INVALID);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM concerts"), 0);
}

/* ---- concerts and sessions --------------------------------------------- */

static void test_list_sessions_of_unknown_concert_is_not_found(void **state) {
    struct fx *f = *state;
    seed(f, 1, 0, 0, 0, 0, 0); /* a concert without sessions */
    struct store_session *ss;
    size_t n = 99;
    assert_int_equal(f->s->ops->list_sessions(f->s, f->a, 1, &ss, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(f->s->ops->list_sessions(f->s, f->a, 2, &ss, &n), ERR_NOT_FOUND);
}

static void test_list_sessions_orders_by_start_time_then_id(void **state) {
    struct fx *f = *state;
    int64_t starts[3] = {300, 100, 100};
    struct store_block b = {"R", 1000, 1, 2};
    struct store_event ev = {"Night", "Hall", starts, 3, &b, 1};
    int64_t cid = 0;
    assert_int_equal(f->s->ops->import_event(f->s, &ev, &cid), 0);
    struct store_session *ss;
    size_t n;
    assert_int_equal(f->s->ops->list_sessions(f->s, f->a, cid, &ss, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ss[0].id, 2);
    assert_int_equal(ss[1].id, 3);
    assert_int_equal(ss[2].id, 1);
    assert_int_equal(ss[2].starts_at_ms, 300);
}

static void test_get_session_of_another_concert_is_not_found(void **state) {
    struct fx *f = *state;
    seed(f, 2, 2, 4, 0, 0, 0);
    struct store_session s;
    assert_int_equal(f->s->ops->get_session(f->s, 2, 3, &s), 0);
    assert_int_equal(s.id, 3);
    assert_int_equal(s.concert_id, 2);
    assert_int_equal(s.total_seats, 4);
    assert_int_equal(s.available_seats, 4);
    assert_int_equal(f->s->ops->get_session(f->s, 2, 1, &s), ERR_NOT_FOUND);
    assert_int_equal(f->s->ops->get_session(f->s, 1, 999, &s), ERR_NOT_FOUND);
}

/* ---- available seats ------------------------------------------------------ */

/* Asserts the page after `after` (at most limit) of session sid of concert 1
 * holds exactly the numbers want[]. */
static void assert_page(struct fx *f, int64_t sid, int64_t after, int64_t limit,
                        const int64_t *want, size_t nwant) {
    struct store_seat *seats;
    size_t n = 99;
    assert_int_equal(f->s->ops->list_available_seats(f->s, f->a, 1, sid, after, limit, &seats, &n),
                     0);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(seats[i].number, want[i]);
        assert_int_equal(seats[i].session_id, sid);
        assert_int_equal(seats[i].id, (sid - 1) * 10 + want[i]); /* seeded in order */
    }
}

static void test_available_seats_paginate_by_seat_number(void **state) {
    struct fx *f = *state;
    seed(f, 1, 2, 10, 1000, 0, 0);
    assert_page(f, 2, 0, 4, (int64_t[]){1, 2, 3, 4}, 4);
    assert_page(f, 2, 4, 4, (int64_t[]){5, 6, 7, 8}, 4);
    assert_page(f, 2, 8, 4, (int64_t[]){9, 10}, 2);
    assert_page(f, 2, 10, 4, NULL, 0);
    assert_page(f, 2, 1000, 4, NULL, 0);
    assert_page(f, 2, 5, 1, (int64_t[]){6}, 1);
    assert_page(f, 2, 0, 0, NULL, 0);
    struct store_seat *seats;
    size_t n;
    assert_int_equal(f->s->ops->list_available_seats(f->s, f->a, 1, 3, 0, 10, &seats, &n),
                     ERR_NOT_FOUND); /* no such session */
    assert_int_equal(f->s->ops->list_available_seats(f->s, f->a, 2, 2, 0, 10, &seats, &n),
                     ERR_NOT_FOUND); /* session of another concert */
    assert_int_equal(f->s->ops->list_available_seats(f->s, f->a, 1, 2, 0, -1, &seats, &n),
                     ERR_INVALID);
}

/* Seats 2 and 3 of session 1 held, seat 5 sold (reservations 1 and 2 of user 1). */
static const char HOLD_AND_SELL[] =
    "INSERT INTO users (id, created_at) VALUES (1, 0);"
    "INSERT INTO reservations (id, user_id, session_id, status, total_price, created_at,"
    " expires_at, updated_at) VALUES (1, 1, 1, 'HELD', 2000, 0, 0, 0),"
    " (2, 1, 1, 'CONFIRMED', 1000, 0, 0, 0);"
    "UPDATE seats SET status = 1, reservation_id = 1"
    " WHERE session_id = 1 AND seat_number IN (2, 3);"
    "UPDATE seats SET status = 2, reservation_id = 2 WHERE session_id = 1 AND seat_number = 5;"
    "UPDATE sessions SET available_seats = available_seats - 3 WHERE id = 1;";

static void test_available_seats_exclude_held_and_sold_seats(void **state) {
    struct fx *f = *state;
    seed(f, 1, 1, 10, 1000, 0, 0);
    testdb_exec(&f->db, HOLD_AND_SELL);
    assert_page(f, 1, 0, 100, (int64_t[]){1, 4, 6, 7, 8, 9, 10}, 7);
    assert_page(f, 1, 1, 2, (int64_t[]){4, 6}, 2);
    struct store_session s;
    assert_int_equal(f->s->ops->get_session(f->s, 1, 1, &s), 0);
    assert_int_equal(s.available_seats, 7);
    assert_int_equal(s.total_seats, 10);
}

/* EXPLAIN QUERY PLAN of query on the fixture's database, one line per step. */
static void query_plan(const struct fx *f, const char *query, char *plan, size_t cap) {
    sqlite3 *db;
    sqlite3_stmt *st;
    char sql[512];
    plan[0] = '\0';
    assert_int_equal(sqlite3_open(f->db.path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", query);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        strncat(plan, (const char *)sqlite3_column_text(st, 3), cap - strlen(plan) - 2);
        strcat(plan, "\n");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Fails unless EXPLAIN QUERY PLAN of the adapter's seat query is one range
 * scan of the covering partial index, with no table scan and no sort. */
static void assert_seat_plan(const struct fx *f) {
    char plan[1024];
    query_plan(f, store_sqlite_sql_available_seats, plan, sizeof(plan));
    print_message("seat page plan: %s", plan);
    assert_non_null(strstr(plan, "SEARCH ss USING INTEGER PRIMARY KEY"));
    assert_non_null(strstr(plan, "SEARCH st USING COVERING INDEX seats_available"));
    assert_null(strstr(plan, "SCAN"));
    assert_null(strstr(plan, "TEMP B-TREE"));
}

static void test_available_seats_query_is_a_covering_index_range_scan(void **state) {
    struct fx *f = *state;
    assert_seat_plan(f);
    seed(f, 2, 3, 200, 0, 0, 0);
    testdb_exec(&f->db, HOLD_AND_SELL);
    testdb_exec(&f->db, "ANALYZE"); /* with statistics the planner must still choose it */
    assert_seat_plan(f);
}

/* ---- the classic API's reads ------------------------------------------------ */

/* Asserts the seats at offset (at most limit) of session sid hold exactly the numbers want[]. */
static void assert_page_at(struct fx *f, int64_t sid, int64_t offset, int64_t limit,
                           const int64_t *want, size_t nwant) {
    struct store_seat *seats;
    size_t n = 99;
    assert_int_equal(f->s->ops->list_available_seats_at(f->s, f->a, sid, offset, limit, &seats, &n),
                     0);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(seats[i].number, want[i]);
        assert_int_equal(seats[i].session_id, sid);
        assert_int_equal(seats[i].id, (sid - 1) * 10 + want[i]);
    }
}

static void test_available_seats_at_page_by_offset_by_session_alone(void **state) {
    struct fx *f = *state;
    seed(f, 2, 1, 10, 1000, 0, 0);      /* session 2 is concert 2's */
    testdb_exec(&f->db, HOLD_AND_SELL); /* session 1: 2, 3 held, 5 sold */
    assert_page_at(f, 1, 0, 3, (int64_t[]){1, 4, 6}, 3);
    assert_page_at(f, 1, 3, 3, (int64_t[]){7, 8, 9}, 3);
    assert_page_at(f, 1, 6, 3, (int64_t[]){10}, 1);
    assert_page_at(f, 1, 7, 3, NULL, 0);
    assert_page_at(f, 2, 8, 100, (int64_t[]){9, 10}, 2);
    struct store_seat *seats;
    size_t n;
    assert_int_equal(f->s->ops->list_available_seats_at(f->s, f->a, 3, 0, 10, &seats, &n),
                     ERR_NOT_FOUND);
    assert_int_equal(f->s->ops->list_available_seats_at(f->s, f->a, 1, -1, 10, &seats, &n),
                     ERR_INVALID);
    assert_int_equal(f->s->ops->list_available_seats_at(f->s, f->a, 1, 0, -1, &seats, &n),
                     ERR_INVALID);
}

static void test_seat_ids_by_number_map_or_name_the_missing_number(void **state) {
    struct fx *f = *state;
    seed(f, 2, 2, 10, 1000, 0, 0);      /* concert 2: sessions 3, 4; seat ids (sid-1)*10 + number */
    testdb_exec(&f->db, HOLD_AND_SELL); /* held and sold seats still map */
    int64_t ids[3] = {0}, bad = -1;
    assert_int_equal(f->s->ops->seat_ids_by_number(f->s, 2, 4, (int64_t[]){10, 1, 5}, 3, ids, &bad),
                     0);
    assert_int_equal(ids[0], 40);
    assert_int_equal(ids[1], 31);
    assert_int_equal(ids[2], 35);
    assert_int_equal(bad, 0);
    assert_int_equal(
        f->s->ops->seat_ids_by_number(f->s, 1, 1, (int64_t[]){2, 11, 12}, 3, ids, &bad),
        ERR_NOT_FOUND);
    assert_int_equal(bad, 11);
    bad = -1;
    assert_int_equal(f->s->ops->seat_ids_by_number(f->s, 2, 1, (int64_t[]){2}, 1, ids, &bad),
                     ERR_NOT_FOUND); /* session 1 is not concert 2's */
    assert_int_equal(bad, 0);
    bad = -1;
    assert_int_equal(f->s->ops->seat_ids_by_number(f->s, 1, 9, (int64_t[]){2}, 1, ids, &bad),
                     ERR_NOT_FOUND);
    assert_int_equal(bad, 0);
}

/* EXPLAIN QUERY PLAN of the numbered page: the covering partial index, no sort. */
static void test_available_seats_at_query_is_a_covering_index_scan(void **state) {
    struct fx *f = *state;
    seed(f, 2, 3, 200, 0, 0, 0);
    testdb_exec(&f->db, HOLD_AND_SELL);
    testdb_exec(&f->db, "ANALYZE");
    char plan[1024];
    query_plan(f, store_sqlite_sql_available_seats_at, plan, sizeof(plan));
    print_message("numbered seat page plan: %s", plan);
    assert_non_null(strstr(plan, "USING COVERING INDEX seats_available"));
    assert_null(strstr(plan, "TEMP B-TREE"));
}

/* ---- concurrency ------------------------------------------------------------ */

struct reader {
    struct store *s;
    int failures;
};

/* One round of the booking flow's reads; returns the number of wrong answers. */
static int read_round(struct store *s) {
    struct arena *a = arena_create();
    struct store_concert *c;
    struct store_session *ss, one;
    struct store_seat *seats;
    size_t n, ns, nseats;
    int bad = 0;
    bad += s->ops->list_concerts(s, a, &c, &n) != 0 || n != 3;
    for (size_t i = 0; !bad && i < n; i++) {
        bad += s->ops->list_sessions(s, a, c[i].id, &ss, &ns) != 0 || ns != 4;
        for (size_t k = 0; !bad && k < ns; k++) {
            bad += s->ops->get_session(s, c[i].id, ss[k].id, &one) != 0 || one.id != ss[k].id;
            bad += s->ops->list_available_seats(s, a, c[i].id, ss[k].id, 10, 100, &seats,
                                                &nseats) != 0 ||
                   nseats != 40 || seats[0].number != 11 || seats[39].number != 50;
        }
    }
    arena_destroy(a);
    return bad;
}

static void *reader_main(void *arg) {
    struct reader *r = arg;
    for (int i = 0; i < 50; i++) r->failures += read_round(r->s);
    return NULL;
}

static void test_concurrent_reads_from_eight_threads_are_correct(void **state) {
    struct fx *f = *state;
    seed(f, 3, 4, 50, 0, 0, 0);
    for (int round = 0; round < 2; round++) { /* round 2 reuses parked connections */
        pthread_t t[8];
        struct reader r[8];
        for (int i = 0; i < 8; i++) {
            r[i] = (struct reader){f->s, 0};
            assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
        }
        int failures = 0;
        for (int i = 0; i < 8; i++) { /* join all before asserting: r[] lives here */
            pthread_join(t[i], NULL);
            failures += r[i].failures;
        }
        assert_int_equal(failures, 0);
    }
}

/* ---- import ------------------------------------------------------------------- */

static void test_import_event_creates_sessions_with_block_seats(void **state) {
    struct fx *f = *state;
    seed(f, 1, 1, 5, 0, 0, 0); /* the import lands after existing data */
    int64_t starts[2] = {FIRST_START_MS, FIRST_START_MS + DAY_MS};
    struct store_block b[2] = {{"VIP", 150000, 1, 10}, {"R", 100000, 11, 30}};
    struct store_event ev = {"Aurora Live", "KSPO Dome", starts, 2, b, 2};
    int64_t cid = 0;
    assert_int_equal(f->s->ops->import_event(f->s, &ev, &cid), 0);
    assert_int_equal(cid, 2);
    struct store_session *ss;
    size_t n;
    assert_int_equal(f->s->ops->list_sessions(f->s, f->a, cid, &ss, &n), 0);
    assert_int_equal(n, 2);
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(ss[k].starts_at_ms, starts[k]);
        assert_int_equal(ss[k].total_seats, 30);
        assert_int_equal(ss[k].available_seats, 30);
        struct store_seat *seats;
        assert_int_equal(seats_of(f, cid, ss[k].id, &seats), 30);
        assert_string_equal(seats[9].grade, "VIP");
        assert_int_equal(seats[9].price, 150000);
        assert_string_equal(seats[10].grade, "R");
        assert_int_equal(seats[29].price, 100000);
    }
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM seats"), 65);
}

static void test_import_with_overlapping_blocks_is_invalid_and_writes_nothing(void **state) {
    struct fx *f = *state;
    int64_t starts[2] = {1, 2};
    struct store_block b[2] = {{"VIP", 150000, 1, 10}, {"R", 100000, 5, 15}};
    struct store_event ev = {"Overlap", "Hall", starts, 2, b, 2};
    int64_t cid = -1;
    assert_int_equal(f->s->ops->import_event(f->s, &ev, &cid), ERR_INVALID);
    assert_int_equal(cid, -1);
    assert_int_equal(testdb_int(&f->db,
                                "SELECT (SELECT count(*) FROM concerts) + (SELECT count(*) FROM"
                                " sessions) + (SELECT count(*) FROM seats)"),
                     0);
    b[1].first = 11; /* the store is still usable */
    assert_int_equal(f->s->ops->import_event(f->s, &ev, &cid), 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM seats"), 30);
}

/* ---- store_open ---------------------------------------------------------------- */

static void test_store_open_rejects_unknown_scheme_and_unreachable_postgres(void **state) {
    (void)state;
    struct store *s = (struct store *)1;
    char err[256] = "";
    assert_int_equal(store_open("mysql://db.example/tickets", &s, err, sizeof(err)), ERR_INVALID);
    assert_null(s);
    assert_non_null(strstr(err, "\"mysql\""));
    /* port 1 on loopback: nothing listens there, so the open fails now */
    assert_int_equal(store_open("postgres://u@127.0.0.1:1/concert", &s, err, sizeof(err)),
                     ERR_UNAVAILABLE);
    assert_null(s);
    assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
    assert_int_equal(store_open("", &s, err, sizeof(err)), ERR_INVALID);
    assert_int_equal(store_open("sqlite::memory:", &s, err, sizeof(err)), ERR_INVALID);
}

static void test_store_open_accepts_sqlite_url_forms(void **state) {
    struct fx *f = *state;
    const char *prefixes[] = {"sqlite:", "sqlite://", ""};
    for (size_t i = 0; i < 3; i++) {
        char url[256], err[256];
        struct store *s;
        snprintf(url, sizeof(url), "%s%s/%c.db", prefixes[i], f->db.dir, (char)('a' + i));
        assert_int_equal(store_open(url, &s, err, sizeof(err)), 0);
        assert_string_equal(s->kind, "sqlite");
        assert_int_equal(s->ops->ping(s), 0);
        s->ops->close(s);
        snprintf(url, sizeof(url), "%s/%c.db", f->db.dir, (char)('a' + i));
        assert_int_equal(access(url, F_OK), 0);
    }
}

static void test_store_open_reports_unopenable_and_non_database_files(void **state) {
    struct fx *f = *state;
    char path[256], err[512] = "";
    struct store *s;
    snprintf(path, sizeof(path), "%s/missing-dir/x.db", f->db.dir);
    assert_int_equal(store_open(path, &s, err, sizeof(err)), ERR_IO);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "unable to open"));

    snprintf(path, sizeof(path), "%s/junk.db", f->db.dir);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 200; i++) fputs("this is not an SQLite database at all\n", fp);
    fclose(fp);
    assert_int_equal(store_open(path, &s, err, sizeof(err)), ERR_IO);
    assert_non_null(strstr(err, "not a database"));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_RAW(name) cmocka_unit_test_setup_teardown(name, setup_raw, teardown)

int main(void) {
    log_init(getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
    const struct CMUnitTest tests[] = {
        T(test_migrate_sets_user_version_and_is_idempotent),
        T(test_migrate_refuses_database_with_newer_schema),
        T_RAW(test_migrate_failure_rolls_back_whole_migration),
        T_RAW(test_reads_before_migrate_fail_without_crashing),
        T(test_seed_creates_exact_counts_grades_and_prices),
        T(test_seed_small_sessions_still_get_one_vip_seat),
        T(test_seed_with_price_gives_every_seat_grade_r_at_that_price),
        T(test_seed_twice_continues_ids_and_tops_up_balances_with_ledger),
        T(test_seed_rejects_negative_counts),
        T(test_list_sessions_of_unknown_concert_is_not_found),
        T(test_list_sessions_orders_by_start_time_then_id),
        T(test_get_session_of_another_concert_is_not_found),
        T(test_available_seats_paginate_by_seat_number),
        T(test_available_seats_exclude_held_and_sold_seats),
        T(test_available_seats_query_is_a_covering_index_range_scan),
        T(test_available_seats_at_page_by_offset_by_session_alone),
        T(test_seat_ids_by_number_map_or_name_the_missing_number),
        T(test_available_seats_at_query_is_a_covering_index_scan),
        T(test_concurrent_reads_from_eight_threads_are_correct),
        T(test_import_event_creates_sessions_with_block_seats),
        T(test_import_with_overlapping_blocks_is_invalid_and_writes_nothing),
        T_RAW(test_store_open_rejects_unknown_scheme_and_unreachable_postgres),
        T(test_store_open_accepts_sqlite_url_forms),
        T(test_store_open_reports_unopenable_and_non_database_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
