#include "np_log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int log_level = NP_LOG_INFO;
static int log_ts = 0;
static const char *const names[] = {"error", "warn", "info", "debug"};

void np_log_set_level(int level) { log_level = level; }
int np_log_get_level(void) { return log_level; }
void np_log_set_timestamps(int on) { log_ts = on; }

int np_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcasecmp(s, names[i]) == 0)
      return i;
  return -1;
}

const char *np_log_level_name(int level) {
  return level >= 0 && level < 4 ? names[level] : "?";
}

void np_vlog(int level, const char *subsys, const char *fmt, va_list ap) {
  char line[2048];
  size_t n = 0;
  int r;
  if (level > log_level)
    return;
  if (log_ts) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n += strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ",
                          ts.tv_nsec / 1000000);
  }
  r = snprintf(line + n, sizeof(line) - n, "%s %s ", np_log_level_name(level),
               subsys);
  if (r > 0)
    n += (size_t)r;
  if (n < sizeof(line)) {
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (r > 0)
      n += (size_t)r;
  }
  if (n >= sizeof(line) - 1)
    n = sizeof(line) - 2;
  line[n++] = '\n';
  /* One write per line keeps lines whole when several processes share the
   * terminal or journal. */
  fwrite(line, 1, n, stderr);
  fflush(stderr);
}

void np_log(int level, const char *subsys, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  np_vlog(level, subsys, fmt, ap);
  va_end(ap);
}

char *np_log_escape(char *dst, size_t cap, const void *src, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = src;
  size_t o = 0;
  if (cap == 0)
    return dst;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    size_t need = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? 1
                  : (c == '"' || c == '\\')                        ? 2
                                                                   : 4;
    if (o + need + 4 > cap) {
      if (o + 4 <= cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
      }
      break;
    }
    if (need == 1) {
      dst[o++] = (char)c;
    } else if (need == 2) {
      dst[o++] = '\\';
      dst[o++] = (char)c;
    } else {
      dst[o++] = '\\';
      dst[o++] = 'x';
      dst[o++] = hex[c >> 4];
      dst[o++] = hex[c & 15];
    }
  }
  dst[o] = '\0';
  return dst;
}

int np_ratelimit_ok(np_ratelimit *r, unsigned burst, const char *subsys,
                    const char *event) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  if ((int64_t)ts.tv_sec != r->window) {
    if (r->dropped)
      np_log(NP_LOG_INFO, subsys, "log-suppressed event=%s lines=%u", event,
             r->dropped);
    r->window = (int64_t)ts.tv_sec;
    r->n = 0;
    r->dropped = 0;
  }
  if (r->n >= burst) {
    /* Say at once that lines are being left out; how many, at the first
     * line of a later second. */
    if (r->dropped++ == 0)
      np_log(NP_LOG_INFO, subsys,
             "log-limited event=%s budget=%u/s (further lines this second "
             "are counted, not logged)",
             event, burst);
    return 0;
  }
  r->n++;
  return 1;
}
