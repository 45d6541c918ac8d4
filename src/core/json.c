/* json.c -- the arena-backed JSON writer (jw_*) and strict request decoding
 * on top of jansson (jd_*).
 *
 * Responsible for producing well-formed JSON for responses and for refusing
 * request bodies that are malformed, oversized or of the wrong shape, with a
 * message that names the offending field. Not here: HTTP status mapping
 * (api/), domain rules (service/).
 *
 * Design notes (invariants):
 *   1. w->buf always has room for the NUL jw_finish() appends: len < cap.
 *   2. need_comma[d] holds the state of nesting level d: whether a value was
 *      already written (a comma is due), whether a key is waiting for its
 *      value, and whether the level is an array.
 *   3. jd_parse_object() never hands jansson a body nested deeper than
 *      JD_MAX_DEPTH: jansson's parser recurses, so the depth is checked on
 *      the raw bytes first. */
#include "core/json.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/num.h"
#include "core/timeutil.h"

/* Bits of need_comma[d]. */
enum {
    JW_COMMA = 1,     /* a value was written at this level: the next needs a comma */
    JW_AFTER_KEY = 2, /* a key was written: its value follows without a comma */
    JW_ARRAY = 4,     /* this level is an array, not an object */
};

/* ---- writer ---------------------------------------------------------- */

void jw_init(struct jw *w, struct arena *a, size_t cap_hint) {
    w->arena = a;
    w->cap = cap_hint > 16 ? cap_hint : 256;
    w->buf = arena_alloc(a, w->cap);
    w->len = 0;
    w->depth = 0;
    memset(w->need_comma, 0, sizeof(w->need_comma));
}

/* Makes room for n more bytes plus the final NUL, doubling the buffer. */
static void reserve(struct jw *w, size_t n) {
    if (w->len + n < w->cap) return;
    size_t cap = w->cap;
    while (w->len + n >= cap) cap *= 2;
    char *buf = arena_alloc(w->arena, cap);
    memcpy(buf, w->buf, w->len);
    w->buf = buf;
    w->cap = cap;
}

static void put(struct jw *w, const char *s, size_t n) {
    reserve(w, n);
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void put_char(struct jw *w, char c) {
    reserve(w, 1);
    w->buf[w->len++] = c;
}

/* Writes the comma a value needs and marks the level as having a value. */
static void value_prefix(struct jw *w) {
    unsigned char *st = &w->need_comma[w->depth];
    /* Inside an object a value must follow a key; the top level holds one value. */
    assert(w->depth == 0 ? !(*st & JW_COMMA) : (*st & JW_ARRAY) || (*st & JW_AFTER_KEY));
    if ((*st & JW_COMMA) && !(*st & JW_AFTER_KEY)) put_char(w, ',');
    *st = (unsigned char)((*st & JW_ARRAY) | JW_COMMA);
}

static void begin_level(struct jw *w, char c, unsigned char kind) {
    value_prefix(w);
    assert(w->depth + 1 < JW_MAX_DEPTH);
    put_char(w, c);
    w->depth++;
    w->need_comma[w->depth] = kind;
}

static void end_level(struct jw *w, char c, unsigned char kind) {
    (void)kind; /* only checked by the asserts */
    assert(w->depth > 0);
    assert((w->need_comma[w->depth] & JW_ARRAY) == kind);
    assert(!(w->need_comma[w->depth] & JW_AFTER_KEY)); /* a key without a value */
    w->depth--;
    put_char(w, c);
}

void jw_obj_begin(struct jw *w) {
    begin_level(w, '{', 0);
}
void jw_obj_end(struct jw *w) {
    end_level(w, '}', 0);
}
void jw_arr_begin(struct jw *w) {
    begin_level(w, '[', JW_ARRAY);
}
void jw_arr_end(struct jw *w) {
    end_level(w, ']', JW_ARRAY);
}

void jw_key(struct jw *w, const char *key) {
    unsigned char *st = &w->need_comma[w->depth];
    assert(w->depth > 0 && !(*st & JW_ARRAY) && !(*st & JW_AFTER_KEY));
    if (*st & JW_COMMA) put_char(w, ',');
    size_t n = strlen(key);
    assert(strcspn(key, "\"\\") == n); /* keys are written unescaped */
    reserve(w, n + 3);
    w->buf[w->len++] = '"';
    memcpy(w->buf + w->len, key, n);
    w->len += n;
    w->buf[w->len++] = '"';
    w->buf[w->len++] = ':';
    *st = JW_COMMA | JW_AFTER_KEY;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
 * bytes there are not valid UTF-8 (bad lead, truncated, overlong, surrogate,
 * above U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* Writes one byte that needs escaping: a quote, backslash or control char. */
static void put_escape(struct jw *w, unsigned char c) {
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    switch (c) {
    case '"': e[1] = '"'; break;
    case '\\': e[1] = '\\'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    default:
        memcpy(e + 1, "u00", 3);
        e[4] = hex[c >> 4];
        e[5] = hex[c & 0xF];
        put(w, e, 6);
        return;
    }
    put(w, e, 2);
}

/* Writes s[0..n) as the inside of a JSON string. Runs of plain bytes are
 * copied at once; invalid UTF-8 becomes U+FFFD so the output stays valid. */
static void put_escaped(struct jw *w, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') run++;
        put(w, (const char *)s + i, run - i);
        i = run;
        if (i == n) break;
        if (s[i] < 0x80) {
            put_escape(w, s[i]);
            i++;
            continue;
        }
        size_t len = utf8_seq_len(s + i, n - i);
        if (len) {
            put(w, (const char *)s + i, len);
            i += len;
        } else {
            put(w, "\\ufffd", 6);
            i++;
        }
    }
}

void jw_strn(struct jw *w, const char *s, size_t n) {
    value_prefix(w);
    put_char(w, '"');
    put_escaped(w, (const unsigned char *)s, n);
    put_char(w, '"');
}

void jw_str(struct jw *w, const char *s) {
    if (!s) {
        jw_null(w);
        return;
    }
    jw_strn(w, s, strlen(s));
}

void jw_i64(struct jw *w, int64_t v) {
    char tmp[24];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    value_prefix(w);
    put(w, tmp + i, sizeof(tmp) - i);
}

void jw_bool(struct jw *w, int v) {
    value_prefix(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

void jw_null(struct jw *w) {
    value_prefix(w);
    put(w, "null", 4);
}

void jw_time(struct jw *w, int64_t epoch_ms) {
    if (epoch_ms <= 0) {
        jw_null(w);
        return;
    }
    char buf[32];
    size_t n = time_format_rfc3339(epoch_ms, buf, sizeof(buf));
    jw_strn(w, buf, n);
}

void jw_kv_str(struct jw *w, const char *key, const char *s) {
    jw_key(w, key);
    jw_str(w, s);
}

void jw_kv_i64(struct jw *w, const char *key, int64_t v) {
    jw_key(w, key);
    jw_i64(w, v);
}

char *jw_finish(struct jw *w, size_t *len) {
    assert(w->depth == 0);
    reserve(w, 0);
    w->buf[w->len] = '\0';
    if (len) *len = w->len;
    return w->buf;
}

/* ---- decoding -------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static void set_err(char *errbuf, size_t errlen,
                                                          const char *fmt, ...) {
    if (!errbuf || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Deepest nesting of [ and { in the raw bytes, ignoring brackets inside
 * strings. Stops counting once limit is exceeded. */
static int raw_depth(const char *body, size_t len, int limit) {
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < len && max <= limit; i++) {
        char c = body[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max) max = depth;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return max;
}

/* Fails when any string value or object key in v is longer than JD_MAX_STRING. */
static int check_strings(json_t *v, const char *field, char *errbuf, size_t errlen) {
    const char *key;
    json_t *child;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (json_string_length(v) <= JD_MAX_STRING) return 0;
        set_err(errbuf, errlen, "field \"%.64s\" is longer than %d bytes", field, JD_MAX_STRING);
        return ERR_INVALID;
    case JSON_OBJECT:
        json_object_foreach(v, key, child) {
            if (strlen(key) > JD_MAX_STRING) {
                set_err(errbuf, errlen, "a field name is longer than %d bytes", JD_MAX_STRING);
                return ERR_INVALID;
            }
            if (check_strings(child, key, errbuf, errlen) != 0) return ERR_INVALID;
        }
        return 0;
    case JSON_ARRAY:
        json_array_foreach(v, i, child) {
            if (check_strings(child, field, errbuf, errlen) != 0) return ERR_INVALID;
        }
        return 0;
    default: return 0;
    }
}

/* Checks the raw bytes before jansson sees them: emptiness, NUL bytes, depth. */
static int precheck(const char *body, size_t len, char *errbuf, size_t errlen) {
    if (len == 0) {
        set_err(errbuf, errlen, "body is empty: expected a JSON object");
        return ERR_INVALID;
    }
    if (memchr(body, '\0', len)) {
        set_err(errbuf, errlen, "body contains a NUL byte");
        return ERR_INVALID;
    }
    if (raw_depth(body, len, JD_MAX_DEPTH) > JD_MAX_DEPTH) {
        set_err(errbuf, errlen, "body is nested deeper than %d levels", JD_MAX_DEPTH);
        return ERR_INVALID;
    }
    return 0;
}

json_t *jd_parse_object(const char *body, size_t len, char *errbuf, size_t errlen) {
    if (precheck(body, len, errbuf, errlen) != 0) return NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        /* jansson's own text for this one names a flag, not the problem. */
        const char *text = json_error_code(&jerr) == json_error_null_character
                               ? "\\u0000 is not allowed in strings"
                               : jerr.text;
        set_err(errbuf, errlen, "body is not valid JSON: %s at line %d column %d", text, jerr.line,
                jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        set_err(errbuf, errlen, "body must be a JSON object");
        json_decref(root);
        return NULL;
    }
    if (check_strings(root, "", errbuf, errlen) != 0) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int jd_only_keys(json_t *obj, const char *const *allowed, char *errbuf, size_t errlen) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0) a++;
        if (!*a) {
            set_err(errbuf, errlen, "unknown field \"%.64s\"", key);
            return ERR_INVALID;
        }
    }
    return 0;
}

/* Looks up key: 0 and *v when present, 1 when absent and optional,
 * ERR_INVALID when absent and required. */
static int lookup(json_t *obj, const char *key, int required, json_t **v, char *errbuf,
                  size_t errlen) {
    *v = json_object_get(obj, key);
    if (*v) return 0;
    if (!required) return 1;
    set_err(errbuf, errlen, "field \"%s\" is required", key);
    return ERR_INVALID;
}

static int check_range(const char *key, int64_t v, int64_t min, int64_t max, int64_t *out,
                       char *errbuf, size_t errlen) {
    if (v < min || v > max) {
        set_err(errbuf, errlen, "field \"%s\" must be between %lld and %lld", key, (long long)min,
                (long long)max);
        return ERR_INVALID;
    }
    *out = v;
    return 0;
}

int jd_i64(json_t *obj, const char *key, int required, int64_t min, int64_t max, int64_t *out,
           char *errbuf, size_t errlen) {
    json_t *v;
    int rc = lookup(obj, key, required, &v, errbuf, errlen);
    if (rc != 0) return rc;
    if (!json_is_integer(v)) {
        set_err(errbuf, errlen, "field \"%s\" must be an integer", key);
        return ERR_INVALID;
    }
    return check_range(key, (int64_t)json_integer_value(v), min, max, out, errbuf, errlen);
}

int jd_i64_or_str(json_t *obj, const char *key, int required, int64_t min, int64_t max,
                  int64_t *out, char *errbuf, size_t errlen) {
    json_t *v;
    int rc = lookup(obj, key, required, &v, errbuf, errlen);
    if (rc != 0) return rc;
    int64_t n;
    if (json_is_integer(v)) {
        n = (int64_t)json_integer_value(v);
    } else if (!json_is_string(v) ||
               num_parse_i64n(json_string_value(v), json_string_length(v), 1, &n) != 0) {
        set_err(errbuf, errlen, "field \"%s\" must be an integer or a string of digits", key);
        return ERR_INVALID;
    }
    return check_range(key, n, min, max, out, errbuf, errlen);
}

int jd_str(json_t *obj, const char *key, int required, size_t max_len, const char **out,
           char *errbuf, size_t errlen) {
    json_t *v;
    int rc = lookup(obj, key, required, &v, errbuf, errlen);
    if (rc != 0) return rc;
    if (!json_is_string(v)) {
        set_err(errbuf, errlen, "field \"%s\" must be a string", key);
        return ERR_INVALID;
    }
    size_t n = json_string_length(v);
    if (n == 0) {
        set_err(errbuf, errlen, "field \"%s\" must not be empty", key);
        return ERR_INVALID;
    }
    if (n > max_len) {
        set_err(errbuf, errlen, "field \"%s\" must be at most %zu bytes", key, max_len);
        return ERR_INVALID;
    }
    *out = json_string_value(v);
    return 0;
}
