/* log.c -- level-gated log lines to stderr, text or JSON.
 *
 * Each line is formatted into a stack buffer and written with one write(2),
 * so concurrent threads never interleave inside a line. Lines longer than
 * LOG_LINE_MAX are cut. Not here: the access log format (http/). */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

int log_level = LOG_LEVEL_INFO;
static int log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(int level, int format) {
    log_level = level;
    log_format = format;
}

int log_level_parse(const char *name) {
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

static long thread_id(void) {
    static _Thread_local long tid;
    if (!tid) tid = (long)syscall(SYS_gettid);
    return tid;
}

/* Appends s to buf as the inside of a JSON string. */
static size_t json_escape(char *buf, size_t cap, size_t len, const char *s) {
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

void log_write(int level, const char *module, const char *fmt, ...) {
    if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR) return;
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    size_t len;
    if (log_format == LOG_FORMAT_JSON) {
        len = (size_t)snprintf(line, sizeof(line),
                               "{\"time\":\"%s\",\"level\":\"%s\",\"thread\":%ld,\"module\":\"%s\","
                               "\"msg\":\"",
                               when, level_names[level], thread_id(), module);
        len = json_escape(line, sizeof(line) - 3, len, msg);
        line[len++] = '"';
        line[len++] = '}';
    } else {
        int n = snprintf(line, sizeof(line) - 1, "%s %-5s [t%ld] %s: %s", when, level_names[level],
                         thread_id(), module, msg);
        len = n < 0 ? 0 : (size_t)n;
        if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
