/* qpoll.c -- the waiting-room load of DESIGN.md section 6: many users
 * entering, then each polling their position every few seconds, over many
 * keep-alive connections, paced (not as fast as possible).
 *
 *   qpoll enter HOST PORT FIRST_USER USERS CONNS TOKENS_FILE
 *       POST /api/v1/waiting-queues for each user, CONNS at a time; writes
 *       the tokens, one per line, in user order.
 *   qpoll poll HOST PORT TOKENS_FILE CONNS PERIOD_MS DURATION_S
 *       Connection i polls the tokens i, i + CONNS, ... in turn, one request
 *       every PERIOD_MS / (its token count), so every token is polled once
 *       per PERIOD_MS.
 *   qpoll get HOST PORT PATHS_FILE CONNS RATE DURATION_S TOKEN
 *       GETs the paths (with QUEUE-TOKEN: TOKEN) at RATE requests per second
 *       in all, spread evenly over the connections.
 *
 *   qpoll flow HOST PORT USERS FIRST_SEAT SEATS_PER_SESSION SESSIONS_PER_CONCERT
 *              PERIOD_MS DURATION_S
 *       USERS users (connections), each starting the booking flow every
 *       PERIOD_MS: sessions and seats (as the browser user USERS+2), hold
 *       one seat, pay it, enter the waiting room again (paying expired the
 *       token) and poll until ACTIVATED. User u holds seats FIRST_SEAT+u,
 *       +USERS, ... (seed order: seat -> session -> concert). Each user
 *       enters the line once before the first flow; the browser user needs
 *       a seeded token (queue_token_<USERS+2>).
 *
 * Paced modes measure latency from when a request was due, not from when
 * it was sent, so a slow server cannot hide its queueing (no coordinated
 * omission).
 *
 * Prints one line of key=value figures. Exits 1 on a setup error; request
 * errors are counted, not fatal. Single-threaded epoll; loopback only.
 * Part of bench/ (built by bench/queue_poll.sh with cc), not of concertd. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 8192
#define REQ_MAX 512
#define TOKEN_MAX 64
#define LINE_MAX_ 160 /* a token, or a path with its query */
#define TIMEOUT_US (10 * 1000000LL)
#define HIST_US 10 /* histogram bucket width */
#define HIST_N (20 * 1000000 / HIST_US)

struct conn {
    int fd;
    int busy;        /* a request is out */
    int64_t due;     /* poll: when the next request is due (us) */
    int64_t sent_due; /* due time of the request that is out */
    size_t next;     /* index into this connection's work */
    char in[BUF];
    size_t inlen;
    /* flow mode: this connection is one user going through the booking flow */
    int step;           /* 0 idle; 1 sessions, 2 seats, 3 hold, 4 pay, 5 enter, 6 poll */
    int64_t flow_start; /* when the current flow was due */
    long flows;         /* flows this user started */
    long long rid;
    char tok[48];
};

static struct sockaddr_in addr;
static int ep;
static struct conn *conns;
static size_t nconns;
static uint64_t *hist;
static uint64_t n_ok, n_err, n_sent, n_reconnect;
static int64_t max_us;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what) {
    fprintf(stderr, "qpoll: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void conn_open(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) die("connect");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
    c->inlen = 0;
    c->busy = 0;
}

static void conn_reopen(struct conn *c) {
    close(c->fd);
    n_reconnect++;
    conn_open(c);
}

static void record(int64_t us) {
    if (us < 0) us = 0;
    if (us > max_us) max_us = us;
    size_t b = (size_t)(us / HIST_US);
    hist[b < HIST_N ? b : HIST_N - 1]++;
}

static double pct(double p) {
    uint64_t total = 0, seen = 0;
    for (size_t i = 0; i < HIST_N; i++) total += hist[i];
    if (!total) return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)total);
    if (want >= total) want = total - 1;
    for (size_t i = 0; i < HIST_N; i++) {
        seen += hist[i];
        if (seen > want) return (double)((int64_t)(i + 1) * HIST_US) / 1000.0;
    }
    return (double)max_us / 1000.0;
}

/* A complete response in c->in: returns its length and sets *status and
 * *body; 0 when more bytes are needed; -1 when it cannot be parsed. */
static long response(struct conn *c, int *status, const char **body, size_t *blen) {
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end) return c->inlen >= BUF ? -1 : 0;
    if (c->inlen < 12 || memcmp(c->in, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->in + 9);
    size_t hlen = (size_t)(end - c->in) + 4, cl = 0;
    for (char *p = c->in; p < end; p++) {
        if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
            cl = (size_t)strtoul(p + 15, NULL, 10);
    }
    if (hlen + cl > BUF) return -1;
    if (c->inlen < hlen + cl) return 0;
    *body = c->in + hlen;
    *blen = cl;
    return (long)(hlen + cl);
}

static void send_all(struct conn *c, const char *req, size_t len) {
    while (len) {
        ssize_t n = send(c->fd, req, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            n_err++;
            conn_reopen(c);
            return;
        }
        req += n;
        len -= (size_t)n;
    }
    c->busy = 1;
    n_sent++;
}

/* Reads what is there; returns 1 when a response completed (and consumed). */
static int conn_read(struct conn *c, int *status, char *body, size_t bodymax) {
    ssize_t n = recv(c->fd, c->in + c->inlen, BUF - c->inlen, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
        if (c->busy) n_err++;
        conn_reopen(c);
        return 0;
    }
    c->inlen += (size_t)n;
    const char *b;
    size_t blen;
    long used = response(c, status, &b, &blen);
    if (used == 0) return 0;
    if (used < 0) {
        n_err++;
        conn_reopen(c);
        return 0;
    }
    if (body) {
        size_t k = blen < bodymax - 1 ? blen : bodymax - 1;
        memcpy(body, b, k);
        body[k] = '\0';
    }
    memmove(c->in, c->in + used, c->inlen - (size_t)used);
    c->inlen -= (size_t)used;
    c->busy = 0;
    return 1;
}

/* ---- enter ---------------------------------------------------------------- */

static void send_enter(struct conn *c, long user) {
    char req[REQ_MAX], body[64];
    int n = snprintf(body, sizeof(body), "{\"userId\":%ld}", user);
    int len = snprintf(req, sizeof(req),
                       "POST /api/v1/waiting-queues HTTP/1.1\r\nHost: q\r\n"
                       "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                       n, body);
    c->sent_due = now_us();
    send_all(c, req, (size_t)len);
}

static int do_enter(long first, long users, const char *out) {
    char(*tokens)[TOKEN_MAX] = calloc((size_t)users, TOKEN_MAX);
    long *owner = calloc(nconns, sizeof(long)); /* user index each connection waits for */
    long next = 0, done = 0;
    char body[BUF];
    int64_t t0 = now_us();
    for (size_t i = 0; i < nconns; i++) {
        owner[i] = next < users ? next++ : -1;
        if (owner[i] >= 0) send_enter(&conns[i], first + owner[i]);
    }
    struct epoll_event evs[256];
    while (done < users) {
        int k = epoll_wait(ep, evs, 256, 1000);
        if (k < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < k; e++) {
            struct conn *c = evs[e].data.ptr;
            size_t i = (size_t)(c - conns);
            int status = 0;
            if (!conn_read(c, &status, body, sizeof(body))) {
                /* dropped (and reopened) with our request unanswered: again */
                if (!c->busy && owner[i] >= 0) send_enter(c, first + owner[i]);
                continue;
            }
            record(now_us() - c->sent_due);
            const char *t = strstr(body, "\"token\":\"");
            if ((status == 201 || status == 200) && t) {
                t += 9;
                size_t tl = strcspn(t, "\"");
                if (tl >= TOKEN_MAX) tl = TOKEN_MAX - 1;
                memcpy(tokens[owner[i]], t, tl);
                n_ok++;
            } else {
                n_err++;
            }
            done++;
            owner[i] = next < users ? next++ : -1;
            if (owner[i] >= 0) send_enter(c, first + owner[i]);
        }
    }
    double secs = (double)(now_us() - t0) / 1e6;
    FILE *f = fopen(out, "w");
    if (!f) die(out);
    for (long u = 0; u < users; u++) fprintf(f, "%s\n", tokens[u]);
    fclose(f);
    printf("mode=enter users=%ld ok=%llu errors=%llu secs=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f "
           "max_ms=%.3f\n",
           users, (unsigned long long)n_ok, (unsigned long long)n_err, secs, (double)users / secs,
           pct(50), pct(99), (double)max_us / 1000.0);
    free(owner);
    free(tokens);
    return n_err ? 1 : 0;
}

/* ---- poll ----------------------------------------------------------------- */

/* Idle connections, by when their next request is due. A connection with a
 * request out is not in the heap; it goes back when the answer arrives (its
 * next request may already be due then). */
static struct conn **heap;
static size_t heap_n;

static void heap_swap(size_t a, size_t b) {
    struct conn *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
}

static void heap_push(struct conn *c) {
    size_t i = heap_n++;
    heap[i] = c;
    while (i > 0 && heap[(i - 1) / 2]->due > heap[i]->due) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static struct conn *heap_pop(void) {
    struct conn *top = heap[0];
    heap[0] = heap[--heap_n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && heap[l]->due < heap[m]->due) m = l;
        if (r < heap_n && heap[r]->due < heap[m]->due) m = r;
        if (m == i) break;
        heap_swap(i, m);
        i = m;
    }
    return top;
}

/* What a paced run sends: line i of the file makes request i. */
struct paced {
    const char *mode;  /* "poll" or "get" */
    const char *token; /* get: the QUEUE-TOKEN of every request */
};

static int format_request(const struct paced *pc, const char *line, char *req, size_t cap) {
    if (strcmp(pc->mode, "poll") == 0)
        return snprintf(req, cap,
                        "GET /api/v1/waiting-queues HTTP/1.1\r\nHost: q\r\nQUEUE-TOKEN: %s\r\n\r\n",
                        line);
    return snprintf(req, cap, "GET %s HTTP/1.1\r\nHost: q\r\nQUEUE-TOKEN: %s\r\n\r\n", line,
                    pc->token);
}

/* Every connection sends one request per interval (us), lines i, i + CONNS, ... */
/* Waits for answers until the first idle connection is due (at most 100 ms);
 * returns how many events came. */
static int wait_due(struct epoll_event *evs, int max, int64_t now) {
    int timeout = 100;
    if (heap_n) {
        int64_t wait = (heap[0]->due - now + 999) / 1000;
        timeout = wait < timeout ? (int)wait : timeout;
    }
    int k = epoll_wait(ep, evs, max, timeout);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    return k < 0 ? 0 : k;
}

static int do_paced(const struct paced *pc, char (*tokens)[LINE_MAX_], size_t ntok,
                    int64_t interval, long duration_s) {
    heap = calloc(nconns, sizeof(*heap));
    int64_t start = now_us(), end = start + duration_s * 1000000LL;
    for (size_t i = 0; i < nconns; i++) {
        conns[i].next = 0;
        /* spread the first requests over one interval */
        conns[i].due = start + (int64_t)((double)interval * (double)i / (double)nconns);
        heap_push(&conns[i]);
    }
    struct epoll_event evs[512];
    char req[REQ_MAX];
    for (;;) {
        int64_t now = now_us();
        if (now >= end) break;
        while (heap_n && heap[0]->due <= now) {
            struct conn *c = heap_pop();
            size_t ti = c->next * nconns + (size_t)(c - conns);
            if (ti >= ntok) {
                c->next = 0;
                ti = (size_t)(c - conns);
            }
            c->next++;
            int len = format_request(pc, tokens[ti], req, sizeof(req));
            c->sent_due = c->due;
            c->due += interval;
            send_all(c, req, (size_t)len);
            if (!c->busy) heap_push(c); /* send failed and reopened: try at its next turn */
        }
        int k = wait_due(evs, 512, now);
        now = now_us();
        for (int e = 0; e < k; e++) {
            struct conn *c = evs[e].data.ptr;
            int was_busy = c->busy, status = 0;
            int got = conn_read(c, &status, NULL, 0);
            if (got) {
                record(now - c->sent_due);
                if (status == 200)
                    n_ok++;
                else
                    n_err++;
            }
            if (was_busy && !c->busy) heap_push(c); /* answered, or dropped and reopened */
        }
        /* Requests out longer than the timeout count as errors; the
         * connection is replaced. A linear scan, but only once a second. */
        static int64_t last_scan;
        if (now - last_scan > 1000000) {
            last_scan = now;
            for (size_t i = 0; i < nconns; i++) {
                if (conns[i].busy && now - conns[i].sent_due > TIMEOUT_US) {
                    n_err++;
                    conn_reopen(&conns[i]);
                    heap_push(&conns[i]);
                }
            }
        }
    }
    double secs = (double)(now_us() - start) / 1e6;
    printf("mode=%s lines=%zu conns=%zu interval_us=%lld secs=%.1f sent=%llu ok=%llu errors=%llu "
           "reconnects=%llu rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f "
           "max_ms=%.3f\n",
           pc->mode, ntok, nconns, (long long)interval, secs, (unsigned long long)n_sent, (unsigned long long)n_ok,
           (unsigned long long)n_err, (unsigned long long)n_reconnect, (double)n_ok / secs,
           pct(50), pct(90), pct(99), pct(99.9), (double)max_us / 1000.0);
    free(heap);
    return 0;
}


/* ---- flow ------------------------------------------------------------------ */

struct flowcfg {
    long users, first_seat, per_session, per_concert;
    int64_t period_us;
};
static struct flowcfg fc;
static uint64_t flow_done, flow_err[7];

static void seat_of(const struct conn *c, long long *seat, long long *sid, long long *cid,
                    long long *num) {
    long u = (long)(c - conns) + 1;
    *seat = fc.first_seat + u + (long long)(c->flows - 1) * fc.users;
    *sid = (*seat - 1) / fc.per_session + 1;
    *cid = (*sid - 1) / fc.per_concert + 1;
    *num = (*seat - 1) % fc.per_session + 1;
}

static void flow_send(struct conn *c) {
    char req[REQ_MAX], body[128];
    long u = (long)(c - conns) + 1;
    long long seat, sid, cid, num;
    seat_of(c, &seat, &sid, &cid, &num);
    int len = 0, n;
    switch (c->step) {
    case 1:
        len = snprintf(req, sizeof(req),
                       "GET /api/v1/concerts/%lld/sessions HTTP/1.1\r\nHost: q\r\n"
                       "QUEUE-TOKEN: queue_token_%ld\r\n\r\n",
                       cid, fc.users + 2);
        break;
    case 2:
        len = snprintf(req, sizeof(req),
                       "GET /api/v1/concerts/%lld/sessions/%lld/seats?limit=20&after=%lld "
                       "HTTP/1.1\r\nHost: q\r\nQUEUE-TOKEN: queue_token_%ld\r\n\r\n",
                       cid, sid, num - 1, fc.users + 2);
        break;
    case 3:
        n = snprintf(body, sizeof(body), "{\"userId\":%ld,\"seatIds\":[%lld]}", u, seat);
        len = snprintf(req, sizeof(req),
                       "POST /api/v1/concerts/%lld/sessions/%lld/reservations HTTP/1.1\r\n"
                       "Host: q\r\nQUEUE-TOKEN: %s\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n%s",
                       cid, sid, c->tok, n, body);
        break;
    case 4:
        n = snprintf(body, sizeof(body), "{\"userId\":%ld,\"reservationId\":%lld}", u, c->rid);
        len = snprintf(req, sizeof(req),
                       "POST /api/v1/payments HTTP/1.1\r\nHost: q\r\nQUEUE-TOKEN: %s\r\n"
                       "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                       c->tok, n, body);
        break;
    case 5:
        n = snprintf(body, sizeof(body), "{\"userId\":%ld}", u);
        len = snprintf(req, sizeof(req),
                       "POST /api/v1/waiting-queues HTTP/1.1\r\nHost: q\r\n"
                       "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                       n, body);
        break;
    default:
        len = snprintf(req, sizeof(req),
                       "GET /api/v1/waiting-queues HTTP/1.1\r\nHost: q\r\nQUEUE-TOKEN: %s\r\n\r\n",
                       c->tok);
        break;
    }
    send_all(c, req, (size_t)len);
}

/* The flow is over (done or failed): the next one is due a period after
 * this one started. */
static void flow_end(struct conn *c, int ok) {
    c->step = 0;
    if (c->flows == 0) { /* the first entry into the line: the first flow now */
        c->due = now_us();
    } else {
        if (ok) flow_done++;
        c->due = c->flow_start + fc.period_us;
    }
    heap_push(c);
}

static void flow_answer(struct conn *c, int status, const char *body) {
    int want = (c->step == 3 || c->step == 4) ? 201 : 200;
    if (c->step == 5) want = status == 201 ? 201 : 200;
    if (status != want) {
        flow_err[c->step]++;
        flow_end(c, 0);
        return;
    }
    const char *p;
    switch (c->step) {
    case 3:
        p = strstr(body, "\"reservationId\":");
        c->rid = p ? atoll(p + 16) : 0;
        break;
    case 5:
    case 6:
        p = strstr(body, "\"token\":\"");
        if (p) {
            p += 9;
            size_t n = strcspn(p, "\"");
            if (n >= sizeof(c->tok)) n = sizeof(c->tok) - 1;
            memcpy(c->tok, p, n);
            c->tok[n] = '\0';
        }
        if (strstr(body, "\"status\":\"ACTIVATED\"")) {
            flow_end(c, 1);
            return;
        }
        c->step = 6; /* in line: look again in 10 ms */
        c->due = now_us() + 10000;
        heap_push(c);
        return;
    default: break;
    }
    c->step++;
    c->sent_due = now_us();
    flow_send(c);
}

static int do_flow(long duration_s) {
    heap = calloc(nconns, sizeof(*heap));
    int64_t start = now_us(), end = start + duration_s * 1000000LL;
    /* Each user first enters the line for a live token (an earlier run's
     * payments may have expired the seeded ones), spread over one period. */
    for (size_t i = 0; i < nconns; i++) {
        conns[i].step = 5;
        conns[i].due = start + (int64_t)((double)fc.period_us * (double)i / (double)nconns);
        heap_push(&conns[i]);
    }
    struct epoll_event evs[512];
    char body[BUF];
    for (;;) {
        int64_t now = now_us();
        if (now >= end) break;
        while (heap_n && heap[0]->due <= now) {
            struct conn *c = heap_pop();
            c->sent_due = c->due;
            if (c->step == 0) { /* a new flow */
                c->flows++;
                c->flow_start = c->due;
                c->step = 1;
            }
            flow_send(c);
            if (!c->busy) { /* the send failed and reopened */
                flow_err[c->step]++;
                flow_end(c, 0);
            }
        }
        int k = wait_due(evs, 512, now);
        now = now_us();
        for (int e = 0; e < k; e++) {
            struct conn *c = evs[e].data.ptr;
            int was_busy = c->busy, status = 0;
            int got = conn_read(c, &status, body, sizeof(body));
            if (got) {
                record(now - c->sent_due);
                if (status >= 200 && status < 300) n_ok++;
                else n_err++;
                flow_answer(c, status, body);
            } else if (was_busy && !c->busy) { /* dropped and reopened */
                flow_err[c->step]++;
                flow_end(c, 0);
            }
        }
    }
    double secs = (double)(now_us() - start) / 1e6;
    uint64_t errs = 0;
    for (int i = 0; i < 7; i++) errs += flow_err[i];
    printf("mode=flow users=%zu period_ms=%lld secs=%.1f flows=%llu requests=%llu errors=%llu "
           "(sessions %llu seats %llu hold %llu pay %llu enter %llu poll %llu) rps=%.0f "
           "p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
           nconns, (long long)(fc.period_us / 1000), secs, (unsigned long long)flow_done,
           (unsigned long long)(n_ok + n_err), (unsigned long long)errs,
           (unsigned long long)flow_err[1], (unsigned long long)flow_err[2],
           (unsigned long long)flow_err[3], (unsigned long long)flow_err[4],
           (unsigned long long)flow_err[5], (unsigned long long)flow_err[6],
           (double)(n_ok + n_err) / secs, pct(50), pct(95), pct(99), (double)max_us / 1000.0);
    free(heap);
    return 0;
}

/* The non-empty lines of a file (each cut to LINE_MAX_ - 1 bytes); exits
 * when there are none. */
static char (*read_lines(const char *path, size_t *n))[LINE_MAX_] {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    size_t cap = 1024;
    char(*lines)[LINE_MAX_] = malloc(cap * LINE_MAX_);
    char line[512];
    *n = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!*line) continue;
        if (*n == cap) lines = realloc(lines, (cap *= 2) * LINE_MAX_);
        snprintf(lines[(*n)++], LINE_MAX_, "%.159s", line);
    }
    fclose(f);
    if (!*n) {
        fprintf(stderr, "qpoll: no lines in %s\n", path);
        exit(1);
    }
    return lines;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: qpoll enter HOST PORT FIRST USERS CONNS FILE\n"
                        "       qpoll poll HOST PORT FILE CONNS PERIOD_MS DURATION_S\n"
                        "       qpoll get HOST PORT PATHS_FILE CONNS RATE DURATION_S TOKEN\n"
                        "       qpoll flow HOST PORT USERS FIRST_SEAT SEATS_PER_SESSION "
                        "SESSIONS_PER_CONCERT PERIOD_MS DURATION_S\n");
        return 2;
    }
    raise_nofile();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) die("address");
    ep = epoll_create1(0);
    hist = calloc(HIST_N, sizeof(*hist));
    if (strcmp(argv[1], "enter") == 0 && argc == 8) {
        nconns = (size_t)atol(argv[6]);
        conns = calloc(nconns, sizeof(*conns));
        for (size_t i = 0; i < nconns; i++) conn_open(&conns[i]);
        return do_enter(atol(argv[4]), atol(argv[5]), argv[7]);
    }
    if (strcmp(argv[1], "flow") == 0 && argc == 10) {
        fc = (struct flowcfg){atol(argv[4]), atol(argv[5]), atol(argv[6]), atol(argv[7]),
                              atol(argv[8]) * 1000LL};
        nconns = (size_t)fc.users;
        conns = calloc(nconns, sizeof(*conns));
        for (size_t i = 0; i < nconns; i++) conn_open(&conns[i]);
        return do_flow(atol(argv[9]));
    }
    int poll = strcmp(argv[1], "poll") == 0 && argc == 8;
    int get = strcmp(argv[1], "get") == 0 && argc == 9;
    if (poll || get) {
        size_t n = 0;
        char(*lines)[LINE_MAX_] = read_lines(argv[4], &n);
        nconns = (size_t)atol(argv[5]);
        if (nconns > n) nconns = n;
        conns = calloc(nconns, sizeof(*conns));
        for (size_t i = 0; i < nconns; i++) conn_open(&conns[i]);
        struct paced pc = {argv[1], get ? argv[8] : NULL};
        int64_t interval;
        if (poll) { /* every line once per period */
            size_t per = (n + nconns - 1) / nconns;
            interval = atol(argv[6]) * 1000LL / (int64_t)per;
        } else { /* RATE requests per second over all connections */
            long rate = atol(argv[6]);
            interval = rate > 0 ? (int64_t)nconns * 1000000LL / rate : 1000000LL;
        }
        return do_paced(&pc, lines, n, interval, atol(argv[7]));
    }
    fprintf(stderr, "qpoll: bad arguments\n");
    return 2;
}
