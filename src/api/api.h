/* api.h -- what a route handler sees, and the route tables.
 *
 * http/ owns the transport (libmicrohttpd). It matches the request against the
 * route tables declared here, parses the typed path parameters, collects the
 * body, and hands a struct api_req to the handler, which fills a struct
 * api_res. api/ never sees libmicrohttpd: headers and query parameters are
 * read through the accessors http/ installs.
 *
 * api/ decodes JSON, calls service/ (or a port for plain reads), encodes JSON,
 * and is the only layer that maps enum err to an HTTP status.
 *
 * Memory: everything a handler allocates comes from req->arena and lives
 * until the response has been sent; http/ frees it. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct arena;
struct config;
struct store;
struct waitroom;
struct payments;
struct web_site;
struct api_limits;

/* HTTP methods as bits, so a route can allow several and 405 can list them. */
enum api_method {
    API_GET = 1 << 0,
    API_HEAD = 1 << 1,
    API_POST = 1 << 2,
    API_PUT = 1 << 3,
    API_DELETE = 1 << 4,
    API_PATCH = 1 << 5,
    API_OPTIONS = 1 << 6,
};

/* Everything a handler may use besides the request: the ports and the config.
 * Built once in main.c; read-only afterwards. */
struct api_env {
    struct store *store;
    struct waitroom *waitroom;
    struct payments *payments; /* card payments; NULL without --pg-url */
    const struct config *cfg;
    const struct web_site *web; /* the pages of web/ (api/web.h); NULL: none */
    struct api_limits *limits; /* rate limits (api/limits.h); NULL: none */
};

#define API_MAX_PARAMS 4

struct api_req {
    int method;                     /* one enum api_method */
    const char *path;               /* decoded path, no query string */
    const char *route;              /* the matched route's pattern, for logs and metrics */
    int64_t params[API_MAX_PARAMS]; /* typed path parameters, in pattern order */
    const char *body;               /* NUL-terminated; NULL when there is none */
    size_t body_len;
    struct arena *arena;
    const struct api_env *env;
    const char *request_id;
    int64_t user_id; /* the caller once a handler knows it (0 = not known), for the access log */
    uint64_t peer; /* the client's address as a rate-limit key (IPv6: its /64); 0 unknown */
    void *state;   /* what the route's precheck decoded, for its handler (arena); NULL */

    /* Installed by http/. Return NULL when absent; a query parameter given
     * without a value ("?limit") reads as "". */
    const char *(*header)(const struct api_req *r, const char *name);
    const char *(*query)(const struct api_req *r, const char *name);
    void *transport; /* http/'s own handle for the accessors */
};

#define API_MAX_HEADERS 4

struct api_res {
    int status;
    const char *body; /* from the request arena (or static) */
    size_t body_len;
    const char *content_type; /* NULL = application/json; charset=utf-8 */
    int nheaders;
    struct {
        const char *name, *value;
    } headers[API_MAX_HEADERS];
};

typedef void (*api_handler)(struct api_req *r, struct api_res *w);

struct api_route {
    int methods;         /* bitmask of enum api_method (GET implies HEAD) */
    const char *pattern; /* "/api/v1/concerts/{cid}/sessions": {name} is a positive int64 */
    api_handler handler;
    /* NULL, or the cheap first half of handler, which http/ runs first, on
     * the thread the request arrived on, once its body is in: for a request
     * that changes state, before it is handed to the write pool. It either
     * answers (w->status set: the request is refused there, a 429 without
     * any thread hand-off) or leaves w alone and may leave what it decoded
     * in r->state; then handler runs. It must not wait on a commit: only
     * what a read may do (memory, a waiting-room lookup). */
    api_handler precheck;
    /* 1: handler waits on nothing but the store (no gateway, no waiting
     * room), so http/ may hand the whole request to the store's committer
     * to run inside its next batch (api_run_batched). */
    int batched;
};

struct batch_job;
/* Queues job to run inside the store's next batch (store.h run_batched):
 * 0, or ERR_UNAVAILABLE when the store cannot (then run it some other way). */
int api_run_batched(const struct api_env *env, struct batch_job *job);

/* Route tables, each ending with an entry whose pattern is NULL. http/
 * serves all of them: a route's precheck (if any), then its handler. */
extern const struct api_route api_routes_v1[];
extern const struct api_route api_routes_classic[]; /* DESIGN.md 4.2, api/classic.c */
extern const struct api_route api_routes_web[];     /* the pages of web/, api/web.c */

/* Error responses: {"error":{"code":CODE,"message":...}}. */
void api_error(struct api_req *r, struct api_res *w, int status, const char *code, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));
/* Maps a negative enum err from a lower layer to status and code; msg says
 * what went wrong (may be NULL for a generic text). Logs 5xx once, here. */
void api_fail(struct api_req *r, struct api_res *w, int err, const char *msg);
/* The 503 message when the waiting room's keeper (Redis) does not answer. */
#define API_QUEUE_DOWN "the waiting room is unavailable; try again shortly"
/* Sets a JSON body built in the arena. */
void api_json(struct api_res *w, int status, const char *body, size_t len);
void api_add_header(struct api_res *w, const char *name, const char *value);

/* Decodes the body as one JSON object with only the allowed keys (NULL-
 * terminated). NULL with the 400 written when it is not. The caller
 * json_decref()s the result. */
json_t *api_body_object(struct api_req *r, struct api_res *w, const char *const *allowed);

/* Decodes field of obj, an array of positive JSON integers, into an array
 * in the request arena. ERR_INVALID with errbuf naming the field (or the
 * entry) when it is absent or anything else. */
int api_decode_ids(struct api_req *r, json_t *obj, const char *field, const int64_t **ids,
                   size_t *n, char *errbuf, size_t errlen);

/* Query parameter helper: reads an integer query parameter within [min, max],
 * defaulting to def when absent. On a bad value it writes the 400 and returns
 * ERR_INVALID. */
int api_query_i64(struct api_req *r, struct api_res *w, const char *name, int64_t def, int64_t min,
                  int64_t max, int64_t *out);
