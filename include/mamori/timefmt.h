/*
 * Time values are uint64_t nanoseconds since the Unix epoch, UTC, everywhere.
 * This header turns them into text and back, and parses durations.
 */
#ifndef MAMORI_TIMEFMT_H
#define MAMORI_TIMEFMT_H

#include <stdint.h>

#define MM_NS_PER_SEC 1000000000ULL
#define MM_TIME_STRLEN 64

/* "2026-01-01T00:00:00.123456Z" (microsecond precision); returns buf. */
char *mm_time_format_iso(uint64_t ns, char buf[MM_TIME_STRLEN]);

/* "1767225600.123456" (seconds with microseconds, as Zeek logs write); returns buf. */
char *mm_time_format_epoch(uint64_t ns, char buf[MM_TIME_STRLEN]);

/* Current wall-clock time in nanoseconds. */
uint64_t mm_time_now_ns(void);

/*
 * Parses a duration: a decimal number with unit ns, us, ms, s, m, h, d, w
 * or y (365 days) ("300s", "1.5h", "5m", "2y"); a bare number is seconds.
 * 0 or MM_EINVAL.
 */
int mm_duration_parse(const char *text, uint64_t *out_ns);

/*
 * Parses an absolute time (RFC 3339 / ISO 8601: "2026-01-01", "2026-01-01T00:00Z",
 * "2026-01-01T00:00:00.5+09:00", or epoch seconds "@1767225600") or a time
 * relative to now ("-1h", "-30m", "now"). 0 or MM_EINVAL.
 */
int mm_time_parse(const char *text, uint64_t now_ns, uint64_t *out_ns);

#endif
