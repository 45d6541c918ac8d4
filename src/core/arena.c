/* arena.c -- per-request bump allocator.
 *
 * An arena is a chain of blocks. The first block (ARENA_FIRST bytes) is
 * allocated with the arena header and kept across requests: destroyed arenas
 * go back to a small per-thread cache, so a typical request does no malloc
 * at all for its scratch memory. Larger requests chain further blocks, each
 * at least twice the previous, freed on destroy.
 *
 * Design notes (invariants):
 *   1. Every pointer handed out is ARENA_ALIGN-aligned and lies inside a block.
 *   2. head->used <= head->size for the current block.
 *   3. A cached arena has exactly its first block and used == 0. */
#include "core/arena.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

#define ARENA_ALIGN 16
#define ARENA_FIRST (16 * 1024 - 128)
#define ARENA_CACHE 8

struct block {
    struct block *next;
    size_t size, used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena {
    struct block *head; /* current block, where allocation happens */
    size_t total;       /* bytes handed out */
    struct block first; /* must be last: its data[] runs on */
};

static _Thread_local struct arena *cache[ARENA_CACHE];
static _Thread_local int ncache;
static pthread_key_t cache_key; /* its destructor empties a dying thread's cache */
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drain(void *unused) {
    (void)unused;
    while (ncache > 0) free(cache[--ncache]);
}

static void cache_key_init(void) {
    pthread_key_create(&cache_key, cache_drain);
}

static size_t align_up(size_t n) {
    return (n + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1);
}

struct arena *arena_create(void) {
    struct arena *a;
    if (ncache > 0) {
        a = cache[--ncache];
    } else {
        a = xmalloc(sizeof(*a) + ARENA_FIRST);
        a->first.size = ARENA_FIRST;
    }
    a->first.next = NULL;
    a->first.used = 0;
    a->head = &a->first;
    a->total = 0;
    return a;
}

void arena_destroy(struct arena *a) {
    if (!a) return;
    struct block *b = a->head;
    while (b != &a->first) {
        struct block *next = b->next;
        free(b);
        b = next;
    }
    if (ncache < ARENA_CACHE) {
        if (ncache == 0) {
            pthread_once(&cache_once, cache_key_init);
            pthread_setspecific(cache_key, a); /* any non-NULL value arms the destructor */
        }
        a->first.used = 0;
        a->head = &a->first;
        cache[ncache++] = a;
    } else {
        free(a);
    }
}

void *arena_alloc(struct arena *a, size_t size) {
    size = align_up(size ? size : 1);
    struct block *b = a->head;
    if (b->size - b->used < size) {
        size_t want = b->size * 2;
        if (want < size) want = size;
        if (want > SIZE_MAX - sizeof(struct block)) {
            fprintf(stderr, "concertd: arena request too large (%zu bytes)\n", size);
            abort();
        }
        struct block *nb = xmalloc(sizeof(struct block) + want);
        nb->size = want;
        nb->used = 0;
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->total += size;
    assert(b->used <= b->size);
    return p;
}

void *arena_calloc(struct arena *a, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        fprintf(stderr, "concertd: arena_calloc overflow\n");
        abort();
    }
    void *p = arena_alloc(a, n * size);
    memset(p, 0, n * size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s) {
    return arena_strndup(a, s, strlen(s));
}

char *arena_vsprintf(struct arena *a, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *p = arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *arena_sprintf(struct arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

size_t arena_used(const struct arena *a) {
    return a->total;
}
