/* test_payment.c -- card payments (src/service/payment.c): what is asked of
 * the gateway and written to the store for each gateway answer, the
 * breaker refusing without a call, a retry reconciling instead of charging,
 * NOT_FOUND trusted only after the timeout and grace, and the reconciler's
 * pass. A fake store and a fake gateway record the calls; fake clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "gateway/gateway.h"
#include "service/payment.h"

#define NOW ((int64_t)1800000000000)
#define TIMEOUT 300

static int64_t wall, mono;
static int64_t now_ms(void) {
    return wall;
}
static int64_t mono_ms(void) {
    return mono;
}

/* ---- fakes ------------------------------------------------------------------ */

struct fake_store {
    struct store base;
    struct store_reservation res; /* the one reservation, id 5 of user 7 */
    int pending;                  /* a PENDING attempt exists */
    int64_t pending_created;
    int attempts, begins, settles;
    struct store_card_settle last; /* the last settle asked */
    int paid_users;
};

struct fake_gw {
    struct gateway base;
    int charge_outcome, lookup_outcome;
    int64_t charge_takes_ms;
    int charges, lookups;
    char last_key[80];
};

static struct fake_store fs;
static struct fake_gw fg;

static int f_begin(struct store *s, struct store_card *k) {
    (void)s;
    fs.begins++;
    k->res = fs.res;
    int v = k->check(&fs.res, k->user_id, 0, k->now_ms);
    if (v < 0) return v;
    if (v == 1) {
        k->existing = 1;
        k->payment_id = fs.attempts;
        k->created_at_ms = fs.pending_created;
    } else {
        fs.attempts++;
        fs.pending = 1;
        fs.pending_created = k->now_ms;
        fs.res.status = STORE_RES_PAYMENT_PENDING;
        k->existing = 0;
        k->payment_id = fs.attempts;
        k->created_at_ms = k->now_ms;
    }
    k->make_key(5, fs.attempts, k->key, sizeof(k->key));
    k->amount = fs.res.total_price;
    return 0;
}

static int f_settle(struct store *s, struct arena *a, struct store_card_settle *x,
                    struct store_idem *idem) {
    (void)s;
    (void)a;
    (void)idem;
    fs.settles++;
    fs.last = *x;
    x->changed = fs.pending;
    if (fs.pending) {
        fs.pending = 0;
        fs.res.status = x->approved ? STORE_RES_CONFIRMED : x->after_fail(&fs.res, x->now_ms);
    }
    x->status = fs.res.status == STORE_RES_CONFIRMED ? STORE_PAY_COMPLETED : STORE_PAY_FAILED;
    x->res_status = fs.res.status;
    x->out = (struct store_payment){.id = x->payment_id,
                                    .reservation_id = 5,
                                    .user_id = 7,
                                    .amount = 2000,
                                    .method = "card",
                                    .paid_at_ms = x->now_ms};
    return 0;
}

static int f_list(struct store *s, struct arena *a, int64_t before, int64_t max,
                  struct store_card_pending **out, size_t *n) {
    (void)s;
    (void)max;
    *n = 0;
    if (!fs.pending || fs.pending_created >= before) return 0;
    struct store_card_pending *p = arena_calloc(a, 1, sizeof(*p));
    p->payment_id = fs.attempts;
    p->reservation_id = 5;
    p->user_id = 7;
    p->amount = 2000;
    p->created_at_ms = fs.pending_created;
    p->key = arena_sprintf(a, "res-5-%d", fs.attempts);
    *out = p;
    *n = 1;
    return 0;
}

static const struct store_ops fake_store_ops = {
    .card_begin = f_begin, .card_settle = f_settle, .card_list_pending = f_list};

static int g_charge(struct gateway *g, const char *key, int64_t user, int64_t amount,
                    struct gw_result *out) {
    (void)g;
    (void)user;
    (void)amount;
    fg.charges++;
    snprintf(fg.last_key, sizeof(fg.last_key), "%s", key);
    mono += fg.charge_takes_ms;
    memset(out, 0, sizeof(*out));
    out->outcome = fg.charge_outcome;
    if (out->outcome == GW_APPROVED) strcpy(out->charge_id, "ch_1");
    return 0;
}

static int g_lookup(struct gateway *g, const char *key, struct gw_result *out) {
    (void)g;
    fg.lookups++;
    snprintf(fg.last_key, sizeof(fg.last_key), "%s", key);
    memset(out, 0, sizeof(*out));
    out->outcome = fg.lookup_outcome;
    if (out->outcome == GW_APPROVED) strcpy(out->charge_id, "ch_1");
    return 0;
}

static const struct gateway_ops fake_gw_ops = {.charge = g_charge, .lookup = g_lookup};

static void on_paid(void *ctx, int64_t user, int64_t now) {
    (void)ctx;
    (void)now;
    if (user == 7) fs.paid_users++;
}

static int setup(void **state) {
    memset(&fs, 0, sizeof(fs));
    memset(&fg, 0, sizeof(fg));
    fs.base.ops = &fake_store_ops;
    fg.base.ops = &fake_gw_ops;
    wall = NOW;
    mono = 1000000;
    fs.res = (struct store_reservation){.id = 5,
                                        .user_id = 7,
                                        .status = STORE_RES_HELD,
                                        .total_price = 2000,
                                        .expires_at_ms = NOW + 60000};
    struct payment_opts o = {
        .timeout_ms = TIMEOUT,
        .breaker = {.window = 4,
                    .min_calls = 2,
                    .failure_rate_pct = 50,
                    .open_ms = 1000,
                    .half_open_calls = 3,
                    .slow_ms = TIMEOUT},
        .now_ms = now_ms,
        .mono_ms = mono_ms,
        .on_paid = on_paid,
    };
    struct payments *p;
    assert_int_equal(payments_new(&fs.base, &fg.base, &o, &p), 0);
    *state = p;
    return 0;
}

static int teardown(void **state) {
    payments_free(*state);
    return 0;
}

static int pay(struct payments *p, struct card_pay *c) {
    *c = (struct card_pay){.reservation_id = 5, .user_id = 7};
    return payment_card(p, NULL, c, NULL);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_rules_key_check_and_what_a_failure_leaves(void **state) {
    (void)state;
    char key[32];
    payment_key(42, 3, key, sizeof(key));
    assert_string_equal(key, "res-42-3");
    struct store_reservation r = {.user_id = 7, .status = STORE_RES_HELD, .expires_at_ms = NOW};
    assert_int_equal(payment_can_pay_card(&r, 8, 0, NOW - 1), ERR_FORBIDDEN);
    assert_int_equal(payment_can_pay_card(&r, 7, 0, NOW - 1), 0);
    assert_int_equal(payment_can_pay_card(&r, 7, 0, NOW), ERR_CONFLICT); /* ran out */
    r.status = STORE_RES_PAYMENT_PENDING;
    assert_int_equal(payment_can_pay_card(&r, 7, 0, NOW + 1000), 1); /* never expires */
    r.status = STORE_RES_CONFIRMED;
    assert_int_equal(payment_can_pay_card(&r, 7, 0, NOW - 1), ERR_CONFLICT);
    assert_int_equal(payment_after_fail(&r, NOW - 1), STORE_RES_HELD);
    assert_int_equal(payment_after_fail(&r, NOW), STORE_RES_EXPIRED);
}

static void test_approved_charges_the_attempt_key_and_confirms(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_APPROVED;
    assert_int_equal(pay(*state, &c), 0);
    assert_int_equal(c.outcome, CARD_COMPLETED);
    assert_int_equal(c.payment.amount, 2000);
    assert_int_equal(fg.charges, 1);
    assert_string_equal(fg.last_key, "res-5-1");
    assert_int_equal(fs.settles, 1);
    assert_int_equal(fs.last.approved, 1);
    assert_string_equal(fs.last.charge_id, "ch_1");
    assert_int_equal(fs.res.status, STORE_RES_CONFIRMED);
    assert_int_equal(fs.paid_users, 1);
}

static void test_declined_is_err_declined_and_the_hold_is_kept(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_DECLINED;
    assert_int_equal(pay(*state, &c), ERR_DECLINED);
    assert_int_equal(fs.last.approved, 0);
    assert_int_equal(fs.res.status, STORE_RES_HELD);
    fg.charge_outcome = GW_APPROVED;
    assert_int_equal(pay(*state, &c), 0);
    assert_string_equal(fg.last_key, "res-5-2"); /* a new key for the new attempt */
    assert_int_equal(fs.paid_users, 1);
}

static void test_unknown_is_pending_with_nothing_settled(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_UNKNOWN;
    assert_int_equal(pay(*state, &c), 0);
    assert_int_equal(c.outcome, CARD_PENDING);
    assert_int_equal(c.payment.id, 1);
    assert_int_equal(fs.settles, 0);
    assert_int_equal(fs.res.status, STORE_RES_PAYMENT_PENDING);
}

static void test_a_retry_while_pending_looks_up_and_never_charges_again(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_UNKNOWN;
    assert_int_equal(pay(*state, &c), 0);
    fg.lookup_outcome = GW_UNKNOWN;
    assert_int_equal(pay(*state, &c), 0);
    assert_int_equal(c.outcome, CARD_PENDING);
    fg.lookup_outcome = GW_APPROVED;
    assert_int_equal(pay(*state, &c), 0);
    assert_int_equal(c.outcome, CARD_COMPLETED);
    assert_int_equal(fg.charges, 1);
    assert_int_equal(fg.lookups, 2);
    assert_string_equal(fg.last_key, "res-5-1");
    assert_int_equal(fs.res.status, STORE_RES_CONFIRMED);
}

static void test_not_found_is_trusted_only_after_timeout_and_grace(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_UNKNOWN;
    assert_int_equal(pay(*state, &c), 0);
    fg.lookup_outcome = GW_NOT_FOUND;
    wall = NOW + TIMEOUT + PAYMENT_NOT_FOUND_GRACE_MS - 1;
    assert_int_equal(pay(*state, &c), 0); /* maybe still on its way: PENDING */
    assert_int_equal(c.outcome, CARD_PENDING);
    assert_int_equal(fs.settles, 0);
    wall = NOW + TIMEOUT + PAYMENT_NOT_FOUND_GRACE_MS;
    fg.charge_outcome = GW_APPROVED;
    assert_int_equal(pay(*state, &c), 0); /* never charged: failed, then a new attempt */
    assert_int_equal(c.outcome, CARD_COMPLETED);
    assert_int_equal(fg.charges, 2);
    assert_string_equal(fg.last_key, "res-5-2");
}

static void test_open_breaker_refuses_without_calling_or_writing(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_UNKNOWN;
    for (int i = 0; i < 2; i++) {
        fs.res.status = STORE_RES_HELD; /* as if the reconciler gave it back */
        fs.pending = 0;
        assert_int_equal(pay(*state, &c), 0);
    }
    assert_int_equal(payment_breaker_state(*state), BREAKER_OPEN);
    int begins = fs.begins;
    assert_int_equal(pay(*state, &c), ERR_UNAVAILABLE);
    assert_int_equal(c.retry_after_ms, 1000);
    assert_int_equal(fg.charges, 2);
    assert_int_equal(fs.begins, begins);
}

static void test_slow_approvals_open_the_breaker_too(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_APPROVED;
    fg.charge_takes_ms = TIMEOUT;
    assert_int_equal(pay(*state, &c), 0);
    fs.res.status = STORE_RES_HELD;
    assert_int_equal(pay(*state, &c), 0);
    assert_int_equal(payment_breaker_state(*state), BREAKER_OPEN);
}

static void test_reconciler_settles_pending_attempts_older_than_the_timeout(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_UNKNOWN;
    assert_int_equal(pay(*state, &c), 0);
    int64_t n = -1;
    fg.lookup_outcome = GW_APPROVED;
    wall = NOW + TIMEOUT; /* not older than the timeout yet */
    assert_int_equal(payment_reconcile(*state, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(fg.lookups, 0);
    wall = NOW + TIMEOUT + 1;
    assert_int_equal(payment_reconcile(*state, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(fs.res.status, STORE_RES_CONFIRMED);
    assert_int_equal(fs.paid_users, 1);
    assert_int_equal(fg.charges, 1);
}

static void test_reconciler_gives_a_never_charged_hold_back(void **state) {
    struct card_pay c;
    fg.charge_outcome = GW_UNKNOWN;
    assert_int_equal(pay(*state, &c), 0);
    fg.lookup_outcome = GW_NOT_FOUND;
    int64_t n = -1;
    wall = NOW + TIMEOUT + 1;
    assert_int_equal(payment_reconcile(*state, &n), 0);
    assert_int_equal(n, 0); /* too young to trust NOT_FOUND */
    wall = NOW + TIMEOUT + PAYMENT_NOT_FOUND_GRACE_MS;
    assert_int_equal(payment_reconcile(*state, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(fs.res.status, STORE_RES_HELD);
    assert_int_equal(fs.paid_users, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_rules_key_check_and_what_a_failure_leaves),
        T(test_approved_charges_the_attempt_key_and_confirms),
        T(test_declined_is_err_declined_and_the_hold_is_kept),
        T(test_unknown_is_pending_with_nothing_settled),
        T(test_a_retry_while_pending_looks_up_and_never_charges_again),
        T(test_not_found_is_trusted_only_after_timeout_and_grace),
        T(test_open_breaker_refuses_without_calling_or_writing),
        T(test_slow_approvals_open_the_breaker_too),
        T(test_reconciler_settles_pending_attempts_older_than_the_timeout),
        T(test_reconciler_gives_a_never_charged_hold_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
