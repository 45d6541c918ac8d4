/* arena.h -- per-request bump allocator.
 *
 * Everything built for one request (decoded parameters, rows read from the
 * store, the response body) is allocated here and freed at once with
 * arena_destroy() when the request completes. Nothing allocated from an
 * arena may be freed on its own or outlive it. Allocation never fails:
 * out of memory aborts, as xmalloc does.
 *
 * Not thread-safe: an arena belongs to one request on one thread. */
#pragma once
#include <stdarg.h>
#include <stddef.h>

struct arena;

struct arena *arena_create(void);    /* reuses a per-thread cached arena when one is free */
void arena_destroy(struct arena *a); /* frees everything; returns the arena to the cache */
void *arena_alloc(struct arena *a, size_t size); /* 16-byte aligned, uninitialised */
void *arena_calloc(struct arena *a, size_t n, size_t size);
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_sprintf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vsprintf(struct arena *a, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
size_t arena_used(const struct arena *a); /* bytes handed out, for tests and limits */
