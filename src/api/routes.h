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
