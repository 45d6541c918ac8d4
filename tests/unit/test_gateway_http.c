/* test_gateway_http.c -- the libcurl gateway adapter (src/gateway/http.c)
 * without a gateway: URLs and timeouts it refuses at open, keys it refuses
 * to send, and a gateway that is not there being UNKNOWN (never an
 * error, never APPROVED or NOT_FOUND). tests/integration/test_gateway.py
 * runs it against mockpg. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "gateway/gateway.h"

static void test_open_refuses_urls_that_are_not_http(void **state) {
    (void)state;
    struct gateway *g = NULL;
    char err[256];
    assert_int_equal(gateway_http_open("ftp://x:1", 1000, &g, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "--pg-url"));
    assert_int_equal(gateway_http_open("127.0.0.1:9100", 1000, &g, err, sizeof(err)), ERR_INVALID);
    assert_int_equal(gateway_http_open("http://x:1", 0, &g, err, sizeof(err)), ERR_INVALID);
    assert_null(g);
}

/* A port nothing listens on (bound, then closed). */
static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_no_gateway_is_unknown_and_bad_keys_are_refused(void **state) {
    (void)state;
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", dead_port());
    struct gateway *g;
    assert_int_equal(gateway_http_open(url, 500, &g, err, sizeof(err)), 0);
    struct gw_result r;
    assert_int_equal(g->ops->charge(g, "res-1-1", 7, 1000, &r), 0);
    assert_int_equal(r.outcome, GW_UNKNOWN);
    assert_int_equal(r.http_status, 0);
    assert_int_equal(g->ops->lookup(g, "res-1-1", &r), 0);
    assert_int_equal(r.outcome, GW_UNKNOWN);
    assert_int_equal(g->ops->charge(g, "a/b", 7, 1000, &r), ERR_INVALID);
    assert_int_equal(g->ops->lookup(g, "", &r), ERR_INVALID);
    assert_int_equal(g->ops->charge(g, "k", 7, 0, &r), ERR_INVALID);
    assert_string_equal(gateway_outcome_name(GW_NOT_FOUND), "NOT_FOUND");
    g->ops->close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_refuses_urls_that_are_not_http),
        cmocka_unit_test(test_no_gateway_is_unknown_and_bad_keys_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
