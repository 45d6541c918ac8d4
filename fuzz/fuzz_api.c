/* fuzz_api.c -- every route handler of both route tables, with the body,
 * path ids, and QUEUE-TOKEN / userId / Idempotency-Key headers taken from
 * the input, against a real SQLite store (in /dev/shm when there is one)
 * and the real waiting room. A handler must always answer, and never with
 * a 500: bad input is a 4xx (invariant 6).
 *
 * Input: byte 0 picks the route, byte 1 the headers and the user (the
 * user's token is kept ACTIVATED, re-entering the line after a payment
 * expired it), bytes 2-5 the path ids (0-3, so both known and unknown rows
 * come up), the rest is the body. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "queue/queue.h"
#include "service/waitroom.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct api_env env;
static struct config cfg;
static const struct api_route *routes[256];
static int nroutes;

static char token_buf[32], user_buf[24], idem_buf[24];
static int header_mask;

static const char *fake_header(const struct api_req *r, const char *name) {
    (void)r;
    if ((header_mask & 1) && strcmp(name, "QUEUE-TOKEN") == 0) return token_buf;
    if ((header_mask & 2) && strcmp(name, "userId") == 0) return user_buf;
    if ((header_mask & 4) && strcmp(name, "Idempotency-Key") == 0) return idem_buf;
    if ((header_mask & 8) && strcmp(name, "X-Admin-Key") == 0) return "k";
    return NULL;
}

static const char *fake_query(const struct api_req *r, const char *name) {
    (void)r;
    (void)name;
    return (header_mask & 16) ? "2" : NULL;
}

static char db_dir[64];

/* The store's files go when the process does (replay runs, fuzzing ends). */
static void remove_db(void) {
    const char *suffix[] = {"/fuzz.db", "/fuzz.db-wal", "/fuzz.db-shm"};
    char p[128];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", db_dir, suffix[i]);
        unlink(p);
    }
    rmdir(db_dir);
}

static void setup(void) {
    log_init(LOG_LEVEL_OFF, LOG_FORMAT_TEXT);
    char dir[] = "/dev/shm/concertd-fuzz-XXXXXX", dir2[] = "/tmp/concertd-fuzz-XXXXXX";
    const char *d = mkdtemp(dir);
    if (!d) d = mkdtemp(dir2);
    if (!d) abort();
    snprintf(db_dir, sizeof(db_dir), "%s", d);
    atexit(remove_db);
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/fuzz.db", d);
    struct store *s;
    if (store_open(path, &s, err, sizeof(err)) || s->ops->migrate(s)) abort();
    struct store_seed seed = {.concerts = 2, .sessions_per_concert = 2, .seats_per_session = 20,
                              .users = 9, .balance = 1000000, .active_tokens = "queue_token_{n}",
                              .active_ttl_ms = 86400000};
    if (s->ops->seed(s, &seed)) abort();
    char *argv[] = {"concertd", NULL};
    if (config_load(&cfg, 1, argv, err, sizeof(err))) abort();
    struct queue *q;
    if (queue_local_open(s, time_now_ms(), &q, err, sizeof(err))) abort();
    struct waitroom_opts wo = {.max_active = 1000, .admit_per_sec = 1000000, .active_ttl_ms = 600000,
                               .waiting_idle_ms = 300000, .tick_ms = 100, .now_ms = time_now_ms};
    env.store = s;
    env.waitroom = waitroom_new(q, &wo);
    env.cfg = &cfg;
    const struct api_route *const tables[] = {api_routes_v1, api_routes_classic};
    for (int t = 0; t < 2; t++)
        for (const struct api_route *r = tables[t]; r->pattern && nroutes < 256; r++)
            routes[nroutes++] = r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!nroutes) setup();
    if (size < 6) return 0;
    const struct api_route *route = routes[data[0] % nroutes];
    header_mask = data[1];
    int user = 1 + (data[1] >> 5); /* 1..8: seeded users with tokens */
    /* The user's live token, entered and admitted again when a payment
     * expired it, so the fuzzer keeps reaching past the gate. */
    struct waitroom_view v;
    int created;
    int64_t now = time_now_ms();
    if (waitroom_enter(env.waitroom, user, now, &v, &created) == 0) {
        if (v.t.state != QUEUE_ACTIVATED) waitroom_tick(env.waitroom, now);
        snprintf(token_buf, sizeof(token_buf), "%s", v.t.token);
    }
    snprintf(user_buf, sizeof(user_buf), "%d", user);
    snprintf(idem_buf, sizeof(idem_buf), "k%u", data[2]);
    struct arena *a = arena_create();
    struct api_req r = {0};
    struct api_res w = {0};
    r.method = route->methods & -route->methods; /* its first method */
    r.path = route->pattern;
    r.route = route->pattern;
    for (int i = 0; i < API_MAX_PARAMS; i++) r.params[i] = data[2 + i] % 4;
    char *body = arena_alloc(a, size - 6 + 1);
    memcpy(body, data + 6, size - 6);
    body[size - 6] = '\0';
    r.body = size > 6 ? body : NULL;
    r.body_len = size - 6;
    r.arena = a;
    r.env = &env;
    r.request_id = "fuzz";
    r.header = fake_header;
    r.query = fake_query;
    if (route->precheck) route->precheck(&r, &w); /* as http/ does: the precheck first */
    if (w.status == 0) route->handler(&r, &w);
    if (w.status < 200 || w.status > 599 || w.status == 500) {
        fprintf(stderr, "fuzz_api: %s answered %d: %.*s\n", route->pattern, w.status,
                (int)w.body_len, w.body ? w.body : "");
        abort();
    }
    if (w.status != 204 && (!w.body || w.body_len == 0)) abort();
    arena_destroy(a);
    return 0;
}
