/* routes.h -- the handlers api/ exports to the route tables (routes.c). */
#pragma once
#include "api/api.h"

void api_health_live(struct api_req *r, struct api_res *w);
void api_health_ready(struct api_req *r, struct api_res *w);
void api_concerts_list(struct api_req *r, struct api_res *w);
void api_sessions_list(struct api_req *r, struct api_res *w);
void api_seats_list(struct api_req *r, struct api_res *w);
void api_reservation_create(struct api_req *r, struct api_res *w);
void api_reservation_get(struct api_req *r, struct api_res *w);
void api_reservation_cancel(struct api_req *r, struct api_res *w);
void api_balance_get(struct api_req *r, struct api_res *w);
void api_balance_charge(struct api_req *r, struct api_res *w);
void api_payment_create(struct api_req *r, struct api_res *w);
