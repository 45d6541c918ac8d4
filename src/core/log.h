/* log.h -- level-gated logging.
 *
 * LOG_INFO("http", "listening addr=%s workers=%d", addr, n) writes one line
 *   2026-11-21T12:00:00.123Z INFO  [t3] http: listening addr=0.0.0.0:8080 workers=8
 * to stderr (text format) or one JSON object per line (json format). The
 * macros do not evaluate their arguments when the level is off. Lines are
 * written with a single write(2), so threads never interleave within a line.
 * Callers never log tokens or admin keys. */
#pragma once
#include <stdint.h>

enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
    LOG_LEVEL_OFF
};
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

extern int log_level; /* read by the macros; set with log_init() */

void log_init(int level, int format);
int log_level_parse(const char *name); /* "debug".."error"/"off"; -1 if unknown */
void log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One request, for the access log. Strings are written as given (JSON-
 * escaped in the json format): callers pass no secrets, and request ids are
 * validated by http/ before they get here. */
struct log_access {
    const char *request_id, *method, *route; /* route: the template, never the raw path */
    int status;
    int64_t latency_us;
    int64_t user_id; /* 0 = not known */
    int aborted;     /* the connection went before the whole answer was sent */
};

/* Writes one access line at info level, module "access":
 *   2026-11-21T12:00:00.123Z INFO  [t3] access: request_id=9f.. method=GET
 *     route=/api/v1/concerts status=200 latency_us=212 user_id=42
 * or in the json format one object with those fields as keys (user_id
 * absent when not known). The caller checks log_level first. */
void log_access(const struct log_access *a);

/* From start to stop, access lines are buffered per thread and written out
 * by a flusher thread at most 100 ms later (see log.c); stop flushes
 * everything: call it once no thread writes access lines any more (main.c:
 * after http_stop). Without start, each line is written at once. start
 * returns 0, or -1 when the thread cannot start (lines are then written at
 * once). */
int log_access_buffer_start(void);
void log_access_buffer_stop(void);

#define LOG_AT(lvl, mod, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) >= log_level) log_write((lvl), (mod), __VA_ARGS__);                              \
    } while (0)
#define LOG_DEBUG(mod, ...) LOG_AT(LOG_LEVEL_DEBUG, mod, __VA_ARGS__)
#define LOG_INFO(mod, ...) LOG_AT(LOG_LEVEL_INFO, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...) LOG_AT(LOG_LEVEL_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(mod, ...) LOG_AT(LOG_LEVEL_ERROR, mod, __VA_ARGS__)
