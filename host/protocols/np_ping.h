/* Ping (/ipfs/ping/1.0.0) as a host module (np_module.h): answers pings
 * by echoing, and sends them as the swarm's prober (np_swarm_set_prober)
 * on a given connection: for liveness, and for np_net_ops ping (which the
 * control socket uses).
 * A ping is NP_PING_LEN random bytes the remote must echo; the time from
 * writing them to reading the whole echo is the round-trip time, also kept
 * in the peerstore (np_ps_peer.rtt_us). */
#ifndef NP_PING_H
#define NP_PING_H

#include "np_module.h"

#define NP_PING_PROTOCOL "/ipfs/ping/1.0.0"
#define NP_PING_LEN 32

extern const np_module np_ping_module;

#endif
