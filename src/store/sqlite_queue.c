/* sqlite_queue.c -- the waiting room's tokens in SQLite: queue_save,
 * queue_load and the pre-issued tokens of `concertd seed --active-tokens`.
 *
 * The line itself lives in memory (queue/local.c); this file only keeps a
 * copy that survives a restart. Saves go through the group commit
 * (sq_write), batched with the other writes of the moment. Writes merge by state order, so two
 * writes of one token that land out of order keep the later state:
 *
 *     WAITING (1) < ACTIVATED (2) < EXPIRED (3)
 *
 * The partial unique index waiting_tokens_live_user allows one live token
 * per user; saving a live token first expires the user's older live ones,
 * which memory has already expired (their write may still be on its way). */
#include <string.h>

#include "core/err.h"
#include "store/sqlite_int.h"

static const char SQL_EXPIRE_OLDER[] =
    "UPDATE waiting_tokens SET status = 'EXPIRED', expires_at = ?3"
    " WHERE user_id = ?1 AND status IN ('WAITING', 'ACTIVATED') AND seq < ?2";

#define RANK(col) "(CASE " col " WHEN 'WAITING' THEN 1 WHEN 'ACTIVATED' THEN 2 ELSE 3 END)"

static const char SQL_UPSERT[] =
    "INSERT INTO waiting_tokens"
    " (token, user_id, seq, status, entered_at, activated_at, expires_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    " ON CONFLICT (token) DO UPDATE SET status = excluded.status,"
    " activated_at = coalesce(excluded.activated_at, activated_at),"
    " expires_at = excluded.expires_at"
    " WHERE " RANK("excluded.status") " > " RANK("waiting_tokens.status");

static const char SQL_LOAD[] =
    "SELECT token, user_id, seq, status, entered_at, coalesce(activated_at, 0),"
    " coalesce(expires_at, 0) FROM waiting_tokens"
    " WHERE status IN ('WAITING', 'ACTIVATED') ORDER BY seq";

static const char SQL_NEXT_SEQ[] = "SELECT coalesce(max(seq), 0) + 1 FROM waiting_tokens";

static const char SQL_SEED_EXPIRE[] =
    "UPDATE waiting_tokens SET status = 'EXPIRED', expires_at = ?3"
    " WHERE user_id BETWEEN 1 AND ?1 AND status IN ('WAITING', 'ACTIVATED')"
    " AND token <> replace(?2, '{n}', user_id)";

static const char SQL_SEED_TOKENS[] =
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)"
    " INSERT INTO waiting_tokens"
    " (token, user_id, seq, status, entered_at, activated_at, expires_at)"
    " SELECT replace(?2, '{n}', x), x, ?3 + x, 'ACTIVATED', ?4, ?4, ?5 FROM n WHERE true"
    " ON CONFLICT (token) DO UPDATE SET status = 'ACTIVATED',"
    " activated_at = excluded.activated_at, expires_at = excluded.expires_at";

static void bind_opt(sqlite3_stmt *st, int i, int64_t v) {
    if (v > 0)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static int save_one(struct conn *c, const struct store_token *t) {
    if (!t->token || t->user_id <= 0 || t->state < STORE_TOKEN_WAITING ||
        t->state > STORE_TOKEN_EXPIRED)
        return ERR_INVALID;
    if (t->state != STORE_TOKEN_EXPIRED) {
        int64_t a[3] = {t->user_id, t->seq, t->entered_at};
        int err = sq_exec_ints(c, SQL_EXPIRE_OLDER, 3, a);
        if (err) return err;
    }
    sqlite3_stmt *st = sq_stmt(c, SQL_UPSERT);
    if (!st) return ERR_IO;
    sqlite3_bind_text(st, 1, t->token, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, t->user_id);
    sqlite3_bind_int64(st, 3, t->seq);
    sqlite3_bind_text(st, 4, store_token_state_name(t->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, t->entered_at);
    bind_opt(st, 6, t->activated_at);
    bind_opt(st, 7, t->expires_at);
    return sq_exec_st(c, st, "queue_save");
}

struct save_job {
    const struct store_token *t;
    size_t n;
};

static int save_apply(struct conn *c, void *arg) {
    const struct save_job *j = arg;
    int err = 0;
    for (size_t i = 0; err == 0 && i < j->n; i++) err = save_one(c, &j->t[i]);
    return err;
}

/* Through the group commit, like every request-time write: one writer, so
 * enters never wait on SQLite's busy handler behind the booking writes. */
int sq_queue_save(struct store *s, const struct store_token *t, size_t n) {
    struct save_job j = {t, n};
    return sq_write((struct sqlite_store *)s, save_apply, &j);
}

int sq_queue_load(struct store *s, store_token_fn each, void *ctx, int64_t *next_seq) {
    struct conn *c = sq_conn(s);
    if (!c) return ERR_UNAVAILABLE;
    int err = sq_query_int(c, SQL_NEXT_SEQ, 0, NULL, next_seq);
    sqlite3_stmt *st = err ? NULL : sq_stmt(c, SQL_LOAD);
    if (!st) return err ? err : ERR_IO;
    int rc = SQLITE_DONE;
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_token t = {
            .token = (const char *)sqlite3_column_text(st, 0),
            .user_id = sqlite3_column_int64(st, 1),
            .seq = sqlite3_column_int64(st, 2),
            .state = store_token_state_of((const char *)sqlite3_column_text(st, 3)),
            .entered_at = sqlite3_column_int64(st, 4),
            .activated_at = sqlite3_column_int64(st, 5),
            .expires_at = sqlite3_column_int64(st, 6),
        };
        if (t.token && t.state) err = each(ctx, &t);
    }
    if (err == 0 && rc != SQLITE_DONE) err = sq_fail(c, "queue_load", rc);
    sqlite3_reset(st);
    return err;
}

int sq_seed_tokens(struct conn *c, const struct store_seed *o) {
    if (!o->active_tokens || o->users <= 0) return 0;
    if (!strstr(o->active_tokens, "{n}") || o->active_ttl_ms <= 0) return ERR_INVALID;
    int64_t now = sq_now_ms(), seq = 0;
    int err = sq_query_int(c, SQL_NEXT_SEQ, 0, NULL, &seq);
    sqlite3_stmt *st = err ? NULL : sq_stmt(c, SQL_SEED_EXPIRE);
    if (!st) return err ? err : ERR_IO;
    sqlite3_bind_int64(st, 1, o->users);
    sqlite3_bind_text(st, 2, o->active_tokens, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    err = sq_exec_st(c, st, "seed_tokens");
    st = err ? NULL : sq_stmt(c, SQL_SEED_TOKENS);
    if (!st) return err ? err : ERR_IO;
    sqlite3_bind_int64(st, 1, o->users);
    sqlite3_bind_text(st, 2, o->active_tokens, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now + o->active_ttl_ms);
    return sq_exec_st(c, st, "seed_tokens");
}
