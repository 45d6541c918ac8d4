/* auth.c -- bearer JWT checks (see auth.h), with Debian's libjwt.
 *
 * Accepted: a compact JWS whose header says alg HS256 and whose signature
 * is the HMAC-SHA256 of the secret; an "exp" claim (NumericDate, seconds)
 * in the future; no "nbf" in the future; "sub" the user id as a decimal
 * string (or a JSON integer). Anything else is refused: in particular alg
 * "none" and every other algorithm, whatever libjwt would accept. The alg
 * is compared exactly (RFC 7515: it is case-sensitive); libjwt 1.10 takes
 * "Hs256" for HS256 (found by fuzz/fuzz_auth). */
#include "api/auth.h"

#include <errno.h>
#include <jwt.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/err.h"
#include "core/num.h"
#include "core/timeutil.h"

#define BEARER "Bearer "
#define TOKEN_MAX 4096

/* The "sub" claim as a user id, 0 when absent or not a positive integer. */
static int64_t subject(jwt_t *jwt) {
    const char *s = jwt_get_grant(jwt, "sub");
    int64_t v = 0;
    if (s) return num_parse_i64(s, 0, &v) == 0 && v > 0 ? v : 0;
    errno = 0;
    long n = jwt_get_grant_int(jwt, "sub");
    return errno == 0 && n > 0 ? (int64_t)n : 0;
}

/* An integer claim in *out: 0, or 1 when absent, -1 when not an integer. */
static int claim_int(jwt_t *jwt, const char *name, int64_t *out) {
    errno = 0;
    long v = jwt_get_grant_int(jwt, name);
    if (errno == ENOENT) return jwt_get_grant(jwt, name) ? -1 : 1;
    if (errno) return -1;
    *out = v;
    return 0;
}

static int refuse(struct api_req *r, struct api_res *w, int status, const char *code,
                  const char *msg) {
    api_error(r, w, status, code, "%s", msg);
    if (status == 401)
        api_add_header(w, "WWW-Authenticate",
                       strcmp(code, "AUTH_REQUIRED") == 0 ? "Bearer"
                                                          : "Bearer error=\"invalid_token\"");
    return ERR_FORBIDDEN;
}

int api_auth_user(struct api_req *r, struct api_res *w, int64_t user) {
    const char *secret = r->env->cfg->auth_jwt_secret;
    if (!secret) return 0;
    const char *h = r->header(r, "Authorization");
    if (!h || !*h)
        return refuse(r, w, 401, "AUTH_REQUIRED",
                      "this route needs an Authorization: Bearer <JWT> header");
    if (strncasecmp(h, BEARER, strlen(BEARER)) != 0)
        return refuse(r, w, 401, "AUTH_INVALID", "the Authorization header must be Bearer <JWT>");
    const char *token = h + strlen(BEARER);
    while (*token == ' ') token++;
    if (!*token || strlen(token) > TOKEN_MAX)
        return refuse(r, w, 401, "AUTH_INVALID", "the bearer token is empty or too long");
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 || !jwt ||
        jwt_get_alg(jwt) != JWT_ALG_HS256 || !jwt_get_header(jwt, "alg") ||
        strcmp(jwt_get_header(jwt, "alg"), "HS256") != 0) {
        jwt_free(jwt);
        return refuse(r, w, 401, "AUTH_INVALID",
                      "the bearer token is not an HS256 JWT signed with this server's secret");
    }
    int64_t exp = 0, nbf = 0, now = time_now_ms() / 1000;
    int has_exp = claim_int(jwt, "exp", &exp), has_nbf = claim_int(jwt, "nbf", &nbf);
    int64_t sub = subject(jwt);
    jwt_free(jwt);
    if (has_exp != 0 || has_nbf < 0 || sub == 0)
        return refuse(r, w, 401, "AUTH_INVALID",
                      "the bearer token needs an integer \"exp\" and a positive integer \"sub\"");
    if (exp <= now)
        return refuse(r, w, 401, "AUTH_EXPIRED", "the bearer token has expired");
    if (has_nbf == 0 && nbf > now)
        return refuse(r, w, 401, "AUTH_INVALID", "the bearer token is not valid yet");
    if (sub != user) {
        api_error(r, w, 403, "FORBIDDEN", "the bearer token is user %lld's, not user %lld's",
                  (long long)sub, (long long)user);
        return ERR_FORBIDDEN;
    }
    return 0;
}
