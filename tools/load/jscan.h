/* jscan.h -- reads single fields out of JSON response bodies without
 * building a document: find "key", read the number or string after it.
 *
 * Good enough for the answers of concertd, whose keys are unique within an
 * object and never appear inside string values. Not a validator: a body
 * that is not JSON simply has no fields. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* The first "key": integer at or after *pos in body (updates *pos past it,
 * when pos is not NULL). Accepts a JSON number or a decimal string.
 * Returns 1 when found. */
int js_int(const char *body, const char *key, int64_t *out, const char **pos);
/* The first "key": "string"; copies at most cap-1 bytes. Returns 1 when found. */
int js_str(const char *body, const char *key, char *out, size_t cap);
/* How many times "key": occurs in body. */
size_t js_count(const char *body, const char *key);
/* The n-th (0-based) integer value of "key" in body. */
int js_nth_int(const char *body, const char *key, size_t n, int64_t *out);
