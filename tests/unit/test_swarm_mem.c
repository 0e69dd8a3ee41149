/* The swarm unit-tested over the in-memory transport (np_tmem, /memory/NAME):
 * many hosts in one process and one loop, no sockets. Connect, identify,
 * ping, unary calls and raw streams between them; several connections per
 * peer and the best one chosen; a host that goes away fails what waits on
 * it. Everything that waits is bounded by a deadline. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_call.h"
#include "np_conf.h"
#include "np_conn.h"
#include "np_crypto.h"
#include "np_err.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "tap.h"

#define NHOSTS 24

static struct ev_loop *ev;

typedef struct mhost {
  np_daemon *d;
  np_host *h; /* its registry */
  np_identity id;
  char addr[64]; /* /memory/hN */
  np_list pending, streams; /* the handler owner's calls and streams */
} mhost;

static mhost H[NHOSTS];

static double now_s(void) {
  ev_now_update(ev);
  return ev_now(ev);
}

/* Run the loop until *flag or |secs| pass. */
static void run_until(const int *flag, double secs) {
  double end = now_s() + secs;
  while (!*flag && now_s() < end)
    ev_run(ev, EVRUN_ONCE);
}

static void run_for(double secs) {
  int never = 0;
  run_until(&never, secs);
}

/* hello: answers "hello from N" (N: the host's index). */
static void on_hello(np_call *c, const uint8_t *req, size_t len, void *ud) {
  char out[64];
  (void)req, (void)len;
  snprintf(out, sizeof(out), "hello from %d", (int)(intptr_t)ud);
  np_call_reply(c, (const uint8_t *)out, strlen(out));
}

/* /test/echo/1.0.0: every byte back, FIN after FIN. */
static void echo_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  (void)ud;
  if (len)
    s->ops->write(s, d, len);
  else
    s->ops->close(s);
}

static int host_up(int i) {
  static const char ini[] = "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
                            "log_level = error\n[plugins]\nautoload = no\n";
  np_conf *c;
  char err[256];
  np_handler hd;
  int rv;
  if (np_conf_load_string(&c, "mem.ini", ini, sizeof(ini) - 1, err,
                          sizeof(err)) != 0)
    return -1;
  snprintf(H[i].addr, sizeof(H[i].addr), "/memory/h%d", i);
  free(c->host.listen.v[0]);
  c->host.listen.v[0] = strdup(H[i].addr);
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  memset(&hd, 0, sizeof(hd));
  hd.proto = "hello";
  hd.proto_len = 5;
  hd.kind = NP_HANDLER_UNARY;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = &H[i];
  hd.owner_name = "test";
  hd.unary = on_hello;
  hd.ud = (void *)(intptr_t)i;
  np_list_init(&H[i].pending);
  np_list_init(&H[i].streams);
  hd.pending = &H[i].pending;
  if (np_proto_add(np_host_protos(H[i].h), &hd, NULL) != 0)
    return -1;
  memset(&hd, 0, sizeof(hd));
  hd.proto = "/test/echo/1.0.0";
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

typedef struct waitv {
  int done, err;
  int64_t rtt;
  uint8_t resp[128];
  size_t len;
} waitv;

static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1;
  w->err = err;
}

static void on_ping(void *ud, int err, int64_t rtt) {
  waitv *w = ud;
  w->done = 1;
  w->err = err;
  w->rtt = rtt;
}

static void on_call(void *ud, int err, const uint8_t *d, size_t len) {
  waitv *w = ud;
  w->done = 1;
  w->err = err;
  w->len = len < sizeof(w->resp) ? len : sizeof(w->resp);
  if (d && w->len)
    memcpy(w->resp, d, w->len);
}

static int connect_addr(int from, int to, const char *addr_text,
                        uint64_t timeout_ms) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  uint8_t bin[NP_MADDR_MAX];
  np_ssize n = np_maddr_parse(addr_text, strlen(addr_text), bin, sizeof(bin));
  const uint8_t *a[1] = {bin};
  size_t l[1];
  waitv w;
  int rv;
  if (n < 0)
    return (int)n;
  l[0] = (size_t)n;
  memset(&w, 0, sizeof(w));
  rv = ops->connect(net, &H[to].id.id, a, l, 1, timeout_ms, on_done, &w, NULL);
  if (rv != 0)
    return rv;
  run_until(&w.done, (double)timeout_ms / 1000.0 + 2);
  return w.done ? w.err : -1000;
}

/* Connections of |from| to |to| and their transports (bit per kind). */
static int conns_to(int from, int to, int *kinds) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  np_conn_info ci[64];
  size_t n = ops->conns(net, ci, 64);
  int c = 0;
  *kinds = 0;
  for (size_t i = 0; i < n && i < 64; i++)
    if (np_peerid_equal(&ci[i].peer, &H[to].id.id)) {
      c++;
      *kinds |= 1 << ci[i].transport;
    }
  return c;
}

static int call(int from, int to, const char *proto, waitv *w) {
  char peer[NP_PEERID_STRMAX];
  int rv;
  memset(w, 0, sizeof(*w));
  np_peerid_to_string(&H[to].id.id, peer, sizeof(peer));
  rv = np_host_call(H[from].h, peer, proto, (const uint8_t *)"x", 1, on_call,
                    w, NULL);
  if (rv != 0)
    return rv;
  run_until(&w->done, 12);
  return w->done ? w->err : -1000;
}

/* A raw stream: write |msg|, close, read everything back. */
typedef struct sx {
  int done, err, opened, closed;
  char got[256];
  size_t len;
  const char *msg;
} sx;

static void sx_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  sx *x = ud;
  (void)s;
  if (len == 0) {
    x->done = 1;
    return;
  }
  if (x->len + len < sizeof(x->got)) {
    memcpy(x->got + x->len, d, len);
    x->len += len;
  }
}

static void sx_close(np_stream *s, int err, void *ud) {
  sx *x = ud;
  (void)s;
  x->err = err;
  x->done = 1;
  x->closed = 1;
}

static void sx_opened(void *ud, int err, np_stream *s, const char *proto) {
  sx *x = ud;
  np_stream_cbs cbs;
  (void)proto;
  x->opened = 1;
  if (err != 0) {
    x->err = err;
    x->done = 1;
    x->closed = 1; /* no stream: nothing follows */
    return;
  }
  memset(&cbs, 0, sizeof(cbs));
  cbs.struct_size = sizeof(cbs);
  cbs.on_data = sx_data;
  cbs.on_close = sx_close;
  np_stream_set_cbs(s, &cbs, x);
  s->ops->write(s, (const uint8_t *)x->msg, strlen(x->msg));
  s->ops->close(s);
}

static int stream_echo(int from, int to, const char *msg, sx *x) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  const char *protos[1] = {"/test/echo/1.0.0"};
  int rv;
  memset(x, 0, sizeof(*x));
  x->msg = msg;
  rv = ops->open_stream(net, &H[to].id.id, protos, 1, 0, 10000, sx_opened, x,
                        NULL);
  if (rv != 0)
    return rv;
  run_until(&x->done, 12);
  /* The close comes a turn after the FIN: |x| must outlive it. */
  if (x->opened && !x->closed)
    run_until(&x->closed, 5);
  return x->done && x->closed ? x->err : -1000;
}

int main(void) {
  int ok_all, kinds;
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  alarm(120);

  ok_all = 1;
  for (int i = 0; i < NHOSTS; i++)
    ok_all &= host_up(i) == 0;
  ok(ok_all, "%d hosts listen on /memory/hN in one process", NHOSTS);
  {
    /* The bound address is announced like any other. */
    void *net;
    const np_net_ops *ops = np_host_net(H[0].h, &net);
    const uint8_t *bins[8];
    size_t lens[8], n = ops->addrs(net, bins, lens, 8);
    char t[128] = "";
    if (n >= 1)
      np_maddr_to_string(bins[0], lens[0], t, sizeof(t));
    is_str(t, "/memory/h0", "host 0's address is /memory/h0");
  }

  /* A ring, each host dialing the next by its /memory address. */
  ok_all = 1;
  for (int i = 0; i < NHOSTS; i++)
    ok_all &= connect_addr(i, (i + 1) % NHOSTS, H[(i + 1) % NHOSTS].addr,
                           5000) == 0;
  ok(ok_all, "every host connects to the next (ring of %d)", NHOSTS);
  is_int(conns_to(0, 1, &kinds), 1, "one connection 0 -> 1");
  is_int(kinds, 1 << NP_TRANSPORT_MEM, "over the in-memory transport");

  {
    void *net;
    const np_net_ops *ops = np_host_net(H[3].h, &net);
    waitv w;
    memset(&w, 0, sizeof(w));
    ok(ops->ping(net, &H[4].id.id, 5000, on_ping, &w, NULL) == 0,
       "ping 3 -> 4 starts");
    run_until(&w.done, 6);
    ok(w.done && w.err == 0 && w.rtt >= 0, "ping 3 -> 4 answers (rtt %lld us)",
       (long long)w.rtt);
  }
  {
    waitv w;
    char want[64];
    int good = 0;
    for (int i = 0; i < NHOSTS; i++) {
      int to = (i + 1) % NHOSTS;
      snprintf(want, sizeof(want), "hello from %d", to);
      if (call(i, to, "hello", &w) == 0 && w.len == strlen(want) &&
          memcmp(w.resp, want, w.len) == 0)
        good++;
    }
    is_int(good, NHOSTS, "unary hello on the next host answers, all %d",
           NHOSTS);
    if (good != NHOSTS) {
      int rv = call(0, 1, "hello", &w);
      printf("# 0 -> 1 hello: %s %.*s\n", np_errname(rv), (int)w.len,
             (const char *)w.resp);
    }
    is_int(call(5, 6, "no.such.handler", &w) < 0, 1,
           "a call of an unknown handler fails");
  }
  {
    sx x;
    is_int(stream_echo(7, 8, "bytes over a yamux stream in memory", &x), 0,
           "raw stream 7 -> 8 ends cleanly");
    is_mem(x.got, x.len, "bytes over a yamux stream in memory",
           strlen("bytes over a yamux stream in memory"),
           "the echo plugin-less handler sent every byte back");
  }
  {
    /* A host with no address for a peer it never met and no router
     * (test_route has the DHT look it up): unreachable at once, no dial. */
    waitv w;
    np_router r = *np_host_router(H[10].h);
    int rv;
    np_host_set_router(H[10].h, NULL);
    rv = call(10, 20, "hello", &w);
    is_int(rv, NP_EUNREACH,
           "without a router, a call to a peer with no known address fails");
    np_host_set_router(H[10].h, &r);
  }
  {
    /* A second connection to the same peer (the other direction): both
     * are kept; new streams still work. */
    ok(connect_addr(1, 0, H[0].addr, 5000) == 0,
       "1 -> 0 while 0 -> 1 exists: connected");
    ok(conns_to(1, 0, &kinds) >= 1, "1 has a connection to 0 (%d)",
       conns_to(1, 0, &kinds));
    {
      waitv w;
      ok(call(1, 0, "hello", &w) == 0, "calls 1 -> 0 still work");
    }
  }
  {
    /* A forced new dial (what AutoNAT dial-back and DCUtR need) to a peer
     * already connected: a second connection, not the reused one. */
    np_swarm *sw = np_host_swarm(H[2].h);
    uint8_t bin[64];
    np_ssize n = np_maddr_parse(H[3].addr, strlen(H[3].addr), bin, sizeof(bin));
    const uint8_t *a[1] = {bin};
    size_t l[1] = {n > 0 ? (size_t)n : 0};
    waitv w;
    int before = conns_to(2, 3, &kinds), after;
    memset(&w, 0, sizeof(w));
    ok(np_swarm_dial_new(sw, &H[3].id.id, a, l, 1, 0, 5000, on_done, &w, NULL) ==
           0,
       "a forced new dial 2 -> 3 starts");
    run_until(&w.done, 6);
    after = conns_to(2, 3, &kinds);
    ok(w.done && w.err == 0 && after == before + 1,
       "it completes with a second connection (%d -> %d)", before, after);
    ok(call(2, 3, "hello", &w) == 0, "calls 2 -> 3 still work");
  }
  {
    /* A host that goes away: its neighbours see the connection end, and a
     * call to it fails rather than hang. */
    waitv w;
    int kinds2, rv;
    np_daemon_del(H[12].d);
    H[12].d = NULL;
    H[12].h = NULL;
    run_for(0.3);
    is_int(conns_to(11, 12, &kinds2), 0, "11 sees its connection to 12 end");
    is_int(conns_to(13, 12, &kinds2), 0, "13 sees its connection to 12 end");
    rv = call(11, 12, "hello", &w);
    ok(rv < 0 && rv != -1000, "a call to the host that left fails (%s)",
       np_errname(rv));
  }

  for (int i = 0; i < NHOSTS; i++) {
    if (H[i].d)
      np_daemon_del(H[i].d);
    np_identity_clear(&H[i].id);
  }
  run_for(0.1);
  np_crypto_cleanup();
  return done_testing();
}
