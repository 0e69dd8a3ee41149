#include "np_err.h"

#define GEN_STR(name, code, msg)                                               \
  case NP_E##name:                                                             \
    return msg;
#define GEN_NAME(name, code, msg)                                              \
  case NP_E##name:                                                             \
    return "NP_E" #name;

const char *np_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
    NP_ERRORS(GEN_STR)
  default:
    return "unknown error";
  }
}

const char *np_errname(int err) {
  switch (err) {
  case 0:
    return "NP_OK";
    NP_ERRORS(GEN_NAME)
  default:
    return "NP_E?";
  }
}

#define GEN_KNOWN(name, code, msg)                                             \
  case NP_E##name:                                                             \
    return 1;

int np_err_known(int err) {
  switch (err) {
  case 0:
    return 1;
    NP_ERRORS(GEN_KNOWN)
  default:
    return 0;
  }
}
