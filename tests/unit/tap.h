/* Minimal TAP producer for unit tests: ok()/is()/done_testing(). */
#ifndef NP_TAP_H
#define NP_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_fail;

#define ok(cond, ...)                                                          \
  do {                                                                         \
    int ok_ = !!(cond);                                                        \
    tap_n++;                                                                   \
    if (!ok_)                                                                  \
      tap_fail++;                                                              \
    printf("%sok %d - ", ok_ ? "" : "not ", tap_n);                            \
    printf(__VA_ARGS__);                                                       \
    printf("\n");                                                              \
    if (!ok_)                                                                  \
      printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
    fflush(stdout);                                                            \
  } while (0)

#define is_int(got, want, ...)                                                 \
  do {                                                                         \
    long long g_ = (long long)(got), w_ = (long long)(want);                   \
    ok(g_ == w_, __VA_ARGS__);                                                 \
    if (g_ != w_)                                                              \
      printf("#   got %lld, want %lld\n", g_, w_);                             \
  } while (0)

#define is_str(got, want, ...)                                                 \
  do {                                                                         \
    const char *g_ = (got), *w_ = (want);                                      \
    int e_ = g_ && w_ && strcmp(g_, w_) == 0;                                  \
    ok(e_, __VA_ARGS__);                                                       \
    if (!e_)                                                                   \
      printf("#   got \"%s\"\n#  want \"%s\"\n", g_ ? g_ : "(null)",           \
             w_ ? w_ : "(null)");                                              \
  } while (0)

#define is_mem(got, glen, want, wlen, ...)                                     \
  ok((size_t)(glen) == (size_t)(wlen) &&                                       \
         memcmp((got), (want), (size_t)(wlen)) == 0,                           \
     __VA_ARGS__)

static inline int done_testing(void) {
  printf("1..%d\n", tap_n);
  return tap_fail ? 1 : 0;
}

#endif
