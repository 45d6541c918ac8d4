/* render.c -- an event as the sinks' JSON object (see render.h). */
#include "sink/render.h"

#include <jansson.h>

#include "core/timeutil.h"

char *sink_render_event(const struct sink_event *ev) {
    json_t *payload = json_loads(ev->payload, 0, NULL);
    char at[32];
    time_format_rfc3339(ev->created_at_ms, at, sizeof(at));
    json_t *o = json_pack("{sI ss sI so ss}", "id", (json_int_t)ev->id, "topic", ev->topic,
                          "aggregateId", (json_int_t)ev->aggregate_id, "payload",
                          payload ? payload : json_null(), "createdAt", at);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return line;
}
