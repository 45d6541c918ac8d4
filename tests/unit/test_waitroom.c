/* test_waitroom.c -- the waiting room's rules (service/waitroom.c) over the
 * embedded queue (queue/local.c) and a real SQLite file per test, then all
 * of them again over the Redis queue (queue/redis.c) on a throwaway
 * redis-server, a key prefix per test: the two adapters must behave the
 * same. The clock is driven by the tests: every call gets an explicit
 * time; no ticker thread runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "queue/queue.h"
#include "service/waitroom.h"
#include "store/store.h"
#include "testdb.h"
#include "testredis.h"

#define T0 ((int64_t)1800000000000) /* an arbitrary epoch ms */

static const char *redis_url; /* NULL: the local queue; else the Redis pass */

struct fx {
    char prefix[32]; /* Redis keys of this test */
    struct testdb db;
    struct store *s;
    struct queue *q;
    struct waitroom *w;
    struct waitroom_opts o;
};

static int64_t never_called(void) {
    fail_msg("the tests drive the clock; the ticker must not run");
    return 0;
}

static void open_room(struct fx *f, int64_t now) {
    char err[256];
    struct queue_redis_opts ro = {.prefix = f->prefix, .lease_ms = 60000};
    if (redis_url ? queue_redis_open(redis_url, &ro, &f->q, err, sizeof(err))
                  : queue_local_open(f->s, now, &f->q, err, sizeof(err)))
        fail_msg("queue: %s", err);
    f->w = waitroom_new(f->q, &f->o);
}

static void close_room(struct fx *f) {
    waitroom_free(f->w);
    f->q->ops->close(f->q);
    f->w = NULL;
    f->q = NULL;
}

static int setup(void **state) {
    static int n;
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->prefix, sizeof(f->prefix), "ut:%d:", ++n);
    testdb_init(&f->db, "wr");
    char err[256];
    if (store_sqlite_open(f->db.path, &f->s, err, sizeof(err))) fail_msg("open: %s", err);
    assert_int_equal(f->s->ops->migrate(f->s), 0);
    f->o = (struct waitroom_opts){.max_active = 3,
                                  .admit_per_sec = 10,
                                  .active_ttl_ms = 10000,
                                  .waiting_idle_ms = 5000,
                                  .tick_ms = 100,
                                  .now_ms = never_called};
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    if (f->w) close_room(f);
    f->s->ops->close(f->s);
    testdb_remove(&f->db);
    free(f);
    return 0;
}

static struct waitroom_view enter(struct fx *f, int64_t user, int64_t now, int want_created) {
    struct waitroom_view v;
    int created = -1;
    assert_int_equal(waitroom_enter(f->w, user, now, &v, &created), 0);
    assert_int_equal(created, want_created);
    assert_int_equal(v.t.user_id, user);
    return v;
}

static struct waitroom_view status(struct fx *f, const char *token, int64_t now) {
    struct waitroom_view v;
    assert_int_equal(waitroom_status(f->w, token, now, &v), 0);
    return v;
}

/* ---- tests -------------------------------------------------------------- */

static void test_tokens_are_22_urlsafe_chars_and_distinct(void **state) {
    (void)state;
    char a[QUEUE_TOKEN_MAX + 1], b[QUEUE_TOKEN_MAX + 1];
    assert_int_equal(queue_new_token(a), 0);
    assert_int_equal(queue_new_token(b), 0);
    assert_int_equal(strlen(a), 22);
    assert_true(queue_token_valid(a));
    assert_string_not_equal(a, b);
    assert_false(queue_token_valid(""));
    assert_false(queue_token_valid("has space"));
    assert_false(queue_token_valid("0123456789012345678901234567890123"));
}

static void test_enter_is_idempotent_and_positions_follow_arrival(void **state) {
    struct fx *f = *state;
    open_room(f, T0);
    struct waitroom_view v[6];
    for (int u = 1; u <= 5; u++) {
        v[u] = enter(f, u, T0, 1);
        assert_int_equal(v[u].t.state, QUEUE_WAITING);
        assert_int_equal(v[u].t.position, u);
    }
    struct waitroom_view again = enter(f, 3, T0 + 1, 0);
    assert_string_equal(again.t.token, v[3].t.token);
    assert_int_equal(again.t.position, 3);
}

static void test_positions_are_exact_after_leaves_and_idle_drops(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1; /* admit nobody but the first */
    open_room(f, T0);
    struct waitroom_view v[11];
    for (int u = 1; u <= 10; u++) v[u] = enter(f, u, T0, 1);
    assert_int_equal(waitroom_leave(f->w, v[2].t.token, T0 + 10), 0);
    assert_int_equal(waitroom_leave(f->w, v[2].t.token, T0 + 11), 0); /* twice is fine */
    assert_int_equal(status(f, v[3].t.token, T0 + 20).t.position, 2);
    assert_int_equal(status(f, v[10].t.token, T0 + 20).t.position, 9);
    /* Everyone but 5 and 7 keeps polling; those two go idle and drop out. */
    for (int64_t t = T0 + 1000; t <= T0 + 6000; t += 1000)
        for (int u = 1; u <= 10; u++)
            if (u != 2 && u != 5 && u != 7) status(f, v[u].t.token, t);
    assert_int_equal(waitroom_tick(f->w, T0 + 6000), 0);
    assert_int_equal(status(f, v[5].t.token, T0 + 6000).t.state, QUEUE_EXPIRED);
    assert_int_equal(status(f, v[7].t.token, T0 + 6000).t.state, QUEUE_EXPIRED);
    assert_int_equal(status(f, v[1].t.token, T0 + 6000).t.state, QUEUE_ACTIVATED);
    /* Left in line, in order: 3 4 6 8 9 10. */
    int64_t want[11] = {[3] = 1, [4] = 2, [6] = 3, [8] = 4, [9] = 5, [10] = 6};
    for (int u = 3; u <= 10; u++)
        if (want[u]) assert_int_equal(status(f, v[u].t.token, T0 + 6000).t.position, want[u]);
    struct waitroom_stats st;
    assert_int_equal(waitroom_stats(f->w, T0 + 6000, &st), 0);
    assert_int_equal(st.waiting, 6);
    assert_int_equal(st.active, 1);
}

static void test_entering_again_counts_as_a_poll(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1;
    open_room(f, T0);
    enter(f, 1, T0, 1);
    struct waitroom_view a = enter(f, 2, T0, 1), b = enter(f, 3, T0, 1);
    assert_int_equal(waitroom_tick(f->w, T0 + 100), 0); /* user 1 admitted */
    enter(f, 2, T0 + 4000, 0);                          /* 2 comes back; 3 is silent */
    assert_int_equal(waitroom_tick(f->w, T0 + 5500), 0);
    assert_int_equal(status(f, b.t.token, T0 + 5500).t.state, QUEUE_EXPIRED);
    struct waitroom_view again = status(f, a.t.token, T0 + 5500);
    assert_int_equal(again.t.state, QUEUE_WAITING);
    assert_int_equal(again.t.position, 1);
}

static void test_admission_follows_rate_and_max_active(void **state) {
    struct fx *f = *state;
    f->o.max_active = 25;
    f->o.admit_per_sec = 50; /* 5 per 100 ms tick */
    open_room(f, T0);
    for (int u = 1; u <= 100; u++) enter(f, u, T0, 1);
    struct waitroom_stats st;
    int64_t t = T0;
    for (int i = 1; i <= 4; i++) {
        t += 100;
        assert_int_equal(waitroom_tick(f->w, t), 0);
        assert_int_equal(waitroom_stats(f->w, t, &st), 0);
        assert_int_equal(st.active, 5 * i);
    }
    /* A late tick admits what the elapsed time allows, not a backlog. */
    t += 300;
    assert_int_equal(waitroom_tick(f->w, t), 0);
    assert_int_equal(waitroom_stats(f->w, t, &st), 0);
    assert_int_equal(st.active, 25); /* 20 + 15 would be 35: max_active caps it */
    for (int i = 0; i < 10; i++) assert_int_equal(waitroom_tick(f->w, t += 100), 0);
    assert_int_equal(waitroom_stats(f->w, t, &st), 0);
    assert_int_equal(st.active, 25);
    assert_int_equal(st.waiting, 75);
    assert_int_equal(st.admitted_last_minute, 25);
}

static void test_slow_rate_admits_one_every_few_ticks(void **state) {
    struct fx *f = *state;
    f->o.admit_per_sec = 2; /* one per 500 ms */
    open_room(f, T0);
    for (int u = 1; u <= 5; u++) enter(f, u, T0, 1);
    struct waitroom_stats st;
    int64_t t = T0;
    for (int i = 0; i < 10; i++) assert_int_equal(waitroom_tick(f->w, t += 100), 0);
    assert_int_equal(waitroom_stats(f->w, t, &st), 0);
    assert_int_equal(st.active, 2);
}

static void test_active_tokens_expire_after_ttl_and_free_their_slot(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1;
    f->o.admit_per_sec = 1000;
    open_room(f, T0);
    struct waitroom_view a = enter(f, 1, T0, 1), b = enter(f, 2, T0, 1);
    assert_int_equal(waitroom_tick(f->w, T0 + 100), 0);
    struct waitroom_view sa = status(f, a.t.token, T0 + 100);
    assert_int_equal(sa.t.state, QUEUE_ACTIVATED);
    assert_int_equal(sa.t.active_until, T0 + 100 + f->o.active_ttl_ms);
    assert_int_equal(status(f, b.t.token, T0 + 100).t.position, 1);
    /* The gate refuses a token whose time is up even before the sweep. */
    enum waitroom_gate g;
    int64_t user;
    int64_t end = T0 + 100 + f->o.active_ttl_ms;
    assert_int_equal(waitroom_check(f->w, a.t.token, 1, end - 1, &g, &user), 0);
    assert_int_equal(g, GATE_OK);
    assert_int_equal(waitroom_check(f->w, a.t.token, 1, end, &g, &user), 0);
    assert_int_equal(g, GATE_NOT_ACTIVE);
    status(f, b.t.token, end - 1000); /* b keeps polling */
    assert_int_equal(waitroom_tick(f->w, end), 0);
    assert_int_equal(status(f, a.t.token, end).t.state, QUEUE_EXPIRED);
    assert_int_equal(status(f, b.t.token, end).t.state, QUEUE_ACTIVATED);
    /* After EXPIRED, entering again is a new token at the back. */
    struct waitroom_view a2 = enter(f, 1, end + 1, 1);
    assert_string_not_equal(a2.t.token, a.t.token);
    assert_int_equal(a2.t.state, QUEUE_WAITING);
}

static void test_leaving_frees_a_slot_at_the_next_tick(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1;
    f->o.admit_per_sec = 1000;
    open_room(f, T0);
    struct waitroom_view a = enter(f, 1, T0, 1), b = enter(f, 2, T0, 1);
    assert_int_equal(waitroom_tick(f->w, T0 + 100), 0);
    assert_int_equal(waitroom_leave(f->w, a.t.token, T0 + 150), 0);
    assert_int_equal(status(f, b.t.token, T0 + 150).t.state, QUEUE_WAITING);
    assert_int_equal(waitroom_tick(f->w, T0 + 200), 0);
    assert_int_equal(status(f, b.t.token, T0 + 200).t.state, QUEUE_ACTIVATED);
}

static void test_eta_uses_configured_rate_then_observed(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1000;
    f->o.admit_per_sec = 10;
    f->o.waiting_idle_ms = 60000; /* nobody polls here */
    open_room(f, T0);
    struct waitroom_view v[41];
    for (int u = 1; u <= 40; u++) v[u] = enter(f, u, T0, 1);
    assert_int_equal(v[40].eta_seconds, 4); /* 40 / 10 per second */
    assert_int_equal(v[1].eta_seconds, 1);  /* rounded up */
    /* Drop the rate to 1/s: 10 s of admissions at about 1 per second. */
    assert_int_equal(waitroom_set_limits(f->w, 0, 1), 0);
    int64_t t = T0;
    for (int i = 0; i < 100; i++) assert_int_equal(waitroom_tick(f->w, t += 100), 0);
    struct waitroom_view last = status(f, v[40].t.token, t);
    assert_int_equal(last.t.position, 30);
    /* 10 admitted over the 10 s since the first admission: 1 per second. */
    assert_int_equal(last.eta_seconds, 30);
    struct waitroom_view act = status(f, v[1].t.token, t);
    assert_int_equal(act.eta_seconds, 0);
}

static void test_gate_verdicts(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1;
    f->o.admit_per_sec = 1000;
    open_room(f, T0);
    struct waitroom_view a = enter(f, 7, T0, 1), b = enter(f, 8, T0, 1);
    assert_int_equal(waitroom_tick(f->w, T0 + 100), 0);
    enum waitroom_gate g;
    int64_t user;
    assert_int_equal(waitroom_check(f->w, NULL, 0, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_MISSING);
    assert_int_equal(waitroom_check(f->w, "", 0, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_MISSING);
    assert_int_equal(waitroom_check(f->w, "nope", 0, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_INVALID);
    assert_int_equal(waitroom_check(f->w, "bad token!", 0, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_INVALID);
    assert_int_equal(waitroom_check(f->w, b.t.token, 0, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_NOT_ACTIVE);
    assert_int_equal(waitroom_check(f->w, a.t.token, 8, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_FORBIDDEN);
    assert_int_equal(waitroom_check(f->w, a.t.token, 7, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_OK);
    assert_int_equal(user, 7);
    assert_int_equal(waitroom_check(f->w, a.t.token, 0, T0 + 200, &g, &user), 0);
    assert_int_equal(g, GATE_OK);
    /* By user id (classic API). */
    assert_int_equal(waitroom_check_user(f->w, 7, T0 + 200, &g), 0);
    assert_int_equal(g, GATE_OK);
    assert_int_equal(waitroom_check_user(f->w, 8, T0 + 200, &g), 0);
    assert_int_equal(g, GATE_NOT_ACTIVE);
    assert_int_equal(waitroom_check_user(f->w, 9, T0 + 200, &g), 0);
    assert_int_equal(g, GATE_MISSING);
    struct waitroom_view v;
    assert_int_equal(waitroom_status_of_user(f->w, 8, T0 + 200, &v), 0);
    assert_string_equal(v.t.token, b.t.token);
    assert_int_equal(v.t.position, 1);
    assert_int_equal(waitroom_status_of_user(f->w, 9, T0 + 200, &v), ERR_NOT_FOUND);
    /* Paying expires the token. */
    assert_int_equal(waitroom_paid(f->w, 7, T0 + 300), 0);
    assert_int_equal(waitroom_check_user(f->w, 7, T0 + 300, &g), 0);
    assert_int_equal(g, GATE_MISSING);
    assert_int_equal(waitroom_check(f->w, a.t.token, 7, T0 + 300, &g, &user), 0);
    assert_int_equal(g, GATE_NOT_ACTIVE);
}

static void test_poll_by_user_keeps_a_waiting_token_from_the_idle_drop(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1;
    open_room(f, T0);
    struct waitroom_view a = enter(f, 1, T0, 1), b = enter(f, 2, T0, 1), c = enter(f, 3, T0, 1);
    assert_int_equal(waitroom_tick(f->w, T0 + 100), 0); /* 1 is admitted */
    /* 2 polls by user id (classic); 3 is only looked up, which is no poll. */
    struct waitroom_view v;
    for (int64_t t = T0 + 1000; t <= T0 + 6000; t += 1000) {
        assert_int_equal(waitroom_poll_user(f->w, 2, t, &v), 0);
        assert_string_equal(v.t.token, b.t.token);
        assert_int_equal(v.t.state, QUEUE_WAITING);
        assert_int_equal(v.t.position, 1);
        assert_true(v.eta_seconds >= 1);
        assert_int_equal(waitroom_status_of_user(f->w, 3, t, &v), 0);
    }
    assert_int_equal(waitroom_tick(f->w, T0 + 6000), 0);
    assert_int_equal(waitroom_poll_user(f->w, 2, T0 + 6000, &v), 0);
    assert_int_equal(v.t.state, QUEUE_WAITING);
    assert_int_equal(waitroom_poll_user(f->w, 3, T0 + 6000, &v), ERR_NOT_FOUND); /* dropped */
    assert_int_equal(status(f, c.t.token, T0 + 6000).t.state, QUEUE_EXPIRED);
    /* An ACTIVATED token: polled as it is; active until its time is up. */
    assert_int_equal(waitroom_poll_user(f->w, 1, T0 + 6000, &v), 0);
    assert_string_equal(v.t.token, a.t.token);
    assert_int_equal(v.t.state, QUEUE_ACTIVATED);
    assert_true(waitroom_ticket_active(&v.t, T0 + 6000));
    assert_false(waitroom_ticket_active(&v.t, v.t.active_until));
    assert_int_equal(waitroom_poll_user(f->w, 99, T0 + 6000, &v), ERR_NOT_FOUND);
    assert_int_equal(waitroom_poll_user(f->w, 0, T0 + 6000, &v), ERR_NOT_FOUND);
}

static void test_limits_are_bounded(void **state) {
    struct fx *f = *state;
    open_room(f, T0);
    assert_int_equal(waitroom_set_limits(f->w, -1, 0), ERR_INVALID);
    assert_int_equal(waitroom_set_limits(f->w, WAITROOM_MAX_ACTIVE_MAX + 1, 0), ERR_INVALID);
    assert_int_equal(waitroom_set_limits(f->w, 0, WAITROOM_ADMIT_PER_SEC_MAX + 1), ERR_INVALID);
    assert_int_equal(waitroom_set_limits(f->w, 7, 0), 0);
    struct waitroom_stats st;
    assert_int_equal(waitroom_stats(f->w, T0, &st), 0);
    assert_int_equal(st.max_active, 7);
    assert_int_equal(st.admit_per_sec, 10);
}

static void test_line_survives_a_restart(void **state) {
    struct fx *f = *state;
    f->o.max_active = 2;
    f->o.admit_per_sec = 1000;
    open_room(f, T0);
    struct waitroom_view v[9];
    for (int u = 1; u <= 8; u++) v[u] = enter(f, u, T0, 1);
    assert_int_equal(waitroom_tick(f->w, T0 + 100), 0); /* 1, 2 ACTIVATED */
    assert_int_equal(waitroom_leave(f->w, v[4].t.token, T0 + 200), 0);
    close_room(f);
    if (!redis_url) /* the embedded line is written through to the store */
        assert_int_equal(
            testdb_int(&f->db, "SELECT count(*) FROM waiting_tokens WHERE status = 'ACTIVATED'"),
            2);
    open_room(f, T0 + 1000);
    assert_int_equal(status(f, v[1].t.token, T0 + 1000).t.state, QUEUE_ACTIVATED);
    assert_int_equal(status(f, v[3].t.token, T0 + 1000).t.position, 1);
    assert_int_equal(status(f, v[5].t.token, T0 + 1000).t.position, 2);
    assert_int_equal(status(f, v[8].t.token, T0 + 1000).t.position, 5);
    /* The same user gets the same token back; a newcomer goes to the back. */
    assert_string_equal(enter(f, 6, T0 + 1000, 0).t.token, v[6].t.token);
    assert_int_equal(enter(f, 9, T0 + 1000, 1).t.position, 6);
    struct waitroom_stats st;
    assert_int_equal(waitroom_stats(f->w, T0 + 1000, &st), 0);
    assert_int_equal(st.active, 2);
    assert_int_equal(st.waiting, 6);
    /* A restart after the active TTL expires them and writes it down. */
    close_room(f);
    int64_t later = T0 + 100 + f->o.active_ttl_ms;
    open_room(f, later);
    if (redis_url) { /* nothing to load: the first tick expires them */
        struct waitroom_view stale = status(f, v[1].t.token, later);
        assert_int_equal(stale.t.state, QUEUE_ACTIVATED);
        assert_false(waitroom_ticket_active(&stale.t, later)); /* the gate says no already */
        assert_int_equal(waitroom_tick(f->w, later), 0);
    }
    assert_int_equal(status(f, v[1].t.token, later).t.state, QUEUE_EXPIRED);
    if (!redis_url)
        assert_int_equal(
            testdb_int(&f->db, "SELECT count(*) FROM waiting_tokens WHERE status = 'ACTIVATED'"),
            0);
}

static void test_many_tokens_positions_stay_exact(void **state) {
    struct fx *f = *state;
    f->o.max_active = 1;
    open_room(f, T0);
    enum { N = 20000 };
    char(*tok)[QUEUE_TOKEN_MAX + 1] = calloc(N + 1, sizeof(*tok));
    for (int u = 1; u <= N; u++) memcpy(tok[u], enter(f, u, T0, 1).t.token, sizeof(tok[u]));
    /* Every third one leaves; position = how many of the rest are ahead + 1. */
    for (int u = 3; u <= N; u += 3) assert_int_equal(waitroom_leave(f->w, tok[u], T0 + 1), 0);
    int64_t want = 0;
    for (int u = 1; u <= N; u++) {
        if (u % 3 == 0) continue;
        want++;
        struct waitroom_view v = status(f, tok[u], T0 + 2);
        if (v.t.position != want)
            fail_msg("user %d: position %lld, want %lld", u, (long long)v.t.position,
                     (long long)want);
    }
    free(tok);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    log_init(getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
    const struct CMUnitTest tests[] = {
        T(test_tokens_are_22_urlsafe_chars_and_distinct),
        T(test_enter_is_idempotent_and_positions_follow_arrival),
        T(test_positions_are_exact_after_leaves_and_idle_drops),
        T(test_entering_again_counts_as_a_poll),
        T(test_admission_follows_rate_and_max_active),
        T(test_slow_rate_admits_one_every_few_ticks),
        T(test_active_tokens_expire_after_ttl_and_free_their_slot),
        T(test_leaving_frees_a_slot_at_the_next_tick),
        T(test_eta_uses_configured_rate_then_observed),
        T(test_gate_verdicts),
        T(test_poll_by_user_keeps_a_waiting_token_from_the_idle_drop),
        T(test_limits_are_bounded),
        T(test_line_survives_a_restart),
        T(test_many_tokens_positions_stay_exact),
    };
    int failed = cmocka_run_group_tests_name("local queue", tests, NULL, NULL);
    struct testredis r;
    if (testredis_start(&r)) return 1;
    redis_url = r.url;
    failed += cmocka_run_group_tests_name("redis queue", tests, NULL, NULL);
    testredis_stop(&r);
    return failed;
}
