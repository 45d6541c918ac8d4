/* netaddr.h -- client addresses for the per-address abuse limits: IPv4 and
 * IPv6 literals, a list of addresses and prefixes (--trusted-proxies), and
 * the client an X-Forwarded-For value names when trusted proxies wrote it.
 *
 * Pure logic on strings and bytes, unit-tested (tests/unit/test_netaddr.c).
 * Not here: reading the header or the socket (http/server.c), what is
 * limited (api/limits.c). docs/security.md, "Behind a proxy". */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An IPv4 address (family 4, bytes 0..3) or an IPv6 one (family 6). An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is kept as the IPv4 address,
 * so a dual-stack socket and a proxy's header agree on one client. */
struct netaddr {
    int family; /* 4 or 6; 0: unknown */
    unsigned char b[16];
};

/* Parses the len bytes at s as one IPv4 or IPv6 literal (no port, no
 * brackets, no spaces). 0, or ERR_INVALID. */
int netaddr_parse(const char *s, size_t len, struct netaddr *out);
/* A socket address's; family 0 when it is neither IPv4 nor IPv6. */
void netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
/* The address as a rate-limit key: an IPv4 address whole, an IPv6 address
 * by its /64 (what one subscriber is usually given), tagged so the two
 * never collide; 0 for an unknown address. */
uint64_t netaddr_key(const struct netaddr *a);

struct netaddr_list;

/* Parses a comma-separated list of addresses and prefixes
 * ("10.0.0.1, 10.1.0.0/16, ::1, fd00::/8"; spaces around entries are
 * ignored). 0 with *out set (the caller frees it), or ERR_INVALID with
 * errbuf naming the entry that is not one. */
int netaddr_list_parse(const char *spec, struct netaddr_list **out, char *errbuf, size_t errlen);
void netaddr_list_free(struct netaddr_list *l);
/* 1 when a is in one of l's prefixes (l may be NULL: never). */
int netaddr_list_has(const struct netaddr_list *l, const struct netaddr *a);

/* The client of a request that came from a trusted proxy. *client holds
 * the socket's peer on entry. xff is the X-Forwarded-For value (several
 * headers joined with commas, in order), each proxy having appended the
 * address it saw. It is walked from the right: while the address in
 * *client is trusted, the entry to its left replaces it. So *client ends
 * as the rightmost address no trusted proxy vouches for beyond, which is
 * the first one a client could have written itself: entries further left
 * are never believed. An entry that is not an address stops the walk
 * (the hop that wrote it stays the client), as does running out of entries. */
void netaddr_forwarded_client(const struct netaddr_list *trusted, const char *xff,
                              struct netaddr *client);
