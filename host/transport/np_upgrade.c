/* Connection upgrader: multistream-select, Noise or TLS, and yamux over an
 * np_bstream, presented as an np_conn. Noise and TLS are both a "secured
 * stream" here (sec_* below): handshake input, ciphertext output, plaintext
 * both ways; the muxer layers do not know which one runs. The protocol modules
 * are sans-I/O; this file moves bytes between them and the byte stream and
 * turns their callbacks into np_conn events at the right time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_log.h"
#include "np_mss.h"
#include "np_multiaddr.h"
#include "np_noise.h"
#include "np_tlsstream.h"
#include "np_upgrade.h"
#include "np_yamux.h"

#define STASH_MAX NP_NOISE_PLAINTEXT_MAX /* one frame's plaintext */
/* Send buffers are chains of fixed chunks from a small per-transport
 * cache: bulk writers cycle through the same memory instead of making
 * malloc grow and trim the heap (page faults cost more than the copy). */
#define CHUNK_SIZE (64u * 1024u)
#define CHUNK_CACHE 16
#define LOG_BURST 20 /* peer-triggered lines per second */

enum { ST_SEC, ST_HS, ST_MUX, ST_UP };
enum { DUE_WRITABLE = 1, DUE_CLOSE = 2 };

/* Handshake-only state, freed once yamux runs and its output is out. */
typedef struct hs_state {
  np_mss sec; /* /noise or /tls/1.0.0 on the raw stream */
  np_mss mux; /* /yamux/1.0.0 inside it, when not inlined */
  int has_expected;
  np_peerid expected;
} hs_state;

typedef struct uconn uconn;

typedef struct chunk {
  struct chunk *next;
  size_t off, len;
  uint8_t data[CHUNK_SIZE];
} chunk;

typedef struct ustream {
  np_cstream pub; /* first: np_cstream * converts both ways */
  uconn *c;
  np_yamux_stream *st; /* NULL once ended or reset here */
  np_list link;        /* c->streams until stream_close returned */
  np_list elink;       /* c->events while an event is due */
  unsigned due;
  int close_err;
  chunk *head, *tail; /* send buffer, blen bytes */
  size_t blen;
  size_t held; /* delivered while paused, not yet credited */
  int inbound, paused, want_fin, fin_sent, want_writable, closed;
} ustream;

struct uconn {
  np_conn pub; /* first */
  np_upgrade *u;
  np_list link; /* u->conns */
  uint32_t id;  /* for logs */
  int state;
  int failing, err;
  const char *why; /* failure reason, for the log */
  int up_done, teardown;
  int tx_blocked, rx_blocked, bs_broken;
  int credit_wanted, credit_due, ping_out;
  np_bstream *bs;
  np_noise *nz; /* one of nz and ts, after ST_SEC */
  np_tlsstream *ts;
  np_yamux *ym;
  hs_state *hs;
  ev_timer timer; /* handshake deadline, then keepalive */
  np_defer work;
  np_list streams, events;
  size_t nout;     /* our streams alive */
  size_t nwant;    /* streams waiting for stream_writable */
  size_t buffered; /* bytes in all send buffers */
  uint8_t *stash;  /* plaintext the muxer could not take yet */
  size_t soff, slen;
  double last_rx, ping_sent;
  int64_t rtt_us;
};

struct np_upgrade {
  np_loop *loop;
  struct ev_loop *ev;
  const np_identity *id;
  int kind;
  const char *sub; /* log subsystem */
  np_upgrade_config cfg;
  const char *sec_protos[NP_UPGRADE_SEC_MAX]; /* offered, in order */
  size_t nsec;
  np_tls *tls; /* stream-mode certificate, made at the first TLS use */
  np_conn_cbs cbs;
  void *ud;
  np_list conns;
  size_t nconns;
  chunk *spare; /* cache of free chunks */
  size_t nspare;
  uint32_t next_id;
  int deleting;
  np_ratelimit hs_rl, err_rl;
};

static const char *const yamux_protos[] = {NP_YAMUX_PROTOCOL};

static const char *kind_sub(int kind) {
  switch (kind) {
  case NP_TRANSPORT_TCP:
    return "tcp";
  case NP_TRANSPORT_MEM:
    return "mem";
  case NP_TRANSPORT_RELAY:
    return "relay";
  default:
    return "upgrade";
  }
}

static uint64_t now_ms(const uconn *c) { return np_now(c->u->loop); }

static void post(uconn *c) {
  if (!c->teardown)
    np_loop_post(c->u->loop, &c->work);
}

/* Ends |c| with |err|: no more input; the work turn tears it down. */
static void fail(uconn *c, int err, const char *why) {
  if (c->failing)
    return;
  c->failing = 1;
  c->err = err;
  c->why = why;
  if (c->bs != NULL && !c->bs_broken)
    c->bs->ops->pause(c->bs, 1);
  ev_timer_stop(c->u->ev, &c->timer);
  post(c);
}

/* Handshake errors as np_conn's conn_down codes. */
static int hs_err(np_ssize rv) {
  switch (rv) {
  case NP_EPEERID:
  case NP_ECRYPTO:
  case NP_ENOPROTO:
  case NP_ENOMEM:
  case NP_EPROTO:
    return (int)rv;
  case NP_ENOTSUP: /* a host key type we do not know */
    return NP_ECRYPTO;
  default: /* NP_ELIMIT: over a message cap */
    return NP_EPROTO;
  }
}

/* ---- streams ------------------------------------------------------------- */

static ustream *stream_new(uconn *c, int inbound) {
  ustream *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  s->pub.conn = &c->pub;
  s->c = c;
  s->inbound = inbound;
  np_list_init(&s->elink);
  np_list_insert_tail(&c->streams, &s->link);
  return s;
}

static void clear_want(ustream *s) {
  if (s->want_writable) {
    s->want_writable = 0;
    s->c->nwant--;
  }
}

static chunk *chunk_get(np_upgrade *u) {
  chunk *k = u->spare;
  if (k != NULL) {
    u->spare = k->next;
    u->nspare--;
  } else if ((k = malloc(sizeof(*k))) == NULL) {
    return NULL;
  }
  k->next = NULL;
  k->off = k->len = 0;
  return k;
}

static void chunk_put(np_upgrade *u, chunk *k) {
  if (u->nspare < CHUNK_CACHE) {
    k->next = u->spare;
    u->spare = k;
    u->nspare++;
  } else {
    free(k);
  }
}

static void drop_buf(ustream *s) {
  while (s->head != NULL) {
    chunk *k = s->head;
    s->head = k->next;
    chunk_put(s->c->u, k);
  }
  s->tail = NULL;
  s->c->buffered -= s->blen;
  s->blen = 0;
}

static void stream_free(ustream *s) {
  clear_want(s);
  drop_buf(s);
  np_list_remove(&s->link);
  np_list_remove(&s->elink);
  free(s);
}

static void due(ustream *s, unsigned what) {
  s->due |= what;
  if (np_list_empty(&s->elink))
    np_list_insert_tail(&s->c->events, &s->elink);
  post(s->c);
}

static size_t space(const ustream *s) {
  const np_upgrade_config *cfg = &s->c->u->cfg;
  size_t a =
      s->blen < cfg->stream_buffer_max ? cfg->stream_buffer_max - s->blen : 0;
  size_t b = s->c->buffered < cfg->conn_buffer_max
                 ? cfg->conn_buffer_max - s->c->buffered
                 : 0;
  return a < b ? a : b;
}

static int buf_append(ustream *s, const uint8_t *data, size_t len) {
  while (len > 0) {
    chunk *t = s->tail;
    size_t room, n;
    if (t == NULL || t->off + t->len == CHUNK_SIZE) {
      if ((t = chunk_get(s->c->u)) == NULL)
        return NP_ENOMEM;
      if (s->tail != NULL)
        s->tail->next = t;
      else
        s->head = t;
      s->tail = t;
    }
    room = CHUNK_SIZE - t->off - t->len;
    n = len < room ? len : room;
    memcpy(t->data + t->off + t->len, data, n);
    t->len += n;
    s->blen += n;
    s->c->buffered += n;
    data += n;
    len -= n;
  }
  return 0;
}

/* Buffered bytes into yamux as its window and output allow; FIN after. */
static void push(ustream *s) {
  uconn *c = s->c;
  while (s->st != NULL && s->head != NULL) {
    chunk *h = s->head;
    np_ssize k = np_yamux_write(s->st, h->data + h->off, h->len);
    if (k <= 0)
      break; /* NP_ELIMIT: on_writable later; else on_close follows */
    h->off += (size_t)k;
    h->len -= (size_t)k;
    s->blen -= (size_t)k;
    c->buffered -= (size_t)k;
    if (h->len == 0) {
      if ((s->head = h->next) == NULL)
        s->tail = NULL;
      chunk_put(c->u, h);
    }
  }
  if (s->st != NULL && s->blen == 0 && s->want_fin && !s->fin_sent) {
    s->fin_sent = 1;
    np_yamux_close_write(s->st);
  }
  post(c);
}

/* stream_writable for waiting streams once half their buffer (and half
 * the connection's) is free again. */
static void wake_writers(uconn *c) {
  const np_upgrade_config *cfg = &c->u->cfg;
  np_list *l;
  if (c->nwant == 0 || c->buffered > cfg->conn_buffer_max / 2)
    return;
  for (l = c->streams.next; l != &c->streams && c->nwant > 0; l = l->next) {
    ustream *s = np_list_entry(l, ustream, link);
    if (s->want_writable && s->blen <= cfg->stream_buffer_max / 2) {
      clear_want(s);
      if (s->st != NULL)
        due(s, DUE_WRITABLE);
    }
  }
}

/* ---- yamux callbacks ----------------------------------------------------- */

static int ym_stream_open(np_yamux_stream *st, void *ud) {
  uconn *c = ud;
  ustream *s;
  if (c->failing || c->teardown || c->u->cbs.stream_open == NULL)
    return 1;
  if ((s = stream_new(c, 1)) == NULL)
    return 1;
  s->st = st;
  np_yamux_stream_set_ud(st, s);
  c->u->cbs.stream_open(&s->pub, c->u->ud);
  return 0;
}

static void ym_data(np_yamux_stream *st, const uint8_t *data, size_t len,
                    void *ud, void *sud) {
  uconn *c = ud;
  ustream *s = sud;
  if (c->teardown || s == NULL || s->st == NULL || c->failing)
    return;
  if (c->u->cbs.stream_data)
    c->u->cbs.stream_data(&s->pub, data, len, 0, c->u->ud);
  if (s->st == NULL || c->failing)
    return; /* reset or closed from inside the event */
  /* The window is credited when the reader is done, so a paused reader
   * holds at most one window. */
  if (s->paused)
    s->held += len;
  else
    np_yamux_consumed(st, len, now_ms(c));
}

static void ym_fin(np_yamux_stream *st, void *ud, void *sud) {
  uconn *c = ud;
  ustream *s = sud;
  (void)st;
  if (c->teardown || s == NULL || s->st == NULL || c->failing)
    return;
  if (c->u->cbs.stream_data)
    c->u->cbs.stream_data(&s->pub, (const uint8_t *)"", 0, 1, c->u->ud);
}

static void ym_writable(np_yamux_stream *st, void *ud, void *sud) {
  uconn *c = ud;
  (void)st;
  if (!c->teardown && sud != NULL)
    push(sud);
}

static void ym_close(np_yamux_stream *st, int err, void *ud, void *sud) {
  uconn *c = ud;
  ustream *s = sud;
  (void)st;
  if (c->teardown || s == NULL)
    return;
  s->st = NULL;
  if (!s->closed) {
    s->closed = 1;
    s->close_err = err;
  }
  drop_buf(s);
  clear_want(s);
  if (!s->inbound) {
    c->nout--;
    if (c->credit_wanted)
      c->credit_due = 1;
  }
  due(s, DUE_CLOSE);
}

static void arm_keepalive(uconn *c);

static void ym_ping(np_yamux *y, uint64_t rtt_ms, void *ud) {
  uconn *c = ud;
  (void)y, (void)rtt_ms;
  if (c->ping_out) {
    c->ping_out = 0;
    /* yamux counts in loop milliseconds; this is finer. */
    c->rtt_us = (int64_t)((ev_time() - c->ping_sent) * 1e6);
    if (!c->failing)
      arm_keepalive(c); /* the next ping is due from now on */
  }
}

static void ym_goaway(np_yamux *y, uint32_t code, void *ud) {
  uconn *c = ud;
  (void)y;
  np_debug(c->u->sub, "goaway conn=%08x code=%u", c->id, code);
}

static void ym_error(np_yamux *y, int err, void *ud) {
  (void)y;
  fail(ud, err, "yamux");
}

static const np_yamux_cbs ym_cbs = {ym_stream_open, ym_data,  ym_fin,
                                    ym_writable,    ym_close, ym_ping,
                                    ym_goaway,      ym_error};

/* ---- output -------------------------------------------------------------- */

/* Bytes to the byte stream. Returns the count taken or -1 (failed). */
static np_ssize send_raw(uconn *c, const uint8_t *p, size_t n) {
  np_ssize w = c->bs->ops->write(c->bs, p, n);
  if (w < 0) {
    c->bs_broken = 1;
    fail(c, NP_ECLOSED, "write-failed");
    return -1;
  }
  if ((size_t)w < n)
    c->tx_blocked = 1; /* on_writable resumes */
  return w;
}

/* ---- the secured stream: Noise or TLS ------------------------------------ */

static size_t sec_output(uconn *c, const uint8_t **o) {
  if (c->nz != NULL)
    return np_noise_output(c->nz, o);
  return c->ts != NULL ? np_tlsstream_output(c->ts, o) : 0;
}

static void sec_drain(uconn *c, size_t n) {
  if (c->nz != NULL)
    np_noise_output_drain(c->nz, n);
  else
    np_tlsstream_output_drain(c->ts, n);
}

static int sec_done(const uconn *c) {
  if (c->nz != NULL)
    return np_noise_done(c->nz);
  return c->ts != NULL && np_tlsstream_done(c->ts);
}

/* The handshake's reason when it has one (TLS says why), else |why|. */
static const char *sec_why(const uconn *c, const char *why) {
  if (c->ts != NULL && np_tlsstream_why(c->ts)[0] != '\0')
    return np_tlsstream_why(c->ts);
  return why;
}

static np_ssize encrypt(uconn *c, const uint8_t *p, size_t n) {
  np_ssize k;
  if (c->ts != NULL) {
    if ((k = np_tlsstream_write(c->ts, p, n)) < 0)
      fail(c, hs_err(k), sec_why(c, "tls-write"));
    return k;
  }
  k = np_noise_encrypt(c->nz, p, n);
  if (k < 0)
    fail(c, k == NP_ELIMIT ? NP_ECRYPTO : hs_err(k),
         k == NP_ELIMIT ? "noise-nonce-exhausted" : "noise-encrypt");
  return k;
}

/* Moves output to the byte stream as far as it takes it: raw multistream,
 * then Noise or TLS output, refilled from the muxer's multistream and yamux
 * (in that order, so the echo of /yamux/1.0.0 precedes the first frame). */
static void flush(uconn *c) {
  const uint8_t *o;
  size_t n;
  np_ssize k;
  while (c->bs != NULL && !c->bs_broken && !c->tx_blocked) {
    if (c->hs != NULL && (n = np_mss_output(&c->hs->sec, &o)) > 0) {
      if ((k = send_raw(c, o, n)) < 0)
        return;
      np_mss_drain(&c->hs->sec, (size_t)k);
      continue;
    }
    if (c->nz == NULL && c->ts == NULL)
      break;
    if ((n = sec_output(c, &o)) > 0) {
      if ((k = send_raw(c, o, n)) < 0)
        return;
      sec_drain(c, (size_t)k);
      continue;
    }
    if (!sec_done(c))
      break;
    if (c->hs != NULL && (n = np_mss_output(&c->hs->mux, &o)) > 0) {
      if ((k = encrypt(c, o, n)) <= 0)
        return;
      np_mss_drain(&c->hs->mux, (size_t)k);
      continue;
    }
    if (c->ym == NULL || (n = np_yamux_output(c->ym, &o)) == 0)
      break;
    if ((k = encrypt(c, o, n)) <= 0)
      return;
    np_yamux_output_drain(c->ym, (size_t)k); /* may refill via on_writable */
  }
  if (c->hs != NULL && c->state == ST_UP &&
      np_mss_output(&c->hs->sec, &o) == 0 &&
      np_mss_output(&c->hs->mux, &o) == 0) {
    free(c->hs);
    c->hs = NULL;
  }
}

/* ---- input --------------------------------------------------------------- */

static void send_ping(uconn *c) {
  if (c->ym != NULL && np_yamux_ping(c->ym, now_ms(c)) == 0) {
    c->ping_out = 1;
    c->ping_sent = ev_time();
  }
}

static void arm_keepalive(uconn *c) {
  const np_upgrade_config *cfg = &c->u->cfg;
  double next = INFINITY, now = ev_now(c->u->ev), delay;
  if (cfg->keepalive_ms != UINT64_MAX && !c->ping_out)
    next = c->last_rx + (double)cfg->keepalive_ms / 1e3;
  if (cfg->idle_timeout_ms != UINT64_MAX &&
      c->last_rx + (double)cfg->idle_timeout_ms / 1e3 < next)
    next = c->last_rx + (double)cfg->idle_timeout_ms / 1e3;
  ev_timer_stop(c->u->ev, &c->timer);
  if (isinf(next))
    return;
  delay = next - now;
  ev_timer_set(&c->timer, delay > 0.001 ? delay : 0.001, 0.);
  ev_timer_start(c->u->ev, &c->timer);
}

static void timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  uconn *c = np_container_of(w, uconn, timer);
  const np_upgrade_config *cfg = &c->u->cfg;
  double idle;
  (void)revents;
  if (c->failing)
    return;
  if (c->state != ST_UP) {
    fail(c, NP_ETIMEDOUT, "handshake-timeout");
    return;
  }
  idle = ev_now(ev) - c->last_rx;
  if (cfg->idle_timeout_ms != UINT64_MAX &&
      idle >= (double)cfg->idle_timeout_ms / 1e3) {
    fail(c, NP_ETIMEDOUT, "idle-timeout");
    return;
  }
  if (cfg->keepalive_ms != UINT64_MAX && !c->ping_out &&
      idle >= (double)cfg->keepalive_ms / 1e3 - 0.001) {
    send_ping(c);
    post(c);
  }
  arm_keepalive(c);
}

static int start_yamux(uconn *c) {
  np_upgrade *u = c->u;
  np_yamux_config yc;
  int rv;
  np_yamux_config_default(&yc);
  yc.max_window = u->cfg.max_window;
  yc.max_streams = u->cfg.max_streams;
  /* np_yamux frees a drained output buffer above 256 KiB; staying below
   * keeps one buffer for the connection's life (no heap churn). */
  yc.max_output = 192u * 1024u;
  if ((rv = np_yamux_new(&c->ym, !c->pub.inbound, &yc, &ym_cbs, c)) != 0) {
    fail(c, rv == NP_ENOMEM ? NP_ENOMEM : NP_EPROTO, "yamux-new");
    return -1;
  }
  c->state = ST_UP;
  if (c->pub.laddr_len == 0) {
    np_ssize n =
        c->bs->ops->local_addr(c->bs, c->pub.laddr, sizeof(c->pub.laddr));
    c->pub.laddr_len = n > 0 ? (size_t)n : 0;
  }
  send_ping(c); /* an RTT sample: yamux grows windows only with one */
  arm_keepalive(c);
  c->up_done = 1;
  if (np_log_get_level() >= NP_LOG_DEBUG) {
    char peer[NP_PEERID_STRMAX];
    np_peerid_to_string(&c->pub.peer, peer, sizeof(peer));
    np_debug(u->sub, "conn-up conn=%08x peer=%s dir=%s sec=%s muxer=%s", c->id,
             peer, c->pub.inbound ? "in" : "out", c->ts ? "tls" : "noise",
             c->hs == NULL || np_mss_state(&c->hs->mux) != NP_MSS_DONE
                 ? "inline"
                 : "multistream");
  }
  if (u->cbs.conn_up)
    u->cbs.conn_up(&c->pub, u->ud);
  return c->failing ? -1 : 0;
}

static int lookup_sec(const char *name, size_t len, void *ud) {
  const np_upgrade *u = ud;
  (void)len;
  for (size_t i = 0; i < u->nsec; i++)
    if (strcmp(name, u->sec_protos[i]) == 0)
      return 1;
  return 0;
}

static int lookup_yamux(const char *name, size_t len, void *ud) {
  (void)len, (void)ud;
  return strcmp(name, NP_YAMUX_PROTOCOL) == 0;
}

static int start_noise(uconn *c) {
  np_upgrade *u = c->u;
  hs_state *h = c->hs;
  int rv = np_noise_new(&c->nz, !c->pub.inbound, u->id,
                        h->has_expected ? &h->expected : NULL,
                        u->cfg.no_inline_muxer ? NULL : yamux_protos,
                        u->cfg.no_inline_muxer ? 0 : 1);
  if (rv != 0) {
    fail(c, hs_err(rv), "noise-new");
    return -1;
  }
  c->state = ST_HS;
  return 0;
}

static int start_tls(uconn *c) {
  np_upgrade *u = c->u;
  hs_state *h = c->hs;
  int rv = 0;
  if (u->tls == NULL && (rv = np_tls_new_stream(&u->tls, u->id)) != 0) {
    fail(c, rv == NP_ENOMEM ? NP_ENOMEM : NP_ECRYPTO, "tls-cert");
    return -1;
  }
  rv =
      np_tlsstream_new(&c->ts, u->tls, !c->pub.inbound,
                       h->has_expected && !c->pub.inbound ? &h->expected : NULL,
                       u->cfg.no_inline_muxer ? NULL : yamux_protos,
                       u->cfg.no_inline_muxer ? 0 : 1);
  if (rv != 0) {
    fail(c, hs_err(rv), "tls-new");
    return -1;
  }
  c->state = ST_HS;
  return 0;
}

static int start_sec(uconn *c) {
  const char *p = np_mss_protocol(&c->hs->sec, NULL);
  if (p != NULL && strcmp(p, NP_TLSSTREAM_PROTOCOL) == 0)
    return start_tls(c);
  return start_noise(c);
}

static int tls_pump(uconn *c);

/* The secured stream is up (peer verified): the muxer next. */
static int sec_established(uconn *c) {
  const char *mux;
  if (c->nz != NULL) {
    mux = np_noise_muxer(c->nz);
    np_noise_remote(c->nz, &c->pub.peer);
  } else {
    mux = np_tlsstream_muxer(c->ts);
    np_tlsstream_remote(c->ts, &c->pub.peer);
  }
  if (mux != NULL) {
    if (strcmp(mux, NP_YAMUX_PROTOCOL) != 0) { /* we offer nothing else */
      fail(c, NP_ENOPROTO, "inline-muxer");
      return -1;
    }
    return start_yamux(c);
  }
  if (c->pub.inbound)
    np_mss_init_listener(&c->hs->mux, lookup_yamux, NULL);
  else
    np_mss_init_dialer(&c->hs->mux, yamux_protos, 1, 0);
  c->state = ST_MUX;
  return 0;
}

static size_t out_pending(uconn *c) {
  const uint8_t *o;
  if (c->state == ST_UP)
    return np_yamux_output(c->ym, &o);
  return np_mss_output(&c->hs->mux, &o);
}

/* Plaintext from Noise or TLS into the muxer's multistream or yamux. Returns
 * the bytes taken; fewer than |n| when output must drain first (or failed). */
static size_t plain_input(uconn *c, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (off < n && !c->failing) {
    np_ssize k;
    size_t before;
    if (c->state == ST_MUX) {
      k = np_mss_feed(&c->hs->mux, p + off, n - off);
      if (k < 0) {
        fail(c, hs_err(k), "multistream-muxer");
        break;
      }
      off += (size_t)k;
      if (np_mss_state(&c->hs->mux) == NP_MSS_DONE) {
        if (start_yamux(c) < 0)
          break;
        continue;
      }
    } else {
      k = np_yamux_feed(c->ym, p + off, n - off, now_ms(c));
      if (k < 0) {
        fail(c, k == NP_ENOMEM ? NP_ENOMEM : NP_EPROTO, "yamux");
        break;
      }
      off += (size_t)k;
    }
    if (off == n || k > 0)
      continue;
    /* Nothing taken: the output is over its bound. */
    before = out_pending(c);
    flush(c);
    if (c->failing || out_pending(c) >= before)
      break;
  }
  return off;
}

/* Keeps what the muxer could not take of |pt| until output drains. */
static int stash(uconn *c, const uint8_t *pt, size_t ptlen) {
  if ((c->stash = malloc(ptlen)) == NULL) {
    fail(c, NP_ENOMEM, "out-of-memory");
    return -1;
  }
  memcpy(c->stash, pt, ptlen);
  c->soff = 0;
  c->slen = ptlen;
  c->rx_blocked = 1;
  return 0;
}

/* Decrypted TLS records into the muxer until none is complete or the
 * muxer refuses more. Returns 0, or -1 after a failure. */
static int tls_pump(uconn *c) {
  uint8_t buf[NP_TLSSTREAM_RECORD_MAX];
  while (!c->failing && !c->rx_blocked) {
    np_ssize r = np_tlsstream_read(c->ts, buf, sizeof(buf));
    size_t used;
    if (r < 0) {
      fail(c, r == NP_ECLOSED ? NP_ECLOSED : hs_err(r),
           r == NP_ECLOSED ? "close-notify" : sec_why(c, "tls-record"));
      return -1;
    }
    if (r == 0)
      return 0;
    used = plain_input(c, buf, (size_t)r);
    if (c->failing)
      return -1;
    if (used < (size_t)r && stash(c, buf + used, (size_t)r - used) < 0)
      return -1;
  }
  return c->failing ? -1 : 0;
}

static np_ssize secure_input(uconn *c, const uint8_t *d, size_t n) {
  const uint8_t *pt;
  size_t ptlen, used;
  np_ssize k;
  if (c->ts != NULL) {
    if ((k = np_tlsstream_feed(c->ts, d, n)) < 0) {
      fail(c, hs_err(k), sec_why(c, "tls-record"));
      return -1;
    }
    return tls_pump(c) < 0 ? -1 : k;
  }
  k = np_noise_decrypt_feed(c->nz, d, n, &pt, &ptlen);
  if (k < 0) {
    fail(c, k == NP_ELIMIT ? NP_ECRYPTO : hs_err(k),
         k == NP_ELIMIT    ? "noise-nonce-exhausted"
         : k == NP_ECRYPTO ? "noise-bad-tag"
                           : "noise-frame");
    return -1;
  }
  if (pt == NULL || ptlen == 0)
    return k;
  used = plain_input(c, pt, ptlen);
  if (c->failing)
    return -1;
  /* Noise consumed the frame; keep its plaintext until output drains. */
  if (used < ptlen && stash(c, pt + used, ptlen - used) < 0)
    return -1;
  return k;
}

/* One step of input in the current state: bytes consumed, or -1 after a
 * failure. 0 with rx_blocked set: output must drain first. */
static np_ssize step(uconn *c, const uint8_t *d, size_t n) {
  np_ssize k;
  switch (c->state) {
  case ST_SEC:
    k = np_mss_feed(&c->hs->sec, d, n);
    if (k < 0) {
      fail(c, hs_err(k), "multistream");
      return -1;
    }
    if (np_mss_state(&c->hs->sec) == NP_MSS_DONE && start_sec(c) < 0)
      return -1;
    return k;
  case ST_HS:
    if (c->ts != NULL) {
      k = np_tlsstream_feed(c->ts, d, n);
      if (k < 0) {
        fail(c, hs_err(k), sec_why(c, "tls-handshake"));
        return -1;
      }
      /* Records past the handshake may be buffered in it already. */
      if (np_tlsstream_done(c->ts) &&
          (sec_established(c) < 0 || tls_pump(c) < 0))
        return -1;
      return k;
    }
    k = np_noise_handshake_feed(c->nz, d, n);
    if (k < 0) {
      fail(c, hs_err(k), "noise-handshake");
      return -1;
    }
    if (np_noise_done(c->nz) && sec_established(c) < 0)
      return -1;
    return k;
  default:
    return secure_input(c, d, n);
  }
}

static size_t bs_data(np_bstream *b, const uint8_t *d, size_t len, void *ud) {
  uconn *c = ud;
  size_t off = 0;
  (void)b;
  if (c->failing)
    return len;
  if (c->rx_blocked)
    return 0;
  c->last_rx = ev_now(c->u->ev);
  while (off < len && !c->failing && !c->rx_blocked) {
    np_ssize k = step(c, d + off, len - off);
    if (k < 0)
      break;
    if (k == 0) {
      flush(c); /* the multistream answer waits for room */
      if (c->failing || (k = step(c, d + off, len - off)) < 0)
        break;
      if (k == 0) {
        c->rx_blocked = 1;
        break;
      }
    }
    off += (size_t)k;
  }
  if (!c->failing)
    flush(c);
  if (c->failing)
    return len;
  if (c->rx_blocked)
    c->bs->ops->pause(c->bs, 1); /* the rest stays in the byte stream */
  if (c->credit_wanted && c->state == ST_UP) {
    c->credit_due = 1; /* an ACK may have freed an open */
    post(c);
  }
  return off;
}

/* Continue input held back by a full output. */
static void rx_resume(uconn *c) {
  if (!c->rx_blocked || c->failing)
    return;
  if (c->slen > 0) {
    size_t k = plain_input(c, c->stash + c->soff, c->slen);
    if (c->failing)
      return;
    c->soff += k;
    c->slen -= k;
    if (c->slen > 0)
      return;
    free(c->stash);
    c->stash = NULL;
    c->soff = 0;
  }
  c->rx_blocked = 0;
  /* Whole records may wait inside TLS with nothing more to come. */
  if (c->ts != NULL && c->state >= ST_MUX && (tls_pump(c) < 0 || c->rx_blocked))
    return;
  c->bs->ops->pause(c->bs, 0);
}

static void bs_eof(np_bstream *b, void *ud) {
  (void)b;
  fail(ud, NP_ECLOSED, "eof");
}

static void bs_writable(np_bstream *b, void *ud) {
  uconn *c = ud;
  (void)b;
  c->tx_blocked = 0;
  post(c);
}

static void bs_error(np_bstream *b, int err, void *ud) {
  uconn *c = ud;
  (void)b;
  c->bs_broken = 1;
  fail(c, err,
       err == NP_EUNREACH    ? "connect-refused"
       : err == NP_ETIMEDOUT ? "connect-timeout"
                             : "socket");
}

static const np_bstream_cbs bs_cbs = {bs_data, bs_eof, bs_writable, bs_error};

/* ---- teardown and the work turn ------------------------------------------ */

static void log_down(uconn *c) {
  np_upgrade *u = c->u;
  char addr[NP_CONN_ADDR_MAX * 3] = "-", peer[NP_PEERID_STRMAX] = "-";
  int quiet = c->err == NP_ECANCELED || c->err == NP_ECLOSED;
  if (c->pub.raddr_len > 0 && np_maddr_to_string(c->pub.raddr, c->pub.raddr_len,
                                                 addr, sizeof(addr)) < 0)
    snprintf(addr, sizeof(addr), "?");
  if (!c->up_done) {
    if (c->err == NP_ECANCELED)
      np_debug(u->sub, "handshake-canceled conn=%08x addr=%s", c->id, addr);
    else if (c->err == NP_EPEERID && c->hs != NULL && c->hs->has_expected) {
      /* Noise does not name the peer it refused; the one we wanted: */
      np_peerid_to_string(&c->hs->expected, peer, sizeof(peer));
      np_warn(u->sub,
              "handshake-failed conn=%08x addr=%s dir=%s err=%s expected=%s",
              c->id, addr, c->pub.inbound ? "in" : "out", np_errname(c->err),
              peer);
    } else if (!c->pub.inbound || np_ratelimit_ok(&u->hs_rl, LOG_BURST, u->sub,
                                                  "handshake-failed"))
      np_info(u->sub,
              "handshake-failed conn=%08x addr=%s dir=%s err=%s reason=%s",
              c->id, addr, c->pub.inbound ? "in" : "out", np_errname(c->err),
              c->why ? c->why : "-");
    return;
  }
  np_peerid_to_string(&c->pub.peer, peer, sizeof(peer));
  if (quiet)
    np_debug(u->sub, "conn-close conn=%08x peer=%s dir=%s err=%s reason=%s",
             c->id, peer, c->pub.inbound ? "in" : "out", np_errname(c->err),
             c->why ? c->why : "-");
  else if (np_ratelimit_ok(&u->err_rl, LOG_BURST, u->sub, "conn-error"))
    np_info(u->sub, "conn-error conn=%08x peer=%s dir=%s err=%s reason=%s",
            c->id, peer, c->pub.inbound ? "in" : "out", np_errname(c->err),
            c->why ? c->why : "-");
}

static void teardown(uconn *c) {
  np_upgrade *u = c->u;
  ev_timer_stop(u->ev, &c->timer);
  /* Best effort: GO_AWAY (or a TLS alert) and what is queued, if the
   * stream takes it. */
  if ((c->ym != NULL || c->ts != NULL) && c->bs != NULL && !c->bs_broken) {
    if (c->ym != NULL && np_yamux_error(c->ym) == 0)
      np_yamux_goaway(c->ym, c->err == NP_ECANCELED ? NP_YAMUX_GOAWAY_NORMAL
                                                    : NP_YAMUX_GOAWAY_PROTO);
    flush(c);
  }
  c->teardown = 1; /* yamux callbacks are ignored from here */
  np_loop_cancel(u->loop, &c->work);
  log_down(c);
  /* Every stream's last event, before the connection's. */
  while (!np_list_empty(&c->streams)) {
    ustream *s = np_list_entry(c->streams.next, ustream, link);
    int err = s->closed ? s->close_err : c->err;
    s->closed = 1;
    s->st = NULL;
    if (u->cbs.stream_close)
      u->cbs.stream_close(&s->pub, err, u->ud);
    stream_free(s);
  }
  np_yamux_del(c->ym);
  np_noise_del(c->nz);
  np_tlsstream_del(c->ts);
  free(c->hs);
  free(c->stash);
  if (c->bs != NULL)
    c->bs->ops->close(c->bs);
  c->ym = NULL;
  c->nz = NULL;
  c->ts = NULL;
  c->bs = NULL;
  if ((!c->pub.inbound || c->up_done) && u->cbs.conn_down)
    u->cbs.conn_down(&c->pub, c->err, u->ud);
  np_list_remove(&c->link);
  u->nconns--;
  free(c);
}

/* Due events in order; a stream's close is its last. */
static void deliver(uconn *c) {
  np_upgrade *u = c->u;
  while (!np_list_empty(&c->events)) {
    ustream *s = np_list_entry(c->events.next, ustream, elink);
    unsigned what = s->due;
    np_list_remove(&s->elink);
    s->due = 0;
    if (what & DUE_CLOSE) {
      if (u->cbs.stream_close)
        u->cbs.stream_close(&s->pub, s->close_err, u->ud);
      stream_free(s);
    } else if ((what & DUE_WRITABLE) && s->st != NULL && !c->failing &&
               u->cbs.stream_writable) {
      u->cbs.stream_writable(&s->pub, u->ud);
    }
  }
  if (c->credit_due && !c->failing) {
    c->credit_due = 0;
    c->credit_wanted = 0;
    if (u->cbs.stream_credit)
      u->cbs.stream_credit(&c->pub, u->ud);
  }
}

static void work_cb(void *arg) {
  uconn *c = arg;
  if (!c->failing) {
    flush(c);
    rx_resume(c);
  }
  wake_writers(c);
  deliver(c);
  if (c->failing)
    teardown(c);
}

/* ---- np_conn ops ------------------------------------------------------- */

static int op_stream_open(np_conn *pc, void *ud, np_cstream **ps) {
  uconn *c = (uconn *)pc;
  ustream *s;
  int rv;
  if (c->failing)
    return NP_ECLOSED;
  if (c->state != ST_UP)
    return NP_EINVAL;
  if (c->nout >= c->u->cfg.max_streams) {
    c->credit_wanted = 1;
    return NP_ELIMIT;
  }
  if ((s = stream_new(c, 0)) == NULL)
    return NP_ENOMEM;
  if ((rv = np_yamux_open(c->ym, &s->st, s)) != 0) {
    stream_free(s);
    if (rv == NP_ELIMIT)
      c->credit_wanted = 1;
    return rv == NP_ELIMIT || rv == NP_ENOMEM ? rv : NP_ECLOSED;
  }
  c->nout++;
  s->pub.ud = ud;
  *ps = &s->pub;
  return 0;
}

static void op_close(np_conn *pc, uint64_t app_error) {
  (void)app_error; /* yamux's GO_AWAY has no application codes */
  fail((uconn *)pc, NP_ECANCELED, "closed-here");
}

static int64_t op_rtt_us(const np_conn *pc) {
  return ((const uconn *)pc)->rtt_us;
}

static int op_write(np_cstream *ps, const uint8_t *data, size_t len) {
  ustream *s = (ustream *)ps;
  uconn *c = s->c;
  if (c->failing || s->st == NULL || s->want_fin)
    return NP_ECLOSED;
  if (len == 0)
    return 0;
  if (len > space(s)) {
    if (!s->want_writable) {
      s->want_writable = 1;
      c->nwant++;
    }
    post(c); /* checks whether half is free already */
    return NP_ELIMIT;
  }
  if (s->blen == 0) { /* straight into yamux while its window allows */
    np_ssize k = np_yamux_write(s->st, data, len);
    if (k == NP_ELIMIT)
      k = 0;
    else if (k < 0)
      return NP_ECLOSED; /* the session failed: events follow */
    data += k;
    len -= (size_t)k;
  }
  if (len > 0 && buf_append(s, data, len) != 0) {
    /* Part may be in yamux already: all-or-nothing is lost, so is c. */
    fail(c, NP_ENOMEM, "out-of-memory");
    return NP_ENOMEM;
  }
  post(c);
  return 0;
}

static size_t op_write_space(const np_cstream *ps) {
  const ustream *s = (const ustream *)ps;
  if (s->c->failing || s->st == NULL || s->want_fin)
    return 0;
  return space(s);
}

static int op_shutdown(np_cstream *ps) {
  ustream *s = (ustream *)ps;
  uconn *c = s->c;
  if (c->failing || s->st == NULL || s->want_fin)
    return NP_ECLOSED;
  s->want_fin = 1;
  clear_want(s);
  if (s->blen == 0) {
    s->fin_sent = 1;
    np_yamux_close_write(s->st);
    post(c);
  }
  return 0;
}

static void op_reset(np_cstream *ps) {
  ustream *s = (ustream *)ps;
  uconn *c = s->c;
  np_yamux_stream *st = s->st;
  if (s->closed)
    return;
  s->closed = 1;
  s->close_err = NP_ECANCELED;
  s->st = NULL;
  drop_buf(s);
  clear_want(s);
  /* yamux's on_close queues the event; during teardown, teardown does. */
  if (st != NULL && !c->teardown) {
    np_yamux_reset(st);
    post(c); /* the RST goes out now, not with the next unrelated write */
  }
}

static void op_pause(np_cstream *ps, int paused) {
  ustream *s = (ustream *)ps;
  uconn *c = s->c;
  s->paused = !!paused;
  if (!s->paused && s->held > 0 && s->st != NULL && !c->failing) {
    np_yamux_consumed(s->st, s->held, now_ms(c));
    s->held = 0;
    post(c); /* a window update may be due */
  }
}

static const np_conn_ops conn_ops = {
    op_stream_open, op_close,    op_rtt_us, op_write,
    op_write_space, op_shutdown, op_reset,  op_pause};

/* ---- public API ---------------------------------------------------------- */

void np_upgrade_config_default(np_upgrade_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->handshake_timeout_ms = 10000;
  cfg->keepalive_ms = 15000;
  cfg->idle_timeout_ms = 30000;
  cfg->stream_buffer_max = 1u << 20;
  cfg->conn_buffer_max = 16u << 20;
  cfg->max_streams = 256;
  cfg->max_window = 16u << 20;
  cfg->security[0] = NP_UPGRADE_NOISE;
  cfg->security[1] = NP_UPGRADE_TLS;
}

int np_upgrade_new(np_upgrade **pu, np_loop *loop, const np_identity *id,
                   int kind, const np_upgrade_config *cfg,
                   const np_conn_cbs *cbs, void *ud) {
  np_upgrade *u;
  if (pu == NULL || loop == NULL || id == NULL || cbs == NULL)
    return NP_EINVAL;
  if ((u = calloc(1, sizeof(*u))) == NULL)
    return NP_ENOMEM;
  np_upgrade_config_default(&u->cfg);
  if (cfg != NULL) {
#define TAKE(f) (u->cfg.f = cfg->f ? cfg->f : u->cfg.f)
    TAKE(handshake_timeout_ms);
    TAKE(keepalive_ms);
    TAKE(idle_timeout_ms);
    TAKE(stream_buffer_max);
    TAKE(conn_buffer_max);
    TAKE(max_streams);
    TAKE(max_window);
#undef TAKE
    u->cfg.no_inline_muxer = cfg->no_inline_muxer;
    if (cfg->security[0] != 0)
      memcpy(u->cfg.security, cfg->security, sizeof(u->cfg.security));
  }
  for (size_t i = 0; i < NP_UPGRADE_SEC_MAX && u->cfg.security[i] != 0; i++) {
    const char *p = u->cfg.security[i] == NP_UPGRADE_NOISE ? NP_NOISE_PROTOCOL
                    : u->cfg.security[i] == NP_UPGRADE_TLS
                        ? NP_TLSSTREAM_PROTOCOL
                        : NULL;
    for (size_t j = 0; p != NULL && j < u->nsec; j++)
      if (u->sec_protos[j] == p)
        p = NULL; /* listed twice */
    if (p == NULL) {
      free(u);
      return NP_EINVAL;
    }
    u->sec_protos[u->nsec++] = p;
  }
  if (u->cfg.max_window < NP_YAMUX_INITIAL_WINDOW) {
    free(u);
    return NP_EINVAL;
  }
  u->loop = loop;
  u->ev = np_loop_ev(loop);
  u->id = id;
  u->kind = kind;
  u->sub = kind_sub(kind);
  u->cbs = *cbs;
  u->ud = ud;
  np_list_init(&u->conns);
  *pu = u;
  return 0;
}

void np_upgrade_del(np_upgrade *u) {
  if (u == NULL)
    return;
  u->deleting = 1;
  while (!np_list_empty(&u->conns)) {
    uconn *c = np_list_entry(u->conns.next, uconn, link);
    if (!c->failing) {
      c->failing = 1;
      c->err = NP_ECANCELED;
      c->why = "closed-here";
    }
    teardown(c);
  }
  while (u->spare != NULL) {
    chunk *k = u->spare;
    u->spare = k->next;
    free(k);
  }
  np_tls_del(u->tls);
  free(u);
}

static uconn *conn_new(np_upgrade *u, int inbound, void *ud) {
  uconn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->pub.ops = &conn_ops;
  c->pub.ud = ud;
  c->pub.kind = u->kind;
  c->pub.inbound = !!inbound;
  c->u = u;
  c->id = ++u->next_id;
  c->rtt_us = -1;
  c->last_rx = ev_now(u->ev);
  np_list_init(&c->streams);
  np_list_init(&c->events);
  np_defer_init(&c->work, work_cb, c);
  ev_timer_init(&c->timer, timer_cb, (double)u->cfg.handshake_timeout_ms / 1e3,
                0.);
  np_list_insert_tail(&u->conns, &c->link);
  u->nconns++;
  return c;
}

int np_upgrade_start(np_upgrade *u, np_bstream *bs, int inbound,
                     const np_peerid *expected, const uint8_t *laddr,
                     size_t llen, const uint8_t *raddr, size_t rlen, void *ud,
                     np_conn **pc) {
  uconn *c;
  hs_state *h;
  int rv = 0;
  if (u->deleting)
    rv = NP_ECANCELED;
  else if (llen > NP_CONN_ADDR_MAX || rlen > NP_CONN_ADDR_MAX ||
           (llen > 0 && laddr == NULL) || (rlen > 0 && raddr == NULL))
    rv = NP_EINVAL;
  if (rv != 0) {
    bs->ops->close(bs);
    return rv;
  }
  if ((h = calloc(1, sizeof(*h))) == NULL ||
      (c = conn_new(u, inbound, ud)) == NULL) {
    free(h);
    bs->ops->close(bs);
    return NP_ENOMEM;
  }
  c->hs = h;
  if (expected != NULL) {
    h->has_expected = 1;
    h->expected = *expected;
  }
  if (inbound)
    np_mss_init_listener(&h->sec, lookup_sec, u);
  else
    np_mss_init_dialer(&h->sec, u->sec_protos, u->nsec, 0);
  if (llen > 0)
    memcpy(c->pub.laddr, laddr, llen);
  if (rlen > 0)
    memcpy(c->pub.raddr, raddr, rlen);
  c->pub.laddr_len = llen;
  c->pub.raddr_len = rlen;
  c->bs = bs;
  np_bstream_set_cbs(bs, &bs_cbs, c);
  ev_timer_start(u->ev, &c->timer);
  post(c); /* the first flush: our multistream header */
  *pc = &c->pub;
  return 0;
}

int np_upgrade_dial_failed(np_upgrade *u, int err, const uint8_t *raddr,
                           size_t rlen, void *ud, np_conn **pc) {
  uconn *c;
  if (u->deleting)
    return NP_ECANCELED;
  if ((c = conn_new(u, 0, ud)) == NULL)
    return NP_ENOMEM;
  if (rlen > 0 && rlen <= NP_CONN_ADDR_MAX) {
    memcpy(c->pub.raddr, raddr, rlen);
    c->pub.raddr_len = rlen;
  }
  fail(c, err, "connect");
  *pc = &c->pub;
  return 0;
}

size_t np_upgrade_count(const np_upgrade *u) { return u->nconns; }
