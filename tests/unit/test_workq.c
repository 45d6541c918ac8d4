/* test_workq.c -- core/workq: every job runs once, in order per thread, and
 * stop drains what was queued. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "core/workq.h"

#define NJOBS 10000

struct counter {
    pthread_mutex_t mu;
    int ran[NJOBS];
    int total;
};

struct item {
    struct workq_job job;
    struct counter *c;
    int i;
};

static void bump(void *arg) {
    struct item *it = arg;
    pthread_mutex_lock(&it->c->mu);
    it->c->ran[it->i]++;
    it->c->total++;
    pthread_mutex_unlock(&it->c->mu);
}

static void test_every_job_runs_exactly_once_before_stop_returns(void **state) {
    (void)state;
    static struct counter c = {.mu = PTHREAD_MUTEX_INITIALIZER};
    static struct item items[NJOBS];
    struct workq *q = workq_start(8, "test");
    assert_non_null(q);
    for (int i = 0; i < NJOBS; i++) {
        items[i] = (struct item){.job = {.fn = bump, .arg = &items[i]}, .c = &c, .i = i};
        workq_push(q, &items[i].job);
    }
    workq_stop(q); /* drains */
    assert_int_equal(c.total, NJOBS);
    for (int i = 0; i < NJOBS; i++) assert_int_equal(c.ran[i], 1);
}

struct sleeper {
    struct workq_job job;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *asleep, *release;
};

/* A job that sleeps until every one of its siblings sleeps too: with n
 * threads, n such jobs can only all finish if they run at the same time. */
static void sleep_until_all(void *arg) {
    struct sleeper *s = arg;
    pthread_mutex_lock(s->mu);
    (*s->asleep)++;
    pthread_cond_broadcast(s->cv);
    while (!*s->release) pthread_cond_wait(s->cv, s->mu);
    pthread_mutex_unlock(s->mu);
}

static void test_jobs_that_sleep_run_side_by_side(void **state) {
    (void)state;
    enum { N = 16 };
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int asleep = 0, release = 0;
    struct sleeper s[N];
    struct workq *q = workq_start(N, "test");
    assert_non_null(q);
    for (int i = 0; i < N; i++) {
        s[i] = (struct sleeper){.job = {.fn = sleep_until_all, .arg = &s[i]},
                                .mu = &mu, .cv = &cv, .asleep = &asleep, .release = &release};
        workq_push(q, &s[i].job);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&mu);
    while (asleep < N)
        if (pthread_cond_timedwait(&cv, &mu, &deadline) != 0) break;
    int all = asleep;
    release = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    workq_stop(q);
    assert_int_equal(all, N); /* 16 sleepers at once on 16 threads */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_job_runs_exactly_once_before_stop_returns),
        cmocka_unit_test(test_jobs_that_sleep_run_side_by_side),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
