/* routes.c -- the v1 route table. Each row: allowed methods, path pattern
 * with typed {id} parameters, handler. http/router.c serves it. */
#include "api/routes.h"

const struct api_route api_routes_v1[] = {
    {API_GET, "/health/live", api_health_live},
    {API_GET, "/health/ready", api_health_ready},
    {API_GET, "/metrics", api_metrics},
    {API_POST, "/api/v1/waiting-queues", api_queue_enter},
    {API_GET, "/api/v1/waiting-queues", api_queue_status},
    {API_DELETE, "/api/v1/waiting-queues", api_queue_leave},
    {API_GET, "/api/v1/waiting-queues/stats", api_queue_stats},
    {API_PUT, "/api/v1/admin/waiting-room", api_admin_waiting_room},
    {API_GET, "/api/v1/concerts", api_concerts_list},
    {API_GET, "/api/v1/concerts/{cid}/sessions", api_sessions_list},
    {API_GET, "/api/v1/concerts/{cid}/sessions/{sid}/seats", api_seats_list},
    {API_POST, "/api/v1/concerts/{cid}/sessions/{sid}/reservations", api_reservation_create},
    {API_GET, "/api/v1/reservations/{rid}", api_reservation_get},
    {API_DELETE, "/api/v1/reservations/{rid}", api_reservation_cancel},
    {API_GET, "/api/v1/users/{uid}/balance", api_balance_get},
    {API_POST, "/api/v1/users/{uid}/balance/charge", api_balance_charge},
    {API_POST, "/api/v1/payments", api_payment_create},
    {0, NULL, NULL},
};
