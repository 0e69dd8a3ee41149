#include "np_tquic.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "np_multiaddr.h"

typedef struct tq {
  np_transport base;
  np_quic *q;
  np_conn_cbs cbs;
  void *ud;
} tq;

typedef struct tq_conn {
  np_conn base;
  np_qconn *qc;
  tq *t;
} tq_conn;

typedef struct tq_stream {
  np_cstream base;
  np_qstream *qs;
} tq_stream;

/* ---- np_conn_ops -------------------------------------------------------- */

static int c_stream_open(np_conn *c, void *ud, np_cstream **ps) {
  tq_conn *tc = (tq_conn *)c;
  tq_stream *s;
  int rv;
  if (tc->qc == NULL)
    return NP_ECLOSED;
  if ((s = calloc(1, sizeof(*s))) == NULL)
    return NP_ENOMEM;
  s->base.conn = c;
  s->base.ud = ud;
  if ((rv = np_quic_stream_open(tc->qc, s, &s->qs)) != 0) {
    free(s);
    return rv;
  }
  *ps = &s->base;
  return 0;
}

static void c_close(np_conn *c, uint64_t app_error) {
  tq_conn *tc = (tq_conn *)c;
  if (tc->qc)
    np_quic_conn_close(tc->qc, app_error);
}

static int64_t c_rtt_us(const np_conn *c) {
  const tq_conn *tc = (const tq_conn *)c;
  return tc->qc ? np_quic_conn_rtt_us(tc->qc) : -1;
}

static int s_write(np_cstream *s, const uint8_t *data, size_t len) {
  return np_quic_stream_write(((tq_stream *)s)->qs, data, len);
}
static size_t s_write_space(const np_cstream *s) {
  return np_quic_stream_write_space(((const tq_stream *)s)->qs);
}
static int s_shutdown(np_cstream *s) {
  return np_quic_stream_shutdown(((tq_stream *)s)->qs);
}
static void s_reset(np_cstream *s) {
  np_quic_stream_reset(((tq_stream *)s)->qs, 0);
}
static void s_pause(np_cstream *s, int paused) {
  np_quic_stream_pause(((tq_stream *)s)->qs, paused);
}

static const np_conn_ops conn_ops = {
    .stream_open = c_stream_open,
    .close = c_close,
    .rtt_us = c_rtt_us,
    .write = s_write,
    .write_space = s_write_space,
    .shutdown = s_shutdown,
    .reset = s_reset,
    .pause = s_pause,
};

/* ---- np_quic callbacks --------------------------------------------------- */

static tq_conn *conn_new(tq *t, np_qconn *qc, int inbound) {
  tq_conn *tc = calloc(1, sizeof(*tc));
  if (tc == NULL)
    return NULL;
  tc->base.ops = &conn_ops;
  tc->base.kind = NP_TRANSPORT_QUIC;
  tc->base.inbound = inbound;
  tc->qc = qc;
  tc->t = t;
  return tc;
}

static void q_conn_up(np_qconn *qc, void *ud) {
  tq *t = ud;
  tq_conn *tc = np_quic_conn_ud(qc);
  np_ssize n;
  if (tc == NULL) { /* inbound: first seen here */
    if ((tc = conn_new(t, qc, 1)) == NULL) {
      np_quic_conn_close(qc, 0);
      return;
    }
    np_quic_conn_set_ud(qc, tc);
  }
  np_quic_conn_peer(qc, &tc->base.peer);
  n = np_quic_conn_remote_addr(qc, tc->base.raddr, sizeof(tc->base.raddr));
  tc->base.raddr_len = n > 0 ? (size_t)n : 0;
  n = np_quic_conn_local_addr(qc, tc->base.laddr, sizeof(tc->base.laddr));
  tc->base.laddr_len = n > 0 ? (size_t)n : 0;
  if (t->cbs.conn_up)
    t->cbs.conn_up(&tc->base, t->ud);
}

static void q_conn_down(np_qconn *qc, int err, void *ud) {
  tq *t = ud;
  tq_conn *tc = np_quic_conn_ud(qc);
  if (tc == NULL) /* inbound that never came up to us */
    return;
  tc->qc = NULL;
  if (t->cbs.conn_down)
    t->cbs.conn_down(&tc->base, err, t->ud);
  free(tc);
}

static void q_stream_open(np_qstream *qs, void *ud) {
  tq *t = ud;
  tq_conn *tc = np_quic_conn_ud(np_quic_stream_conn(qs));
  tq_stream *s;
  if (tc == NULL || (s = calloc(1, sizeof(*s))) == NULL) {
    np_quic_stream_reset(qs, 0);
    return;
  }
  s->base.conn = &tc->base;
  s->qs = qs;
  np_quic_stream_set_ud(qs, s);
  if (t->cbs.stream_open)
    t->cbs.stream_open(&s->base, t->ud);
  else
    np_quic_stream_reset(qs, 0);
}

static void q_stream_data(np_qstream *qs, const uint8_t *data, size_t len,
                          int fin, void *ud) {
  tq *t = ud;
  tq_stream *s = np_quic_stream_ud(qs);
  if (s && t->cbs.stream_data)
    t->cbs.stream_data(&s->base, data, len, fin, t->ud);
}

static void q_stream_close(np_qstream *qs, int err, void *ud) {
  tq *t = ud;
  tq_stream *s = np_quic_stream_ud(qs);
  if (s == NULL)
    return;
  if (t->cbs.stream_close)
    t->cbs.stream_close(&s->base, err, t->ud);
  free(s);
}

static void q_stream_writable(np_qstream *qs, void *ud) {
  tq *t = ud;
  tq_stream *s = np_quic_stream_ud(qs);
  if (s && t->cbs.stream_writable)
    t->cbs.stream_writable(&s->base, t->ud);
}

static void q_conn_credit(np_qconn *qc, void *ud) {
  tq *t = ud;
  tq_conn *tc = np_quic_conn_ud(qc);
  if (tc && t->cbs.stream_credit)
    t->cbs.stream_credit(&tc->base, t->ud);
}

/* ---- np_transport_ops ------------------------------------------------------ */

static int t_can_dial(const np_transport *t, const uint8_t *maddr,
                      size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl;
  (void)t;
  return np_maddr_to_sockaddr(maddr, len, &ss, &sl) == 0;
}

static int dial_flags(np_transport *base, const uint8_t *maddr, size_t len,
                      int flags, void *ud, np_conn **pc) {
  tq *t = (tq *)base;
  tq_conn *tc = conn_new(t, NULL, 0);
  int rv;
  if (tc == NULL)
    return NP_ENOMEM;
  tc->base.ud = ud;
  if ((rv = np_quic_dial_flags(t->q, maddr, len, flags, tc, &tc->qc)) != 0) {
    free(tc);
    return rv;
  }
  /* Until conn_up, the address we dialed. */
  if (len <= sizeof(tc->base.raddr)) {
    memcpy(tc->base.raddr, maddr, len);
    tc->base.raddr_len = len;
  }
  *pc = &tc->base;
  return 0;
}

static int t_dial(np_transport *base, const uint8_t *maddr, size_t len,
                  void *ud, np_conn **pc) {
  return dial_flags(base, maddr, len, 0, ud, pc);
}

static int t_dial_new_port(np_transport *base, const uint8_t *maddr,
                           size_t len, void *ud, np_conn **pc) {
  return dial_flags(base, maddr, len, NP_QUIC_DIAL_NEW_PORT, ud, pc);
}

static int t_listen(np_transport *base, const uint8_t *maddr, size_t len) {
  return np_quic_listen(((tq *)base)->q, maddr, len);
}
static size_t t_listen_count(const np_transport *base) {
  return np_quic_listen_count(((const tq *)base)->q);
}
static np_ssize t_listen_addr(const np_transport *base, size_t i,
                              uint8_t *out, size_t cap) {
  return np_quic_listen_addr(((const tq *)base)->q, i, out, cap);
}
static size_t t_conn_count(const np_transport *base) {
  return np_quic_conn_count(((const tq *)base)->q);
}
static void t_del(np_transport *base) {
  tq *t = (tq *)base;
  if (t == NULL)
    return;
  np_quic_del(t->q);
  free(t);
}

static const np_transport_ops transport_ops = {
    .kind = NP_TRANSPORT_QUIC,
    .can_dial = t_can_dial,
    .dial = t_dial,
    .dial_new_port = t_dial_new_port,
    .listen = t_listen,
    .listen_count = t_listen_count,
    .listen_addr = t_listen_addr,
    .conn_count = t_conn_count,
    .del = t_del,
};

int np_tquic_new(np_transport **pt, np_loop *loop, np_tls *tls,
                 const np_quic_config *cfg, const np_conn_cbs *cbs, void *ud) {
  static const np_quic_cbs qcbs = {
      .conn_up = q_conn_up,
      .conn_down = q_conn_down,
      .stream_open = q_stream_open,
      .stream_data = q_stream_data,
      .stream_close = q_stream_close,
      .stream_writable = q_stream_writable,
      .conn_stream_credit = q_conn_credit,
  };
  tq *t = calloc(1, sizeof(*t));
  int rv;
  if (t == NULL)
    return NP_ENOMEM;
  t->base.ops = &transport_ops;
  t->cbs = *cbs;
  t->ud = ud;
  if ((rv = np_quic_new(&t->q, loop, tls, cfg, &qcbs, t)) != 0) {
    free(t);
    return rv;
  }
  *pt = &t->base;
  return 0;
}

np_quic *np_tquic_quic(np_transport *t) { return ((tq *)t)->q; }

