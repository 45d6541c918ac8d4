/* http1.h -- HTTP/1.1 client framing: writing a request, and parsing a
 * response incrementally out of a receive buffer.
 *
 * Responses may use Content-Length or chunked transfer coding; anything
 * else (no length, HTTP/1.0 close-delimited) is refused as a protocol error.
 * Not here: sockets (engine.c). */
#pragma once
#include <stddef.h>

#include "load.h"

/* Writes q as a request into buf; returns its length, or 0 if it does not
 * fit. host: the Host header's value. extra: complete header lines
 * ("Name: value\r\n"...), or "". */
size_t h1_write(char *buf, size_t cap, const struct req *q, const char *host, const char *extra);

/* One response at the start of buf[0..len). Returns:
 *   > 0  the whole response is there, that many bytes long; *out is set (its
 *        body points into buf and is decoded in place when chunked), and
 *        *close says whether the server will close the connection;
 *   0    more bytes are needed;
 *   < 0  not a response we can read. */
long h1_parse(char *buf, size_t len, struct resp *out, int *close);
