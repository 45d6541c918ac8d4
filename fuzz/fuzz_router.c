/* fuzz_router.c -- the router and its typed path parameters over the real
 * route tables: any method byte and path must give one of the four
 * outcomes, with parameters that are positive int64s. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct api_route *const tables[] = {api_routes_v1, api_routes_classic, api_routes_web,
                                                 NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct router *rt;
    if (!rt) rt = router_create(tables);
    if (size < 1) return 0;
    int method = 1 << (data[0] % 7);
    char *path = malloc(size);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = '\0';
    struct route_match m;
    int r = router_match(rt, method, path, &m);
    if (r == ROUTE_OK) {
        if (!m.route || m.slot < 1) abort();
        for (int i = 0; i < API_MAX_PARAMS; i++)
            if (m.params[i] < 0) abort();
    } else if (r == ROUTE_BAD_METHOD) {
        if (!m.allow) abort();
    } else if (r == ROUTE_BAD_PARAM) {
        if (!m.bad_param) abort();
    } else if (r != ROUTE_NOT_FOUND) {
        abort();
    }
    char allow[64];
    router_allow_header(m.allow, allow, sizeof(allow));
    free(path);
    return 0;
}
