/* timeutil.h -- clocks and time formats.
 *
 * Times inside concertd are int64 milliseconds since the Unix epoch (wall
 * clock) or since an arbitrary point (monotonic). The API shows wall times
 * as RFC 3339 UTC strings with a Z suffix: "2026-12-24T10:00:00Z". */
#pragma once
#include <stddef.h>
#include <stdint.h>

int64_t time_now_ms(void);  /* CLOCK_REALTIME in ms */
int64_t time_mono_ms(void); /* CLOCK_MONOTONIC in ms */
int64_t time_mono_us(void); /* CLOCK_MONOTONIC in µs, for latencies */

struct timespec;
/* The CLOCK_MONOTONIC instant after_ms from now, as an absolute deadline for
 * pthread_cond_timedwait on a condition variable using that clock. */
void time_mono_deadline(int64_t after_ms, struct timespec *out);

/* Writes "YYYY-MM-DDTHH:MM:SSZ" (seconds precision) into buf (>= 21 bytes).
 * Returns the length written (20). */
size_t time_format_rfc3339(int64_t epoch_ms, char *buf, size_t len);

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS" followed by "Z" or "+HH:MM"/"-HH:MM",
 * optional fractional seconds ignored. Returns 0 and sets *epoch_ms, or
 * ERR_INVALID for anything else (including out-of-range fields). */
int time_parse_rfc3339(const char *s, int64_t *epoch_ms);

/* Parses a duration: "300" (seconds), "300s", "250ms", "5m", "1h", "2d".
 * Returns 0 and sets *ms, or ERR_INVALID (empty, junk, negative, overflow). */
int time_parse_duration(const char *s, int64_t *ms);
