/* concerts.c -- the catalog routes: concerts, their sessions, and the
 * available seats of a session (keyset-paginated).
 *
 * Decode the path and query, call the store port or service/catalog, encode
 * JSON. Sessions and seats are behind the waiting-room gate (api_gate): an
 * ACTIVATED QUEUE-TOKEN is required; the concert list is public.
 *
 * The concert list is the page everyone opens first, and it changes only
 * when `concertd import` or `seed` adds a concert (another process). Its
 * encoded body (v1 and classic forms) is kept for CONCERTS_TTL_MS and copied into each request's
 * arena, so a new concert shows up within that time and the hot path reads
 * no SQL. Sessions (their available-seat counts move with every hold) and
 * seat pages (they must never show a held seat) are always read fresh. */
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

#define CONCERTS_TTL_MS 1000

/* One cached body per form: [1] the v1 object, [0] the classic bare array. */
static struct {
    pthread_mutex_t mu;
    struct {
        char *body; /* malloc()ed; NULL until the first read */
        size_t len;
        int64_t made_at; /* monotonic ms */
    } form[2];
} concerts_cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The cached body copied into the arena, or NULL when there is none fresh. */
static char *cached_concerts(struct arena *a, int wrapped, int64_t now, size_t *len) {
    char *out = NULL;
    pthread_mutex_lock(&concerts_cache.mu);
    const char *body = concerts_cache.form[wrapped].body;
    if (body && now - concerts_cache.form[wrapped].made_at < CONCERTS_TTL_MS) {
        *len = concerts_cache.form[wrapped].len;
        out = arena_alloc(a, *len);
        memcpy(out, body, *len);
    }
    pthread_mutex_unlock(&concerts_cache.mu);
    return out;
}

static void cache_concerts(int wrapped, const char *body, size_t len, int64_t now) {
    char *copy = malloc(len);
    if (!copy) return; /* no cache this time; the answer is fine */
    memcpy(copy, body, len);
    pthread_mutex_lock(&concerts_cache.mu);
    free(concerts_cache.form[wrapped].body);
    concerts_cache.form[wrapped].body = copy;
    concerts_cache.form[wrapped].len = len;
    concerts_cache.form[wrapped].made_at = now;
    pthread_mutex_unlock(&concerts_cache.mu);
}

void api_concerts_list(struct api_req *r, struct api_res *w) {
    api_concerts_reply(r, w, 1);
}

void api_concerts_reply(struct api_req *r, struct api_res *w, int wrapped) {
    wrapped = wrapped != 0;
    int64_t now = time_mono_ms();
    size_t len;
    char *body = cached_concerts(r->arena, wrapped, now, &len);
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
    cache_concerts(wrapped, body, len, now);
    api_json(w, 200, body, len);
}

void api_sessions_list(struct api_req *r, struct api_res *w) {
    if (api_gate(r, w, 0, NULL)) return;
    struct store *s = r->env->store;
    int64_t cid = r->params[0];
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
    size_t len;
    char *body = jw_finish(&j, &len);
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
