/* timeutil.c -- clocks, RFC 3339 timestamps and durations.
 *
 * Responsible for reading the clocks and for converting between int64
 * milliseconds and the two textual forms users see: RFC 3339 timestamps
 * (API fields) and durations (config values such as "30s"). Parsing is
 * strict: anything that is not exactly one of the documented forms is
 * ERR_INVALID, never a best guess. Not here: time zones other than fixed
 * offsets, sub-second output precision. */
#include "core/timeutil.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/num.h"

static int64_t clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_ms(void) {
    return clock_ms(CLOCK_REALTIME);
}

int64_t time_mono_ms(void) {
    return clock_ms(CLOCK_MONOTONIC);
}

void time_mono_deadline(int64_t after_ms, struct timespec *out) {
    clock_gettime(CLOCK_MONOTONIC, out);
    int64_t ns = out->tv_nsec + (after_ms % 1000) * 1000000;
    out->tv_sec += (time_t)(after_ms / 1000 + ns / 1000000000);
    out->tv_nsec = (long)(ns % 1000000000);
}

int64_t time_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Days since 1970-01-01 to a proleptic Gregorian date: eras of 400 years
 * (146097 days), counted from March so the leap day ends a year. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static void put2(char *p, int v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* Formats by hand: this runs for every timestamp of every listing, and
 * snprintf + gmtime_r were 17 % of the sessions route under load. */
size_t time_format_rfc3339(int64_t epoch_ms, char *buf, size_t len) {
    assert(len >= 21);
    (void)len; /* the assert is all it is for */
    /* Floor division, so 1969-12-31T23:59:59.500Z formats as ...:59Z. */
    int64_t sec = epoch_ms / 1000 - (epoch_ms % 1000 < 0);
    int64_t days = sec / 86400 - (sec % 86400 < 0);
    int64_t sod = sec - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999) {
        buf[0] = '\0';
        return 0;
    }
    int yy = (int)y;
    put2(buf, yy / 100);
    put2(buf + 2, yy % 100);
    buf[4] = '-';
    put2(buf + 5, m);
    buf[7] = '-';
    put2(buf + 8, d);
    buf[10] = 'T';
    put2(buf + 11, (int)(sod / 3600));
    buf[13] = ':';
    put2(buf + 14, (int)(sod / 60 % 60));
    buf[16] = ':';
    put2(buf + 17, (int)(sod % 60));
    buf[19] = 'Z';
    buf[20] = '\0';
    return 20;
}

/* Reads exactly n digits at *p, advancing it. Returns the value or -1. */
static int take_digits(const char **p, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    return v;
}

/* Consumes the expected separator character, or returns 0. */
static int take_char(const char **p, char c) {
    if (**p != c) return 0;
    (*p)++;
    return 1;
}

static int days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* Parses "Z" or "+HH:MM" / "-HH:MM" into seconds east of UTC. */
static int parse_zone(const char **p, int *offset_sec) {
    if (take_char(p, 'Z')) {
        *offset_sec = 0;
        return 0;
    }
    int sign = **p == '+' ? 1 : **p == '-' ? -1 : 0;
    if (!sign) return ERR_INVALID;
    (*p)++;
    int hh = take_digits(p, 2);
    if (hh < 0 || hh > 23 || !take_char(p, ':')) return ERR_INVALID;
    int mm = take_digits(p, 2);
    if (mm < 0 || mm > 59) return ERR_INVALID;
    *offset_sec = sign * (hh * 3600 + mm * 60);
    return 0;
}

/* Parses "YYYY-MM-DDTHH:MM:SS" into tm, checking every field's range. */
static int parse_datetime(const char **p, struct tm *tm) {
    int y = take_digits(p, 4);
    if (y < 0 || !take_char(p, '-')) return ERR_INVALID;
    int mo = take_digits(p, 2);
    if (mo < 1 || mo > 12 || !take_char(p, '-')) return ERR_INVALID;
    int d = take_digits(p, 2);
    if (d < 1 || d > days_in_month(y, mo) || !take_char(p, 'T')) return ERR_INVALID;
    int h = take_digits(p, 2);
    if (h < 0 || h > 23 || !take_char(p, ':')) return ERR_INVALID;
    int mi = take_digits(p, 2);
    if (mi < 0 || mi > 59 || !take_char(p, ':')) return ERR_INVALID;
    int s = take_digits(p, 2);
    if (s < 0 || s > 59) return ERR_INVALID;
    memset(tm, 0, sizeof(*tm));
    tm->tm_year = y - 1900;
    tm->tm_mon = mo - 1;
    tm->tm_mday = d;
    tm->tm_hour = h;
    tm->tm_min = mi;
    tm->tm_sec = s;
    return 0;
}

int time_parse_rfc3339(const char *s, int64_t *epoch_ms) {
    if (!s) return ERR_INVALID;
    const char *p = s;
    struct tm tm;
    int offset;
    if (parse_datetime(&p, &tm) != 0) return ERR_INVALID;
    if (take_char(&p, '.')) {
        size_t n = strspn(p, "0123456789");
        if (n == 0) return ERR_INVALID;
        p += n;
    }
    if (parse_zone(&p, &offset) != 0 || *p != '\0') return ERR_INVALID;
    time_t t = timegm(&tm);
    *epoch_ms = ((int64_t)t - offset) * 1000;
    return 0;
}

/* Milliseconds per unit for a duration suffix, or 0 when unknown. */
static int64_t duration_unit(const char *suffix) {
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {
        {"", 1000},       {"s", 1000},        {"ms", 1},
        {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(suffix, units[i].name) == 0) return units[i].ms;
    return 0;
}

int time_parse_duration(const char *s, int64_t *ms) {
    if (!s) return ERR_INVALID;
    size_t ndigits = strspn(s, "0123456789");
    int64_t v, mult = duration_unit(s + ndigits);
    if (mult == 0 || num_parse_i64n(s, ndigits, 0, &v) != 0) return ERR_INVALID;
    if (v > INT64_MAX / mult) return ERR_INVALID;
    *ms = v * mult;
    return 0;
}
