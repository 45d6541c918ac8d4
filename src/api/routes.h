/* routes.h -- the handlers api/ exports to the route tables (routes.c). */
#pragma once
#include "api/api.h"

void api_health_live(struct api_req *r, struct api_res *w);
void api_health_ready(struct api_req *r, struct api_res *w);
void api_concerts_list(struct api_req *r, struct api_res *w);
void api_sessions_list(struct api_req *r, struct api_res *w);
void api_seats_list(struct api_req *r, struct api_res *w);
void api_queue_enter(struct api_req *r, struct api_res *w);
void api_queue_status(struct api_req *r, struct api_res *w);
void api_queue_leave(struct api_req *r, struct api_res *w);
void api_queue_stats(struct api_req *r, struct api_res *w);
void api_admin_waiting_room(struct api_req *r, struct api_res *w);

/* The waiting-room gate of the protected routes: the request's QUEUE-TOKEN
 * must be ACTIVATED and, when want_user > 0, belong to that user. Returns 0
 * and sets *user (may be NULL) to the token's user; otherwise writes the
 * 401/403 (or 503) and returns nonzero. */
int api_gate(struct api_req *r, struct api_res *w, int64_t want_user, int64_t *user);
/* The gate in two steps, for a route that makes an exception: the verdict
 * (and the token's user, 0 when unknown) without answering; nonzero with
 * the 503 written when the queue failed. Then the 401/403 of a verdict. */
int api_gate_check(struct api_req *r, struct api_res *w, int64_t want_user, int *verdict,
                   int64_t *user);
void api_gate_refuse(struct api_req *r, struct api_res *w, int verdict);
void api_reservation_create(struct api_req *r, struct api_res *w);
void api_reservation_get(struct api_req *r, struct api_res *w);
void api_reservation_cancel(struct api_req *r, struct api_res *w);
void api_balance_get(struct api_req *r, struct api_res *w);
void api_balance_charge(struct api_req *r, struct api_res *w);
void api_payment_create(struct api_req *r, struct api_res *w);
