/* test_catalog.c -- the catalog's reading rules (src/service/catalog.c): the
 * keyset seat page and the classic API's numbered page, over a fake store
 * that records what it was asked for. (catalog_check_event is covered by
 * the import tests.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "service/catalog.h"

/* A session of 250 available seats numbered 1..250; session 9 is unknown. */
#define SEATS 250

struct fake {
    struct store base;
    int calls;
    int64_t offset, limit, after;
    struct store_seat rows[CATALOG_PAGE_MAX + 1];
};

static struct fake *fake_of(struct store *s) {
    return (struct fake *)s;
}

static int f_seats_at(struct store *s, struct arena *a, int64_t sid, int64_t offset, int64_t limit,
                      struct store_seat **out, size_t *n) {
    (void)a;
    struct fake *f = fake_of(s);
    f->calls++;
    f->offset = offset;
    f->limit = limit;
    if (sid == 9) return ERR_NOT_FOUND;
    size_t k = 0;
    for (int64_t i = offset; i < SEATS && (int64_t)k < limit; i++, k++)
        f->rows[k] = (struct store_seat){.id = 1000 + i + 1, .session_id = sid, .number = i + 1};
    *out = f->rows;
    *n = k;
    return 0;
}

static int f_seats(struct store *s, struct arena *a, int64_t cid, int64_t sid, int64_t after,
                   int64_t limit, struct store_seat **out, size_t *n) {
    (void)cid;
    fake_of(s)->after = after;
    return f_seats_at(s, a, sid, after, limit, out, n);
}

static const struct store_ops fake_ops = {
    .list_available_seats = f_seats,
    .list_available_seats_at = f_seats_at,
};

static int setup(void **state) {
    struct fake *f = calloc(1, sizeof(*f));
    f->base.ops = &fake_ops;
    f->base.kind = "fake";
    *state = f;
    return 0;
}

static int teardown(void **state) {
    free(*state);
    return 0;
}

static void test_numbered_pages_step_over_page_times_size_seats(void **state) {
    struct fake *f = *state;
    struct catalog_seat_page p;
    assert_int_equal(catalog_seat_numbered_page(&f->base, NULL, 1, 0, 100, &p), 0);
    assert_int_equal(f->offset, 0);
    assert_int_equal(f->limit, 100);
    assert_int_equal(p.n, 100);
    assert_int_equal(p.seats[0].number, 1);
    assert_int_equal(p.next_cursor, 0);
    assert_int_equal(catalog_seat_numbered_page(&f->base, NULL, 1, 2, 100, &p), 0);
    assert_int_equal(f->offset, 200);
    assert_int_equal(p.n, 50);
    assert_int_equal(p.seats[0].number, 201);
    assert_int_equal(catalog_seat_numbered_page(&f->base, NULL, 1, 3, 100, &p), 0);
    assert_int_equal(p.n, 0); /* past the last seat: empty, not an error */
    assert_int_equal(catalog_seat_numbered_page(&f->base, NULL, 9, 0, 10, &p), ERR_NOT_FOUND);
}

static void test_numbered_pages_are_bounded_before_the_store_is_asked(void **state) {
    struct fake *f = *state;
    struct catalog_seat_page p;
    assert_int_equal(catalog_seat_numbered_page(&f->base, NULL, 1, -1, 10, &p), ERR_INVALID);
    assert_int_equal(catalog_seat_numbered_page(&f->base, NULL, 1, 0, 0, &p), ERR_INVALID);
    assert_int_equal(catalog_seat_numbered_page(&f->base, NULL, 1, 0, CATALOG_PAGE_MAX + 1, &p),
                     ERR_INVALID);
    assert_int_equal(
        catalog_seat_numbered_page(&f->base, NULL, 1, CATALOG_PAGE_INDEX_MAX + 1, 1, &p),
        ERR_INVALID);
    assert_int_equal(f->calls, 0);
    /* The largest page asked for stays far from overflowing the offset. */
    assert_int_equal(
        catalog_seat_numbered_page(&f->base, NULL, 1, CATALOG_PAGE_INDEX_MAX, CATALOG_PAGE_MAX, &p),
        0);
    assert_int_equal(f->offset, (int64_t)CATALOG_PAGE_INDEX_MAX * CATALOG_PAGE_MAX);
}

static void test_keyset_page_asks_one_more_to_find_the_next_cursor(void **state) {
    struct fake *f = *state;
    struct catalog_seat_page p;
    assert_int_equal(catalog_seat_page(&f->base, NULL, 1, 1, 0, 100, &p), 0);
    assert_int_equal(f->limit, 101);
    assert_int_equal(p.n, 100);
    assert_int_equal(p.next_cursor, 100);
    assert_int_equal(catalog_seat_page(&f->base, NULL, 1, 1, 200, 100, &p), 0);
    assert_int_equal(f->after, 200);
    assert_int_equal(p.n, 50);
    assert_int_equal(p.next_cursor, 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    log_init(getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
    const struct CMUnitTest tests[] = {
        T(test_numbered_pages_step_over_page_times_size_seats),
        T(test_numbered_pages_are_bounded_before_the_store_is_asked),
        T(test_keyset_page_asks_one_more_to_find_the_next_cursor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
