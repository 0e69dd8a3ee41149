/* AutoNAT v1 (/libp2p/autonat/1.0.0, libp2p-wire.md §12), issue 10: is
 * this host reachable from the internet?
 *
 * Server ([nat] autonat_service): a peer asks DIAL{itself, addresses}; we
 * dial back only those addresses whose IP is the IP its connection to us
 * comes from (its observed IP; never another one), on a fresh connection
 * from a new port (np_swarm_dial_new, NP_SWARM_DIAL_NEW_PORT) so the
 * requester's NAT mapping towards us does not let the dial through, and
 * answer OK with the address reached, E_DIAL_ERROR, E_DIAL_REFUSED (no
 * acceptable address, a relayed connection, over the rate limits) or
 * E_BAD_REQUEST. Rate limits: [nat] autonat_peer_limit requests per peer
 * and autonat_global_limit in all, each per minute.
 *
 * Client ([nat] autonat, autonat_interval): after autonat_boot_delay, ask
 * one connected peer at a time whose identify lists the protocol, over a
 * direct connection, to dial our listen and confirmed observed addresses.
 * The reachability rule (go v1's, with a stricter start):
 *   - one OK makes us PUBLIC at once (confidence 0);
 *   - E_DIAL_ERROR while PUBLIC lowers the confidence, or turns PRIVATE at
 *     0; while PRIVATE it raises it (0..3), as does OK while PUBLIC;
 *   - from UNKNOWN, PRIVATE needs E_DIAL_ERROR from NP_AUTONAT_QUORUM (3)
 *     distinct servers with no OK in between; with fewer servers we stay
 *     UNKNOWN (the DHT keeps its interim rule) and ask again later;
 *   - other answers (refused, bad request, timeouts, stream errors) change
 *     nothing.
 * While UNKNOWN, a round asks each connected server once, NP_AUTONAT_GAP_MS
 * apart, until the state changes; a server identified later is asked at
 * once; the next round starts after NP_AUTONAT_RETRY_MS (90 s). Once known,
 * one server is asked every autonat_interval. [nat] reachability = public|private forces
 * the state (no client). Every change is logged (`nat reachability=...
 * why=...`) and emitted as NP_EV_REACHABILITY.
 *
 * Loop thread only. Module name "autonat" (np_host_module). */
#ifndef NP_AUTONAT_H
#define NP_AUTONAT_H

#include <stddef.h>
#include <stdint.h>

#include "np_module.h"
#include "np_peerid.h"

typedef struct np_autonat np_autonat;

#define NP_AUTONAT_QUORUM 3         /* distinct failures UNKNOWN -> PRIVATE */
#define NP_AUTONAT_CONFIDENCE_MAX 3 /* confidence range 0..3 */
#define NP_AUTONAT_DIAL_TIMEOUT_MS 10000 /* server's dial-back (go: 15 s;
                                            a handshake needs far less) */
#define NP_AUTONAT_CLIENT_TIMEOUT_MS 30000 /* client waits for an answer */
#define NP_AUTONAT_READ_TIMEOUT_MS 10000 /* server waits for the request */
#define NP_AUTONAT_DIAL_ADDRS_MAX 16 /* addresses dialed back per request */
#define NP_AUTONAT_PEER_LIMIT 3      /* default requests/peer/minute */
#define NP_AUTONAT_GLOBAL_LIMIT 30   /* default requests/minute, all peers */
#define NP_AUTONAT_RATE_WINDOW_MS 60000
#define NP_AUTONAT_PEERS_TRACKED 256 /* peers the per-peer limit remembers */
#define NP_AUTONAT_RETRY_MS 90000    /* next round while UNKNOWN */
#define NP_AUTONAT_GAP_MS 1000       /* next server within a round */

/* The reachability: NP_REACH_UNKNOWN, NP_REACH_PUBLIC or NP_REACH_PRIVATE
 * (np_event.h). */
int np_autonat_reachability(const np_autonat *a);
const char *np_autonat_reach_name(int reach); /* "unknown", "public"... */

typedef struct np_autonat_status {
  int reachability;  /* as np_autonat_reachability */
  int confidence;    /* 0..NP_AUTONAT_CONFIDENCE_MAX */
  int forced;        /* [nat] reachability set it */
  int client_on, service_on;
  np_peerid last_server; /* len 0: none asked yet */
  int last_result;   /* last answer's np_autonatmsg_status, or a negative
                        np_err (timeout, stream error); -1000: none */
  uint64_t last_change_ms; /* np_now of the last change (0: never) */
  uint64_t probes;         /* requests we sent */
  uint64_t served_ok, served_error; /* dial-backs that reached / failed */
  uint64_t refused;        /* E_DIAL_REFUSED sent (rate, no address, relay) */
  uint64_t rate_limited;   /* of those, for the rate limits */
  uint64_t bad_requests;   /* E_BAD_REQUEST sent */
  uint64_t addrs_dialed;   /* addresses handed to dial-backs */
  uint64_t addrs_skipped;  /* requested addresses not dialed (other IP,
                              unusable shape, over the cap) */
  size_t pending;          /* dial-backs running */
} np_autonat_status;
void np_autonat_get_status(const np_autonat *a, np_autonat_status *st);

extern const np_module np_autonat_module;

#endif
