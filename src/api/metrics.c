/* metrics.c -- GET /metrics: the Prometheus text format (version 0.0.4).
 *
 * Gathers what each layer counts through its port or service and writes it
 * with core/metrics: HTTP requests and latencies (per-thread counters in
 * core/metrics, summed here), the waiting room, the store's group commit,
 * the process. Names are prefixed concertd_. Scraping takes a few locks
 * briefly; nothing here is on the path of other requests. */
#include "core/metrics.h"
#include "api/routes.h"
#include "core/timeutil.h"
#include "service/payment.h"
#include "service/waitroom.h"
#include "store/store.h"

static void write_waiting_room(struct api_req *r, struct mtext *t) {
    struct waitroom_stats st;
    if (waitroom_stats(r->env->waitroom, time_now_ms(), &st)) return;
    mtext_gauge(t, "concertd_waiting_room_waiting", "live WAITING tokens", (double)st.waiting);
    mtext_gauge(t, "concertd_waiting_room_active", "ACTIVATED tokens", (double)st.active);
    mtext_gauge(t, "concertd_waiting_room_max_active", "the max_active limit now",
                (double)st.max_active);
    mtext_gauge(t, "concertd_waiting_room_admit_per_second_limit", "the admit_per_sec limit now",
                (double)st.admit_per_sec);
    mtext_gauge(t, "concertd_waiting_room_admission_rate",
                "admissions per second over the last minute",
                (double)st.admitted_last_minute / 60.0);
    mtext_counter(t, "concertd_waiting_room_admissions_total", "tokens admitted since start",
                  (double)st.admitted_total);
    mtext_counter(t, "concertd_waiting_room_expiries_total",
                  "tokens expired since start (TTL, idle, left, paid)", (double)st.expired_total);
}

static void write_store(struct api_req *r, struct mtext *t) {
    struct store *s = r->env->store;
    struct store_stats st = {0};
    s->ops->stats(s, &st);
    mtext_counter(t, "concertd_store_commits_total", "group commits (transactions) since start",
                  (double)st.commit_batches);
    mtext_counter(t, "concertd_store_commit_jobs_total", "writes carried by those commits",
                  (double)st.commit_jobs);
    mtext_gauge(t, "concertd_store_commit_pending", "writes waiting for the committer now",
                (double)st.commit_pending);
    mtext_gauge(t, "concertd_outbox_unpublished", "events the relay has not published yet",
                (double)st.outbox_unpublished);
    int64_t lag = st.outbox_oldest_ms ? time_now_ms() - st.outbox_oldest_ms : 0;
    mtext_gauge(t, "concertd_outbox_lag_seconds", "age of the oldest unpublished event",
                lag > 0 ? (double)lag / 1000.0 : 0.0);
}

static void write_payments(struct api_req *r, struct mtext *t) {
    if (!r->env->payments) return; /* card payments off: no gateway, no breaker */
    mtext_gauge(t, "concertd_payment_gateway_breaker_state",
                "circuit breaker of the payment gateway: 0 closed, 1 open, 2 half-open",
                (double)payment_breaker_state(r->env->payments));
}

void api_metrics(struct api_req *r, struct api_res *w) {
    struct mtext t;
    mtext_init(&t, r->arena);
    metrics_write_http(&t);
    metrics_write_domain(&t);
    metrics_write_process(&t, CONCERT_VERSION);
    write_waiting_room(r, &t);
    write_store(r, &t);
    write_payments(r, &t);
    api_json(w, 200, t.buf, t.len);
    w->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
