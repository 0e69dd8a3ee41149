/* Host events: what happened to connections and peers, for any module that
 * subscribes (identify, the protocol modules to come, tests). One bus per
 * host (np_host_events).
 *
 * Dispatch is synchronous: np_events_emit calls every matching subscriber
 * before it returns, in subscription order. A handler runs inside the
 * emitter's stack, so it may
 *   - subscribe and unsubscribe (any handle, its own included): a handle
 *     removed during dispatch is not called again, not even for the event
 *     in progress; one added during dispatch sees the next event;
 *   - call np_net_ops, the np_swarm_* hooks and np_conn/np_stream
 *     operations: their effects are queued by contract (np_conn.h), so a
 *     connection it closes stays valid until the dispatch is over;
 *   - emit again (nested, at most NP_EVENTS_DEPTH deep; deeper ones are
 *     dropped with a warning);
 * and must not delete the bus, the host or the swarm. Everything an event
 * points to is borrowed for the call: copy what you keep.
 *
 * Loop thread only. */
#ifndef NP_EVENT_H
#define NP_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "np_conn.h"
#include "np_peerid.h"

enum np_event_type {
  NP_EV_CONN_UP = 1u << 0,         /* a connection is up (peer authenticated) */
  NP_EV_CONN_DOWN = 1u << 1,       /* a connection that was up is gone */
  NP_EV_PEER_IDENTIFIED = 1u << 2, /* identify (or a push) was read */
  NP_EV_PROTOCOLS_CHANGED = 1u << 3, /* a push changed a peer's protocols */
  NP_EV_OBSERVED_ADDR = 1u << 4,     /* a peer told us our address */
  NP_EV_LOCAL_PROTOCOLS_CHANGED = 1u << 5, /* our protocol table changed */
  NP_EV_LOCAL_ADDRS_CHANGED = 1u << 6, /* our advertised addresses changed */
  NP_EV_REACHABILITY = 1u << 7         /* AutoNAT's verdict changed */
};
#define NP_EV_ALL 0xffu

/* NP_EV_REACHABILITY values: can peers dial us directly? */
enum np_reach_state {
  NP_REACH_UNKNOWN = 0,
  NP_REACH_PUBLIC = 1,
  NP_REACH_PRIVATE = 2
};
#define NP_EVENTS_DEPTH 8

typedef struct np_ev_addr {
  const uint8_t *bin; /* binary multiaddr */
  size_t len;
} np_ev_addr;

/* One event. Members not listed for a type are zero/NULL. */
typedef struct np_event {
  unsigned type; /* one np_event_type bit */
  /* every type but LOCAL_PROTOCOLS_CHANGED, LOCAL_ADDRS_CHANGED, REACHABILITY: */
  const np_peerid *peer;
  /* The connection concerned (read only: use np_swarm_* to act on it). It
   * stays valid until the CONN_DOWN dispatch of it returns. */
  const np_conn *conn;
  /* CONN_UP, CONN_DOWN: */
  int transport;                /* np_transport_kind */
  int inbound;                  /* the peer dialed */
  int limited;                  /* relayed */
  const uint8_t *raddr, *laddr; /* binary multiaddrs (len 0: unknown) */
  size_t raddr_len, laddr_len;
  /* CONN_DOWN: */
  int err;  /* why (np_conn_cbs.conn_down) */
  int last; /* no other connection to this peer is left */
  /* PEER_IDENTIFIED, PROTOCOLS_CHANGED (the new list): */
  const char *const *protocols;
  size_t nprotocols;
  /* PEER_IDENTIFIED: */
  const np_ev_addr *listen_addrs;
  size_t nlisten;
  const char *agent; /* "" when not sent */
  int push;          /* read from an identify/push stream */
  /* OBSERVED_ADDR (laddr, raddr: the connection's local and remote
   * addresses): */
  const uint8_t *observed;
  size_t observed_len;
  /* REACHABILITY (peer and conn NULL): enum np_reach_state, and the
   * previous one. */
  int reachability, prev_reachability;
} np_event;

typedef void (*np_event_fn)(const np_event *ev, void *ud);

typedef struct np_events np_events;       /* opaque */
typedef struct np_event_sub np_event_sub; /* a subscription handle */

int np_events_new(np_events **pe);
/* Frees every subscription (NULL is fine). Not from inside a handler. */
void np_events_del(np_events *e);

/* Call |fn(ev, ud)| for every event whose type is in |mask|. Returns 0
 * (and *psub, may be NULL if the caller never unsubscribes) or NP_EINVAL
 * (no fn, empty mask) / NP_ENOMEM. */
int np_events_subscribe(np_events *e, unsigned mask, np_event_fn fn, void *ud,
                        np_event_sub **psub);
/* |fn| is not called again after this returns. NULL is fine. */
void np_events_unsubscribe(np_events *e, np_event_sub *sub);

/* Dispatch |ev| now (see the header comment). */
void np_events_emit(np_events *e, const np_event *ev);

/* Number of live subscriptions (tests). */
size_t np_events_count(const np_events *e);

#endif
