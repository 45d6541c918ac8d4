/* http1.c -- HTTP/1.1 requests out, responses in (http1.h). */
#include "http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t h1_write(char *buf, size_t cap, const struct req *q, const char *host, const char *extra) {
    size_t blen = strlen(q->body);
    int n;
    if (blen)
        n = snprintf(buf, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%sContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     q->method, q->path, host, q->token ? "QUEUE-TOKEN: " : "",
                     q->token ? q->token : "", q->token ? "\r\n" : "", extra, blen, q->body);
    else
        n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s\r\n", q->method, q->path,
                     host, q->token ? "QUEUE-TOKEN: " : "", q->token ? q->token : "",
                     q->token ? "\r\n" : "", extra);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* A chunked body at p (end e): returns the bytes it takes through the last
 * CRLF, 0 if incomplete, -1 if malformed. With write set, also decodes it
 * in place (only once it is known to be complete) and sets *blen. */
static long chunks(char *p, char *e, int write, size_t *blen) {
    char *r = p, *w = p;
    for (;;) {
        char *nl = memchr(r, '\n', (size_t)(e - r));
        if (!nl) return 0;
        char *end;
        unsigned long n = strtoul(r, &end, 16);
        if (end == r) return -1;
        r = nl + 1;
        if (n == 0) { /* trailers until an empty line */
            for (;;) {
                nl = memchr(r, '\n', (size_t)(e - r));
                if (!nl) return 0;
                int empty = nl == r || (nl == r + 1 && *r == '\r');
                r = nl + 1;
                if (empty) break;
            }
            if (write) *blen = (size_t)(w - p);
            return (long)(r - p);
        }
        if ((size_t)(e - r) < n + 2) return 0;
        if (write) memmove(w, r, n);
        w += n;
        r += n + 2;
    }
}

long h1_parse(char *buf, size_t len, struct resp *out, int *close) {
    char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return 0;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return -1;
    out->status = atoi(buf + 9);
    size_t hlen = (size_t)(end - buf) + 4;
    long cl = -1;
    int chunked = 0;
    *close = buf[7] == '0';
    for (char *p = memchr(buf, '\n', hlen); p && p < end;
         p = memchr(p + 1, '\n', (size_t)(end - p))) {
        char *h = p + 1;
        switch (*h | 0x20) {
        case 'c':
            if (strncasecmp(h, "content-length:", 15) == 0)
                cl = strtol(h + 15, NULL, 10);
            else if (strncasecmp(h, "connection:", 11) == 0)
                *close = strncasecmp(h + 11 + strspn(h + 11, " "), "close", 5) == 0;
            break;
        case 't':
            if (strncasecmp(h, "transfer-encoding:", 18) == 0) chunked = 1;
            break;
        default: break;
        }
    }
    char *body = buf + hlen;
    if (out->status == 204 || out->status == 304 || (out->status >= 100 && out->status < 200))
        cl = 0;
    if (chunked) {
        long used = chunks(body, buf + len, 0, NULL);
        if (used <= 0) return used;
        chunks(body, buf + len, 1, &out->len);
        out->body = body;
        return (long)hlen + used;
    }
    if (cl < 0) return -1;
    if (len < hlen + (size_t)cl) return 0;
    out->body = body;
    out->len = (size_t)cl;
    return (long)(hlen + (size_t)cl);
}
