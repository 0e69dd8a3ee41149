/* The libp2p host layer over np_quic: connections to peers (one reused per
 * peer), multistream-select on every stream, the built-in protocols
 * (identify, identify/push, ping), unary calls in hivemind's wire format
 * both ways, raw streams for stream handlers, and the np_net_ops the
 * control socket and plugins use. */
#ifndef NP_SWARM_H
#define NP_SWARM_H

#include <stddef.h>

typedef struct np_host np_host;
typedef struct np_swarm np_swarm;

#define NP_PING_PROTOCOL "/ipfs/ping/1.0.0"

/* Create the TLS certificate and QUIC endpoint of |h|, listen on every
 * [host] listen address, and install the network into |h| (np_host_set_net
 * and the remote-call hook). On error |err| gets one line naming the
 * address or the failing step. */
int np_swarm_new(np_swarm **ps, np_host *h, char *err, size_t errlen);
/* Close every connection (calls and streams fail with NP_ECANCELED) and
 * uninstall from the host. NULL is fine. */
void np_swarm_del(np_swarm *s);

/* This host's listen addresses with /p2p/ID, as text, one per call
 * (i-th); NULL past the end. For logs and the start-up banner. */
const char *np_swarm_addr_text(np_swarm *s, size_t i);

#endif
