/* The Kademlia module (np_kad) over the in-memory transport: 30 hosts in
 * one process, all bootstrapped from host 0, then every host finds every
 * other by peer ID alone and reaches it; a host that goes away mid-way does
 * not stop lookups for the rest; a peer answering garbage, and requests
 * that are garbage or oversized, get streams reset and counted while the
 * module keeps serving. The daemon runs the module (np_daemon.c's list);
 * tests reach it with np_daemon_module. Everything that waits is bounded
 * by a deadline. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_daemon.h"
#include "np_err.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_kad.h"
#include "np_kadmsg.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_stream.h"
#include "tap.h"

#define NHOSTS 30
#define BAD NHOSTS /* the host whose kad handler answers garbage */

static struct ev_loop *ev;

typedef struct khost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  np_kad *kad;
  char addr[64];
  np_list streams; /* BAD's handler streams */
} khost;

static khost H[NHOSTS + 1];

/* TAP comment line. */
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

/* The garbage peer: every request gets bytes that are no Message. */
static void bad_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  static const uint8_t junk[] = {0x05, 0xff, 0xff, 0xff, 0xff, 0xff};
  (void)d, (void)ud;
  if (len)
    s->ops->write(s, junk, sizeof(junk));
}

static int host_up(int i) {
  static const char ini[] = "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
                            "log_level = error\n[dht]\nmode = server\n"
                            "[plugins]\nautoload = no\n";
  np_conf *c;
  char err[256];
  int rv;
  if (np_conf_load_string(&c, "mem.ini", ini, sizeof(ini) - 1, err,
                          sizeof(err)) != 0)
    return -1;
  snprintf(H[i].addr, sizeof(H[i].addr), "/memory/kad%d", i);
  free(c->host.listen.v[0]);
  c->host.listen.v[0] = strdup(H[i].addr);
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  np_list_init(&H[i].streams);
  /* The daemon runs the kad module (np_daemon.c's module list). */
  if ((H[i].kad = np_daemon_module(H[i].d, "kad")) == NULL)
    return -1;
  if (i == BAD) {
    /* Its module keeps running, unreachable: the handler is the test's. */
    np_proto_remove_owner(np_host_protos(H[i].h), H[i].kad);
    H[i].kad = NULL;
    np_handler hd;
    memset(&hd, 0, sizeof(hd));
    hd.proto = NP_KADMSG_PROTOCOL;
    hd.proto_len = strlen(hd.proto);
    hd.kind = NP_HANDLER_STREAM;
    hd.owner_kind = NP_OWNER_HOST;
    hd.owner = &H[i];
    hd.owner_name = "test";
    hd.stream.struct_size = sizeof(hd.stream);
    hd.stream.on_data = bad_data;
    hd.streams = &H[i].streams;
    return np_proto_add(np_host_protos(H[i].h), &hd, NULL);
  }
  return 0;
}

static void host_down(int i) {
  H[i].kad = NULL;
  np_daemon_del(H[i].d);
  H[i].d = NULL;
}

/* /memory/kadN/p2p/<id> in binary. */
static size_t p2p_addr(int i, uint8_t *out, size_t cap) {
  char t[256], idt[NP_PEERID_STRMAX];
  np_ssize n;
  np_peerid_to_string(&H[i].id.id, idt, sizeof(idt));
  snprintf(t, sizeof(t), "%s/p2p/%s", H[i].addr, idt);
  n = np_maddr_parse(t, strlen(t), out, cap);
  return n < 0 ? 0 : (size_t)n;
}

typedef struct waitv {
  int done, err, calls;
  np_peerid peer;
  size_t n;
} waitv;

static void on_boot(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
}
static void on_peer(void *ud, int err, const np_peerid *p) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++, w->peer = *p;
}
static void on_closest(void *ud, int err, const np_peerid *p, size_t n) {
  waitv *w = ud;
  (void)p;
  w->done = 1, w->err = err, w->calls++, w->n = n;
}
static void on_ping(void *ud, int err, int64_t rtt) {
  waitv *w = ud;
  (void)rtt;
  w->done = 1, w->err = err, w->calls++;
}

static int connected(int from, int to) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  np_conn_info ci[64];
  size_t n = ops->conns(net, ci, 64), i;
  for (i = 0; i < n && i < 64; i++)
    if (np_peerid_equal(&ci[i].peer, &H[to].id.id))
      return 1;
  return 0;
}

/* |from| finds |to| by ID, then pings it. 0 or an error. */
static int find_and_ping(int from, int to, uint64_t *msgs) {
  np_kad_stats a, b;
  np_kad_lookup *lk;
  waitv w;
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  int rv;
  memset(&w, 0, sizeof(w));
  np_kad_stats_get(H[from].kad, &a);
  if ((rv = np_kad_find_peer(H[from].kad, &H[to].id.id, on_peer, &w, &lk)))
    return rv;
  if (w.calls) /* never from inside the call */
    return -2000;
  run_until(&w.done, 35);
  if (!w.done)
    return -1000;
  if (w.err || !np_peerid_equal(&w.peer, &H[to].id.id))
    return w.err ? w.err : -3000;
  np_kad_stats_get(H[from].kad, &b);
  *msgs += b.sent - a.sent;
  memset(&w, 0, sizeof(w));
  if ((rv = ops->ping(net, &H[to].id.id, 5000, on_ping, &w, NULL)))
    return rv;
  run_until(&w.done, 7);
  return w.done ? w.err : -1000;
}

/* Send |n| raw bytes to |to|'s kad service from |from|; wait for the end. */
typedef struct rawv {
  int opened, closed, err;
  size_t got;
  np_stream *s;
  const uint8_t *req;
  size_t len;
} rawv;

static void raw_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  rawv *r = ud;
  (void)s, (void)d;
  r->got += len;
}
static void raw_close(np_stream *s, int err, void *ud) {
  rawv *r = ud;
  (void)s;
  r->closed = 1, r->err = err;
}
static const np_stream_cbs raw_cbs = {.struct_size = sizeof(np_stream_cbs),
                                      .on_data = raw_data,
                                      .on_close = raw_close};
static void raw_opened(void *ud, int err, np_stream *s, const char *proto) {
  rawv *r = ud;
  (void)proto;
  r->opened = 1;
  if (err) {
    r->closed = 1, r->err = err;
    return;
  }
  r->s = s;
  np_stream_set_cbs(s, &raw_cbs, r);
  s->ops->write(s, r->req, r->len);
}

static int raw_request(int from, int to, const uint8_t *req, size_t len,
                       rawv *r) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  const char *protos[1] = {NP_KADMSG_PROTOCOL};
  int rv;
  memset(r, 0, sizeof(*r));
  r->req = req, r->len = len;
  rv = ops->open_stream(net, &H[to].id.id, protos, 1, 0, 5000, raw_opened, r,
                        NULL);
  if (rv)
    return rv;
  run_until(&r->closed, 15);
  return r->closed ? 0 : -1000;
}

int main(void) {
  int ok_all, fails = 0;
  uint64_t msgs = 0, lookups = 0;
  static uint8_t bin[NP_MADDR_MAX];
  const uint8_t *ba[1] = {bin};
  size_t bl[1];
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  alarm(300);

  ok_all = 1;
  for (int i = 0; i <= NHOSTS; i++)
    ok_all &= host_up(i) == 0;
  ok(ok_all, "%d kad hosts and one garbage peer on /memory/", NHOSTS);
  bl[0] = p2p_addr(0, bin, sizeof(bin));
  ok(bl[0] > 0, "host 0's address with /p2p/");

  /* Bootstrap one by one from host 0 (each self-lookup then sees the
   * hosts before it). */
  ok_all = 1;
  for (int i = 1; i < NHOSTS; i++) {
    waitv w;
    np_kad_lookup *lk;
    memset(&w, 0, sizeof(w));
    if (np_kad_bootstrap(H[i].kad, ba, bl, 1, on_boot, &w, &lk) != 0 ||
        w.calls != 0) {
      ok_all = 0;
      continue;
    }
    run_until(&w.done, 40);
    if (!w.done || w.err || w.calls != 1) {
      diag("host %d bootstrap: done %d err %s", i, w.done, np_errname(w.err));
      ok_all = 0;
    }
  }
  ok(ok_all, "%d hosts bootstrap from host 0", NHOSTS - 1);
  {
    size_t min = (size_t)-1, i;
    for (i = 0; i < NHOSTS; i++) {
      size_t n = np_kbucket_size(np_kad_table(H[i].kad));
      if (n < min)
        min = n;
    }
    ok(min >= 5, "every routing table holds peers (smallest %zu)", min);
  }

  /* Everyone finds everyone by ID: the target's addresses come through
   * the DHT, the ping dials them if need be. */
  for (int i = 0; i < NHOSTS; i++)
    for (int j = 0; j < NHOSTS; j++) {
      int rv;
      if (i == j)
        continue;
      rv = find_and_ping(i, j, &msgs);
      lookups++;
      if (rv != 0 && fails++ < 5)
        diag("%d finds %d: %s", i, j, np_errname(rv));
    }
  is_int(fails, 0, "all %d ordered pairs: find_peer then ping succeed",
         NHOSTS * (NHOSTS - 1));
  diag("messages per find_peer: %.2f (%llu lookups)",
       lookups ? (double)msgs / (double)lookups : 0.0,
       (unsigned long long)lookups);
  ok(msgs <= lookups * 30, "lookups stay bounded (<= 30 messages each)");
  {
    np_kad_stats st;
    unsigned maxh = 0;
    uint64_t hops = 0, n = 0;
    for (int i = 0; i < NHOSTS; i++) {
      np_kad_stats_get(H[i].kad, &st);
      hops += st.hops, n += st.lookups;
      if (st.max_hops > maxh)
        maxh = st.max_hops;
    }
    diag("hops per lookup: %.2f, deepest %u", n ? (double)hops / n : 0.0,
         maxh);
    ok(maxh <= 4, "no lookup goes deeper than 4 hops (%u)", maxh);
  }

  /* A host that does not know the target, and is not connected to it:
   * the lookup brings the address. */
  {
    int a = 7, b = 23;
    void *net;
    const np_net_ops *ops = np_host_net(H[a].h, &net);
    uint64_t m = 0;
    ops->disconnect(net, &H[b].id.id);
    run_for(0.2);
    ok(!connected(a, b), "7 is not connected to 23");
    is_int(find_and_ping(a, b, &m), 0, "7 finds 23 again and pings it");
  }

  /* closest: k peers come back, nearest first. */
  {
    waitv w;
    np_kad_lookup *lk;
    memset(&w, 0, sizeof(w));
    ok(np_kad_closest(H[3].kad, (const uint8_t *)"some key", 8, on_closest,
                      &w, &lk) == 0,
       "closest starts");
    run_until(&w.done, 35);
    ok(w.done && w.err == 0 && w.n == 20 && w.calls == 1,
       "closest: %zu peers (%s)", w.n, np_errname(w.err));
  }

  /* Cancel: the callback never runs. */
  {
    waitv w;
    np_kad_lookup *lk;
    memset(&w, 0, sizeof(w));
    np_kad_find_peer(H[4].kad, &H[9].id.id, on_peer, &w, &lk);
    np_kad_cancel(H[4].kad, lk);
    run_for(0.5);
    is_int(w.calls, 0, "a cancelled lookup never calls back");
  }

  /* A host goes away mid-lookup: the rest still find each other. */
  {
    waitv w[NHOSTS];
    np_kad_lookup *lk[NHOSTS];
    int started = 0, good = 1;
    for (int i = 1; i < NHOSTS; i++) {
      int t = (i + 7) % NHOSTS == 15 ? 16 : (i + 7) % NHOSTS;
      memset(&w[i], 0, sizeof(w[i]));
      if (i != 15 &&
          np_kad_find_peer(H[i].kad, &H[t].id.id, on_peer, &w[i], &lk[i]) == 0)
        started++;
    }
    host_down(15);
    for (int i = 1; i < NHOSTS; i++) {
      if (i == 15)
        continue;
      run_until(&w[i].done, 35);
      if (!w[i].done || w[i].err || w[i].calls != 1) {
        diag("lookup of %d during the loss: %s", i, np_errname(w[i].err));
        good = 0;
      }
    }
    ok(started == NHOSTS - 2 && good,
       "%d lookups running while host 15 goes away all succeed", started);
    fails = 0;
    for (int i = 0; i < NHOSTS; i++)
      for (int j = 0; j < NHOSTS; j += 5) {
        uint64_t m = 0;
        if (i == j || i == 15 || j == 15)
          continue;
        if (find_and_ping(i, j, &m) != 0)
          fails++;
      }
    is_int(fails, 0, "after the loss, lookups among the rest succeed");
    {
      /* Tables may still list it with its old address (nobody has failed
       * a request to it yet): the lookup may succeed, reaching it not. */
      uint64_t m = 0;
      int rv = find_and_ping(2, 15, &m);
      ok(rv != 0 && rv > -1000, "the host that left cannot be reached (%s)",
         np_errname(rv));
    }
  }

  /* The garbage peer: it joins host 1's table (identify lists kad); a
   * lookup of its own key asks it first: its answer is refused, counted
   * and it leaves the table; the lookup still ends with answers. */
  {
    waitv w;
    np_kad_lookup *lk;
    np_kad_stats st;
    uint8_t gb[NP_MADDR_MAX];
    const uint8_t *ga[1] = {gb};
    size_t gl[1] = {p2p_addr(BAD, gb, sizeof(gb))};
    uint64_t m = 0;
    memset(&w, 0, sizeof(w));
    np_kad_bootstrap(H[1].kad, ga, gl, 1, on_boot, &w, &lk);
    run_until(&w.done, 40);
    ok(w.done && w.calls == 1, "bootstrap towards the garbage peer ends (%s)",
       np_errname(w.err));
    np_kad_stats_get(H[1].kad, &st);
    ok(np_kbucket_contains(np_kad_table(H[1].kad), &H[BAD].id.id) ||
           st.bad_answers >= 1,
       "the garbage peer entered the table (or was already refused)");
    memset(&w, 0, sizeof(w));
    ok(np_kad_closest(H[1].kad, H[BAD].id.id.bytes, H[BAD].id.id.len,
                      on_closest, &w, &lk) == 0,
       "a lookup of the garbage peer's key starts");
    run_until(&w.done, 35);
    ok(w.done && w.err == 0 && w.n > 0, "it ends with %zu peers (%s)", w.n,
       np_errname(w.err));
    np_kad_stats_get(H[1].kad, &st);
    ok(st.bad_answers >= 1, "garbage answers counted (%llu)",
       (unsigned long long)st.bad_answers);
    ok(!np_kbucket_contains(np_kad_table(H[1].kad), &H[BAD].id.id),
       "the garbage peer left the table");
    is_int(find_and_ping(1, 28, &m), 0, "host 1 still finds host 28");
  }

  /* Garbage and oversized requests: reset and counted; the server goes on. */
  {
    static uint8_t big[16];
    static const uint8_t junk[] = {0x04, 0xff, 0xff, 0xff, 0xff};
    np_kad_stats a, b;
    rawv r;
    uint64_t m = 0;
    np_ssize n = np_lp_put_prefix(1u << 20, big, sizeof(big));
    np_kad_stats_get(H[5].kad, &a);
    ok(raw_request(6, 5, junk, sizeof(junk), &r) == 0 && r.closed &&
           r.err != 0 && r.got == 0,
       "a garbage request: the stream is reset (%s)", np_errname(r.err));
    ok(raw_request(6, 5, big, (size_t)n, &r) == 0 && r.closed && r.err != 0,
       "a 1 MiB length prefix: the stream is reset (%s)", np_errname(r.err));
    np_kad_stats_get(H[5].kad, &b);
    is_int((int)(b.bad_requests - a.bad_requests), 2, "both counted");
    is_int(find_and_ping(6, 5, &m), 0, "host 5 still answers lookups");
  }

  /* A FIND_NODE then a PING on one stream: two answers. */
  {
    uint8_t req[600];
    np_kadmsg msg;
    np_ssize n1, n2;
    rawv r;
    np_kadmsg_init(&msg);
    msg.type = NP_KADMSG_FIND_NODE;
    msg.key.data = H[9].id.id.bytes;
    msg.key.len = H[9].id.id.len;
    n1 = np_kadmsg_encode_lp(&msg, req, sizeof(req));
    np_kadmsg_init(&msg);
    msg.type = NP_KADMSG_PING;
    n2 = np_kadmsg_encode_lp(&msg, req + n1, sizeof(req) - (size_t)n1);
    ok(n1 > 0 && n2 > 0, "two requests encoded");
    memset(&r, 0, sizeof(r));
    r.req = req, r.len = (size_t)(n1 + n2);
    {
      void *net;
      const np_net_ops *ops = np_host_net(H[8].h, &net);
      const char *protos[1] = {NP_KADMSG_PROTOCOL};
      ops->open_stream(net, &H[2].id.id, protos, 1, 0, 5000, raw_opened, &r,
                       NULL);
      run_for(1.0);
    }
    ok(r.opened && r.got > 2, "answers on one stream (%zu bytes)", r.got);
    if (r.s && !r.closed)
      r.s->ops->reset(r.s);
    run_until(&r.closed, 2);
  }

  /* The bounds on inbound streams, on host 10 serving from a second
   * instance with small ones (the daemon's module unregistered):
   * an idle stream is reset, a second stream from the same peer is
   * refused while the first is open, a third request on a stream too. */
  {
    np_kad_config cfg;
    np_kad_stats a, b;
    rawv r1, r2;
    uint8_t pings[64];
    np_kadmsg msg;
    np_ssize n;
    size_t len = 0;
    void *net;
    const np_net_ops *ops = np_host_net(H[11].h, &net);
    const char *protos[1] = {NP_KADMSG_PROTOCOL};
    np_kad_config_default(&cfg);
    cfg.max_requests = 2;
    cfg.max_peer_streams = 1;
    cfg.idle_ms = 1500;
    np_kad *lim = NULL;
    np_proto_remove_owner(np_host_protos(H[10].h), H[10].kad);
    ok(np_kad_start(H[10].h, &cfg, &lim) == 0, "host 10 restarted");
    np_kad_stats_get(lim, &a);
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    /* One byte of a length prefix: a request that never completes. */
    r1.req = r2.req = (const uint8_t *)"\x05";
    r1.len = r2.len = 1;
    ops->open_stream(net, &H[10].id.id, protos, 1, 0, 5000, raw_opened, &r1,
                     NULL);
    run_until(&r1.opened, 5);
    run_for(0.1);
    ops->open_stream(net, &H[10].id.id, protos, 1, 0, 5000, raw_opened, &r2,
                     NULL);
    run_until(&r2.closed, 1.2); /* well before idle_ms */
    ok(r2.closed && r2.err != 0 && !r1.closed,
       "a second stream from the same peer is reset (%s; first: %d %s)",
       np_errname(r2.err), r1.closed, np_errname(r1.err));
    run_until(&r1.closed, 3);
    ok(r1.closed && r1.err != 0, "a stream idle past idle_ms is reset (%s)",
       np_errname(r1.err));
    np_kadmsg_init(&msg);
    msg.type = NP_KADMSG_PING;
    for (int i = 0; i < 3; i++) {
      n = np_kadmsg_encode_lp(&msg, pings + len, sizeof(pings) - len);
      len += n > 0 ? (size_t)n : 0;
    }
    ok(raw_request(11, 10, pings, len, &r1) == 0 && r1.closed &&
           r1.err != 0 && r1.got == 2 * (len / 3),
       "three requests where two are allowed: two answers (%zu bytes), "
       "then a reset", r1.got);
    np_kad_stats_get(lim, &b);
    is_int((int)(b.refused - a.refused), 3, "the three refusals counted");
    is_int((int)(b.served - a.served), 2, "two requests served");
    np_kad_stop(lim);
  }

  /* Stop with a lookup running: its callback runs once, NP_ECANCELED. */
  {
    waitv w;
    np_kad_lookup *lk;
    memset(&w, 0, sizeof(w));
    np_kad_find_peer(H[3].kad, &H[15].id.id, on_peer, &w, &lk);
    host_down(3);
    ok(w.calls == 1 && w.err == NP_ECANCELED,
       "stopping the module cancels its lookups (%s)", np_errname(w.err));
  }

  for (int i = 0; i <= NHOSTS; i++) {
    if (H[i].d)
      host_down(i);
    np_identity_clear(&H[i].id);
  }
  run_for(0.1);
  np_crypto_cleanup();
  return done_testing();
}
