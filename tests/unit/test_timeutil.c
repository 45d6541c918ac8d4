/* test_timeutil.c -- clocks, RFC 3339 and durations (src/core/timeutil.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/timeutil.h"

#define XMAS_19H_MS INT64_C(1798138800000) /* 2026-12-24T19:00:00Z */

static void test_now_is_after_2024(void **state) {
    (void)state;
    assert_true(time_now_ms() > INT64_C(1704067200000));
}

static void test_monotonic_clocks_agree_and_never_go_back(void **state) {
    (void)state;
    int64_t ms = time_mono_ms(), us = time_mono_us();
    assert_true(us / 1000 >= ms);
    assert_true(us / 1000 - ms < 1000);
    assert_true(time_mono_us() >= us);
}

static void test_format_writes_utc_with_z(void **state) {
    (void)state;
    char buf[32];
    assert_int_equal(time_format_rfc3339(XMAS_19H_MS, buf, sizeof(buf)), 20);
    assert_string_equal(buf, "2026-12-24T19:00:00Z");
    assert_int_equal(time_format_rfc3339(0, buf, sizeof(buf)), 20);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
}

/* The hand-made formatter against the C library, over 1900-2400 (leap
 * centuries included) and every day boundary of a few leap years. */
static void test_format_matches_gmtime(void **state) {
    (void)state;
    char buf[32], want[64];
    uint64_t x = 88172645463325252u; /* xorshift */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t sec = -2208988800 + (int64_t)(x % ((uint64_t)500 * 366 * 86400));
        if (i < 4 * 366) sec = 946684800 + (int64_t)i * 86400 - (i % 2); /* 2000..2003 edges */
        time_t t = (time_t)sec;
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        assert_int_equal(time_format_rfc3339(sec * 1000 + 123, buf, sizeof(buf)), 20);
        assert_string_equal(buf, want);
    }
}

static void test_format_truncates_milliseconds(void **state) {
    (void)state;
    char buf[21];
    time_format_rfc3339(XMAS_19H_MS + 999, buf, sizeof(buf));
    assert_string_equal(buf, "2026-12-24T19:00:00Z");
    time_format_rfc3339(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31T23:59:59Z");
}

static void test_parse_utc(void **state) {
    (void)state;
    int64_t ms = 0;
    assert_int_equal(time_parse_rfc3339("2026-12-24T19:00:00Z", &ms), 0);
    assert_true(ms == XMAS_19H_MS);
}

static void test_parse_applies_offsets(void **state) {
    (void)state;
    int64_t ms = 0;
    assert_int_equal(time_parse_rfc3339("2026-12-25T04:00:00+09:00", &ms), 0);
    assert_true(ms == XMAS_19H_MS);
    assert_int_equal(time_parse_rfc3339("2026-12-24T13:30:00-05:30", &ms), 0);
    assert_true(ms == XMAS_19H_MS);
}

static void test_parse_ignores_fraction(void **state) {
    (void)state;
    int64_t ms = 0;
    assert_int_equal(time_parse_rfc3339("2026-12-24T19:00:00.123Z", &ms), 0);
    assert_true(ms == XMAS_19H_MS);
    assert_int_equal(time_parse_rfc3339("2026-12-24T19:00:00.5+00:00", &ms), 0);
    assert_true(ms == XMAS_19H_MS);
}

static void test_parse_round_trips_format(void **state) {
    (void)state;
    char buf[32];
    int64_t ms = 0;
    time_format_rfc3339(INT64_C(1798761599000), buf, sizeof(buf));
    assert_string_equal(buf, "2026-12-31T23:59:59Z");
    assert_int_equal(time_parse_rfc3339(buf, &ms), 0);
    assert_true(ms == INT64_C(1798761599000));
}

static void test_parse_accepts_leap_day(void **state) {
    (void)state;
    int64_t ms = 0;
    assert_int_equal(time_parse_rfc3339("2024-02-29T00:00:00Z", &ms), 0);
    assert_true(ms == INT64_C(1709164800000));
    assert_int_equal(time_parse_rfc3339("2000-02-29T00:00:00Z", &ms), 0);
}

static void test_parse_rejects_out_of_range_fields(void **state) {
    (void)state;
    static const char *const bad[] = {
        "2026-00-10T00:00:00Z",      "2026-13-10T00:00:00Z",
        "2026-02-30T00:00:00Z",      "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",      "2026-04-31T00:00:00Z",
        "2026-01-00T00:00:00Z",      "2026-01-32T00:00:00Z",
        "2026-01-01T24:00:00Z",      "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:60Z",      "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+09:60", NULL,
    };
    for (int i = 0; bad[i]; i++) {
        int64_t ms = 77;
        assert_int_equal(time_parse_rfc3339(bad[i], &ms), ERR_INVALID);
        assert_int_equal(ms, 77);
    }
}

static void test_parse_rejects_malformed(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-12-24",
        "2026-12-24T19:00:00",
        "2026-12-24 19:00:00Z",
        "2026-12-24T19:00:00Zjunk",
        "2026-12-24T19:00:00Z ",
        "2026-12-24T19:00Z",
        "2026-12-24T19:00:00.Z",
        "2026-12-24T19:00:00+0900",
        "2026-12-24T19:00:00+09",
        "26-12-24T19:00:00Z",
        "2026-1-24T19:00:00Z",
        "+026-12-24T19:00:00Z",
        NULL,
    };
    int64_t ms = 0;
    for (int i = 0; bad[i]; i++) assert_int_equal(time_parse_rfc3339(bad[i], &ms), ERR_INVALID);
    assert_int_equal(time_parse_rfc3339(NULL, &ms), ERR_INVALID);
}

static void test_duration_units(void **state) {
    (void)state;
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        {"300", 300000}, {"300s", 300000},  {"250ms", 250}, {"5m", 300000},
        {"1h", 3600000}, {"2d", 172800000}, {"0", 0},       {"0ms", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -1;
        assert_int_equal(time_parse_duration(cases[i].in, &ms), 0);
        assert_int_equal(ms, cases[i].ms);
    }
}

static void test_duration_rejects_negative(void **state) {
    (void)state;
    int64_t ms = 8;
    assert_int_equal(time_parse_duration("-5s", &ms), ERR_INVALID);
    assert_int_equal(time_parse_duration("-5", &ms), ERR_INVALID);
    assert_int_equal(ms, 8);
}

static void test_duration_rejects_junk(void **state) {
    (void)state;
    static const char *const bad[] = {"",   "s",   "5x",  "1.5m", "5 s", " 5s",
                                      "5S", "+5s", "5sm", "5mss", NULL};
    int64_t ms = 0;
    for (int i = 0; bad[i]; i++) assert_int_equal(time_parse_duration(bad[i], &ms), ERR_INVALID);
    assert_int_equal(time_parse_duration(NULL, &ms), ERR_INVALID);
}

static void test_duration_rejects_overflow(void **state) {
    (void)state;
    int64_t ms = 0;
    assert_int_equal(time_parse_duration("9223372036854775807ms", &ms), 0);
    assert_true(ms == INT64_MAX);
    assert_int_equal(time_parse_duration("9223372036854775808ms", &ms), ERR_INVALID);
    assert_int_equal(time_parse_duration("9223372036854776s", &ms), ERR_INVALID);
    assert_int_equal(time_parse_duration("106751991168d", &ms), ERR_INVALID);
    assert_int_equal(time_parse_duration("106751991167d", &ms), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_now_is_after_2024),
        cmocka_unit_test(test_monotonic_clocks_agree_and_never_go_back),
        cmocka_unit_test(test_format_writes_utc_with_z),
        cmocka_unit_test(test_format_matches_gmtime),
        cmocka_unit_test(test_format_truncates_milliseconds),
        cmocka_unit_test(test_parse_utc),
        cmocka_unit_test(test_parse_applies_offsets),
        cmocka_unit_test(test_parse_ignores_fraction),
        cmocka_unit_test(test_parse_round_trips_format),
        cmocka_unit_test(test_parse_accepts_leap_day),
        cmocka_unit_test(test_parse_rejects_out_of_range_fields),
        cmocka_unit_test(test_parse_rejects_malformed),
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_duration_rejects_negative),
        cmocka_unit_test(test_duration_rejects_junk),
        cmocka_unit_test(test_duration_rejects_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
