/* ratelimit.c -- sharded token buckets (see ratelimit.h).
 *
 * Design notes (invariants):
 *   1. Tokens are kept in thousandths (milli-tokens), so rates below one a
 *      millisecond refill exactly: per_sec tokens/s = per_sec milli-tokens/ms.
 *   2. A bucket never holds more than burst * 1000 milli-tokens and never
 *      goes below zero; a refused request takes nothing.
 *   3. An id lives in one of PROBE slots from its hash in its shard. When
 *      none is free, the slot used longest ago is taken over. A bucket
 *      that would have refilled is the same as a new one, so taking over
 *      only ever forgets a debt, never invents one.
 *   4. The table's size is fixed at creation; nothing allocates later. */
#include "core/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/xmalloc.h"

#define SHARDS 64
#define PROBE 8
#define MILLI 1000

struct bucket {
    uint64_t key; /* 0: free */
    int64_t milli;
    int64_t last_ms;
};

struct shard {
    pthread_mutex_t mu;
    struct bucket *slots;
};

struct ratelimit {
    int64_t per_sec;
    int64_t cap_milli;
    size_t per_shard; /* a power of two */
    struct shard shards[SHARDS];
};

/* splitmix64's finaliser: spreads ids that differ in a few bits. */
static uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

struct ratelimit *ratelimit_create(int64_t per_sec, int64_t burst, size_t entries) {
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));
    rl->per_sec = per_sec > 0 ? per_sec : 0;
    int64_t cap = burst > per_sec ? burst : per_sec;
    rl->cap_milli = (cap > 0 ? cap : 1) * MILLI;
    size_t per = 1;
    while (per * SHARDS < entries || per < PROBE) per *= 2;
    rl->per_shard = per;
    for (size_t i = 0; i < SHARDS && rl->per_sec; i++) {
        pthread_mutex_init(&rl->shards[i].mu, NULL);
        rl->shards[i].slots = xcalloc(per, sizeof(struct bucket));
    }
    return rl;
}

void ratelimit_free(struct ratelimit *rl) {
    if (!rl) return;
    for (size_t i = 0; i < SHARDS && rl->per_sec; i++) {
        pthread_mutex_destroy(&rl->shards[i].mu);
        free(rl->shards[i].slots);
    }
    free(rl);
}

size_t ratelimit_capacity(const struct ratelimit *rl) {
    return rl && rl->per_sec ? rl->per_shard * SHARDS : 0;
}

/* The bucket of key in s: its own, else a free one, else the least
 * recently used of its probe window (invariant 3), made full. */
static struct bucket *find(const struct ratelimit *rl, struct shard *s, uint64_t key, uint64_t h,
                           int64_t now_ms) {
    size_t mask = rl->per_shard - 1, start = (size_t)(h >> 6) & mask;
    struct bucket *victim = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        struct bucket *b = &s->slots[(start + i) & mask];
        if (b->key == key) return b;
        if (!victim || (victim->key && (!b->key || b->last_ms < victim->last_ms))) victim = b;
    }
    victim->key = key;
    victim->milli = rl->cap_milli;
    victim->last_ms = now_ms;
    return victim;
}

int ratelimit_take(struct ratelimit *rl, uint64_t key, int64_t now_ms, int64_t *retry_ms) {
    if (!rl || !rl->per_sec) return 1;
    if (key == 0) key = UINT64_C(0x9e3779b97f4a7c15); /* 0 marks a free slot */
    uint64_t h = mix(key);
    struct shard *s = &rl->shards[h % SHARDS];
    pthread_mutex_lock(&s->mu);
    struct bucket *b = find(rl, s, key, h, now_ms);
    if (now_ms > b->last_ms) {
        int64_t elapsed = now_ms - b->last_ms;
        int64_t room = rl->cap_milli - b->milli;
        /* elapsed * per_sec may overflow after a long idle: compare first */
        if (elapsed > room / rl->per_sec)
            b->milli = rl->cap_milli;
        else
            b->milli += elapsed * rl->per_sec;
        b->last_ms = now_ms;
    }
    int ok = b->milli >= MILLI;
    if (ok) {
        b->milli -= MILLI;
    } else if (retry_ms) {
        int64_t need = MILLI - b->milli;
        *retry_ms = (need + rl->per_sec - 1) / rl->per_sec;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}
