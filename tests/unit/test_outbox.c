/* test_outbox.c -- the outbox relay (src/service/outbox.c): events go to
 * the sink in id order, batch by batch, and are marked published only
 * after the sink took them; a failing sink marks nothing and the next pass
 * starts again from the same event. Fake store and sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "service/outbox.h"
#include "sink/sink.h"
#include "store/store.h"

#define NEVENTS 600

static struct {
    struct store base;
    int published[NEVENTS + 1]; /* by id: marked */
    int lists;
} fs;

static struct {
    struct sink base;
    int64_t got[2 * NEVENTS];
    size_t n;
    int fail;
} fk;

static int f_list(struct store *s, struct arena *a, int64_t max, struct store_event_row **out,
                  size_t *n) {
    (void)s;
    fs.lists++;
    struct store_event_row *rows = arena_calloc(a, (size_t)max, sizeof(*rows));
    size_t k = 0;
    for (int64_t id = 1; id <= NEVENTS && (int64_t)k < max; id++) {
        if (fs.published[id]) continue;
        rows[k++] = (struct store_event_row){id, "payment.completed", id, "{}", 0};
    }
    *out = rows;
    *n = k;
    return 0;
}

static int f_mark(struct store *s, const int64_t *ids, size_t n, int64_t now) {
    (void)s;
    (void)now;
    for (size_t i = 0; i < n; i++) fs.published[ids[i]] = 1;
    return 0;
}

static const struct store_ops fake_store_ops = {.outbox_list = f_list, .outbox_mark = f_mark};

static int k_publish(struct sink *k, const struct sink_event *ev, size_t n) {
    (void)k;
    if (fk.fail) return ERR_IO;
    for (size_t i = 0; i < n; i++) fk.got[fk.n++] = ev[i].id;
    return 0;
}

static const struct sink_ops fake_sink_ops = {.publish = k_publish};

static int setup(void **state) {
    (void)state;
    memset(&fs, 0, sizeof(fs));
    memset(&fk, 0, sizeof(fk));
    fs.base.ops = &fake_store_ops;
    fk.base.ops = &fake_sink_ops;
    return 0;
}

static void test_a_pass_publishes_everything_in_order_in_batches_and_marks_it(void **state) {
    (void)state;
    int64_t n = 0;
    assert_int_equal(outbox_relay_pass(&fs.base, &fk.base, 1, &n), 0);
    assert_int_equal(n, NEVENTS);
    assert_int_equal(fk.n, NEVENTS);
    for (size_t i = 0; i < fk.n; i++) assert_int_equal(fk.got[i], (int64_t)i + 1);
    assert_int_equal(fs.lists, 3); /* 256 + 256 + 88 */
    for (int id = 1; id <= NEVENTS; id++) assert_int_equal(fs.published[id], 1);
    assert_int_equal(outbox_relay_pass(&fs.base, &fk.base, 2, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(fk.n, NEVENTS); /* nothing twice */
}

static void test_a_failing_sink_marks_nothing_and_the_next_pass_resumes(void **state) {
    (void)state;
    fk.fail = 1;
    int64_t n = -1;
    assert_int_equal(outbox_relay_pass(&fs.base, &fk.base, 1, &n), ERR_IO);
    assert_int_equal(n, 0);
    for (int id = 1; id <= NEVENTS; id++) assert_int_equal(fs.published[id], 0);
    fk.fail = 0;
    assert_int_equal(outbox_relay_pass(&fs.base, &fk.base, 2, &n), 0);
    assert_int_equal(n, NEVENTS);
    assert_int_equal(fk.got[0], 1);
}

static void test_the_thread_publishes_and_a_stop_runs_a_last_pass(void **state) {
    (void)state;
    struct outbox_relay *r;
    assert_int_equal(outbox_relay_start(&fs.base, &fk.base, 60000, &r), 0);
    outbox_relay_stop(r); /* long before its first interval ends */
    assert_int_equal(fk.n, NEVENTS);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, NULL)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_a_pass_publishes_everything_in_order_in_batches_and_marks_it),
        T(test_a_failing_sink_marks_nothing_and_the_next_pass_resumes),
        T(test_the_thread_publishes_and_a_stop_runs_a_last_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
