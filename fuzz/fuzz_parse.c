/* fuzz_parse.c -- the small parsers user input reaches: durations, RFC 3339
 * times, strict integers, the config table (argv from the input, NUL
 * separated), JSON objects and their typed fields. None may crash, and
 * what they accept must be in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/json.h"
#include "core/num.h"
#include "core/timeutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_strings(const char *s) {
    int64_t v;
    if (time_parse_duration(s, &v) == 0 && v < 0) abort();
    if (time_parse_rfc3339(s, &v) == 0) {
        char buf[32];
        time_format_rfc3339(v, buf, sizeof(buf));
    }
    num_parse_i64(s, 0, &v);
    num_parse_i64(s, 1, &v);
}

static void parse_argv(char *s, size_t n) {
    char *argv[16] = {"concertd"};
    int argc = 1;
    for (size_t i = 0; i < n && argc < 15;) {
        argv[argc++] = s + i;
        i += strlen(s + i) + 1;
    }
    struct config c;
    char err[256];
    config_load(&c, argc, argv, err, sizeof(err));
}

static void parse_json(const char *s, size_t n) {
    char err[256];
    json_t *o = jd_parse_object(s, n, err, sizeof(err));
    if (!o) return;
    static const char *const keys[] = {"userId", "amount", "seatIds", "reservationId", NULL};
    jd_only_keys(o, keys, err, sizeof(err));
    int64_t v;
    const char *str;
    if (jd_i64(o, "amount", 0, 1, 1000, &v, err, sizeof(err)) == 0 && (v < 1 || v > 1000))
        abort();
    if (jd_i64_or_str(o, "userId", 0, 1, INT64_MAX, &v, err, sizeof(err)) == 0 && v < 1) abort();
    jd_str(o, "method", 0, 16, &str, err, sizeof(err));
    json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    parse_strings(s);
    parse_json(s, size);
    parse_argv(s, size);
    free(s);
    return 0;
}
