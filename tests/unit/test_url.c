/* test_url.c -- splitting backend addresses (src/core/url.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/url.h"

static void test_host_port_and_path(void **state) {
    (void)state;
    char *host = NULL;
    int port = 0;
    const char *path = "x";
    assert_int_equal(url_split("redis://10.0.0.7:6380/3", "redis://", 6379, &host, &port, &path), 0);
    assert_string_equal(host, "10.0.0.7");
    assert_int_equal(port, 6380);
    assert_string_equal(path, "3");
    free(host);
    assert_int_equal(url_split("redis://cache/events", "redis://", 6379, &host, &port, &path), 0);
    assert_string_equal(host, "cache");
    assert_int_equal(port, 6379);
    assert_string_equal(path, "events");
    free(host);
    assert_int_equal(url_split("redis://cache", "redis://", 6379, &host, &port, &path), 0);
    assert_string_equal(host, "cache");
    assert_null(path);
    free(host);
    assert_int_equal(url_split("redis://h:1/", "redis://", 6379, &host, &port, &path), 0);
    assert_string_equal(path, ""); /* the caller decides whether an empty path is allowed */
    free(host);
}

static void test_refuses_bad_addresses(void **state) {
    (void)state;
    static const char *const bad[] = {"http://h:1",  "redis:/h",      "redis://",
                                      "redis://:1",  "redis://h:",    "redis://h:0",
                                      "redis://h:65536", "redis://h:1x/2", "redis://h:-1", NULL};
    for (int i = 0; bad[i]; i++) {
        char *host = NULL;
        int port = -1;
        const char *path = NULL;
        if (url_split(bad[i], "redis://", 6379, &host, &port, &path) != ERR_INVALID)
            fail_msg("accepted %s", bad[i]);
        assert_null(host);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_port_and_path),
        cmocka_unit_test(test_refuses_bad_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
