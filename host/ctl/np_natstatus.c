#include "np_natstatus.h"

#include <stdlib.h>
#include <string.h>

#include "np_conf.h"
#include "np_err.h"
#include "np_event.h"
#include "np_loop.h"
#include "np_obsaddr.h"

#define MAX_ADDRS 16

/* Everything the message points to, freed at once. */
struct np_natstatus {
  uint8_t addr[MAX_ADDRS][128];
  ProtobufCBinaryData confirmed[MAX_ADDRS];
};

static const char *reach_name(int r) {
  return r == NP_REACH_PUBLIC    ? "public"
         : r == NP_REACH_PRIVATE ? "private"
                                 : "unknown";
}

int np_natstatus_build(np_host *h, Np__Ctl__NpNat *out, np_natstatus **arena) {
  np_natstatus *a = calloc(1, sizeof(*a));
  const np_conf *conf = np_host_conf(h);
  np_obsaddr *obs = np_host_module(h, "obsaddr");
  uint64_t now = np_now(np_host_loop(h));
  np__ctl__np_nat__init(out);
  *arena = a;
  if (a == NULL)
    return NP_ENOMEM;
  out->reachability = (char *)reach_name(NP_REACH_UNKNOWN);
  out->reachability_source = "none";
  if (conf->nat.reachability != NP_REACH_AUTO) {
    out->reachability = (char *)reach_name(conf->nat.reachability);
    out->reachability_source = "config";
  }
  if (obs) {
    const uint8_t *bins[MAX_ADDRS];
    size_t lens[MAX_ADDRS];
    size_t n = np_obsaddr_confirmed(obs, now, bins, lens, MAX_ADDRS);
    if (n > MAX_ADDRS)
      n = MAX_ADDRS;
    for (size_t i = 0; i < n; i++) {
      size_t l = lens[i] < sizeof(a->addr[0]) ? lens[i] : 0;
      memcpy(a->addr[i], bins[i], l);
      a->confirmed[i].data = a->addr[i];
      a->confirmed[i].len = l;
    }
    out->n_confirmed = n;
    out->confirmed = a->confirmed;
    out->mapping_udp = (char *)np_obsaddr_mapping_name(np_obsaddr_mapping(obs, 1, now));
    out->mapping_tcp = (char *)np_obsaddr_mapping_name(np_obsaddr_mapping(obs, 0, now));
  }
  return 0;
}

void np_natstatus_free(np_natstatus *arena) { free(arena); }
