/* One interface for every secured, multiplexed connection: QUIC (np_tquic),
 * yamux over a secured byte stream (np_upgrade: TCP today, a relayed
 * stream later), and an in-memory pair for tests. The swarm, identify, the
 * control socket and plugins see only this.
 *
 * A connection is an np_conn; its streams are np_cstream (the handler-side
 * np_stream of natpeer/plugin.h sits on top of one). Implementations put
 * the public part below first in their own struct and fill |ops|; the upper
 * layer (one per transport instance: the swarm) receives the events of
 * np_conn_cbs. The contract is np_quic's, which came first:
 *
 *  - conn_up, then any number of stream events, then conn_down exactly once
 *    (for a dialed connection also when it never came up). Every stream of
 *    a connection gets its stream_close before the conn_down.
 *  - stream_close is the last event of a stream, exactly once; the stream is
 *    freed when it returns. conn_down likewise for the connection.
 *  - Events never run from inside an ops call the upper layer made (calls
 *    queue their effects); an ops call from inside an event is fine.
 *
 * Loop thread only. */
#ifndef NP_CONN_H
#define NP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_peerid.h"

typedef struct np_conn np_conn;
typedef struct np_cstream np_cstream;

enum np_transport_kind {
  NP_TRANSPORT_QUIC = 1,
  NP_TRANSPORT_TCP = 2,
  NP_TRANSPORT_MEM = 3, /* in-memory pair (tests) */
  NP_TRANSPORT_RELAY = 4
};
/* "quic", "tcp", "mem", "relay" (or "?"). */
const char *np_transport_name(int kind);

#define NP_CONN_ADDR_MAX 128

typedef struct np_conn_ops {
  /* Open a stream on an up connection. 0, NP_EINVAL (not up yet),
   * NP_ECLOSED (closing), NP_ELIMIT (no stream credit now: stream_credit
   * follows when an open may succeed) or NP_ENOMEM. */
  int (*stream_open)(np_conn *c, void *ud, np_cstream **ps);
  /* Close the connection (|app_error| where the transport has codes).
   * Streams and then the connection get their events later. Idempotent. */
  void (*close)(np_conn *c, uint64_t app_error);
  /* Smoothed round-trip time in microseconds, or -1 unknown. */
  int64_t (*rtt_us)(const np_conn *c);

  /* All |len| bytes queued, or none: 0, NP_ELIMIT (buffer full; then
   * stream_writable follows once half of it is free), NP_ECLOSED,
   * NP_ENOMEM. */
  int (*write)(np_cstream *s, const uint8_t *data, size_t len);
  /* Bytes write would accept now. */
  size_t (*write_space)(const np_cstream *s);
  /* FIN after the queued bytes. 0 or NP_ECLOSED. */
  int (*shutdown)(np_cstream *s);
  /* Abort both directions; stream_close(NP_ECANCELED) follows later. */
  void (*reset)(np_cstream *s);
  /* Stop (1) or resume (0) crediting the receive window: the sender stalls
   * after at most one window of data. */
  void (*pause)(np_cstream *s, int paused);
} np_conn_ops;

typedef struct np_conn_cbs {
  /* Handshake done, the peer authenticated (|c->peer| is set). Inbound
   * connections are first seen here. */
  void (*conn_up)(np_conn *c, void *ud);
  /* Last event of |c|. NP_ECANCELED (closed here), NP_ECLOSED (by the
   * peer), NP_ETIMEDOUT, NP_EPEERID (dial reached another peer),
   * NP_ECRYPTO, NP_ENOPROTO (no common security or muxer protocol),
   * NP_EPROTO, NP_EUNREACH (connect refused), NP_ENOMEM. */
  void (*conn_down)(np_conn *c, int err, void *ud);
  void (*stream_open)(np_cstream *s, void *ud);
  /* In-order bytes; |fin| with the last (|len| may be 0). Borrowed. */
  void (*stream_data)(np_cstream *s, const uint8_t *data, size_t len, int fin,
                      void *ud);
  /* 0 both directions ended cleanly; NP_ECLOSED reset by the peer;
   * NP_ECANCELED reset here; else the connection's error. */
  void (*stream_close)(np_cstream *s, int err, void *ud);
  void (*stream_writable)(np_cstream *s, void *ud);
  /* After stream_open returned NP_ELIMIT: an open may succeed now. */
  void (*stream_credit)(np_conn *c, void *ud);
} np_conn_cbs;

/* The public part of every connection. The implementation fills all but
 * |ud|, which belongs to the upper layer. */
struct np_conn {
  const np_conn_ops *ops;
  void *ud;
  int kind;    /* np_transport_kind */
  int inbound; /* the peer dialed */
  int limited; /* relayed: limited in time and bytes */
  np_peerid peer; /* valid from conn_up */
  uint8_t laddr[NP_CONN_ADDR_MAX], raddr[NP_CONN_ADDR_MAX]; /* binary */
  size_t laddr_len, raddr_len;
};

struct np_cstream {
  np_conn *conn;
  void *ud; /* the upper layer's */
};

static inline int np_cstream_open(np_conn *c, void *ud, np_cstream **ps) {
  return c->ops->stream_open(c, ud, ps);
}
static inline void np_conn_close(np_conn *c, uint64_t app_error) {
  c->ops->close(c, app_error);
}
static inline int64_t np_conn_rtt_us(const np_conn *c) {
  return c->ops->rtt_us(c);
}
static inline int np_cstream_write(np_cstream *s, const uint8_t *d,
                                   size_t len) {
  return s->conn->ops->write(s, d, len);
}
static inline size_t np_cstream_write_space(const np_cstream *s) {
  return s->conn->ops->write_space(s);
}
static inline int np_cstream_shutdown(np_cstream *s) {
  return s->conn->ops->shutdown(s);
}
static inline void np_cstream_reset(np_cstream *s) {
  s->conn->ops->reset(s);
}
static inline void np_cstream_pause(np_cstream *s, int paused) {
  s->conn->ops->pause(s, paused);
}

/* A transport: dials and accepts connections of one kind. The swarm keeps
 * a list of them and asks each whether it can dial an address. */
typedef struct np_transport np_transport;
typedef struct np_transport_ops {
  int kind;
  /* 1 if |maddr| (binary, a trailing /p2p/ID allowed) is an address this
   * transport dials. */
  int (*can_dial)(const np_transport *t, const uint8_t *maddr, size_t len);
  /* Start a dial; |*pc| is valid until its conn_down, conn_up or conn_down
   * follows later (never from inside this call). With /p2p/ID in |maddr|
   * the remote must prove that ID (else conn_down(NP_EPEERID)). |ud|
   * becomes c->ud. Returns 0 or a negative code (no event then). */
  int (*dial)(np_transport *t, const uint8_t *maddr, size_t len, void *ud,
              np_conn **pc);
  /* Bind and accept on |maddr|. 0, NP_ENOTSUP (not this transport's
   * address), NP_ESYS (bind failed, logged with errno). */
  int (*listen)(np_transport *t, const uint8_t *maddr, size_t len);
  /* Bound listen addresses, as np_quic_listen_count/addr. */
  size_t (*listen_count)(const np_transport *t);
  np_ssize (*listen_addr)(const np_transport *t, size_t i, uint8_t *out,
                          size_t cap);
  /* Live connections (tests, limits). */
  size_t (*conn_count)(const np_transport *t);
  /* Close every connection at once (events run from inside this call) and
   * free the transport. */
  void (*del)(np_transport *t);
  /* As dial, leaving from a new ephemeral port instead of the listen port
   * (AutoNAT dial-backs; see np_swarm_dial_new). NULL: not supported. */
  int (*dial_new_port)(np_transport *t, const uint8_t *maddr, size_t len,
                       void *ud, np_conn **pc);
} np_transport_ops;

struct np_transport {
  const np_transport_ops *ops;
};

#endif
