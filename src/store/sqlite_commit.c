/* sqlite_commit.c -- group commit for the SQLite adapter (see sq_write() in
 * sqlite_int.h).
 *
 * Responsible for turning many concurrent small writes into few durable
 * commits: writers queue a job and sleep; one committer thread per store
 * runs the queued jobs in one transaction and wakes them after its COMMIT.
 * Not here: what the jobs do (sqlite_booking.c and later the waiting room's
 * persistence), connections and statements (sqlite.c).
 *
 * Design notes
 *
 *   1. Durability. Connections use synchronous=FULL, so COMMIT returns after
 *      the WAL is fsynced. A writer is woken only after the COMMIT of the
 *      batch holding its job returned, so a 2xx built from sq_write's 0 is
 *      sent only for a change that is on disk (invariant 3).
 *   2. Isolation of jobs. Each job runs between SAVEPOINT job and RELEASE
 *      job; a job whose apply fails is rolled back to its savepoint, so the
 *      batch commits the other jobs' changes without it. Jobs run in queue
 *      order, one at a time, on one connection: each sees what the earlier
 *      ones wrote, so a check followed by a write inside one job is atomic
 *      with respect to every other writer that uses sq_write.
 *   3. Failure of the batch. If BEGIN or COMMIT fails, or SQLite rolls the
 *      whole transaction back under a job (disk full, I/O error), every job
 *      of the batch that had not failed on its own gets that error: nothing
 *      of the batch is committed, and nobody is told otherwise.
 *   4. Batching. The committer takes every queued job, up to SQ_BATCH_MAX,
 *      each time it finishes a batch: under load, jobs queue while the
 *      previous COMMIT's fsync runs and the next batch takes them all; with
 *      one writer, a batch is one job and nobody waits for a timer.
 *   5. Waking. Each writer sleeps on its job's own semaphore, posted after
 *      the batch with the committer's lock released: a condition variable
 *      signalled under the lock made every woken writer block again on that
 *      lock (two wake-ups per write; perf showed the mutex contention).
 *      Waking a thread costs the waker several microseconds here (an
 *      inter-processor interrupt through the hypervisor), and the committer
 *      is the one thread every write waits for, so it wakes only the
 *      batch's first writer; each woken writer wakes two more (a binary
 *      tree, wake_batch()), which spreads the wake-ups over the writers'
 *      own time. A writer's job lives on its stack, so the committer hands
 *      the whole batch over with its one post and touches it no more.
 *   6. Other processes. Every write of this process goes through here, so
 *      the committer's own connection sees PRAGMA data_version move only
 *      when another process commits. The committer looks at least every
 *      SQ_WATCH_MS (waking for it when idle) and then empties the seat map
 *      and raises version, so nothing cached here outlives such a write by
 *      more than that (sqlite_seatmap.c note 4).
 *   7. Life cycle. The thread starts with the first sq_write (the CLI
 *      commands never start it). sq_commit_stop() sets stop, lets the
 *      committer finish every job already queued, joins it, and from then on
 *      sq_write fails with ERR_UNAVAILABLE.
 *   8. Requests run in the batch (sq_run_batched, core/batch.h). A write
 *      handed over by a thread of the write pool costs four wake-ups: the
 *      event thread wakes a pool thread, which wakes the committer, which
 *      wakes the pool thread again, which wakes the event thread; perf
 *      showed a fifth of the CPU of a charge-heavy load in the scheduler.
 *      So a request whose handler waits on nothing but the store may be
 *      queued here whole: the committer runs it inside the batch, its
 *      sq_write runs its job at once (behind the job's savepoint, as any
 *      other), and after the batch the committer hands the answer back
 *      with done(), which resumes the connection: two wake-ups. done()
 *      gets the batch's error when the batch failed, so an answer made
 *      from a write that was rolled back is never sent as it is. The
 *      handler runs on the committer's connection, so its reads see the
 *      batch's earlier jobs: its answer commits with them or is replaced. */
#include <assert.h>
#include <errno.h>
#include <time.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sqlite3.h>

#include "core/batch.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "core/xmalloc.h"
#include "store/sqlite_int.h"

#define MOD "store"

struct sq_job {
    sq_apply apply;
    void *arg;
    struct batch_job *req; /* a request run in the batch (note 8): no writer waits */
    int result;
    sem_t done; /* its writer sleeps here; posted once result is set */
    struct sq_job *next;
    struct sq_job *wakes[2]; /* finished jobs whose writers this one's writer wakes */
};

static const struct {
    const char *save, *release, *rollback;
} SP_SQL[] = {
    [SQ_SP_JOB] = {"SAVEPOINT job", "RELEASE job", "ROLLBACK TO job"},
    [SQ_SP_STEP] = {"SAVEPOINT step", "RELEASE step", "ROLLBACK TO step"},
};

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_DATA_VERSION[] = "PRAGMA data_version";

#define SQ_WATCH_MS 1000 /* design note 6 */

static _Thread_local int on_committer; /* set on the committer thread: sq_write would deadlock */
/* While the committer runs a request (note 8): its connection, and whether
 * the transaction is gone. */
static _Thread_local struct {
    struct conn *c;
    int *lost;
} in_request;

int sq_savepoint(struct conn *c, enum sq_savepoint sp) {
    return sq_exec_ints(c, SP_SQL[sp].save, 0, NULL);
}

int sq_release(struct conn *c, enum sq_savepoint sp, int err) {
    if (err) {
        int rc = sq_exec_ints(c, SP_SQL[sp].rollback, 0, NULL);
        if (rc) return rc; /* the transaction is gone (see design note 3) */
    }
    int rc = sq_exec_ints(c, SP_SQL[sp].release, 0, NULL);
    return err ? err : rc;
}

/* ---- the committer ------------------------------------------------------- */

/* Runs one job inside the open transaction. Returns the job's result; sets
 * *lost when the transaction itself is gone afterwards. */
static int run_job(struct conn *c, struct sq_job *j, int *lost) {
    struct sq_commit *cm = &c->owner->commit;
    size_t mark = cm->nchanges;
    int err = sq_savepoint(c, SQ_SP_JOB);
    if (err == 0) err = sq_release(c, SQ_SP_JOB, j->apply(c, j->arg));
    if (err) cm->nchanges = mark; /* rolled back: its seats did not change */
    *lost = sqlite3_get_autocommit(c->db);
    return err;
}

/* Runs a batch (a list of n jobs) in one transaction and sets each result;
 * 0 when it committed. */
static int run_batch(struct conn *c, struct sq_job *batch) {
    int err = c ? sq_exec_ints(c, SQL_BEGIN, 0, NULL) : ERR_UNAVAILABLE;
    int lost = 0;
    for (struct sq_job *j = batch; j; j = j->next) {
        if (err || lost) {
            j->result = err ? err : ERR_IO;
        } else if (j->req) { /* note 8: its writes run as jobs of this batch */
            in_request.c = c;
            in_request.lost = &lost;
            j->req->run(j->req->arg);
            in_request.c = NULL;
            j->result = 0;
        } else {
            j->result = run_job(c, j, &lost);
        }
    }
    if (err == 0 && lost) {
        LOG_ERROR(MOD, "op=group_commit msg=\"transaction rolled back by SQLite mid-batch\"");
        err = ERR_IO;
    }
    if (err == 0) err = sq_exec_ints(c, SQL_COMMIT, 0, NULL);
    if (c && !sqlite3_get_autocommit(c->db)) sq_exec_ints(c, SQL_ROLLBACK, 0, NULL);
    if (err == 0) return 0;
    for (struct sq_job *j = batch; j; j = j->next)
        if (j->result == 0) j->result = err;
    return err;
}

/* Takes up to SQ_BATCH_MAX queued jobs off the queue (*n of them); cm->mu
 * is held. */
static struct sq_job *take_batch(struct sq_commit *cm, size_t *njobs) {
    struct sq_job *first = cm->head, *last = first;
    size_t n = 1;
    while (last->next && n < SQ_BATCH_MAX) {
        last = last->next;
        n++;
    }
    cm->head = last->next;
    if (!cm->head) cm->tail = NULL;
    last->next = NULL;
    cm->pending -= n;
    cm->batches++;
    cm->jobs += n;
    *njobs = n;
    return first;
}

/* Wakes the writers of a finished batch as a binary tree (design note 5):
 * the committer posts the first job only, and the writer of job i posts
 * jobs 2i+1 and 2i+2 before it returns. */
static void wake_batch(struct sq_job *batch, size_t n) {
    struct sq_job *at[SQ_BATCH_MAX];
    size_t k = 0;
    for (struct sq_job *j = batch; j && k < n; j = j->next) at[k++] = j;
    for (size_t i = 0; i < k; i++) {
        at[i]->wakes[0] = 2 * i + 1 < k ? at[2 * i + 1] : NULL;
        at[i]->wakes[1] = 2 * i + 2 < k ? at[2 * i + 2] : NULL;
    }
    if (k) sem_post(&at[0]->done); /* from here on the batch belongs to its writers */
}

/* Hands a finished batch back: the requests run in it get done() (note 8),
 * the writers are woken (note 5). */
static void finish_batch(struct sq_job *batch) {
    struct sq_job *writers = NULL, **tail = &writers, *reqs = NULL, *next;
    size_t n = 0;
    for (struct sq_job *j = batch; j; j = next) {
        next = j->next;
        if (j->req) {
            j->next = reqs;
            reqs = j;
        } else {
            *tail = j;
            tail = &j->next;
            n++;
        }
    }
    *tail = NULL;
    wake_batch(writers, n);
    for (struct sq_job *j = reqs; j; j = next) {
        next = j->next;
        j->req->done(j->req->arg, j->result);
        free(j);
    }
}

/* Design note 6: another process committed since *seen was read. */
static void watch_others(struct sqlite_store *ss, struct conn *c, int64_t *seen) {
    int64_t v;
    if (!c || sq_query_int(c, SQL_DATA_VERSION, 0, NULL, &v)) return;
    if (*seen >= 0 && v != *seen) {
        LOG_DEBUG(MOD, "op=watch msg=\"another process wrote; cached seats dropped\"");
        sq_seatmap_flush(ss->seats);
        atomic_fetch_add(&ss->commit.version, 1);
    }
    *seen = v;
}

static void *committer_main(void *p) {
    struct sqlite_store *ss = p;
    struct sq_commit *cm = &ss->commit;
    on_committer = 1;
    struct conn *c = sq_conn(&ss->base); /* this thread's own connection */
    int64_t seen = -1, watched = time_mono_ms();
    watch_others(ss, c, &seen);
    pthread_mutex_lock(&cm->mu);
    for (;;) {
        while (!cm->head && !cm->stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += SQ_WATCH_MS / 1000;
            pthread_cond_timedwait(&cm->wake, &cm->mu, &until);
            if (time_mono_ms() - watched >= SQ_WATCH_MS) break;
        }
        if (time_mono_ms() - watched >= SQ_WATCH_MS) {
            pthread_mutex_unlock(&cm->mu);
            if (!c) c = sq_conn(&ss->base);
            watch_others(ss, c, &seen);
            watched = time_mono_ms();
            pthread_mutex_lock(&cm->mu);
        }
        if (!cm->head && !cm->stop) continue;
        if (!cm->head) break; /* stop, and nothing left to do */
        size_t n;
        struct sq_job *batch = take_batch(cm, &n);
        pthread_mutex_unlock(&cm->mu);
        if (!c) c = sq_conn(&ss->base); /* retry a connection that failed to open */
        int64_t t0 = time_mono_us();
        if (run_batch(c, batch) == 0) sq_seatmap_apply(ss->seats, cm->changes, cm->nchanges);
        cm->nchanges = 0;
        atomic_fetch_add(&cm->version, 1); /* before any writer learns of its commit */
        metrics_commit(n, time_mono_us() - t0);
        finish_batch(batch);
        pthread_mutex_lock(&cm->mu);
    }
    pthread_mutex_unlock(&cm->mu);
    return NULL;
}

/* ---- the writers' side --------------------------------------------------- */

void sq_commit_init(struct sqlite_store *ss) {
    struct sq_commit *cm = &ss->commit;
    pthread_mutex_init(&cm->mu, NULL);
    pthread_cond_init(&cm->wake, NULL);
    cm->running = cm->stop = 0;
    cm->head = cm->tail = NULL;
    cm->pending = 0;
    cm->batches = cm->jobs = 0;
    atomic_init(&cm->version, 0);
    cm->changes = NULL;
    cm->nchanges = cm->capchanges = 0;
}

void sq_seat_changed(struct conn *c, int64_t session_id, int64_t seat_id, int avail) {
    struct sq_commit *cm = &c->owner->commit;
    assert(on_committer); /* only jobs change seats, and jobs run on the committer */
    if (cm->nchanges == cm->capchanges) {
        cm->capchanges = cm->capchanges ? cm->capchanges * 2 : 64;
        cm->changes = xrealloc(cm->changes, cm->capchanges * sizeof(*cm->changes));
    }
    cm->changes[cm->nchanges++] = (struct sq_seat_change){session_id, seat_id, avail};
}

uint64_t sq_write_version(struct store *s) {
    return atomic_load(&((struct sqlite_store *)s)->commit.version);
}

/* Starts the committer thread unless it runs; cm->mu is held. */
static int start_locked(struct sqlite_store *ss) {
    struct sq_commit *cm = &ss->commit;
    if (cm->running) return 0;
    if (pthread_create(&cm->thread, NULL, committer_main, ss) != 0) {
        LOG_ERROR(MOD, "op=group_commit msg=\"cannot start the committer thread\"");
        return ERR_UNAVAILABLE;
    }
    cm->running = 1;
    return 0;
}

int sq_commit_start(struct sqlite_store *ss) {
    pthread_mutex_lock(&ss->commit.mu);
    int err = ss->commit.stop ? ERR_UNAVAILABLE : start_locked(ss);
    pthread_mutex_unlock(&ss->commit.mu);
    return err;
}

/* Queues j for the committer: 0, or ERR_UNAVAILABLE when the store is
 * closing or the committer cannot start. */
static int enqueue(struct sqlite_store *ss, struct sq_job *j) {
    struct sq_commit *cm = &ss->commit;
    pthread_mutex_lock(&cm->mu);
    int err = cm->stop ? ERR_UNAVAILABLE : start_locked(ss);
    if (err == 0) {
        if (cm->tail)
            cm->tail->next = j;
        else
            cm->head = j;
        cm->tail = j;
        cm->pending++;
        pthread_cond_signal(&cm->wake);
    }
    pthread_mutex_unlock(&cm->mu);
    return err;
}

int sq_run_batched(struct store *s, struct batch_job *job) {
    struct sq_job *j = xcalloc(1, sizeof(*j));
    j->req = job;
    int err = enqueue((struct sqlite_store *)s, j);
    if (err) free(j);
    return err;
}

int sq_write(struct sqlite_store *ss, sq_apply apply, void *arg) {
    struct sq_job j = {.apply = apply, .arg = arg};
    if (on_committer) { /* a request run in the batch writes (note 8): a job of it, now */
        assert(in_request.c); /* a job must not write through the queue it runs in */
        if (!in_request.c) return ERR_INTERNAL;
        return *in_request.lost ? ERR_IO : run_job(in_request.c, &j, in_request.lost);
    }
    sem_init(&j.done, 0, 0);
    int err = enqueue(ss, &j);
    if (err) {
        sem_destroy(&j.done);
        return err;
    }
    while (sem_wait(&j.done) != 0 && errno == EINTR) {
    }
    for (int i = 0; i < 2; i++)
        if (j.wakes[i]) sem_post(&j.wakes[i]->done);
    sem_destroy(&j.done);
    return j.result;
}

void sq_commit_stop(struct sqlite_store *ss) {
    struct sq_commit *cm = &ss->commit;
    pthread_mutex_lock(&cm->mu);
    cm->stop = 1;
    int running = cm->running;
    pthread_cond_signal(&cm->wake);
    pthread_mutex_unlock(&cm->mu);
    if (running) pthread_join(cm->thread, NULL);
    pthread_cond_destroy(&cm->wake);
    pthread_mutex_destroy(&cm->mu);
    free(cm->changes);
    cm->changes = NULL;
}

size_t sq_commit_pending(struct sqlite_store *ss) {
    pthread_mutex_lock(&ss->commit.mu);
    size_t n = ss->commit.pending;
    pthread_mutex_unlock(&ss->commit.mu);
    return n;
}

void sq_commit_totals(struct sqlite_store *ss, uint64_t *batches, uint64_t *jobs) {
    pthread_mutex_lock(&ss->commit.mu);
    if (batches) *batches = ss->commit.batches;
    if (jobs) *jobs = ss->commit.jobs;
    pthread_mutex_unlock(&ss->commit.mu);
}
