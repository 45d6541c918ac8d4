/* sqlite_outbox.c -- the transactional outbox's reads and marks for the
 * relay (service/outbox.c): outbox_list (unpublished events in id order)
 * and outbox_mark (published_at set).
 *
 * Events are written by the ops whose change they describe, in the same
 * transaction (sqlite_booking.c). Marking goes through the group commit
 * like every request-time write. Not here: publishing (sink/). */
#include "core/err.h"
#include "store/sqlite_int.h"

static const char SQL_LIST[] = "SELECT id, topic, aggregate_id, payload, created_at FROM outbox"
                               " WHERE published_at IS NULL ORDER BY id LIMIT ?1";
static const char SQL_MARK[] =
    "UPDATE outbox SET published_at = ?2 WHERE id = ?1 AND published_at IS NULL";

static void read_event(sqlite3_stmt *st, struct arena *a, void *out) {
    struct store_event_row *e = out;
    e->id = sqlite3_column_int64(st, 0);
    e->topic = sq_col_str(st, 1, a);
    e->aggregate_id = sqlite3_column_int64(st, 2);
    e->payload = sq_col_str(st, 3, a);
    e->created_at_ms = sqlite3_column_int64(st, 4);
}

int sq_outbox_list(struct store *s, struct arena *a, int64_t max, struct store_event_row **out,
                   size_t *n) {
    struct conn *c = sq_conn(s);
    *out = NULL;
    *n = 0;
    if (!c) return ERR_UNAVAILABLE;
    sqlite3_stmt *st = sq_stmt(c, SQL_LIST);
    if (!st) return ERR_IO;
    sq_bind_ints(st, 1, &max);
    struct rows rows = {.size = sizeof(struct store_event_row)};
    int err = sq_collect(c, st, "outbox_list", a, &rows, read_event);
    *out = rows.items;
    *n = rows.n;
    return err;
}

struct mark_job {
    const int64_t *ids;
    size_t n;
    int64_t now;
};

static int mark_apply(struct conn *c, void *arg) {
    struct mark_job *j = arg;
    int err = 0;
    for (size_t i = 0; i < j->n && err == 0; i++) {
        int64_t v[2] = {j->ids[i], j->now};
        err = sq_exec_ints(c, SQL_MARK, 2, v);
    }
    return err;
}

int sq_outbox_mark(struct store *s, const int64_t *ids, size_t n, int64_t now_ms) {
    if (n == 0) return 0;
    struct mark_job j = {ids, n, now_ms};
    return sq_write((struct sqlite_store *)s, mark_apply, &j);
}
