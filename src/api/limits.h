/* limits.h -- the abuse limits of the routes that cost the most when a bot
 * floods them: entering the waiting room and holding seats. Each has a
 * token bucket per client address and one per user (core/ratelimit.h);
 * a refusal is 429 RATE_LIMITED with Retry-After. docs/security.md. */
#pragma once
#include <stdint.h>

#include "api/api.h"

enum api_limit { API_LIMIT_ENTER, API_LIMIT_HOLD };

/* From --limit-*; every limit at 0 gives limiters that allow everything. */
struct api_limits *api_limits_create(const struct config *c);
void api_limits_free(struct api_limits *l);

/* Takes one request of kind what for the request's address and for user.
 * 0 when allowed; else the 429 is written and ERR_LIMIT returned. */
int api_limit(struct api_req *r, struct api_res *w, enum api_limit what, int64_t user);
