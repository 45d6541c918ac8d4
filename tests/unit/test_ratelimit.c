/* test_ratelimit.c -- the token buckets (src/core/ratelimit.c), driven by a
 * fake clock: burst, refill, Retry-After, independence of ids, the fixed
 * table size under many ids, and long idle times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/ratelimit.h"

static int takes(struct ratelimit *rl, uint64_t key, int64_t now, int n) {
    int ok = 0;
    for (int i = 0; i < n; i++) ok += ratelimit_take(rl, key, now, NULL);
    return ok;
}

static void test_burst_then_refused_with_retry(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(2, 5, 1024);
    assert_int_equal(takes(rl, 7, 1000, 5), 5);
    int64_t retry = 0;
    assert_int_equal(ratelimit_take(rl, 7, 1000, &retry), 0);
    assert_int_equal(retry, 500); /* 2 a second: the next token in 500 ms */
    assert_int_equal(ratelimit_take(rl, 7, 1499, &retry), 0);
    assert_int_equal(retry, 1);
    assert_int_equal(ratelimit_take(rl, 7, 1500, NULL), 1);
    ratelimit_free(rl);
}

static void test_refill_is_capped_at_burst(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(1, 3, 1024);
    assert_int_equal(takes(rl, 1, 0, 5), 3);
    assert_int_equal(takes(rl, 1, 60000, 10), 3); /* a minute later: still only 3 */
    ratelimit_free(rl);
}

static void test_burst_is_at_least_the_rate(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(10, 1, 1024);
    assert_int_equal(takes(rl, 1, 0, 20), 10);
    ratelimit_free(rl);
}

static void test_ids_are_independent(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(1, 2, 1024);
    assert_int_equal(takes(rl, 1, 0, 5), 2);
    assert_int_equal(takes(rl, 2, 0, 5), 2);
    assert_int_equal(takes(rl, 0, 0, 5), 2); /* id 0 is an id like any other */
    ratelimit_free(rl);
}

static void test_many_ids_do_not_grow_the_table(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(1, 1, 1000);
    size_t cap = ratelimit_capacity(rl);
    assert_true(cap >= 1000 && cap <= 4096);
    for (uint64_t k = 1; k <= 1000000; k++) ratelimit_take(rl, k, (int64_t)k, NULL);
    assert_int_equal(ratelimit_capacity(rl), cap);
    /* A recent id keeps its (empty) bucket: LRU eviction takes old ones. */
    assert_int_equal(ratelimit_take(rl, 1000000, 1000000, NULL), 0);
    ratelimit_free(rl);
}

static void test_long_idle_does_not_overflow(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(1000000, 1000000, 64);
    assert_int_equal(takes(rl, 9, 0, 1000000), 1000000);
    assert_int_equal(ratelimit_take(rl, 9, INT64_MAX / 2, NULL), 1);
    assert_int_equal(takes(rl, 9, INT64_MAX / 2, 1000000), 999999);
    ratelimit_free(rl);
}

static void test_clock_going_back_refills_nothing(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(1, 1, 64);
    assert_int_equal(ratelimit_take(rl, 3, 5000, NULL), 1);
    assert_int_equal(ratelimit_take(rl, 3, 1000, NULL), 0);
    ratelimit_free(rl);
}

static void test_zero_rate_and_null_allow_everything(void **state) {
    (void)state;
    struct ratelimit *rl = ratelimit_create(0, 0, 64);
    assert_int_equal(takes(rl, 1, 0, 1000), 1000);
    assert_int_equal(ratelimit_capacity(rl), 0);
    ratelimit_free(rl);
    assert_int_equal(ratelimit_take(NULL, 1, 0, NULL), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refused_with_retry),
        cmocka_unit_test(test_refill_is_capped_at_burst),
        cmocka_unit_test(test_burst_is_at_least_the_rate),
        cmocka_unit_test(test_ids_are_independent),
        cmocka_unit_test(test_many_ids_do_not_grow_the_table),
        cmocka_unit_test(test_long_idle_does_not_overflow),
        cmocka_unit_test(test_clock_going_back_refills_nothing),
        cmocka_unit_test(test_zero_rate_and_null_allow_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
