/* The circuit relay v2 service (np_relaysvc) in one process: daemons over
 * /memory/ (and QUIC on loopback IPs for the per-IP limit), with clients
 * written here that speak raw hop and stop messages through np_net_ops
 * open_stream and a stop handler registered on the target. Covers
 * reservations (answer, voucher, refusals, floods, expiry with the
 * target's connection), CONNECT (refusals, the STOP exchange, bytes behind
 * either message), piping (>= 1 MiB both ways when unlimited, the byte and
 * duration limits, back-pressure with bounded relay memory, half-close,
 * resets), and each party going away at each step (run under ASan too).
 * Every wait is bounded. */
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
#include "np_proto.h"
#include "np_relaymsg.h"
#include "np_relaysvc.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "np_tmem.h"
#include "tap.h"

#define MAXH 12
#define NEP 32

static struct ev_loop *ev;
static ev_timer tick;
static int mem_seq;
static const int one = 1; /* a flag that is always set */

typedef struct ep ep;

typedef struct host {
  np_daemon *d;
  np_host *h;
  np_identity id;
  char addr[128];
  char peer[NP_PEERID_STRMAX];
  np_list streams; /* the stop handler's */
  /* stop handler behaviour for new stop streams */
  int answer;        /* status to answer; 0: never answer */
  int pause_after;   /* pause the stream after answering */
  int echo_back;     /* send tx_total pattern bytes back after answering */
  size_t extra;      /* pattern bytes sent behind the STATUS */
  uint64_t tx_total; /* pattern bytes to send after answering */
  ep *eps[NEP];
  int neps;
} host;

static host H[MAXH];

struct ep {
  host *owner;
  np_stream *s;
  int kind; /* the message expected first: NP_RELAYMSG_HOP or _STOP */
  int opened, open_err;
  int closed, close_err;
  int fin;
  uint8_t mbuf[8192];
  size_t mlen;
  int have_msg, msg_err;
  np_relaymsg m;
  /* the pipe */
  uint64_t rx;
  int rx_bad;
  int paused;
  uint64_t tx, tx_total;
  int tx_fin; /* close after tx_total */
  unsigned elimits; /* writes refused with NP_ELIMIT */
  int tx_err;
};

#define diag(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))

static uint8_t pat(uint64_t i) { return (uint8_t)(i * 7u + (i >> 9)); }

static void fill(uint8_t *b, uint64_t off, size_t n) {
  for (size_t i = 0; i < n; i++)
    b[i] = pat(off + i);
}

static void on_tick(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l, (void)w, (void)revents;
}

static void run_until(const int *flag, double secs) {
  double end;
  ev_now_update(ev);
  end = ev_now(ev) + secs;
  while (!*flag) {
    ev_run(ev, EVRUN_ONCE);
    ev_now_update(ev);
    if (ev_now(ev) >= end)
      break;
  }
}

static void run_for(double secs) {
  int never = 0;
  run_until(&never, secs);
}

/* Wait for a condition expression, bounded. */
#define WAIT(cond, secs)                                                       \
  do {                                                                         \
    double end_;                                                               \
    ev_now_update(ev);                                                         \
    end_ = ev_now(ev) + (secs);                                                \
    while (!(cond)) {                                                          \
      ev_run(ev, EVRUN_ONCE);                                                  \
      ev_now_update(ev);                                                       \
      if (ev_now(ev) >= end_)                                                  \
        break;                                                                 \
    }                                                                          \
  } while (0)

/* ---- endpoints: a stream end written here --------------------------------- */

static void ep_pump(ep *e);

static void ep_rx(ep *e, const uint8_t *d, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (d[i] != pat(e->rx + i)) {
      e->rx_bad = 1;
      break;
    }
  e->rx += len;
}

static void ep_answer(ep *e) {
  host *t = e->owner;
  uint8_t out[NP_RELAYMSG_MSG_MAX + 16 + 4096];
  np_relaymsg a;
  np_ssize n;
  if (t->answer == 0)
    return;
  np_relaymsg_init(&a);
  a.kind = NP_RELAYMSG_STOP;
  a.type = NP_RELAYMSG_STOP_STATUS;
  a.has_status = 1;
  a.status = (np_relaymsg_status)t->answer;
  n = np_relaymsg_encode_lp(&a, out, sizeof(out));
  if (n < 0)
    return;
  fill(out + n, 0, t->extra);
  e->s->ops->write(e->s, out, (size_t)n + t->extra);
  e->tx = t->extra;
  if (t->answer != NP_RELAYMSG_OK) {
    e->s->ops->close(e->s);
    return;
  }
  if (t->pause_after) {
    e->paused = 1;
    e->s->ops->pause(e->s, 1);
  }
  if (t->echo_back) {
    e->tx_total = t->tx_total;
    ep_pump(e);
  }
}

static void ep_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  ep *e = ud;
  (void)s;
  if (len == 0) {
    e->fin = 1;
    return;
  }
  if (!e->have_msg) {
    size_t take = len < sizeof(e->mbuf) - e->mlen ? len
                                                   : sizeof(e->mbuf) - e->mlen;
    np_ssize used;
    memcpy(e->mbuf + e->mlen, d, take);
    e->mlen += take;
    used = np_relaymsg_decode_lp(&e->m, e->kind, e->mbuf, e->mlen, NULL);
    if (used == NP_ETRUNC)
      return;
    e->have_msg = 1;
    if (used < 0) {
      e->msg_err = (int)used;
      return;
    }
    /* bytes behind the message */
    ep_rx(e, e->mbuf + used, e->mlen - (size_t)used);
    ep_rx(e, d + take, len - take);
    if (e->kind == NP_RELAYMSG_STOP)
      ep_answer(e);
    return;
  }
  ep_rx(e, d, len);
}

static void ep_close(np_stream *s, int err, void *ud) {
  ep *e = ud;
  (void)s;
  e->closed = 1;
  e->close_err = err;
  e->s = NULL;
}

static void ep_writable(np_stream *s, void *ud) {
  (void)s;
  ep_pump(ud);
}

static const np_stream_cbs ep_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = ep_data,
    .on_close = ep_close,
    .on_writable = ep_writable,
};

/* Write the pattern up to tx_total, stopping at NP_ELIMIT until writable. */
static void ep_pump(ep *e) {
  uint8_t buf[16384];
  while (e->s && e->tx < e->tx_total) {
    size_t n = e->tx_total - e->tx < sizeof(buf) ? e->tx_total - e->tx
                                                   : sizeof(buf);
    int rv;
    fill(buf, e->tx, n);
    rv = e->s->ops->write(e->s, buf, n);
    if (rv == NP_ELIMIT) {
      e->elimits++;
      return;
    }
    if (rv < 0) {
      e->tx_err = rv;
      return;
    }
    e->tx += n;
  }
  if (e->s && e->tx_fin && e->tx >= e->tx_total) {
    e->tx_fin = 0;
    e->s->ops->close(e->s);
  }
}

static void ep_free(ep *e) {
  if (e == NULL)
    return;
  if (e->s) {
    np_stream *s = e->s;
    e->s = NULL;
    np_stream_abandon(s, NP_ECANCELED);
  }
  if (e->have_msg && e->msg_err == 0)
    np_relaymsg_free(&e->m);
  free(e);
}

/* The target's stop handler: a new ep per stream. */
static void stop_open(np_stream *s, void *ud) {
  host *t = ud;
  ep *e = calloc(1, sizeof(*e));
  if (e == NULL || t->neps >= NEP) {
    free(e);
    s->ops->reset(s);
    return;
  }
  e->owner = t;
  e->s = s;
  e->kind = NP_RELAYMSG_STOP;
  e->opened = 1;
  t->eps[t->neps++] = e;
  np_stream_set_cbs(s, &ep_cbs, e);
}

/* ---- hosts ------------------------------------------------------------------ */

/* Host |i| on |listen| (NULL: a fresh /memory/ name) with |extra| config. */
static int host_up(int i, const char *listen, const char *extra) {
  char ini[4096];
  np_conf *c;
  char err[256];
  np_handler hd;
  int rv;
  memset(&H[i], 0, sizeof(H[i]));
  if (listen)
    snprintf(H[i].addr, sizeof(H[i].addr), "%s", listen);
  else
    snprintf(H[i].addr, sizeof(H[i].addr), "/memory/rsvc%d", mem_seq++);
  snprintf(ini, sizeof(ini),
           "[host]\nlisten = %s\nlog_level = %s\n[dht]\nmode = off\n"
           "[plugins]\nautoload = no\n%s",
           listen ? listen : "/ip4/127.0.0.1/udp/0/quic-v1",
           getenv("RSVC_LOG") ? getenv("RSVC_LOG") : "error",
           extra ? extra : "");
  if (np_conf_load_string(&c, "mem.ini", ini, strlen(ini), err,
                          sizeof(err)) != 0) {
    diag("config: %s", err);
    return -1;
  }
  if (listen == NULL) { /* the parser knows no /memory/: set it after */
    free(c->host.listen.v[0]);
    c->host.listen.v[0] = strdup(H[i].addr);
  }
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  np_peerid_to_string(&H[i].id.id, H[i].peer, sizeof(H[i].peer));
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  if (listen) { /* the bound port */
    const char *t = np_daemon_addr_text(H[i].d, 0);
    const char *p2p = t ? strstr(t, "/p2p/") : NULL;
    if (p2p == NULL)
      return -3;
    snprintf(H[i].addr, sizeof(H[i].addr), "%.*s", (int)(p2p - t), t);
  }
  np_list_init(&H[i].streams);
  H[i].answer = NP_RELAYMSG_OK;
  memset(&hd, 0, sizeof(hd));
  hd.proto = NP_RELAYMSG_STOP_PROTOCOL;
  hd.proto_len = strlen(hd.proto);
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = &H[i];
  hd.owner_name = "test";
  hd.stream.struct_size = sizeof(hd.stream);
  hd.stream.on_open = stop_open;
  hd.ud = &H[i];
  hd.streams = &H[i].streams;
  return np_proto_add(np_host_protos(H[i].h), &hd, NULL);
}

static void host_down(int i) {
  if (H[i].d == NULL)
    return;
  np_daemon_del(H[i].d);
  H[i].d = NULL;
  H[i].h = NULL;
  for (int k = 0; k < H[i].neps; k++) {
    H[i].eps[k]->s = NULL; /* closed with the daemon */
    ep_free(H[i].eps[k]);
    H[i].eps[k] = NULL;
  }
  H[i].neps = 0;
}

static void all_down(void) {
  for (int i = 0; i < MAXH; i++)
    host_down(i);
}

static np_relaysvc *svc(int i) {
  return np_daemon_module(H[i].d, "relaysvc");
}

static struct np_relaysvc_stats stats(int i) {
  struct np_relaysvc_stats st;
  np_relaysvc_stats(svc(i), &st);
  return st;
}

typedef struct waitv {
  int done, err;
} waitv;

static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err;
}

/* Connect |i| to |j|. */
static int connect_to(int i, int j) {
  char t[256];
  uint8_t a[256];
  const uint8_t *ap = a;
  size_t al;
  np_ssize n;
  void *net;
  const np_net_ops *ops = np_host_net(H[i].h, &net);
  waitv w = {0, 0};
  int rv;
  snprintf(t, sizeof(t), "%s/p2p/%s", H[j].addr, H[j].peer);
  if ((n = np_maddr_parse(t, strlen(t), a, sizeof(a))) < 0)
    return (int)n;
  al = (size_t)n;
  if ((rv = ops->connect(net, &H[j].id.id, &ap, &al, 1, 5000, on_done, &w,
                         NULL)) != 0)
    return rv;
  run_until(&w.done, 6);
  return w.done ? w.err : NP_ETIMEDOUT;
}

static void on_stream(void *ud, int err, np_stream *s, const char *proto) {
  ep *e = ud;
  (void)proto;
  e->opened = 1;
  e->open_err = err;
  if (err == 0) {
    e->s = s;
    np_stream_set_cbs(s, &ep_cbs, e);
  }
}

/* Host |i| sends hop |m| to relay |r| (|extra| pattern bytes behind it, in
 * the same write). Returns the ep (opened, request written) or NULL. */
static ep *hop_send(int i, int r, const np_relaymsg *m, size_t extra) {
  ep *e = calloc(1, sizeof(*e));
  void *net;
  const np_net_ops *ops = np_host_net(H[i].h, &net);
  const char *proto = NP_RELAYMSG_HOP_PROTOCOL;
  uint8_t out[NP_RELAYMSG_MSG_MAX + 16 + 65536];
  np_ssize n;
  if (e == NULL)
    return NULL;
  e->kind = NP_RELAYMSG_HOP;
  if (ops->open_stream(net, &H[r].id.id, &proto, 1, 0, 5000, on_stream, e,
                       NULL) != 0) {
    free(e);
    return NULL;
  }
  run_until(&e->opened, 6);
  if (!e->opened || e->open_err) {
    if (!e->opened)
      diag("hop open: no answer");
    else
      diag("hop open: %s", np_errname(e->open_err));
    if (e->opened)
      free(e);
    return NULL; /* (an unanswered open leaks |e|: the test fails anyway) */
  }
  n = np_relaymsg_encode_lp(m, out, sizeof(out));
  if (n < 0 || extra > 65536) {
    ep_free(e);
    return NULL;
  }
  fill(out + n, 0, extra);
  e->s->ops->write(e->s, out, (size_t)n + extra);
  e->tx = extra;
  return e;
}

static ep *reserve(int i, int r) {
  np_relaymsg m;
  ep *e;
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_RESERVE;
  if ((e = hop_send(i, r, &m, 0)) == NULL)
    return NULL;
  run_until(&e->have_msg, 5);
  return e;
}

/* RESERVE and return the status (or a negative error). */
static int reserve_status(int i, int r) {
  ep *e = reserve(i, r);
  int st;
  if (e == NULL)
    return -1000;
  st = !e->have_msg ? -1001 : e->msg_err ? e->msg_err : (int)e->m.status;
  ep_free(e);
  return st;
}

static ep *connect_via(int i, int r, int t, size_t extra) {
  np_relaymsg m;
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_CONNECT;
  m.has_peer = 1;
  m.peer.id = H[t].id.id;
  return hop_send(i, r, &m, extra);
}

static int status_of(const ep *e) {
  return !e->have_msg ? -1001 : e->msg_err ? e->msg_err : (int)e->m.status;
}

static ep *last_stop(int t) { return H[t].neps ? H[t].eps[H[t].neps - 1] : NULL; }

/* ---- tests ------------------------------------------------------------------ */

static char relay_cfg[1024];

static void set_relay_cfg(const char *more) {
  snprintf(relay_cfg, sizeof(relay_cfg), "[relay]\nservice = on\n%s",
           more ? more : "");
}

/* R=0 relay, T=1 target, S=2 source. */
static int trio(const char *more) {
  set_relay_cfg(more);
  if (host_up(0, NULL, relay_cfg) != 0 || host_up(1, NULL, NULL) != 0 ||
      host_up(2, NULL, NULL) != 0)
    return -1;
  if (connect_to(1, 0) != 0 || connect_to(2, 0) != 0)
    return -1;
  return 0;
}

static void test_reserve(void) {
  ep *e;
  np_relaymsg_voucher v;
  int found_addr = 0;
  uint64_t now = (uint64_t)time(NULL);
  np_peerid ids[4];
  uint64_t exp[4];
  char want[256];
  if (trio("reservation_ttl = 30m\ncircuit_duration = 90s\n"
           "circuit_bytes = 64K\n") != 0) {
    ok(0, "reserve: hosts up");
    all_down();
    return;
  }
  ok(stats(0).serving, "service = on serves");
  e = reserve(1, 0);
  ok(e && e->have_msg && e->msg_err == 0, "reserve: an answer");
  if (e == NULL || !e->have_msg || e->msg_err) {
    ep_free(e);
    all_down();
    return;
  }
  is_int(e->m.type, NP_RELAYMSG_HOP_STATUS, "reserve: a STATUS");
  is_int(e->m.status, NP_RELAYMSG_OK, "reserve: OK");
  ok(e->m.has_reservation && e->m.reservation.expire >= now + 1790 &&
         e->m.reservation.expire <= now + 1810,
     "reserve: expires in reservation_ttl (%llu vs now %llu)",
     (unsigned long long)e->m.reservation.expire, (unsigned long long)now);
  snprintf(want, sizeof(want), "%s/p2p/%s", H[0].addr, H[0].peer);
  for (size_t k = 0; k < e->m.reservation.naddrs; k++) {
    char t[256];
    if (np_maddr_to_string(e->m.reservation.addrs[k].data,
                           e->m.reservation.addrs[k].len, t, sizeof(t)) > 0 &&
        strcmp(t, want) == 0)
      found_addr = 1;
  }
  ok(found_addr, "reserve: our (non-public, non-loopback) /memory/ address "
                 "with /p2p/ relay is listed");
  ok(e->m.reservation.voucher.len > 0 &&
         np_relaymsg_voucher_open(&v, e->m.reservation.voucher.data,
                                  e->m.reservation.voucher.len, &H[0].id.id,
                                  &H[1].id.id) == 0 &&
         v.expiration == e->m.reservation.expire,
     "reserve: the voucher is signed by the relay for the target");
  ok(e->m.has_limit && e->m.limit.duration == 90 &&
         e->m.limit.data == 64 * 1024,
     "reserve: the limit is circuit_duration/circuit_bytes");
  run_until(&e->fin, 2);
  ok(e->fin, "reserve: the relay finishes the hop stream");
  ep_free(e);
  is_int((int)stats(0).reservations, 1, "stats: one reservation");
  ok(np_relaysvc_reservations(svc(0), ids, exp, 4) == 1 &&
         np_peerid_equal(&ids[0], &H[1].id.id) && exp[0] >= now + 1790,
     "the reservation list names the target and its expiry");
  /* a renewal extends, the count stays */
  is_int(reserve_status(1, 0), NP_RELAYMSG_OK, "a renewal is accepted");
  is_int((int)stats(0).reservations, 1, "a renewal keeps one reservation");
  /* the target's connection goes: the reservation with it */
  {
    void *net;
    const np_net_ops *ops = np_host_net(H[1].h, &net);
    ops->disconnect(net, &H[0].id.id);
  }
  WAIT(stats(0).reservations == 0, 5);
  is_int((int)stats(0).reservations, 0,
         "the reservation ends with the target's last connection");
  all_down();
}

static void test_refusals(void) {
  ep *e;
  np_relaymsg m;
  if (trio("max_reservations = 2\nreserve_rate = 5\nmax_circuits = 1\n") !=
          0 ||
      host_up(3, NULL, NULL) != 0 || host_up(4, NULL, NULL) != 0 ||
      connect_to(3, 0) != 0 || connect_to(4, 0) != 0) {
    ok(0, "refusals: hosts up");
    all_down();
    return;
  }
  /* CONNECT to a peer without a reservation */
  e = connect_via(2, 0, 1, 0);
  run_until(e ? &e->have_msg : &one, 5);
  ok(e && status_of(e) == NP_RELAYMSG_NO_RESERVATION,
     "CONNECT to a peer without a reservation: NO_RESERVATION (%d)",
     e ? status_of(e) : -1);
  ep_free(e);
  /* a flood from one peer: refused past reserve_rate, others still served */
  {
    int okc = 0, limited = 0;
    for (int k = 0; k < 12; k++) {
      int st = reserve_status(1, 0);
      okc += st == NP_RELAYMSG_OK;
      limited += st == NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED;
    }
    ok(okc == 5 && limited == 7,
       "a RESERVE flood from one peer: reserve_rate accepted (%d), the rest "
       "RESOURCE_LIMIT_EXCEEDED (%d)",
       okc, limited);
    is_int((int)stats(0).reservations, 1, "the flood holds one reservation");
    is_int(reserve_status(3, 0), NP_RELAYMSG_OK,
           "another peer still gets a reservation during the flood");
  }
  is_int(reserve_status(4, 0), NP_RELAYMSG_RESERVATION_REFUSED,
         "past max_reservations: RESERVATION_REFUSED");
  ok(stats(0).refused == 9 && stats(0).reservations_refused == 8,
     "refusals are counted (%llu, of them RESERVE %llu)",
     (unsigned long long)stats(0).refused,
     (unsigned long long)stats(0).reservations_refused);
  /* max_circuits per peer: T (1) holds a circuit; a second is refused */
  H[1].answer = 0; /* keep it waiting for STOP */
  e = connect_via(2, 0, 1, 0);
  WAIT(H[1].neps == 1, 5);
  ok(e && H[1].neps == 1, "a CONNECT reaches the target");
  {
    ep *e2 = connect_via(4, 0, 1, 0);
    run_until(e2 ? &e2->have_msg : &one, 5);
    ok(e2 && status_of(e2) == NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED,
       "past max_circuits for the target: RESOURCE_LIMIT_EXCEEDED (%d)",
       e2 ? status_of(e2) : -1);
    ep_free(e2);
  }
  /* target answers with an error: CONNECTION_FAILED to the source */
  {
    ep *t = last_stop(1);
    H[1].answer = NP_RELAYMSG_PERMISSION_DENIED;
    if (t && t->have_msg)
      ep_answer(t);
    run_until(e ? &e->have_msg : &one, 5);
    ok(e && status_of(e) == NP_RELAYMSG_CONNECTION_FAILED,
       "the target refusing: CONNECTION_FAILED (%d)", e ? status_of(e) : -1);
  }
  ep_free(e);
  WAIT(stats(0).circuits == 0, 5);
  is_int((int)stats(0).circuits, 0, "no circuit is left");
  /* a malformed request */
  {
    ep *bad = calloc(1, sizeof(*bad));
    void *net;
    const np_net_ops *ops = np_host_net(H[2].h, &net);
    const char *proto = NP_RELAYMSG_HOP_PROTOCOL;
    static const uint8_t junk[] = {4, 0x08, 0x99, 0x99, 0x01};
    bad->kind = NP_RELAYMSG_HOP;
    ops->open_stream(net, &H[0].id.id, &proto, 1, 0, 5000, on_stream, bad,
                     NULL);
    run_until(&bad->opened, 5);
    if (bad->s)
      bad->s->ops->write(bad->s, junk, sizeof(junk));
    run_until(&bad->have_msg, 5);
    ok(status_of(bad) == NP_RELAYMSG_MALFORMED_MESSAGE,
       "a malformed request: MALFORMED_MESSAGE (%d)", status_of(bad));
    ep_free(bad);
  }
  /* a STATUS sent to the relay */
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_STATUS;
  m.has_status = 1;
  m.status = NP_RELAYMSG_OK;
  e = hop_send(2, 0, &m, 0);
  run_until(e ? &e->have_msg : &one, 5);
  ok(e && status_of(e) == NP_RELAYMSG_UNEXPECTED_MESSAGE,
     "a STATUS request: UNEXPECTED_MESSAGE");
  ep_free(e);
  all_down();
}

/* A circuit S -> T with |s_extra| bytes behind CONNECT and |t_extra|
 * behind the STATUS; returns the source's ep (STATUS read) and sets *pt. */
static ep *open_circuit(size_t s_extra, size_t t_extra, ep **pt) {
  ep *s;
  int st = reserve_status(1, 0);
  *pt = NULL;
  if (st != NP_RELAYMSG_OK) {
    diag("reserve: %d", st);
    return NULL;
  }
  H[1].extra = t_extra;
  if ((s = connect_via(2, 0, 1, s_extra)) == NULL)
    return NULL;
  run_until(&s->have_msg, 5);
  *pt = last_stop(1);
  return s;
}

static void test_pipe_unlimited(void) {
  char more[256];
  ep *s, *t;
  const uint64_t N = (uint64_t)3 << 20;
  if (host_up(1, NULL, NULL) != 0) {
    ok(0, "pipe: target up");
    all_down();
    return;
  }
  snprintf(more, sizeof(more),
           "circuit_bytes = 64K\ncircuit_duration = 60s\nunlimited_peers = "
           "%s\n",
           H[1].peer);
  set_relay_cfg(more);
  if (host_up(0, NULL, relay_cfg) != 0 || host_up(2, NULL, NULL) != 0 ||
      connect_to(1, 0) != 0 || connect_to(2, 0) != 0) {
    ok(0, "pipe: hosts up");
    all_down();
    return;
  }
  H[1].echo_back = 1;
  H[1].tx_total = N;
  {
    ep *rv = reserve(1, 0);
    ok(rv && status_of(rv) == NP_RELAYMSG_OK && !rv->m.has_limit,
       "an unlimited_peers peer's reservation carries no limit");
    ep_free(rv);
  }
  s = open_circuit(100, 50, &t);
  ok(s && status_of(s) == NP_RELAYMSG_OK, "CONNECT: STATUS OK (%d)",
     s ? status_of(s) : -1);
  ok(t && t->have_msg && t->msg_err == 0 &&
         t->m.type == NP_RELAYMSG_STOP_CONNECT && t->m.has_peer &&
         np_peerid_equal(&t->m.peer.id, &H[2].id.id),
     "the target's STOP CONNECT names the source");
  ok(s && !s->m.has_limit && t && !t->m.has_limit,
     "an unlimited_peers target: no limit sent either way");
  if (s == NULL || t == NULL || status_of(s) != NP_RELAYMSG_OK) {
    ep_free(s);
    all_down();
    return;
  }
  is_int((int)stats(0).circuits, 1, "stats: one circuit");
  s->tx_total = N;
  ep_pump(s);
  WAIT(t->rx >= N && s->rx >= N, 30);
  ok(t->rx == N && !t->rx_bad,
     "3 MiB source -> target, in order, with the 100 bytes behind CONNECT "
     "(%llu)",
     (unsigned long long)t->rx);
  ok(s->rx == N && !s->rx_bad,
     "3 MiB target -> source, with the 50 bytes behind the STATUS (%llu)",
     (unsigned long long)s->rx);
  ok(stats(0).bytes_relayed >= 2 * N, "bytes_relayed counts both ways");
  /* half-close: the source finishes, the target still answers */
  s->s->ops->close(s->s);
  WAIT(t->fin, 5);
  ok(t->fin && !t->closed, "the source's FIN reaches the target as a FIN");
  {
    uint8_t b[1000];
    fill(b, t->tx, sizeof(b));
    t->s->ops->write(t->s, b, sizeof(b));
    t->s->ops->close(t->s);
  }
  WAIT(s->fin && s->closed && t->closed, 5);
  ok(s->rx == N + 1000 && !s->rx_bad && s->fin,
     "after the half-close the target's bytes and FIN reach the source");
  ok(s->closed && s->close_err == 0 && t->closed && t->close_err == 0,
     "both streams end cleanly (%s/%s)", np_errname(s->close_err),
     np_errname(t->close_err));
  WAIT(stats(0).circuits == 0, 5);
  is_int((int)stats(0).circuits, 0, "the circuit is gone");
  is_int((int)stats(0).circuits_total, 1, "circuits_total");
  ep_free(s);
  all_down();
}

static void test_limits(void) {
  ep *s, *t;
  if (trio("circuit_bytes = 64K\ncircuit_duration = 1s\n") != 0) {
    ok(0, "limits: hosts up");
    all_down();
    return;
  }
  /* byte limit */
  s = open_circuit(0, 0, &t);
  ok(s && status_of(s) == NP_RELAYMSG_OK && s->m.has_limit &&
         s->m.limit.data == 65536 && s->m.limit.duration == 1,
     "the source learns the limit");
  ok(t && t->m.has_limit && t->m.limit.data == 65536,
     "the target learns the limit");
  if (s && t && status_of(s) == NP_RELAYMSG_OK) {
    s->tx_total = 200000;
    ep_pump(s);
    WAIT(s->closed && t->closed, 5);
    ok(s->closed && s->close_err != 0 && t->closed && t->close_err != 0,
       "past circuit_bytes both streams are reset (%s/%s)",
       np_errname(s->close_err), np_errname(t->close_err));
    ok(t->rx <= 65536 && !t->rx_bad, "the target got at most the limit (%llu)",
       (unsigned long long)t->rx);
  }
  ep_free(s);
  /* duration limit: an idle circuit is reset after 1 s */
  s = open_circuit(0, 0, &t);
  if (s && t && status_of(s) == NP_RELAYMSG_OK) {
    double t0 = ev_time();
    WAIT(s->closed && t->closed, 4);
    ok(s->closed && t->closed && ev_time() - t0 >= 0.8,
       "past circuit_duration both streams are reset (%.2fs)", ev_time() - t0);
  } else {
    ok(0, "duration: circuit opened");
  }
  ep_free(s);
  WAIT(stats(0).circuits == 0, 3);
  is_int((int)stats(0).circuits, 0, "no circuit left after the limits");
  all_down();
}

static void test_backpressure(void) {
  char more[256];
  ep *s, *t;
  uint64_t maxbuf = 0, stalled_at;
  if (host_up(1, NULL, NULL) != 0) {
    ok(0, "bp: target up");
    all_down();
    return;
  }
  snprintf(more, sizeof(more), "unlimited_peers = %s\n", H[1].peer);
  set_relay_cfg(more);
  if (host_up(0, NULL, relay_cfg) != 0 || host_up(2, NULL, NULL) != 0 ||
      connect_to(1, 0) != 0 || connect_to(2, 0) != 0) {
    ok(0, "bp: hosts up");
    all_down();
    return;
  }
  H[1].pause_after = 1;
  s = open_circuit(0, 0, &t);
  if (s == NULL || t == NULL || status_of(s) != NP_RELAYMSG_OK) {
    ok(0, "bp: circuit opened");
    ep_free(s);
    all_down();
    return;
  }
  /* The target never reads: the source must be stopped, nothing dropped. */
  s->tx_total = (uint64_t)256 << 20;
  ep_pump(s);
  for (int k = 0; k < 100; k++) {
    run_for(0.02);
    if (stats(0).buffered > maxbuf)
      maxbuf = stats(0).buffered;
  }
  stalled_at = s->tx;
  run_for(0.5);
  ok(s->elimits > 0 && s->tx == stalled_at && s->tx < ((uint64_t)64 << 20),
     "a paused target stops the source: writes say NP_ELIMIT after %llu "
     "bytes",
     (unsigned long long)s->tx);
  ok(maxbuf <= ((uint64_t)16 << 20),
     "the relay holds a bounded amount meanwhile (%llu bytes at most)",
     (unsigned long long)maxbuf);
  ok(!s->closed && !t->closed, "the slow reader is not cut");
  /* resume: everything arrives in order */
  s->tx_total = stalled_at + ((uint64_t)1 << 20);
  t->paused = 0;
  t->s->ops->pause(t->s, 0);
  ep_pump(s);
  WAIT(t->rx >= s->tx_total, 30);
  ok(t->rx == s->tx_total && !t->rx_bad,
     "once the target reads, all %llu bytes arrive in order",
     (unsigned long long)t->rx);
  ep_free(s);
  all_down();
}

/* Each party goes away at each step. */
static void test_goes_away(void) {
  ep *s, *t;
  /* the source resets during the STOP wait */
  if (trio(NULL) != 0) {
    ok(0, "away: hosts up");
    all_down();
    return;
  }
  is_int(reserve_status(1, 0), NP_RELAYMSG_OK, "away: reserved");
  H[1].answer = 0;
  s = connect_via(2, 0, 1, 0);
  WAIT(H[1].neps == 1 && last_stop(1)->have_msg, 5);
  t = last_stop(1);
  ok(s && t && t->have_msg, "away: the target got STOP CONNECT");
  if (s && s->s)
    s->s->ops->reset(s->s);
  WAIT(t && t->closed, 5);
  ok(t && t->closed && t->close_err != 0,
     "the source resetting during the STOP wait resets the stop stream");
  ep_free(s);
  WAIT(stats(0).circuits == 0, 3);
  is_int((int)stats(0).circuits, 0, "away: no circuit left");
  /* the target resets during the STOP wait */
  s = connect_via(2, 0, 1, 0);
  WAIT(H[1].neps == 2 && last_stop(1)->have_msg, 5);
  t = last_stop(1);
  if (t && t->s)
    t->s->ops->reset(t->s);
  run_until(s ? &s->have_msg : &one, 5);
  ok(s && status_of(s) == NP_RELAYMSG_CONNECTION_FAILED,
     "the target resetting during the STOP wait: CONNECTION_FAILED");
  ep_free(s);
  /* the target's host vanishes silently during the STOP wait: the
   * relay's probes find it in seconds, well before the 30 s timeout */
  s = connect_via(2, 0, 1, 0);
  WAIT(H[1].neps == 3 && last_stop(1)->have_msg, 5);
  {
    double t0 = ev_time();
    np_swarm_mem_vanish(np_host_swarm(H[1].h));
    run_until(s ? &s->have_msg : &one, 15);
    ok(s && status_of(s) == NP_RELAYMSG_CONNECTION_FAILED &&
           ev_time() - t0 < 10,
       "the target vanishing during the STOP wait: CONNECTION_FAILED in "
       "%.1fs",
       ev_time() - t0);
  }
  ep_free(s);
  WAIT(stats(0).reservations == 0 && stats(0).circuits == 0, 3);
  ok(stats(0).reservations == 0 && stats(0).circuits == 0,
     "its reservation and the circuit are gone");
  all_down();
  if (trio(NULL) != 0) {
    ok(0, "away: hosts up again");
    all_down();
    return;
  }
  is_int(reserve_status(1, 0), NP_RELAYMSG_OK, "away: reserved again");
  H[1].answer = 0;
  /* the target's host is deleted during the STOP wait */
  s = connect_via(2, 0, 1, 0);
  WAIT(H[1].neps == 1 && last_stop(1)->have_msg, 5);
  host_down(1);
  run_until(s ? &s->have_msg : &one, 5);
  ok(s && status_of(s) == NP_RELAYMSG_CONNECTION_FAILED,
     "the target going away during the STOP wait: CONNECTION_FAILED");
  ep_free(s);
  WAIT(stats(0).reservations == 0 && stats(0).circuits == 0, 3);
  ok(stats(0).reservations == 0 && stats(0).circuits == 0,
     "its reservation and the circuit are gone");
  all_down();

  /* mid-pipe: the target resets, then the source goes away, then the
   * relay goes away */
  if (trio(NULL) != 0) {
    ok(0, "away2: hosts up");
    all_down();
    return;
  }
  s = open_circuit(0, 0, &t);
  if (s && t && status_of(s) == NP_RELAYMSG_OK) {
    s->tx_total = 1000;
    ep_pump(s);
    WAIT(t->rx == 1000, 5);
    t->s->ops->reset(t->s);
    WAIT(s->closed, 5);
    ok(s->closed && s->close_err != 0,
       "the target resetting mid-pipe resets the source (%s)",
       np_errname(s->close_err));
  } else {
    ok(0, "away2: circuit opened");
  }
  ep_free(s);
  s = open_circuit(0, 0, &t);
  if (s && t && status_of(s) == NP_RELAYMSG_OK) {
    s->tx_total = 1000;
    ep_pump(s);
    WAIT(t->rx == 1000, 5);
    ep_free(s);
    s = NULL;
    host_down(2);
    WAIT(t->closed, 5);
    ok(t->closed && t->close_err != 0,
       "the source's host going away mid-pipe resets the target");
    WAIT(stats(0).circuits == 0, 3);
    is_int((int)stats(0).circuits, 0, "no circuit left");
  } else {
    ok(0, "away2: second circuit opened");
  }
  ep_free(s);
  if (host_up(2, NULL, NULL) != 0 || connect_to(2, 0) != 0) {
    ok(0, "away2: source back");
    all_down();
    return;
  }
  s = open_circuit(0, 0, &t);
  if (s && t && status_of(s) == NP_RELAYMSG_OK) {
    s->tx_total = 1000;
    ep_pump(s);
    WAIT(t->rx == 1000, 5);
    ok(t->rx == 1000 && !s->closed && !t->closed, "away2: third circuit pipes");
    host_down(0); /* the relay stops with the circuit mid-pipe */
    WAIT(s->closed && t->closed, 5);
    ok(s->closed && s->close_err != 0 && t->closed && t->close_err != 0,
       "the relay going away mid-pipe resets both ends (%s/%s)",
       np_errname(s->close_err), np_errname(t->close_err));
  } else {
    ok(0, "away2: third circuit opened");
  }
  ep_free(s);
  all_down();
}

/* AutoNAT's verdict, as the AutoNAT module would emit it. */
static void reach(int i, int state) {
  np_event e;
  memset(&e, 0, sizeof(e));
  e.type = NP_EV_REACHABILITY;
  e.reachability = state;
  np_events_emit(np_host_events(H[i].h), &e);
}

static void test_service_modes(void) {
  ep *e;
  /* off: no hop protocol */
  if (host_up(0, NULL, "[relay]\nservice = off\n") != 0 ||
      host_up(1, NULL, NULL) != 0 || connect_to(1, 0) != 0) {
    ok(0, "modes: hosts up");
    all_down();
    return;
  }
  ok(!stats(0).serving, "service = off does not serve");
  ok(np_proto_find(np_host_protos(H[0].h), NP_RELAYMSG_HOP_PROTOCOL,
                   strlen(NP_RELAYMSG_HOP_PROTOCOL)) == NULL,
     "service = off: the hop protocol is not registered");
  e = reserve(1, 0);
  ok(e == NULL || (e->closed && !e->have_msg),
     "service = off: a hop stream is refused");
  ep_free(e);
  host_down(0);
  /* auto: /memory/ is not a public address */
  if (host_up(0, NULL, "[relay]\nservice = auto\n") != 0) {
    ok(0, "modes: auto host up");
    all_down();
    return;
  }
  ok(!stats(0).serving, "service = auto on a private host does not serve");
  if (host_up(1, NULL, NULL) != 0 || connect_to(1, 0) != 0) {
    ok(0, "modes: target up");
    all_down();
    return;
  }
  reach(0, NP_REACH_PUBLIC);
  ok(stats(0).serving &&
         np_proto_find(np_host_protos(H[0].h), NP_RELAYMSG_HOP_PROTOCOL,
                       strlen(NP_RELAYMSG_HOP_PROTOCOL)) != NULL,
     "service = auto: AutoNAT saying public registers the hop protocol");
  is_int(reserve_status(1, 0), NP_RELAYMSG_OK, "auto + public: reserving works");
  reach(0, NP_REACH_PRIVATE);
  ok(!stats(0).serving && stats(0).reservations == 0 &&
         np_proto_find(np_host_protos(H[0].h), NP_RELAYMSG_HOP_PROTOCOL,
                       strlen(NP_RELAYMSG_HOP_PROTOCOL)) == NULL,
     "service = auto: private again withdraws the protocol and reservations");
  reach(0, NP_REACH_UNKNOWN);
  ok(!stats(0).serving, "no verdict: back to the address check (private)");
  all_down();
  /* auto before any verdict: a listen address that counts as public */
  if (host_up(0, "/ip4/127.0.0.1/udp/0/quic-v1",
              "[relay]\nservice = auto\n[nat]\ntreat_as_public = "
              "127.0.0.0/8\n") != 0 ||
      host_up(1, "/ip4/127.0.0.1/udp/0/quic-v1", NULL) != 0 ||
      connect_to(1, 0) != 0) {
    ok(0, "modes: public hosts up");
    all_down();
    return;
  }
  ok(stats(0).serving,
     "service = auto with a public listen address serves before a verdict");
  {
    char want[256], t[256];
    int found = 0;
    e = reserve(1, 0);
    snprintf(want, sizeof(want), "%s/p2p/%s", H[0].addr, H[0].peer);
    for (size_t k = 0; e && e->have_msg && !e->msg_err &&
                       k < e->m.reservation.naddrs;
         k++)
      if (np_maddr_to_string(e->m.reservation.addrs[k].data,
                             e->m.reservation.addrs[k].len, t,
                             sizeof(t)) > 0 &&
          strcmp(t, want) == 0)
        found = 1;
    ok(found, "the reservation lists the public (treat_as_public) address");
    ep_free(e);
  }
  reach(0, NP_REACH_PRIVATE);
  ok(!stats(0).serving, "an AutoNAT verdict of private overrides it");
  all_down();
}

/* RESERVE and CONNECT over a limited (relayed) connection. */
static np_tmem_net *mnet;
static np_loop *mloop;

static int add_limited(int i, const char *name) {
  np_tmem_config mc;
  np_transport *tm;
  void *ud;
  const np_conn_cbs *cbs;
  uint8_t bin[64];
  np_ssize n;
  np_tmem_config_default(&mc);
  mc.limited = 1;
  cbs = np_swarm_conn_cbs(np_host_swarm(H[i].h), &ud);
  if (np_tmem_new(&tm, mnet, &H[i].id, &mc, cbs, ud) != 0)
    return -1;
  if (np_swarm_add_transport(np_host_swarm(H[i].h), tm) != 0) {
    tm->ops->del(tm);
    return -1;
  }
  if (name == NULL)
    return 0;
  n = np_maddr_parse(name, strlen(name), bin, sizeof(bin));
  return n > 0 ? tm->ops->listen(tm, bin, (size_t)n) : -1;
}

static const np_conn *lim_conn;
static int find_lim(const np_conn *c, void *ud) {
  (void)ud;
  if (c->limited) {
    lim_conn = c;
    return 1;
  }
  return 0;
}

static ep *hop_over_limited(int i, const np_relaymsg *m) {
  ep *e = calloc(1, sizeof(*e));
  uint8_t out[NP_RELAYMSG_MSG_MAX + 16];
  np_ssize n;
  void *h;
  if (e == NULL)
    return NULL;
  e->kind = NP_RELAYMSG_HOP;
  lim_conn = NULL;
  np_swarm_foreach_conn(np_host_swarm(H[i].h), find_lim, NULL);
  if (lim_conn == NULL ||
      np_swarm_conn_open(np_host_swarm(H[i].h), lim_conn,
                         NP_RELAYMSG_HOP_PROTOCOL, on_stream, e, &h) != 0) {
    free(e);
    return NULL;
  }
  run_until(&e->opened, 5);
  if (!e->opened || e->open_err || e->s == NULL) {
    if (e->opened)
      free(e);
    return NULL;
  }
  n = np_relaymsg_encode_lp(m, out, sizeof(out));
  if (n > 0)
    e->s->ops->write(e->s, out, (size_t)n);
  run_until(&e->have_msg, 5);
  return e;
}

static void test_limited(void) {
  char t[200];
  uint8_t a[128];
  const uint8_t *ap = a;
  size_t al;
  void *net;
  const np_net_ops *ops;
  waitv w = {0, 0};
  np_relaymsg m;
  ep *e;
  if (np_loop_new(&mloop, ev) != 0 || np_tmem_net_new(&mnet, mloop) != 0 ||
      trio(NULL) != 0 || add_limited(0, "/memory/limR") != 0 ||
      /* on QUIC: its only /memory/ transport is the limited one */
      host_up(3, "/ip4/127.0.0.1/udp/0/quic-v1", NULL) != 0 ||
      add_limited(3, NULL) != 0) {
    ok(0, "limited: hosts up");
    all_down();
    return;
  }
  ops = np_host_net(H[3].h, &net);
  snprintf(t, sizeof(t), "/memory/limR/p2p/%s", H[0].peer);
  al = (size_t)np_maddr_parse(t, strlen(t), a, sizeof(a));
  if (ops->connect(net, &H[0].id.id, &ap, &al, 1, 5000, on_done, &w, NULL) ==
      0)
    run_until(&w.done, 5);
  ok(w.done && w.err == 0, "a limited link to the relay (%s)",
     np_errname(w.err));
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_RESERVE;
  e = hop_over_limited(3, &m);
  ok(e && status_of(e) == NP_RELAYMSG_PERMISSION_DENIED,
     "RESERVE over a limited connection: PERMISSION_DENIED (%d)",
     e ? status_of(e) : -1);
  ep_free(e);
  is_int(reserve_status(1, 0), NP_RELAYMSG_OK, "limited: the target reserves");
  m.type = NP_RELAYMSG_HOP_CONNECT;
  m.has_peer = 1;
  m.peer.id = H[1].id.id;
  e = hop_over_limited(3, &m);
  ok(e && status_of(e) == NP_RELAYMSG_PERMISSION_DENIED,
     "CONNECT over a limited connection: PERMISSION_DENIED (%d)",
     e ? status_of(e) : -1);
  ep_free(e);
  is_int((int)stats(0).circuits, 0, "limited: no circuit");
  all_down();
  np_tmem_net_del(mnet);
  np_loop_del(mloop);
}

/* The per-IP limit over QUIC from two loopback addresses. */
static void test_per_ip(void) {
  int okc = 0, refused = 0;
  if (host_up(0, "/ip4/127.0.0.1/udp/0/quic-v1",
              "[relay]\nservice = on\nmax_reservations_per_ip = 3\n") != 0) {
    ok(0, "per-ip: relay up");
    all_down();
    return;
  }
  for (int i = 1; i <= 5; i++) {
    if (host_up(i, "/ip4/127.0.0.2/udp/0/quic-v1", NULL) != 0 ||
        connect_to(i, 0) != 0) {
      ok(0, "per-ip: host %d up", i);
      all_down();
      return;
    }
    {
      int st = reserve_status(i, 0);
      okc += st == NP_RELAYMSG_OK;
      refused += st == NP_RELAYMSG_RESERVATION_REFUSED;
    }
  }
  ok(okc == 3 && refused == 2,
     "five peers from one IP: max_reservations_per_ip accepted (%d), the "
     "rest RESERVATION_REFUSED (%d)",
     okc, refused);
  if (host_up(6, "/ip4/127.0.0.3/udp/0/quic-v1", NULL) != 0 ||
      connect_to(6, 0) != 0) {
    ok(0, "per-ip: other host up");
    all_down();
    return;
  }
  is_int(reserve_status(6, 0), NP_RELAYMSG_OK,
         "a peer from another IP still gets a reservation");
  /* one of the first goes: a slot of its IP frees up */
  host_down(1);
  WAIT(stats(0).reservations == 3, 5);
  is_int(reserve_status(4, 0), NP_RELAYMSG_OK,
         "when a peer of that IP leaves, another of it gets its slot");
  all_down();
}

/* Requests cut short, and the relay stopping with work at every step. */
static void test_relay_away(void) {
  ep *half, *half2, *wait, *lg;
  void *net;
  const np_net_ops *ops;
  const char *proto = NP_RELAYMSG_HOP_PROTOCOL;
  static const uint8_t part[] = {10, 0x08}; /* a 10-byte message, begun */
  if (trio(NULL) != 0) {
    ok(0, "relay-away: hosts up");
    all_down();
    return;
  }
  ops = np_host_net(H[2].h, &net);
  /* a half-sent request whose stream is reset */
  half = calloc(1, sizeof(*half));
  half->kind = NP_RELAYMSG_HOP;
  ops->open_stream(net, &H[0].id.id, &proto, 1, 0, 5000, on_stream, half,
                   NULL);
  run_until(&half->opened, 5);
  if (half->s)
    half->s->ops->write(half->s, part, sizeof(part));
  run_for(0.1);
  if (half->s)
    half->s->ops->reset(half->s);
  run_for(0.1);
  ok(half->opened && !half->have_msg,
     "a request reset half-way gets no answer (and leaves nothing behind)");
  ep_free(half);
  /* another one left half-sent, a circuit waiting for STOP, an answered
   * stream lingering: then the relay stops */
  half2 = calloc(1, sizeof(*half2));
  half2->kind = NP_RELAYMSG_HOP;
  ops->open_stream(net, &H[0].id.id, &proto, 1, 0, 5000, on_stream, half2,
                   NULL);
  run_until(&half2->opened, 5);
  if (half2->s)
    half2->s->ops->write(half2->s, part, sizeof(part));
  lg = reserve(1, 0);
  H[1].answer = 0;
  wait = connect_via(2, 0, 1, 0);
  WAIT(H[1].neps == 1 && last_stop(1)->have_msg, 5);
  ok(lg && status_of(lg) == NP_RELAYMSG_OK && wait && H[1].neps == 1,
     "relay-away: a request pending, a circuit in the STOP wait, an answered "
     "stream");
  host_down(0);
  WAIT(half2->closed && wait->closed && last_stop(1) &&
           last_stop(1)->closed,
       5);
  ok(half2->closed && wait->closed && !wait->have_msg && last_stop(1) &&
         last_stop(1)->closed,
     "the relay going away ends them all");
  ep_free(half2);
  ep_free(wait);
  ep_free(lg);
  all_down();
}

/* An answered hop stream the client never closes is reset after 10 s;
 * the reservation (reservation_ttl = 10s) expires meanwhile. */
static void test_linger(void) {
  ep *e;
  double t0;
  if (trio("reservation_ttl = 10s\n") != 0) {
    ok(0, "linger: hosts up");
    all_down();
    return;
  }
  e = reserve(1, 0);
  ok(e && status_of(e) == NP_RELAYMSG_OK, "linger: reserved");
  run_until(e ? &e->fin : &one, 3);
  t0 = ev_time();
  run_until(e ? &e->closed : &one, 15);
  ok(e && e->closed && e->close_err != 0 && ev_time() - t0 > 5,
     "an answered hop stream left open by the client is reset (%.1fs)",
     ev_time() - t0);
  ep_free(e);
  WAIT(stats(0).reservations == 0, 3);
  is_int((int)stats(0).reservations, 0,
         "the reservation expires after reservation_ttl though the target "
         "stays connected");
  e = connect_via(2, 0, 1, 0);
  run_until(e ? &e->have_msg : &one, 5);
  ok(e && status_of(e) == NP_RELAYMSG_NO_RESERVATION,
     "CONNECT to it then: NO_RESERVATION (%d)", e ? status_of(e) : -1);
  ep_free(e);
  all_down();
}

/* max_circuits_total counts every circuit, whoever its ends are. */
static void test_total(void) {
  ep *a, *b;
  if (trio("max_circuits_total = 1\n") != 0 || host_up(3, NULL, NULL) != 0 ||
      connect_to(3, 0) != 0) {
    ok(0, "total: hosts up");
    all_down();
    return;
  }
  is_int(reserve_status(1, 0), NP_RELAYMSG_OK, "total: target 1 reserved");
  is_int(reserve_status(3, 0), NP_RELAYMSG_OK, "total: target 3 reserved");
  H[1].answer = 0;
  a = connect_via(2, 0, 1, 0);
  WAIT(H[1].neps == 1, 5);
  b = connect_via(2, 0, 3, 0);
  run_until(b ? &b->have_msg : &one, 5);
  ok(a && b && status_of(b) == NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED,
     "past max_circuits_total: RESOURCE_LIMIT_EXCEEDED (%d)",
     b ? status_of(b) : -1);
  ep_free(b);
  ep_free(a);
  WAIT(stats(0).circuits == 0, 3);
  H[3].answer = NP_RELAYMSG_OK;
  b = connect_via(2, 0, 3, 0);
  run_until(b ? &b->have_msg : &one, 5);
  ok(b && status_of(b) == NP_RELAYMSG_OK,
     "once the first circuit is gone another opens (%d)",
     b ? status_of(b) : -1);
  ep_free(b);
  all_down();
}

int main(void) {
  np_log_set_level(getenv("RSVC_LOG") ? NP_LOG_INFO : NP_LOG_ERROR);
  ev = ev_default_loop(0);
  ev_timer_init(&tick, on_tick, 0.02, 0.02);
  ev_timer_start(ev, &tick);
  test_reserve();
  test_refusals();
  test_pipe_unlimited();
  test_limits();
  test_backpressure();
  test_goes_away();
  test_service_modes();
  test_per_ip();
  test_limited();
  test_relay_away();
  test_total();
  test_linger();
  ev_timer_stop(ev, &tick);
  return done_testing();
}
