/* log.c -- level-gated log lines to stderr, text or JSON.
 *
 * Each line is formatted into a stack buffer and written with one write(2),
 * so concurrent threads never interleave inside a line. Lines longer than
 * LOG_LINE_MAX are cut. The access log line (log_access) is here too, so
 * it follows --log-format; what goes into it is http/'s business. */
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

/* "2026-11-21T12:00:00.123Z" */
static void format_now(char *when, size_t len) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* The start of a line up to the message: "{...,"module":"m"," (json) or
 * "when LEVEL [tN] module: " (text). Returns its length. */
static size_t line_head(char *line, size_t cap, int level, const char *module) {
    char when[64];
    format_now(when, sizeof(when));
    int n = log_format == LOG_FORMAT_JSON
                ? snprintf(line, cap, "{\"time\":\"%s\",\"level\":\"%s\",\"thread\":%ld,\"module\":\"%s\",",
                           when, level_names[level], thread_id(), module)
                : snprintf(line, cap, "%s %-5s [t%ld] %s: ", when, level_names[level], thread_id(),
                           module);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Ends the line (a newline, cut to fit) and writes it with one write(2). */
static void emit(char *line, size_t cap, size_t len) {
    if (len > cap - 2) len = cap - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_write(int level, const char *module, const char *fmt, ...) {
    if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR) return;
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t len = line_head(line, sizeof(line), level, module);
    if (log_format == LOG_FORMAT_JSON) {
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\"msg\":\"");
        len = json_escape(line, sizeof(line) - 3, len, msg);
        line[len++] = '"';
        line[len++] = '}';
    } else {
        len += (size_t)snprintf(line + len, sizeof(line) - len, "%s", msg);
    }
    emit(line, sizeof(line), len);
}

/* Appends "key":"value", JSON-escaped. */
static size_t json_field(char *line, size_t cap, size_t len, const char *key, const char *v) {
    len += (size_t)snprintf(line + len, cap - len, "\"%s\":\"", key);
    len = json_escape(line, cap - 3, len, v ? v : "");
    line[len++] = '"';
    line[len++] = ',';
    return len;
}

void log_access(const struct log_access *a) {
    char line[LOG_LINE_MAX];
    size_t len = line_head(line, sizeof(line), LOG_LEVEL_INFO, "access"), cap = sizeof(line) - 64;
    char user[32] = "";
    if (log_format == LOG_FORMAT_JSON) {
        len = json_field(line, cap, len, "request_id", a->request_id);
        len = json_field(line, cap, len, "method", a->method);
        len = json_field(line, cap, len, "route", a->route);
        if (a->user_id > 0) snprintf(user, sizeof(user), ",\"user_id\":%lld", (long long)a->user_id);
        len += (size_t)snprintf(line + len, sizeof(line) - len,
                                "\"status\":%d,\"latency_us\":%lld%s%s}", a->status,
                                (long long)a->latency_us, user, a->aborted ? ",\"aborted\":true" : "");
    } else {
        if (a->user_id > 0) snprintf(user, sizeof(user), " user_id=%lld", (long long)a->user_id);
        len += (size_t)snprintf(line + len, sizeof(line) - len,
                                "request_id=%s method=%s route=%s status=%d latency_us=%lld%s%s",
                                a->request_id, a->method, a->route, a->status,
                                (long long)a->latency_us, user, a->aborted ? " aborted=1" : "");
    }
    emit(line, sizeof(line), len < sizeof(line) ? len : sizeof(line) - 1);
}
