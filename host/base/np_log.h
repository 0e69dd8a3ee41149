/* Logging: one line per event on stderr, "LEVEL SUBSYS EVENT key=value ...".
 * Journald friendly (no timestamps unless asked: journald adds its own). */
#ifndef NP_LOG_H
#define NP_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "natpeer/plugin.h"

#define NP_PRINTF(f, a) __attribute__((format(printf, f, a)))

void np_log_set_level(int level);
int np_log_get_level(void);
/* Parse "error|warn|info|debug"; returns the level or -1. */
int np_log_level_parse(const char *s);
const char *np_log_level_name(int level);
/* Prefix each line with an ISO-8601 UTC timestamp (for terminals/files). */
void np_log_set_timestamps(int on);

/* np_log(NP_LOG_INFO, "quic", "conn-open peer=%s", id) */
void np_log(int level, const char *subsys, const char *fmt, ...) NP_PRINTF(3, 4);
void np_vlog(int level, const char *subsys, const char *fmt, va_list ap)
    NP_PRINTF(3, 0);

/* Copy |src| (|len| bytes, possibly hostile) into |dst| as a loggable token:
 * printable ASCII kept, others as \xNN, quotes escaped, cut at |cap|-1
 * with "...". Returns dst. */
char *np_log_escape(char *dst, size_t cap, const void *src, size_t len);

/* A per-event budget for lines that the network can trigger without
 * authenticating (forged handshakes): at most |burst| lines per second;
 * the first line of the next second reports how many were dropped.
 * Zero-initialise one per event kind. */
typedef struct np_ratelimit {
  int64_t window; /* second of the monotonic clock */
  unsigned n, dropped;
} np_ratelimit;
/* 1 if this line may be logged. */
int np_ratelimit_ok(np_ratelimit *r, unsigned burst, const char *subsys,
                    const char *event);

#define np_error(sub, ...) np_log(NP_LOG_ERROR, sub, __VA_ARGS__)
#define np_warn(sub, ...) np_log(NP_LOG_WARN, sub, __VA_ARGS__)
#define np_info(sub, ...) np_log(NP_LOG_INFO, sub, __VA_ARGS__)
#define np_debug(sub, ...)                                                     \
  do {                                                                         \
    if (np_log_get_level() >= NP_LOG_DEBUG)                                    \
      np_log(NP_LOG_DEBUG, sub, __VA_ARGS__);                                  \
  } while (0)

#endif
