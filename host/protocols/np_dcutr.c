#include "np_dcutr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_dcutrmsg.h"
#include "np_err.h"
#include "np_host.h"
#include "np_list.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_obsaddr.h"
#include "np_quic.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "np_tquic.h"
#include "np_ttcp.h"

#define SUB "dcutr"
#define ADDRS_MAX 8      /* peer addresses punched or dialed per attempt */
#define OWN_MAX 16       /* our addresses sent */
#define OBSERVED_MAX 8   /* identify-observed addresses remembered */
#define OBSERVED_TTL_MS (10 * 60 * 1000)
#define RX_MAX (NP_DCUTRMSG_MSG_MAX + 8) /* one LP message, prefix included */
#define SEND_MAX (2 * RX_MAX)            /* queued before a reset */
#define GRACE_TRIES 12 /* relayed connection still busy: look again */
#define SESSIONS_MAX 256 /* exchanges at once (each holds a few KiB) */
/* Streams opened to the peer wait for the punch this long at most (the
 * relayed connection's mark): a punch that works mostly does within a
 * second or two of its first attempt; the retries run without holding
 * anyone up. */
#define MARK_MAX_MS 5000

/* Where an exchange is. */
enum {
  P_DELAY = 1, /* B: waiting before the first attempt */
  P_CONNECT,   /* B: CONNECT sent, waiting for A's; A: waiting for B's */
  P_SYNC,      /* A: CONNECT answered, waiting for SYNC */
  P_PUNCH,     /* B: punching; A: dialing */
  P_WAIT,      /* A: an attempt failed, waiting for B's next one */
  P_GRACE      /* direct connection up: retire the relayed one */
};

typedef struct oaddr {
  uint8_t bin[NP_CONN_ADDR_MAX];
  size_t len;
  uint64_t at;
} oaddr;

typedef struct sess sess;

struct np_dcutr {
  np_host *h;
  np_swarm *sw;
  int enabled;
  unsigned attempts;
  uint64_t timeout_ms, start_delay_ms, grace_ms;
  np_prefix *pub;
  size_t npub;
  np_event_sub *sub;
  np_list sessions; /* sess */
  size_t nsessions;
  np_list streams; /* every np_stream it holds (owner_link) */
  oaddr observed[OBSERVED_MAX];
  np_dcutr_status hist[NP_DCUTR_HISTORY];
  size_t nhist;
};

struct sess {
  np_list link; /* d->sessions */
  np_dcutr *d;
  np_peerid peer;
  char pstr[NP_PEERID_STRMAX];
  int initiator;
  int phase;
  const np_conn *relay; /* NULL once it went down */
  unsigned attempt;
  double t_start, t_sent; /* ev_time() */
  np_stream *s;
  void *open; /* np_swarm_conn_open handle */
  void *dial; /* np_swarm_dial_new handle */
  uint8_t rx[RX_MAX];
  size_t rxlen;
  uint8_t addrs[ADDRS_MAX][NP_CONN_ADDR_MAX];
  size_t alen[ADDRS_MAX];
  size_t naddrs;
  ev_timer timer;  /* the phase's deadline (or start delay, grace) */
  ev_timer ptimer; /* B: RTT/2, then the punch pacing */
  unsigned npunch;
  unsigned grace_tries;
  int marked;    /* np_swarm_conn_punching(relay, 1) is in force */
  int mark_over; /* ... and will not be again (MARK_MAX_MS passed) */
  ev_timer mtimer;
  char why[96];
};

static struct ev_loop *EV(const np_dcutr *d) {
  return np_loop_ev(np_host_loop(d->h));
}

static uint64_t now_ms(const np_dcutr *d) {
  return np_now(np_host_loop(d->h));
}


const char *np_dcutr_state_name(int state) {
  return state == NP_DCUTR_RUNNING  ? "running"
         : state == NP_DCUTR_DIRECT ? "direct"
         : state == NP_DCUTR_FAILED ? "failed"
                                    : "?";
}

/* ---- history ------------------------------------------------------------- */

static void hist_set_addr(sess *x, int state, int64_t ms,
                          const uint8_t *addr, size_t alen) {
  np_dcutr *d = x->d;
  np_dcutr_status *r = NULL;
  size_t i;
  for (i = 0; i < d->nhist; i++)
    if (np_peerid_equal(&d->hist[i].peer, &x->peer)) {
      r = &d->hist[i];
      break;
    }
  if (r == NULL) {
    if (d->nhist < NP_DCUTR_HISTORY) {
      r = &d->hist[d->nhist++];
    } else { /* replace the oldest */
      r = &d->hist[0];
      for (i = 1; i < d->nhist; i++)
        if (d->hist[i].at_ms < r->at_ms)
          r = &d->hist[i];
    }
  }
  r->peer = x->peer;
  r->state = state;
  r->initiator = x->initiator;
  r->attempts = x->attempt;
  snprintf(r->why, sizeof(r->why), "%s", x->why);
  r->ms = ms;
  r->addr_len = addr && alen <= sizeof(r->addr) ? alen : 0;
  if (r->addr_len)
    memcpy(r->addr, addr, r->addr_len);
  r->at_ms = now_ms(d);
}

static void hist_set(sess *x, int state, int64_t ms) {
  hist_set_addr(x, state, ms, NULL, 0);
}

size_t np_dcutr_status_list(const np_dcutr *d, np_dcutr_status *out,
                            size_t max) {
  size_t i, j, n = 0;
  if (d == NULL)
    return 0;
  /* insertion by at_ms, newest first */
  for (i = 0; i < d->nhist && max > 0; i++) {
    const np_dcutr_status *r = &d->hist[i];
    size_t pos = n;
    while (pos > 0 && out[pos - 1].at_ms < r->at_ms)
      pos--;
    if (pos >= max)
      continue;
    j = n < max ? n : max - 1;
    for (; j > pos; j--)
      out[j] = out[j - 1];
    out[pos] = *r;
    if (n < max)
      n++;
  }
  return d->nhist;
}

/* ---- addresses ------------------------------------------------------------ */

static int is_quic(const uint8_t *bin, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  return np_maddr_to_sockaddr(bin, len, &ss, &sl) == 0;
}

static int is_tcp(const uint8_t *bin, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  return np_maddr_to_sockaddr_tcp(bin, len, &ss, &sl) == 0;
}

/* A public QUIC or TCP address with no relay hop (np_maddr_is_public_with
 * takes only plain /ip4|ip6/.../udp/P/quic-v1 and .../tcp/P shapes). */
static int usable(const np_dcutr *d, const uint8_t *bin, size_t len) {
  return len > 0 && len <= NP_CONN_ADDR_MAX &&
         (is_quic(bin, len) || is_tcp(bin, len)) &&
         np_maddr_is_public_with(bin, len, d->pub, d->npub);
}

static int add_unique(const uint8_t **bins, size_t *lens, size_t *n,
                      size_t max, const uint8_t *bin, size_t len) {
  for (size_t i = 0; i < *n; i++)
    if (lens[i] == len && memcmp(bins[i], bin, len) == 0)
      return 0;
  if (*n >= max)
    return 0;
  bins[*n] = bin;
  lens[(*n)++] = len;
  return 1;
}

/* Our addresses for a CONNECT (pointers valid until the loop runs on). */
static size_t own_addrs(np_dcutr *d, const uint8_t **bins, size_t *lens) {
  const uint8_t *lb[OWN_MAX], *cb[OWN_MAX];
  size_t ll[OWN_MAX], cl[OWN_MAX], nl = 0, nc = 0, n = 0, i;
  void *net;
  const np_net_ops *ops = np_host_net(d->h, &net);
  np_obsaddr *o = np_host_module(d->h, "obsaddr");
  uint64_t now = now_ms(d);
  if (ops != NULL)
    nl = ops->addrs(net, lb, ll, OWN_MAX);
  if (nl > OWN_MAX)
    nl = OWN_MAX;
  for (i = 0; i < nl; i++)
    if (usable(d, lb[i], ll[i]))
      add_unique(bins, lens, &n, OWN_MAX, lb[i], ll[i]);
  if (o != NULL) {
    nc = np_obsaddr_confirmed(o, now, cb, cl, OWN_MAX);
    if (nc > OWN_MAX)
      nc = OWN_MAX;
    for (i = 0; i < nc; i++)
      if (usable(d, cb[i], cl[i]))
        add_unique(bins, lens, &n, OWN_MAX, cb[i], cl[i]);
  }
  for (i = 0; i < OBSERVED_MAX; i++) {
    const oaddr *a = &d->observed[i];
    if (a->len && a->at + OBSERVED_TTL_MS > now && usable(d, a->bin, a->len))
      add_unique(bins, lens, &n, OWN_MAX, a->bin, a->len);
  }
  return n;
}

/* Keep the peer's usable addresses from |m|, QUIC ones first. */
static void take_addrs(sess *x, const np_dcutrmsg *m) {
  x->naddrs = 0;
  for (size_t i = 0; i < 2 * m->naddrs && x->naddrs < ADDRS_MAX; i++) {
    const np_dcutrmsg_blob *b = &m->addrs[i % m->naddrs];
    size_t k;
    if (!usable(x->d, b->data, b->len) ||
        is_quic(b->data, b->len) != (i < m->naddrs))
      continue;
    for (k = 0; k < x->naddrs; k++)
      if (x->alen[k] == b->len && memcmp(x->addrs[k], b->data, b->len) == 0)
        break;
    if (k < x->naddrs)
      continue;
    memcpy(x->addrs[x->naddrs], b->data, b->len);
    x->alen[x->naddrs++] = b->len;
  }
}

static void addrs_text(const sess *x, char *out, size_t cap) {
  size_t off = 0;
  out[0] = '\0';
  for (size_t i = 0; i < x->naddrs && off + 2 < cap; i++) {
    char t[200];
    if (np_maddr_to_string(x->addrs[i], x->alen[i], t, sizeof(t)) < 0)
      snprintf(t, sizeof(t), "?");
    off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? "," : "", t);
  }
  if (off >= cap)
    out[cap - 1] = '\0';
}

struct find_direct {
  const np_peerid *peer;
  int found;
};
static int find_direct_fn(const np_conn *c, void *ud) {
  struct find_direct *f = ud;
  if (!c->limited && np_peerid_equal(&c->peer, f->peer))
    f->found = 1;
  return f->found;
}

static int has_direct(np_dcutr *d, const np_peerid *peer) {
  struct find_direct f = {peer, 0};
  np_swarm_foreach_conn(d->sw, find_direct_fn, &f);
  return f.found;
}

/* ---- sessions --------------------------------------------------------------- */

static sess *sess_find(np_dcutr *d, const np_peerid *peer) {
  np_list *it;
  for (it = d->sessions.next; it != &d->sessions; it = it->next) {
    sess *x = np_list_entry(it, sess, link);
    if (np_peerid_equal(&x->peer, peer))
      return x;
  }
  return NULL;
}

static void timer_cb(struct ev_loop *ev, ev_timer *w, int revents);
static void ptimer_cb(struct ev_loop *ev, ev_timer *w, int revents);
static void mtimer_cb(struct ev_loop *ev, ev_timer *w, int revents);

static sess *sess_new(np_dcutr *d, const np_peerid *peer, int initiator,
                      const np_conn *relay) {
  sess *x;
  if (d->nsessions >= SESSIONS_MAX || (x = calloc(1, sizeof(*x))) == NULL)
    return NULL;
  x->d = d;
  x->peer = *peer;
  np_peerid_to_string(peer, x->pstr, sizeof(x->pstr));
  x->initiator = initiator;
  x->relay = relay;
  x->t_start = ev_time();
  ev_timer_init(&x->timer, timer_cb, 1., 0.);
  ev_timer_init(&x->ptimer, ptimer_cb, 1., 0.);
  ev_timer_init(&x->mtimer, mtimer_cb, 1., 0.);
  np_list_insert_tail(&d->sessions, &x->link);
  d->nsessions++;
  return x;
}

/* Streams opened to the peer meanwhile wait for the direct connection
 * while the relayed one is marked (np_swarm_conn_punching). */
static void mark(sess *x, int on) {
  if (x->marked == on || x->relay == NULL || (on && x->mark_over))
    return;
  x->marked = on;
  np_swarm_conn_punching(x->d->sw, x->relay, on);
  if (on && !ev_is_active(&x->mtimer)) {
    uint64_t ms = x->d->timeout_ms < MARK_MAX_MS ? x->d->timeout_ms
                                                 : MARK_MAX_MS;
    ev_timer_set(&x->mtimer, (double)ms / 1000.0, 0.);
    ev_timer_start(EV(x->d), &x->mtimer);
  }
}

static void mtimer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  sess *x = np_container_of(w, sess, mtimer);
  (void)ev, (void)revents;
  mark(x, 0);
  x->mark_over = 1;
}

static void arm(sess *x, uint64_t ms) {
  ev_timer_stop(EV(x->d), &x->timer);
  ev_timer_set(&x->timer, (double)ms / 1000.0, 0.);
  ev_timer_start(EV(x->d), &x->timer);
}

/* Let go of the stream, the pending open and dial, and the punching. */
static void sess_stop_io(sess *x, int reset) {
  np_dcutr *d = x->d;
  void *net;
  const np_net_ops *ops = np_host_net(d->h, &net);
  if (x->open) {
    if (ops)
      ops->cancel(net, x->open);
    x->open = NULL;
  }
  if (x->dial) {
    if (ops)
      ops->cancel(net, x->dial);
    x->dial = NULL;
  }
  if (x->s) {
    np_stream *s = x->s;
    x->s = NULL;
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    if (reset)
      s->ops->reset(s);
    else
      s->ops->close(s);
  }
  ev_timer_stop(EV(d), &x->ptimer);
}

static void sess_free(sess *x) {
  mark(x, 0);
  sess_stop_io(x, 1);
  ev_timer_stop(EV(x->d), &x->timer);
  ev_timer_stop(EV(x->d), &x->mtimer);
  np_list_remove(&x->link);
  x->d->nsessions--;
  free(x);
}

#define set_why(x, ...) snprintf((x)->why, sizeof((x)->why), __VA_ARGS__)

/* The exchange is over without a direct connection. */
static void sess_fail(sess *x) {
  np_info(SUB, "failed peer=%s attempts=%u why=%s", x->pstr, x->attempt,
          x->why[0] ? x->why : "unknown");
  hist_set(x, NP_DCUTR_FAILED, -1);
  sess_free(x);
}

static void b_attempt(sess *x);

/* This attempt is over (|x->why| says why). B tries again while attempts
 * are left and the relayed connection is there; A waits for B's next. */
static void attempt_fail(sess *x) {
  np_dcutr *d = x->d;
  sess_stop_io(x, 1);
  if (x->relay == NULL) {
    char why[sizeof(x->why)];
    memcpy(why, x->why, sizeof(why));
    set_why(x, "%.60s; relayed connection closed",
            why[0] ? why : "attempt failed");
    sess_fail(x);
    return;
  }
  np_debug(SUB, "attempt-failed peer=%s attempt=%u why=%s", x->pstr,
           x->attempt, x->why);
  if (x->initiator) {
    if (x->attempt >= d->attempts) {
      sess_fail(x);
      return;
    }
    hist_set(x, NP_DCUTR_RUNNING, -1);
    b_attempt(x);
    return;
  }
  /* B drives the retries; until its next stream comes (if it does),
   * streams to the peer need not wait for a punch. */
  hist_set(x, NP_DCUTR_RUNNING, -1);
  mark(x, 0);
  x->phase = P_WAIT;
  arm(x, d->timeout_ms);
}

/* A direct connection to the peer is up: done; retire the relayed one
 * after the grace period. */
static void sess_direct(sess *x, const uint8_t *raddr, size_t rlen) {
  char text[200] = "?";
  int64_t ms = (int64_t)((ev_time() - x->t_start) * 1000);
  if (rlen)
    np_maddr_to_string(raddr, rlen, text, sizeof(text));
  sess_stop_io(x, 0);
  x->why[0] = '\0';
  np_info(SUB, "direct peer=%s addr=%s attempt=%u ms=%lld", x->pstr, text,
          x->attempt, (long long)ms);
  hist_set_addr(x, NP_DCUTR_DIRECT, ms, raddr, rlen);
  mark(x, 0);
  if (x->relay == NULL) {
    sess_free(x);
    return;
  }
  x->phase = P_GRACE;
  x->grace_tries = 0;
  arm(x, x->d->grace_ms);
}

static void grace_check(sess *x) {
  np_dcutr *d = x->d;
  int rv;
  if (x->relay == NULL || !has_direct(d, &x->peer)) {
    sess_free(x); /* nothing to retire, or nothing to move to */
    return;
  }
  rv = np_swarm_conn_close_idle(d->sw, x->relay);
  if (rv > 0 && ++x->grace_tries < GRACE_TRIES) {
    arm(x, d->grace_ms);
    return;
  }
  if (rv == 0)
    np_debug(SUB, "relayed-closed peer=%s", x->pstr);
  sess_free(x);
}

static void timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  sess *x = np_container_of(w, sess, timer);
  (void)ev, (void)revents;
  switch (x->phase) {
  case P_DELAY:
    if (has_direct(x->d, &x->peer)) {
      sess_free(x);
      return;
    }
    np_info(SUB, "start peer=%s role=initiator", x->pstr);
    x->t_start = ev_time();
    hist_set(x, NP_DCUTR_RUNNING, -1);
    mark(x, 1);
    b_attempt(x);
    return;
  case P_WAIT:
    sess_fail(x);
    return;
  case P_GRACE:
    grace_check(x);
    return;
  default:
    if (x->phase == P_PUNCH)
      set_why(x, "%s", "no direct connection within the attempt");
    else
      set_why(x, "timed out waiting for %s",
              x->phase == P_SYNC ? "SYNC" : "CONNECT");
    attempt_fail(x);
  }
}

/* Send one HolePunch; the stream is reset on failure (on_close follows). */
static int send_msg(sess *x, int type, const uint8_t *const *bins,
                    const size_t *lens, size_t n, int fin) {
  np_dcutrmsg m;
  np_dcutrmsg_blob b[OWN_MAX];
  uint8_t buf[RX_MAX];
  np_ssize len;
  np_dcutrmsg_init(&m);
  m.type = (np_dcutrmsg_type)type;
  for (size_t i = 0; i < n && i < OWN_MAX; i++) {
    b[i].data = (uint8_t *)(uintptr_t)bins[i];
    b[i].len = lens[i];
  }
  m.addrs = n ? b : NULL;
  m.naddrs = n;
  if ((len = np_dcutrmsg_encode_lp(&m, buf, sizeof(buf))) < 0)
    return (int)len;
  return x->s->ops->send(x->s, buf, (size_t)len, fin, SEND_MAX);
}

/* Append |data| and decode one message when it is complete: 1 and |m|
 * filled, 0 need more, or a negative code. */
static int read_msg(sess *x, const uint8_t *data, size_t len, np_dcutrmsg *m) {
  np_ssize used;
  if (len > sizeof(x->rx) - x->rxlen)
    return NP_ELIMIT;
  if (len > 0) {
    memcpy(x->rx + x->rxlen, data, len);
    x->rxlen += len;
  }
  used = np_dcutrmsg_decode_lp(m, x->rx, x->rxlen, NULL);
  if (used == NP_ETRUNC)
    return 0;
  if (used < 0)
    return (int)used;
  memmove(x->rx, x->rx + used, x->rxlen - (size_t)used);
  x->rxlen -= (size_t)used;
  return 1;
}

/* ---- B: initiator ------------------------------------------------------------ */

static void punch_dial_done(void *ud, int err) {
  sess *x = ud;
  x->dial = NULL;
  /* Success shows as the connection's CONN_UP; a failure is one path of
   * this attempt, which the punching and the deadline still cover. */
  if (err != 0)
    np_debug(SUB, "dial-failed peer=%s err=%s", x->pstr, np_errname(err));
}

static void ptimer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  sess *x = np_container_of(w, sess, ptimer);
  np_dcutr *d = x->d;
  np_transport *t = np_swarm_transport(d->sw, NP_TRANSPORT_QUIC);
  np_quic *q = t ? np_tquic_quic(t) : NULL;
  uint32_t r = 0;
  uint64_t cap, gap;
  (void)ev, (void)revents;
  if (x->npunch == 0) {
    char text[512];
    addrs_text(x, text, sizeof(text));
    np_info(SUB, "punch peer=%s addrs=%s attempt=%u", x->pstr, text,
            x->attempt);
    /* The last attempt of three or more also dials (go >= 0.48 does,
     * for peers that still have the roles reversed). */
    if (x->attempt >= 3 && x->attempt == d->attempts && x->dial == NULL) {
      const uint8_t *bins[ADDRS_MAX];
      for (size_t i = 0; i < x->naddrs; i++)
        bins[i] = x->addrs[i];
      if (np_swarm_dial_new(d->sw, &x->peer, bins, x->alen, x->naddrs, 0,
                            d->timeout_ms, punch_dial_done, x,
                            &x->dial) != 0)
        x->dial = NULL;
    }
  }
  for (size_t i = 0; i < x->naddrs; i++) {
    int rv = NP_ENOTSUP;
    if (is_quic(x->addrs[i], x->alen[i])) {
      if (q != NULL)
        rv = np_quic_punch(q, x->addrs[i], x->alen[i]);
    } else if (x->npunch == 0) {
      /* TCP: one connect(2) from the listen port, which the kernel
       * retries; A's own connect makes it a simultaneous open. */
      np_transport *tt = np_swarm_transport(d->sw, NP_TRANSPORT_TCP);
      rv = tt ? np_ttcp_punch(tt, x->addrs[i], x->alen[i]) : NP_ENOTSUP;
    } else {
      continue;
    }
    if (rv != 0 && x->npunch == 0)
      np_debug(SUB, "punch-skipped peer=%s err=%s", x->pstr, np_errname(rv));
  }
  x->npunch++;
  /* 10 ms + random [0, min(10 (n+1)^2, 200)) ms: dense at first, when the
   * peer's Initial is due, sparse later. */
  cap = 10ull * (x->npunch + 1) * (x->npunch + 1);
  if (cap > 200)
    cap = 200;
  np_crypto_random(&r, sizeof(r));
  gap = 10 + r % cap;
  ev_timer_set(&x->ptimer, (double)gap / 1000.0, 0.);
  ev_timer_start(EV(d), &x->ptimer);
}

static void b_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  sess *x = ud;
  np_dcutrmsg m;
  double rtt;
  int rv;
  (void)s;
  if (x->phase != P_CONNECT)
    return;
  if (len == 0) {
    set_why(x, "%s", "peer closed the stream before CONNECT");
    attempt_fail(x);
    return;
  }
  if ((rv = read_msg(x, data, len, &m)) == 0)
    return;
  if (rv < 0 || m.type != NP_DCUTRMSG_CONNECT) {
    if (rv > 0)
      np_dcutrmsg_free(&m);
    set_why(x, "bad answer to CONNECT (%s)",
            rv < 0 ? np_errname(rv) : "not a CONNECT");
    attempt_fail(x);
    return;
  }
  rtt = ev_time() - x->t_sent;
  take_addrs(x, &m);
  np_dcutrmsg_free(&m);
  np_info(SUB, "rtt peer=%s rtt_ms=%.1f", x->pstr, rtt * 1000);
  if (x->naddrs == 0) {
    set_why(x, "%s", "peer sent no public QUIC or TCP address");
    sess_stop_io(x, 1);
    sess_fail(x);
    return;
  }
  /* SYNC, our side of the stream done; the punch starts RTT/2 later, when
   * A's dial (on SYNC) is about to reach our NAT. */
  send_msg(x, NP_DCUTRMSG_SYNC, NULL, NULL, 0, 0);
  sess_stop_io(x, 0); /* FIN after it */
  x->phase = P_PUNCH;
  x->npunch = 0;
  ev_timer_set(&x->ptimer, rtt / 2, 0.);
  ev_timer_start(EV(x->d), &x->ptimer);
}

static void b_close(np_stream *s, int err, void *ud) {
  sess *x = ud;
  (void)s;
  x->s = NULL;
  if (x->phase != P_CONNECT)
    return;
  if (err == NP_ENOPROTO) {
    set_why(x, "%s", "peer does not support " NP_DCUTRMSG_PROTOCOL);
    sess_fail(x);
    return;
  }
  set_why(x, "stream closed before CONNECT (%s)", np_errname(err));
  attempt_fail(x);
}

static const np_stream_cbs b_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = b_data,
    .on_close = b_close,
};

static void b_opened(void *ud, int err, np_stream *s, const char *proto) {
  sess *x = ud;
  const uint8_t *bins[OWN_MAX];
  size_t lens[OWN_MAX], n;
  (void)proto;
  x->open = NULL;
  if (err != 0) {
    if (err == NP_ENOPROTO) {
      set_why(x, "%s", "peer does not support " NP_DCUTRMSG_PROTOCOL);
      sess_fail(x);
      return;
    }
    set_why(x, "stream open failed (%s)", np_errname(err));
    attempt_fail(x);
    return;
  }
  x->s = s;
  np_stream_set_cbs(s, &b_cbs, x);
  np_list_insert_tail(&x->d->streams, &s->owner_link);
  if ((n = own_addrs(x->d, bins, lens)) == 0) {
    set_why(x, "%s", "no public address of ours");
    sess_stop_io(x, 1);
    sess_fail(x);
    return;
  }
  x->t_sent = ev_time();
  send_msg(x, NP_DCUTRMSG_CONNECT, bins, lens, n, 0);
}

static void b_attempt(sess *x) {
  np_dcutr *d = x->d;
  int rv;
  sess_stop_io(x, 1);
  x->attempt++;
  x->phase = P_CONNECT;
  x->rxlen = 0;
  x->why[0] = '\0';
  arm(x, d->timeout_ms);
  /* Last: the callback may run from inside and end |x|. */
  rv = np_swarm_conn_open(d->sw, x->relay, NP_DCUTRMSG_PROTOCOL, b_opened, x,
                          &x->open);
  if (rv != 0) {
    x->open = NULL;
    set_why(x, "stream open failed (%s)", np_errname(rv));
    if (rv == NP_ECLOSED) {
      mark(x, 0);
      x->relay = NULL;
    }
    attempt_fail(x);
  }
}

int np_dcutr_start(np_dcutr *d, const np_conn *c) {
  sess *x;
  if (d == NULL || c == NULL || !c->limited)
    return NP_EINVAL;
  if (!d->enabled)
    return NP_ENOTSUP;
  if ((x = sess_find(d, &c->peer)) != NULL) {
    if (x->phase != P_DELAY)
      return NP_EEXIST;
    x->relay = c;
    timer_cb(EV(d), &x->timer, 0); /* the delay is over */
    return 0;
  }
  if (has_direct(d, &c->peer))
    return NP_EEXIST;
  if ((x = sess_new(d, &c->peer, 1, c)) == NULL)
    return NP_ENOMEM;
  x->phase = P_DELAY;
  timer_cb(EV(d), &x->timer, 0);
  return 0;
}

void np_dcutr_set_timing(np_dcutr *d, uint64_t start_delay_ms,
                         uint64_t grace_ms) {
  d->start_delay_ms = start_delay_ms;
  d->grace_ms = grace_ms;
}

/* ---- A: responder ------------------------------------------------------------ */

static void a_dialed(void *ud, int err) {
  sess *x = ud;
  x->dial = NULL;
  if (err == 0) /* CONN_UP came first and ended the exchange, normally */
    return;
  set_why(x, "dial failed (%s)", np_errname(err));
  attempt_fail(x);
}

static void a_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  sess *x = ud;
  np_dcutr *d = x->d;
  np_dcutrmsg m;
  int rv;
  (void)s;
  if (len == 0) {
    set_why(x, "peer closed the stream before %s",
            x->phase == P_SYNC ? "SYNC" : "CONNECT");
    attempt_fail(x);
    return;
  }
  while ((rv = read_msg(x, data, len, &m)) != 0) {
    data = NULL, len = 0; /* the rest is in x->rx */
    if (rv < 0 ||
        m.type != (x->phase == P_CONNECT ? NP_DCUTRMSG_CONNECT
                                         : NP_DCUTRMSG_SYNC)) {
      if (rv > 0)
        np_dcutrmsg_free(&m);
      set_why(x, "unexpected message (%s)",
              rv < 0 ? np_errname(rv) : "wrong type");
      attempt_fail(x);
      return;
    }
    if (x->phase == P_CONNECT) {
      const uint8_t *bins[OWN_MAX];
      size_t lens[OWN_MAX], n;
      take_addrs(x, &m);
      np_dcutrmsg_free(&m);
      if (x->naddrs == 0) {
        set_why(x, "%s", "peer sent no public QUIC or TCP address");
        sess_stop_io(x, 1);
        sess_fail(x);
        return;
      }
      if ((n = own_addrs(d, bins, lens)) == 0) {
        set_why(x, "%s", "no public address of ours");
        sess_stop_io(x, 1);
        sess_fail(x);
        return;
      }
      x->phase = P_SYNC;
      arm(x, d->timeout_ms);
      send_msg(x, NP_DCUTRMSG_CONNECT, bins, lens, n, 0);
      continue;
    }
    /* SYNC: dial B now (from our listen socket), as B starts punching. */
    {
      const uint8_t *bins[ADDRS_MAX];
      char text[512];
      np_dcutrmsg_free(&m);
      x->attempt++;
      for (size_t i = 0; i < x->naddrs; i++)
        bins[i] = x->addrs[i];
      addrs_text(x, text, sizeof(text));
      np_info(SUB, "punch peer=%s addrs=%s attempt=%u", x->pstr, text,
              x->attempt);
      hist_set(x, NP_DCUTR_RUNNING, -1);
      sess_stop_io(x, 0); /* FIN: the exchange on the stream is over */
      x->phase = P_PUNCH;
      arm(x, d->timeout_ms + 1000); /* the dial's own timeout comes first */
      rv = np_swarm_dial_new(d->sw, &x->peer, bins, x->alen, x->naddrs, 0,
                             d->timeout_ms, a_dialed, x, &x->dial);
      if (rv != 0) {
        x->dial = NULL;
        set_why(x, "dial failed (%s)", np_errname(rv));
        attempt_fail(x);
      }
      return;
    }
  }
}

static void a_close(np_stream *s, int err, void *ud) {
  sess *x = ud;
  (void)s;
  x->s = NULL;
  if (x->phase != P_CONNECT && x->phase != P_SYNC)
    return;
  set_why(x, "stream closed mid-exchange (%s)", np_errname(err));
  attempt_fail(x);
}

static const np_stream_cbs a_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = a_data,
    .on_close = a_close,
};

/* The handler: B opened /libp2p/dcutr. Only over a relayed connection we
 * dialed (go resets the others too: only B opens). */
static void a_open(np_stream *s, void *ud) {
  np_dcutr *d = ud;
  const np_conn *c = np_swarm_stream_conn(s);
  sess *x;
  if (c == NULL || !c->limited || c->inbound ||
      has_direct(d, &s->peer_id)) {
    s->ops->reset(s);
    return;
  }
  x = sess_find(d, &s->peer_id);
  if (x != NULL && (x->initiator || x->phase == P_GRACE)) {
    s->ops->reset(s);
    return;
  }
  if (x == NULL) {
    if ((x = sess_new(d, &s->peer_id, 0, c)) == NULL) {
      s->ops->reset(s);
      return;
    }
    np_info(SUB, "start peer=%s role=responder", x->pstr);
    hist_set(x, NP_DCUTR_RUNNING, -1);
  }
  sess_stop_io(x, 1); /* a new attempt replaces what was left */
  if (x->relay != c)
    mark(x, 0);
  x->relay = c;
  mark(x, 1);
  x->s = s;
  x->rxlen = 0;
  x->phase = P_CONNECT;
  x->why[0] = '\0';
  np_stream_set_cbs(s, &a_cbs, x);
  arm(x, d->timeout_ms);
}

static const np_stream_cbs handler_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = a_open,
    .on_data = np_stream_ignore_data, /* replaced in a_open */
    .on_close = np_stream_ignore_close,
};

/* ---- events ---------------------------------------------------------------- */

/* The UDP or TCP port of |bin| (0 if none). */
static unsigned port_of(const uint8_t *bin, size_t len, int *udp) {
  size_t off = 0;
  np_maddr_comp c;
  while (np_maddr_next(bin, len, &off, &c) == 1)
    if ((c.code == NP_MADDR_UDP || c.code == NP_MADDR_TCP) && c.vlen == 2) {
      *udp = c.code == NP_MADDR_UDP;
      return (unsigned)(c.val[0] << 8 | c.val[1]);
    }
  return 0;
}

/* 1 if |laddr| (a connection's local address) is on one of our listen
 * ports: only there is the observed address the one a punch (which
 * leaves from the listen port) opens. A dial that fell back to an
 * ephemeral port is seen elsewhere. */
static int on_listen_port(np_dcutr *d, const uint8_t *laddr, size_t llen) {
  int udp = 0, ludp = 0;
  unsigned port = laddr ? port_of(laddr, llen, &udp) : 0;
  np_transport *t;
  uint8_t l[NP_CONN_ADDR_MAX];
  if (port == 0)
    return 0;
  t = np_swarm_transport(d->sw, udp ? NP_TRANSPORT_QUIC : NP_TRANSPORT_TCP);
  for (size_t i = 0; t != NULL && i < t->ops->listen_count(t); i++) {
    np_ssize n = t->ops->listen_addr(t, i, l, sizeof(l));
    if (n > 0 && port_of(l, (size_t)n, &ludp) == port && ludp == udp)
      return 1;
  }
  return 0;
}

static void remember_observed(np_dcutr *d, const uint8_t *bin, size_t len,
                              const uint8_t *laddr, size_t llen) {
  uint64_t now = now_ms(d);
  oaddr *slot = &d->observed[0];
  if (len == 0 || len > NP_CONN_ADDR_MAX ||
      !(is_quic(bin, len) || is_tcp(bin, len)) ||
      !on_listen_port(d, laddr, llen))
    return;
  for (size_t i = 0; i < OBSERVED_MAX; i++) {
    oaddr *a = &d->observed[i];
    if (a->len == len && memcmp(a->bin, bin, len) == 0) {
      a->at = now;
      return;
    }
    if (a->at < slot->at)
      slot = a;
  }
  memcpy(slot->bin, bin, len);
  slot->len = len;
  slot->at = now;
}

static void on_event(const np_event *ev, void *ud) {
  np_dcutr *d = ud;
  sess *x;
  np_list *it, *tmp;
  switch (ev->type) {
  case NP_EV_OBSERVED_ADDR:
    remember_observed(d, ev->observed, ev->observed_len, ev->laddr,
                      ev->laddr_len);
    return;
  case NP_EV_CONN_UP:
    x = ev->peer ? sess_find(d, ev->peer) : NULL;
    if (!ev->limited) {
      if (x == NULL || x->phase == P_GRACE)
        return;
      if (x->phase == P_DELAY) { /* came up by itself: nothing to do */
        sess_free(x);
        return;
      }
      sess_direct(x, ev->raddr, ev->raddr_len);
      return;
    }
    if (!ev->inbound || x != NULL || d->start_delay_ms == UINT64_MAX ||
        has_direct(d, ev->peer))
      return;
    if ((x = sess_new(d, ev->peer, 1, ev->conn)) == NULL)
      return;
    x->phase = P_DELAY;
    arm(x, d->start_delay_ms);
    return;
  case NP_EV_CONN_DOWN:
    np_list_for_each_safe(it, tmp, &d->sessions) {
      x = np_list_entry(it, sess, link);
      if (x->relay != ev->conn)
        continue;
      x->relay = NULL;
      x->marked = 0; /* went with the connection */
      if (x->phase == P_DELAY || x->phase == P_GRACE)
        sess_free(x);
      else if (x->phase == P_WAIT)
        sess_fail(x);
      /* Punching or dialing goes on: the deadline ends it. */
    }
    return;
  default:
    return;
  }
}

/* ---- np_module ------------------------------------------------------------- */

static void dcutr_stop(void *state) {
  np_dcutr *d = state;
  if (d == NULL)
    return;
  np_events_unsubscribe(np_host_events(d->h), d->sub);
  np_proto_remove_owner(np_host_protos(d->h), d);
  while (!np_list_empty(&d->sessions))
    sess_free(np_list_entry(d->sessions.next, sess, link));
  while (!np_list_empty(&d->streams))
    np_stream_abandon(np_list_entry(d->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  free(d->pub);
  free(d);
}

static int dcutr_start(np_host *h, void **state) {
  const np_conf *c = np_host_conf(h);
  np_dcutr *d = calloc(1, sizeof(*d));
  np_handler hd;
  int rv;
  if (d == NULL)
    return NP_ENOMEM;
  d->h = h;
  d->sw = np_host_swarm(h);
  np_list_init(&d->sessions);
  np_list_init(&d->streams);
  if (d->sw == NULL) {
    free(d);
    return NP_EINVAL;
  }
  d->enabled = c->nat.hole_punch;
  d->attempts = c->nat.hole_punch_attempts ? c->nat.hole_punch_attempts : 3;
  d->timeout_ms =
      c->nat.hole_punch_timeout_ms ? c->nat.hole_punch_timeout_ms : 10000;
  d->start_delay_ms = 500;
  d->grace_ms = 5000;
  if (c->nat.treat_as_public.n &&
      (d->pub = calloc(c->nat.treat_as_public.n, sizeof(*d->pub))) != NULL)
    for (size_t i = 0; i < c->nat.treat_as_public.n; i++)
      if (np_prefix_parse(c->nat.treat_as_public.v[i], &d->pub[d->npub]) == 0)
        d->npub++;
  *state = d;
  if (!d->enabled)
    return 0;
  memset(&hd, 0, sizeof(hd));
  hd.proto = (char *)NP_DCUTRMSG_PROTOCOL;
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = d;
  hd.owner_name = "dcutr";
  hd.stream = handler_cbs;
  hd.ud = d;
  hd.streams = &d->streams;
  hd.max_streams = 2; /* one exchange per connection, one being replaced */
  if ((rv = np_proto_add(np_host_protos(h), &hd, NULL)) != 0 ||
      (rv = np_events_subscribe(
           np_host_events(h),
           NP_EV_CONN_UP | NP_EV_CONN_DOWN | NP_EV_OBSERVED_ADDR, on_event, d,
           &d->sub)) != 0) {
    *state = NULL;
    dcutr_stop(d);
    return rv;
  }
  return 0;
}

const np_module np_dcutr_module = {"dcutr", dcutr_start, dcutr_stop};
