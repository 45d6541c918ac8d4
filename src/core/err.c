/* err.c -- names of the error codes, for logs. */
#include "core/err.h"

const char *err_str(int err) {
    switch (err) {
    case ERR_OK: return "ok";
    case ERR_INVALID: return "invalid";
    case ERR_NOT_FOUND: return "not_found";
    case ERR_CONFLICT: return "conflict";
    case ERR_FORBIDDEN: return "forbidden";
    case ERR_NOMEM: return "nomem";
    case ERR_IO: return "io";
    case ERR_UNAVAILABLE: return "unavailable";
    case ERR_TOO_LARGE: return "too_large";
    case ERR_INTERNAL: return "internal";
    case ERR_INSUFFICIENT: return "insufficient";
    case ERR_IDEMPOTENCY: return "idempotency";
    case ERR_MISMATCH: return "mismatch";
    case ERR_DECLINED: return "declined";
    case ERR_LIMIT: return "limit";
    }
    return "unknown";
}
