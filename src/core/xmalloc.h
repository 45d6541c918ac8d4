/* xmalloc.h -- allocation that aborts on out-of-memory (Redis's zmalloc). */
#pragma once
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
