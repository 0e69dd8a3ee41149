/* Peer routing through the DHT (np_host_set_router, installed by np_daemon
 * over np_kad_find_peer): 20 hosts over /memory/ in one DHT; a newcomer
 * that knows only host 0 calls a unary handler on, opens a stream to and
 * connects to hosts whose addresses it never had, and each succeeds after
 * one lookup shared by every waiter of the dial. A lookup that finds
 * nothing fails the dial with NP_EUNREACH in bounded time; canceling the
 * last waiter, or its timeout, withdraws the lookup; lookups at once are
 * bounded; stopping a host (or only its swarm) mid-lookup ends everything
 * once, without touching freed memory (run under ASan too). Every wait is
 * bounded by a deadline. */
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_daemon.h"
#include "np_err.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_kad.h"
#include "np_kadmsg.h"
#include "np_list.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_stream.h"
#include "tap.h"

#define NDHT 20 /* hosts in the DHT, bootstrapped from host 0 */
#define NALL 30 /* plus newcomers that know only host 0 */
#define CALL_PROTO "/test/route/call"
#define ECHO_PROTO "/test/route/echo"

static struct ev_loop *ev;

typedef struct rhost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  char addr[64];
  char peer[NP_PEERID_STRMAX];
  np_list pending, streams;
} rhost;

static rhost H[NALL];

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

static void on_call_in(np_call *c, const uint8_t *req, size_t len, void *ud) {
  char out[64];
  (void)req, (void)len;
  snprintf(out, sizeof(out), "routed to %d", (int)(intptr_t)ud);
  np_call_reply(c, (const uint8_t *)out, strlen(out));
}

static void echo_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  (void)ud;
  if (len)
    s->ops->write(s, d, len);
  else
    s->ops->close(s);
}

static int client_mode; /* the next host_up is a DHT client */

static int host_up(int i) {
  static const char server_ini[] =
      "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
      "log_level = error\n[dht]\nmode = server\n"
      "[plugins]\nautoload = no\n";
  static const char client_ini[] =
      "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
      "log_level = error\n[dht]\nmode = client\n"
      "[plugins]\nautoload = no\n";
  const char *ini = client_mode ? client_ini : server_ini;
  np_conf *c;
  char err[256];
  np_handler hd;
  int rv;
  if (np_conf_load_string(&c, "mem.ini", ini, strlen(ini), err,
                          sizeof(err)) != 0)
    return -1;
  snprintf(H[i].addr, sizeof(H[i].addr), "/memory/route%d", i);
  free(c->host.listen.v[0]);
  c->host.listen.v[0] = strdup(H[i].addr);
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  np_peerid_to_string(&H[i].id.id, H[i].peer, sizeof(H[i].peer));
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  if (np_daemon_module(H[i].d, "kad") == NULL || np_host_router(H[i].h) == NULL)
    return -2; /* the daemon installs the DHT as the router */
  np_list_init(&H[i].pending);
  np_list_init(&H[i].streams);
  memset(&hd, 0, sizeof(hd));
  hd.proto = CALL_PROTO;
  hd.proto_len = strlen(hd.proto);
  hd.kind = NP_HANDLER_UNARY;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = &H[i];
  hd.owner_name = "test";
  hd.unary = on_call_in;
  hd.ud = (void *)(intptr_t)i;
  hd.pending = &H[i].pending;
  if ((rv = np_proto_add(np_host_protos(H[i].h), &hd, NULL)) != 0)
    return rv;
  memset(&hd, 0, sizeof(hd));
  hd.proto = ECHO_PROTO;
  hd.proto_len = strlen(hd.proto);
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = &H[i];
  hd.owner_name = "test";
  hd.stream.struct_size = sizeof(hd.stream);
  hd.stream.on_data = echo_data;
  hd.streams = &H[i].streams;
  return np_proto_add(np_host_protos(H[i].h), &hd, NULL);
}

static void host_down(int i) {
  np_daemon_del(H[i].d);
  H[i].d = NULL;
  H[i].h = NULL;
}

static size_t p2p_addr(int i, uint8_t *out, size_t cap) {
  char t[256];
  np_ssize n;
  snprintf(t, sizeof(t), "%s/p2p/%s", H[i].addr, H[i].peer);
  n = np_maddr_parse(t, strlen(t), out, cap);
  return n < 0 ? 0 : (size_t)n;
}

typedef struct waitv {
  int done, err, calls;
  np_stream *s;
  char resp[64];
} waitv;

static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
}
static void on_stream(void *ud, int err, np_stream *s, const char *proto) {
  waitv *w = ud;
  (void)proto;
  w->done = 1, w->err = err, w->calls++, w->s = s;
}
static void on_reply(void *ud, int err, const uint8_t *data, size_t len) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
  if (len >= sizeof(w->resp))
    len = sizeof(w->resp) - 1;
  memcpy(w->resp, data, len);
  w->resp[len] = 0;
}

/* A newcomer |i| that knows host 0 only: connected to it (its DHT table
 * then holds host 0, from identify), nothing else. */
static int newcomer_up(int i) {
  uint8_t a[256];
  const uint8_t *ap = a;
  size_t al = p2p_addr(0, a, sizeof(a));
  void *net;
  const np_net_ops *ops;
  waitv w;
  int rv;
  if ((rv = host_up(i)) != 0)
    return rv;
  ops = np_host_net(H[i].h, &net);
  memset(&w, 0, sizeof(w));
  if ((rv = ops->connect_identified(net, &H[0].id.id, &ap, &al, 1, 5000,
                                    on_done, &w, NULL)) != 0)
    return rv;
  run_until(&w.done, 6);
  if (!w.done || w.err)
    return w.done ? w.err : -1000;
  /* The table learns host 0 from its identify. */
  for (int t = 0;
       t < 100 &&
       np_kbucket_size(np_kad_table(np_daemon_module(H[i].d, "kad"))) == 0;
       t++)
    run_for(0.02);
  return 0;
}

/* |from| holds no unexpired address of |to| and no connection to it. */
static int knows_nothing_of(int from, const np_peerid *to) {
  np_ps_peer *p = np_peerstore_get(np_host_peerstore(H[from].h), to);
  if (p == NULL)
    return 1;
  np_peerstore_expire(p, np_now(np_host_loop(H[from].h)));
  return p->naddrs == 0 && p->connected == 0;
}

static int connected(int from, const np_peerid *to) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  np_conn_info ci[64];
  size_t n = ops->conns(net, ci, 64), i;
  for (i = 0; i < n && i < 64; i++)
    if (np_peerid_equal(&ci[i].peer, to))
      return 1;
  return 0;
}

/* A router wrapped around the installed one, counting what the swarm
 * asks; |hold| keeps lookups pending until canceled (never answers). */
typedef struct counter {
  np_router inner;
  unsigned finds, cancels, answers;
  int hold;
  void *held; /* the held lookup's handle (the swarm's ud) */
} counter;

typedef struct fwd {
  counter *ct;
  np_route_fn cb;
  void *ud;
  void *inner;
} fwd;

static void fwd_done(void *ud, int err, const np_peerid *peer) {
  fwd *f = ud;
  np_route_fn cb = f->cb;
  void *cud = f->ud;
  f->ct->answers++;
  free(f);
  cb(cud, err, peer);
}

static int ct_find(void *rud, const np_peerid *peer, np_route_fn cb, void *ud,
                   void **handle) {
  counter *ct = rud;
  fwd *f;
  int rv;
  ct->finds++;
  if ((f = calloc(1, sizeof(*f))) == NULL)
    return NP_ENOMEM;
  f->ct = ct, f->cb = cb, f->ud = ud;
  if (ct->hold) {
    ct->held = f;
    *handle = f;
    return 0;
  }
  rv = ct->inner.find_peer(ct->inner.rud, peer, fwd_done, f, &f->inner);
  if (rv != 0) {
    free(f);
    return rv;
  }
  *handle = f;
  return 0;
}

static void ct_cancel(void *rud, void *handle) {
  counter *ct = rud;
  fwd *f = handle;
  ct->cancels++;
  if (f->inner)
    ct->inner.cancel(ct->inner.rud, f->inner);
  if (ct->held == f)
    ct->held = NULL;
  free(f);
}

static void wrap(int i, counter *ct, int hold) {
  np_router r;
  memset(ct, 0, sizeof(*ct));
  ct->inner = *np_host_router(H[i].h);
  ct->hold = hold;
  r = ct->inner;
  r.find_peer = ct_find;
  r.cancel = ct_cancel;
  r.rud = ct;
  np_host_set_router(H[i].h, &r);
}

static void unwrap(int i, counter *ct) {
  np_host_set_router(H[i].h, &ct->inner);
}

int main(void) {
  int ok_all = 1, next = NDHT;
  np_identity ghost; /* a peer that never ran */
  ev = ev_default_loop(0);
  np_log_set_level(NP_LOG_ERROR);

  for (int i = 0; i < NDHT; i++)
    ok_all &= host_up(i) == 0;
  ok(ok_all, "%d hosts up, each with the DHT installed as its router", NDHT);
  if (!ok_all)
    return done_testing();
  {
    uint8_t a[256];
    const uint8_t *ap = a;
    size_t al = p2p_addr(0, a, sizeof(a));
    for (int i = 1; i < NDHT; i++) {
      np_kad_lookup *lk;
      waitv w;
      memset(&w, 0, sizeof(w));
      if (np_kad_bootstrap(np_daemon_module(H[i].d, "kad"), &ap, &al, 1,
                           on_done, &w, &lk) != 0) {
        ok_all = 0;
        continue;
      }
      run_until(&w.done, 35);
      ok_all &= w.done && w.err == 0;
    }
  }
  ok(ok_all, "%d hosts bootstrap from host 0", NDHT - 1);
  ok(np_identity_generate(&ghost) == 0, "an identity no host runs");

  /* A unary call to a host whose address the caller never had. */
  {
    int a = next++, z = NDHT - 1;
    waitv w;
    int rv;
    ok(newcomer_up(a) == 0, "newcomer %d up, knowing host 0 only", a);
    ok(knows_nothing_of(a, &H[z].id.id),
       "before: no address of host %d in the newcomer's peerstore", z);
    memset(&w, 0, sizeof(w));
    rv = np_host_call(H[a].h, H[z].peer, CALL_PROTO, (const uint8_t *)"x", 1,
                      on_reply, &w, NULL);
    ok(rv == 0 && w.calls == 0, "the call starts (%s)", np_errname(rv));
    run_until(&w.done, 20);
    ok(w.done && w.err == 0 && strcmp(w.resp, "routed to 19") == 0,
       "the call is answered after a lookup (%s, \"%s\")", np_errname(w.err),
       w.resp);
    ok(connected(a, &H[z].id.id), "the newcomer is connected to host %d", z);
  }

  /* A stream open, several waiters on one dial: one lookup for all. */
  {
    int a = next++, z = NDHT - 2;
    void *net;
    const np_net_ops *ops;
    const char *protos[1] = {ECHO_PROTO};
    waitv w1, w2, w3;
    counter ct;
    ok(newcomer_up(a) == 0, "newcomer %d up", a);
    ok(knows_nothing_of(a, &H[z].id.id),
       "before: no address of host %d in the newcomer's peerstore", z);
    wrap(a, &ct, 0);
    ops = np_host_net(H[a].h, &net);
    memset(&w1, 0, sizeof(w1));
    memset(&w2, 0, sizeof(w2));
    memset(&w3, 0, sizeof(w3));
    ok(ops->open_stream(net, &H[z].id.id, protos, 1, 0, 20000, on_stream, &w1,
                        NULL) == 0 &&
           ops->open_stream(net, &H[z].id.id, protos, 1, 0, 20000, on_stream,
                            &w2, NULL) == 0 &&
           ops->connect(net, &H[z].id.id, NULL, NULL, 0, 20000, on_done, &w3,
                        NULL) == 0,
       "two stream opens and a connect start");
    run_until(&w1.done, 20);
    run_until(&w2.done, 5);
    run_until(&w3.done, 5);
    ok(w1.calls == 1 && w1.err == 0 && w1.s != NULL && w2.calls == 1 &&
           w2.err == 0 && w2.s != NULL,
       "both streams open (%s, %s)", np_errname(w1.err), np_errname(w2.err));
    is_int(w3.calls == 1 ? w3.err : -1000, 0, "the connect succeeds");
    is_int((int)ct.finds, 1, "one lookup served the whole dial");
    is_int((int)ct.cancels, 0, "and was not withdrawn");
    if (w1.s)
      w1.s->ops->reset(w1.s);
    if (w2.s)
      w2.s->ops->reset(w2.s);
    run_for(0.05);
    unwrap(a, &ct);
  }

  /* A DHT client (a host behind a NAT) is in nobody's table, yet found
   * by ID through a server it is connected to: FIND_NODE for a peer ID
   * names that peer when the server knows its addresses. */
  {
    int cl = next++, a = next++;
    void *net;
    const np_net_ops *ops;
    waitv w;
    client_mode = 1;
    ok(newcomer_up(cl) == 0, "a DHT client %d up, connected to host 0 only",
       cl);
    client_mode = 0;
    ok(newcomer_up(a) == 0, "newcomer %d up", a);
    ok(knows_nothing_of(a, &H[cl].id.id),
       "before: the newcomer knows nothing of the client");
    ops = np_host_net(H[a].h, &net);
    memset(&w, 0, sizeof(w));
    ok(ops->connect(net, &H[cl].id.id, NULL, NULL, 0, 20000, on_done, &w,
                    NULL) == 0,
       "connect to the client by peer ID starts");
    run_until(&w.done, 20);
    ok(w.done && w.err == 0 && connected(a, &H[cl].id.id),
       "the client is found through host 0 and connected (%s)",
       np_errname(w.err));
  }

  /* CONNECT alone, and a dial to oneself: no lookup. */
  {
    int a = next++, z = NDHT - 3;
    void *net;
    const np_net_ops *ops;
    waitv w;
    counter ct;
    int rv;
    ok(newcomer_up(a) == 0, "newcomer %d up", a);
    ok(knows_nothing_of(a, &H[z].id.id),
       "before: no address of host %d in the newcomer's peerstore", z);
    ops = np_host_net(H[a].h, &net);
    memset(&w, 0, sizeof(w));
    ok(ops->connect(net, &H[z].id.id, NULL, NULL, 0, 20000, on_done, &w,
                    NULL) == 0,
       "connect by peer ID alone starts");
    run_until(&w.done, 20);
    ok(w.done && w.err == 0 && connected(a, &H[z].id.id),
       "connected to host %d (%s)", z, np_errname(w.err));
    wrap(a, &ct, 0);
    memset(&w, 0, sizeof(w));
    rv = ops->connect(net, &H[a].id.id, NULL, NULL, 0, 5000, on_done, &w, NULL);
    if (rv == 0)
      run_until(&w.done, 6);
    ok(rv != 0 || (w.done && w.err != 0), "a dial to oneself fails (%s)",
       np_errname(rv ? rv : w.err));
    is_int((int)ct.finds, 0, "without a lookup");
    unwrap(a, &ct);
  }

  /* A peer nobody knows: NP_EUNREACH once the lookup ends, well before
   * the dial's timeout. */
  {
    int a = NDHT + 0;
    void *net;
    const np_net_ops *ops = np_host_net(H[a].h, &net);
    waitv w;
    double t0 = now_s();
    memset(&w, 0, sizeof(w));
    ok(ops->connect(net, &ghost.id, NULL, NULL, 0, 60000, on_done, &w, NULL) ==
           0,
       "connect to an absent peer starts");
    run_until(&w.done, 40);
    ok(w.done && w.calls == 1 && w.err == NP_EUNREACH,
       "it fails with NP_EUNREACH (%s) after %.1f s", np_errname(w.err),
       now_s() - t0);
    ok(w.done && now_s() - t0 < 35, "within the lookup's bound");
  }

  /* Cancel mid-lookup: the first waiter leaving keeps it, the last one
   * withdraws it; no callback runs. */
  {
    int a = NDHT + 1;
    void *net;
    const np_net_ops *ops = np_host_net(H[a].h, &net);
    const char *protos[1] = {ECHO_PROTO};
    void *h1 = NULL, *h2 = NULL;
    waitv w1, w2;
    counter ct;
    wrap(a, &ct, 1);
    memset(&w1, 0, sizeof(w1));
    memset(&w2, 0, sizeof(w2));
    ok(ops->connect(net, &ghost.id, NULL, NULL, 0, 20000, on_done, &w1, &h1) ==
               0 &&
           ops->open_stream(net, &ghost.id, protos, 1, 0, 20000, on_stream, &w2,
                            &h2) == 0,
       "two waiters on a held lookup");
    run_for(0.05);
    is_int((int)ct.finds, 1, "one lookup");
    ops->cancel(net, h1);
    run_for(0.05);
    is_int((int)ct.cancels, 0, "one waiter left: the lookup goes on");
    ops->cancel(net, h2);
    run_for(0.05);
    is_int((int)ct.cancels, 1, "the last one left: the lookup is withdrawn");
    ok(w1.calls == 0 && w2.calls == 0, "no callback after cancel");
    unwrap(a, &ct);
  }

  /* The dial's timeout covers the lookup. */
  {
    int a = NDHT + 1;
    void *net;
    const np_net_ops *ops = np_host_net(H[a].h, &net);
    waitv w;
    counter ct;
    wrap(a, &ct, 1);
    memset(&w, 0, sizeof(w));
    ok(ops->connect(net, &ghost.id, NULL, NULL, 0, 300, on_done, &w, NULL) == 0,
       "connect with a 300 ms timeout on a held lookup");
    run_until(&w.done, 3);
    ok(w.done && w.err == NP_ETIMEDOUT, "it times out (%s)", np_errname(w.err));
    is_int((int)ct.cancels, 1, "and the lookup is withdrawn");
    unwrap(a, &ct);
  }

  /* The router's own protocol is never routed: the DHT's requests to a
   * peer without addresses start no lookup of their own. */
  {
    int a = NDHT + 1;
    void *net;
    const np_net_ops *ops = np_host_net(H[a].h, &net);
    const char *protos[1] = {NP_KADMSG_PROTOCOL};
    waitv w;
    counter ct;
    int rv;
    wrap(a, &ct, 1);
    memset(&w, 0, sizeof(w));
    rv = ops->open_stream(net, &ghost.id, protos, 1, 0, 5000, on_stream, &w,
                          NULL);
    ok(rv == NP_EUNREACH && ct.finds == 0,
       "a stream of the DHT's protocol to an unknown peer: NP_EUNREACH at "
       "once, no lookup (%s, finds %u)",
       np_errname(rv), ct.finds);
    unwrap(a, &ct);
  }

  /* Lookups at once are bounded: past 32, a dial fails at once. */
  {
    int a = NDHT + 1;
    void *net;
    const np_net_ops *ops = np_host_net(H[a].h, &net);
    np_identity ids[33];
    void *hs[33];
    waitv ws[33];
    counter ct;
    int rv = 0, started = 0;
    wrap(a, &ct, 1);
    for (int i = 0; i < 33; i++) {
      np_identity_generate(&ids[i]);
      memset(&ws[i], 0, sizeof(ws[i]));
      hs[i] = NULL;
      rv = ops->connect(net, &ids[i].id, NULL, NULL, 0, 20000, on_done, &ws[i],
                        &hs[i]);
      started += rv == 0;
    }
    ok(started == 32 && rv == NP_ELIMIT,
       "32 lookups start, the 33rd dial is refused (%d, %s)", started,
       np_errname(rv));
    for (int i = 0; i < 33; i++) {
      if (hs[i])
        ops->cancel(net, hs[i]);
      np_identity_clear(&ids[i]);
    }
    run_for(0.05);
    is_int((int)ct.cancels, 32, "canceling them withdraws all 32");
    unwrap(a, &ct);
  }

  /* A real lookup withdrawn: its answer never arrives. */
  {
    int a = NDHT + 2;
    void *net;
    const np_net_ops *ops = np_host_net(H[a].h, &net);
    void *h = NULL;
    waitv w;
    counter ct;
    wrap(a, &ct, 0);
    memset(&w, 0, sizeof(w));
    ok(ops->connect(net, &ghost.id, NULL, NULL, 0, 20000, on_done, &w, &h) == 0,
       "connect to an absent peer through the DHT");
    ops->cancel(net, h); /* its first requests are out */
    run_for(2.0);
    ok(ct.finds == 1 && ct.cancels == 1 && ct.answers == 0 && w.calls == 0,
       "canceled mid-lookup: withdrawn, no answer, no callback (finds %u "
       "cancels %u answers %u calls %d)",
       ct.finds, ct.cancels, ct.answers, w.calls);
    unwrap(a, &ct);
  }

  /* Stop mid-lookup: the module's lookup ends (NP_ECANCELED) and the
   * waiter hears it once. */
  {
    int a = next++;
    void *net;
    const np_net_ops *ops;
    waitv w;
    ok(newcomer_up(a) == 0, "newcomer %d up", a);
    ops = np_host_net(H[a].h, &net);
    memset(&w, 0, sizeof(w));
    ok(ops->connect(net, &ghost.id, NULL, NULL, 0, 20000, on_done, &w, NULL) ==
           0,
       "connect to an absent peer starts");
    host_down(a); /* the lookup's first requests are out */
    ok(w.calls == 1 && w.err == NP_ECANCELED,
       "stopping the host mid-lookup ends the dial once (%d, %s)", w.calls,
       np_errname(w.err));
  }

  /* The swarm goes first while a lookup waits (a router that outlives
   * it): the swarm withdraws the lookup as it goes. */
  {
    int a = next++;
    void *net;
    const np_net_ops *ops;
    waitv w;
    counter ct;
    ok(newcomer_up(a) == 0, "newcomer %d up", a);
    wrap(a, &ct, 1);
    ops = np_host_net(H[a].h, &net);
    memset(&w, 0, sizeof(w));
    ok(ops->connect(net, &ghost.id, NULL, NULL, 0, 20000, on_done, &w, NULL) ==
           0,
       "connect on a held lookup");
    run_for(0.02);
    /* The daemon removes the router before its modules stop; a router
     * nobody removes is still withdrawn by the swarm. */
    host_down(a);
    ok(ct.finds == 1 && ct.cancels == 1 && ct.held == NULL,
       "the swarm withdrew the lookup on its way out (cancels %u)", ct.cancels);
    ok(w.calls == 1 && w.err == NP_ECANCELED, "the waiter heard once (%s)",
       np_errname(w.err));
  }

  for (int i = 0; i < NALL; i++) {
    if (H[i].d)
      host_down(i);
    np_identity_clear(&H[i].id);
  }
  np_identity_clear(&ghost);
  run_for(0.1);
  np_crypto_cleanup();
  return done_testing();
}
