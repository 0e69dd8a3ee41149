/* Error codes (defined in the SDK header so plugins see the same numbers). */
#ifndef NP_ERR_H
#define NP_ERR_H

#include <stddef.h>
#include <sys/types.h>
#include "natpeer/plugin.h"

/* Signed size: bytes produced/consumed, or a negative NP_E* code. */
typedef ssize_t np_ssize;

/* Human text of |err| ("timed out"); unknown codes give "unknown error". */
const char *np_strerror(int err);
/* Symbolic name of |err| ("NP_ETIMEDOUT"); unknown codes give "NP_E?". */
const char *np_errname(int err);
/* 1 if |err| is 0 or one of the NP_E* codes. */
int np_err_known(int err);

#define np_container_of(ptr, type, member)                                     \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define NP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
