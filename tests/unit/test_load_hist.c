/* test_load_hist.c -- concert-load's latency histogram (tools/load/hist.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hist.h"

static struct hist h, g;

static void test_small_values_are_exact(void **state) {
    (void)state;
    hist_init(&h);
    for (uint64_t v = 1; v <= 100; v++) hist_record(&h, v);
    assert_true(hist_pct(&h, 50) == 50.0);
    assert_true(hist_pct(&h, 99) == 99.0);
    assert_true(hist_pct(&h, 100) == 100.0);
    assert_int_equal(h.min_us, 1);
    assert_int_equal(h.max_us, 100);
    assert_true(hist_mean(&h) == 50.5);
}

static void test_large_values_are_within_one_percent(void **state) {
    (void)state;
    hist_init(&h);
    for (uint64_t v = 1000; v <= 1000000; v += 1000) hist_record(&h, v); /* 1000 values */
    double p90 = hist_pct(&h, 90), p99 = hist_pct(&h, 99), p50 = hist_pct(&h, 50);
    assert_true(p50 > 500000 * 0.99 && p50 < 500000 * 1.01);
    assert_true(p90 > 900000 * 0.99 && p90 < 900000 * 1.01);
    assert_true(p99 > 990000 * 0.99 && p99 < 990000 * 1.01);
}

static void test_merge_equals_recording_everything_in_one(void **state) {
    (void)state;
    struct hist *all = &h, *part = &g;
    static struct hist other;
    hist_init(all);
    hist_init(part);
    hist_init(&other);
    for (uint64_t v = 1; v < 200000; v = v * 3 / 2 + 1) {
        hist_record(all, v);
        hist_record(v & 1 ? part : &other, v);
    }
    hist_merge(part, &other);
    assert_int_equal(part->count, all->count);
    assert_int_equal(part->sum_us, all->sum_us);
    assert_int_equal(part->min_us, all->min_us);
    assert_int_equal(part->max_us, all->max_us);
    for (double p = 1; p <= 100; p += 7) assert_true(hist_pct(part, p) == hist_pct(all, p));
}

static void test_empty_and_huge(void **state) {
    (void)state;
    hist_init(&h);
    assert_true(hist_pct(&h, 99) == 0.0);
    assert_true(hist_mean(&h) == 0.0);
    hist_record(&h, UINT64_MAX / 4); /* beyond the range: last bucket, max exact */
    assert_int_equal(h.max_us, UINT64_MAX / 4);
    assert_true(hist_pct(&h, 100) == (double)(UINT64_MAX / 4));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_large_values_are_within_one_percent),
        cmocka_unit_test(test_merge_equals_recording_everything_in_one),
        cmocka_unit_test(test_empty_and_huge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
