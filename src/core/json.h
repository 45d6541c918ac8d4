/* json.h -- JSON helpers: a fast writer into an arena, and strict decoding
 * helpers on top of jansson.
 *
 * Responses are written with jw_* straight into an arena buffer (no DOM, no
 * malloc per value): the seat page writes 100 objects in a few µs. Requests
 * are decoded with jansson and checked with jd_*: every helper names the
 * offending field in errbuf so api/ can answer a 400 that says what was wrong.
 * Not here: HTTP status mapping (api/), domain validation (service/). */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct arena;

#define JW_MAX_DEPTH 32

struct jw {
    struct arena *arena;
    char *buf;
    size_t len, cap;
    int depth;
    unsigned char need_comma[JW_MAX_DEPTH]; /* per nesting level */
};

void jw_init(struct jw *w, struct arena *a, size_t cap_hint);
void jw_obj_begin(struct jw *w);
void jw_obj_end(struct jw *w);
void jw_arr_begin(struct jw *w);
void jw_arr_end(struct jw *w);
void jw_key(struct jw *w, const char *key); /* key must be plain ASCII, not escaped */
void jw_str(struct jw *w, const char *s);   /* escapes per RFC 8259; NULL writes null */
void jw_strn(struct jw *w, const char *s, size_t n);
void jw_i64(struct jw *w, int64_t v);
void jw_bool(struct jw *w, int v);
void jw_null(struct jw *w);
void jw_time(struct jw *w, int64_t epoch_ms); /* RFC 3339 string, or null when epoch_ms <= 0 */
/* Shorthands for "key": value inside an object. */
void jw_kv_str(struct jw *w, const char *key, const char *s);
void jw_kv_i64(struct jw *w, const char *key, int64_t v);
/* NUL-terminates and returns the buffer (owned by the arena); *len gets its length. */
char *jw_finish(struct jw *w, size_t *len);

/* Decoding. Limits apply to every request body. */
#define JD_MAX_DEPTH 16
#define JD_MAX_STRING 4096

/* Parses body (len bytes, need not be NUL-terminated) as one JSON object.
 * Rejects non-objects, invalid UTF-8, NUL bytes, duplicate keys, nesting deeper
 * than JD_MAX_DEPTH, strings longer than JD_MAX_STRING. Returns a new
 * reference the caller json_decref()s, or NULL with errbuf set. */
json_t *jd_parse_object(const char *body, size_t len, char *errbuf, size_t errlen);

/* Fails (ERR_INVALID, errbuf names the field) when obj has a key not in the
 * NULL-terminated list allowed. */
int jd_only_keys(json_t *obj, const char *const *allowed, char *errbuf, size_t errlen);

/* Integer field. required=0: returns 1 and leaves *out alone when absent.
 * Accepts only JSON integers (not reals, not strings) within [min, max].
 * Returns 0 when set, 1 when absent and optional, ERR_INVALID otherwise. */
int jd_i64(json_t *obj, const char *key, int required, int64_t min, int64_t max, int64_t *out,
           char *errbuf, size_t errlen);

/* Like jd_i64 but also accepts a decimal string ("42"), as user ids arrive
 * both ways from the reference clients. */
int jd_i64_or_str(json_t *obj, const char *key, int required, int64_t min, int64_t max,
                  int64_t *out, char *errbuf, size_t errlen);

/* String field of 1..max_len bytes. *out points into obj (valid while obj lives).
 * Returns 0 when set, 1 when absent and optional, ERR_INVALID otherwise. */
int jd_str(json_t *obj, const char *key, int required, size_t max_len, const char **out,
           char *errbuf, size_t errlen);
