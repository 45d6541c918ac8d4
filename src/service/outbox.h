/* outbox.h -- the outbox relay: publishes the domain events the store's
 * transactions wrote into the outbox table to an event sink, at least
 * once, in outbox id order (so in order per reservation), surviving
 * restarts (DESIGN.md 1).
 *
 * Not here: which events exist (written by the store ops they describe),
 * how a sink stores them (sink/). */
#pragma once
#include <stdint.h>

struct sink;
struct store;

#define OUTBOX_RELAY_INTERVAL_MS 200 /* how often the relay looks */
#define OUTBOX_RELAY_BATCH 256       /* events per publish */

/* One pass: publishes every unpublished event, a batch at a time, each
 * batch marked published only after the sink has it durably. *published
 * (may be NULL) gets how many. Stops at the first error. */
int outbox_relay_pass(struct store *s, struct sink *k, int64_t now_ms, int64_t *published);

/* A thread running outbox_relay_pass every interval_ms (0: the default);
 * stopping runs one last pass. Stop it before closing s or k. */
struct outbox_relay;
int outbox_relay_start(struct store *s, struct sink *k, int64_t interval_ms,
                       struct outbox_relay **out);
void outbox_relay_stop(struct outbox_relay *r);
