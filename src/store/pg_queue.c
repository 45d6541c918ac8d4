/* pg_queue.c -- the waiting room's tokens and the outbox in PostgreSQL:
 * queue_save, queue_load, the pre-issued tokens of `concertd seed
 * --active-tokens`, outbox_list and outbox_mark.
 *
 * Same rules as sqlite_queue.c and sqlite_outbox.c: token writes merge by
 * state order (WAITING < ACTIVATED < EXPIRED), so writes that land out of
 * order keep the later state; saving a live token first expires the user's
 * older live ones (partial unique index waiting_tokens_live_user). Saves and
 * marks go through the group commit. Not here: the line itself
 * (queue/local.c), publishing (sink/). */
#include <string.h>

#include "core/err.h"
#include "store/pg_int.h"

static const char SQL_EXPIRE_OLDER[] =
    "UPDATE waiting_tokens SET status = 'EXPIRED', expires_at = $3"
    " WHERE user_id = $1 AND status IN ('WAITING', 'ACTIVATED') AND seq < $2";

#define RANK(col) "(CASE " col " WHEN 'WAITING' THEN 1 WHEN 'ACTIVATED' THEN 2 ELSE 3 END)"

static const char SQL_UPSERT[] =
    "INSERT INTO waiting_tokens AS w"
    " (token, user_id, seq, status, entered_at, activated_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (token) DO UPDATE SET status = excluded.status,"
    " activated_at = coalesce(excluded.activated_at, w.activated_at),"
    " expires_at = excluded.expires_at"
    " WHERE " RANK("excluded.status") " > " RANK("w.status");

static const char SQL_LOAD[] =
    "SELECT token, user_id, seq, status, entered_at, coalesce(activated_at, 0),"
    " coalesce(expires_at, 0) FROM waiting_tokens"
    " WHERE status IN ('WAITING', 'ACTIVATED') ORDER BY seq";

static const char SQL_NEXT_SEQ[] = "SELECT coalesce(max(seq), 0) + 1 FROM waiting_tokens";

static const char SQL_SEED_EXPIRE[] =
    "UPDATE waiting_tokens SET status = 'EXPIRED', expires_at = $3"
    " WHERE user_id BETWEEN 1 AND $1 AND status IN ('WAITING', 'ACTIVATED')"
    " AND token <> replace($2::text, '{n}', user_id::text)";

static const char SQL_SEED_TOKENS[] =
    "INSERT INTO waiting_tokens (token, user_id, seq, status, entered_at, activated_at, expires_at)"
    " SELECT replace($2::text, '{n}', g::text), g, $3::bigint + g, 'ACTIVATED', $4, $4, $5"
    " FROM generate_series(1, $1::bigint) AS g"
    " ON CONFLICT (token) DO UPDATE SET status = 'ACTIVATED',"
    " activated_at = excluded.activated_at, expires_at = excluded.expires_at";

static const char SQL_OUTBOX_LIST[] =
    "SELECT id, topic, aggregate_id, payload, created_at FROM outbox"
    " WHERE published_at IS NULL ORDER BY id LIMIT $1";
static const char SQL_OUTBOX_MARK[] =
    "UPDATE outbox SET published_at = $2 WHERE id = $1 AND published_at IS NULL";

static int save_one(struct pgconn *c, const struct store_token *t) {
    if (!t->token || t->user_id <= 0 || t->state < STORE_TOKEN_WAITING ||
        t->state > STORE_TOKEN_EXPIRED)
        return ERR_INVALID;
    struct pg_args a;
    if (t->state != STORE_TOKEN_EXPIRED) {
        int64_t v[3] = {t->user_id, t->seq, t->entered_at};
        pg_args_ints(&a, 3, v);
        int err = pg_exec(c, SQL_EXPIRE_OLDER, &a, NULL, "queue_expire_older");
        if (err) return err;
    }
    a.n = 0;
    pg_arg_str(&a, t->token);
    pg_arg_int(&a, t->user_id);
    pg_arg_int(&a, t->seq);
    pg_arg_str(&a, store_token_state_name(t->state));
    pg_arg_int(&a, t->entered_at);
    pg_arg_opt(&a, t->activated_at);
    pg_arg_opt(&a, t->expires_at);
    return pg_exec(c, SQL_UPSERT, &a, NULL, "queue_save");
}

struct save_job {
    const struct store_token *t;
    size_t n;
};

static int save_apply(struct pgconn *c, void *arg) {
    const struct save_job *j = arg;
    int err = 0;
    for (size_t i = 0; err == 0 && i < j->n; i++) err = save_one(c, &j->t[i]);
    return err;
}

int pg_queue_save(struct store *s, const struct store_token *t, size_t n) {
    struct save_job j = {t, n};
    return pg_write((struct pg_store *)s, save_apply, &j);
}

int pg_queue_load(struct store *s, store_token_fn each, void *ctx, int64_t *next_seq) {
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int err = pg_query_int(c, SQL_NEXT_SEQ, NULL, next_seq, "queue_next_seq");
    PGresult *r = NULL;
    if (err == 0) err = pg_exec(c, SQL_LOAD, NULL, &r, "queue_load");
    for (int i = 0; err == 0 && i < PQntuples(r); i++) {
        struct store_token t = {
            .token = PQgetvalue(r, i, 0),
            .user_id = pg_int(r, i, 1),
            .seq = pg_int(r, i, 2),
            .state = store_token_state_of(PQgetvalue(r, i, 3)),
            .entered_at = pg_int(r, i, 4),
            .activated_at = pg_int(r, i, 5),
            .expires_at = pg_int(r, i, 6),
        };
        if (t.state) err = each(ctx, &t);
    }
    PQclear(r);
    return err;
}

int pg_seed_tokens(struct pgconn *c, const struct store_seed *o) {
    if (!o->active_tokens || o->users <= 0) return 0;
    if (!strstr(o->active_tokens, "{n}") || o->active_ttl_ms <= 0) return ERR_INVALID;
    int64_t now = pg_now_ms(), seq = 0;
    int err = pg_query_int(c, SQL_NEXT_SEQ, NULL, &seq, "seed_tokens");
    if (err) return err;
    struct pg_args a = {0};
    pg_arg_int(&a, o->users);
    pg_arg_str(&a, o->active_tokens);
    pg_arg_int(&a, now);
    err = pg_exec(c, SQL_SEED_EXPIRE, &a, NULL, "seed_tokens");
    if (err) return err;
    a.n = 2;
    pg_arg_int(&a, seq);
    pg_arg_int(&a, now);
    pg_arg_int(&a, now + o->active_ttl_ms);
    return pg_exec(c, SQL_SEED_TOKENS, &a, NULL, "seed_tokens");
}

/* ---- the outbox --------------------------------------------------------------- */

static void read_event(const PGresult *r, int i, struct arena *a, void *out) {
    struct store_event_row *e = out;
    e->id = pg_int(r, i, 0);
    e->topic = pg_str(r, i, 1, a);
    e->aggregate_id = pg_int(r, i, 2);
    e->payload = pg_str(r, i, 3, a);
    e->created_at_ms = pg_int(r, i, 4);
}

int pg_outbox_list(struct store *s, struct arena *a, int64_t max, struct store_event_row **out,
                   size_t *n) {
    *out = NULL;
    *n = 0;
    struct pgconn *c = pg_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    struct pg_args args;
    pg_args_ints(&args, 1, &max);
    PGresult *r;
    int err = pg_exec(c, SQL_OUTBOX_LIST, &args, &r, "outbox_list");
    if (err) return err;
    pg_collect(r, a, sizeof(**out), read_event, (void **)out, n);
    PQclear(r);
    return 0;
}

struct mark_job {
    const int64_t *ids;
    size_t n;
    int64_t now;
};

static int mark_apply(struct pgconn *c, void *arg) {
    struct mark_job *j = arg;
    int err = 0;
    for (size_t i = 0; i < j->n && err == 0; i++) {
        int64_t v[2] = {j->ids[i], j->now};
        struct pg_args a;
        pg_args_ints(&a, 2, v);
        err = pg_exec(c, SQL_OUTBOX_MARK, &a, NULL, "outbox_mark");
    }
    return err;
}

int pg_outbox_mark(struct store *s, const int64_t *ids, size_t n, int64_t now_ms) {
    if (n == 0) return 0;
    struct mark_job j = {ids, n, now_ms};
    return pg_write((struct pg_store *)s, mark_apply, &j);
}
