/* Connection upgrader (libp2p-wire.md §10): a byte stream (np_bstream: a
 * TCP socket, later a relayed stream; an in-memory pair in tests) becomes
 * an np_conn:
 *
 *   multistream-select /multistream/1.0.0, then /noise or /tls/1.0.0
 *     (the dialer proposes np_upgrade_config.security in order, the
 *     listener accepts any of them)
 *   Noise XX with the libp2p payload, or libp2p TLS 1.3 (np_tlsstream);
 *     the dialer's expected peer enforced either way
 *   yamux /yamux/1.0.0: inlined in the Noise handshake or TLS ALPN when
 *     both sides offer it, else multistream-select inside the channel
 *
 * The dialer is the Noise initiator / TLS client and the yamux client
 * (odd stream ids). /plaintext/2.0.0 is not implemented.
 *
 * np_conn streams are yamux streams. write is all-or-nothing into a
 * per-stream send buffer; pause withholds the yamux window (the peer
 * stalls after at most one window); the socket side pushes back both ways
 * (yamux output is drained only as fast as the byte stream takes it, and
 * the byte stream is not read while yamux refuses input). A yamux ping
 * measures the RTT at the start and keeps idle connections alive.
 *
 * Events follow np_conn.h: conn_up, stream_open and stream_data run while
 * input is processed; stream_writable, stream_close, stream_credit and
 * conn_down from the connection's np_defer work; none from inside an ops
 * call. Loop thread only. */
#ifndef NP_UPGRADE_H
#define NP_UPGRADE_H

#include <stddef.h>
#include <stdint.h>

#include "np_bstream.h"
#include "np_conn.h"
#include "np_identity.h"
#include "np_loop.h"

typedef struct np_upgrade np_upgrade; /* opaque; one per transport */

/* Security protocols for np_upgrade_config.security. */
enum { NP_UPGRADE_NOISE = 1, NP_UPGRADE_TLS = 2 };
#define NP_UPGRADE_SEC_MAX 2

/* Zero fields take the np_upgrade_config_default value. */
typedef struct np_upgrade_config {
  uint64_t handshake_timeout_ms; /* start to conn_up; default 10000 */
  uint64_t keepalive_ms;         /* yamux ping after this long without input;
                                    default 15000; UINT64_MAX disables */
  uint64_t idle_timeout_ms;      /* close after this long without input (a
                                    live peer answers the pings); default 30000;
                                    UINT64_MAX disables */
  size_t stream_buffer_max;      /* unsent bytes queued per stream; 1 MiB */
  size_t conn_buffer_max;        /* the same summed over a connection; 16 MiB */
  uint32_t max_streams;          /* concurrent streams the peer may open, and
                                    we may open; default 256 */
  uint32_t max_window;           /* yamux receive window auto-tuning cap: what
                                    a paused stream holds at most; 16 MiB */
  int no_inline_muxer;           /* offer no muxer inside Noise or TLS ALPN:
                                    /yamux/1.0.0 then goes through
                                    multistream-select */
  uint8_t security[NP_UPGRADE_SEC_MAX]; /* NP_UPGRADE_NOISE/_TLS in
                                    preference order, 0-terminated: what a
                                    dial proposes and a listener accepts;
                                    all zero: noise, then tls. A repeated or
                                    unknown entry: NP_EINVAL */
} np_upgrade_config;

void np_upgrade_config_default(np_upgrade_config *cfg);

/* np_upgrade_new creates the upgrader of one transport: connections of
 * |kind| (np_transport_kind) authenticated as |id| (borrowed, must
 * outlive it), events to |cbs| (copied) with |ud|. |cfg| may be NULL.
 * Returns 0, NP_EINVAL or NP_ENOMEM. */
int np_upgrade_new(np_upgrade **pu, np_loop *loop, const np_identity *id,
                   int kind, const np_upgrade_config *cfg,
                   const np_conn_cbs *cbs, void *ud);

/* Closes every connection at once: stream_close and conn_down
 * (NP_ECANCELED) run from inside this call, then it frees |u|. While it
 * runs, np_upgrade_start refuses with NP_ECANCELED. Not from inside one of
 * its events. NULL is fine. */
void np_upgrade_del(np_upgrade *u);

/* Upgrade |bs| (owned from now, closed here on failure) as the dialer
 * (|inbound| 0) or the listener. |expected| (copied; NULL: any peer) is
 * the peer a dial must reach (else conn_down(NP_EPEERID)). |laddr| and
 * |raddr| are binary multiaddrs copied into the np_conn (at most
 * NP_CONN_ADDR_MAX bytes; |llen| 0 lets the byte stream's local_addr fill
 * it at conn_up). |ud| becomes c->ud. A dial gets conn_up or conn_down
 * later; an inbound connection is first seen at conn_up and gets no event
 * if its handshake fails. Returns 0, NP_EINVAL, NP_ECANCELED (during
 * np_upgrade_del) or NP_ENOMEM (no event then). */
int np_upgrade_start(np_upgrade *u, np_bstream *bs, int inbound,
                     const np_peerid *expected, const uint8_t *laddr,
                     size_t llen, const uint8_t *raddr, size_t rlen, void *ud,
                     np_conn **pc);

/* A dial that failed before it had a byte stream (connect refused at
 * once): |*pc| gets conn_down(|err|) later. Returns 0, NP_ECANCELED or
 * NP_ENOMEM (no event then). */
int np_upgrade_dial_failed(np_upgrade *u, int err, const uint8_t *raddr,
                           size_t rlen, void *ud, np_conn **pc);

/* Connections alive: handshaking, up, or with conn_down still to come. */
size_t np_upgrade_count(const np_upgrade *u);

#endif
