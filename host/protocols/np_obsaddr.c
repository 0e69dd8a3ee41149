#include "np_obsaddr.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "np_event.h"
#include "np_host.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_swarm.h"

#define OBS_ADDR_MAX 48 /* an /ip6/.../udp/P/quic-v1 is 23 bytes */
#define OBS_PER_ADDR 16 /* observer groups kept per address */
#define OBS_PER_LOCAL 8 /* (group, port) kept per local socket */
#define OBS_ADVERTS 8   /* confirmed addresses advertised */
#define OBS_ADVERT_CHECK_S 60. /* expiry shows in the adverts this late */

typedef struct obs {
  uint8_t group[8]; /* IPv4 address, or IPv6 /56; padded */
  uint64_t at;
} obs;

typedef struct oaddr {
  uint8_t bin[OBS_ADDR_MAX];
  size_t len;
  obs v[OBS_PER_ADDR];
  size_t n;
} oaddr;


typedef struct loc {
  uint8_t bin[OBS_ADDR_MAX];
  size_t len;
  int udp;
  obs v[OBS_PER_LOCAL];
  uint16_t port[OBS_PER_LOCAL]; /* the external port v[i] saw */
  size_t n;
} loc;

struct np_obsaddr {
  np_obsaddr_config cfg;
  /* the module (np_obsaddr_module), when it runs one: */
  np_host *h;
  np_event_sub *sub;
  int mapping[2]; /* last logged, TCP and UDP */
  /* what we advertise through the swarm ("observed" adverts) */
  uint8_t adv[OBS_ADVERTS][OBS_ADDR_MAX];
  size_t advlen[OBS_ADVERTS], nadv;
  ev_timer check;
  int check_on;
  oaddr *addrs;
  size_t naddrs;
  loc *locs;
  size_t nlocs;
};

void np_obsaddr_config_default(np_obsaddr_config *c) {
  c->confirmations = 4;
  c->ttl_ms = 30 * 60 * 1000;
  c->max_addrs = 64;
  c->max_locals = 16;
}

int np_obsaddr_new(np_obsaddr **po, const np_obsaddr_config *cfg) {
  np_obsaddr *o;
  *po = NULL;
  if ((o = calloc(1, sizeof(*o))) == NULL)
    return NP_ENOMEM;
  if (cfg)
    o->cfg = *cfg;
  else
    np_obsaddr_config_default(&o->cfg);
  if (o->cfg.confirmations == 0 || o->cfg.confirmations > OBS_PER_ADDR ||
      o->cfg.ttl_ms == 0 || o->cfg.max_addrs == 0 || o->cfg.max_locals == 0) {
    free(o);
    return NP_EINVAL;
  }
  o->addrs = calloc(o->cfg.max_addrs, sizeof(*o->addrs));
  o->locs = calloc(o->cfg.max_locals, sizeof(*o->locs));
  if (o->addrs == NULL || o->locs == NULL) {
    np_obsaddr_del(o);
    return NP_ENOMEM;
  }
  *po = o;
  return 0;
}

void np_obsaddr_del(np_obsaddr *o) {
  if (o == NULL)
    return;
  free(o->addrs);
  free(o->locs);
  free(o);
}

/* The socket address of an /ip../udp/P/quic-v1 or /ip../tcp/P address;
 * |*udp| says which. 0 or an error. */
static int sock_of(const uint8_t *bin, size_t len, struct sockaddr_storage *ss,
                   int *udp) {
  socklen_t sl;
  if (np_maddr_to_sockaddr(bin, len, ss, &sl) == 0) {
    *udp = 1;
    return 0;
  }
  *udp = 0;
  return np_maddr_to_sockaddr_tcp(bin, len, ss, &sl);
}

static void group_of(const struct sockaddr_storage *ss, uint8_t g[8]) {
  memset(g, 0, 8);
  if (ss->ss_family == AF_INET) {
    memcpy(g, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
  } else {
    memcpy(g, ((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr.s6_addr,
           7);
    g[7] = 6; /* not a v4 group */
  }
}

static uint16_t port_of(const struct sockaddr_storage *ss) {
  return ntohs(ss->ss_family == AF_INET
                   ? ((const struct sockaddr_in *)(const void *)ss)->sin_port
                   : ((const struct sockaddr_in6 *)(const void *)ss)
                         ->sin6_port);
}

static size_t live(const oaddr *a, uint64_t now, uint64_t ttl) {
  size_t i, n = 0;
  for (i = 0; i < a->n; i++)
    if (a->v[i].at + ttl > now)
      n++;
  return n;
}

/* The entry of |bin| in |o|, created (taking the stalest slot when full). */
static oaddr *addr_slot(np_obsaddr *o, const uint8_t *bin, size_t len,
                        uint64_t now) {
  size_t i, worst = 0, wl = SIZE_MAX;
  for (i = 0; i < o->naddrs; i++)
    if (o->addrs[i].len == len && memcmp(o->addrs[i].bin, bin, len) == 0)
      return &o->addrs[i];
  if (o->naddrs < o->cfg.max_addrs) {
    i = o->naddrs++;
  } else {
    for (i = 0; i < o->naddrs; i++) {
      size_t l = live(&o->addrs[i], now, o->cfg.ttl_ms);
      if (l < wl)
        wl = l, worst = i;
    }
    i = worst;
  }
  memset(&o->addrs[i], 0, sizeof(o->addrs[i]));
  memcpy(o->addrs[i].bin, bin, len);
  o->addrs[i].len = len;
  return &o->addrs[i];
}

static loc *loc_slot(np_obsaddr *o, const uint8_t *bin, size_t len, int udp) {
  size_t i, oldest = 0;
  uint64_t ot = UINT64_MAX;
  for (i = 0; i < o->nlocs; i++)
    if (o->locs[i].len == len && memcmp(o->locs[i].bin, bin, len) == 0)
      return &o->locs[i];
  if (o->nlocs < o->cfg.max_locals) {
    i = o->nlocs++;
  } else {
    for (i = 0; i < o->nlocs; i++) {
      uint64_t t = 0;
      for (size_t j = 0; j < o->locs[i].n; j++)
        if (o->locs[i].v[j].at > t)
          t = o->locs[i].v[j].at;
      if (t < ot)
        ot = t, oldest = i;
    }
    i = oldest;
  }
  memset(&o->locs[i], 0, sizeof(o->locs[i]));
  memcpy(o->locs[i].bin, bin, len);
  o->locs[i].len = len;
  o->locs[i].udp = udp;
  return &o->locs[i];
}

/* Record (group, at) in |v| of |n| entries (cap |max|): refresh the
 * group's entry or take the oldest. Returns the index. */
static size_t note(obs *v, size_t *n, size_t max, const uint8_t g[8],
                   uint64_t now) {
  size_t i, oldest = 0;
  for (i = 0; i < *n; i++)
    if (memcmp(v[i].group, g, 8) == 0)
      break;
  if (i == *n) {
    if (*n < max) {
      (*n)++;
    } else {
      for (i = 1, oldest = 0; i < max; i++)
        if (v[i].at < v[oldest].at)
          oldest = i;
      i = oldest;
    }
    memcpy(v[i].group, g, 8);
  }
  v[i].at = now;
  return i;
}

int np_obsaddr_add(np_obsaddr *o, const uint8_t *local, size_t llen,
                   const uint8_t *observed, size_t olen,
                   const uint8_t *observer, size_t rlen, uint64_t now) {
  struct sockaddr_storage so, sr, sl;
  int udp, rudp, ludp;
  uint8_t g[8];
  oaddr *a;
  size_t before;
  if (observed == NULL || observer == NULL || olen == 0 ||
      olen > OBS_ADDR_MAX)
    return NP_EINVAL;
  if (sock_of(observed, olen, &so, &udp) != 0 ||
      sock_of(observer, rlen, &sr, &rudp) != 0)
    return 0; /* not an IP address we can use */
  group_of(&sr, g);
  a = addr_slot(o, observed, olen, now);
  before = live(a, now, o->cfg.ttl_ms);
  note(a->v, &a->n, OBS_PER_ADDR, g, now);
  if (local && llen && llen <= OBS_ADDR_MAX &&
      sock_of(local, llen, &sl, &ludp) == 0 && ludp == udp) {
    loc *l = loc_slot(o, local, llen, udp);
    l->port[note(l->v, &l->n, OBS_PER_LOCAL, g, now)] = port_of(&so);
  }
  return before < o->cfg.confirmations &&
         live(a, now, o->cfg.ttl_ms) >= o->cfg.confirmations;
}

size_t np_obsaddr_confirmed(const np_obsaddr *o, uint64_t now,
                            const uint8_t **bins, size_t *lens, size_t max) {
  size_t i, n = 0;
  /* Insertion by report count, most first. */
  size_t cnt[64];
  for (i = 0; i < o->naddrs; i++) {
    size_t l = live(&o->addrs[i], now, o->cfg.ttl_ms), j;
    if (l < o->cfg.confirmations)
      continue;
    if (n < max && n < 64) {
      for (j = n; j > 0 && cnt[j - 1] < l; j--) {
        bins[j] = bins[j - 1], lens[j] = lens[j - 1], cnt[j] = cnt[j - 1];
      }
      bins[j] = o->addrs[i].bin, lens[j] = o->addrs[i].len, cnt[j] = l;
    }
    n++;
  }
  return n;
}

int np_obsaddr_mapping(const np_obsaddr *o, int udp, uint64_t now) {
  int m = NP_MAPPING_UNKNOWN;
  size_t i, a, b;
  for (i = 0; i < o->nlocs; i++) {
    const loc *l = &o->locs[i];
    if (l->udp != udp)
      continue;
    for (a = 0; a < l->n; a++) {
      if (l->v[a].at + o->cfg.ttl_ms <= now)
        continue;
      for (b = a + 1; b < l->n; b++) {
        if (l->v[b].at + o->cfg.ttl_ms <= now)
          continue;
        if (l->port[a] != l->port[b])
          return NP_MAPPING_DEPENDENT;
        m = NP_MAPPING_INDEPENDENT;
      }
    }
  }
  return m;
}

const char *np_obsaddr_mapping_name(int m) {
  return m == NP_MAPPING_INDEPENDENT ? "independent"
         : m == NP_MAPPING_DEPENDENT ? "dependent"
                                     : "unknown";
}

/* Keep the unexpired entries of |v| (and their |port|, when given) in
 * order; returns how many are left. */
static size_t compact(obs *v, uint16_t *port, size_t n, uint64_t ttl,
                      uint64_t now) {
  size_t j, k = 0;
  for (j = 0; j < n; j++)
    if (v[j].at + ttl > now) {
      if (port)
        port[k] = port[j];
      v[k++] = v[j];
    }
  return k;
}

void np_obsaddr_expire(np_obsaddr *o, uint64_t now) {
  size_t i;
  for (i = 0; i < o->naddrs;) {
    oaddr *a = &o->addrs[i];
    if ((a->n = compact(a->v, NULL, a->n, o->cfg.ttl_ms, now)) == 0)
      o->addrs[i] = o->addrs[--o->naddrs];
    else
      i++;
  }
  for (i = 0; i < o->nlocs;) {
    loc *l = &o->locs[i];
    if ((l->n = compact(l->v, l->port, l->n, o->cfg.ttl_ms, now)) == 0)
      o->locs[i] = o->locs[--o->nlocs];
    else
      i++;
  }
}

/* ---- the module
 * ---------------------------------------------------------------------- */

/* Is |port| the port of one of our TCP listen addresses? Our adverts are
 * left out: an advertised address must not vouch for itself. */
static int tcp_listen_port(np_obsaddr *o, uint16_t port) {
  const uint8_t *bins[32];
  size_t lens[32], n, i, j;
  void *net;
  const np_net_ops *ops = np_host_net(o->h, &net);
  if (ops == NULL || ops->addrs == NULL)
    return 0;
  n = ops->addrs(net, bins, lens, 32);
  for (i = 0; i < n && i < 32; i++) {
    struct sockaddr_storage ss;
    socklen_t sl;
    int mine = 0;
    for (j = 0; j < o->nadv && !mine; j++)
      mine = o->advlen[j] == lens[i] && memcmp(o->adv[j], bins[i], lens[i]) == 0;
    if (!mine && np_maddr_to_sockaddr_tcp(bins[i], lens[i], &ss, &sl) == 0 &&
        port_of(&ss) == port)
      return 1;
  }
  return 0;
}

/* Advertise the confirmed addresses (identify, the signed peer record and
 * the DHT carry them): every QUIC one (QUIC dials leave from the listen
 * socket, so the mapping is that of the socket peers dial), and TCP ones
 * whose external port is one of our TCP listen ports (TCP dials leave
 * from the listen port through SO_REUSEPORT, falling back to an ephemeral
 * port whose mapping nobody can dial; a NAT that keeps the port shows
 * which case it was). Updates the swarm only when the set changed. */
static void adverts_update(np_obsaddr *o, uint64_t now) {
  const uint8_t *bins[OBS_ADVERTS * 2], *keep[OBS_ADVERTS];
  size_t lens[OBS_ADVERTS * 2], klen[OBS_ADVERTS], n, i, k = 0;
  int same;
  np_swarm *sw = np_host_swarm(o->h);
  if (sw == NULL)
    return;
  n = np_obsaddr_confirmed(o, now, bins, lens, OBS_ADVERTS * 2);
  for (i = 0; i < n && i < OBS_ADVERTS * 2 && k < OBS_ADVERTS; i++) {
    struct sockaddr_storage ss;
    int udp;
    if (sock_of(bins[i], lens[i], &ss, &udp) != 0)
      continue;
    if (!udp && !tcp_listen_port(o, port_of(&ss)))
      continue;
    keep[k] = bins[i], klen[k++] = lens[i];
  }
  same = k == o->nadv;
  for (i = 0; i < k && same; i++)
    same = klen[i] == o->advlen[i] && memcmp(keep[i], o->adv[i], klen[i]) == 0;
  if (same)
    return;
  for (i = 0; i < k; i++) {
    memcpy(o->adv[i], keep[i], klen[i]);
    o->advlen[i] = klen[i];
    keep[i] = o->adv[i]; /* the tracker's copies move on the next add */
  }
  o->nadv = k;
  if (np_swarm_set_adverts(sw, "observed", keep, klen, k) == 0)
    np_info("nat", "observed-adverts n=%zu", k);
}

static void on_check(struct ev_loop *ev, ev_timer *w, int revents) {
  np_obsaddr *o = np_container_of(w, np_obsaddr, check);
  uint64_t now = np_now(np_host_loop(o->h));
  (void)ev, (void)revents;
  np_obsaddr_expire(o, now);
  adverts_update(o, now);
}

static void on_observed(const np_event *ev, void *ud) {
  np_obsaddr *o = ud;
  uint64_t now = np_now(np_host_loop(o->h));
  char text[256];
  int udp;
  if (ev->conn == NULL || ev->raddr_len == 0)
    return;
  np_obsaddr_expire(o, now);
  if (np_obsaddr_add(o, ev->laddr, ev->laddr_len, ev->observed,
                     ev->observed_len, ev->raddr, ev->raddr_len, now) == 1 &&
      np_maddr_to_string(ev->observed, ev->observed_len, text,
                         sizeof(text)) >= 0)
    np_info("nat", "external-address-confirmed addr=%s", text);
  adverts_update(o, now);
  for (udp = 0; udp < 2; udp++) {
    int mp = np_obsaddr_mapping(o, udp, now);
    if (mp != o->mapping[udp] && mp != NP_MAPPING_UNKNOWN) {
      o->mapping[udp] = mp;
      np_info("nat", "mapping-learned transport=%s mapping=%s",
              udp ? "udp" : "tcp", np_obsaddr_mapping_name(mp));
    }
  }
}

static int obs_start(np_host *h, void **state) {
  np_obsaddr *o;
  int rv = np_obsaddr_new(&o, NULL);
  if (rv != 0)
    return rv;
  o->h = h;
  if ((rv = np_events_subscribe(np_host_events(h), NP_EV_OBSERVED_ADDR,
                                on_observed, o, &o->sub)) != 0) {
    np_obsaddr_del(o);
    return rv;
  }
  ev_timer_init(&o->check, on_check, OBS_ADVERT_CHECK_S, OBS_ADVERT_CHECK_S);
  ev_timer_start(np_loop_ev(np_host_loop(h)), &o->check);
  o->check_on = 1;
  *state = o;
  return 0;
}

static void obs_stop(void *state) {
  np_obsaddr *o = state;
  if (o == NULL)
    return;
  np_events_unsubscribe(np_host_events(o->h), o->sub);
  if (o->check_on)
    ev_timer_stop(np_loop_ev(np_host_loop(o->h)), &o->check);
  if (o->nadv && np_host_swarm(o->h))
    np_swarm_set_adverts(np_host_swarm(o->h), "observed", NULL, NULL, 0);
  np_obsaddr_del(o);
}

const np_module np_obsaddr_module = {"obsaddr", obs_start, obs_stop};
