/* np_obsaddr: an observed address is confirmed by 4 distinct observer
 * groups (not by one peer repeating itself, nor by IPv6 neighbours in one
 * /56), reports expire, the tracker stays bounded under a flood of
 * different addresses, and the NAT's mapping behaviour follows from the
 * external ports different observers saw for one local socket. */
#include <stdio.h>
#include <string.h>

#include "np_multiaddr.h"
#include "np_obsaddr.h"
#include "tap.h"

static size_t ma(const char *t, uint8_t *out) {
  np_ssize n = np_maddr_parse(t, strlen(t), out, 64);
  return n < 0 ? 0 : (size_t)n;
}

/* Report |obs| seen by |observer| on local socket |local|. */
static int rep(np_obsaddr *o, const char *local, const char *obs,
               const char *observer, uint64_t now) {
  uint8_t l[64], a[64], r[64];
  size_t ll = local ? ma(local, l) : 0;
  return np_obsaddr_add(o, local ? l : NULL, ll, a, ma(obs, a), r,
                        ma(observer, r), now);
}

#define L "/ip4/10.1.0.2/udp/4001/quic-v1"
#define EXT "/ip4/198.51.100.2/udp/4001/quic-v1"

int main(void) {
  np_obsaddr *o;
  const uint8_t *bins[8];
  size_t lens[8];
  uint8_t want[64];
  size_t wl = ma(EXT, want);
  char peer[64];
  int i, r, got;

  ok(np_obsaddr_new(&o, NULL) == 0, "new with defaults");
  r = rep(o, L, EXT, "/ip4/192.0.2.10/udp/4001/quic-v1", 1000);
  r |= rep(o, L, EXT, "/ip4/192.0.2.10/udp/4001/quic-v1", 1001);
  r |= rep(o, L, EXT, "/ip4/192.0.2.10/tcp/4001", 1002);
  ok(r == 0 && np_obsaddr_confirmed(o, 1003, bins, lens, 8) == 0,
     "one observer repeating itself confirms nothing");
  r = rep(o, L, EXT, "/ip6/2001:db8:1:100::1/udp/1/quic-v1", 1003);
  r |= rep(o, L, EXT, "/ip6/2001:db8:1:1ff::2/udp/1/quic-v1", 1004);
  ok(r == 0 && np_obsaddr_confirmed(o, 1005, bins, lens, 8) == 0,
     "IPv6 observers in one /56 count once (2 groups so far)");
  r = rep(o, L, EXT, "/ip4/192.0.2.20/udp/4001/quic-v1", 1005);
  ok(r == 0, "three groups: not yet");
  r = rep(o, L, EXT, "/ip4/192.0.2.30/udp/4001/quic-v1", 1006);
  got = (int)np_obsaddr_confirmed(o, 1007, bins, lens, 8);
  ok(r == 1 && got == 1 && lens[0] == wl && memcmp(bins[0], want, wl) == 0,
     "the fourth group confirms it (add says so once)");
  ok(rep(o, L, EXT, "/ip4/192.0.2.40/udp/4001/quic-v1", 1008) == 0,
     "a fifth report does not announce it again");
  ok(np_obsaddr_mapping(o, 1, 1009) == NP_MAPPING_INDEPENDENT &&
         np_obsaddr_mapping(o, 0, 1009) == NP_MAPPING_UNKNOWN,
     "same external port for every observer: independent mapping (UDP)");
  ok(np_obsaddr_confirmed(o, 1000 + 30 * 60 * 1000 + 10, bins, lens, 8) == 0,
     "reports expire after 30 minutes");
  np_obsaddr_expire(o, 1000 + 30 * 60 * 1000 + 10);

  /* Symmetric NAT: one local socket, a new port per destination. */
  for (i = 0; i < 3; i++) {
    char ext[64], obs[64];
    snprintf(ext, sizeof(ext), "/ip4/203.0.113.2/udp/%d/quic-v1", 30000 + i);
    snprintf(obs, sizeof(obs), "/ip4/192.0.2.%d/udp/4001/quic-v1", 10 + i);
    rep(o, L, ext, obs, 5000000 + (uint64_t)i);
  }
  ok(np_obsaddr_mapping(o, 1, 5000010) == NP_MAPPING_DEPENDENT &&
         np_obsaddr_confirmed(o, 5000010, bins, lens, 8) == 0,
     "a port per destination: dependent mapping, nothing confirmed");
  ok(strcmp(np_obsaddr_mapping_name(NP_MAPPING_DEPENDENT), "dependent") == 0,
     "mapping names");

  /* Not IP: ignored. */
  ok(rep(o, NULL, "/memory/x", "/memory/y", 5000020) == 0,
     "non-IP addresses are ignored");

  /* A flood of different addresses from many observers stays bounded and
   * does not push out a confirmed address. */
  for (i = 0; i < 4; i++) {
    snprintf(peer, sizeof(peer), "/ip4/192.0.2.%d/udp/1/quic-v1", 100 + i);
    rep(o, L, EXT, peer, 6000000);
  }
  for (i = 0; i < 5000; i++) {
    char ext[64];
    snprintf(ext, sizeof(ext), "/ip4/203.0.113.%d/tcp/%d", i % 250, 1 + i);
    snprintf(peer, sizeof(peer), "/ip4/192.0.%d.%d/tcp/1", 3 + (i / 250) % 200,
             i % 250);
    rep(o, NULL, ext, peer, 6000001);
  }
  got = (int)np_obsaddr_confirmed(o, 6000002, bins, lens, 8);
  ok(got == 1 && lens[0] == wl && memcmp(bins[0], want, wl) == 0,
     "5000 one-off addresses do not evict the confirmed one");
  np_obsaddr_del(o);
  {
    np_obsaddr_config c;
    np_obsaddr_config_default(&c);
    c.confirmations = 0;
    ok(np_obsaddr_new(&o, &c) == NP_EINVAL && o == NULL,
       "a zero confirmation count is refused");
  }
  return done_testing();
}
