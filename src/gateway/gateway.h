/* gateway.h -- the payment gateway port (DESIGN.md 1, 2).
 *
 * Charges a card payment by an idempotency key, and looks a charge up by
 * that key. The key is what makes retries safe: the gateway charges a key
 * at most once and answers every later request with the first outcome.
 *
 * A port is a struct of function pointers plus the adapter's own state:
 * adapters (http.c: libcurl) embed struct gateway as their first member.
 * Every op may be called from any thread at once.
 *
 * Outcomes, never errors: a timeout, a 5xx, a connection failure or an
 * answer that cannot be read is GW_UNKNOWN (the charge may or may not have
 * happened; ask again with lookup). Ops return 0, or ERR_INVALID for
 * arguments they refuse to send.
 *
 * Not here: retries, the circuit breaker, what a payment becomes
 * (service/payment.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

enum gw_outcome {
    GW_APPROVED = 1, /* charged */
    GW_DECLINED,     /* refused; nothing charged, and the key stays refused */
    GW_NOT_FOUND,    /* lookup: the gateway has no charge with this key */
    GW_UNKNOWN,      /* no usable answer */
};

#define GW_KEY_MAX 64
#define GW_CHARGE_ID_MAX 64

struct gw_result {
    int outcome;                          /* enum gw_outcome */
    char charge_id[GW_CHARGE_ID_MAX + 1]; /* APPROVED: the gateway's id ("" if it gave none) */
    int http_status;                      /* for logs: 0 when no answer came */
};

struct gateway;

struct gateway_ops {
    int (*charge)(struct gateway *g, const char *key, int64_t user_id, int64_t amount,
                  struct gw_result *out);
    /* APPROVED, DECLINED, NOT_FOUND or UNKNOWN. */
    int (*lookup)(struct gateway *g, const char *key, struct gw_result *out);
    /* Frees g. No op may run at the same time or after. */
    void (*close)(struct gateway *g);
};

struct gateway {
    const struct gateway_ops *ops;
};

const char *gateway_outcome_name(int outcome);

/* The HTTP adapter (http.c) for the gateway at base_url ("http://host:port",
 * see docs/gateway.md for the protocol); every request gives up after
 * timeout_ms. ERR_INVALID with errbuf set for a URL it cannot use. */
int gateway_http_open(const char *base_url, int64_t timeout_ms, struct gateway **out, char *errbuf,
                      size_t errlen);
