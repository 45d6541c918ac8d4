/* router.h -- matches a method and path against the api/ route tables.
 *
 * Patterns are compiled once at start into segments. A {name} segment is a
 * typed parameter: a positive int64. Matching never allocates.
 *
 * Outcomes, in the order they are decided:
 *   ROUTE_OK          a route matches path, parameters and method
 *   ROUTE_BAD_METHOD  the path matches, the method does not (405 + Allow)
 *   ROUTE_BAD_PARAM   the literal segments match but a parameter is not a
 *                     positive int64 (400 naming it, never 404)
 *   ROUTE_NOT_FOUND   nothing matches (404) */
#pragma once
#include <stdint.h>

#include "api/api.h"

enum route_result { ROUTE_OK = 0, ROUTE_NOT_FOUND, ROUTE_BAD_PARAM, ROUTE_BAD_METHOD };

struct route_match {
    const struct api_route *route;
    int slot; /* ROUTE_OK: 1 + the route's place in the tables (metrics); else 0 */
    int64_t params[API_MAX_PARAMS];
    int allow;             /* ROUTE_BAD_METHOD: bitmask of the methods the path allows */
    const char *bad_param; /* ROUTE_BAD_PARAM: the parameter's name */
};

struct router;

/* tables: NULL-terminated list of route tables. Aborts on a malformed pattern
 * (a programming error). */
struct router *router_create(const struct api_route *const *tables);
void router_free(struct router *rt);
/* The patterns in table order (pattern i is slot i + 1); returns how many,
 * at most max. */
int router_patterns(const struct router *rt, const char **out, int max);
int router_match(const struct router *rt, int method, const char *path, struct route_match *m);

/* "GET, HEAD, POST" for a method bitmask, into buf. */
void router_allow_header(int methods, char *buf, size_t len);
