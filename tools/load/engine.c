/* engine.c -- the workers: one thread each, one epoll loop each, driving
 * their share of the virtual users over their share of the connections.
 *
 * Responsible for: connections (non-blocking connect from the source
 * addresses, keep-alive reuse, reconnects, timeouts), the users' timers
 * (think time and polls), the executors (which users run and when), and
 * recording every request. Not here: what users send (scenario.c), the
 * controller that sets the target and decides when to stop (main.c).
 *
 * Design notes:
 *  1. Users and connections are separate: a user that wants to send takes a
 *     free connection of its thread, or waits in line (FIFO) for one. So
 *     100,000 users may share 10,000 connections, and a user sleeping
 *     between polls holds none. Latency counts from when the user was ready
 *     to send, so waiting for a connection is not hidden.
 *  2. One request per connection at a time (no pipelining), as browsers
 *     and k6 do.
 *  3. A failure found inside a call that a user's step made (a connect or
 *     send that fails at once) is not handled there: the connection goes on
 *     a list handled by the loop, so failures cannot recurse.
 *  4. Only the worker touches its metrics until it has stopped; the
 *     controller reads only atomics (running users, finished seconds)
 *     and the seconds a worker has declared finished (engine_done_seconds). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http1.h"
#include "load.h"

#define IN_START 4096
#define IN_MAX (16u << 20)
#define OUT_MAX 4096
#define TICK_MS 10

enum cstate { K_CLOSED, K_CONNECTING, K_IDLE, K_BUSY };

struct conn {
    int fd;
    uint8_t state;
    uint8_t dead; /* on the failed list */
    enum route route;
    int expect[3];
    struct vu *vu;
    int64_t ready_at, sent_at;
    char *in;
    size_t inlen, incap;
    char *out; /* the unsent rest of a request, when send() took only part */
    size_t outlen, outoff;
    uint32_t idx;
};

struct timer {
    int64_t due;
    uint32_t vu;
};

struct worker {
    struct run *run;
    const struct opts *o;
    int id;
    pthread_t th;
    int ep;
    struct sctx c;
    struct tmetrics m;
    struct vu *vus;
    size_t nvu;
    struct conn *conns;
    size_t nconn;
    uint32_t *free_conns, *failed, *waitq, *idle_vus;
    size_t nfree, nfailed, wq_head, wq_len, idle_head, nidle_vus;
    struct timer *heap;
    size_t nheap;
    long running, target, finished;
    size_t inflight;
    int64_t next_arrival, arrival_gap;
    char host[300], extra[MAX_HEADERS * 260 + 1];
    atomic_long running_pub;
    atomic_size_t done_sec;
    atomic_int exited;
};

const char *const load_route_name[R_COUNT] = {
    "enter",   "poll",   "leave", "concerts", "sessions",  "seats",   "hold", "pay",
    "balance", "charge", "token", "status",   "schedules", "reserve", "get"};
const char *const load_check_name[C_COUNT] = {"entered the line", "poll answered",
                                              "admitted",         "concerts listed",
                                              "sessions listed",  "seats listed",
                                              "seats held",       "paid",
                                              "balance read",     "charged",
                                              "token issued",     "status is true or false",
                                              "schedules listed", "2xx"};

int64_t load_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t load_rand(struct sctx *c) { /* xorshift64* */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ULL;
}

void load_check(struct sctx *c, enum check k, int ok) {
    if (ok)
        c->m->check_pass[k]++;
    else
        c->m->check_fail[k]++;
}

static size_t sec_of(struct worker *w, int64_t now) {
    int64_t s = (now - w->run->t0) / 1000000;
    if (s < 0) s = 0;
    return (size_t)s < w->run->nsec ? (size_t)s : w->run->nsec - 1;
}

/* ---- timers ---------------------------------------------------------------- */

static void heap_push(struct worker *w, int64_t due, uint32_t vu) {
    size_t i = w->nheap++;
    while (i > 0 && w->heap[(i - 1) / 2].due > due) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = (struct timer){due, vu};
}

static struct timer heap_pop(struct worker *w) {
    struct timer top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l >= w->nheap) break;
        m = l + 1 < w->nheap && w->heap[l + 1].due < w->heap[l].due ? l + 1 : l;
        if (w->heap[m].due >= last.due) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (w->nheap) w->heap[i] = last;
    return top;
}

/* ---- users ----------------------------------------------------------------- */

static void vu_begin(struct worker *w, struct vu *v);
static void advance(struct worker *w, struct vu *v, const struct resp *r);

/* v stops running (stop, ramp-down, its iterations done). */
static void vu_park(struct worker *w, struct vu *v, int finished) {
    if (v->step != 0) w->m.interrupted++;
    v->step = 0;
    if (v->phase != V_IDLE && v->phase != V_FINISHED) w->running--;
    v->phase = finished ? V_FINISHED : V_IDLE;
    if (finished) w->finished++;
    if (!finished && w->o->executor == X_ARRIVAL) /* FIFO: each user in turn */
        w->idle_vus[(w->idle_head + w->nidle_vus++) % w->nvu] = v->idx;
}

static int should_stop(struct worker *w, struct vu *v) {
    if (atomic_load_explicit(&w->run->stop, memory_order_relaxed)) return 1;
    enum executor x = w->o->executor;
    return (x == X_CONSTANT || x == X_RAMPING) && (long)v->idx >= w->target;
}

static void iteration_done(struct worker *w, struct vu *v) {
    w->m.iters++;
    w->m.sec[sec_of(w, w->c.now)].iters++;
    v->iters++;
    v->step = 0;
    if (w->o->executor == X_ITERATIONS && v->iters >= w->o->iterations) {
        vu_park(w, v, 1);
    } else if (w->o->executor == X_ARRIVAL || should_stop(w, v)) {
        vu_park(w, v, 0);
    } else if (w->o->think_us > 0) {
        v->phase = V_SLEEP;
        heap_push(w, w->c.now + w->o->think_us, v->idx);
    } else {
        vu_begin(w, v);
    }
}

static void conn_send(struct worker *w, struct conn *k, struct vu *v);

static void vu_send(struct worker *w, struct vu *v) {
    if (atomic_load_explicit(&w->run->stop, memory_order_relaxed)) {
        vu_park(w, v, 0);
        return;
    }
    v->ready_at = w->c.now;
    if (w->nfree) {
        conn_send(w, &w->conns[w->free_conns[--w->nfree]], v);
    } else {
        v->phase = V_WAITCONN;
        w->waitq[(w->wq_head + w->wq_len++) % w->nvu] = v->idx;
    }
}

static void advance(struct worker *w, struct vu *v, const struct resp *r) {
    int64_t sleep_us = 0;
    switch (scn_step(v, &w->c, r, &sleep_us)) {
    case A_SEND: vu_send(w, v); break;
    case A_SLEEP:
        v->phase = V_SLEEP;
        heap_push(w, w->c.now + sleep_us, v->idx);
        break;
    case A_DONE: iteration_done(w, v); break;
    }
}

static void vu_begin(struct worker *w, struct vu *v) {
    if (v->phase == V_IDLE) w->running++;
    v->phase = V_READY;
    v->step = 0;
    v->iter_start = w->c.now;
    advance(w, v, NULL);
}

/* ---- connections ----------------------------------------------------------- */

static void conn_failed_later(struct worker *w, struct conn *k) {
    if (!k->dead) {
        k->dead = 1;
        w->failed[w->nfailed++] = k->idx;
    }
}

static void conn_close(struct worker *w, struct conn *k) {
    if (k->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, k->fd, NULL);
        close(k->fd);
    }
    k->fd = -1;
    k->state = K_CLOSED;
    k->inlen = 0;
    k->outlen = k->outoff = 0;
}

static int conn_open(struct worker *w, struct conn *k) {
    const struct opts *o = w->o;
    k->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) return -1;
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (o->nsources) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr =
            o->sources[(k->idx * (size_t)o->threads + (size_t)w->id) % (size_t)o->nsources];
        setsockopt(k->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(k->fd, (struct sockaddr *)&src, sizeof(src)) != 0) return -1;
    }
    w->m.connects++;
    if (!k->in) {
        k->in = malloc(IN_START + 1);
        if (!k->in) abort();
        k->incap = IN_START;
    }
    int rc = connect(k->fd, (const struct sockaddr *)&o->addr, sizeof(o->addr));
    if (rc != 0 && errno != EINPROGRESS) return -1;
    k->state = rc == 0 ? K_BUSY : K_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = k->idx};
    return epoll_ctl(w->ep, EPOLL_CTL_ADD, k->fd, &ev);
}

/* Sends what is left of k's request; registers for EPOLLOUT if the socket
 * is full. Returns -1 on a socket error. */
static int conn_flush(struct worker *w, struct conn *k, const char *buf, size_t len) {
    ssize_t n = send(k->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    if (n < 0) n = 0;
    w->m.bytes_out += (uint64_t)n;
    k->sent_at = w->c.now;
    if ((size_t)n == len) {
        k->outlen = k->outoff = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = k->idx};
        return epoll_ctl(w->ep, EPOLL_CTL_MOD, k->fd, &ev);
    }
    if (!k->out) {
        k->out = malloc(OUT_MAX);
        if (!k->out) abort();
    }
    if (buf != k->out + k->outoff)
        memcpy(k->out, buf + n, len - (size_t)n);
    else
        memmove(k->out, buf + n, len - (size_t)n);
    k->outlen = len - (size_t)n;
    k->outoff = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = k->idx};
    return epoll_ctl(w->ep, EPOLL_CTL_MOD, k->fd, &ev);
}

static void conn_send(struct worker *w, struct conn *k, struct vu *v) {
    struct req q;
    char buf[OUT_MAX];
    scn_request(v, &w->c, &q);
    size_t len = h1_write(buf, sizeof(buf), &q, w->host, w->extra);
    k->vu = v;
    k->route = q.route;
    memcpy(k->expect, q.expect, sizeof(k->expect));
    k->ready_at = v->ready_at;
    k->sent_at = w->c.now;
    v->phase = V_INFLIGHT;
    w->inflight++;
    if (len == 0 || (k->state == K_CLOSED && conn_open(w, k) != 0)) {
        conn_failed_later(w, k);
        return;
    }
    if (k->state == K_CONNECTING) { /* written once connected */
        if (!k->out && !(k->out = malloc(OUT_MAX))) abort();
        memcpy(k->out, buf, len);
        k->outlen = len;
        k->outoff = 0;
        return;
    }
    k->state = K_BUSY;
    if (conn_flush(w, k, buf, len) != 0) conn_failed_later(w, k);
}

static int expected(const struct conn *k, int status) {
    if (k->expect[0] == 0) return status >= 200 && status < 300;
    for (int i = 0; i < 3 && k->expect[i]; i++)
        if (k->expect[i] == status) return 1;
    return 0;
}

static void record(struct worker *w, struct conn *k, int status) {
    struct tmetrics *m = &w->m;
    uint64_t us = (uint64_t)(w->c.now - k->ready_at);
    int failed = status == 0 || !expected(k, status);
    struct second *s = &m->sec[sec_of(w, w->c.now)];
    hist_record(&m->all, us);
    hist_record(&m->route[k->route], us);
    hist_record(&s->h, us);
    m->reqs++;
    s->reqs++;
    m->route_reqs[k->route]++;
    m->status[status >= 100 && status < 600 ? status / 100 : 0]++;
    if (failed) {
        m->failed++;
        s->failed++;
        m->route_failed[k->route]++;
    }
}

/* Gives k to the first user waiting for a connection, or frees it. */
static void conn_release(struct worker *w, struct conn *k) {
    if (w->wq_len) {
        struct vu *v = &w->vus[w->waitq[w->wq_head]];
        w->wq_head = (w->wq_head + 1) % w->nvu;
        w->wq_len--;
        conn_send(w, k, v);
    } else {
        w->free_conns[w->nfree++] = k->idx;
    }
}

/* The request on k got no answer: a failed request for its user. */
static void conn_fail(struct worker *w, struct conn *k) {
    k->dead = 0;
    struct vu *v = k->vu;
    conn_close(w, k);
    if (!v) return;
    k->vu = NULL;
    w->inflight--;
    w->m.conn_errors++;
    record(w, k, 0);
    conn_release(w, k);
    struct resp r = {0, "", 0};
    advance(w, v, &r);
}

static void conn_readable(struct worker *w, struct conn *k) {
    for (;;) {
        if (k->inlen == k->incap) {
            if (k->incap >= IN_MAX) {
                conn_fail(w, k);
                return;
            }
            k->incap *= 2;
            k->in = realloc(k->in, k->incap + 1);
            if (!k->in) abort();
        }
        ssize_t n = recv(k->fd, k->in + k->inlen, k->incap - k->inlen, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break; /* drained: parse what came */
        if (n <= 0) {
            if (k->vu)
                conn_fail(w, k);
            else
                conn_close(w, k); /* an idle keep-alive connection closed: fine */
            return;
        }
        w->m.bytes_in += (uint64_t)n;
        k->inlen += (size_t)n;
        if (k->inlen < k->incap) break;
    }
    struct resp r;
    int close_after = 0;
    long used = h1_parse(k->in, k->inlen, &r, &close_after);
    if (used == 0) return;
    if (used < 0 || !k->vu) {
        conn_fail(w, k);
        return;
    }
    char saved = ((char *)r.body)[r.len];
    ((char *)r.body)[r.len] = '\0';
    struct vu *v = k->vu;
    k->vu = NULL;
    w->inflight--;
    record(w, k, r.status);
    k->state = K_IDLE;
    advance(w, v, &r); /* r.body points into k->in: k is not free yet */
    ((char *)r.body)[r.len] = saved;
    size_t rest = k->inlen - (size_t)used;
    if (rest) memmove(k->in, k->in + used, rest);
    k->inlen = rest;
    if (close_after || rest) conn_close(w, k); /* rest: bytes nobody asked for */
    conn_release(w, k);
}

static void conn_writable(struct worker *w, struct conn *k) {
    if (k->state == K_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            conn_fail(w, k);
            return;
        }
        k->state = K_BUSY;
    }
    if (k->outlen && conn_flush(w, k, k->out + k->outoff, k->outlen) != 0) conn_fail(w, k);
}

static void check_timeouts(struct worker *w) {
    for (size_t i = 0; i < w->nconn; i++) {
        struct conn *k = &w->conns[i];
        if (k->vu && !k->dead && w->c.now - k->sent_at > w->o->timeout_us) {
            w->m.timeouts++;
            conn_fail(w, k);
        }
    }
}

/* ---- executors ------------------------------------------------------------- */

/* This worker's share of n users (the first ones get the remainder). */
static long share(const struct worker *w, long n) {
    long t = w->o->threads;
    return n / t + (w->id < n % t ? 1 : 0);
}

static void executor_tick(struct worker *w) {
    const struct opts *o = w->o;
    if (atomic_load_explicit(&w->run->stop, memory_order_relaxed)) return;
    if (o->executor == X_CONSTANT || o->executor == X_RAMPING) {
        long t = share(w, atomic_load_explicit(&w->run->target, memory_order_relaxed));
        if (t > (long)w->nvu) t = (long)w->nvu;
        for (long i = w->target; i < t; i++)
            if (w->vus[i].phase == V_IDLE) vu_begin(w, &w->vus[i]);
        w->target = t;
    } else if (o->executor == X_ARRIVAL) {
        while (w->next_arrival <= w->c.now) {
            w->next_arrival += w->arrival_gap;
            if (!w->nidle_vus) {
                w->m.dropped++;
                continue;
            }
            struct vu *v = &w->vus[w->idle_vus[w->idle_head]];
            w->idle_head = (w->idle_head + 1) % w->nvu;
            w->nidle_vus--;
            vu_begin(w, v);
        }
    }
}

static void wake_timers(struct worker *w) {
    int stopping = atomic_load_explicit(&w->run->stop, memory_order_relaxed);
    while (w->nheap && w->heap[0].due <= w->c.now) {
        struct vu *v = &w->vus[heap_pop(w).vu];
        if (v->phase != V_SLEEP) continue;
        if (stopping || should_stop(w, v))
            vu_park(w, v, 0); /* ramp-down: at a pause */
        else if (v->step == 0)
            vu_begin(w, v);
        else {
            v->phase = V_READY;
            advance(w, v, NULL);
        }
    }
}

static int worker_done(struct worker *w, int64_t stop_at) {
    if (atomic_load(&w->run->aborted)) return 1;
    if (w->o->executor == X_ITERATIONS && w->finished == (long)w->nvu) return 1;
    if (!atomic_load_explicit(&w->run->stop, memory_order_relaxed)) return 0;
    return w->inflight == 0 || w->c.now >= stop_at;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct epoll_event evs[512];
    int64_t last_timeouts = 0, stop_at = INT64_MAX;
    w->c.now = load_now_us();
    w->next_arrival = w->c.now;
    if (w->o->executor == X_ITERATIONS)
        for (size_t i = 0; i < w->nvu; i++) vu_begin(w, &w->vus[i]);
    while (!worker_done(w, stop_at)) {
        int timeout = TICK_MS;
        if (w->nheap) {
            int64_t d = (w->heap[0].due - w->c.now + 999) / 1000;
            if (d < timeout) timeout = d < 0 ? 0 : (int)d;
        }
        if (w->o->executor == X_ARRIVAL) {
            int64_t d = (w->next_arrival - w->c.now + 999) / 1000;
            if (d < timeout) timeout = d < 0 ? 0 : (int)d;
        }
        if (w->nfailed) timeout = 0;
        int n = epoll_wait(w->ep, evs, 512, timeout);
        w->c.now = load_now_us();
        for (int i = 0; i < n; i++) {
            struct conn *k = &w->conns[evs[i].data.u32];
            if (k->fd < 0 || k->dead) continue;
            if (evs[i].events & EPOLLOUT) conn_writable(w, k);
            if (k->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                conn_readable(w, k);
        }
        while (w->nfailed) conn_fail(w, &w->conns[w->failed[--w->nfailed]]);
        wake_timers(w);
        executor_tick(w);
        if (atomic_load_explicit(&w->run->stop, memory_order_relaxed) && stop_at == INT64_MAX) {
            stop_at = w->c.now + w->o->grace_us;
            while (w->wq_len) { /* users waiting for a connection send nothing more */
                vu_park(w, &w->vus[w->waitq[w->wq_head]], 0);
                w->wq_head = (w->wq_head + 1) % w->nvu;
                w->wq_len--;
            }
        }
        if (w->c.now - last_timeouts > 100000) {
            check_timeouts(w);
            last_timeouts = w->c.now;
        }
        atomic_store_explicit(&w->running_pub, w->running, memory_order_relaxed);
        atomic_store_explicit(&w->done_sec, sec_of(w, w->c.now), memory_order_release);
    }
    for (size_t i = 0; i < w->nvu; i++)
        if (w->vus[i].phase != V_IDLE && w->vus[i].phase != V_FINISHED) vu_park(w, &w->vus[i], 0);
    atomic_store_explicit(&w->running_pub, 0, memory_order_relaxed);
    atomic_store_explicit(&w->done_sec, w->run->nsec, memory_order_release);
    atomic_store(&w->exited, 1);
    return NULL;
}

/* ---- the run --------------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) abort();
    return p;
}

static void worker_init(struct run *r, struct worker *w, int id) {
    const struct opts *o = r->o;
    w->run = r;
    w->o = o;
    w->id = id;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->c.o = o;
    w->c.m = &w->m;
    w->c.rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ULL) ^
               (uint64_t)load_now_us();
    hist_init(&w->m.all);
    for (int i = 0; i < R_COUNT; i++) hist_init(&w->m.route[i]);
    w->m.nsec = r->nsec;
    w->m.sec = xcalloc(r->nsec, sizeof(struct second));
    for (size_t i = 0; i < r->nsec; i++) hist_init(&w->m.sec[i].h);
    w->nvu = (size_t)share(w, o->vus);
    long first = 0;
    for (int t = 0; t < id; t++) first += o->vus / o->threads + (t < o->vus % o->threads ? 1 : 0);
    w->vus = xcalloc(w->nvu, sizeof(struct vu));
    for (size_t i = 0; i < w->nvu; i++) {
        struct vu *v = &w->vus[i];
        v->idx = (uint32_t)i;
        v->user = o->user_base + first + (long)i + 1;
        scn_init_vu(v, o);
    }
    w->nconn = (size_t)share(w, o->conns);
    if (w->nconn == 0) w->nconn = 1;
    w->conns = xcalloc(w->nconn, sizeof(struct conn));
    w->free_conns = xcalloc(w->nconn, sizeof(uint32_t));
    w->failed = xcalloc(w->nconn, sizeof(uint32_t));
    for (size_t i = 0; i < w->nconn; i++) {
        w->conns[i].fd = -1;
        w->conns[i].idx = (uint32_t)i;
        w->free_conns[w->nfree++] = (uint32_t)(w->nconn - 1 - i);
    }
    w->waitq = xcalloc(w->nvu, sizeof(uint32_t));
    w->heap = xcalloc(w->nvu, sizeof(struct timer));
    w->idle_vus = xcalloc(w->nvu, sizeof(uint32_t));
    if (o->executor == X_ARRIVAL) {
        for (size_t i = 0; i < w->nvu; i++) w->idle_vus[w->nidle_vus++] = (uint32_t)i;
        double rate = o->rate / o->threads;
        w->arrival_gap = rate > 0 ? (int64_t)(1e6 / rate) : INT64_MAX / 4;
        if (w->arrival_gap < 1) w->arrival_gap = 1;
    }
    snprintf(w->host, sizeof(w->host), "%s:%d", o->host, o->port);
    size_t off = 0;
    for (int i = 0; i < o->nheaders; i++)
        off += (size_t)snprintf(w->extra + off, sizeof(w->extra) - off, "%s\r\n", o->headers[i]);
}

int engine_start(struct run *r) {
    r->nw = r->o->threads;
    r->w = xcalloc((size_t)r->nw, sizeof(struct worker *));
    for (int i = 0; i < r->nw; i++) {
        r->w[i] = xcalloc(1, sizeof(struct worker));
        worker_init(r, r->w[i], i);
        if (r->w[i]->ep < 0) return -1;
    }
    r->t0 = load_now_us();
    for (int i = 0; i < r->nw; i++)
        if (pthread_create(&r->w[i]->th, NULL, worker_main, r->w[i]) != 0) return -1;
    return 0;
}

size_t engine_done_seconds(struct run *r) {
    size_t s = r->nsec;
    for (int i = 0; i < r->nw; i++) {
        size_t d = atomic_load_explicit(&r->w[i]->done_sec, memory_order_acquire);
        if (d < s) s = d;
    }
    return s;
}

long engine_running(struct run *r) {
    long n = 0;
    for (int i = 0; i < r->nw; i++)
        n += atomic_load_explicit(&r->w[i]->running_pub, memory_order_relaxed);
    return n;
}

int engine_all_finished(struct run *r) {
    for (int i = 0; i < r->nw; i++)
        if (!atomic_load(&r->w[i]->exited)) return 0;
    return 1;
}

void engine_join(struct run *r) {
    for (int i = 0; i < r->nw; i++) pthread_join(r->w[i]->th, NULL);
}

void engine_merge_second(struct run *r, size_t s, struct second *out) {
    memset(out, 0, sizeof(*out));
    hist_init(&out->h);
    for (int i = 0; i < r->nw; i++) {
        const struct second *x = &r->w[i]->m.sec[s];
        out->reqs += x->reqs;
        out->failed += x->failed;
        out->iters += x->iters;
        hist_merge(&out->h, &x->h);
    }
}

void engine_merge(struct run *r, struct tmetrics *m) {
    memset(m, 0, sizeof(*m));
    hist_init(&m->all);
    for (int i = 0; i < R_COUNT; i++) hist_init(&m->route[i]);
    for (int t = 0; t < r->nw; t++) {
        const struct tmetrics *x = &r->w[t]->m;
        hist_merge(&m->all, &x->all);
        for (int i = 0; i < R_COUNT; i++) {
            hist_merge(&m->route[i], &x->route[i]);
            m->route_reqs[i] += x->route_reqs[i];
            m->route_failed[i] += x->route_failed[i];
        }
        for (int i = 0; i < 6; i++) m->status[i] += x->status[i];
        for (int i = 0; i < C_COUNT; i++) {
            m->check_pass[i] += x->check_pass[i];
            m->check_fail[i] += x->check_fail[i];
        }
        m->reqs += x->reqs, m->failed += x->failed, m->iters += x->iters;
        m->interrupted += x->interrupted, m->dropped += x->dropped;
        m->conn_errors += x->conn_errors, m->timeouts += x->timeouts, m->connects += x->connects;
        m->bytes_in += x->bytes_in, m->bytes_out += x->bytes_out;
    }
    m->nsec = r->nsec;
    m->sec = xcalloc(r->nsec, sizeof(struct second));
    for (size_t s = 0; s < r->nsec; s++) engine_merge_second(r, s, &m->sec[s]);
}

void engine_free(struct run *r) {
    for (int i = 0; i < r->nw; i++) {
        struct worker *w = r->w[i];
        for (size_t k = 0; k < w->nconn; k++) {
            if (w->conns[k].fd >= 0) close(w->conns[k].fd);
            free(w->conns[k].in);
            free(w->conns[k].out);
        }
        close(w->ep);
        free(w->conns), free(w->free_conns), free(w->failed), free(w->waitq);
        free(w->heap), free(w->idle_vus), free(w->vus), free(w->m.sec);
        free(w);
    }
    free(r->w);
}
