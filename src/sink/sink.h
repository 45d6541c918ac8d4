/* sink.h -- the event sink port: where the outbox relay publishes domain
 * events (DESIGN.md 1, 2).
 *
 * A port is a struct of function pointers plus the adapter's own state:
 * adapters (log.c, redis.c, kafka.c) embed struct sink as
 * their first member. publish() is called by one thread at a time (the
 * relay's).
 *
 * Delivery is at least once: publish() returns 0 only when the events are
 * durable in the sink; the relay marks them published afterwards, so a
 * crash in between publishes them again. Consumers dedupe by id.
 *
 * Not here: which events exist (store/, service/), the relay (service/outbox.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct sink_event {
    int64_t id; /* the outbox id: publication order, and the consumer's dedupe key */
    const char *topic;
    int64_t aggregate_id;
    const char *payload; /* a JSON object */
    int64_t created_at_ms;
};

struct sink;

struct sink_ops {
    /* Publishes ev[0..n) in order; 0 when all are durable, else an error
     * (none may be considered published). */
    int (*publish)(struct sink *k, const struct sink_event *ev, size_t n);
    void (*close)(struct sink *k);
};

struct sink {
    const struct sink_ops *ops;
    const char *kind; /* "log", "redis", "kafka" */
};

#define SINK_REDIS_DEFAULT_STREAM "concertd:events"
#define SINK_KAFKA_TIMEOUT_MS 10000 /* a publish gives up on undelivered events after this */

/* Opens the sink named by url (sink.c dispatches on the scheme):
 *   "log:PATH"                          JSON lines appended to PATH (log.c)
 *   "redis://HOST[:PORT][/STREAM]"      entries of a Redis stream (redis.c)
 *   "kafka://BROKER[,BROKER...]/TOPIC"  messages of a Kafka topic (kafka.c)
 * ERR_INVALID with errbuf set for anything else. A network sink whose
 * server is not reachable yet still opens: publish() fails until it is. */
int sink_open(const char *url, struct sink **out, char *errbuf, size_t errlen);
int sink_log_open(const char *path, struct sink **out, char *errbuf, size_t errlen);
int sink_redis_open(const char *url, struct sink **out, char *errbuf, size_t errlen);
/* timeout_ms: how long publish() waits for the delivery reports before it
 * gives up and fails (0: SINK_KAFKA_TIMEOUT_MS). */
int sink_kafka_open(const char *url, int timeout_ms, struct sink **out, char *errbuf,
                    size_t errlen);
