/* Kademlia routing table (libp2p-wire.md §11): peers keyed by SHA-256 of
 * their binary peer ID, 256 buckets by common prefix length with the local
 * key, each holding at most k peers, least recently seen first. Sans-I/O
 * and deterministic: times are arguments, nothing reads a clock.
 *
 * A full bucket does not evict on its own (Kademlia's liveness check): add
 * returns the least recently seen peer as a candidate, the newcomer waits
 * in a small per-bucket replacement cache, and the caller pings the
 * candidate and reports the outcome with np_kbucket_report. */
#ifndef NP_KBUCKET_H
#define NP_KBUCKET_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"
#include "np_peerid.h"

#define NP_KBUCKET_KEYLEN 32 /* SHA-256 */
#define NP_KBUCKET_BUCKETS 256

typedef struct np_kbucket np_kbucket; /* opaque; one thread */

typedef struct np_kbucket_config {
  size_t k;            /* peers per bucket, 1..255 (spec: 20) */
  size_t replacements; /* replacement cache per bucket, 0..255 (e.g. 3) */
} np_kbucket_config;

/* Results of np_kbucket_add (all >= 0). */
#define NP_KBUCKET_ADDED 0   /* new entry */
#define NP_KBUCKET_UPDATED 1 /* known: last seen now, moved to the tail */
#define NP_KBUCKET_FULL 2    /* *candidate set: ping it, then report */
#define NP_KBUCKET_QUEUED 3  /* full, a check is already under way */

/* Kademlia key of |id|: SHA-256 of its binary multihash. */
void np_kbucket_key(const np_peerid *id, uint8_t key[NP_KBUCKET_KEYLEN]);

/* Common prefix length of two keys in bits (256 when equal). */
unsigned np_kbucket_cpl(const uint8_t *a, const uint8_t *b);

/* -1, 0 or 1 as the XOR distance of |a| to |target| is smaller, equal or
 * larger than that of |b|. */
int np_kbucket_cmp(const uint8_t *target, const uint8_t *a, const uint8_t *b);

/* Create the table of the local peer |self| (|cfg| NULL: k 20, 3
 * replacements). Returns 0, NP_EINVAL (k or replacements out of range) or
 * NP_ENOMEM. Free with np_kbucket_del (NULL is fine). */
int np_kbucket_new(np_kbucket **pt, const np_peerid *self,
                   const np_kbucket_config *cfg);
void np_kbucket_del(np_kbucket *t);

/* |id| was seen at |now|. Returns one of NP_KBUCKET_ADDED, _UPDATED,
 * _FULL (|*candidate|, if not NULL, is the least recently seen entry of
 * the bucket; |id| waits in the replacement cache) or _QUEUED (|id| waits
 * in the replacement cache), or NP_EINVAL (|id| is the local peer) or
 * NP_ENOMEM. */
int np_kbucket_add(np_kbucket *t, const np_peerid *id, uint64_t now,
                   np_peerid *candidate);

/* Outcome of the check of |candidate| (from NP_KBUCKET_FULL): alive, it
 * becomes the most recently seen and the newcomers stay cached; dead, it
 * is removed and the most recent cached peer takes its place. Returns 0 or
 * NP_ENOENT (|candidate| is not in the table any more). */
int np_kbucket_report(np_kbucket *t, const np_peerid *candidate, int alive,
                      uint64_t now);

/* Remove |id| (from the bucket, or from a replacement cache); a cached
 * peer fills the freed slot. Returns 0 or NP_ENOENT. */
int np_kbucket_remove(np_kbucket *t, const np_peerid *id);

/* Nonzero if |id| is in a bucket (cached peers do not count). */
int np_kbucket_contains(const np_kbucket *t, const np_peerid *id);

/* Number of peers in the buckets. */
size_t np_kbucket_size(const np_kbucket *t);

/* Peers in bucket |i| (common prefix length i with the local key). */
size_t np_kbucket_bucket_size(const np_kbucket *t, unsigned i);

/* Write the (at most |n|) peers closest to |target| to |out|, nearest
 * first. Returns how many were written. */
size_t np_kbucket_closest(const np_kbucket *t,
                          const uint8_t target[NP_KBUCKET_KEYLEN], size_t n,
                          np_peerid *out);

/* Heap bytes one table entry takes (for the memory budget). */
size_t np_kbucket_entry_size(void);

#endif
