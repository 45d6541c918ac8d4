/* server.h -- the HTTP server: libmicrohttpd with its own epoll thread pool,
 * hardened (connection limits, timeouts, body and header caps), serving the
 * api/ route tables. The only module that includes <microhttpd.h>. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct api_env;

struct http_opts {
    const char *listen; /* "0.0.0.0:8080", "[::1]:8080", "127.0.0.1:0" */
    int workers;        /* event threads (reads run here), >= 1 */
    int write_workers;  /* threads for requests that change state; 0: run them inline */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* 0 = unlimited */
    unsigned timeout_s;              /* idle connection timeout */
    size_t max_body;
    size_t max_header_bytes;
    int64_t grace_ms; /* in-flight requests get this long on stop */
    int count_requests; /* observe each request in core/metrics */
    int access_log;     /* one log_access() line per request (at info level) */
    int64_t request_timeout_ms; /* a request (line, headers, body) must arrive within this; 0: none */
    const char *trusted_proxies; /* "10.0.0.1, 10.1.0.0/16": peers whose X-Forwarded-For names
                                    the client (server.c note 7); NULL: the header is ignored */
};

struct http_server;

/* Raises RLIMIT_NOFILE, binds and starts the pool. Returns 0 or a negative
 * enum err with errbuf saying why (bad address, port in use, ...). */
int http_start(const struct http_opts *o, const struct api_env *env, struct http_server **out,
               char *errbuf, size_t errlen);
/* The bound port (useful with port 0). */
int http_port(const struct http_server *s);
/* Graceful stop: stop accepting, let in-flight requests finish (up to
 * grace_ms), close every connection, join the threads, free s. */
void http_stop(struct http_server *s);
