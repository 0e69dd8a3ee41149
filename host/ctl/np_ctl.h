/* Control socket: the libp2p daemon (p2pd) control protocol with hivemind's
 * unary extension, plus natpeer's own requests (types >= 64). Clients
 * (natpeer-cli, @libp2p/daemon-client, hivemind's P2P) send one
 * uvarint-delimited Request per connection turn; STREAM_OPEN turns the
 * connection into the stream, PERSISTENT_CONN_UPGRADE into a multiplexed
 * unary-call channel. Handlers registered by clients share the host's
 * protocol table with plugins. DHT requests go to the host's "kad" module
 * (np_host_module), looked up per request: "DHT not enabled" without it. */
#ifndef NP_CTL_H
#define NP_CTL_H

#include <stddef.h>

typedef struct np_host np_host;
typedef struct np_ctl np_ctl;

/* Listen on the host's [host] control address: a unix socket path (created
 * 0600, or 0660 for control_group; a stale socket file is replaced, a live
 * one is an error) or /ip4|ip6/A/tcp/P (loopback only unless
 * control_allow_remote). On error |err| gets one line naming the address. */
int np_ctl_new(np_ctl **pc, np_host *h, char *err, size_t errlen);
/* natpeer-p2pd (go-libp2p-daemon's behaviour; natpeer-host never calls
 * this): a unary call to this host's own peer ID fails ("dial to self
 * attempted") instead of running the local handler, and |fn| (may be NULL)
 * runs each time the number of open persistent connections changes, with
 * the new count. |fn| must not close control clients: arm a timer. */
typedef void (*np_ctl_persist_fn)(void *ud, unsigned npersist);
void np_ctl_p2pd_mode(np_ctl *c, np_ctl_persist_fn fn, void *ud);
/* Close every client, remove their handlers, unlink the socket file. */
void np_ctl_del(np_ctl *c);
/* The bound address as a multiaddr ("/unix/…" or "/ip4/127.0.0.1/tcp/N"). */
const char *np_ctl_addr(const np_ctl *c);

#endif
