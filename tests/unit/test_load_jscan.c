/* test_load_jscan.c -- concert-load's JSON field scanner (tools/load/jscan.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jscan.h"

static void test_jscan_reads_fields(void **state) {
    (void)state;
    const char *b = "{\"token\":\"abc\",\"userId\":\"42\",\"sessions\":[{\"sessionId\":7,"
                    "\"availableSeats\":0},{\"sessionId\": 9,\"availableSeats\":3}]}";
    char s[8];
    int64_t v = 0;
    assert_int_equal(js_str(b, "token", s, sizeof(s)), 1);
    assert_string_equal(s, "abc");
    assert_int_equal(js_str(b, "token", s, 3), 0);      /* does not fit */
    assert_int_equal(js_int(b, "userId", &v, NULL), 1); /* a decimal string counts */
    assert_int_equal(v, 42);
    assert_int_equal(js_count(b, "sessionId"), 2);
    assert_int_equal(js_nth_int(b, "sessionId", 1, &v), 1);
    assert_int_equal(v, 9);
    assert_int_equal(js_nth_int(b, "availableSeats", 1, &v), 1);
    assert_int_equal(v, 3);
    assert_int_equal(js_nth_int(b, "sessionId", 2, &v), 0);
    assert_int_equal(js_int(b, "Id", &v, NULL), 0); /* whole keys only */
    assert_int_equal(js_count("not json", "token"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jscan_reads_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
