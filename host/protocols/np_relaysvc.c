#include "np_relaysvc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "np_err.h"
#include "np_host.h"
#include "np_list.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_relaymsg.h"
#include "np_stream.h"
#include "np_swarm.h"

#define HOP_READ_MAX (NP_RELAYMSG_MSG_MAX + 10) /* one message and its prefix */
#define HOP_TIMEOUT 60.0  /* a hop stream must send its request by then */
#define LINGER_TIMEOUT 10.0 /* an answered hop stream the remote keeps open */
#define STOP_TIMEOUT 30.0 /* the target opens the stop stream and answers */
#define CTRL_QUEUE 8192   /* an answer waiting for the remote to read */
/* Writes are all-or-nothing: a chunk well under half of any transport's
 * stream buffer (1 MiB by default) always fits once it says writable. */
#define WRITE_CHUNK (64 * 1024)
#define RESERVE_WINDOW_MS 60000
#define ADDRS_BYTES_MAX 2048 /* reservation addrs, to leave room for the rest */
#define P2P_CIRCUIT 290      /* multiaddr code of /p2p-circuit */

typedef struct resv {
  np_list link;
  np_peerid peer;
  uint64_t expire_ms; /* np_now clock */
  uint64_t expire_s;  /* unix seconds, as sent */
  int has_ip;
  uint8_t ip[16]; /* the connection's remote IP (v4 in the first 4) */
  size_t iplen;
  /* reserve_rate: requests in the current minute */
  uint64_t window_ms;
  uint32_t in_window;
} resv;

/* One direction of a circuit: bytes read from |from| go to |to|. */
typedef struct pipe_dir {
  np_stream *from, *to;
  uint8_t *pend; /* read, not yet taken by |to| (|from| is paused) */
  size_t plen, poff;
  uint64_t bytes;
  int fin_in;   /* |from| finished: close |to| once |pend| is out */
  int fin_sent;
  int paused;
} pipe_dir;

enum { C_OPENING, C_WAIT_STATUS, C_PIPE };

typedef struct circ {
  np_list link;
  np_relaysvc *r;
  np_stream *hop, *stop;
  void *open; /* np_swarm_conn_open handle until the stop stream is ours */
  np_peerid src, dst;
  char src_str[NP_PEERID_STRMAX], dst_str[NP_PEERID_STRMAX];
  int state;
  uint8_t sbuf[HOP_READ_MAX]; /* the stop stream's answer, as it comes */
  size_t slen;
  np_relaymsg_limit limit; /* data 0 and duration 0: unlimited */
  pipe_dir d[2];           /* 0: source -> target, 1: target -> source */
  ev_timer timer;          /* STOP answer, then the duration limit */
  int timer_on;
  int closed_hop, closed_stop; /* their on_close ran */
} circ;

/* A hop stream we answered (FIN queued), until the remote closes it too:
 * reset after LINGER_TIMEOUT, so one that never does holds nothing. */
typedef struct lingerer {
  np_list link;
  np_stream *s;
  ev_timer timer;
  np_relaysvc *r;
} lingerer;

/* An inbound hop stream until its request is handled. */
typedef struct hopreq {
  np_list link;
  np_relaysvc *r;
  np_stream *s;
  uint8_t buf[HOP_READ_MAX];
  size_t len;
  ev_timer timer;
} hopreq;

struct np_relaysvc {
  np_host *h;
  np_swarm *sw;
  np_list streams; /* every np_stream it holds (owner_link) */
  np_list reqs;    /* hopreq */
  np_list resvs;   /* resv */
  np_list circs;   /* circ */
  np_list lingers; /* lingerer */
  size_t nresv, ncirc;
  int serving;
  int reach; /* the last NP_EV_REACHABILITY (enum np_reach_state) */
  np_event_sub *sub;
  uint64_t refused, rsv_refused, circuits_total, bytes_relayed;
};

static struct ev_loop *EV(np_relaysvc *r) {
  return np_loop_ev(np_host_loop(r->h));
}
static uint64_t now_ms(np_relaysvc *r) { return np_now(np_host_loop(r->h)); }
static const np_conf *CONF(np_relaysvc *r) { return np_host_conf(r->h); }


static void let_go(np_stream *s, int reset) {
  np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
  if (reset)
    s->ops->reset(s);
}

static void lg_free(lingerer *g) {
  ev_timer_stop(EV(g->r), &g->timer);
  np_list_remove(&g->link);
  free(g);
}
static void lg_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err;
  lg_free(ud);
}
static void lg_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  lingerer *g = np_container_of(w, lingerer, timer);
  np_stream *s = g->s;
  (void)ev, (void)revents;
  lg_free(g);
  let_go(s, 1);
}
static const np_stream_cbs lg_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = np_stream_ignore_data,
    .on_close = lg_close,
};

/* |s| was answered: wait for the remote's close, bounded in time. */
static void finish(np_relaysvc *r, np_stream *s) {
  lingerer *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    let_go(s, 1);
    return;
  }
  g->r = r;
  g->s = s;
  np_stream_set_cbs(s, &lg_cbs, g);
  s->ops->pause(s, 0); /* a paused stream would hold back the remote's FIN */
  ev_timer_init(&g->timer, lg_timeout, LINGER_TIMEOUT, 0.);
  ev_timer_start(EV(r), &g->timer);
  np_list_insert_tail(&r->lingers, &g->link);
}

static void peer_str(const np_peerid *id, char *out) {
  if (np_peerid_to_string(id, out, NP_PEERID_STRMAX) < 0)
    strcpy(out, "?");
}

static const char *status_name(int st) {
  switch (st) {
  case NP_RELAYMSG_OK:
    return "OK";
  case NP_RELAYMSG_RESERVATION_REFUSED:
    return "RESERVATION_REFUSED";
  case NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED:
    return "RESOURCE_LIMIT_EXCEEDED";
  case NP_RELAYMSG_PERMISSION_DENIED:
    return "PERMISSION_DENIED";
  case NP_RELAYMSG_CONNECTION_FAILED:
    return "CONNECTION_FAILED";
  case NP_RELAYMSG_NO_RESERVATION:
    return "NO_RESERVATION";
  case NP_RELAYMSG_MALFORMED_MESSAGE:
    return "MALFORMED_MESSAGE";
  case NP_RELAYMSG_UNEXPECTED_MESSAGE:
    return "UNEXPECTED_MESSAGE";
  default:
    return "?";
  }
}

/* Send |m| on |s| (queued up to CTRL_QUEUE), FIN after it if |fin|. */
static int send_msg(np_stream *s, const np_relaymsg *m, int fin) {
  uint8_t out[NP_RELAYMSG_MSG_MAX + 16];
  np_ssize n = np_relaymsg_encode_lp(m, out, sizeof(out));
  if (n < 0)
    return (int)n;
  return s->ops->send(s, out, (size_t)n, fin, CTRL_QUEUE);
}

/* Answer a hop request with a bare status and finish the stream. */
static void hop_status(np_relaysvc *r, np_stream *s, np_relaymsg_status st) {
  np_relaymsg m;
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_STATUS;
  m.has_status = 1;
  m.status = st;
  send_msg(s, &m, 1);
  finish(r, s);
}

/* The remote IP of a connection address (/ip4 or /ip6 first). */
static int addr_ip(const uint8_t *a, size_t len, uint8_t ip[16],
                   size_t *iplen) {
  size_t off = 0;
  np_maddr_comp c;
  if (len == 0 || np_maddr_next(a, len, &off, &c) != 1)
    return 0;
  if ((strcmp(c.name, "ip4") == 0 && c.vlen == 4) ||
      (strcmp(c.name, "ip6") == 0 && c.vlen == 16)) {
    memcpy(ip, c.val, c.vlen);
    *iplen = c.vlen;
    return 1;
  }
  return 0;
}

/* ---- reservations --------------------------------------------------------- */

static resv *resv_find(np_relaysvc *r, const np_peerid *p) {
  np_list *it;
  for (it = r->resvs.next; it != &r->resvs; it = it->next) {
    resv *v = np_list_entry(it, resv, link);
    if (np_peerid_equal(&v->peer, p))
      return v;
  }
  return NULL;
}

static void resv_drop(np_relaysvc *r, resv *v, const char *why) {
  char ps[NP_PEERID_STRMAX];
  peer_str(&v->peer, ps);
  np_info("relay", "reservation-ended peer=%s why=%s", ps, why);
  np_list_remove(&v->link);
  r->nresv--;
  free(v);
}

/* Drop what expired. Reservations are few (max_reservations): a walk on
 * each request is cheaper than a timer per reservation. */
static void resv_sweep(np_relaysvc *r) {
  uint64_t now = now_ms(r);
  np_list *it = r->resvs.next;
  while (it != &r->resvs) {
    resv *v = np_list_entry(it, resv, link);
    it = it->next;
    if (v->expire_ms <= now)
      resv_drop(r, v, "expired");
  }
}

static size_t resv_count_ip(np_relaysvc *r, const uint8_t *ip, size_t iplen,
                            const resv *except) {
  size_t n = 0;
  np_list *it;
  for (it = r->resvs.next; it != &r->resvs; it = it->next) {
    resv *v = np_list_entry(it, resv, link);
    if (v != except && v->has_ip && v->iplen == iplen &&
        memcmp(v->ip, ip, iplen) == 0)
      n++;
  }
  return n;
}

static int is_loopback(const uint8_t *a, size_t len) {
  uint8_t ip[16];
  size_t iplen;
  static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 0, 0, 0, 1};
  if (!addr_ip(a, len, ip, &iplen))
    return 0;
  return iplen == 4 ? ip[0] == 127 : memcmp(ip, v6lo, 16) == 0;
}

static int has_circuit(const uint8_t *a, size_t len) {
  size_t off = 0;
  np_maddr_comp c;
  int rv;
  while ((rv = np_maddr_next(a, len, &off, &c)) == 1)
    if (c.code == P2P_CIRCUIT)
      return 1;
  return rv < 0;
}

/* |treat_as_public| parsed; NULL/0 when empty or out of memory. */
static np_prefix *public_prefixes(np_relaysvc *r, size_t *n) {
  const np_strv *v = &CONF(r)->nat.treat_as_public;
  np_prefix *p;
  *n = 0;
  if (v->n == 0 || (p = calloc(v->n, sizeof(*p))) == NULL)
    return NULL;
  for (size_t i = 0; i < v->n; i++)
    if (np_prefix_parse(v->v[i], &p[*n]) == 0)
      (*n)++;
  return p;
}

/* Our addresses for a reservation, with /p2p/ our ID: the public ones (go
 * lists only those); when none is public (a LAN or lab relay, the
 * in-memory transport), every non-loopback one, since a peer that reached
 * us can likely reach those too. Never circuit addresses. Returns how
 * many were put in |out| (|store| holds them). */
static size_t our_addrs(np_relaysvc *r, uint8_t store[][NP_MADDR_MAX],
                        np_relaymsg_blob *out, size_t max) {
  void *net;
  const np_net_ops *ops = np_host_net(r->h, &net);
  const uint8_t *bins[32];
  size_t lens[32], n, k = 0, total = 0, npub;
  np_prefix *pub;
  int want_public = 0;
  if (ops == NULL)
    return 0;
  n = ops->addrs(net, bins, lens, 32);
  if (n > 32)
    n = 32;
  pub = public_prefixes(r, &npub);
  for (size_t i = 0; i < n; i++)
    if (!has_circuit(bins[i], lens[i]) &&
        np_maddr_is_public_with(bins[i], lens[i], pub, npub))
      want_public = 1;
  for (size_t i = 0; i < n && k < max; i++) {
    np_ssize l;
    if (has_circuit(bins[i], lens[i]) || lens[i] > NP_MADDR_MAX)
      continue;
    if (want_public ? !np_maddr_is_public_with(bins[i], lens[i], pub, npub)
                    : is_loopback(bins[i], lens[i]))
      continue;
    memcpy(store[k], bins[i], lens[i]);
    l = np_maddr_append_p2p(store[k], lens[i], NP_MADDR_MAX,
                            &np_host_identity(r->h)->id);
    if (l < 0 || total + (size_t)l > ADDRS_BYTES_MAX)
      continue;
    total += (size_t)l;
    out[k].data = store[k];
    out[k].len = (size_t)l;
    k++;
  }
  free(pub);
  return k;
}

static int is_unlimited(np_relaysvc *r, const np_peerid *a,
                        const np_peerid *b) {
  const np_strv *v = &CONF(r)->relay.unlimited_peers;
  for (size_t i = 0; i < v->n; i++) {
    np_peerid id;
    if (np_peerid_parse(&id, v->v[i], strlen(v->v[i])) == 0 &&
        (np_peerid_equal(&id, a) || np_peerid_equal(&id, b)))
      return 1;
  }
  return 0;
}

static void refuse_rsv(np_relaysvc *r, np_stream *s, np_relaymsg_status st,
                       const char *why) {
  static np_ratelimit rl; /* peers decide how often */
  r->refused++;
  r->rsv_refused++;
  if (np_ratelimit_ok(&rl, 20, "relay", "reservation-refused"))
    np_info("relay", "reservation-refused peer=%s why=%s", s->peer, why);
  hop_status(r, s, st);
}

static void handle_reserve(np_relaysvc *r, np_stream *s) {
  const np_conf *c = CONF(r);
  const np_conn *conn = np_swarm_stream_conn(s);
  resv *v;
  uint8_t ip[16];
  size_t iplen = 0;
  int has_ip;
  uint64_t now = now_ms(r), ttl = c->relay.reservation_ttl_ms;
  np_relaymsg m;
  uint8_t store[NP_RELAYMSG_ADDRS_MAX][NP_MADDR_MAX];
  np_relaymsg_blob addrs[NP_RELAYMSG_ADDRS_MAX];
  uint8_t voucher[NP_RELAYMSG_VOUCHER_MAX];
  np_ssize vl;
  int is_new = 0;

  if (conn == NULL) {
    let_go(s, 1);
    return;
  }
  if (conn->limited) {
    refuse_rsv(r, s, NP_RELAYMSG_PERMISSION_DENIED, "relayed-connection");
    return;
  }
  resv_sweep(r);
  has_ip = addr_ip(conn->raddr, conn->raddr_len, ip, &iplen);
  v = resv_find(r, &s->peer_id);
  if (v == NULL) {
    if (r->nresv >= c->relay.max_reservations) {
      refuse_rsv(r, s, NP_RELAYMSG_RESERVATION_REFUSED, "max-reservations");
      return;
    }
  } else if (now - v->window_ms < RESERVE_WINDOW_MS &&
             v->in_window >= c->relay.reserve_rate) {
    /* The peer keeps what it holds; only this request is refused. */
    refuse_rsv(r, s, NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED, "reserve-rate");
    return;
  }
  if (has_ip &&
      resv_count_ip(r, ip, iplen, v) >= c->relay.max_reservations_per_ip) {
    refuse_rsv(r, s, NP_RELAYMSG_RESERVATION_REFUSED, "max-per-ip");
    return;
  }
  if (v == NULL) {
    if ((v = calloc(1, sizeof(*v))) == NULL) {
      refuse_rsv(r, s, NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED, "no-memory");
      return;
    }
    v->peer = s->peer_id;
    v->window_ms = now;
    np_list_insert_tail(&r->resvs, &v->link);
    r->nresv++;
    is_new = 1;
  }
  if (now - v->window_ms >= RESERVE_WINDOW_MS) {
    v->window_ms = now;
    v->in_window = 0;
  }
  v->in_window++;
  v->has_ip = has_ip;
  memcpy(v->ip, ip, sizeof(ip));
  v->iplen = iplen;
  v->expire_ms = now + ttl;
  v->expire_s = (uint64_t)time(NULL) + ttl / 1000;

  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_STATUS;
  m.has_status = 1;
  m.status = NP_RELAYMSG_OK;
  m.has_reservation = 1;
  m.reservation.expire = v->expire_s;
  m.reservation.addrs = addrs;
  m.reservation.naddrs = our_addrs(r, store, addrs, NP_RELAYMSG_ADDRS_MAX);
  vl = np_relaymsg_voucher_seal(np_host_identity(r->h), &v->peer, v->expire_s,
                                voucher, sizeof(voucher));
  if (vl > 0) {
    m.reservation.voucher.data = voucher;
    m.reservation.voucher.len = (size_t)vl;
  }
  /* The limits circuits to this peer will have: none for unlimited_peers. */
  if (!is_unlimited(r, &v->peer, &v->peer)) {
    m.has_limit = 1;
    m.limit.duration = (uint32_t)(c->relay.circuit_duration_ms / 1000);
    m.limit.data = c->relay.circuit_bytes;
  }
  np_info("relay", "reservation-accepted peer=%s expire=%llu renewed=%d",
          s->peer, (unsigned long long)v->expire_s, !is_new);
  send_msg(s, &m, 1);
  finish(r, s);
}

/* ---- circuits --------------------------------------------------------------- */

static size_t circ_count_peer(np_relaysvc *r, const np_peerid *p) {
  size_t n = 0;
  np_list *it;
  for (it = r->circs.next; it != &r->circs; it = it->next) {
    circ *c = np_list_entry(it, circ, link);
    if (np_peerid_equal(&c->src, p) || np_peerid_equal(&c->dst, p))
      n++;
  }
  return n;
}


static uint64_t circ_buffered(const circ *c) {
  return (c->d[0].plen - c->d[0].poff) + (c->d[1].plen - c->d[1].poff);
}

static void timer_stop(circ *c) {
  if (c->timer_on) {
    ev_timer_stop(EV(c->r), &c->timer);
    c->timer_on = 0;
  }
}

/* End |c|: both streams let go of (reset unless both ended cleanly), the
 * stop open withdrawn, |c| freed. */
static void circ_end(circ *c, const char *why, int reset) {
  np_relaysvc *r = c->r;
  timer_stop(c);
  if (c->open) {
    void *net;
    const np_net_ops *ops = np_host_net(r->h, &net);
    if (ops)
      ops->cancel(net, c->open);
    c->open = NULL;
  }
  if (c->state == C_PIPE)
    np_info("relay", "circuit-closed src=%s dst=%s bytes=%llu/%llu why=%s",
            c->src_str, c->dst_str, (unsigned long long)c->d[0].bytes,
            (unsigned long long)c->d[1].bytes, why);
  else
    np_info("relay", "circuit-failed src=%s dst=%s why=%s", c->src_str,
            c->dst_str, why);
  if (c->hop && !c->closed_hop)
    let_go(c->hop, reset);
  if (c->stop && !c->closed_stop)
    let_go(c->stop, reset);
  for (int i = 0; i < 2; i++)
    free(c->d[i].pend);
  np_list_remove(&c->link);
  r->ncirc--;
  free(c);
}

/* Refuse the source (before piping) with |st| and end |c|. */
static void circ_fail(circ *c, np_relaymsg_status st, const char *why) {
  if (c->hop && !c->closed_hop) {
    np_stream *hop = c->hop;
    c->hop = NULL;
    hop_status(c->r, hop, st);
  }
  circ_end(c, why, 1);
}

static void dir_pump(circ *c, pipe_dir *d);

/* Forward |len| bytes of direction |d|. Returns 0, or -1 when |c| ended. */
static int dir_forward(circ *c, pipe_dir *d, const uint8_t *data,
                       size_t len) {
  np_relaysvc *r = c->r;
  if (c->limit.data && d->bytes + len > c->limit.data) {
    circ_end(c, "data-limit", 1);
    return -1;
  }
  d->bytes += len;
  r->bytes_relayed += len;
  if (d->to == NULL || d->plen > d->poff) {
    /* Before piping, or earlier bytes still wait (data that came while
     * pausing): keep order behind them. |from| is paused, so this is at
     * most one delivery of the transport. */
    uint8_t *n = realloc(d->pend, d->plen + len);
    if (n == NULL) {
      circ_end(c, "no-memory", 1);
      return -1;
    }
    memcpy(n + d->plen, data, len);
    d->pend = n;
    d->plen += len;
    return 0;
  }
  while (len > 0) {
    size_t n = len < WRITE_CHUNK ? len : WRITE_CHUNK;
    int rv = d->to->ops->write(d->to, data, n);
    if (rv == NP_ELIMIT) {
      /* The receiver is slower: hold the rest, stop reading |from| until
       * |to| says it is writable. */
      free(d->pend);
      if ((d->pend = malloc(len)) == NULL) {
        d->plen = d->poff = 0;
        circ_end(c, "no-memory", 1);
        return -1;
      }
      memcpy(d->pend, data, len);
      d->plen = len;
      d->poff = 0;
      if (!d->paused && d->from) {
        d->paused = 1;
        d->from->ops->pause(d->from, 1);
      }
      return 0;
    }
    if (rv < 0) {
      circ_end(c, "write-failed", 1);
      return -1;
    }
    data += n;
    len -= n;
  }
  return 0;
}

/* Push held bytes; when they are out, finish or resume reading. */
static void dir_pump(circ *c, pipe_dir *d) {
  if (d->to == NULL)
    return;
  while (d->plen > d->poff) {
    size_t n = d->plen - d->poff;
    int rv;
    if (n > WRITE_CHUNK)
      n = WRITE_CHUNK;
    rv = d->to->ops->write(d->to, d->pend + d->poff, n);
    if (rv == NP_ELIMIT)
      return;
    if (rv < 0) {
      circ_end(c, "write-failed", 1);
      return;
    }
    d->poff += n;
  }
  free(d->pend);
  d->pend = NULL;
  d->plen = d->poff = 0;
  if (d->fin_in && !d->fin_sent) {
    d->fin_sent = 1;
    d->to->ops->close(d->to);
  }
  if (d->paused && !d->fin_in && d->from) {
    d->paused = 0;
    d->from->ops->pause(d->from, 0);
  }
}

static void circ_data(circ *c, int dir, const uint8_t *data, size_t len) {
  pipe_dir *d = &c->d[dir];
  if (len == 0) { /* FIN: half-close the other side once its bytes are out */
    d->fin_in = 1;
    if (d->to && d->plen == d->poff && !d->fin_sent) {
      d->fin_sent = 1;
      d->to->ops->close(d->to);
    }
    return;
  }
  dir_forward(c, d, data, len);
}

/* Either stream closed: cleanly after both FINs the circuit is over; an
 * error or a reset on one side resets the other. */
static void circ_closed(circ *c, int is_hop, int err) {
  np_stream *gone = is_hop ? c->hop : c->stop;
  if (is_hop)
    c->closed_hop = 1;
  else
    c->closed_stop = 1;
  /* The stream is freed when this returns: no direction may touch it. */
  for (int i = 0; i < 2; i++) {
    if (c->d[i].from == gone)
      c->d[i].from = NULL;
    if (c->d[i].to == gone)
      c->d[i].to = NULL;
  }
  if (c->state != C_PIPE) {
    if (is_hop) {
      c->hop = NULL;
      circ_end(c, "source-gone", 1);
    } else {
      c->stop = NULL;
      circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "target-gone");
    }
    return;
  }
  if (err != 0) {
    circ_end(c, is_hop ? "source-reset" : "target-reset", 1);
    return;
  }
  if (c->closed_hop && c->closed_stop)
    circ_end(c, "done", 0);
}

static void pipe_hop_data(np_stream *s, const uint8_t *d, size_t l, void *ud) {
  (void)s;
  circ_data(ud, 0, d, l);
}
static void pipe_stop_data(np_stream *s, const uint8_t *d, size_t l,
                           void *ud) {
  (void)s;
  circ_data(ud, 1, d, l);
}
static void pipe_hop_close(np_stream *s, int err, void *ud) {
  (void)s;
  circ_closed(ud, 1, err);
}
static void pipe_stop_close(np_stream *s, int err, void *ud) {
  (void)s;
  circ_closed(ud, 0, err);
}
/* |s| can take bytes again: the direction writing into it pumps. */
static void pipe_hop_writable(np_stream *s, void *ud) {
  circ *c = ud;
  (void)s;
  if (c->state == C_PIPE)
    dir_pump(c, &c->d[1]);
}
static void pipe_stop_writable(np_stream *s, void *ud) {
  circ *c = ud;
  (void)s;
  if (c->state == C_PIPE)
    dir_pump(c, &c->d[0]);
}

static const np_stream_cbs hop_pipe_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = pipe_hop_data,
    .on_close = pipe_hop_close,
    .on_writable = pipe_hop_writable,
};

static void on_circ_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  circ *c = np_container_of(w, circ, timer);
  (void)ev, (void)revents;
  c->timer_on = 0;
  if (c->state == C_PIPE)
    circ_end(c, "duration-limit", 1);
  else
    circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "stop-timeout");
}

/* The target said OK: answer the source, then pipe, starting with what
 * either side sent behind its message. */
static void circ_start_pipe(circ *c, const uint8_t *rest, size_t rlen) {
  np_relaymsg m;
  np_relaysvc *r = c->r;
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_STATUS;
  m.has_status = 1;
  m.status = NP_RELAYMSG_OK;
  if (c->limit.duration || c->limit.data) {
    m.has_limit = 1;
    m.limit = c->limit;
  }
  if (send_msg(c->hop, &m, 0) != 0) {
    circ_end(c, "source-write-failed", 1);
    return;
  }
  c->state = C_PIPE;
  r->circuits_total++;
  timer_stop(c);
  if (c->limit.duration) {
    ev_timer_init(&c->timer, on_circ_timer, (double)c->limit.duration, 0.);
    ev_timer_start(EV(r), &c->timer);
    c->timer_on = 1;
  }
  np_info("relay", "circuit-open src=%s dst=%s limit=%us/%lluB", c->src_str,
          c->dst_str, (unsigned)c->limit.duration,
          (unsigned long long)c->limit.data);
  c->d[0].from = c->hop;
  c->d[0].to = c->stop;
  c->d[1].from = c->stop;
  c->d[1].to = c->hop;
  np_stream_set_cbs(c->hop, &hop_pipe_cbs, c);
  /* Target bytes behind its STATUS (the upgrade's first flight). */
  if (rlen && dir_forward(c, &c->d[1], rest, rlen) != 0)
    return;
  /* Source bytes behind its CONNECT wait in d[0].pend, the hop stream
   * paused since: push them, which resumes it. The source byte count was
   * taken when they were read. */
  dir_pump(c, &c->d[0]);
}

static void stop_data(np_stream *s, const uint8_t *data, size_t len,
                      void *ud);

static const np_stream_cbs stop_pipe_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = pipe_stop_data,
    .on_close = pipe_stop_close,
    .on_writable = pipe_stop_writable,
};

/* Reading the target's STATUS on the stop stream. */
static void stop_data(np_stream *s, const uint8_t *data, size_t len,
                      void *ud) {
  circ *c = ud;
  np_relaymsg m;
  np_ssize used;
  size_t take;
  if (c->state != C_WAIT_STATUS) {
    circ_data(c, 1, data, len);
    return;
  }
  if (len == 0) {
    circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "target-finished");
    return;
  }
  take = len < sizeof(c->sbuf) - c->slen ? len : sizeof(c->sbuf) - c->slen;
  memcpy(c->sbuf + c->slen, data, take);
  c->slen += take;
  used = np_relaymsg_decode_lp(&m, NP_RELAYMSG_STOP, c->sbuf, c->slen, NULL);
  if (used == NP_ETRUNC && c->slen < sizeof(c->sbuf))
    return;
  if (used < 0) {
    circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "target-malformed");
    return;
  }
  if (m.type != NP_RELAYMSG_STOP_STATUS || !m.has_status ||
      m.status != NP_RELAYMSG_OK) {
    np_relaymsg_free(&m);
    circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "target-refused");
    return;
  }
  np_relaymsg_free(&m);
  np_swarm_stream_await(s, 0);
  np_stream_set_cbs(s, &stop_pipe_cbs, c);
  {
    /* What followed the message: in sbuf, then in this delivery. */
    size_t in_buf = c->slen - (size_t)used;
    size_t rest_len = in_buf + (len - take);
    uint8_t *rest = NULL;
    if (rest_len) {
      if ((rest = malloc(rest_len)) == NULL) {
        circ_end(c, "no-memory", 1);
        return;
      }
      memcpy(rest, c->sbuf + used, in_buf);
      memcpy(rest + in_buf, data + take, len - take);
    }
    circ_start_pipe(c, rest, rest_len);
    free(rest);
  }
}

static void stop_close(np_stream *s, int err, void *ud) {
  (void)s;
  circ_closed(ud, 0, err);
}

static const np_stream_cbs stop_wait_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = stop_data,
    .on_close = stop_close,
};

static void stop_opened(void *ud, int err, np_stream *s, const char *proto) {
  circ *c = ud;
  np_relaymsg m;
  (void)proto;
  c->open = NULL;
  if (err != 0) {
    circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "stop-open-failed");
    return;
  }
  c->stop = s;
  c->state = C_WAIT_STATUS;
  np_stream_set_cbs(s, &stop_wait_cbs, c);
  np_list_insert_tail(&c->r->streams, &s->owner_link);
  /* A target that vanished is found by the swarm's probes in seconds,
   * not at the STOP timeout. */
  np_swarm_stream_await(s, 1);
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_STOP;
  m.type = NP_RELAYMSG_STOP_CONNECT;
  m.has_peer = 1;
  m.peer.id = c->src;
  if (c->limit.duration || c->limit.data) {
    m.has_limit = 1;
    m.limit = c->limit;
  }
  if (send_msg(s, &m, 0) != 0)
    circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "stop-write-failed");
}

/* Hop stream while its circuit waits for the target: bytes the source
 * sends early are kept (the stream is paused, so at most one delivery). */
static void hop_wait_data(np_stream *s, const uint8_t *d, size_t len,
                          void *ud) {
  circ *c = ud;
  (void)s;
  circ_data(c, 0, d, len);
}
static void hop_wait_close(np_stream *s, int err, void *ud) {
  (void)s;
  circ_closed(ud, 1, err);
}
static const np_stream_cbs hop_wait_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = hop_wait_data,
    .on_close = hop_wait_close,
};

typedef struct conn_pick {
  const np_peerid *peer;
  const np_conn *c;
} conn_pick;

static int pick_conn(const np_conn *c, void *ud) {
  conn_pick *p = ud;
  if (c->limited || !np_peerid_equal(&c->peer, p->peer))
    return 0;
  p->c = c;
  return 1;
}

static void refuse_circ(np_relaysvc *r, np_stream *s, const np_peerid *dst,
                        np_relaymsg_status st, const char *why) {
  static np_ratelimit rl; /* peers decide how often */
  char ds[NP_PEERID_STRMAX];
  r->refused++;
  if (np_ratelimit_ok(&rl, 20, "relay", "circuit-refused")) {
    peer_str(dst, ds);
    np_info("relay", "circuit-refused src=%s dst=%s why=%s status=%s",
            s->peer, ds, why, status_name(st));
  }
  hop_status(r, s, st);
}

/* CONNECT to |dst|; |rest| (|rlen|) is what the source sent behind it. */
static void handle_connect(np_relaysvc *r, np_stream *s, const np_peerid *dst,
                           const uint8_t *rest, size_t rlen) {
  const np_conf *cf = CONF(r);
  const np_conn *conn = np_swarm_stream_conn(s);
  conn_pick pick = {dst, NULL};
  circ *c;
  int rv;
  if (conn == NULL) {
    let_go(s, 1);
    return;
  }
  if (conn->limited) {
    refuse_circ(r, s, dst, NP_RELAYMSG_PERMISSION_DENIED,
                "relayed-connection");
    return;
  }
  resv_sweep(r);
  if (resv_find(r, dst) == NULL) {
    refuse_circ(r, s, dst, NP_RELAYMSG_NO_RESERVATION, "no-reservation");
    return;
  }
  if (r->ncirc >= cf->relay.max_circuits_total) {
    refuse_circ(r, s, dst, NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED,
                "max-circuits-total");
    return;
  }
  if (circ_count_peer(r, &s->peer_id) >= cf->relay.max_circuits ||
      circ_count_peer(r, dst) >= cf->relay.max_circuits) {
    refuse_circ(r, s, dst, NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED,
                "max-circuits");
    return;
  }
  np_swarm_foreach_conn(r->sw, pick_conn, &pick);
  if (pick.c == NULL) { /* never dial the target anew */
    refuse_circ(r, s, dst, NP_RELAYMSG_CONNECTION_FAILED, "target-offline");
    return;
  }
  if ((c = calloc(1, sizeof(*c))) == NULL) {
    refuse_circ(r, s, dst, NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED, "no-memory");
    return;
  }
  c->r = r;
  c->hop = s;
  c->src = s->peer_id;
  c->dst = *dst;
  peer_str(&c->src, c->src_str);
  peer_str(&c->dst, c->dst_str);
  c->state = C_OPENING;
  if (!is_unlimited(r, &c->src, &c->dst)) {
    c->limit.duration = (uint32_t)(cf->relay.circuit_duration_ms / 1000);
    c->limit.data = cf->relay.circuit_bytes;
  }
  np_list_insert_tail(&r->circs, &c->link);
  r->ncirc++;
  np_stream_set_cbs(s, &hop_wait_cbs, c);
  /* The source waits for our answer: anything it sent early is held
   * (counted against its limit) and its stream paused until piping. */
  c->d[0].from = s;
  c->d[0].paused = 1;
  s->ops->pause(s, 1);
  if (rlen) {
    if (c->limit.data && rlen > c->limit.data) {
      circ_end(c, "data-limit", 1);
      return;
    }
    if ((c->d[0].pend = malloc(rlen)) == NULL) {
      circ_end(c, "no-memory", 1);
      return;
    }
    memcpy(c->d[0].pend, rest, rlen);
    c->d[0].plen = rlen;
    c->d[0].bytes = rlen;
    r->bytes_relayed += rlen;
  }
  ev_timer_init(&c->timer, on_circ_timer, STOP_TIMEOUT, 0.);
  ev_timer_start(EV(r), &c->timer);
  c->timer_on = 1;
  /* The callback may run from inside (then it may have ended |c|). */
  rv = np_swarm_conn_open(r->sw, pick.c, NP_RELAYMSG_STOP_PROTOCOL,
                          stop_opened, c, &c->open);
  if (rv != 0) {
    c->open = NULL;
    circ_fail(c, NP_RELAYMSG_CONNECTION_FAILED, "stop-open-failed");
  }
}

/* ---- hop requests ------------------------------------------------------------ */

static void req_free(hopreq *q) {
  ev_timer_stop(EV(q->r), &q->timer);
  np_list_remove(&q->link);
  free(q);
}

static void req_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  hopreq *q = ud;
  np_relaysvc *r = q->r;
  np_relaymsg m;
  np_ssize used;
  size_t take;
  if (len == 0) { /* finished without a whole request */
    req_free(q);
    let_go(s, 1);
    return;
  }
  take = len < sizeof(q->buf) - q->len ? len : sizeof(q->buf) - q->len;
  memcpy(q->buf + q->len, data, take);
  q->len += take;
  used = np_relaymsg_decode_lp(&m, NP_RELAYMSG_HOP, q->buf, q->len, NULL);
  if (used == NP_ETRUNC && q->len < sizeof(q->buf))
    return;
  if (used < 0) {
    req_free(q);
    static np_ratelimit rl;
    r->refused++;
    if (np_ratelimit_ok(&rl, 20, "relay", "request-malformed"))
      np_info("relay", "request-malformed peer=%s err=%s", s->peer,
              np_errname((int)used));
    hop_status(r, s, NP_RELAYMSG_MALFORMED_MESSAGE);
    return;
  }
  np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
  if (m.type == NP_RELAYMSG_HOP_RESERVE) {
    req_free(q);
    np_relaymsg_free(&m);
    handle_reserve(r, s);
  } else if (m.type == NP_RELAYMSG_HOP_CONNECT && m.has_peer) {
    /* What followed the message: the rest of q->buf, then of |data|. */
    np_peerid dst = m.peer.id;
    size_t in_buf = q->len - (size_t)used, rlen = in_buf + (len - take);
    uint8_t *rest = NULL;
    np_relaymsg_free(&m);
    if (rlen && (rest = malloc(rlen)) == NULL) {
      req_free(q);
      let_go(s, 1);
      return;
    }
    if (rlen) {
      memcpy(rest, q->buf + used, in_buf);
      memcpy(rest + in_buf, data + take, len - take);
    }
    req_free(q);
    handle_connect(r, s, &dst, rest, rlen);
    free(rest);
  } else {
    int st = m.type == NP_RELAYMSG_HOP_CONNECT ? NP_RELAYMSG_MALFORMED_MESSAGE
                                               : NP_RELAYMSG_UNEXPECTED_MESSAGE;
    req_free(q);
    np_relaymsg_free(&m);
    r->refused++;
    hop_status(r, s, st);
  }
}

static void req_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err;
  req_free(ud);
}

static void on_req_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  hopreq *q = np_container_of(w, hopreq, timer);
  np_stream *s = q->s;
  (void)ev, (void)revents;
  req_free(q);
  let_go(s, 1);
}

static const np_stream_cbs req_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = req_data,
    .on_close = req_close,
};

/* A new hop stream (the handler's cbs): read its request. */
static void hop_open(np_stream *s, void *ud) {
  np_relaysvc *r = ud;
  hopreq *q = calloc(1, sizeof(*q));
  if (q == NULL) {
    let_go(s, 1);
    return;
  }
  q->r = r;
  q->s = s;
  np_list_insert_tail(&r->reqs, &q->link);
  ev_timer_init(&q->timer, on_req_timeout, HOP_TIMEOUT, 0.);
  ev_timer_start(EV(r), &q->timer);
  np_stream_set_cbs(s, &req_cbs, q);
}

static const np_stream_cbs hop_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = hop_open,
    .on_data = np_stream_ignore_data,
    .on_close = np_stream_ignore_close,
};

/* ---- serving ------------------------------------------------------------------ */

/* Stop serving: the protocol withdrawn, requests, circuits and
 * reservations ended. */
static void serve_off(np_relaysvc *r) {
  while (!np_list_empty(&r->reqs)) {
    hopreq *q = np_list_entry(r->reqs.next, hopreq, link);
    np_stream *s = q->s;
    req_free(q);
    let_go(s, 1);
  }
  while (!np_list_empty(&r->circs))
    circ_end(np_list_entry(r->circs.next, circ, link), "relay-stopped", 1);
  while (!np_list_empty(&r->lingers)) {
    lingerer *g = np_list_entry(r->lingers.next, lingerer, link);
    np_stream *s = g->s;
    lg_free(g);
    let_go(s, 1);
  }
  while (!np_list_empty(&r->resvs))
    resv_drop(r, np_list_entry(r->resvs.next, resv, link), "relay-stopped");
  if (r->serving) {
    np_proto_remove(np_host_protos(r->h), NP_RELAYMSG_HOP_PROTOCOL, r);
    r->serving = 0;
    np_info("relay", "service-stopped");
  }
}

static int serve_on(np_relaysvc *r) {
  const np_conf *cf = CONF(r);
  np_handler hd;
  int rv;
  if (r->serving)
    return 0;
  memset(&hd, 0, sizeof(hd));
  hd.proto = (char *)NP_RELAYMSG_HOP_PROTOCOL;
  hd.proto_len = strlen(NP_RELAYMSG_HOP_PROTOCOL);
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = r;
  hd.owner_name = "relaysvc";
  hd.stream = hop_cbs;
  hd.ud = r;
  hd.streams = &r->streams;
  /* A source's circuits hold their hop streams open: room for them and a
   * few requests on one connection. */
  hd.max_streams = cf->relay.max_circuits + 4;
  if ((rv = np_proto_add(np_host_protos(r->h), &hd, NULL)) != 0) {
    np_warn("relay", "service-failed err=%s", np_errname(rv));
    return rv;
  }
  r->serving = 1;
  np_info("relay", "service-started max_reservations=%u max_circuits=%u",
          (unsigned)cf->relay.max_reservations,
          (unsigned)cf->relay.max_circuits);
  return 0;
}

/* [relay] service = auto before a reachability verdict: a public listen
 * address ([nat] treat_as_public counts). */
static int any_public_addr(np_relaysvc *r) {
  void *net;
  const np_net_ops *ops = np_host_net(r->h, &net);
  const uint8_t *bins[32];
  size_t lens[32], n, npub;
  np_prefix *pub;
  int yes = 0;
  if (ops == NULL)
    return 0;
  n = ops->addrs(net, bins, lens, 32);
  pub = public_prefixes(r, &npub);
  for (size_t i = 0; i < n && i < 32; i++)
    if (!has_circuit(bins[i], lens[i]) &&
        np_maddr_is_public_with(bins[i], lens[i], pub, npub))
      yes = 1;
  free(pub);
  return yes;
}

/* [relay] service = auto: serve while AutoNAT says we are public; with no
 * verdict (yet, or no AutoNAT), while a listen address is public. */
static void auto_check(np_relaysvc *r) {
  int want;
  const np_conf *cf = CONF(r);
  if (cf->relay.service != NP_TRI_AUTO)
    return;
  /* [nat] reachability = public/private overrides (same numbering) */
  if (cf->nat.reachability == NP_REACH_PUBLIC ||
      cf->nat.reachability == NP_REACH_PRIVATE)
    want = cf->nat.reachability == NP_REACH_PUBLIC;
  else if (r->reach == NP_REACH_PUBLIC)
    want = 1;
  else if (r->reach == NP_REACH_PRIVATE)
    want = 0;
  else
    want = any_public_addr(r);
  if (want && !r->serving)
    serve_on(r);
  else if (!want && r->serving)
    serve_off(r);
}

static void on_event(const np_event *ev, void *ud) {
  np_relaysvc *r = ud;
  if (ev->type == NP_EV_CONN_DOWN && ev->last && ev->peer) {
    resv *v = resv_find(r, ev->peer);
    if (v)
      resv_drop(r, v, "disconnected");
  } else if (ev->type == NP_EV_REACHABILITY) {
    r->reach = ev->reachability;
    auto_check(r);
  } else if (ev->type == NP_EV_LOCAL_ADDRS_CHANGED &&
             r->reach == NP_REACH_UNKNOWN) {
    auto_check(r);
  }
}

/* ---- API and np_module ----------------------------------------------------------- */

void np_relaysvc_stats(np_relaysvc *r, struct np_relaysvc_stats *out) {
  np_list *it;
  memset(out, 0, sizeof(*out));
  resv_sweep(r);
  out->reservations = r->nresv;
  out->circuits = r->ncirc;
  out->refused = r->refused;
  out->reservations_refused = r->rsv_refused;
  out->circuits_total = r->circuits_total;
  out->bytes_relayed = r->bytes_relayed;
  out->serving = r->serving;
  for (it = r->circs.next; it != &r->circs; it = it->next)
    out->buffered += circ_buffered(np_list_entry(it, circ, link));
}

size_t np_relaysvc_reservations(np_relaysvc *r, np_peerid *out,
                                uint64_t *expire_s, size_t max) {
  size_t n = 0;
  np_list *it;
  resv_sweep(r);
  for (it = r->resvs.next; it != &r->resvs; it = it->next, n++) {
    resv *v = np_list_entry(it, resv, link);
    if (n < max && out)
      out[n] = v->peer;
    if (n < max && expire_s)
      expire_s[n] = v->expire_s;
  }
  return n;
}

static void relaysvc_stop(void *state) {
  np_relaysvc *r = state;
  if (r == NULL)
    return;
  np_events_unsubscribe(np_host_events(r->h), r->sub);
  serve_off(r);
  while (!np_list_empty(&r->streams))
    np_stream_abandon(np_list_entry(r->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  free(r);
}

static int relaysvc_start(np_host *h, void **state) {
  np_relaysvc *r = calloc(1, sizeof(*r));
  const np_conf *cf = np_host_conf(h);
  int rv;
  if (r == NULL)
    return NP_ENOMEM;
  r->h = h;
  r->sw = np_host_swarm(h);
  np_list_init(&r->streams);
  np_list_init(&r->reqs);
  np_list_init(&r->resvs);
  np_list_init(&r->circs);
  np_list_init(&r->lingers);
  if (r->sw == NULL) {
    free(r);
    return NP_EINVAL;
  }
  if ((rv = np_events_subscribe(
           np_host_events(h),
           NP_EV_CONN_DOWN | NP_EV_REACHABILITY | NP_EV_LOCAL_ADDRS_CHANGED,
           on_event, r, &r->sub)) != 0) {
    free(r);
    return rv;
  }
  /* A failure to serve is logged; the host runs without it. */
  if (cf->relay.service == NP_TRI_ON)
    serve_on(r);
  else
    auto_check(r);
  *state = r;
  return 0;
}

const np_module np_relaysvc_module = {"relaysvc", relaysvc_start,
                                      relaysvc_stop};
