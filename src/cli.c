/* cli.c -- seed, import and migrate (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/event.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/err.h"
#include "core/timeutil.h"
#include "core/xmalloc.h"
#include "queue/queue.h"
#include "service/catalog.h"
#include "store/store.h"

#define EVENT_FILE_MAX (16 * 1024 * 1024)

int cli_open_store(const struct config *c, struct store **out) {
    char err[512] = "";
    int rc = store_open(c->db, out, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "concertd: cannot open --db %s: %s\n", c->db, err[0] ? err : err_str(rc));
        return 1;
    }
    rc = (*out)->ops->migrate(*out);
    if (rc) {
        fprintf(stderr, "concertd: migrating %s failed: %s\n", c->db, err_str(rc));
        (*out)->ops->close(*out);
        return 1;
    }
    return 0;
}

int cli_migrate(const struct config *c) {
    struct store *s;
    if (cli_open_store(c, &s)) return 1;
    s->ops->close(s);
    printf("migrated %s: schema up to date\n", c->db);
    return 0;
}

/* The pattern with its "{n}" (at) replaced by user: snprintf's count. */
static int expand_token(const char *pattern, const char *at, int64_t user, char *tok, size_t len) {
    return snprintf(tok, len, "%.*s%lld%s", at ? (int)(at - pattern) : 0, pattern, (long long)user,
                    at ? at + 3 : "");
}

/* A token pattern must name each user once ("{n}") and expand to valid
 * tokens for every user id up to users. */
static int check_token_pattern(const char *pattern, int64_t users) {
    const char *at = strstr(pattern, "{n}");
    char tok[64];
    int n = expand_token(pattern, at, users, tok, sizeof(tok));
    if (!at || strstr(at + 3, "{n}") || n < 0 || (size_t)n >= sizeof(tok) ||
        !queue_token_valid(tok)) {
        fprintf(stderr,
                "concertd: --active-tokens \"%s\" must contain {n} once and make tokens of "
                "1 to %d characters from A-Z a-z 0-9 - _ . ~ for user ids up to %lld\n",
                pattern, QUEUE_TOKEN_MAX, (long long)users);
        return ERR_INVALID;
    }
    return 0;
}

/* --active-tokens with --queue redis://: the tokens go where the servers
 * will look for them. The pattern was checked before. */
static int seed_redis_tokens(const struct config *c) {
    char err[512];
    struct queue *q;
    struct queue_redis_opts o = {.prefix = c->queue_prefix, .lease_ms = c->queue_lease_ms};
    if (queue_redis_open(c->queue, &o, &q, err, sizeof(err))) {
        fprintf(stderr, "concertd: %s\n", err);
        return 1;
    }
    size_t n = (size_t)c->seed_users;
    char(*tok)[QUEUE_TOKEN_MAX + 1] = xcalloc(n ? n : 1, sizeof(*tok));
    const char **toks = xcalloc(n ? n : 1, sizeof(*toks));
    int64_t *users = xcalloc(n ? n : 1, sizeof(*users));
    const char *at = strstr(c->seed_active_tokens, "{n}");
    for (size_t i = 0; i < n; i++) {
        users[i] = (int64_t)i + 1;
        expand_token(c->seed_active_tokens, at, users[i], tok[i], sizeof(tok[i]));
        toks[i] = tok[i];
    }
    int rc = q->ops->ping(q);
    if (rc == 0) rc = queue_redis_grant(q, toks, users, n, time_now_ms() + c->seed_active_ttl_ms);
    if (rc)
        fprintf(stderr, "concertd: writing the tokens to %s failed: %s\n", c->queue, err_str(rc));
    free(tok);
    free(toks);
    free(users);
    q->ops->close(q);
    return rc ? 1 : 0;
}

int cli_seed(const struct config *c) {
    if (c->seed_active_tokens && check_token_pattern(c->seed_active_tokens, c->seed_users))
        return 2;
    int redis = strcmp(c->queue, "local") != 0;
    struct store *s;
    if (cli_open_store(c, &s)) return 1;
    struct store_seed opt = {
        .concerts = c->seed_concerts,
        .sessions_per_concert = c->seed_sessions_per_concert,
        .seats_per_session = c->seed_seats_per_session,
        .price = c->seed_price,
        .users = c->seed_users,
        .balance = c->seed_balance,
        .active_tokens = redis ? NULL : c->seed_active_tokens,
        .active_ttl_ms = c->seed_active_ttl_ms,
    };
    int64_t t0 = time_mono_ms();
    int rc = s->ops->seed(s, &opt);
    s->ops->close(s);
    if (rc) {
        fprintf(stderr, "concertd: seed failed: %s\n", err_str(rc));
        return 1;
    }
    if (redis && c->seed_active_tokens && seed_redis_tokens(c)) return 1;
    printf("seeded %lld concerts x %lld sessions x %lld seats (%lld seats), %lld users%s in "
           "%.1f s\n",
           (long long)opt.concerts, (long long)opt.sessions_per_concert,
           (long long)opt.seats_per_session,
           (long long)(opt.concerts * opt.sessions_per_concert * opt.seats_per_session),
           (long long)opt.users, c->seed_active_tokens ? " with ACTIVATED tokens" : "",
           (double)(time_mono_ms() - t0) / 1000.0);
    return 0;
}

/* Reads a whole file of at most EVENT_FILE_MAX bytes into the arena. */
static char *read_file(struct arena *a, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "concertd: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = arena_alloc(a, EVENT_FILE_MAX + 1);
    *len = fread(buf, 1, EVENT_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || *len > EVENT_FILE_MAX) {
        fprintf(stderr, "concertd: %s: %s\n", path, bad ? "read error" : "file larger than 16 MiB");
        return NULL;
    }
    return buf;
}

int cli_import(const struct config *c) {
    if (c->nargs != 1) {
        fprintf(stderr, "concertd: usage: concertd import [--db URL] EVENT.json\n");
        return 2;
    }
    const char *path = c->args[0];
    struct arena *a = arena_create();
    struct store_event ev;
    char err[512];
    size_t len;
    int status = 1;
    char *json = read_file(a, path, &len);
    if (!json) goto out;
    if (api_decode_event(json, len, a, &ev, err, sizeof(err)) ||
        catalog_check_event(&ev, err, sizeof(err))) {
        fprintf(stderr, "concertd: %s: %s\n", path, err);
        goto out;
    }
    struct store *s;
    if (cli_open_store(c, &s)) goto out;
    int64_t cid = 0;
    int rc = s->ops->import_event(s, &ev, &cid);
    s->ops->close(s);
    if (rc) {
        fprintf(stderr, "concertd: importing %s failed: %s\n", path, err_str(rc));
        goto out;
    }
    printf("imported concert %lld \"%s\": %zu sessions\n", (long long)cid, ev.title, ev.nsessions);
    status = 0;
out:
    arena_destroy(a);
    return status;
}
