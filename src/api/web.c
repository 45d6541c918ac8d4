/* web.c -- serves the fans' pages (web/): the waiting room (/), the booking
 * page (/booking.html) and their CSS, JS and icon.
 *
 * Responsible for the fixed set of files (api_routes_web below is both the
 * route table and the list of files), reading them once at start-up, and
 * answering GET/HEAD with the right Content-Type, an ETag and caching
 * headers. Not responsible for the pages' behaviour (the scripts in web/ talk to the
 * v1 API like any other client) or for refusing odd paths before routing
 * (http/server.c refuses '.' and '..' segments, backslashes and NUL bytes
 * for every route).
 *
 * Design notes:
 *   1. No request path ever reaches the file system: a path is served only
 *      when the router matched it exactly against the table, and the file
 *      behind it was read at start-up. "/../", "%2e%2e", absolute paths
 *      and every other name simply match no route (404) or are refused by
 *      http/ (400) -- there is no path check here to get wrong.
 *   2. The files' names are not fingerprinted, so every response says
 *      Cache-Control: no-cache with a strong ETag (a SHA-256 prefix of the
 *      bytes served); a browser revalidates with If-None-Match and gets a
 *      304 without a body. A page therefore never runs an old script
 *      against a new server after a restart with new files.
 *   3. The bytes live in struct web_site for the life of the server (freed
 *      after http_stop), so responses hand them to http/ without a copy. */
#include "api/web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/xmalloc.h"

#define WEB_FILE_MAX (1024 * 1024)
#define WEB_ETAG_HEX 20
#define WEB_HOLD_PLACEHOLDER "{{maxSeatsPerHold}}"
/* Scripts and styles come from this origin only; no inline script runs. */
#define WEB_CSP                                                                                    \
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "       \
    "base-uri 'none'; form-action 'self'"

static void api_web_file(struct api_req *r, struct api_res *w);

/* Each row is one URL; the file served is the path without its '/', and
 * index.html for "/". GET implies HEAD. */
const struct api_route api_routes_web[] = {
    {API_GET, "/", api_web_file, NULL, 0},
    {API_GET, "/index.html", api_web_file, NULL, 0},
    {API_GET, "/booking.html", api_web_file, NULL, 0},
    {API_GET, "/app.css", api_web_file, NULL, 0},
    {API_GET, "/common.js", api_web_file, NULL, 0},
    {API_GET, "/waiting.js", api_web_file, NULL, 0},
    {API_GET, "/booking.js", api_web_file, NULL, 0},
    {API_GET, "/favicon.svg", api_web_file, NULL, 0},
    {0, NULL, NULL, NULL, 0},
};

#define WEB_NFILES (sizeof(api_routes_web) / sizeof(api_routes_web[0]) - 1)

struct web_doc {
    char *body;
    size_t len;
    const char *type;
    char etag[WEB_ETAG_HEX + 3]; /* "hex" with its quotes */
};

struct web_site {
    struct web_doc docs[WEB_NFILES]; /* in api_routes_web order */
};

static const char *file_of(const char *pattern) {
    return strcmp(pattern, "/") == 0 ? "index.html" : pattern + 1;
}

static const char *type_of(const char *name) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

/* Reads path whole into a malloc()ed, NUL-terminated buffer. */
static int read_file(const char *path, char **out, size_t *len, char *errbuf, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    char *buf = xmalloc(WEB_FILE_MAX + 1);
    size_t n = fread(buf, 1, WEB_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > WEB_FILE_MAX) {
        free(buf);
        snprintf(errbuf, errlen, bad ? "cannot read %s" : "%s is over 1 MiB", path);
        return bad ? ERR_IO : ERR_INVALID;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Replaces every placeholder in d's body with value (a short decimal). */
static void fill_placeholder(struct web_doc *d, const char *value) {
    size_t plen = strlen(WEB_HOLD_PLACEHOLDER), vlen = strlen(value);
    size_t count = 0;
    for (const char *p = d->body; (p = strstr(p, WEB_HOLD_PLACEHOLDER)); p += plen) count++;
    if (!count) return;
    char *out = xmalloc(d->len + count * vlen + 1), *o = out;
    const char *p = d->body, *hit;
    while ((hit = strstr(p, WEB_HOLD_PLACEHOLDER))) {
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, value, vlen);
        o += vlen;
        p = hit + plen;
    }
    size_t rest = strlen(p);
    memcpy(o, p, rest + 1); /* the tail and its NUL; the buffer was sized for it */
    free(d->body);
    d->body = out;
    d->len = (size_t)(o - out) + rest;
}

int web_load(const char *root, int64_t max_seats_per_hold, struct web_site **out, char *errbuf,
             size_t errlen) {
    struct web_site *s = xcalloc(1, sizeof(*s));
    char hold[24];
    snprintf(hold, sizeof(hold), "%lld", (long long)max_seats_per_hold);
    for (size_t i = 0; i < WEB_NFILES; i++) {
        struct web_doc *d = &s->docs[i];
        const char *name = file_of(api_routes_web[i].pattern);
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, name) >= sizeof(path)) {
            snprintf(errbuf, errlen, "web root path is too long");
            web_free(s);
            return ERR_INVALID;
        }
        int rc = read_file(path, &d->body, &d->len, errbuf, errlen);
        if (rc) {
            web_free(s);
            return rc;
        }
        d->type = type_of(name);
        if (strncmp(d->type, "text/html", 9) == 0) fill_placeholder(d, hold);
        char hex[SHA256_HEX_LEN + 1];
        struct sha256_part part = {d->body, d->len};
        sha256_hex(&part, 1, hex);
        snprintf(d->etag, sizeof(d->etag), "\"%.*s\"", WEB_ETAG_HEX, hex);
    }
    *out = s;
    return 0;
}

void web_free(struct web_site *s) {
    if (!s) return;
    for (size_t i = 0; i < WEB_NFILES; i++) free(s->docs[i].body);
    free(s);
}

size_t web_file_count(const struct web_site *s) {
    return s ? WEB_NFILES : 0;
}

/* If-None-Match holds "*" or a list of entity tags; a weak W/"x" matches
 * "x" (RFC 9110 13.1.2 compares weakly for this header). */
static int etag_matches(const char *header, const char *etag) {
    if (strcmp(header, "*") == 0) return 1;
    return strstr(header, etag) != NULL;
}

static void api_web_file(struct api_req *r, struct api_res *w) {
    const struct web_site *s = r->env->web;
    const struct web_doc *d = NULL;
    for (size_t i = 0; s && i < WEB_NFILES; i++)
        if (strcmp(api_routes_web[i].pattern, r->route) == 0) d = &s->docs[i];
    if (!d) {
        api_error(r, w, 404, "NOT_FOUND", "the web pages are not installed (see --web-root)");
        return;
    }
    api_add_header(w, "ETag", d->etag);
    api_add_header(w, "Cache-Control", "no-cache");
    api_add_header(w, "X-Content-Type-Options", "nosniff");
    const char *inm = r->header(r, "If-None-Match");
    w->content_type = d->type;
    if (inm && etag_matches(inm, d->etag)) {
        w->status = 304;
        w->body = "";
        w->body_len = 0;
        return;
    }
    api_add_header(w, "Content-Security-Policy", WEB_CSP);
    w->status = 200;
    w->body = d->body;
    w->body_len = d->len;
}
