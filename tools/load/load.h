/* load.h -- what concert-load's modules share: the options of a run, the
 * virtual user, the request a scenario asks for, and the metrics each
 * worker thread keeps.
 *
 * Modules: main.c (command line, the controller that sets how many users
 * run, thresholds), engine.c (one epoll loop per thread: connections,
 * timers, executors), scenario.c (the users' flows as state machines),
 * http1.c (writing requests, parsing responses), jscan.c (reading fields
 * out of response bodies), hist.c (latency histogram), report.c (text and
 * JSON summary), html.c (the HTML report with SVG charts). */
#pragma once
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"

/* Every request a scenario sends is one of these routes: the per-route
 * breakdown of the report. */
enum route {
    R_ENTER,
    R_POLL,
    R_LEAVE,
    R_CONCERTS,
    R_SESSIONS,
    R_SEATS,
    R_HOLD,
    R_PAY,
    R_BALANCE,
    R_CHARGE,
    R_TOKEN,
    R_STATUS,
    R_SCHEDULES,
    R_RESERVE,
    R_GET,
    R_COUNT
};
extern const char *const load_route_name[R_COUNT];

/* The checks scenarios make (k6's check()): what a user would notice. */
enum check {
    C_ENTERED,
    C_POLLED,
    C_ADMITTED,
    C_CONCERTS,
    C_SESSIONS,
    C_SEATS,
    C_HELD,
    C_PAID,
    C_BALANCE,
    C_CHARGED,
    C_TOKEN,
    C_STATUS,
    C_SCHEDULES,
    C_GOT,
    C_COUNT
};
extern const char *const load_check_name[C_COUNT];

enum scenario {
    S_QUEUE_FLOOD,
    S_BOOKING,
    S_FULL_FLOW,
    S_BALANCE,
    S_CLASSIC_FLOW,
    S_CLASSIC_BALANCE,
    S_GET,
    S_COUNT
};
extern const char *const load_scenario_name[S_COUNT];

enum executor { X_CONSTANT, X_RAMPING, X_ITERATIONS, X_ARRIVAL };
extern const char *const load_executor_name[4];

#define MAX_STAGES 32
#define MAX_SOURCES 64
#define MAX_THRESHOLDS 16
#define MAX_HEADERS 8

struct stage {
    int64_t dur_us;
    long target;
};

/* A threshold: metric (on route, or all routes when route < 0) op value. */
enum tmetric { T_PCT, T_AVG, T_MAX, T_FAILED, T_CHECKS, T_RPS };
struct threshold {
    char text[96];
    enum tmetric metric;
    double pct;   /* T_PCT: the percentile */
    int route;    /* -1: every route */
    int less;     /* 1: value < limit passes; 0: value > limit passes */
    int eq;       /* <= or >=: the limit itself passes too */
    double limit; /* ms for latencies, a ratio for rates, req/s for T_RPS */
};

struct opts {
    /* target */
    char host[256];
    int port;
    struct sockaddr_in addr;
    struct in_addr sources[MAX_SOURCES];
    int nsources;
    /* what and how */
    enum scenario scenario;
    enum executor executor;
    const char *test; /* the --test preset, or NULL */
    long vus, conns, iterations;
    double rate; /* iterations per second (X_ARRIVAL) */
    int threads;
    int64_t duration_us, grace_us, timeout_us;
    struct stage stages[MAX_STAGES];
    int nstages;
    /* scenario settings */
    long user_base, users, concert;
    int64_t poll_us, think_us, wait_us;
    long limit;
    char token_pattern[32];
    const char *method;
    char **paths; /* S_GET: paths to cycle through */
    size_t npaths;
    const char *body;
    char **tokens; /* --tokens: user n sends line n as QUEUE-TOKEN */
    size_t ntokens;
    char headers[MAX_HEADERS][256];
    int nheaders;
    /* verdicts and output */
    struct threshold th[MAX_THRESHOLDS];
    int nth;
    const char *json_path, *html_path, *svg_dir;
    int quiet;
};

/* One virtual user: a state machine, not a thread. */
enum vphase { V_IDLE, V_READY, V_WAITCONN, V_INFLIGHT, V_SLEEP, V_FINISHED };
struct vu {
    uint32_t idx;  /* index within its thread */
    long user;     /* user id: user_base + global number */
    uint8_t phase; /* enum vphase */
    uint8_t step;  /* the scenario's step */
    uint8_t attempts;
    uint8_t nseats;
    uint8_t has_token;
    long iters;
    int64_t iter_start, deadline, ready_at;
    int64_t concert, session, rid, price, balance, after, total;
    int64_t seats[2];
    char token[64];
};

/* A request as a scenario describes it; http1.c writes it out. */
struct req {
    enum route route;
    const char *method;
    char path[192];
    char body[192];
    const char *token; /* QUEUE-TOKEN header, or NULL */
    int expect[3];     /* statuses this client expects; 0 ends the list */
};

/* A response as scenarios see it. status 0: no response (connection error
 * or timeout). body is NUL-terminated. */
struct resp {
    int status;
    const char *body;
    size_t len;
};

/* One second of the run, per thread; merged by the main thread. */
struct second {
    uint64_t reqs, failed, iters;
    struct hist h;
};

/* What one thread measured. */
struct tmetrics {
    struct hist all;
    struct hist route[R_COUNT];
    uint64_t route_reqs[R_COUNT], route_failed[R_COUNT];
    uint64_t status[6]; /* 0 (no response), 1xx..5xx */
    uint64_t check_pass[C_COUNT], check_fail[C_COUNT];
    uint64_t reqs, failed, iters, interrupted, dropped, conn_errors, timeouts, connects;
    uint64_t bytes_in, bytes_out;
    struct second *sec;
    size_t nsec;
};

/* What a scenario step may do next. */
enum act { A_SEND, A_SLEEP, A_DONE };

struct worker;
/* Per-thread context scenarios use: options, randomness, metrics. */
struct sctx {
    const struct opts *o;
    uint64_t rng;
    struct tmetrics *m;
    int64_t now;
};

uint64_t load_rand(struct sctx *c);
void load_check(struct sctx *c, enum check k, int ok);
int64_t load_now_us(void);

/* scenario.c */
/* Decides what vu does next, given the answer to its last request (r), or
 * r == NULL at the start of an iteration or when a sleep ends. A_SLEEP sets
 * *sleep_us. A_SEND: build the request with scn_request(). */
enum act scn_step(struct vu *v, struct sctx *c, const struct resp *r, int64_t *sleep_us);
void scn_request(const struct vu *v, struct sctx *c, struct req *out);
/* Sets up a user before its first iteration (pre-issued tokens). */
void scn_init_vu(struct vu *v, const struct opts *o);

/* engine.c: the run, shared between the controller and the workers. */
struct run {
    const struct opts *o;
    int64_t t0;
    atomic_long target; /* VUs that should run now (constant and ramping) */
    atomic_int stop;    /* 1: start no new requests, finish in-flight ones */
    atomic_int aborted; /* breakpoint or signal: stop at once */
    struct worker **w;
    int nw;
    size_t nsec;   /* capacity of every per-second array */
    long *vus_sec; /* VUs running, per second (max seen) */
    long *target_sec;
};
int engine_start(struct run *r);
/* Seconds every worker has finished (series entries below it are final). */
size_t engine_done_seconds(struct run *r);
long engine_running(struct run *r);
int engine_all_finished(struct run *r);
void engine_join(struct run *r);
/* Merges the workers' metrics into m (m->sec gets r->nsec entries). */
void engine_merge(struct run *r, struct tmetrics *m);
void engine_merge_second(struct run *r, size_t s, struct second *out);
void engine_free(struct run *r);

/* The outcome of a run, for the reports (report.c, html.c). */
struct result {
    struct tmetrics m; /* every worker's, merged; m.sec has nsec entries */
    double secs;       /* from the start until the last worker stopped */
    size_t nsec;       /* seconds in the series */
    long *vus_sec, *target_sec;
    long vus_max;
    int th_ok[MAX_THRESHOLDS];
    double th_value[MAX_THRESHOLDS];
    int thresholds_ok;
    int broke;         /* breakpoint: the criteria were crossed */
    double broke_at_s; /* seconds into the run */
    long broke_vus;    /* users running then */
    double broke_rps;  /* req/s in the seconds before */
    double best_rps;   /* breakpoint: the highest req/s of a second that passed */
    long best_vus;
    char broke_why[160];
    char started[32]; /* UTC, ISO 8601 */
};

/* main.c: the value a threshold looks at, in its unit (ms, ratio, req/s). */
double load_threshold_value(const struct threshold *t, const struct tmetrics *m, double secs);
const char *load_stages_text(const struct opts *o, char *buf, size_t cap);

/* report.c */
enum { LAT_AVG, LAT_MIN, LAT_MED, LAT_P90, LAT_P95, LAT_P99, LAT_MAX, LAT_N };
extern const char *const report_lat_name[LAT_N];
/* avg, min, med, p90, p95, p99, max of h, in ms. */
void report_lat(const struct hist *h, double out[LAT_N]);
void report_text(FILE *f, const struct opts *o, const struct result *res);
int report_json(const char *path, const struct opts *o, const struct result *res);
/* html.c */
int report_html(const char *path, const struct opts *o, const struct result *res);
/* The four charts as standalone SVG files dir/{throughput,latency,errors,vus}.svg. */
int report_svg(const char *dir, const struct opts *o, const struct result *res);
