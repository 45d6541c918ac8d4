/* test_netaddr.c -- addresses, prefixes and the X-Forwarded-For walk
 * (src/core/netaddr.c): which client a request from a trusted proxy is
 * keyed on, and that nothing left of the last trusted hop is believed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/netaddr.h"

static struct netaddr addr(const char *s) {
    struct netaddr a;
    assert_int_equal(netaddr_parse(s, strlen(s), &a), 0);
    return a;
}

static struct netaddr_list *list(const char *spec) {
    struct netaddr_list *l = NULL;
    char err[160];
    assert_int_equal(netaddr_list_parse(spec, &l, err, sizeof(err)), 0);
    return l;
}

/* The client the walk settles on for a request from peer with xff. */
static uint64_t client_key(const struct netaddr_list *l, const char *peer, const char *xff) {
    struct netaddr c = addr(peer);
    netaddr_forwarded_client(l, xff, &c);
    return netaddr_key(&c);
}

static uint64_t key(const char *s) {
    struct netaddr a = addr(s);
    return netaddr_key(&a);
}

static void test_parse_rejects_what_is_not_an_address(void **state) {
    (void)state;
    struct netaddr a;
    const char *bad[] = {"",      "1.2.3", "1.2.3.4.5", "256.1.1.1",   "1.2.3.4:80",
                         "[::1]", "::g",   " 1.2.3.4",  "example.com", "1.2.3.4/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(netaddr_parse(bad[i], strlen(bad[i]), &a), ERR_INVALID);
}

static void test_ipv4_mapped_is_the_ipv4_address(void **state) {
    (void)state;
    assert_true(key("::ffff:10.0.0.7") == key("10.0.0.7"));
    struct netaddr_list *l = list("10.0.0.0/8");
    struct netaddr a = addr("::ffff:10.1.2.3");
    assert_true(netaddr_list_has(l, &a));
    netaddr_list_free(l);
}

static void test_ipv6_is_keyed_by_its_64(void **state) {
    (void)state;
    assert_true(key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9"));
    assert_true(key("2001:db8:1:2::1") != key("2001:db8:1:3::1"));
    assert_true(key("1.2.3.4") != key("::1.2.3.4")); /* v4 and v6 never collide */
}

static void test_list_matches_addresses_and_prefixes(void **state) {
    (void)state;
    struct netaddr_list *l = list(" 192.0.2.1 , 10.20.0.0/14,fd00::/8, ::1");
    const char *in[] = {"192.0.2.1", "10.20.0.1", "10.23.255.255", "fd12::5", "::1"};
    const char *out[] = {"192.0.2.2", "10.24.0.0", "10.19.255.255", "fe80::1", "::2", "127.0.0.1"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct netaddr a = addr(in[i]);
        assert_true(netaddr_list_has(l, &a));
    }
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
        struct netaddr a = addr(out[i]);
        assert_false(netaddr_list_has(l, &a));
    }
    netaddr_list_free(l);
    l = list("0.0.0.0/0");
    struct netaddr any = addr("203.0.113.9"), v6 = addr("2001:db8::1");
    assert_true(netaddr_list_has(l, &any));
    assert_false(netaddr_list_has(l, &v6));
    netaddr_list_free(l);
}

static void test_list_parse_names_the_bad_entry(void **state) {
    (void)state;
    const char *bad[] = {"10.0.0.1,", "10.0.0.1,nope", "10.0.0.0/33", "::/129",
                         "10.0.0.0/", "10.0.0.0/-1",   "10.0.0.0/8x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct netaddr_list *l = NULL;
        char err[160] = "";
        assert_int_equal(netaddr_list_parse(bad[i], &l, err, sizeof(err)), ERR_INVALID);
        assert_null(l);
        assert_non_null(strstr(err, "not an IP address"));
    }
    char err[160];
    struct netaddr_list *l = NULL;
    assert_int_equal(netaddr_list_parse("10.0.0.1, nope", &l, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "\"nope\""));
}

static void test_forwarded_takes_the_rightmost_untrusted(void **state) {
    (void)state;
    struct netaddr_list *l = list("127.0.0.1, 10.0.0.0/8");
    /* one proxy: the address it appended */
    assert_true(client_key(l, "127.0.0.1", "203.0.113.5") == key("203.0.113.5"));
    /* a client's own spoofed entries sit left of what the proxy appended */
    assert_true(client_key(l, "127.0.0.1", "1.1.1.1, 2.2.2.2, 203.0.113.5") == key("203.0.113.5"));
    /* two trusted hops: past the inner one */
    assert_true(client_key(l, "127.0.0.1", "6.6.6.6,203.0.113.5, 10.1.1.1") == key("203.0.113.5"));
    /* several headers joined */
    assert_true(client_key(l, "127.0.0.1", "9.9.9.9,198.51.100.7") == key("198.51.100.7"));
    netaddr_list_free(l);
}

static void test_forwarded_edge_cases(void **state) {
    (void)state;
    struct netaddr_list *l = list("127.0.0.1, 10.0.0.0/8");
    /* no header, an empty one: the proxy itself */
    assert_true(client_key(l, "127.0.0.1", NULL) == key("127.0.0.1"));
    assert_true(client_key(l, "127.0.0.1", "") == key("127.0.0.1"));
    /* garbage where the address should be: stop at the hop that wrote it */
    assert_true(client_key(l, "127.0.0.1", "1.1.1.1, junk") == key("127.0.0.1"));
    assert_true(client_key(l, "127.0.0.1", "1.1.1.1, junk, 10.0.0.9") == key("10.0.0.9"));
    assert_true(client_key(l, "127.0.0.1", "1.1.1.1,,10.0.0.9") == key("10.0.0.9"));
    /* every entry trusted: the leftmost */
    assert_true(client_key(l, "127.0.0.1", "10.0.0.1, 10.0.0.2") == key("10.0.0.1"));
    /* an untrusted peer's header is never read */
    assert_true(client_key(l, "192.0.2.50", "203.0.113.5") == key("192.0.2.50"));
    /* IPv6 client behind an IPv4 proxy */
    assert_true(client_key(l, "127.0.0.1", " 2001:db8::5 ") == key("2001:db8::5"));
    netaddr_list_free(l);
    /* without a list nothing is trusted */
    assert_true(client_key(NULL, "127.0.0.1", "203.0.113.5") == key("127.0.0.1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rejects_what_is_not_an_address),
        cmocka_unit_test(test_ipv4_mapped_is_the_ipv4_address),
        cmocka_unit_test(test_ipv6_is_keyed_by_its_64),
        cmocka_unit_test(test_list_matches_addresses_and_prefixes),
        cmocka_unit_test(test_list_parse_names_the_bad_entry),
        cmocka_unit_test(test_forwarded_takes_the_rightmost_untrusted),
        cmocka_unit_test(test_forwarded_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
