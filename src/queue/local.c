/* local.c -- the embedded queue adapter: the waiting line in memory,
 * written through to the store.
 *
 * Design notes
 *
 *   1. Entries. Every token this process knows is one struct entry in an
 *      array, in arrival order: index i arrived before index i + 1. Entries
 *      are never moved or freed while the process runs, so an index is a
 *      stable handle (expired tokens stay, so their holders read EXPIRED).
 *   2. Positions. A Fenwick tree over the indexes holds 1 for each WAITING
 *      entry and 0 otherwise. A position is the prefix sum up to the entry:
 *      O(log n), exact, whatever left the line in between. When the array
 *      grows the tree is rebuilt in O(n), amortised O(1) per entry.
 *   3. Lookups. Two open-addressing hash tables of entry indexes (linear
 *      probing, backward-shift deletion, so no tombstones): token -> entry
 *      (every entry) and user -> entry (live entries only).
 *   4. Admission walks `head`, the first index that may still be WAITING,
 *      forward. Expiry of ACTIVATED tokens pops a min-heap on active_until
 *      (a token that left early stays in the heap and is skipped when its
 *      time comes). Idle WAITING tokens sit on a list in order of their last
 *      poll; a poll moves its entry to the tail, the tick drops from the
 *      head. Nothing on the poll path is O(n).
 *   5. One mutex guards it all; every critical section is a few hash probes
 *      and tree steps. Store writes happen outside it. The store merges
 *      writes by state order (WAITING < ACTIVATED < EXPIRED, never back), so
 *      a slow enter write that lands after the admission write of the same
 *      token cannot undo it.
 *   6. Durability: enter and leave write before they return; what a tick
 *      changes is written in one batch right after. Polls never write. A
 *      crash can lose at most the last tick's changes, which the restart
 *      recomputes: admitted tokens read WAITING again and are admitted again
 *      from the head, expired ones expire again.
 *
 * Memory: about 100 bytes per token (entry 96, tree 4, tables 2 x 4 x 2). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "queue/queue.h"
#include "store/store.h"

#define MOD "queue"
#define NIL 0u /* "no entry" in lists and tables; entries are stored as index + 1 */

_Static_assert((int)STORE_TOKEN_WAITING == (int)QUEUE_WAITING &&
                   (int)STORE_TOKEN_ACTIVATED == (int)QUEUE_ACTIVATED &&
                   (int)STORE_TOKEN_EXPIRED == (int)QUEUE_EXPIRED,
               "store and queue agree on the token states");

struct entry {
    int64_t user_id;
    int64_t seq;          /* the store's arrival order */
    int64_t entered_at;   /* epoch ms */
    int64_t last_seen;    /* WAITING: last poll */
    int64_t active_until; /* ACTIVATED: expiry */
    uint32_t idle_prev, idle_next;
    uint8_t state;
    char token[QUEUE_TOKEN_MAX + 1];
};

struct table {
    uint32_t *slot; /* index + 1, or NIL */
    size_t cap;     /* power of 2 */
    size_t n;
};

struct local_queue {
    struct queue base; /* must be first */
    struct store *store;
    pthread_mutex_t mu;
    struct entry *e;
    uint32_t n, cap;
    int32_t *fw; /* Fenwick tree, 1-based, cap + 1 */
    struct table by_token, by_user;
    uint32_t head;                  /* first index that may be WAITING */
    uint32_t idle_first, idle_last; /* WAITING entries by last poll */
    uint32_t *heap;                 /* ACTIVATED indexes, min-heap on active_until */
    size_t heap_n, heap_cap;
    int64_t waiting, active;
    int64_t expired, admitted; /* since start */
    int64_t next_seq;
};

static const struct queue_ops local_ops;

/* ---- Fenwick tree ------------------------------------------------------- */

static void fw_add(struct local_queue *q, uint32_t i, int32_t d) {
    for (size_t k = (size_t)i + 1; k <= q->cap; k += k & (~k + 1)) q->fw[k] += d;
}

/* Number of WAITING entries with index <= i. */
static int64_t fw_sum(const struct local_queue *q, uint32_t i) {
    int64_t s = 0;
    for (size_t k = (size_t)i + 1; k > 0; k -= k & (~k + 1)) s += q->fw[k];
    return s;
}

static void fw_rebuild(struct local_queue *q) {
    memset(q->fw, 0, (q->cap + 1) * sizeof(*q->fw));
    for (size_t k = 1; k <= q->cap; k++) {
        if (k <= q->n && q->e[k - 1].state == QUEUE_WAITING) q->fw[k] += 1;
        size_t up = k + (k & (~k + 1));
        if (up <= q->cap) q->fw[up] += q->fw[k];
    }
}

/* ---- hash tables of entry indexes ----------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h ^ (h >> 29);
}

static uint64_t hash_i64(int64_t v) {
    uint64_t x = (uint64_t)v;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53u;
    return x ^ (x >> 33);
}

/* by_token and by_user differ only in the key; `kind` picks it. */
enum key_kind { BY_TOKEN, BY_USER };

static uint64_t entry_hash(const struct local_queue *q, enum key_kind kind, uint32_t idx) {
    const struct entry *e = &q->e[idx];
    return kind == BY_TOKEN ? hash_str(e->token) : hash_i64(e->user_id);
}

static struct table *table_of(struct local_queue *q, enum key_kind kind) {
    return kind == BY_TOKEN ? &q->by_token : &q->by_user;
}

/* The slot holding the entry whose key is (token or user), or the empty slot
 * where it would go. */
static size_t table_probe(struct local_queue *q, enum key_kind kind, const char *token,
                          int64_t user) {
    struct table *t = table_of(q, kind);
    uint64_t h = kind == BY_TOKEN ? hash_str(token) : hash_i64(user);
    size_t mask = t->cap - 1;
    for (size_t at = (size_t)h & mask;; at = (at + 1) & mask) {
        uint32_t v = t->slot[at];
        if (v == NIL) return at;
        const struct entry *e = &q->e[v - 1];
        if (kind == BY_TOKEN ? strcmp(e->token, token) == 0 : e->user_id == user) return at;
    }
}

static void table_put(struct local_queue *q, enum key_kind kind, uint32_t idx);

static void table_grow(struct local_queue *q, enum key_kind kind) {
    struct table *t = table_of(q, kind);
    uint32_t *old = t->slot;
    size_t old_cap = t->cap;
    t->cap = old_cap ? old_cap * 2 : 1024;
    t->slot = xcalloc(t->cap, sizeof(*t->slot));
    t->n = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] != NIL) table_put(q, kind, old[i] - 1);
    free(old);
}

static void table_put(struct local_queue *q, enum key_kind kind, uint32_t idx) {
    struct table *t = table_of(q, kind);
    if ((t->n + 1) * 2 > t->cap) table_grow(q, kind);
    const struct entry *e = &q->e[idx];
    size_t at = table_probe(q, kind, e->token, e->user_id);
    if (t->slot[at] == NIL) t->n++;
    t->slot[at] = idx + 1;
}

static uint32_t table_get(struct local_queue *q, enum key_kind kind, const char *token,
                          int64_t user) {
    if (table_of(q, kind)->cap == 0) return NIL;
    return table_of(q, kind)->slot[table_probe(q, kind, token, user)];
}

/* Backward-shift deletion: pull later members of the probe run into the gap
 * when their home slot is at or before it. */
static void table_del(struct local_queue *q, enum key_kind kind, uint32_t idx) {
    struct table *t = table_of(q, kind);
    const struct entry *e = &q->e[idx];
    size_t gap = table_probe(q, kind, e->token, e->user_id);
    if (t->slot[gap] != idx + 1) return;
    size_t mask = t->cap - 1;
    t->slot[gap] = NIL;
    t->n--;
    for (size_t at = (gap + 1) & mask; t->slot[at] != NIL; at = (at + 1) & mask) {
        size_t home = (size_t)entry_hash(q, kind, t->slot[at] - 1) & mask;
        /* Move it when home is not in the cyclic range (gap, at]. */
        if (((at - home) & mask) >= ((at - gap) & mask)) {
            t->slot[gap] = t->slot[at];
            t->slot[at] = NIL;
            gap = at;
        }
    }
}

/* ---- idle list and activation heap -------------------------------------- */

static void idle_unlink(struct local_queue *q, uint32_t idx) {
    struct entry *e = &q->e[idx];
    if (e->idle_prev)
        q->e[e->idle_prev - 1].idle_next = e->idle_next;
    else
        q->idle_first = e->idle_next;
    if (e->idle_next)
        q->e[e->idle_next - 1].idle_prev = e->idle_prev;
    else
        q->idle_last = e->idle_prev;
    e->idle_prev = e->idle_next = NIL;
}

static void idle_append(struct local_queue *q, uint32_t idx) {
    struct entry *e = &q->e[idx];
    e->idle_prev = q->idle_last;
    e->idle_next = NIL;
    if (q->idle_last)
        q->e[q->idle_last - 1].idle_next = idx + 1;
    else
        q->idle_first = idx + 1;
    q->idle_last = idx + 1;
}

static int64_t heap_key(const struct local_queue *q, size_t i) {
    return q->e[q->heap[i]].active_until;
}

static void heap_swap(struct local_queue *q, size_t a, size_t b) {
    uint32_t t = q->heap[a];
    q->heap[a] = q->heap[b];
    q->heap[b] = t;
}

static void heap_push(struct local_queue *q, uint32_t idx) {
    if (q->heap_n == q->heap_cap) {
        q->heap_cap = q->heap_cap ? q->heap_cap * 2 : 1024;
        q->heap = xrealloc(q->heap, q->heap_cap * sizeof(*q->heap));
    }
    size_t i = q->heap_n++;
    q->heap[i] = idx;
    while (i > 0 && heap_key(q, (i - 1) / 2) > heap_key(q, i)) {
        heap_swap(q, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_pop(struct local_queue *q) {
    q->heap[0] = q->heap[--q->heap_n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->heap_n && heap_key(q, l) < heap_key(q, m)) m = l;
        if (r < q->heap_n && heap_key(q, r) < heap_key(q, m)) m = r;
        if (m == i) break;
        heap_swap(q, i, m);
        i = m;
    }
}

/* ---- entries and state changes ------------------------------------------ */

static uint32_t entry_add(struct local_queue *q, const char *token, int64_t user, int64_t seq,
                          int state, int64_t entered_at, int64_t now, int64_t active_until) {
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 1024;
        q->e = xrealloc(q->e, q->cap * sizeof(*q->e));
        free(q->fw);
        q->fw = xmalloc((q->cap + 1) * sizeof(*q->fw));
        fw_rebuild(q);
    }
    uint32_t idx = q->n++;
    struct entry *e = &q->e[idx];
    memset(e, 0, sizeof(*e));
    snprintf(e->token, sizeof(e->token), "%s", token);
    e->user_id = user;
    e->seq = seq;
    e->entered_at = entered_at;
    e->last_seen = now;
    e->state = (uint8_t)state;
    e->active_until = active_until;
    table_put(q, BY_TOKEN, idx);
    if (state == QUEUE_EXPIRED) return idx;
    table_put(q, BY_USER, idx);
    if (state == QUEUE_WAITING) {
        fw_add(q, idx, 1);
        q->waiting++;
        idle_append(q, idx);
    } else {
        q->active++;
        heap_push(q, idx);
    }
    return idx;
}

static void entry_expire(struct local_queue *q, uint32_t idx) {
    struct entry *e = &q->e[idx];
    if (e->state == QUEUE_WAITING) {
        fw_add(q, idx, -1);
        q->waiting--;
        idle_unlink(q, idx);
    } else if (e->state == QUEUE_ACTIVATED) {
        q->active--;
    } else {
        return;
    }
    table_del(q, BY_USER, idx);
    e->state = QUEUE_EXPIRED;
    q->expired++;
}

static void entry_activate(struct local_queue *q, uint32_t idx, int64_t until) {
    struct entry *e = &q->e[idx];
    fw_add(q, idx, -1);
    q->waiting--;
    idle_unlink(q, idx);
    e->state = QUEUE_ACTIVATED;
    e->active_until = until;
    q->active++;
    heap_push(q, idx);
}

/* A poll by the holder: a WAITING entry moves to the end of the idle list. */
static void touch_entry(struct local_queue *q, uint32_t idx, int64_t now) {
    struct entry *e = &q->e[idx];
    if (e->state != QUEUE_WAITING) return;
    e->last_seen = now;
    if (q->idle_last != idx + 1) {
        idle_unlink(q, idx);
        idle_append(q, idx);
    }
}

static void ticket_of(const struct local_queue *q, uint32_t idx, struct queue_ticket *t) {
    const struct entry *e = &q->e[idx];
    memcpy(t->token, e->token, sizeof(t->token));
    t->user_id = e->user_id;
    t->state = e->state;
    t->position = e->state == QUEUE_WAITING ? fw_sum(q, idx) : 0;
    t->active_until = e->state == QUEUE_ACTIVATED ? e->active_until : 0;
}

/* ---- writes through to the store ---------------------------------------- */

struct batch {
    struct store_token *t;
    char (*tok)[QUEUE_TOKEN_MAX + 1]; /* the tokens, copied: entries move when they grow */
    size_t n, cap;
};

static void batch_add(struct batch *b, const struct entry *e, int64_t now) {
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->t = xrealloc(b->t, b->cap * sizeof(*b->t));
        b->tok = xrealloc(b->tok, b->cap * sizeof(*b->tok));
    }
    memcpy(b->tok[b->n], e->token, sizeof(b->tok[b->n]));
    b->t[b->n++] = (struct store_token){
        .user_id = e->user_id,
        .seq = e->seq,
        .state = e->state,
        .entered_at = e->entered_at,
        .activated_at = e->state == QUEUE_ACTIVATED ? now : 0,
        .expires_at = e->state == QUEUE_ACTIVATED ? e->active_until : now,
    };
}

static void batch_free(struct batch *b) {
    free(b->t);
    free(b->tok);
}

static int batch_write(struct local_queue *q, struct batch *b, const char *what) {
    if (b->n == 0) return 0;
    for (size_t i = 0; i < b->n; i++) b->t[i].token = b->tok[i];
    int rc = q->store->ops->queue_save(q->store, b->t, b->n);
    if (rc)
        LOG_ERROR(MOD, "op=%s tokens=%zu err=%s: memory and store differ until the next write",
                  what, b->n, err_str(rc));
    return rc;
}

/* Writes one entry's current state (copied under the lock by the caller). */
static int write_one(struct local_queue *q, const struct entry *copy, int64_t now,
                     const char *what) {
    struct batch b = {0};
    batch_add(&b, copy, now);
    int rc = batch_write(q, &b, what);
    batch_free(&b);
    return rc;
}

/* ---- ops -------------------------------------------------------------- */

static int lq_enter(struct queue *qq, int64_t user_id, int64_t now, struct queue_ticket *out,
                    int *created) {
    struct local_queue *q = (struct local_queue *)qq;
    char token[QUEUE_TOKEN_MAX + 1];
    if (queue_new_token(token)) return ERR_IO;
    pthread_mutex_lock(&q->mu);
    uint32_t v = table_get(q, BY_USER, NULL, user_id);
    if (v != NIL) { /* coming back for the same token is a sign of life too */
        touch_entry(q, v - 1, now);
        ticket_of(q, v - 1, out);
        pthread_mutex_unlock(&q->mu);
        *created = 0;
        return 0;
    }
    uint32_t idx = entry_add(q, token, user_id, q->next_seq++, QUEUE_WAITING, now, now, 0);
    ticket_of(q, idx, out);
    struct entry copy = q->e[idx];
    pthread_mutex_unlock(&q->mu);
    *created = 1;
    int rc = write_one(q, &copy, now, "enter");
    if (rc) { /* not durable: take it back out of the line */
        pthread_mutex_lock(&q->mu);
        entry_expire(q, idx);
        pthread_mutex_unlock(&q->mu);
    }
    return rc;
}

static int lq_lookup(struct queue *qq, const char *token, int64_t now, int touch,
                     struct queue_ticket *out) {
    struct local_queue *q = (struct local_queue *)qq;
    pthread_mutex_lock(&q->mu);
    uint32_t v = table_get(q, BY_TOKEN, token, 0);
    if (v == NIL) {
        pthread_mutex_unlock(&q->mu);
        return ERR_NOT_FOUND;
    }
    if (touch) touch_entry(q, v - 1, now);
    ticket_of(q, v - 1, out);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int lq_lookup_user(struct queue *qq, int64_t user_id, int64_t now,
                          struct queue_ticket *out) {
    (void)now;
    struct local_queue *q = (struct local_queue *)qq;
    pthread_mutex_lock(&q->mu);
    uint32_t v = table_get(q, BY_USER, NULL, user_id);
    if (v != NIL) ticket_of(q, v - 1, out);
    pthread_mutex_unlock(&q->mu);
    return v == NIL ? ERR_NOT_FOUND : 0;
}

/* Expires the entry found by token or user (under the lock) and writes it. */
static int expire_where(struct local_queue *q, enum key_kind kind, const char *token, int64_t user,
                        int64_t now, const char *what) {
    pthread_mutex_lock(&q->mu);
    uint32_t v = table_get(q, kind, token, user);
    if (v == NIL || q->e[v - 1].state == QUEUE_EXPIRED) {
        pthread_mutex_unlock(&q->mu);
        return v == NIL && kind == BY_TOKEN ? ERR_NOT_FOUND : 0;
    }
    entry_expire(q, v - 1);
    struct entry copy = q->e[v - 1];
    pthread_mutex_unlock(&q->mu);
    return write_one(q, &copy, now, what);
}

static int lq_leave(struct queue *qq, const char *token, int64_t now) {
    return expire_where((struct local_queue *)qq, BY_TOKEN, token, 0, now, "leave");
}

static int lq_expire_user(struct queue *qq, int64_t user_id, int64_t now) {
    return expire_where((struct local_queue *)qq, BY_USER, NULL, user_id, now, "expire_user");
}

static int lq_tick(struct queue *qq, int64_t now, int64_t max_active, int64_t max_admit,
                   int64_t active_ttl_ms, int64_t waiting_idle_ms, int64_t *admitted) {
    struct local_queue *q = (struct local_queue *)qq;
    struct batch b = {0};
    int64_t n = 0;
    pthread_mutex_lock(&q->mu);
    while (q->heap_n > 0 && heap_key(q, 0) <= now) {
        uint32_t idx = q->heap[0];
        heap_pop(q);
        struct entry *e = &q->e[idx];
        if (e->state != QUEUE_ACTIVATED || e->active_until > now) continue;
        entry_expire(q, idx);
        batch_add(&b, e, now);
    }
    while (q->idle_first && q->e[q->idle_first - 1].last_seen + waiting_idle_ms <= now) {
        uint32_t idx = q->idle_first - 1;
        entry_expire(q, idx);
        batch_add(&b, &q->e[idx], now);
    }
    while (n < max_admit && q->active < max_active && q->head < q->n) {
        uint32_t idx = q->head++;
        if (q->e[idx].state != QUEUE_WAITING) continue;
        entry_activate(q, idx, now + active_ttl_ms);
        batch_add(&b, &q->e[idx], now);
        n++;
    }
    q->admitted += n;
    pthread_mutex_unlock(&q->mu);
    int rc = batch_write(q, &b, "tick");
    batch_free(&b);
    *admitted = n;
    return rc;
}

static int lq_counts(struct queue *qq, struct queue_counts *out) {
    struct local_queue *q = (struct local_queue *)qq;
    pthread_mutex_lock(&q->mu);
    out->waiting = q->waiting;
    out->active = q->active;
    out->expired = q->expired;
    out->admitted = q->admitted;
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int lq_ping(struct queue *qq) {
    (void)qq;
    return 0;
}

static void lq_close(struct queue *qq) {
    struct local_queue *q = (struct local_queue *)qq;
    free(q->e);
    free(q->fw);
    free(q->by_token.slot);
    free(q->by_user.slot);
    free(q->heap);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static const struct queue_ops local_ops = {
    .enter = lq_enter,
    .lookup = lq_lookup,
    .lookup_user = lq_lookup_user,
    .leave = lq_leave,
    .expire_user = lq_expire_user,
    .tick = lq_tick,
    .counts = lq_counts,
    .ping = lq_ping,
    .close = lq_close,
};

/* ---- loading the line from the store -------------------------------------- */

struct load_ctx {
    struct local_queue *q;
    int64_t now;
    struct batch expired; /* ACTIVATED rows whose time ran out while we were down */
};

static int load_one(void *arg, const struct store_token *t) {
    struct load_ctx *c = arg;
    struct local_queue *q = c->q;
    if (strlen(t->token) > QUEUE_TOKEN_MAX) {
        LOG_WARN(MOD, "op=load skipping a token longer than %d bytes (user %lld)", QUEUE_TOKEN_MAX,
                 (long long)t->user_id);
        return 0;
    }
    if (table_get(q, BY_TOKEN, t->token, 0) != NIL || table_get(q, BY_USER, NULL, t->user_id))
        return 0; /* the store holds one live token per user and unique tokens */
    int state = t->state;
    if (state == QUEUE_ACTIVATED && t->expires_at <= c->now) state = QUEUE_EXPIRED;
    uint32_t idx =
        entry_add(q, t->token, t->user_id, t->seq, state, t->entered_at, c->now, t->expires_at);
    if (state != t->state) batch_add(&c->expired, &q->e[idx], c->now);
    return 0;
}

int queue_local_open(struct store *store, int64_t now, struct queue **out, char *errbuf,
                     size_t errlen) {
    struct local_queue *q = xcalloc(1, sizeof(*q));
    q->base.ops = &local_ops;
    q->base.kind = "local";
    q->store = store;
    pthread_mutex_init(&q->mu, NULL);
    struct load_ctx c = {.q = q, .now = now};
    int rc = store->ops->queue_load(store, load_one, &c, &q->next_seq);
    if (rc == 0) rc = batch_write(q, &c.expired, "load");
    batch_free(&c.expired);
    if (rc) {
        snprintf(errbuf, errlen, "cannot load the waiting room from the store: %s", err_str(rc));
        lq_close(&q->base);
        return rc;
    }
    LOG_INFO(MOD, "loaded waiting=%lld active=%lld next_seq=%lld", (long long)q->waiting,
             (long long)q->active, (long long)q->next_seq);
    *out = &q->base;
    return 0;
}
