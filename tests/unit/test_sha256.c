/* test_sha256.c -- src/core/sha256.c against the digests of FIPS 180-4's
 * examples and NIST's test vectors, split into parts at every boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"

static void hex_of(const char *msg, size_t len, char out[SHA256_HEX_LEN + 1]) {
    struct sha256_part p = {msg, len};
    sha256_hex(&p, 1, out);
}

static void test_empty_string(void **state) {
    (void)state;
    char h[SHA256_HEX_LEN + 1];
    hex_of("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_abc(void **state) {
    (void)state;
    char h[SHA256_HEX_LEN + 1];
    hex_of("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_two_block_message(void **state) {
    (void)state;
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes */
    char h[SHA256_HEX_LEN + 1];
    hex_of(m, strlen(m), h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a(void **state) {
    (void)state;
    size_t n = 1000000;
    char *m = malloc(n);
    memset(m, 'a', n);
    char h[SHA256_HEX_LEN + 1];
    hex_of(m, n, h);
    free(m);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_parts_hash_like_their_concatenation(void **state) {
    (void)state;
    char msg[200];
    for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (char)('A' + i % 50);
    char whole[SHA256_HEX_LEN + 1], split[SHA256_HEX_LEN + 1];
    for (size_t len = 0; len <= sizeof(msg); len += 7) {
        hex_of(msg, len, whole);
        for (size_t cut = 0; cut <= len; cut++) {
            struct sha256_part p[3] = {{msg, cut}, {"", 0}, {msg + cut, len - cut}};
            sha256_hex(p, 3, split);
            assert_string_equal(whole, split);
        }
    }
}

static void test_one_byte_difference_changes_digest(void **state) {
    (void)state;
    char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1];
    hex_of("{\"amount\":100}", 14, a);
    hex_of("{\"amount\":101}", 14, b);
    assert_string_not_equal(a, b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_string),
        cmocka_unit_test(test_abc),
        cmocka_unit_test(test_two_block_message),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_parts_hash_like_their_concatenation),
        cmocka_unit_test(test_one_byte_difference_changes_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
