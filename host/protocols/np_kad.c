#include "np_kad.h"

#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_host.h"
#include "np_kadmsg.h"
#include "np_kadquery.h"
#include "np_list.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_stream.h"

#define KAD_ADDRS_SENT 4      /* addresses per peer in an answer */
#define KAD_BOOT_MAX 64       /* bootstrap peers per call */
#define KAD_OUT_MAX (64 * 1024) /* unsent answer bytes before a reset */

struct np_kad {
  np_host *h;
  np_kad_config cfg;
  np_kadmsg_limits lim;
  np_kbucket *table;
  np_event_sub *sub;
  np_list streams; /* every np_stream it holds (owner_link) */
  np_list inbound; /* kin */
  np_list lookups; /* np_kad_lookup */
  np_list probes;  /* kreq without a lookup: liveness PINGs */
  np_kad_stats st;
};

enum { LK_FIND, LK_CLOSEST, LK_BOOT };

typedef struct bconn {
  np_kad_lookup *lk;
  void *handle; /* the pending connect */
} bconn;

struct np_kad_lookup {
  np_list link; /* in kad->lookups */
  np_kad *kad;
  int kind;
  np_peerid target;  /* LK_FIND */
  uint8_t key[NP_KADMSG_KEY_MAX]; /* the FIND_NODE key */
  size_t keylen;
  np_kadquery *q;
  np_list reqs;      /* kreq in flight */
  ev_timer timer;    /* the whole lookup */
  int timer_on;
  int finished;      /* result fixed, delivery posted */
  int err;
  np_defer done;
  np_kad_peer_fn peer_cb;
  np_kad_closest_fn closest_cb;
  np_kad_done_fn boot_cb;
  void *ud;
  bconn *boots; /* LK_BOOT: connects, then the self-lookup */
  size_t nboots, boots_left;
};

/* One outbound request: FIND_NODE for a lookup, or a liveness PING. */
typedef struct kreq {
  np_list link; /* in lk->reqs or kad->probes */
  np_kad *kad;
  np_kad_lookup *lk; /* NULL: a probe */
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

static void ignore_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  (void)s, (void)d, (void)len, (void)ud;
}
static void ignore_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err, (void)ud;
}
static const np_stream_cbs linger_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = ignore_data,
    .on_close = ignore_close,
};

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
}

const np_kbucket *np_kad_table(const np_kad *kad) { return kad->table; }

void np_kad_stats_get(const np_kad *kad, np_kad_stats *st) { *st = kad->st; }

/* ---- routing table
 * ------------------------------------------------------------------- */

static int probe_start(np_kad *kad, const np_peerid *peer);

static void table_add(np_kad *kad, const np_peerid *id) {
  np_peerid cand;
  if (np_kbucket_add(kad->table, id, now_ms(kad), &cand) == NP_KBUCKET_FULL &&
      probe_start(kad, &cand) != 0)
    np_kbucket_report(kad->table, &cand, 1, now_ms(kad)); /* keep the old */
}

static int lists_kad(np_kad *kad, const np_event *ev) {
  size_t i;
  for (i = 0; i < ev->nprotocols; i++)
    if (strcmp(ev->protocols[i], kad->cfg.protocol) == 0)
      return 1;
  return 0;
}

static void on_event(const np_event *ev, void *ud) {
  np_kad *kad = ud;
  if (ev->peer == NULL)
    return;
  if (lists_kad(kad, ev))
    table_add(kad, ev->peer);
  else if (ev->type == NP_EV_PROTOCOLS_CHANGED)
    np_kbucket_remove(kad->table, ev->peer);
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

/* The FIND_NODE answer: our closest peers to SHA-256(key), each with up to
 * KAD_ADDRS_SENT unexpired addresses; the requester is left out. */
static int answer_find(np_kad *kad, np_stream *s, const np_kadmsg *req) {
  np_peerid ids[256]; /* k + 1: the requester may be among them */
  np_kadmsg_peer peers[255];
  np_kadmsg_blob blobs[255][KAD_ADDRS_SENT];
  uint8_t target[NP_KBUCKET_KEYLEN];
  np_kadmsg m;
  size_t n, i, np = 0;
  np_crypto_sha256(req->key.data, req->key.len, target);
  n = np_kbucket_closest(kad->table, target, kad->cfg.k + 1, ids);
  for (i = 0; i < n && np < kad->cfg.k; i++) {
    np_ps_peer *pp;
    np_kadmsg_peer *p = &peers[np];
    if (np_peerid_equal(&ids[i], &s->peer_id))
      continue;
    memset(p, 0, sizeof(*p));
    p->id = ids[i];
    p->addrs = blobs[np];
    if ((pp = np_peerstore_get(np_host_peerstore(kad->h), &ids[i]))) {
      size_t a;
      np_peerstore_expire(pp, now_ms(kad));
      for (a = 0; a < pp->naddrs && p->naddrs < KAD_ADDRS_SENT; a++) {
        p->addrs[p->naddrs].data = pp->addrs[a].bin;
        p->addrs[p->naddrs++].len = pp->addrs[a].len;
      }
      p->conn = pp->connected ? NP_KADMSG_CONNECTED : NP_KADMSG_NOT_CONNECTED;
    }
    np++;
  }
  np_kadmsg_init(&m);
  m.type = NP_KADMSG_FIND_NODE;
  m.key = req->key;
  m.closer = peers;
  m.ncloser = np;
  return send_msg(kad, s, &m);
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
  if (np_kadmsg_decode(&req, body, len, &kad->lim) != 0) {
    kad->st.bad_requests++;
    return NP_EPROTO;
  }
  switch (req.type) {
  case NP_KADMSG_FIND_NODE:
    rv = answer_find(kad, in->s, &req);
    break;
  case NP_KADMSG_PING:
    np_kadmsg_init(&resp);
    resp.type = NP_KADMSG_PING;
    rv = send_msg(kad, in->s, &resp);
    break;
  default: /* records and providers are not served yet */
    kad->st.refused++;
    rv = NP_ENOTSUP;
    break;
  }
  if (rv == 0)
    kad->st.served++;
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
    np_stream_set_cbs(s, &linger_cbs, kad);
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
    .on_data = ignore_data, /* replaced in on_open */
    .on_close = ignore_close,
};

/* ---- outbound requests
 * --------------------------------------------------------------- */

static void lookup_pump(np_kad_lookup *lk);
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
    np_stream_set_cbs(s, &linger_cbs, NULL);
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

static void req_opened(void *ud, int err, np_stream *s, const char *proto) {
  kreq *r = ud;
  np_kadmsg m;
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
  if (r->lk) {
    m.type = NP_KADMSG_FIND_NODE;
    m.key.data = r->lk->key;
    m.key.len = r->lk->keylen;
  } else {
    m.type = NP_KADMSG_PING;
  }
  r->kad->st.sent++;
  /* A failed send resets the stream: out_close reports it. */
  send_msg(r->kad, s, &m);
}

/* Open a kad stream to |peer| (dialing by the peerstore's addresses). */
static kreq *req_new(np_kad *kad, np_kad_lookup *lk, const np_peerid *peer) {
  void *net;
  const np_net_ops *ops = np_host_net(kad->h, &net);
  const char *protos[1] = {kad->cfg.protocol};
  kreq *r;
  if (ops == NULL || (r = calloc(1, sizeof(*r))) == NULL)
    return NULL;
  r->kad = kad;
  r->lk = lk;
  r->peer = *peer;
  np_lp_init(&r->rd, kad->cfg.max_msg);
  ev_timer_init(&r->timer, req_timeout, (double)kad->cfg.request_ms / 1000.0,
                0.);
  if (ops->open_stream(net, peer, protos, 1, 0, kad->cfg.request_ms,
                       req_opened, r, &r->open) != 0) {
    np_lp_free(&r->rd);
    free(r);
    return NULL;
  }
  ev_timer_start(EV(kad), &r->timer);
  np_list_insert_tail(lk ? &lk->reqs : &kad->probes, &r->link);
  return r;
}

static int probe_start(np_kad *kad, const np_peerid *peer) {
  return req_new(kad, NULL, peer) ? 0 : NP_ENOMEM;
}

/* ---- lookups
 * ------------------------------------------------------------------------- */

static void lookup_deliver(void *arg) {
  np_kad_lookup *lk = arg;
  np_kad *kad = lk->kad;
  np_peerid res[255];
  size_t n = 0;
  if (lk->q) {
    np_kadquery_stats qs;
    np_kadquery_stats_get(lk->q, &qs);
    kad->st.hops += qs.depth;
    if (qs.depth > kad->st.max_hops)
      kad->st.max_hops = qs.depth;
    if (lk->err == 0)
      n = np_kadquery_result(lk->q, res, 255);
  }
  np_list_remove(&lk->link);
  np_kadquery_del(lk->q);
  free(lk->boots);
  kad->st.lookups++;
  if (lk->kind == LK_FIND) {
    if (lk->err == 0)
      kad->st.found++;
    lk->peer_cb(lk->ud, lk->err, &lk->target);
  } else if (lk->kind == LK_CLOSEST) {
    lk->closest_cb(lk->ud, lk->err, res, n);
  } else {
    lk->boot_cb(lk->ud, lk->err);
  }
  free(lk);
}

/* Fix the outcome, let go of everything in flight, deliver next turn. */
static void lookup_finish(np_kad_lookup *lk, int err) {
  np_kad *kad = lk->kad;
  size_t i;
  if (lk->finished)
    return;
  lk->finished = 1;
  lk->err = err;
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

/* Hand out what the query lets us ask; end it when it is over. */
static void lookup_pump(np_kad_lookup *lk) {
  np_peerid p;
  np_kadquery_state st;
  if (lk->finished || lk->q == NULL)
    return;
  while (np_kadquery_next(lk->q, now_ms(lk->kad), &p, 1) == 1)
    if (req_new(lk->kad, lk, &p) == NULL)
      np_kadquery_on_failure(lk->q, &p);
  st = np_kadquery_state_get(lk->q);
  if (st == NP_KADQUERY_RUNNING && !np_list_empty(&lk->reqs))
    return;
  if (lk->kind == LK_FIND)
    lookup_finish(lk, NP_ENOENT);
  else
    lookup_finish(lk, np_kadquery_result(lk->q, &p, 1) ? 0 : NP_ENOENT);
}

/* |from| answered |m| (1), or the request failed (0). */
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
  }
  np_kadquery_on_response(lk->q, from, ids, n);
  if (found)
    lookup_finish(lk, 0);
}

static void req_done(kreq *r, int ok, const np_kadmsg *m) {
  np_kad *kad = r->kad;
  np_kad_lookup *lk = r->lk;
  np_peerid peer = r->peer;
  req_free(r, !ok);
  if (ok)
    table_add(kad, &peer); /* it speaks kad */
  else
    np_kbucket_remove(kad->table, &peer);
  if (lk == NULL) { /* a liveness probe */
    np_kbucket_report(kad->table, &peer, ok, now_ms(kad));
    return;
  }
  if (ok && m->type == NP_KADMSG_FIND_NODE)
    lookup_answer(lk, &peer, m);
  else
    np_kadquery_on_failure(lk->q, &peer);
  lookup_pump(lk);
}

static void lookup_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  np_kad_lookup *lk = np_container_of(w, np_kad_lookup, timer);
  (void)ev, (void)revents;
  lk->timer_on = 0;
  lookup_finish(lk, NP_ETIMEDOUT);
}

static np_kad_lookup *lookup_new(np_kad *kad, int kind, const uint8_t *key,
                                 size_t len, void *ud) {
  np_kad_lookup *lk;
  if ((lk = calloc(1, sizeof(*lk))) == NULL)
    return NULL;
  lk->kad = kad;
  lk->kind = kind;
  lk->ud = ud;
  memcpy(lk->key, key, len);
  lk->keylen = len;
  np_list_init(&lk->reqs);
  np_defer_init(&lk->done, lookup_deliver, lk);
  ev_timer_init(&lk->timer, lookup_timeout, (double)kad->cfg.lookup_ms / 1000.0,
                0.);
  ev_timer_start(EV(kad), &lk->timer);
  lk->timer_on = 1;
  np_list_insert_tail(&kad->lookups, &lk->link);
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

static int lookup_start(np_kad_lookup *lk, np_kad_lookup **handle) {
  int rv = lookup_run(lk);
  if (rv != 0) {
    np_list_remove(&lk->link);
    ev_timer_stop(EV(lk->kad), &lk->timer);
    np_kadquery_del(lk->q);
    free(lk);
    return rv;
  }
  *handle = lk;
  return 0;
}

int np_kad_find_peer(np_kad *kad, const np_peerid *peer, np_kad_peer_fn cb,
                     void *ud, np_kad_lookup **handle) {
  np_kad_lookup *lk;
  *handle = NULL;
  if (peer->len == 0 || cb == NULL)
    return NP_EINVAL;
  if (np_host_net(kad->h, &(void *){NULL}) == NULL)
    return NP_ENOTSUP;
  if ((lk = lookup_new(kad, LK_FIND, peer->bytes, peer->len, ud)) == NULL)
    return NP_ENOMEM;
  lk->target = *peer;
  lk->peer_cb = cb;
  return lookup_start(lk, handle);
}

int np_kad_closest(np_kad *kad, const uint8_t *key, size_t len,
                   np_kad_closest_fn cb, void *ud, np_kad_lookup **handle) {
  np_kad_lookup *lk;
  *handle = NULL;
  if (len == 0 || len > NP_KADMSG_KEY_MAX || cb == NULL)
    return NP_EINVAL;
  if (np_host_net(kad->h, &(void *){NULL}) == NULL)
    return NP_ENOTSUP;
  if ((lk = lookup_new(kad, LK_CLOSEST, key, len, ud)) == NULL)
    return NP_ENOMEM;
  lk->closest_cb = cb;
  return lookup_start(lk, handle);
}

/* A bootstrap connect ended; once all have, the self-lookup starts. */
static void boot_connected(void *ud, int err) {
  bconn *b = ud;
  np_kad_lookup *lk = b->lk;
  int rv;
  (void)err; /* a peer that did not answer simply seeds nothing */
  b->handle = NULL;
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
  if ((lk = lookup_new(kad, LK_BOOT, self->bytes, self->len, ud)) == NULL)
    return NP_ENOMEM;
  lk->boot_cb = cb;
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
        !np_peerid_equal(&id, self) &&
        (pp = np_peerstore_upsert(np_host_peerstore(kad->h), &id,
                                  now_ms(kad))) &&
        np_peerstore_add_addr(pp, addrs[i], lens[i], now_ms(kad),
                              kad->cfg.addr_ttl_ms) == 0) {
      if (ops->connect_identified)
        rv = ops->connect_identified(net, &id, NULL, NULL, 0,
                                     kad->cfg.request_ms, boot_connected,
                                     &lk->boots[i], &lk->boots[i].handle);
      else
        rv = ops->connect(net, &id, NULL, NULL, 0, kad->cfg.request_ms,
                          boot_connected, &lk->boots[i],
                          &lk->boots[i].handle);
    }
    if (rv != 0)
      lk->boots_left--;
  }
  *handle = lk;
  boot_connected(&(bconn){lk, NULL}, 0); /* drop the hold */
  return 0;
}

void np_kad_cancel(np_kad *kad, np_kad_lookup *lk) {
  if (lk == NULL)
    return;
  lookup_finish(lk, NP_ECANCELED);
  np_loop_cancel(np_host_loop(kad->h), &lk->done);
  np_list_remove(&lk->link);
  np_kadquery_del(lk->q);
  free(lk->boots);
  free(lk);
}

/* ---- np_module
 * ----------------------------------------------------------------------- */

void np_kad_stop(np_kad *kad) {
  if (kad == NULL)
    return;
  np_events_unsubscribe(np_host_events(kad->h), kad->sub);
  np_proto_remove_owner(np_host_protos(kad->h), kad);
  while (!np_list_empty(&kad->lookups)) {
    np_kad_lookup *lk = np_list_entry(kad->lookups.next, np_kad_lookup, link);
    lookup_finish(lk, NP_ECANCELED);
    np_loop_cancel(np_host_loop(kad->h), &lk->done);
    lookup_deliver(lk);
  }
  while (!np_list_empty(&kad->probes))
    req_free(np_list_entry(kad->probes.next, kreq, link), 1);
  while (!np_list_empty(&kad->streams))
    np_stream_abandon(np_list_entry(kad->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  np_kbucket_del(kad->table);
  free(kad);
}

int np_kad_start(np_host *h, const np_kad_config *cfg, np_kad **pk) {
  np_kad *kad = calloc(1, sizeof(*kad));
  np_kbucket_config kc;
  np_handler hd;
  int rv;
  if (kad == NULL)
    return NP_ENOMEM;
  kad->h = h;
  if (cfg)
    kad->cfg = *cfg;
  else
    np_kad_config_default(&kad->cfg);
  if (kad->cfg.protocol == NULL || kad->cfg.k == 0 || kad->cfg.k > 255 ||
      kad->cfg.alpha == 0 || kad->cfg.max_msg == 0) {
    free(kad);
    return NP_EINVAL;
  }
  np_kadmsg_limits_default(&kad->lim);
  kad->lim.max_msg = kad->cfg.max_msg;
  np_list_init(&kad->streams);
  np_list_init(&kad->inbound);
  np_list_init(&kad->lookups);
  np_list_init(&kad->probes);
  kc.k = kad->cfg.k;
  kc.replacements = 3;
  if ((rv = np_kbucket_new(&kad->table, &np_host_identity(h)->id, &kc)) != 0) {
    free(kad);
    return rv;
  }
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
  if ((rv = np_proto_add(np_host_protos(h), &hd, NULL)) != 0 ||
      (rv = np_events_subscribe(np_host_events(h),
                                NP_EV_PEER_IDENTIFIED | NP_EV_PROTOCOLS_CHANGED,
                                on_event, kad, &kad->sub)) != 0) {
    np_proto_remove_owner(np_host_protos(h), kad);
    np_kbucket_del(kad->table);
    free(kad);
    return rv;
  }
  *pk = kad;
  return 0;
}

static int kad_mod_start(np_host *h, void **state) {
  np_kad *kad;
  int rv = np_kad_start(h, NULL, &kad);
  if (rv == 0)
    *state = kad;
  return rv;
}

static void kad_mod_stop(void *state) { np_kad_stop(state); }

const np_module np_kad_module = {"kad", kad_mod_start, kad_mod_stop};
