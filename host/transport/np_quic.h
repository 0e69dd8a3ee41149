/* QUIC v1 transport (RFC 9000, libp2p /quic-v1) over UDP on libev, with
 * ngtcp2 and libp2p TLS (np_tls). One UDP socket per listen address serves
 * inbound and outbound connections, so dials leave from the advertised port
 * (what NAT traversal needs). Each libp2p stream is one bidirectional QUIC
 * stream; there are no unidirectional streams or datagrams.
 *
 * This header names no ngtcp2 or wolfSSL type. Loop thread only.
 *
 * Callbacks and re-entrancy: conn_up, stream_open and stream_data may run
 * while a packet is being processed; conn_down, stream_close and
 * stream_writable run from np_quic's own loop work. From any callback the
 * functions below may be called (they queue work that runs before the loop
 * sleeps again), except np_quic_del. Pointers handed to a callback are
 * borrowed for that call. */
#ifndef NP_QUIC_H
#define NP_QUIC_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_loop.h"
#include "np_peerid.h"
#include "np_tls.h"

typedef struct np_quic np_quic;       /* the endpoint: sockets + connections */
typedef struct np_qconn np_qconn;     /* one connection */
typedef struct np_qstream np_qstream; /* one bidirectional stream */

/* Limits. Zero fields take the np_quic_config_default value. */
typedef struct np_quic_config {
  uint32_t max_connections;      /* live connections in + out, incl. ones
                                    closing; default 512 */
  uint32_t max_streams_per_conn; /* concurrent bidi streams the peer may
                                    open, and we may open; default 256 */
  uint64_t idle_timeout_ms;      /* QUIC max_idle_timeout; default 30000 */
  uint64_t handshake_timeout_ms; /* default 10000 */
  uint64_t keepalive_ms;    /* PING after this much idle time; default 15000;
                               UINT64_MAX disables */
  size_t stream_buffer_max; /* unsent + unacknowledged bytes per stream;
                               default 1 MiB */
  size_t conn_buffer_max;   /* the same summed over a connection's streams;
                               default 16 MiB */
  uint64_t recv_window_max; /* receive flow-control window of a connection
                               (auto-tuned up to this; half per stream): the
                               most ngtcp2 buffers out of order; 16 MiB */
} np_quic_config;

/* Fill |cfg| with the defaults above. */
void np_quic_config_default(np_quic_config *cfg);

/* Every callback receives the |ud| given to np_quic_new. NULL members are
 * allowed (the event is then ignored; an unhandled remote stream is still
 * created and must be reset or served through the other calls). */
typedef struct np_quic_cbs {
  /* Handshake done and the peer verified (libp2p TLS). Server side: after
   * checking the client's certificate. Client side: once the server has
   * confirmed the handshake (it accepted our certificate), or at its first
   * stream frame. For inbound connections this is the first time |c| is
   * seen; dialed ones were returned by np_quic_dial. */
  void (*conn_up)(np_qconn *c, void *ud);
  /* The last callback for |c|, exactly once for every connection the upper
   * layer knows (dialed ones even if they never came up; inbound ones only
   * after conn_up). Every stream of |c| got its stream_close before. |err|
   * < 0: NP_ECANCELED (np_quic_conn_close, np_quic_del), NP_ECLOSED (peer
   * closed it), NP_ETIMEDOUT (idle or handshake timeout), NP_EPEERID (dial:
   * the server has another peer ID), NP_ECRYPTO (TLS or certificate
   * failure, either side), NP_ENOPROTO (no ALPN "libp2p"), NP_EPROTO (QUIC
   * protocol error), NP_ENOMEM. |c| is freed after it returns. */
  void (*conn_down)(np_qconn *c, int err, void *ud);
  /* The peer opened |s| (set its user data with np_quic_stream_set_ud). */
  void (*stream_open)(np_qstream *s, void *ud);
  /* In-order bytes of |s|; |fin| is set with the last (|len| may be 0).
   * The receive window is credited back when this returns: copy what you
   * keep. */
  void (*stream_data)(np_qstream *s, const uint8_t *data, size_t len, int fin,
                      void *ud);
  /* The last callback for |s|. |err|: 0 after both directions ended
   * cleanly (FIN each way, ours acknowledged); NP_ECLOSED if the peer
   * reset it; NP_ECANCELED after np_quic_stream_reset; otherwise the
   * connection's conn_down error. |s| is freed after it returns. */
  void (*stream_close)(np_qstream *s, int err, void *ud);
  /* Once after np_quic_stream_write returned NP_ELIMIT for |s|, when at
   * least half of the stream's buffer is free again. */
  void (*stream_writable)(np_qstream *s, void *ud);
  /* Once after np_quic_stream_open returned NP_ELIMIT on |c|, when an open
   * may succeed again: the peer raised its stream limit (MAX_STREAMS) or one
   * of our streams on |c| ended. (Appended last: older initializers that
   * stop at stream_writable leave it NULL.) */
  void (*conn_stream_credit)(np_qconn *c, void *ud);
} np_quic_cbs;

/* np_quic_new creates an endpoint without sockets on |loop| (not owned),
 * presenting |tls|'s certificate (not owned; must outlive it). |cfg| may be
 * NULL (defaults); |cfg| and |cbs| are copied. Returns 0, NP_EINVAL or
 * NP_ENOMEM. Free with np_quic_del. */
int np_quic_new(np_quic **pq, np_loop *loop, np_tls *tls,
                const np_quic_config *cfg, const np_quic_cbs *cbs, void *ud);

/* np_quic_del closes every connection at once (CONNECTION_CLOSE sent best
 * effort, no closing period): stream_close and conn_down run with
 * NP_ECANCELED from inside this call; then sockets, watchers and memory are
 * released. Must not be called from a np_quic callback. NULL is fine. */
void np_quic_del(np_quic *q);

/* Bind a UDP socket for the binary multiaddr /ip4|ip6/A/udp/P/quic-v1 (a
 * trailing /p2p/ID is ignored; P = 0 picks a free port; /ip6 is IPv6-only)
 * and accept connections on it; it also carries dials to that address
 * family. Logs "info quic listen addr=...". Returns 0, NP_ENOTSUP (other
 * address shapes), a np_maddr_validate error, NP_ENOMEM, or NP_ESYS (logged
 * with errno, e.g. the address is in use). */
int np_quic_listen(np_quic *q, const uint8_t *maddr, size_t len);

/* Number of listening sockets, and the bound address of the |i|-th one
 * (the real port when 0 was asked; a wildcard IP stays wildcard), written
 * to |out| as a binary multiaddr. Returns the length, NP_ENOENT (no such
 * index) or NP_ELIMIT (|cap| too small). */
size_t np_quic_listen_count(const np_quic *q);
np_ssize np_quic_listen_addr(const np_quic *q, size_t i, uint8_t *out,
                             size_t cap);

/* np_quic_dial connects to /ip4|ip6/A/udp/P/quic-v1[/p2p/ID]. With /p2p/
 * the server must present that peer ID (else conn_down(NP_EPEERID) and a
 * warn log naming both IDs); without it any verified peer is accepted. The
 * packets leave from a listening socket of the same family (wildcard-bound
 * preferred), or from an unbound dial-only socket if there is none.
 * |*pc| is valid until conn_down; conn_up or conn_down follows later, never
 * from inside this call. |ud| becomes the connection's user data. Returns
 * 0, NP_ENOTSUP / a multiaddr error (bad address), NP_ELIMIT
 * (max_connections), NP_ENOMEM, NP_ECRYPTO, NP_ECANCELED (during
 * np_quic_del) or NP_ESYS. */
int np_quic_dial(np_quic *q, const uint8_t *maddr, size_t len, void *ud,
                 np_qconn **pc);
/* np_quic_dial with flags: NP_QUIC_DIAL_NEW_PORT sends from a socket of
 * the connection's own on a new ephemeral port (closed with it), not from
 * the listening socket: an AutoNAT dial-back must not arrive through the
 * NAT mapping the peer's own connection to us opened. */
#define NP_QUIC_DIAL_NEW_PORT 1
int np_quic_dial_flags(np_quic *q, const uint8_t *maddr, size_t len,
                       int flags, void *ud, np_qconn **pc);

/* np_quic_punch sends one UDP datagram of NP_QUIC_PUNCH_LEN random bytes
 * to /ip4|ip6/A/udp/P/quic-v1 from the listening socket a dial there would
 * use: the QUIC-server side of a DCUtR hole punch opens its NAT mapping
 * this way and then accepts the peer's Initial as an inbound connection.
 * Receivers drop such datagrams (they look like short-header packets of
 * no connection). Best effort: a full socket buffer drops it silently.
 * Returns 0, NP_ENOENT (no listening socket for that family), a multiaddr
 * error, NP_ECRYPTO or NP_ECANCELED (during np_quic_del). */
#define NP_QUIC_PUNCH_LEN 64
int np_quic_punch(np_quic *q, const uint8_t *maddr, size_t len);

/* Number of connection objects alive, including ones still in their
 * closing or draining period (tests; bounded by max_connections). */
size_t np_quic_conn_count(const np_quic *q);

/* np_quic_conn_close closes |c| with the QUIC application error code
 * |app_error| (libp2p uses 0 for a normal close). Its streams, then |c|,
 * get their close callbacks with NP_ECANCELED later, never from inside
 * this call. Calling it again, or after conn_down was queued, does
 * nothing. */
void np_quic_conn_close(np_qconn *c, uint64_t app_error);

/* The verified remote peer ID. Returns 0, or NP_ENOENT before conn_up. */
int np_quic_conn_peer(const np_qconn *c, np_peerid *id);
/* Current remote address as /ip4|ip6/A/udp/P/quic-v1 in |out|; returns its
 * length or NP_ELIMIT. */
np_ssize np_quic_conn_remote_addr(const np_qconn *c, uint8_t *out, size_t cap);
/* The local (socket) address the connection uses, same form. */
np_ssize np_quic_conn_local_addr(const np_qconn *c, uint8_t *out, size_t cap);
/* QUIC's smoothed round-trip estimate for |c| in microseconds, or -1
 * before the first sample. */
int64_t np_quic_conn_rtt_us(const np_qconn *c);
/* Nonzero if the peer dialed us. */
int np_quic_conn_inbound(const np_qconn *c);
void np_quic_conn_set_ud(np_qconn *c, void *ud);
void *np_quic_conn_ud(const np_qconn *c);

/* np_quic_stream_open opens a bidirectional stream on |c|, which must be up
 * (conn_up seen or, for a dial, delivered). The peer learns of it with the
 * first byte (or FIN) written. Returns 0, NP_EINVAL (not up yet),
 * NP_ECLOSED (closing), NP_ELIMIT (max_streams_per_conn open, or the
 * peer's stream credit is used up; conn_stream_credit follows when that
 * changes) or NP_ENOMEM. */
int np_quic_stream_open(np_qconn *c, void *ud, np_qstream **ps);

/* np_quic_stream_write copies all |len| bytes into the stream's send
 * buffer and keeps them until the peer acknowledges them. All or nothing:
 * when the stream would hold more than stream_buffer_max unacknowledged
 * bytes (or the connection more than conn_buffer_max) nothing is queued,
 * NP_ELIMIT is returned and stream_writable follows once half the buffer
 * has drained (so a single write larger than half of stream_buffer_max
 * should be split; np_quic_stream_write_space tells what fits now).
 * Returns 0, NP_ELIMIT, NP_ECLOSED (after shutdown/reset, the peer's
 * STOP_SENDING, or connection closing) or NP_ENOMEM. */
int np_quic_stream_write(np_qstream *s, const uint8_t *data, size_t len);
/* Bytes np_quic_stream_write would accept now. */
size_t np_quic_stream_write_space(const np_qstream *s);
/* Send FIN after the queued bytes. Returns 0 or NP_ECLOSED. */
int np_quic_stream_shutdown(np_qstream *s);
/* Abort both directions (RESET_STREAM + STOP_SENDING with |app_error|);
 * queued bytes are dropped. stream_close(NP_ECANCELED) follows later,
 * never from inside this call; no stream_data arrives any more. */
void np_quic_stream_reset(np_qstream *s, uint64_t app_error);

/* Stop (1) or resume (0) crediting |s|'s receive window: data already in
 * flight is still delivered, at most one window of it, then the sender
 * waits. Resuming credits what was delivered meanwhile. */
void np_quic_stream_pause(np_qstream *s, int paused);
np_qconn *np_quic_stream_conn(const np_qstream *s);
int64_t np_quic_stream_id(const np_qstream *s);
void np_quic_stream_set_ud(np_qstream *s, void *ud);
void *np_quic_stream_ud(const np_qstream *s);

#endif
