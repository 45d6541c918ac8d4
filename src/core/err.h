/* err.h -- the error codes every layer returns.
 *
 * Functions return 0 on success and a negative enum err on failure. Only
 * api/ turns an error into an HTTP status; everything below passes the code
 * up unchanged and leaves no partial state behind. */
#pragma once

enum err {
    ERR_OK = 0,
    ERR_INVALID = -1,       /* bad input: caller's fault, 400 */
    ERR_NOT_FOUND = -2,     /* no such entity, 404 */
    ERR_CONFLICT = -3,      /* state forbids it (seat taken, not payable), 409 */
    ERR_FORBIDDEN = -4,     /* not yours, 403 */
    ERR_NOMEM = -5,         /* allocation failed where we chose not to abort */
    ERR_IO = -6,            /* storage or network failure, 500/503 */
    ERR_UNAVAILABLE = -7,   /* a dependency is down, 503 */
    ERR_TOO_LARGE = -8,     /* a size limit was exceeded, 413 */
    ERR_INTERNAL = -9,      /* a bug: broken invariant, 500 */
    ERR_INSUFFICIENT = -10, /* not enough balance for a payment, 402 */
    ERR_IDEMPOTENCY = -11,  /* an Idempotency-Key reused for another request, 409 */
    ERR_MISMATCH = -12,     /* a value the caller states differs from the stored one
                               (the amount of a classic payment), 409 */
    ERR_DECLINED = -13,     /* the payment gateway declined a card payment, 402 */
    ERR_LIMIT = -14,        /* a per-user cap is reached (live holds), 409 */
};

/* A stable lowercase name for logs ("invalid", "not_found", ...). */
const char *err_str(int err);
