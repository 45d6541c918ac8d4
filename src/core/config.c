/* config.c -- the option table, and loading it from defaults, environment
 * and command line.
 *
 * Responsible for every knob concertd has: its flag, environment variable,
 * type, default, bounds, the subcommands it applies to and its help line,
 * all in the one table below. Defaults are strings parsed by the same code
 * as user input, so the table cannot hold a default the parser would reject.
 * --help and every validation error are generated from the table.
 * Not here: what the values mean (main.c and the layers), printing the
 * version, deciding what a subcommand does with its positional arguments.
 *
 * Design notes (invariants):
 *   1. Precedence is default < environment < command line; the last
 *      occurrence of a flag wins.
 *   2. config_load() writes *c only on success.
 *   3. STRING values point into argv or the environment, never copies. */
#include "core/config.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/num.h"
#include "core/timeutil.h"

enum opt_type { OPT_INT, OPT_DURATION, OPT_SIZE, OPT_STRING, OPT_ENUM };

struct cfg_option {
    const char *name; /* flag without dashes; env var is CONCERT_ + NAME */
    enum opt_type type;
    size_t offset;            /* into struct config: const char * for STRING, int64_t otherwise */
    const char *def;          /* default, in the syntax a user would type */
    int64_t min, max;         /* bounds for INT (plain), DURATION (ms), SIZE (bytes) */
    const char *const *names; /* ENUM: NULL-terminated value names, stored as index */
    int cmds;                 /* enum cfg_cmd bits */
    const char *metavar;      /* placeholder in --help; NULL = derived from the type */
    const char *help;
};

#define CMD_ALL (CMD_SERVE | CMD_SEED | CMD_IMPORT | CMD_MIGRATE)
#define KIB INT64_C(1024)
#define MIB (1024 * KIB)
#define SEC INT64_C(1000)
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)
#define OFF(field) offsetof(struct config, field)

static const char *const log_level_names[] = {"debug", "info", "warn", "error", "off", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const on_off_names[] = {"off", "on", NULL};

static const struct cfg_option options[] = {
    {"db", OPT_STRING, OFF(db), "sqlite:./concert.db", 0, 0, NULL,
     CMD_SERVE | CMD_SEED | CMD_IMPORT | CMD_MIGRATE, "URL",
     "database URL: sqlite:PATH or postgres://USER@HOST:PORT/DB"},
    {"log-level", OPT_ENUM, OFF(log_level), "info", 0, 0, log_level_names, CMD_ALL, "LEVEL",
     "log verbosity"},
    {"log-format", OPT_ENUM, OFF(log_format), "text", 0, 0, log_format_names, CMD_ALL, "FORMAT",
     "log line format"},
    {"listen", OPT_STRING, OFF(listen), "0.0.0.0:8080", 0, 0, NULL, CMD_SERVE, "ADDR:PORT",
     "address:port to listen on"},
    {"workers", OPT_INT, OFF(workers), "0", 0, 1024, NULL, CMD_SERVE, NULL,
     "HTTP event threads; reads run on them (0 = one per core)"},
    {"write-workers", OPT_INT, OFF(write_workers), "64", 0, 4096, NULL, CMD_SERVE, NULL,
     "threads for requests that change state, each sleeping until its commit (0 = run them "
     "on the event threads)"},
    {"seat-cache", OPT_SIZE, OFF(seat_cache), "512MiB", 0, 64 * 1024 * MIB, NULL, CMD_SERVE, NULL,
     "memory for the seats of paged sessions, so a seat page reads no SQL (SQLite only; about "
     "24 bytes a seat; 0 = off)"},
    {"max-connections", OPT_INT, OFF(max_connections), "10000", 1, 1000000, NULL, CMD_SERVE, NULL,
     "most connections open at once"},
    {"max-connections-per-ip", OPT_INT, OFF(max_connections_per_ip), "2000", 0, 1000000, NULL,
     CMD_SERVE, NULL, "0 = unlimited; set 0 behind a proxy"},
    {"connection-timeout", OPT_DURATION, OFF(connection_timeout_ms), "30s", SEC, HOUR, NULL,
     CMD_SERVE, NULL, "idle connection timeout"},
    {"max-body", OPT_SIZE, OFF(max_body), "64KiB", KIB, 16 * MIB, NULL, CMD_SERVE, NULL,
     "largest request body (413 above)"},
    {"max-header-bytes", OPT_SIZE, OFF(max_header_bytes), "8KiB", KIB, 64 * KIB, NULL, CMD_SERVE,
     NULL, "largest request line + headers (431 above)"},
    {"metrics", OPT_ENUM, OFF(metrics), "on", 0, 0, on_off_names, CMD_SERVE, "on|off",
     "count requests for /metrics (off: the gauges and the hold, payment, commit counters stay)"},
    {"access-log", OPT_ENUM, OFF(access_log), "on", 0, 0, on_off_names, CMD_SERVE, "on|off",
     "one log line per request at info level (method, route, status, latency, request id)"},
    {"shutdown-grace", OPT_DURATION, OFF(shutdown_grace_ms), "10s", 0, 5 * MINUTE, NULL, CMD_SERVE,
     NULL, "time in-flight requests get on SIGTERM"},
    {"queue", OPT_STRING, OFF(queue), "local", 0, 0, NULL, CMD_SERVE | CMD_SEED, "URL",
     "waiting room: local (in memory, kept in --db) or redis://HOST[:PORT][/DB] (shared)"},
    {"queue-prefix", OPT_STRING, OFF(queue_prefix), "concertd:wr:", 0, 0, NULL,
     CMD_SERVE | CMD_SEED, "PREFIX",
     "Redis queue: key prefix (deployments sharing a Redis differ)"},
    {"queue-lease", OPT_DURATION, OFF(queue_lease_ms), "2s", 100, MINUTE, NULL, CMD_SERVE, NULL,
     "Redis queue: the admitting instance's lease; another takes over this long after it dies"},
    {"queue-max-active", OPT_INT, OFF(queue_max_active), "1000", 1, 10000000, NULL, CMD_SERVE, NULL,
     "most ACTIVATED tokens at once"},
    {"queue-admit-per-sec", OPT_INT, OFF(queue_admit_per_sec), "100", 1, 1000000, NULL, CMD_SERVE,
     NULL, "tokens admitted per second at most"},
    {"queue-active-ttl", OPT_DURATION, OFF(queue_active_ttl_ms), "10m", SEC, 24 * HOUR, NULL,
     CMD_SERVE, NULL, "how long an ACTIVATED token lasts"},
    {"queue-waiting-idle", OPT_DURATION, OFF(queue_waiting_idle_ms), "5m", SEC, 24 * HOUR, NULL,
     CMD_SERVE, NULL, "a WAITING token not polled this long is dropped"},
    {"queue-tick", OPT_DURATION, OFF(queue_tick_ms), "100ms", 10, 10 * SEC, NULL, CMD_SERVE, NULL,
     "admission interval"},
    {"admin-key", OPT_STRING, OFF(admin_key), NULL, 0, 0, NULL, CMD_SERVE, "KEY",
     "X-Admin-Key for /api/v1/admin/* (none: admin routes refuse everyone)"},
    {"web-root", OPT_STRING, OFF(web_root), CONCERT_WEB_ROOT, 0, 0, NULL, CMD_SERVE, "DIR",
     "the fans' pages (docs/web.md), read at start; none: serve no pages"},
    {"hold-ttl", OPT_DURATION, OFF(hold_ttl_ms), "5m", SEC, 24 * HOUR, NULL, CMD_SERVE, NULL,
     "how long a seat hold lasts before its seats are released"},
    {"max-seats-per-hold", OPT_INT, OFF(max_seats_per_hold), "4", 1, 100, NULL, CMD_SERVE, NULL,
     "most seats one reservation may hold"},
    {"max-charge", OPT_INT, OFF(max_charge), "10000000", 1, INT64_MAX, NULL, CMD_SERVE, NULL,
     "largest single balance charge, in won"},
    {"pg-url", OPT_STRING, OFF(pg_url), NULL, 0, 0, NULL, CMD_SERVE, "URL",
     "payment gateway for card payments, http://HOST:PORT (none: card payments are 503)"},
    {"pg-timeout", OPT_DURATION, OFF(pg_timeout_ms), "2s", 10, MINUTE, NULL, CMD_SERVE, NULL,
     "a gateway request slower than this is unknown (payment PENDING) and a breaker failure"},
    {"pg-breaker-window", OPT_INT, OFF(pg_breaker_window), "20", 1, 1000, NULL, CMD_SERVE, NULL,
     "circuit breaker: gateway calls in its sliding window"},
    {"pg-breaker-min-calls", OPT_INT, OFF(pg_breaker_min_calls), "10", 1, 1000, NULL, CMD_SERVE,
     NULL, "circuit breaker: calls in the window before it may open (at most the window)"},
    {"pg-breaker-failure-rate", OPT_INT, OFF(pg_breaker_failure_rate), "50", 1, 100, NULL,
     CMD_SERVE, NULL, "circuit breaker: % of failed calls in the window that opens it"},
    {"pg-breaker-open", OPT_DURATION, OFF(pg_breaker_open_ms), "10s", 100, HOUR, NULL, CMD_SERVE,
     NULL, "circuit breaker: how long it stays open before trial calls"},
    {"events", OPT_STRING, OFF(events), NULL, 0, 0, NULL, CMD_SERVE, "SINK",
     "publish outbox events (at least once) to log:PATH (JSON lines), "
     "redis://HOST[:PORT][/STREAM] or kafka://BROKERS/TOPIC; none: kept in the db"},
    {"request-timeout", OPT_DURATION, OFF(request_timeout_ms), "10s", SEC, HOUR, NULL, CMD_SERVE,
     NULL, "a request (line, headers, body) must arrive within this; slower clients are cut off"},
    {"limit-enter-ip", OPT_INT, OFF(limit_enter_ip), "0", 0, 1000000, NULL, CMD_SERVE, NULL,
     "queue entries a second per client address, 429 above (0: off)"},
    {"limit-enter-user", OPT_INT, OFF(limit_enter_user), "5", 0, 1000000, NULL, CMD_SERVE, NULL,
     "queue entries a second per user, 429 above (0: off)"},
    {"limit-hold-ip", OPT_INT, OFF(limit_hold_ip), "0", 0, 1000000, NULL, CMD_SERVE, NULL,
     "seat holds a second per client address, 429 above (0: off)"},
    {"limit-hold-user", OPT_INT, OFF(limit_hold_user), "5", 0, 1000000, NULL, CMD_SERVE, NULL,
     "seat holds a second per user, 429 above (0: off)"},
    {"limit-burst", OPT_INT, OFF(limit_burst), "20", 1, 1000000, NULL, CMD_SERVE, NULL,
     "requests each of those limits lets through at once (at least its rate)"},
    {"limit-table-size", OPT_INT, OFF(limit_table_size), "65536", 64, 16777216, NULL, CMD_SERVE,
     NULL, "addresses or users each limit tracks at once (fixed memory, 24 bytes each)"},
    {"max-live-holds", OPT_INT, OFF(max_live_holds), "4", 0, 1000, NULL, CMD_SERVE, NULL,
     "live holds one user may have at once, 409 TOO_MANY_HOLDS above (0: no cap)"},
    {"trusted-proxies", OPT_STRING, OFF(trusted_proxies), NULL, 0, 0, NULL, CMD_SERVE, "LIST",
     "comma-separated IPs/CIDRs of proxies in front; from them the per-address limits use the "
     "client in X-Forwarded-For (rightmost address not in the list); none: the header is "
     "ignored"},
    {"auth-jwt-secret", OPT_STRING, OFF(auth_jwt_secret), NULL, 0, 0, NULL, CMD_SERVE, "SECRET",
     "require Authorization: Bearer <HS256 JWT> whose sub is the user on user routes "
     "(none: off)"},
    {"concerts", OPT_INT, OFF(seed_concerts), "3", 0, 100000, NULL, CMD_SEED, NULL,
     "concerts to create"},
    {"sessions-per-concert", OPT_INT, OFF(seed_sessions_per_concert), "4", 1, 10000, NULL, CMD_SEED,
     NULL, "sessions per concert"},
    {"seats-per-session", OPT_INT, OFF(seed_seats_per_session), "50", 1, 100000, NULL, CMD_SEED,
     NULL, "seats per session"},
    {"price", OPT_INT, OFF(seed_price), "0", 0, 100000000, NULL, CMD_SEED, NULL,
     "seat price (0 = by grade)"},
    {"users", OPT_INT, OFF(seed_users), "1000", 0, 100000000, NULL, CMD_SEED, NULL,
     "users to create"},
    {"balance", OPT_INT, OFF(seed_balance), "0", 0, INT64_C(1000000000000), NULL, CMD_SEED, NULL,
     "starting balance of each user"},
    {"active-tokens", OPT_STRING, OFF(seed_active_tokens), NULL, 0, 0, NULL, CMD_SEED, "PATTERN",
     "give users 1..N an ACTIVATED token named PATTERN with {n} = user id"},
    {"active-ttl", OPT_DURATION, OFF(seed_active_ttl_ms), "24h", SEC, 30 * 24 * HOUR, NULL,
     CMD_SEED, NULL, "how long those pre-issued tokens last"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const struct {
    int cmd;
    const char *name;
} commands[] = {
    {CMD_SERVE, "serve"},
    {CMD_SEED, "seed"},
    {CMD_IMPORT, "import"},
    {CMD_MIGRATE, "migrate"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

const char *config_cmd_name(int cmd) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (commands[i].cmd == cmd) return commands[i].name;
    return "?";
}

__attribute__((format(printf, 3, 4))) static void set_err(char *errbuf, size_t errlen,
                                                          const char *fmt, ...) {
    if (!errbuf || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* CONCERT_ + the name upper-cased with '-' turned into '_'. */
static void env_name(const struct cfg_option *o, char *buf, size_t len) {
    int n = snprintf(buf, len, "CONCERT_%s", o->name);
    assert(n > 0 && (size_t)n < len);
    (void)n;
    for (char *p = buf; *p; p++) *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
}

static const struct cfg_option *find_option(const char *name, size_t len) {
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

/* ---- values ---------------------------------------------------------- */

/* Writes v the way a user would type it, in the option's unit. */
static void format_amount(enum opt_type type, int64_t v, char *buf, size_t len) {
    static const struct {
        enum opt_type type;
        int64_t unit;
        const char *suffix;
    } units[] = {
        {OPT_DURATION, 24 * HOUR, "d"}, {OPT_DURATION, HOUR, "h"}, {OPT_DURATION, MINUTE, "m"},
        {OPT_DURATION, SEC, "s"},       {OPT_DURATION, 1, "ms"},   {OPT_SIZE, 1024 * MIB, "GiB"},
        {OPT_SIZE, MIB, "MiB"},         {OPT_SIZE, KIB, "KiB"},
    };
    for (size_t i = 0; v != 0 && i < sizeof(units) / sizeof(units[0]); i++) {
        if (units[i].type == type && v % units[i].unit == 0) {
            snprintf(buf, len, "%lld%s", (long long)(v / units[i].unit), units[i].suffix);
            return;
        }
    }
    snprintf(buf, len, "%lld%s", (long long)v, type == OPT_DURATION ? "s" : "");
}

/* Describes what the option accepts: "an integer between 0 and 1024". */
static void describe_expected(const struct cfg_option *o, char *buf, size_t len) {
    static const char *const what[] = {
        [OPT_INT] = "an integer",
        [OPT_DURATION] = "a duration (300, 300s, 250ms, 5m, 1h, 2d)",
        [OPT_SIZE] = "a size (65536, 64KiB, 1MiB, 1GiB)",
    };
    char lo[32], hi[32];
    size_t n;
    switch (o->type) {
    case OPT_STRING: snprintf(buf, len, "a non-empty string"); return;
    case OPT_ENUM:
        n = (size_t)snprintf(buf, len, "one of");
        for (size_t i = 0; o->names[i] && n < len; i++)
            n += (size_t)snprintf(buf + n, len - n, "%s %s", i ? "," : "", o->names[i]);
        return;
    default:
        format_amount(o->type, o->min, lo, sizeof(lo));
        format_amount(o->type, o->max, hi, sizeof(hi));
        snprintf(buf, len, "%s between %s and %s", what[o->type], lo, hi);
        return;
    }
}

/* Parses s per the option's type into *num (or *str). 0 or ERR_INVALID. */
static int parse_value(const struct cfg_option *o, const char *s, int64_t *num, const char **str) {
    int rc = ERR_INVALID;
    switch (o->type) {
    case OPT_STRING: *str = s; return *s ? 0 : ERR_INVALID;
    case OPT_ENUM:
        for (int64_t i = 0; o->names[i]; i++) {
            if (strcmp(o->names[i], s) == 0) {
                *num = i;
                return 0;
            }
        }
        return ERR_INVALID;
    case OPT_INT: rc = num_parse_i64(s, 0, num); break;
    case OPT_DURATION: rc = time_parse_duration(s, num); break;
    case OPT_SIZE: rc = num_parse_size(s, num); break;
    }
    if (rc != 0 || *num < o->min || *num > o->max) return ERR_INVALID;
    return 0;
}

/* Parses s and stores it in c. from_env only changes the error message. */
static int set_value(struct config *c, const struct cfg_option *o, const char *s, int from_env,
                     char *errbuf, size_t errlen) {
    int64_t num = 0;
    const char *str = NULL;
    if (parse_value(o, s, &num, &str) != 0) {
        char env[64], expected[160];
        env_name(o, env, sizeof(env));
        describe_expected(o, expected, sizeof(expected));
        set_err(errbuf, errlen, "invalid value \"%.100s\" for --%s (%s)%s: expected %s", s, o->name,
                env, from_env ? " from environment" : "", expected);
        return ERR_INVALID;
    }
    char *field = (char *)c + o->offset;
    if (o->type == OPT_STRING)
        memcpy(field, &str, sizeof(str));
    else
        memcpy(field, &num, sizeof(num));
    return 0;
}

/* ---- loading --------------------------------------------------------- */

static int load_defaults(struct config *c) {
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (!options[i].def) continue; /* an optional string: NULL until given */
        int rc = set_value(c, &options[i], options[i].def, 0, NULL, 0);
        assert(rc == 0); /* a default the parser rejects is a bug in the table */
        if (rc != 0) return ERR_INTERNAL;
    }
    return 0;
}

static int load_env(struct config *c, char *errbuf, size_t errlen) {
    char env[64];
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (!(options[i].cmds & c->cmd)) continue;
        env_name(&options[i], env, sizeof(env));
        const char *v = getenv(env);
        if (v && set_value(c, &options[i], v, 1, errbuf, errlen) != 0) return ERR_INVALID;
    }
    return 0;
}

/* Picks the subcommand from argv[1]. Returns the index of the first
 * argument after it, or ERR_INVALID for an unknown command. */
static int parse_command(struct config *c, int argc, char **argv, char *errbuf, size_t errlen) {
    c->cmd = CMD_SERVE;
    if (argc < 2 || argv[1][0] == '-') return 1;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            c->cmd = commands[i].cmd;
            return 2;
        }
    }
    set_err(errbuf, errlen, "unknown command \"%.100s\" (see --help)", argv[1]);
    return ERR_INVALID;
}

static int add_arg(struct config *c, const char *arg, char *errbuf, size_t errlen) {
    if (c->nargs == CFG_MAX_ARGS) {
        set_err(errbuf, errlen, "too many arguments (at most %d)", CFG_MAX_ARGS);
        return ERR_INVALID;
    }
    c->args[c->nargs++] = arg;
    return 0;
}

/* Handles the "--name[=value]" at argv[*i], consuming the next argument as
 * the value when there is no '='. */
static int parse_flag(struct config *c, int argc, char **argv, int *i, char *errbuf,
                      size_t errlen) {
    const char *name = argv[*i] + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct cfg_option *o = find_option(name, len);
    if (!o) {
        set_err(errbuf, errlen, "unknown option --%.*s (see --help)", (int)(len > 64 ? 64 : len),
                name);
        return ERR_INVALID;
    }
    if (!(o->cmds & c->cmd)) {
        set_err(errbuf, errlen, "option --%s is not valid for \"%s\"", o->name,
                config_cmd_name(c->cmd));
        return ERR_INVALID;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (!value && *i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) value = argv[++*i];
    if (!value) {
        set_err(errbuf, errlen, "option --%s needs a value", o->name);
        return ERR_INVALID;
    }
    return set_value(c, o, value, 0, errbuf, errlen);
}

static int parse_args(struct config *c, int argc, char **argv, int first, char *errbuf,
                      size_t errlen) {
    int only_args = 0; /* after "--" everything is positional */
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (only_args || a[0] != '-' || strcmp(a, "-") == 0) {
            rc = add_arg(c, a, errbuf, errlen);
        } else if (strcmp(a, "--") == 0) {
            only_args = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            c->help = 1;
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            c->version = 1;
        } else if (a[1] == '-') {
            rc = parse_flag(c, argc, argv, &i, errbuf, errlen);
        } else {
            set_err(errbuf, errlen, "unknown option %.64s (see --help)", a);
            rc = ERR_INVALID;
        }
        if (rc != 0) return rc;
    }
    return 0;
}

int config_load(struct config *c, int argc, char **argv, char *errbuf, size_t errlen) {
    struct config tmp;
    memset(&tmp, 0, sizeof(tmp));
    int first = parse_command(&tmp, argc, argv, errbuf, errlen);
    if (first < 0) return first;
    int rc = load_defaults(&tmp);
    if (rc == 0) rc = load_env(&tmp, errbuf, errlen);
    if (rc == 0) rc = parse_args(&tmp, argc, argv, first, errbuf, errlen);
    if (rc != 0) return rc;
    *c = tmp;
    return 0;
}

/* ---- usage ----------------------------------------------------------- */

static const char *metavar(const struct cfg_option *o) {
    static const char *const by_type[] = {
        [OPT_INT] = "N",         [OPT_DURATION] = "DURATION", [OPT_SIZE] = "SIZE",
        [OPT_STRING] = "STRING", [OPT_ENUM] = "NAME",
    };
    return o->metavar ? o->metavar : by_type[o->type];
}

/* "serve", "serve, seed", or "all commands" for a cmds bitmask. */
static void group_title(int cmds, char *buf, size_t len) {
    if (cmds == CMD_ALL) {
        snprintf(buf, len, "all commands");
        return;
    }
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NCOMMANDS && n < len; i++)
        if (cmds & commands[i].cmd)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", commands[i].name);
}

static void print_option(FILE *out, const struct cfg_option *o, int width) {
    char flag[96], env[64];
    snprintf(flag, sizeof(flag), "--%s %s", o->name, metavar(o));
    env_name(o, env, sizeof(env));
    fprintf(out, "  %-*s  (env %s, default %s) %s", width, flag, env, o->def ? o->def : "none",
            o->help);
    if (o->type == OPT_ENUM) {
        for (size_t i = 0; o->names[i]; i++) fprintf(out, "%s%s", i ? "|" : ": ", o->names[i]);
    }
    fputc('\n', out);
}

/* Whether an earlier option already had this cmds mask (its group was printed). */
static int group_seen(size_t upto, int cmds) {
    for (size_t i = 0; i < upto; i++)
        if (options[i].cmds == cmds) return 1;
    return 0;
}

void config_usage(FILE *out) {
    int width = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        int w = (int)(strlen(options[i].name) + 3 + strlen(metavar(&options[i])));
        if (w > width) width = w;
    }
    fprintf(out, "usage: concertd [serve|seed|import|migrate] [options]\n"
                 "       concertd import [--db URL] EVENT.json\n"
                 "       concertd --help | --version\n\n"
                 "Every option can also be set with its environment variable;\n"
                 "the command line wins over the environment.\n");
    for (size_t g = 0; g < NOPTIONS; g++) {
        if (group_seen(g, options[g].cmds)) continue;
        char title[64];
        group_title(options[g].cmds, title, sizeof(title));
        fprintf(out, "\nOptions for %s:\n", title);
        for (size_t i = g; i < NOPTIONS; i++)
            if (options[i].cmds == options[g].cmds) print_option(out, &options[i], width);
    }
}
