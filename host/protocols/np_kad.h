/* The Kademlia DHT (/ipfs/kad/1.0.0, libp2p-wire.md §11) as a host module
 * (np_module.h), peer routing only: it answers FIND_NODE and PING from its
 * routing table (np_kbucket), keeps that table from identify events, and
 * runs iterative lookups (np_kadquery) over streams it opens through
 * np_net_ops. Records and providers are not served yet: such requests get
 * the stream reset (counted as refused), never a made-up answer.
 *
 * Routing table membership: a peer enters when identify (or a push) lists
 * the kad protocol, or when it answers one of our requests; it leaves when
 * a push drops the protocol, or when a request to it fails (dial, stream,
 * garbage, timeout). A full bucket pings its least recently seen peer with
 * a kad PING before the newcomer may take its place. */
#ifndef NP_KAD_H
#define NP_KAD_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_kbucket.h"
#include "np_module.h"
#include "np_peerid.h"

typedef struct np_kad np_kad;               /* opaque; one thread */
typedef struct np_kad_lookup np_kad_lookup; /* a lookup in progress */

typedef struct np_kad_config {
  const char *protocol;      /* served and spoken (NP_KADMSG_PROTOCOL) */
  size_t k;                  /* bucket and result size (20) */
  size_t alpha;              /* requests in flight per lookup (10) */
  size_t max_msg;            /* largest message read (NP_KADMSG_MSG_MAX) */
  unsigned max_requests;     /* per inbound stream (64) */
  unsigned max_peer_streams; /* inbound streams at once per peer (8) */
  uint64_t idle_ms;          /* inbound stream without a request (10 s) */
  uint64_t request_ms;       /* one outbound request, dial included (5 s) */
  uint64_t lookup_ms;        /* a whole lookup (30 s) */
  uint64_t addr_ttl_ms;      /* addresses learned from answers (10 min) */
} np_kad_config;

void np_kad_config_default(np_kad_config *c);

/* Counters (diagnostics and tests). */
typedef struct np_kad_stats {
  uint64_t served;       /* requests answered */
  uint64_t refused;      /* streams reset: caps, unsupported types */
  uint64_t bad_requests; /* inbound streams reset for a bad message */
  uint64_t bad_answers;  /* outbound requests failed on a bad message */
  uint64_t sent;         /* outbound requests (FIND_NODE and PING) */
  uint64_t lookups;      /* lookups finished */
  uint64_t found;        /* find_peer lookups that found their target */
  uint64_t hops;         /* sum over lookups of the deepest answer's hop */
  unsigned max_hops;     /* deepest answer of any lookup (rounds) */
} np_kad_stats;

/* Start the module on |h| (network up) with |cfg| (NULL: defaults).
 * Returns 0, NP_EINVAL, NP_ENOMEM or np_proto_add's error. */
int np_kad_start(np_host *h, const np_kad_config *cfg, np_kad **pk);
/* Cancel every lookup (callbacks run with NP_ECANCELED), reset every
 * stream, unregister. NULL is fine. */
void np_kad_stop(np_kad *kad);

/* The routing table (read it; the module changes it). */
const np_kbucket *np_kad_table(const np_kad *kad);
void np_kad_stats_get(const np_kad *kad, np_kad_stats *st);

/* find_peer: err 0 when |peer| answered us or an answer carried addresses
 * for it (now in the peerstore), NP_ENOENT when the lookup ended without
 * it, NP_ETIMEDOUT (lookup_ms), NP_ECANCELED (module stopped). */
typedef void (*np_kad_peer_fn)(void *ud, int err, const np_peerid *peer);
/* closest: the (at most k) closest peers that answered, nearest first;
 * err 0, NP_ENOENT (nobody answered), NP_ETIMEDOUT or NP_ECANCELED. */
typedef void (*np_kad_closest_fn)(void *ud, int err, const np_peerid *peers,
                                  size_t n);
/* bootstrap: err 0 once the self-lookup ended with answers. */
typedef void (*np_kad_done_fn)(void *ud, int err);

/* Each starts a lookup and returns 0 with *handle set; the callback runs
 * exactly once, later (never from inside the call), unless the handle is
 * cancelled. Errors: NP_EINVAL, NP_ENOMEM, NP_ENOTSUP (no network). */
int np_kad_find_peer(np_kad *kad, const np_peerid *peer, np_kad_peer_fn cb,
                     void *ud, np_kad_lookup **handle);
/* The peers closest to SHA-256(|key|) (|key|: 1..NP_KADMSG_KEY_MAX bytes,
 * sent as the FIND_NODE key). */
int np_kad_closest(np_kad *kad, const uint8_t *key, size_t len,
                   np_kad_closest_fn cb, void *ud, np_kad_lookup **handle);
/* Connect to the |n| peers at |addrs| (binary multiaddrs ending in /p2p/),
 * then look up our own ID to fill the table. */
int np_kad_bootstrap(np_kad *kad, const uint8_t *const *addrs,
                     const size_t *lens, size_t n, np_kad_done_fn cb, void *ud,
                     np_kad_lookup **handle);
/* Withdraw a lookup: its callback never runs. */
void np_kad_cancel(np_kad *kad, np_kad_lookup *lk);

/* The module: np_kad_start with defaults; *state is the np_kad. */
extern const np_module np_kad_module;

#endif
