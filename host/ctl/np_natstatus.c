#include "np_natstatus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_autonat.h"
#include "np_conf.h"
#include "np_dcutr.h"
#include "np_err.h"
#include "np_event.h"
#include "np_loop.h"
#include "np_obsaddr.h"
#include "np_relayc.h"

#define MAX_ADDRS 16

/* Everything the message points to, freed at once. */
#define MAX_HELD 16 /* relays the client reports */

struct np_natstatus {
  uint8_t addr[MAX_ADDRS][128];
  ProtobufCBinaryData confirmed[MAX_ADDRS];
  /* DCUtR: the last exchange with each peer */
  np_dcutr_status punch[NP_DCUTR_HISTORY];
  Np__Ctl__NpPunch pmsg[NP_DCUTR_HISTORY];
  Np__Ctl__NpPunch *pptr[NP_DCUTR_HISTORY];
  /* held: the relay client's reservations (np_relayc) */
  np_relayc_resv resv[MAX_HELD];
  Np__Ctl__NpReservation held[MAX_HELD], *heldp[MAX_HELD];
  ProtobufCBinaryData held_addrs[MAX_HELD][NP_RELAYC_ADDRS_MAX];
  char held_state[MAX_HELD][64];
};

/* The hole punches np_dcutr remembers, most recent first. */
static void add_punches(np_host *h, Np__Ctl__NpNat *out, np_natstatus *a) {
  np_dcutr *d = np_host_module(h, "dcutr");
  size_t n = d ? np_dcutr_status_list(d, a->punch, NP_DCUTR_HISTORY) : 0;
  if (n > NP_DCUTR_HISTORY)
    n = NP_DCUTR_HISTORY;
  for (size_t i = 0; i < n; i++) {
    const np_dcutr_status *st = &a->punch[i];
    Np__Ctl__NpPunch *m = &a->pmsg[i];
    np__ctl__np_punch__init(m);
    m->peer.data = (uint8_t *)(uintptr_t)st->peer.bytes;
    m->peer.len = st->peer.len;
    m->state = (char *)np_dcutr_state_name(st->state);
    m->role = st->initiator ? "initiator" : "responder";
    m->has_attempts = 1;
    m->attempts = st->attempts;
    if (st->why[0])
      m->error = (char *)(uintptr_t)st->why;
    if (st->ms >= 0) {
      m->has_ms = 1;
      m->ms = (uint64_t)st->ms;
    }
    if (st->addr_len) {
      m->has_addr = 1;
      m->addr.data = (uint8_t *)(uintptr_t)st->addr;
      m->addr.len = st->addr_len;
    }
    a->pptr[i] = m;
  }
  out->n_punches = n;
  out->punches = a->pptr;
}

/* The relay client's relays in use: held, being reserved, or failed. */
static void add_held(np_natstatus *a, np_relayc *rc, Np__Ctl__NpNat *out) {
  size_t n = np_relayc_reservations(rc, a->resv, MAX_HELD), k = 0;
  if (n > MAX_HELD)
    n = MAX_HELD;
  for (size_t i = 0; i < n; i++) {
    const np_relayc_resv *v = &a->resv[i];
    Np__Ctl__NpReservation *r = &a->held[k];
    if (v->state == NP_RELAYC_IDLE)
      continue;
    np__ctl__np_reservation__init(r);
    r->peer.data = (uint8_t *)v->relay.bytes;
    r->peer.len = v->relay.len;
    if (v->expire) {
      r->has_expire_s = 1;
      r->expire_s = v->expire;
    }
    for (size_t j = 0; j < v->naddrs && j < NP_RELAYC_ADDRS_MAX; j++) {
      a->held_addrs[k][j].data = (uint8_t *)v->addrs[j];
      a->held_addrs[k][j].len = v->addr_lens[j];
    }
    r->n_addrs = v->naddrs < NP_RELAYC_ADDRS_MAX ? v->naddrs
                                                 : NP_RELAYC_ADDRS_MAX;
    r->addrs = a->held_addrs[k];
    if (v->state == NP_RELAYC_RESERVED) {
      r->has_limit_duration_s = r->has_limit_bytes = 1;
      r->limit_duration_s = v->limit_duration;
      r->limit_bytes = v->limit_data;
    }
    if (v->state == NP_RELAYC_RESERVED)
      snprintf(a->held_state[k], sizeof(a->held_state[k]), "%s",
               v->refreshing ? "refreshing" : "ok");
    else if (v->state == NP_RELAYC_BACKOFF && v->last_status)
      snprintf(a->held_state[k], sizeof(a->held_state[k]),
               "failed: status %d", v->last_status);
    else if (v->state == NP_RELAYC_BACKOFF)
      snprintf(a->held_state[k], sizeof(a->held_state[k]), "failed: %s",
               np_errname(v->last_err));
    else
      snprintf(a->held_state[k], sizeof(a->held_state[k]), "%s",
               np_relayc_state_name(v->state));
    r->state = a->held_state[k];
    a->heldp[k] = r;
    k++;
  }
  out->n_held = k;
  out->held = a->heldp;
}

static const char *reach_name(int r) {
  return r == NP_REACH_PUBLIC    ? "public"
         : r == NP_REACH_PRIVATE ? "private"
                                 : "unknown";
}

int np_natstatus_build(np_host *h, Np__Ctl__NpNat *out, np_natstatus **arena) {
  np_natstatus *a = calloc(1, sizeof(*a));
  const np_conf *conf = np_host_conf(h);
  np_obsaddr *obs = np_host_module(h, "obsaddr");
  np_autonat *an = np_host_module(h, "autonat");
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
  if (an) { /* AutoNAT's view (it also applies a forced reachability) */
    np_autonat_status st;
    np_autonat_get_status(an, &st);
    out->reachability = (char *)reach_name(st.reachability);
    out->reachability_source = st.forced      ? "config"
                               : st.client_on ? "autonat"
                                              : "none";
    out->has_confidence = 1;
    out->confidence = st.confidence;
    out->has_autonat_service = 1;
    out->autonat_service = st.service_on;
    out->has_autonat_served = 1;
    out->autonat_served = st.served_ok + st.served_error;
    out->has_autonat_refused = 1;
    out->autonat_refused = st.refused + st.bad_requests;
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
  add_punches(h, out, a);
  {
    np_relayc *rc = np_host_module(h, "relayc");
    if (rc)
      add_held(a, rc, out);
  }
  return 0;
}

void np_natstatus_free(np_natstatus *arena) { free(arena); }
