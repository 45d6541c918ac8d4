/* common.c -- what every api/ handler shares: error bodies, the mapping from
 * enum err to HTTP status, query-parameter and body decoding.
 *
 * This is the one place an error becomes a status code, and the one place a
 * server-side failure is logged (once, with the request id). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/num.h"
#include "store/store.h"

void api_json(struct api_res *w, int status, const char *body, size_t len) {
    w->status = status;
    w->body = body;
    w->body_len = len;
    w->content_type = NULL;
}

int api_run_batched(const struct api_env *env, struct batch_job *job) {
    struct store *s = env->store;
    return s && s->ops->run_batched ? s->ops->run_batched(s, job) : ERR_UNAVAILABLE;
}

void api_add_header(struct api_res *w, const char *name, const char *value) {
    if (w->nheaders >= API_MAX_HEADERS) return;
    w->headers[w->nheaders].name = name;
    w->headers[w->nheaders].value = value;
    w->nheaders++;
}

void api_error(struct api_req *r, struct api_res *w, int status, const char *code, const char *fmt,
               ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = arena_vsprintf(r->arena, fmt, ap);
    va_end(ap);
    struct jw j;
    jw_init(&j, r->arena, 128 + strlen(msg));
    jw_obj_begin(&j);
    jw_key(&j, "error");
    jw_obj_begin(&j);
    jw_kv_str(&j, "code", code);
    jw_kv_str(&j, "message", msg);
    jw_obj_end(&j);
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, status, body, len);
}

void api_fail(struct api_req *r, struct api_res *w, int err, const char *msg) {
    switch (err) {
    case ERR_INVALID:
        api_error(r, w, 400, "INVALID_REQUEST", "%s", msg ? msg : "invalid request");
        return;
    case ERR_NOT_FOUND: api_error(r, w, 404, "NOT_FOUND", "%s", msg ? msg : "not found"); return;
    case ERR_FORBIDDEN: api_error(r, w, 403, "FORBIDDEN", "%s", msg ? msg : "forbidden"); return;
    case ERR_CONFLICT: api_error(r, w, 409, "CONFLICT", "%s", msg ? msg : "conflict"); return;
    case ERR_INSUFFICIENT:
        api_error(r, w, 402, "INSUFFICIENT_BALANCE", "%s", msg ? msg : "insufficient balance");
        return;
    case ERR_DECLINED:
        api_error(r, w, 402, "PAYMENT_DECLINED", "%s", msg ? msg : "the card payment was declined");
        return;
    case ERR_IDEMPOTENCY:
        api_error(r, w, 409, "IDEMPOTENCY_CONFLICT", "%s",
                  msg ? msg : "this Idempotency-Key was used for a different request");
        return;
    case ERR_TOO_LARGE:
        api_error(r, w, 413, "PAYLOAD_TOO_LARGE", "%s", msg ? msg : "request too large");
        return;
    case ERR_UNAVAILABLE:
    case ERR_IO:
        LOG_ERROR("api", "dependency failure route=%s err=%s request_id=%s", r->route, err_str(err),
                  r->request_id ? r->request_id : "-");
        api_error(r, w, 503, "UNAVAILABLE", "%s",
                  msg ? msg : "a dependency is unavailable; try again shortly");
        return;
    default:
        LOG_ERROR("api", "internal error route=%s err=%s request_id=%s", r->route, err_str(err),
                  r->request_id ? r->request_id : "-");
        api_error(r, w, 500, "INTERNAL", "internal error");
        return;
    }
}

int api_query_i64(struct api_req *r, struct api_res *w, const char *name, int64_t def, int64_t min,
                  int64_t max, int64_t *out) {
    const char *v = r->query(r, name);
    if (!v) {
        *out = def;
        return 0;
    }
    int64_t n;
    if (num_parse_i64(v, 1, &n) || n < min || n > max) {
        api_error(r, w, 400, "INVALID_REQUEST",
                  "query parameter \"%s\" must be an integer between %lld and %lld", name,
                  (long long)min, (long long)max);
        return ERR_INVALID;
    }
    *out = n;
    return 0;
}

json_t *api_body_object(struct api_req *r, struct api_res *w, const char *const *allowed) {
    char err[256];
    json_t *o =
        jd_parse_object(r->body ? r->body : "", r->body ? r->body_len : 0, err, sizeof(err));
    if (o && jd_only_keys(o, allowed, err, sizeof(err)) != 0) {
        json_decref(o);
        o = NULL;
    }
    if (!o) api_error(r, w, 400, "INVALID_REQUEST", "%s", err);
    return o;
}

int api_decode_ids(struct api_req *r, json_t *obj, const char *field, const int64_t **ids,
                   size_t *n, char *errbuf, size_t errlen) {
    json_t *arr = json_object_get(obj, field);
    if (!arr) {
        snprintf(errbuf, errlen, "field \"%s\" is required", field);
        return ERR_INVALID;
    }
    if (!json_is_array(arr)) {
        snprintf(errbuf, errlen, "field \"%s\" must be an array of positive integers", field);
        return ERR_INVALID;
    }
    size_t len = json_array_size(arr);
    int64_t *out = arena_calloc(r->arena, len ? len : 1, sizeof(*out));
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            snprintf(errbuf, errlen, "%s[%zu] must be a positive integer", field, i);
            return ERR_INVALID;
        }
        out[i] = (int64_t)json_integer_value(v);
    }
    *ids = out;
    *n = len;
    return 0;
}
