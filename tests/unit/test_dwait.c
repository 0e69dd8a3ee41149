/* A stream to a peer reached only over a relayed (limited) connection
 * waits for the hole-punched direct one (issue 10; np_swarm.h,
 * np_swarm_conn_punching). Two hosts on loopback QUIC, plus a limited
 * link between them: an in-memory transport added with
 * np_swarm_add_transport whose connections are marked limited, standing in
 * for a circuit. Both serve /libp2p/dcutr (a do-nothing handler here).
 *  1. A opens "app" to B over the limited link: the stream waits; a direct
 *     QUIC connection comes up (np_swarm_dial_new) and the stream goes
 *     over it.
 *  2. B does not serve /libp2p/dcutr: no wait, the stream goes relayed.
 *  3. A punch is marked: the stream waits past the 3 s grace, and goes
 *     relayed as soon as the mark is cleared without a direct connection.
 *  4. The limited connection closes under a waiting stream: it fails.
 *  5. A stream opened on the connection itself (np_swarm_conn_open) never
 *     waits. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_conf.h"
#include "np_daemon.h"
#include "np_event.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "np_tmem.h"
#include "tap.h"

#define DCUTR "/libp2p/dcutr"

static struct ev_loop *ev;
static np_loop *mloop;
static np_tmem_net *mnet;
static np_daemon *D[2];
static np_host *Hh[2];
static np_identity Id[2];
static np_transport *Tm[2];
static int owner_tag[2];

static void run_until(const int *flag, double secs) {
  double end;
  ev_now_update(ev);
  end = ev_now(ev) + secs;
  while (!*flag && ev_now(ev) < end) {
    ev_run(ev, EVRUN_ONCE);
    ev_now_update(ev);
  }
}
static void spin(double secs) {
  int never = 0;
  run_until(&never, secs);
}

/* Handlers: "app" answers nothing (the test only looks at the path);
 * /libp2p/dcutr does nothing. Both just hold the stream. */
static void h_data(np_stream *s, const uint8_t *d, size_t n, void *ud) {
  (void)s, (void)d, (void)n, (void)ud;
}
static void h_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err, (void)ud;
}
static const np_stream_cbs hcbs = {
    .struct_size = sizeof(np_stream_cbs), .on_data = h_data,
    .on_close = h_close};
static np_list hstreams[2];

static int reg(int i, const char *proto) {
  np_handler h;
  memset(&h, 0, sizeof(h));
  h.proto = (char *)proto;
  h.kind = NP_HANDLER_STREAM;
  h.owner_kind = NP_OWNER_HOST;
  h.owner = &owner_tag[i];
  h.owner_name = "test";
  h.stream = hcbs;
  h.streams = &hstreams[i];
  h.max_streams = NP_PROTO_UNLIMITED;
  return np_proto_add(np_host_protos(Hh[i]), &h, NULL);
}

static int up(int i) {
  static const char ini[] =
      "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
      "log_level = error\n[dht]\nmode = off\n[plugins]\nautoload = no\n"
      /* the test's own /libp2p/dcutr stand-in, not the module's */
      "[nat]\nhole_punch = no\n";
  np_conf *c;
  char err[256], name[32];
  np_tmem_config mc;
  void *ud;
  const np_conn_cbs *cbs;
  uint8_t bin[64];
  np_ssize n;
  np_list_init(&hstreams[i]);
  if (np_conf_load_string(&c, "t.ini", ini, sizeof(ini) - 1, err,
                          sizeof(err)) != 0 ||
      np_identity_generate(&Id[i]) != 0 ||
      np_daemon_new(&D[i], ev, c, &Id[i]) != 0)
    return -1;
  Hh[i] = np_daemon_host(D[i]);
  if (np_daemon_start(D[i], NP_DAEMON_NET) != 0)
    return -1;
  np_tmem_config_default(&mc);
  mc.limited = 1;
  cbs = np_swarm_conn_cbs(np_host_swarm(Hh[i]), &ud);
  if (np_tmem_new(&Tm[i], mnet, &Id[i], &mc, cbs, ud) != 0 ||
      np_swarm_add_transport(np_host_swarm(Hh[i]), Tm[i]) != 0)
    return -1;
  snprintf(name, sizeof(name), "/memory/lim%d", i);
  n = np_maddr_parse(name, strlen(name), bin, sizeof(bin));
  return n > 0 ? Tm[i]->ops->listen(Tm[i], bin, (size_t)n) : -1;
}

static void on_done(void *ud, int err) {
  int *r = ud;
  *r = err == 0 ? 1 : err;
}

/* A connects to B over the limited link. */
static int link_limited(void) {
  uint8_t bin[128];
  const uint8_t *bins[1] = {bin};
  size_t lens[1];
  char t[200];
  void *net, *hd;
  int r = 0;
  const np_net_ops *ops = np_host_net(Hh[0], &net);
  snprintf(t, sizeof(t), "/memory/lim1/p2p/%s", Id[1].id_str);
  lens[0] = (size_t)np_maddr_parse(t, strlen(t), bin, sizeof(bin));
  if (ops->connect_identified(net, &Id[1].id, bins, lens, 1, 5000, on_done,
                              &r, &hd) != 0)
    return -1;
  run_until(&r, 5);
  return r == 1 ? 0 : -1;
}

/* A dials B directly over QUIC (a new connection beside the limited one),
 * as a successful punch would. */
static int dial_direct(void) {
  void *bnet, *hd;
  const np_net_ops *bops = np_host_net(Hh[1], &bnet);
  const uint8_t *bb[4];
  size_t bl[4];
  int r = 0;
  if (bops->addrs(bnet, bb, bl, 4) < 1 ||
      np_swarm_dial_new(np_host_swarm(Hh[0]), &Id[1].id, bb, bl, 1, 0, 5000,
                        on_done, &r, &hd) != 0)
    return -1;
  run_until(&r, 5);
  return r == 1 ? 0 : -1;
}

typedef struct opened {
  int done, err;
  int limited, kind;
  np_stream *s;
} opened;

static void o_close(np_stream *s, int err, void *ud) {
  opened *o = ud;
  (void)err;
  if (o->s == s)
    o->s = NULL;
}
static const np_stream_cbs ocbs = {.struct_size = sizeof(np_stream_cbs),
                                   .on_data = h_data,
                                   .on_close = o_close};

static void on_open(void *ud, int err, np_stream *s, const char *proto) {
  opened *o = ud;
  (void)proto;
  o->done = 1;
  o->err = err;
  if (err == 0) {
    const np_conn *c = np_swarm_stream_conn(s);
    o->limited = c ? c->limited : -1;
    o->kind = c ? c->kind : -1;
    o->s = s;
    np_stream_set_cbs(s, &ocbs, o);
  }
}

static int open_app(opened *o) {
  void *net, *hd;
  const np_net_ops *ops = np_host_net(Hh[0], &net);
  const char *protos[1] = {"app"};
  memset(o, 0, sizeof(*o));
  return ops->open_stream(net, &Id[1].id, protos, 1, 0, 20000, on_open, o,
                          &hd);
}

static const np_conn *limited_conn;
static int find_limited(const np_conn *c, void *ud) {
  (void)ud;
  if (c->limited && np_peerid_equal(&c->peer, &Id[1].id)) {
    limited_conn = c;
    return 1;
  }
  return 0;
}

static void drop_all(void) {
  void *net;
  const np_net_ops *ops = np_host_net(Hh[0], &net);
  ops->disconnect(net, &Id[1].id);
  spin(0.3);
}

int main(void) {
  opened o;
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  if (np_loop_new(&mloop, ev) != 0 || np_tmem_net_new(&mnet, mloop) != 0)
    return 1;
  ok(up(0) == 0 && up(1) == 0,
     "two hosts: loopback QUIC, and a limited in-memory link added to the swarm");
  ok(reg(0, DCUTR) == 0 && reg(1, DCUTR) == 0 && reg(1, "app") == 0,
     "both serve /libp2p/dcutr, B serves app");

  /* 1 */
  ok(link_limited() == 0, "1: A reaches B over the limited link");
  is_int(open_app(&o), 0, "1: A opens app to B");
  spin(0.5);
  ok(!o.done, "1: the stream waits for a direct connection");
  ok(dial_direct() == 0, "1: a direct QUIC connection comes up");
  run_until(&o.done, 2);
  ok(o.done && o.err == 0 && o.limited == 0 && o.kind == NP_TRANSPORT_QUIC,
     "1: the stream went over the direct QUIC connection (err %d limited %d)",
     o.err, o.limited);
  is_int(open_app(&o), 0, "1: a second stream");
  run_until(&o.done, 2);
  ok(o.done && o.limited == 0, "1: goes direct at once");
  drop_all();

  /* 2 */
  np_proto_remove(np_host_protos(Hh[1]), DCUTR, &owner_tag[1]);
  ok(link_limited() == 0, "2: B without DCUtR: A reaches B over the limited link");
  is_int(open_app(&o), 0, "2: A opens app");
  run_until(&o.done, 1.5);
  ok(o.done && o.err == 0 && o.limited == 1,
     "2: no punch to wait for: over the relayed connection at once");
  drop_all();
  reg(1, DCUTR);

  /* 3 */
  ok(link_limited() == 0, "3: A reaches B over the limited link");
  limited_conn = NULL;
  np_swarm_foreach_conn(np_host_swarm(Hh[0]), find_limited, NULL);
  ok(limited_conn != NULL, "3: found the limited connection");
  np_swarm_conn_punching(np_host_swarm(Hh[0]), limited_conn, 1);
  is_int(open_app(&o), 0, "3: A opens app while a punch is marked");
  spin(3.6);
  ok(!o.done, "3: still waiting past the 3 s grace while the punch runs");
  np_swarm_conn_punching(np_host_swarm(Hh[0]), limited_conn, 0);
  run_until(&o.done, 1);
  ok(o.done && o.err == 0 && o.limited == 1,
     "3: the punch ended without a direct connection: relayed at once");

  /* 4 */
  is_int(open_app(&o), 0, "4: another stream (the relayed one is young? no: "
                          "it goes at once past the grace)");
  run_until(&o.done, 1);
  ok(o.done && o.limited == 1, "4: past the grace with no punch: relayed");
  drop_all();
  ok(link_limited() == 0, "4: a fresh limited connection");
  is_int(open_app(&o), 0, "4: A opens app");
  spin(0.3);
  ok(!o.done, "4: waiting");
  drop_all();
  run_until(&o.done, 2);
  ok(o.done && o.err != 0, "4: the limited connection closed: the open fails (%s)",
     np_errname(o.err));

  /* 5 */
  ok(link_limited() == 0, "5: limited again");
  limited_conn = NULL;
  np_swarm_foreach_conn(np_host_swarm(Hh[0]), find_limited, NULL);
  {
    void *hd;
    memset(&o, 0, sizeof(o));
    ok(limited_conn &&
           np_swarm_conn_open(np_host_swarm(Hh[0]), limited_conn, "app",
                              on_open, &o, &hd) == 0,
       "5: open on the connection itself");
    run_until(&o.done, 1);
    ok(o.done && o.err == 0 && o.limited == 1, "5: no wait");
  }

  np_daemon_del(D[0]);
  np_daemon_del(D[1]);
  np_tmem_net_del(mnet);
  np_loop_del(mloop);
  np_identity_clear(&Id[0]);
  np_identity_clear(&Id[1]);
  return done_testing();
}
