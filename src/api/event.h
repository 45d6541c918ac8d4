/* event.h -- decoding an event layout file (docs/import-format.md) for
 * `concertd import`. Shape only: service/catalog checks the rules. */
#pragma once
#include <stddef.h>

struct arena;
struct store_event;

/* Decodes json (len bytes) into ev; strings and arrays live in a. Returns 0,
 * or ERR_INVALID with errbuf naming the field. */
int api_decode_event(const char *json, size_t len, struct arena *a, struct store_event *ev,
                     char *errbuf, size_t errlen);
