/* test_num.c -- strict integer and size parsing (src/core/num.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/num.h"

static void test_i64_parses_plain_decimal(void **state) {
    (void)state;
    int64_t v = -1;
    assert_int_equal(num_parse_i64("0", 0, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(num_parse_i64("42", 0, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(num_parse_i64("007", 0, &v), 0);
    assert_int_equal(v, 7);
}

static void test_i64_accepts_minus_only_when_allowed(void **state) {
    (void)state;
    int64_t v = 0;
    assert_int_equal(num_parse_i64("-17", 1, &v), 0);
    assert_int_equal(v, -17);
    v = 99;
    assert_int_equal(num_parse_i64("-17", 0, &v), ERR_INVALID);
    assert_int_equal(v, 99);
    assert_int_equal(num_parse_i64("-", 1, &v), ERR_INVALID);
    assert_int_equal(num_parse_i64("--1", 1, &v), ERR_INVALID);
}

static void test_i64_rejects_plus_space_and_junk(void **state) {
    (void)state;
    static const char *const bad[] = {"",    "+1",  " 1",  "1 ", "1a", "0x10",
                                      "1.0", "1e3", "\t1", "1-", NULL};
    int64_t v = 5;
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(num_parse_i64(bad[i], 1, &v), ERR_INVALID);
        assert_int_equal(v, 5);
    }
    assert_int_equal(num_parse_i64(NULL, 1, &v), ERR_INVALID);
}

static void test_i64_accepts_exact_limits(void **state) {
    (void)state;
    int64_t v = 0;
    assert_int_equal(num_parse_i64("9223372036854775807", 0, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(num_parse_i64("-9223372036854775808", 1, &v), 0);
    assert_true(v == INT64_MIN);
}

static void test_i64_rejects_overflow_one_past_limits(void **state) {
    (void)state;
    int64_t v = 3;
    assert_int_equal(num_parse_i64("9223372036854775808", 0, &v), ERR_INVALID);
    assert_int_equal(num_parse_i64("-9223372036854775809", 1, &v), ERR_INVALID);
    assert_int_equal(num_parse_i64("99999999999999999999", 0, &v), ERR_INVALID);
    assert_int_equal(num_parse_i64("18446744073709551616", 0, &v), ERR_INVALID);
    assert_int_equal(v, 3);
}

static void test_i64n_reads_only_len_bytes(void **state) {
    (void)state;
    int64_t v = 0;
    assert_int_equal(num_parse_i64n("123abc", 3, 0, &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(num_parse_i64n("123abc", 4, 0, &v), ERR_INVALID);
    assert_int_equal(num_parse_i64n("123", 0, 0, &v), ERR_INVALID);
    const char nonterminated[2] = {'4', '2'};
    assert_int_equal(num_parse_i64n(nonterminated, 2, 0, &v), 0);
    assert_int_equal(v, 42);
}

static void test_size_plain_bytes(void **state) {
    (void)state;
    int64_t v = 0;
    assert_int_equal(num_parse_size("65536", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(num_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
}

static void test_size_suffixes_are_powers_of_1024(void **state) {
    (void)state;
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        {"64k", 65536},     {"64K", 65536},         {"64KiB", 65536},  {"64kb", 65536},
        {"64KB", 65536},    {"1m", 1048576},        {"1MiB", 1048576}, {"16MiB", 16777216},
        {"1g", 1073741824}, {"2GiB", 2147483648LL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = -1;
        assert_int_equal(num_parse_size(cases[i].in, &v), 0);
        assert_int_equal(v, cases[i].want);
    }
}

static void test_size_rejects_junk_and_negative(void **state) {
    (void)state;
    static const char *const bad[] = {"",    "k",  "-1",    "+1", "1.5k", "1 k",
                                      "1kk", "1t", "1KiBs", "1i", "kib",  NULL};
    int64_t v = 9;
    for (int i = 0; bad[i]; i++) assert_int_equal(num_parse_size(bad[i], &v), ERR_INVALID);
    assert_int_equal(v, 9);
}

static void test_size_rejects_overflow(void **state) {
    (void)state;
    int64_t v = 0;
    /* 8 GiB * 2^30 = 2^63: one past INT64_MAX. */
    assert_int_equal(num_parse_size("8589934592g", &v), ERR_INVALID);
    assert_int_equal(num_parse_size("8589934591g", &v), 0);
    assert_true(v == INT64_C(8589934591) * 1073741824);
    assert_int_equal(num_parse_size("9223372036854775808", &v), ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_i64_parses_plain_decimal),
        cmocka_unit_test(test_i64_accepts_minus_only_when_allowed),
        cmocka_unit_test(test_i64_rejects_plus_space_and_junk),
        cmocka_unit_test(test_i64_accepts_exact_limits),
        cmocka_unit_test(test_i64_rejects_overflow_one_past_limits),
        cmocka_unit_test(test_i64n_reads_only_len_bytes),
        cmocka_unit_test(test_size_plain_bytes),
        cmocka_unit_test(test_size_suffixes_are_powers_of_1024),
        cmocka_unit_test(test_size_rejects_junk_and_negative),
        cmocka_unit_test(test_size_rejects_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
