/* In-memory transport (np_transport) for tests and many-host simulations
 * in one process: addresses /memory/NAME[/p2p/ID] (js-libp2p's form). A
 * shared np_tmem_net is the "network" that listeners register their names
 * in; a dial connects an in-memory byte-stream pair (np_bstream) and runs
 * both ends through np_upgrade, so multistream, Noise and yamux are the
 * real ones. Bytes move on later loop turns (np_defer), never re-entrantly.
 * Idle connections hold no pipe buffers. Loop thread only. */
#ifndef NP_TMEM_H
#define NP_TMEM_H

#include <stddef.h>
#include <stdint.h>

#include "np_conn.h"
#include "np_identity.h"
#include "np_loop.h"
#include "np_upgrade.h"

typedef struct np_tmem_net np_tmem_net; /* opaque */

/* A network on |loop|. Returns 0 or NP_ENOMEM. */
int np_tmem_net_new(np_tmem_net **pn, np_loop *loop);
/* Free |n| once every transport on it is deleted. NULL is fine. */
void np_tmem_net_del(np_tmem_net *n);

/* Zero fields take the np_tmem_config_default value. */
typedef struct np_tmem_config {
  uint32_t max_connections; /* in + out, handshaking included; 512 */
  size_t pipe_bytes;        /* in flight each way per connection; 256 KiB */
  int limited;              /* mark its connections limited, as relayed
                               ones are (tests of the relayed path) */
  np_upgrade_config upgrade;
} np_tmem_config;

void np_tmem_config_default(np_tmem_config *cfg);

/* np_tmem_new creates a transport on |net| authenticating as |id|
 * (borrowed; must outlive it). |cfg| may be NULL; |cfg| and |cbs| are
 * copied. Returns 0, NP_EINVAL or NP_ENOMEM. Free with (*pt)->ops->del
 * (not from inside one of its events; before np_tmem_net_del).
 *
 * Through its ops: listen registers /memory/NAME (a trailing /p2p/ID is
 * ignored) and returns 0, NP_ENOTSUP (another shape) or NP_EEXIST (NAME
 * taken on this network). dial returns 0 (conn_down(NP_EUNREACH) follows
 * when nobody listens on NAME, NP_ECLOSED when the listener is full),
 * NP_ENOTSUP, NP_ELIMIT (max_connections), NP_ECANCELED or NP_ENOMEM. */
int np_tmem_new(np_transport **pt, np_tmem_net *net, const np_identity *id,
                const np_tmem_config *cfg, const np_conn_cbs *cbs, void *ud);

/* Simulations: |t|'s host vanishes without notice, for good. Its
 * connections go silent both ways (no close, no reset reaches the other
 * ends: np_bstream_pair_set_gone), dials to its names hang until the
 * dialer's timeout, its own dials fail with NP_EUNREACH. The transport
 * stays usable for del. Returns 0 or NP_EINVAL (not an np_tmem). */
int np_tmem_vanish(np_transport *t);

#endif
