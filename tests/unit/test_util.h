/* Helpers shared by unit tests: temp dirs, file copies, running a loop until
 * a condition holds (bounded in time). */
#ifndef NP_TEST_UTIL_H
#define NP_TEST_UTIL_H

#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline const char *tu_builddir(void) {
  const char *b = getenv("top_builddir");
  return b ? b : ".";
}

static inline const char *tu_srcdir(void) {
  const char *b = getenv("top_srcdir");
  return b ? b : ".";
}

/* mkdtemp under $TMPDIR; the caller removes it with tu_rmrf. */
static inline char *tu_tmpdir(char *buf, size_t cap) {
  const char *t = getenv("TMPDIR");
  snprintf(buf, cap, "%s/np-test-XXXXXX", t ? t : "/tmp");
  return mkdtemp(buf);
}

static inline void tu_rmrf(const char *dir) {
  char cmd[4200];
  if (dir == NULL || strlen(dir) < 8)
    return;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "# rm -rf %s failed\n", dir);
}

/* Copy |src| to |dst| through a temp file and rename(), as plugins must be
 * installed (never overwrite a mapped .so in place). */
static inline int tu_install(const char *src, const char *dst) {
  char tmp[4200], buf[65536];
  ssize_t n;
  int in, out, rc = 0;
  snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
  if ((in = open(src, O_RDONLY)) < 0)
    return -1;
  if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) {
    close(in);
    return -1;
  }
  while ((n = read(in, buf, sizeof(buf))) > 0)
    if (write(out, buf, (size_t)n) != n)
      rc = -1;
  close(in);
  if (close(out) != 0 || n < 0)
    rc = -1;
  if (rc == 0 && rename(tmp, dst) != 0)
    rc = -1;
  return rc;
}

static inline int tu_write(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  size_t n = strlen(text);
  if (fd < 0)
    return -1;
  if (write(fd, text, n) != (ssize_t)n) {
    close(fd);
    return -1;
  }
  fchmod(fd, mode);
  return close(fd);
}

/* Run |ev| until *flag becomes nonzero or |secs| pass. Returns *flag. */
static inline int tu_run_until(struct ev_loop *ev, const int *flag,
                               double secs) {
  double end = ev_time() + secs;
  while (!*flag && ev_time() < end) {
    ev_now_update(ev);
    ev_run(ev, EVRUN_NOWAIT);
    if (!*flag)
      usleep(200);
  }
  return *flag;
}

#endif
