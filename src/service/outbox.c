/* outbox.c -- the outbox relay (see outbox.h).
 *
 * Design notes
 *
 *   1. At least once: a batch is read, published, and only then marked.
 *      A crash after the sink has it and before the mark commits publishes
 *      it again after the restart (consumers dedupe by id); a crash before
 *      the sink has it loses nothing, the rows are still unpublished.
 *   2. Order: batches are read in id order, and a batch is marked before
 *      the next is read, so events leave in the order their transactions
 *      committed them, per reservation and overall. A failed publish is
 *      retried from the same first event at the next pass.
 *   3. One relay thread per process; several processes on one database
 *      (distributed mode) would each publish every event (still at least
 *      once), which a lease would avoid. */
#include "service/outbox.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "core/xmalloc.h"
#include "sink/sink.h"
#include "store/store.h"

#define MOD "outbox"

/* One batch: *n gets how many were published. */
static int relay_batch(struct store *s, struct sink *k, int64_t now_ms, size_t *n) {
    struct arena *a = arena_create();
    struct store_event_row *rows = NULL;
    *n = 0;
    int err = s->ops->outbox_list(s, a, OUTBOX_RELAY_BATCH, &rows, n);
    if (err == 0 && *n > 0) {
        struct sink_event *ev = arena_calloc(a, *n, sizeof(*ev));
        int64_t *ids = arena_calloc(a, *n, sizeof(*ids));
        for (size_t i = 0; i < *n; i++) {
            ev[i] = (struct sink_event){rows[i].id, rows[i].topic, rows[i].aggregate_id,
                                        rows[i].payload, rows[i].created_at_ms};
            ids[i] = rows[i].id;
        }
        err = k->ops->publish(k, ev, *n);
        if (err == 0) err = s->ops->outbox_mark(s, ids, *n, now_ms);
    }
    if (err) *n = 0;
    arena_destroy(a);
    return err;
}

int outbox_relay_pass(struct store *s, struct sink *k, int64_t now_ms, int64_t *published) {
    int64_t total = 0;
    size_t n;
    int err;
    do {
        err = relay_batch(s, k, now_ms, &n);
        total += (int64_t)n;
    } while (err == 0 && n == OUTBOX_RELAY_BATCH);
    if (published) *published = total;
    return err;
}

struct outbox_relay {
    struct store *store;
    struct sink *sink;
    int64_t interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

static int relay_wait(struct outbox_relay *r) {
    struct timespec until;
    time_mono_deadline(r->interval_ms, &until);
    pthread_mutex_lock(&r->mu);
    while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0) continue;
    int stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

static void *relay_main(void *arg) {
    struct outbox_relay *r = arg;
    int stop;
    do {
        stop = relay_wait(r);
        int64_t n = 0;
        int err = outbox_relay_pass(r->store, r->sink, time_now_ms(), &n);
        if (err) LOG_WARN(MOD, "op=relay err=%s", err_str(err));
        if (n) LOG_DEBUG(MOD, "op=relay published=%lld", (long long)n);
    } while (!stop);
    return NULL;
}

int outbox_relay_start(struct store *s, struct sink *k, int64_t interval_ms,
                       struct outbox_relay **out) {
    struct outbox_relay *r = xcalloc(1, sizeof(*r));
    r->store = s;
    r->sink = k;
    r->interval_ms = interval_ms > 0 ? interval_ms : OUTBOX_RELAY_INTERVAL_MS;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return ERR_UNAVAILABLE;
    }
    *out = r;
    return 0;
}

void outbox_relay_stop(struct outbox_relay *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
