/* pg_commit.c -- group commit for the PostgreSQL adapter (see pg_write() in
 * pg_int.h).
 *
 * Responsible for turning many concurrent small writes into few durable
 * commits: writers queue a job on a lane and sleep; the lane's committer
 * threads, each with its own connection, take every queued job (up to
 * PG_BATCH_MAX), run them in one transaction and wake their writers after
 * its COMMIT (lanes: note 7). Not
 * here: what the jobs do (pg_booking.c, pg_queue.c), connections (pg.c).
 *
 * Design notes
 *
 *   1. Durability. synchronous_commit stays on: COMMIT returns after the
 *      WAL is flushed. A writer is woken only after the COMMIT of the
 *      transaction holding its job returned, so a 2xx is sent only for a
 *      change that is on disk (invariant 3). When the connection dies or a
 *      COMMIT fails, every job of the batch gets ERR_UNAVAILABLE (503).
 *   2. Isolation of jobs. Each job runs between SAVEPOINT job and RELEASE
 *      job; a failed job is rolled back to its savepoint and the batch goes
 *      on. Unlike SQLite, other transactions run at the same time (the other
 *      committer, other concertd instances), so jobs are correct under READ
 *      COMMITTED on their own (see pg_booking.c design note 1): a batch only
 *      saves commits.
 *   3. Deadlocks. Two batches may lock rows in opposite orders (batch A's
 *      job 1 holds a user row that batch B's job 2 wants, and the other way
 *      round). PostgreSQL aborts one statement; its job is rolled back to
 *      its savepoint, the batch stops there and commits what ran before
 *      (releasing its locks), and the victim and the jobs after it go back
 *      to the head of the queue to run in the next transaction, at most
 *      PG_JOB_TRIES times in all (then ERR_UNAVAILABLE). PostgreSQL looks
 *      for a cycle only after deadlock_timeout (1 s): each deadlock stalls
 *      both batches that long, so note 9 keeps holds out of them.
 *   4. Batching as in sqlite_commit.c: a committer takes whatever is queued
 *      when it finishes its previous batch; no timers.
 *   5. Hot rows. Every hold of a session moves that session's
 *      available_seats counter: one row that all batches would otherwise
 *      lock from their first hold to their COMMIT, serializing them and
 *      making deadlock cycles likely. Jobs record their counter changes
 *      (pg_move_avail); those of the jobs that succeeded are summed per
 *      session and written right before COMMIT in session id order, so the
 *      row is locked only for the commit and two batches always take
 *      counter rows in the same order.
 *   6. Round trips. Every statement is a round trip to the server, and a
 *      committer waits for each; the savepoint bookkeeping rides along with
 *      other statements (run_batch): BEGIN with the first SAVEPOINT, the
 *      RELEASE of a job and the SAVEPOINT of the next with that job's first
 *      statement (owed, pg.c note 6), the counters with COMMIT. A job costs
 *      its own statements' round trips and no more.
 *   7. Lanes. Note 5 keeps a session's counter row locked only for the
 *      COMMIT, but every transaction that holds a seat of the session still
 *      takes that row, one after the other: with many committers each
 *      running one hold (batches of 1 when writers are spread over them),
 *      the row's lock queue, not the CPU or the disk, bounded the holds a
 *      second (pg_stat_activity showed most committers waiting on it).
 *      So jobs with a key (holds: their session) go to one of
 *      PG_KEYED_LANES lanes by key, each with a single committer: holds of
 *      one session queue up behind its transaction and commit together,
 *      one counter update for the whole batch. Other jobs (payments,
 *      charges, tokens, sweeps) run on the shared lane's PG_COMMITTERS.
 *      Lanes are about speed only: any job is correct on any lane.
 *   8. Statements sent ahead. A lane's single committer ran its holds one
 *      round trip after another, and on a loaded machine each round trip
 *      is two wake-ups. A keyed job may hand in a statement that changes
 *      nothing unless it succeeds as a whole (a hold's SQL_HOLD_FAST):
 *      when every job of a batch has one, the committer sends them all in
 *      one pipeline after BEGIN, each behind its own savepoint, and each
 *      job's apply gets its result (pg_take_ahead) and goes on with its
 *      own savepoint after them. A failed statement aborts the rest of the
 *      pipeline: it is rolled back to its savepoint, and its job and the
 *      ones after it run the usual way.
 *   9. Locks in order. Each job locks its own seats in id order, but a
 *      batch runs job after job: batch A's first hold locks seat 1 while
 *      batch B's locks seat 2, then A's next hold waits for seat 2 and B's
 *      for seat 1. Every hold job names the rows it will lock (its seats;
 *      its user's row when it checks the live-hold cap), and the committer
 *      locks all of them for the batch in the BEGIN round trip, seats then
 *      users, each in id order. A batch then waits only before it holds
 *      anything else, so hold batches of any lane or instance cannot
 *      deadlock each other. Seen without it: 150 holds of 10 seats raced
 *      through two instances deadlocked up to 6 times in a row (6 s) and,
 *      on a loaded machine, past the clients' 10 s timeout. */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "core/xmalloc.h"
#include "store/pg_int.h"

#define MOD "store"
#define PG_JOB_TRIES 5 /* a deadlock victim is rolled back, so another try is always safe */

struct pg_job {
    pg_apply apply;
    void *arg;
    int result;
    int done;
    int tries;
    int again; /* rolled back as a deadlock victim (or after one): queue it again */
    const struct pg_ahead *ahead; /* its statement to send ahead, or NULL (note 8) */
    PGresult *pre;                /* that statement's result, when it was */
    pthread_cond_t cv;
    struct pg_job *next;
};

static _Thread_local int on_committer;

int pg_step_begin(struct pgconn *c) {
    return pg_simple(c, "SAVEPOINT step", "savepoint");
}

int pg_step_end(struct pgconn *c, int err) {
    if (err) {
        int rc = pg_simple(c, "ROLLBACK TO step", "rollback_to");
        if (rc) return rc;
    }
    int rc = pg_simple(c, "RELEASE step", "release");
    return err ? err : rc;
}

/* ---- session counters (design note 5) ---------------------------------------- */

static void avail_add(struct pg_avail *a, int64_t session_id, int64_t delta) {
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].session_id == session_id) {
            a->v[i].delta += delta;
            return;
        }
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n].session_id = session_id;
    a->v[a->n].delta = delta;
    a->n++;
}

void pg_move_avail(struct pgconn *c, int64_t session_id, int64_t delta) {
    avail_add(&c->job_avail, session_id, delta);
}

static int cmp_session(const void *x, const void *y) {
    const struct pg_avail_change *a = x, *b = y;
    return (a->session_id > b->session_id) - (a->session_id < b->session_id);
}

/* Design notes 5 and 6: the batch's counter changes, in session id order,
 * and COMMIT, as one simple-protocol query (the values are integers we
 * format ourselves). On failure the transaction is rolled back. */
static int commit_batch(struct pgconn *c) {
    c->owe_savepoint = 0; /* COMMIT releases every savepoint */
    if (PQtransactionStatus(c->db) != PQTRANS_INTRANS) return ERR_IO;
    struct pg_avail *a = &c->batch_avail;
    if (a->n > 1) qsort(a->v, a->n, sizeof(*a->v), cmp_session);
    size_t cap = 16 + a->n * 96, len = 0;
    char *sql = xmalloc(cap);
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].delta != 0)
            len +=
                (size_t)snprintf(sql + len, cap - len,
                                 "UPDATE sessions SET available_seats = available_seats + %" PRId64
                                 " WHERE id = %" PRId64 ";",
                                 a->v[i].delta, a->v[i].session_id);
    snprintf(sql + len, cap - len, "COMMIT");
    a->n = 0;
    int err = pg_simple(c, sql, "commit");
    free(sql);
    if (err && PQtransactionStatus(c->db) != PQTRANS_IDLE) pg_simple(c, "ROLLBACK", "rollback");
    return err;
}

/* ---- the committer -------------------------------------------------------- */

/* Runs one job inside the open transaction, whose savepoint job is set and
 * fresh. Sets j->again for a deadlock victim that may run again. Returns 0
 * when the transaction is still usable; *fresh = 0 when the job's changes
 * stand on the savepoint (the next job releases and sets it again first). */
static int run_job(struct pgconn *c, struct pg_job *j, int *fresh) {
    j->tries++;
    c->job_avail.n = 0;
    if (j->pre) { /* note 8: its own savepoint starts after the statements sent ahead */
        c->owe_savepoint = 1;
        c->ahead = j->pre;
        j->pre = NULL;
    }
    int r = j->apply(c, j->arg);
    PQclear(c->ahead); /* not taken */
    c->ahead = NULL;
    if (c->lost_savepoint) { /* pg.c note 6: fail the batch, roll back nothing alone */
        j->result = r ? r : ERR_UNAVAILABLE;
        return ERR_UNAVAILABLE;
    }
    if (r && pg_retryable(c) && j->tries < PG_JOB_TRIES) j->again = 1;
    j->result = r;
    if (r) { /* undo the job; the savepoint stays, fresh again */
        int err = pg_simple(c, "ROLLBACK TO job", "rollback_to");
        if (err) return err;
    } else {
        for (size_t i = 0; i < c->job_avail.n; i++)
            avail_add(&c->batch_avail, c->job_avail.v[i].session_id, c->job_avail.v[i].delta);
    }
    *fresh = r != 0;
    return PQtransactionStatus(c->db) == PQTRANS_INTRANS ? 0 : ERR_IO;
}

/* Note 8: when every job of the batch has a statement to send ahead (and
 * there are two or more), sends them all in one round trip, each behind its
 * savepoint, and gives each job that ran up to the first failure its
 * result. The failed statement is rolled back; its job and the ones after
 * it run as usual. *fresh = 0 when statements stand on the savepoint. */
static int send_ahead(struct pgconn *c, struct pg_job *batch, int *fresh) {
    size_t n = 0;
    for (struct pg_job *j = batch; j; j = j->next, n++)
        if (!j->ahead || !j->ahead->sql) return 0;
    if (n < 2) return 0;
    assert(n <= PG_BATCH_MAX);
    const char *sql[PG_BATCH_MAX];
    const struct pg_args *args[PG_BATCH_MAX];
    PGresult *res[PG_BATCH_MAX];
    size_t i = 0;
    for (struct pg_job *j = batch; j; j = j->next, i++) {
        sql[i] = j->ahead->sql;
        args[i] = &j->ahead->args;
    }
    int err = pg_exec_ahead(c, n, sql, args, res, "ahead");
    int failed = 0;
    i = 0;
    for (struct pg_job *j = batch; err == 0 && j; j = j->next, i++) {
        ExecStatusType st = res[i] ? PQresultStatus(res[i]) : PGRES_FATAL_ERROR;
        failed = failed || (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK);
        if (failed) {
            PQclear(res[i]);
        } else {
            j->pre = res[i];
            *fresh = 0;
        }
    }
    if (err == 0 && failed) err = pg_simple(c, "ROLLBACK TO job", "rollback_to");
    return err;
}

static int cmp_id(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Appends " SELECT 1 FROM table WHERE id IN (...) ORDER BY id lock;" for
 * the n ids of v (sorted here, duplicates written once) to sql, which has
 * room for it (begin_batch); nothing when n is 0. */
static size_t lock_rows(char *sql, size_t cap, size_t len, const char *table, int64_t *v,
                        size_t n, const char *lock) {
    if (n == 0) return len;
    qsort(v, n, sizeof(*v), cmp_id);
    len += (size_t)snprintf(sql + len, cap - len, " SELECT 1 FROM %s WHERE id IN (", table);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || v[i] != v[i - 1])
            len += (size_t)snprintf(sql + len, cap - len, "%s%" PRId64, i ? "," : "", v[i]);
    return len + (size_t)snprintf(sql + len, cap - len, ") ORDER BY id %s;", lock);
}

/* Note 9: BEGIN, the rows the batch's jobs will lock, locked in id order
 * (seats, then users), and the first savepoint, as one simple-protocol
 * query (the ids are integers we format ourselves). */
static int begin_batch(struct pgconn *c, struct pg_job *batch) {
    size_t nseats = 0, nusers = 0;
    for (struct pg_job *j = batch; j; j = j->next)
        if (j->ahead) {
            nseats += j->ahead->nseats;
            nusers += j->ahead->user_id > 0;
        }
    if (nseats + nusers == 0) return pg_simple(c, "BEGIN; SAVEPOINT job", "begin");
    int64_t *seats = xmalloc((nseats + nusers) * sizeof(*seats)), *users = seats + nseats;
    nseats = nusers = 0;
    for (struct pg_job *j = batch; j; j = j->next)
        if (j->ahead) {
            for (size_t i = 0; i < j->ahead->nseats; i++) seats[nseats++] = j->ahead->seat_ids[i];
            if (j->ahead->user_id > 0) users[nusers++] = j->ahead->user_id;
        }
    size_t cap = 256 + (nseats + nusers) * 21, len = 0;
    char *sql = xmalloc(cap);
    len += (size_t)snprintf(sql, cap, "BEGIN;");
    len = lock_rows(sql, cap, len, "seats", seats, nseats, "FOR UPDATE");
    len = lock_rows(sql, cap, len, "users", users, nusers, "FOR NO KEY UPDATE");
    snprintf(sql + len, cap - len, " SAVEPOINT job");
    free(seats);
    int err = pg_simple(c, sql, "begin");
    free(sql);
    return err;
}

/* Design note 6: BEGIN and the first savepoint in one round trip, RELEASE of
 * a job and the savepoint of the next in one, the counters and COMMIT in
 * one; a savepoint rolled back to is used again as it is. */
static void run_batch(struct pgconn *c, struct pg_job *batch) {
    if (c) c->owe_savepoint = c->lost_savepoint = 0;
    int err = c ? begin_batch(c, batch) : ERR_UNAVAILABLE;
    if (c) c->batch_avail.n = 0;
    if (c && err && pg_retryable(c)) { /* a deadlock while locking the rows (note 9) */
        if (PQtransactionStatus(c->db) != PQTRANS_IDLE) pg_simple(c, "ROLLBACK", "rollback");
        for (struct pg_job *j = batch; j; j = j->next) {
            j->result = err;
            j->again = ++j->tries < PG_JOB_TRIES;
        }
        return;
    }
    int stopped = 0, fresh = 1;
    if (err == 0) err = send_ahead(c, batch, &fresh);
    for (struct pg_job *j = batch; j; j = j->next) {
        if (err) {
            j->result = err;
        } else if (stopped) {
            j->again = 1; /* design note 3: after the victim, in the next transaction */
        } else {
            if (!fresh) c->owe_savepoint = 1; /* sent with the job's first statement */
            err = run_job(c, j, &fresh);
            if (err) j->again = 0;
            stopped = j->again;
        }
    }
    int unapplied = 0; /* jobs stopped after a victim whose statements ran ahead (note 8) */
    for (struct pg_job *j = batch; j; j = j->next) {
        unapplied |= j->pre != NULL;
        PQclear(j->pre);
        j->pre = NULL;
    }
    if (err == 0 && unapplied) { /* their changes must not commit without them: all again */
        pg_simple(c, "ROLLBACK", "rollback");
        for (struct pg_job *j = batch; j; j = j->next) j->again = 1;
        return;
    }
    if (err == 0) err = commit_batch(c);
    if (err && c && PQtransactionStatus(c->db) != PQTRANS_IDLE)
        pg_simple(c, "ROLLBACK", "rollback");
    if (err == 0) return;
    for (struct pg_job *j = batch; j; j = j->next)
        if (j->result == 0 && !j->again) j->result = ERR_UNAVAILABLE; /* not committed */
}

static struct pg_job *take_batch(struct pg_commit *cm, struct pg_lane *l) {
    struct pg_job *first = l->head, *last = first;
    size_t n = 1;
    while (last->next && n < PG_BATCH_MAX) {
        last = last->next;
        n++;
    }
    l->head = last->next;
    if (!l->head) l->tail = NULL;
    last->next = NULL;
    cm->pending -= n;
    cm->batches++;
    cm->jobs += n;
    return first;
}

/* Wakes the finished jobs of batch and puts the ones to run again back at
 * the head of the lane, in order; cm->mu is held. */
static void finish_batch(struct pg_commit *cm, struct pg_lane *l, struct pg_job *batch) {
    struct pg_job *again = NULL, *last = NULL;
    for (struct pg_job *j = batch, *next; j; j = next) {
        next = j->next; /* j lives on its writer's stack: read next first */
        if (j->again) {
            j->again = 0;
            j->next = NULL;
            if (last)
                last->next = j;
            else
                again = j;
            last = j;
            cm->pending++;
            cm->retries++;
            continue;
        }
        j->done = 1;
        pthread_cond_signal(&j->cv);
    }
    if (!again) return;
    last->next = l->head;
    if (!l->head) l->tail = last;
    l->head = again;
    pthread_cond_signal(&l->wake);
}

static void *committer_main(void *p) {
    struct pg_lane *l = p;
    struct pg_store *ps = l->owner;
    struct pg_commit *cm = &ps->commit;
    on_committer = 1;
    pthread_mutex_lock(&cm->mu);
    for (;;) {
        while (!l->head && !cm->stop) pthread_cond_wait(&l->wake, &cm->mu);
        if (!l->head) break; /* stop, and nothing left to do */
        struct pg_job *batch = take_batch(cm, l);
        pthread_mutex_unlock(&cm->mu);
        uint64_t n = 0;
        for (struct pg_job *j = batch; j; j = j->next) n++;
        int64_t t0 = time_mono_us();
        run_batch(pg_conn(&ps->base), batch);
        metrics_commit(n, time_mono_us() - t0);
        pthread_mutex_lock(&cm->mu);
        finish_batch(cm, l, batch);
    }
    pthread_mutex_unlock(&cm->mu);
    return NULL;
}

/* ---- the writers' side ------------------------------------------------------ */

void pg_commit_init(struct pg_store *ps) {
    struct pg_commit *cm = &ps->commit;
    memset(cm, 0, sizeof(*cm));
    pthread_mutex_init(&cm->mu, NULL);
    for (int i = 0; i < PG_LANES; i++) {
        struct pg_lane *l = &cm->lanes[i];
        l->owner = ps;
        l->want = i < PG_KEYED_LANES ? 1 : PG_COMMITTERS;
        pthread_cond_init(&l->wake, NULL);
    }
}

/* Starts the lane's committers on first use; cm->mu is held. 0 or ERR_UNAVAILABLE. */
static int start_committers(struct pg_lane *l) {
    while (l->nthreads < l->want) {
        if (pthread_create(&l->threads[l->nthreads], NULL, committer_main, l) != 0) {
            LOG_ERROR(MOD, "op=group_commit msg=\"cannot start a committer thread\"");
            return l->nthreads ? 0 : ERR_UNAVAILABLE;
        }
        l->nthreads++;
    }
    return 0;
}

static int write_on(struct pg_store *ps, size_t lane, const struct pg_ahead *ahead, pg_apply apply,
                    void *arg) {
    assert(!on_committer); /* a job must not write through the queue it runs in */
    struct pg_commit *cm = &ps->commit;
    struct pg_lane *l = &cm->lanes[lane];
    struct pg_job j = {.apply = apply, .arg = arg, .ahead = ahead};
    pthread_mutex_lock(&cm->mu);
    if (cm->stop || start_committers(l) != 0) {
        pthread_mutex_unlock(&cm->mu);
        return ERR_UNAVAILABLE;
    }
    pthread_cond_init(&j.cv, NULL);
    if (l->tail)
        l->tail->next = &j;
    else
        l->head = &j;
    l->tail = &j;
    cm->pending++;
    pthread_cond_signal(&l->wake);
    while (!j.done) pthread_cond_wait(&j.cv, &cm->mu);
    pthread_mutex_unlock(&cm->mu);
    pthread_cond_destroy(&j.cv);
    return j.result;
}

int pg_write(struct pg_store *ps, pg_apply apply, void *arg) {
    return write_on(ps, PG_KEYED_LANES, NULL, apply, arg);
}

int pg_write_ahead(struct pg_store *ps, int64_t key, const struct pg_ahead *ahead, pg_apply apply,
                   void *arg) {
    uint64_t k = (uint64_t)key;
    return write_on(ps, (size_t)(k % PG_KEYED_LANES), ahead, apply, arg);
}

int pg_write_keyed(struct pg_store *ps, int64_t key, pg_apply apply, void *arg) {
    return pg_write_ahead(ps, key, NULL, apply, arg);
}

PGresult *pg_take_ahead(struct pgconn *c) {
    PGresult *r = c->ahead;
    c->ahead = NULL;
    return r;
}

void pg_commit_stop(struct pg_store *ps) {
    struct pg_commit *cm = &ps->commit;
    pthread_mutex_lock(&cm->mu);
    cm->stop = 1;
    for (int i = 0; i < PG_LANES; i++) pthread_cond_broadcast(&cm->lanes[i].wake);
    pthread_mutex_unlock(&cm->mu);
    for (int i = 0; i < PG_LANES; i++) {
        struct pg_lane *l = &cm->lanes[i];
        for (int k = 0; k < l->nthreads; k++) pthread_join(l->threads[k], NULL);
        pthread_cond_destroy(&l->wake);
    }
    pthread_mutex_destroy(&cm->mu);
}

size_t pg_commit_pending(struct pg_store *ps) {
    pthread_mutex_lock(&ps->commit.mu);
    size_t n = ps->commit.pending;
    pthread_mutex_unlock(&ps->commit.mu);
    return n;
}

void pg_commit_totals(struct pg_store *ps, uint64_t *batches, uint64_t *jobs) {
    pthread_mutex_lock(&ps->commit.mu);
    if (batches) *batches = ps->commit.batches;
    if (jobs) *jobs = ps->commit.jobs;
    pthread_mutex_unlock(&ps->commit.mu);
}
