/* catalog.h -- rules for reading and loading the catalog: concerts, sessions,
 * seats. Paging bounds, the seat page's next cursor, and the validation of an
 * event layout before it is imported.
 *
 * No I/O of its own: it calls the store port it is given. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define CATALOG_PAGE_DEFAULT 100
#define CATALOG_PAGE_MAX 1000
#define CATALOG_MAX_SEATS_PER_SESSION 100000
#define CATALOG_MAX_SESSIONS 1000

struct catalog_seat_page {
    struct store_seat *seats;
    size_t n;
    int64_t next_cursor; /* seat number to pass as `after` for the next page; 0 = no more
                            (numbered pages: 0 always) */
};

/* One page of the available seats of session sid of concert cid, seat
 * numbers > after, at most limit (1..CATALOG_PAGE_MAX). ERR_NOT_FOUND when
 * the session is not the concert's. */
int catalog_seat_page(struct store *s, struct arena *a, int64_t cid, int64_t sid, int64_t after,
                      int64_t limit, struct catalog_seat_page *out);

/* Numbered pages (the classic API): page (0-based) of size (1..
 * CATALOG_PAGE_MAX) available seats of session sid, whichever its concert.
 * page is 0..CATALOG_PAGE_INDEX_MAX: a session has at most
 * CATALOG_MAX_SEATS_PER_SESSION seats, so no later page can hold any, and
 * the offset the store steps over stays bounded. A page past the last seat
 * is empty. ERR_NOT_FOUND for an unknown session, ERR_INVALID out of
 * bounds. */
#define CATALOG_PAGE_INDEX_MAX CATALOG_MAX_SEATS_PER_SESSION
int catalog_seat_numbered_page(struct store *s, struct arena *a, int64_t sid, int64_t page,
                               int64_t size, struct catalog_seat_page *out);

/* Checks an event before import: title and venue 1..STORE_TITLE_MAX bytes, at
 * least one session, grades 1..STORE_GRADE_MAX bytes, prices >= 0, seat
 * blocks with 1 <= from <= to, not overlapping, at most
 * CATALOG_MAX_SEATS_PER_SESSION seats. ERR_INVALID with errbuf saying what
 * is wrong. */
int catalog_check_event(const struct store_event *ev, char *errbuf, size_t errlen);
