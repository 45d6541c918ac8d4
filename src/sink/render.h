/* render.h -- one event as the JSON object the sinks write (docs/events.md):
 *
 *   {"id":7,"topic":"payment.completed","aggregateId":3,"payload":{...},"createdAt":"..."}
 *
 * Shared by the log-file and Kafka sinks so both carry the same bytes.
 * Not here: framing (lines, messages) or delivery (the adapters). */
#pragma once
#include "sink/sink.h"

/* The event as compact JSON in a malloc'ed string the caller frees; NULL
 * when it cannot be rendered. A payload that is not JSON becomes null. */
char *sink_render_event(const struct sink_event *ev);
