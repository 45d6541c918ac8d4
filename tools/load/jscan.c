/* jscan.c -- reading fields out of JSON answers (jscan.h). */
#include "jscan.h"

#include <stdlib.h>
#include <string.h>

/* Just past `"key":` (and spaces) of the first occurrence at or after from. */
static const char *value_of(const char *from, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = strchr(from, '"'); p; p = strchr(p + 1, '"')) {
        if (strncmp(p + 1, key, kl) != 0 || p[1 + kl] != '"') continue;
        const char *q = p + 2 + kl;
        while (*q == ' ') q++;
        if (*q != ':') continue;
        q++;
        while (*q == ' ') q++;
        return q;
    }
    return NULL;
}

static int read_int(const char *v, int64_t *out, const char **end) {
    int quoted = *v == '"';
    if (quoted) v++;
    char *e;
    long long n = strtoll(v, &e, 10);
    if (e == v) return 0;
    if (quoted && *e != '"') return 0;
    *out = (int64_t)n;
    if (end) *end = e;
    return 1;
}

int js_int(const char *body, const char *key, int64_t *out, const char **pos) {
    const char *v = value_of(pos && *pos ? *pos : body, key);
    if (!v) return 0;
    return read_int(v, out, pos);
}

int js_str(const char *body, const char *key, char *out, size_t cap) {
    const char *v = value_of(body, key);
    if (!v || *v != '"' || cap == 0) return 0;
    v++;
    size_t n = strcspn(v, "\"\\");
    if (v[n] != '"' || n >= cap) return 0;
    memcpy(out, v, n);
    out[n] = '\0';
    return 1;
}

size_t js_count(const char *body, const char *key) {
    size_t n = 0;
    for (const char *v = value_of(body, key); v; v = value_of(v, key)) n++;
    return n;
}

int js_nth_int(const char *body, const char *key, size_t n, int64_t *out) {
    const char *v = value_of(body, key);
    for (size_t i = 0; v && i < n; i++) v = value_of(v, key);
    return v ? read_int(v, out, NULL) : 0;
}
