/* event.c -- decodes an event layout file into struct store_event.
 *
 *   {"title": "...", "venue": "...",
 *    "sessions": ["2026-12-24T19:00:00+09:00", ...],
 *    "blocks": [{"grade": "VIP", "price": 165000, "from": 1, "to": 100}, ...]}
 *
 * Unknown fields are refused, so a typo ("price " or "form") fails loudly
 * instead of importing a wrong layout. */
#include "api/event.h"

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "store/store.h"

static const char *const event_keys[] = {"title", "venue", "sessions", "blocks", NULL};
static const char *const block_keys[] = {"grade", "price", "from", "to", NULL};

static int decode_sessions(json_t *arr, struct arena *a, struct store_event *ev, char *errbuf,
                           size_t errlen) {
    if (!json_is_array(arr)) {
        snprintf(errbuf, errlen, "field \"sessions\" must be an array of start times");
        return ERR_INVALID;
    }
    size_t n = json_array_size(arr);
    int64_t *starts = arena_calloc(a, n ? n : 1, sizeof(*starts));
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || time_parse_rfc3339(s, &starts[i])) {
            snprintf(errbuf, errlen,
                     "sessions[%zu] must be an RFC 3339 time like \"2026-12-24T19:00:00+09:00\"",
                     i);
            return ERR_INVALID;
        }
    }
    ev->starts_at_ms = starts;
    ev->nsessions = n;
    return 0;
}

static int decode_blocks(json_t *arr, struct arena *a, struct store_event *ev, char *errbuf,
                         size_t errlen) {
    if (!json_is_array(arr)) {
        snprintf(errbuf, errlen, "field \"blocks\" must be an array of seat blocks");
        return ERR_INVALID;
    }
    size_t n = json_array_size(arr);
    struct store_block *blocks = arena_calloc(a, n ? n : 1, sizeof(*blocks));
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(arr, i);
        char sub[200];
        const char *grade;
        if (!json_is_object(b)) {
            snprintf(errbuf, errlen, "blocks[%zu] must be an object", i);
            return ERR_INVALID;
        }
        if (jd_only_keys(b, block_keys, sub, sizeof(sub)) ||
            jd_str(b, "grade", 1, STORE_GRADE_MAX, &grade, sub, sizeof(sub)) ||
            jd_i64(b, "price", 1, 0, INT64_MAX, &blocks[i].price, sub, sizeof(sub)) ||
            jd_i64(b, "from", 1, 1, INT64_MAX, &blocks[i].first, sub, sizeof(sub)) ||
            jd_i64(b, "to", 1, 1, INT64_MAX, &blocks[i].last, sub, sizeof(sub))) {
            snprintf(errbuf, errlen, "blocks[%zu]: %s", i, sub);
            return ERR_INVALID;
        }
        blocks[i].grade = arena_strdup(a, grade);
    }
    ev->blocks = blocks;
    ev->nblocks = n;
    return 0;
}

int api_decode_event(const char *json, size_t len, struct arena *a, struct store_event *ev,
                     char *errbuf, size_t errlen) {
    json_t *root = jd_parse_object(json, len, errbuf, errlen);
    if (!root) return ERR_INVALID;
    memset(ev, 0, sizeof(*ev));
    const char *title, *venue;
    int rc = ERR_INVALID;
    if (jd_only_keys(root, event_keys, errbuf, errlen) ||
        jd_str(root, "title", 1, STORE_TITLE_MAX, &title, errbuf, errlen) ||
        jd_str(root, "venue", 1, STORE_TITLE_MAX, &venue, errbuf, errlen))
        goto out;
    json_t *sessions = json_object_get(root, "sessions"), *blocks = json_object_get(root, "blocks");
    if (!sessions || !blocks) {
        snprintf(errbuf, errlen, "field \"%s\" is required", sessions ? "blocks" : "sessions");
        goto out;
    }
    if (decode_sessions(sessions, a, ev, errbuf, errlen) ||
        decode_blocks(blocks, a, ev, errbuf, errlen))
        goto out;
    ev->title = arena_strdup(a, title);
    ev->venue = arena_strdup(a, venue);
    rc = 0;
out:
    json_decref(root);
    return rc;
}
