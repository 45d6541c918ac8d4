/* test_metrics.c -- core/metrics: per-thread counters add up at scrape,
 * status and latency land in the right series, the text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/metrics.h"

static const char *const ROUTES[] = {"/a", "/b/{id}"};

static void *observer(void *arg) {
    (void)arg;
    for (int i = 0; i < 100000; i++) metrics_http_observe(1, 0, 200, 300);
    return NULL;
}

/* The value of the line starting with prefix, or -1. */
static double line_value(const char *text, const char *prefix) {
    const char *p = strstr(text, prefix);
    if (!p) return -1;
    double v = -1;
    sscanf(p + strlen(prefix), " %lf", &v);
    return v;
}

static void test_threads_add_up_and_series_are_labelled(void **state) {
    (void)state;
    metrics_set_routes(ROUTES, 2);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, observer, NULL);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    metrics_http_observe(2, 4, 409, 30000); /* DELETE /b/{id} 409 in 30 ms */
    metrics_http_observe(0, 2, 404, 100);   /* unmatched */
    metrics_http_observe(2, 0, 418, 100);   /* an unlisted status counts as its class */
    metrics_http_observe(99, 99, 200, -5);  /* out of range: slot 0, GET, 0 us */
    struct arena *a = arena_create();
    struct mtext t;
    mtext_init(&t, a);
    metrics_write_http(&t);
    const char *s = t.buf;
    assert_true(
        line_value(s, "concertd_http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"}") ==
        400000);
    assert_true(
        line_value(
            s,
            "concertd_http_requests_total{route=\"/b/{id}\",method=\"DELETE\",status=\"409\"}") ==
        1);
    assert_true(
        line_value(
            s,
            "concertd_http_requests_total{route=\"unmatched\",method=\"POST\",status=\"404\"}") ==
        1);
    assert_true(
        line_value(
            s, "concertd_http_requests_total{route=\"/b/{id}\",method=\"GET\",status=\"4xx\"}") ==
        1);
    assert_true(
        line_value(
            s, "concertd_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"200\"}") ==
        1);
    /* 300 us is over 250 us and within 500 us; 30 ms within 50 ms. */
    assert_true(
        line_value(
            s, "concertd_http_request_duration_seconds_bucket{route=\"/a\",le=\"0.00025\"}") == 0);
    assert_true(
        line_value(s,
                   "concertd_http_request_duration_seconds_bucket{route=\"/a\",le=\"0.0005\"}") ==
        400000);
    assert_true(
        line_value(
            s, "concertd_http_request_duration_seconds_bucket{route=\"/b/{id}\",le=\"0.025\"}") ==
        1);
    assert_true(
        line_value(
            s, "concertd_http_request_duration_seconds_bucket{route=\"/b/{id}\",le=\"0.05\"}") ==
        2);
    assert_true(line_value(s, "concertd_http_request_duration_seconds_count{route=\"/a\"}") ==
                400000);
    assert_true(line_value(s, "concertd_http_request_duration_seconds_sum{route=\"/a\"}") == 120.0);
    assert_non_null(strstr(s, "# TYPE concertd_http_request_duration_seconds histogram\n"));
    arena_destroy(a);
}

static void test_text_grows_past_its_first_buffer(void **state) {
    (void)state;
    struct arena *a = arena_create();
    struct mtext t;
    mtext_init(&t, a);
    for (int i = 0; i < 2000; i++) mtext_gauge(&t, "concertd_x", "a gauge", i);
    assert_true(t.len > 16384);
    assert_int_equal(strlen(t.buf), t.len);
    assert_non_null(strstr(t.buf, "concertd_x 1999\n"));
    arena_destroy(a);
}

static void *payer(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        metrics_payment(METRICS_PAY_CARD, METRICS_PAY_DECLINED);
        metrics_holds(METRICS_HOLD_CREATED, 2);
    }
    return NULL;
}

static void test_domain_counters_and_commit_histograms_add_up(void **state) {
    (void)state;
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, payer, NULL);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    metrics_holds(METRICS_HOLD_EXPIRED, 5);
    metrics_holds(METRICS_HOLD_CONFIRMED, 0); /* nothing */
    metrics_payment(METRICS_PAY_BALANCE, METRICS_PAY_COMPLETED);
    metrics_payment(METRICS_PAY_METHODS, METRICS_PAY_COMPLETED); /* out of range: ignored */
    metrics_commit(1, 300);                                      /* 0.3 ms: within 0.5 ms */
    metrics_commit(40, 3000);  /* 3 ms, 40 writes: within 5 ms, within 64 */
    metrics_commit(1000, 2e6); /* past the last bounds: +Inf only */
    struct arena *a = arena_create();
    struct mtext t;
    mtext_init(&t, a);
    metrics_write_domain(&t);
    const char *s = t.buf;
    assert_true(line_value(s, "concertd_holds_total{event=\"created\"}") == 6000);
    assert_true(line_value(s, "concertd_holds_total{event=\"expired\"}") == 5);
    assert_true(line_value(s, "concertd_holds_total{event=\"confirmed\"}") == 0);
    assert_true(line_value(s, "concertd_payments_total{method=\"card\",result=\"declined\"}") ==
                3000);
    assert_true(line_value(s, "concertd_payments_total{method=\"balance\",result=\"completed\"}") ==
                1);
    assert_true(line_value(s, "concertd_payments_total{method=\"balance\",result=\"error\"}") == 0);
    assert_true(line_value(s, "concertd_store_commit_duration_seconds_bucket{le=\"0.00025\"}") ==
                0);
    assert_true(line_value(s, "concertd_store_commit_duration_seconds_bucket{le=\"0.0005\"}") == 1);
    assert_true(line_value(s, "concertd_store_commit_duration_seconds_bucket{le=\"0.005\"}") == 2);
    assert_true(line_value(s, "concertd_store_commit_duration_seconds_bucket{le=\"1\"}") == 2);
    assert_true(line_value(s, "concertd_store_commit_duration_seconds_bucket{le=\"+Inf\"}") == 3);
    assert_true(line_value(s, "concertd_store_commit_duration_seconds_count") == 3);
    assert_true(line_value(s, "concertd_store_commit_duration_seconds_sum") == 2.0033);
    assert_true(line_value(s, "concertd_store_commit_batch_size_bucket{le=\"32\"}") == 1);
    assert_true(line_value(s, "concertd_store_commit_batch_size_bucket{le=\"64\"}") == 2);
    assert_true(line_value(s, "concertd_store_commit_batch_size_bucket{le=\"256\"}") == 2);
    assert_true(line_value(s, "concertd_store_commit_batch_size_sum") == 1041);
    assert_non_null(strstr(s, "# TYPE concertd_store_commit_batch_size histogram\n"));
    arena_destroy(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_add_up_and_series_are_labelled),
        cmocka_unit_test(test_text_grows_past_its_first_buffer),
        cmocka_unit_test(test_domain_counters_and_commit_histograms_add_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
