/* Circuit relay v2 transport (libp2p-wire.md §13): an np_transport of kind
 * NP_TRANSPORT_RELAY whose connections run over a stream through a relay.
 *
 * Dialing <relay addr>/p2p/RELAY/p2p-circuit/p2p/TARGET connects to RELAY
 * (np_net_ops connect with the relay part), opens a hop stream on a direct
 * (not limited) connection to it, sends HopMessage{CONNECT, peer=TARGET},
 * reads the STATUS and, on OK, runs the upgrade (§10: Noise initiator +
 * yamux) over the hop stream, expecting TARGET. Inbound circuits arrive
 * as stop streams (np_trelay_accept_stop): StopMessage{CONNECT, peer=S}
 * is answered by the policy's status and, on OK, the stream is upgraded
 * as the responder expecting S. Every connection is marked limited; its
 * laddr and raddr are <relay addr>/p2p/RELAY/p2p-circuit.
 *
 * A circuit is never dialed over a circuit: addresses with two
 * /p2p-circuit are refused and the hop stream only goes on a connection
 * to the relay that is not itself limited. The transport does not listen:
 * reservations (np_relayc) make a host reachable.
 *
 * The byte stream under each upgrade is an np_bstream over the handler
 * side np_stream (write in chunks of what np_stream write accepts, pause,
 * FIN, reset as NP_ECLOSED); bytes that came behind the STATUS/CONNECT
 * message in the same read are the upgrade's first input. Loop thread
 * only. */
#ifndef NP_TRELAY_H
#define NP_TRELAY_H

#include <stddef.h>
#include <stdint.h>

#include "np_conn.h"
#include "np_upgrade.h"

typedef struct np_host np_host;
typedef struct np_stream np_stream;

/* Zero fields take the np_trelay_config_default value. */
typedef struct np_trelay_config {
  uint64_t hop_timeout_ms;  /* dial start (or stop stream) to STATUS; 15000 */
  uint32_t max_connections; /* circuits in + out, pending included; 64 */
  np_upgrade_config upgrade;
} np_trelay_config;

void np_trelay_config_default(np_trelay_config *cfg);

/* The transport of |h| (its loop, identity, np_net_ops and swarm are
 * reached through |h| when used); events to |cbs| (copied) with |ud| as
 * np_ttcp's. Returns 0, NP_EINVAL or NP_ENOMEM. Free with ops->del. */
int np_trelay_new(np_transport **pt, np_host *h, const np_trelay_config *cfg,
                  const np_conn_cbs *cbs, void *ud);

/* Who may open a circuit to us: the stop status to answer a CONNECT from
 * |src| through |relay| (NP_RELAYMSG_OK accepts). Without a policy every
 * relay is refused with PERMISSION_DENIED. */
typedef int (*np_trelay_policy_fn)(void *ud, const np_peerid *relay,
                                   const np_peerid *src);
void np_trelay_set_policy(np_transport *t, np_trelay_policy_fn fn, void *ud);

/* Take over the inbound stop stream |s| (from the stop handler's on_open;
 * its callbacks are replaced and it leaves its owner's list). Returns 0,
 * NP_EINVAL (|t| is not a relay transport), NP_ELIMIT (max_connections)
 * or NP_ENOMEM; on error |s| is reset. */
int np_trelay_accept_stop(np_transport *t, np_stream *s);

/* Split a circuit address: |relay_len| gets the length of the relay part
 * (up to and including /p2p/RELAY), |relay| the relay, |target| the
 * peer after /p2p-circuit (|*has_target| 0 when there is none). Returns
 * 0, NP_ENOTSUP (not a circuit address, a circuit over a circuit, or no
 * /p2p/RELAY right before /p2p-circuit) or a multiaddr error. */
int np_trelay_split(const uint8_t *bin, size_t len, size_t *relay_len,
                    np_peerid *relay, np_peerid *target, int *has_target);

/* 1 if the last component of |bin| is /p2p-circuit (a peer's circuit
 * address without the target's /p2p/ID). */
int np_trelay_ends_circuit(const uint8_t *bin, size_t len);

/* Circuits dialed (and accepted) since start, and failures, for tests. */
typedef struct np_trelay_stats {
  uint64_t dials, dials_ok, dials_failed;
  uint64_t stops, stops_ok, stops_refused;
  uint64_t early_bytes; /* upgrade bytes read together with a STATUS or a
                           stop CONNECT (kept for the upgrade) */
} np_trelay_stats;
void np_trelay_get_stats(const np_transport *t, np_trelay_stats *st);
/* The status (NP_RELAYMSG_*, e.g. NO_RESERVATION) with which a relay last
 * refused one of our dials to |target| within |max_age_ms|, or 0: a dial
 * fails with NP_EUNREACH, and the control socket names the reason. */
int np_trelay_refusal(const np_transport *t, const np_peerid *target,
                      uint64_t max_age_ms);

#endif
