/* test_breaker.c -- the circuit breaker (src/service/breaker.c): every
 * transition of CLOSED / OPEN / HALF_OPEN, driven by a fake clock (the
 * breaker takes now_ms on every call), with the change callback recorded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/err.h"
#include "service/breaker.h"

static const struct breaker_opts OPTS = {
    .window = 20,
    .min_calls = 10,
    .failure_rate_pct = 50,
    .open_ms = 10000,
    .half_open_calls = 3,
    .slow_ms = 2000,
};

struct changes {
    int n;
    int from[16], to[16];
    int64_t at[16];
};

static void on_change(void *ctx, int from, int to, int64_t now_ms) {
    struct changes *c = ctx;
    if (c->n < 16) {
        c->from[c->n] = from;
        c->to[c->n] = to;
        c->at[c->n] = now_ms;
    }
    c->n++;
}

static int64_t clk; /* the fake clock, ms */

/* One call through b that ends ok or not, taking duration ms. 0 or the refusal. */
static int call(struct breaker *b, int ok, int64_t duration) {
    struct breaker_ticket t;
    int err = breaker_acquire(b, clk, &t, NULL);
    if (err) return err;
    clk += duration;
    breaker_record(b, &t, ok, duration, clk);
    return 0;
}

static struct breaker *new_breaker(struct changes *c) {
    *c = (struct changes){0};
    clk = 1000000;
    struct breaker *b = breaker_new(&OPTS, on_change, c);
    assert_non_null(b);
    return b;
}

/* Opens b with 10 failures (min calls, 100 %). */
static void open_it(struct breaker *b) {
    for (int i = 0; i < 10; i++) assert_int_equal(call(b, 0, 5), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_OPEN);
}

static void test_bad_options_are_refused(void **state) {
    (void)state;
    struct breaker_opts o = OPTS;
    o.min_calls = 21;
    assert_null(breaker_new(&o, NULL, NULL));
    o = OPTS;
    o.failure_rate_pct = 0;
    assert_null(breaker_new(&o, NULL, NULL));
    o = OPTS;
    o.window = 0;
    assert_null(breaker_new(&o, NULL, NULL));
}

static void test_stays_closed_below_min_calls_even_if_all_fail(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    for (int i = 0; i < 9; i++) assert_int_equal(call(b, 0, 5), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    assert_int_equal(c.n, 0);
    breaker_free(b);
}

static void test_stays_closed_below_the_failure_rate(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    /* 20 calls, 9 failed: 45 % < 50 % */
    for (int i = 0; i < 20; i++) assert_int_equal(call(b, i < 11, 5), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    assert_int_equal(c.n, 0);
    breaker_free(b);
}

static void test_opens_at_the_failure_rate_after_min_calls(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    for (int i = 0; i < 5; i++) assert_int_equal(call(b, 1, 5), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(call(b, 0, 5), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED); /* 9 calls: too few */
    assert_int_equal(call(b, 0, 5), 0);                      /* 5 of 10 failed: 50 % */
    assert_int_equal(breaker_state(b, clk), BREAKER_OPEN);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.from[0], BREAKER_CLOSED);
    assert_int_equal(c.to[0], BREAKER_OPEN);
    assert_int_equal(c.at[0], clk);
    breaker_free(b);
}

static void test_slow_calls_count_as_failures(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    for (int i = 0; i < 10; i++) assert_int_equal(call(b, 1, 2000), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_OPEN);
    breaker_free(b);
}

static void test_calls_just_under_the_slow_limit_are_fine(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    for (int i = 0; i < 20; i++) assert_int_equal(call(b, 1, 1999), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    breaker_free(b);
}

static void test_window_slides_old_failures_out(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    for (int i = 0; i < 11; i++) assert_int_equal(call(b, 1, 5), 0);
    for (int i = 0; i < 9; i++) assert_int_equal(call(b, 0, 5), 0);  /* 9 of 20: 45 % */
    for (int i = 0; i < 20; i++) assert_int_equal(call(b, 1, 5), 0); /* failures slide out */
    for (int i = 0; i < 9; i++) assert_int_equal(call(b, 0, 5), 0);  /* 9 of 20 again */
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    assert_int_equal(c.n, 0);
    breaker_free(b);
}

static void test_the_rate_is_of_the_last_window_calls_only(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    for (int i = 0; i < 11; i++) assert_int_equal(call(b, 1, 5), 0);
    for (int i = 0; i < 9; i++) assert_int_equal(call(b, 0, 5), 0); /* 9 of 20: 45 % */
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    assert_int_equal(call(b, 0, 5), 0); /* the oldest success leaves: 10 of 20 (not 10 of 21) */
    assert_int_equal(breaker_state(b, clk), BREAKER_OPEN);
    breaker_free(b);
}

static void test_open_refuses_with_retry_after_until_the_interval_ends(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    open_it(b);
    int64_t opened = clk;
    struct breaker_ticket t;
    int64_t retry = 0;
    clk = opened + 2500;
    assert_int_equal(breaker_acquire(b, clk, &t, &retry), ERR_UNAVAILABLE);
    assert_int_equal(retry, 7500);
    clk = opened + 9999;
    assert_int_equal(breaker_acquire(b, clk, &t, &retry), ERR_UNAVAILABLE);
    assert_int_equal(retry, 1);
    assert_int_equal(breaker_state(b, clk), BREAKER_OPEN);
    clk = opened + 10000;
    assert_int_equal(breaker_state(b, clk), BREAKER_HALF_OPEN);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.from[1], BREAKER_OPEN);
    assert_int_equal(c.to[1], BREAKER_HALF_OPEN);
    breaker_free(b);
}

static void test_half_open_lets_three_trials_out_and_closes_when_all_succeed(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    open_it(b);
    clk += 10000;
    struct breaker_ticket t[4];
    for (int i = 0; i < 3; i++) assert_int_equal(breaker_acquire(b, clk, &t[i], NULL), 0);
    int64_t retry = 0;
    assert_int_equal(breaker_acquire(b, clk, &t[3], &retry), ERR_UNAVAILABLE);
    assert_true(retry >= 1);
    breaker_record(b, &t[0], 1, 10, clk);
    breaker_record(b, &t[1], 1, 10, clk);
    assert_int_equal(breaker_state(b, clk), BREAKER_HALF_OPEN);
    breaker_record(b, &t[2], 1, 10, clk);
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.from[2], BREAKER_HALF_OPEN);
    assert_int_equal(c.to[2], BREAKER_CLOSED);
    /* closed with an empty window: 9 failures do not reopen it */
    for (int i = 0; i < 9; i++) assert_int_equal(call(b, 0, 5), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    breaker_free(b);
}

static void test_a_failed_trial_opens_again_for_a_full_interval(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    open_it(b);
    clk += 10000;
    struct breaker_ticket t1, t2;
    assert_int_equal(breaker_acquire(b, clk, &t1, NULL), 0);
    assert_int_equal(breaker_acquire(b, clk, &t2, NULL), 0);
    breaker_record(b, &t1, 1, 10, clk);
    clk += 50;
    breaker_record(b, &t2, 0, 10, clk);
    assert_int_equal(breaker_state(b, clk), BREAKER_OPEN);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.from[2], BREAKER_HALF_OPEN);
    assert_int_equal(c.to[2], BREAKER_OPEN);
    int64_t retry = 0;
    struct breaker_ticket t3;
    assert_int_equal(breaker_acquire(b, clk, &t3, &retry), ERR_UNAVAILABLE);
    assert_int_equal(retry, 10000);
    breaker_free(b);
}

static void test_a_slow_trial_counts_as_failed(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    open_it(b);
    clk += 10000;
    assert_int_equal(call(b, 1, 2500), 0);
    assert_int_equal(breaker_state(b, clk), BREAKER_OPEN);
    breaker_free(b);
}

static void test_reports_from_before_a_state_change_are_ignored(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    struct breaker_ticket early;
    assert_int_equal(breaker_acquire(b, clk, &early, NULL), 0); /* permitted while CLOSED */
    open_it(b);
    clk += 10000;
    assert_int_equal(breaker_state(b, clk), BREAKER_HALF_OPEN);
    breaker_record(b, &early, 0, 10, clk); /* the old call fails late: no effect */
    assert_int_equal(breaker_state(b, clk), BREAKER_HALF_OPEN);
    assert_int_equal(c.n, 2);
    breaker_free(b);
}

static void test_a_cancelled_trial_gives_its_permit_back(void **state) {
    (void)state;
    struct changes c;
    struct breaker *b = new_breaker(&c);
    open_it(b);
    clk += 10000;
    struct breaker_ticket t[4];
    for (int i = 0; i < 3; i++) assert_int_equal(breaker_acquire(b, clk, &t[i], NULL), 0);
    assert_int_equal(breaker_acquire(b, clk, &t[3], NULL), ERR_UNAVAILABLE);
    breaker_cancel(b, &t[2]);
    assert_int_equal(breaker_acquire(b, clk, &t[3], NULL), 0);
    for (int i = 0; i < 2; i++) breaker_record(b, &t[i], 1, 1, clk);
    breaker_record(b, &t[3], 1, 1, clk);
    assert_int_equal(breaker_state(b, clk), BREAKER_CLOSED);
    breaker_free(b);
}

static void test_state_names(void **state) {
    (void)state;
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    assert_int_equal(BREAKER_CLOSED, 0);
    assert_int_equal(BREAKER_OPEN, 1);
    assert_int_equal(BREAKER_HALF_OPEN, 2);
}

#define T(f) cmocka_unit_test(f)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_bad_options_are_refused),
        T(test_stays_closed_below_min_calls_even_if_all_fail),
        T(test_stays_closed_below_the_failure_rate),
        T(test_opens_at_the_failure_rate_after_min_calls),
        T(test_slow_calls_count_as_failures),
        T(test_calls_just_under_the_slow_limit_are_fine),
        T(test_window_slides_old_failures_out),
        T(test_the_rate_is_of_the_last_window_calls_only),
        T(test_open_refuses_with_retry_after_until_the_interval_ends),
        T(test_half_open_lets_three_trials_out_and_closes_when_all_succeed),
        T(test_a_failed_trial_opens_again_for_a_full_interval),
        T(test_a_slow_trial_counts_as_failed),
        T(test_reports_from_before_a_state_change_are_ignored),
        T(test_a_cancelled_trial_gives_its_permit_back),
        T(test_state_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
