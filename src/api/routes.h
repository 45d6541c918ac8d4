/* routes.h -- the handlers api/ exports to the route tables (routes.c). */
#pragma once
#include "api/api.h"

void api_health_live(struct api_req *r, struct api_res *w);
void api_health_ready(struct api_req *r, struct api_res *w);
void api_concerts_list(struct api_req *r, struct api_res *w);
void api_sessions_list(struct api_req *r, struct api_res *w);
void api_seats_list(struct api_req *r, struct api_res *w);
