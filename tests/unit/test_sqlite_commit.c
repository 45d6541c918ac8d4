/* test_sqlite_commit.c -- the group committer (src/store/sqlite_commit.c):
 * sq_write batches concurrent writers into one transaction, isolates a
 * failing job from the others of its batch, fails the whole batch when its
 * COMMIT fails, and returns only after the commit. Real SQLite files in a
 * fresh temporary directory per test; a separate raw connection checks what
 * was committed. */
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
