/* concerts.c -- the catalog routes: concerts, their sessions, and the
 * available seats of a session (keyset-paginated).
 *
 * Decode the path and query, call the store port or service/catalog, encode
 * JSON. Sessions and seats are behind the waiting-room gate (api_gate): an
 * ACTIVATED QUEUE-TOKEN is required; the concert list is public.
 *
 * Two answers are kept encoded in memory and copied into each request's
 * arena, so their hot path reads no SQL:
 *   - The concert list, the page everyone opens first. It changes only when
 *     `concertd import` or `seed` adds a concert (another process), so its
 *     body (v1 and classic forms) is kept for BODY_TTL_MS: a new concert
 *     shows up within that time.
 *   - The sessions of a concert. Their available-seat counts move with every
 *     hold, so a body is kept with the store's write_version read before it
 *     was read, and served only while no write of this process has
 *     committed since: exactly what reading again would return (and for at
 *     most BODY_TTL_MS, for other processes' imports). Under booking load it
 *     is read fresh almost every time; between bursts it costs nothing. Off
 *     where the store has no write_version (PostgreSQL: other instances
 *     write the same rows).
 * Seat pages are always read fresh. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "service/catalog.h"
#include "store/store.h"

/* Encoded bodies kept in memory (design note at the top of this file).
 * Slot 0 and 1 hold the concert list's two forms, the others the sessions
 * of concert cid at 2 + cid % (BODY_SLOTS - 2); a slot keeps one key, and
 * two concerts that share it take turns (a miss, never a wrong answer). */
#define BODY_TTL_MS 1000
#define BODY_SLOTS 1024
#define SLOT_CONCERTS 0 /* + wrapped */

static struct {
    pthread_mutex_t mu;
    struct body_slot {
        char *body; /* malloc()ed; NULL while empty */
        size_t len;
        int64_t key;      /* concert id of a sessions slot */
        uint64_t version; /* the store's write_version when it was read */
        int64_t made_at;  /* monotonic ms */
    } slot[BODY_SLOTS];
} bodies = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t sessions_slot(int64_t cid) {
    return 2 + (size_t)((uint64_t)cid % (BODY_SLOTS - 2));
}

/* The body in slot i copied into the arena, or NULL when it is not the one
 * for key, was read under another version, or is older than BODY_TTL_MS. */
static char *cached_body(struct arena *a, size_t i, int64_t key, uint64_t version, int64_t now,
                         size_t *len) {
    char *out = NULL;
    pthread_mutex_lock(&bodies.mu);
    const struct body_slot *b = &bodies.slot[i];
    if (b->body && b->key == key && b->version == version && now - b->made_at < BODY_TTL_MS) {
        *len = b->len;
        out = arena_alloc(a, *len);
        memcpy(out, b->body, *len);
    }
    pthread_mutex_unlock(&bodies.mu);
    return out;
}

static void cache_body(size_t i, int64_t key, uint64_t version, int64_t now, const char *body,
                       size_t len) {
    char *copy = malloc(len);
    if (!copy) return; /* no cache this time; the answer is fine */
    memcpy(copy, body, len);
    pthread_mutex_lock(&bodies.mu);
    struct body_slot *b = &bodies.slot[i];
    free(b->body);
    *b = (struct body_slot){copy, len, key, version, now};
    pthread_mutex_unlock(&bodies.mu);
}

void api_concerts_list(struct api_req *r, struct api_res *w) {
    api_concerts_reply(r, w, 1);
}

void api_concerts_reply(struct api_req *r, struct api_res *w, int wrapped) {
    wrapped = wrapped != 0;
    int64_t now = time_mono_ms();
    size_t len;
    char *body = cached_body(r->arena, SLOT_CONCERTS + (size_t)wrapped, 0, 0, now, &len);
    if (body) {
        api_json(w, 200, body, len);
        return;
    }
    struct store *s = r->env->store;
    struct store_concert *c;
    size_t n;
    int rc = s->ops->list_concerts(s, r->arena, &c, &n);
    if (rc) {
        api_fail(r, w, rc, NULL);
        return;
    }
    struct jw j;
    jw_init(&j, r->arena, 64 + n * 96);
    if (wrapped) {
        jw_obj_begin(&j);
        jw_key(&j, "concerts");
    }
    jw_arr_begin(&j);
    for (size_t i = 0; i < n; i++) {
        jw_obj_begin(&j);
        jw_kv_i64(&j, "concertId", c[i].id);
        jw_kv_str(&j, "title", c[i].title);
        jw_kv_str(&j, "venue", c[i].venue);
        jw_obj_end(&j);
    }
    jw_arr_end(&j);
    if (wrapped) jw_obj_end(&j);
    body = jw_finish(&j, &len);
    cache_body(SLOT_CONCERTS + (size_t)wrapped, 0, 0, now, body, len);
    api_json(w, 200, body, len);
}

void api_sessions_list(struct api_req *r, struct api_res *w) {
    if (api_gate(r, w, 0, NULL)) return;
    struct store *s = r->env->store;
    int64_t cid = r->params[0];
    /* Read the version before the sessions: a write committed meanwhile
     * raises it, so what is read now is never cached under the new one. */
    int cacheable = s->ops->write_version != NULL;
    uint64_t version = cacheable ? s->ops->write_version(s) : 0;
    int64_t now = time_mono_ms();
    size_t len;
    char *body = cacheable ? cached_body(r->arena, sessions_slot(cid), cid, version, now, &len) : NULL;
    if (body) {
        api_json(w, 200, body, len);
        return;
    }
    struct store_session *ss;
    size_t n;
    int rc = s->ops->list_sessions(s, r->arena, cid, &ss, &n);
    if (rc == ERR_NOT_FOUND) {
        api_fail(r, w, rc, arena_sprintf(r->arena, "concert %lld not found", (long long)cid));
        return;
    }
    if (rc) {
        api_fail(r, w, rc, NULL);
        return;
    }
    struct jw j;
    jw_init(&j, r->arena, 64 + n * 112);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "concertId", cid);
    jw_key(&j, "sessions");
    jw_arr_begin(&j);
    for (size_t i = 0; i < n; i++) {
        jw_obj_begin(&j);
        jw_kv_i64(&j, "sessionId", ss[i].id);
        jw_key(&j, "startsAt");
        jw_time(&j, ss[i].starts_at_ms);
        jw_kv_i64(&j, "totalSeats", ss[i].total_seats);
        jw_kv_i64(&j, "availableSeats", ss[i].available_seats);
        jw_obj_end(&j);
    }
    jw_arr_end(&j);
    jw_obj_end(&j);
    body = jw_finish(&j, &len);
    if (cacheable) cache_body(sessions_slot(cid), cid, version, now, body, len);
    api_json(w, 200, body, len);
}

void api_seats_list(struct api_req *r, struct api_res *w) {
    if (api_gate(r, w, 0, NULL)) return;
    int64_t cid = r->params[0], sid = r->params[1], limit, after;
    if (api_query_i64(r, w, "limit", CATALOG_PAGE_DEFAULT, 1, CATALOG_PAGE_MAX, &limit) ||
        api_query_i64(r, w, "after", 0, 0, INT64_MAX, &after))
        return;
    struct catalog_seat_page page;
    int rc = catalog_seat_page(r->env->store, r->arena, cid, sid, after, limit, &page);
    if (rc == ERR_NOT_FOUND) {
        api_fail(r, w, rc,
                 arena_sprintf(r->arena, "session %lld of concert %lld not found", (long long)sid,
                               (long long)cid));
        return;
    }
    if (rc) {
        api_fail(r, w, rc, NULL);
        return;
    }
    struct jw j;
    jw_init(&j, r->arena, 64 + page.n * 72);
    jw_obj_begin(&j);
    jw_kv_i64(&j, "sessionId", sid);
    jw_key(&j, "availableSeats");
    jw_arr_begin(&j);
    for (size_t i = 0; i < page.n; i++) {
        const struct store_seat *st = &page.seats[i];
        jw_obj_begin(&j);
        jw_kv_i64(&j, "seatId", st->id);
        jw_kv_i64(&j, "seatNumber", st->number);
        jw_kv_str(&j, "grade", st->grade);
        jw_kv_i64(&j, "price", st->price);
        jw_obj_end(&j);
    }
    jw_arr_end(&j);
    jw_key(&j, "nextCursor");
    if (page.next_cursor)
        jw_i64(&j, page.next_cursor);
    else
        jw_null(&j);
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, 200, body, len);
}
