/* The DHT at scale in one process: N hosts (full np_daemon each, the real
 * np_kad module) over the in-memory transport. Each host bootstraps from a
 * few random earlier hosts (np_kad_bootstrap: connect, then self-lookup);
 * then, for each loss level in turn, that share of all hosts vanishes
 * without notice (np_swarm_mem_vanish: connections go silent, dials hang)
 * and random live hosts look up random live hosts by ID (find_peer).
 * Prints, per level: success rate, hops and requests sent per lookup
 * (mean, p95, max), lookup latency, wall time; and RSS, connections and
 * memory per routing-table entry. Loss levels are cumulative (the 30 %
 * run follows the 10 % one on the same network).
 *
 * Built twice: tests/bench/dht/kad_scale (options below, a JSON line for
 * the results) and, with KAD_SCALE_CHECK, tests/unit/test_kadscale for
 * make check: 200 hosts, 0 % then 30 % gone, TAP assertions on the
 * success rate and the hops. Every wait is bounded by a deadline. */
#include <ev.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_daemon.h"
#include "np_err.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_kad.h"
#include "np_kbucket.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_swarm.h"
#include "../../unit/tap.h"

#define MAX_LEVELS 8
#define MAX_BOOT 8

typedef struct shost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  np_kad *kad;
  uint8_t addr[96]; /* /memory/sN/p2p/ID, binary */
  size_t addrlen;
  int gone, busy;
} shost;

typedef struct opts {
  int n, lookups, conc, boot, check;
  int levels[MAX_LEVELS], nlevels;
  unsigned seed;
  const char *json;
  int drop_idle; /* close every connection once the tables are built */
  int kinds;     /* bit K_FIND, bit K_CLOSEST */
  int wave;      /* bootstraps at once */
} opts;

static struct ev_loop *ev;
static shost *H;
static int N;
static uint64_t rng_state;

static uint64_t rnd(void) { /* xorshift64*: reproducible choices */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}
static int rnd_below(int n) { return (int)(rnd() % (uint64_t)n); }

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rss_mb(void) {
  long pages = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
      res = 0;
    fclose(f);
  }
  return (double)res * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static void run_once_for(double secs) {
  double end;
  ev_now_update(ev);
  end = ev_now(ev) + secs;
  while (ev_now(ev) < end) {
    ev_run(ev, EVRUN_ONCE);
    ev_now_update(ev);
  }
}

/* Heap bytes in use (glibc): RSS minus this is free heap and code. */
static double heap_mb(void) {
  struct mallinfo2 mi = mallinfo2();
  return (double)(mi.uordblks + mi.hblkhd) / 1048576.0;
}

static int host_up(int i) {
  static const char ini[] = "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
                            "log_level = error\n[dht]\nmode = server\n"
                            "[plugins]\nautoload = no\n";
  np_conf *c;
  char err[256], t[200], idt[NP_PEERID_STRMAX];
  np_ssize n;
  int rv;
  if (np_conf_load_string(&c, "scale.ini", ini, sizeof(ini) - 1, err,
                          sizeof(err)) != 0)
    return -1;
  snprintf(t, sizeof(t), "/memory/s%d", i);
  free(c->host.listen.v[0]);
  c->host.listen.v[0] = strdup(t);
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  if ((H[i].kad = np_daemon_module(H[i].d, "kad")) == NULL)
    return -1;
  np_peerid_to_string(&H[i].id.id, idt, sizeof(idt));
  snprintf(t + strlen(t), sizeof(t) - strlen(t), "/p2p/%s", idt);
  n = np_maddr_parse(t, strlen(t), H[i].addr, sizeof(H[i].addr));
  if (n <= 0)
    return -1;
  H[i].addrlen = (size_t)n;
  return 0;
}

/* ---- bootstrap ----------------------------------------------------------- */

typedef struct bootw {
  int done, err;
} bootw;

static void on_boot(void *ud, int err) {
  bootw *w = ud;
  w->done = 1, w->err = err;
}

/* Hosts [from, to) bootstrap at once, each from up to |nb| random hosts
 * among [0, from). Returns how many failed. */
static int boot_wave(int from, int to, int nb) {
  bootw *w = calloc((size_t)(to - from), sizeof(*w));
  int fails = 0, pending = 0;
  double end;
  for (int i = from; i < to; i++) {
    const uint8_t *a[MAX_BOOT];
    size_t l[MAX_BOOT];
    int k = nb < from ? nb : from, m = 0;
    np_kad_lookup *lk;
    while (m < k) {
      int j = rnd_below(from), dup = 0;
      for (int q = 0; q < m; q++)
        dup |= a[q] == H[j].addr;
      if (dup)
        continue;
      a[m] = H[j].addr, l[m] = H[j].addrlen, m++;
    }
    if (np_kad_bootstrap(H[i].kad, a, l, (size_t)m, on_boot, &w[i - from],
                         &lk) != 0) {
      w[i - from].done = 1, w[i - from].err = NP_EINVAL;
    } else {
      pending++;
    }
  }
  end = wall() + 60;
  while (pending > 0 && wall() < end) {
    ev_run(ev, EVRUN_ONCE);
    pending = 0;
    for (int i = from; i < to; i++)
      pending += !w[i - from].done;
  }
  for (int i = from; i < to; i++) {
    int e = w[i - from].done ? w[i - from].err : NP_ETIMEDOUT;
    if (e != 0 && fails++ < 3)
      printf("# host %d bootstrap: %s\n", i, np_errname(e));
  }
  free(w);
  return fails;
}

/* ---- lookups ------------------------------------------------------------- */

typedef struct lookw {
  int src, dst, done, err, found;
  np_kad_stats before;
  double t0, ms;
  unsigned hops;
  uint64_t sent;
} lookw;

static void finish(lookw *w, int err, int found) {
  np_kad_stats st;
  w->done = 1, w->err = err, w->found = found;
  w->ms = (wall() - w->t0) * 1e3;
  np_kad_stats_get(H[w->src].kad, &st);
  w->sent = st.sent - w->before.sent;
  /* Hops of this lookup: the growth of the source's sum (background
   * lookups on it are rare; averaged if any ended meanwhile). */
  w->hops = st.lookups > w->before.lookups
                ? (unsigned)((st.hops - w->before.hops) /
                             (st.lookups - w->before.lookups))
                : 0;
  H[w->src].busy = 0;
}

static void on_peer(void *ud, int err, const np_peerid *p) {
  lookw *w = ud;
  finish(w, err, err == 0 && np_peerid_equal(p, &H[w->dst].id.id));
}

/* closest: found when any peer answered (the lookup ran to its end). */
static void on_closest(void *ud, int err, const np_peerid *p, size_t n) {
  (void)p;
  finish(ud, err, err == 0 && n > 0);
}

typedef struct pingw {
  int done, err;
} pingw;

static void on_ping(void *ud, int err, int64_t rtt) {
  pingw *w = ud;
  (void)rtt;
  w->done = 1, w->err = err;
}

/* |from| pings |to| (a host in its table) within |ms|: 0, or the error
 * (NP_ETIMEDOUT for a vanished host). */
static int ping_host(int from, int to, uint64_t ms) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  pingw w = {0, 0};
  double end = wall() + (double)ms / 1e3 + 5;
  int rv = ops->ping(net, &H[to].id.id, ms, on_ping, &w, NULL);
  if (rv != 0)
    return rv;
  while (!w.done && wall() < end)
    ev_run(ev, EVRUN_ONCE);
  return w.done ? w.err : NP_ETIMEDOUT;
}

static int live_host(void) {
  for (int tries = 0; tries < 100000; tries++) {
    int i = rnd_below(N);
    if (!H[i].gone)
      return i;
  }
  return -1;
}

static int cmp_u(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

enum { K_FIND, K_CLOSEST };
static const char *const kind_name[] = {"find", "closest"};

typedef struct level_res {
  int kind, gone_pct, gone, lookups, started, found;
  double rate, hops_mean, hops_p95, sent_mean, sent_p95, ms_mean, ms_p95;
  unsigned hops_max;
  uint64_t sent_max;
  double ms_max, wall_s;
} level_res;

static double pct95(double *v, int n) {
  if (n == 0)
    return 0;
  qsort(v, (size_t)n, sizeof(*v), cmp_u);
  return v[(int)((double)(n - 1) * 0.95 + 0.5)];
}

/* |count| lookups of |kind|, |conc| at once, each from a distinct idle
 * live host: find_peer of a random live host, or closest of a random key. */
static void run_lookups(int count, int conc, int kind, level_res *r) {
  lookw *w = calloc((size_t)count, sizeof(*w));
  double *hv = calloc((size_t)count, sizeof(double));
  double *sv = calloc((size_t)count, sizeof(double));
  double *mv = calloc((size_t)count, sizeof(double));
  int next = 0, running = 0, nd = 0;
  double t0 = wall(), end = t0 + 40.0 + (double)count * 40.0 / conc;
  memset(r, 0, sizeof(*r));
  r->kind = kind;
  while ((next < count || running > 0) && wall() < end) {
    while (next < count && running < conc) {
      lookw *x = &w[next];
      np_kad_lookup *lk;
      int rv;
      int s = live_host(), d = live_host();
      if (s < 0 || d < 0 || s == d || H[s].busy)
        continue;
      x->src = s, x->dst = d;
      np_kad_stats_get(H[s].kad, &x->before);
      x->t0 = wall();
      if (kind == K_CLOSEST) {
        uint8_t key[32];
        for (size_t b = 0; b < sizeof(key); b++)
          key[b] = (uint8_t)rnd();
        rv = np_kad_closest(H[s].kad, key, sizeof(key), on_closest, x, &lk);
      } else {
        rv = np_kad_find_peer(H[s].kad, &H[d].id.id, on_peer, x, &lk);
      }
      if (rv != 0) {
        x->done = 1, x->err = -1;
      } else {
        H[s].busy = 1;
        running++;
      }
      next++;
    }
    ev_run(ev, EVRUN_ONCE);
    running = 0;
    for (int i = 0; i < next; i++)
      running += !w[i].done;
  }
  r->lookups = count;
  r->started = next;
  for (int i = 0; i < next; i++) {
    if (!w[i].done)
      continue;
    r->found += w[i].found;
    if (w[i].err == -1)
      continue;
    hv[nd] = w[i].hops, sv[nd] = (double)w[i].sent, mv[nd] = w[i].ms;
    r->hops_mean += w[i].hops, r->sent_mean += (double)w[i].sent;
    r->ms_mean += w[i].ms;
    if (w[i].hops > r->hops_max)
      r->hops_max = w[i].hops;
    if (w[i].sent > r->sent_max)
      r->sent_max = w[i].sent;
    if (w[i].ms > r->ms_max)
      r->ms_max = w[i].ms;
    nd++;
  }
  if (nd > 0)
    r->hops_mean /= nd, r->sent_mean /= nd, r->ms_mean /= nd;
  r->hops_p95 = pct95(hv, nd), r->sent_p95 = pct95(sv, nd);
  r->ms_p95 = pct95(mv, nd);
  r->rate = count ? (double)r->found / count : 0;
  r->wall_s = wall() - t0;
  free(w), free(hv), free(sv), free(mv);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr, "usage: kad_scale [-n hosts] [-g pct,pct,...] "
                  "[-l lookups] [-c concurrent] [-b boot peers] [-s seed] "
                  "[-m find,closest] [-w wave] [-d] [-j json-out]\n"
                  "  -w  bootstraps running at once (100)\n"
                  "  -m  lookup kinds: find_peer of a live host (default), "
                  "closest of a random key\n"
                  "  -d  close every connection after each bootstrap wave "
                  "and once the tables are built\n");
}

static int parse_args(int argc, char **argv, opts *o) {
  int c;
  memset(o, 0, sizeof(*o));
  o->n = 200, o->lookups = 200, o->conc = 25, o->boot = 3;
  o->levels[0] = 0, o->levels[1] = 10, o->levels[2] = 30, o->nlevels = 3;
  o->seed = 1;
  o->kinds = 1; /* find */
  o->wave = 100;
#ifdef KAD_SCALE_CHECK
  o->check = 1, o->lookups = 100;
  o->levels[1] = 30, o->nlevels = 2;
  (void)argc, (void)argv, (void)c;
  return 0;
#else
  while ((c = getopt(argc, argv, "n:g:l:c:b:s:j:m:w:dh")) != -1) {
    switch (c) {
    case 'n': o->n = atoi(optarg); break;
    case 'l': o->lookups = atoi(optarg); break;
    case 'c': o->conc = atoi(optarg); break;
    case 'b': o->boot = atoi(optarg); break;
    case 's': o->seed = (unsigned)strtoul(optarg, NULL, 10); break;
    case 'j': o->json = optarg; break;
    case 'd': o->drop_idle = 1; break;
    case 'w': o->wave = atoi(optarg); break;
    case 'm':
      o->kinds = (strstr(optarg, "find") ? 1 : 0) |
                 (strstr(optarg, "closest") ? 2 : 0);
      break;
    case 'g': {
      char *p = optarg;
      o->nlevels = 0;
      while (*p && o->nlevels < MAX_LEVELS) {
        o->levels[o->nlevels++] = (int)strtol(p, &p, 10);
        if (*p == ',')
          p++;
        else if (*p)
          return -1;
      }
      break;
    }
    default: return -1;
    }
  }
  if (o->kinds == 0 || o->wave < 1 || o->n < 2 || o->lookups < 1 ||
      o->conc < 1 || o->boot < 1 ||
      o->boot > MAX_BOOT || o->nlevels < 1)
    return -1;
  for (int i = 0; i < o->nlevels; i++)
    if (o->levels[i] < 0 || o->levels[i] > 90 ||
        (i > 0 && o->levels[i] < o->levels[i - 1]))
      return -1;
  return 0;
#endif
}

/* Close every connection of every host (nothing is in flight). */
static void drop_all(void) {
  static np_conn_info ci[512];
  for (int i = 0; i < N; i++) {
    void *net;
    const np_net_ops *ops = np_host_net(H[i].h, &net);
    size_t k = ops->conns(net, ci, 512);
    for (size_t j = 0; j < k && j < 512; j++)
      ops->disconnect(net, &ci[j].peer);
  }
}

static size_t total_conns(void) {
  size_t n = 0;
  for (int i = 0; i < N; i++) {
    void *net;
    const np_net_ops *ops = np_host_net(H[i].h, &net);
    if (!H[i].gone)
      n += ops->conns(net, NULL, 0);
  }
  return n;
}

int main(int argc, char **argv) {
  opts o;
  level_res res[MAX_LEVELS * 2];
  int nres = 0;
  double t_start = wall(), rss0, rss_hosts, rss_boot, t_boot, t_built;
  size_t entries = 0, minsz = (size_t)-1, conns;
  int boot_fails = 0, up_fails = 0, gone = 0, last_gone = -1;
  int gone_ping = 0, live_ping = -1;
  FILE *jf = NULL;
  if (parse_args(argc, argv, &o) != 0) {
    usage();
    return 2;
  }
  N = o.n;
  rng_state = 0x9e3779b97f4a7c15ull ^ o.seed;
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  alarm(o.check ? 170 : 36000);
  H = calloc((size_t)N, sizeof(*H));
  malloc_trim(0);
  rss0 = rss_mb();

  for (int i = 0; i < N; i++)
    up_fails += host_up(i) != 0;
  malloc_trim(0);
  rss_hosts = rss_mb();
  printf("# %d hosts up (%d failed), RSS %.1f MB (%.1f KB per idle host), "
         "%.1f s\n",
         N, up_fails, rss_hosts, (rss_hosts - rss0) * 1024.0 / N,
         wall() - t_start);
  fflush(stdout);

  /* Waves: host 1..9 one at a time, then as many at once as are in, at
   * most o.wave. With -d, no lookup is running between waves: every
   * connection is closed then (keepalive pings on idle connections would
   * otherwise take the CPU at 10,000 hosts; the DHT dials again). */
  t_boot = wall();
  for (int i = 1; i < N;) {
    int to = i < 10 ? i + 1 : (i * 2 < N ? i * 2 : N);
    if (to - i > o.wave)
      to = i + o.wave;
    boot_fails += boot_wave(i, to, o.boot);
    if (o.drop_idle) {
      run_once_for(0.05); /* identify exchanges of the wave end */
      drop_all();
    }
    i = to;
  }
  t_built = wall();
  for (int i = 0; i < N; i++) {
    size_t s = np_kbucket_size(np_kad_table(H[i].kad));
    entries += s;
    if (s < minsz)
      minsz = s;
  }
  conns = total_conns();
  malloc_trim(0);
  rss_boot = rss_mb();
  printf("# bootstrap: %.1f s, %d failed; table entries %zu (mean %.1f, "
         "min %zu); connections %zu (%.1f per host)\n",
         t_built - t_boot, boot_fails, entries, (double)entries / N, minsz,
         conns, (double)conns / N);
  {
    size_t ps = 0;
    for (int i = 0; i < N; i++)
      ps += np_peerstore_count(np_host_peerstore(H[i].h));
    printf("# heap in use %.1f MB; peerstore entries %zu (%.1f per host, "
           "%zu bytes each)\n",
           heap_mb(), ps, (double)ps / N, sizeof(np_ps_peer));
  }
  printf("# RSS %.1f MB; bootstrap added %.1f MB: %.0f bytes per table "
         "entry with its connections and peerstore entries; np_kbucket's "
         "own accounting: %zu bytes per entry\n",
         rss_boot, rss_boot - rss_hosts,
         entries ? (rss_boot - rss_hosts) * 1048576.0 / (double)entries : 0,
         np_kbucket_entry_size());
  fflush(stdout);
  if (o.drop_idle) {
    double rss_d;
    drop_all();
    run_once_for(1.0);
    malloc_trim(0);
    rss_d = rss_mb();
    printf("# every connection closed: %zu left, RSS %.1f MB (%.0f bytes "
           "per table entry without connections)\n",
           total_conns(), rss_d,
           entries ? (rss_d - rss_hosts) * 1048576.0 / (double)entries : 0);
  }

  for (int lv = 0; lv < o.nlevels; lv++) {
    int want = (int)((long)N * o.levels[lv] / 100);
    while (gone < want) {
      int i = rnd_below(N);
      if (H[i].gone)
        continue;
      np_swarm_mem_vanish(np_host_swarm(H[i].h));
      H[i].gone = 1;
      last_gone = i;
      gone++;
    }
    /* The loss is real: a live host that lists the vanished one in its
     * table (so knows its address) gets no answer to a ping, while its
     * pings to a live peer in its table are answered. */
    for (int i = 0; i < N && last_gone >= 0 && gone_ping == 0; i++)
      if (!H[i].gone && np_kbucket_contains(np_kad_table(H[i].kad),
                                            &H[last_gone].id.id))
        gone_ping = ping_host(i, last_gone, 1000);
    for (int i = 0; i < N && live_ping < 0; i++)
      for (int j = 0; j < N && live_ping < 0 && !H[i].gone; j++)
        if (j != i && !H[j].gone &&
            np_kbucket_contains(np_kad_table(H[i].kad), &H[j].id.id))
          live_ping = ping_host(i, j, 10000);
    for (int kd = K_FIND; kd <= K_CLOSEST; kd++) {
      level_res *r = &res[nres];
      if (!(o.kinds & (1 << kd)))
        continue;
      run_lookups(o.lookups, o.conc, kd, r);
      r->gone_pct = o.levels[lv];
      r->gone = gone;
      nres++;
      printf("# %2d%% gone (%d hosts), %s: %d/%d found (%.3f); hops mean "
             "%.2f p95 %.0f max %u; requests mean %.1f p95 %.0f max %llu; "
             "latency ms mean %.1f p95 %.1f max %.1f; %.1f s\n",
             r->gone_pct, gone, kind_name[kd], r->found, r->lookups, r->rate,
             r->hops_mean, r->hops_p95, r->hops_max, r->sent_mean,
             r->sent_p95, (unsigned long long)r->sent_max, r->ms_mean,
             r->ms_p95, r->ms_max, r->wall_s);
    }
    fflush(stdout);
  }
  printf("# total %.1f s, RSS %.1f MB\n", wall() - t_start, rss_mb());

  if (o.json && (jf = fopen(o.json, "w")) != NULL) {
    fprintf(jf,
            "{\"hosts\":%d,\"boot_peers\":%d,\"seed\":%u,\"up_failed\":%d,"
            "\"boot_failed\":%d,\"boot_s\":%.1f,\"entries\":%zu,"
            "\"entries_min\":%zu,\"conns\":%zu,\"rss0_mb\":%.1f,"
            "\"rss_hosts_mb\":%.1f,\"rss_boot_mb\":%.1f,"
            "\"bytes_per_entry_rss\":%.0f,\"kbucket_entry_bytes\":%zu,"
            "\"levels\":[",
            N, o.boot, o.seed, up_fails, boot_fails, t_built - t_boot,
            entries, minsz, conns, rss0, rss_hosts, rss_boot,
            entries ? (rss_boot - rss_hosts) * 1048576.0 / (double)entries
                    : 0,
            np_kbucket_entry_size());
    for (int lv = 0; lv < nres; lv++) {
      const level_res *r = &res[lv];
      fprintf(jf,
              "%s{\"kind\":\"%s\",\"gone_pct\":%d,\"gone\":%d,\"lookups\":%d,\"found\":%d,"
              "\"rate\":%.4f,\"hops_mean\":%.3f,\"hops_p95\":%.0f,"
              "\"hops_max\":%u,\"sent_mean\":%.2f,\"sent_p95\":%.0f,"
              "\"sent_max\":%llu,\"ms_mean\":%.1f,\"ms_p95\":%.1f,"
              "\"ms_max\":%.1f,\"wall_s\":%.1f}",
              lv ? "," : "", kind_name[r->kind], r->gone_pct, r->gone, r->lookups, r->found,
              r->rate, r->hops_mean, r->hops_p95, r->hops_max, r->sent_mean,
              r->sent_p95, (unsigned long long)r->sent_max, r->ms_mean,
              r->ms_p95, r->ms_max, r->wall_s);
    }
    fprintf(jf, "],\"total_s\":%.1f}\n", wall() - t_start);
    fclose(jf);
  }

  if (o.check) {
    ok(up_fails == 0, "%d hosts on /memory/", N);
    ok(boot_fails == 0, "every host bootstraps");
    ok(minsz >= 10, "every routing table holds peers (smallest %zu)", minsz);
    ok(live_ping == 0, "a live host answers a ping");
    ok(gone_ping == NP_ETIMEDOUT, "a vanished host does not (%s)",
       np_errname(gone_ping));
    for (int lv = 0; lv < nres; lv++) {
      const level_res *r = &res[lv];
      ok(r->rate >= 0.95, "%d%% gone: %d of %d live targets found",
         r->gone_pct, r->found, r->lookups);
      ok(r->hops_max <= 6 && r->hops_mean <= 4.0,
         "%d%% gone: hops mean %.2f, max %u", r->gone_pct, r->hops_mean,
         r->hops_max);
      ok(r->sent_max <= 200, "%d%% gone: at most %llu requests a lookup",
         r->gone_pct, (unsigned long long)r->sent_max);
    }
  }
  for (int i = 0; i < N; i++) {
    np_daemon_del(H[i].d);
    np_identity_clear(&H[i].id);
  }
  run_once_for(0.1);
  free(H);
  np_crypto_cleanup();
  return o.check ? done_testing() : 0;
}
