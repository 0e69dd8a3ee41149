/* natpeer as the bench client: the same tests, flags and JSON fields as
 * `node bench.mjs client` (tests/bench/js/bench.mjs), so the harness's
 * --client-cmd can run natpeer against a js or a natpeer server.
 *
 *   np_bench_client --target MA/p2p/ID --test unary|bulk|handshake|conns
 *     unary:     --count 5000 --concurrency 1 --size 32 --warmup 200
 *     bulk:      --bytes 256MiB --chunk 64KiB --warmup-bytes 16MiB
 *     handshake: --count 300 --concurrency 1 --warmup 10
 *     conns:     --conns 100 --settle 3
 *   common:      --time-limit 20 --server-pid PID [--negotiate-fully]
 * Streams are opened lazily (the request follows the protocol proposal, as
 * go-libp2p does for one protocol); --negotiate-fully waits for the echo
 * first, like the js client's default.
 *
 * Each test runs on real natpeer hosts inside this process (one per
 * concurrent dialer for handshake/conns, as the js client uses one node per
 * worker), over QUIC on loopback. Handshake latency is dial start to the
 * server's identify read on the new connection, as the js client counts it. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_err.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_stream.h"

#define UNARY_PROTO "/bench/unary/1.0.0"
#define PERF_PROTO "/perf/1.0.0"

static struct ev_loop *ev;
static np_peerid target;
static uint8_t target_bin[NP_MADDR_MAX];
static size_t target_len;
static int server_pid = -1;
static int lazy = NP_NET_LAZY; /* --negotiate-fully turns it off */
static double deadline;

/* ---- flags ---------------------------------------------------------------- */

static int g_argc;
static char **g_argv;

static const char *opt(const char *name, const char *def) {
  char env[64];
  for (int i = 1; i + 1 < g_argc; i++)
    if (strncmp(g_argv[i], "--", 2) == 0 && strcmp(g_argv[i] + 2, name) == 0)
      return g_argv[i + 1];
  snprintf(env, sizeof(env), "BENCH_");
  for (size_t i = 0; name[i] && i < 50; i++)
    env[6 + i] = name[i] == '-' ? '_' : (char)(name[i] & ~0x20),
    env[7 + i] = '\0';
  return getenv(env) ? getenv(env) : def;
}

static double num(const char *name, double def) {
  const char *v = opt(name, NULL);
  return v ? atof(v) : def;
}

static double size_opt(const char *name, double def) {
  const char *v = opt(name, NULL);
  char *end;
  double x;
  if (v == NULL)
    return def;
  x = strtod(v, &end);
  if (strncasecmp(end, "KiB", 3) == 0 || *end == 'K' || *end == 'k')
    x *= 1024;
  else if (strncasecmp(end, "MiB", 3) == 0 || *end == 'M')
    x *= 1024 * 1024;
  else if (strncasecmp(end, "GiB", 3) == 0 || *end == 'G')
    x *= 1024.0 * 1024 * 1024;
  return x;
}

/* ---- measurement ------------------------------------------------------------- */

static double now_s(void) { return ev_time(); }

static double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double proc_cpu(int pid) {
  char path[64], buf[1024];
  FILE *f;
  unsigned long ut = 0, st = 0;
  char *p;
  if (pid <= 0)
    return -1;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  if ((f = fopen(path, "r")) == NULL)
    return -1;
  if (fgets(buf, sizeof(buf), f) == NULL) {
    fclose(f);
    return -1;
  }
  fclose(f);
  p = strrchr(buf, ')');
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double proc_rss(int pid) {
  char path[64], line[256];
  FILE *f;
  double kb = -1;
  if (pid <= 0)
    return -1;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  if ((f = fopen(path, "r")) == NULL)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = atof(line + 6);
  fclose(f);
  return kb * 1024;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
  size_t i;
  if (n == 0)
    return 0;
  i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* ---- hosts -------------------------------------------------------------------- */

/* Hosts are run as daemons (np_daemon); the tests hold the registry
 * (np_host) and find the daemon again to delete it. */
static np_daemon *daemons[4096];

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

static np_host *host_new(void) {
  static const char ini[] = "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
                            "log_level = error\n[plugins]\nautoload = no\n"
                            "[limits]\nmax_streams_per_conn = 1024\n"
                            "call_timeout = 10s\n";
  np_conf *c;
  np_identity id;
  np_daemon *d;
  np_host *h;
  char err[256];
  if (np_conf_load_string(&c, "bench.ini", ini, sizeof(ini) - 1, err,
                          sizeof(err)) != 0 ||
      np_identity_generate(&id) != 0 || np_daemon_new(&d, ev, c, &id) != 0 ||
      np_daemon_start(d, NP_DAEMON_NET) != 0 || (h = daemon_up(d)) == NULL) {
    fprintf(stderr, "bench: host set-up failed\n");
    exit(3);
  }
  return h;
}

static void run_until(int *flag) {
  while (!*flag && now_s() < deadline + 10)
    ev_run(ev, EVRUN_ONCE);
}

typedef struct waitv {
  int done, err;
  int64_t rtt;
} waitv;

static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1;
  w->err = err;
}

static int connect_wait(np_host *h) {
  void *net;
  const np_net_ops *ops = np_host_net(h, &net);
  const uint8_t *a[1] = {target_bin};
  size_t l[1] = {target_len};
  waitv w = {0, 0, 0};
  int rv = ops->connect(net, &target, a, l, 1, 10000, on_done, &w, NULL);
  if (rv != 0)
    return rv;
  run_until(&w.done);
  return w.done ? w.err : NP_ETIMEDOUT;
}

/* ---- unary ----------------------------------------------------------------------- */

typedef struct ustate {
  np_host *h;
  size_t issued, total, done, errors, size;
  int conc_left;
  double *lat;
  size_t nlat;
  int record;
  uint8_t *framed;
  size_t framed_len;
  char first_err[128];
  int finished;
} ustate;

typedef struct ucall {
  ustate *u;
  double t0;
  uint8_t buf[64 * 1024 + 16];
  size_t len;
  int answered;
} ucall;

static void unary_next(ustate *u);

static void ucall_data(np_stream *s, const uint8_t *d, size_t n, void *ud) {
  ucall *c = ud;
  if (n == 0 || c->answered)
    return;
  if (c->len + n > sizeof(c->buf))
    n = sizeof(c->buf) - c->len;
  memcpy(c->buf + c->len, d, n);
  c->len += n;
  if (c->len >= c->u->framed_len) {
    c->answered = 1;
    if (memcmp(c->buf, c->u->framed, c->u->framed_len) != 0) {
      c->u->errors++;
      snprintf(c->u->first_err, sizeof(c->u->first_err), "wrong answer");
    } else if (c->u->record) {
      c->u->lat[c->u->nlat++] = (now_s() - c->t0) * 1e6;
    }
    s->ops->close(s);
  }
}

static void ucall_close(np_stream *s, int err, void *ud) {
  ucall *c = ud;
  ustate *u = c->u;
  (void)s;
  if (!c->answered) {
    u->errors++;
    if (!u->first_err[0])
      snprintf(u->first_err, sizeof(u->first_err), "%s", np_strerror(err));
  }
  u->done++;
  free(c);
  unary_next(u);
}

static const np_stream_cbs ucall_cbs = {sizeof(np_stream_cbs), NULL,
                                        ucall_data, ucall_close, NULL};

static void ucall_opened(void *ud, int err, np_stream *s, const char *proto) {
  ucall *c = ud;
  (void)proto;
  if (err != 0) {
    ucall_close(NULL, err, c);
    return;
  }
  np_stream_set_cbs(s, &ucall_cbs, c);
  if (s->ops->write(s, c->u->framed, c->u->framed_len) != 0) {
    s->ops->reset(s);
    return;
  }
  s->ops->close(s); /* our write side, as the js client does */
}

static void unary_next(ustate *u) {
  void *net;
  const np_net_ops *ops = np_host_net(u->h, &net);
  const char *proto = UNARY_PROTO;
  ucall *c;
  if (u->issued >= u->total || now_s() > deadline) {
    if (u->done == u->issued)
      u->finished = 1;
    return;
  }
  if ((c = calloc(1, sizeof(*c))) == NULL)
    return;
  c->u = u;
  c->t0 = now_s();
  u->issued++;
  if (ops->open_stream(net, &target, &proto, 1, lazy, 10000, ucall_opened, c,
                       NULL) != 0) {
    u->errors++;
    u->done++;
    free(c);
  }
}

static void unary_batch(ustate *u, size_t n, int conc, int record) {
  u->issued = u->done = 0;
  u->total = n;
  u->record = record;
  u->finished = 0;
  for (int i = 0; i < conc && (size_t)i < n; i++)
    unary_next(u);
  run_until(&u->finished);
}

static void test_unary(void) {
  size_t count = (size_t)num("count", 5000), warm = (size_t)num("warmup", 200);
  int conc = (int)num("concurrency", 1);
  size_t sz = (size_t)size_opt("size", 32);
  ustate u;
  double c0, c1, s0, s1, t0, secs;
  memset(&u, 0, sizeof(u));
  u.h = host_new();
  u.size = sz;
  u.framed = malloc(sz + 10);
  u.framed_len = (size_t)np_lp_put_prefix(sz, u.framed, 10);
  memset(u.framed + u.framed_len, 0x42, sz);
  u.framed_len += sz;
  u.lat = calloc(count + 1, sizeof(double));
  deadline = now_s() + 20;
  if (connect_wait(u.h) != 0) {
    printf("{\"test\":\"unary\",\"error\":\"connect failed\"}\n");
    return;
  }
  unary_batch(&u, warm, conc, 0);
  u.errors = 0;
  u.first_err[0] = '\0';
  deadline = now_s() + num("time-limit", 20);
  c0 = self_cpu();
  s0 = proc_cpu(server_pid);
  t0 = now_s();
  unary_batch(&u, count, conc, 1);
  secs = now_s() - t0;
  c1 = self_cpu();
  s1 = proc_cpu(server_pid);
  qsort(u.lat, u.nlat, sizeof(double), cmp_d);
  printf("{\"test\":\"unary\",\"concurrency\":%d,\"size\":%zu,\"calls\":%zu,"
         "\"errors\":%zu,\"first_error\":%s%s%s,\"truncated\":%s,\"secs\":%.4f,"
         "\"calls_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
         "\"client_cpu_s\":%.3f,\"server_cpu_s\":%s%.3f,"
         "\"client_cpu_us_per_call\":%.1f,\"server_cpu_us_per_call\":%.1f,"
         "\"transport\":\"quic\",\"node\":\"natpeer\"}\n",
         conc, sz, u.nlat, u.errors, u.first_err[0] ? "\"" : "null",
         u.first_err, u.first_err[0] ? "\"" : "",
         u.issued < count ? "true" : "false", secs, (double)u.nlat / secs,
         pct(u.lat, u.nlat, 50), pct(u.lat, u.nlat, 99),
         u.nlat ? u.lat[u.nlat - 1] : 0, c1 - c0, "", s0 < 0 ? 0 : s1 - s0,
         u.nlat ? (c1 - c0) / (double)u.nlat * 1e6 : 0,
         u.nlat && s0 >= 0 ? (s1 - s0) / (double)u.nlat * 1e6 : 0);
  host_del(u.h);
}

/* ---- bulk ------------------------------------------------------------------------- */

typedef struct bulk {
  uint64_t left, sent, received;
  size_t chunk;
  uint8_t *buf;
  int done, err;
  np_stream *s;
} bulk;

static void bulk_pump(bulk *b) {
  while (b->left > 0 && now_s() < deadline) {
    size_t n = b->left < b->chunk ? (size_t)b->left : b->chunk;
    int rv = b->s->ops->write(b->s, b->buf, n);
    if (rv == NP_ELIMIT)
      return;
    if (rv < 0) {
      b->err = rv;
      b->done = 1;
      return;
    }
    b->left -= n;
    b->sent += n;
  }
  b->s->ops->close(b->s);
}

static void bulk_data(np_stream *s, const uint8_t *d, size_t n, void *ud) {
  bulk *b = ud;
  (void)s, (void)d;
  b->received += n;
}

static void bulk_close(np_stream *s, int err, void *ud) {
  bulk *b = ud;
  (void)s;
  b->err = err;
  b->done = 1;
}

static void bulk_writable(np_stream *s, void *ud) {
  (void)s;
  bulk_pump(ud);
}

static const np_stream_cbs bulk_cbs = {sizeof(np_stream_cbs), NULL, bulk_data,
                                       bulk_close, bulk_writable};

static void bulk_opened(void *ud, int err, np_stream *s, const char *proto) {
  bulk *b = ud;
  uint8_t hdr[8] = {0};
  (void)proto;
  if (err != 0) {
    b->err = err;
    b->done = 1;
    return;
  }
  b->s = s;
  np_stream_set_cbs(s, &bulk_cbs, b);
  s->ops->write(s, hdr, 8); /* download 0 bytes */
  bulk_pump(b);
}

static int bulk_once(np_host *h, uint64_t bytes, size_t chunk, double *secs,
                     uint64_t *sent) {
  void *net;
  const np_net_ops *ops = np_host_net(h, &net);
  const char *proto = PERF_PROTO;
  bulk b;
  double t0 = now_s();
  memset(&b, 0, sizeof(b));
  b.left = bytes;
  b.chunk = chunk;
  b.buf = calloc(1, chunk);
  if (ops->open_stream(net, &target, &proto, 1, lazy, 10000, bulk_opened, &b,
                       NULL) != 0)
    return -1;
  run_until(&b.done);
  *secs = now_s() - t0;
  *sent = b.sent;
  free(b.buf);
  return b.err;
}

static void test_bulk(void) {
  uint64_t bytes = (uint64_t)size_opt("bytes", 256.0 * 1024 * 1024);
  uint64_t warm = (uint64_t)size_opt("warmup-bytes", 16.0 * 1024 * 1024);
  size_t chunk = (size_t)size_opt("chunk", 64 * 1024);
  np_host *h = host_new();
  double secs, c0, c1, s0, s1, t0;
  uint64_t sent = 0;
  deadline = now_s() + 30;
  t0 = now_s();
  if (connect_wait(h) != 0) {
    printf("{\"test\":\"bulk\",\"error\":\"connect failed\"}\n");
    return;
  }
  t0 = now_s() - t0;
  if (warm)
    bulk_once(h, warm, chunk, &secs, &sent);
  deadline = now_s() + num("time-limit", 20);
  c0 = self_cpu();
  s0 = proc_cpu(server_pid);
  bulk_once(h, bytes, chunk, &secs, &sent);
  c1 = self_cpu();
  s1 = proc_cpu(server_pid);
  printf("{\"test\":\"bulk\",\"direction\":\"up\",\"bytes_requested\":%llu,"
         "\"bytes\":%llu,\"truncated\":%s,\"secs\":%.4f,\"MBps\":%.2f,"
         "\"MiBps\":%.2f,\"Gbps\":%.3f,\"client_cpu_s\":%.3f,"
         "\"server_cpu_s\":%.3f,\"dial_ms\":%.2f,\"chunk\":%zu,"
         "\"transport\":\"quic\",\"node\":\"natpeer\"}\n",
         (unsigned long long)bytes, (unsigned long long)sent,
         sent < bytes ? "true" : "false", secs, (double)sent / secs / 1e6,
         (double)sent / secs / 1048576.0, (double)sent * 8 / secs / 1e9,
         c1 - c0, s0 < 0 ? 0 : s1 - s0, t0 * 1000, chunk);
  host_del(h);
}

/* ---- handshake -------------------------------------------------------------------- */

typedef struct hsw {
  np_host *h;
  int busy;
  double t0;
  void *op;
} hsw;

typedef struct hstate {
  hsw *w;
  int n;
  size_t issued, total, ok, errors, running;
  double *lat;
  int record, finished;
  char first_err[128];
} hstate;

static hstate hs;

static void hs_start(hsw *w);

static void hs_pinged(void *ud, int err, int64_t rtt) {
  hsw *w = ud;
  void *net;
  const np_net_ops *ops = np_host_net(w->h, &net);
  (void)rtt;
  if (err == 0) {
    if (hs.record)
      hs.lat[hs.ok] = (now_s() - w->t0) * 1000;
    hs.ok++;
  } else {
    hs.errors++;
    if (!hs.first_err[0])
      snprintf(hs.first_err, sizeof(hs.first_err), "%s", np_strerror(err));
  }
  ops->disconnect(net, &target);
  hs.running--;
  hs_start(w);
}

static void hs_connected(void *ud, int err) {
  hs_pinged(ud, err, 0);
}

static void hs_start(hsw *w) {
  void *net;
  const np_net_ops *ops = np_host_net(w->h, &net);
  const uint8_t *a[1] = {target_bin};
  size_t l[1] = {target_len};
  if (hs.issued >= hs.total || now_s() > deadline) {
    if (hs.running == 0)
      hs.finished = 1;
    return;
  }
  hs.issued++;
  hs.running++;
  w->t0 = now_s();
  if (ops->connect_identified(net, &target, a, l, 1, 10000, hs_connected, w,
                              NULL) != 0)
    hs_pinged(w, NP_EUNREACH, 0);
}

static void hs_batch(size_t n, int record) {
  hs.issued = hs.ok = 0;
  hs.total = n;
  hs.record = record;
  hs.finished = 0;
  for (int i = 0; i < hs.n; i++)
    hs_start(&hs.w[i]);
  run_until(&hs.finished);
}

static void test_handshake(void) {
  size_t count = (size_t)num("count", 300), warm = (size_t)num("warmup", 10);
  double c0, c1, s0, s1, t0, secs;
  hs.n = (int)num("concurrency", 1);
  hs.w = calloc((size_t)hs.n, sizeof(*hs.w));
  hs.lat = calloc(count + 1, sizeof(double));
  for (int i = 0; i < hs.n; i++)
    hs.w[i].h = host_new();
  deadline = now_s() + 10;
  hs_batch(warm, 0);
  hs.errors = 0;
  deadline = now_s() + num("time-limit", 30);
  c0 = self_cpu();
  s0 = proc_cpu(server_pid);
  t0 = now_s();
  hs_batch(count, 1);
  secs = now_s() - t0;
  c1 = self_cpu();
  s1 = proc_cpu(server_pid);
  qsort(hs.lat, hs.ok, sizeof(double), cmp_d);
  printf("{\"test\":\"handshake\",\"concurrency\":%d,\"handshakes\":%zu,"
         "\"errors\":%zu,\"first_error\":%s%s%s,\"truncated\":%s,"
         "\"secs\":%.4f,\"per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
         "\"client_cpu_s\":%.3f,\"server_cpu_s\":%.3f,"
         "\"server_cpu_ms_per_hs\":%.3f,\"transport\":\"quic\","
         "\"node\":\"natpeer\"}\n",
         hs.n, hs.ok, hs.errors, hs.first_err[0] ? "\"" : "null",
         hs.first_err, hs.first_err[0] ? "\"" : "",
         hs.issued < count ? "true" : "false", secs, (double)hs.ok / secs,
         pct(hs.lat, hs.ok, 50), pct(hs.lat, hs.ok, 99), c1 - c0,
         s0 < 0 ? 0 : s1 - s0,
         hs.ok && s0 >= 0 ? (s1 - s0) / (double)hs.ok * 1000 : 0);
  for (int i = 0; i < hs.n; i++)
    host_del(hs.w[i].h);
}

/* ---- conns -------------------------------------------------------------------------- */

static void test_conns(void) {
  int n = (int)num("conns", 100), ok = 0, errors = 0;
  double settle = num("settle", 3), rss0, rss1, t0, est;
  np_host **h = calloc((size_t)n, sizeof(*h));
  for (int i = 0; i < n; i++)
    h[i] = host_new();
  rss0 = proc_rss(server_pid);
  deadline = now_s() + num("time-limit", 30);
  t0 = now_s();
  for (int i = 0; i < n; i++) {
    if (connect_wait(h[i]) == 0)
      ok++;
    else
      errors++;
  }
  est = now_s() - t0;
  {
    double end = now_s() + settle;
    while (now_s() < end)
      ev_run(ev, EVRUN_ONCE);
  }
  rss1 = proc_rss(server_pid);
  printf("{\"test\":\"conns\",\"conns\":%d,\"errors\":%d,"
         "\"establish_secs\":%.3f,\"server_rss0_mib\":%.2f,"
         "\"server_rss_mib\":%.2f,\"server_rss_per_conn_kib\":%.1f,"
         "\"transport\":\"quic\",\"node\":\"natpeer\"}\n",
         ok, errors, est, rss0 / 1048576.0, rss1 / 1048576.0,
         ok ? (rss1 - rss0) / ok / 1024 : 0);
  for (int i = 0; i < n; i++)
    host_del(h[i]);
  free(h);
}

int main(int argc, char **argv) {
  const char *t, *test;
  np_ssize n;
  g_argc = argc;
  g_argv = argv;
  t = opt("target", NULL);
  test = opt("test", "unary");
  if (t == NULL) {
    fprintf(stderr, "usage: np_bench_client --target MA/p2p/ID --test "
                    "unary|bulk|handshake|conns [...]\n");
    return 2;
  }
  n = np_maddr_parse(t, strlen(t), target_bin, sizeof(target_bin));
  if (n < 0 || np_maddr_get_p2p(target_bin, (size_t)n, &target) != 0) {
    fprintf(stderr, "bench: --target must be a multiaddr with /p2p/\n");
    return 2;
  }
  target_len = (size_t)n;
  server_pid = (int)num("server-pid", -1);
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--negotiate-fully") == 0)
      lazy = 0;
  np_log_set_level(NP_LOG_ERROR);
  ev = ev_default_loop(0);
  if (strcmp(test, "unary") == 0)
    test_unary();
  else if (strcmp(test, "bulk") == 0)
    test_bulk();
  else if (strcmp(test, "handshake") == 0)
    test_handshake();
  else if (strcmp(test, "conns") == 0)
    test_conns();
  else {
    fprintf(stderr, "bench: unknown --test %s\n", test);
    return 2;
  }
  fflush(stdout);
  np_crypto_cleanup();
  return 0;
}
