#include "np_relayc.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "np_err.h"
#include "np_host.h"
#include "np_list.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_relaymsg.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "np_trelay.h"

#define SUB "relay"
#define MAX_RELAYS 32         /* static + candidates remembered */
#define ADDRS_PER_RELAY NP_RELAYC_ADDRS_MAX
#define ADDR_LEN 128          /* the swarm's advert size */
#define OP_TIMEOUT_MS 15000   /* connect + RESERVE round trip */
#define BACKOFF_MIN_S 30
#define BACKOFF_MAX_S 1800
#define TICK_S 5.0            /* look for relays while short of them */
#define RX_MAX (NP_RELAYMSG_MSG_MAX + 16)

typedef struct relay relay;

struct np_relayc {
  np_host *h;
  np_swarm *sw;
  np_transport *tr;
  np_event_sub *sub;
  np_list relays; /* relay.link */
  size_t nrelays;
  np_list stop_streams; /* stop streams before the transport took them */
  int mode;             /* np_tristate */
  int any_relay;        /* [relay] accept_any_relay */
  uint32_t want;        /* reservations to hold */
  int reach;            /* np_reach_state */
  ev_timer tick;
  np_defer refill;
  int stopping;
  int stop_on; /* the stop handler is registered */
};

struct relay {
  np_list link;
  np_relayc *rc;
  np_peerid id;
  char id_str[NP_PEERID_STRMAX];
  uint8_t addr[ADDR_LEN]; /* static: the configured address (with /p2p/) */
  size_t addr_len;
  int is_static;
  int hop;    /* its identify lists the hop protocol */
  int state;  /* np_relayc_state */
  int refreshing; /* a RESERVE while RESERVED */
  void *op;       /* connect or conn_open handle */
  np_stream *s;   /* the hop stream of a RESERVE */
  uint8_t rx[RX_MAX];
  size_t rlen;
  const np_conn *conn; /* the connection the reservation was made on */
  uint8_t conn_raddr[ADDR_LEN];
  size_t conn_raddr_len;
  uint64_t expire; /* unix s */
  uint64_t backoff_until_ms;
  uint32_t backoff_s;
  uint8_t circ[ADDRS_PER_RELAY][ADDR_LEN]; /* announced circuit addrs */
  size_t circ_len[ADDRS_PER_RELAY], ncirc;
  uint32_t limit_duration;
  uint64_t limit_data;
  int last_status, last_err, voucher_ok;
  ev_timer timer; /* op timeout, refresh or back-off */
  int timer_on;
};

const char *np_relayc_state_name(int state) {
  switch (state) {
  case NP_RELAYC_IDLE:
    return "idle";
  case NP_RELAYC_CONNECTING:
    return "connecting";
  case NP_RELAYC_RESERVING:
    return "reserving";
  case NP_RELAYC_RESERVED:
    return "reserved";
  case NP_RELAYC_BACKOFF:
    return "backoff";
  default:
    return "?";
  }
}

static struct ev_loop *EV(np_relayc *rc) {
  return np_loop_ev(np_host_loop(rc->h));
}
static uint64_t now_ms(np_relayc *rc) { return np_now(np_host_loop(rc->h)); }
static uint64_t unix_s(void) { return (uint64_t)time(NULL); }

int np_relayc_active(const np_relayc *rc) {
  return rc->mode == NP_TRI_ON ||
         (rc->mode == NP_TRI_AUTO && rc->reach == NP_REACH_PRIVATE);
}

np_transport *np_relayc_transport(np_relayc *rc) { return rc->tr; }

/* ---- adverts ----------------------------------------------------------- */

/* Every held reservation's circuit addresses, as the swarm's "relay"
 * adverts. */
static void stop_sync(np_relayc *rc);

static void publish(np_relayc *rc) {
  const uint8_t *a[16];
  size_t l[16], n = 0;
  np_list *it;
  if (rc->sw == NULL)
    return;
  for (it = rc->relays.next; it != &rc->relays; it = it->next) {
    relay *r = np_list_entry(it, relay, link);
    if (r->state != NP_RELAYC_RESERVED)
      continue;
    for (size_t i = 0; i < r->ncirc && n < 16; i++) {
      a[n] = r->circ[i];
      l[n++] = r->circ_len[i];
    }
  }
  np_swarm_set_adverts(rc->sw, "relay", a, l, n);
  stop_sync(rc);
}

/* <addr without its /p2p/>/p2p/RELAY/p2p-circuit into r->circ (deduped);
 * addresses that are circuits already are skipped. */
static void add_circ(relay *r, const uint8_t *bin, size_t len) {
  uint8_t out[ADDR_LEN];
  size_t off = 0, keep = 0;
  np_maddr_comp c;
  np_ssize n;
  int rv;
  if (r->ncirc >= ADDRS_PER_RELAY)
    return;
  while ((rv = np_maddr_next(bin, len, &off, &c)) > 0) {
    if (c.code == NP_MADDR_P2P_CIRCUIT)
      return;
    if (c.code == NP_MADDR_P2P)
      break;
    keep = off;
  }
  if (rv < 0 || keep == 0 || keep > sizeof(out))
    return;
  memcpy(out, bin, keep);
  if ((n = np_maddr_append_p2p(out, keep, sizeof(out), &r->id)) < 0 ||
      (size_t)n + 2 > sizeof(out))
    return;
  out[n] = 0xa2; /* /p2p-circuit */
  out[n + 1] = 0x02;
  n += 2;
  for (size_t i = 0; i < r->ncirc; i++)
    if (r->circ_len[i] == (size_t)n && memcmp(r->circ[i], out, (size_t)n) == 0)
      return;
  memcpy(r->circ[r->ncirc], out, (size_t)n);
  r->circ_len[r->ncirc++] = (size_t)n;
}

/* ---- one relay --------------------------------------------------------- */


static void timer_stop(relay *r) {
  if (r->timer_on) {
    ev_timer_stop(EV(r->rc), &r->timer);
    r->timer_on = 0;
  }
}

static void timer_in(relay *r, double secs) {
  timer_stop(r);
  ev_timer_set(&r->timer, secs, 0.);
  ev_timer_start(EV(r->rc), &r->timer);
  r->timer_on = 1;
}

/* Withdraw the pending op and the hop stream (reset unless |graceful|). */
static void op_release(relay *r, int graceful) {
  if (r->op) {
    void *net;
    const np_net_ops *ops = np_host_net(r->rc->h, &net);
    if (ops)
      ops->cancel(net, r->op);
    r->op = NULL;
  }
  if (r->s) {
    np_stream *s = r->s;
    r->s = NULL;
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    if (graceful)
      s->ops->close(s);
    else
      s->ops->reset(s);
  }
  r->rlen = 0;
}

static void schedule_refill(np_relayc *rc) {
  if (!rc->stopping)
    np_loop_post(np_host_loop(rc->h), &rc->refill);
}

/* Give up the reservation (if any) and go to |state|. */
static void drop(relay *r, int state) {
  int had = r->state == NP_RELAYC_RESERVED;
  op_release(r, 0);
  timer_stop(r);
  r->state = state;
  r->refreshing = 0;
  r->conn = NULL;
  r->expire = 0;
  r->ncirc = 0;
  if (had)
    publish(r->rc);
}

static void failed(relay *r, int status, int err) {
  r->last_status = status;
  r->last_err = err;
  if (status)
    np_info(SUB, "reservation-failed relay=%s status=%d", r->id_str, status);
  else
    np_info(SUB, "reservation-failed relay=%s status=0 err=%s", r->id_str,
            np_errname(err));
  drop(r, NP_RELAYC_BACKOFF);
  r->backoff_s = r->backoff_s ? r->backoff_s * 2 : BACKOFF_MIN_S;
  if (r->backoff_s > BACKOFF_MAX_S)
    r->backoff_s = BACKOFF_MAX_S;
  r->backoff_until_ms = now_ms(r->rc) + (uint64_t)r->backoff_s * 1000;
  timer_in(r, r->backoff_s);
  schedule_refill(r->rc);
}

/* When to send the next RESERVE: at half the TTL or 2 min before the
 * expiry, whichever is first (at least 1 s from now). */
static double refresh_in(relay *r) {
  uint64_t now = unix_s();
  double ttl = r->expire > now ? (double)(r->expire - now) : 0;
  double t = ttl / 2;
  if (ttl - 120 >= 2 && ttl - 120 < t)
    t = ttl - 120;
  return t < 2 ? 2 : t; /* a relay granting seconds is not hammered */
}

static void reserved(relay *r, np_relaymsg *m) {
  np_relayc *rc = r->rc;
  const np_peerid *self = &np_host_identity(rc->h)->id;
  int was = r->state == NP_RELAYC_RESERVED;
  r->expire = m->reservation.expire;
  r->ncirc = 0;
  for (size_t i = 0; i < m->reservation.naddrs; i++)
    add_circ(r, m->reservation.addrs[i].data, m->reservation.addrs[i].len);
  if (r->ncirc == 0 && r->conn_raddr_len) /* the address we reached it at */
    add_circ(r, r->conn_raddr, r->conn_raddr_len);
  if (r->ncirc == 0 && r->addr_len)
    add_circ(r, r->addr, r->addr_len);
  r->limit_duration = m->has_limit ? m->limit.duration : 0;
  r->limit_data = m->has_limit ? m->limit.data : 0;
  r->voucher_ok = 0;
  if (m->reservation.voucher.len) {
    np_relaymsg_voucher v;
    int rv = np_relaymsg_voucher_open(&v, m->reservation.voucher.data,
                                      m->reservation.voucher.len, &r->id, self);
    if (rv != 0)
      np_warn(SUB, "voucher-bad relay=%s err=%s (advisory)", r->id_str,
              np_errname(rv));
    else
      r->voucher_ok = 1;
  } else {
    np_info(SUB, "voucher-missing relay=%s (advisory)", r->id_str);
  }
  r->state = NP_RELAYC_RESERVED;
  r->refreshing = 0;
  r->backoff_s = 0;
  r->last_status = 0;
  r->last_err = 0;
  np_info(SUB, "reservation-ok relay=%s expire=%llu addrs=%zu%s", r->id_str,
          (unsigned long long)r->expire, r->ncirc, was ? " refresh=1" : "");
  timer_in(r, refresh_in(r));
  publish(rc);
}

static void hop_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  relay *r = ud;
  np_relaymsg m;
  np_ssize n;
  (void)s;
  if (len == 0) {
    failed(r, 0, NP_ECLOSED);
    return;
  }
  if (len > sizeof(r->rx) - r->rlen) {
    failed(r, 0, NP_ELIMIT);
    return;
  }
  memcpy(r->rx + r->rlen, data, len);
  r->rlen += len;
  n = np_relaymsg_decode_lp(&m, NP_RELAYMSG_HOP, r->rx, r->rlen, NULL);
  if (n == NP_ETRUNC)
    return;
  if (n < 0) {
    failed(r, 0, (int)n);
    return;
  }
  if (m.type != NP_RELAYMSG_HOP_STATUS || !m.has_status ||
      m.status != NP_RELAYMSG_OK || !m.has_reservation) {
    int status = m.has_status ? (int)m.status : 0;
    np_relaymsg_free(&m);
    failed(r, status ? status : NP_RELAYMSG_UNEXPECTED_MESSAGE, NP_EPROTO);
    return;
  }
  if (m.reservation.expire <= unix_s()) { /* as go: no use for it */
    np_relaymsg_free(&m);
    np_info(SUB, "reservation-expired relay=%s (clock skew?)", r->id_str);
    failed(r, 0, NP_EPROTO);
    return;
  }
  op_release(r, 1); /* done with the stream: FIN */
  reserved(r, &m);
  np_relaymsg_free(&m);
}

static void hop_close(np_stream *s, int err, void *ud) {
  relay *r = ud;
  (void)s;
  r->s = NULL;
  failed(r, 0, err ? err : NP_ECLOSED);
}

static const np_stream_cbs hop_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = hop_data,
    .on_close = hop_close,
};

static void hop_opened(void *ud, int err, np_stream *s, const char *proto) {
  relay *r = ud;
  np_relaymsg m;
  uint8_t out[16];
  np_ssize n;
  (void)proto;
  r->op = NULL;
  if (err != 0) {
    failed(r, 0, err);
    return;
  }
  r->s = s;
  np_stream_set_cbs(s, &hop_cbs, r);
  if (!r->refreshing)
    r->state = NP_RELAYC_RESERVING;
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_RESERVE;
  if ((n = np_relaymsg_encode_lp(&m, out, sizeof(out))) < 0 ||
      s->ops->send(s, out, (size_t)n, 0, sizeof(out)) != 0)
    failed(r, 0, NP_ECLOSED);
}

typedef struct find_direct {
  const np_peerid *peer;
  const np_conn *c;
} find_direct;

/* A direct connection to the peer, one we dialed if there is one (its
 * remote address is one the relay listens on). */
static int find_direct_fn(const np_conn *c, void *ud) {
  find_direct *f = ud;
  if (c->limited || c->kind == NP_TRANSPORT_RELAY ||
      !np_peerid_equal(&c->peer, f->peer))
    return 0;
  if (f->c == NULL || f->c->inbound)
    f->c = c;
  return !c->inbound;
}

static void connected(void *ud, int err) {
  relay *r = ud;
  find_direct f = {&r->id, NULL};
  int rv;
  r->op = NULL;
  if (err != 0) {
    failed(r, 0, err);
    return;
  }
  np_swarm_foreach_conn(r->rc->sw, find_direct_fn, &f);
  if (f.c == NULL) { /* a reservation over a circuit is worthless */
    failed(r, 0, NP_EUNREACH);
    return;
  }
  r->conn = f.c;
  /* The relay's address as we dialed it: what the reservation stands for
   * when it lists none (an inbound connection's is the relay's port of
   * the moment, of no use to others). */
  r->conn_raddr_len = !f.c->inbound && f.c->raddr_len <= sizeof(r->conn_raddr)
                          ? f.c->raddr_len
                          : 0;
  memcpy(r->conn_raddr, f.c->raddr, r->conn_raddr_len);
  rv = np_swarm_conn_open(r->rc->sw, f.c, NP_RELAYMSG_HOP_PROTOCOL, hop_opened,
                          r, &r->op);
  if (rv != 0) {
    r->op = NULL;
    failed(r, 0, rv);
  }
}

static void reserve(relay *r) {
  void *net;
  const np_net_ops *ops = np_host_net(r->rc->h, &net);
  const uint8_t *a[1] = {r->addr};
  size_t l[1] = {r->addr_len};
  int rv;
  if (ops == NULL)
    return;
  if (r->state != NP_RELAYC_RESERVED) {
    r->state = NP_RELAYC_CONNECTING;
    r->conn = NULL;
  } else {
    r->refreshing = 1;
  }
  timer_in(r, OP_TIMEOUT_MS / 1000.0);
  rv = ops->connect(net, &r->id, r->addr_len ? a : NULL,
                    r->addr_len ? l : NULL, r->addr_len ? 1 : 0, OP_TIMEOUT_MS,
                    connected, r, &r->op);
  if (rv != 0) {
    r->op = NULL;
    failed(r, 0, rv);
  }
}

static void relay_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  relay *r = np_container_of(w, relay, timer);
  (void)ev, (void)revents;
  r->timer_on = 0;
  switch (r->state) {
  case NP_RELAYC_CONNECTING:
  case NP_RELAYC_RESERVING:
    failed(r, 0, NP_ETIMEDOUT);
    break;
  case NP_RELAYC_RESERVED:
    if (r->refreshing) /* the refresh timed out */
      failed(r, 0, NP_ETIMEDOUT);
    else if (np_relayc_active(r->rc))
      reserve(r);
    break;
  case NP_RELAYC_BACKOFF:
    r->state = NP_RELAYC_IDLE;
    schedule_refill(r->rc);
    break;
  default:
    break;
  }
}

static relay *relay_find(np_relayc *rc, const np_peerid *id) {
  np_list *it;
  for (it = rc->relays.next; it != &rc->relays; it = it->next) {
    relay *r = np_list_entry(it, relay, link);
    if (np_peerid_equal(&r->id, id))
      return r;
  }
  return NULL;
}

static int is_connected(np_relayc *rc, const np_peerid *id);
static void relay_free(relay *r);

static relay *relay_add(np_relayc *rc, const np_peerid *id) {
  relay *r;
  if (np_peerid_equal(id, &np_host_identity(rc->h)->id))
    return NULL;
  if (rc->nrelays >= MAX_RELAYS) {
    /* Make room: a candidate in no use that we are no longer connected
     * to (it comes back through identify if it returns). */
    np_list *it;
    for (it = rc->relays.next; it != &rc->relays; it = it->next) {
      relay *o = np_list_entry(it, relay, link);
      if (!o->is_static &&
          (o->state == NP_RELAYC_IDLE || o->state == NP_RELAYC_BACKOFF) &&
          !is_connected(rc, &o->id)) {
        relay_free(o);
        break;
      }
    }
    if (rc->nrelays >= MAX_RELAYS)
      return NULL;
  }
  if ((r = calloc(1, sizeof(*r))) == NULL)
    return NULL;
  r->rc = rc;
  r->id = *id;
  np_peerid_to_string(id, r->id_str, sizeof(r->id_str));
  ev_timer_init(&r->timer, relay_timer, 1., 0.);
  np_list_insert_tail(&rc->relays, &r->link);
  rc->nrelays++;
  return r;
}

static void relay_free(relay *r) {
  op_release(r, 0);
  timer_stop(r);
  np_list_remove(&r->link);
  r->rc->nrelays--;
  free(r);
}

/* ---- choosing relays --------------------------------------------------- */

static int is_connected(np_relayc *rc, const np_peerid *id) {
  find_direct f = {id, NULL};
  np_swarm_foreach_conn(rc->sw, find_direct_fn, &f);
  return f.c != NULL;
}

static void refill_cb(void *arg) {
  np_relayc *rc = arg;
  size_t busy = 0;
  np_list *it;
  if (rc->stopping)
    return;
  if (!np_relayc_active(rc)) {
    for (it = rc->relays.next; it != &rc->relays; it = it->next) {
      relay *r = np_list_entry(it, relay, link);
      if (r->state != NP_RELAYC_IDLE && r->state != NP_RELAYC_BACKOFF)
        drop(r, NP_RELAYC_IDLE);
    }
    return;
  }
  for (it = rc->relays.next; it != &rc->relays; it = it->next) {
    relay *r = np_list_entry(it, relay, link);
    if (r->state == NP_RELAYC_CONNECTING || r->state == NP_RELAYC_RESERVING ||
        r->state == NP_RELAYC_RESERVED)
      busy++;
  }
  /* Static relays first (dialed if need be), then connected candidates. */
  for (int pass = 0; pass < 2 && busy < rc->want; pass++)
    for (it = rc->relays.next; it != &rc->relays && busy < rc->want;) {
      relay *r = np_list_entry(it, relay, link);
      it = it->next;
      if (r->state != NP_RELAYC_IDLE || r->is_static != (pass == 0))
        continue;
      if (!r->is_static && (!r->hop || !is_connected(rc, &r->id)))
        continue;
      busy++;
      reserve(r);
    }
}

static void tick_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  np_relayc *rc = np_container_of(w, np_relayc, tick);
  (void)ev, (void)revents;
  refill_cb(rc);
}

static int lists_hop(const np_event *ev) {
  for (size_t i = 0; i < ev->nprotocols; i++)
    if (strcmp(ev->protocols[i], NP_RELAYMSG_HOP_PROTOCOL) == 0)
      return 1;
  return 0;
}

static void on_event(const np_event *ev, void *ud) {
  np_relayc *rc = ud;
  relay *r;
  switch (ev->type) {
  case NP_EV_REACHABILITY:
    if (rc->reach != ev->reachability) {
      rc->reach = ev->reachability;
      np_info(SUB, "client %s (reachability %d)",
              np_relayc_active(rc) ? "active" : "inactive", rc->reach);
      schedule_refill(rc);
    }
    break;
  case NP_EV_PEER_IDENTIFIED:
  case NP_EV_PROTOCOLS_CHANGED:
    if (ev->peer == NULL || ev->limited)
      break;
    r = relay_find(rc, ev->peer);
    if (lists_hop(ev)) {
      if (r == NULL && (r = relay_add(rc, ev->peer)) == NULL)
        break;
      if (!r->hop) {
        r->hop = 1;
        schedule_refill(rc);
      }
    } else if (r != NULL && !r->is_static) {
      r->hop = 0;
      if (r->state == NP_RELAYC_IDLE)
        relay_free(r);
    }
    break;
  case NP_EV_CONN_DOWN:
    if (ev->peer == NULL || (r = relay_find(rc, ev->peer)) == NULL)
      break;
    if (r->conn != NULL && r->conn == ev->conn) {
      int held = r->state == NP_RELAYC_RESERVED;
      if (held)
        np_info(SUB, "reservation-lost relay=%s", r->id_str);
      r->conn = NULL;
      if (held || r->state == NP_RELAYC_RESERVING) {
        r->last_err = NP_ECLOSED;
        /* Static relays are dialed again after a short back-off; a
         * candidate waits to be connected and identified again. */
        drop(r, r->is_static ? NP_RELAYC_BACKOFF : NP_RELAYC_IDLE);
        if (r->is_static) {
          r->backoff_until_ms = now_ms(rc) + 5000;
          timer_in(r, 5.0);
        }
        schedule_refill(rc);
      }
    }
    if (ev->last && !r->is_static && r->state == NP_RELAYC_IDLE)
      relay_free(r);
    break;
  default:
    break;
  }
}

/* ---- the stop handler ---------------------------------------------------- */

static int stop_policy(void *ud, const np_peerid *relay_id,
                       const np_peerid *src) {
  np_relayc *rc = ud;
  relay *r = relay_find(rc, relay_id);
  (void)src;
  if (rc->any_relay)
    return NP_RELAYMSG_OK; /* [relay] accept_any_relay (go's p2pd) */
  if (r != NULL && r->state == NP_RELAYC_RESERVED && r->expire > unix_s())
    return NP_RELAYMSG_OK;
  return NP_RELAYMSG_PERMISSION_DENIED;
}

static void stop_open(np_stream *s, void *ud) {
  np_relayc *rc = ud;
  np_trelay_accept_stop(rc->tr, s); /* takes |s| (resets it on error) */
}

static const np_stream_cbs stop_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = stop_open,
    .on_data = np_stream_ignore_data,
    .on_close = np_stream_ignore_close,
};

/* The stop handler is registered only while a reservation is held: a
 * circuit is accepted only through a relay we reserved on, so without one
 * there is nothing to serve (and identify does not list /stop); with
 * [relay] accept_any_relay, always. */
static void stop_sync(np_relayc *rc) {
  int want = rc->any_relay;
  np_list *it;
  for (it = rc->relays.next; it != &rc->relays && !want; it = it->next)
    want = np_list_entry(it, relay, link)->state == NP_RELAYC_RESERVED;
  if (rc->stopping)
    want = 0;
  if (want && !rc->stop_on) {
    np_handler hd;
    int rv;
    memset(&hd, 0, sizeof(hd));
    hd.proto = (char *)NP_RELAYMSG_STOP_PROTOCOL;
    hd.kind = NP_HANDLER_STREAM;
    hd.owner_kind = NP_OWNER_HOST;
    hd.owner = rc;
    hd.owner_name = "relayc";
    hd.stream = stop_cbs;
    hd.ud = rc;
    hd.streams = &rc->stop_streams;
    hd.max_streams = NP_PROTO_UNLIMITED; /* the transport bounds circuits */
    if ((rv = np_proto_add(np_host_protos(rc->h), &hd, NULL)) == 0)
      rc->stop_on = 1;
    else
      np_warn(SUB, "stop handler not registered: %s (circuits to us fail)",
              np_strerror(rv));
  } else if (!want && rc->stop_on) {
    np_proto_remove(np_host_protos(rc->h), NP_RELAYMSG_STOP_PROTOCOL, rc);
    rc->stop_on = 0;
  }
}

/* ---- np_relayc_reservations ---------------------------------------------- */

static void fill_resv(const relay *r, np_relayc_resv *o) {
  memset(o, 0, sizeof(*o));
  o->relay = r->id;
  o->state = r->state;
  o->is_static = r->is_static;
  o->expire = r->state == NP_RELAYC_RESERVED ? r->expire : 0;
  o->naddrs = r->state == NP_RELAYC_RESERVED ? r->ncirc : 0;
  if (o->naddrs &&
      np_maddr_to_string(r->circ[0], r->circ_len[0], o->addr, sizeof(o->addr)) <
          0)
    o->addr[0] = '\0';
  for (size_t i = 0; i < o->naddrs; i++) {
    memcpy(o->addrs[i], r->circ[i], r->circ_len[i]);
    o->addr_lens[i] = r->circ_len[i];
  }
  o->refreshing = r->refreshing;
  o->limit_duration = r->limit_duration;
  o->limit_data = r->limit_data;
  o->last_status = r->last_status;
  o->last_err = r->last_err;
  o->voucher_ok = r->voucher_ok;
}

size_t np_relayc_reservations(np_relayc *rc, np_relayc_resv *out,
                              size_t max) {
  size_t k = 0;
  np_list *it;
  if (rc == NULL)
    return 0;
  for (int pass = 0; pass < 2; pass++)
    for (it = rc->relays.next; it != &rc->relays; it = it->next) {
      relay *r = np_list_entry(it, relay, link);
      if ((r->state == NP_RELAYC_RESERVED) != (pass == 0))
        continue;
      if (k < max)
        fill_resv(r, &out[k]);
      k++;
    }
  return k;
}

/* ---- np_module ------------------------------------------------------------- */

static void relayc_stop(void *state) {
  np_relayc *rc = state;
  if (rc == NULL)
    return;
  rc->stopping = 1;
  np_events_unsubscribe(np_host_events(rc->h), rc->sub);
  np_proto_remove_owner(np_host_protos(rc->h), rc);
  while (!np_list_empty(&rc->stop_streams))
    np_stream_abandon(
        np_list_entry(rc->stop_streams.next, np_stream, owner_link),
        NP_ECANCELED);
  ev_timer_stop(EV(rc), &rc->tick);
  np_loop_cancel(np_host_loop(rc->h), &rc->refill);
  while (!np_list_empty(&rc->relays))
    relay_free(np_list_entry(rc->relays.next, relay, link));
  if (rc->sw) {
    np_swarm_set_adverts(rc->sw, "relay", NULL, NULL, 0);
    if (rc->tr)
      np_swarm_remove_transport(rc->sw, rc->tr); /* closes its circuits */
  }
  free(rc);
}

static int relayc_start(np_host *h, void **state) {
  const np_conf *conf = np_host_conf(h);
  np_relayc *rc = calloc(1, sizeof(*rc));
  np_trelay_config tc;
  const np_conn_cbs *cbs;
  void *cbud;
  int rv;
  if (rc == NULL)
    return NP_ENOMEM;
  rc->h = h;
  rc->sw = np_host_swarm(h);
  np_list_init(&rc->relays);
  np_list_init(&rc->stop_streams);
  np_defer_init(&rc->refill, refill_cb, rc);
  ev_timer_init(&rc->tick, tick_cb, TICK_S, TICK_S);
  rc->mode = conf->relay.client;
  rc->any_relay = conf->relay.accept_any_relay;
  rc->want = conf->relay.client_reservations ? conf->relay.client_reservations
                                             : 3;
  rc->reach = conf->nat.reachability; /* forced public/private, or unknown */
  if (rc->sw == NULL) {
    free(rc);
    return NP_EINVAL;
  }
  np_trelay_config_default(&tc);
  tc.upgrade.max_streams = conf->limits.max_streams_per_conn;
  tc.upgrade.idle_timeout_ms = conf->limits.idle_timeout_ms;
  /* [host] security: NP_CONF_SEC_* are NP_UPGRADE_* */
  tc.upgrade.security[0] = (uint8_t)(conf->host.security & 0xff);
  tc.upgrade.security[1] = (uint8_t)(conf->host.security >> 8 & 0xff);
  /* The relay exchange comes first and has its own timeout. */
  tc.upgrade.handshake_timeout_ms = tc.hop_timeout_ms + 10000;
  cbs = np_swarm_conn_cbs(rc->sw, &cbud);
  if ((rv = np_trelay_new(&rc->tr, h, &tc, cbs, cbud)) != 0) {
    free(rc);
    return rv;
  }
  if ((rv = np_swarm_add_transport(rc->sw, rc->tr)) != 0) {
    rc->tr->ops->del(rc->tr);
    free(rc);
    return rv;
  }
  np_trelay_set_policy(rc->tr, stop_policy, rc);
  for (size_t i = 0; i < conf->relay.relays.n; i++) {
    const char *t = conf->relay.relays.v[i];
    uint8_t bin[NP_MADDR_MAX];
    np_ssize n = np_maddr_parse(t, strlen(t), bin, sizeof(bin));
    np_peerid id;
    relay *r;
    if (n <= 0 || (size_t)n > ADDR_LEN ||
        np_maddr_get_p2p(bin, (size_t)n, &id) != 0 ||
        np_trelay_ends_circuit(bin, (size_t)n)) {
      np_warn(SUB, "relays: skipping %s (not /…/p2p/ID)", t);
      continue;
    }
    if ((r = relay_find(rc, &id)) == NULL && (r = relay_add(rc, &id)) == NULL)
      continue;
    r->is_static = 1;
    r->hop = 1;
    memcpy(r->addr, bin, (size_t)n);
    r->addr_len = (size_t)n;
  }
  if ((rv = np_events_subscribe(np_host_events(h),
                                NP_EV_REACHABILITY | NP_EV_PEER_IDENTIFIED |
                                    NP_EV_PROTOCOLS_CHANGED | NP_EV_CONN_DOWN,
                                on_event, rc, &rc->sub)) != 0) {
    relayc_stop(rc);
    return rv;
  }
  ev_timer_start(EV(rc), &rc->tick);
  stop_sync(rc); /* accept_any_relay: serve /stop from the start */
  np_info(SUB, "client mode=%s reservations=%u static=%zu %s",
          rc->mode == NP_TRI_ON ? "on" : rc->mode == NP_TRI_OFF ? "off" : "auto",
          rc->want, rc->nrelays, np_relayc_active(rc) ? "active" : "inactive");
  schedule_refill(rc);
  *state = rc;
  return 0;
}

const np_module np_relayc_module = {"relayc", relayc_start, relayc_stop};
