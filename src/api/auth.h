/* auth.h -- optional user authentication (--auth-jwt-secret): a user-scoped
 * route acts for a user only when the request carries
 * "Authorization: Bearer <JWT>", signed HS256 with the secret, unexpired,
 * whose "sub" is that user's id. Off (everything allowed) without the
 * secret, so the reference clients keep working. docs/security.md. */
#pragma once
#include <stdint.h>

#include "api/api.h"

/* 0 when authentication is off or the bearer token is user's. Else writes
 * 401 AUTH_REQUIRED / AUTH_INVALID / AUTH_EXPIRED or 403 FORBIDDEN (a
 * valid token of another user) and returns ERR_FORBIDDEN. */
int api_auth_user(struct api_req *r, struct api_res *w, int64_t user);
