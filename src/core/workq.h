/* workq.h -- a fixed pool of threads running queued jobs in arrival order.
 *
 * Used by http/ to run requests that wait on a group commit or the payment
 * gateway away from the libmicrohttpd event threads, so a thread that sleeps
 * until its commit is on disk never holds up other connections. Not a
 * general executor: no priorities, no futures, no cancellation. */
#pragma once

struct workq;

typedef void (*workq_fn)(void *arg);

/* Starts n >= 1 threads. Aborts (xmalloc) on out of memory; returns NULL
 * when a thread cannot be created. */
struct workq *workq_start(int n, const char *name);
/* Queues fn(arg); one of the threads runs it soon. Never blocks on the
 * jobs: the queue is an intrusive list, the caller provides its node. */
struct workq_job {
    workq_fn fn;
    void *arg;
    struct workq_job *next;
};
void workq_push(struct workq *q, struct workq_job *job);
/* Runs every job already queued, joins the threads and frees q. Jobs pushed
 * after this began are a caller bug (asserted). */
void workq_stop(struct workq *q);
