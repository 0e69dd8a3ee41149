/* Circuit relay v2 client (np_relayc) and circuit transport (np_trelay),
 * in-process over /memory/: a private host P reserves on relays, announces
 * <relay>/p2p/R/p2p-circuit (identify carries it to the relay), refreshes
 * before expiry, re-reserves elsewhere when its relay goes away and backs
 * off on refusal; a source S that knows P only by its circuit address
 * opens an echo stream and makes a unary call through the relay, over a
 * connection marked limited (transport relay) on both sides; P refuses
 * circuits through relays it holds no reservation with; relays vanishing
 * mid-handshake and mid-stream, and a host stopping with circuit dials
 * pending, end everything once (run under ASan too).
 *
 * The relays are a minimal hop service written here (RESERVE with a signed
 * voucher; CONNECT through a stop stream, then splicing bytes), so the
 * client is tested against the wire messages and not against itself.
 * Every wait is bounded by a deadline. */
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "np_conf.h"
#include "np_daemon.h"
#include "np_err.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_list.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_proto.h"
#include "np_relayc.h"
#include "np_relaymsg.h"
#include "np_stream.h"
#include "np_trelay.h"
#include "tap.h"

#define ECHO_PROTO "/test/relayc/echo"
#define CALL_PROTO "/test/relayc/call"
#define NH 15

enum { RM_NONE, RM_OK, RM_REFUSE, RM_HANG, RM_EAGER, RM_CUT };
/* RM_CUT: splices, then resets both sides at the first bytes of the
 * upgrade (a relay going away mid-handshake, after the STATUS). */
/* RM_EAGER: answers the source's CONNECT with OK at once and sends the stop
 * CONNECT to the target together with the source's first upgrade bytes, in
 * one write: the target must keep what follows the message. */

static struct ev_loop *ev;

typedef struct thost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  char addr[64];
  char peer[NP_PEERID_STRMAX];
  np_list streams, pending, hops;
  /* the test relay */
  int mode;
  uint64_t ttl_s;
  int reserves, connects, stop_refusals, cuts;
  np_peerid reserved[8];
  size_t nreserved;
} thost;

static thost H[NH];

#define diag(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))

static double now_s(void) {
  ev_now_update(ev);
  return ev_now(ev);
}
static void run_until(const int *flag, double secs) {
  double end = now_s() + secs;
  while (!*flag && now_s() < end)
    ev_run(ev, EVRUN_ONCE);
}
static void run_for(double secs) {
  int never = 0;
  run_until(&never, secs);
}

/* ---- a minimal relay (hop service) --------------------------------------- */

typedef struct hopst {
  np_list link; /* in th->hops */
  thost *th;
  np_stream *hop, *stop;
  void *op;
  uint8_t rx[8192];
  size_t rlen;
  uint8_t srx[8192];
  size_t srlen;
  int splicing;
  int eager, stop_ready; /* RM_EAGER: OK sent; the stop stream is open */
  np_peerid src, dst;
} hopst;

static void ign_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  (void)s, (void)d, (void)len, (void)ud;
}
static void ign_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err, (void)ud;
}
static const np_stream_cbs linger = {sizeof(np_stream_cbs), NULL, ign_data,
                                     ign_close, NULL};

static void hs_send(np_stream *s, const np_relaymsg *m) {
  uint8_t out[4200];
  np_ssize n = np_relaymsg_encode_lp(m, out, sizeof(out));
  if (n > 0)
    s->ops->send(s, out, (size_t)n, 0, 1 << 20);
}

static void hs_status(np_stream *s, int status) {
  np_relaymsg m;
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_STATUS;
  m.has_status = 1;
  m.status = (np_relaymsg_status)status;
  hs_send(s, &m);
}

/* Drop both sides. */
static void hs_end(hopst *x) {
  void *net;
  const np_net_ops *ops = np_host_net(x->th->h, &net);
  if (x->op && ops)
    ops->cancel(net, x->op);
  x->op = NULL;
  if (x->hop) {
    np_stream_set_cbs(x->hop, &linger, NULL);
    x->hop->ops->reset(x->hop);
  }
  if (x->stop) {
    np_stream_set_cbs(x->stop, &linger, NULL);
    x->stop->ops->reset(x->stop);
  }
  np_list_remove(&x->link);
  free(x);
}

static void stop_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  hopst *x = ud;
  (void)s;
  if (x->splicing && x->th->mode == RM_CUT) {
    x->th->cuts++;
    hs_end(x);
    return;
  }
  if (x->splicing) {
    if (len == 0)
      x->hop->ops->close(x->hop);
    else
      x->hop->ops->send(x->hop, d, len, 0, 8 << 20);
    return;
  }
  if (len == 0 || x->srlen + len > sizeof(x->srx)) {
    hs_status(x->hop, NP_RELAYMSG_CONNECTION_FAILED);
    hs_end(x);
    return;
  }
  memcpy(x->srx + x->srlen, d, len);
  x->srlen += len;
  {
    np_relaymsg m;
    np_ssize n = np_relaymsg_decode_lp(&m, NP_RELAYMSG_STOP, x->srx, x->srlen,
                                       NULL);
    if (n == NP_ETRUNC)
      return;
    if (n < 0 || m.type != NP_RELAYMSG_STOP_STATUS ||
        m.status != NP_RELAYMSG_OK) {
      if (n >= 0)
        np_relaymsg_free(&m);
      x->th->stop_refusals++;
      hs_status(x->hop, NP_RELAYMSG_CONNECTION_FAILED);
      hs_end(x);
      return;
    }
    np_relaymsg_free(&m);
    if (!x->eager)
      hs_status(x->hop, NP_RELAYMSG_OK);
    x->splicing = 1;
    if (x->srlen > (size_t)n) /* the responder's first upgrade bytes */
      x->hop->ops->send(x->hop, x->srx + n, x->srlen - (size_t)n, 0, 8 << 20);
    if (x->rlen) /* the initiator's, sent early */
      x->stop->ops->send(x->stop, x->rx, x->rlen, 0, 8 << 20);
    x->rlen = 0;
  }
}

static void stop_close(np_stream *s, int err, void *ud) {
  hopst *x = ud;
  (void)s, (void)err;
  x->stop = NULL;
  if (!x->splicing && x->hop)
    hs_status(x->hop, NP_RELAYMSG_CONNECTION_FAILED);
  hs_end(x);
}

static const np_stream_cbs stop_side = {sizeof(np_stream_cbs), NULL, stop_data,
                                        stop_close, NULL};

/* The stop CONNECT and the source's bytes so far, in one write. */
static void eager_connect(hopst *x) {
  np_relaymsg m;
  uint8_t out[8192 + 256];
  np_ssize n;
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_STOP;
  m.type = NP_RELAYMSG_STOP_CONNECT;
  m.has_peer = 1;
  m.peer.id = x->src;
  n = np_relaymsg_encode_lp(&m, out, sizeof(out));
  if (n < 0 || (size_t)n + x->rlen > sizeof(out))
    return;
  memcpy(out + n, x->rx, x->rlen);
  x->stop->ops->send(x->stop, out, (size_t)n + x->rlen, 0, 1 << 20);
  x->rlen = 0;
  x->stop_ready = 2; /* sent */
}

static void stop_opened(void *ud, int err, np_stream *s, const char *proto) {
  hopst *x = ud;
  np_relaymsg m;
  (void)proto;
  x->op = NULL;
  if (err) {
    hs_status(x->hop, NP_RELAYMSG_CONNECTION_FAILED);
    hs_end(x);
    return;
  }
  x->stop = s;
  np_stream_set_cbs(s, &stop_side, x);
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_STOP;
  m.type = NP_RELAYMSG_STOP_CONNECT;
  m.has_peer = 1;
  m.peer.id = x->src;
  m.has_limit = 1;
  m.limit.duration = 120;
  m.limit.data = 1 << 20;
  if (x->eager) {
    x->stop_ready = 1;
    if (x->rlen)
      eager_connect(x);
    return;
  }
  hs_send(s, &m);
}

static int is_reserved(thost *th, const np_peerid *p) {
  for (size_t i = 0; i < th->nreserved; i++)
    if (np_peerid_equal(&th->reserved[i], p))
      return 1;
  return 0;
}

static void hop_msg(hopst *x, np_relaymsg *m) {
  thost *th = x->th;
  if (m->type == NP_RELAYMSG_HOP_RESERVE) {
    np_relaymsg a;
    uint8_t v[1024], ra[128];
    np_relaymsg_blob addr;
    uint64_t exp = (uint64_t)time(NULL) + th->ttl_s;
    np_ssize vl, al;
    char t[200];
    th->reserves++;
    if (th->mode == RM_HANG)
      return;
    if (th->mode == RM_REFUSE) {
      hs_status(x->hop, NP_RELAYMSG_RESERVATION_REFUSED);
      return;
    }
    if (!is_reserved(th, &x->hop->peer_id) && th->nreserved < 8)
      th->reserved[th->nreserved++] = x->hop->peer_id;
    snprintf(t, sizeof(t), "%s/p2p/%s", th->addr, th->peer);
    al = np_maddr_parse(t, strlen(t), ra, sizeof(ra));
    vl = np_relaymsg_voucher_seal(&th->id, &x->hop->peer_id, exp, v,
                                  sizeof(v));
    np_relaymsg_init(&a);
    a.kind = NP_RELAYMSG_HOP;
    a.type = NP_RELAYMSG_HOP_STATUS;
    a.has_status = 1;
    a.status = NP_RELAYMSG_OK;
    a.has_reservation = 1;
    a.reservation.expire = exp;
    addr.data = ra;
    addr.len = (size_t)al;
    a.reservation.addrs = &addr;
    a.reservation.naddrs = al > 0;
    a.reservation.voucher.data = v;
    a.reservation.voucher.len = vl > 0 ? (size_t)vl : 0;
    a.has_limit = 1;
    a.limit.duration = 120;
    a.limit.data = 1 << 20;
    hs_send(x->hop, &a);
    return;
  }
  if (m->type == NP_RELAYMSG_HOP_CONNECT && m->has_peer) {
    void *net;
    const np_net_ops *ops = np_host_net(th->h, &net);
    const char *p = NP_RELAYMSG_STOP_PROTOCOL;
    th->connects++;
    if (th->mode == RM_HANG)
      return;
    if (!is_reserved(th, &m->peer.id)) {
      hs_status(x->hop, NP_RELAYMSG_NO_RESERVATION);
      return;
    }
    x->src = x->hop->peer_id;
    x->dst = m->peer.id;
    if (th->mode == RM_EAGER) {
      x->eager = 1;
      hs_status(x->hop, NP_RELAYMSG_OK);
    }
    if (ops->open_stream(net, &x->dst, &p, 1, 0, 5000, stop_opened, x,
                         &x->op) != 0) {
      x->op = NULL;
      hs_status(x->hop, NP_RELAYMSG_CONNECTION_FAILED);
    }
    return;
  }
  hs_status(x->hop, NP_RELAYMSG_UNEXPECTED_MESSAGE);
}

static void hop_data(np_stream *s, const uint8_t *d, size_t len, void *ud);
static void hop_close(np_stream *s, int err, void *ud);
static const np_stream_cbs hop_side = {sizeof(np_stream_cbs), NULL, hop_data,
                                       hop_close, NULL};

static void hop_open(np_stream *s, void *ud) {
  thost *th = ud;
  hopst *x = calloc(1, sizeof(*x));
  if (x == NULL) {
    s->ops->reset(s);
    return;
  }
  x->th = th;
  x->hop = s;
  np_list_remove(&s->owner_link);
  np_list_init(&s->owner_link);
  np_list_insert_tail(&th->hops, &x->link);
  np_stream_set_cbs(s, &hop_side, x);
}

static void hop_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  hopst *x = ud;
  np_relaymsg m;
  np_ssize n;
  (void)s;
  if (x == NULL)
    return;
  if (x->splicing && x->th->mode == RM_CUT) {
    if (x->stop) /* the initiator's first bytes reach the target, then cut */
      x->stop->ops->send(x->stop, d, len, 0, 8 << 20);
    x->th->cuts++;
    hs_end(x);
    return;
  }
  if (x->splicing) {
    if (len == 0)
      x->stop->ops->close(x->stop);
    else
      x->stop->ops->send(x->stop, d, len, 0, 8 << 20);
    return;
  }
  if (len == 0) {
    if (!x->stop && !x->op) { /* a reservation stream done */
      np_stream_set_cbs(s, &linger, NULL);
      s->ops->close(s);
      x->hop = NULL;
      hs_end(x);
    }
    return;
  }
  if (x->rlen + len > sizeof(x->rx)) {
    hs_end(x);
    return;
  }
  memcpy(x->rx + x->rlen, d, len);
  x->rlen += len;
  if (x->eager) {
    if (x->stop_ready == 1)
      eager_connect(x);
    else if (x->stop_ready == 2) { /* more before the target's STATUS */
      x->stop->ops->send(x->stop, x->rx, x->rlen, 0, 1 << 20);
      x->rlen = 0;
    }
    return;
  }
  if (x->stop || x->op)
    return; /* early upgrade bytes: kept for the splice */
  n = np_relaymsg_decode_lp(&m, NP_RELAYMSG_HOP, x->rx, x->rlen, NULL);
  if (n == NP_ETRUNC)
    return;
  if (n < 0) {
    hs_status(x->hop, NP_RELAYMSG_MALFORMED_MESSAGE);
    hs_end(x);
    return;
  }
  memmove(x->rx, x->rx + n, x->rlen - (size_t)n);
  x->rlen -= (size_t)n;
  hop_msg(x, &m);
  np_relaymsg_free(&m);
}

static void hop_close(np_stream *s, int err, void *ud) {
  hopst *x = ud;
  (void)s, (void)err;
  if (x == NULL)
    return;
  x->hop = NULL;
  hs_end(x);
}

/* ---- hosts ----------------------------------------------------------------- */

static void on_call_in(np_call *c, const uint8_t *req, size_t len, void *ud) {
  char out[64];
  (void)req, (void)len;
  snprintf(out, sizeof(out), "hello from %d", (int)(intptr_t)ud);
  np_call_reply(c, (const uint8_t *)out, strlen(out));
}

static void echo_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  (void)ud;
  if (len)
    s->ops->send(s, d, len, 0, 8 << 20);
  else
    s->ops->close(s);
}

static int add_handler(int i, const char *proto, int kind,
                       const np_stream_cbs *cbs, np_unary_cb un, void *ud,
                       np_list *list) {
  np_handler hd;
  memset(&hd, 0, sizeof(hd));
  hd.proto = (char *)proto;
  hd.proto_len = strlen(proto);
  hd.kind = kind;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = &H[i];
  hd.owner_name = "test";
  if (cbs)
    hd.stream = *cbs;
  hd.unary = un;
  hd.ud = ud;
  if (kind == NP_HANDLER_UNARY)
    hd.pending = list;
  else
    hd.streams = list;
  return np_proto_add(np_host_protos(H[i].h), &hd, NULL);
}

/* Host |i|: |relay| a test relay of that mode; |extra| appended to the
 * ini. */
static int host_up(int i, int relay, const char *extra) {
  char ini[2048];
  np_conf *c;
  char err[256];
  int rv;
  static const np_stream_cbs echo = {sizeof(np_stream_cbs), NULL, echo_data,
                                     NULL, NULL};
  static const np_stream_cbs hop = {sizeof(np_stream_cbs), hop_open, hop_data,
                                    hop_close, NULL};
  snprintf(H[i].addr, sizeof(H[i].addr), "/memory/relayc%d", i);
  snprintf(ini, sizeof(ini),
           "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\nlog_level = %s\n"
           "[dht]\nmode = off\n[plugins]\nautoload = no\n%s",
           getenv("TEST_LOG") ? getenv("TEST_LOG") : "error",
           extra ? extra : "[relay]\nclient = off\nservice = off\n");
  if (np_conf_load_string(&c, "mem.ini", ini, strlen(ini), err,
                          sizeof(err)) != 0) {
    diag("conf: %s", err);
    return -1;
  }
  free(c->host.listen.v[0]); /* the ini refuses /memory/ */
  c->host.listen.v[0] = strdup(H[i].addr);
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  np_peerid_to_string(&H[i].id.id, H[i].peer, sizeof(H[i].peer));
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  np_list_init(&H[i].pending);
  np_list_init(&H[i].streams);
  np_list_init(&H[i].hops);
  H[i].mode = relay;
  H[i].ttl_s = 3600;
  H[i].reserves = H[i].connects = H[i].stop_refusals = 0;
  H[i].nreserved = 0;
  if ((rv = add_handler(i, ECHO_PROTO, NP_HANDLER_STREAM, &echo, NULL, NULL,
                        &H[i].streams)) != 0 ||
      (rv = add_handler(i, CALL_PROTO, NP_HANDLER_UNARY, NULL, on_call_in,
                        (void *)(intptr_t)i, &H[i].pending)) != 0)
    return rv;
  if (relay != RM_NONE &&
      (rv = add_handler(i, NP_RELAYMSG_HOP_PROTOCOL, NP_HANDLER_STREAM, &hop,
                        NULL, &H[i], &H[i].streams)) != 0)
    return rv;
  return 0;
}

static void host_down(int i) {
  if (H[i].d == NULL)
    return;
  /* The test relay's circuits first: the daemon closes their streams. */
  np_daemon_del(H[i].d);
  while (!np_list_empty(&H[i].hops))
    hs_end(np_list_entry(H[i].hops.next, hopst, link));
  H[i].d = NULL;
  H[i].h = NULL;
}

static void emit_reach(int i, int reach) {
  np_event e;
  memset(&e, 0, sizeof(e));
  e.type = NP_EV_REACHABILITY;
  e.reachability = reach;
  np_events_emit(np_host_events(H[i].h), &e);
}

static np_relayc *RC(int i) { return np_daemon_module(H[i].d, "relayc"); }

static size_t resv(int i, np_relayc_resv *out, size_t max) {
  return np_relayc_reservations(RC(i), out, max);
}

/* The reservation |i| holds on relay |r|, or NULL. */
static int holds(int i, int r, np_relayc_resv *o) {
  np_relayc_resv v[8];
  size_t n = resv(i, v, 8);
  for (size_t k = 0; k < n && k < 8; k++)
    if (np_peerid_equal(&v[k].relay, &H[r].id.id) &&
        v[k].state == NP_RELAYC_RESERVED) {
      if (o)
        *o = v[k];
      return 1;
    }
  return 0;
}

static void wait_holds(int i, int r, double secs) {
  double end = now_s() + secs;
  while (!holds(i, r, NULL) && now_s() < end)
    ev_run(ev, EVRUN_ONCE);
}

/* Does |i|'s net addrs list an address ending in /p2p/R/p2p-circuit? */
static int announces_via(int i, int r) {
  void *net;
  const np_net_ops *ops = np_host_net(H[i].h, &net);
  const uint8_t *b[32];
  size_t l[32], n = ops->addrs(net, b, l, 32);
  for (size_t k = 0; k < n && k < 32; k++) {
    size_t rl;
    np_peerid rid, t;
    int has;
    if (np_trelay_split(b[k], l[k], &rl, &rid, &t, &has) == 0 && !has &&
        np_peerid_equal(&rid, &H[r].id.id))
      return 1;
  }
  return 0;
}

typedef struct waitv {
  int done, err, calls;
  np_stream *s;
  char resp[64];
} waitv;

static void on_stream(void *ud, int err, np_stream *s, const char *proto) {
  waitv *w = ud;
  (void)proto;
  w->done = 1, w->err = err, w->calls++, w->s = s;
}
static void on_stream_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
}
static void on_reply(void *ud, int err, const uint8_t *data, size_t len) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
  if (len >= sizeof(w->resp))
    len = sizeof(w->resp) - 1;
  memcpy(w->resp, data, len);
  w->resp[len] = 0;
}

/* |from| learns of |to| only its circuit address through |r|. */
static int learn_circuit(int from, int to, int r) {
  char t[300];
  uint8_t b[256];
  np_ssize n;
  np_ps_peer *p;
  snprintf(t, sizeof(t), "%s/p2p/%s/p2p-circuit", H[r].addr, H[r].peer);
  n = np_maddr_parse(t, strlen(t), b, sizeof(b));
  p = np_peerstore_upsert(np_host_peerstore(H[from].h), &H[to].id.id,
                          np_now(np_host_loop(H[from].h)));
  if (n < 0 || p == NULL)
    return -1;
  return np_peerstore_add_addr(p, b, (size_t)n, np_now(np_host_loop(H[from].h)),
                               0);
}

/* |from|'s connection record to |to| (1 found). */
static int conn_to(int from, int to, np_conn_info *out) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  np_conn_info ci[32];
  size_t n = ops->conns(net, ci, 32);
  for (size_t k = 0; k < n && k < 32; k++)
    if (np_peerid_equal(&ci[k].peer, &H[to].id.id)) {
      *out = ci[k];
      return 1;
    }
  return 0;
}

/* Echo stream: received bytes. */
typedef struct echo_rx {
  uint8_t buf[70000];
  size_t len;
  int got, fin, closed, err;
} echo_rx;
static void rx_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  echo_rx *e = ud;
  (void)s;
  if (len == 0)
    e->fin = 1;
  else if (e->len + len <= sizeof(e->buf)) {
    memcpy(e->buf + e->len, d, len);
    e->len += len;
    e->got = 1;
  }
}
static void rx_close(np_stream *s, int err, void *ud) {
  echo_rx *e = ud;
  (void)s;
  e->closed = 1;
  e->err = err;
}
static const np_stream_cbs rx_cbs = {sizeof(np_stream_cbs), NULL, rx_data,
                                     rx_close, NULL};

static char relays_ini[1024];
static const char *client_ini(int client_on, int want, int r1, int r2) {
  int o = snprintf(relays_ini, sizeof(relays_ini),
                   "[relay]\nservice = off\nclient = %s\nclient_reservations = %d\n",
                   client_on ? "on" : "off", want);
  if (r1 >= 0)
    o += snprintf(relays_ini + o, sizeof(relays_ini) - (size_t)o,
                  "relays = %s/p2p/%s", H[r1].addr, H[r1].peer);
  if (r2 >= 0)
    o += snprintf(relays_ini + o, sizeof(relays_ini) - (size_t)o,
                  " %s/p2p/%s", H[r2].addr, H[r2].peer);
  snprintf(relays_ini + o, sizeof(relays_ini) - (size_t)o, "\n");
  return relays_ini;
}

enum { R1 = 0, R2 = 1, P = 2, S = 3, RX = 4, RH = 5, S2 = 6, RS = 7, P2 = 8,
       RE = 9, P3 = 10, P4 = 11, RC_ = 12, P5 = 13 };

/* np_trelay_split on text |t|: 0 and the parts, or the error. */
static int split_text(const char *t, size_t *rl, np_peerid *r, np_peerid *p,
                      int *has) {
  uint8_t b[512];
  np_ssize n = np_maddr_parse(t, strlen(t), b, sizeof(b));
  if (n < 0)
    return (int)n;
  return np_trelay_split(b, (size_t)n, rl, r, p, has);
}

static void test_split(void) {
  np_identity a, b;
  char ta[NP_PEERID_STRMAX], tb[NP_PEERID_STRMAX], t[600];
  size_t rl;
  np_peerid r, p;
  int has;
  np_identity_generate(&a);
  np_identity_generate(&b);
  np_peerid_to_string(&a.id, ta, sizeof(ta));
  np_peerid_to_string(&b.id, tb, sizeof(tb));
  snprintf(t, sizeof(t), "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/%s/p2p-circuit/p2p/%s",
           ta, tb);
  ok(split_text(t, &rl, &r, &p, &has) == 0 && has &&
         np_peerid_equal(&r, &a.id) && np_peerid_equal(&p, &b.id),
     "split: relay and target of a full circuit address");
  snprintf(t, sizeof(t), "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/%s/p2p-circuit", ta);
  ok(split_text(t, &rl, &r, &p, &has) == 0 && !has &&
         np_peerid_equal(&r, &a.id),
     "split: an announced circuit address has no target");
  snprintf(t, sizeof(t), "/p2p/%s/p2p-circuit/p2p/%s", ta, tb);
  ok(split_text(t, &rl, &r, &p, &has) == 0 && has,
     "split: /p2p/RELAY alone as the relay part");
  snprintf(t, sizeof(t), "/ip4/1.2.3.4/udp/4001/quic-v1/p2p-circuit/p2p/%s", tb);
  ok(split_text(t, &rl, &r, &p, &has) == NP_ENOTSUP,
     "split: refused without /p2p/RELAY before /p2p-circuit");
  snprintf(t, sizeof(t), "/p2p/%s/p2p-circuit/p2p/%s/p2p-circuit/p2p/%s", ta, tb,
           ta);
  ok(split_text(t, &rl, &r, &p, &has) == NP_ENOTSUP,
     "split: a circuit over a circuit is refused");
  snprintf(t, sizeof(t), "/p2p/%s/p2p-circuit/ip4/1.2.3.4", ta);
  ok(split_text(t, &rl, &r, &p, &has) == NP_ENOTSUP,
     "split: only /p2p/TARGET may follow /p2p-circuit");
  ok(split_text("/ip4/1.2.3.4/udp/4001/quic-v1", &rl, &r, &p, &has) ==
         NP_ENOTSUP,
     "split: not a circuit address");
}

int main(void) {
  np_relayc_resv o;
  ev = ev_default_loop(0);
  test_split();
  np_log_set_level(getenv("TEST_LOG") ? NP_LOG_INFO : NP_LOG_ERROR);

  /* Addresses in the ini need the relays' IDs: relays first. */
  ok(host_up(R1, RM_OK, NULL) == 0 && host_up(R2, RM_OK, NULL) == 0 &&
         host_up(RX, RM_REFUSE, NULL) == 0 && host_up(RH, RM_HANG, NULL) == 0,
     "relays up (two serving, one refusing, one hanging)");
  H[R1].ttl_s = 122; /* renewed 2 min before expiry: in ~2 s */
  ok(host_up(P, RM_NONE, client_ini(1, 1, R1, R2)) == 0,
     "private host up (client = on, relays = R1 R2, 1 reservation)");
  ok(host_up(S, RM_NONE, NULL) == 0, "source host up (client = off)");

  /* ---- reservation ---- */
  wait_holds(P, R1, 10);
  ok(holds(P, R1, &o), "P holds a reservation on R1");
  ok(o.expire > (uint64_t)time(NULL) && o.expire <= (uint64_t)time(NULL) + 123,
     "its expiry is the relay's");
  ok(o.naddrs == 1 && strstr(o.addr, "/p2p-circuit") != NULL &&
         strstr(o.addr, H[R1].peer) != NULL,
     "one circuit address through R1: %s", o.addr);
  ok(o.voucher_ok, "the voucher verified (signer R1, peer P)");
  ok(o.limit_duration == 120 && o.limit_data == (1 << 20),
     "the relay's limits are kept");
  ok(!holds(P, R2, NULL), "only one reservation (client_reservations = 1)");
  ok(announces_via(P, R1), "P announces <R1>/p2p/R1/p2p-circuit");
  {
    /* identify (push) carries it to the relay */
    int seen = 0;
    double end = now_s() + 5;
    while (!seen && now_s() < end) {
      np_ps_peer *p = np_peerstore_get(np_host_peerstore(H[R1].h), &H[P].id.id);
      for (size_t k = 0; p && k < p->naddrs; k++)
        seen |= np_trelay_ends_circuit(p->addrs[k].bin, p->addrs[k].len);
      if (!seen)
        run_for(0.05);
    }
    ok(seen, "R1 learned P's circuit address through identify");
  }

  /* ---- refresh ---- */
  {
    int before = H[R1].reserves;
    double end = now_s() + 6;
    while (H[R1].reserves == before && now_s() < end)
      ev_run(ev, EVRUN_ONCE);
    run_for(0.2);
    ok(H[R1].reserves > before && holds(P, R1, NULL),
       "the reservation is renewed before it expires (%d RESERVEs)",
       H[R1].reserves);
    H[R1].ttl_s = 3600;
    run_for(2.5); /* one more refresh with the long TTL */
  }

  /* ---- circuit dial, echo, limited ---- */
  ok(learn_circuit(S, P, R1) == 0, "S knows P only by <R1>/p2p/R1/p2p-circuit");
  {
    void *net;
    const np_net_ops *ops = np_host_net(H[S].h, &net);
    const char *proto = ECHO_PROTO;
    waitv w;
    echo_rx e;
    np_conn_info ci;
    uint8_t msg[60000];
    memset(&w, 0, sizeof(w));
    memset(&e, 0, sizeof(e));
    for (size_t k = 0; k < sizeof(msg); k++)
      msg[k] = (uint8_t)(k * 7 + 3);
    ok(ops->open_stream(net, &H[P].id.id, &proto, 1, 0, 20000, on_stream, &w,
                        NULL) == 0,
       "S opens an echo stream to P");
    run_until(&w.done, 20);
    ok(w.done && w.err == 0 && w.s, "... it opens through the relay (%s)",
       np_errname(w.err));
    if (w.s) {
      np_stream_set_cbs(w.s, &rx_cbs, &e);
      w.s->ops->send(w.s, msg, sizeof(msg), 1, 1 << 20);
      run_until(&e.fin, 10);
      ok(e.fin && e.len == sizeof(msg) && memcmp(e.buf, msg, sizeof(msg)) == 0,
         "60000 bytes echoed over the circuit (%zu back)", e.len);
      if (!e.closed) /* |e| goes out of scope */
        np_stream_set_cbs(w.s, &linger, NULL);
    } else {
      ok(0, "echo");
    }
    ok(conn_to(S, P, &ci) && ci.transport == NP_TRANSPORT_RELAY &&
           ci.limited == 1 && ci.outbound,
       "S's connection to P: transport relay, limited=1, outbound");
    ok(conn_to(P, S, &ci) && ci.transport == NP_TRANSPORT_RELAY &&
           ci.limited == 1 && !ci.outbound,
       "P's connection to S: transport relay, limited=1, inbound");
    {
      char t[320] = "";
      if (conn_to(S, P, &ci))
        np_maddr_to_string(ci.addr, ci.addr_len, t, sizeof(t));
      ok(strstr(t, "/p2p-circuit") && strstr(t, H[R1].peer),
         "its remote address is the circuit address: %s", t);
    }
  }
  {
    waitv w;
    memset(&w, 0, sizeof(w));
    ok(np_host_call(H[S].h, H[P].peer, CALL_PROTO, (const uint8_t *)"x", 1,
                    on_reply, &w, NULL) == 0,
       "S calls P by peer ID");
    run_until(&w.done, 10);
    ok(w.done && w.err == 0 && strcmp(w.resp, "hello from 2") == 0,
       "... answered through the relay: \"%s\"", w.resp);
  }
  {
    np_trelay_stats st;
    np_trelay_get_stats(np_relayc_transport(RC(P)), &st);
    ok(st.stops >= 1 && st.stops_ok >= 1, "P accepted the circuit (stop)");
    np_trelay_get_stats(np_relayc_transport(RC(S)), &st);
    ok(st.dials >= 1 && st.dials_ok >= 1, "S dialed it (hop)");
  }

  /* ---- a relay P holds no reservation with: the stop is refused ---- */
  ok(host_up(S2, RM_NONE, NULL) == 0, "second source up");
  {
    void *net;
    const np_net_ops *ops = np_host_net(H[S2].h, &net);
    const char *proto = ECHO_PROTO;
    waitv w;
    np_trelay_stats st;
    /* R2 believes P reserved, P does not: R2 passes the CONNECT on. */
    H[R2].reserved[H[R2].nreserved++] = H[P].id.id;
    {
      uint8_t b[64];
      np_ssize n = np_maddr_parse(H[P].addr, strlen(H[P].addr), b, sizeof(b));
      np_ps_peer *p = np_peerstore_upsert(np_host_peerstore(H[R2].h),
                                          &H[P].id.id,
                                          np_now(np_host_loop(H[R2].h)));
      if (p && n > 0)
        np_peerstore_add_addr(p, b, (size_t)n, np_now(np_host_loop(H[R2].h)),
                              0);
    }
    learn_circuit(S2, P, R2);
    memset(&w, 0, sizeof(w));
    ops->open_stream(net, &H[P].id.id, &proto, 1, 0, 20000, on_stream, &w,
                     NULL);
    run_until(&w.done, 20);
    ok(w.done && w.err != 0, "a circuit through R2 fails (%s)",
       np_errname(w.err));
    ok(H[R2].stop_refusals == 1, "P refused R2's stop (no reservation there)");
    np_trelay_get_stats(np_relayc_transport(RC(P)), &st);
    ok(st.stops_refused == 1, "P counts one refused stop");
    np_trelay_get_stats(np_relayc_transport(RC(S2)), &st);
    ok(st.dials_failed == 1, "S2 counts one failed dial");
    H[R2].nreserved = 0;
  }

  /* ---- relay lost: re-reserve elsewhere ---- */
  {
    np_conn_info ci;
    host_down(R1);
    wait_holds(P, R2, 10);
    ok(holds(P, R2, &o), "R1 gone: P reserves on R2 instead");
    ok(!holds(P, R1, NULL) && !announces_via(P, R1) && announces_via(P, R2),
       "... and announces R2's circuit address, not R1's");
    run_for(0.3);
    ok(!conn_to(S, P, &ci), "the circuit through R1 went down with R1");
  }

  /* ---- refusal: back-off ---- */
  {
    np_relayc_resv v[8];
    size_t n, k;
    int found = 0;
    host_down(P);
    ok(host_up(P, RM_NONE, client_ini(1, 2, RX, R2)) == 0,
       "P restarted with relays RX (refuses) R2, 2 reservations");
    wait_holds(P, R2, 10);
    run_for(0.5);
    n = resv(P, v, 8);
    for (k = 0; k < n && k < 8; k++)
      if (np_peerid_equal(&v[k].relay, &H[RX].id.id))
        found = v[k].state == NP_RELAYC_BACKOFF &&
                v[k].last_status == NP_RELAYMSG_RESERVATION_REFUSED;
    ok(found, "RX's refusal (status 200) puts it in back-off");
    ok(H[RX].reserves == 1, "... and it is not asked again at once (%d)",
       H[RX].reserves);
    ok(holds(P, R2, NULL), "R2 still serves P");
  }

  /* ---- a relay vanishing mid-stream ---- */
  {
    void *net;
    const np_net_ops *ops = np_host_net(H[S].h, &net);
    const char *proto = ECHO_PROTO;
    waitv w;
    echo_rx e;
    np_conn_info ci;
    np_ps_peer *p = np_peerstore_get(np_host_peerstore(H[S].h), &H[P].id.id);
    if (p)
      p->naddrs = 0;
    learn_circuit(S, P, R2);
    memset(&w, 0, sizeof(w));
    memset(&e, 0, sizeof(e));
    ops->open_stream(net, &H[P].id.id, &proto, 1, 0, 20000, on_stream, &w,
                     NULL);
    run_until(&w.done, 20);
    ok(w.done && w.err == 0 && w.s, "S streams to P through R2");
    if (w.s) {
      np_stream_set_cbs(w.s, &rx_cbs, &e);
      w.s->ops->send(w.s, (const uint8_t *)"ping", 4, 0, 1 << 20);
      run_until(&e.got, 5);
      host_down(R2);
      run_until(&e.closed, 10);
      ok(e.len == 4 && e.closed && e.err != 0,
         "R2 vanishing mid-stream closes the stream with an error (%s)",
         np_errname(e.err));
      if (!e.closed)
        np_stream_set_cbs(w.s, &linger, NULL);
    } else {
      ok(0, "mid-stream");
    }
    run_for(0.3);
    ok(!conn_to(S, P, &ci) && !conn_to(P, S, &ci),
       "both ends' circuits are down");
  }

  /* ---- a relay hanging mid-handshake; a host stopping with dials pending */
  {
    void *net;
    const np_net_ops *ops = np_host_net(H[S].h, &net);
    const char *proto = ECHO_PROTO;
    waitv w, w2;
    np_ps_peer *p = np_peerstore_get(np_host_peerstore(H[S].h), &H[P].id.id);
    if (p)
      p->naddrs = 0;
    learn_circuit(S, P, RH);
    memset(&w, 0, sizeof(w));
    ops->open_stream(net, &H[P].id.id, &proto, 1, 0, 30000, on_stream, &w,
                     NULL);
    run_for(1.0);
    ok(!w.done && H[RH].connects == 1, "RH holds S's CONNECT unanswered");
    host_down(RH);
    run_until(&w.done, 10);
    ok(w.done && w.err != 0 && w.calls == 1,
       "RH vanishing mid-handshake fails the open once (%s)",
       np_errname(w.err));

    ok(host_up(RH, RM_HANG, NULL) == 0, "RH back (still hanging)");
    p = np_peerstore_get(np_host_peerstore(H[S2].h), &H[P].id.id);
    if (p)
      p->naddrs = 0;
    learn_circuit(S2, P, RH);
    ops = np_host_net(H[S2].h, &net);
    memset(&w2, 0, sizeof(w2));
    ops->open_stream(net, &H[P].id.id, &proto, 1, 0, 30000, on_stream, &w2,
                     NULL);
    run_for(1.0);
    ok(!w2.done && H[RH].connects == 1, "S2 waits on RH");
    host_down(S2);
    ok(w2.calls <= 1, "S2 stopping with a circuit dial pending (%d calls)",
       w2.calls);
    run_for(0.3);
  }

  /* ---- upgrade bytes behind the stop CONNECT (an eager relay) ---- */
  ok(host_up(RE, RM_EAGER, NULL) == 0 &&
         host_up(P3, RM_NONE, client_ini(1, 1, RE, -1)) == 0,
     "an eager relay and P3 reserving on it up");
  wait_holds(P3, RE, 10);
  ok(holds(P3, RE, NULL), "P3 holds a reservation on the eager relay");
  {
    waitv w;
    np_trelay_stats st;
    np_ps_peer *p = np_peerstore_get(np_host_peerstore(H[S].h), &H[P3].id.id);
    if (p)
      p->naddrs = 0;
    learn_circuit(S, P3, RE);
    memset(&w, 0, sizeof(w));
    np_host_call(H[S].h, H[P3].peer, CALL_PROTO, (const uint8_t *)"x", 1,
                 on_reply, &w, NULL);
    run_until(&w.done, 15);
    ok(w.done && w.err == 0 && strcmp(w.resp, "hello from 10") == 0,
       "S calls P3 through it: \"%s\" (%s)", w.resp, np_errname(w.err));
    np_trelay_get_stats(np_relayc_transport(RC(P3)), &st);
    ok(st.stops_ok == 1 && st.early_bytes > 0,
       "P3 kept the %llu upgrade bytes that came with the stop CONNECT",
       (unsigned long long)st.early_bytes);
  }

  /* ---- a relay cutting the circuit in the middle of the upgrade ---- */
  ok(host_up(RC_, RM_CUT, NULL) == 0 &&
         host_up(P5, RM_NONE, client_ini(1, 1, RC_, -1)) == 0,
     "a relay that cuts circuits mid-upgrade, and P5 reserving on it, up");
  wait_holds(P5, RC_, 10);
  {
    void *net;
    const np_net_ops *ops = np_host_net(H[S].h, &net);
    const char *proto = ECHO_PROTO;
    waitv w;
    np_transport *ts = np_relayc_transport(RC(S)),
                 *tp = np_relayc_transport(RC(P5));
    double end;
    size_t before = ts->ops->conn_count(ts); /* S's circuit to P3 */
    learn_circuit(S, P5, RC_);
    memset(&w, 0, sizeof(w));
    ops->open_stream(net, &H[P5].id.id, &proto, 1, 0, 20000, on_stream, &w,
                     NULL);
    run_until(&w.done, 20);
    ok(w.done && w.err != 0 && w.calls == 1 && H[RC_].cuts == 1,
       "the open fails once when the relay cuts the handshake (%s)",
       np_errname(w.err));
    end = now_s() + 5;
    while ((ts->ops->conn_count(ts) != before || tp->ops->conn_count(tp)) &&
           now_s() < end)
      ev_run(ev, EVRUN_ONCE);
    ok(ts->ops->conn_count(ts) == before && tp->ops->conn_count(tp) == 0,
       "neither side keeps a half-made circuit (%zu, %zu; cuts %d)",
       ts->ops->conn_count(ts), tp->ops->conn_count(tp), H[RC_].cuts);
  }

  /* ---- against the relay service (np_relaysvc); relays found through
   * identify; [relay] client = auto follows NP_EV_REACHABILITY ---- */
  ok(host_up(RS, RM_NONE, "[relay]\nservice = on\nclient = off\n") == 0,
     "a host running the relay service up");
  ok(host_up(P2, RM_NONE, "[relay]\nservice = off\nclient = auto\n") == 0,
     "P2 up (client = auto, no static relays)");
  {
    void *net;
    const np_net_ops *ops = np_host_net(H[P2].h, &net);
    uint8_t a[128];
    const uint8_t *ap = a;
    char t[200];
    size_t al;
    waitv w;
    snprintf(t, sizeof(t), "%s/p2p/%s", H[RS].addr, H[RS].peer);
    al = (size_t)np_maddr_parse(t, strlen(t), a, sizeof(a));
    memset(&w, 0, sizeof(w));
    ops->connect_identified(net, &H[RS].id.id, &ap, &al, 1, 5000, on_stream_done,
                            &w, NULL);
    run_until(&w.done, 6);
    ok(w.done && w.err == 0, "P2 connected to it and read its identify");
    run_for(1.0);
    ok(!np_relayc_active(RC(P2)) && !holds(P2, RS, NULL),
       "reachability unknown: no reservation");
    ok(np_proto_find(np_host_protos(H[P2].h), NP_RELAYMSG_STOP_PROTOCOL,
                     strlen(NP_RELAYMSG_STOP_PROTOCOL)) == NULL,
       "... and no stop handler");
    emit_reach(P2, NP_REACH_PRIVATE);
    wait_holds(P2, RS, 10);
    ok(np_relayc_active(RC(P2)) && holds(P2, RS, &o),
       "private: P2 reserves on the hop peer it found (%s)", o.addr);
    ok(o.voucher_ok, "the service's voucher verifies");
    ok(np_proto_find(np_host_protos(H[P2].h), NP_RELAYMSG_STOP_PROTOCOL,
                     strlen(NP_RELAYMSG_STOP_PROTOCOL)) != NULL,
       "the stop handler is registered while a reservation is held");
    run_for(0.3);
    ok(announces_via(P2, RS), "P2 announces the circuit address");
  }
  {
    waitv w;
    np_ps_peer *p = np_peerstore_get(np_host_peerstore(H[S].h), &H[P2].id.id);
    np_conn_info ci;
    if (p)
      p->naddrs = 0;
    learn_circuit(S, P2, RS);
    memset(&w, 0, sizeof(w));
    ok(np_host_call(H[S].h, H[P2].peer, CALL_PROTO, (const uint8_t *)"x", 1,
                    on_reply, &w, NULL) == 0,
       "S calls P2 by peer ID");
    run_until(&w.done, 15);
    ok(w.done && w.err == 0 && strcmp(w.resp, "hello from 8") == 0,
       "... answered through the relay service: \"%s\" (%s)", w.resp,
       np_errname(w.err));
    ok(conn_to(S, P2, &ci) && ci.transport == NP_TRANSPORT_RELAY && ci.limited,
       "over a limited relay connection");
  }
  emit_reach(P2, NP_REACH_PUBLIC);
  run_for(0.3);
  ok(!np_relayc_active(RC(P2)) && !holds(P2, RS, NULL) &&
         !announces_via(P2, RS),
     "public: the reservation and its address are dropped");
  ok(np_proto_find(np_host_protos(H[P2].h), NP_RELAYMSG_STOP_PROTOCOL,
                   strlen(NP_RELAYMSG_STOP_PROTOCOL)) == NULL,
     "... and the stop handler with them");

  /* ---- the client stopping with a RESERVE pending ---- */
  {
    int before = H[RH].reserves;
    double end;
    ok(host_up(P4, RM_NONE, client_ini(1, 1, RH, -1)) == 0,
       "P4 up, reserving on the hanging relay");
    end = now_s() + 5;
    while (H[RH].reserves == before && now_s() < end)
      ev_run(ev, EVRUN_ONCE);
    ok(H[RH].reserves == before + 1 && !holds(P4, RH, NULL),
       "its RESERVE waits unanswered");
    host_down(P4);
    end = now_s() + 5;
    while (!np_list_empty(&H[RH].hops) && now_s() < end)
      ev_run(ev, EVRUN_ONCE);
    ok(np_list_empty(&H[RH].hops),
       "P4 stopped with the RESERVE pending: the relay sees its stream end");
  }

  for (int i = 0; i < NH; i++)
    host_down(i);
  return done_testing();
}
