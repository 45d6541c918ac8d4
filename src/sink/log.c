/* log.c -- the log-file event sink: one JSON object per line, appended.
 *
 *   {"id":7,"topic":"payment.completed","aggregateId":3,"payload":{...},"createdAt":"..."}
 *
 * Each publish writes its batch with one write(2) of whole lines and
 * fsync()s before returning 0, so a published batch survives a crash.
 * After a crash between the fsync and the relay's mark, the batch is
 * appended again: readers dedupe by id (at least once, see sink.h). A
 * failed or short write is an error; the next publish starts with a
 * newline when the file does not end with one, so a torn line never glues
 * onto the next event. Not here: which events, when (service/outbox.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "sink/render.h"
#include "sink/sink.h"

#define MOD "sink"

struct log_sink {
    struct sink base; /* must be first */
    int fd;
    char *path;
    int torn; /* the last write may have left a partial line */
};

/* The events as JSON lines in one malloc'ed buffer. */
static char *render(const struct sink_event *ev, size_t n, size_t *len) {
    size_t cap = 256, used = 0;
    char *buf = xmalloc(cap);
    for (size_t i = 0; i < n; i++) {
        char *line = sink_render_event(&ev[i]);
        if (!line) {
            free(buf);
            return NULL;
        }
        size_t l = strlen(line);
        while (used + l + 2 > cap) cap *= 2;
        buf = xrealloc(buf, cap);
        memcpy(buf + used, line, l);
        used += l;
        buf[used++] = '\n';
        free(line);
    }
    *len = used;
    return buf;
}

static int write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return ERR_IO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int log_publish(struct sink *k, const struct sink_event *ev, size_t n) {
    struct log_sink *s = (struct log_sink *)k;
    if (n == 0) return 0;
    size_t len = 0;
    char *buf = render(ev, n, &len);
    if (!buf) return ERR_INTERNAL;
    int err = s->torn ? write_all(s->fd, "\n", 1) : 0;
    if (err == 0) err = write_all(s->fd, buf, len);
    if (err == 0 && fsync(s->fd) != 0) err = ERR_IO;
    free(buf);
    s->torn = err != 0;
    if (err) LOG_ERROR(MOD, "op=publish path=%s err=\"%s\"", s->path, strerror(errno));
    return err;
}

static void log_close(struct sink *k) {
    struct log_sink *s = (struct log_sink *)k;
    close(s->fd);
    free(s->path);
    free(s);
}

static const struct sink_ops log_ops = {.publish = log_publish, .close = log_close};

int sink_log_open(const char *path, struct sink **out, char *errbuf, size_t errlen) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(errbuf, errlen, "--events log:%s: %s", path, strerror(errno));
        return ERR_INVALID;
    }
    struct log_sink *s = xcalloc(1, sizeof(*s));
    s->base.ops = &log_ops;
    s->base.kind = "log";
    s->fd = fd;
    s->path = xstrdup(path);
    struct stat st;
    char last = '\n';
    /* a file that does not end with a newline was torn by a crash */
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0 && pread(rfd, &last, 1, st.st_size - 1) != 1) last = '\n';
        if (rfd >= 0) close(rfd);
    }
    s->torn = last != '\n';
    *out = &s->base;
    return 0;
}
