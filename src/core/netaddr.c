/* netaddr.c -- addresses, prefixes and X-Forwarded-For (see netaddr.h).
 *
 * Design notes:
 *   1. Every address is normalised before it is compared or keyed:
 *      IPv4-mapped IPv6 becomes IPv4 (netaddr.h), so "::ffff:10.0.0.1"
 *      from a dual-stack socket matches a trusted "10.0.0.0/8".
 *   2. X-Forwarded-For is untrusted input up to the last trusted hop: only
 *      entries appended by trusted proxies are read, from the right, and
 *      the walk never looks past the first address it accepts as the
 *      client. Nothing is allocated while walking it. */
#include "core/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/err.h"
#include "core/num.h"
#include "core/xmalloc.h"

#define LITERAL_MAX 64 /* longer than any IPv6 literal (45) */

struct prefix {
    struct netaddr a;
    int bits;
};

struct netaddr_list {
    size_t n;
    struct prefix p[]; /* n of them */
};

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void normalise(struct netaddr *a) {
    if (a->family == 6 && memcmp(a->b, v4_mapped, sizeof(v4_mapped)) == 0) {
        memmove(a->b, a->b + 12, 4);
        memset(a->b + 4, 0, 12);
        a->family = 4;
    }
}

int netaddr_parse(const char *s, size_t len, struct netaddr *out) {
    char buf[LITERAL_MAX];
    memset(out, 0, sizeof(*out));
    if (len == 0 || len >= sizeof(buf)) return ERR_INVALID;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out->b) == 1) {
        out->family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out->b) == 1) {
        out->family = 6;
        normalise(out);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return ERR_INVALID;
}

void netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out) {
    memset(out, 0, sizeof(*out));
    if (!sa) return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memcpy(out->b, &in->sin_addr, 4);
        out->family = 4;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(out->b, &in6->sin6_addr, 16);
        out->family = 6;
        normalise(out);
    }
}

uint64_t netaddr_key(const struct netaddr *a) {
    uint64_t k = 0;
    if (a->family == 4) {
        for (int i = 0; i < 4; i++) k = k << 8 | a->b[i];
        return (UINT64_C(4) << 56) | k;
    }
    if (a->family != 6) return 0;
    for (int i = 0; i < 8; i++) k = k << 8 | a->b[i];
    return k ^ (UINT64_C(6) << 56);
}

static int prefix_has(const struct prefix *p, const struct netaddr *a) {
    if (p->a.family != a->family) return 0;
    int whole = p->bits / 8, rest = p->bits % 8;
    if (memcmp(p->a.b, a->b, (size_t)whole) != 0) return 0;
    if (rest == 0) return 1;
    unsigned mask = (0xffu << (8 - rest)) & 0xffu;
    return (p->a.b[whole] & mask) == (a->b[whole] & mask);
}

int netaddr_list_has(const struct netaddr_list *l, const struct netaddr *a) {
    if (!l || !a->family) return 0;
    for (size_t i = 0; i < l->n; i++)
        if (prefix_has(&l->p[i], a)) return 1;
    return 0;
}

/* s[0..len) trimmed of spaces and tabs on both ends. */
static const char *trim(const char *s, size_t *len) {
    while (*len && (*s == ' ' || *s == '\t')) {
        s++;
        (*len)--;
    }
    while (*len && (s[*len - 1] == ' ' || s[*len - 1] == '\t')) (*len)--;
    return s;
}

/* One entry "ADDR" or "ADDR/BITS" into p. 0 or ERR_INVALID. */
static int parse_prefix(const char *s, size_t len, struct prefix *p) {
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    if (netaddr_parse(s, alen, &p->a)) return ERR_INVALID;
    int max = p->a.family == 4 ? 32 : 128;
    p->bits = max;
    if (!slash) return 0;
    char bits[8];
    size_t blen = len - alen - 1;
    int64_t v;
    if (blen == 0 || blen >= sizeof(bits)) return ERR_INVALID;
    memcpy(bits, slash + 1, blen);
    bits[blen] = '\0';
    if (num_parse_i64(bits, 0, &v) || v < 0) return ERR_INVALID;
    /* An IPv4-mapped IPv6 prefix was made IPv4 (note 1): its length too. */
    if (p->a.family == 4 && memchr(s, ':', alen)) v -= 96;
    if (v < 0 || v > max) return ERR_INVALID;
    p->bits = (int)v;
    return 0;
}

int netaddr_list_parse(const char *spec, struct netaddr_list **out, char *errbuf, size_t errlen) {
    size_t n = 1;
    for (const char *c = spec; *c; c++) n += *c == ',';
    struct netaddr_list *l = xcalloc(1, sizeof(*l) + n * sizeof(l->p[0]));
    for (const char *s = spec;;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *t = trim(s, &len);
        if (parse_prefix(t, len, &l->p[l->n])) {
            snprintf(errbuf, errlen, "\"%.*s\" is not an IP address or prefix (ADDR or ADDR/BITS)",
                     (int)(len < 64 ? len : 64), t);
            free(l);
            return ERR_INVALID;
        }
        l->n++;
        if (!e) break;
        s = e + 1;
    }
    *out = l;
    return 0;
}

void netaddr_list_free(struct netaddr_list *l) {
    free(l);
}

void netaddr_forwarded_client(const struct netaddr_list *trusted, const char *xff,
                              struct netaddr *client) {
    if (!xff) return;
    size_t end = strlen(xff);
    while (netaddr_list_has(trusted, client)) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',') start--;
        size_t len = end - start;
        const char *t = trim(xff + start, &len);
        struct netaddr next;
        if (len == 0 && start == 0) return;       /* no entries left */
        if (netaddr_parse(t, len, &next)) return; /* not an address: stop at its writer */
        *client = next;
        if (start == 0) return;
        end = start - 1;
    }
}
