/* main.c -- concert-load: the command line, the controller and the verdict.
 *
 *   concert-load --target http://127.0.0.1:8080 --scenario NAME [--vus N]
 *       [--duration 30s] [--stages 10s:100,30s:1000,10s:0] [--rate N/s]
 *       [--iterations N] [--test load|stress|breakpoint|spike]
 *       [--threshold 'p95<50ms'] [--json FILE] [--html FILE] ...
 *
 * Responsible for: parsing and checking options (a bad one stops with a
 * message naming it, exit 2), choosing the executor, the controller loop
 * (the target number of users over time, when to stop, the breakpoint
 * search), thresholds, and the exit status: 0 when every threshold passed,
 * 1 when one failed, 2 on a usage or set-up error. Not here: the load
 * itself (engine.c), the users' flows (scenario.c), the reports. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

const char *const load_scenario_name[S_COUNT] = {
    "queue-flood",       "booking",         "full-flow", "balance",
    "classic-full-flow", "classic-balance", "get"};
const char *const load_executor_name[4] = {"constant-vus", "ramping-vus", "per-vu-iterations",
                                           "constant-arrival-rate"};

static const char usage[] =
    "usage: concert-load --target URL --scenario NAME [options]\n"
    "\n"
    "Scenarios (DESIGN.md 6, loadtest/k6/):\n"
    "  queue-flood        enter the line, poll every --poll (3s) until ACTIVATED, leave\n"
    "  booking            pre-issued tokens (--token-pattern): sessions -> seats -> hold 1-2 -> "
    "pay\n"
    "  full-flow          enter -> wait -> concerts -> sessions -> seats -> hold -> pay\n"
    "  balance            read a balance, charge it (v1)\n"
    "  classic-full-flow  the /api client: token -> status until true -> concerts -> schedules\n"
    "                     -> seats -> reserve -> pay\n"
    "  classic-balance    the /api client: read a balance, charge it (what it read + 6000)\n"
    "  get                plain requests to --path (repeatable) or --paths FILE\n"
    "\n"
    "Executors (one is chosen from the options given):\n"
    "  --vus N --duration D        constant VUs (default 10 VUs, 30s)\n"
    "  --stages D:N,D:N,...        ramping VUs, linear between stages\n"
    "  --test load|stress|breakpoint|spike   stages from --vus and --duration\n"
    "  --iterations N              every VU runs N iterations (--duration: the time limit)\n"
    "  --rate N/s                  constant arrival rate, --vus users at most\n"
    "\n"
    "Options:\n"
    "  --target URL          http://host:port of concertd (or anything with its API)\n"
    "  --connections N       keep-alive connections in all (default: one per VU, at most 10000)\n"
    "  --threads N           worker threads, each its own epoll loop (default: cores)\n"
    "  --source A[-B],...    source addresses to spread connections over (127.0.0.1-127.0.0.8)\n"
    "  --threshold EXPR      [route:]metric<op>value: p95<50ms, p(99)<=0.2s, avg<5ms, max<1s,\n"
    "                        failed<1%, checks>99%, rps>1000 (repeatable)\n"
    "  --json FILE           everything measured, as JSON     --html FILE   the HTML report\n"
    "  --svg DIR             the report's four charts as DIR/{throughput,latency,errors,vus}.svg\n"
    "  --poll D              poll interval (queue-flood 3s, others 1s)\n"
    "  --think D             pause between iterations (0)\n"
    "  --wait D              longest wait in the line before giving up (10m)\n"
    "  --user-base N         user ids are N+1.. (queue-flood 1000000, balance scenarios 2000000,\n"
    "                        others 0: the seeded users, who have a balance and tokens)\n"
    "  --users N             balance scenarios: users picked among user-base+1..+N (100000)\n"
    "  --concert N           booking: the concert (1)\n"
    "  --token-pattern P     booking: token of user n ({n} replaced; queue_token_{n})\n"
    "  --limit N             seats per seat page (100)\n"
    "  --path P --paths FILE --method M --body JSON --header 'Name: value'   (get;\n"
    "                        in a path or the body, {n} is the user id, {i} a number unique\n"
    "                        to each iteration of each user)\n"
    "  --tokens FILE         user n sends line n of FILE as its QUEUE-TOKEN\n"
    "  --timeout D           per request (10s)       --grace D   finish in-flight requests (5s)\n"
    "  --quiet               no text summary\n";

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "concert-load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(concert-load --help for the options)\n");
    va_end(ap);
    exit(2);
}

/* "30s", "500ms", "2m", "1h", "250us", or seconds. */
static int64_t parse_duration(const char *opt, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1e6;
    if (end == s || errno || v < 0) die("%s: '%s' is not a duration (30s, 500ms, 2m)", opt, s);
    if (strcmp(end, "ms") == 0)
        mul = 1e3;
    else if (strcmp(end, "us") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0)
        mul = 60e6;
    else if (strcmp(end, "h") == 0)
        mul = 3600e6;
    else if (*end && strcmp(end, "s") != 0)
        die("%s: '%s' has an unknown unit (us, ms, s, m, h)", opt, s);
    if (v * mul > 86400e6) die("%s: '%s' is longer than a day", opt, s);
    return (int64_t)(v * mul);
}

static long parse_long(const char *opt, const char *s, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        die("%s: '%s' is not a whole number from %ld to %ld", opt, s, min, max);
    return v;
}

static void parse_stages(struct opts *o, const char *s) {
    char buf[1024], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", s);
    o->nstages = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        if (!colon) die("--stages: '%s' is not DURATION:TARGET (10s:100)", t);
        if (o->nstages == MAX_STAGES) die("--stages: at most %d stages", MAX_STAGES);
        *colon = '\0';
        o->stages[o->nstages].dur_us = parse_duration("--stages", t);
        o->stages[o->nstages].target = parse_long("--stages", colon + 1, 0, 10000000);
        o->nstages++;
    }
    if (!o->nstages) die("--stages: no stages in '%s'", s);
}

static void add_stage(struct opts *o, double frac, long target) {
    o->stages[o->nstages].dur_us = (int64_t)((double)o->duration_us * frac);
    o->stages[o->nstages++].target = target;
}

/* The shapes of the four classic test types, from --vus N and --duration D. */
static void preset_stages(struct opts *o) {
    long n = o->vus, low = n / 10 > 0 ? n / 10 : 1;
    o->nstages = 0;
    if (strcmp(o->test, "load") == 0) { /* ramp up, hold the expected load, ramp down */
        add_stage(o, 0.1, n), add_stage(o, 0.8, n), add_stage(o, 0.1, 0);
    } else if (strcmp(o->test, "stress") == 0) { /* twice the expected load, held */
        add_stage(o, 0.1, n), add_stage(o, 0.2, n), add_stage(o, 0.1, 2 * n);
        add_stage(o, 0.4, 2 * n), add_stage(o, 0.2, 0);
    } else if (strcmp(o->test, "spike") == 0) { /* a quiet base, a sudden crowd, back */
        add_stage(o, 0.1, low), add_stage(o, 0.2, low), add_stage(o, 0.05, n);
        add_stage(o, 0.3, n), add_stage(o, 0.05, low), add_stage(o, 0.2, low);
        add_stage(o, 0.1, 0);
    } else if (strcmp(o->test, "breakpoint") == 0) { /* one long ramp until it breaks */
        add_stage(o, 1.0, n);
    } else {
        die("--test: '%s' is not one of load, stress, breakpoint, spike", o->test);
    }
}

static void parse_sources(struct opts *o, const char *s) {
    char buf[1024], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(t, '-');
        if (dash) *dash = '\0';
        struct in_addr a, b;
        if (inet_pton(AF_INET, t, &a) != 1 || (dash && inet_pton(AF_INET, dash + 1, &b) != 1))
            die("--source: '%s' is not an IPv4 address or range (127.0.0.1-127.0.0.8)", s);
        uint32_t lo = ntohl(a.s_addr), hi = dash ? ntohl(b.s_addr) : lo;
        if (hi < lo || hi - lo >= MAX_SOURCES)
            die("--source: '%s' is not a range of up to %d", s, MAX_SOURCES);
        for (uint32_t x = lo; x <= hi; x++) {
            if (o->nsources == MAX_SOURCES) die("--source: at most %d addresses", MAX_SOURCES);
            o->sources[o->nsources++].s_addr = htonl(x);
        }
    }
}

static void parse_target(struct opts *o, const char *url) {
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://"))
        die("--target: '%s': only http:// is supported", url);
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof(o->host)) die("--target: '%s' has no host", url);
    memcpy(o->host, p, hl);
    o->host[hl] = '\0';
    o->port = 80;
    if (p[hl] == ':') o->port = (int)strtol(p + hl + 1, NULL, 10);
    if (o->port < 1 || o->port > 65535) die("--target: '%s' has no valid port", url);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(o->host, NULL, &hints, &ai) != 0) die("--target: cannot resolve '%s'", o->host);
    memcpy(&o->addr, ai->ai_addr, sizeof(o->addr));
    o->addr.sin_port = htons((uint16_t)o->port);
    freeaddrinfo(ai);
}

static int route_index(const char *name, size_t n) {
    for (int i = 0; i < R_COUNT; i++)
        if (strlen(load_route_name[i]) == n && strncmp(load_route_name[i], name, n) == 0) return i;
    return -2;
}

/* [route:]metric op value[unit] */
static void parse_threshold(struct opts *o, const char *s) {
    if (o->nth == MAX_THRESHOLDS) die("--threshold: at most %d", MAX_THRESHOLDS);
    struct threshold *t = &o->th[o->nth];
    memset(t, 0, sizeof(*t));
    snprintf(t->text, sizeof(t->text), "%s", s);
    t->route = -1;
    const char *p = s, *colon = strchr(s, ':'), *op = strpbrk(s, "<>");
    if (!op) die("--threshold: '%s' has no < or >", s);
    if (colon && colon < op) {
        t->route = route_index(s, (size_t)(colon - s));
        if (t->route < 0) die("--threshold: '%.*s' is not a route", (int)(colon - s), s);
        p = colon + 1;
    }
    char metric[32];
    size_t ml = (size_t)(op - p);
    while (ml && isspace((unsigned char)p[ml - 1])) ml--;
    if (ml == 0 || ml >= sizeof(metric)) die("--threshold: '%s' names no metric", s);
    memcpy(metric, p, ml);
    metric[ml] = '\0';
    t->less = *op == '<';
    t->eq = op[1] == '=';
    op += t->eq ? 2 : 1;
    char *end;
    t->limit = strtod(op, &end);
    if (end == op) die("--threshold: '%s' has no number after the operator", s);
    double pc;
    if (strcmp(metric, "avg") == 0)
        t->metric = T_AVG;
    else if (strcmp(metric, "max") == 0)
        t->metric = T_MAX;
    else if (strcmp(metric, "med") == 0)
        t->metric = T_PCT, t->pct = 50;
    else if (sscanf(metric, "p(%lf)", &pc) == 1 || sscanf(metric, "p%lf", &pc) == 1) {
        if (pc <= 0 || pc > 100) die("--threshold: '%s': percentile out of (0, 100]", s);
        t->metric = T_PCT, t->pct = pc;
    } else if (strcmp(metric, "failed") == 0 || strcmp(metric, "http_req_failed") == 0 ||
               strcmp(metric, "errors") == 0) {
        t->metric = T_FAILED;
    } else if (strcmp(metric, "checks") == 0) {
        t->metric = T_CHECKS;
    } else if (strcmp(metric, "rps") == 0 || strcmp(metric, "http_reqs") == 0) {
        t->metric = T_RPS;
    } else {
        die("--threshold: '%s' is not a metric (pNN, avg, max, med, failed, checks, rps)", metric);
    }
    int latency = t->metric == T_AVG || t->metric == T_MAX || t->metric == T_PCT;
    if (latency) {
        if (strcmp(end, "s") == 0)
            t->limit *= 1000;
        else if (strcmp(end, "us") == 0)
            t->limit /= 1000;
        else if (*end && strcmp(end, "ms") != 0)
            die("--threshold: '%s': unit must be us, ms or s", s);
    } else if (t->metric != T_RPS) {
        if (strcmp(end, "%") == 0)
            t->limit /= 100;
        else if (*end)
            die("--threshold: '%s': a rate is a fraction or a percentage", s);
    } else if (*end && strcmp(end, "/s") != 0) {
        die("--threshold: '%s': rps is a number of requests per second", s);
    }
    o->nth++;
}

double load_threshold_value(const struct threshold *t, const struct tmetrics *m, double secs) {
    const struct hist *h = t->route >= 0 ? &m->route[t->route] : &m->all;
    uint64_t reqs = t->route >= 0 ? m->route_reqs[t->route] : m->reqs;
    uint64_t failed = t->route >= 0 ? m->route_failed[t->route] : m->failed;
    uint64_t pass = 0, fail = 0;
    switch (t->metric) {
    case T_PCT: return hist_pct(h, t->pct) / 1000;
    case T_AVG: return hist_mean(h) / 1000;
    case T_MAX: return h->count ? (double)h->max_us / 1000 : 0;
    case T_FAILED: return reqs ? (double)failed / (double)reqs : 0;
    case T_RPS: return secs > 0 ? (double)reqs / secs : 0;
    case T_CHECKS:
        for (int i = 0; i < C_COUNT; i++) pass += m->check_pass[i], fail += m->check_fail[i];
        return pass + fail ? (double)pass / (double)(pass + fail) : 1;
    }
    return 0;
}

static int threshold_ok(const struct threshold *t, double v) {
    if (t->eq && v == t->limit) return 1;
    return t->less ? v < t->limit : v > t->limit;
}

const char *load_stages_text(const struct opts *o, char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < o->nstages && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%.3gs:%ld", i ? "," : "",
                                (double)o->stages[i].dur_us / 1e6, o->stages[i].target);
    return buf;
}

/* ---- options ---------------------------------------------------------------- */

/* Appends s to the list *v (*n entries). */
static void push(char ***v, size_t *n, const char *s) {
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow to the next power of two */
        *v = realloc(*v, (*n ? 2 * *n : 1) * sizeof(char *));
        if (!*v) abort();
    }
    (*v)[(*n)++] = strdup(s);
}

static int is_path(const char *s) {
    return s[0] == '/' && strlen(s) < 190;
}

static int is_token(const char *s) {
    return strlen(s) < 64 && !strpbrk(s, " \t:");
}

/* The non-empty lines of file onto *v; each must pass ok(), or the option
 * opt is refused naming the line. */
static void read_lines(const char *opt, const char *file, int (*ok)(const char *), char ***v,
                       size_t *n) {
    FILE *f = fopen(file, "r");
    if (!f) die("%s: cannot open '%s': %s", opt, file, strerror(errno));
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        if (!ok(line)) die("%s: '%s' in %s is not valid there", opt, line, file);
        push(v, n, line);
    }
    fclose(f);
    if (!*n) die("%s: '%s' has no lines", opt, file);
}

static int scenario_of(const char *s) {
    for (int i = 0; i < S_COUNT; i++)
        if (strcmp(s, load_scenario_name[i]) == 0) return i;
    die("--scenario: '%s' is not one of queue-flood, booking, full-flow, balance, "
        "classic-full-flow, classic-balance, get",
        s);
    return -1;
}

static void parse_args(struct opts *o, int argc, char **argv) {
    enum {
        O_TARGET = 256,
        O_SCENARIO,
        O_VUS,
        O_DURATION,
        O_STAGES,
        O_RATE,
        O_ITER,
        O_THRESH,
        O_JSON,
        O_HTML,
        O_TEST,
        O_CONNS,
        O_THREADS,
        O_SOURCE,
        O_POLL,
        O_THINK,
        O_WAIT,
        O_UBASE,
        O_USERS,
        O_CONCERT,
        O_TOKPAT,
        O_LIMIT,
        O_PATH,
        O_PATHS,
        O_METHOD,
        O_BODY,
        O_HEADER,
        O_TIMEOUT,
        O_GRACE,
        O_QUIET,
        O_HELP,
        O_TOKENS,
        O_SVG
    };
    static const struct option lo[] = {{"target", 1, 0, O_TARGET},
                                       {"scenario", 1, 0, O_SCENARIO},
                                       {"vus", 1, 0, O_VUS},
                                       {"duration", 1, 0, O_DURATION},
                                       {"stages", 1, 0, O_STAGES},
                                       {"rate", 1, 0, O_RATE},
                                       {"iterations", 1, 0, O_ITER},
                                       {"threshold", 1, 0, O_THRESH},
                                       {"json", 1, 0, O_JSON},
                                       {"html", 1, 0, O_HTML},
                                       {"test", 1, 0, O_TEST},
                                       {"connections", 1, 0, O_CONNS},
                                       {"threads", 1, 0, O_THREADS},
                                       {"source", 1, 0, O_SOURCE},
                                       {"poll", 1, 0, O_POLL},
                                       {"think", 1, 0, O_THINK},
                                       {"wait", 1, 0, O_WAIT},
                                       {"user-base", 1, 0, O_UBASE},
                                       {"users", 1, 0, O_USERS},
                                       {"concert", 1, 0, O_CONCERT},
                                       {"token-pattern", 1, 0, O_TOKPAT},
                                       {"limit", 1, 0, O_LIMIT},
                                       {"path", 1, 0, O_PATH},
                                       {"paths", 1, 0, O_PATHS},
                                       {"method", 1, 0, O_METHOD},
                                       {"body", 1, 0, O_BODY},
                                       {"header", 1, 0, O_HEADER},
                                       {"timeout", 1, 0, O_TIMEOUT},
                                       {"grace", 1, 0, O_GRACE},
                                       {"quiet", 0, 0, O_QUIET},
                                       {"help", 0, 0, O_HELP},
                                       {"tokens", 1, 0, O_TOKENS},
                                       {"svg", 1, 0, O_SVG},
                                       {0, 0, 0, 0}};
    const char *target = NULL, *stages = NULL;
    int scenario = -1, have_vus = 0, have_duration = 0, have_ubase = 0, have_poll = 0;
    o->vus = 10, o->duration_us = 30000000, o->grace_us = 5000000, o->timeout_us = 10000000;
    o->wait_us = 600000000, o->users = 100000, o->concert = 1, o->limit = 100, o->method = "GET";
    snprintf(o->token_pattern, sizeof(o->token_pattern), "queue_token_{n}");
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = nproc > 0 ? (int)nproc : 1;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_TARGET: target = optarg; break;
        case O_SCENARIO: scenario = scenario_of(optarg); break;
        case O_VUS: o->vus = parse_long("--vus", optarg, 1, 10000000), have_vus = 1; break;
        case O_DURATION:
            o->duration_us = parse_duration("--duration", optarg), have_duration = 1;
            break;
        case O_STAGES: stages = optarg; break;
        case O_RATE: {
            char *end;
            o->rate = strtod(optarg, &end);
            if (end == optarg || (*end && strcmp(end, "/s") != 0) || o->rate <= 0 || o->rate > 1e7)
                die("--rate: '%s' is not a rate (500/s)", optarg);
            break;
        }
        case O_ITER: o->iterations = parse_long("--iterations", optarg, 1, 1000000000); break;
        case O_THRESH: parse_threshold(o, optarg); break;
        case O_JSON: o->json_path = optarg; break;
        case O_HTML: o->html_path = optarg; break;
        case O_SVG: o->svg_dir = optarg; break;
        case O_TEST: o->test = optarg; break;
        case O_CONNS: o->conns = parse_long("--connections", optarg, 1, 1000000); break;
        case O_THREADS: o->threads = (int)parse_long("--threads", optarg, 1, 256); break;
        case O_SOURCE: parse_sources(o, optarg); break;
        case O_POLL: o->poll_us = parse_duration("--poll", optarg), have_poll = 1; break;
        case O_THINK: o->think_us = parse_duration("--think", optarg); break;
        case O_WAIT: o->wait_us = parse_duration("--wait", optarg); break;
        case O_UBASE:
            o->user_base = parse_long("--user-base", optarg, 0, 1000000000000L), have_ubase = 1;
            break;
        case O_USERS: o->users = parse_long("--users", optarg, 1, 1000000000L); break;
        case O_CONCERT: o->concert = parse_long("--concert", optarg, 1, 1000000000000L); break;
        case O_TOKPAT:
            if (strlen(optarg) >= 32 || strpbrk(optarg, "\r\n"))
                die("--token-pattern: too long or has a newline");
            snprintf(o->token_pattern, sizeof(o->token_pattern), "%s", optarg);
            break;
        case O_LIMIT: o->limit = parse_long("--limit", optarg, 1, 1000); break;
        case O_PATH:
            if (!is_path(optarg)) die("--path: '%s' is not a path under 190 bytes", optarg);
            push(&o->paths, &o->npaths, optarg);
            break;
        case O_PATHS: read_lines("--paths", optarg, is_path, &o->paths, &o->npaths); break;
        case O_TOKENS: read_lines("--tokens", optarg, is_token, &o->tokens, &o->ntokens); break;
        case O_METHOD:
            if (strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(optarg) || !*optarg)
                die("--method: '%s' is not a method", optarg);
            o->method = optarg;
            break;
        case O_BODY:
            if (strlen(optarg) >= 190) die("--body: at most 189 bytes");
            o->body = optarg;
            break;
        case O_HEADER:
            if (o->nheaders == MAX_HEADERS) die("--header: at most %d", MAX_HEADERS);
            if (!strchr(optarg, ':') || strlen(optarg) >= 250 || strpbrk(optarg, "\r\n"))
                die("--header: '%s' is not 'Name: value'", optarg);
            snprintf(o->headers[o->nheaders++], 256, "%s", optarg);
            break;
        case O_TIMEOUT: o->timeout_us = parse_duration("--timeout", optarg); break;
        case O_GRACE: o->grace_us = parse_duration("--grace", optarg); break;
        case O_QUIET: o->quiet = 1; break;
        case O_HELP: fputs(usage, stdout); exit(0);
        default: die("unknown option");
        }
    }
    if (optind < argc) die("unexpected argument '%s'", argv[optind]);
    if (!target) die("--target is required");
    if (scenario < 0) die("--scenario is required");
    parse_target(o, target);
    o->scenario = (enum scenario)scenario;
    if (o->scenario == S_GET && !o->npaths) die("--scenario get needs --path or --paths");
    if (o->scenario != S_GET && (o->npaths || o->body))
        die("--path/--paths/--body are for --scenario get");
    if (!have_poll) o->poll_us = o->scenario == S_QUEUE_FLOOD ? 3000000 : 1000000;
    if (!have_ubase && o->scenario == S_QUEUE_FLOOD) o->user_base = 1000000; /* as the k6 scripts */
    if (!have_ubase && (o->scenario == S_BALANCE || o->scenario == S_CLASSIC_BALANCE))
        o->user_base = 2000000;
    if (o->timeout_us < 1000) die("--timeout: at least 1ms");
    /* the executor */
    int modes = (stages != NULL) + (o->test != NULL) + (o->iterations > 0) + (o->rate > 0);
    if (modes > 1) die("choose one of --stages, --test, --iterations, --rate");
    if (stages) {
        parse_stages(o, stages);
        o->executor = X_RAMPING;
        if (have_duration) die("--duration and --stages: the stages give the duration");
    } else if (o->test) {
        if (!have_vus) o->vus = strcmp(o->test, "breakpoint") == 0 ? 5000 : 100;
        if (!have_duration)
            o->duration_us = strcmp(o->test, "breakpoint") == 0 ? 120000000 : 60000000;
        preset_stages(o);
        o->executor = X_RAMPING;
    } else if (o->iterations > 0) {
        o->executor = X_ITERATIONS;
        if (!have_duration) o->duration_us = 600000000; /* the time limit */
    } else if (o->rate > 0) {
        o->executor = X_ARRIVAL;
        if (!have_vus) o->vus = o->rate < 100 ? 100 : (long)o->rate;
    } else {
        o->executor = X_CONSTANT;
    }
    if (o->executor == X_RAMPING) {
        long maxv = 0;
        for (int i = 0; i < o->nstages; i++)
            if (o->stages[i].target > maxv) maxv = o->stages[i].target;
        if (maxv == 0) die("--stages: every target is 0");
        o->vus = maxv;
    }
    if (o->duration_us < 100000) die("--duration: at least 100ms");
    if (!o->conns) o->conns = o->vus < 10000 ? o->vus : 10000;
    if (o->threads > o->vus) o->threads = (int)o->vus;
    if (o->conns < o->threads) o->conns = o->threads;
}

/* ---- the run ---------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted++;
}

static int64_t total_us(const struct opts *o) {
    if (o->executor != X_RAMPING) return o->duration_us;
    int64_t t = 0;
    for (int i = 0; i < o->nstages; i++) t += o->stages[i].dur_us;
    return t;
}

static long stage_target(const struct opts *o, int64_t el) {
    if (o->executor != X_RAMPING) return o->vus;
    long from = 0;
    for (int i = 0; i < o->nstages; i++) {
        const struct stage *s = &o->stages[i];
        if (el < s->dur_us)
            return from +
                   (long)llround((double)(s->target - from) * (double)el / (double)s->dur_us);
        el -= s->dur_us;
        from = s->target;
    }
    return from;
}

/* Breakpoint: are the criteria crossed in the two seconds before s? */
static int broken(struct run *r, struct result *res, size_t s, const struct opts *o) {
    struct second a, b;
    engine_merge_second(r, s - 1, &a);
    engine_merge_second(r, s, &b);
    hist_merge(&a.h, &b.h);
    a.reqs += b.reqs, a.failed += b.failed;
    struct tmetrics m;
    memset(&m, 0, sizeof(m));
    m.all = a.h;
    m.reqs = a.reqs, m.failed = a.failed;
    double rps = (double)a.reqs / 2;
    for (int i = 0; i < o->nth; i++) {
        const struct threshold *t = &o->th[i];
        if (t->route >= 0 || (t->metric != T_PCT && t->metric != T_AVG && t->metric != T_FAILED))
            continue;
        double v = load_threshold_value(t, &m, 2);
        if (!threshold_ok(t, v)) {
            snprintf(res->broke_why, sizeof(res->broke_why), "%s (was %.4g%s)", t->text,
                     t->metric == T_FAILED ? v * 100 : v, t->metric == T_FAILED ? "%" : " ms");
            res->broke_rps = rps;
            return 1;
        }
    }
    if (rps > res->best_rps) res->best_rps = rps, res->best_vus = r->vus_sec[s];
    return 0;
}

/* One progress line on a terminal (stderr), for the second that just
 * finished: like k6's, so a long run is not silent. */
static void progress(struct run *r, const struct opts *o, size_t done, int64_t total) {
    static size_t shown;
    if (o->quiet || done == 0 || done == shown || done >= r->nsec || !isatty(STDERR_FILENO)) return;
    shown = done;
    struct second x;
    engine_merge_second(r, done - 1, &x);
    fprintf(stderr,
            "\r  %zus/%.0fs  VUs %ld  %llu req/s  %llu failed  p95 %.2f ms  %llu iterations   ",
            done, (double)total / 1e6, r->vus_sec[done - 1], (unsigned long long)x.reqs,
            (unsigned long long)x.failed, hist_pct(&x.h, 95) / 1000, (unsigned long long)x.iters);
}

static void control(struct run *r, struct result *res, const struct opts *o) {
    int64_t total = total_us(o);
    size_t checked = 2;
    int breakpoint = o->test && strcmp(o->test, "breakpoint") == 0;
    for (;;) {
        int64_t el = load_now_us() - r->t0;
        long target = stage_target(o, el);
        atomic_store(&r->target, target);
        size_t s = (size_t)(el / 1000000);
        if (s < r->nsec) {
            long run = engine_running(r);
            if (run > r->vus_sec[s]) r->vus_sec[s] = run;
            if (target > r->target_sec[s]) r->target_sec[s] = target;
        }
        if (breakpoint && !res->broke) {
            size_t done = engine_done_seconds(r);
            for (; checked < done && !res->broke; checked++) {
                if (broken(r, res, checked, o)) {
                    res->broke = 1;
                    res->broke_at_s = (double)checked;
                    res->broke_vus = r->vus_sec[checked];
                    atomic_store(&r->stop, 1);
                }
            }
        }
        if (interrupted == 1 || el >= total) atomic_store(&r->stop, 1);
        if (interrupted > 1) atomic_store(&r->aborted, 1);
        progress(r, o, engine_done_seconds(r), total);
        if (engine_all_finished(r)) break;
        usleep(20000);
    }
    if (!o->quiet && isatty(STDERR_FILENO)) fputc('\n', stderr);
}

static void raise_nofile(long want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur < want + 64)
        fprintf(stderr, "concert-load: warning: open file limit %ld is below %ld connections\n",
                (long)rl.rlim_cur, want);
}

int main(int argc, char **argv) {
    static struct opts o;
    parse_args(&o, argc, argv);
    raise_nofile(o.conns);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (o.nth == 0 && o.test && strcmp(o.test, "breakpoint") == 0) {
        parse_threshold(&o, "p95<100ms"); /* where it "breaks" unless told otherwise */
        parse_threshold(&o, "failed<1%");
    }

    static struct run r;
    static struct result res;
    r.o = &o;
    r.nsec = (size_t)((total_us(&o) + o.grace_us) / 1000000) + 3;
    r.vus_sec = calloc(r.nsec, sizeof(long));
    r.target_sec = calloc(r.nsec, sizeof(long));
    if (!r.vus_sec || !r.target_sec) abort();
    time_t now = time(NULL);
    strftime(res.started, sizeof(res.started), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (engine_start(&r) != 0) {
        fprintf(stderr, "concert-load: cannot start the workers: %s\n", strerror(errno));
        return 2;
    }
    control(&r, &res, &o);
    engine_join(&r);
    res.secs = (double)(load_now_us() - r.t0) / 1e6;

    engine_merge(&r, &res.m);
    res.nsec = (size_t)ceil(res.secs);
    if (res.nsec > r.nsec) res.nsec = r.nsec;
    if (res.nsec == 0) res.nsec = 1;
    res.vus_sec = r.vus_sec;
    res.target_sec = r.target_sec;
    for (size_t s = 0; s < res.nsec; s++)
        if (r.vus_sec[s] > res.vus_max) res.vus_max = r.vus_sec[s];
    res.thresholds_ok = 1;
    for (int i = 0; i < o.nth; i++) {
        res.th_value[i] = load_threshold_value(&o.th[i], &res.m, res.secs);
        res.th_ok[i] = threshold_ok(&o.th[i], res.th_value[i]);
        /* a breakpoint test is expected to cross its criteria: that is its result */
        if (!res.th_ok[i] && !(o.test && strcmp(o.test, "breakpoint") == 0)) res.thresholds_ok = 0;
    }
    if (!o.quiet) report_text(stdout, &o, &res);
    if (o.json_path && report_json(o.json_path, &o, &res) != 0) {
        fprintf(stderr, "concert-load: cannot write %s: %s\n", o.json_path, strerror(errno));
        return 2;
    }
    if (o.html_path && report_html(o.html_path, &o, &res) != 0) {
        fprintf(stderr, "concert-load: cannot write %s: %s\n", o.html_path, strerror(errno));
        return 2;
    }
    if (o.svg_dir && report_svg(o.svg_dir, &o, &res) != 0) {
        fprintf(stderr, "concert-load: cannot write the charts into %s: %s\n", o.svg_dir,
                strerror(errno));
        return 2;
    }
    engine_free(&r);
    free(res.m.sec), free(r.vus_sec), free(r.target_sec);
    for (size_t i = 0; i < o.npaths; i++) free(o.paths[i]);
    for (size_t i = 0; i < o.ntokens; i++) free(o.tokens[i]);
    free(o.tokens);
    free(o.paths);
    if (interrupted) return 130;
    return res.thresholds_ok ? 0 : 1;
}
