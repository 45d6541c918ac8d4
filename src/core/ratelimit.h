/* ratelimit.h -- token buckets keyed by a 64-bit id (a client address, a
 * user), in a sharded table of fixed size.
 *
 * Pure logic: the caller passes the time, so tests drive it with a fake
 * clock. Thread-safe (one mutex per shard). Memory is fixed at creation: an
 * attacker with many addresses or user ids cannot grow the table, only
 * evict the least recently used buckets, which only makes the evicted ids'
 * next request start from a full bucket again.
 * Not here: what is limited and how a refusal is answered (api/limits.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* A bucket refills per_sec tokens a second up to burst (at least per_sec,
 * at least 1); each allowed request takes one. entries: how many ids the
 * table tracks at once (rounded up to a power of two, at least 64).
 * per_sec == 0 makes a limiter that allows everything. */
struct ratelimit *ratelimit_create(int64_t per_sec, int64_t burst, size_t entries);
void ratelimit_free(struct ratelimit *rl);

/* Takes a token from key's bucket at now_ms. Returns 1 when allowed; 0 when
 * the bucket is empty, with *retry_ms (may be NULL) set to the wait until
 * the next token, >= 1. rl == NULL allows everything. */
int ratelimit_take(struct ratelimit *rl, uint64_t key, int64_t now_ms, int64_t *retry_ms);

/* The number of ids the table can track (its fixed size). */
size_t ratelimit_capacity(const struct ratelimit *rl);
