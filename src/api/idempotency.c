/* idempotency.c -- Idempotency-Key decoding and replay (see idempotency.h).
 *
 * The fingerprint covers the method, the path (which names the user of a
 * charge) and the body bytes exactly as sent: a retry must be the same
 * request byte for byte, and anything else under the same key is a
 * conflict. Keys are scoped per user ("u42"), so two users may pick the same
 * key; a key used for a charge and then for a payment is a conflict. */
#include "api/idempotency.h"

#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/sha256.h"
#include "service/booking.h"

static const char *method_name(int m) {
    switch (m) {
    case API_POST: return "POST";
    case API_PUT: return "PUT";
    case API_PATCH: return "PATCH";
    case API_DELETE: return "DELETE";
    default: return "GET";
    }
}

int api_idem_begin(struct api_req *r, struct api_res *w, int64_t user_id, struct store_idem *idem,
                   int *use) {
    memset(idem, 0, sizeof(*idem));
    *use = 0;
    const char *key = r->header(r, "Idempotency-Key");
    if (!key) return 0;
    char err[160];
    if (booking_check_idem_key(key, err, sizeof(err))) {
        api_fail(r, w, ERR_INVALID, err);
        return ERR_INVALID;
    }
    const char *m = method_name(r->method);
    struct sha256_part parts[5] = {
        {m, strlen(m)},
        {"\n", 1},
        {r->path, strlen(r->path)},
        {"\n", 1},
        {r->body ? r->body : "", r->body ? r->body_len : 0},
    };
    char *hash = arena_alloc(r->arena, SHA256_HEX_LEN + 1);
    sha256_hex(parts, 5, hash);
    idem->scope = arena_sprintf(r->arena, "u%lld", (long long)user_id);
    idem->key = arena_strdup(r->arena, key);
    idem->hash = hash;
    *use = 1;
    return 0;
}

void api_idem_replay(struct api_res *w, const struct store_idem *idem) {
    api_json(w, idem->status, idem->body, idem->len);
    api_add_header(w, "Idempotent-Replayed", "true");
}
