/* In-memory transport (np_tmem): /memory/NAME addresses on a shared
 * in-process network, connections through the real upgrader (multistream,
 * Noise, yamux). Stream basics as in test_ttcp, then 200 hosts each
 * dialing 3 others, every connection carrying an echo stream, all in one
 * loop. Ends with no watcher left. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "conn_util.h"
#include "np_log.h"
#include "np_tmem.h"
#include "np_yamux.h"

#define MANY 200
#define DIALS 3

static np_tmem_net *NET;

static int node_init(tnode *n, const char *name, const np_tmem_config *cfg,
                     const char *listen) {
  uint8_t bin[300];
  np_ssize len;
  memset(n, 0, sizeof(*n));
  n->name = name;
  n->inbound_mode = M_ECHO;
  if (np_identity_generate(&n->id) != 0 ||
      np_tmem_new(&n->t, NET, &n->id, cfg, &cu_cbs, n) != 0)
    return -1;
  if (listen == NULL)
    return 0;
  len = np_maddr_parse(listen, strlen(listen), bin, sizeof(bin));
  if (len < 0 || n->t->ops->listen(n->t, bin, (size_t)len) != 0)
    return -1;
  return cu_node_addr(n);
}

static void node_del(tnode *n) {
  if (n->t != NULL)
    n->t->ops->del(n->t);
  n->t = NULL;
}

static np_ssize parse(const char *text, uint8_t *out, size_t cap) {
  return np_maddr_parse(text, strlen(text), out, cap);
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmRSS: %ld", &v) == 1)
      break;
  fclose(f);
  return v;
}

static tnode A, B;

static void test_addresses(void) {
  uint8_t bin[300], got[300];
  np_ssize n;
  char text[400];
  n = parse("/memory/b", bin, sizeof(bin));
  is_int(A.t->ops->listen(A.t, bin, (size_t)n), NP_EEXIST,
         "a taken name: NP_EEXIST");
  n = parse("/ip4/127.0.0.1/tcp/1", bin, sizeof(bin));
  is_int(A.t->ops->listen(A.t, bin, (size_t)n), NP_ENOTSUP,
         "listen refuses a TCP address");
  ok(!A.t->ops->can_dial(A.t, bin, (size_t)n), "cannot dial TCP");
  ok(A.t->ops->can_dial(A.t, B.addr, B.addrlen), "can dial /memory/b/p2p/ID");
  n = parse("/memory/b/tcp/1", bin, sizeof(bin));
  ok(!A.t->ops->can_dial(A.t, bin, (size_t)n), "cannot dial /memory/b/tcp/1");
  is_int(A.t->ops->kind, NP_TRANSPORT_MEM, "kind is mem");
  is_int(A.t->ops->listen_count(A.t), 1, "one listen address");
  n = A.t->ops->listen_addr(A.t, 0, got, sizeof(got));
  ok(n > 0 && np_maddr_to_string(got, (size_t)n, text, sizeof(text)) > 0 &&
         strcmp(text, "/memory/a") == 0,
     "listen_addr is /memory/a");
  is_int(A.t->ops->listen_addr(A.t, 1, got, sizeof(got)), NP_ENOENT,
         "no second listen address");
}

static tconn *test_dial(void) {
  tconn *tc;
  np_conn *c, *bc;
  int rv;
  char l[300], r[300];
  tc = cu_dial_addr(&A, B.addr, B.addrlen, &rv);
  is_int(rv, 0, "A dials /memory/b/p2p/B");
  ok(!tc->up && !tc->down, "nothing happens inside dial");
  WAIT_FOR(tc->up && B.ins == 1 && B.last_in->up);
  ok(tc->up && B.ins == 1, "both sides see the connection up");
  if (!tc->up || B.last_in == NULL)
    return NULL;
  c = tc->c;
  bc = B.last_in->c;
  ok(np_peerid_equal(&c->peer, &B.id.id) &&
         np_peerid_equal(&bc->peer, &A.id.id),
     "each side authenticated the other");
  ok(c->kind == NP_TRANSPORT_MEM && !c->inbound && bc->inbound,
     "kind mem, directions right");
  np_maddr_to_string(c->laddr, c->laddr_len, l, sizeof(l));
  np_maddr_to_string(bc->raddr, bc->raddr_len, r, sizeof(r));
  ok(strcmp(l, "/memory/a") == 0 && strcmp(r, "/memory/a") == 0,
     "the dialer's address is its listen name on both sides (%s, %s)", l, r);
  np_maddr_to_string(c->raddr, c->raddr_len, r, sizeof(r));
  is_str(r, "/memory/b", "the dialer's remote address");
  WAIT_FOR(np_conn_rtt_us(c) >= 0);
  ok(np_conn_rtt_us(c) >= 0, "RTT measured");
  return tc;
}

static void test_streams(tconn *tc) {
  tstream *a, *b, *ts[16];
  int bad = 0;
  size_t held;
  a = cu_open(tc, M_SEND, 1, 100000);
  WAIT_FOR(a->closed);
  ok(a->close_err == 0 && a->rcvd == 100000 && !a->mismatch && a->fin_rx,
     "an echo stream: 100000 bytes back, closed with 0");
  b = cu_open(B.last_in, M_SEND, 2, 30000);
  WAIT_FOR(b->closed);
  ok(b->close_err == 0 && b->rcvd == 30000 && !b->mismatch,
     "the other way too");

  B.inbound_mode = M_SINK;
  a = cu_open(tc, M_SEND, 0, 4u << 20);
  WAIT_FOR(a->closed && B.last_in_stream->closed);
  ok(a->close_err == 0 && B.last_in_stream->rcvd == 4u << 20 &&
         !B.last_in_stream->mismatch,
     "4 MiB arrive intact");

  for (int i = 0; i < 16; i++)
    ts[i] = cu_open(tc, M_SEND, 10 + i, 256 * 1024);
  WAIT_FOR(cu_streams_closed(ts, 16));
  for (int i = 0; i < 16; i++)
    if (ts[i]->close_err != 0 || ts[i]->mismatch || ts[i]->sent != 256 * 1024)
      bad++;
  is_int(bad, 0, "16 concurrent streams");

  B.pause_inbound = 1;
  a = cu_open(tc, M_SEND, 0, 4u << 20);
  cu_run_for(0.3);
  held = B.last_in_stream->rcvd;
  ok(held > 0 && held <= NP_YAMUX_INITIAL_WINDOW && a->sent < (4u << 20),
     "a paused reader holds at most one window (%zu)", held);
  B.last_in_stream->paused = 0;
  OPV(np_cstream_pause(B.last_in_stream->s, 0));
  WAIT_FOR(a->closed && B.last_in_stream->closed);
  ok(B.last_in_stream->rcvd == 4u << 20 && !B.last_in_stream->mismatch,
     "resumed: all of it arrives");
  B.pause_inbound = 0;
  B.inbound_mode = M_ECHO;

  a = cu_open(tc, M_SINK, 0, 0);
  a->no_fin = 1;
  OP(np_cstream_write(a->s, (const uint8_t *)"x", 1));
  WAIT_FOR(B.last_in_stream && B.last_in_stream->rcvd == 1);
  b = B.last_in_stream;
  OPV(np_cstream_reset(a->s));
  WAIT_FOR(a->closed && b->closed);
  ok(a->close_err == NP_ECANCELED && b->close_err == NP_ECLOSED,
     "reset: NP_ECANCELED here, NP_ECLOSED there");
}

static void test_failures(void) {
  uint8_t bin[300];
  np_ssize n;
  int rv, ins = B.ins;
  tconn *tc;
  n = parse("/memory/nobody", bin, sizeof(bin));
  tc = cu_dial_addr(&A, bin, (size_t)n, &rv);
  ok(rv == 0 && !tc->down, "dial an unknown name: no event inside dial");
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_EUNREACH, "nobody listens: conn_down(NP_EUNREACH)");
  n = parse("/memory/b", bin, sizeof(bin));
  n = np_maddr_append_p2p(bin, (size_t)n, sizeof(bin), &A.id.id);
  tc = cu_dial_addr(&A, bin, (size_t)n, &rv);
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_EPEERID, "wrong peer ID: conn_down(NP_EPEERID)");
  is_int(B.ins, ins, "B saw nothing of it");
}

static void test_inline_off(void) {
  np_tmem_config cfg;
  tnode F;
  tconn *tc;
  tstream *ts;
  np_tmem_config_default(&cfg);
  cfg.upgrade.no_inline_muxer = 1;
  ok(node_init(&F, "F", &cfg, "/memory/f") == 0, "node F: no inline muxer");
  tc = cu_dial(&F, &B);
  WAIT_FOR(tc && tc->up);
  ts = cu_open(tc, M_SEND, 5, 10000);
  WAIT_FOR(ts->closed);
  ok(ts->close_err == 0 && ts->rcvd == 10000,
     "yamux through multistream: echo works");
  {
    tconn *bside = B.last_in;
    node_del(&F);
    ok(tc->down && tc->err == NP_ECANCELED, "del: conn_down inside del");
    WAIT_FOR(bside->down);
    is_int(bside->err, NP_ECLOSED, "the peer sees NP_ECLOSED");
  }
}

/* np_tmem_vanish: a host unplugged. Its peers hear nothing: no close, no
 * reset, no data; dials to it time out, its own fail at once. The other
 * side's keepalive (idle timeout) is what finally ends the connection. */
static void test_vanish(void) {
  np_tmem_config cfg;
  tnode V, W;
  tconn *tc, *td, *tv;
  tstream *ts;
  int rv;
  np_tmem_config_default(&cfg);
  cfg.upgrade.handshake_timeout_ms = 600;
  cfg.upgrade.keepalive_ms = 300;
  cfg.upgrade.idle_timeout_ms = 1500;
  ok(node_init(&V, "V", &cfg, "/memory/v") == 0 &&
         node_init(&W, "W", &cfg, "/memory/w") == 0,
     "nodes V and W");
  is_int(np_tmem_vanish(NULL), NP_EINVAL, "vanish: NULL is refused");
  tc = cu_dial(&W, &V);
  WAIT_FOR(tc && tc->up);
  ts = cu_open(tc, M_SEND, 3, 5000);
  WAIT_FOR(ts->closed);
  ok(ts->close_err == 0 && ts->rcvd == 5000, "before: echo works");
  is_int(np_tmem_vanish(V.t), 0, "V vanishes");
  ts = cu_open(tc, M_SEND, 4, 5000);
  cu_run_for(0.25);
  ok(!ts->closed && ts->rcvd == 0 && !tc->down,
     "a stream to V: written, never answered, never closed");
  td = cu_dial(&W, &V);
  cu_run_for(0.3);
  ok(td != NULL && !td->up && !td->down, "a new dial to V hangs");
  WAIT_FOR(td->down);
  is_int(td->err, NP_ETIMEDOUT, "until the handshake timeout");
  tv = cu_dial_addr(&V, W.addr, W.addrlen, &rv);
  WAIT_FOR(tv->down);
  ok(rv == 0 && tv->err == NP_EUNREACH, "V's own dial: NP_EUNREACH (%s)",
     np_errname(tv->err));
  node_del(&V);
  ok(!tc->down && !ts->closed, "V deleted: W is not told");
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_ETIMEDOUT, "W's idle timeout ends the connection");
  node_del(&W);
}

/* MANY hosts, each dialing DIALS others, one echo stream per connection. */
static void test_many(void) {
  static tnode nodes[MANY];
  static tstream *streams[MANY * DIALS];
  static tconn *conns[MANY * DIALS];
  char name[32];
  long rss0 = rss_kib(), rss1;
  int ups = 0, bad = 0, nconn = 0, ok_init = 1, down = 0;
  double t0 = ev_time();
  np_tmem_config cfg;
  np_tmem_config_default(&cfg);
  cfg.upgrade.keepalive_ms = UINT64_MAX;
  cfg.upgrade.idle_timeout_ms = UINT64_MAX;
  for (int i = 0; i < MANY; i++) {
    snprintf(name, sizeof(name), "/memory/h%d", i);
    if (node_init(&nodes[i], "h", &cfg, name) != 0)
      ok_init = 0;
  }
  ok(ok_init, "%d hosts listen", MANY);
  for (int i = 0; i < MANY; i++)
    for (int d = 0; d < DIALS; d++) {
      int j = (i + 1 + d * 37 + i * 7) % MANY;
      if (j == i)
        j = (j + 1) % MANY;
      conns[nconn++] = cu_dial(&nodes[i], &nodes[j]);
    }
  for (int i = 0; i < nconn; i++)
    if (conns[i] == NULL)
      bad++;
  is_int(bad, 0, "%d dials started", nconn);
  WAIT_FOR(({
    int u = 0;
    for (int i = 0; i < nconn; i++)
      u += conns[i] && conns[i]->up;
    ups = u;
    u == nconn;
  }));
  is_int(ups, nconn, "every connection came up");
  printf("# %d connections up in %.0f ms\n", nconn, (ev_time() - t0) * 1000);
  for (int i = 0; i < nconn; i++)
    streams[i] = cu_open(conns[i], M_SEND, i, 2000 + (size_t)i);
  WAIT_FOR(cu_streams_closed(streams, nconn));
  bad = 0;
  for (int i = 0; i < nconn; i++)
    if (streams[i]->close_err != 0 || streams[i]->mismatch ||
        streams[i]->rcvd != 2000 + (size_t)i)
      bad++;
  is_int(bad, 0, "%d echo streams, one per connection, all intact", nconn);
  rss1 = rss_kib();
  printf("# RSS %+ld KiB for %d hosts, %d connections (%ld B per conn end)\n",
         rss1 - rss0, MANY, nconn, (rss1 - rss0) * 1024 / (2 * nconn));
  {
    size_t live = 0;
    for (int i = 0; i < MANY; i++)
      live += nodes[i].t->ops->conn_count(nodes[i].t);
    is_int(live, 2 * nconn, "each side counts its connections");
  }
  for (int i = 0; i < MANY; i++)
    node_del(&nodes[i]);
  for (int i = 0; i < nconn; i++)
    down += conns[i]->down;
  is_int(down, nconn, "deleting every host ends every connection");
}

int main(void) {
  tconn *tc;
  signal(SIGPIPE, SIG_IGN);
  if (getenv("NP_TEST_DEBUG") == NULL)
    np_log_set_level(NP_LOG_ERROR);
  EV = ev_loop_new(EVFLAG_AUTO);
  ev_timer_init(&cu_guard, cu_guard_cb, 1., 0.);
  ok(EV != NULL && np_loop_new(&LOOP, EV) == 0, "loop created");
  ok(np_tmem_net_new(&NET, LOOP) == 0, "network created");
  ok(node_init(&A, "A", NULL, "/memory/a") == 0, "A listens on /memory/a");
  ok(node_init(&B, "B", NULL, "/memory/b") == 0, "B listens on /memory/b");

  test_addresses();
  tc = test_dial();
  if (tc != NULL)
    test_streams(tc);
  test_failures();
  test_inline_off();
  test_vanish();
  test_many();

  is_int(cu_violations, 0, "no event inside an ops call, none after the last");
  node_del(&A);
  node_del(&B);
  np_tmem_net_del(NET);
  np_loop_del(LOOP);
  cu_free_all();
  alarm(10);
  ev_run(EV, 0);
  alarm(0);
  ok(1, "no active watchers left");
  ev_loop_destroy(EV);
  return done_testing();
}
