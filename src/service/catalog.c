/* catalog.c -- catalog reading and loading rules (see catalog.h).
 *
 * The seat page asks the store for one seat more than the page holds: if it
 * comes back there is a next page, and the cursor is the number of the last
 * seat shown. Cursors are seat numbers, so a page is one index range scan
 * however deep into the session it starts (keyset pagination, no OFFSET).
 * The classic API's numbered pages do use an offset (page x size); their
 * page number is bounded so that the offset never passes the most seats a
 * session can have. */
#include "service/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"

int catalog_seat_page(struct store *s, struct arena *a, int64_t cid, int64_t sid, int64_t after,
                      int64_t limit, struct catalog_seat_page *out) {
    if (limit < 1 || limit > CATALOG_PAGE_MAX || after < 0) return ERR_INVALID;
    int rc = s->ops->list_available_seats(s, a, cid, sid, after, limit + 1, &out->seats, &out->n);
    if (rc) return rc;
    out->next_cursor = 0;
    if (out->n > (size_t)limit) {
        out->n = (size_t)limit;
        out->next_cursor = out->seats[out->n - 1].number;
    }
    return 0;
}

int catalog_seat_numbered_page(struct store *s, struct arena *a, int64_t sid, int64_t page,
                               int64_t size, struct catalog_seat_page *out) {
    if (size < 1 || size > CATALOG_PAGE_MAX || page < 0 || page > CATALOG_PAGE_INDEX_MAX)
        return ERR_INVALID;
    out->next_cursor = 0;
    return s->ops->list_available_seats_at(s, a, sid, page * size, size, &out->seats, &out->n);
}

static int cmp_block(const void *x, const void *y) {
    const struct store_block *a = x, *b = y;
    return (a->first > b->first) - (a->first < b->first);
}

static int check_text(const char *what, const char *s, size_t max, char *errbuf, size_t errlen) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) {
        snprintf(errbuf, errlen, "%s must be 1 to %zu bytes", what, max);
        return ERR_INVALID;
    }
    return 0;
}

int catalog_check_event(const struct store_event *ev, char *errbuf, size_t errlen) {
    if (check_text("title", ev->title, STORE_TITLE_MAX, errbuf, errlen) ||
        check_text("venue", ev->venue, STORE_TITLE_MAX, errbuf, errlen))
        return ERR_INVALID;
    if (ev->nsessions < 1 || ev->nsessions > CATALOG_MAX_SESSIONS) {
        snprintf(errbuf, errlen, "sessions must list 1 to %d start times", CATALOG_MAX_SESSIONS);
        return ERR_INVALID;
    }
    if (ev->nblocks < 1) {
        snprintf(errbuf, errlen, "blocks must list at least one block of seats");
        return ERR_INVALID;
    }
    int64_t total = 0;
    for (size_t i = 0; i < ev->nblocks; i++) {
        const struct store_block *b = &ev->blocks[i];
        if (check_text("grade", b->grade, STORE_GRADE_MAX, errbuf, errlen)) return ERR_INVALID;
        if (b->price < 0) {
            snprintf(errbuf, errlen, "block %zu: price must be >= 0", i + 1);
            return ERR_INVALID;
        }
        if (b->first < 1 || b->last < b->first || b->last > CATALOG_MAX_SEATS_PER_SESSION) {
            snprintf(errbuf, errlen, "block %zu: need 1 <= from <= to <= %d", i + 1,
                     CATALOG_MAX_SEATS_PER_SESSION);
            return ERR_INVALID;
        }
        total += b->last - b->first + 1;
    }
    if (total > CATALOG_MAX_SEATS_PER_SESSION) {
        snprintf(errbuf, errlen, "a session may have at most %d seats",
                 CATALOG_MAX_SEATS_PER_SESSION);
        return ERR_INVALID;
    }
    struct store_block *sorted = malloc(ev->nblocks * sizeof(*sorted));
    if (!sorted) return ERR_NOMEM;
    memcpy(sorted, ev->blocks, ev->nblocks * sizeof(*sorted));
    qsort(sorted, ev->nblocks, sizeof(*sorted), cmp_block);
    int rc = 0;
    for (size_t i = 1; i < ev->nblocks && !rc; i++) {
        if (sorted[i].first <= sorted[i - 1].last) {
            snprintf(errbuf, errlen, "blocks overlap: seats %lld-%lld and %lld-%lld",
                     (long long)sorted[i - 1].first, (long long)sorted[i - 1].last,
                     (long long)sorted[i].first, (long long)sorted[i].last);
            rc = ERR_INVALID;
        }
    }
    free(sorted);
    return rc;
}
