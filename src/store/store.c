/* store.c -- picks the store adapter named by a --db URL.
 *
 * Responsible only for parsing the URL's scheme and calling the adapter's
 * constructor; everything else is the adapter's. A new backend adds one row
 * to the table below.
 *
 *   sqlite:PATH, sqlite://PATH, or a bare PATH   -> sqlite.c (PATH as given)
 *   postgres://..., postgresql://...             -> pg.c (the whole URL, for libpq)
 *
 * A bare path whose first segment looks like a scheme ("foo:bar.db") is read
 * as a URL; write "./foo:bar.db" or "sqlite:foo:bar.db" instead. */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

struct adapter {
    const char *scheme;
    const char *name; /* the backend, for messages */
    int (*open)(const char *target, struct store **out, char *errbuf, size_t errlen);
    int pass_url; /* 1: the whole URL (libpq parses it); 0: what follows "scheme:" */
};

static const struct adapter adapters[] = {
    {"sqlite", "sqlite", store_sqlite_open, 0},
    {"postgres", "postgres", store_pg_open, 1},
    {"postgresql", "postgres", store_pg_open, 1},
};

/* Length of the URL scheme before ':', or 0 when url does not start with one. */
static size_t scheme_len(const char *url) {
    size_t n = 0;
    while ((url[n] >= 'a' && url[n] <= 'z') || (url[n] >= 'A' && url[n] <= 'Z') ||
           (n > 0 && ((url[n] >= '0' && url[n] <= '9') || strchr("+-.", url[n]))))
        n++;
    return (n >= 2 && url[n] == ':') ? n : 0;
}

int store_open(const char *url, struct store **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (!url || !*url) {
        snprintf(errbuf, errlen, "empty database URL");
        return ERR_INVALID;
    }
    size_t n = scheme_len(url);
    if (n == 0) return store_sqlite_open(url, out, errbuf, errlen);
    for (size_t i = 0; i < sizeof(adapters) / sizeof(adapters[0]); i++) {
        const struct adapter *ad = &adapters[i];
        if (strlen(ad->scheme) != n || strncmp(url, ad->scheme, n) != 0) continue;
        if (!ad->open) {
            snprintf(errbuf, errlen, "%s support is not built yet", ad->name);
            return ERR_INVALID;
        }
        const char *target = url + n + 1;
        if (!ad->pass_url && strncmp(target, "//", 2) == 0) target += 2;
        return ad->open(ad->pass_url ? url : target, out, errbuf, errlen);
    }
    snprintf(errbuf, errlen,
             "unsupported database URL scheme \"%.*s\" in %s (use sqlite:PATH or postgres://...)",
             (int)n, url, url);
    return ERR_INVALID;
}
