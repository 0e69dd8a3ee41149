#include "np_conn.h"

const char *np_transport_name(int kind) {
  switch (kind) {
  case NP_TRANSPORT_QUIC:
    return "quic";
  case NP_TRANSPORT_TCP:
    return "tcp";
  case NP_TRANSPORT_MEM:
    return "mem";
  case NP_TRANSPORT_RELAY:
    return "relay";
  default:
    return "?";
  }
}
