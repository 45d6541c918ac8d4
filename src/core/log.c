/* log.c -- level-gated log lines to stderr, text or JSON.
 *
 * Each line is formatted into a stack buffer and written with one write(2),
 * so concurrent threads never interleave inside a line. Lines longer than
 * LOG_LINE_MAX are cut. The access log line (log_access) is here too, so
 * it follows --log-format; what goes into it is http/'s business.
 *
 * Access lines are many (one per request) and a write(2) each would cost a
 * good part of a fast request. Between log_access_buffer_start() and
 * log_access_buffer_stop() they go into a buffer of the calling thread
 * instead (its own lock, never contended but by the flusher), written out
 * whole lines at a time when full and by a flusher thread every
 * ACCESS_FLUSH_MS. So an access line reaches the log at most that late,
 * and a process killed with SIGKILL loses at most that much of them. Other
 * lines are never buffered. */
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048
#define ACCESS_BUF (16 * 1024) /* per thread */
#define ACCESS_FLUSH_MS 100

#include "core/xmalloc.h"

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

/* "2026-11-21T12:00:00.123Z" into when (at least 25 bytes). The part up
 * to the second is made once a second per thread. */
static void format_now(char *when) {
    static _Thread_local time_t sec = -1;
    static _Thread_local char upto_sec[80]; /* "2026-11-21T12:00:00" */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(upto_sec, sizeof(upto_sec), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        sec = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    memcpy(when, upto_sec, 19);
    when[19] = '.';
    when[20] = (char)('0' + ms / 100);
    when[21] = (char)('0' + ms / 10 % 10);
    when[22] = (char)('0' + ms % 10);
    when[23] = 'Z';
    when[24] = '\0';
}

/* A line being built: appends past cap are cut (cap leaves room for the
 * closing characters and the newline). */
struct lb {
    char *p;
    size_t len, cap;
};

static void put(struct lb *b, const char *s) {
    size_t n = strlen(s);
    if (n > b->cap - b->len) n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_i64(struct lb *b, long long v) {
    char tmp[24];
    size_t i = sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    tmp[--i] = '\0';
    do tmp[--i] = (char)('0' + u % 10);
    while ((u /= 10) && i > 1);
    if (v < 0) tmp[--i] = '-';
    put(b, tmp + i);
}

/* "\"key\":\"value\"," with value JSON-escaped. */
static void put_json_str(struct lb *b, const char *key, const char *v) {
    put(b, "\"");
    put(b, key);
    put(b, "\":\"");
    b->len = json_escape(b->p, b->cap, b->len, v ? v : "");
    put(b, "\",");
}

/* The start of a line up to the message: {"time":..,"module":"m", (json)
 * or "when LEVEL [tN] module: " (text). */
static void line_head(struct lb *b, int level, const char *module) {
    char when[32];
    format_now(when);
    if (log_format == LOG_FORMAT_JSON) {
        put(b, "{\"time\":\"");
        put(b, when);
        put(b, "\",\"level\":\"");
        put(b, level_names[level]);
        put(b, "\",\"thread\":");
        put_i64(b, thread_id());
        put(b, ",");
        put_json_str(b, "module", module);
    } else {
        put(b, when);
        put(b, " ");
        put(b, level_names[level]);
        put(b, &"     "[strlen(level_names[level]) < 5 ? strlen(level_names[level]) : 5]);
        put(b, " [t");
        put_i64(b, thread_id());
        put(b, "] ");
        put(b, module);
        put(b, ": ");
    }
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
    struct lb b = {line, 0, sizeof(line) - 8};
    line_head(&b, level, module);
    if (log_format == LOG_FORMAT_JSON) {
        put(&b, "\"msg\":\"");
        b.len = json_escape(line, b.cap, b.len, msg);
        b.cap += 2;
        put(&b, "\"}");
    } else {
        put(&b, msg);
    }
    emit(line, sizeof(line), b.len);
}

/* ---- buffered access lines ------------------------------------------------- */

struct abuf {
    pthread_mutex_t mu;
    size_t len;
    struct abuf *next;
    char data[ACCESS_BUF];
};

static pthread_mutex_t abufs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct abuf *abufs; /* every thread's, never freed (threads may come and go) */
static _Thread_local struct abuf *my_abuf;
static atomic_int buffering;
static pthread_t flusher;
static pthread_mutex_t flusher_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flusher_cv = PTHREAD_COND_INITIALIZER;
static int flusher_stop;

static void write_all(const char *p, size_t n) {
    while (n) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0) return; /* nowhere to log to: drop it */
        p += w;
        n -= (size_t)w;
    }
}

static void abuf_flush(struct abuf *b) { /* b->mu held */
    write_all(b->data, b->len);
    b->len = 0;
}

static void flush_all(void) {
    pthread_mutex_lock(&abufs_mu);
    struct abuf *head = abufs;
    pthread_mutex_unlock(&abufs_mu);
    for (struct abuf *b = head; b; b = b->next) { /* the list only grows at its head */
        pthread_mutex_lock(&b->mu);
        abuf_flush(b);
        pthread_mutex_unlock(&b->mu);
    }
}

static void *flusher_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&flusher_mu);
    while (!flusher_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += ACCESS_FLUSH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&flusher_cv, &flusher_mu, &until);
        pthread_mutex_unlock(&flusher_mu);
        flush_all();
        pthread_mutex_lock(&flusher_mu);
    }
    pthread_mutex_unlock(&flusher_mu);
    return NULL;
}

int log_access_buffer_start(void) {
    flusher_stop = 0;
    if (pthread_create(&flusher, NULL, flusher_main, NULL) != 0) return -1;
    atomic_store(&buffering, 1);
    return 0;
}

void log_access_buffer_stop(void) {
    if (!atomic_exchange(&buffering, 0)) return;
    pthread_mutex_lock(&flusher_mu);
    flusher_stop = 1;
    pthread_cond_signal(&flusher_cv);
    pthread_mutex_unlock(&flusher_mu);
    pthread_join(flusher, NULL);
    flush_all();
}

/* Buffers one whole line (or writes it at once when not buffering). */
static void access_out(const char *line, size_t len) {
    if (!atomic_load_explicit(&buffering, memory_order_relaxed)) {
        write_all(line, len);
        return;
    }
    struct abuf *b = my_abuf;
    if (!b) {
        b = xcalloc(1, sizeof(*b));
        pthread_mutex_init(&b->mu, NULL);
        pthread_mutex_lock(&abufs_mu);
        b->next = abufs;
        abufs = b;
        pthread_mutex_unlock(&abufs_mu);
        my_abuf = b;
    }
    pthread_mutex_lock(&b->mu);
    if (b->len + len > sizeof(b->data)) abuf_flush(b);
    memcpy(b->data + b->len, line, len);
    b->len += len;
    pthread_mutex_unlock(&b->mu);
}

void log_access(const struct log_access *a) {
    char line[LOG_LINE_MAX];
    struct lb b = {line, 0, sizeof(line) - 64}; /* room for the numbers and the end */
    line_head(&b, LOG_LEVEL_INFO, "access");
    int json = log_format == LOG_FORMAT_JSON;
    if (json) {
        put_json_str(&b, "request_id", a->request_id);
        put_json_str(&b, "method", a->method);
        put_json_str(&b, "route", a->route);
    } else {
        put(&b, "request_id=");
        put(&b, a->request_id);
        put(&b, " method=");
        put(&b, a->method);
        put(&b, " route=");
        put(&b, a->route);
    }
    b.cap = sizeof(line) - 2;
    put(&b, json ? "\"status\":" : " status=");
    put_i64(&b, a->status);
    put(&b, json ? ",\"latency_us\":" : " latency_us=");
    put_i64(&b, a->latency_us);
    if (a->user_id > 0) {
        put(&b, json ? ",\"user_id\":" : " user_id=");
        put_i64(&b, a->user_id);
    }
    if (a->aborted) put(&b, json ? ",\"aborted\":true" : " aborted=1");
    if (json) put(&b, "}");
    line[b.len++] = '\n';
    access_out(line, b.len);
}
