/* test_arena.c -- the per-request bump allocator (src/core/arena.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"

static void test_alloc_is_16_byte_aligned(void **state) {
    (void)state;
    struct arena *a = arena_create();
    static const size_t sizes[] = {1, 3, 7, 16, 17, 100, 0, 5};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        void *p = arena_alloc(a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
    }
    arena_destroy(a);
}

static void test_used_counts_aligned_sizes(void **state) {
    (void)state;
    struct arena *a = arena_create();
    assert_int_equal(arena_used(a), 0);
    arena_alloc(a, 1);
    assert_int_equal(arena_used(a), 16);
    arena_alloc(a, 17);
    assert_int_equal(arena_used(a), 48);
    arena_alloc(a, 0);
    assert_int_equal(arena_used(a), 64);
    arena_destroy(a);
}

static void test_allocations_do_not_overlap(void **state) {
    (void)state;
    struct arena *a = arena_create();
    unsigned char *p[64];
    for (int i = 0; i < 64; i++) {
        p[i] = arena_alloc(a, 40);
        memset(p[i], i, 40);
    }
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 40; j++) assert_int_equal(p[i][j], i);
    arena_destroy(a);
}

static void test_large_allocations_chain_blocks(void **state) {
    (void)state;
    struct arena *a = arena_create();
    unsigned char *small = arena_alloc(a, 32);
    memset(small, 0xAB, 32);
    /* Far larger than the first block: each forces a new block. ASan checks
     * that the whole range is writable and that destroy frees it. */
    unsigned char *big1 = arena_alloc(a, 100000);
    memset(big1, 1, 100000);
    unsigned char *big2 = arena_alloc(a, 1000000);
    memset(big2, 2, 1000000);
    unsigned char *after = arena_alloc(a, 64);
    memset(after, 3, 64);
    assert_int_equal((uintptr_t)big2 % 16, 0);
    assert_int_equal(big1[99999], 1);
    assert_int_equal(big2[0], 2);
    assert_int_equal(small[31], 0xAB);
    assert_int_equal(arena_used(a), 32 + 100000 + 1000000 + 64);
    arena_destroy(a);
}

static void test_calloc_zeroes(void **state) {
    (void)state;
    struct arena *a = arena_create();
    unsigned char *dirty = arena_alloc(a, 256);
    memset(dirty, 0xFF, 256);
    arena_destroy(a);
    a = arena_create(); /* likely the same cached block, so memory was dirty */
    unsigned char *p = arena_calloc(a, 10, 25);
    for (int i = 0; i < 250; i++) assert_int_equal(p[i], 0);
    arena_destroy(a);
}

static void test_strdup_and_strndup_copy(void **state) {
    (void)state;
    struct arena *a = arena_create();
    char src[] = "concert";
    char *d = arena_strdup(a, src);
    src[0] = 'X';
    assert_string_equal(d, "concert");
    assert_string_equal(arena_strndup(a, "abcdef", 3), "abc");
    assert_string_equal(arena_strdup(a, ""), "");
    arena_destroy(a);
}

static void test_sprintf_formats_long_output(void **state) {
    (void)state;
    struct arena *a = arena_create();
    assert_string_equal(arena_sprintf(a, "seat %d of %s", 7, "A"), "seat 7 of A");
    char big[40000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *s = arena_sprintf(a, "<%s>", big);
    assert_int_equal(strlen(s), sizeof(big) + 1);
    assert_int_equal(s[0], '<');
    assert_int_equal(s[sizeof(big)], '>');
    arena_destroy(a);
}

static void test_reuse_after_destroy_starts_empty(void **state) {
    (void)state;
    for (int round = 0; round < 20; round++) {
        struct arena *a = arena_create();
        assert_int_equal(arena_used(a), 0);
        char *s = arena_sprintf(a, "round %d", round);
        arena_alloc(a, 50000); /* chains a block every round; destroy must free it */
        char want[16];
        snprintf(want, sizeof(want), "round %d", round);
        assert_string_equal(s, want);
        arena_destroy(a);
    }
}

static void test_many_arenas_alive_at_once(void **state) {
    (void)state;
    struct arena *as[12];
    for (int i = 0; i < 12; i++) {
        as[i] = arena_create();
        arena_sprintf(as[i], "%d", i);
    }
    for (int i = 0; i < 12; i++) assert_int_equal(arena_used(as[i]), 16);
    for (int i = 0; i < 12; i++) arena_destroy(as[i]);
    arena_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_is_16_byte_aligned),
        cmocka_unit_test(test_used_counts_aligned_sizes),
        cmocka_unit_test(test_allocations_do_not_overlap),
        cmocka_unit_test(test_large_allocations_chain_blocks),
        cmocka_unit_test(test_calloc_zeroes),
        cmocka_unit_test(test_strdup_and_strndup_copy),
        cmocka_unit_test(test_sprintf_formats_long_output),
        cmocka_unit_test(test_reuse_after_destroy_starts_empty),
        cmocka_unit_test(test_many_arenas_alive_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
