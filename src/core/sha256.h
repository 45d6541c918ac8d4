/* sha256.h -- SHA-256 (FIPS 180-4) of a few byte strings.
 *
 * Used to fingerprint a request (method, path, body) for the
 * Idempotency-Key check: a retry must be the same request, byte for byte.
 * One-shot over a list of parts, so callers need not concatenate. Not here:
 * HMAC, streaming across calls, anything secret. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_HEX_LEN 64

struct sha256_part {
    const void *data;
    size_t len;
};

/* The digest of the concatenation of parts[0..n). */
void sha256(const struct sha256_part *parts, size_t n, uint8_t out[SHA256_LEN]);
/* Same, as 64 lowercase hex digits and a NUL. */
void sha256_hex(const struct sha256_part *parts, size_t n, char out[SHA256_HEX_LEN + 1]);
