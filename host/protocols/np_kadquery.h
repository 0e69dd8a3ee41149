/* Iterative Kademlia lookup (libp2p-wire.md §11), sans-I/O: the caller
 * sends the requests np_kadquery_next hands out, feeds back each answer,
 * failure and timeout, and reads the result when the state leaves
 * NP_KADQUERY_RUNNING. Times are arguments in the caller's unit.
 *
 * The lookup keeps a bounded candidate set sorted by XOR distance to the
 * target (the farthest idle entry gives way), queries at most |alpha| at
 * once among the k closest not-failed candidates, and ends when those k
 * have all answered. Hostile answers (thousands of peers, peers that are
 * not closer) cannot grow it: each answer is cut to |max_per_response|,
 * the set to |max_candidates|, the whole lookup to |max_queried| requests
 * and learned peers to |max_depth| hops from the seeds.
 *
 * One disjoint path for now; the per-path state is kept apart so S/Kademlia
 * disjoint paths can be added as more of them. */
#ifndef NP_KADQUERY_H
#define NP_KADQUERY_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"
#include "np_kbucket.h"
#include "np_peerid.h"

typedef struct np_kadquery np_kadquery; /* opaque; one thread */

typedef struct np_kadquery_config {
  size_t k;                /* result size, 1..255 (20) */
  size_t alpha;            /* requests in flight, >= 1 (10) */
  size_t max_candidates;   /* candidate set, >= k + alpha (3 * k + alpha) */
  size_t max_per_response; /* closer peers read per answer (2 * k) */
  size_t max_queried;      /* requests per lookup (256) */
  unsigned max_depth;      /* hops from the seeds, 1..255 (20) */
  uint64_t timeout;        /* per request; 0: the caller times out itself */
} np_kadquery_config;

/* Fill |c| with the defaults above. */
void np_kadquery_config_default(np_kadquery_config *c);

typedef enum np_kadquery_state {
  NP_KADQUERY_RUNNING = 0,
  NP_KADQUERY_DONE = 1,   /* the k closest not-failed peers all answered */
  NP_KADQUERY_LIMIT = 2,  /* max_queried reached first; partial result */
  NP_KADQUERY_FAILED = 3  /* no peer left to ask and none answered */
} np_kadquery_state;

typedef struct np_kadquery_stats {
  size_t queried;   /* requests handed out (messages) */
  size_t answered;  /* responses accepted */
  size_t failed;    /* failures and timeouts */
  size_t timed_out; /* of which timeouts */
  size_t ignored;   /* responses from peers not in flight */
  size_t dropped;   /* offered peers not kept (caps, duplicates, self) */
  unsigned depth;   /* largest hop count of an answering peer */
} np_kadquery_stats;

/* Start a lookup of the 32-byte Kademlia key |target| (np_kbucket_key of a
 * peer ID, or SHA-256 of a key) by the local peer |self| (never queried).
 * |cfg| NULL: defaults. Returns 0, NP_EINVAL (a bound out of range) or
 * NP_ENOMEM. Free with np_kadquery_del (NULL is fine). */
int np_kadquery_new(np_kadquery **pq, const uint8_t target[NP_KBUCKET_KEYLEN],
                    const np_peerid *self, const np_kadquery_config *cfg);
void np_kadquery_del(np_kadquery *q);

/* Add |n| first-hop peers (e.g. np_kbucket_closest of the target). With
 * none, the lookup ends NP_KADQUERY_FAILED. Returns 0. */
int np_kadquery_seed(np_kadquery *q, const np_peerid *peers, size_t n);

/* Hand out up to |max| peers to query now (into |out|); each is in flight
 * until answered, failed or timed out (deadline |now| + timeout). Returns
 * how many; 0 when alpha are in flight, or nothing is left to ask. */
size_t np_kadquery_next(np_kadquery *q, uint64_t now, np_peerid *out,
                        size_t max);

/* |from| answered with |closer| (|n| peers, as decoded). Returns 0, or
 * NP_ENOENT if |from| is not in flight (late or unsolicited; ignored). */
int np_kadquery_on_response(np_kadquery *q, const np_peerid *from,
                            const np_peerid *closer, size_t n);

/* The request to |from| failed (dial, stream, bad message). Returns 0 or
 * NP_ENOENT if |from| is not in flight. */
int np_kadquery_on_failure(np_kadquery *q, const np_peerid *from);

/* Fail every request whose deadline is <= |now|. Returns how many. */
size_t np_kadquery_on_timeout(np_kadquery *q, uint64_t now);

/* Earliest deadline of a request in flight, UINT64_MAX if none. */
uint64_t np_kadquery_deadline(const np_kadquery *q);

np_kadquery_state np_kadquery_state_get(const np_kadquery *q);

/* Write the (at most |max|, at most k) closest peers that answered, nearest
 * first. Returns how many. Meaningful once the state is not RUNNING. */
size_t np_kadquery_result(const np_kadquery *q, np_peerid *out, size_t max);

void np_kadquery_stats_get(const np_kadquery *q, np_kadquery_stats *st);

#endif
