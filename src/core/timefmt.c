/*
 * Time formatting and parsing (see timefmt.h). Calendar conversion uses
 * timegm/gmtime_r so leap years and month lengths come from libc.
 */
#include "mamori/timefmt.h"

#include "mamori/status.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *mm_time_format_iso(uint64_t ns, char buf[MM_TIME_STRLEN])
{
	time_t secs = (time_t)(ns / MM_NS_PER_SEC);
	unsigned micros = (unsigned)(ns % MM_NS_PER_SEC / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, MM_TIME_STRLEN, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
	return buf;
}

char *mm_time_format_epoch(uint64_t ns, char buf[MM_TIME_STRLEN])
{
	snprintf(buf, MM_TIME_STRLEN, "%llu.%06llu", (unsigned long long)(ns / MM_NS_PER_SEC),
		 (unsigned long long)(ns % MM_NS_PER_SEC / 1000));
	return buf;
}

uint64_t mm_time_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * MM_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Parses "123" or "1.5" into a value scaled by 1e9 (fixed point), advancing *p. */
static int parse_decimal_e9(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t whole = 0, frac = 0, scale = MM_NS_PER_SEC;
	int digits = 0;

	while (isdigit((unsigned char)*s)) {
		if (whole > (UINT64_MAX / MM_NS_PER_SEC - 9) / 10)
			return MM_EINVAL;
		whole = whole * 10 + (uint64_t)(*s++ - '0');
		digits++;
	}
	if (*s == '.') {
		s++;
		while (isdigit((unsigned char)*s)) {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*s - '0') * scale;
			}
			s++;
			digits++;
		}
	}
	if (digits == 0)
		return MM_EINVAL;
	*out = whole * MM_NS_PER_SEC + frac;
	*p = s;
	return 0;
}

int mm_duration_parse(const char *text, uint64_t *out_ns)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "ms", 1000000 }, { "s", MM_NS_PER_SEC },
		{ "m", 60 * MM_NS_PER_SEC }, { "h", 3600 * MM_NS_PER_SEC },
		{ "d", 86400 * MM_NS_PER_SEC }, { "w", 7 * 86400 * MM_NS_PER_SEC },
		{ "y", 365 * 86400 * MM_NS_PER_SEC }, /* retention ceilings are given in years */
	};
	const char *p = text;
	uint64_t value_e9;

	if (parse_decimal_e9(&p, &value_e9) < 0)
		return mm_fail(MM_EINVAL, "'%s' is not a duration (e.g. 300s, 5m, 1.5h)", text);
	if (*p == '\0') {
		*out_ns = value_e9;
		return 0;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].unit) == 0) {
			/* value_e9 / 1e9 * unit, without overflowing for large units */
			long double ns = (long double)value_e9 / MM_NS_PER_SEC * units[i].ns;
			if (ns > (long double)UINT64_MAX)
				break;
			*out_ns = (uint64_t)ns;
			return 0;
		}
	}
	return mm_fail(MM_EINVAL, "'%s': unknown duration unit (use ns, us, ms, s, m, h, d, w, y)", text);
}

static int parse_fixed(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return MM_EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int parse_absolute(const char *text, uint64_t *out_ns)
{
	const char *p = text;
	struct tm tm = { 0 };
	uint64_t frac = 0;
	long offset = 0;
	time_t secs;

	if (parse_fixed(&p, 4, &tm.tm_year) < 0 || *p++ != '-' || parse_fixed(&p, 2, &tm.tm_mon) < 0 ||
	    *p++ != '-' || parse_fixed(&p, 2, &tm.tm_mday) < 0)
		return MM_EINVAL;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (parse_fixed(&p, 2, &tm.tm_hour) < 0 || *p++ != ':' || parse_fixed(&p, 2, &tm.tm_min) < 0)
			return MM_EINVAL;
		if (*p == ':') {
			p++;
			if (parse_fixed(&p, 2, &tm.tm_sec) < 0)
				return MM_EINVAL;
			if (*p == '.') {
				uint64_t scale = MM_NS_PER_SEC;
				p++;
				if (!isdigit((unsigned char)*p))
					return MM_EINVAL;
				while (isdigit((unsigned char)*p)) {
					scale /= 10;
					frac += (uint64_t)(*p++ - '0') * scale;
				}
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om;
			if (parse_fixed(&p, 2, &oh) < 0 || *p++ != ':' || parse_fixed(&p, 2, &om) < 0)
				return MM_EINVAL;
			offset = sign * (oh * 3600L + om * 60L);
		}
	}
	if (*p != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
		return MM_EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	secs = timegm(&tm) - offset;
	if (secs < 0)
		return MM_EINVAL;
	*out_ns = (uint64_t)secs * MM_NS_PER_SEC + frac;
	return 0;
}

int mm_time_parse(const char *text, uint64_t now_ns, uint64_t *out_ns)
{
	uint64_t v;

	if (strcmp(text, "now") == 0) {
		*out_ns = now_ns;
		return 0;
	}
	if (text[0] == '-' || text[0] == '+') {
		if (mm_duration_parse(text + 1, &v) < 0)
			return mm_fail(MM_EINVAL, "'%s' is not a relative time (e.g. -1h, -30m)", text);
		if (text[0] == '-')
			*out_ns = v > now_ns ? 0 : now_ns - v;
		else
			*out_ns = now_ns + v;
		return 0;
	}
	if (text[0] == '@') {
		const char *p = text + 1;
		if (parse_decimal_e9(&p, &v) < 0 || *p != '\0')
			return mm_fail(MM_EINVAL, "'%s' is not epoch seconds", text);
		*out_ns = v;
		return 0;
	}
	if (parse_absolute(text, out_ns) < 0)
		return mm_fail(MM_EINVAL,
			       "'%s' is not a time (use 2026-01-01T00:00Z, @EPOCH, -1h or now)", text);
	return 0;
}
