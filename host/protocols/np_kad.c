#include "np_kad.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_host.h"
#include "np_kadmsg.h"
#include "np_kadquery.h"
#include "np_list.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_stream.h"

#define KAD_ADDRS_SENT NP_PS_MAX_ADDRS /* every address we keep, relays too */
#define KAD_BOOT_MAX 64       /* bootstrap peers per call */
#define KAD_OUT_MAX (64 * 1024) /* unsent answer bytes before a reset */
#define KAD_OWN_MAX 1024      /* own puts and provides kept to republish */
#define KAD_RATE_SLOTS 256    /* per-peer inbound rate counters */
#define KAD_TICK_MS 10000     /* housekeeping period */
#define KAD_REPUBLISH_PER_TICK 8
#define KAD_SELF_ADDRS 16     /* our addresses in an ADD_PROVIDER */
#define KAD_SEEN_MAX 256      /* providers / peers one lookup reports */
#define KAD_REBOOT_MIN_MS 5000

/* Our own put or provide, re-sent every republish_ms. */
typedef struct own {
  np_list link; /* in kad->own */
  int provide;
  uint64_t due; /* np_now ms */
  uint8_t *key, *val;
  size_t klen, vlen;
  np_kad_lookup *lk; /* a republish under way */
} own;

typedef struct rslot { /* inbound requests of one peer in one second */
  np_peerid peer;
  uint64_t start;
  unsigned n;
} rslot;

struct np_kad {
  np_host *h;
  np_kad_config cfg;
  np_kadmsg_limits lim;
  np_kbucket *table;
  np_kadstore *store;
  np_event_sub *sub;
  np_list streams; /* every np_stream it holds (owner_link) */
  np_list inbound; /* kin */
  np_list lookups; /* np_kad_lookup */
  np_list probes;  /* kreq without a lookup: liveness PINGs */
  np_list own;     /* own */
  size_t nown, nlookups;
  int serving;     /* the protocol is registered */
  int public_seen; /* auto mode: a peer observed a public address of ours */
  int reach;       /* auto mode: AutoNAT's verdict (NP_EV_REACHABILITY) */
  int stopping;
  ev_timer tick, save;
  int dirty;
  uint64_t next_refresh, next_reboot, reboot_wait;
  np_kad_lookup *boot_lk; /* our own bootstrap or refresh under way */
  uint8_t **boot_bin;
  size_t *boot_len, nboot;
  char *protocol, *data_dir; /* copies: a reload frees the config */
  np_prefix *pub; /* [nat] treat_as_public */
  size_t npub;
  rslot rate[KAD_RATE_SLOTS];
  np_kad_stats st;
};

typedef void (*kad_fn)(void); /* any callback type, stored */

enum {
  LK_FIND,
  LK_CLOSEST,
  LK_BOOT,
  LK_GET,    /* get_value, get_public_key */
  LK_SEARCH, /* search_value */
  LK_PUT,
  LK_PROVIDE,
  LK_PROVS, /* find_providers */
  LK_CONN   /* find_connected */
};

typedef struct bconn {
  np_kad_lookup *lk;
  void *handle; /* the pending connect */
  np_peerid id;
} bconn;

struct np_kad_lookup {
  np_list link; /* in kad->lookups */
  np_kad *kad;
  int kind;
  np_peerid target;               /* LK_FIND, LK_CONN */
  uint8_t key[NP_KADMSG_KEY_MAX]; /* the lookup key */
  size_t keylen;
  np_kadquery *q;
  np_list reqs;   /* kreq in flight */
  ev_timer timer; /* the whole lookup */
  int timer_on;
  int finished; /* result fixed, delivery posted */
  int canceled; /* np_kad_cancel: free without callbacks */
  int err;
  int phase;    /* LK_PUT, LK_PROVIDE: 1 = storing at the closest */
  size_t acks;  /* LK_PUT, LK_PROVIDE: peers that took it */
  uint8_t *val; /* LK_PUT: the value; LK_GET, LK_SEARCH: the best so far */
  size_t vlen;
  size_t nvals; /* LK_GET: valid values seen */
  np_peerid *seen; /* LK_PROVS, LK_CONN: reported */
  size_t nseen, max;
  np_defer done, kick;
  kad_fn fin;  /* the final callback, cast back by kind in lookup_deliver */
  kad_fn item; /* the per-item one (SEARCH, PROVS, CONN) */
  void *ud;
  bconn *boots; /* LK_BOOT: connects, then the self-lookup */
  size_t nboots, boots_left;
};

/* One outbound request: a lookup's query or store message, or a PING. */
typedef struct kreq {
  np_list link; /* in lk->reqs or kad->probes */
  np_kad *kad;
  np_kad_lookup *lk; /* NULL: a probe */
  int type;          /* np_kadmsg_type sent */
  np_peerid peer;
  void *open;   /* the pending open_stream */
  np_stream *s; /* then the stream */
  np_lp_reader rd;
  ev_timer timer;
} kreq;

/* One inbound stream we serve. */
typedef struct kin {
  np_list link; /* in kad->inbound */
  np_kad *kad;
  np_stream *s;
  np_lp_reader rd;
  unsigned nreq;
  ev_timer idle;
  int dead; /* reset asked; on_close frees */
} kin;

static struct ev_loop *EV(np_kad *kad) {
  return np_loop_ev(np_host_loop(kad->h));
}
static uint64_t now_ms(np_kad *kad) { return np_now(np_host_loop(kad->h)); }

/* The store's clock: wall time, so saved expiries survive a reboot. */
static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}


void np_kad_config_default(np_kad_config *c) {
  memset(c, 0, sizeof(*c));
  c->protocol = NP_KADMSG_PROTOCOL;
  c->k = 20;
  c->alpha = 10;
  c->max_msg = NP_KADMSG_MSG_MAX;
  c->max_requests = 64;
  c->max_peer_streams = 8;
  c->idle_ms = 10000;
  c->request_ms = 5000;
  c->lookup_ms = 30000;
  c->addr_ttl_ms = 10 * 60 * 1000;
  c->mode = NP_DHT_SERVER;
  c->quorum = 3;
  c->refresh_ms = 10 * 60 * 1000;
  c->republish_ms = 22ull * 3600 * 1000;
  c->record_ttl_ms = 48ull * 3600 * 1000;
  c->save_delay_ms = 1000;
  c->boot_timeout_ms = 10000;
  c->max_peer_rate = 50;
  c->max_lookups = 64;
}

const np_kbucket *np_kad_table(const np_kad *kad) { return kad->table; }
np_kadstore *np_kad_store(np_kad *kad) { return kad->store; }

void np_kad_stats_get(const np_kad *kad, np_kad_stats *st) {
  *st = kad->st;
  st->server = kad->serving;
}

/* ---- the store file
 * ------------------------------------------------------------------ */

static void store_save(np_kad *kad) {
  char err[256];
  ev_timer_stop(EV(kad), &kad->save);
  if (!kad->dirty || kad->cfg.data_dir == NULL)
    return;
  kad->dirty = 0;
  if (np_kadstore_save(kad->store, kad->cfg.data_dir, err, sizeof(err)) != 0)
    np_warn("kad", "store-save-failed why=\"%s\"", err);
}

static void save_due(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev, (void)revents;
  store_save(np_container_of(w, np_kad, save));
}

/* The store changed: write it soon (one write per burst of changes). */
static void store_changed(np_kad *kad) {
  kad->dirty = 1;
  if (kad->cfg.data_dir && !ev_is_active(&kad->save)) {
    ev_timer_set(&kad->save, (double)kad->cfg.save_delay_ms / 1000.0, 0.);
    ev_timer_start(EV(kad), &kad->save);
  }
}

/* ---- routing table
 * ------------------------------------------------------------------- */

static int probe_start(np_kad *kad, const np_peerid *peer);

static void table_add(np_kad *kad, const np_peerid *id) {
  np_peerid cand;
  if (np_kbucket_add(kad->table, id, now_ms(kad), &cand) == NP_KBUCKET_FULL &&
      probe_start(kad, &cand) != 0)
    np_kbucket_report(kad->table, &cand, 1, now_ms(kad)); /* keep the old */
}

/* Housekeeping runs every KAD_TICK_MS, first after |first_ms|. The timer
 * does not keep a loop alive on its own (unref'd while active). */
static void tick_arm(np_kad *kad, uint64_t first_ms) {
  if (ev_is_active(&kad->tick)) {
    ev_ref(EV(kad));
    ev_timer_stop(EV(kad), &kad->tick);
  }
  ev_timer_set(&kad->tick, (double)first_ms / 1000.0, KAD_TICK_MS / 1000.0);
  ev_timer_start(EV(kad), &kad->tick);
  ev_unref(EV(kad));
}

/* A table left empty re-bootstraps soon (backing off to refresh_ms). */
static void table_remove(np_kad *kad, const np_peerid *id) {
  if (np_kbucket_remove(kad->table, id) != 0 ||
      np_kbucket_size(kad->table) > 0 || kad->nboot == 0 || kad->stopping)
    return;
  if (kad->next_reboot > now_ms(kad) + kad->reboot_wait) {
    kad->next_reboot = now_ms(kad) + kad->reboot_wait;
    tick_arm(kad, kad->reboot_wait);
  }
}

static int lists_kad(np_kad *kad, const np_event *ev) {
  size_t i;
  for (i = 0; i < ev->nprotocols; i++)
    if (strcmp(ev->protocols[i], kad->cfg.protocol) == 0)
      return 1;
  return 0;
}

static void mode_update(np_kad *kad);

/* 1 if the IP of |bin| is one of this machine's interface addresses: a
 * peer that sees us there sees us with no NAT in between. (Behind a NAT
 * the observed address is the NAT's: public, but nobody can dial it; only
 * AutoNAT can tell more.) */
static int ip_is_ours(const uint8_t *bin, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl;
  struct ifaddrs *ifs, *i;
  int ours = 0;
  if ((np_maddr_to_sockaddr(bin, len, &ss, &sl) != 0 &&
       np_maddr_to_sockaddr_tcp(bin, len, &ss, &sl) != 0) ||
      getifaddrs(&ifs) != 0)
    return 0;
  for (i = ifs; i && !ours; i = i->ifa_next) {
    if (i->ifa_addr == NULL || i->ifa_addr->sa_family != ss.ss_family)
      continue;
    if (ss.ss_family == AF_INET)
      ours = memcmp(&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr,
                    &((struct sockaddr_in *)(void *)&ss)->sin_addr, 4) == 0;
    else
      ours = memcmp(&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr,
                    &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr,
                    16) == 0;
  }
  freeifaddrs(ifs);
  return ours;
}

static void on_event(const np_event *ev, void *ud) {
  np_kad *kad = ud;
  if (ev->type == NP_EV_REACHABILITY) {
    kad->reach = ev->reachability;
    mode_update(kad);
    return;
  }
  if (ev->type == NP_EV_OBSERVED_ADDR) {
    if (!kad->public_seen && kad->cfg.mode == NP_DHT_AUTO &&
        np_maddr_is_public_with(ev->observed, ev->observed_len, kad->pub,
                                kad->npub) &&
        ip_is_ours(ev->observed, ev->observed_len)) {
      kad->public_seen = 1;
      mode_update(kad);
    }
    return;
  }
  if (ev->peer == NULL)
    return;
  if (lists_kad(kad, ev))
    table_add(kad, ev->peer);
  else if (ev->type == NP_EV_PROTOCOLS_CHANGED)
    table_remove(kad, ev->peer);
}

/* ---- messages
 * ------------------------------------------------------------------------ */

/* Encode |m| and send it on |s| (length-prefixed). */
static int send_msg(np_kad *kad, np_stream *s, const np_kadmsg *m) {
  size_t cap = kad->cfg.max_msg + NP_VARINT_MAX;
  uint8_t *buf = malloc(cap);
  np_ssize n;
  int rv;
  if (buf == NULL)
    return NP_ENOMEM;
  n = np_kadmsg_encode_lp(m, buf, cap);
  rv = n < 0 ? (int)n : s->ops->send(s, buf, (size_t)n, 0, KAD_OUT_MAX);
  free(buf);
  return rv;
}

/* Up to KAD_ADDRS_SENT unexpired peerstore addresses of |id| into |p|. */
static void peer_addrs(np_kad *kad, const np_peerid *id, np_kadmsg_peer *p,
                       np_kadmsg_blob *blobs) {
  np_ps_peer *pp = np_peerstore_get(np_host_peerstore(kad->h), id);
  size_t a;
  p->addrs = blobs;
  if (pp == NULL)
    return;
  np_peerstore_expire(pp, now_ms(kad));
  for (a = 0; a < pp->naddrs && p->naddrs < KAD_ADDRS_SENT; a++) {
    blobs[p->naddrs].data = pp->addrs[a].bin;
    blobs[p->naddrs++].len = pp->addrs[a].len;
  }
  p->conn = pp->connected ? NP_KADMSG_CONNECTED : NP_KADMSG_NOT_CONNECTED;
}

/* The providers of a GET_PROVIDERS answer, gathered from the store. */
typedef struct provs_out {
  np_kad *kad;
  np_kadmsg_peer *peers;
  np_kadmsg_blob (*blobs)[NP_KADSTORE_ADDRS_MAX];
  size_t n, max;
} provs_out;

static int add_prov(const np_kadstore_provider *pv, void *ud) {
  provs_out *o = ud;
  np_kadmsg_peer *p = &o->peers[o->n];
  size_t a;
  memset(p, 0, sizeof(*p));
  p->id = *pv->id;
  if (pv->naddrs == 0) {
    peer_addrs(o->kad, pv->id, p, o->blobs[o->n]);
  } else {
    p->addrs = o->blobs[o->n];
    for (a = 0; a < pv->naddrs; a++) {
      p->addrs[a].data = (uint8_t *)pv->addrs[a];
      p->addrs[a].len = pv->lens[a];
    }
    p->naddrs = pv->naddrs;
  }
  return ++o->n >= o->max;
}

/* go's RFC 3339 timeReceived, from wall-clock milliseconds. */
static void fmt_time(uint64_t ms, char *out, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (unsigned)(ms % 1000));
}

/* The answer to FIND_NODE, GET_VALUE and GET_PROVIDERS: our closest peers
 * to SHA-256(key), each with up to KAD_ADDRS_SENT unexpired addresses (the
 * requester left out), plus the record or the providers we hold. */
static int answer(np_kad *kad, np_stream *s, const np_kadmsg *req) {
  np_peerid ids[256]; /* k + 1: the requester may be among them */
  np_kadmsg_peer peers[255];
  np_kadmsg_blob blobs[255][KAD_ADDRS_SENT];
  np_kadmsg_peer provs[NP_KADMSG_PEERS_MAX];
  np_kadmsg_blob pblobs[NP_KADMSG_PEERS_MAX][NP_KADSTORE_ADDRS_MAX];
  uint8_t target[NP_KBUCKET_KEYLEN];
  char tbuf[80];
  np_kadmsg m;
  size_t n, i, np = 0;
  int has_target = 0;
  np_crypto_sha256(req->key.data, req->key.len, target);
  n = np_kbucket_closest(kad->table, target, kad->cfg.k + 1, ids);
  if (req->type == NP_KADMSG_FIND_NODE) {
    /* The peer asked for, when we know where it is, even if it is not in
     * the table: a DHT client (a host behind a NAT, with its relayed and
     * observed addresses) is found through the servers it is connected
     * to, as go does. */
    np_peerid tp;
    if (np_peerid_from_bytes(&tp, req->key.data, req->key.len) == 0 &&
        !np_peerid_equal(&tp, &s->peer_id) &&
        !np_peerid_equal(&tp, &np_host_identity(kad->h)->id)) {
      memset(&peers[0], 0, sizeof(peers[0]));
      peers[0].id = tp;
      peer_addrs(kad, &tp, &peers[0], blobs[0]);
      if (peers[0].naddrs > 0)
        np = has_target = 1;
    }
  }
  for (i = 0; i < n && np < kad->cfg.k; i++) {
    np_kadmsg_peer *p = &peers[np];
    if (np_peerid_equal(&ids[i], &s->peer_id) ||
        (has_target && np_peerid_equal(&ids[i], &peers[0].id)))
      continue;
    memset(p, 0, sizeof(*p));
    p->id = ids[i];
    peer_addrs(kad, &ids[i], p, blobs[np]);
    np++;
  }
  np_kadmsg_init(&m);
  m.type = req->type;
  m.key = req->key;
  m.closer = peers;
  m.ncloser = np;
  if (req->type == NP_KADMSG_GET_VALUE) {
    const uint8_t *val;
    size_t vlen;
    uint64_t rcvd;
    if (np_kadstore_get(kad->store, req->key.data, req->key.len, wall_ms(),
                        &val, &vlen, &rcvd) == 0) {
      m.has_record = 1;
      m.record.key = req->key;
      m.record.value.data = (uint8_t *)val;
      m.record.value.len = vlen;
      fmt_time(rcvd, tbuf, sizeof(tbuf));
      m.record.time_received = tbuf;
    }
  } else if (req->type == NP_KADMSG_GET_PROVIDERS) {
    provs_out o = {kad, provs, pblobs, 0, NP_KADMSG_PEERS_MAX};
    np_kadstore_providers(kad->store, req->key.data, req->key.len, wall_ms(),
                          add_prov, &o);
    m.providers = provs;
    m.nproviders = o.n;
  }
  return send_msg(kad, s, &m);
}

/* PUT_VALUE: store a valid record and echo the request (go's contract). */
static int serve_put(np_kad *kad, np_stream *s, const np_kadmsg *req) {
  const char *why = NULL;
  const uint8_t *cur;
  size_t curlen;
  int rv;
  if (!req->has_record || req->record.key.len != req->key.len ||
      memcmp(req->record.key.data, req->key.data, req->key.len) != 0)
    return NP_EPROTO;
  rv = np_kadstore_put(kad->store, req->key.data, req->key.len,
                       req->record.value.data, req->record.value.len,
                       wall_ms(), &why);
  if (rv == NP_EEXIST &&
      np_kadstore_get(kad->store, req->key.data, req->key.len, wall_ms(), &cur,
                      &curlen, NULL) == 0 &&
      curlen == req->record.value.len &&
      memcmp(cur, req->record.value.data, curlen) == 0)
    rv = 0; /* a republish of what we hold */
  if (rv != 0) {
    char peer[NP_PEERID_STRMAX];
    np_peerid_to_string(&s->peer_id, peer, sizeof(peer));
    np_debug("kad", "put-refused peer=%s why=\"%s\"", peer, why ? why : "");
    return rv;
  }
  kad->st.stored++;
  store_changed(kad);
  return send_msg(kad, s, req);
}

/* ADD_PROVIDER: only the sender may announce itself (as go checks). No
 * answer is sent. */
static int serve_provider(np_kad *kad, np_stream *s, const np_kadmsg *req) {
  size_t i, a;
  for (i = 0; i < req->nproviders; i++) {
    const np_kadmsg_peer *p = &req->providers[i];
    const uint8_t *addrs[NP_KADSTORE_ADDRS_MAX];
    size_t lens[NP_KADSTORE_ADDRS_MAX], n = 0;
    const char *why = NULL;
    if (!np_peerid_equal(&p->id, &s->peer_id))
      continue;
    for (a = 0; a < p->naddrs && n < NP_KADSTORE_ADDRS_MAX; a++) {
      addrs[n] = p->addrs[a].data;
      lens[n++] = p->addrs[a].len;
    }
    if (np_kadstore_add_provider(kad->store, req->key.data, req->key.len,
                                 &p->id, addrs, lens, n, wall_ms(),
                                 &why) != 0) {
      np_debug("kad", "provider-refused why=\"%s\"", why ? why : "");
      return NP_ELIMIT;
    }
    kad->st.stored++;
    store_changed(kad);
  }
  return 0;
}

/* At most max_peer_rate requests per second from one peer (counters in a
 * small hashed table: a peer that shares a slot only resets it). */
static int rate_ok(np_kad *kad, const np_peerid *peer) {
  uint32_t h = 2166136261u;
  size_t i;
  rslot *r;
  for (i = 0; i < peer->len; i++)
    h = (h ^ peer->bytes[i]) * 16777619u;
  r = &kad->rate[h % KAD_RATE_SLOTS];
  if (!np_peerid_equal(&r->peer, peer) ||
      now_ms(kad) - r->start >= 1000) {
    r->peer = *peer;
    r->start = now_ms(kad);
    r->n = 0;
  }
  return ++r->n <= kad->cfg.max_peer_rate;
}

/* ---- serving
 * ------------------------------------------------------------------------- */

static void kin_reset(kin *in) {
  in->dead = 1;
  in->s->ops->reset(in->s); /* on_close frees |in| (maybe right now) */
}

static void kin_idle(struct ev_loop *ev, ev_timer *w, int revents) {
  kin *in = np_container_of(w, kin, idle);
  (void)ev, (void)revents;
  in->kad->st.refused++;
  kin_reset(in);
}

/* One request: 0, or an error after which the stream is reset. */
static int serve(kin *in, const uint8_t *body, size_t len) {
  np_kad *kad = in->kad;
  np_kadmsg req, resp;
  int rv;
  if (!rate_ok(kad, &in->s->peer_id)) {
    kad->st.rate_limited++;
    return NP_ELIMIT;
  }
  if (np_kadmsg_decode(&req, body, len, &kad->lim) != 0) {
    kad->st.bad_requests++;
    return NP_EPROTO;
  }
  switch (req.type) {
  case NP_KADMSG_FIND_NODE:
  case NP_KADMSG_GET_VALUE:
  case NP_KADMSG_GET_PROVIDERS:
    rv = req.key.len ? answer(kad, in->s, &req) : NP_EPROTO;
    break;
  case NP_KADMSG_PUT_VALUE:
    rv = serve_put(kad, in->s, &req);
    break;
  case NP_KADMSG_ADD_PROVIDER:
    rv = req.key.len ? serve_provider(kad, in->s, &req) : NP_EPROTO;
    break;
  case NP_KADMSG_PING:
    np_kadmsg_init(&resp);
    resp.type = NP_KADMSG_PING;
    rv = send_msg(kad, in->s, &resp);
    break;
  default:
    rv = NP_EPROTO;
    break;
  }
  if (rv == 0)
    kad->st.served++;
  else if (rv == NP_EPROTO)
    kad->st.bad_requests++;
  else
    kad->st.refused++;
  np_kadmsg_free(&req);
  return rv;
}

static void in_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  kin *in = ud;
  size_t off = 0;
  if (in->dead)
    return;
  if (len == 0) { /* the remote is done asking */
    if (!np_lp_idle(&in->rd))
      in->kad->st.bad_requests++;
    ev_timer_stop(EV(in->kad), &in->idle);
    s->ops->close(s);
    return;
  }
  while (off < len) {
    const uint8_t *m;
    size_t ml;
    np_ssize n = np_lp_feed(&in->rd, data + off, len - off, &m, &ml);
    if (n < 0) {
      in->kad->st.bad_requests++;
      kin_reset(in);
      return;
    }
    off += (size_t)n;
    if (m == NULL)
      continue;
    if (++in->nreq > in->kad->cfg.max_requests) {
      in->kad->st.refused++;
      kin_reset(in);
      return;
    }
    if (serve(in, m, ml) != 0) {
      kin_reset(in);
      return;
    }
    ev_timer_again(EV(in->kad), &in->idle);
  }
}

static void in_close(np_stream *s, int err, void *ud) {
  kin *in = ud;
  (void)s, (void)err;
  ev_timer_stop(EV(in->kad), &in->idle);
  np_lp_free(&in->rd);
  np_list_remove(&in->link);
  free(in);
}

static const np_stream_cbs in_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = in_data,
    .on_close = in_close,
};

static void in_open(np_stream *s, void *ud) {
  np_kad *kad = ud;
  unsigned same = 0;
  np_list *it, *tmp;
  kin *in;
  np_list_for_each_safe(it, tmp, &kad->inbound) {
    kin *o = np_list_entry(it, kin, link);
    if (np_peerid_equal(&o->s->peer_id, &s->peer_id))
      same++;
  }
  if (same >= kad->cfg.max_peer_streams ||
      (in = calloc(1, sizeof(*in))) == NULL) {
    kad->st.refused++;
    np_stream_set_cbs(s, &np_stream_linger_cbs, kad);
    s->ops->reset(s);
    return;
  }
  in->kad = kad;
  in->s = s;
  np_lp_init(&in->rd, kad->cfg.max_msg);
  ev_init(&in->idle, kin_idle);
  in->idle.repeat = (double)kad->cfg.idle_ms / 1000.0;
  ev_timer_again(EV(kad), &in->idle);
  np_list_insert_tail(&kad->inbound, &in->link);
  np_stream_set_cbs(s, &in_cbs, in);
}

static const np_stream_cbs serve_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = in_open,
    .on_data = np_stream_ignore_data, /* replaced in on_open */
    .on_close = np_stream_ignore_close,
};

/* ---- modes
 * --------------------------------------------------------------------------- */

static int serve_on(np_kad *kad) {
  np_handler hd;
  int rv;
  memset(&hd, 0, sizeof(hd));
  hd.proto = (char *)kad->cfg.protocol;
  hd.proto_len = strlen(kad->cfg.protocol);
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = kad;
  hd.owner_name = "kad";
  hd.stream = serve_cbs;
  hd.ud = kad;
  hd.streams = &kad->streams;
  hd.max_streams = NP_PROTO_UNLIMITED; /* per peer: max_peer_streams */
  if ((rv = np_proto_add(np_host_protos(kad->h), &hd, NULL)) == 0)
    kad->serving = 1;
  return rv;
}

/* Stop answering: the protocol leaves the table (identify pushes the
 * change); streams being served end. */
static void serve_off(np_kad *kad) {
  np_proto_remove_owner(np_host_protos(kad->h), kad);
  kad->serving = 0;
  while (!np_list_empty(&kad->inbound)) {
    kin *in = np_list_entry(kad->inbound.next, kin, link);
    np_list_remove(&in->link);
    np_list_init(&in->link);
    if (!in->dead)
      kin_reset(in);
  }
}

/* auto: AutoNAT's verdict when it has one (public: server, private:
 * client); while it is unknown, a server once any address of ours is
 * public: a listen address, or one a peer observed, that is an interface
 * address of this machine (no NAT between). */
static int wants_server(np_kad *kad) {
  const uint8_t *bins[32];
  size_t lens[32], n, i;
  void *net;
  const np_net_ops *ops;
  if (kad->cfg.mode == NP_DHT_SERVER)
    return 1;
  if (kad->cfg.mode != NP_DHT_AUTO)
    return 0;
  if (kad->reach != NP_REACH_UNKNOWN)
    return kad->reach == NP_REACH_PUBLIC;
  if (kad->public_seen)
    return 1;
  if ((ops = np_host_net(kad->h, &net)) == NULL || ops->addrs == NULL)
    return 0;
  n = ops->addrs(net, bins, lens, 32);
  /* ip_is_ours: the swarm's adverts (a NAT's address we were observed
   * at, relay addresses) are no address of ours that peers reach as is */
  for (i = 0; i < n && i < 32; i++)
    if (np_maddr_is_public_with(bins[i], lens[i], kad->pub, kad->npub) &&
        ip_is_ours(bins[i], lens[i]))
      return 1;
  return 0;
}

static void mode_update(np_kad *kad) {
  int want = wants_server(kad);
  if (want == kad->serving || kad->stopping)
    return;
  if (want) {
    if (serve_on(kad) == 0)
      np_info("kad", "mode-server why=\"%s\"",
              kad->cfg.mode == NP_DHT_SERVER      ? "configured"
              : kad->reach == NP_REACH_PUBLIC ? "reachability public"
                                                  : "a public address");
  } else {
    serve_off(kad);
    np_info("kad", "mode-client why=\"%s\"",
            kad->reach == NP_REACH_PRIVATE ? "reachability private"
                                           : "no public address");
  }
}

/* ---- outbound requests
 * --------------------------------------------------------------- */

static void lookup_pump(np_kad_lookup *lk);
static void lookup_finish(np_kad_lookup *lk, int err);
static void req_done(kreq *r, int ok, const np_kadmsg *m);

/* Let go of the stream (reset, or closed after a good answer), the pending
 * open and the timer; unlink and free. */
static void req_free(kreq *r, int reset) {
  np_kad *kad = r->kad;
  if (r->open) {
    void *net;
    const np_net_ops *ops = np_host_net(kad->h, &net);
    if (ops)
      ops->cancel(net, r->open);
  }
  if (r->s) {
    np_stream *s = r->s;
    r->s = NULL;
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    if (reset)
      s->ops->reset(s);
    else
      s->ops->close(s);
  }
  ev_timer_stop(EV(kad), &r->timer);
  np_lp_free(&r->rd);
  np_list_remove(&r->link);
  free(r);
}

static void req_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  kreq *r = np_container_of(w, kreq, timer);
  (void)ev, (void)revents;
  req_done(r, 0, NULL);
}

static void out_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  kreq *r = ud;
  size_t off = 0;
  (void)s;
  if (len == 0) {
    req_done(r, 0, NULL);
    return;
  }
  while (off < len) {
    const uint8_t *m;
    size_t ml;
    np_kadmsg msg;
    np_ssize n = np_lp_feed(&r->rd, data + off, len - off, &m, &ml);
    if (n >= 0 && m == NULL) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 || np_kadmsg_decode(&msg, m, ml, &r->kad->lim) != 0) {
      r->kad->st.bad_answers++;
      req_done(r, 0, NULL);
      return;
    }
    /* One answer per stream: whatever follows is not read. */
    req_done(r, 1, &msg);
    np_kadmsg_free(&msg);
    return;
  }
}

static void out_close(np_stream *s, int err, void *ud) {
  kreq *r = ud;
  (void)s, (void)err;
  r->s = NULL;
  req_done(r, 0, NULL);
}

static const np_stream_cbs out_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = out_data,
    .on_close = out_close,
};

/* ADD_PROVIDER's provider entry: ourselves with our current addresses. */
static size_t self_peer(np_kad *kad, np_kadmsg_peer *p, np_kadmsg_blob *b) {
  const uint8_t *bins[KAD_SELF_ADDRS];
  size_t lens[KAD_SELF_ADDRS], n = 0, i;
  void *net;
  const np_net_ops *ops = np_host_net(kad->h, &net);
  memset(p, 0, sizeof(*p));
  p->id = np_host_identity(kad->h)->id;
  p->addrs = b;
  if (ops && ops->addrs)
    n = ops->addrs(net, bins, lens, KAD_SELF_ADDRS);
  for (i = 0; i < n && i < KAD_SELF_ADDRS; i++) {
    b[p->naddrs].data = (uint8_t *)bins[i];
    b[p->naddrs++].len = lens[i];
  }
  return 1;
}

static void req_opened(void *ud, int err, np_stream *s, const char *proto) {
  kreq *r = ud;
  np_kadmsg m;
  np_kadmsg_peer self;
  np_kadmsg_blob sb[KAD_SELF_ADDRS];
  int rv;
  (void)proto;
  r->open = NULL;
  if (err != 0) {
    req_done(r, 0, NULL);
    return;
  }
  r->s = s;
  np_stream_set_cbs(s, &out_cbs, r);
  np_list_insert_tail(&r->kad->streams, &s->owner_link);
  np_kadmsg_init(&m);
  m.type = (np_kadmsg_type)r->type;
  if (r->lk) {
    m.key.data = r->lk->key;
    m.key.len = r->lk->keylen;
  }
  if (r->type == NP_KADMSG_PUT_VALUE) {
    m.has_record = 1;
    m.record.key = m.key;
    m.record.value.data = r->lk->val;
    m.record.value.len = r->lk->vlen;
  } else if (r->type == NP_KADMSG_ADD_PROVIDER) {
    m.nproviders = self_peer(r->kad, &self, sb);
    m.providers = &self;
  }
  r->kad->st.sent++;
  /* A failed send resets the stream: out_close reports it. */
  rv = send_msg(r->kad, s, &m);
  if (rv == 0 && r->type == NP_KADMSG_ADD_PROVIDER)
    req_done(r, 1, NULL); /* no answer comes; close after the bytes */
}

/* Send a |type| request to |peer| (dialing by the peerstore's addresses). */
static kreq *req_new(np_kad *kad, np_kad_lookup *lk, int type,
                     const np_peerid *peer) {
  void *net;
  const np_net_ops *ops = np_host_net(kad->h, &net);
  const char *protos[1] = {kad->cfg.protocol};
  kreq *r;
  if (ops == NULL || (r = calloc(1, sizeof(*r))) == NULL)
    return NULL;
  r->kad = kad;
  r->lk = lk;
  r->type = type;
  r->peer = *peer;
  np_lp_init(&r->rd, kad->cfg.max_msg);
  ev_timer_init(&r->timer, req_timeout, (double)kad->cfg.request_ms / 1000.0,
                0.);
  np_list_insert_tail(lk ? &lk->reqs : &kad->probes, &r->link);
  if (ops->open_stream(net, peer, protos, 1, 0, kad->cfg.request_ms,
                       req_opened, r, &r->open) != 0) {
    np_list_remove(&r->link);
    np_lp_free(&r->rd);
    free(r);
    return NULL;
  }
  ev_timer_start(EV(kad), &r->timer);
  return r;
}

static int probe_start(np_kad *kad, const np_peerid *peer) {
  return req_new(kad, NULL, NP_KADMSG_PING, peer) ? 0 : NP_ENOMEM;
}

/* ---- lookups
 * ------------------------------------------------------------------------- */

static void lookup_free(np_kad_lookup *lk) {
  np_kad *kad = lk->kad;
  np_list_remove(&lk->link);
  kad->nlookups--;
  if (kad->boot_lk == lk)
    kad->boot_lk = NULL;
  np_kadquery_del(lk->q);
  free(lk->boots);
  free(lk->val);
  free(lk->seen);
  free(lk);
}

static void lookup_deliver(void *arg) {
  np_kad_lookup *lk = arg;
  np_kad *kad = lk->kad;
  np_peerid res[255];
  size_t n = 0;
  if (lk->q) {
    static const char *const kinds[] = {"find", "closest", "boot",
                                        "get",  "search",  "put",
                                        "provide", "providers", "connected"};
    np_kadquery_stats qs;
    np_kadquery_stats_get(lk->q, &qs);
    kad->st.hops += qs.depth;
    if (qs.depth > kad->st.max_hops)
      kad->st.max_hops = qs.depth;
    np_debug("kad", "lookup-done kind=%s err=%s hops=%u requests=%zu "
                    "answered=%zu failed=%zu",
             kinds[lk->kind], np_errname(lk->err), qs.depth, qs.queried,
             qs.answered, qs.failed);
    if (lk->err == 0 && lk->kind == LK_CLOSEST)
      n = np_kadquery_result(lk->q, res, 255);
  }
  kad->st.lookups++;
  if (lk->kind == LK_FIND && lk->err == 0)
    kad->st.found++;
  if (lk->canceled) {
    lookup_free(lk);
    return;
  }
  /* Unlinked before the callback: it may start or cancel lookups. */
  np_list_remove(&lk->link);
  np_list_init(&lk->link);
  switch (lk->kind) {
  case LK_FIND:
    ((np_kad_peer_fn)lk->fin)(lk->ud, lk->err, &lk->target);
    break;
  case LK_CLOSEST:
    ((np_kad_closest_fn)lk->fin)(lk->ud, lk->err, res, n);
    break;
  case LK_GET:
    ((np_kad_value_fn)lk->fin)(lk->ud, lk->err, lk->err ? NULL : lk->val,
                 lk->err ? 0 : lk->vlen);
    break;
  case LK_PUT:
  case LK_PROVIDE:
    ((np_kad_count_fn)lk->fin)(lk->ud, lk->err, lk->acks);
    break;
  default: /* LK_BOOT, LK_SEARCH, LK_PROVS, LK_CONN */
    ((np_kad_done_fn)lk->fin)(lk->ud, lk->err);
    break;
  }
  lookup_free(lk);
}

/* Fix the outcome, let go of everything in flight, deliver next turn. */
static void lookup_finish(np_kad_lookup *lk, int err) {
  np_kad *kad = lk->kad;
  size_t i;
  if (lk->finished)
    return;
  lk->finished = 1;
  lk->err = err;
  np_loop_cancel(np_host_loop(kad->h), &lk->kick);
  while (!np_list_empty(&lk->reqs))
    req_free(np_list_entry(lk->reqs.next, kreq, link), 1);
  for (i = 0; i < lk->nboots; i++)
    if (lk->boots[i].handle) {
      void *net;
      const np_net_ops *ops = np_host_net(kad->h, &net);
      if (ops)
        ops->cancel(net, lk->boots[i].handle);
      lk->boots[i].handle = NULL;
    }
  if (lk->timer_on) {
    ev_timer_stop(EV(kad), &lk->timer);
    lk->timer_on = 0;
  }
  np_loop_post(np_host_loop(kad->h), &lk->done);
}

/* 0 when |lk| has something to report (a value, items, peers that took
 * our record), else |none|: what found so far stands at the end. */
static int found_or(const np_kad_lookup *lk, int none) {
  switch (lk->kind) {
  case LK_GET:
  case LK_SEARCH:
    return lk->val ? 0 : none;
  case LK_PROVS:
  case LK_CONN:
    return lk->nseen ? 0 : none;
  case LK_PUT:
  case LK_PROVIDE:
    return lk->acks ? 0 : none;
  default:
    return none;
  }
}

/* PUT / PROVIDE, second phase: send the value (ourselves as provider) to
 * the closest peers that answered. */
static void store_phase(np_kad_lookup *lk) {
  np_peerid res[255];
  size_t n = np_kadquery_result(lk->q, res, lk->kad->cfg.k), i;
  int type = lk->kind == LK_PUT ? NP_KADMSG_PUT_VALUE : NP_KADMSG_ADD_PROVIDER;
  lk->phase = 1;
  for (i = 0; i < n && !lk->finished; i++)
    req_new(lk->kad, lk, type, &res[i]);
  if (!lk->finished && np_list_empty(&lk->reqs))
    lookup_finish(lk, found_or(lk, NP_ENOENT));
}

/* Hand out what the query lets us ask; end it when it is over. */
static void lookup_pump(np_kad_lookup *lk) {
  np_peerid p;
  np_kadquery_state st;
  int type = lk->kind == LK_GET || lk->kind == LK_SEARCH
                 ? NP_KADMSG_GET_VALUE
                 : lk->kind == LK_PROVS ? NP_KADMSG_GET_PROVIDERS
                                        : NP_KADMSG_FIND_NODE;
  if (lk->finished || lk->q == NULL)
    return;
  if (lk->phase) {
    if (np_list_empty(&lk->reqs))
      lookup_finish(lk, found_or(lk, NP_ENOENT));
    return;
  }
  while (!lk->finished && np_kadquery_next(lk->q, now_ms(lk->kad), &p, 1) == 1)
    if (req_new(lk->kad, lk, type, &p) == NULL)
      np_kadquery_on_failure(lk->q, &p);
  if (lk->finished)
    return;
  st = np_kadquery_state_get(lk->q);
  if (st == NP_KADQUERY_RUNNING && !np_list_empty(&lk->reqs))
    return;
  switch (lk->kind) {
  case LK_FIND:
    lookup_finish(lk, NP_ENOENT);
    break;
  case LK_PUT:
  case LK_PROVIDE:
    store_phase(lk);
    break;
  case LK_GET:
  case LK_SEARCH:
  case LK_PROVS:
  case LK_CONN:
    lookup_finish(lk, found_or(lk, NP_ENOENT));
    break;
  default:
    lookup_finish(lk, np_kadquery_result(lk->q, &p, 1) ? 0 : NP_ENOENT);
    break;
  }
}

/* A value for a GET/SEARCH lookup (from a peer or our store): kept if valid
 * and better than the best so far; SEARCH reports each improvement. */
static void value_seen(np_kad_lookup *lk, const uint8_t *val, size_t len) {
  np_kad *kad = lk->kad;
  uint8_t *copy;
  if (np_kadstore_check(kad->store, lk->key, lk->keylen, val, len, NULL, 0,
                        wall_ms(), NULL) != 0)
    return;
  lk->nvals++;
  if (lk->val == NULL ||
      np_kadstore_check(kad->store, lk->key, lk->keylen, val, len, lk->val,
                        lk->vlen, wall_ms(), NULL) == 0) {
    if ((copy = malloc(len ? len : 1)) == NULL)
      return;
    memcpy(copy, val, len);
    free(lk->val);
    lk->val = copy;
    lk->vlen = len;
    if (lk->kind == LK_SEARCH)
      ((np_kad_each_value_fn)lk->item)(lk->ud, lk->val, lk->vlen);
  }
  if (!lk->finished && lk->kind == LK_GET && lk->nvals >= kad->cfg.quorum)
    lookup_finish(lk, 0);
}

/* 1 the first time |id| is reported by this lookup (LK_PROVS, LK_CONN). */
static int seen_first(np_kad_lookup *lk, const np_peerid *id) {
  size_t i;
  for (i = 0; i < lk->nseen; i++)
    if (np_peerid_equal(&lk->seen[i], id))
      return 0;
  if (lk->nseen >= lk->max)
    return 0;
  lk->seen[lk->nseen++] = *id;
  return 1;
}

static void provider_seen(np_kad_lookup *lk, const np_peerid *id,
                          const uint8_t *const *addrs, const size_t *lens,
                          size_t n) {
  np_kad_provider p = {id, n, addrs, lens};
  if (lk->finished || !seen_first(lk, id))
    return;
  ((np_kad_each_provider_fn)lk->item)(lk->ud, &p);
  if (!lk->finished && lk->nseen >= lk->max)
    lookup_finish(lk, 0);
}

/* |from| answered |m| for lookup |lk|. */
static void lookup_answer(np_kad_lookup *lk, const np_peerid *from,
                          const np_kadmsg *m) {
  np_kad *kad = lk->kad;
  np_peerstore *ps = np_host_peerstore(kad->h);
  const np_peerid *self = &np_host_identity(kad->h)->id;
  np_peerid ids[NP_KADMSG_PEERS_MAX];
  size_t i, n = 0, a;
  int found = lk->kind == LK_FIND && np_peerid_equal(from, &lk->target);
  for (i = 0; i < m->ncloser && n < NP_KADMSG_PEERS_MAX; i++) {
    const np_kadmsg_peer *p = &m->closer[i];
    np_ps_peer *pp;
    if (np_peerid_equal(&p->id, self))
      continue;
    ids[n++] = p->id;
    /* Addresses first, so that asking this peer can dial it. */
    if (p->naddrs && (pp = np_peerstore_upsert(ps, &p->id, now_ms(kad))))
      for (a = 0; a < p->naddrs; a++)
        np_peerstore_add_addr(pp, p->addrs[a].data, p->addrs[a].len,
                              now_ms(kad), kad->cfg.addr_ttl_ms);
    if (lk->kind == LK_FIND && p->naddrs &&
        np_peerid_equal(&p->id, &lk->target))
      found = 1;
    if (lk->kind == LK_CONN && np_peerid_equal(&p->id, &lk->target) &&
        p->conn == NP_KADMSG_CONNECTED && seen_first(lk, from))
      ((np_kad_each_peer_fn)lk->item)(lk->ud, from);
    if (lk->finished)
      return;
  }
  if ((lk->kind == LK_GET || lk->kind == LK_SEARCH) && m->has_record &&
      m->record.key.len == lk->keylen &&
      memcmp(m->record.key.data, lk->key, lk->keylen) == 0) {
    value_seen(lk, m->record.value.data, m->record.value.len);
    if (lk->finished)
      return;
  }
  if (lk->kind == LK_PROVS)
    for (i = 0; i < m->nproviders && !lk->finished; i++) {
      const np_kadmsg_peer *p = &m->providers[i];
      const uint8_t *bins[NP_KADMSG_ADDRS_MAX];
      size_t lens[NP_KADMSG_ADDRS_MAX], k = 0;
      np_ps_peer *pp = NULL;
      if (p->naddrs && !np_peerid_equal(&p->id, self))
        pp = np_peerstore_upsert(ps, &p->id, now_ms(kad));
      for (a = 0; a < p->naddrs && k < NP_KADMSG_ADDRS_MAX; a++) {
        if (pp)
          np_peerstore_add_addr(pp, p->addrs[a].data, p->addrs[a].len,
                                now_ms(kad), kad->cfg.addr_ttl_ms);
        bins[k] = p->addrs[a].data;
        lens[k++] = p->addrs[a].len;
      }
      provider_seen(lk, &p->id, bins, lens, k);
    }
  if (lk->finished)
    return;
  np_kadquery_on_response(lk->q, from, ids, n);
  if (found)
    lookup_finish(lk, 0);
}

static void req_done(kreq *r, int ok, const np_kadmsg *m) {
  np_kad *kad = r->kad;
  np_kad_lookup *lk = r->lk;
  np_peerid peer = r->peer;
  int type = r->type;
  req_free(r, !ok);
  if (lk && lk->phase) { /* storing: the table is not judged by it */
    if (ok)
      lk->acks++;
    lookup_pump(lk);
    return;
  }
  ok = ok && m->type == (np_kadmsg_type)type;
  if (ok)
    table_add(kad, &peer); /* it speaks kad */
  else
    table_remove(kad, &peer);
  if (lk == NULL) { /* a liveness probe */
    np_kbucket_report(kad->table, &peer, ok, now_ms(kad));
    return;
  }
  if (lk->finished)
    return;
  if (ok)
    lookup_answer(lk, &peer, m);
  else
    np_kadquery_on_failure(lk->q, &peer);
  lookup_pump(lk);
}

static void lookup_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  np_kad_lookup *lk = np_container_of(w, np_kad_lookup, timer);
  (void)ev, (void)revents;
  lk->timer_on = 0;
  lookup_finish(lk, found_or(lk, NP_ETIMEDOUT));
}

static void lookup_kick(void *arg);

static np_kad_lookup *lookup_new(np_kad *kad, int kind, const uint8_t *key,
                                 size_t len, void *ud) {
  np_kad_lookup *lk;
  if (kad->stopping || len == 0 || len > NP_KADMSG_KEY_MAX)
    return NULL;
  if ((lk = calloc(1, sizeof(*lk))) == NULL)
    return NULL;
  lk->kad = kad;
  lk->kind = kind;
  lk->ud = ud;
  memcpy(lk->key, key, len);
  lk->keylen = len;
  np_list_init(&lk->reqs);
  np_defer_init(&lk->done, lookup_deliver, lk);
  np_defer_init(&lk->kick, lookup_kick, lk);
  ev_timer_init(&lk->timer, lookup_timeout, (double)kad->cfg.lookup_ms / 1000.0,
                0.);
  ev_timer_start(EV(kad), &lk->timer);
  lk->timer_on = 1;
  np_list_insert_tail(&kad->lookups, &lk->link);
  kad->nlookups++;
  return lk;
}

/* Seed the query from the table and send the first requests. A lookup
 * that ends at once still reports on the next turn (lookup_finish posts). */
static int lookup_run(np_kad_lookup *lk) {
  np_kad *kad = lk->kad;
  np_kadquery_config qc;
  uint8_t target[NP_KBUCKET_KEYLEN];
  np_peerid seeds[255];
  size_t n;
  int rv;
  np_kadquery_config_default(&qc);
  qc.k = kad->cfg.k;
  qc.alpha = kad->cfg.alpha;
  qc.max_candidates = 3 * qc.k + qc.alpha;
  qc.max_per_response = 2 * qc.k;
  np_crypto_sha256(lk->key, lk->keylen, target);
  if ((rv = np_kadquery_new(&lk->q, target, &np_host_identity(kad->h)->id,
                            &qc)) != 0)
    return rv;
  n = np_kbucket_closest(kad->table, target, qc.k, seeds);
  np_kadquery_seed(lk->q, seeds, n);
  lookup_pump(lk);
  return 0;
}

static int report_local_provider(const np_kadstore_provider *p, void *ud) {
  np_kad_lookup *lk = ud;
  provider_seen(lk, p->id, p->addrs, p->lens, p->naddrs);
  return lk->finished;
}

/* The first turn of a lookup: what the local store holds, then the
 * network (so no callback runs inside the call that started it). */
static void lookup_kick(void *arg) {
  np_kad_lookup *lk = arg;
  np_kad *kad = lk->kad;
  const uint8_t *val;
  size_t vlen;
  int rv;
  if (lk->kind == LK_GET || lk->kind == LK_SEARCH) {
    if (np_kadstore_get(kad->store, lk->key, lk->keylen, wall_ms(), &val,
                        &vlen, NULL) == 0)
      value_seen(lk, val, vlen);
  } else if (lk->kind == LK_PROVS) {
    np_kadstore_providers(kad->store, lk->key, lk->keylen, wall_ms(),
                          report_local_provider, lk);
  }
  if (lk->finished)
    return;
  if ((rv = lookup_run(lk)) != 0)
    lookup_finish(lk, rv);
}

/* Checks shared by the API calls. */
static int api_check(np_kad *kad, const void *key, size_t len,
                     const void *cb) {
  if (len == 0 || len > NP_KADMSG_KEY_MAX || key == NULL || cb == NULL)
    return NP_EINVAL;
  if (kad->stopping)
    return NP_ECANCELED;
  if (np_host_net(kad->h, &(void *){NULL}) == NULL)
    return NP_ENOTSUP;
  if (kad->nlookups >= kad->cfg.max_lookups)
    return NP_ELIMIT;
  return 0;
}

/* The common start of the API lookups: the checks, then a lookup of |kind|
 * whose first turn (lookup_kick) is posted, so the caller may still fill
 * in kind-specific fields through *handle. |item| is required for the
 * kinds that report items. */
static int api_start(np_kad *kad, int kind, const uint8_t *key, size_t len,
                     kad_fn fin, kad_fn item, void *ud,
                     np_kad_lookup **handle) {
  np_kad_lookup *lk;
  int rv;
  *handle = NULL;
  if ((rv = api_check(kad, key, len, (const void *)fin)) != 0)
    return rv;
  if (item == NULL && (kind == LK_SEARCH || kind == LK_PROVS ||
                       kind == LK_CONN))
    return NP_EINVAL;
  if ((lk = lookup_new(kad, kind, key, len, ud)) == NULL)
    return NP_ENOMEM;
  lk->fin = fin;
  lk->item = item;
  if (kind == LK_PROVS || kind == LK_CONN) {
    lk->max = KAD_SEEN_MAX;
    if ((lk->seen = calloc(lk->max, sizeof(*lk->seen))) == NULL) {
      np_kad_cancel(kad, lk);
      return NP_ENOMEM;
    }
  }
  np_loop_post(np_host_loop(kad->h), &lk->kick);
  *handle = lk;
  return 0;
}

int np_kad_find_peer(np_kad *kad, const np_peerid *peer, np_kad_peer_fn cb,
                     void *ud, np_kad_lookup **handle) {
  int rv = api_start(kad, LK_FIND, peer->bytes, peer->len, (kad_fn)cb, NULL,
                     ud, handle);
  if (rv == 0)
    (*handle)->target = *peer;
  return rv;
}

int np_kad_closest(np_kad *kad, const uint8_t *key, size_t len,
                   np_kad_closest_fn cb, void *ud, np_kad_lookup **handle) {
  return api_start(kad, LK_CLOSEST, key, len, (kad_fn)cb, NULL, ud, handle);
}

int np_kad_get_value(np_kad *kad, const uint8_t *key, size_t len,
                     np_kad_value_fn cb, void *ud, np_kad_lookup **handle) {
  return api_start(kad, LK_GET, key, len, (kad_fn)cb, NULL, ud, handle);
}

int np_kad_search_value(np_kad *kad, const uint8_t *key, size_t len,
                        np_kad_each_value_fn each, np_kad_done_fn done,
                        void *ud, np_kad_lookup **handle) {
  return api_start(kad, LK_SEARCH, key, len, (kad_fn)done, (kad_fn)each, ud,
                   handle);
}

static own *own_find(np_kad *kad, int provide, const uint8_t *key,
                     size_t len) {
  np_list *it, *tmp;
  np_list_for_each_safe(it, tmp, &kad->own) {
    own *o = np_list_entry(it, own, link);
    if (o->provide == provide && o->klen == len && memcmp(o->key, key, len) == 0)
      return o;
  }
  return NULL;
}

static void own_free(np_kad *kad, own *o) {
  if (o->lk)
    np_kad_cancel(kad, o->lk);
  np_list_remove(&o->link);
  kad->nown--;
  free(o->key);
  free(o->val);
  free(o);
}

/* Remember our put or provide (the newest KAD_OWN_MAX) to republish. */
static void own_remember(np_kad *kad, int provide, const uint8_t *key,
                         size_t len, const uint8_t *val, size_t vlen) {
  own *o = own_find(kad, provide, key, len);
  uint8_t *v = NULL;
  if (vlen && (v = malloc(vlen)) == NULL)
    return;
  if (vlen)
    memcpy(v, val, vlen);
  if (o == NULL) {
    if (kad->nown >= KAD_OWN_MAX)
      own_free(kad, np_list_entry(kad->own.next, own, link));
    if ((o = calloc(1, sizeof(*o))) == NULL ||
        (o->key = malloc(len)) == NULL) {
      free(o);
      free(v);
      return;
    }
    memcpy(o->key, key, len);
    o->klen = len;
    o->provide = provide;
    np_list_insert_tail(&kad->own, &o->link);
    kad->nown++;
  }
  free(o->val);
  o->val = v;
  o->vlen = vlen;
  o->due = now_ms(kad) + kad->cfg.republish_ms;
}

int np_kad_put_value(np_kad *kad, const uint8_t *key, size_t len,
                     const uint8_t *val, size_t vlen, np_kad_count_fn cb,
                     void *ud, np_kad_lookup **handle) {
  int rv;
  *handle = NULL;
  if ((rv = api_check(kad, key, len, (const void *)cb)) != 0)
    return rv;
  if (val == NULL && vlen)
    return NP_EINVAL;
  rv = np_kadstore_put(kad->store, key, len, val, vlen, wall_ms(), NULL);
  if (rv != 0 && rv != NP_EEXIST)
    return rv;
  if (rv == 0)
    store_changed(kad);
  if ((rv = api_start(kad, LK_PUT, key, len, (kad_fn)cb, NULL, ud, handle)))
    return rv;
  if (((*handle)->val = malloc(vlen ? vlen : 1)) == NULL) {
    np_kad_cancel(kad, *handle);
    *handle = NULL;
    return NP_ENOMEM;
  }
  memcpy((*handle)->val, val, vlen);
  (*handle)->vlen = vlen;
  own_remember(kad, 0, key, len, val, vlen);
  return 0;
}

/* Add ourselves as a provider of |key| in our own store. */
static void provide_local(np_kad *kad, const uint8_t *key, size_t len) {
  np_kadmsg_peer self;
  np_kadmsg_blob sb[KAD_SELF_ADDRS];
  const uint8_t *bins[KAD_SELF_ADDRS];
  size_t lens[KAD_SELF_ADDRS], i;
  self_peer(kad, &self, sb);
  for (i = 0; i < self.naddrs; i++) {
    bins[i] = sb[i].data;
    lens[i] = sb[i].len;
  }
  if (np_kadstore_add_provider(kad->store, key, len, &self.id, bins, lens,
                               self.naddrs, wall_ms(), NULL) == 0)
    store_changed(kad);
}

int np_kad_provide(np_kad *kad, const uint8_t *key, size_t len,
                   np_kad_count_fn cb, void *ud, np_kad_lookup **handle) {
  int rv = api_start(kad, LK_PROVIDE, key, len, (kad_fn)cb, NULL, ud, handle);
  if (rv == 0) {
    provide_local(kad, key, len);
    own_remember(kad, 1, key, len, NULL, 0);
  }
  return rv;
}

int np_kad_find_providers(np_kad *kad, const uint8_t *key, size_t len,
                          size_t max, np_kad_each_provider_fn each,
                          np_kad_done_fn done, void *ud,
                          np_kad_lookup **handle) {
  int rv = api_start(kad, LK_PROVS, key, len, (kad_fn)done, (kad_fn)each, ud,
                     handle);
  if (rv == 0 && (max = max ? max : kad->cfg.k) < KAD_SEEN_MAX)
    (*handle)->max = max;
  return rv;
}

int np_kad_find_connected(np_kad *kad, const np_peerid *peer,
                          np_kad_each_peer_fn each, np_kad_done_fn done,
                          void *ud, np_kad_lookup **handle) {
  int rv = api_start(kad, LK_CONN, peer->bytes, peer->len, (kad_fn)done,
                     (kad_fn)each, ud, handle);
  if (rv == 0)
    (*handle)->target = *peer;
  return rv;
}

/* "/pk/" + the peer ID's multihash bytes. */
static size_t pk_key(const np_peerid *peer, uint8_t *key) {
  memcpy(key, "/pk/", 4);
  memcpy(key + 4, peer->bytes, peer->len);
  return 4 + peer->len;
}

int np_kad_get_public_key(np_kad *kad, const np_peerid *peer,
                          np_kad_value_fn cb, void *ud,
                          np_kad_lookup **handle) {
  uint8_t key[4 + NP_PEERID_MAX];
  size_t klen = pk_key(peer, key);
  np_kad_lookup *lk;
  int rv;
  *handle = NULL;
  if (peer->len == 0)
    return NP_EINVAL;
  if ((rv = api_start(kad, LK_GET, key, klen, (kad_fn)cb, NULL, ud, handle)))
    return rv;
  lk = *handle;
  /* An identity multihash (Ed25519 IDs) is the PublicKey itself. */
  if (peer->bytes[0] == 0x00 && peer->len >= 2 &&
      (size_t)peer->bytes[1] + 2 == peer->len) {
    if ((lk->val = malloc(peer->bytes[1])) == NULL) {
      np_kad_cancel(kad, lk);
      *handle = NULL;
      return NP_ENOMEM;
    }
    memcpy(lk->val, peer->bytes + 2, peer->bytes[1]);
    lk->vlen = peer->bytes[1];
    lookup_finish(lk, 0);
  }
  return 0;
}

static int speaks_kad(np_kad *kad, const np_peerid *id) {
  np_ps_peer *pp = np_peerstore_get(np_host_peerstore(kad->h), id);
  size_t i;
  for (i = 0; pp && i < pp->nprotocols; i++)
    if (strcmp(pp->protocols[i], kad->cfg.protocol) == 0)
      return 1;
  return 0;
}

/* A bootstrap connect ended (a peer that did not answer seeds nothing);
 * once all have, the self-lookup starts. */
static void boot_connected(void *ud, int err) {
  bconn *b = ud;
  np_kad_lookup *lk = b->lk;
  int rv;
  b->handle = NULL;
  /* Identify may have run before (a connection we already had): take the
   * peer from what the peerstore says it speaks. */
  if (err == 0 && b->id.len && speaks_kad(lk->kad, &b->id))
    table_add(lk->kad, &b->id);
  if (--lk->boots_left > 0)
    return;
  if ((rv = lookup_run(lk)) != 0)
    lookup_finish(lk, rv);
}

int np_kad_bootstrap(np_kad *kad, const uint8_t *const *addrs,
                     const size_t *lens, size_t n, np_kad_done_fn cb, void *ud,
                     np_kad_lookup **handle) {
  const np_peerid *self = &np_host_identity(kad->h)->id;
  np_kad_lookup *lk;
  void *net;
  const np_net_ops *ops = np_host_net(kad->h, &net);
  size_t i;
  *handle = NULL;
  if (cb == NULL || n == 0 || n > KAD_BOOT_MAX)
    return NP_EINVAL;
  if (ops == NULL)
    return NP_ENOTSUP;
  if (kad->stopping)
    return NP_ECANCELED;
  if ((lk = lookup_new(kad, LK_BOOT, self->bytes, self->len, ud)) == NULL)
    return NP_ENOMEM;
  lk->fin = (kad_fn)cb;
  if ((lk->boots = calloc(n, sizeof(*lk->boots))) == NULL) {
    np_kad_cancel(kad, lk);
    return NP_ENOMEM;
  }
  lk->nboots = n;
  lk->boots_left = n + 1; /* held until every connect is under way */
  for (i = 0; i < n; i++) {
    np_peerid id;
    np_ps_peer *pp;
    int rv = NP_EINVAL;
    lk->boots[i].lk = lk;
    if (np_maddr_get_p2p(addrs[i], lens[i], &id) == 0 &&
        (lk->boots[i].id = id, 1) &&
        !np_peerid_equal(&id, self) &&
        (pp = np_peerstore_upsert(np_host_peerstore(kad->h), &id,
                                  now_ms(kad))) &&
        np_peerstore_add_addr(pp, addrs[i], lens[i], now_ms(kad),
                              kad->cfg.addr_ttl_ms) == 0) {
      if (ops->connect_identified)
        rv = ops->connect_identified(net, &id, NULL, NULL, 0,
                                     kad->cfg.boot_timeout_ms, boot_connected,
                                     &lk->boots[i], &lk->boots[i].handle);
      else
        rv = ops->connect(net, &id, NULL, NULL, 0, kad->cfg.boot_timeout_ms,
                          boot_connected, &lk->boots[i],
                          &lk->boots[i].handle);
    }
    if (rv != 0)
      lk->boots_left--;
  }
  *handle = lk;
  boot_connected(&(bconn){lk, NULL, {0}}, 1); /* drop the hold */
  return 0;
}

/* The callbacks never run; the lookup is freed on the next turn (it may
 * be cancelled from inside one of its own callbacks). */
void np_kad_cancel(np_kad *kad, np_kad_lookup *lk) {
  (void)kad;
  if (lk == NULL || lk->canceled)
    return;
  lk->canceled = 1;
  lookup_finish(lk, NP_ECANCELED);
}

/* ---- housekeeping: bootstrap, refresh, republish, expiry
 * --------------------------------------------- */

static void boot_done(void *ud, int err) {
  np_kad *kad = ud;
  size_t n = np_kbucket_size(kad->table);
  if (err == NP_ECANCELED)
    return;
  if (n > 0) {
    kad->reboot_wait = KAD_REBOOT_MIN_MS;
    np_info("kad", "bootstrap-done peers=%zu", n);
  } else {
    np_warn("kad",
            "bootstrap-failed why=\"no bootstrap peer answered\" retry_s=%llu",
            (unsigned long long)kad->reboot_wait / 1000);
    kad->next_reboot = now_ms(kad) + kad->reboot_wait;
    kad->reboot_wait *= 2;
    if (kad->reboot_wait > kad->cfg.refresh_ms)
      kad->reboot_wait = kad->cfg.refresh_ms;
  }
}

static void refresh_done(void *ud, int err, const np_peerid *peers, size_t n) {
  (void)ud, (void)err, (void)peers, (void)n;
}

/* Connect to the configured bootstrap peers, then the self-lookup. */
static void reboot(np_kad *kad) {
  kad->next_reboot = UINT64_MAX;
  if (kad->boot_lk) { /* a refresh is under way: look again later */
    kad->next_reboot = now_ms(kad) + kad->reboot_wait;
    return;
  }
  if (kad->nboot &&
      np_kad_bootstrap(kad, (const uint8_t *const *)kad->boot_bin,
                       kad->boot_len, kad->nboot, boot_done, kad,
                       &kad->boot_lk) != 0)
    kad->boot_lk = NULL;
}

/* Self-lookup plus one lookup of a random key: new peers near us and a
 * fresh sample elsewhere. */
static void refresh(np_kad *kad) {
  np_kad_lookup *lk;
  uint8_t rnd[32];
  const np_peerid *self = &np_host_identity(kad->h)->id;
  if (kad->boot_lk == NULL &&
      np_kad_closest(kad, self->bytes, self->len, refresh_done, kad, &lk) == 0)
    kad->boot_lk = lk;
  np_crypto_random(rnd, sizeof(rnd));
  np_kad_closest(kad, rnd, sizeof(rnd), refresh_done, kad, &lk);
}

static void republish_done(void *ud, int err, size_t n) {
  own *o = ud;
  (void)err, (void)n;
  o->lk = NULL;
}

/* Re-send our own puts and provides that are due, a few per tick (the
 * API calls refresh |o| through own_remember; |o->val| is copied before
 * it is replaced). */
static void republish(np_kad *kad) {
  np_list *it, *tmp;
  unsigned started = 0;
  np_list_for_each_safe(it, tmp, &kad->own) {
    own *o = np_list_entry(it, own, link);
    if (started >= KAD_REPUBLISH_PER_TICK ||
        kad->nlookups >= kad->cfg.max_lookups / 2)
      break;
    if (o->lk || o->due > now_ms(kad))
      continue;
    o->due = now_ms(kad) + kad->cfg.republish_ms;
    if ((o->provide ? np_kad_provide(kad, o->key, o->klen, republish_done, o,
                                     &o->lk)
                    : np_kad_put_value(kad, o->key, o->klen, o->val, o->vlen,
                                       republish_done, o, &o->lk)) == 0)
      started++;
  }
}

static void tick(struct ev_loop *ev, ev_timer *w, int revents) {
  np_kad *kad = np_container_of(w, np_kad, tick);
  (void)ev, (void)revents;
  if (np_kadstore_expire(kad->store, wall_ms()) > 0)
    store_changed(kad);
  mode_update(kad);
  if (np_kbucket_size(kad->table) == 0 && kad->nboot &&
      kad->next_reboot <= now_ms(kad) + 50)
    reboot(kad);
  else if (kad->next_refresh <= now_ms(kad)) {
    kad->next_refresh = now_ms(kad) + kad->cfg.refresh_ms;
    if (np_kbucket_size(kad->table) > 0)
      refresh(kad);
  }
  republish(kad);
}

/* ---- np_module
 * ----------------------------------------------------------------------- */

void np_kad_stop(np_kad *kad) {
  if (kad == NULL)
    return;
  kad->stopping = 1;
  if (ev_is_active(&kad->tick)) {
    ev_ref(EV(kad));
    ev_timer_stop(EV(kad), &kad->tick);
  }
  np_events_unsubscribe(np_host_events(kad->h), kad->sub);
  np_proto_remove_owner(np_host_protos(kad->h), kad);
  /* Callbacks may cancel other lookups (freed on the spot here). */
  while (!np_list_empty(&kad->lookups)) {
    np_kad_lookup *lk = np_list_entry(kad->lookups.next, np_kad_lookup, link);
    lookup_finish(lk, NP_ECANCELED);
    np_loop_cancel(np_host_loop(kad->h), &lk->done);
    lookup_deliver(lk);
  }
  while (!np_list_empty(&kad->own))
    own_free(kad, np_list_entry(kad->own.next, own, link));
  while (!np_list_empty(&kad->probes))
    req_free(np_list_entry(kad->probes.next, kreq, link), 1);
  while (!np_list_empty(&kad->streams))
    np_stream_abandon(np_list_entry(kad->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  store_save(kad);
  ev_timer_stop(EV(kad), &kad->save);
  np_kadstore_del(kad->store);
  np_kbucket_del(kad->table);
  for (size_t i = 0; i < kad->nboot; i++)
    free(kad->boot_bin[i]);
  free(kad->boot_bin);
  free(kad->boot_len);
  free(kad->pub);
  free(kad->protocol);
  free(kad->data_dir);
  free(kad);
}

/* The bootstrap addresses, parsed (each must end in /p2p/ID). */
static int boot_parse(np_kad *kad) {
  size_t i;
  if (kad->cfg.nboot == 0)
    return 0;
  if (kad->cfg.nboot > KAD_BOOT_MAX ||
      (kad->boot_bin = calloc(kad->cfg.nboot, sizeof(*kad->boot_bin))) ==
          NULL ||
      (kad->boot_len = calloc(kad->cfg.nboot, sizeof(*kad->boot_len))) == NULL)
    return kad->cfg.nboot > KAD_BOOT_MAX ? NP_ELIMIT : NP_ENOMEM;
  for (i = 0; i < kad->cfg.nboot; i++) {
    const char *t = kad->cfg.boot[i];
    uint8_t buf[512];
    np_peerid id;
    np_ssize n = np_maddr_parse(t, strlen(t), buf, sizeof(buf));
    if (n < 0 || np_maddr_get_p2p(buf, (size_t)n, &id) != 0) {
      np_error("kad", "bootstrap-addr-invalid addr=\"%s\" why=\"%s\"", t,
               n < 0 ? np_strerror((int)n) : "no /p2p/ peer ID at the end");
      return NP_EINVAL;
    }
    if (np_peerid_equal(&id, &np_host_identity(kad->h)->id))
      continue; /* one config for every host: skip ourselves */
    if ((kad->boot_bin[kad->nboot] = malloc((size_t)n)) == NULL)
      return NP_ENOMEM;
    memcpy(kad->boot_bin[kad->nboot], buf, (size_t)n);
    kad->boot_len[kad->nboot++] = (size_t)n;
  }
  return 0;
}

/* "/natpeer/...": an open namespace for plugins and tools. Any value within
 * the store's limits; a newer put replaces an older one. Not
 * authenticated: whoever needs that signs inside the value. */
static int open_validate(void *ud, const uint8_t *key, size_t keylen,
                         const uint8_t *val, size_t vallen, uint64_t now,
                         const char **why) {
  (void)ud, (void)val, (void)vallen, (void)now;
  if (keylen <= sizeof(NP_KAD_OPEN_NS) - 1) {
    *why = "empty name after /natpeer/";
    return NP_EINVAL;
  }
  (void)key;
  return 0;
}

static int store_open(np_kad *kad) {
  np_kadstore_validator open = {sizeof(open), "natpeer", open_validate, NULL,
                                NULL};
  np_kadstore_config sc;
  char err[256];
  size_t skipped = 0;
  int rv;
  np_kadstore_config_default(&sc);
  sc.record_ttl_ms = sc.provider_ttl_ms = kad->cfg.record_ttl_ms;
  np_crypto_random(sc.hash_seed, sizeof(sc.hash_seed));
  if ((rv = np_kadstore_new(&kad->store, &sc)) != 0 ||
      (rv = np_kadstore_register(kad->store, &open)) != 0 ||
      !kad->cfg.data_dir)
    return rv;
  rv = np_kadstore_load(kad->store, kad->cfg.data_dir, wall_ms(), &skipped,
                        err, sizeof(err));
  if (rv == 0) {
    np_kadstore_stats st;
    np_kadstore_stats_get(kad->store, &st);
    np_info("kad", "store-loaded records=%zu providers=%zu skipped=%zu",
            st.records, st.providers, skipped);
  } else if (rv != NP_ENOENT) {
    /* A damaged file must not keep the host down: start empty, keep the
     * file for inspection until the next save replaces it. */
    np_warn("kad", "store-load-failed why=\"%s\" (starting with an empty "
                   "store)",
            err);
  }
  return 0;
}

int np_kad_start(np_host *h, const np_kad_config *cfg, np_kad **pk) {
  np_kad *kad = calloc(1, sizeof(*kad));
  np_kbucket_config kc;
  int rv;
  if (kad == NULL)
    return NP_ENOMEM;
  kad->h = h;
  if (cfg)
    kad->cfg = *cfg;
  else
    np_kad_config_default(&kad->cfg);
  if (kad->cfg.protocol == NULL || kad->cfg.protocol[0] != '/' ||
      kad->cfg.k == 0 || kad->cfg.k > 255 || kad->cfg.alpha == 0 ||
      kad->cfg.max_msg == 0 || kad->cfg.quorum == 0 ||
      kad->cfg.refresh_ms == 0 || kad->cfg.republish_ms == 0 ||
      kad->cfg.record_ttl_ms == 0 || kad->cfg.max_peer_rate == 0 ||
      kad->cfg.max_lookups == 0 || kad->cfg.mode == NP_DHT_OFF) {
    free(kad);
    return NP_EINVAL;
  }
  np_kadmsg_limits_default(&kad->lim);
  kad->lim.max_msg = kad->cfg.max_msg;
  /* The strings may live in a config that a reload frees. */
  kad->protocol = strdup(kad->cfg.protocol);
  kad->data_dir = kad->cfg.data_dir ? strdup(kad->cfg.data_dir) : NULL;
  if (kad->protocol == NULL || (kad->cfg.data_dir && kad->data_dir == NULL)) {
    free(kad->protocol);
    free(kad->data_dir);
    free(kad);
    return NP_ENOMEM;
  }
  kad->cfg.protocol = kad->protocol;
  kad->cfg.data_dir = kad->data_dir;
  np_list_init(&kad->streams);
  np_list_init(&kad->inbound);
  np_list_init(&kad->lookups);
  np_list_init(&kad->probes);
  np_list_init(&kad->own);
  ev_init(&kad->save, save_due);
  ev_init(&kad->tick, tick);
  kad->reboot_wait = KAD_REBOOT_MIN_MS;
  kad->next_reboot = UINT64_MAX;
  kad->next_refresh = now_ms(kad) + kad->cfg.refresh_ms;
  kc.k = kad->cfg.k;
  kc.replacements = 3;
  if ((rv = np_kbucket_new(&kad->table, &np_host_identity(h)->id, &kc)) != 0 ||
      (rv = store_open(kad)) != 0 || (rv = boot_parse(kad)) != 0 ||
      (wants_server(kad) && (rv = serve_on(kad)) != 0) ||
      (rv = np_events_subscribe(np_host_events(h),
                                NP_EV_PEER_IDENTIFIED |
                                    NP_EV_PROTOCOLS_CHANGED |
                                    NP_EV_OBSERVED_ADDR | NP_EV_REACHABILITY,
                                on_event, kad, &kad->sub)) != 0) {
    np_kad_stop(kad);
    return rv;
  }
  kad->cfg.boot = NULL; /* parsed into boot_bin; the strings are not ours */
  kad->cfg.nboot = 0;
  tick_arm(kad, KAD_TICK_MS);
  reboot(kad);
  *pk = kad;
  return 0;
}

static int kad_mod_start(np_host *h, void **state) {
  const np_conf *c = np_host_conf(h);
  np_kad_config cfg;
  np_kad *kad;
  int rv;
  *state = NULL;
  np_kad_config_default(&cfg);
  if (c) {
    if (c->dht.mode == NP_DHT_OFF) {
      np_info("kad", "off why=\"[dht] mode = off\"");
      return 0;
    }
    cfg.mode = c->dht.mode;
    if (c->dht.protocol)
      cfg.protocol = c->dht.protocol;
    cfg.k = c->dht.bucket_size;
    cfg.alpha = c->dht.alpha;
    cfg.record_ttl_ms = c->dht.record_ttl_ms;
    cfg.refresh_ms = c->dht.refresh_interval_ms;
    cfg.data_dir = c->host.data_dir;
    cfg.boot = (const char *const *)c->bootstrap.peers.v;
    cfg.nboot = c->bootstrap.peers.n;
    cfg.boot_timeout_ms = c->bootstrap.connect_timeout_ms;
  }
  rv = np_kad_start(h, &cfg, &kad);
  if (rv != 0)
    return rv;
  if (c && c->nat.treat_as_public.n &&
      (kad->pub = calloc(c->nat.treat_as_public.n, sizeof(*kad->pub)))) {
    for (size_t i = 0; i < c->nat.treat_as_public.n; i++)
      if (np_prefix_parse(c->nat.treat_as_public.v[i],
                          &kad->pub[kad->npub]) == 0)
        kad->npub++;
    mode_update(kad);
  }
  *state = kad;
  return 0;
}

static void kad_mod_stop(void *state) { np_kad_stop(state); }

const np_module np_kad_module = {"kad", kad_mod_start, kad_mod_stop};
