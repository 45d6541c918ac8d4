/* num.c -- strict integer and size parsing.
 *
 * Responsible for turning user-supplied text (flags, env vars, path segments,
 * JSON strings) into int64 values, refusing anything that is not exactly a
 * decimal number: no '+', no whitespace, no trailing junk, no silent
 * wrap-around. Not here: range checks against option bounds (config.c) or
 * field names in error messages (json.c). */
#include "core/num.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

int num_parse_i64n(const char *s, size_t len, int allow_negative, int64_t *out) {
    if (!s || len == 0) return ERR_INVALID;
    size_t i = 0;
    int neg = s[0] == '-';
    if (neg) {
        if (!allow_negative || len == 1) return ERR_INVALID;
        i = 1;
    }
    /* Accumulate the magnitude unsigned; INT64_MIN's magnitude is INT64_MAX + 1. */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return ERR_INVALID;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (limit - d) / 10) return ERR_INVALID;
        v = v * 10 + d;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

int num_parse_i64(const char *s, int allow_negative, int64_t *out) {
    if (!s) return ERR_INVALID;
    return num_parse_i64n(s, strlen(s), allow_negative, out);
}

/* Multiplier for a size suffix, or 0 when the suffix is not recognised. */
static int64_t size_unit(const char *suffix) {
    static const struct {
        const char *name;
        int64_t mult;
    } units[] = {
        {"", 1},
        {"k", INT64_C(1) << 10},
        {"kb", INT64_C(1) << 10},
        {"kib", INT64_C(1) << 10},
        {"m", INT64_C(1) << 20},
        {"mb", INT64_C(1) << 20},
        {"mib", INT64_C(1) << 20},
        {"g", INT64_C(1) << 30},
        {"gb", INT64_C(1) << 30},
        {"gib", INT64_C(1) << 30},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(suffix, units[i].name) == 0) return units[i].mult;
    return 0;
}

int num_parse_size(const char *s, int64_t *out) {
    if (!s) return ERR_INVALID;
    size_t ndigits = strspn(s, "0123456789");
    int64_t v, mult = size_unit(s + ndigits);
    if (mult == 0 || num_parse_i64n(s, ndigits, 0, &v) != 0) return ERR_INVALID;
    if (v > INT64_MAX / mult) return ERR_INVALID;
    *out = v * mult;
    return 0;
}
