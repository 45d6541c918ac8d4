/* url.c -- see url.h. */
#include "core/url.h"

#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "core/num.h"
#include "core/xmalloc.h"

int url_split(const char *url, const char *scheme, int default_port, char **host, int *port,
              const char **path) {
    size_t n = strlen(scheme);
    if (strncmp(url, scheme, n) != 0) return ERR_INVALID;
    const char *rest = url + n;
    const char *slash = strchr(rest, '/');
    size_t hostport = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *colon = memchr(rest, ':', hostport);
    size_t hostlen = colon ? (size_t)(colon - rest) : hostport;
    int64_t p = default_port;
    if (hostlen == 0) return ERR_INVALID;
    if (colon && (num_parse_i64n(colon + 1, hostport - hostlen - 1, 0, &p) || p < 1 || p > 65535))
        return ERR_INVALID;
    *port = (int)p;
    *path = slash ? slash + 1 : NULL;
    *host = xcalloc(1, hostlen + 1);
    memcpy(*host, rest, hostlen);
    return 0;
}
