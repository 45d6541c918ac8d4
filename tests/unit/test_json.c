/* test_json.c -- the JSON writer and strict decoding (src/core/json.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"

struct fixture {
    struct arena *arena;
    struct jw w;
    char err[256];
};

static int setup(void **state) {
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.arena = arena_create();
    jw_init(&f.w, f.arena, 0);
    *state = &f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    arena_destroy(f->arena);
    return 0;
}

static const char *finish(struct fixture *f) {
    size_t len = 0;
    const char *s = jw_finish(&f->w, &len);
    assert_int_equal(len, strlen(s));
    return s;
}

/* ---- writer ---------------------------------------------------------- */

static void test_writer_empty_object_and_array(void **state) {
    struct fixture *f = *state;
    jw_arr_begin(&f->w);
    jw_obj_begin(&f->w);
    jw_obj_end(&f->w);
    jw_arr_begin(&f->w);
    jw_arr_end(&f->w);
    jw_arr_end(&f->w);
    assert_string_equal(finish(f), "[{},[]]");
}

static void test_writer_separates_keys_and_values_with_commas(void **state) {
    struct fixture *f = *state;
    jw_obj_begin(&f->w);
    jw_kv_i64(&f->w, "id", 7);
    jw_kv_str(&f->w, "name", "Hall A");
    jw_key(&f->w, "ok");
    jw_bool(&f->w, 1);
    jw_key(&f->w, "gone");
    jw_bool(&f->w, 0);
    jw_key(&f->w, "note");
    jw_null(&f->w);
    jw_obj_end(&f->w);
    assert_string_equal(finish(f), "{\"id\":7,\"name\":\"Hall A\",\"ok\":true,\"gone\":false,"
                                   "\"note\":null}");
}

static void test_writer_nests_objects_in_arrays(void **state) {
    struct fixture *f = *state;
    jw_obj_begin(&f->w);
    jw_key(&f->w, "seats");
    jw_arr_begin(&f->w);
    for (int i = 1; i <= 2; i++) {
        jw_obj_begin(&f->w);
        jw_kv_i64(&f->w, "no", i);
        jw_key(&f->w, "tags");
        jw_arr_begin(&f->w);
        jw_str(&f->w, "vip");
        jw_i64(&f->w, i * 10);
        jw_arr_end(&f->w);
        jw_obj_end(&f->w);
    }
    jw_arr_end(&f->w);
    jw_kv_i64(&f->w, "total", 2);
    jw_obj_end(&f->w);
    assert_string_equal(finish(f), "{\"seats\":[{\"no\":1,\"tags\":[\"vip\",10]},"
                                   "{\"no\":2,\"tags\":[\"vip\",20]}],\"total\":2}");
}

static void test_writer_escapes_quotes_backslashes_and_controls(void **state) {
    struct fixture *f = *state;
    jw_str(&f->w, "a\"b\\c\n\r\t\b\f\x01\x1f/\x7f");
    assert_string_equal(finish(f), "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f/\x7f\"");
}

static void test_writer_strn_escapes_embedded_nul(void **state) {
    struct fixture *f = *state;
    jw_strn(&f->w, "a\0b", 3);
    assert_string_equal(finish(f), "\"a\\u0000b\"");
}

static void test_writer_passes_valid_utf8_through(void **state) {
    struct fixture *f = *state;
    const char *s = "caf\xc3\xa9 \xe6\xbc\xa2 \xf0\x9f\x8e\xb5 \xe2\x80\xa8";
    jw_str(&f->w, s);
    char want[64];
    snprintf(want, sizeof(want), "\"%s\"", s);
    assert_string_equal(finish(f), want);
}

static void test_writer_replaces_invalid_utf8(void **state) {
    struct fixture *f = *state;
    jw_arr_begin(&f->w);
    jw_str(&f->w, "a\xff"
                  "b");                /* bad lead byte */
    jw_str(&f->w, "\xe6\xbc");         /* truncated sequence */
    jw_str(&f->w, "\xc0\xaf");         /* overlong '/' */
    jw_str(&f->w, "\xe0\x80\xaf");     /* overlong '/', 3 bytes */
    jw_str(&f->w, "\xf0\x8f\xbf\xbf"); /* overlong U+FFFF */
    jw_str(&f->w, "\xed\xa0\x80");     /* UTF-16 surrogate */
    jw_str(&f->w, "\xf4\x90\x80\x80"); /* above U+10FFFF */
    jw_arr_end(&f->w);
#define R "\\ufffd"
    assert_string_equal(finish(f), "[\"a" R "b\",\"" R R "\",\"" R R "\",\"" R R R "\",\"" R R R R
                                   "\",\"" R R R "\",\"" R R R R "\"]");
#undef R
}

static void test_writer_null_string_is_null(void **state) {
    struct fixture *f = *state;
    jw_obj_begin(&f->w);
    jw_kv_str(&f->w, "x", NULL);
    jw_obj_end(&f->w);
    assert_string_equal(finish(f), "{\"x\":null}");
}

static void test_writer_i64_extremes(void **state) {
    struct fixture *f = *state;
    jw_arr_begin(&f->w);
    jw_i64(&f->w, 0);
    jw_i64(&f->w, -1);
    jw_i64(&f->w, INT64_MAX);
    jw_i64(&f->w, INT64_MIN);
    jw_arr_end(&f->w);
    assert_string_equal(finish(f), "[0,-1,9223372036854775807,-9223372036854775808]");
}

static void test_writer_time_is_rfc3339_or_null(void **state) {
    struct fixture *f = *state;
    jw_arr_begin(&f->w);
    jw_time(&f->w, INT64_C(1798138800000));
    jw_time(&f->w, 0);
    jw_time(&f->w, -5);
    jw_arr_end(&f->w);
    assert_string_equal(finish(f), "[\"2026-12-24T19:00:00Z\",null,null]");
}

static void test_writer_grows_past_cap_hint(void **state) {
    struct fixture *f = *state;
    jw_init(&f->w, f->arena, 17);
    char want[8192];
    size_t n = 0;
    want[n++] = '[';
    jw_arr_begin(&f->w);
    for (int i = 0; i < 1000; i++) {
        jw_i64(&f->w, i);
        n += (size_t)snprintf(want + n, sizeof(want) - n, "%s%d", i ? "," : "", i);
    }
    jw_arr_end(&f->w);
    want[n++] = ']';
    want[n] = '\0';
    size_t len = 0;
    assert_string_equal(jw_finish(&f->w, &len), want);
    assert_int_equal(len, n);
}

static void test_writer_allows_nesting_to_max_depth(void **state) {
    struct fixture *f = *state;
    char want[2 * JW_MAX_DEPTH + 1];
    int levels = JW_MAX_DEPTH - 1;
    for (int i = 0; i < levels; i++) {
        jw_arr_begin(&f->w);
        want[i] = '[';
        want[levels + i] = ']';
    }
    want[2 * levels] = '\0';
    for (int i = 0; i < levels; i++) jw_arr_end(&f->w);
    assert_string_equal(finish(f), want);
}

/* ---- decoding -------------------------------------------------------- */

static json_t *parse(struct fixture *f, const char *body) {
    f->err[0] = '\0';
    return jd_parse_object(body, strlen(body), f->err, sizeof(f->err));
}

/* Asserts body is refused with exactly this message. */
static void assert_refused(struct fixture *f, const char *body, size_t len, const char *msg) {
    f->err[0] = '\0';
    json_t *j = jd_parse_object(body, len, f->err, sizeof(f->err));
    assert_null(j);
    assert_string_equal(f->err, msg);
}

static void test_parse_accepts_object(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, " {\"a\": [1, {\"b\": \"c\"}], \"d\": null}\n");
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 2);
    assert_string_equal(f->err, "");
    json_decref(j);
}

static void test_parse_body_need_not_be_nul_terminated(void **state) {
    struct fixture *f = *state;
    const char body[] = "{\"a\":1}garbage";
    json_t *j = jd_parse_object(body, 7, f->err, sizeof(f->err));
    assert_non_null(j);
    json_decref(j);
}

static void test_parse_rejects_duplicate_keys(void **state) {
    assert_refused(*state, "{\"a\":1,\"a\":2}", 13,
                   "body is not valid JSON: duplicate object key near '\"a\"' at line 1 column 10");
}

static void test_parse_rejects_trailing_junk(void **state) {
    assert_refused(*state, "{\"a\":1} x", 9,
                   "body is not valid JSON: end of file expected near 'x' at line 1 column 9");
    assert_refused(*state, "{}{}", 4,
                   "body is not valid JSON: end of file expected near '{' at line 1 column 3");
}

static void test_parse_rejects_invalid_utf8(void **state) {
    assert_refused(*state, "{\"a\":\"\xff\"}", 9,
                   "body is not valid JSON: unable to decode byte 0xff near '\"' at line 1 "
                   "column 6");
}

static void test_parse_rejects_non_objects(void **state) {
    assert_refused(*state, "[1]", 3, "body must be a JSON object");
    assert_refused(*state, "42", 2, "body must be a JSON object");
    assert_refused(*state, "\"s\"", 3, "body must be a JSON object");
    assert_refused(*state, "null", 4, "body must be a JSON object");
    assert_refused(*state, "", 0, "body is empty: expected a JSON object");
}

static void test_parse_rejects_nul_bytes(void **state) {
    assert_refused(*state, "{\"a\":\"x\0y\"}", 11, "body contains a NUL byte");
    assert_refused(*state, "{\"a\":\"\\u0000\"}", 14,
                   "body is not valid JSON: \\u0000 is not allowed in strings at line 1 column 13");
}

/* A string of n copies of c, in the arena. */
static char *repeat(struct arena *a, char c, size_t n) {
    char *s = arena_alloc(a, n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* An object nested depth levels deep: {"a":{"a":...{}...}}. */
static char *nested(struct arena *a, int depth) {
    char *s = arena_strdup(a, "{}");
    for (int i = 1; i < depth; i++) s = arena_sprintf(a, "{\"a\":%s}", s);
    return s;
}

static void test_parse_accepts_depth_16(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, nested(f->arena, JD_MAX_DEPTH));
    assert_non_null(j);
    json_decref(j);
}

static void test_parse_rejects_depth_17_before_jansson(void **state) {
    struct fixture *f = *state;
    const char *body = nested(f->arena, JD_MAX_DEPTH + 1);
    assert_refused(f, body, strlen(body), "body is nested deeper than 16 levels");
    /* Arrays count too, and a truncated deep body is refused for depth. */
    assert_refused(f, "{\"a\":[[[[[[[[[[[[[[[[", 21, "body is nested deeper than 16 levels");
}

static void test_parse_depth_ignores_brackets_in_strings(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{\"a\":\"[[[[[[[[[[[[[[[[[[[[{{{{\",\"b\":\"\\\"[[[[[[[[[[[[[[[[[[[[\"}");
    assert_non_null(j);
    json_decref(j);
}

/* {"<key>":"<value>"} with a key and value of the given lengths. */
static char *body_with(struct arena *a, size_t keylen, size_t vallen) {
    return arena_sprintf(a, "{\"%s\":\"%s\"}", repeat(a, 'k', keylen), repeat(a, 'v', vallen));
}

static void test_parse_accepts_string_of_max_length(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, body_with(f->arena, 4, JD_MAX_STRING));
    assert_non_null(j);
    json_decref(j);
}

static void test_parse_rejects_long_string(void **state) {
    struct fixture *f = *state;
    const char *body = body_with(f->arena, 4, JD_MAX_STRING + 1);
    assert_refused(f, body, strlen(body), "field \"kkkk\" is longer than 4096 bytes");
}

static void test_parse_rejects_long_string_inside_array(void **state) {
    struct fixture *f = *state;
    const char *body = arena_sprintf(f->arena, "{\"tags\":[\"x\",\"%s\"]}",
                                     repeat(f->arena, 'v', JD_MAX_STRING + 1));
    assert_refused(f, body, strlen(body), "field \"tags\" is longer than 4096 bytes");
}

static void test_parse_rejects_long_key(void **state) {
    struct fixture *f = *state;
    const char *body = body_with(f->arena, JD_MAX_STRING + 1, 1);
    assert_refused(f, body, strlen(body), "a field name is longer than 4096 bytes");
}

static void test_only_keys_names_the_unknown_field(void **state) {
    struct fixture *f = *state;
    static const char *const allowed[] = {"userId", "amount", NULL};
    json_t *j = parse(f, "{\"userId\":1,\"foo\":2}");
    assert_int_equal(jd_only_keys(j, allowed, f->err, sizeof(f->err)), ERR_INVALID);
    assert_string_equal(f->err, "unknown field \"foo\"");
    json_decref(j);
    j = parse(f, "{\"userId\":1,\"amount\":2}");
    assert_int_equal(jd_only_keys(j, allowed, f->err, sizeof(f->err)), 0);
    json_decref(j);
}

static void test_i64_reads_integer_in_range(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{\"amount\":5000,\"neg\":-3}");
    int64_t v = 0;
    assert_int_equal(jd_i64(j, "amount", 1, 1, 10000, &v, f->err, sizeof(f->err)), 0);
    assert_int_equal(v, 5000);
    assert_int_equal(jd_i64(j, "neg", 1, -5, 5, &v, f->err, sizeof(f->err)), 0);
    assert_int_equal(v, -3);
    json_decref(j);
}

static void test_i64_rejects_reals_bools_strings_null(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{\"a\":1.0,\"b\":true,\"c\":\"1\",\"d\":null,\"e\":[1],\"f\":1e2}");
    static const char *const keys[] = {"a", "b", "c", "d", "e", "f"};
    for (size_t i = 0; i < 6; i++) {
        int64_t v = 99;
        char want[64];
        assert_int_equal(jd_i64(j, keys[i], 1, 0, 100, &v, f->err, sizeof(f->err)), ERR_INVALID);
        snprintf(want, sizeof(want), "field \"%s\" must be an integer", keys[i]);
        assert_string_equal(f->err, want);
        assert_int_equal(v, 99);
    }
    json_decref(j);
}

static void test_i64_range_message_names_bounds(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{\"limit\":1001,\"low\":0}");
    int64_t v = 7;
    assert_int_equal(jd_i64(j, "limit", 1, 1, 1000, &v, f->err, sizeof(f->err)), ERR_INVALID);
    assert_string_equal(f->err, "field \"limit\" must be between 1 and 1000");
    assert_int_equal(jd_i64(j, "low", 1, 1, 1000, &v, f->err, sizeof(f->err)), ERR_INVALID);
    assert_string_equal(f->err, "field \"low\" must be between 1 and 1000");
    assert_int_equal(v, 7);
    json_decref(j);
}

static void test_i64_required_and_optional_absence(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{}");
    int64_t v = 42;
    assert_int_equal(jd_i64(j, "amount", 1, 0, 10, &v, f->err, sizeof(f->err)), ERR_INVALID);
    assert_string_equal(f->err, "field \"amount\" is required");
    assert_int_equal(jd_i64(j, "amount", 0, 0, 10, &v, f->err, sizeof(f->err)), 1);
    assert_int_equal(v, 42);
    json_decref(j);
}

static void test_i64_or_str_accepts_number_and_digit_string(void **state) {
    struct fixture *f = *state;
    json_t *a = parse(f, "{\"userId\":42}");
    json_t *b = parse(f, "{\"userId\":\"42\"}");
    int64_t va = 0, vb = 0;
    assert_int_equal(jd_i64_or_str(a, "userId", 1, 1, INT64_MAX, &va, f->err, 256), 0);
    assert_int_equal(jd_i64_or_str(b, "userId", 1, 1, INT64_MAX, &vb, f->err, 256), 0);
    assert_int_equal(va, 42);
    assert_int_equal(vb, 42);
    json_decref(a);
    json_decref(b);
}

static void test_i64_or_str_rejects_non_decimal_strings(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{\"a\":\"\",\"b\":\" 1\",\"c\":\"1a\",\"d\":\"+1\",\"e\":\"1.0\","
                         "\"f\":\"9223372036854775808\",\"g\":1.0,\"h\":false}");
    static const char *const keys[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (size_t i = 0; i < 8; i++) {
        int64_t v = 5;
        char want[80];
        assert_int_equal(jd_i64_or_str(j, keys[i], 1, 1, INT64_MAX, &v, f->err, 256), ERR_INVALID);
        snprintf(want, sizeof(want), "field \"%s\" must be an integer or a string of digits",
                 keys[i]);
        assert_string_equal(f->err, want);
        assert_int_equal(v, 5);
    }
    json_decref(j);
}

static void test_i64_or_str_checks_range_of_strings(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{\"userId\":\"0\"}");
    int64_t v = 5;
    assert_int_equal(jd_i64_or_str(j, "userId", 1, 1, 100, &v, f->err, 256), ERR_INVALID);
    assert_string_equal(f->err, "field \"userId\" must be between 1 and 100");
    assert_int_equal(jd_i64_or_str(j, "other", 1, 1, 100, &v, f->err, 256), ERR_INVALID);
    assert_string_equal(f->err, "field \"other\" is required");
    json_decref(j);
}

static void test_str_accepts_1_to_max_len_bytes(void **state) {
    struct fixture *f = *state;
    json_t *j = parse(f, "{\"name\":\"abcd\",\"empty\":\"\",\"n\":4}");
    const char *s = NULL;
    assert_int_equal(jd_str(j, "name", 1, 4, &s, f->err, 256), 0);
    assert_string_equal(s, "abcd");
    s = NULL;
    assert_int_equal(jd_str(j, "name", 1, 3, &s, f->err, 256), ERR_INVALID);
    assert_string_equal(f->err, "field \"name\" must be at most 3 bytes");
    assert_int_equal(jd_str(j, "empty", 1, 3, &s, f->err, 256), ERR_INVALID);
    assert_string_equal(f->err, "field \"empty\" must not be empty");
    assert_int_equal(jd_str(j, "n", 1, 3, &s, f->err, 256), ERR_INVALID);
    assert_string_equal(f->err, "field \"n\" must be a string");
    assert_int_equal(jd_str(j, "missing", 0, 3, &s, f->err, 256), 1);
    assert_null(s);
    json_decref(j);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_writer_empty_object_and_array),
        T(test_writer_separates_keys_and_values_with_commas),
        T(test_writer_nests_objects_in_arrays),
        T(test_writer_escapes_quotes_backslashes_and_controls),
        T(test_writer_strn_escapes_embedded_nul),
        T(test_writer_passes_valid_utf8_through),
        T(test_writer_replaces_invalid_utf8),
        T(test_writer_null_string_is_null),
        T(test_writer_i64_extremes),
        T(test_writer_time_is_rfc3339_or_null),
        T(test_writer_grows_past_cap_hint),
        T(test_writer_allows_nesting_to_max_depth),
        T(test_parse_accepts_object),
        T(test_parse_body_need_not_be_nul_terminated),
        T(test_parse_rejects_duplicate_keys),
        T(test_parse_rejects_trailing_junk),
        T(test_parse_rejects_invalid_utf8),
        T(test_parse_rejects_non_objects),
        T(test_parse_rejects_nul_bytes),
        T(test_parse_accepts_depth_16),
        T(test_parse_rejects_depth_17_before_jansson),
        T(test_parse_depth_ignores_brackets_in_strings),
        T(test_parse_accepts_string_of_max_length),
        T(test_parse_rejects_long_string),
        T(test_parse_rejects_long_string_inside_array),
        T(test_parse_rejects_long_key),
        T(test_only_keys_names_the_unknown_field),
        T(test_i64_reads_integer_in_range),
        T(test_i64_rejects_reals_bools_strings_null),
        T(test_i64_range_message_names_bounds),
        T(test_i64_required_and_optional_absence),
        T(test_i64_or_str_accepts_number_and_digit_string),
        T(test_i64_or_str_rejects_non_decimal_strings),
        T(test_i64_or_str_checks_range_of_strings),
        T(test_str_accepts_1_to_max_len_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
