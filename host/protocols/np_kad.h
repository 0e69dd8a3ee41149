/* The Kademlia DHT (/ipfs/kad/1.0.0, libp2p-wire.md §11) as a host module
 * (np_module.h): it answers FIND_NODE, PING, GET_VALUE, PUT_VALUE,
 * ADD_PROVIDER and GET_PROVIDERS from its routing table (np_kbucket) and
 * store (np_kadstore), keeps that table from identify events, and runs
 * iterative lookups (np_kadquery) over streams it opens through np_net_ops.
 *
 * Modes: a server registers the protocol (so identify announces it) and
 * answers; a client only asks (peers never add it to their tables); auto is
 * a client until one of the host's addresses is public (a listen address,
 * or an observed one that is also an interface address: no NAT between;
 * AutoNAT will decide later); off does not start the module.
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
#include "np_kadstore.h"
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
  int mode;                  /* enum np_dht_mode (np_conf.h); SERVER */
  size_t quorum;             /* get_value: stop after this many values (3) */
  uint64_t refresh_ms;       /* table refresh / re-bootstrap period (10 min) */
  uint64_t republish_ms;     /* our own puts and provides re-sent (22 h) */
  uint64_t record_ttl_ms;    /* store: records and providers (48 h) */
  const char *data_dir;      /* store file directory; NULL: memory only */
  uint64_t save_delay_ms;    /* store written this long after a change (1 s) */
  const char *const *boot;   /* bootstrap multiaddrs (text, /p2p/ at end) */
  size_t nboot;              /* connected at start and when the table empties */
  uint64_t boot_timeout_ms;  /* one bootstrap connect (10 s) */
  unsigned max_peer_rate;    /* inbound requests per peer per second (50) */
  unsigned max_lookups;      /* lookups at once, all kinds (64) */
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
  uint64_t rate_limited; /* inbound requests refused by max_peer_rate */
  uint64_t stored;       /* PUT_VALUE / ADD_PROVIDER accepted */
  int server;            /* answering now (mode, or auto decided) */
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

/* ---- records and providers (keys: 1..NP_KADMSG_KEY_MAX bytes; the DHT
 * position is SHA-256(key)). Same contract as above: 0 and *handle, one
 * final callback later; a per-item callback may run several times before
 * it. More errors: NP_ELIMIT (max_lookups lookups already run). */

/* get_value: the best valid value (the namespace's select) among the local
 * store and the first |quorum| peers that answered with one. err 0 with
 * the value (borrowed for the call), NP_ENOENT, NP_ETIMEDOUT, NP_ECANCELED.
 */
typedef void (*np_kad_value_fn)(void *ud, int err, const uint8_t *val,
                                size_t len);
int np_kad_get_value(np_kad *kad, const uint8_t *key, size_t len,
                     np_kad_value_fn cb, void *ud, np_kad_lookup **handle);

/* search_value: |each| for the first valid value found and then for each
 * value better than the last one reported; |done| when the lookup ends
 * (err 0 if |each| ran at least once, else NP_ENOENT / NP_ETIMEDOUT). */
typedef void (*np_kad_each_value_fn)(void *ud, const uint8_t *val,
                                     size_t len);
int np_kad_search_value(np_kad *kad, const uint8_t *key, size_t len,
                        np_kad_each_value_fn each, np_kad_done_fn done,
                        void *ud, np_kad_lookup **handle);

/* put_value: |val| must pass the namespace's validator (else the error at
 * once: NP_ENOTSUP unknown namespace, NP_ELIMIT size, or the validator's
 * code: NP_EINVAL malformed, NP_EPEERID a /pk/ key that is not the value's);
 * it is stored locally, then sent to the k closest peers. The callback:
 * err 0 and how many peers acknowledged (n >= 1), NP_ENOENT (no peer
 * stored it: only the local copy exists), NP_ETIMEDOUT, NP_ECANCELED.
 * The value is remembered and re-sent every republish_ms. */
typedef void (*np_kad_count_fn)(void *ud, int err, size_t n);
int np_kad_put_value(np_kad *kad, const uint8_t *key, size_t len,
                     const uint8_t *val, size_t vlen, np_kad_count_fn cb,
                     void *ud, np_kad_lookup **handle);

/* provide: this host becomes a provider of |key| (a multihash, usually a
 * CID's) locally and at the k closest peers, with its current addresses.
 * Callback as put_value. Re-announced every republish_ms. */
int np_kad_provide(np_kad *kad, const uint8_t *key, size_t len,
                   np_kad_count_fn cb, void *ud, np_kad_lookup **handle);

/* One provider found (borrowed for the call; its addresses are also added
 * to the peerstore). */
typedef struct np_kad_provider {
  const np_peerid *id;
  size_t naddrs;
  const uint8_t *const *addrs; /* binary multiaddrs */
  const size_t *lens;
} np_kad_provider;
typedef void (*np_kad_each_provider_fn)(void *ud, const np_kad_provider *p);
/* find_providers: |each| once per distinct provider (local ones first), at
 * most |max| times (0: k); |done|: err 0 if any was found, else NP_ENOENT
 * / NP_ETIMEDOUT / NP_ECANCELED. Ends as soon as |max| were reported. */
int np_kad_find_providers(np_kad *kad, const uint8_t *key, size_t len,
                          size_t max, np_kad_each_provider_fn each,
                          np_kad_done_fn done, void *ud,
                          np_kad_lookup **handle);

/* get_public_key: |peer|'s PublicKey protobuf bytes: from the peer ID
 * itself (identity multihash, Ed25519), else the local store or a
 * get_value of "/pk/" + peer-ID bytes (the /pk/ validator checks the key
 * against the ID). Callback as get_value. */
int np_kad_get_public_key(np_kad *kad, const np_peerid *peer,
                          np_kad_value_fn cb, void *ud,
                          np_kad_lookup **handle);

/* find_connected: a lookup of |peer| reporting each peer whose answer
 * listed |peer| as connected to it (the p2pd request
 * FIND_PEERS_CONNECTED_TO_PEER); |done| as find_providers. */
typedef void (*np_kad_each_peer_fn)(void *ud, const np_peerid *peer);
int np_kad_find_connected(np_kad *kad, const np_peerid *peer,
                          np_kad_each_peer_fn each, np_kad_done_fn done,
                          void *ud, np_kad_lookup **handle);

/* Withdraw a lookup: none of its callbacks run any more. */
void np_kad_cancel(np_kad *kad, np_kad_lookup *lk);

/* Records under "/natpeer/NAME" take any value (within the store's size
 * limits; a later put replaces an earlier one). Unauthenticated: for
 * plugins and tools that sign inside their values or do not need to. */
#define NP_KAD_OPEN_NS "/natpeer/"

/* The store ("/pk/" and NP_KAD_OPEN_NS are registered; more namespaces:
 * np_kadstore_register). */
np_kadstore *np_kad_store(np_kad *kad);

/* The module: np_kad_start with the host's [dht] and [bootstrap] config
 * and data_dir; with [dht] mode = off it starts nothing and *state is
 * NULL (np_daemon_module(d, "kad") then returns NULL). */
extern const np_module np_kad_module;

#endif
