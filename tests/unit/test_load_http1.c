/* test_load_http1.c -- concert-load's HTTP/1.1 framing (tools/load/http1.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http1.h"

static char buf[512];
static struct resp r;
static int closes;

static long parse(const char *text) {
    strcpy(buf, text);
    return h1_parse(buf, strlen(text), &r, &closes);
}

/* text parses whole, with that status, body length and Connection: close. */
static void parses_as(const char *text, int status, size_t len, int close) {
    closes = !close;
    assert_int_equal(parse(text), (long)strlen(text));
    assert_int_equal(r.status, status);
    assert_int_equal(r.len, len);
    assert_int_equal(closes, close);
}

static void test_content_length_response_waits_for_its_body(void **state) {
    (void)state;
    const char *full = "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
    parses_as(full, 201, 5, 0);
    assert_memory_equal(r.body, "hello", 5);
    for (size_t cut = 1; cut < strlen(full); cut++) { /* any prefix: more bytes needed */
        strcpy(buf, full);
        assert_int_equal(h1_parse(buf, cut, &r, &closes), 0);
    }
}

static void test_chunked_body_is_decoded_only_when_complete(void **state) {
    (void)state;
    const char *full = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       "4\r\ntrue\r\n3\r\n!!!\r\n0\r\n\r\n";
    strcpy(buf, full);
    assert_int_equal(h1_parse(buf, strlen(full) - 3, &r, &closes), 0);
    assert_string_equal(buf, full); /* nothing was decoded in place yet */
    parses_as(full, 200, 7, 1);
    assert_memory_equal(r.body, "true!!!", 7);
}

static void test_no_body_statuses_and_bad_input(void **state) {
    (void)state;
    parses_as("HTTP/1.1 204 No Content\r\n\r\n", 204, 0, 0);
    assert_true(parse("SSH-2.0-OpenSSH\r\n\r\n") < 0);
    assert_true(parse("HTTP/1.1 200 OK\r\n\r\nno length") < 0);
    parses_as("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, 0, 1); /* 1.0 closes */
}

static void test_request_carries_token_and_body(void **state) {
    (void)state;
    char out[1024];
    struct req q = {.route = R_HOLD, .method = "POST", .token = "tok", .expect = {201, 409, 0}};
    strcpy(q.path, "/api/v1/x");
    strcpy(q.body, "{\"a\":1}");
    size_t n = h1_write(out, sizeof(out), &q, "h:1", "X-A: b\r\n");
    assert_int_equal(n, strlen(out));
    assert_non_null(
        strstr(out, "POST /api/v1/x HTTP/1.1\r\nHost: h:1\r\nQUEUE-TOKEN: tok\r\nX-A: b\r\n"));
    assert_non_null(strstr(out, "Content-Length: 7\r\n\r\n{\"a\":1}"));
    assert_int_equal(h1_write(out, 20, &q, "h:1", ""), 0); /* does not fit */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_response_waits_for_its_body),
        cmocka_unit_test(test_chunked_body_is_decoded_only_when_complete),
        cmocka_unit_test(test_no_body_statuses_and_bad_input),
        cmocka_unit_test(test_request_carries_token_and_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
