/* health.c -- liveness and readiness probes.
 *
 * live: the process answers HTTP. ready: every dependency answers too; a
 * 503 names the ones that do not, so an operator (or HAProxy) knows why. */
#include "api/routes.h"
#include "core/json.h"
#include "service/waitroom.h"
#include "store/store.h"

void api_health_live(struct api_req *r, struct api_res *w) {
    (void)r;
    static const char body[] = "{\"status\":\"ok\"}";
    api_json(w, 200, body, sizeof(body) - 1);
}

void api_health_ready(struct api_req *r, struct api_res *w) {
    struct store *s = r->env->store;
    int store_ok = s->ops->ping(s) == 0;
    int queue_ok = waitroom_ping(r->env->waitroom) == 0;
    struct jw j;
    jw_init(&j, r->arena, 200);
    jw_obj_begin(&j);
    if (store_ok && queue_ok) {
        jw_kv_str(&j, "status", "ready");
    } else {
        /* the dependencies that are down, by the names operators use */
        const char *failed = !store_ok && !queue_ok ? "database,queue"
                             : store_ok             ? "queue"
                                                    : "database";
        jw_kv_str(&j, "status", "down");
        jw_kv_str(&j, "failed", failed);
        jw_key(&j, "error");
        jw_obj_begin(&j);
        jw_kv_str(&j, "code", "UNAVAILABLE");
        jw_kv_str(&j, "message",
                  !store_ok && !queue_ok ? "database (store) and queue are not answering"
                  : store_ok             ? "queue is not answering"
                                         : "database (store) is not answering");
        jw_obj_end(&j);
    }
    jw_key(&j, "checks");
    jw_obj_begin(&j);
    jw_kv_str(&j, "store", store_ok ? "ok" : "down");
    jw_kv_str(&j, "queue", queue_ok ? "ok" : "down");
    jw_obj_end(&j);
    jw_obj_end(&j);
    size_t len;
    char *body = jw_finish(&j, &len);
    api_json(w, store_ok && queue_ok ? 200 : 503, body, len);
}
