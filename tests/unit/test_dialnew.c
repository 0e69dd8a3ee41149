/* np_swarm_dial_new with NP_SWARM_DIAL_NEW_PORT (issue 10 groundwork, for
 * AutoNAT dial-backs): over real QUIC and TCP on loopback, host A already
 * connected to B dials B again from a new ephemeral port. B then sees two
 * connections from A: one from A's listen port and one from another port;
 * a plain fresh dial still leaves from the listen port; the extra
 * connection's socket goes with it (A keeps working after it closes). */
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_swarm.h"
#include "tap.h"

static struct ev_loop *ev;
static np_daemon *D[2];
static np_host *Hh[2];
static np_identity Id[2];

static void run_until(const int *flag, double secs) {
  double end;
  ev_now_update(ev);
  end = ev_now(ev) + secs;
  while (!*flag && ev_now(ev) < end) {
    ev_run(ev, EVRUN_ONCE);
    ev_now_update(ev);
  }
}

static int up(int i) {
  static const char ini[] =
      "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1 /ip4/127.0.0.1/tcp/0\n"
      "log_level = error\n[dht]\nmode = off\n[plugins]\nautoload = no\n";
  np_conf *c;
  char err[256];
  if (np_conf_load_string(&c, "t.ini", ini, sizeof(ini) - 1, err,
                          sizeof(err)) != 0 ||
      np_identity_generate(&Id[i]) != 0 ||
      np_daemon_new(&D[i], ev, c, &Id[i]) != 0)
    return -1;
  Hh[i] = np_daemon_host(D[i]);
  return np_daemon_start(D[i], NP_DAEMON_NET);
}

/* The i-th listen address of host |h| of transport |tcp| (binary). */
static size_t listen_addr(int h, int tcp, uint8_t *out, size_t cap) {
  void *net;
  const np_net_ops *ops = np_host_net(Hh[h], &net);
  const uint8_t *bins[8];
  size_t lens[8], n = ops->addrs(net, bins, lens, 8), i;
  for (i = 0; i < n && i < 8; i++) {
    struct sockaddr_storage ss;
    socklen_t sl;
    int is_tcp = np_maddr_to_sockaddr_tcp(bins[i], lens[i], &ss, &sl) == 0;
    if (is_tcp == tcp && lens[i] <= cap) {
      memcpy(out, bins[i], lens[i]);
      return lens[i];
    }
  }
  return 0;
}

static int port_of(const uint8_t *bin, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl;
  if (np_maddr_to_sockaddr(bin, len, &ss, &sl) != 0 &&
      np_maddr_to_sockaddr_tcp(bin, len, &ss, &sl) != 0)
    return -1;
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Ports B sees A's connections of |transport| come from. */
static size_t ports_seen(int transport, int *ports, size_t max) {
  void *net;
  const np_net_ops *ops = np_host_net(Hh[1], &net);
  np_conn_info ci[16];
  size_t n = ops->conns(net, ci, 16), i, k = 0;
  for (i = 0; i < n && i < 16; i++)
    if (np_peerid_equal(&ci[i].peer, &Id[0].id) &&
        ci[i].transport == transport && k < max)
      ports[k++] = port_of(ci[i].addr, ci[i].addr_len);
  return k;
}

static int fd_count(void) {
  char p[64];
  int n = 0;
  for (int fd = 0; fd < 4096; fd++) {
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    n += access(p, F_OK) == 0;
  }
  return n;
}

typedef struct waitv {
  int done, err;
} waitv;
static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err;
}

int main(void) {
  int tcp;
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  alarm(120);
  ok(up(0) == 0 && up(1) == 0, "two hosts on loopback (QUIC and TCP)");
  for (tcp = 0; tcp < 2; tcp++) {
    const char *name = tcp ? "TCP" : "QUIC";
    int kind = tcp ? NP_TRANSPORT_TCP : NP_TRANSPORT_QUIC;
    uint8_t b[128], a[128];
    size_t bl = listen_addr(1, tcp, b, sizeof(b));
    size_t al = listen_addr(0, tcp, a, sizeof(a));
    const uint8_t *addrs[1] = {b};
    size_t lens[1] = {bl};
    void *net;
    np_swarm *sw = NULL;
    const np_net_ops *ops = np_host_net(Hh[0], &net);
    int ports[8], lp = port_of(a, al), i, other = 0, listen = 0, fds;
    size_t n;
    waitv w;
    sw = net;
    memset(&w, 0, sizeof(w));
    ops->disconnect(net, &Id[1].id);
    np_swarm_dial_new(sw, &Id[1].id, addrs, lens, 1, 0, 10000, on_done, &w,
                      NULL);
    run_until(&w.done, 15);
    fds = fd_count();
    memset(&w, 0, sizeof(w));
    ok(np_swarm_dial_new(sw, &Id[1].id, addrs, lens, 1,
                         NP_SWARM_DIAL_NEW_PORT, 10000, on_done, &w,
                         NULL) == 0,
       "%s: dial_new from a new port starts", name);
    run_until(&w.done, 15);
    ok(w.done && w.err == 0, "%s: it connects (%s)", name, np_errname(w.err));
    {
      int settle = 0;
      double end;
      ev_now_update(ev);
      end = ev_now(ev) + 1;
      while (ev_now(ev) < end)
        run_until(&settle, 0.05);
    }
    n = ports_seen(kind, ports, 8);
    for (i = 0; i < (int)n; i++) {
      if (ports[i] == lp)
        listen++;
      else if (ports[i] > 0)
        other++;
    }
    ok(n == 2 && listen == 1 && other == 1,
       "%s: B sees A from its listen port %d and from another port "
       "(%zu connections)",
       name, lp, n);
    ok(np_swarm_dial_new(sw, &Id[1].id, addrs, lens, 1, 2, 10000, on_done, &w,
                         NULL) == NP_EINVAL,
       "%s: unknown flags are refused", name);
    /* Close everything: the new port's socket goes with its connection
     * (QUIC frees connections a turn later); A still dials B afterwards. */
    ops->disconnect(net, &Id[1].id);
    {
      int settle = 0;
      double end;
      ev_now_update(ev);
      end = ev_now(ev) + 1;
      while (ev_now(ev) < end)
        run_until(&settle, 0.05);
    }
    ok(fd_count() <= fds,
       "%s: no socket left from the new-port dial (%d fds, %d before)", name,
       fd_count(), fds);
    memset(&w, 0, sizeof(w));
    ops->connect(net, &Id[1].id, addrs, lens, 1, 10000, on_done, &w, NULL);
    run_until(&w.done, 15);
    ok(w.done && w.err == 0, "%s: after the close A connects again", name);
  }
  np_daemon_del(D[0]);
  np_daemon_del(D[1]);
  return done_testing();
}
