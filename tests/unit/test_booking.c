/* test_booking.c -- the booking rules (src/service/booking.c): seat lists,
 * amounts, Idempotency-Keys, the reservation state machine, who may pay or
 * cancel, credit overflow, and what the operations hand the store port. A
 * fake store records the calls; no SQL here (test_sqlite_booking.c covers
 * the adapter). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "service/booking.h"

#define NOW ((int64_t)1800000000000)

static const struct booking_rules RULES = {
    .hold_ttl_ms = 300000, .max_seats_per_hold = 4, .max_charge = 10000000};

/* ---- a fake store --------------------------------------------------------- */

struct fake {
    struct store base;
    int calls;
    struct store_hold hold;
    int64_t held_ids[8];          /* hold.seat_ids, copied */
    struct store_reservation res; /* what get_reservation returns */
    int64_t expire_results[4];    /* successive expire_holds answers */
    int nexpire;
    atomic_int expire_calls;
    int64_t purge_before;
    int purges;
    store_res_check pay_check;
    store_credit_check credit;
    int64_t idem_ttl;
};

static struct fake *fake_of(struct store *s) {
    return (struct fake *)s;
}

static int f_hold(struct store *s, struct arena *a, struct store_hold *h,
                  struct store_reservation *out) {
    (void)a;
    fake_of(s)->calls++;
    fake_of(s)->hold = *h;
    for (size_t i = 0; i < h->nseats && i < 8; i++) fake_of(s)->held_ids[i] = h->seat_ids[i];
    memset(out, 0, sizeof(*out));
    return 0;
}

static int f_get(struct store *s, struct arena *a, int64_t id, struct store_reservation *out) {
    (void)a;
    fake_of(s)->calls++;
    if (id != fake_of(s)->res.id) return ERR_NOT_FOUND;
    *out = fake_of(s)->res;
    return 0;
}

static int f_expire(struct store *s, int64_t now, int64_t max, int64_t *n) {
    struct fake *f = fake_of(s);
    assert_int_equal(max, BOOKING_SWEEP_BATCH);
    (void)now;
    int k = atomic_fetch_add(&f->expire_calls, 1);
    *n = k < f->nexpire ? f->expire_results[k] : 0;
    return 0;
}

static int f_purge(struct store *s, int64_t before, int64_t *n) {
    fake_of(s)->purge_before = before;
    fake_of(s)->purges++;
    if (n) *n = 0;
    return 0;
}

static int f_pay(struct store *s, struct arena *a, struct store_pay *p, struct store_idem *idem) {
    (void)a;
    fake_of(s)->calls++;
    fake_of(s)->pay_check = p->check;
    if (idem) fake_of(s)->idem_ttl = idem->ttl_ms;
    return 0;
}

static int f_charge(struct store *s, struct arena *a, struct store_charge *c,
                    struct store_idem *idem) {
    (void)a;
    fake_of(s)->calls++;
    fake_of(s)->credit = c->credit;
    if (idem) fake_of(s)->idem_ttl = idem->ttl_ms;
    return c->credit(100, c->amount, &c->balance);
}

/* Session 2 of concert 1 has seats numbered 1..50 with ids 100 + number. */
static int f_seat_ids(struct store *s, int64_t cid, int64_t sid, const int64_t *numbers, size_t n,
                      int64_t *ids, int64_t *bad) {
    fake_of(s)->calls++;
    *bad = 0;
    if (cid != 1 || sid != 2) return ERR_NOT_FOUND;
    for (size_t i = 0; i < n; i++) {
        if (numbers[i] > 50) {
            *bad = numbers[i];
            return ERR_NOT_FOUND;
        }
        ids[i] = 100 + numbers[i];
    }
    return 0;
}

static const struct store_ops fake_ops = {
    .seat_ids_by_number = f_seat_ids,
    .hold_seats = f_hold,
    .get_reservation = f_get,
    .expire_holds = f_expire,
    .purge_idempotency = f_purge,
    .pay = f_pay,
    .charge = f_charge,
};

static int setup(void **state) {
    struct fake *f = calloc(1, sizeof(*f));
    f->base.ops = &fake_ops;
    f->base.kind = "fake";
    atomic_init(&f->expire_calls, 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    free(*state);
    return 0;
}

static struct store_reservation held(int64_t user, int64_t price, int64_t expires) {
    struct store_reservation r = {.id = 5, .user_id = user, .session_id = 2};
    r.status = STORE_RES_HELD;
    r.total_price = price;
    r.expires_at_ms = expires;
    return r;
}

static char err[256];

/* ---- checks of requests ----------------------------------------------------- */

static void test_seat_list_takes_one_to_max_distinct_positive_ids(void **state) {
    (void)state;
    int64_t ok[4] = {9, 3, 12, 4}, dup[3] = {5, 6, 5}, zero[2] = {1, 0}, neg[1] = {-3};
    int64_t five[5] = {1, 2, 3, 4, 5};
    assert_int_equal(booking_check_seats(&RULES, ok, 1, err, sizeof(err)), 0);
    assert_int_equal(booking_check_seats(&RULES, ok, 4, err, sizeof(err)), 0);
    assert_int_equal(booking_check_seats(&RULES, ok, 0, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "1 to 4 seats (got 0)"));
    assert_int_equal(booking_check_seats(&RULES, five, 5, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "1 to 4 seats (got 5)"));
    assert_int_equal(booking_check_seats(&RULES, dup, 3, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "seat 5 more than once"));
    assert_int_equal(booking_check_seats(&RULES, zero, 2, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "seat list entry 1"));
    assert_int_equal(booking_check_seats(&RULES, neg, 1, err, sizeof(err)), ERR_INVALID);
}

static void test_seat_list_never_exceeds_the_hard_limit(void **state) {
    (void)state;
    struct booking_rules big = RULES;
    big.max_seats_per_hold = 1000;
    int64_t ids[BOOKING_SEATS_LIMIT + 1];
    for (int i = 0; i <= BOOKING_SEATS_LIMIT; i++) ids[i] = i + 1;
    assert_int_equal(booking_check_seats(&big, ids, BOOKING_SEATS_LIMIT, err, sizeof(err)), 0);
    assert_int_equal(booking_check_seats(&big, ids, BOOKING_SEATS_LIMIT + 1, err, sizeof(err)),
                     ERR_INVALID);
}

static void test_charge_amount_is_one_to_max_charge(void **state) {
    (void)state;
    assert_int_equal(booking_check_amount(&RULES, 1, err, sizeof(err)), 0);
    assert_int_equal(booking_check_amount(&RULES, 10000000, err, sizeof(err)), 0);
    assert_int_equal(booking_check_amount(&RULES, 10000001, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "between 1 and 10000000"));
    assert_int_equal(booking_check_amount(&RULES, 0, err, sizeof(err)), ERR_INVALID);
    assert_int_equal(booking_check_amount(&RULES, -5, err, sizeof(err)), ERR_INVALID);
    assert_int_equal(booking_check_amount(&RULES, INT64_MIN, err, sizeof(err)), ERR_INVALID);
}

static void test_idempotency_key_is_1_to_64_visible_ascii(void **state) {
    (void)state;
    char k64[65], k65[66];
    memset(k64, 'k', 64);
    k64[64] = '\0';
    memset(k65, 'k', 65);
    k65[65] = '\0';
    assert_int_equal(booking_check_idem_key("a", err, sizeof(err)), 0);
    assert_int_equal(
        booking_check_idem_key("550e8400-e29b-41d4-a716-446655440000", err, sizeof(err)), 0);
    assert_int_equal(booking_check_idem_key(k64, err, sizeof(err)), 0);
    assert_int_equal(booking_check_idem_key(k65, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "Idempotency-Key"));
    assert_int_equal(booking_check_idem_key("", err, sizeof(err)), ERR_INVALID);
    assert_int_equal(booking_check_idem_key("a b", err, sizeof(err)), ERR_INVALID);
    assert_int_equal(booking_check_idem_key("tab\there", err, sizeof(err)), ERR_INVALID);
    assert_int_equal(booking_check_idem_key("caf\xc3\xa9", err, sizeof(err)), ERR_INVALID);
}

static void test_method_is_balance_card_or_absent(void **state) {
    (void)state;
    assert_int_equal(booking_check_method(NULL, err, sizeof(err)), 0);
    assert_int_equal(booking_check_method("balance", err, sizeof(err)), 0);
    assert_int_equal(booking_check_method("card", err, sizeof(err)), 0);
    assert_int_equal(booking_check_method("cash", err, sizeof(err)), ERR_INVALID);
    assert_int_equal(booking_check_method("Balance", err, sizeof(err)), ERR_INVALID);
}

/* ---- decisions ---------------------------------------------------------------- */

static void test_credit_refuses_overflow(void **state) {
    (void)state;
    int64_t after = 0;
    assert_int_equal(booking_credit(100, 50, &after), 0);
    assert_int_equal(after, 150);
    assert_int_equal(booking_credit(INT64_MAX - 10, 10, &after), 0);
    assert_int_equal(after, INT64_MAX);
    after = 7;
    assert_int_equal(booking_credit(INT64_MAX - 10, 11, &after), ERR_INVALID);
    assert_int_equal(booking_credit(INT64_MAX, 1, &after), ERR_INVALID);
    assert_int_equal(booking_credit(-1, 1, &after), ERR_INVALID);
}

static void test_hold_is_expired_from_the_instant_its_time_is_up(void **state) {
    (void)state;
    struct store_reservation r = held(1, 10, NOW);
    assert_int_equal(booking_effective_status(&r, NOW - 1), STORE_RES_HELD);
    assert_int_equal(booking_effective_status(&r, NOW), STORE_RES_EXPIRED);
    r.status = STORE_RES_CONFIRMED; /* a sale does not expire */
    assert_int_equal(booking_effective_status(&r, NOW + 1000000), STORE_RES_CONFIRMED);
    assert_string_equal(booking_status_name(STORE_RES_CANCELLED), "CANCELLED");
    assert_string_equal(booking_status_name(STORE_RES_PAYMENT_PENDING), "PAYMENT_PENDING");
}

static void test_only_the_owner_pays_a_live_hold_with_enough_balance(void **state) {
    (void)state;
    struct store_reservation r = held(7, 300000, NOW + 1000);
    assert_int_equal(booking_can_pay(&r, 7, 300000, NOW), 0);
    assert_int_equal(booking_can_pay(&r, 7, 299999, NOW), ERR_INSUFFICIENT);
    assert_int_equal(booking_can_pay(&r, 8, 1000000, NOW), ERR_FORBIDDEN);
    assert_int_equal(booking_can_pay(&r, 7, 300000, NOW + 1000), ERR_CONFLICT); /* expired */
    int states[] = {STORE_RES_CONFIRMED, STORE_RES_CANCELLED, STORE_RES_EXPIRED,
                    STORE_RES_PAYMENT_PENDING};
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        r.status = states[i];
        assert_int_equal(booking_can_pay(&r, 7, 1000000, NOW), ERR_CONFLICT);
    }
    r.status = STORE_RES_CANCELLED; /* the owner check comes first */
    assert_int_equal(booking_can_pay(&r, 8, 1000000, NOW), ERR_FORBIDDEN);
}

static void test_cancel_needs_a_live_hold_and_repeats_harmlessly(void **state) {
    (void)state;
    struct store_reservation r = held(7, 10, NOW + 1000);
    assert_int_equal(booking_can_cancel(&r, 7, 0, NOW), 0);
    assert_int_equal(booking_can_cancel(&r, 0, 0, NOW), 0); /* caller unknown: no owner check */
    assert_int_equal(booking_can_cancel(&r, 9, 0, NOW), ERR_FORBIDDEN);
    assert_int_equal(booking_can_cancel(&r, 7, 0, NOW + 1000), ERR_CONFLICT);
    r.status = STORE_RES_CANCELLED;
    assert_int_equal(booking_can_cancel(&r, 7, 0, NOW), 1);
    r.status = STORE_RES_CONFIRMED;
    assert_int_equal(booking_can_cancel(&r, 7, 0, NOW), ERR_CONFLICT);
    r.status = STORE_RES_EXPIRED;
    assert_int_equal(booking_can_cancel(&r, 7, 0, NOW), ERR_CONFLICT);
}

/* ---- operations ----------------------------------------------------------------- */

static void test_hold_expires_after_the_ttl(void **state) {
    struct fake *f = *state;
    int64_t ids[2] = {11, 12};
    struct store_hold h = {
        .concert_id = 1, .session_id = 2, .user_id = 3, .seat_ids = ids, .nseats = 2};
    struct store_reservation out;
    assert_int_equal(booking_hold(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)), 0);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->hold.now_ms, NOW);
    assert_int_equal(f->hold.expires_at_ms, NOW + RULES.hold_ttl_ms);
    assert_int_equal(f->hold.nseats, 2);
}

static void test_bad_hold_never_reaches_the_store(void **state) {
    struct fake *f = *state;
    int64_t dup[2] = {11, 11};
    struct store_hold h = {
        .concert_id = 1, .session_id = 2, .user_id = 3, .seat_ids = dup, .nseats = 2};
    struct store_reservation out;
    assert_int_equal(booking_hold(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)),
                     ERR_INVALID);
    h.nseats = 1;
    h.user_id = 0;
    assert_int_equal(booking_hold(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)),
                     ERR_INVALID);
    assert_int_equal(f->calls, 0);
}

static void test_get_hides_another_users_reservation_and_shows_expiry(void **state) {
    struct fake *f = *state;
    f->res = held(7, 10, NOW + 5);
    struct store_reservation out;
    assert_int_equal(booking_get(&f->base, NULL, 5, 8, NOW, &out), ERR_FORBIDDEN);
    assert_int_equal(booking_get(&f->base, NULL, 6, 7, NOW, &out), ERR_NOT_FOUND);
    assert_int_equal(booking_get(&f->base, NULL, 5, 7, NOW, &out), 0);
    assert_int_equal(out.status, STORE_RES_HELD);
    assert_int_equal(booking_get(&f->base, NULL, 5, 0, NOW + 5, &out), 0);
    assert_int_equal(out.status, STORE_RES_EXPIRED);
}

static void test_card_payment_is_unavailable_without_a_gateway(void **state) {
    struct fake *f = *state;
    struct store_pay p = {.reservation_id = 5, .user_id = 7, .now_ms = NOW, .method = "card"};
    assert_int_equal(booking_pay(&f->base, NULL, &p, NULL), ERR_UNAVAILABLE);
    assert_int_equal(f->calls, 0);
}

static void test_payment_defaults_to_balance_and_hands_the_store_its_rule(void **state) {
    struct fake *f = *state;
    struct store_pay p = {.reservation_id = 5, .user_id = 7, .now_ms = NOW};
    struct store_idem idem = {.scope = "u7", .key = "k", .hash = "h"};
    assert_int_equal(booking_pay(&f->base, NULL, &p, &idem), 0);
    assert_string_equal(p.method, "balance");
    assert_ptr_equal(f->pay_check, booking_can_pay);
    assert_int_equal(f->idem_ttl, BOOKING_IDEM_TTL_MS);
    assert_int_equal(BOOKING_IDEM_TTL_MS, 24 * 3600 * 1000);
}

static void test_charge_checks_the_amount_then_credits_without_overflow(void **state) {
    struct fake *f = *state;
    struct store_charge c = {.user_id = 7, .amount = 0, .now_ms = NOW};
    assert_int_equal(booking_charge(&f->base, NULL, &RULES, &c, NULL, err, sizeof(err)),
                     ERR_INVALID);
    assert_int_equal(f->calls, 0);
    c.amount = 50;
    assert_int_equal(booking_charge(&f->base, NULL, &RULES, &c, NULL, err, sizeof(err)), 0);
    assert_ptr_equal(f->credit, booking_credit);
    assert_int_equal(c.balance, 150);
}

static void test_sweep_repeats_while_batches_are_full_and_purges_day_old_keys(void **state) {
    struct fake *f = *state;
    f->expire_results[0] = BOOKING_SWEEP_BATCH;
    f->expire_results[1] = BOOKING_SWEEP_BATCH;
    f->expire_results[2] = 3;
    f->nexpire = 3;
    int64_t n = 0;
    assert_int_equal(booking_sweep(&f->base, NOW, 1, &n), 0);
    assert_int_equal(n, 2 * BOOKING_SWEEP_BATCH + 3);
    assert_int_equal(atomic_load(&f->expire_calls), 3);
    assert_int_equal(f->purges, 1);
    assert_int_equal(f->purge_before, NOW - BOOKING_IDEM_TTL_MS);
    assert_int_equal(booking_sweep(&f->base, NOW, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(f->purges, 1);
}

static void test_sweeper_thread_sweeps_repeatedly_until_stopped(void **state) {
    struct fake *f = *state;
    struct booking_sweeper *sw;
    assert_int_equal(booking_sweeper_start(&f->base, 10, &sw), 0);
    int64_t deadline = time_mono_ms() + 5000;
    while (atomic_load(&f->expire_calls) < 3 && time_mono_ms() < deadline) usleep(2000);
    int64_t t0 = time_mono_ms();
    booking_sweeper_stop(sw);
    assert_true(time_mono_ms() - t0 < 1000); /* stop does not wait out a long interval */
    assert_true(atomic_load(&f->expire_calls) >= 3);
    assert_int_equal(f->purges, 1); /* the first pass purges, the next ones within a minute not */
    int calls = atomic_load(&f->expire_calls);
    usleep(50000);
    assert_int_equal(atomic_load(&f->expire_calls), calls);
}

/* ---- the classic API's calls ---------------------------------------------------- */

static void test_hold_by_numbers_holds_the_seat_ids_they_name(void **state) {
    struct fake *f = *state;
    int64_t numbers[2] = {7, 3};
    struct store_hold h = {
        .concert_id = 1, .session_id = 2, .user_id = 3, .seat_ids = numbers, .nseats = 2};
    struct store_reservation out;
    assert_int_equal(booking_hold_numbers(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)),
                     0);
    assert_int_equal(f->calls, 2); /* the mapping, then the hold */
    assert_int_equal(f->hold.nseats, 2);
    assert_int_equal(f->held_ids[0], 107);
    assert_int_equal(f->held_ids[1], 103);
    assert_int_equal(f->hold.expires_at_ms, NOW + RULES.hold_ttl_ms);
    assert_ptr_equal(h.seat_ids, numbers); /* the caller's numbers again */
}

static void test_hold_by_numbers_names_an_unknown_number_and_holds_nothing(void **state) {
    struct fake *f = *state;
    struct store_hold h = {.concert_id = 1,
                           .session_id = 2,
                           .user_id = 3,
                           .seat_ids = (int64_t[]){4, 51},
                           .nseats = 2};
    struct store_reservation out;
    assert_int_equal(booking_hold_numbers(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)),
                     ERR_NOT_FOUND);
    assert_int_equal(h.bad_seat_number, 51);
    assert_int_equal(h.bad_seat_id, 0);
    h.concert_id = 2; /* session 2 is not concert 2's */
    assert_int_equal(booking_hold_numbers(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)),
                     ERR_NOT_FOUND);
    assert_int_equal(h.bad_seat_number, 0);
    assert_int_equal(f->calls, 2); /* two lookups, no hold */
    /* A bad list is refused before the store is asked anything. */
    h.seat_ids = (int64_t[]){4, 4};
    assert_int_equal(booking_hold_numbers(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)),
                     ERR_INVALID);
    assert_non_null(strstr(err, "seat 4 more than once"));
    h.nseats = 5;
    h.seat_ids = (int64_t[]){1, 2, 3, 4, 5};
    assert_int_equal(booking_hold_numbers(&f->base, NULL, &RULES, &h, NOW, &out, err, sizeof(err)),
                     ERR_INVALID);
    assert_int_equal(f->calls, 2);
}

static void test_pay_amount_pays_only_the_price_to_its_owner(void **state) {
    struct fake *f = *state;
    f->res = held(7, 3000, NOW + 1000);
    struct store_pay p = {.reservation_id = 5, .user_id = 7, .now_ms = NOW};
    assert_int_equal(booking_pay_amount(&f->base, NULL, &p, 2999, NULL), ERR_MISMATCH);
    assert_int_equal(p.res.total_price, 3000);
    assert_int_equal(booking_pay_amount(&f->base, NULL, &p, 0, NULL), ERR_MISMATCH);
    assert_null(f->pay_check); /* the store's pay was never called */
    p.user_id = 8;
    assert_int_equal(booking_pay_amount(&f->base, NULL, &p, 3000, NULL), ERR_FORBIDDEN);
    p.reservation_id = 6;
    assert_int_equal(booking_pay_amount(&f->base, NULL, &p, 3000, NULL), ERR_NOT_FOUND);
    assert_null(f->pay_check);
    p.reservation_id = 5;
    p.user_id = 7;
    assert_int_equal(booking_pay_amount(&f->base, NULL, &p, 3000, NULL), 0);
    assert_ptr_equal(f->pay_check, booking_can_pay);
    assert_string_equal(p.method, "balance");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    log_init(getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
    const struct CMUnitTest tests[] = {
        T(test_seat_list_takes_one_to_max_distinct_positive_ids),
        T(test_seat_list_never_exceeds_the_hard_limit),
        T(test_charge_amount_is_one_to_max_charge),
        T(test_idempotency_key_is_1_to_64_visible_ascii),
        T(test_method_is_balance_card_or_absent),
        T(test_credit_refuses_overflow),
        T(test_hold_is_expired_from_the_instant_its_time_is_up),
        T(test_only_the_owner_pays_a_live_hold_with_enough_balance),
        T(test_cancel_needs_a_live_hold_and_repeats_harmlessly),
        T(test_hold_expires_after_the_ttl),
        T(test_bad_hold_never_reaches_the_store),
        T(test_get_hides_another_users_reservation_and_shows_expiry),
        T(test_card_payment_is_unavailable_without_a_gateway),
        T(test_payment_defaults_to_balance_and_hands_the_store_its_rule),
        T(test_charge_checks_the_amount_then_credits_without_overflow),
        T(test_sweep_repeats_while_batches_are_full_and_purges_day_old_keys),
        T(test_sweeper_thread_sweeps_repeatedly_until_stopped),
        T(test_hold_by_numbers_holds_the_seat_ids_they_name),
        T(test_hold_by_numbers_names_an_unknown_number_and_holds_nothing),
        T(test_pay_amount_pays_only_the_price_to_its_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
