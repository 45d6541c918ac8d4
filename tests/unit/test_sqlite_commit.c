/* test_sqlite_commit.c -- the group committer (src/store/sqlite_commit.c):
 * sq_write batches concurrent writers into one transaction, isolates a
 * failing job from the others of its batch, fails the whole batch when its
 * COMMIT fails, and returns only after the commit; a request run inside a
 * batch (sq_run_batched) is done only after that batch's COMMIT, with its
 * outcome. Real SQLite files in a fresh temporary directory per test; a
 * separate raw connection checks what was committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/batch.h"
#include "core/err.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "store/sqlite_int.h"
#include "testdb.h"

struct fx {
    struct testdb db;
    struct store *s;
    struct sqlite_store *ss;
};

static int setup(void **state) {
    struct fx *f = calloc(1, sizeof(*f));
    testdb_init(&f->db, "commit");
    char err[256];
    if (store_sqlite_open(f->db.path, &f->s, err, sizeof(err)) != 0) fail_msg("open: %s", err);
    f->ss = (struct sqlite_store *)f->s;
    testdb_exec(&f->db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0);"
                        "CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0);"
                        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                        "CREATE TABLE child (p INTEGER REFERENCES parent (id)"
                        " DEFERRABLE INITIALLY DEFERRED)");
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    if (f->s) f->s->ops->close(f->s);
    testdb_remove(&f->db);
    free(f);
    return 0;
}

/* ---- jobs ------------------------------------------------------------------ */

static const char SQL_INSERT[] = "INSERT INTO t (id) VALUES (?1)";
static const char SQL_COUNT[] = "SELECT n FROM counter";
static const char SQL_SET_COUNT[] = "UPDATE counter SET n = ?1";
static const char SQL_ORPHAN[] = "INSERT INTO child (p) VALUES (?1)";

struct job {
    struct fx *f;
    int64_t id;
    int fail;   /* insert, then return ERR_CONFLICT */
    int orphan; /* insert a child row whose parent does not exist (fails at COMMIT) */
    int result;
};

static int insert_apply(struct conn *c, void *arg) {
    struct job *j = arg;
    int err = sq_exec_ints(c, SQL_INSERT, 1, &j->id);
    if (err == 0 && j->orphan) err = sq_exec_ints(c, SQL_ORPHAN, 1, &j->id);
    return err ? err : (j->fail ? ERR_CONFLICT : 0);
}

static int increment_apply(struct conn *c, void *arg) {
    (void)arg;
    int64_t n;
    int err = sq_query_int(c, SQL_COUNT, 0, NULL, &n);
    n++;
    return err ? err : sq_exec_ints(c, SQL_SET_COUNT, 1, &n);
}

/* Holds the committer until `want` jobs are queued behind it, so they all
 * land in the next batch. */
struct blocker {
    struct fx *f;
    size_t want;
    atomic_int running;
    int result;
};

static int blocker_apply(struct conn *c, void *arg) {
    (void)c;
    struct blocker *b = arg;
    atomic_store(&b->running, 1);
    int64_t deadline = time_mono_ms() + 10000;
    while (sq_commit_pending(b->f->ss) < b->want && time_mono_ms() < deadline) usleep(1000);
    return sq_commit_pending(b->f->ss) == b->want ? 0 : ERR_INTERNAL;
}

static void *blocker_thread(void *p) {
    struct blocker *b = p;
    b->result = sq_write(b->f->ss, blocker_apply, b);
    return NULL;
}

static void *insert_thread(void *p) {
    struct job *j = p;
    j->result = sq_write(j->f->ss, insert_apply, j);
    return NULL;
}

/* Starts the blocker and waits until the committer runs it. */
static void start_blocker(struct fx *f, struct blocker *b, pthread_t *t, size_t want) {
    b->f = f;
    b->want = want;
    atomic_init(&b->running, 0);
    assert_int_equal(pthread_create(t, NULL, blocker_thread, b), 0);
    while (!atomic_load(&b->running)) usleep(500);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_write_is_committed_when_sq_write_returns(void **state) {
    struct fx *f = *state;
    struct job j = {f, 7, 0, 0, -99};
    assert_int_equal(sq_write(f->ss, insert_apply, &j), 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t WHERE id = 7"), 1);
    uint64_t batches, jobs;
    sq_commit_totals(f->ss, &batches, &jobs);
    assert_int_equal(batches, 1);
    assert_int_equal(jobs, 1);
}

static void test_concurrent_writers_are_batched_into_one_commit(void **state) {
    struct fx *f = *state;
    enum { N = 64 };
    struct blocker b;
    pthread_t bt, t[N];
    struct job j[N];
    start_blocker(f, &b, &bt, N);
    for (int i = 0; i < N; i++) {
        j[i] = (struct job){f, i + 1, 0, 0, -99};
        assert_int_equal(pthread_create(&t[i], NULL, insert_thread, &j[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    pthread_join(bt, NULL);
    assert_int_equal(b.result, 0);
    for (int i = 0; i < N; i++) assert_int_equal(j[i].result, 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t"), N);
    uint64_t batches, jobs;
    sq_commit_totals(f->ss, &batches, &jobs);
    assert_int_equal(jobs, N + 1);
    assert_int_equal(batches, 2); /* the blocker alone, then all N together */
}

static void test_failing_job_leaves_the_rest_of_its_batch_committed(void **state) {
    struct fx *f = *state;
    enum { N = 10 };
    struct blocker b;
    pthread_t bt, t[N];
    struct job j[N];
    start_blocker(f, &b, &bt, N);
    for (int i = 0; i < N; i++) {
        j[i] = (struct job){f, i + 1, i % 2, 0, -99}; /* even ids fail after inserting */
        assert_int_equal(pthread_create(&t[i], NULL, insert_thread, &j[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    pthread_join(bt, NULL);
    for (int i = 0; i < N; i++) assert_int_equal(j[i].result, i % 2 ? ERR_CONFLICT : 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t"), N / 2);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t WHERE id % 2 = 0"), 0);
    uint64_t batches;
    sq_commit_totals(f->ss, &batches, NULL);
    assert_int_equal(batches, 2);
}

static void test_commit_failure_fails_every_job_of_the_batch(void **state) {
    struct fx *f = *state;
    enum { N = 5 };
    struct blocker b;
    pthread_t bt, t[N];
    struct job j[N];
    start_blocker(f, &b, &bt, N);
    for (int i = 0; i < N; i++) {
        j[i] = (struct job){f, i + 1, 0, i == 2, -99}; /* job 2's orphan breaks the COMMIT */
        assert_int_equal(pthread_create(&t[i], NULL, insert_thread, &j[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    pthread_join(bt, NULL);
    for (int i = 0; i < N; i++) assert_int_not_equal(j[i].result, 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t"), 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM child"), 0);

    struct job after = {f, 100, 0, 0, -99}; /* the committer carries on */
    assert_int_equal(sq_write(f->ss, insert_apply, &after), 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t"), 1);
}

static void *increment_thread(void *p) {
    struct fx *f = p;
    for (int i = 0; i < 25; i++)
        if (sq_write(f->ss, increment_apply, NULL) != 0) return (void *)1;
    return NULL;
}

static void test_read_modify_write_jobs_never_lose_an_update(void **state) {
    struct fx *f = *state;
    enum { THREADS = 16 };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, increment_thread, f), 0);
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
    }
    assert_int_equal(testdb_int(&f->db, "SELECT n FROM counter"), THREADS * 25);
    uint64_t batches, jobs;
    sq_commit_totals(f->ss, &batches, &jobs);
    assert_int_equal(jobs, THREADS * 25);
    assert_true(batches <= jobs);
}

static int step_apply(struct conn *c, void *arg) {
    struct job *j = arg;
    int err = sq_exec_ints(c, SQL_INSERT, 1, &j->id); /* kept */
    if (err) return err;
    err = sq_savepoint(c, SQ_SP_STEP);
    int64_t other = j->id + 1;
    if (err == 0) err = sq_exec_ints(c, SQL_INSERT, 1, &other); /* rolled back */
    err = sq_release(c, SQ_SP_STEP, err ? err : ERR_CONFLICT);
    return err == ERR_CONFLICT ? 0 : err;
}

static void test_inner_savepoint_rolls_back_only_its_step(void **state) {
    struct fx *f = *state;
    struct job j = {f, 10, 0, 0, -99};
    assert_int_equal(sq_write(f->ss, step_apply, &j), 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t WHERE id = 10"), 1);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t WHERE id = 11"), 0);
}

static void test_constraint_error_of_a_job_is_its_own(void **state) {
    struct fx *f = *state;
    struct job a = {f, 1, 0, 0, -99}, dup = {f, 1, 0, 0, -99};
    assert_int_equal(sq_write(f->ss, insert_apply, &a), 0);
    assert_int_equal(sq_write(f->ss, insert_apply, &dup), ERR_INVALID);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t"), 1);
}

/* ---- requests run in the batch (sqlite_commit.c note 8) ------------------- */

/* A request like a charge: two writes through sq_write from inside the
 * batch (the second may fail on its own, or break the COMMIT), then done()
 * records the batch's outcome and what a separate connection sees then. */
struct req {
    struct fx *f;
    struct batch_job job;
    struct job w[2];
    int ran_on_committer_thread; /* run() came back with both writes' results */
    atomic_int done;
    int err;           /* done()'s */
    int64_t committed; /* rows of t visible to another connection in done() */
};

static void req_run(void *arg) {
    struct req *r = arg;
    for (int i = 0; i < 2; i++) r->w[i].result = sq_write(r->f->ss, insert_apply, &r->w[i]);
    r->ran_on_committer_thread = 1;
}

static void req_done(void *arg, int err) {
    struct req *r = arg;
    r->err = err;
    r->committed = testdb_int(&r->f->db, "SELECT count(*) FROM t");
    atomic_store(&r->done, 1);
}

static void req_init(struct req *r, struct fx *f, int64_t id, int fail2, int orphan2) {
    memset(r, 0, sizeof(*r));
    r->f = f;
    r->job = (struct batch_job){req_run, req_done, r};
    r->w[0] = (struct job){f, id, 0, 0, -99};
    r->w[1] = (struct job){f, id + 1, fail2, orphan2, -99};
    atomic_init(&r->done, 0);
}

static void req_wait(struct req *r) {
    int64_t deadline = time_mono_ms() + 10000;
    while (!atomic_load(&r->done) && time_mono_ms() < deadline) usleep(500);
    assert_true(atomic_load(&r->done));
}

static void test_request_in_a_batch_is_done_after_its_commit(void **state) {
    struct fx *f = *state;
    struct req r;
    req_init(&r, f, 1, 0, 0);
    assert_int_equal(sq_run_batched(f->s, &r.job), 0);
    req_wait(&r);
    assert_true(r.ran_on_committer_thread);
    assert_int_equal(r.w[0].result, 0);
    assert_int_equal(r.w[1].result, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.committed, 2); /* on disk before done() */
    uint64_t batches, jobs;
    sq_commit_totals(f->ss, &batches, &jobs);
    assert_int_equal(batches, 1);
}

static void test_request_shares_its_batch_with_writers_and_fails_alone(void **state) {
    struct fx *f = *state;
    enum { N = 4 };
    struct blocker b;
    pthread_t bt, t[N];
    struct job j[N];
    struct req r;
    start_blocker(f, &b, &bt, N + 1);
    req_init(&r, f, 100, 1, 0); /* its second write fails: rolled back alone */
    assert_int_equal(sq_run_batched(f->s, &r.job), 0);
    for (int i = 0; i < N; i++) {
        j[i] = (struct job){f, i + 1, 0, 0, -99};
        assert_int_equal(pthread_create(&t[i], NULL, insert_thread, &j[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    pthread_join(bt, NULL);
    req_wait(&r);
    for (int i = 0; i < N; i++) assert_int_equal(j[i].result, 0);
    assert_int_equal(r.w[0].result, 0);
    assert_int_equal(r.w[1].result, ERR_CONFLICT);
    assert_int_equal(r.err, 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t"), N + 1);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t WHERE id = 101"), 0);
    uint64_t batches;
    sq_commit_totals(f->ss, &batches, NULL);
    assert_int_equal(batches, 2); /* the blocker, then the request with the writers */
}

static void test_request_of_a_failed_batch_gets_the_error(void **state) {
    struct fx *f = *state;
    struct req r;
    req_init(&r, f, 1, 0, 1); /* its second write's orphan breaks the COMMIT */
    assert_int_equal(sq_run_batched(f->s, &r.job), 0);
    req_wait(&r);
    assert_int_equal(r.w[0].result, 0);
    assert_int_equal(r.w[1].result, 0); /* each write went through... */
    assert_int_not_equal(r.err, 0);     /* ...and the batch did not */
    assert_int_equal(r.committed, 0);
    struct job after = {f, 50, 0, 0, -99}; /* the committer carries on */
    assert_int_equal(sq_write(f->ss, insert_apply, &after), 0);
    assert_int_equal(testdb_int(&f->db, "SELECT count(*) FROM t"), 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    log_init(getenv("TEST_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
    const struct CMUnitTest tests[] = {
        T(test_write_is_committed_when_sq_write_returns),
        T(test_concurrent_writers_are_batched_into_one_commit),
        T(test_failing_job_leaves_the_rest_of_its_batch_committed),
        T(test_commit_failure_fails_every_job_of_the_batch),
        T(test_read_modify_write_jobs_never_lose_an_update),
        T(test_inner_savepoint_rolls_back_only_its_step),
        T(test_constraint_error_of_a_job_is_its_own),
        T(test_request_in_a_batch_is_done_after_its_commit),
        T(test_request_shares_its_batch_with_writers_and_fails_alone),
        T(test_request_of_a_failed_batch_gets_the_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
