/* DCUtR (np_dcutr) between in-process hosts: each listens on /memory/ and
 * on QUIC at 127.0.0.1 ([nat] treat_as_public = 127.0.0.0/8); an extra
 * in-memory transport whose connections are limited (np_tmem_config
 * limited, added with np_swarm_add_transport) stands in for the relay.
 * Covered:
 *  - A dials B "through the relay": B starts as initiator, A answers as
 *    responder, a direct QUIC connection comes up (A the QUIC client),
 *    new streams use it and the limited connection is retired;
 *  - addresses that lead nowhere on both sides: 3 attempts, then failure,
 *    the limited connection left alone;
 *  - a peer without DCUtR: one attempt, failure "does not support";
 *  - a stream on a direct connection, or an inbound limited one, is
 *    refused by the responder; broken messages (SYNC first, an oversized
 *    length prefix, no usable address) reset the stream, reason recorded;
 *  - the same over a real circuit relay v2 connection (np_relaysvc,
 *    np_relayc);
 *  - either side going away at each step of the exchange (ASan build).
 * Every wait is bounded. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_conf.h"
#include "np_conn.h"
#include "np_crypto.h"
#include "np_daemon.h"
#include "np_dcutr.h"
#include "np_dcutrmsg.h"
#include "np_err.h"
#include "np_event.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_relayc.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "np_tmem.h"
#include "tap.h"

static struct ev_loop *ev;

static np_loop *mloop;
static np_tmem_net *mnet; /* the "relay": limited in-memory links */

typedef struct th {
  np_daemon *d;
  np_host *h;
  np_identity id;
  char mem[32];
  np_list streams;
} th;

static double now_s(void) {
  ev_now_update(ev);
  return ev_now(ev);
}

#define RUN_UNTIL(cond, secs)                                                  \
  do {                                                                         \
    double end_ = now_s() + (secs);                                            \
    while (!(cond) && now_s() < end_)                                          \
      ev_run(ev, EVRUN_ONCE);                                                  \
  } while (0)

static void run_for(double secs) { RUN_UNTIL(0, secs); }

/* /test/echo/1.0.0: every byte back, FIN after FIN. */
static void echo_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  (void)ud;
  if (len)
    s->ops->write(s, d, len);
  else
    s->ops->close(s);
}

/* A host; |extra| goes into [nat] (treat_as_public, hole_punch...). */
static int host_up_x(th *t, const char *name, const char *nat,
                     const char *extra) {
  char ini[1024], err[256];
  np_conf *c;
  np_handler hd;
  int rv;
  memset(t, 0, sizeof(*t));
  snprintf(t->mem, sizeof(t->mem), "/memory/%s", name);
  snprintf(ini, sizeof(ini),
           "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
           "log_level = %s\n[nat]\nhole_punch_timeout = 1500ms\n%s\n"
           "[plugins]\nautoload = no\n%s\n",
           getenv("NP_TEST_DEBUG") ? "debug" : "error", nat,
           extra ? extra : "");
  if (np_conf_load_string(&c, "dcutr.ini", ini, strlen(ini), err,
                          sizeof(err)) != 0) {
    printf("# conf: %s\n", err);
    return -1;
  }
  if (np_identity_generate(&t->id) != 0 ||
      np_daemon_new(&t->d, ev, c, &t->id) != 0)
    return -1;
  t->h = np_daemon_host(t->d);
  if ((rv = np_daemon_start(t->d, NP_DAEMON_NET)) != 0)
    return rv;
  {
    np_tmem_config mc;
    np_transport *tm;
    const np_conn_cbs *cbs;
    void *ud;
    uint8_t bin[64];
    np_ssize n = np_maddr_parse(t->mem, strlen(t->mem), bin, sizeof(bin));
    np_tmem_config_default(&mc);
    mc.limited = 1;
    cbs = np_swarm_conn_cbs(np_host_swarm(t->h), &ud);
    if (n < 0 || np_tmem_new(&tm, mnet, &t->id, &mc, cbs, ud) != 0)
      return -1;
    if (np_swarm_add_transport(np_host_swarm(t->h), tm) != 0) {
      tm->ops->del(tm);
      return -1;
    }
    if (tm->ops->listen(tm, bin, (size_t)n) != 0)
      return -1;
  }
  np_list_init(&t->streams);
  memset(&hd, 0, sizeof(hd));
  hd.proto = "/test/echo/1.0.0";
  hd.proto_len = strlen(hd.proto);
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = t;
  hd.owner_name = "test";
  hd.stream.struct_size = sizeof(hd.stream);
  hd.stream.on_data = echo_data;
  hd.streams = &t->streams;
  return np_proto_add(np_host_protos(t->h), &hd, NULL);
}

static int host_up(th *t, const char *name, const char *nat) {
  return host_up_x(t, name, nat, NULL);
}

static void host_down(th *t) {
  if (t->d == NULL)
    return;
  np_daemon_del(t->d);
  t->d = NULL;
  t->h = NULL;
  np_identity_clear(&t->id);
}

static np_dcutr *dc(th *t) { return np_daemon_module(t->d, "dcutr"); }

static void on_done(void *ud, int err) {
  int *w = ud;
  *w = err == 0 ? 1 : err;
}

struct find_limited {
  const np_peerid *peer;
  const np_conn *c;
};
static int find_limited_fn(const np_conn *c, void *ud) {
  struct find_limited *f = ud;
  if (c->limited && np_peerid_equal(&c->peer, f->peer))
    f->c = c;
  return f->c != NULL;
}
static const np_conn *limited_conn(th *of, th *to) {
  struct find_limited f = {&to->id.id, NULL};
  np_swarm_foreach_conn(np_host_swarm(of->h), find_limited_fn, &f);
  return f.c;
}

/* |from| dials |to| over /memory/, limited at both ends. */
static int connect_limited(th *from, th *to) {
  void *net;
  const np_net_ops *ops = np_host_net(from->h, &net);
  uint8_t bin[128];
  const uint8_t *a[1] = {bin};
  size_t l[1];
  int w = 0, rv;
  np_ssize n = np_maddr_parse(to->mem, strlen(to->mem), bin, sizeof(bin));
  if (n < 0)
    return -1;
  l[0] = (size_t)n;
  rv = ops->connect(net, &to->id.id, a, l, 1, 5000, on_done, &w, NULL);
  if (rv != 0)
    return rv;
  RUN_UNTIL(w != 0, 6);
  if (w != 1)
    return w == 0 ? NP_ETIMEDOUT : w;
  /* The listener's end comes up last (it reads the final handshake
   * message). */
  RUN_UNTIL(limited_conn(to, from) != NULL, 5);
  return limited_conn(to, from) != NULL ? 0 : NP_ETIMEDOUT;
}

/* Connections of |from| to |to| by kind; bit 8 per limited one, bit 16
 * per inbound QUIC one. */
typedef struct ckinds {
  int quic, mem, relay, limited, quic_in, quic_out;
} ckinds;
static ckinds conns_to(th *from, th *to) {
  void *net;
  const np_net_ops *ops = np_host_net(from->h, &net);
  np_conn_info ci[16];
  size_t n = ops->conns(net, ci, 16);
  ckinds k;
  memset(&k, 0, sizeof(k));
  for (size_t i = 0; i < n && i < 16; i++) {
    if (!np_peerid_equal(&ci[i].peer, &to->id.id))
      continue;
    if (ci[i].transport == NP_TRANSPORT_QUIC) {
      k.quic++;
      if (ci[i].outbound)
        k.quic_out++;
      else
        k.quic_in++;
    }
    if (ci[i].transport == NP_TRANSPORT_MEM)
      k.mem++;
    if (ci[i].transport == NP_TRANSPORT_RELAY)
      k.relay++;
    if (ci[i].limited)
      k.limited++;
  }
  return k;
}

/* The status record |of| keeps about |peer| (state 0: none). */
static np_dcutr_status status_id(th *of, const np_peerid *peer) {
  np_dcutr_status st[NP_DCUTR_HISTORY], none;
  size_t n = np_dcutr_status_list(dc(of), st, NP_DCUTR_HISTORY);
  memset(&none, 0, sizeof(none));
  for (size_t i = 0; i < n && i < NP_DCUTR_HISTORY; i++)
    if (np_peerid_equal(&st[i].peer, peer))
      return st[i];
  return none;
}
static np_dcutr_status status(th *of, th *peer) {
  return status_id(of, &peer->id.id);
}

static int settled(th *of, th *peer) {
  int s = status(of, peer).state;
  return s == NP_DCUTR_DIRECT || s == NP_DCUTR_FAILED;
}

/* A stream to |to| on whatever connection the swarm picks. */
typedef struct ostream {
  int done, err;
  np_stream *s;
  int kind, limited;
} ostream;
static void os_data(np_stream *s, const uint8_t *d, size_t n, void *ud) {
  (void)s, (void)d, (void)n, (void)ud;
}
static void os_close(np_stream *s, int err, void *ud) {
  ostream *o = ud;
  (void)s, (void)err;
  o->s = NULL;
}
static const np_stream_cbs os_cbs = {.struct_size = sizeof(np_stream_cbs),
                                     .on_data = os_data,
                                     .on_close = os_close};
static void os_opened(void *ud, int err, np_stream *s, const char *proto) {
  ostream *o = ud;
  const np_conn *c;
  (void)proto;
  o->done = 1;
  o->err = err;
  if (err)
    return;
  o->s = s;
  np_stream_set_cbs(s, &os_cbs, o);
  if ((c = np_swarm_stream_conn(s)) != NULL) {
    o->kind = c->kind;
    o->limited = c->limited;
  }
  s->ops->close(s);
}

/* Address shape for an injected observed address. */
static void inject_observed(th *t, const char *text, int on_listen) {
  uint8_t bin[64], l[256];
  const char *la = on_listen ? np_daemon_addr_text(t->d, 0)
                             : "/ip4/127.0.0.1/udp/1/quic-v1";
  np_ssize n = np_maddr_parse(text, strlen(text), bin, sizeof(bin));
  np_ssize ln = np_maddr_parse(la, strlen(la), l, sizeof(l));
  np_event e;
  memset(&e, 0, sizeof(e));
  e.type = NP_EV_OBSERVED_ADDR;
  e.peer = &t->id.id;
  e.observed = bin;
  e.observed_len = n > 0 ? (size_t)n : 0;
  e.laddr = l;
  e.laddr_len = ln > 0 ? (size_t)ln : 0;
  np_events_emit(np_host_events(t->h), &e);
}

static void test_direct(void) {
  th a, b;
  ckinds k;
  np_dcutr_status sa, sb;
  ostream o;
  void *net;
  const np_net_ops *ops;
  const char *protos[1] = {"/test/echo/1.0.0"};
  ok(host_up(&a, "dA", "treat_as_public = 127.0.0.0/8") == 0 &&
         host_up(&b, "dB", "treat_as_public = 127.0.0.0/8") == 0,
     "hosts A and B (memory + QUIC on 127.0.0.1)");
  np_dcutr_set_timing(dc(&b), 100, 500);
  is_int(connect_limited(&a, &b), 0, "A dials B over a limited connection");
  k = conns_to(&b, &a);
  ok(k.mem == 1 && k.limited == 1 && k.quic == 0,
     "B: one limited connection to A, no direct one (mem %d limited %d "
     "quic %d)", k.mem, k.limited, k.quic);
  RUN_UNTIL(settled(&a, &b) && settled(&b, &a), 10);
  sa = status(&a, &b);
  sb = status(&b, &a);
  ok(sb.state == NP_DCUTR_DIRECT && sa.state == NP_DCUTR_DIRECT,
     "both sides report a direct connection (B: %s %s, A: %s %s)",
     np_dcutr_state_name(sb.state), sb.why, np_dcutr_state_name(sa.state),
     sa.why);
  ok(sb.initiator == 1 && sa.initiator == 0,
     "roles: B (inbound limited) initiated, A responded");
  ok(sb.attempts == 1 && sa.attempts == 1 && sb.ms >= 0,
     "first attempt (B: %u in %lld ms, A: %u)", sb.attempts,
     (long long)sb.ms, sa.attempts);
  k = conns_to(&a, &b);
  ok(k.quic == 1 && k.quic_out == 1,
     "A holds an outbound QUIC connection to B (A is the QUIC client)");
  k = conns_to(&b, &a);
  ok(k.quic == 1 && k.quic_in == 1, "B accepted it as inbound");

  /* New streams use the direct connection. */
  memset(&o, 0, sizeof(o));
  ops = np_host_net(a.h, &net);
  ok(ops->open_stream(net, &b.id.id, protos, 1, 0, 5000, os_opened, &o,
                      NULL) == 0,
     "A opens a stream to B");
  RUN_UNTIL(o.done, 5);
  ok(o.done && o.err == 0 && o.kind == NP_TRANSPORT_QUIC && !o.limited,
     "it goes over the direct QUIC connection (%s, limited=%d)",
     np_transport_name(o.kind), o.limited);
  run_for(0.2);

  /* The relayed connection is retired after the grace period. */
  RUN_UNTIL(conns_to(&a, &b).mem == 0 && conns_to(&b, &a).mem == 0, 5);
  ok(conns_to(&a, &b).mem == 0 && conns_to(&b, &a).mem == 0 &&
         conns_to(&a, &b).quic == 1,
     "the limited connection is closed after the grace period, the direct "
     "one stays");
  ok(np_dcutr_start(dc(&b), limited_conn(&b, &a)) == NP_EINVAL,
     "np_dcutr_start without a limited connection: NP_EINVAL");
  host_down(&a);
  host_down(&b);
}

static void test_unreachable(void) {
  th c, e;
  ostream o;
  np_dcutr_status sc, se;
  double t0;
  /* C's own address is not public to C, E's is not public to E: each
   * sends only an injected observed address nobody listens on. */
  ok(host_up(&c, "dC", "treat_as_public = 127.0.0.2/32 127.0.0.3/32") == 0 &&
         host_up(&e, "dE", "treat_as_public = 127.0.0.2/32 127.0.0.3/32") == 0,
     "hosts C and E, each with only a dead observed address");
  /* Seen on a connection from another port: not what a punch opens. */
  inject_observed(&c, "/ip4/127.0.0.3/udp/7/quic-v1", 0);
  inject_observed(&c, "/ip4/127.0.0.3/udp/9/quic-v1", 1);
  inject_observed(&e, "/ip4/127.0.0.2/udp/9/quic-v1", 1);
  np_dcutr_set_timing(dc(&e), 100, 500);
  t0 = now_s();
  is_int(connect_limited(&c, &e), 0, "C dials E over a limited connection");
  {
    /* A stream opened meanwhile waits for the punch a while (the swarm's
     * 3 s grace, the mark's min(timeout, 5 s)), not for all 3 attempts.
     * (|o| is the function's: the stream ends after this block.) */
    void *net;
    const np_net_ops *ops = np_host_net(c.h, &net);
    const char *protos[1] = {"/test/echo/1.0.0"};
    double s0 = now_s();
    memset(&o, 0, sizeof(o));
    ops->open_stream(net, &e.id.id, protos, 1, 0, 10000, os_opened, &o, NULL);
    RUN_UNTIL(o.done, 10);
    ok(o.done && o.err == 0 && o.limited && now_s() - s0 < 3.5,
       "a stream opened meanwhile goes over the relayed connection after "
       "%.1f s, before the attempts are over",
       now_s() - s0);
  }
  RUN_UNTIL(settled(&e, &c), 15);
  se = status(&e, &c);
  ok(se.state == NP_DCUTR_FAILED && se.attempts == 3 && se.initiator,
     "E (initiator) gives up after 3 attempts (%s, %u, why=%s, %.1f s)",
     np_dcutr_state_name(se.state), se.attempts, se.why, now_s() - t0);
  RUN_UNTIL(settled(&c, &e), 5);
  sc = status(&c, &e);
  ok(sc.state == NP_DCUTR_FAILED && sc.attempts == 3 && !sc.initiator,
     "C (responder) dialed 3 times and failed too (%s, %u, %s)",
     np_dcutr_state_name(sc.state), sc.attempts, sc.why);
  ok(conns_to(&c, &e).mem == 1 && conns_to(&c, &e).quic == 0,
     "the limited connection is left alone, no direct one");
  host_down(&c);
  host_down(&e);
}

/* An observed address seen on a connection that did not leave from a
 * listen port (a dial that fell back to an ephemeral port) is not sent:
 * the punch from the listen port would open another mapping. */
static void test_observed_port(void) {
  th x, y;
  np_dcutr_status st;
  ok(host_up(&x, "dX", "treat_as_public = 127.0.0.5/32") == 0 &&
         host_up(&y, "dY", "treat_as_public = 127.0.0.0/8") == 0,
     "hosts X (only 127.0.0.5 public) and Y");
  inject_observed(&x, "/ip4/127.0.0.5/udp/7/quic-v1", 0);
  np_dcutr_set_timing(dc(&x), 50, 500);
  is_int(connect_limited(&y, &x), 0, "Y dials X over a limited connection");
  RUN_UNTIL(settled(&x, &y), 5);
  st = status(&x, &y);
  ok(st.state == NP_DCUTR_FAILED && strstr(st.why, "no public address") &&
         st.attempts == 1,
     "X has no address to send: %s (%u attempt)", st.why, st.attempts);
  host_down(&x);
  host_down(&y);
}

static void test_unsupported(void) {
  th f, g;
  np_dcutr_status s;
  ok(host_up(&f, "dF", "treat_as_public = 127.0.0.0/8\nhole_punch = no") ==
             0 &&
         host_up(&g, "dG", "treat_as_public = 127.0.0.0/8") == 0,
     "host F without hole punching, host G with");
  np_dcutr_set_timing(dc(&g), 50, 500);
  is_int(np_dcutr_start(dc(&f), limited_conn(&f, &g)), NP_EINVAL,
         "no connection yet: NP_EINVAL");
  is_int(connect_limited(&f, &g), 0, "F dials G over a limited connection");
  is_int(np_dcutr_start(dc(&f), limited_conn(&f, &g)), NP_ENOTSUP,
         "hole punching off: np_dcutr_start is NP_ENOTSUP");
  RUN_UNTIL(settled(&g, &f), 6);
  s = status(&g, &f);
  ok(s.state == NP_DCUTR_FAILED && s.attempts == 1 &&
         strstr(s.why, "does not support") != NULL,
     "G fails at once: %s (%u attempt)", s.why, s.attempts);
  host_down(&f);
  host_down(&g);
}

/* Over a real circuit relay v2 connection: R relays, B reserves on R, A
 * dials B's circuit address. */
static void test_relay(void) {
  th r, a, b;
  char ini[512], circ[512];
  np_relayc_resv rv[4];
  np_dcutr_status sa, sb;
  uint8_t bin[512];
  const uint8_t *bins[1] = {bin};
  size_t lens[1];
  np_ssize n;
  int w = 0, reserved = 0;
  void *net;
  const np_net_ops *ops;
  ok(host_up_x(&r, "dR", "treat_as_public = 127.0.0.0/8",
               "[relay]\nservice = on\nclient = off\n") == 0,
     "relay host R (service on)");
  snprintf(ini, sizeof(ini), "[relay]\nservice = off\nclient = on\nrelays = %s\n",
           np_daemon_addr_text(r.d, 0));
  ok(host_up_x(&b, "dRB", "treat_as_public = 127.0.0.0/8", ini) == 0 &&
         host_up_x(&a, "dRA", "treat_as_public = 127.0.0.0/8",
                   "[relay]\nservice = off\nclient = off\n") == 0,
     "B (relay client on, relays = R) and A");
  np_dcutr_set_timing(dc(&b), 100, 300);
  {
    double end = now_s() + 10;
    while (!reserved && now_s() < end) {
      size_t k = np_relayc_reservations(np_daemon_module(b.d, "relayc"), rv, 4);
      for (size_t i = 0; i < k && i < 4; i++)
        if (rv[i].state == NP_RELAYC_RESERVED)
          reserved = 1;
      if (!reserved)
        ev_run(ev, EVRUN_ONCE);
    }
  }
  ok(reserved, "B holds a reservation on R");
  snprintf(circ, sizeof(circ), "%s/p2p-circuit/p2p/%s",
           np_daemon_addr_text(r.d, 0), b.id.id_str);
  n = np_maddr_parse(circ, strlen(circ), bin, sizeof(bin));
  lens[0] = n > 0 ? (size_t)n : 0;
  ops = np_host_net(a.h, &net);
  ok(n > 0 && ops->connect(net, &b.id.id, bins, lens, 1, 5000, on_done, &w,
                           NULL) == 0,
     "A connects to B's circuit address");
  RUN_UNTIL(w != 0, 6);
  ok(w == 1 && conns_to(&a, &b).relay == 1 && conns_to(&a, &b).limited == 1,
     "the relayed connection is up, transport relay, limited (%s)",
     w == 1 ? "ok" : np_errname(w));
  RUN_UNTIL(settled(&a, &b) && settled(&b, &a), 10);
  sa = status(&a, &b);
  sb = status(&b, &a);
  ok(sb.state == NP_DCUTR_DIRECT && sb.initiator && sa.state == NP_DCUTR_DIRECT &&
         !sa.initiator,
     "DCUtR over the circuit: B initiated, A answered, both direct (%s / %s)",
     np_dcutr_state_name(sb.state), np_dcutr_state_name(sa.state));
  ok(conns_to(&a, &b).quic_out == 1 && conns_to(&b, &a).quic_in == 1,
     "A dialed B over QUIC");
  RUN_UNTIL(conns_to(&a, &b).limited == 0 && conns_to(&b, &a).limited == 0, 5);
  ok(conns_to(&a, &b).limited == 0 && conns_to(&b, &a).limited == 0,
     "the relayed connection is retired on both sides");
  host_down(&a);
  host_down(&b);
  host_down(&r);
}

/* Responder refusals: B opening on a connection where B is the dialer. */
typedef struct rs {
  int done, err, closed, cerr;
  const uint8_t *msg; /* what to send (NULL: a CONNECT with no address) */
  size_t len;
} rs;
static void rs_close(np_stream *s, int err, void *ud) {
  rs *r = ud;
  (void)s;
  r->closed = 1;
  r->cerr = err;
}
static const np_stream_cbs rs_cbs = {.struct_size = sizeof(np_stream_cbs),
                                     .on_data = os_data,
                                     .on_close = rs_close};
static void rs_opened(void *ud, int err, np_stream *s, const char *proto) {
  rs *r = ud;
  (void)proto;
  r->done = 1;
  r->err = err;
  if (err == 0) {
    static const uint8_t connect[] = {0x04, 0x08, 0x64, 0x12, 0x00};
    np_stream_set_cbs(s, &rs_cbs, r);
    if (r->msg)
      s->ops->write(s, r->msg, r->len);
    else
      s->ops->write(s, connect, sizeof(connect));
  } else {
    r->closed = 1;
  }
}

static void test_refusals(void) {
  th a, b;
  rs r;
  const np_conn *c;
  ok(host_up(&a, "dH", "treat_as_public = 127.0.0.0/8") == 0 &&
         host_up(&b, "dI", "treat_as_public = 127.0.0.0/8") == 0,
     "hosts H and I (no automatic start)");
  np_dcutr_set_timing(dc(&a), UINT64_MAX, 500);
  np_dcutr_set_timing(dc(&b), UINT64_MAX, 500);
  is_int(connect_limited(&a, &b), 0, "H dials I over a limited connection");
  run_for(0.5);
  ok(status(&b, &a).state == 0 && status(&a, &b).state == 0,
     "with the start delay off nothing starts by itself");
  /* H opened the connection: it is A; a stream from H is refused. */
  c = limited_conn(&a, &b);
  memset(&r, 0, sizeof(r));
  ok(c != NULL && np_swarm_conn_open(np_host_swarm(a.h), c, "/libp2p/dcutr",
                                     rs_opened, &r, NULL) == 0,
     "H (the dialer) opens /libp2p/dcutr itself");
  RUN_UNTIL(r.closed, 5);
  ok(r.closed && (r.err != 0 || r.cerr != 0),
     "I resets it: only the side that sees the relayed connection inbound "
     "initiates (%s)",
     np_errname(r.err ? r.err : r.cerr));
  ok(status(&b, &a).state == 0, "I started no exchange for it");

  /* I (B, the inbound side) sends H (A) what a broken or hostile peer
   * would: each stream is reset and the reason recorded. */
  {
    static const uint8_t sync_first[] = {0x03, 0x08, 0xac, 0x02};
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0x0f};
    uint8_t priv[64], msg[128];
    np_dcutrmsg m;
    np_dcutrmsg_blob bl;
    np_ssize ml;
    struct {
      const uint8_t *msg;
      size_t len;
      const char *why, *what;
    } cases[3] = {
        {sync_first, sizeof(sync_first), "unexpected message (wrong type)",
         "SYNC before CONNECT"},
        {huge, sizeof(huge), "unexpected message (NP_ELIMIT)",
         "a length prefix over 4 KiB"},
        {NULL, 0, "peer sent no public QUIC or TCP address",
         "a CONNECT with only a private address"}};
    bl.len = (size_t)np_maddr_parse("/ip4/10.0.0.1/udp/1/quic-v1", 27, priv,
                                    sizeof(priv));
    bl.data = priv;
    np_dcutrmsg_init(&m);
    m.type = NP_DCUTRMSG_CONNECT;
    m.addrs = &bl;
    m.naddrs = 1;
    ml = np_dcutrmsg_encode_lp(&m, msg, sizeof(msg));
    cases[2].msg = msg;
    cases[2].len = ml > 0 ? (size_t)ml : 0;
    for (int i = 0; i < 3; i++) {
      np_dcutr_status st;
      c = limited_conn(&b, &a);
      memset(&r, 0, sizeof(r));
      r.msg = cases[i].msg;
      r.len = cases[i].len;
      ok(c != NULL && np_swarm_conn_open(np_host_swarm(b.h), c,
                                         "/libp2p/dcutr", rs_opened, &r,
                                         NULL) == 0,
         "I opens /libp2p/dcutr and sends %s", cases[i].what);
      RUN_UNTIL(r.closed, 5);
      RUN_UNTIL(strstr(status(&a, &b).why, cases[i].why) != NULL, 2);
      st = status(&a, &b);
      ok(r.closed && r.cerr != 0 && !st.initiator &&
             strstr(st.why, cases[i].why) != NULL,
         "H resets the stream (%s) and records why: %s (%s)",
         np_errname(r.cerr), st.why, np_dcutr_state_name(st.state));
    }
    ok(status(&a, &b).state == NP_DCUTR_FAILED,
       "no usable address from the peer ends H's exchange");
  }
  host_down(&a);
  host_down(&b);
}

/* One side goes away after |turns| loop turns of the exchange. */
static void test_gone(int initiator_goes, int turns) {
  th a, b;
  const np_conn *c;
  th *stay, *go;
  np_peerid gone;
  np_dcutr_status s;
  int rv;
  ok(host_up(&a, "dJ", "treat_as_public = 127.0.0.0/8") == 0 &&
         host_up(&b, "dK", "treat_as_public = 127.0.0.0/8") == 0,
     "hosts J and K");
  np_dcutr_set_timing(dc(&a), UINT64_MAX, 200);
  np_dcutr_set_timing(dc(&b), UINT64_MAX, 200);
  connect_limited(&a, &b);
  c = limited_conn(&b, &a);
  rv = np_dcutr_start(dc(&b), c);
  for (int i = 0; i < turns; i++)
    ev_run(ev, EVRUN_NOWAIT);
  stay = initiator_goes ? &a : &b;
  go = initiator_goes ? &b : &a;
  gone = go->id.id;
  host_down(go);
  RUN_UNTIL(status_id(stay, &gone).state != NP_DCUTR_RUNNING, 8);
  s = status_id(stay, &gone);
  ok(rv == 0 && s.state != NP_DCUTR_RUNNING,
     "%s gone after %d loop turns: the %s's exchange ended (%s%s%s)",
     initiator_goes ? "initiator" : "responder", turns,
     initiator_goes ? "responder" : "initiator",
     s.state ? np_dcutr_state_name(s.state) : "never started",
     s.why[0] ? ", " : "", s.why);
  host_down(stay);
}

int main(void) {
  static const int steps[] = {0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 30};
  np_log_set_level(getenv("NP_TEST_DEBUG") ? NP_LOG_DEBUG : NP_LOG_ERROR);
  ev = ev_default_loop(0);
  if (np_loop_new(&mloop, ev) != 0 || np_tmem_net_new(&mnet, mloop) != 0)
    return 1;
  test_direct();
  test_unreachable();
  test_observed_port();
  test_unsupported();
  test_refusals();
  test_relay();
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    test_gone(1, steps[i]);
    test_gone(0, steps[i]);
  }
  run_for(0.1);
  np_tmem_net_del(mnet);
  np_loop_del(mloop);
  np_crypto_cleanup();
  return done_testing();
}
