/* TCP transport (np_transport): /ip4|ip6/A/tcp/P[/p2p/ID], upgraded to
 * Noise + yamux by np_upgrade.
 *
 * Listen and dial sockets set SO_REUSEADDR and SO_REUSEPORT, and a dial
 * leaves from the listen port of its address family when there is a
 * listener (what TCP hole punching needs); when that 4-tuple is taken
 * (EADDRNOTAVAIL) or the bind fails, it leaves from an ephemeral port.
 * Sockets are non-blocking with TCP_NODELAY; reads go through one 256 KiB
 * buffer per transport. Loop thread only. */
#ifndef NP_TTCP_H
#define NP_TTCP_H

#include <stdint.h>

#include "np_conn.h"
#include "np_identity.h"
#include "np_loop.h"
#include "np_upgrade.h"

/* Zero fields take the np_ttcp_config_default value. */
typedef struct np_ttcp_config {
  uint32_t max_connections;    /* in + out, handshaking included; inbound
                                  ones beyond are closed at accept; 512 */
  int backlog;                 /* listen(2) backlog; default 128 */
  uint64_t connect_timeout_ms; /* connect(2) to established; 10000 */
  np_upgrade_config upgrade;   /* handshake, streams, keepalive */
} np_ttcp_config;

void np_ttcp_config_default(np_ttcp_config *cfg);

/* np_ttcp_new creates the transport on |loop|, authenticating as |id|
 * (borrowed; must outlive it). |cfg| may be NULL; |cfg| and |cbs| are
 * copied; events get |ud|. Returns 0, NP_EINVAL or NP_ENOMEM. Free with
 * (*pt)->ops->del, not from inside one of its events.
 *
 * Through its ops: listen binds /ip4|ip6/A/tcp/P (a trailing /p2p/ID is
 * ignored; P 0 picks a free port, listen_addr reports it; /ip6 is
 * IPv6-only). dial returns 0 (conn_down follows for a refused connect,
 * NP_EUNREACH; a connect timeout, NP_ETIMEDOUT; or a handshake failure),
 * NP_ENOTSUP / a multiaddr error (not a TCP address), NP_ELIMIT
 * (max_connections), NP_ECANCELED (during del), NP_ENOMEM or NP_ESYS. */
int np_ttcp_new(np_transport **pt, np_loop *loop, const np_identity *id,
                const np_ttcp_config *cfg, const np_conn_cbs *cbs, void *ud);

/* DCUtR's TCP hole punch (simultaneous open, libp2p-wire.md §14): connect
 * to /ip4|ip6/A/tcp/P from the listen port a dial there would use, and run
 * the handshake as the listener (security responder), since the peer's
 * own connect(2) to us makes the same single connection with the peer as
 * the dialer. The upper layer sees an inbound connection: conn_up (with a
 * NULL ud) if the handshake succeeds, no event otherwise. Returns 0,
 * NP_EINVAL (|t| is not np_ttcp's), NP_ENOENT (no listen socket for that
 * family), NP_EUNREACH (refused at once), a multiaddr error, NP_ELIMIT,
 * NP_ECANCELED, NP_ESYS or NP_ENOMEM. */
int np_ttcp_punch(np_transport *t, const uint8_t *maddr, size_t len);

#endif
