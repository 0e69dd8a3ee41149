/* Host modules and the event bus.
 *
 * Part 1, the bus alone: masks, nesting, and subscribers that come and go
 * while an event is being dispatched.
 *
 * Part 2, a module added without touching the swarm: "tmod" below is
 * written only against what any module gets (np_module.h, the protocol
 * table, np_stream, np_net_ops, the event bus, the peerstore). Two real
 * hosts in this process, on one libev loop and QUIC over loopback, each
 * start it: it serves /test/tmod/1.0.0 and, once identify says the other
 * side serves it too, opens a stream there and checks the answer. Around
 * it: what the built-in modules report (identify, push, ping, unary
 * calls), and handlers that disconnect or unsubscribe inside a dispatch. */
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "np_call.h"
#include "np_conf.h"
#include "np_event.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_module.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_stream.h"
#include "tap.h"

/* ---- part 1: the bus
 * ---------------------------------------------------------------- */

typedef struct rec {
  np_events *e;
  int calls;
  unsigned last_type;
  np_event_sub *self, *victim;
  int unsub_self, unsub_victim, add_one, reemit;
  np_event_sub *added;
  struct rec *added_rec;
} rec;

static void on_rec(const np_event *ev, void *ud) {
  rec *r = ud;
  r->calls++;
  r->last_type = ev->type;
  if (r->unsub_self) {
    r->unsub_self = 0;
    np_events_unsubscribe(r->e, r->self);
  }
  if (r->unsub_victim) {
    r->unsub_victim = 0;
    np_events_unsubscribe(r->e, r->victim);
  }
  if (r->add_one) {
    r->add_one = 0;
    np_events_subscribe(r->e, NP_EV_ALL, on_rec, r->added_rec, &r->added);
  }
  if (r->reemit) /* forever: the depth cap ends it */
    np_events_emit(r->e, ev);
}

static void test_bus(void) {
  np_events *e;
  rec a, b, c, late;
  np_event ev;
  memset(&ev, 0, sizeof(ev));
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  memset(&c, 0, sizeof(c));
  memset(&late, 0, sizeof(late));
  ok(np_events_new(&e) == 0, "bus created");
  a.e = b.e = c.e = late.e = e;
  is_int(np_events_subscribe(e, 0, on_rec, &a, NULL), NP_EINVAL,
         "an empty mask is refused");
  is_int(np_events_subscribe(e, NP_EV_ALL, NULL, &a, NULL), NP_EINVAL,
         "a NULL handler is refused");
  np_events_subscribe(e, NP_EV_CONN_UP | NP_EV_CONN_DOWN, on_rec, &a, &a.self);
  np_events_subscribe(e, NP_EV_PEER_IDENTIFIED, on_rec, &b, &b.self);
  np_events_subscribe(e, NP_EV_ALL, on_rec, &c, &c.self);
  ev.type = NP_EV_CONN_UP;
  np_events_emit(e, &ev);
  ok(a.calls == 1 && b.calls == 0 && c.calls == 1,
     "an event reaches the subscribers whose mask has it, only them");

  /* a unsubscribes itself and b; c adds |late|. */
  a.unsub_self = 1;
  a.victim = b.self;
  a.unsub_victim = 1;
  c.add_one = 1;
  c.added_rec = &late;
  ev.type = NP_EV_PEER_IDENTIFIED | NP_EV_CONN_UP;
  np_events_emit(e, &ev);
  ok(a.calls == 2 && b.calls == 0,
     "a subscriber removed by an earlier one in the same dispatch is not "
     "called");
  ok(late.calls == 0, "one added during a dispatch does not see it");
  is_int(np_events_count(e), 2, "two subscriptions left (c and the new one)");
  ev.type = NP_EV_CONN_UP;
  np_events_emit(e, &ev);
  ok(a.calls == 2 && late.calls == 1 && c.calls == 3,
     "the next event skips the removed ones and reaches the added one");

  c.reemit = 1;
  late.calls = 0;
  np_events_emit(e, &ev);
  c.reemit = 0;
  is_int(late.calls, NP_EVENTS_DEPTH,
         "a handler emitting from inside is nested up to %d deep, no more",
         NP_EVENTS_DEPTH);
  np_events_unsubscribe(e, late.added); /* NULL: nothing */
  np_events_unsubscribe(e, c.added);
  np_events_unsubscribe(e, c.self);
  is_int(np_events_count(e), 0, "all unsubscribed");
  np_events_subscribe(e, NP_EV_ALL, on_rec, &a, NULL);
  np_events_del(e); /* with one left: freed (ASan's leak check) */
}

/* ---- part 2: tmod, a module of its own
 * ------------------------------------------------- */

#define TMOD_PROTO "/test/tmod/1.0.0"
#define TMOD_EXTRA "/test/tmod/extra"
#define TMOD_UNARY "tmod.upper"

typedef struct tmod {
  np_host *h;
  np_event_sub *sub;
  np_list streams; /* every np_stream it holds */
  np_list pending; /* unary calls in flight (np_handler.pending) */
  /* what it saw */
  int ups, downs, identified, changed, observed;
  int up_inbound, up_transport, down_last, down_err;
  size_t up_raddr_len;
  int peer_has_tmod, peer_has_id, peer_has_ping, agent_ok, changed_extra;
  uint8_t observed_addr[64];
  size_t observed_len, observed_laddr_len;
  int asked;       /* opened its stream to the other side */
  char answer[64]; /* what came back */
  int answered;
  int served; /* streams it answered */
} tmod;

typedef struct tstream {
  tmod *m;
  char buf[32];
  size_t len;
} tstream;

static int has_proto(const np_event *ev, const char *p) {
  for (size_t i = 0; i < ev->nprotocols; i++)
    if (strcmp(ev->protocols[i], p) == 0)
      return 1;
  return 0;
}

/* Server side: read up to FIN, answer "ok:" + the bytes upper-cased. */
static void srv_open(np_stream *s, void *ud) {
  tstream *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    s->ops->reset(s);
    return;
  }
  t->m = ud;
  s->ud = t;
}
static void srv_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  tstream *t = ud;
  char out[40] = "ok:";
  if (t == NULL)
    return;
  if (len) {
    if (t->len + len > sizeof(t->buf)) { /* bounded like any input */
      s->ops->reset(s);
      return;
    }
    memcpy(t->buf + t->len, d, len);
    t->len += len;
    return;
  }
  for (size_t i = 0; i < t->len; i++)
    out[3 + i] = (char)(t->buf[i] >= 'a' && t->buf[i] <= 'z' ? t->buf[i] - 32
                                                             : t->buf[i]);
  t->m->served++;
  s->ops->send(s, (const uint8_t *)out, 3 + t->len, 1, sizeof(out));
}
static void srv_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err;
  free(ud);
}
static const np_stream_cbs srv_cbs = {.struct_size = sizeof(np_stream_cbs),
                                      .on_open = srv_open,
                                      .on_data = srv_data,
                                      .on_close = srv_close};

/* Client side: whatever comes back until FIN. */
static void cli_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  tmod *m = ud;
  size_t have = strlen(m->answer);
  (void)s;
  if (len == 0) {
    m->answered = 1;
    return;
  }
  if (have + len < sizeof(m->answer))
    memcpy(m->answer + have, d, len);
}
static void cli_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err, (void)ud;
}
static const np_stream_cbs cli_cbs = {.struct_size = sizeof(np_stream_cbs),
                                      .on_data = cli_data,
                                      .on_close = cli_close};

static void cli_opened(void *ud, int err, np_stream *s, const char *proto) {
  tmod *m = ud;
  (void)proto;
  if (err != 0)
    return;
  np_stream_set_cbs(s, &cli_cbs, m);
  np_list_insert_tail(&m->streams, &s->owner_link);
  s->ops->send(s, (const uint8_t *)"hello", 5, 1, 64);
}

static void on_upper(np_call *c, const uint8_t *req, size_t len, void *ud) {
  char out[64];
  (void)ud;
  if (len > sizeof(out))
    len = sizeof(out);
  for (size_t i = 0; i < len; i++)
    out[i] = (char)(req[i] >= 'a' && req[i] <= 'z' ? req[i] - 32 : req[i]);
  np_call_reply(c, (const uint8_t *)out, len);
}

static void tmod_event(const np_event *ev, void *ud) {
  tmod *m = ud;
  switch (ev->type) {
  case NP_EV_CONN_UP:
    m->ups++;
    m->up_inbound = ev->inbound;
    m->up_transport = ev->transport;
    m->up_raddr_len = ev->raddr_len;
    break;
  case NP_EV_CONN_DOWN:
    m->downs++;
    m->down_last = ev->last;
    m->down_err = ev->err;
    break;
  case NP_EV_PEER_IDENTIFIED:
    m->identified++;
    m->peer_has_tmod = has_proto(ev, TMOD_PROTO);
    m->peer_has_id = has_proto(ev, "/ipfs/id/1.0.0");
    m->peer_has_ping = has_proto(ev, "/ipfs/ping/1.0.0");
    m->agent_ok = strncmp(ev->agent, "natpeer/", 8) == 0;
    /* The other side serves our protocol: talk to it, once. */
    if (m->peer_has_tmod && !m->asked) {
      void *net;
      const np_net_ops *ops = np_host_net(m->h, &net);
      const char *p[] = {TMOD_PROTO};
      m->asked = 1;
      ops->open_stream(net, ev->peer, p, 1, NP_NET_LAZY, 5000, cli_opened, m,
                       NULL);
    }
    break;
  case NP_EV_PROTOCOLS_CHANGED:
    m->changed++;
    m->changed_extra = has_proto(ev, TMOD_EXTRA);
    break;
  case NP_EV_OBSERVED_ADDR:
    m->observed++;
    m->observed_len =
        ev->observed_len < sizeof(m->observed_addr) ? ev->observed_len : 0;
    memcpy(m->observed_addr, ev->observed, m->observed_len);
    m->observed_laddr_len = ev->laddr_len;
    break;
  default:
    break;
  }
}

static int tmod_reg(tmod *m, const char *proto, int kind) {
  np_handler h;
  memset(&h, 0, sizeof(h));
  h.proto = (char *)proto;
  h.kind = kind;
  h.owner_kind = NP_OWNER_HOST;
  h.owner = m;
  h.owner_name = "tmod";
  h.stream = srv_cbs;
  h.unary = on_upper;
  h.ud = m;
  h.streams = &m->streams;
  h.pending = &m->pending;
  return np_proto_add(np_host_protos(m->h), &h, NULL);
}

static int tmod_start(np_host *h, void **state) {
  tmod *m = calloc(1, sizeof(*m));
  int rv;
  if (m == NULL)
    return NP_ENOMEM;
  m->h = h;
  np_list_init(&m->streams);
  np_list_init(&m->pending);
  if ((rv = tmod_reg(m, TMOD_PROTO, NP_HANDLER_STREAM)) != 0 ||
      (rv = tmod_reg(m, TMOD_UNARY, NP_HANDLER_UNARY)) != 0 ||
      (rv = np_events_subscribe(np_host_events(h), NP_EV_ALL, tmod_event, m,
                                &m->sub)) != 0) {
    np_proto_remove_owner(np_host_protos(h), m);
    free(m);
    return rv;
  }
  *state = m;
  return 0;
}

static void tmod_stop(void *state) {
  tmod *m = state;
  np_events_unsubscribe(np_host_events(m->h), m->sub);
  np_proto_remove_owner(np_host_protos(m->h), m);
  while (!np_list_empty(&m->pending))
    np_call_owner_gone(np_list_entry(m->pending.next, np_call, owner_link));
  while (!np_list_empty(&m->streams))
    np_stream_abandon(np_list_entry(m->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  free(m);
}

static const np_module tmod_module = {"tmod", tmod_start, tmod_stop};

/* ---- two hosts
 * ---------------------------------------------------------------------- */

static struct ev_loop *loop;

/* Hosts are run as daemons (np_daemon); the tests hold the registry
 * (np_host) and find the daemon again to delete it. */
static np_daemon *daemons[8];

static np_host *daemon_up(np_daemon *d) {
  for (size_t i = 0; i < sizeof(daemons) / sizeof(daemons[0]); i++)
    if (daemons[i] == NULL) {
      daemons[i] = d;
      return np_daemon_host(d);
    }
  np_daemon_del(d);
  return NULL;
}

static void host_del(np_host *h) {
  for (size_t i = 0; h && i < sizeof(daemons) / sizeof(daemons[0]); i++)
    if (daemons[i] && np_daemon_host(daemons[i]) == h) {
      np_daemon_del(daemons[i]);
      daemons[i] = NULL;
      return;
    }
}

static np_host *host_new(np_identity *id) {
  static const char ini[] = "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
                            "log_level = error\n[plugins]\nautoload = no\n";
  np_conf *c;
  np_daemon *d;
  char err[256];
  if (np_conf_load_string(&c, "tmod.ini", ini, sizeof(ini) - 1, err,
                          sizeof(err)) != 0 ||
      np_identity_generate(id) != 0 || np_daemon_new(&d, loop, c, id) != 0)
    return NULL;
  if (np_daemon_start(d, NP_DAEMON_NET) != 0) {
    np_daemon_del(d);
    return NULL;
  }
  return daemon_up(d);
}

static void tick(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev, (void)w, (void)revents;
}

/* Run the loop until |*flag| (bounded: 10 s). */
static int run_until(const int *flag) {
  ev_tstamp end = ev_time() + 10;
  while (!*flag && ev_time() < end)
    ev_run(loop, EVRUN_ONCE);
  return *flag;
}

typedef struct waitv {
  int done, err;
  int64_t rtt;
  uint8_t resp[64];
  size_t len;
} waitv;

static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->err = err;
  w->done = 1;
}
static void on_ping(void *ud, int err, int64_t rtt) {
  waitv *w = ud;
  w->err = err;
  w->rtt = rtt;
  w->done = 1;
}
static void on_call(void *ud, int err, const uint8_t *d, size_t len) {
  waitv *w = ud;
  w->err = err;
  w->len = len < sizeof(w->resp) ? len : 0;
  if (w->len)
    memcpy(w->resp, d, w->len);
  w->done = 1;
}

static int connect_b(np_host *a, np_host *b, const np_peerid *bid) {
  void *na, *nb;
  const np_net_ops *oa = np_host_net(a, &na), *ob = np_host_net(b, &nb);
  const uint8_t *bins[4];
  size_t lens[4], n = ob->addrs(nb, bins, lens, 4);
  waitv w = {0};
  if (n > 4)
    n = 4;
  if (oa->connect_identified(na, bid, bins, lens, n, 5000, on_done, &w, NULL) !=
      0)
    return -1;
  run_until(&w.done);
  return w.done ? w.err : NP_ETIMEDOUT;
}

/* Inside B's dispatch of A's identify: disconnect A and unsubscribe. */
typedef struct hostile {
  np_host *h;
  np_event_sub *self;
  int fired;
} hostile;

static void hostile_event(const np_event *ev, void *ud) {
  hostile *x = ud;
  void *net;
  const np_net_ops *ops = np_host_net(x->h, &net);
  x->fired++;
  ops->disconnect(net, ev->peer);
  np_events_unsubscribe(np_host_events(x->h), x->self);
}

static void test_hosts(void) {
  np_identity ida, idb;
  np_host *a = host_new(&ida), *b = host_new(&idb);
  void *sa = NULL, *sb = NULL;
  tmod *ma, *mb;
  ev_timer t;
  ok(a && b, "two hosts on one loop, QUIC on loopback");
  if (!a || !b)
    return;
  ev_timer_init(&t, tick, 0.01, 0.01); /* bounded waits need wake-ups */
  ev_timer_start(loop, &t);
  ok(tmod_module.start(a, &sa) == 0 && tmod_module.start(b, &sb) == 0,
     "the test module starts on both, beside the built-in ones");
  ma = sa;
  mb = sb;
  is_int(connect_b(a, b, &idb.id), 0,
         "A connects to B (complete once identify is read)");
  ok(ma->ups == 1 && !ma->up_inbound && ma->up_transport == NP_TRANSPORT_QUIC &&
         ma->up_raddr_len > 0,
     "A: conn-up, outbound, QUIC, with B's address");
  run_until(&mb->identified);
  ok(mb->ups == 1 && mb->up_inbound, "B: conn-up, inbound");
  ok(ma->identified >= 1 && ma->peer_has_id && ma->peer_has_ping &&
         ma->agent_ok,
     "A: B identified, agent natpeer/, id and ping among its protocols");
  ok(ma->peer_has_tmod && mb->peer_has_tmod,
     "identify lists the test module's protocol on both sides");
  {
    np_ps_peer *p = np_peerstore_get(np_host_peerstore(a), &idb.id);
    ok(p && np_peerstore_supports(p, TMOD_PROTO) && p->connected == 1,
       "A's peerstore (the host's) has B, connected, with its protocols");
  }
  ok(ma->observed >= 1 && ma->observed_laddr_len > 0, "A: observed address");
  {
    char t2[128] = "";
    np_maddr_to_string(ma->observed_addr, ma->observed_len, t2, sizeof(t2));
    ok(strncmp(t2, "/ip4/127.0.0.1/udp/", 19) == 0,
       "the observed address is A's loopback QUIC address (%s)", t2);
  }
  run_until(&ma->answered);
  is_str(ma->answer, "ok:HELLO",
         "A's module opened a stream to B's module and read its answer");
  ok(mb->served >= 1, "B's module served it");

  /* A protocol added on B reaches A through identify/push. */
  ok(tmod_reg(mb, TMOD_EXTRA, NP_HANDLER_STREAM) == 0,
     "B's module registers one more protocol");
  run_until(&ma->changed);
  ok(ma->changed >= 1 && ma->changed_extra,
     "A: protocols-changed for B, with the new one");

  {
    waitv w = {0};
    void *net;
    const np_net_ops *ops = np_host_net(a, &net);
    ok(ops->ping(net, &idb.id, 5000, on_ping, &w, NULL) == 0 &&
           run_until(&w.done) && w.err == 0 && w.rtt >= 0,
       "ping A -> B (rtt %lld us)", (long long)w.rtt);
  }
  {
    waitv w = {0};
    ok(np_host_call(a, idb.id_str, TMOD_UNARY, (const uint8_t *)"abc", 3,
                    on_call, &w, NULL) == 0 &&
           run_until(&w.done) && w.err == 0 && w.len == 3 &&
           memcmp(w.resp, "ABC", 3) == 0,
       "unary call A -> B to the module's unary handler");
  }

  /* A handler that drops the connection and itself inside a dispatch. */
  {
    void *net;
    const np_net_ops *ops = np_host_net(a, &net);
    hostile x = {b, NULL, 0};
    int downs_a = ma->downs, downs_b = mb->downs, rv;
    size_t subs = np_events_count(np_host_events(b));
    ops->disconnect(net, &idb.id);
    run_until(&mb->downs);
    ok(ma->downs == downs_a + 1 && mb->downs == downs_b + 1 && ma->down_last &&
           mb->down_last,
       "disconnect: conn-down on both, the peer's last connection");
    np_events_subscribe(np_host_events(b), NP_EV_PEER_IDENTIFIED, hostile_event,
                        &x, &x.self);
    mb->downs = 0;
    rv = connect_b(a, b, &idb.id);
    run_until(&mb->downs);
    ok(x.fired == 1 && mb->downs == 1,
       "B's handler disconnects A inside the identify dispatch and "
       "unsubscribes: conn-down follows (connect: %s)",
       np_errname(rv));
    is_int(np_events_count(np_host_events(b)), subs,
           "the handler's subscription is gone, the others stay");
    is_int(connect_b(a, b, &idb.id), 0, "A connects again");
  }

  tmod_module.stop(sa);
  tmod_module.stop(sb);
  ev_timer_stop(loop, &t);
  host_del(a);
  host_del(b);
  np_identity_clear(&ida);
  np_identity_clear(&idb);
}

int main(void) {
  np_log_set_level(NP_LOG_ERROR);
  test_bus();
  loop = ev_loop_new(EVFLAG_AUTO);
  test_hosts();
  ev_loop_destroy(loop);
  return done_testing();
}
