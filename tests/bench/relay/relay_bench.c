/* Relay throughput: three hosts in one process on loopback QUIC (relay R,
 * target T, source S; R relays T without limits via unlimited_peers). S
 * opens one circuit through R to T with raw hop/stop messages and pushes
 * MiB of data with back-pressure; T counts them. The same over a direct
 * S -> T stream gives the baseline. Prints one line per run:
 *   relay-bench path=circuit|direct bytes=N secs=T MBps=X
 * Usage: relay_bench [MiB (default 64)] [memory] — "memory" uses the
 * in-memory transport instead of QUIC. Not run by make check. */
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
#include "np_stream.h"

#define SINK_PROTO "/relay-bench/sink"

static struct ev_loop *ev;
static int use_mem;

typedef struct bhost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  char addr[128], peer[NP_PEERID_STRMAX];
  np_list streams;
} bhost;
static bhost B[3]; /* 0 relay, 1 target, 2 source */

/* The receiving end (T): reads the STOP CONNECT (stop streams) and
 * answers OK, then counts. */
typedef struct sink {
  int stop; /* a stop stream: a message comes first */
  int answered;
  uint8_t buf[8192];
  size_t len;
  uint64_t rx;
  int closed;
} sink;
static sink sinks[2]; /* 0 the stop stream, 1 the direct one */

/* The sending end (S). */
typedef struct src {
  np_stream *s;
  int opened, err, have_status;
  uint8_t buf[8192];
  size_t len;
  uint64_t tx, total;
  int closed;
} src;
static src sc;

static void on_tick(struct ev_loop *l, ev_timer *w, int r) {
  (void)l, (void)w, (void)r;
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

static void sink_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  sink *k = ud;
  if (len == 0)
    return;
  if (k->stop && !k->answered) {
    np_relaymsg m;
    np_ssize used;
    size_t take = len < sizeof(k->buf) - k->len ? len : sizeof(k->buf) - k->len;
    uint8_t out[64];
    np_ssize n;
    memcpy(k->buf + k->len, d, take);
    k->len += take;
    used = np_relaymsg_decode_lp(&m, NP_RELAYMSG_STOP, k->buf, k->len, NULL);
    if (used == NP_ETRUNC)
      return;
    if (used < 0) {
      s->ops->reset(s);
      return;
    }
    np_relaymsg_free(&m);
    np_relaymsg_init(&m);
    m.kind = NP_RELAYMSG_STOP;
    m.type = NP_RELAYMSG_STOP_STATUS;
    m.has_status = 1;
    m.status = NP_RELAYMSG_OK;
    n = np_relaymsg_encode_lp(&m, out, sizeof(out));
    s->ops->write(s, out, (size_t)n);
    k->answered = 1;
    k->rx += (k->len - (size_t)used) + (len - take);
    return;
  }
  k->rx += len;
}

static void sink_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err;
  ((sink *)ud)->closed = 1;
}

static void stop_open(np_stream *s, void *ud) {
  int stop = strcmp(s->proto, NP_RELAYMSG_STOP_PROTOCOL) == 0;
  sink *k = &sinks[stop ? 0 : 1];
  static const np_stream_cbs cbs = {.struct_size = sizeof(np_stream_cbs),
                                    .on_data = sink_data,
                                    .on_close = sink_close};
  (void)ud;
  memset(k, 0, sizeof(*k));
  k->stop = stop;
  np_stream_set_cbs(s, &cbs, k);
}

static void src_pump(void) {
  static uint8_t chunk[65536];
  while (sc.s && sc.tx < sc.total) {
    size_t n = sc.total - sc.tx < sizeof(chunk) ? sc.total - sc.tx
                                                 : sizeof(chunk);
    int rv = sc.s->ops->write(sc.s, chunk, n);
    if (rv == NP_ELIMIT)
      return;
    if (rv < 0) {
      sc.err = rv;
      return;
    }
    sc.tx += n;
  }
}

static void src_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  np_relaymsg m;
  size_t take;
  (void)s, (void)ud;
  if (len == 0 || sc.have_status)
    return;
  take = len < sizeof(sc.buf) - sc.len ? len : sizeof(sc.buf) - sc.len;
  memcpy(sc.buf + sc.len, d, take);
  sc.len += take;
  if (np_relaymsg_decode_lp(&m, NP_RELAYMSG_HOP, sc.buf, sc.len, NULL) < 0)
    return;
  sc.have_status = m.status == NP_RELAYMSG_OK ? 1 : -1;
  np_relaymsg_free(&m);
}

static void src_close(np_stream *s, int err, void *ud) {
  (void)s, (void)ud;
  sc.closed = 1;
  sc.err = err;
  sc.s = NULL;
}

static void src_writable(np_stream *s, void *ud) {
  (void)s, (void)ud;
  src_pump();
}

static const np_stream_cbs src_cbs = {.struct_size = sizeof(np_stream_cbs),
                                      .on_data = src_data,
                                      .on_close = src_close,
                                      .on_writable = src_writable};

static void on_stream(void *ud, int err, np_stream *s, const char *proto) {
  (void)ud, (void)proto;
  sc.opened = 1;
  sc.err = err;
  if (err == 0) {
    sc.s = s;
    np_stream_set_cbs(s, &src_cbs, NULL);
  }
}

static int up(int i, const char *extra) {
  char ini[1024], err[256];
  np_conf *c;
  np_handler hd;
  snprintf(ini, sizeof(ini),
           "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\nlog_level = error\n"
           "[dht]\nmode = off\n[plugins]\nautoload = no\n%s",
           extra ? extra : "");
  if (np_conf_load_string(&c, "b.ini", ini, strlen(ini), err, sizeof(err))) {
    fprintf(stderr, "config: %s\n", err);
    return -1;
  }
  if (use_mem) {
    snprintf(B[i].addr, sizeof(B[i].addr), "/memory/rbench%d", i);
    free(c->host.listen.v[0]);
    c->host.listen.v[0] = strdup(B[i].addr);
  }
  if (np_identity_generate(&B[i].id) != 0 ||
      np_daemon_new(&B[i].d, ev, c, &B[i].id) != 0)
    return -1;
  B[i].h = np_daemon_host(B[i].d);
  np_peerid_to_string(&B[i].id.id, B[i].peer, sizeof(B[i].peer));
  if (np_daemon_start(B[i].d, NP_DAEMON_NET) != 0)
    return -1;
  if (!use_mem) {
    const char *t = np_daemon_addr_text(B[i].d, 0);
    const char *p = t ? strstr(t, "/p2p/") : NULL;
    if (p == NULL)
      return -1;
    snprintf(B[i].addr, sizeof(B[i].addr), "%.*s", (int)(p - t), t);
  }
  np_list_init(&B[i].streams);
  for (int k = 0; k < 2; k++) {
    memset(&hd, 0, sizeof(hd));
    hd.proto = k ? SINK_PROTO : NP_RELAYMSG_STOP_PROTOCOL;
    hd.proto_len = strlen(hd.proto);
    hd.kind = NP_HANDLER_STREAM;
    hd.owner_kind = NP_OWNER_HOST;
    hd.owner = &B[i];
    hd.owner_name = "bench";
    hd.stream.struct_size = sizeof(hd.stream);
    hd.stream.on_open = stop_open;
    hd.streams = &B[i].streams;
    if (np_proto_add(np_host_protos(B[i].h), &hd, NULL) != 0)
      return -1;
  }
  return 0;
}

static void on_done(void *ud, int err) { *(int *)ud = err ? err : 1; }

static int connect_to(int i, int j) {
  char t[300];
  uint8_t a[256];
  const uint8_t *ap = a;
  size_t al;
  void *net;
  const np_net_ops *ops = np_host_net(B[i].h, &net);
  int r = 0;
  snprintf(t, sizeof(t), "%s/p2p/%s", B[j].addr, B[j].peer);
  al = (size_t)np_maddr_parse(t, strlen(t), a, sizeof(a));
  if (ops->connect(net, &B[j].id.id, &ap, &al, 1, 5000, on_done, &r, NULL))
    return -1;
  run_until(&r, 6);
  return r == 1 ? 0 : -1;
}

/* One hop message from |i| to the relay and its STATUS. */
static int hop(int i, const np_relaymsg *m) {
  void *net;
  const np_net_ops *ops = np_host_net(B[i].h, &net);
  const char *proto = NP_RELAYMSG_HOP_PROTOCOL;
  uint8_t out[NP_RELAYMSG_MSG_MAX + 16];
  np_ssize n;
  memset(&sc, 0, sizeof(sc));
  if (ops->open_stream(net, &B[0].id.id, &proto, 1, 0, 5000, on_stream, NULL,
                       NULL) != 0)
    return -1;
  run_until(&sc.opened, 6);
  if (!sc.s)
    return -1;
  n = np_relaymsg_encode_lp(m, out, sizeof(out));
  sc.s->ops->write(sc.s, out, (size_t)n);
  run_until(&sc.have_status, 6);
  return sc.have_status == 1 ? 0 : -1;
}

static void measure(const char *path, sink *snkp, uint64_t total) {
  double t0, t1;
  int done = 0;
#define snk (*snkp)
  sc.total = total;
  t0 = ev_time();
  src_pump();
  while (!done) {
    ev_run(ev, EVRUN_ONCE);
    done = snk.rx >= total || sc.closed || snk.closed ||
           ev_time() - t0 > 300;
  }
  t1 = ev_time();
  printf("relay-bench path=%s transport=%s bytes=%llu secs=%.3f MBps=%.1f%s\n",
         path, use_mem ? "memory" : "quic", (unsigned long long)snk.rx,
         t1 - t0, (double)snk.rx / (t1 - t0) / 1e6,
         snk.rx >= total ? "" : " INCOMPLETE");
#undef snk
}

int main(int argc, char **argv) {
  uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 64;
  char extra[256];
  np_relaymsg m;
  ev_timer tick;
  int rc = 1;
  use_mem = argc > 2 && strcmp(argv[2], "memory") == 0;
  np_log_set_level(NP_LOG_ERROR);
  ev = ev_default_loop(0);
  ev_timer_init(&tick, on_tick, 0.05, 0.05);
  ev_timer_start(ev, &tick);
  if (up(1, NULL) != 0 || up(2, NULL) != 0)
    goto out;
  snprintf(extra, sizeof(extra), "[relay]\nservice = on\nunlimited_peers = %s\n",
           B[1].peer);
  if (up(0, extra) != 0 || connect_to(1, 0) != 0 || connect_to(2, 0) != 0) {
    fprintf(stderr, "relay-bench: set-up failed\n");
    goto out;
  }
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_RESERVE;
  if (hop(1, &m) != 0) {
    fprintf(stderr, "relay-bench: reservation failed\n");
    goto out;
  }
  m.type = NP_RELAYMSG_HOP_CONNECT;
  m.has_peer = 1;
  m.peer.id = B[1].id.id;
  if (hop(2, &m) != 0) {
    fprintf(stderr, "relay-bench: circuit failed\n");
    goto out;
  }
  measure("circuit", &sinks[0], mib << 20);
  if (sc.s)
    sc.s->ops->reset(sc.s);
  /* direct baseline */
  if (connect_to(2, 1) == 0) {
    void *net;
    const np_net_ops *ops = np_host_net(B[2].h, &net);
    const char *proto = SINK_PROTO;
    memset(&sc, 0, sizeof(sc));
    if (ops->open_stream(net, &B[1].id.id, &proto, 1, 0, 5000, on_stream,
                         NULL, NULL) == 0) {
      run_until(&sc.opened, 6);
      if (sc.s)
        measure("direct", &sinks[1], mib << 20);
    }
  }
  rc = 0;
out:
  for (int i = 0; i < 3; i++)
    np_daemon_del(B[i].d);
  ev_timer_stop(ev, &tick);
  return rc;
}
