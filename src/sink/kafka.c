/* kafka.c -- the Kafka event sink: --events kafka://BROKER[,BROKER...]/TOPIC.
 *
 * Each event becomes one message whose value is the event's JSON object
 * (render.h, the same bytes as a log-file line) and whose key is the
 * aggregate id in decimal, so all events of one aggregate land in one
 * partition, in order.
 *
 * Design notes
 *
 *   1. The producer is idempotent (enable.idempotence=true, which implies
 *      acks=all, set explicitly too): librdkafka's own retries neither
 *      duplicate nor reorder messages within a partition.
 *   2. publish() produces the batch, then flushes: it returns 0 only when
 *      every message's delivery report arrived and succeeded. Messages
 *      that are not delivered within the timeout (message.timeout.ms) get
 *      a failed report, so flush ends; what is still queued after that is
 *      purged. Any failure fails the batch and the relay sends it again:
 *      messages of the batch that did reach Kafka are then there twice
 *      (at least once; consumers dedupe by the "id" in the value).
 *   3. After any failed publish the producer is destroyed and made again at
 *      the next one, the Kafka counterpart of a reconnect: a new producer
 *      starts without the old one's cached topic errors, fatal idempotence
 *      state (rd_kafka_fatal_error) or messages a flush could not drain.
 *   4. Delivery reports are served by rd_kafka_flush() on the relay's
 *      thread, the only thread that calls publish(); they write into the
 *      sink's status array, which lives as long as the producer.
 *
 * Not here: which events, when (service/outbox.c). */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "sink/render.h"
#include "sink/sink.h"

#define MOD "sink"
#define FLUSH_MARGIN_MS 5000 /* past message.timeout.ms, for the last reports */

enum { PENDING = 1 }; /* a status before its delivery report */

struct kafka_sink {
    struct sink base; /* must be first */
    char *brokers;
    char *topic;
    int timeout_ms;
    rd_kafka_t *rk; /* NULL: made at the next publish */
    int *status;    /* per message of the batch: PENDING, 0 or a rd_kafka_resp_err_t */
    size_t cap;     /* of status */
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    struct kafka_sink *s = opaque;
    size_t i = (size_t)(uintptr_t)m->_private;
    if (i < s->cap) s->status[i] = m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : (int)m->err;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (level <= 3)
        LOG_ERROR(MOD, "sink=kafka facility=%s msg=\"%s\"", fac, buf);
    else
        LOG_WARN(MOD, "sink=kafka facility=%s msg=\"%s\"", fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
                    size_t errlen) {
    if (rd_kafka_conf_set(conf, name, value, errbuf, errlen) == RD_KAFKA_CONF_OK) return 0;
    return ERR_INVALID;
}

static int make_producer(struct kafka_sink *s, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char timeout[24];
    snprintf(timeout, sizeof(timeout), "%d", s->timeout_ms);
    if (conf_set(conf, "bootstrap.servers", s->brokers, errbuf, errlen) ||
        conf_set(conf, "enable.idempotence", "true", errbuf, errlen) ||
        conf_set(conf, "acks", "all", errbuf, errlen) ||
        conf_set(conf, "message.timeout.ms", timeout, errbuf, errlen) ||
        conf_set(conf, "linger.ms", "5", errbuf, errlen) ||
        conf_set(conf, "log_level", "4", errbuf, errlen)) {
        rd_kafka_conf_destroy(conf);
        return ERR_INVALID;
    }
    rd_kafka_conf_set_opaque(conf, s);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
    if (!s->rk) {
        rd_kafka_conf_destroy(conf); /* rd_kafka_new owns conf only on success */
        return ERR_INVALID;
    }
    return 0;
}

static void drop_producer(struct kafka_sink *s) {
    if (s->rk) rd_kafka_destroy(s->rk);
    s->rk = NULL;
}

/* Queues message i; 0 or an error (the queue stays full past the timeout). */
static int produce_one(struct kafka_sink *s, const struct sink_event *ev, size_t i) {
    char key[24];
    int klen = snprintf(key, sizeof(key), "%lld", (long long)ev->aggregate_id);
    char *value = sink_render_event(ev);
    if (!value) return ERR_INTERNAL;
    rd_kafka_resp_err_t e;
    for (int tries = 0;; tries++) {
        e = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(s->topic), RD_KAFKA_V_KEY(key, (size_t)klen),
                              RD_KAFKA_V_VALUE(value, strlen(value)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE((void *)(uintptr_t)i), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries * 100 >= s->timeout_ms) break;
        rd_kafka_poll(s->rk, 100); /* serves reports, which makes room */
    }
    free(value);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    s->status[i] = (int)e;
    LOG_WARN(MOD, "op=produce sink=kafka topic=%s err=\"%s\"", s->topic, rd_kafka_err2str(e));
    return ERR_UNAVAILABLE;
}

/* Waits for every report of the batch; 0 when all arrived. */
static int drain(struct kafka_sink *s) {
    if (rd_kafka_flush(s->rk, s->timeout_ms + FLUSH_MARGIN_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    if (rd_kafka_flush(s->rk, FLUSH_MARGIN_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    return ERR_UNAVAILABLE;
}

static int batch_result(struct kafka_sink *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s->status[i] == 0) continue;
        LOG_WARN(MOD, "op=publish sink=kafka topic=%s err=\"%s\"", s->topic,
                 s->status[i] == PENDING ? "no delivery report"
                                         : rd_kafka_err2str((rd_kafka_resp_err_t)s->status[i]));
        return ERR_UNAVAILABLE;
    }
    return 0;
}

static int kafka_publish(struct sink *k, const struct sink_event *ev, size_t n) {
    struct kafka_sink *s = (struct kafka_sink *)k;
    char errbuf[256];
    if (n == 0) return 0;
    if (!s->rk && make_producer(s, errbuf, sizeof(errbuf))) {
        LOG_ERROR(MOD, "op=producer sink=kafka err=\"%s\"", errbuf);
        return ERR_UNAVAILABLE;
    }
    if (n > s->cap) {
        s->cap = n;
        s->status = xrealloc(s->status, n * sizeof(*s->status));
    }
    for (size_t i = 0; i < n; i++) s->status[i] = PENDING;
    int err = 0;
    for (size_t i = 0; i < n && err == 0; i++) err = produce_one(s, &ev[i], i);
    int drained = drain(s); /* also after a failed produce: nothing may stay queued */
    if (err == 0) err = batch_result(s, n);
    if (err == 0 && drained) err = drained;
    if (err) drop_producer(s); /* design note 3 */
    return err;
}

static void kafka_close(struct sink *k) {
    struct kafka_sink *s = (struct kafka_sink *)k;
    drop_producer(s);
    free(s->status);
    free(s->brokers);
    free(s->topic);
    free(s);
}

static const struct sink_ops kafka_ops = {.publish = kafka_publish, .close = kafka_close};

int sink_kafka_open(const char *url, int timeout_ms, struct sink **out, char *errbuf,
                    size_t errlen) {
    const char *rest = strncmp(url, "kafka://", 8) == 0 ? url + 8 : NULL;
    const char *slash = rest ? strchr(rest, '/') : NULL;
    if (!slash || slash == rest || !slash[1] || strchr(slash + 1, '/')) {
        snprintf(errbuf, errlen, "--events %s: want kafka://BROKER[,BROKER...]/TOPIC", url);
        return ERR_INVALID;
    }
    struct kafka_sink *s = xcalloc(1, sizeof(*s));
    s->base.ops = &kafka_ops;
    s->base.kind = "kafka";
    s->brokers = xcalloc(1, (size_t)(slash - rest) + 1);
    memcpy(s->brokers, rest, (size_t)(slash - rest));
    s->topic = xstrdup(slash + 1);
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : SINK_KAFKA_TIMEOUT_MS;
    char why[256];
    if (make_producer(s, why, sizeof(why))) { /* bad settings, not an absent broker */
        snprintf(errbuf, errlen, "--events %s: %s", url, why);
        kafka_close(&s->base);
        return ERR_INVALID;
    }
    *out = &s->base;
    return 0;
}
