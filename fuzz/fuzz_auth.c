/* fuzz_auth.c -- the bearer JWT check (api/auth.c, libjwt) with
 * --auth-jwt-secret on. Input byte 0 picks the mode: even, the rest is the
 * Authorization header as sent; odd, the rest is a JOSE header and a claims
 * set (split at the first NUL byte) that the target encodes and signs with
 * the server's secret (HMAC-SHA256 over core/sha256), so inputs get past
 * the signature to the claim checks. Byte 1 picks the user acted for.
 * api_auth_user must allow (nothing written) or answer 401/403 with a
 * body; it must never allow a token whose header does not say HS256. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/auth.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/log.h"
#include "core/sha256.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret"

static struct config cfg;
static struct api_env env;
static const char *auth_header;

static const char *fake_header(const struct api_req *r, const char *name) {
    (void)r;
    return strcmp(name, "Authorization") == 0 ? auth_header : NULL;
}

/* base64url without padding of n bytes of s, appended at out; returns the end. */
static char *b64url(char *out, const uint8_t *s, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        for (int k = 3; k >= 0; k--) *out++ = tab[(v >> (6 * k)) & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *out++ = tab[(v >> 18) & 63];
        *out++ = tab[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *out++ = tab[(v >> 18) & 63];
        *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63];
    }
    return out;
}

static void hmac_sha256(const char *key, const char *msg, size_t n, uint8_t out[SHA256_LEN]) {
    uint8_t k[64] = {0}, ipad[64], opad[64], inner[SHA256_LEN];
    memcpy(k, key, strlen(key)); /* shorter than the block */
    for (int i = 0; i < 64; i++) {
        ipad[i] = k[i] ^ 0x36;
        opad[i] = k[i] ^ 0x5c;
    }
    struct sha256_part in[2] = {{ipad, 64}, {msg, n}};
    sha256(in, 2, inner);
    struct sha256_part outer[2] = {{opad, 64}, {inner, SHA256_LEN}};
    sha256(outer, 2, out);
}

/* "Bearer " + the signed compact JWT of header h and claims c. */
static char *signed_token(struct arena *a, const uint8_t *h, size_t hn, const uint8_t *c,
                          size_t cn) {
    char *buf = arena_alloc(a, 16 + (hn + cn + SHA256_LEN) * 2);
    char *p = buf + strlen(strcpy(buf, "Bearer "));
    char *start = p;
    p = b64url(p, h, hn);
    *p++ = '.';
    p = b64url(p, c, cn);
    uint8_t mac[SHA256_LEN];
    hmac_sha256(SECRET, start, (size_t)(p - start), mac);
    *p++ = '.';
    p = b64url(p, mac, SHA256_LEN);
    *p = '\0';
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!env.cfg) {
        log_init(LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
        char *argv[] = {"concertd", "--auth-jwt-secret", SECRET, NULL};
        char err[256];
        if (config_load(&cfg, 3, argv, err, sizeof(err))) abort();
        env.cfg = &cfg;
    }
    if (size < 2) return 0;
    struct arena *a = arena_create();
    const uint8_t *rest = data + 2;
    size_t n = size - 2;
    if (data[0] & 1) {
        const uint8_t *nul = memchr(rest, 0, n);
        size_t hn = nul ? (size_t)(nul - rest) : n;
        auth_header = signed_token(a, rest, hn, nul ? nul + 1 : rest + n, nul ? n - hn - 1 : 0);
    } else {
        char *h = arena_alloc(a, n + 1);
        memcpy(h, rest, n);
        h[n] = '\0';
        auth_header = h;
    }
    struct api_req r = {.arena = a, .env = &env, .request_id = "fuzz", .header = fake_header};
    struct api_res w = {0};
    int64_t user = 1 + data[1] % 4;
    int rc = api_auth_user(&r, &w, user);
    if (rc == 0 && w.status != 0) abort();
    if (rc != 0 && !((w.status == 401 || w.status == 403) && w.body && w.body_len)) abort();
    if (rc == 0 && (!(data[0] & 1) || !memmem(rest, n, "HS256", 5))) abort(); /* forged */
    arena_destroy(a);
    return 0;
}
