/* Observed addresses (issue 10): what peers tell us, in identify, about
 * the address our connection came from. One report proves nothing (a peer
 * may lie, a NAT may map per destination); an address is *confirmed* once
 * |confirmations| peers in distinct observer groups (their IPv4 address,
 * or IPv6 /56) reported it within |ttl_ms|, as go-libp2p does with 4.
 *
 * From the same reports the NAT's mapping behaviour is learned: when one
 * local socket is seen under one external port by observers at different
 * IPs, the mapping is endpoint-independent (a confirmed address can be
 * dialed by anyone, subject to filtering); different external ports mean
 * endpoint-dependent mapping ("symmetric": hole punching needs luck or a
 * relay).
 *
 * Sans-I/O: no clock reads (every time is an argument), no sockets. The
 * module glue (np_obsaddr_module) feeds it from NP_EV_OBSERVED_ADDR. */
#ifndef NP_OBSADDR_H
#define NP_OBSADDR_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_module.h"
#include "np_peerid.h"

typedef struct np_obsaddr np_obsaddr; /* opaque; one thread */

typedef struct np_obsaddr_config {
  size_t confirmations; /* distinct observer groups (4) */
  uint64_t ttl_ms;      /* a report counts this long (30 min) */
  size_t max_addrs;     /* observed addresses tracked (64) */
  size_t max_locals;    /* local sockets tracked for mapping (16) */
} np_obsaddr_config;

void np_obsaddr_config_default(np_obsaddr_config *c);

/* NULL |cfg|: defaults. NP_EINVAL for a zero field, NP_ENOMEM. */
int np_obsaddr_new(np_obsaddr **po, const np_obsaddr_config *cfg);
void np_obsaddr_del(np_obsaddr *o);

/* One report: |observer| (the peer's address on that connection, binary
 * multiaddr) saw us at |observed| on the connection whose local address is
 * |local|. Addresses that are not /ip4|ip6/.../tcp|udp/... are ignored, as
 * are reports whose observer has no IP. Returns 1 when this report made
 * |observed| newly confirmed, 0 otherwise, NP_EINVAL. */
int np_obsaddr_add(np_obsaddr *o, const uint8_t *local, size_t llen,
                   const uint8_t *observed, size_t olen,
                   const uint8_t *observer, size_t rlen, uint64_t now);

/* The confirmed addresses (most reported first), up to |max|; returns how
 * many are confirmed. Pointers are valid until the next add or expire. */
size_t np_obsaddr_confirmed(const np_obsaddr *o, uint64_t now,
                            const uint8_t **bins, size_t *lens, size_t max);

enum np_mapping {
  NP_MAPPING_UNKNOWN = 0,     /* not enough distinct observers yet */
  NP_MAPPING_INDEPENDENT = 1, /* same external port for every observer */
  NP_MAPPING_DEPENDENT = 2    /* external port varies by destination */
};
/* The mapping behaviour for UDP (|udp| 1) or TCP sockets, from unexpired
 * reports: DEPENDENT if any local socket was seen under two external
 * ports by observers at two IPs, else INDEPENDENT if one was seen under
 * one port by two or more, else UNKNOWN. */
int np_obsaddr_mapping(const np_obsaddr *o, int udp, uint64_t now);
const char *np_obsaddr_mapping_name(int m); /* "unknown", "independent"… */

/* Drop reports older than ttl_ms. */
void np_obsaddr_expire(np_obsaddr *o, uint64_t now);

/* The module: a tracker fed from identify (NP_EV_OBSERVED_ADDR) that logs
 * when an address is confirmed or the mapping behaviour is learned. Its
 * state is that np_obsaddr (np_daemon_module(d, "obsaddr")). */
extern const np_module np_obsaddr_module;

#endif
