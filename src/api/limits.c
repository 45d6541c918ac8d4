/* limits.c -- the 429s of api/limits.h. The bucket arithmetic is
 * core/ratelimit.c's; here: which buckets a request draws on, and the
 * answer when one is empty. The address bucket is taken first, so a
 * flood from one address under many user ids is stopped there. */
#include "api/limits.h"

#include <stdlib.h>

#include "core/arena.h"
#include "core/config.h"
#include "core/err.h"
#include "core/ratelimit.h"
#include "core/timeutil.h"
#include "core/xmalloc.h"

struct api_limits {
    struct ratelimit *ip[2], *user[2]; /* by enum api_limit */
};

struct api_limits *api_limits_create(const struct config *c) {
    struct api_limits *l = xcalloc(1, sizeof(*l));
    size_t n = (size_t)c->limit_table_size;
    l->ip[API_LIMIT_ENTER] = ratelimit_create(c->limit_enter_ip, c->limit_burst, n);
    l->user[API_LIMIT_ENTER] = ratelimit_create(c->limit_enter_user, c->limit_burst, n);
    l->ip[API_LIMIT_HOLD] = ratelimit_create(c->limit_hold_ip, c->limit_burst, n);
    l->user[API_LIMIT_HOLD] = ratelimit_create(c->limit_hold_user, c->limit_burst, n);
    return l;
}

void api_limits_free(struct api_limits *l) {
    if (!l) return;
    for (int i = 0; i < 2; i++) {
        ratelimit_free(l->ip[i]);
        ratelimit_free(l->user[i]);
    }
    free(l);
}

int api_limit(struct api_req *r, struct api_res *w, enum api_limit what, int64_t user) {
    struct api_limits *l = r->env->limits;
    if (!l) return 0;
    static const char *const names[] = {[API_LIMIT_ENTER] = "queue entries",
                                        [API_LIMIT_HOLD] = "seat holds"};
    int64_t now = time_mono_ms(), retry = 0;
    const char *by = NULL;
    if (!ratelimit_take(l->ip[what], r->peer, now, &retry))
        by = "from this address";
    else if (!ratelimit_take(l->user[what], (uint64_t)user, now, &retry))
        by = "for this user";
    if (!by) return 0;
    int64_t secs = (retry + 999) / 1000;
    api_error(r, w, 429, "RATE_LIMITED", "too many %s %s; retry in %lld s", names[what], by,
              (long long)secs);
    api_add_header(w, "Retry-After", arena_sprintf(r->arena, "%lld", (long long)secs));
    return ERR_LIMIT;
}
