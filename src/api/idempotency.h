/* idempotency.h -- the Idempotency-Key header of charge and payment requests
 * (DESIGN.md 4.1, invariant 4), on the api/ side.
 *
 * Reads and checks the header, fingerprints the request (SHA-256 of method,
 * path and body) and fills the struct store_idem the store uses; sends a
 * stored response back byte for byte. Not here: storing and finding
 * responses (the store's charge and pay ops), the 24 h rule (service/booking). */
#pragma once
#include <stdint.h>

#include "api/api.h"
#include "store/store.h"

/* Fills idem from the request's Idempotency-Key, scoped to user_id; *use = 0
 * when there is no such header. ERR_INVALID with the 400 written for a bad
 * key. render and ctx are the caller's to set. */
int api_idem_begin(struct api_req *r, struct api_res *w, int64_t user_id, struct store_idem *idem,
                   int *use);
/* Answers with the stored response of idem (idem->replayed is set). */
void api_idem_replay(struct api_res *w, const struct store_idem *idem);
