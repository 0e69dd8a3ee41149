/* np_swarm_set_adverts (issue 10): modules announce addresses beyond the
 * listen ones (a relay's circuit address, a confirmed observed address).
 * Over real QUIC on loopback: the set shows in np_net_ops addrs, one
 * NP_EV_LOCAL_ADDRS_CHANGED per change (none when nothing changed), and
 * identify pushes it, so a connected peer's peerstore learns it; owners
 * and sizes are bounded. */
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
#include "np_peerstore.h"
#include "np_swarm.h"
#include "tap.h"

static struct ev_loop *ev;
static np_daemon *D[2];
static np_host *Hh[2];
static np_identity Id[2];
static int nevents, connected;

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

static int up(int i) {
  static const char ini[] =
      "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
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

static void on_ev(const np_event *e, void *ud) {
  (void)ud;
  if (e->type == NP_EV_LOCAL_ADDRS_CHANGED)
    nevents++;
}

static void on_conn(void *ud, int err) {
  (void)ud;
  connected = err == 0 ? 1 : -1;
}

static int has_addr(int h, const uint8_t *bin, size_t len) {
  void *net;
  const np_net_ops *ops = np_host_net(Hh[h], &net);
  const uint8_t *bins[40];
  size_t lens[40], n = ops->addrs(net, bins, lens, 40);
  for (size_t i = 0; i < n && i < 40; i++)
    if (lens[i] == len && memcmp(bins[i], bin, len) == 0)
      return 1;
  return 0;
}

/* B's peerstore has |bin| for A. */
static int peer_knows(const uint8_t *bin, size_t len) {
  np_ps_peer *p =
      np_peerstore_get(np_host_peerstore(Hh[1]), &np_host_identity(Hh[0])->id);
  for (size_t i = 0; p && i < p->naddrs; i++)
    if (p->addrs[i].len == len && memcmp(p->addrs[i].bin, bin, len) == 0)
      return 1;
  return 0;
}


static void wait_knows(const uint8_t *bin, size_t len, int want) {
  double end;
  ev_now_update(ev);
  end = ev_now(ev) + 5;
  while (peer_knows(bin, len) != want && ev_now(ev) < end) {
    ev_run(ev, EVRUN_ONCE);
    ev_now_update(ev);
  }
}

int main(void) {
  np_swarm *sw;
  void *net;
  const np_net_ops *ops;
  uint8_t circ[128], obs[64], baddr[128];
  const uint8_t *bins[2];
  size_t lens[2], nb;
  np_ssize n1, n2;
  char t[300];
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);

  ok(up(0) == 0 && up(1) == 0, "two hosts up on loopback QUIC");
  sw = np_host_swarm(Hh[0]);
  np_events_subscribe(np_host_events(Hh[0]), NP_EV_LOCAL_ADDRS_CHANGED, on_ev,
                      NULL, NULL);
  snprintf(t, sizeof(t), "/ip4/192.0.2.7/udp/4001/quic-v1/p2p/%s/p2p-circuit",
           np_host_identity(Hh[1])->id_str);
  n1 = np_maddr_parse(t, strlen(t), circ, sizeof(circ));
  {
    const char *o = "/ip4/198.51.100.9/udp/5555/quic-v1";
    n2 = np_maddr_parse(o, strlen(o), obs, sizeof(obs));
  }
  ok(n1 > 0 && n2 > 0, "addresses parse");

  /* A connects to B and B reads A's identify. */
  ops = np_host_net(Hh[0], &net);
  {
    void *bnet;
    const np_net_ops *bops = np_host_net(Hh[1], &bnet);
    const uint8_t *bb[4];
    size_t bl[4];
    void *hd;
    nb = bops->addrs(bnet, bb, bl, 4);
    memcpy(baddr, bb[0], bl[0]);
    lens[0] = bl[0];
    bins[0] = baddr;
    ok(nb >= 1 && ops->connect(net, &np_host_identity(Hh[1])->id, bins, lens,
                               1, 5000, on_conn, NULL, &hd) == 0,
       "A dials B");
  }
  run_until(&connected, 5);
  ok(connected == 1, "connected");
  spin(0.3);

  bins[0] = circ;
  lens[0] = (size_t)n1;
  bins[1] = obs;
  lens[1] = (size_t)n2;
  is_int(np_swarm_set_adverts(sw, "relay", bins, lens, 1), 0, "set relay");
  is_int(np_swarm_set_adverts(sw, "observed", bins + 1, lens + 1, 1), 0,
         "set observed");
  ok(has_addr(0, circ, (size_t)n1) && has_addr(0, obs, (size_t)n2),
     "both in np_net_ops addrs at once");
  spin(0.05);
  is_int(nevents, 1, "one NP_EV_LOCAL_ADDRS_CHANGED for the burst");
  wait_knows(circ, (size_t)n1, 1);
  ok(peer_knows(circ, (size_t)n1) && peer_knows(obs, (size_t)n2),
     "identify push told B both");

  is_int(np_swarm_set_adverts(sw, "relay", bins, lens, 1), 0, "same again");
  spin(0.05);
  is_int(nevents, 1, "no event when nothing changed");

  is_int(np_swarm_set_adverts(sw, "relay", NULL, NULL, 0), 0, "clear relay");
  ok(!has_addr(0, circ, (size_t)n1) && has_addr(0, obs, (size_t)n2),
     "cleared owner's address gone, the other kept");
  spin(0.05);
  is_int(nevents, 2, "event for the clear");

  is_int(np_swarm_set_adverts(sw, "", bins, lens, 1), NP_EINVAL,
         "empty owner refused");
  {
    int rv = 0;
    char o[8];
    for (int k = 0; k < 4 && rv == 0; k++) {
      snprintf(o, sizeof(o), "o%d", k);
      rv = np_swarm_set_adverts(sw, o, bins, lens, 1);
    }
    is_int(rv, NP_ELIMIT, "a fifth owner is refused");
  }
  ok(np_swarm_add_transport(sw, NULL) == NP_EINVAL, "NULL transport refused");

  np_daemon_del(D[0]);
  np_daemon_del(D[1]);
  np_identity_clear(&Id[0]);
  np_identity_clear(&Id[1]);
  return done_testing();
}
