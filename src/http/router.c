/* router.c -- path matching against compiled route patterns (see router.h).
 *
 * Each pattern becomes an array of segments, literal or parameter. A path is
 * matched segment by segment in place, with no copy. A linear scan over the
 * routes is a few hundred nanoseconds for the tables concertd has. If they
 * grow to hundreds of routes, a trie keyed by the first literal segment is
 * the next step. */
#include "http/router.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/num.h"
#include "core/xmalloc.h"

#define ROUTER_MAX_SEGS 8
#define ROUTER_NAME_MAX 16

struct seg {
    const char *lit; /* NULL for a parameter */
    size_t len;
    char name[ROUTER_NAME_MAX];
};

struct compiled {
    const struct api_route *route;
    int nsegs;
    struct seg segs[ROUTER_MAX_SEGS];
};

struct router {
    int n;
    struct compiled *routes;
};

static void compile(const struct api_route *r, struct compiled *c) {
    const char *p = r->pattern;
    if (*p != '/') goto bad;
    c->route = r;
    c->nsegs = 0;
    if (strcmp(p, "/") == 0) return; /* the root: no segments */
    int nparams = 0;
    while (*p == '/') {
        const char *s = ++p;
        while (*p && *p != '/') p++;
        size_t len = (size_t)(p - s);
        if (len == 0 || c->nsegs == ROUTER_MAX_SEGS) goto bad;
        struct seg *g = &c->segs[c->nsegs++];
        if (s[0] == '{') {
            if (s[len - 1] != '}' || len - 2 >= ROUTER_NAME_MAX || nparams == API_MAX_PARAMS)
                goto bad;
            g->lit = NULL;
            memcpy(g->name, s + 1, len - 2);
            g->name[len - 2] = '\0';
            nparams++;
        } else {
            g->lit = s;
            g->len = len;
        }
    }
    if (*p == '\0') return;
bad:
    fprintf(stderr, "concertd: malformed route pattern \"%s\"\n", r->pattern);
    abort();
}

struct router *router_create(const struct api_route *const *tables) {
    struct router *rt = xcalloc(1, sizeof(*rt));
    for (int t = 0; tables[t]; t++)
        for (const struct api_route *r = tables[t]; r->pattern; r++) rt->n++;
    rt->routes = xcalloc((size_t)rt->n, sizeof(*rt->routes));
    int i = 0;
    for (int t = 0; tables[t]; t++)
        for (const struct api_route *r = tables[t]; r->pattern; r++) compile(r, &rt->routes[i++]);
    return rt;
}

void router_free(struct router *rt) {
    if (!rt) return;
    free(rt->routes);
    free(rt);
}

/* Matches path against c. Returns 0 no match, 1 literal match with every
 * parameter valid (params filled), 2 literal match with a bad parameter
 * (*bad set to its name). */
static int match_one(const struct compiled *c, const char *path, int64_t *params,
                     const char **bad) {
    const char *p = path;
    int np = 0, badp = 0;
    if (c->nsegs == 0) return strcmp(path, "/") == 0;
    for (int i = 0; i < c->nsegs; i++) {
        if (*p != '/') return 0;
        const char *s = ++p;
        while (*p && *p != '/') p++;
        size_t len = (size_t)(p - s);
        const struct seg *g = &c->segs[i];
        if (g->lit) {
            if (len != g->len || memcmp(s, g->lit, len) != 0) return 0;
            continue;
        }
        int64_t v;
        if (len == 0 || num_parse_i64n(s, len, 0, &v) || v < 1) {
            if (!badp) *bad = g->name;
            badp = 1;
            continue;
        }
        params[np++] = v;
    }
    if (*p != '\0') return 0;
    return badp ? 2 : 1;
}

int router_patterns(const struct router *rt, const char **out, int max) {
    int n = 0;
    for (int i = 0; i < rt->n && n < max; i++) out[n++] = rt->routes[i].route->pattern;
    return n;
}

int router_match(const struct router *rt, int method, const char *path, struct route_match *m) {
    m->slot = 0;
    int allow = 0, bad_seen = 0;
    const char *bad = NULL;
    int want = method == API_HEAD ? API_GET : method;
    for (int i = 0; i < rt->n; i++) {
        const struct compiled *c = &rt->routes[i];
        int64_t params[API_MAX_PARAMS] = {0}; /* unused slots read 0, not stack garbage */
        int r = match_one(c, path, params, &bad);
        if (r == 1) {
            if (c->route->methods & want) {
                m->route = c->route;
                m->slot = i + 1;
                memcpy(m->params, params, sizeof(params));
                return ROUTE_OK;
            }
            allow |= c->route->methods;
        } else if (r == 2) {
            bad_seen = 1;
        }
    }
    if (allow) {
        m->allow = allow;
        return ROUTE_BAD_METHOD;
    }
    if (bad_seen) {
        m->bad_param = bad;
        return ROUTE_BAD_PARAM;
    }
    return ROUTE_NOT_FOUND;
}

void router_allow_header(int methods, char *buf, size_t len) {
    static const struct {
        int bit;
        const char *name;
    } names[] = {{API_GET, "GET"},        {API_GET, "HEAD"},      {API_POST, "POST"},
                 {API_PUT, "PUT"},        {API_DELETE, "DELETE"}, {API_PATCH, "PATCH"},
                 {API_OPTIONS, "OPTIONS"}};
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(methods & names[i].bit)) continue;
        int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", names[i].name);
        if (n < 0 || (size_t)n >= len - off) break;
        off += (size_t)n;
    }
    assert(off < len);
}
