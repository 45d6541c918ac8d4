/* server.c -- libmicrohttpd glue (see server.h).
 *
 * One request's life: libmicrohttpd calls on_request() first with the
 * headers. begin() routes it and applies every check that needs no body
 * (header size 431, declared body too large 413, a path with '.', '..' or
 * empty segments, a backslash or a NUL 400, unknown route 404, method 405,
 * bad path id 400, body on GET 400). The body, if any, is gathered into
 * the request arena (or read and dropped when the request is refused
 * already), and the handler runs on the final call. on_completed() frees
 * the arena once the response is on the wire.
 *
 * Design notes:
 *   1. Reads run on libmicrohttpd's event threads (--workers, default one
 *      per core). A request that changes state (any method but GET, HEAD
 *      and OPTIONS) sleeps until its group commit is on disk, or until the
 *      payment gateway answers, so it runs on the write pool instead
 *      (--write-workers, core/workq): its connection is suspended, a pool
 *      thread runs the handler and resumes it, and libmicrohttpd calls
 *      on_request() once more to send the answer. An event thread thus
 *      never sleeps on a commit, and a commit batch can take as many
 *      writes as the pool has threads rather than as many as there are
 *      event threads.
 *   2. Response bodies live in the request arena and are handed to
 *      libmicrohttpd without a copy (MHD_RESPMEM_PERSISTENT); the arena is
 *      freed only in on_completed(), after the last byte is sent.
 *   3. Over-limit bodies sent chunked are read and dropped (never stored) up to
 *      DISCARD_FACTOR x max_body so the client gets its 413; past that the
 *      connection is closed.
 *   4. libmicrohttpd answers requests whose line or headers overflow its
 *      per-connection memory pool itself (414 or 431, HTML body). Each
 *      header and query parameter costs it a record of about 60 bytes
 *      besides its text. The pool is 2 x max_header_bytes + POOL_SLACK
 *      (20 KiB by default): every request over our own limit but inside
 *      the pool gets a JSON 431 from us, and a flood of tiny headers or a
 *      line larger than the pool gets libmicrohttpd's (docs/security.md).
 *      The pool is not bigger because libmicrohttpd 0.9.75 memsets all of
 *      it before each further request on a keep-alive connection: a
 *      160 KiB pool was 12-16 % of the CPU of a balance charge and held
 *      160 KiB of every used connection resident (bench/queue_poll.sh:
 *      347 MB, over its 256 MB target). A request line whose parameters overflow the
 *      pool is worse: libmicrohttpd logs a 431 but never sends it and
 *      leaves the connection hanging. So a request line longer than
 *      max_header_bytes or with more than max_header_bytes / ARG_BYTES
 *      parameters (their records fit the pool beside the line) is answered
 *      by on_request_line() itself, before libmicrohttpd parses it: a JSON
 *      431 written straight to the socket, which is then shut down.
 *   5. Slow clients: libmicrohttpd's timeout is an idle timeout, which a
 *      client sending one byte a second never meets (slowloris). So each
 *      connection's socket has a deadline (deadline[fd], monotonic ms, 0:
 *      none) by which its request must have arrived whole: request_timeout
 *      from the connection's start for the first request, from its request
 *      line for each later one (an idle keep-alive connection has none: the
 *      idle timeout covers it). A sweeper thread shuts the socket down when
 *      the deadline passes; libmicrohttpd then closes the connection as if
 *      the client had. The sweeper and the close notification take
 *      sweep_mu, and libmicrohttpd calls the notification before it closes
 *      the socket, so the sweeper never touches a descriptor that was
 *      closed and reused.
 *   6. A route's precheck (api.h) runs on the event thread once the
 *      request is in, before a write is handed to the pool. The abuse
 *      limits live there (api/limits.h), so the 429s of a flood are
 *      answered on the thread that read them: no suspend, no pool thread
 *      woken, no resume, no lock shared with the pool.
 *   7. The per-address limits key on the socket's peer. Behind a proxy
 *      that is the proxy, so with --trusted-proxies a request whose peer
 *      is one of them is keyed on the client its X-Forwarded-For names
 *      (the rightmost address no trusted proxy vouches for beyond,
 *      core/netaddr.h); from any other peer the header is ignored, so a
 *      client cannot pick its own bucket. The per-IP connection limit
 *      stays libmicrohttpd's, on the peer.
 *   8. A write whose route is marked batched (api.h: its handler waits on
 *      nothing but the store) skips the write pool where the store has a
 *      single committer (SQLite): the suspended request is queued with the
 *      store's writes, the committer runs the handler inside its batch and,
 *      after the COMMIT, calls batch_done(), which resumes the connection;
 *      if the batch failed, the answer is replaced by a 503 first. Two
 *      wake-ups a write instead of four (sqlite_commit.c note 8).
 *      http_stop() waits for every such request to be handed back before
 *      it stops libmicrohttpd. */
#include "http/server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "core/arena.h"
#include "core/batch.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "core/num.h"
#include "core/timeutil.h"
#include "core/workq.h"
#include "core/xmalloc.h"
#include "http/router.h"

#define DISCARD_FACTOR 64
#define POOL_SLACK (4 * 1024) /* pool = 2 x max_header_bytes + this (note 4) */
#define ARG_BYTES 128 /* a request line may carry max_header_bytes / ARG_BYTES parameters */
#define REQUEST_ID_MAX 64
#define DRAIN_IDLE_MS 1000
#define JSON_TYPE "application/json; charset=utf-8"
#define SWEEP_MS 200
#define DEADLINE_FDS_MAX (1u << 20)

struct http_server {
    struct MHD_Daemon *d;
    struct router *router;
    const struct api_env *env;
    struct http_opts o;
    struct workq *writes; /* NULL: every handler runs on the event threads */
    struct netaddr_list *trusted; /* --trusted-proxies; NULL: none (design note 7) */
    int port;
    atomic_long in_flight;
    atomic_long batched; /* requests handed to the store's committer, not yet resumed */
    atomic_int stopping; /* set by http_stop(): responses close their connection */
    /* Design note 5. */
    _Atomic int64_t *deadline; /* by socket; NULL without a request timeout */
    unsigned nfds;             /* its length */
    atomic_uint max_fd;        /* highest socket seen, bounds the sweep */
    pthread_mutex_t sweep_mu;
    pthread_t sweeper;
    atomic_int sweep_stop;
    atomic_long cut; /* connections cut by the sweeper */
};

struct request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct api_req req;
    struct api_res res;
    const struct api_route *route; /* set by begin() when the route matched */
    const char *method;            /* libmicrohttpd's string, valid for the request */
    char *body;
    size_t len, cap;
    int too_large;   /* body went over max_body: answer 413 at the end */
    int answered;    /* res holds a response decided early */
    int has_body;    /* the request declares a body (Content-Length > 0 or chunked) */
    int refuse_body; /* answer at once and close rather than read the body */
    int counted;     /* in srv->in_flight: the answer is being made or sent */
    int deferred;    /* 1: on the write pool or in a batch, connection suspended; 2: answer ready */
    struct workq_job job;
    struct batch_job batch; /* design note 8 */
    int64_t start_us;
    int slot; /* metrics route slot: 0 until a route matched */
    char request_id[REQUEST_ID_MAX + 1];
};

static const struct api_route *const route_tables[] = {api_routes_v1, api_routes_classic,
                                                       api_routes_web, NULL};

static int method_bit(const char *m) {
    static const struct {
        const char *name;
        int bit;
    } map[] = {{"GET", API_GET},        {"HEAD", API_HEAD},     {"POST", API_POST},
               {"PUT", API_PUT},        {"DELETE", API_DELETE}, {"PATCH", API_PATCH},
               {"OPTIONS", API_OPTIONS}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(m, map[i].name) == 0) return map[i].bit;
    return 0;
}

static const char *get_header(const struct api_req *r, const char *name) {
    return MHD_lookup_connection_value(r->transport, MHD_HEADER_KIND, name);
}

static const char *get_query(const struct api_req *r, const char *name) {
    const char *v = NULL;
    size_t vlen = 0;
    if (MHD_lookup_connection_value_n(r->transport, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v,
                                      &vlen) != MHD_YES)
        return NULL;
    return v ? v : "";
}

/* Adds up request line, headers and query, roughly as sent. */
static enum MHD_Result count_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size) {
    (void)kind;
    (void)key;
    (void)value;
    *(size_t *)cls += key_size + value_size + 4;
    return MHD_YES;
}

/* Characters a request id from a client may hold: enough for UUIDs, ULIDs
 * and most tracing ids, nothing that needs escaping in a log line. */
static int request_id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-_.:/+", c));
}

/* A request id the client sent is kept if it is 1..REQUEST_ID_MAX of those
 * characters; else one is made: 16 hex digits from a per-thread generator
 * seeded by getrandom. Either way it is echoed in X-Request-Id. */
static void set_request_id(struct request *rq) {
    const char *given = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given) {
        size_t n = strlen(given), i;
        for (i = 0; i < n && i <= REQUEST_ID_MAX; i++)
            if (!request_id_char(given[i])) break;
        if (n > 0 && i == n && n <= REQUEST_ID_MAX) {
            memcpy(rq->request_id, given, n + 1);
            return;
        }
    }
    static _Thread_local uint64_t state;
    while (state == 0)
        if (getrandom(&state, sizeof(state), 0) != sizeof(state)) state = (uint64_t)time_mono_us();
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    snprintf(rq->request_id, sizeof(rq->request_id), "%016llx", (unsigned long long)state);
}

/* ---- slow clients (design note 5) ---------------------------------------- */

static int conn_fd(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

/* Arms (when_ms > 0; only if unarmed unless force) or clears the deadline of conn's socket. */
static void set_deadline(struct http_server *srv, struct MHD_Connection *conn, int64_t when_ms,
                         int force) {
    if (!srv->deadline) return;
    int fd = conn_fd(conn);
    if (fd < 0 || (unsigned)fd >= srv->nfds) return;
    if (when_ms && !force) {
        int64_t none = 0;
        atomic_compare_exchange_strong(&srv->deadline[fd], &none, when_ms);
        return;
    }
    atomic_store(&srv->deadline[fd], when_ms);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)socket_context;
    struct http_server *srv = cls;
    if (!srv->deadline) return;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        int fd = conn_fd(conn);
        unsigned seen = atomic_load(&srv->max_fd);
        while (fd > 0 && (unsigned)fd > seen &&
               !atomic_compare_exchange_weak(&srv->max_fd, &seen, (unsigned)fd)) {
        }
        set_deadline(srv, conn, time_mono_ms() + srv->o.request_timeout_ms, 1);
        return;
    }
    pthread_mutex_lock(&srv->sweep_mu); /* closed: never swept again */
    set_deadline(srv, conn, 0, 1);
    pthread_mutex_unlock(&srv->sweep_mu);
}

/* Design note 4: a request line libmicrohttpd would choke on gets its
 * JSON 431 here, written to the socket directly (nothing else is being
 * sent on it: libmicrohttpd reads a request line only once the previous
 * response is out), and the connection is shut down. */
static void refuse_request_line(struct http_server *srv, struct MHD_Connection *conn,
                                size_t len, size_t args) {
    int fd = conn_fd(conn);
    if (fd < 0) return;
    char body[160], msg[320];
    int bl = snprintf(body, sizeof(body),
                      "{\"error\":{\"code\":\"HEADERS_TOO_LARGE\",\"message\":\"request line of %zu "
                      "bytes and %zu query parameters exceeds %zu bytes or %zu parameters\"}}",
                      len, args, srv->o.max_header_bytes, srv->o.max_header_bytes / ARG_BYTES);
    int ml = snprintf(msg, sizeof(msg),
                      "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: %s\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n\r\n",
                      JSON_TYPE, bl);
    if (bl > 0 && ml > 0 && (size_t)bl < sizeof(body) && (size_t)ml < sizeof(msg)) {
        (void)!send(fd, msg, (size_t)ml, MSG_NOSIGNAL | MSG_MORE);
        (void)!send(fd, body, (size_t)bl, MSG_NOSIGNAL);
    }
    shutdown(fd, SHUT_RDWR);
    LOG_DEBUG("http", "refused a request line of %zu bytes, %zu parameters", len, args);
}

/* libmicrohttpd calls this when a request line has arrived, before it
 * parses the query; what it returns becomes the request's *con_cls, which
 * on_request fills itself. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn) {
    struct http_server *srv = cls;
    size_t len = strlen(uri), args = 0;
    const char *q = strchr(uri, '?');
    for (; q && *q; q++) args += *q == '&' || *q == '?';
    if (len > srv->o.max_header_bytes || args > srv->o.max_header_bytes / ARG_BYTES) {
        refuse_request_line(srv, conn, len, args);
        return NULL;
    }
    set_deadline(srv, conn, time_mono_ms() + srv->o.request_timeout_ms, 0);
    return NULL;
}

static void *sweep(void *arg) {
    struct http_server *srv = arg;
    while (!atomic_load(&srv->sweep_stop)) {
        struct timespec ts = {0, SWEEP_MS * 1000 * 1000};
        nanosleep(&ts, NULL);
        int64_t now = time_mono_ms();
        unsigned top = atomic_load(&srv->max_fd);
        for (unsigned fd = 0; fd <= top && fd < srv->nfds; fd++) {
            int64_t d = atomic_load_explicit(&srv->deadline[fd], memory_order_relaxed);
            if (!d || d > now) continue;
            pthread_mutex_lock(&srv->sweep_mu);
            d = atomic_load(&srv->deadline[fd]);
            if (d && d <= now) {
                atomic_store(&srv->deadline[fd], 0);
                shutdown((int)fd, SHUT_RDWR);
                atomic_fetch_add(&srv->cut, 1);
                LOG_DEBUG("http", "cut a slow client fd=%u", fd);
            }
            pthread_mutex_unlock(&srv->sweep_mu);
        }
    }
    return NULL;
}

/* X-Forwarded-For, every such header joined with commas in order: a
 * first pass (buf NULL) adds up the length, a second copies into buf. */
struct xff {
    char *buf;
    size_t len;
};

static enum MHD_Result join_xff(void *cls, enum MHD_ValueKind kind, const char *key,
                                size_t key_size, const char *value, size_t value_size) {
    (void)kind;
    struct xff *x = cls;
    static const char name[] = "X-Forwarded-For";
    if (key_size != sizeof(name) - 1 || strncasecmp(key, name, key_size) != 0 || !value)
        return MHD_YES;
    if (x->buf && x->len) x->buf[x->len] = ',';
    if (x->len) x->len++;
    if (x->buf) memcpy(x->buf + x->len, value, value_size);
    x->len += value_size;
    return MHD_YES;
}

/* The client's address as a rate-limit key (core/netaddr.h): the socket's
 * peer, or, when the peer is one of --trusted-proxies, the client its
 * X-Forwarded-For names (design note 7). */
static uint64_t peer_key(const struct http_server *srv, struct MHD_Connection *conn,
                         struct arena *a) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct netaddr peer;
    netaddr_from_sockaddr(ci ? ci->client_addr : NULL, &peer);
    if (srv->trusted && netaddr_list_has(srv->trusted, &peer)) {
        struct xff x = {NULL, 0};
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, join_xff, &x);
        if (x.len) {
            x.buf = arena_alloc(a, x.len + 1);
            x.len = 0;
            MHD_get_connection_values_n(conn, MHD_HEADER_KIND, join_xff, &x);
            x.buf[x.len] = '\0';
            netaddr_forwarded_client(srv->trusted, x.buf, &peer);
        }
    }
    return netaddr_key(&peer);
}

static struct request *request_new(struct http_server *srv, struct MHD_Connection *conn,
                                   const char *url, const char *method) {
    struct arena *a = arena_create();
    struct request *rq = arena_calloc(a, 1, sizeof(*rq));
    rq->srv = srv;
    rq->conn = conn;
    rq->start_us = time_mono_us();
    rq->req.arena = a;
    rq->req.env = srv->env;
    rq->method = method;
    rq->req.method = method_bit(method);
    rq->req.path = url;
    rq->req.route = "-";
    rq->req.header = get_header;
    rq->req.query = get_query;
    rq->req.transport = conn;
    rq->req.peer = peer_key(srv, conn, a);
    set_request_id(rq);
    rq->req.request_id = rq->request_id;
    return rq;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes %HH in the path and query values in place, as libmicrohttpd's own
 * unescaper does, except %00: that stays as its three characters. Decoded,
 * a NUL would silently cut the string libmicrohttpd hands us
 * ("/index.html%00.js" would read as "/index.html"); kept, it is refused by path_problem()
 * and is no valid number or token in a query value. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s) {
    (void)cls;
    (void)conn;
    char *o = s;
    for (const char *p = s; *p; p++) {
        int hi = *p == '%' ? hex_value(p[1]) : -1;
        int lo = hi >= 0 ? hex_value(p[2]) : -1;
        if (lo >= 0 && (hi | lo)) {
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return (size_t)(o - s);
}

/* Why a (decoded) path is refused before routing, or NULL when it is fine:
 * no route has a '.' or '..' segment, an empty segment, a backslash or a
 * NUL, so such a path is an attempt to walk out of something (web/ for
 * the pages) and deserves a 400 that says so rather than a 404. */
static const char *path_problem(const char *url) {
    if (url[0] != '/') return "the path must start with '/'";
    if (strstr(url, "%00")) return "the path must not contain a NUL byte";
    if (strchr(url, '\\')) return "the path must not contain a backslash";
    if (strcmp(url, "/") == 0) return NULL;
    for (const char *s = url; *s == '/';) {
        const char *e = strchr(s + 1, '/');
        size_t len = e ? (size_t)(e - s - 1) : strlen(s + 1);
        if (len == 0 && e) return "the path must not contain empty segments (//)";
        if ((len == 1 && s[1] == '.') || (len == 2 && s[1] == '.' && s[2] == '.'))
            return "the path must not contain '.' or '..' segments";
        if (!e) break;
        s = e;
    }
    return NULL;
}

/* Checks everything that needs no body, in this order: header size (431),
 * declared body size (413), the path's shape (400, path_problem()), route
 * (404, 405, 400 for a bad path id), body on
 * GET/DELETE (400). Returns 1 when rq->res already holds the answer, 0 when
 * the handler should run after the body (if any) has arrived. */
static int begin(struct request *rq, const char *url, const char *version) {
    struct http_server *srv = rq->srv;
    struct api_req *r = &rq->req;
    struct api_res *w = &rq->res;
    const char *cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Transfer-Encoding");
    rq->has_body = te != NULL || (cl && strcmp(cl, "0") != 0);
    size_t hdr = strlen(url) + strlen(version) + 16;
    MHD_get_connection_values_n(rq->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, count_bytes,
                                &hdr);
    if (hdr > srv->o.max_header_bytes) {
        api_error(r, w, 431, "HEADERS_TOO_LARGE", "request line and headers exceed %zu bytes",
                  srv->o.max_header_bytes);
        return 1;
    }
    int64_t clen = 0;
    if (cl && (num_parse_i64(cl, 0, &clen) || clen < 0)) {
        api_error(r, w, 400, "INVALID_REQUEST", "Content-Length is not a valid length");
        return 1;
    }
    if ((uint64_t)clen > srv->o.max_body) {
        rq->refuse_body = 1;
        api_error(r, w, 413, "PAYLOAD_TOO_LARGE", "request body exceeds %zu bytes",
                  srv->o.max_body);
        return 1;
    }
    if (clen > 0) {
        rq->cap = (size_t)clen + 1;
        rq->body = arena_alloc(r->arena, rq->cap);
    }
    const char *bad_path = path_problem(url);
    if (bad_path) {
        api_error(r, w, 400, "INVALID_REQUEST", "%s", bad_path);
        return 1;
    }
    struct route_match m;
    char allow[64];
    switch (router_match(srv->router, r->method, url, &m)) {
    case ROUTE_NOT_FOUND: api_error(r, w, 404, "NOT_FOUND", "no route for %s", url); return 1;
    case ROUTE_BAD_PARAM:
        api_error(r, w, 400, "INVALID_REQUEST", "path parameter \"%s\" must be a positive integer",
                  m.bad_param);
        return 1;
    case ROUTE_BAD_METHOD:
        router_allow_header(m.allow, allow, sizeof(allow));
        api_error(r, w, 405, "METHOD_NOT_ALLOWED", "allowed methods: %s", allow);
        api_add_header(w, "Allow", arena_strdup(r->arena, allow));
        return 1;
    default: break;
    }
    rq->route = m.route;
    rq->slot = m.slot;
    r->route = m.route->pattern;
    memcpy(r->params, m.params, sizeof(m.params));
    if (rq->has_body && (r->method & (API_GET | API_HEAD | API_DELETE))) {
        api_error(r, w, 400, "INVALID_REQUEST", "%s requests take no body",
                  r->method == API_DELETE ? "DELETE" : "GET");
        return 1;
    }
    return 0;
}

/* Appends a chunk of body. Returns 0, or -1 when the client has sent so much
 * past the limit that the connection should be dropped. */
static int body_append(struct request *rq, const char *data, size_t n) {
    size_t limit = rq->srv->o.max_body;
    if (rq->answered && !rq->too_large) { /* refused already: read and drop */
        rq->len += n;
        if (rq->len > limit) rq->too_large = 1;
        return 0;
    }
    if (rq->too_large || rq->len + n > limit) {
        rq->too_large = 1;
        rq->len += n;
        return rq->len > DISCARD_FACTOR * limit ? -1 : 0;
    }
    if (rq->len + n + 1 > rq->cap) {
        size_t cap = rq->cap ? rq->cap * 2 : 1024;
        while (cap < rq->len + n + 1) cap *= 2;
        if (cap > limit + 1) cap = limit + 1;
        char *nb = arena_alloc(rq->req.arena, cap);
        if (rq->len) memcpy(nb, rq->body, rq->len);
        rq->body = nb;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    return 0;
}

/* Once the whole request is in, on its event thread: the 413 of a body
 * over the limit, else the route's precheck (design note 6). Returns 1
 * when rq->res holds the answer, 0 when the handler is to run. */
static int precheck(struct request *rq) {
    struct api_req *r = &rq->req;
    if (rq->too_large) { /* also over an answer decided early */
        api_error(r, &rq->res, 413, "PAYLOAD_TOO_LARGE", "request body exceeds %zu bytes",
                  rq->srv->o.max_body);
        return 1;
    }
    if (rq->answered) return 1;
    if (rq->body) {
        rq->body[rq->len] = '\0';
        r->body = rq->body;
        r->body_len = rq->len;
    }
    if (rq->route->precheck) rq->route->precheck(r, &rq->res);
    return rq->res.status != 0;
}

static void dispatch(struct request *rq) {
    rq->route->handler(&rq->req, &rq->res);
    if (rq->res.status == 0) api_fail(&rq->req, &rq->res, ERR_INTERNAL, NULL);
}

/* A request counts as in flight from the moment its answer is being made
 * until it has been sent. One still waiting for its body does not: at
 * shutdown a client that stopped sending halfway is cut like an idle one. */
static void count_in_flight(struct request *rq) {
    rq->counted = 1;
    atomic_fetch_add(&rq->srv->in_flight, 1);
    metrics_in_flight(1);
}

static enum MHD_Result respond(struct request *rq) {
    struct api_res *w = &rq->res;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(w->body_len, (void *)w->body, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            w->content_type ? w->content_type : JSON_TYPE);
    MHD_add_response_header(resp, "X-Request-Id", rq->request_id);
    if (atomic_load_explicit(&rq->srv->stopping, memory_order_relaxed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    for (int i = 0; i < w->nheaders; i++)
        MHD_add_response_header(resp, w->headers[i].name, w->headers[i].value);
    enum MHD_Result ret = MHD_queue_response(rq->conn, (unsigned)w->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* On the store's committer, inside a batch (design note 8). */
static void run_batch_handler(void *arg) {
    dispatch(arg);
}

/* Hands a suspended request's connection back with its answer made;
 * libmicrohttpd then calls on_request() once more to send it. rq may be
 * gone as soon as this returns. */
static void hand_back(struct request *rq) {
    rq->deferred = 2; /* published to the event thread by resume's lock */
    MHD_resume_connection(rq->conn);
}

/* On a write pool thread: make the answer, then hand the connection back. */
static void run_deferred(void *arg) {
    struct request *rq = arg;
    dispatch(rq);
    hand_back(rq);
}

/* On the store's committer, after the batch the request ran in (design
 * note 8): an answer made from writes that were rolled back with the batch
 * becomes a 503, then the connection is handed back. */
static void batch_done(void *arg, int err) {
    struct request *rq = arg;
    struct http_server *srv = rq->srv; /* rq is gone once resumed */
    if (err) {
        memset(&rq->res, 0, sizeof(rq->res));
        api_fail(&rq->req, &rq->res, ERR_UNAVAILABLE, "the write could not be committed; try again");
    }
    hand_back(rq);
    atomic_fetch_sub(&srv->batched, 1);
}

/* Design note 8: hands a suspended request to the store's committer; 0, or
 * nonzero when the store cannot take it. */
static int run_batched(struct request *rq) {
    if (!rq->route->batched) return -1;
    rq->batch.run = run_batch_handler;
    rq->batch.done = batch_done;
    rq->batch.arg = rq;
    atomic_fetch_add(&rq->srv->batched, 1);
    if (api_run_batched(rq->srv->env, &rq->batch) == 0) return 0;
    atomic_fetch_sub(&rq->srv->batched, 1);
    return -1;
}

static int wants_pool(const struct request *rq) {
    return rq->srv->writes && !(rq->req.method & (API_GET | API_HEAD | API_OPTIONS));
}

/* libmicrohttpd calls this at least twice per request: first with the
 * headers, then with each chunk of body, then once more with none. A
 * response queued on the first call makes it drop keep-alive (it cannot know
 * the body was not wanted), so the first call only queues one when it
 * refuses a body outright. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    struct request *rq = *con_cls;
    if (!rq) {
        rq = request_new(cls, conn, url, method);
        *con_cls = rq;
        rq->answered = begin(rq, url, version);
        if (!rq->refuse_body) return MHD_YES;
        set_deadline(rq->srv, conn, 0, 1);
        count_in_flight(rq);
        return respond(rq);
    }
    if (*upload_data_size) {
        int rc = body_append(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return rc ? MHD_NO : MHD_YES;
    }
    if (rq->deferred) return respond(rq); /* resumed: the pool made the answer */
    set_deadline(rq->srv, conn, 0, 1); /* the request is in whole */
    count_in_flight(rq);
    if (precheck(rq)) return respond(rq);
    if (wants_pool(rq)) {
        rq->deferred = 1;
        rq->job.fn = run_deferred;
        rq->job.arg = rq;
        MHD_suspend_connection(conn);
        if (run_batched(rq) != 0) workq_push(rq->srv->writes, &rq->job);
        return MHD_YES;
    }
    dispatch(rq);
    return respond(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    struct request *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    int64_t latency_us = time_mono_us() - rq->start_us;
    if (rq->srv->o.access_log && log_level <= LOG_LEVEL_INFO) {
        struct log_access la = {.request_id = rq->request_id,
                                .method = rq->method,
                                .route = rq->route ? rq->req.route : "unmatched",
                                .status = rq->res.status,
                                .latency_us = latency_us,
                                .user_id = rq->req.user_id,
                                .aborted = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK};
        log_access(&la);
    }
    if (rq->srv->o.count_requests && rq->res.status) /* an answer was made */
        metrics_http_observe(rq->slot, rq->req.method ? __builtin_ctz((unsigned)rq->req.method) : 0,
                             rq->res.status, latency_us);
    if (rq->counted) {
        atomic_fetch_sub(&rq->srv->in_flight, 1);
        metrics_in_flight(-1);
    }
    arena_destroy(rq->req.arena);
}

/* libmicrohttpd hands us its own printf format; it is a literal in its code. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    LOG_WARN("http", "libmicrohttpd: %s", msg);
}
#pragma GCC diagnostic pop

/* "host:port" or "[v6]:port" -> sockaddr. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, int *is_v6, char *errbuf,
                        size_t errlen) {
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof(host)) goto bad;
    size_t hl = (size_t)(colon - listen);
    memcpy(host, listen, hl);
    host[hl] = '\0';
    if (host[0] == '[') {
        if (hl < 3 || host[hl - 1] != ']') goto bad;
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    int64_t port;
    if (num_parse_i64(colon + 1, 0, &port) || port < 0 || port > 65535) goto bad;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res) goto bad;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *is_v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
bad:
    snprintf(errbuf, errlen, "invalid --listen address \"%s\" (want host:port)", listen);
    return ERR_INVALID;
}

/* Raises the open file limit to its hard limit; returns the limit now in force. */
static unsigned raise_nofile(unsigned want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return DEADLINE_FDS_MAX;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < (rlim_t)want + 64)
        LOG_WARN("http",
                 "open file limit %llu is below --max-connections %u; connections past it will "
                 "fail. Raise the hard limit (ulimit -Hn, LimitNOFILE=)",
                 (unsigned long long)rl.rlim_cur, want);
    return rl.rlim_cur < DEADLINE_FDS_MAX ? (unsigned)rl.rlim_cur : DEADLINE_FDS_MAX;
}

/* Frees a server whose daemon never started (http_start's failures). */
static void free_unstarted(struct http_server *srv) {
    workq_stop(srv->writes);
    router_free(srv->router);
    if (srv->deadline) pthread_mutex_destroy(&srv->sweep_mu);
    free(srv->deadline);
    netaddr_list_free(srv->trusted);
    free(srv);
}

int http_start(const struct http_opts *o, const struct api_env *env, struct http_server **out,
               char *errbuf, size_t errlen) {
    struct sockaddr_storage ss;
    int is_v6 = 0;
    if (parse_listen(o->listen, &ss, &is_v6, errbuf, errlen)) return ERR_INVALID;
    unsigned nofile = raise_nofile(o->max_connections);

    struct netaddr_list *trusted = NULL;
    if (o->trusted_proxies && *o->trusted_proxies) {
        char why[160];
        if (netaddr_list_parse(o->trusted_proxies, &trusted, why, sizeof(why))) {
            snprintf(errbuf, errlen, "invalid --trusted-proxies: %s", why);
            return ERR_INVALID;
        }
    }
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    srv->o = *o;
    srv->trusted = trusted;
    if (o->request_timeout_ms > 0) {
        srv->nfds = nofile;
        srv->deadline = xcalloc(nofile, sizeof(*srv->deadline));
        pthread_mutex_init(&srv->sweep_mu, NULL);
    }
    srv->env = env;
    srv->router = router_create(route_tables);
    const char *patterns[METRICS_ROUTES_MAX];
    metrics_set_routes(patterns, router_patterns(srv->router, patterns, METRICS_ROUTES_MAX - 1));
    atomic_init(&srv->in_flight, 0);
    atomic_init(&srv->batched, 0);
    atomic_init(&srv->stopping, 0);

    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME;
    if (o->write_workers > 0 && !(srv->writes = workq_start(o->write_workers, "write"))) {
        snprintf(errbuf, errlen, "cannot start %d write workers", o->write_workers);
        free_unstarted(srv);
        return ERR_IO;
    }
    if (is_v6) flags |= MHD_USE_IPv6;
    size_t pool = 2 * o->max_header_bytes + POOL_SLACK;
    srv->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)o->workers, MHD_OPTION_CONNECTION_LIMIT, o->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u, MHD_OPTION_STRICT_FOR_CLIENT, 1,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
        NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_URI_LOG_CALLBACK,
        on_request_line, srv, MHD_OPTION_END);
    if (srv->d && srv->deadline && pthread_create(&srv->sweeper, NULL, sweep, srv) != 0) {
        MHD_stop_daemon(srv->d);
        srv->d = NULL;
    }
    if (!srv->d) {
        snprintf(errbuf, errlen, "cannot listen on %s (address in use or not available?)",
                 o->listen);
        free_unstarted(srv);
        return ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : 0;
    LOG_INFO("http",
             "listening addr=%s port=%d workers=%d write_workers=%d max_connections=%u per_ip=%u",
             o->listen, srv->port, o->workers, o->write_workers, o->max_connections,
             o->max_connections_per_ip);
    *out = srv;
    return 0;
}

int http_port(const struct http_server *s) {
    return s->port;
}

/* Stop accepting, then wait until no request is in flight. Connections
 * still open may be halfway through sending a request we cannot see yet, so
 * they get up to DRAIN_IDLE_MS to turn into one; every response sent from
 * now on closes its connection. Nothing waits past grace_ms. */
void http_stop(struct http_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    /* Stop taking connections by shutting the listen socket down rather than
     * with MHD_quiesce_daemon: in thread-pool mode that races with the
     * workers removing the socket from their epoll sets, and libmicrohttpd
     * 0.9.75 aborts when it loses ("Failed to remove listen FD from epoll
     * set", seen in CI). After shutdown() the kernel refuses new
     * connections at once; libmicrohttpd closes the socket in
     * MHD_stop_daemon. */
    const union MHD_DaemonInfo *li = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_LISTEN_FD);
    if (li && li->listen_fd != MHD_INVALID_SOCKET) shutdown(li->listen_fd, SHUT_RD);
    int64_t start = time_mono_ms(), deadline = start + s->o.grace_ms;
    int64_t idle_deadline = start + (s->o.grace_ms < DRAIN_IDLE_MS ? s->o.grace_ms : DRAIN_IDLE_MS);
    long n;
    int reported = 0;
    for (;;) {
        int64_t now = time_mono_ms();
        n = atomic_load(&s->in_flight);
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        unsigned conns = info ? info->num_connections : 0;
        if (now >= deadline || (n == 0 && (conns == 0 || now >= idle_deadline))) break;
        if (!reported && now - start >= DRAIN_IDLE_MS) {
            LOG_WARN("http", "draining: %ld request(s) in flight, %u connection(s) open", n, conns);
            reported = 1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (n > 0) LOG_WARN("http", "shutdown grace over with %ld request(s) still in flight", n);
    if (s->deadline) {
        atomic_store(&s->sweep_stop, 1);
        pthread_join(s->sweeper, NULL);
    }
    /* Writes already on the pool finish (the store is still open) and resume
     * their connections before libmicrohttpd closes them: it must not be
     * stopped with a connection still suspended. */
    workq_stop(s->writes);
    while (atomic_load(&s->batched) > 0) { /* the store's committer finishes them */
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->d);
    if (s->deadline) {
        pthread_mutex_destroy(&s->sweep_mu);
        free(s->deadline);
        LOG_INFO("http", "slow clients cut=%ld", atomic_load(&s->cut));
    }
    router_free(s->router);
    netaddr_list_free(s->trusted);
    free(s);
    LOG_INFO("http", "stopped");
}
