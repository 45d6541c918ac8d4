/* sink.c -- opens the event sink a --events URL names (see sink.h): picks
 * the adapter by the URL's scheme. Not here: the adapters themselves. */
#include "sink/sink.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

int sink_open(const char *url, struct sink **out, char *errbuf, size_t errlen) {
    if (strncmp(url, "log:", 4) == 0 && url[4]) return sink_log_open(url + 4, out, errbuf, errlen);
    if (strncmp(url, "redis://", 8) == 0) return sink_redis_open(url, out, errbuf, errlen);
    if (strncmp(url, "kafka://", 8) == 0) return sink_kafka_open(url, 0, out, errbuf, errlen);
    snprintf(errbuf, errlen,
             "--events %s: want log:PATH, redis://HOST[:PORT][/STREAM] or kafka://BROKERS/TOPIC",
             url);
    return ERR_INVALID;
}
