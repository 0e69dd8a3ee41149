/* DCUtR hole punching (/libp2p/dcutr, libp2p-wire.md §14; issue 10): turn
 * a relayed (limited) connection into a direct one.
 *
 * Roles. A dialed B through a relay; B, who holds the reservation, sees
 * the relayed connection as inbound and starts ("initiator"): it opens
 * /libp2p/dcutr on it, sends CONNECT{B's addresses}, A ("responder")
 * answers CONNECT{A's}, B takes the round trip as RTT, sends SYNC, waits
 * RTT/2 and punches while A, on SYNC, dials B (np_swarm_dial_new: QUIC
 * first, from the listen sockets). QUIC: A is the QUIC client; B sends
 * datagrams of random bytes from its listen socket to A's QUIC addresses
 * (every 10..200 ms, growing, for the attempt) and accepts A's Initial as
 * an inbound connection. TCP: B connects once from its listen port to each
 * of A's TCP addresses as the handshake's listener (np_ttcp_punch), so
 * A's own connect makes a simultaneous open with A as the dialer. On B's
 * last attempt (of 3 or more) B also dials A, as go does since v0.48 for
 * peers that have the roles the other way round.
 *
 * Addresses sent: our public QUIC and TCP listen addresses ([nat]
 * treat_as_public widens "public"), the observed addresses the "obsaddr"
 * module confirmed, and recent addresses peers reported in identify on
 * connections from one of our listen ports (go sends 1-observer ones too). Accepted from the peer: public, non-relay
 * QUIC and TCP addresses (QUIC first, at most 8).
 *
 * Up to [nat] hole_punch_attempts attempts, each bounded by [nat]
 * hole_punch_timeout. Success is any direct (not limited) connection to
 * the peer coming up during the exchange; the swarm then prefers it for
 * new streams, and the relayed connection is closed after a grace period
 * once no stream is open on it. Failure is logged and the relayed
 * connection is left alone. For the first min(hole_punch_timeout, 5 s) of
 * an exchange its relayed connection is marked with
 * np_swarm_conn_punching, so streams opened to the peer meanwhile wait for
 * the direct connection (a punch that works mostly does within a second
 * or two); later attempts hold nobody up.
 *
 * Log lines (the NAT lab greps them), subsystem "dcutr":
 *   start peer=P role=initiator|responder
 *   rtt peer=P rtt_ms=N
 *   punch peer=P addrs=A,B attempt=N
 *   direct peer=P addr=A attempt=N ms=N
 *   failed peer=P attempts=N why=TEXT
 *
 * Loop thread only. */
#ifndef NP_DCUTR_H
#define NP_DCUTR_H

#include <stddef.h>
#include <stdint.h>

#include "np_conn.h"
#include "np_module.h"
#include "np_peerid.h"

typedef struct np_dcutr np_dcutr; /* the module's state */

/* The module "dcutr" (np_host_module(h, "dcutr") is its np_dcutr). With
 * [nat] hole_punch = no it runs idle: no handler, no trigger. */
extern const np_module np_dcutr_module;

/* Start the exchange as initiator (B) over the limited connection |c| (an
 * np_event's connection) now, as the module does by itself a moment after
 * such a connection comes up inbound. Returns 0, NP_EINVAL (not a
 * limited connection that is up), NP_EEXIST (an exchange with that peer
 * runs or a direct connection exists), NP_ENOTSUP (hole punching off) or
 * NP_ENOMEM. */
int np_dcutr_start(np_dcutr *d, const np_conn *c);

/* Timing knobs for tests: |start_delay_ms| after an inbound limited
 * connection comes up before the exchange starts (default 500;
 * UINT64_MAX: never start by itself, np_dcutr_start only), and the grace
 * period before a relayed connection is retired after success (default
 * 5000). */
void np_dcutr_set_timing(np_dcutr *d, uint64_t start_delay_ms,
                         uint64_t grace_ms);

enum np_dcutr_state {
  NP_DCUTR_RUNNING = 1,
  NP_DCUTR_DIRECT = 2, /* a direct connection came up */
  NP_DCUTR_FAILED = 3
};
const char *np_dcutr_state_name(int state); /* "running", "direct", ... */

/* The last exchange with a peer (the most recent NP_DCUTR_HISTORY
 * peers are kept). */
#define NP_DCUTR_HISTORY 64
typedef struct np_dcutr_status {
  np_peerid peer;
  int state;          /* np_dcutr_state */
  int initiator;      /* 1: we were B, 0: A */
  unsigned attempts;  /* attempts made so far */
  char why[96];       /* last error ("" none) */
  int64_t ms;         /* start of the exchange (B: its delay over; A:
                         B's stream in) to direct connection; -1 */
  uint8_t addr[NP_CONN_ADDR_MAX]; /* the direct connection's remote */
  size_t addr_len;                /* address (binary; 0 none) */
  uint64_t at_ms;     /* when it last changed (np_now) */
} np_dcutr_status;
/* Copy up to |max| records, most recent first; returns how many exist. */
size_t np_dcutr_status_list(const np_dcutr *d, np_dcutr_status *out,
                            size_t max);

#endif
