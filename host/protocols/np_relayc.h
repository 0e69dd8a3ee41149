/* Circuit relay v2 client (module "relayc"; libp2p-wire.md §13): keeps
 * reservations on a few relays while the host is private and announces
 * <relay addr>/p2p/RELAY/p2p-circuit for each (np_swarm_set_adverts owner
 * "relay", so identify and the DHT carry them); adds the circuit transport
 * (np_trelay) to the swarm, so circuit addresses can be dialed; and serves
 * /libp2p/circuit/relay/0.2.0/stop.
 *
 * [relay] client = auto (reserve while NP_EV_REACHABILITY says PRIVATE, or
 * [nat] reachability = private), on (always), off (never: circuits can
 * still be dialed). Relays: the static [relay] relays first, then
 * connected peers whose identify lists the hop protocol, up to [relay]
 * client_reservations at once. A reservation is renewed at half its TTL
 * or 2 minutes before it expires, whichever comes first; a relay that
 * refuses is retried after a back-off (30 s doubling to 30 min); when the
 * connection a reservation was made on goes down, another relay is
 * picked. Vouchers are checked (signer = the relay, peer = us) and a bad
 * one is logged; it is advisory, as in go.
 *
 * Stop policy (a documented choice, as go's client): a circuit is accepted
 * only through a relay we hold a reservation with; any other relay gets
 * PERMISSION_DENIED. The stop handler is registered only while a
 * reservation is held (identify lists /stop then). Circuit addresses of
 * other peers are dialed in every mode, off included.
 *
 * Log lines (subsystem "relay"): reservation-ok relay= expire= addrs=,
 * reservation-failed relay= status= (err= when no status), reservation-lost
 * relay=, and the transport's dial-ok/dial-failed/stop-ok/stop-failed. */
#ifndef NP_RELAYC_H
#define NP_RELAYC_H

#include <stddef.h>
#include <stdint.h>

#include "np_conn.h"
#include "np_module.h"
#include "np_peerid.h"

typedef struct np_relayc np_relayc; /* the module state */

#define NP_RELAYC_ADDRS_MAX 4 /* circuit addresses announced per relay */

extern const np_module np_relayc_module;

typedef enum np_relayc_state {
  NP_RELAYC_IDLE = 0,     /* a candidate, not in use */
  NP_RELAYC_CONNECTING,   /* connecting to it / opening the hop stream */
  NP_RELAYC_RESERVING,    /* RESERVE sent (a refresh keeps RESERVED) */
  NP_RELAYC_RESERVED,     /* held */
  NP_RELAYC_BACKOFF       /* refused or failed: waiting before a retry */
} np_relayc_state;

/* "idle", "connecting", "reserving", "reserved", "backoff". */
const char *np_relayc_state_name(int state);

/* One relay the client knows, for the control socket and tests. */
typedef struct np_relayc_resv {
  np_peerid relay;
  int state;            /* np_relayc_state */
  int is_static;        /* from [relay] relays */
  uint64_t expire;      /* unix seconds (0: none held) */
  char addr[320];       /* first announced circuit address, text ("" none) */
  size_t naddrs;        /* circuit addresses announced through it */
  uint8_t addrs[NP_RELAYC_ADDRS_MAX][128]; /* ... all of them, binary */
  size_t addr_lens[NP_RELAYC_ADDRS_MAX];
  int refreshing;       /* RESERVED, a renewal under way */
  uint32_t limit_duration; /* seconds per circuit, 0 none */
  uint64_t limit_data;  /* bytes per direction per circuit, 0 none */
  int last_status;      /* the relay's last refusal status (0 none) */
  int last_err;         /* np error of the last failure (0 none) */
  int voucher_ok;       /* the last voucher verified */
} np_relayc_resv;

/* Fill up to |max| records (reserved ones first); returns how many relays
 * are known (may exceed |max|). */
size_t np_relayc_reservations(np_relayc *r, np_relayc_resv *out, size_t max);
/* 1 while the client wants reservations (on, or auto and private). */
int np_relayc_active(const np_relayc *r);
/* The circuit transport it added to the swarm. */
np_transport *np_relayc_transport(np_relayc *r);

#endif
