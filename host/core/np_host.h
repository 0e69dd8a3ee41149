/* The registry every subsystem reaches: the loop glue, config, identity,
 * protocol table, event bus, peerstore, the installed network and the
 * call routing. It builds none of the subsystems and includes none of
 * their headers; np_daemon assembles them around it (swarm, protocol
 * modules, control socket, plugins, signals). All of it runs on one libev
 * loop. */
#ifndef NP_HOST_H
#define NP_HOST_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "np_call.h"
#include "np_conf.h"
#include "np_event.h"
#include "np_identity.h"
#include "np_loop.h"
#include "np_peerstore.h"
#include "np_proto.h"

typedef struct np_host np_host;
typedef struct np_swarm np_swarm;

/* np_host_new takes ownership of |conf| on success. |id| is copied.
 * Returns 0 or NP_ENOMEM. */
int np_host_new(np_host **ph, struct ev_loop *ev, np_conf *conf,
                const np_identity *id);
/* Frees the registry; whatever was built around it must be gone first
 * (np_daemon_del does both). NULL is fine. */
void np_host_del(np_host *h);
/* Replace the running config (a reload): |conf| is taken, the old one
 * freed. */
void np_host_set_conf(np_host *h, np_conf *conf);
/* Detach the config (the caller owns it again; for a failed set-up). */
np_conf *np_host_take_conf(np_host *h);

np_loop *np_host_loop(np_host *h);
const np_conf *np_host_conf(const np_host *h);
const np_identity *np_host_identity(const np_host *h);
np_proto_table *np_host_protos(np_host *h);
/* The event bus (np_event.h). The host emits NP_EV_LOCAL_PROTOCOLS_CHANGED
 * after every change of its protocol table; the swarm and the modules emit
 * the others. */
np_events *np_host_events(np_host *h);
/* What is known about other peers ([limits] max_peers of them). */
np_peerstore *np_host_peerstore(np_host *h);
/* The network layer while the daemon runs it (NP_DAEMON_NET), else NULL;
 * set by the daemon. */
np_swarm *np_host_swarm(np_host *h);
void np_host_set_swarm(np_host *h, np_swarm *sw);

/* The state of a started protocol module by name (np_module.h; "kad" is
 * an np_kad), or NULL when it is not running: the control socket asks on
 * each request, so a module that stopped is never reached. The daemon
 * installs the lookup (tests may install their own). */
typedef void *(*np_module_find_fn)(void *ud, const char *name);
void np_host_set_module_find(np_host *h, np_module_find_fn fn, void *ud);
void *np_host_module(np_host *h, const char *name);

/* Pending-call accounting against [limits] max_pending_calls. */
int np_host_calls_admit(const np_host *h);
void np_host_calls_add(np_host *h, int delta);

/* Route a unary call to the local handler of |proto| (1..1024 bytes), as if
 * it came from |caller_peer| (|call_id|: 16 bytes or NULL). |done| runs exactly once, later (never from
 * inside this call), unless the call is withdrawn. Returns 0, NP_ENOPROTO
 * (no such handler, or a stream handler), NP_ELIMIT or NP_ENOMEM. */
int np_host_call_local(np_host *h, const char *caller_peer, const char *proto,
                       size_t proto_len, const uint8_t *call_id,
                       const uint8_t *req, size_t len,
                       np_call_complete_fn done, void *ud, np_call **pc);

/* Hook for calls to other peers (installed by np_unarysvc).
 * Same contract as np_host_call_local; returns 0 and later runs |done|, or
 * returns an error and never runs it. |*cancel| receives a handle for
 * np_host_call_cancel. */
typedef int (*np_remote_call_fn)(void *tud, const char *peer,
                                 const char *proto, const uint8_t *call_id,
                                 const uint8_t *req, size_t len,
                                 np_call_complete_fn done, void *ud,
                                 void **cancel);
typedef void (*np_remote_cancel_fn)(void *tud, void *cancel);
void np_host_set_remote(np_host *h, np_remote_call_fn call,
                        np_remote_cancel_fn cancel, void *tud);

/* Network operations, installed by the transport layer (np_swarm). The
 * control socket, plugins and protocol modules reach the network through
 * these. Each asynchronous one returns 0 and runs its callback exactly
 * once, later (one exception: open_stream with NP_NET_LAZY on a peer
 * already connected hands the stream over from inside the call), or
 * returns an error and never runs it. *handle is set before any callback
 * runs, and to NULL on error. */
typedef struct np_stream np_stream;
typedef struct np_conn_info {
  np_peerid peer;
  uint8_t addr[256]; /* remote multiaddr, binary */
  size_t addr_len;
  int outbound;
  int64_t rtt_us; /* -1 unknown */
  uint64_t age_ms;
  char agent[128];
  int transport; /* np_transport_kind */
  int limited;   /* relayed */
} np_conn_info;
typedef void (*np_net_done_fn)(void *ud, int err);
typedef void (*np_net_stream_fn)(void *ud, int err, np_stream *s,
                                 const char *proto);
typedef void (*np_net_ping_fn)(void *ud, int err, int64_t rtt_us);
/* open_stream flag: with one protocol, hand the stream over at once and
 * let the data follow the proposal (multistream "lazy" mode, one round
 * trip less); a refusal then closes the stream with NP_ENOPROTO. */
#define NP_NET_LAZY 1
typedef struct np_net_ops {
  /* Connect to |peer| using |addrs| (binary multiaddrs; may be empty to
   * use what the peerstore knows). connect, open_stream and ping to a peer
   * with no known address ask the router (np_host_set_router) first, once
   * per dial, within |timeout_ms|; nothing found: NP_EUNREACH. */
  int (*connect)(void *net, const np_peerid *peer, const uint8_t *const *addrs,
                 const size_t *lens, size_t n, uint64_t timeout_ms,
                 np_net_done_fn cb, void *ud, void **handle);
  /* Open a stream to |peer| negotiating the first of |protos| it accepts.
   * The callback receives a stream whose cbs the receiver fills in. */
  int (*open_stream)(void *net, const np_peerid *peer,
                     const char *const *protos, size_t n, int flags,
                     uint64_t timeout_ms, np_net_stream_fn cb, void *ud,
                     void **handle);
  /* /ipfs/ping/1.0.0 round trip to |peer|, dialing if need be (through
   * the liveness prober np_ping installs; NP_ENOTSUP without one). */
  int (*ping)(void *net, const np_peerid *peer, uint64_t timeout_ms,
              np_net_ping_fn cb, void *ud, void **handle);
  /* Withdraw a pending connect/open_stream/ping: its callback never runs. */
  void (*cancel)(void *net, void *handle);
  int (*disconnect)(void *net, const np_peerid *peer);
  /* Fill up to |max| connection records; returns how many connections
   * exist (may exceed |max|). */
  size_t (*conns)(void *net, np_conn_info *out, size_t max);
  /* This host's addresses (binary multiaddrs without /p2p/), up to |max|;
   * returns how many exist. */
  size_t (*addrs)(void *net, const uint8_t **bins, size_t *lens, size_t max);
  /* As connect, completing once the peer's identify has been read on the
   * connection (what js-libp2p counts as a connection being up). */
  int (*connect_identified)(void *net, const np_peerid *peer,
                            const uint8_t *const *addrs, const size_t *lens,
                            size_t n, uint64_t timeout_ms, np_net_done_fn cb,
                            void *ud, void **handle);
} np_net_ops;
void np_host_set_net(np_host *h, const np_net_ops *ops, void *net);
/* The installed network, or NULL (ops) when this host has none. */
const np_net_ops *np_host_net(np_host *h, void **net);

/* Peer routing (the DHT installs it): where the swarm turns for addresses
 * of a peer it has none for. find_peer returns 0 and runs |cb| exactly
 * once, later (never from inside the call): err 0 once addresses for |peer|
 * are in the peerstore (or a connection to it is up), else NP_ENOENT (not
 * found), NP_ETIMEDOUT, NP_ECANCELED (the router stopped); or it returns an
 * error and never runs |cb|. cancel withdraws a pending lookup: |cb| never
 * runs. Removing the router ends no lookup: its owner ends each (|cb| with
 * NP_ECANCELED) before it goes away. */
typedef void (*np_route_fn)(void *ud, int err, const np_peerid *peer);
typedef struct np_router {
  int (*find_peer)(void *rud, const np_peerid *peer, np_route_fn cb, void *ud,
                   void **handle);
  void (*cancel)(void *rud, void *handle);
  void *rud;
  /* The router's own protocol (may be NULL): streams for it are never
   * routed, so the router's requests start no lookups of their own. */
  const char *proto;
} np_router;
/* Install |r| (copied; |r->proto| borrowed while installed); NULL removes. */
void np_host_set_router(np_host *h, const np_router *r);
/* The installed router, or NULL. */
const np_router *np_host_router(const np_host *h);

/* The stream handler serving unary handlers' protocols to the network
 * (installed by np_unarysvc): the swarm hands it each inbound stream
 * negotiated for an NP_HANDLER_UNARY entry. NULL uninstalls. */
void np_host_set_unary_server(np_host *h, const np_stream_cbs *cbs, void *ud);
const np_stream_cbs *np_host_unary_server(np_host *h, void **ud);

/* Call |proto| on |peer| (this host's own ID dispatches locally). Same
 * contract as np_host_call_local; *handle (may be NULL) lets the caller
 * withdraw with np_host_call_cancel (|done| then never runs). */
typedef struct np_outgoing np_outgoing;
int np_host_call(np_host *h, const char *peer, const char *proto,
                 const uint8_t *req, size_t len, np_call_complete_fn done,
                 void *ud, np_outgoing **handle);
/* Same with the caller's 16-byte callId (control clients' calls keep
 * theirs end to end, as hivemind's daemons do); NULL picks a random one. */
int np_host_call_id(np_host *h, const char *peer, const char *proto,
                    const uint8_t *call_id, const uint8_t *req, size_t len,
                    np_call_complete_fn done, void *ud, np_outgoing **handle);
void np_host_call_cancel(np_host *h, np_outgoing *o);

#endif
