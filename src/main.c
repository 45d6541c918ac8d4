/* main.c -- parse the configuration, open the adapters, start the hold
 * sweeper, the payment reconciler, the outbox relay and the HTTP workers,
 * wait for SIGINT/SIGTERM, shut down in order.
 *
 * Shutdown order: stop accepting and finish in-flight requests (http_stop),
 * then stop the payment reconciler and close the gateway, stop the outbox
 * relay (after one last pass) and close its sink, stop the
 * waiting-room ticker and the hold sweeper, close the queue and the store
 * (which lets its committer finish the writes queued), so nothing ever runs
 * against a closed adapter. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/web.h"
#include "api/limits.h"
#include "cli.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "gateway/gateway.h"
#include "http/server.h"
#include "queue/queue.h"
#include "service/booking.h"
#include "service/outbox.h"
#include "service/payment.h"
#include "service/waitroom.h"
#include "sink/sink.h"
#include "store/store.h"

static int open_queue(const struct config *c, struct store *store, struct queue **out, char *err,
                      size_t errlen) {
    if (strcmp(c->queue, "local") == 0)
        return queue_local_open(store, time_now_ms(), out, err, errlen);
    if (c->queue_lease_ms < 2 * c->queue_tick_ms) {
        snprintf(err, errlen, "--queue-lease %lld ms must be at least twice --queue-tick (%lld ms)",
                 (long long)c->queue_lease_ms, (long long)c->queue_tick_ms);
        return ERR_INVALID;
    }
    struct queue_redis_opts o = {.prefix = c->queue_prefix, .lease_ms = c->queue_lease_ms};
    return queue_redis_open(c->queue, &o, out, err, errlen);
}

/* The threads first (the ticker writes through the queue, the sweeper to
 * the store), then the queue, then the store. sweeper may be NULL. */
static void close_all(struct waitroom *wr, struct booking_sweeper *sweeper, struct queue *queue,
                      struct store *store) {
    waitroom_free(wr);
    if (sweeper) booking_sweeper_stop(sweeper);
    queue->ops->close(queue);
    store->ops->close(store);
}

static void paid(void *ctx, int64_t user_id, int64_t now_ms) {
    waitroom_paid(ctx, user_id, now_ms);
}

/* Card payments when --pg-url is given: the gateway adapter, the breaker
 * and the reconciler. *gw and *out stay NULL without --pg-url. */
static int open_payments(const struct config *c, struct store *store, struct waitroom *wr,
                         struct gateway **gw, struct payments **out) {
    char err[512];
    *gw = NULL;
    *out = NULL;
    if (!c->pg_url) return 0;
    if (c->pg_breaker_min_calls > c->pg_breaker_window) {
        fprintf(stderr,
                "concertd: --pg-breaker-min-calls %lld is more than --pg-breaker-window %lld\n",
                (long long)c->pg_breaker_min_calls, (long long)c->pg_breaker_window);
        return 1;
    }
    if (gateway_http_open(c->pg_url, c->pg_timeout_ms, gw, err, sizeof(err))) {
        fprintf(stderr, "concertd: %s\n", err);
        return 1;
    }
    struct payment_opts po = {
        .timeout_ms = c->pg_timeout_ms,
        .breaker = {.window = (int)c->pg_breaker_window,
                    .min_calls = (int)c->pg_breaker_min_calls,
                    .failure_rate_pct = (int)c->pg_breaker_failure_rate,
                    .open_ms = c->pg_breaker_open_ms,
                    .half_open_calls = 3,
                    .slow_ms = c->pg_timeout_ms},
        .now_ms = time_now_ms,
        .mono_ms = time_mono_ms,
        .on_paid = paid,
        .on_paid_ctx = wr,
    };
    if (payments_new(store, *gw, &po, out) || payments_start(*out)) {
        fprintf(stderr, "concertd: cannot start card payments (breaker options or thread)\n");
        payments_free(*out);
        (*gw)->ops->close(*gw);
        *gw = NULL;
        *out = NULL;
        return 1;
    }
    LOG_INFO("main", "card payments via %s timeout_ms=%lld", c->pg_url,
             (long long)c->pg_timeout_ms);
    return 0;
}

/* The outbox relay when --events is given; both stay NULL without it. */
static int open_events(const struct config *c, struct store *store, struct sink **sink,
                       struct outbox_relay **relay) {
    char err[512];
    *sink = NULL;
    *relay = NULL;
    if (!c->events) return 0;
    if (sink_open(c->events, sink, err, sizeof(err))) {
        fprintf(stderr, "concertd: %s\n", err);
        return 1;
    }
    if (outbox_relay_start(store, *sink, OUTBOX_RELAY_INTERVAL_MS, relay)) {
        fprintf(stderr, "concertd: cannot start the outbox relay thread\n");
        (*sink)->ops->close(*sink);
        *sink = NULL;
        return 1;
    }
    return 0;
}

/* The fans' pages (web/) from --web-root into memory; *out stays NULL with
 * "none". When the compiled-in default directory is missing (a binary
 * copied away from its source tree), the server runs without pages and
 * says so; a --web-root given that cannot be read stops start-up. */
static int open_web(const struct config *c, struct web_site **out) {
    char err[512];
    *out = NULL;
    if (strcmp(c->web_root, "none") == 0) return 0;
    if (web_load(c->web_root, c->max_seats_per_hold, out, err, sizeof(err)) == 0) {
        LOG_INFO("main", "web pages root=%s files=%zu", c->web_root, web_file_count(*out));
        return 0;
    }
    if (strcmp(c->web_root, CONCERT_WEB_ROOT) == 0) {
        LOG_WARN("main", "no web pages: %s (set --web-root, or none)", err);
        return 0;
    }
    fprintf(stderr, "concertd: --web-root: %s\n", err);
    return 1;
}

/* The reconciler and the relay write to the store: they stop before it closes. */
static void close_payments(struct gateway *gw, struct payments *pay, struct sink *sink,
                           struct outbox_relay *relay) {
    payments_free(pay);
    if (gw) gw->ops->close(gw);
    outbox_relay_stop(relay); /* after the reconciler: its last events go out too */
    if (sink) sink->ops->close(sink);
}

static int serve(const struct config *c) {
    /* Block the stop signals before any thread starts, so every worker
     * inherits the mask and only sigwait() below receives them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct store *store;
    if (cli_open_store(c, &store)) return 1;
    if (store->ops->set_seat_cache) store->ops->set_seat_cache(store, (size_t)c->seat_cache);
    struct queue *queue;
    char err[512];
    if (open_queue(c, store, &queue, err, sizeof(err))) {
        fprintf(stderr, "concertd: %s\n", err);
        store->ops->close(store);
        return 1;
    }
    struct waitroom_opts wo = {
        .max_active = c->queue_max_active,
        .admit_per_sec = c->queue_admit_per_sec,
        .active_ttl_ms = c->queue_active_ttl_ms,
        .waiting_idle_ms = c->queue_waiting_idle_ms,
        .tick_ms = c->queue_tick_ms,
        .now_ms = time_now_ms,
    };
    struct waitroom *wr = waitroom_new(queue, &wo);
    struct booking_sweeper *sweeper = NULL;
    if (booking_sweeper_start(store, BOOKING_SWEEP_INTERVAL_MS, &sweeper)) {
        fprintf(stderr, "concertd: cannot start the hold sweeper thread\n");
        close_all(wr, NULL, queue, store);
        return 1;
    }
    struct gateway *gw;
    struct payments *pay;
    struct sink *sink;
    struct outbox_relay *relay;
    if (open_payments(c, store, wr, &gw, &pay)) {
        close_all(wr, sweeper, queue, store);
        return 1;
    }
    if (open_events(c, store, &sink, &relay)) {
        close_payments(gw, pay, NULL, NULL);
        close_all(wr, sweeper, queue, store);
        return 1;
    }
    struct web_site *web;
    if (open_web(c, &web)) {
        close_payments(gw, pay, sink, relay);
        close_all(wr, sweeper, queue, store);
        return 1;
    }
    struct api_env env = {.store = store,
                          .waitroom = wr,
                          .payments = pay,
                          .cfg = c,
                          .web = web,
                          .limits = api_limits_create(c)};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct http_opts o = {
        .listen = c->listen,
        .workers = c->workers ? (int)c->workers : (int)(cores > 0 ? cores : 1),
        .write_workers = (int)c->write_workers,
        .max_connections = (unsigned)c->max_connections,
        .max_connections_per_ip = (unsigned)c->max_connections_per_ip,
        .timeout_s = (unsigned)((c->connection_timeout_ms + 999) / 1000),
        .max_body = (size_t)c->max_body,
        .max_header_bytes = (size_t)c->max_header_bytes,
        .grace_ms = c->shutdown_grace_ms,
        .count_requests = c->metrics != 0,
        .access_log = c->access_log != 0,
        .request_timeout_ms = c->request_timeout_ms,
        .trusted_proxies = c->trusted_proxies,
    };
    struct http_server *http = NULL;
    if (o.access_log && log_level <= LOG_LEVEL_INFO && log_access_buffer_start())
        LOG_WARN("main", "no access log flusher thread: access lines are written one by one");
    if (waitroom_start(wr) || http_start(&o, &env, &http, err, sizeof(err))) {
        log_access_buffer_stop();
        fprintf(stderr, "concertd: %s\n", http ? "cannot start the waiting-room ticker" : err);
        api_limits_free(env.limits);
        close_payments(gw, pay, sink, relay);
        close_all(wr, sweeper, queue, store);
        web_free(web);
        return 1;
    }
    LOG_INFO("main", "concertd %s ready db=%s store=%s queue=%s", CONCERT_VERSION, c->db,
             store->kind, queue->kind);

    int sig = 0;
    sigwait(&stop, &sig);
    LOG_INFO("main", "signal=%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_stop(http);
    log_access_buffer_stop(); /* every request has been answered: their lines go out */
    web_free(web); /* after the last response: bodies point into it */
    api_limits_free(env.limits);
    close_payments(gw, pay, sink, relay);
    close_all(wr, sweeper, queue, store);
    LOG_INFO("main", "bye");
    return 0;
}

int main(int argc, char **argv) {
    struct config c;
    char err[512];
    if (config_load(&c, argc, argv, err, sizeof(err))) {
        fprintf(stderr, "concertd: %s\n", err);
        return 2;
    }
    if (c.help) {
        config_usage(stdout);
        return 0;
    }
    if (c.version) {
        printf("concertd %s\n", CONCERT_VERSION);
        return 0;
    }
    log_init((int)c.log_level, (int)c.log_format);
    switch (c.cmd) {
    case CMD_SEED: return cli_seed(&c);
    case CMD_IMPORT: return cli_import(&c);
    case CMD_MIGRATE: return cli_migrate(&c);
    default: return serve(&c);
    }
}
