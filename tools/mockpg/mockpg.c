/* mockpg.c -- a payment-gateway stand-in with fault injection, for tests and
 * demos (DESIGN.md 1; docs/gateway.md).
 *
 *   mockpg --listen 127.0.0.1:9100
 *
 *   POST /v1/charges {"idempotencyKey","userId","amount"}
 *        200 {"chargeId","idempotencyKey","status":"APPROVED",...}
 *        402 {"idempotencyKey","status":"DECLINED",...}
 *        The same idempotencyKey again returns the first outcome: a key is
 *        charged at most once, whatever the faults do.
 *   GET  /v1/charges/{idempotencyKey}   the charge, or 404 {"status":"NOT_FOUND"}
 *   PUT  /admin/faults {"failRate","latencyMs","declineRate","down"}  (any subset)
 *   GET  /admin/faults                  the faults in force
 *   GET  /admin/charges                 {"charges":[...]} every charge, in order
 *   GET  /admin/stats                   {"chargeRequests","lookupRequests"}: /v1
 *                                       requests received, whatever their fate
 *
 * Faults (they apply to the /v1 routes only, never to /admin):
 *   down        every /v1 request gets 503 {"status":"UNAVAILABLE"} at once,
 *               nothing is recorded: a client fails fast.
 *   failRate    this share of new charges gets 500 {"status":"ERROR"} and is
 *               not recorded (the gateway failed before charging).
 *   declineRate this share of new charges is DECLINED (recorded: a retry with
 *               the key is declined again).
 *   latencyMs   every /v1 request waits this long before its answer is
 *               sent. A new charge is decided and recorded first, so a client
 *               that gives up (or dies) meanwhile has been charged, and a
 *               lookup by its key finds the charge.
 *
 * Not here: anything concertd does; persistence (all state is in memory and
 * dies with the process). Thread-safe: one thread per connection (so a slow
 * answer holds up nobody else), all state under one mutex. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX 4096
#define KEY_MAX 128

struct charge {
    char key[KEY_MAX + 1];
    char id[32];
    long long user_id, amount;
    int approved;
    long long at_ms;
};

static struct {
    pthread_mutex_t mu;
    struct charge *charges;
    size_t n, cap;
    double fail_rate, decline_rate;
    long long latency_ms;
    int down;
    unsigned long long seq;
    long long charge_requests, lookup_requests;
    unsigned short rng[3];
} st = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct req {
    char body[BODY_MAX + 1];
    size_t len;
    int too_big;
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) continue;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *o) {
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text) return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_status(struct MHD_Connection *c, unsigned status, const char *what) {
    return send_json(c, status, json_pack("{ss}", "status", what));
}

/* Under st.mu. */
static json_t *charge_json(const struct charge *ch) {
    json_t *o = json_pack("{ss ss sI sI sI}", "idempotencyKey", ch->key, "status",
                          ch->approved ? "APPROVED" : "DECLINED", "userId", (json_int_t)ch->user_id,
                          "amount", (json_int_t)ch->amount, "at", (json_int_t)ch->at_ms);
    if (ch->approved) json_object_set_new(o, "chargeId", json_string(ch->id));
    return o;
}

static struct charge *find(const char *key) {
    for (size_t i = 0; i < st.n; i++)
        if (strcmp(st.charges[i].key, key) == 0) return &st.charges[i];
    return NULL;
}

/* Decides and records a new charge under st.mu; NULL when failRate says the
 * gateway failed (nothing recorded). */
static struct charge *record(const char *key, long long user_id, long long amount) {
    if (st.fail_rate > 0 && erand48(st.rng) < st.fail_rate) return NULL;
    if (st.n == st.cap) {
        st.cap = st.cap ? 2 * st.cap : 64;
        st.charges = realloc(st.charges, st.cap * sizeof(*st.charges));
        if (!st.charges) abort();
    }
    struct charge *ch = &st.charges[st.n++];
    memset(ch, 0, sizeof(*ch));
    snprintf(ch->key, sizeof(ch->key), "%s", key);
    snprintf(ch->id, sizeof(ch->id), "ch_%llu", ++st.seq);
    ch->user_id = user_id;
    ch->amount = amount;
    ch->approved = !(st.decline_rate > 0 && erand48(st.rng) < st.decline_rate);
    ch->at_ms = now_ms();
    return ch;
}

static enum MHD_Result post_charge(struct MHD_Connection *c, struct req *rq) {
    json_error_t jerr;
    json_t *in = json_loadb(rq->body, rq->len, 0, &jerr);
    const char *key = NULL;
    json_int_t user_id = 0, amount = 0;
    if (!in ||
        json_unpack(in, "{ss sI sI}", "idempotencyKey", &key, "userId", &user_id, "amount",
                    &amount) != 0 ||
        !*key || strlen(key) > KEY_MAX || amount <= 0) {
        json_decref(in);
        return send_status(c, 400, "INVALID_REQUEST");
    }
    pthread_mutex_lock(&st.mu);
    long long latency = st.latency_ms;
    struct charge *ch = find(key);
    if (!ch) ch = record(key, user_id, amount);
    json_t *out = ch ? charge_json(ch) : NULL;
    unsigned status = !ch ? 500 : ch->approved ? 200 : 402;
    pthread_mutex_unlock(&st.mu);
    json_decref(in);
    sleep_ms(latency);
    if (!out) return send_status(c, 500, "ERROR");
    return send_json(c, status, out);
}

static enum MHD_Result get_charge(struct MHD_Connection *c, const char *key) {
    pthread_mutex_lock(&st.mu);
    long long latency = st.latency_ms;
    struct charge *ch = find(key);
    json_t *out = ch ? charge_json(ch) : NULL;
    pthread_mutex_unlock(&st.mu);
    sleep_ms(latency);
    if (!out) return send_status(c, 404, "NOT_FOUND");
    return send_json(c, 200, out);
}

static enum MHD_Result list_charges(struct MHD_Connection *c) {
    json_t *arr = json_array();
    pthread_mutex_lock(&st.mu);
    for (size_t i = 0; i < st.n; i++) json_array_append_new(arr, charge_json(&st.charges[i]));
    pthread_mutex_unlock(&st.mu);
    return send_json(c, 200, json_pack("{so}", "charges", arr));
}

static json_t *faults_json(void) {
    return json_pack("{sf sI sf sb}", "failRate", st.fail_rate, "latencyMs",
                     (json_int_t)st.latency_ms, "declineRate", st.decline_rate, "down", st.down);
}

static int rate(json_t *in, const char *name, double *out) {
    json_t *v = json_object_get(in, name);
    if (!v) return 0;
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) return -1;
    *out = json_number_value(v);
    return 0;
}

static enum MHD_Result put_faults(struct MHD_Connection *c, struct req *rq) {
    json_t *in = json_loadb(rq->body, rq->len, 0, NULL);
    if (!json_is_object(in)) {
        json_decref(in);
        return send_status(c, 400, "INVALID_REQUEST");
    }
    pthread_mutex_lock(&st.mu);
    double fail = st.fail_rate, decline = st.decline_rate;
    long long latency = st.latency_ms;
    int down = st.down, bad = rate(in, "failRate", &fail) || rate(in, "declineRate", &decline);
    json_t *v = json_object_get(in, "latencyMs");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) bad = 1;
    if (v && !bad) latency = json_integer_value(v);
    v = json_object_get(in, "down");
    if (v && !json_is_boolean(v)) bad = 1;
    if (v && !bad) down = json_is_true(v);
    if (!bad) {
        st.fail_rate = fail;
        st.decline_rate = decline;
        st.latency_ms = latency;
        st.down = down;
    }
    json_t *out = bad ? NULL : faults_json();
    pthread_mutex_unlock(&st.mu);
    json_decref(in);
    if (bad) return send_status(c, 400, "INVALID_REQUEST");
    return send_json(c, 200, out);
}

static enum MHD_Result route(struct MHD_Connection *c, const char *method, const char *url,
                             struct req *rq) {
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0,
        put = strcmp(method, "PUT") == 0;
    if (rq->too_big) return send_status(c, 413, "PAYLOAD_TOO_LARGE");
    if (strncmp(url, "/admin/", 7) == 0) {
        if (strcmp(url, "/admin/charges") == 0 && get) return list_charges(c);
        if (strcmp(url, "/admin/faults") == 0 && put) return put_faults(c, rq);
        if (strcmp(url, "/admin/stats") == 0 && get) {
            pthread_mutex_lock(&st.mu);
            json_t *out = json_pack("{sI sI}", "chargeRequests", (json_int_t)st.charge_requests,
                                    "lookupRequests", (json_int_t)st.lookup_requests);
            pthread_mutex_unlock(&st.mu);
            return send_json(c, 200, out);
        }
        if (strcmp(url, "/admin/faults") == 0 && get) {
            pthread_mutex_lock(&st.mu);
            json_t *out = faults_json();
            pthread_mutex_unlock(&st.mu);
            return send_json(c, 200, out);
        }
        return send_status(c, 404, "NO_ROUTE");
    }
    if (strncmp(url, "/v1/charges", 11) != 0) return send_status(c, 404, "NO_ROUTE");
    pthread_mutex_lock(&st.mu);
    int down = st.down;
    if (post) st.charge_requests++;
    if (get) st.lookup_requests++;
    pthread_mutex_unlock(&st.mu);
    if (down) return send_status(c, 503, "UNAVAILABLE");
    if (strcmp(url, "/v1/charges") == 0 && post) return post_charge(c, rq);
    if (strncmp(url, "/v1/charges/", 12) == 0 && url[12] && get) return get_charge(c, url + 12);
    return send_status(c, 404, "NO_ROUTE");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls) {
    (void)cls;
    (void)version;
    struct req *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq) return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*size) {
        if (rq->len + *size > BODY_MAX) {
            rq->too_big = 1;
        } else {
            memcpy(rq->body + rq->len, data, *size);
            rq->len += *size;
        }
        *size = 0;
        return MHD_YES;
    }
    rq->body[rq->len] = '\0';
    return route(c, method, url, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static int parse_listen(const char *s, struct sockaddr_in *sa) {
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host)) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535) return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *listen = "127.0.0.1:9100";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else {
            fprintf(stderr, "usage: mockpg [--listen IPv4:PORT]   (see docs/gateway.md)\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    struct sockaddr_in sa;
    if (parse_listen(listen, &sa)) {
        fprintf(stderr, "mockpg: bad --listen %s (want IPv4:PORT)\n", listen);
        return 2;
    }
    long long seed = now_ms() ^ getpid();
    memcpy(st.rng, &seed, sizeof(st.rng));
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mockpg: cannot listen on %s\n", listen);
        return 1;
    }
    fprintf(stderr, "mockpg: listening on %s\n", listen);
    int sig;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    free(st.charges);
    return 0;
}
