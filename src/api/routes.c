/* routes.c -- the v1 route table. Each row: allowed methods, path pattern
 * with typed {id} parameters, handler, precheck, batched (api.h).
 * http/router.c serves it. */
#include "api/routes.h"

const struct api_route api_routes_v1[] = {
    {API_GET, "/health/live", api_health_live, NULL, 0},
    {API_GET, "/health/ready", api_health_ready, NULL, 0},
    {API_GET, "/metrics", api_metrics, NULL, 0},
    {API_POST, "/api/v1/waiting-queues", api_queue_enter, api_queue_enter_check, 0},
    {API_GET, "/api/v1/waiting-queues", api_queue_status, NULL, 0},
    {API_DELETE, "/api/v1/waiting-queues", api_queue_leave, NULL, 0},
    {API_GET, "/api/v1/waiting-queues/stats", api_queue_stats, NULL, 0},
    {API_PUT, "/api/v1/admin/waiting-room", api_admin_waiting_room, NULL, 0},
    {API_GET, "/api/v1/concerts", api_concerts_list, NULL, 0},
    {API_GET, "/api/v1/concerts/{cid}/sessions", api_sessions_list, NULL, 0},
    {API_GET, "/api/v1/concerts/{cid}/sessions/{sid}/seats", api_seats_list, NULL, 0},
    {API_POST, "/api/v1/concerts/{cid}/sessions/{sid}/reservations", api_reservation_create,
     api_reservation_check, 1},
    {API_GET, "/api/v1/reservations/{rid}", api_reservation_get, NULL, 0},
    {API_DELETE, "/api/v1/reservations/{rid}", api_reservation_cancel, NULL, 0},
    {API_GET, "/api/v1/users/{uid}/balance", api_balance_get, NULL, 0},
    {API_POST, "/api/v1/users/{uid}/balance/charge", api_balance_charge, api_balance_charge_check,
     1},
    {API_POST, "/api/v1/payments", api_payment_create, NULL, 0},
    {0, NULL, NULL, NULL, 0},
};
