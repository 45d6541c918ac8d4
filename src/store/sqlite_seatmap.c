/* sqlite_seatmap.c -- the seats of recently paged sessions, kept in memory
 * so a seat page reads no SQL (embedded mode).
 *
 * Responsible for: loading a session's seats on its first page, answering
 * seat pages from memory, and keeping each loaded seat's availability in
 * step with what the group committer commits. Not here: the SQL path every
 * page falls back to (sqlite.c), the writes themselves (sqlite_booking.c).
 *
 * Design notes
 *
 *   1. Why. With 10 M seats stored, a seat page spent about 37 % of the
 *      server's time in SQLite (one covering-index range scan of 100
 *      entries). From memory it is a binary search and a copy.
 *   2. Exactness. A seat page must never show a seat whose hold was
 *      acknowledged. Only three statements change a seat's availability:
 *      the claim of a hold, the release of a cancelled or expired hold
 *      (both in sqlite_booking.c) and a sale, which keeps it unavailable.
 *      The first two report each seat they change (sq_seat_changed, called
 *      inside the committer's jobs); the committer keeps a job's reports
 *      only when the job succeeds, and applies the batch's reports here
 *      after its COMMIT and before it wakes any writer (sqlite_commit.c).
 *      So a 2xx for a hold is sent only after its seats left the map.
 *   3. Loading races. A load reads the session's seats with SQL, which may
 *      miss a commit whose reports arrive while it reads. Each stripe counts
 *      the reports applied to its sessions (gen); a load remembers gen
 *      before its SQL and installs its result only if gen has not moved,
 *      else the page is answered from SQL and the session loads another
 *      time.
 *   4. Other processes. Only this process's committer reports. Every
 *      write of this process goes through the committer, so its connection's
 *      PRAGMA data_version moves only when another process commits (an
 *      operator's sqlite3 shell, `concertd import`); the committer looks
 *      every second and then empties the map (sq_seatmap_flush), so such a
 *      change shows within a second. A missing session is never cached.
 *   5. Memory. About 24 bytes a seat (10 M seats: 240 MB). Sessions are not
 *      loaded past --seat-cache bytes; their pages come from SQL. 0 turns
 *      the map off. Grades are interned once for the store's lifetime, so a
 *      page's grade pointers stay valid after the stripe's lock is gone. */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "store/sqlite_int.h"

#define MOD "store"
#define SM_STRIPES 4096
#define SM_GRADES 1024

struct sm_seat {
    int64_t id;
    int64_t price;
    int32_t number;
    uint16_t grade; /* index into seatmap.grade[] */
    uint8_t avail;
};

struct sm_session {
    int64_t id, concert_id;
    size_t n;
    int ids_ascend;        /* seat ids grow with seat numbers: find an id by binary search */
    struct sm_seat *seats; /* by seat number */
    uint32_t *by_id;       /* else: indexes into seats, ordered by seat id */
    size_t bytes;
    struct sm_session *next; /* the stripe's chain */
};

struct sm_stripe {
    pthread_mutex_t mu;
    uint64_t gen; /* reports applied to this stripe's sessions (design note 3) */
    struct sm_session *head;
};

struct sq_seatmap {
    struct sm_stripe stripe[SM_STRIPES];
    _Atomic size_t bytes;
    size_t cap;
    pthread_mutex_t grade_mu;
    size_t ngrades;
    char *grade[SM_GRADES];
};

static const char SQL_SESSION_CONCERT[] = "SELECT concert_id FROM sessions WHERE id = ?1";
static const char SQL_SESSION_SEATS[] = "SELECT id, seat_number, grade, price, status FROM seats"
                                        " WHERE session_id = ?1 ORDER BY seat_number";

static struct sm_stripe *stripe_of(struct sq_seatmap *m, int64_t session_id) {
    return &m->stripe[(uint64_t)session_id % SM_STRIPES];
}

static struct sm_session *find(struct sm_stripe *st, int64_t session_id) {
    for (struct sm_session *x = st->head; x; x = x->next)
        if (x->id == session_id) return x;
    return NULL;
}

/* Frees an entry that was never installed (counts no bytes). */
static void discard(struct sm_session *x) {
    free(x->seats);
    free(x->by_id);
    free(x);
}

/* Frees an installed entry. */
static void free_session(struct sq_seatmap *m, struct sm_session *x) {
    atomic_fetch_sub(&m->bytes, x->bytes);
    discard(x);
}

struct sq_seatmap *sq_seatmap_new(size_t cap) {
    if (cap == 0) return NULL;
    struct sq_seatmap *m = xcalloc(1, sizeof(*m));
    for (int i = 0; i < SM_STRIPES; i++) pthread_mutex_init(&m->stripe[i].mu, NULL);
    pthread_mutex_init(&m->grade_mu, NULL);
    atomic_init(&m->bytes, 0);
    m->cap = cap;
    return m;
}

void sq_seatmap_free(struct sq_seatmap *m) {
    if (!m) return;
    for (int i = 0; i < SM_STRIPES; i++) {
        for (struct sm_session *x = m->stripe[i].head, *next; x; x = next) {
            next = x->next;
            free_session(m, x);
        }
        pthread_mutex_destroy(&m->stripe[i].mu);
    }
    for (size_t i = 0; i < m->ngrades; i++) free(m->grade[i]);
    pthread_mutex_destroy(&m->grade_mu);
    free(m);
}

/* The index of grade g, interned; -1 when the table is full. */
static int intern(struct sq_seatmap *m, const char *g) {
    pthread_mutex_lock(&m->grade_mu);
    int at = -1;
    for (size_t i = 0; i < m->ngrades; i++)
        if (strcmp(m->grade[i], g) == 0) at = (int)i;
    if (at < 0 && m->ngrades < SM_GRADES) {
        at = (int)m->ngrades;
        m->grade[m->ngrades++] = xstrdup(g);
    }
    pthread_mutex_unlock(&m->grade_mu);
    return at;
}

static const char *grade_name(struct sq_seatmap *m, uint16_t i) {
    return m->grade[i]; /* written once before its index was published */
}

static int cmp_by_id(const void *a, const void *b, void *seats) {
    const struct sm_seat *s = seats;
    int64_t x = s[*(const uint32_t *)a].id, y = s[*(const uint32_t *)b].id;
    return (x > y) - (x < y);
}

/* Reads session_id's seats into a new entry (not yet installed). ERR_NOT_FOUND
 * when there is no such session; ERR_LIMIT when it is not to be cached. */
static int load(struct sq_seatmap *m, struct conn *c, int64_t session_id,
                struct sm_session **out) {
    int64_t concert_id = 0;
    int err = sq_query_int(c, SQL_SESSION_CONCERT, 1, &session_id, &concert_id);
    if (err) return err;
    sqlite3_stmt *st = sq_stmt(c, SQL_SESSION_SEATS);
    if (!st) return ERR_IO;
    sq_bind_ints(st, 1, &session_id);
    struct sm_session *x = xcalloc(1, sizeof(*x));
    x->id = session_id;
    x->concert_id = concert_id;
    x->ids_ascend = 1;
    size_t cap = 0;
    const char *last_grade = NULL;
    int last_index = -1, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (x->n == cap) {
            cap = cap ? cap * 2 : 256;
            x->seats = xrealloc(x->seats, cap * sizeof(*x->seats));
        }
        struct sm_seat *s = &x->seats[x->n];
        s->id = sqlite3_column_int64(st, 0);
        int64_t number = sqlite3_column_int64(st, 1);
        const char *g = (const char *)sqlite3_column_text(st, 2);
        s->price = sqlite3_column_int64(st, 3);
        s->avail = sqlite3_column_int64(st, 4) == STORE_SEAT_FREE;
        if (!last_grade || strcmp(g, last_grade) != 0) {
            last_index = intern(m, g);
            last_grade = last_index < 0 ? NULL : grade_name(m, (uint16_t)last_index);
        }
        if (number > INT32_MAX || last_index < 0) {
            err = ERR_LIMIT; /* keep going to finish the statement; not cached */
            continue;
        }
        s->number = (int32_t)number;
        s->grade = (uint16_t)last_index;
        if (x->n > 0 && s->id <= x->seats[x->n - 1].id) x->ids_ascend = 0;
        x->n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) err = sq_fail(c, "seatmap_load", rc);
    if (err == 0 && !x->ids_ascend) {
        x->by_id = xmalloc(x->n * sizeof(*x->by_id));
        for (size_t i = 0; i < x->n; i++) x->by_id[i] = (uint32_t)i;
        qsort_r(x->by_id, x->n, sizeof(*x->by_id), cmp_by_id, x->seats);
    }
    x->bytes = sizeof(*x) + x->n * (sizeof(*x->seats) + (x->by_id ? sizeof(*x->by_id) : 0));
    if (err == 0 && atomic_load(&m->bytes) + x->bytes > m->cap) err = ERR_LIMIT;
    if (err) {
        discard(x);
        return err;
    }
    *out = x;
    return 0;
}

/* Index in x->seats of the first seat numbered above after. */
static size_t first_after(const struct sm_session *x, int64_t after) {
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->seats[mid].number <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The page from a loaded entry; the stripe's lock is held. */
static int page_of(struct sq_seatmap *m, const struct sm_session *x, int64_t concert_id,
                   int64_t after, int64_t limit, struct arena *a, struct store_seat **out,
                   size_t *n) {
    if (x->concert_id != concert_id) return ERR_NOT_FOUND;
    struct store_seat *p = arena_alloc(a, (size_t)(limit > 0 ? limit : 1) * sizeof(*p));
    size_t k = 0;
    for (size_t i = first_after(x, after); i < x->n && (int64_t)k < limit; i++) {
        const struct sm_seat *s = &x->seats[i];
        if (!s->avail) continue;
        p[k++] = (struct store_seat){.id = s->id,
                                     .session_id = x->id,
                                     .number = s->number,
                                     .grade = grade_name(m, s->grade),
                                     .price = s->price};
    }
    *out = p;
    *n = k;
    return 0;
}

int sq_seatmap_page(struct sq_seatmap *m, struct conn *c, int64_t concert_id, int64_t session_id,
                    int64_t after, int64_t limit, struct arena *a, struct store_seat **out,
                    size_t *n) {
    if (!m) return ERR_LIMIT;
    struct sm_stripe *st = stripe_of(m, session_id);
    pthread_mutex_lock(&st->mu);
    struct sm_session *x = find(st, session_id);
    if (x) {
        int err = page_of(m, x, concert_id, after, limit, a, out, n);
        pthread_mutex_unlock(&st->mu);
        return err;
    }
    uint64_t gen = st->gen;
    pthread_mutex_unlock(&st->mu);

    struct sm_session *fresh;
    int err = load(m, c, session_id, &fresh);
    if (err) return err; /* ERR_NOT_FOUND: no such session; else the caller reads SQL */
    pthread_mutex_lock(&st->mu);
    if (st->gen != gen) { /* a commit reported while we read: design note 3 */
        pthread_mutex_unlock(&st->mu);
        discard(fresh);
        return ERR_LIMIT;
    }
    struct sm_session **link = &st->head;
    while (*link && (*link)->id != session_id) link = &(*link)->next;
    if (*link) { /* another thread loaded it meanwhile */
        struct sm_session *old = *link;
        *link = old->next;
        free_session(m, old);
    }
    fresh->next = st->head;
    st->head = fresh;
    atomic_fetch_add(&m->bytes, fresh->bytes);
    err = page_of(m, fresh, concert_id, after, limit, a, out, n);
    pthread_mutex_unlock(&st->mu);
    return err;
}

/* The seat with id in x, or NULL. */
static struct sm_seat *seat_by_id(struct sm_session *x, int64_t id) {
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t v = x->seats[x->ids_ascend ? mid : x->by_id[mid]].id;
        if (v == id) return &x->seats[x->ids_ascend ? mid : x->by_id[mid]];
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void sq_seatmap_flush(struct sq_seatmap *m) {
    if (!m) return;
    for (int i = 0; i < SM_STRIPES; i++) {
        struct sm_stripe *st = &m->stripe[i];
        pthread_mutex_lock(&st->mu);
        st->gen++; /* a load in flight may have read the old rows */
        for (struct sm_session *x = st->head, *next; x; x = next) {
            next = x->next;
            free_session(m, x);
        }
        st->head = NULL;
        pthread_mutex_unlock(&st->mu);
    }
}

void sq_seatmap_apply(struct sq_seatmap *m, const struct sq_seat_change *ch, size_t n) {
    if (!m) return;
    for (size_t i = 0; i < n; i++) {
        struct sm_stripe *st = stripe_of(m, ch[i].session_id);
        pthread_mutex_lock(&st->mu);
        st->gen++;
        struct sm_session *x = find(st, ch[i].session_id);
        struct sm_seat *s = x ? seat_by_id(x, ch[i].seat_id) : NULL;
        if (s) {
            s->avail = (uint8_t)ch[i].avail;
        } else if (x) { /* a seat the load did not see: drop the session, read it again */
            struct sm_session **link = &st->head;
            while (*link != x) link = &(*link)->next;
            *link = x->next;
            free_session(m, x);
        }
        pthread_mutex_unlock(&st->mu);
    }
}
