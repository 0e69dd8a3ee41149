/* The libp2p host layer over the transports of np_conn.h: connections to
 * peers (several per peer, the best one used), dialing, multistream-select
 * on every stream, streams handed to the handlers of the host's protocol
 * table (plugins, control clients, and the host's own protocol modules such
 * as identify, ping and unary calls, which live in their own files),
 * back-pressure, and the np_net_ops the control socket and plugins use.
 * Connection events go to the host's event bus (np_event.h).
 *
 * Below the lifecycle: the few hooks protocol modules need beyond
 * np_net_ops and np_stream. Loop thread only. */
#ifndef NP_SWARM_H
#define NP_SWARM_H

#include <stddef.h>
#include <stdint.h>

#include "np_conn.h"
#include "np_host.h"

typedef struct np_swarm np_swarm;

/* Create the TLS certificate and transports of |h|, listen on every [host]
 * listen address, and install the network into |h| (np_host_set_net). On
 * error |err| gets one line naming the address or the failing step. */
int np_swarm_new(np_swarm **ps, np_host *h, char *err, size_t errlen);
/* Close every connection (streams and ops fail with NP_ECANCELED) and
 * uninstall from the host. NULL is fine. */
void np_swarm_del(np_swarm *s);

/* This host's listen addresses with /p2p/ID, as text, one per call
 * (i-th); NULL past the end. For logs and the start-up banner. */
const char *np_swarm_addr_text(np_swarm *s, size_t i);

/* Dial |peer| at |addrs| (n >= 1; binary multiaddrs) for a new connection
 * even when one exists or a dial is running (AutoNAT dial-back, DCUtR):
 * only these addresses, staggered as usual, never joined by other ops.
 * Completes as np_net_ops connect (cb once, later; the handle cancels
 * through np_net_ops cancel); new streams then go to the best connection.
 * |flags|: NP_SWARM_DIAL_NEW_PORT leaves from a new ephemeral port, not
 * the listen port (an AutoNAT dial-back must not ride the NAT mapping the
 * peer's connection to us opened); transports without it skip the
 * address. */
#define NP_SWARM_DIAL_NEW_PORT 1
int np_swarm_dial_new(np_swarm *sw, const np_peerid *peer,
                      const uint8_t *const *addrs, const size_t *lens,
                      size_t n, int flags, uint64_t timeout_ms,
                      np_net_done_fn cb, void *ud, void **handle);

/* Addresses this host announces beyond its listen addresses: |owner| (a
 * module's tag, < 16 bytes: "relay", "observed") replaces its whole set
 * with |addrs| (binary multiaddrs without our /p2p/ID; a circuit address
 * ends in /p2p/RELAY/p2p-circuit); n = 0 clears it. np_net_ops addrs,
 * which identify, the signed peer record and the DHT use, returns the
 * listen addresses and then every owner's, deduplicated (32 at most).
 * A change emits NP_EV_LOCAL_ADDRS_CHANGED on the next loop turn (one
 * event for a burst); identify pushes it. At most 16 addresses per owner
 * (more are dropped) and 4 owners. Returns 0, NP_EINVAL or NP_ELIMIT. */
int np_swarm_set_adverts(np_swarm *sw, const char *owner,
                         const uint8_t *const *addrs, const size_t *lens,
                         size_t n);

/* A module's own transport (the circuit relay): it reports to the
 * callbacks np_swarm_conn_cbs gives (with that |ud|), the swarm dials
 * the addresses it can_dial (ranked after direct ones), and deletes it at
 * np_swarm_del unless np_swarm_remove_transport took it out first (which
 * closes its connections and deletes it: conn_down events run inside that
 * call, so not from inside one of its events). NP_ELIMIT when full. */
const np_conn_cbs *np_swarm_conn_cbs(np_swarm *sw, void **ud);
int np_swarm_add_transport(np_swarm *sw, np_transport *t);
void np_swarm_remove_transport(np_swarm *sw, np_transport *t);

/* DCUtR (np_dcutr) marks the relayed connection |c| while it tries to
 * replace it with a direct one (|on| 1) and when it is done (0). Streams
 * opened through np_net_ops to a peer whose only connection is relayed
 * wait for the direct one: 3 s for a punch to begin (when both sides
 * list /libp2p/dcutr), then while one is marked, at most 60 s from the
 * relayed connection's start; then, or when the mark is cleared without
 * a direct connection, they go over the relayed one. Streams opened on a
 * given connection (np_swarm_conn_open) never wait. */
void np_swarm_conn_punching(np_swarm *sw, const np_conn *c, int on);

/* ---- hooks for protocol modules --------------------------------------------
 * A connection is the np_conn an event carried (read only); it is valid
 * until the NP_EV_CONN_DOWN dispatch of it returns. */

/* Open a stream on |c| proposing |proto| lazily (data may follow the
 * proposal at once; a refusal closes the stream with NP_ENOPROTO). |cb|
 * runs exactly once with the stream or an error: from inside this call
 * when |c| has stream credit, else later (after waiting for credit; with
 * the connection's error if it goes down first). *handle is set before any
 * callback runs and withdraws the open with np_net_ops cancel. Returns 0,
 * NP_ECLOSED (|c| is closing), NP_EINVAL or NP_ENOMEM (no callback). */
int np_swarm_conn_open(np_swarm *sw, const np_conn *c, const char *proto,
                       np_net_stream_fn cb, void *ud, void **handle);
/* The peer's identify was read on |c|: connect_identified ops waiting for
 * it complete. */
void np_swarm_conn_identified(np_swarm *sw, const np_conn *c);
/* Visit every connection that is up and not closing; stop early when |fn|
 * returns nonzero. |fn| may open streams but must not close connections. */
void np_swarm_foreach_conn(np_swarm *sw,
                           int (*fn)(const np_conn *c, void *ud), void *ud);

/* The connection of stream |s| (a swarm stream, while it is open), or NULL
 * once it is going away. */
const np_conn *np_swarm_stream_conn(const np_stream *s);
/* Mark |s| as waiting for an answer from the remote (|on|) or not. A
 * connection with such a stream is probed each second (one probe at a
 * time); a probe that times out closes it with NP_ETIMEDOUT, so a peer
 * that vanished fails its callers in seconds, not at the idle timeout.
 * The mark goes with the stream. */
void np_swarm_stream_await(np_stream *s, int on);

/* The prober (np_ping installs one): the liveness probe above, and what
 * np_net_ops ping runs on the peer's best connection. |start| pings |c|
 * within |timeout_ms| (0: no limit of its own) and runs |cb| exactly once,
 * never from inside |start|, unless |cancel| withdraws it; it returns 0 or
 * an error (no callback). */
typedef struct np_swarm_prober {
  int (*start)(void *ud, const np_conn *c, uint64_t timeout_ms,
               np_net_ping_fn cb, void *cbud, void **handle);
  void (*cancel)(void *ud, void *handle);
} np_swarm_prober;
/* Install |p| (copied; NULL uninstalls: liveness probes running are
 * withdrawn, pings asked through np_net_ops fail with NP_ECANCELED). */
void np_swarm_set_prober(np_swarm *sw, const np_swarm_prober *p, void *ud);

/* Close |c| unless a stream is open on it (DCUtR retires a relayed
 * connection once a direct one is up, without cutting streams that still
 * use it). Returns 0 (closing; its events follow), the number of streams
 * open (> 0, nothing done) or NP_ECLOSED (not up, or closing already). */
int np_swarm_conn_close_idle(np_swarm *sw, const np_conn *c);

/* The swarm's first transport of |kind| (np_transport_kind), or NULL: for
 * what goes beside connections, such as DCUtR's hole-punch datagrams from
 * the QUIC listen socket (np_tquic_quic + np_quic_punch). The transport
 * stays the swarm's; it lives until np_swarm_del. */
np_transport *np_swarm_transport(np_swarm *sw, int kind);

/* Simulations: the host's in-memory transport vanishes without notice
 * (np_tmem_vanish): its peers hear nothing, dials to it hang. Returns 0
 * or NP_ENOENT (the host does not listen on /memory/). */
int np_swarm_mem_vanish(np_swarm *sw);

#endif
