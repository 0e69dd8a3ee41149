/* Peerstore: what peers told us (identify) and where we saw them, bounded in
 * every dimension. Least recently used peers are evicted when full; peers
 * with a live connection are never evicted (they are touched on use).
 * Owned by the host (np_host_peerstore); every module may read and update
 * it. Lookups by ID go through a hash index. */
#ifndef NP_PEERSTORE_H
#define NP_PEERSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "np_multiaddr.h"
#include "np_peerid.h"

#define NP_PS_MAX_ADDRS 16      /* addresses kept per peer */
#define NP_PS_MAX_PROTOCOLS 128 /* protocols kept per peer */
#define NP_PS_MAX_AGENT 128     /* bytes of agent version kept */
#define NP_PS_ADDR_MAX 256      /* longest address kept (binary) */

typedef struct np_ps_addr {
  uint8_t bin[NP_PS_ADDR_MAX];
  uint16_t len;
  uint64_t expires_ms; /* 0: permanent (configured, connected) */
} np_ps_addr;

typedef struct np_ps_peer {
  np_peerid id;
  char agent[NP_PS_MAX_AGENT];
  char **protocols; /* heap, NUL-terminated names */
  size_t nprotocols;
  np_ps_addr *addrs; /* heap, naddrs used of acap (<= NP_PS_MAX_ADDRS):
                      * an array per peer in place would cost 4 KiB each */
  size_t naddrs, acap;
  uint64_t last_seen_ms;
  int64_t rtt_us; /* last ping, -1 unknown */
  int connected; /* connections up (the swarm counts them) */
  struct np_ps_peer *hnext_; /* private: the store's hash chain */
} np_ps_peer;

typedef struct np_peerstore np_peerstore;

int np_peerstore_new(np_peerstore **ps, uint32_t max_peers);
void np_peerstore_del(np_peerstore *ps);

/* The entry for |id|, created if missing (evicting the least recently seen
 * unconnected peer when full; NULL when every slot is connected or on
 * NP_ENOMEM). */
np_ps_peer *np_peerstore_upsert(np_peerstore *ps, const np_peerid *id,
                                uint64_t now_ms);
np_ps_peer *np_peerstore_get(np_peerstore *ps, const np_peerid *id);

/* Add a binary multiaddr (a trailing /p2p/ part is stripped). ttl_ms 0 =
 * permanent. Over NP_PS_MAX_ADDRS the one expiring first is replaced.
 * Returns 0, NP_EINVAL (not a valid multiaddr), NP_ELIMIT (too long) or
 * NP_ENOMEM. */
int np_peerstore_add_addr(np_ps_peer *p, const uint8_t *bin, size_t len,
                          uint64_t now_ms, uint64_t ttl_ms);
/* Replace the protocol list (copied; at most NP_PS_MAX_PROTOCOLS names of
 * at most 1024 bytes, longer ones skipped). */
int np_peerstore_set_protocols(np_ps_peer *p, const char *const *names,
                               const size_t *lens, size_t n);
void np_peerstore_set_agent(np_ps_peer *p, const char *agent, size_t len);
/* Nonzero if |p| announced |proto|. */
int np_peerstore_supports(const np_ps_peer *p, const char *proto);
/* Drop expired addresses. */
void np_peerstore_expire(np_ps_peer *p, uint64_t now_ms);

size_t np_peerstore_count(const np_peerstore *ps);
/* i-th peer (any order), NULL past the end. */
np_ps_peer *np_peerstore_at(np_peerstore *ps, size_t i);

#endif
