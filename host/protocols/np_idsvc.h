/* Identify as a host module (np_module.h), over the sans-I/O codec of
 * np_identify.h:
 *  - on every new connection (NP_EV_CONN_UP) it reads the peer's identify
 *    on a stream of that connection, checks the key in it against the one
 *    the connection authenticated, stores what it says in the peerstore,
 *    emits NP_EV_PEER_IDENTIFIED and NP_EV_OBSERVED_ADDR, and tells the
 *    swarm the connection is identified;
 *  - it answers /ipfs/id/1.0.0 with every protocol in the host's table
 *    (host modules included), our addresses, the address we see the peer
 *    at, and our signed peer record (left out when the message would be
 *    too big with it);
 *  - after changes to the table (NP_EV_LOCAL_PROTOCOLS_CHANGED, coalesced
 *    to one round per loop turn) it pushes the new identify to every
 *    connection, and reads the pushes of others (/ipfs/id/push/1.0.0),
 *    emitting NP_EV_PROTOCOLS_CHANGED when a peer's list changed. */
#ifndef NP_IDSVC_H
#define NP_IDSVC_H

#include "np_module.h"

extern const np_module np_idsvc_module;

#endif
