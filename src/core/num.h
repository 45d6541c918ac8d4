/* num.h -- strict integer parsing shared by config, router and JSON decoding. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Parses a whole decimal int64 (optional leading '-' only if allow_negative;
 * no '+', no spaces, no trailing junk, no overflow). Returns 0 or ERR_INVALID. */
int num_parse_i64(const char *s, int allow_negative, int64_t *out);

/* Same, for exactly len bytes of s (s need not be NUL-terminated). */
int num_parse_i64n(const char *s, size_t len, int allow_negative, int64_t *out);

/* Parses a size: "65536", "64k", "64KiB", "1m", "1MiB" (powers of 1024).
 * Returns 0 or ERR_INVALID. */
int num_parse_size(const char *s, int64_t *out);
