#include "np_trelay.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "np_host.h"
#include "np_list.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_relaymsg.h"
#include "np_stream.h"
#include "np_swarm.h"

#define SUB "relay"
#define WRITE_CHUNK 16384 /* one np_stream write at most */
#define HS_RX_MAX (NP_RELAYMSG_MSG_MAX + 16) /* a message and its prefix */
#define CTL_QUEUE_MAX 8192 /* our own hop/stop message */

enum phase {
  P_CONNECT, /* dial: connecting to the relay, then opening the hop stream */
  P_HOP,     /* dial: CONNECT sent, waiting for STATUS */
  P_STOP,    /* inbound: waiting for the stop CONNECT */
  P_DATA,    /* the circuit: bytes for the upgrade */
  P_DEAD     /* failed; the error is (being) delivered */
};

typedef struct trelay trelay;

/* The byte stream of one circuit, with its hop or stop exchange. */
typedef struct rbs {
  np_bstream pub;
  trelay *t;
  np_list link; /* in t->streams */
  int phase;
  int upgraded; /* handed to np_upgrade_start: it closes us */
  int dialer;   /* we dialed through the relay (else a stop stream) */
  np_stream *s; /* the hop/stop stream; NULL before it opens or once gone */
  void *op;     /* pending np_net_ops connect or np_swarm_conn_open */
  np_peerid relay, peer; /* peer: the target (dial) or the source (stop) */
  uint8_t raddr[NP_CONN_ADDR_MAX]; /* <relay addr>/p2p/RELAY[/p2p-circuit] */
  size_t relay_len, raddr_len;
  ev_timer timer;
  int timer_on;
  uint8_t *rx; /* bytes read and not consumed: rx[roff .. roff+rlen) */
  size_t roff, rlen, rcap;
  int rx_eof, eof_done;
  int paused, want_write, wake, shut;
  int err; /* to deliver through on_error */
  int err_done;
  int closed; /* the owner closed it (freed once out of callbacks) */
  int depth;
  np_defer work, start;
} rbs;

struct trelay {
  np_transport pub;
  np_host *h;
  np_loop *loop;
  np_trelay_config cfg;
  np_upgrade *u;
  np_list streams;
  size_t nstreams;
  np_trelay_policy_fn policy;
  void *policy_ud;
  int closing;
  np_trelay_stats st;
  /* The last relay refusals of our dials (np_trelay_refusal). */
  struct refusal {
    np_peerid target;
    int status;
    uint64_t at_ms;
  } refused[8];
  size_t nrefused; /* next slot, modulo 8 */
};

static const np_transport_ops trelay_ops;

void np_trelay_config_default(np_trelay_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->hop_timeout_ms = 15000;
  cfg->max_connections = 64;
  np_upgrade_config_default(&cfg->upgrade);
}

static struct ev_loop *EV(trelay *t) { return np_loop_ev(t->loop); }

/* ---- addresses --------------------------------------------------------- */

int np_trelay_split(const uint8_t *bin, size_t len, size_t *relay_len,
                    np_peerid *relay, np_peerid *target, int *has_target) {
  np_maddr_comp c, prev = {0, NULL, NULL, 0};
  size_t off = 0, prev_off = 0;
  int rv, ncirc = 0, after = 0;
  *has_target = 0;
  while ((rv = np_maddr_next(bin, len, &off, &c)) > 0) {
    if (c.code == NP_MADDR_P2P_CIRCUIT) {
      if (++ncirc > 1 || prev.code != NP_MADDR_P2P)
        return NP_ENOTSUP;
      if ((rv = np_peerid_from_bytes(relay, prev.val, prev.vlen)) != 0)
        return rv;
      *relay_len = prev_off; /* the end of /p2p/RELAY */
      after = 0;
    } else if (ncirc == 1) {
      if (after++ > 0 || c.code != NP_MADDR_P2P)
        return NP_ENOTSUP; /* only /p2p/TARGET may follow */
      if ((rv = np_peerid_from_bytes(target, c.val, c.vlen)) != 0)
        return rv;
      *has_target = 1;
    }
    prev = c;
    prev_off = off;
  }
  if (rv < 0)
    return rv;
  return ncirc == 1 ? 0 : NP_ENOTSUP;
}

int np_trelay_ends_circuit(const uint8_t *bin, size_t len) {
  np_maddr_comp c;
  size_t off = 0;
  uint64_t last = 0;
  int rv;
  while ((rv = np_maddr_next(bin, len, &off, &c)) > 0)
    last = c.code;
  return rv == 0 && last == NP_MADDR_P2P_CIRCUIT;
}

/* |out| = |relay part| /p2p-circuit; 0 when it does not fit. */
static size_t circuit_of(const uint8_t *relay, size_t rlen, uint8_t *out,
                         size_t cap) {
  if (rlen + 2 > cap)
    return 0;
  memcpy(out, relay, rlen);
  out[rlen] = 0xa2; /* 0x0122 as a uvarint */
  out[rlen + 1] = 0x02;
  return rlen + 2;
}

/* ---- the byte stream --------------------------------------------------- */

static void rbs_free(rbs *b) {
  trelay *t = b->t;
  np_loop_cancel(t->loop, &b->work);
  np_loop_cancel(t->loop, &b->start);
  free(b->rx);
  free(b);
}


/* Let go of the relay side: the pending op, the timer and the stream
 * (closed gracefully after both FINs, else reset). */
static void rbs_release(rbs *b, int graceful) {
  trelay *t = b->t;
  if (b->op) {
    void *net;
    const np_net_ops *ops = np_host_net(t->h, &net);
    if (ops)
      ops->cancel(net, b->op);
    b->op = NULL;
  }
  if (b->timer_on) {
    ev_timer_stop(EV(t), &b->timer);
    b->timer_on = 0;
  }
  if (b->s) {
    np_stream *s = b->s;
    b->s = NULL;
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    if (graceful)
      s->ops->close(s);
    else
      s->ops->reset(s);
  }
}

/* Fail the circuit: the owner hears |err| on the next turn. */
static void rbs_fail(rbs *b, int err) {
  if (b->phase == P_DEAD)
    return;
  b->phase = P_DEAD;
  rbs_release(b, 0);
  b->err = err;
  np_loop_post(b->t->loop, &b->work);
}

static int rx_append(rbs *b, const uint8_t *d, size_t len) {
  if (b->roff + b->rlen + len > b->rcap) {
    if (b->roff > 0) {
      memmove(b->rx, b->rx + b->roff, b->rlen);
      b->roff = 0;
    }
    if (b->rlen + len > b->rcap) {
      size_t nc = b->rcap ? b->rcap : 4096;
      uint8_t *n;
      while (nc < b->rlen + len)
        nc *= 2;
      if ((n = realloc(b->rx, nc)) == NULL)
        return NP_ENOMEM;
      b->rx = n;
      b->rcap = nc;
    }
  }
  memcpy(b->rx + b->roff + b->rlen, d, len);
  b->rlen += len;
  return 0;
}

static void rx_drop(rbs *b, size_t n) {
  b->roff += n;
  b->rlen -= n;
  if (b->rlen == 0) { /* idle circuits hold no buffer */
    free(b->rx);
    b->rx = NULL;
    b->roff = b->rcap = 0;
  }
}

#define CALL_BEGIN(b) ((b)->depth++)
#define CALL_END(b)                                                            \
  do {                                                                         \
    if (--(b)->depth == 0 && (b)->closed)                                      \
      rbs_free(b);                                                             \
  } while (0)

/* Hand the owner what is kept, then EOF, a wake-up or the error. */
static void rbs_work(void *arg) {
  rbs *b = arg;
  const np_bstream_cbs *cbs = b->pub.cbs;
  if (b->closed || cbs == NULL)
    return;
  CALL_BEGIN(b);
  if (b->phase == P_DEAD) {
    if (!b->err_done) {
      b->err_done = 1;
      if (cbs->on_error)
        cbs->on_error(&b->pub, b->err, b->pub.ud);
    }
    goto out;
  }
  if (b->phase == P_DATA && !b->paused && b->rlen > 0) {
    size_t k = cbs->on_data(&b->pub, b->rx + b->roff, b->rlen, b->pub.ud);
    if (b->closed || b->phase == P_DEAD)
      goto out;
    if (k > b->rlen)
      k = b->rlen;
    rx_drop(b, k);
    if (b->rlen > 0)
      b->paused = 1; /* the stream stays paused */
    else if (!b->paused && b->s)
      b->s->ops->pause(b->s, 0);
  }
  if (b->phase == P_DATA && !b->paused && b->rlen == 0 && b->rx_eof &&
      !b->eof_done) {
    b->eof_done = 1;
    if (cbs->on_eof)
      cbs->on_eof(&b->pub, b->pub.ud);
    if (b->closed)
      goto out;
  }
  if (b->phase == P_DATA && b->wake) {
    b->wake = 0;
    if (b->want_write) {
      b->want_write = 0;
      if (cbs->on_writable)
        cbs->on_writable(&b->pub, b->pub.ud);
    }
  }
out:
  CALL_END(b);
}

static np_ssize rbs_write(np_bstream *pb, const uint8_t *data, size_t len) {
  rbs *b = (rbs *)pb;
  size_t off = 0;
  if (b->closed || b->shut || b->phase == P_DEAD)
    return NP_ECLOSED;
  if (b->phase != P_DATA) { /* not through yet: on_writable once it is */
    b->want_write = 1;
    return 0;
  }
  if (b->s == NULL)
    return NP_ECLOSED;
  while (off < len) {
    size_t n = len - off < WRITE_CHUNK ? len - off : WRITE_CHUNK;
    int rv = b->s->ops->write(b->s, data + off, n);
    if (rv == NP_ELIMIT) {
      b->want_write = 1; /* the stream's on_writable follows */
      break;
    }
    if (rv < 0)
      return off ? (np_ssize)off : NP_ECLOSED;
    off += n;
  }
  return (np_ssize)off;
}

static int rbs_shutdown(np_bstream *pb) {
  rbs *b = (rbs *)pb;
  if (b->closed || b->shut || b->phase != P_DATA || b->s == NULL)
    return NP_ECLOSED;
  b->shut = 1;
  b->s->ops->close(b->s);
  return 0;
}

static void rbs_pause(np_bstream *pb, int paused) {
  rbs *b = (rbs *)pb;
  if (b->closed || b->phase == P_DEAD)
    return;
  b->paused = !!paused;
  if (b->paused) {
    if (b->s && b->phase == P_DATA)
      b->s->ops->pause(b->s, 1);
  } else if (b->rlen > 0 || (b->rx_eof && !b->eof_done)) {
    np_loop_post(b->t->loop, &b->work); /* kept bytes first */
  } else if (b->s && b->phase == P_DATA) {
    b->s->ops->pause(b->s, 0);
  }
}

static np_ssize rbs_local_addr(const np_bstream *pb, uint8_t *out,
                               size_t cap) {
  const rbs *b = (const rbs *)pb;
  if (b->raddr_len == 0)
    return NP_ENOENT;
  if (b->raddr_len > cap)
    return NP_ELIMIT;
  memcpy(out, b->raddr, b->raddr_len);
  return (np_ssize)b->raddr_len;
}

static void rbs_close(np_bstream *pb) {
  rbs *b = (rbs *)pb;
  if (b->closed)
    return;
  b->closed = 1;
  rbs_release(b, b->shut && b->rx_eof);
  np_list_remove(&b->link);
  np_list_init(&b->link);
  b->t->nstreams--;
  np_loop_cancel(b->t->loop, &b->work);
  np_loop_cancel(b->t->loop, &b->start);
  if (b->depth == 0)
    rbs_free(b);
}

static const np_bstream_ops rbs_ops = {rbs_write, rbs_shutdown, rbs_pause,
                                       rbs_local_addr, rbs_close};

/* ---- the stream's events ------------------------------------------------- */

static void log_failed(rbs *b, const char *why, int status) {
  char r[NP_PEERID_STRMAX], p[NP_PEERID_STRMAX];
  np_peerid_to_string(&b->relay, r, sizeof(r));
  np_peerid_to_string(&b->peer, p, sizeof(p));
  if (b->dialer)
    np_info(SUB, "dial-failed relay=%s target=%s status=%d reason=%s", r, p,
            status, why);
  else
    np_info(SUB, "stop-failed relay=%s src=%s status=%d reason=%s", r, p,
            status, why);
}

static void rbs_close(np_bstream *pb);

/* A stop stream nobody upgrades yet is closed here; a dial's owner hears
 * |err|. */
static void hop_failed(rbs *b, const char *why, int status, int err) {
  if (b->phase == P_DEAD || b->closed)
    return;
  log_failed(b, why, status);
  if (b->dialer && status > 0) {
    struct refusal *r = &b->t->refused[b->t->nrefused++ % 8];
    r->target = b->peer;
    r->status = status;
    r->at_ms = np_now(b->t->loop);
  }
  if (b->dialer)
    b->t->st.dials_failed++;
  else
    b->t->st.stops_refused++;
  if (!b->upgraded) {
    rbs_release(b, 0);
    rbs_close(&b->pub);
    return;
  }
  rbs_fail(b, err);
}

/* The hop STATUS or the stop CONNECT, once whole in rx. */
static void handshake_input(rbs *b) {
  np_relaymsg m;
  np_ssize n;
  int kind = b->phase == P_HOP ? NP_RELAYMSG_HOP : NP_RELAYMSG_STOP;
  n = np_relaymsg_decode_lp(&m, kind, b->rx + b->roff, b->rlen, NULL);
  if (n == NP_ETRUNC) {
    if (b->rlen > HS_RX_MAX)
      hop_failed(b, "oversized", 0, NP_EUNREACH);
    return;
  }
  if (n < 0) {
    hop_failed(b, "malformed", 0, NP_EUNREACH);
    return;
  }
  rx_drop(b, (size_t)n);
  if (b->phase == P_HOP) {
    int status = m.has_status ? (int)m.status : 0;
    if (m.type != NP_RELAYMSG_HOP_STATUS || status != NP_RELAYMSG_OK) {
      const char *why =
          m.type != NP_RELAYMSG_HOP_STATUS ? "unexpected" : "refused";
      np_relaymsg_free(&m);
      hop_failed(b, why, status, NP_EUNREACH);
      return;
    }
    np_relaymsg_free(&m);
    {
      char r[NP_PEERID_STRMAX], p[NP_PEERID_STRMAX];
      np_peerid_to_string(&b->relay, r, sizeof(r));
      np_peerid_to_string(&b->peer, p, sizeof(p));
      np_info(SUB, "dial-ok relay=%s target=%s", r, p);
    }
    b->t->st.dials_ok++;
  } else { /* P_STOP */
    uint8_t out[64];
    np_relaymsg a;
    np_ssize k;
    int status;
    if (m.type != NP_RELAYMSG_STOP_CONNECT || !m.has_peer) {
      np_relaymsg_free(&m);
      hop_failed(b, "unexpected", 0, NP_EPROTO);
      return;
    }
    b->peer = m.peer.id;
    np_relaymsg_free(&m);
    status = b->t->policy ? b->t->policy(b->t->policy_ud, &b->relay, &b->peer)
                          : NP_RELAYMSG_PERMISSION_DENIED;
    np_relaymsg_init(&a);
    a.kind = NP_RELAYMSG_STOP;
    a.type = NP_RELAYMSG_STOP_STATUS;
    a.has_status = 1;
    a.status = (np_relaymsg_status)status;
    k = np_relaymsg_encode_lp(&a, out, sizeof(out));
    if (k < 0 || b->s->ops->send(b->s, out, (size_t)k, status != NP_RELAYMSG_OK,
                                 CTL_QUEUE_MAX) != 0) {
      hop_failed(b, "send", 0, NP_ECLOSED);
      return;
    }
    if (status != NP_RELAYMSG_OK) {
      /* The status and a FIN are on their way: let the stream go. */
      np_stream *s = b->s;
      b->s = NULL;
      np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
      hop_failed(b, "policy", status, NP_EPROTO);
      return;
    }
  }
  if (b->timer_on) {
    ev_timer_stop(EV(b->t), &b->timer);
    b->timer_on = 0;
  }
  b->phase = P_DATA;
  b->wake = 1;
  b->t->st.early_bytes += b->rlen;
  if (b->rlen > 0 || b->rx_eof || b->want_write)
    np_loop_post(b->t->loop, &b->work);
  if (b->rlen > 0 && b->s)
    b->s->ops->pause(b->s, 1); /* until the owner took what is kept */
}

static int stop_begin_upgrade(rbs *b);

static void s_data_in(rbs *b, const uint8_t *data, size_t len);

static void s_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  rbs *b = ud;
  (void)s;
  CALL_BEGIN(b);
  s_data_in(b, data, len);
  CALL_END(b);
}

static void s_data_in(rbs *b, const uint8_t *data, size_t len) {
  if (b->closed || b->phase == P_DEAD)
    return;
  if (len == 0) { /* FIN */
    b->rx_eof = 1;
    if (b->phase == P_HOP || b->phase == P_STOP)
      hop_failed(b, "closed", 0, NP_ECLOSED);
    else
      np_loop_post(b->t->loop, &b->work);
    return;
  }
  if (b->phase == P_HOP || b->phase == P_STOP) {
    int was_stop = b->phase == P_STOP;
    if (rx_append(b, data, len) != 0) {
      hop_failed(b, "memory", 0, NP_ENOMEM);
      return;
    }
    handshake_input(b);
    if (was_stop && !b->closed && b->phase == P_DATA)
      stop_begin_upgrade(b);
    return;
  }
  /* P_DATA */
  if (b->paused || b->rlen > 0 || b->pub.cbs == NULL) {
    if (rx_append(b, data, len) != 0) {
      rbs_fail(b, NP_ECLOSED);
      return;
    }
    b->s->ops->pause(b->s, 1);
    return;
  }
  {
    size_t k = b->pub.cbs->on_data(&b->pub, data, len, b->pub.ud);
    if (!b->closed && b->phase == P_DATA && k < len) {
      if (rx_append(b, data + k, len - k) != 0)
        rbs_fail(b, NP_ECLOSED);
      else {
        b->paused = 1;
        if (b->s)
          b->s->ops->pause(b->s, 1);
      }
    }
  }
}

static void s_close(np_stream *s, int err, void *ud) {
  rbs *b = ud;
  (void)s;
  b->s = NULL; /* gone when this returns */
  if (b->closed || b->phase == P_DEAD)
    return;
  if (b->phase != P_DATA) {
    CALL_BEGIN(b);
    hop_failed(b, "closed", 0, NP_ECLOSED);
    CALL_END(b);
    return;
  }
  if (err == 0) { /* both directions ended: what is kept, then EOF */
    b->rx_eof = 1;
    b->shut = 1;
    np_loop_post(b->t->loop, &b->work);
    return;
  }
  rbs_fail(b, NP_ECLOSED);
}

static void s_writable(np_stream *s, void *ud) {
  rbs *b = ud;
  (void)s;
  if (b->closed || b->phase != P_DATA || !b->want_write)
    return;
  b->wake = 1;
  np_loop_post(b->t->loop, &b->work);
}

static const np_stream_cbs rbs_stream_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = s_data,
    .on_close = s_close,
    .on_writable = s_writable,
};

static void on_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  rbs *b = np_container_of(w, rbs, timer);
  (void)ev, (void)revents;
  b->timer_on = 0;
  hop_failed(b, "timeout", 0, NP_ETIMEDOUT);
}

static void dial_start(void *arg);

static rbs *rbs_new(trelay *t, int phase) {
  rbs *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return NULL;
  b->pub.ops = &rbs_ops;
  b->t = t;
  b->phase = phase;
  np_defer_init(&b->work, rbs_work, b);
  np_defer_init(&b->start, dial_start, b);
  np_list_insert_tail(&t->streams, &b->link);
  t->nstreams++;
  ev_timer_init(&b->timer, on_timeout, (double)t->cfg.hop_timeout_ms / 1e3,
                0.);
  ev_timer_start(EV(t), &b->timer);
  b->timer_on = 1;
  return b;
}

/* ---- dialing --------------------------------------------------------------- */

static void hop_opened(void *ud, int err, np_stream *s, const char *proto) {
  rbs *b = ud;
  np_relaymsg m;
  uint8_t out[128];
  np_ssize n;
  (void)proto;
  b->op = NULL;
  if (err != 0) {
    hop_failed(b, "hop-open", 0, err == NP_ENOPROTO ? NP_EUNREACH : err);
    return;
  }
  b->s = s;
  np_list_remove(&s->owner_link);
  np_list_init(&s->owner_link);
  np_stream_set_cbs(s, &rbs_stream_cbs, b);
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_HOP;
  m.type = NP_RELAYMSG_HOP_CONNECT;
  m.has_peer = 1;
  m.peer.id = b->peer;
  b->phase = P_HOP;
  if ((n = np_relaymsg_encode_lp(&m, out, sizeof(out))) < 0 ||
      s->ops->send(s, out, (size_t)n, 0, CTL_QUEUE_MAX) != 0)
    hop_failed(b, "send", 0, NP_ECLOSED);
}

typedef struct find_direct {
  const np_peerid *peer;
  const np_conn *c;
} find_direct;

static int find_direct_fn(const np_conn *c, void *ud) {
  find_direct *f = ud;
  if (c->limited || c->kind == NP_TRANSPORT_RELAY ||
      !np_peerid_equal(&c->peer, f->peer))
    return 0;
  f->c = c;
  return 1;
}

static void relay_connected(void *ud, int err) {
  rbs *b = ud;
  np_swarm *sw = np_host_swarm(b->t->h);
  find_direct f = {&b->relay, NULL};
  int rv;
  b->op = NULL;
  if (err != 0) {
    hop_failed(b, "relay-unreachable", 0, NP_EUNREACH);
    return;
  }
  if (sw)
    np_swarm_foreach_conn(sw, find_direct_fn, &f);
  if (f.c == NULL) { /* only a relayed connection: no circuit over it */
    hop_failed(b, "relay-not-direct", 0, NP_EUNREACH);
    return;
  }
  rv = np_swarm_conn_open(sw, f.c, NP_RELAYMSG_HOP_PROTOCOL, hop_opened, b,
                          &b->op);
  if (rv != 0) {
    b->op = NULL;
    hop_failed(b, "hop-open", 0, NP_EUNREACH);
  }
}

/* From the loop: the swarm's dial that called us is over. */
static void dial_start(void *arg) {
  rbs *b = arg;
  void *net;
  const np_net_ops *ops = np_host_net(b->t->h, &net);
  const uint8_t *a[1] = {b->raddr};
  size_t l[1] = {b->relay_len};
  int has_addr;
  np_maddr_comp c;
  size_t off = 0;
  int rv;
  if (b->closed || b->phase != P_CONNECT)
    return;
  if (ops == NULL) {
    hop_failed(b, "no-network", 0, NP_EUNREACH);
    return;
  }
  /* /p2p/RELAY alone: the peerstore knows (or the router finds) it. */
  has_addr = np_maddr_next(b->raddr, b->relay_len, &off, &c) > 0 &&
             c.code != NP_MADDR_P2P;
  rv = ops->connect(net, &b->relay, has_addr ? a : NULL,
                    has_addr ? l : NULL, has_addr ? 1 : 0,
                    b->t->cfg.hop_timeout_ms, relay_connected, b, &b->op);
  if (rv != 0) {
    b->op = NULL;
    hop_failed(b, "relay-connect", 0, NP_EUNREACH);
  }
}

static int tr_can_dial(const np_transport *t, const uint8_t *maddr,
                       size_t len) {
  size_t rl;
  np_peerid r, p;
  int has;
  (void)t;
  return np_trelay_split(maddr, len, &rl, &r, &p, &has) == 0;
}

static int tr_dial(np_transport *pt, const uint8_t *maddr, size_t len,
                   void *ud, np_conn **pc) {
  trelay *t = (trelay *)pt;
  size_t rl;
  np_peerid relay, target;
  int has, rv;
  rbs *b;
  if (t->closing)
    return NP_ECANCELED;
  if ((rv = np_trelay_split(maddr, len, &rl, &relay, &target, &has)) != 0)
    return rv;
  if (!has)
    return NP_EINVAL; /* the swarm always names the target */
  if (np_peerid_equal(&target, &np_host_identity(t->h)->id) ||
      np_peerid_equal(&relay, &np_host_identity(t->h)->id))
    return NP_EINVAL;
  if (t->nstreams >= t->cfg.max_connections)
    return NP_ELIMIT;
  if ((b = rbs_new(t, P_CONNECT)) == NULL)
    return NP_ENOMEM;
  b->relay = relay;
  b->peer = target;
  b->relay_len = rl;
  b->raddr_len = circuit_of(maddr, rl, b->raddr, sizeof(b->raddr));
  if (b->raddr_len == 0) {
    rbs_close(&b->pub);
    return NP_ELIMIT;
  }
  b->dialer = 1;
  b->upgraded = 1;
  t->st.dials++;
  rv = np_upgrade_start(t->u, &b->pub, 0, &target, b->raddr, b->raddr_len,
                        b->raddr, b->raddr_len, ud, pc);
  if (rv != 0)
    return rv; /* |b| was closed there */
  (*pc)->limited = 1;
  np_loop_post(t->loop, &b->start);
  return 0;
}

/* ---- accepting ---------------------------------------------------------------- */

static int stop_begin_upgrade(rbs *b) {
  trelay *t = b->t;
  np_conn *c = NULL;
  int rv;
  b->upgraded = 1;
  t->st.stops_ok++;
  {
    char r[NP_PEERID_STRMAX], p[NP_PEERID_STRMAX];
    np_peerid_to_string(&b->relay, r, sizeof(r));
    np_peerid_to_string(&b->peer, p, sizeof(p));
    np_info(SUB, "stop-ok relay=%s src=%s", r, p);
  }
  rv = np_upgrade_start(t->u, &b->pub, 1, &b->peer, b->raddr, b->raddr_len,
                        b->raddr, b->raddr_len, NULL, &c);
  if (rv != 0)
    return rv; /* |b| was closed there */
  c->limited = 1;
  return 0;
}

int np_trelay_accept_stop(np_transport *pt, np_stream *s) {
  trelay *t = (trelay *)pt;
  uint8_t a[NP_CONN_ADDR_MAX];
  size_t alen = 0;
  rbs *b;
  if (pt == NULL || pt->ops != &trelay_ops) {
    s->ops->reset(s);
    return NP_EINVAL;
  }
  if (t->closing || t->nstreams >= t->cfg.max_connections) {
    s->ops->reset(s);
    return NP_ELIMIT;
  }
  if ((b = rbs_new(t, P_STOP)) == NULL) {
    s->ops->reset(s);
    return NP_ENOMEM;
  }
  b->relay = s->peer_id;
  t->st.stops++;
  /* The relay's address as we reach it, without a /p2p/ of its own. */
  {
    np_maddr_comp c;
    size_t off = 0, keep = 0;
    int rv;
    while ((rv = np_maddr_next(s->addr, s->addr_len, &off, &c)) > 0 &&
           c.code != NP_MADDR_P2P && c.code != NP_MADDR_P2P_CIRCUIT)
      keep = off;
    if (keep + 64 <= sizeof(a)) {
      np_ssize n;
      memcpy(a, s->addr, keep);
      n = np_maddr_append_p2p(a, keep, sizeof(a), &b->relay);
      if (n > 0)
        alen = (size_t)n;
    }
  }
  b->relay_len = alen;
  b->raddr_len = alen ? circuit_of(a, alen, b->raddr, sizeof(b->raddr)) : 0;
  b->s = s;
  np_list_remove(&s->owner_link);
  np_list_init(&s->owner_link);
  np_stream_set_cbs(s, &rbs_stream_cbs, b);
  return 0;
}

void np_trelay_set_policy(np_transport *pt, np_trelay_policy_fn fn, void *ud) {
  trelay *t = (trelay *)pt;
  if (pt == NULL || pt->ops != &trelay_ops)
    return;
  t->policy = fn;
  t->policy_ud = ud;
}

int np_trelay_refusal(const np_transport *pt, const np_peerid *target,
                      uint64_t max_age_ms) {
  const trelay *t = (const trelay *)pt;
  const struct refusal *best = NULL;
  if (pt == NULL || pt->ops != &trelay_ops)
    return 0;
  for (size_t i = 0; i < 8; i++) {
    const struct refusal *r = &t->refused[i];
    if (r->status > 0 && np_peerid_equal(&r->target, target) &&
        np_now(t->loop) - r->at_ms <= max_age_ms &&
        (best == NULL || r->at_ms >= best->at_ms))
      best = r;
  }
  return best ? best->status : 0;
}

void np_trelay_get_stats(const np_transport *pt, np_trelay_stats *st) {
  const trelay *t = (const trelay *)pt;
  if (pt == NULL || pt->ops != &trelay_ops) {
    memset(st, 0, sizeof(*st));
    return;
  }
  *st = t->st;
}

/* ---- np_transport ----------------------------------------------------------- */

static int tr_listen(np_transport *t, const uint8_t *maddr, size_t len) {
  (void)t, (void)maddr, (void)len;
  return NP_ENOTSUP; /* reachable through reservations, not a socket */
}
static size_t tr_listen_count(const np_transport *t) {
  (void)t;
  return 0;
}
static np_ssize tr_listen_addr(const np_transport *t, size_t i, uint8_t *out,
                               size_t cap) {
  (void)t, (void)i, (void)out, (void)cap;
  return NP_ENOENT;
}
static size_t tr_conn_count(const np_transport *pt) {
  const trelay *t = (const trelay *)pt;
  return np_upgrade_count(t->u);
}

static void tr_del(np_transport *pt) {
  trelay *t = (trelay *)pt;
  if (t == NULL)
    return;
  t->closing = 1;
  /* Stop streams not yet upgraded are ours to close; the rest close as
   * the upgrader takes its connections down. */
  for (np_list *it = t->streams.next; it != &t->streams;) {
    rbs *b = np_list_entry(it, rbs, link);
    it = it->next;
    if (!b->upgraded)
      rbs_close(&b->pub);
  }
  np_upgrade_del(t->u);
  /* Nothing is left (each was closed), but be safe about a leak. */
  while (!np_list_empty(&t->streams))
    rbs_close(&np_list_entry(t->streams.next, rbs, link)->pub);
  free(t);
}

static const np_transport_ops trelay_ops = {
    .kind = NP_TRANSPORT_RELAY,
    .can_dial = tr_can_dial,
    .dial = tr_dial,
    .listen = tr_listen,
    .listen_count = tr_listen_count,
    .listen_addr = tr_listen_addr,
    .conn_count = tr_conn_count,
    .del = tr_del,
    .dial_new_port = NULL,
};

int np_trelay_new(np_transport **pt, np_host *h, const np_trelay_config *cfg,
                  const np_conn_cbs *cbs, void *ud) {
  trelay *t;
  int rv;
  if (h == NULL || cbs == NULL)
    return NP_EINVAL;
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return NP_ENOMEM;
  t->pub.ops = &trelay_ops;
  t->h = h;
  t->loop = np_host_loop(h);
  np_trelay_config_default(&t->cfg);
  if (cfg) {
    if (cfg->hop_timeout_ms)
      t->cfg.hop_timeout_ms = cfg->hop_timeout_ms;
    if (cfg->max_connections)
      t->cfg.max_connections = cfg->max_connections;
    t->cfg.upgrade = cfg->upgrade;
  }
  np_list_init(&t->streams);
  if ((rv = np_upgrade_new(&t->u, t->loop, np_host_identity(h),
                           NP_TRANSPORT_RELAY, &t->cfg.upgrade, cbs, ud)) !=
      0) {
    free(t);
    return rv;
  }
  *pt = &t->pub;
  return 0;
}
