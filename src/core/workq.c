/* workq.c -- see workq.h.
 *
 * Design notes
 *   1. One mutex and one condition variable guard a FIFO of caller-owned
 *      nodes: pushing allocates nothing, so it cannot fail under load.
 *   2. Threads sleep on the condition variable; each push wakes one.
 *   3. Stop drains: threads leave only when the queue is empty and stop is
 *      set, so every job pushed before workq_stop() runs. */
#include "core/workq.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct workq_job *head, *tail;
    int stopping;
    int n;
    pthread_t *threads;
};

static void *run(void *arg) {
    struct workq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stopping) pthread_cond_wait(&q->cv, &q->mu);
        struct workq_job *j = q->head;
        if (!j) break; /* stopping and drained */
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        pthread_mutex_unlock(&q->mu);
        j->fn(j->arg); /* may free j */
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

struct workq *workq_start(int n, const char *name) {
    assert(n >= 1);
    struct workq *q = xcalloc(1, sizeof(*q));
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->threads = xcalloc((size_t)n, sizeof(*q->threads));
    for (; q->n < n; q->n++) {
        if (pthread_create(&q->threads[q->n], NULL, run, q) != 0) {
            workq_stop(q);
            return NULL;
        }
        char tname[16];
        snprintf(tname, sizeof(tname), "%.10s-%d", name, q->n);
        pthread_setname_np(q->threads[q->n], tname);
    }
    return q;
}

void workq_push(struct workq *q, struct workq_job *job) {
    job->next = NULL;
    pthread_mutex_lock(&q->mu);
    assert(!q->stopping);
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    pthread_mutex_unlock(&q->mu);
    pthread_cond_signal(&q->cv); /* after unlocking: the woken worker need not wait for mu */
}

void workq_stop(struct workq *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->n; i++) pthread_join(q->threads[i], NULL);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q->threads);
    free(q);
}
