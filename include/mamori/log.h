/*
 * Logging for people: one line per event on stderr, prefixed with the
 * program name and level. Hot paths never log per packet or per record;
 * they count, and the counters are printed at the end of a job.
 */
#ifndef MAMORI_LOG_H
#define MAMORI_LOG_H

enum mm_log_level { MM_LOG_ERROR, MM_LOG_WARN, MM_LOG_INFO, MM_LOG_DEBUG };

void mm_log_set_level(enum mm_log_level level);
enum mm_log_level mm_log_get_level(void);
void mm_log(enum mm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mm_error(...) mm_log(MM_LOG_ERROR, __VA_ARGS__)
#define mm_warn(...) mm_log(MM_LOG_WARN, __VA_ARGS__)
#define mm_info(...) mm_log(MM_LOG_INFO, __VA_ARGS__)
#define mm_debug(...) mm_log(MM_LOG_DEBUG, __VA_ARGS__)

#endif
