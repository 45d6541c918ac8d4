/* queue.c -- what every queue adapter shares: token generation and state
 * names. */
#include "queue/queue.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "core/err.h"

int queue_new_token(char out[QUEUE_TOKEN_MAX + 1]) {
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return ERR_IO;
        }
        got += (size_t)n;
    }
    /* 128 bits in 6-bit groups: 21 full groups and 2 bits left over. */
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits) out[o++] = b64url[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return 0;
}

const char *queue_state_name(int state) {
    switch (state) {
    case QUEUE_WAITING: return "WAITING";
    case QUEUE_ACTIVATED: return "ACTIVATED";
    case QUEUE_EXPIRED: return "EXPIRED";
    default: return "UNKNOWN";
    }
}

int queue_token_valid(const char *token) {
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
    size_t n = token ? strlen(token) : 0;
    return n >= 1 && n <= QUEUE_TOKEN_MAX && strspn(token, ok) == n;
}
