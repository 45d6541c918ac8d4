/* redis.c -- the Redis Streams event sink: --events redis://HOST[:PORT][/STREAM]
 * (port 6379, stream "concertd:events" by default).
 *
 * Each event becomes one stream entry with the fields id, topic,
 * aggregateId, payload (the JSON text) and createdAt (RFC 3339), and the
 * entry id "<outbox id>-1", so the stream is ordered like the outbox and a
 * consumer can read the outbox id from the entry id as well.
 *
 * Design notes
 *
 *   1. One round trip per batch: the whole batch goes to Redis as one EVAL
 *      of a small Lua script that XADDs the events in order. A script runs
 *      alone and stops at its first error, so the stream only ever gains a
 *      prefix of a batch, never a batch with a hole in it. (Separate
 *      pipelined XADDs could fail in the middle and succeed after it; the
 *      retry of the hole would then be refused as "equal or smaller than
 *      the top item" and the event lost.)
 *   2. Redelivery is deduplicated by Redis itself: the script skips every
 *      event whose id is not above the stream's last-generated-id. After a
 *      crash between the sink's acknowledgement and the relay's mark, the
 *      batch is sent again and nothing is appended twice. This relies on
 *      the stream belonging to concertd: entries another writer adds with
 *      larger ids (e.g. "*", which uses the clock) would make concertd's
 *      later events look already published.
 *   3. publish() returns 0 only when the script's reply arrived, i.e. Redis
 *      executed every XADD of the batch. A lost connection, a timeout
 *      (REDIS_TIMEOUT_MS) or an error reply is an error: the relay retries
 *      the batch at its next pass, and the connection is opened again then.
 *      Durability beyond that acknowledgement is Redis's persistence
 *      configuration (AOF with appendfsync always for "durable").
 *
 * Not here: which events, when (service/outbox.c). */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/err.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "core/url.h"
#include "core/xmalloc.h"
#include "sink/sink.h"

#define MOD "sink"
#define REDIS_DEFAULT_PORT 6379
#define REDIS_TIMEOUT_MS 5000
#define FIELDS 5 /* per event: id, topic, aggregateId, payload, createdAt */

/* KEYS[1] the stream; ARGV five per event (see FIELDS). Returns how many
 * were appended (the rest were there already). */
static const char XADD_SCRIPT[] =
    "local top = 0\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
    "  for i = 1, #info, 2 do\n"
    "    if info[i] == 'last-generated-id' then\n"
    "      top = tonumber(string.match(info[i + 1], '^(%d+)'))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local added = 0\n"
    "for i = 1, #ARGV, 5 do\n"
    "  local id = tonumber(ARGV[i])\n"
    "  if id > top then\n"
    "    redis.call('XADD', KEYS[1], ARGV[i] .. '-1', 'id', ARGV[i], 'topic', ARGV[i + 1],\n"
    "               'aggregateId', ARGV[i + 2], 'payload', ARGV[i + 3], 'createdAt', ARGV[i + 4])\n"
    "    top = id\n"
    "    added = added + 1\n"
    "  end\n"
    "end\n"
    "return added\n";

struct redis_sink {
    struct sink base; /* must be first */
    char *host;
    int port;
    char *stream;
    redisContext *ctx; /* NULL or broken: opened again at the next publish */
};

static struct timeval timeout_tv(void) {
    return (struct timeval){.tv_sec = REDIS_TIMEOUT_MS / 1000,
                            .tv_usec = (REDIS_TIMEOUT_MS % 1000) * 1000};
}

static void drop_connection(struct redis_sink *s) {
    if (s->ctx) redisFree(s->ctx);
    s->ctx = NULL;
}

static int ensure_connection(struct redis_sink *s) {
    if (s->ctx && !s->ctx->err) return 0;
    drop_connection(s);
    redisContext *c = redisConnectWithTimeout(s->host, s->port, timeout_tv());
    if (!c || c->err) {
        LOG_WARN(MOD, "op=connect sink=redis addr=%s:%d err=\"%s\"", s->host, s->port,
                 c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return ERR_UNAVAILABLE;
    }
    if (redisSetTimeout(c, timeout_tv()) != REDIS_OK) {
        redisFree(c);
        return ERR_UNAVAILABLE;
    }
    s->ctx = c;
    return 0;
}

/* The EVAL command line for the batch: argv strings point into a malloc'ed
 * buffer of numbers and timestamps (*nums) or into ev. */
struct eval_args {
    size_t argc;
    const char **argv;
    size_t *lens;
    char *nums; /* 3 numbers per event: id, aggregateId, createdAt */
};

enum { NUM_LEN = 32 };

static void set_arg(struct eval_args *a, size_t i, const char *p) {
    a->argv[i] = p;
    a->lens[i] = strlen(p);
}

static void build_args(struct redis_sink *s, const struct sink_event *ev, size_t n,
                       struct eval_args *a) {
    a->argc = 4 + FIELDS * n;
    a->argv = xcalloc(a->argc, sizeof(*a->argv));
    a->lens = xcalloc(a->argc, sizeof(*a->lens));
    a->nums = xcalloc(3 * n, NUM_LEN);
    set_arg(a, 0, "EVAL");
    set_arg(a, 1, XADD_SCRIPT);
    set_arg(a, 2, "1");
    set_arg(a, 3, s->stream);
    for (size_t i = 0; i < n; i++) {
        char *id = a->nums + (3 * i) * NUM_LEN, *agg = id + NUM_LEN, *at = agg + NUM_LEN;
        snprintf(id, NUM_LEN, "%lld", (long long)ev[i].id);
        snprintf(agg, NUM_LEN, "%lld", (long long)ev[i].aggregate_id);
        time_format_rfc3339(ev[i].created_at_ms, at, NUM_LEN);
        size_t k = 4 + FIELDS * i;
        set_arg(a, k, id);
        set_arg(a, k + 1, ev[i].topic);
        set_arg(a, k + 2, agg);
        set_arg(a, k + 3, ev[i].payload);
        set_arg(a, k + 4, at);
    }
}

static void free_args(struct eval_args *a) {
    free(a->argv);
    free(a->lens);
    free(a->nums);
}

/* Events must arrive in increasing id order, ids positive: the script's
 * dedupe compares each id with the stream's top. */
static int batch_ordered(const struct sink_event *ev, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ev[i].id <= 0 || (i > 0 && ev[i].id <= ev[i - 1].id)) return 0;
    return 1;
}

static int redis_publish(struct sink *k, const struct sink_event *ev, size_t n) {
    struct redis_sink *s = (struct redis_sink *)k;
    if (n == 0) return 0;
    if (!batch_ordered(ev, n)) return ERR_INTERNAL;
    int err = ensure_connection(s);
    if (err) return err;
    struct eval_args a;
    build_args(s, ev, n, &a);
    redisReply *r = redisCommandArgv(s->ctx, (int)a.argc, a.argv, a.lens);
    free_args(&a);
    if (!r) {
        LOG_WARN(MOD, "op=publish sink=redis err=\"%s\"", s->ctx->errstr);
        drop_connection(s);
        return ERR_UNAVAILABLE;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        LOG_ERROR(MOD, "op=publish sink=redis stream=%s err=\"%s\"", s->stream,
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        err = ERR_IO;
    } else if ((size_t)r->integer < n) {
        LOG_INFO(MOD, "op=publish sink=redis stream=%s duplicates=%lld", s->stream,
                 (long long)n - r->integer);
    }
    freeReplyObject(r);
    return err;
}

static void redis_close(struct sink *k) {
    struct redis_sink *s = (struct redis_sink *)k;
    drop_connection(s);
    free(s->host);
    free(s->stream);
    free(s);
}

static const struct sink_ops redis_ops = {.publish = redis_publish, .close = redis_close};

int sink_redis_open(const char *url, struct sink **out, char *errbuf, size_t errlen) {
    struct redis_sink *s = xcalloc(1, sizeof(*s));
    const char *stream;
    if (url_split(url, "redis://", REDIS_DEFAULT_PORT, &s->host, &s->port, &stream) ||
        (stream && !*stream)) {
        snprintf(errbuf, errlen, "--events %s: want redis://HOST[:PORT][/STREAM]", url);
        free(s->host);
        free(s);
        return ERR_INVALID;
    }
    s->stream = xstrdup(stream ? stream : SINK_REDIS_DEFAULT_STREAM);
    s->base.ops = &redis_ops;
    s->base.kind = "redis";
    /* Redis may come up after concertd: events wait in the outbox meanwhile. */
    if (ensure_connection(s))
        LOG_WARN(MOD, "op=open sink=redis addr=%s:%d msg=\"not reachable yet, will retry\"",
                 s->host, s->port);
    *out = &s->base;
    return 0;
}
