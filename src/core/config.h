/* config.h -- the one table of options (Redis's standardConfig is the model).
 *
 * Each option has a flag (--max-body), an environment variable
 * (CONCERT_MAX_BODY), a type, a default, bounds and a help line, all in the
 * table in config.c. --help and every validation error are generated from
 * that table. Precedence: default < environment < command line.
 * Not here: what the values mean to the program (main.c and the layers). */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Subcommands; an option belongs to one or more of them. */
enum cfg_cmd {
    CMD_SERVE = 1 << 0,
    CMD_SEED = 1 << 1,
    CMD_IMPORT = 1 << 2,
    CMD_MIGRATE = 1 << 3,
};

#define CFG_MAX_ARGS 8

struct config {
    int cmd;                        /* one enum cfg_cmd */
    int help, version;              /* --help / --version seen */
    const char *args[CFG_MAX_ARGS]; /* positional arguments after the subcommand */
    int nargs;

    /* common */
    const char *db;     /* "sqlite:./concert.db" */
    int64_t log_level;  /* enum log_level */
    int64_t log_format; /* enum log_format */

    /* serve */
    const char *listen; /* "0.0.0.0:8080" */
    int64_t workers;    /* 0 = one per core */
    int64_t write_workers; /* 0 = writes run on the event threads */
    int64_t seat_cache;    /* bytes; 0 = off */
    int64_t max_connections;
    int64_t max_connections_per_ip; /* 0 = unlimited */
    int64_t connection_timeout_ms;
    int64_t max_body;          /* bytes */
    int64_t max_header_bytes;  /* bytes: request line + headers */
    int64_t shutdown_grace_ms; /* how long in-flight requests may take on SIGTERM */
    int64_t metrics;           /* 1: count every request for /metrics */
    int64_t access_log;        /* 1: an access log line per request (at info level) */
    const char *queue;         /* "local" or "redis://..." (serve, seed) */
    const char *queue_prefix;  /* Redis key prefix (serve, seed) */
    int64_t queue_lease_ms;    /* Redis: the admitting instance's lease */
    int64_t queue_max_active;
    int64_t queue_admit_per_sec;
    int64_t queue_active_ttl_ms;
    int64_t queue_waiting_idle_ms;
    int64_t queue_tick_ms;
    const char *admin_key; /* NULL: admin routes refuse everyone */
    const char *web_root;  /* directory of the fans' pages; "none": no pages */

    /* serve: booking */
    int64_t hold_ttl_ms;        /* how long a hold keeps its seats */
    int64_t max_seats_per_hold; /* seats one hold may take */
    int64_t max_charge;         /* largest single balance charge, won */

    /* serve: payment gateway (card payments) */
    const char *pg_url;              /* NULL: card payments are 503 "not configured" */
    int64_t pg_timeout_ms;           /* per gateway request */
    int64_t pg_breaker_window;       /* calls in the breaker's sliding window */
    int64_t pg_breaker_min_calls;    /* calls before the failure rate is judged */
    int64_t pg_breaker_failure_rate; /* % of failed calls that opens the breaker */
    int64_t pg_breaker_open_ms;      /* how long the breaker stays open */
    const char *events;              /* outbox relay sink "log:PATH"; NULL: no relay */

    /* serve: abuse limits and authentication (docs/security.md) */
    int64_t request_timeout_ms;  /* a request must arrive within this */
    int64_t limit_enter_ip;      /* queue entries a second per client address; 0: off */
    int64_t limit_enter_user;    /* queue entries a second per user; 0: off */
    int64_t limit_hold_ip;       /* holds a second per client address; 0: off */
    int64_t limit_hold_user;     /* holds a second per user; 0: off */
    int64_t limit_burst;         /* bucket size of each of those */
    int64_t limit_table_size;    /* ids each limiter tracks at once */
    int64_t max_live_holds;      /* live holds per user; 0: no cap */
    const char *auth_jwt_secret; /* HS256 secret; NULL: no user authentication */
    const char *trusted_proxies; /* IPs/CIDRs whose X-Forwarded-For is believed; NULL: none */

    /* seed */
    int64_t seed_concerts;
    int64_t seed_sessions_per_concert;
    int64_t seed_seats_per_session;
    int64_t seed_price;
    int64_t seed_users;
    int64_t seed_balance;
    const char *seed_active_tokens; /* NULL: none */
    int64_t seed_active_ttl_ms;
};

/* Fills c from defaults, then the environment (envp-style lookups through
 * getenv), then argv (argv[0] is the program). argv[1] may be a subcommand
 * (serve, seed, import, migrate); without one the command is serve.
 * "--opt value" and "--opt=value" are both accepted. Options of another
 * subcommand, unknown options and bad values fail with ERR_INVALID and an
 * errbuf that names the option (or environment variable) and its bounds. */
int config_load(struct config *c, int argc, char **argv, char *errbuf, size_t errlen);

/* Writes the usage text generated from the table: every option of every
 * subcommand with its env var, default and help. */
void config_usage(FILE *out);

const char *config_cmd_name(int cmd);
