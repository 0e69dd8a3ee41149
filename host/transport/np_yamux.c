#include "np_yamux.h"

#include <stdlib.h>
#include <string.h>

#include "np_list.h"

/* Room kept above max_output for answers to the peer's control frames
 * (ping ACK, RST of a refused SYN, window updates): past it, feeding stops
 * until the caller drains, so a peer cannot grow our output unbounded. */
#define CTRL_SLACK (16u * 1024u)
#define MAX_WINDOW_LIMIT (1u << 30)
/* Free an idle output buffer larger than this instead of keeping it. */
#define KEEP_OUT (256u * 1024u)

/* Byte queue: valid bytes are p[off .. off+len). */
typedef struct bytes {
  uint8_t *p;
  size_t off, len, cap;
} bytes;

struct np_yamux_stream {
  np_yamux *s;
  uint32_t id;
  np_yamux_stream *hnext; /* hash chain */
  np_list link;           /* s->streams while alive, s->dead once ended */
  np_list blocked;        /* on s->blocked after a short write */
  np_list pend;           /* on s->pending: held data/FIN to deliver */
  void *ud;
  int inbound;
  int hello;      /* SYN (ours) or ACK (theirs) still to send */
  int acked;      /* ours: the peer's ACK arrived */
  int local_fin;  /* FIN sent */
  int remote_fin; /* FIN received */
  int fin_pending, fin_delivered;
  int paused;
  int dead, silent, close_err;
  uint32_t send_window;
  /* Receive side: recv_avail + held.len + unconsumed + credit == window. */
  uint32_t window;     /* what we let the peer have in flight */
  uint32_t recv_avail; /* the peer may still send this much */
  size_t unconsumed;   /* delivered to on_data but not consumed */
  size_t credit;       /* consumed, not yet returned to the peer */
  uint64_t epoch;      /* time of the last window update (auto-tuning) */
  bytes held;          /* data that arrived while paused */
};

struct np_yamux {
  np_yamux_config cfg;
  np_yamux_cbs cbs;
  void *ud;
  int is_client, err;
  uint64_t next_id; /* 64-bit so exhaustion is visible */
  uint32_t max_remote_id;
  size_t nstreams, ninbound, nunacked;
  np_yamux_stream **buckets;
  size_t nbuckets;
  np_list streams, blocked, pending, dead;
  bytes out;
  int depth; /* nesting of np_yamux_* calls (callbacks call back in) */
  uint64_t now;
  /* Parser. */
  uint8_t hdr[NP_YAMUX_HEADER_SIZE];
  size_t hdr_len;
  int in_payload;
  uint32_t remaining;   /* payload bytes left in the current frame */
  np_yamux_stream *cur; /* their owner; NULL: skip them */
  uint16_t cur_flags;   /* FIN/RST act after the payload */
  /* Ping, GO_AWAY. */
  int ping_out, rtt_known;
  uint32_t ping_id;
  uint64_t ping_sent, rtt;
  int goaway_sent, goaway_recv;
};

/* ---- helpers ------------------------------------------------------------ */

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

void np_yamux_header_encode(uint8_t out[NP_YAMUX_HEADER_SIZE], uint8_t type,
                            uint16_t flags, uint32_t stream_id,
                            uint32_t length) {
  out[0] = 0;
  out[1] = type;
  out[2] = (uint8_t)(flags >> 8);
  out[3] = (uint8_t)flags;
  put32(out + 4, stream_id);
  put32(out + 8, length);
}

void np_yamux_header_decode(const uint8_t in[NP_YAMUX_HEADER_SIZE],
                            np_yamux_header *h) {
  h->version = in[0];
  h->type = in[1];
  h->flags = (uint16_t)(in[2] << 8 | in[3]);
  h->stream_id = get32(in + 4);
  h->length = get32(in + 8);
}

/* Make room for |need| more bytes at the tail. Compacts only when at least
 * half the buffer is dead space, so partial drains stay linear. */
static int reserve(bytes *b, size_t need) {
  size_t ncap;
  uint8_t *p;
  if (b->cap - b->off - b->len >= need)
    return 0;
  if (b->off > 0 && b->off >= b->len) {
    memmove(b->p, b->p + b->off, b->len);
    b->off = 0;
    if (b->cap - b->len >= need)
      return 0;
  }
  ncap = b->cap ? b->cap : 256;
  while (ncap - b->off - b->len < need)
    ncap *= 2;
  if ((p = realloc(b->p, ncap)) == NULL)
    return NP_ENOMEM;
  b->p = p;
  b->cap = ncap;
  return 0;
}

static void bytes_free(bytes *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

static size_t out_room(const np_yamux *s) {
  return s->out.len < s->cfg.max_output ? s->cfg.max_output - s->out.len : 0;
}

static int emit(np_yamux *s, uint8_t type, uint16_t flags, uint32_t id,
                uint32_t length, const uint8_t *payload, size_t plen) {
  uint8_t *p;
  if (reserve(&s->out, NP_YAMUX_HEADER_SIZE + plen) < 0)
    return NP_ENOMEM;
  p = s->out.p + s->out.off + s->out.len;
  np_yamux_header_encode(p, type, flags, id, length);
  if (plen > 0)
    memcpy(p + NP_YAMUX_HEADER_SIZE, payload, plen);
  s->out.len += NP_YAMUX_HEADER_SIZE + plen;
  return 0;
}

static int is_local_id(const np_yamux *s, uint32_t id) {
  return (id & 1) == (s->is_client ? 1u : 0u);
}

/* ---- stream table ---------------------------------------------------------
 */

static size_t bucket(const np_yamux *s, uint32_t id) {
  return (size_t)((id * 2654435761u) & (uint32_t)(s->nbuckets - 1));
}

static np_yamux_stream *lookup(const np_yamux *s, uint32_t id) {
  np_yamux_stream *st = s->buckets[bucket(s, id)];
  while (st != NULL && st->id != id)
    st = st->hnext;
  return st;
}

static void unhash(np_yamux *s, np_yamux_stream *st) {
  np_yamux_stream **pp = &s->buckets[bucket(s, st->id)];
  while (*pp != NULL && *pp != st)
    pp = &(*pp)->hnext;
  if (*pp == st)
    *pp = st->hnext;
  st->hnext = NULL;
}

static int rehash(np_yamux *s, size_t n) {
  np_yamux_stream **nb = calloc(n, sizeof(*nb)), **old = s->buckets;
  size_t i, oldn = s->nbuckets;
  if (nb == NULL)
    return NP_ENOMEM;
  s->buckets = nb;
  s->nbuckets = n;
  for (i = 0; i < oldn; i++) {
    np_yamux_stream *st = old[i], *next;
    for (; st != NULL; st = next) {
      size_t b = bucket(s, st->id);
      next = st->hnext;
      st->hnext = nb[b];
      nb[b] = st;
    }
  }
  free(old);
  return 0;
}

static np_yamux_stream *stream_new(np_yamux *s, uint32_t id, int inbound) {
  np_yamux_stream *st;
  size_t b;
  if (s->nstreams >= s->nbuckets && rehash(s, s->nbuckets * 2) < 0)
    return NULL;
  if ((st = calloc(1, sizeof(*st))) == NULL)
    return NULL;
  st->s = s;
  st->id = id;
  st->inbound = inbound;
  st->hello = 1;
  st->send_window = NP_YAMUX_INITIAL_WINDOW;
  st->window = st->recv_avail = s->cfg.initial_window;
  st->epoch = s->now;
  np_list_init(&st->blocked);
  np_list_init(&st->pend);
  np_list_insert_tail(&s->streams, &st->link);
  b = bucket(s, id);
  st->hnext = s->buckets[b];
  s->buckets[b] = st;
  s->nstreams++;
  if (inbound)
    s->ninbound++;
  else
    s->nunacked++;
  return st;
}

/* End |st|: it leaves the table at once (later frames for its id are
 * races), and on_close runs when the outermost call unwinds. */
static void stream_kill(np_yamux_stream *st, int err) {
  np_yamux *s = st->s;
  if (st->dead)
    return;
  st->dead = 1;
  st->close_err = err;
  unhash(s, st);
  np_list_remove(&st->link);
  np_list_remove(&st->blocked);
  np_list_remove(&st->pend);
  np_list_insert_tail(&s->dead, &st->link);
  s->nstreams--;
  if (st->inbound)
    s->ninbound--;
  else if (!st->acked)
    s->nunacked--;
  if (s->cur == st)
    s->cur = NULL;
}

static void stream_free(np_yamux_stream *st) {
  bytes_free(&st->held);
  free(st);
}

/* The session is over: GO_AWAY, on_error, every stream ends with |err|. */
static int fail(np_yamux *s, int err) {
  np_list *pos, *tmp;
  if (s->err)
    return s->err;
  s->err = err;
  emit(s, NP_YAMUX_GO_AWAY, 0, 0,
       err == NP_EPROTO ? NP_YAMUX_GOAWAY_PROTO : NP_YAMUX_GOAWAY_INTERNAL,
       NULL, 0);
  s->goaway_sent = 1;
  if (s->cbs.on_error)
    s->cbs.on_error(s, err, s->ud);
  np_list_for_each_safe(pos, tmp, &s->streams) {
    stream_kill(np_list_entry(pos, np_yamux_stream, link), err);
  }
  return err;
}

/* Flags the stream's first frame must carry. A window above the default is
 * granted right away with its own WINDOW_UPDATE, as go does. */
static int hello_flags(np_yamux_stream *st, uint16_t *flags) {
  np_yamux *s = st->s;
  uint16_t f = st->inbound ? NP_YAMUX_ACK : NP_YAMUX_SYN;
  *flags = 0;
  if (!st->hello)
    return 0;
  st->hello = 0;
  if (st->window > NP_YAMUX_INITIAL_WINDOW)
    return emit(s, NP_YAMUX_WINDOW_UPDATE, f, st->id,
                st->window - NP_YAMUX_INITIAL_WINDOW, NULL, 0);
  *flags = f;
  return 0;
}

static int can_write(const np_yamux_stream *st) {
  return !st->dead && !st->local_fin && !st->s->err && st->send_window > 0 &&
         out_room(st->s) > NP_YAMUX_HEADER_SIZE;
}

static void maybe_done(np_yamux_stream *st) {
  if (!st->dead && st->local_fin && st->fin_delivered)
    stream_kill(st, 0);
}

static void deliver_fin(np_yamux_stream *st) {
  np_yamux *s = st->s;
  st->fin_pending = 0;
  st->fin_delivered = 1;
  if (s->cbs.on_fin)
    s->cbs.on_fin(st, s->ud, st->ud);
  maybe_done(st);
}

/* Held data and FIN of an unpaused stream, in order. */
static void flush_stream(np_yamux_stream *st) {
  np_yamux *s = st->s;
  if (st->dead || st->paused)
    return;
  if (st->held.len > 0) {
    /* Detached first: the callback may pause again, and data arriving
     * later must queue behind nothing. */
    bytes b = st->held;
    memset(&st->held, 0, sizeof(st->held));
    st->unconsumed += b.len;
    if (s->cbs.on_data)
      s->cbs.on_data(st, b.p + b.off, b.len, s->ud, st->ud);
    bytes_free(&b);
  }
  if (!st->dead && !st->paused && st->fin_pending)
    deliver_fin(st);
}

/* Work owed to the application once the outermost call unwinds: held
 * data, writable streams, closes. Callbacks here may call back in (at
 * depth 2, which does not recurse into this loop). */
static void run_deferred(np_yamux *s) {
  for (;;) {
    np_list *pos, *tmp;
    np_yamux_stream *st = NULL;
    if (!np_list_empty(&s->pending)) {
      st = np_list_entry(s->pending.next, np_yamux_stream, pend);
      np_list_remove(&st->pend);
      flush_stream(st);
      continue;
    }
    np_list_for_each_safe(pos, tmp, &s->blocked) {
      np_yamux_stream *b = np_list_entry(pos, np_yamux_stream, blocked);
      if (can_write(b)) {
        st = b;
        break;
      }
    }
    if (st != NULL) {
      np_list_remove(&st->blocked);
      if (s->cbs.on_writable)
        s->cbs.on_writable(st, s->ud, st->ud);
      continue;
    }
    if (!np_list_empty(&s->dead)) {
      st = np_list_entry(s->dead.next, np_yamux_stream, link);
      np_list_remove(&st->link);
      if (!st->silent && s->cbs.on_close)
        s->cbs.on_close(st, st->close_err, s->ud, st->ud);
      stream_free(st);
      continue;
    }
    break;
  }
}

static void enter(np_yamux *s) { s->depth++; }

static void leave(np_yamux *s) {
  if (s->depth == 1)
    run_deferred(s);
  s->depth--;
}

/* ---- session ------------------------------------------------------------ */

void np_yamux_config_default(np_yamux_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->initial_window = NP_YAMUX_INITIAL_WINDOW;
  cfg->max_window = 16u * 1024u * 1024u;
  cfg->max_streams = 256;
  cfg->max_unacked = 256;
  cfg->max_output = 1024u * 1024u;
}

int np_yamux_new(np_yamux **ps, int is_client, const np_yamux_config *cfg,
                 const np_yamux_cbs *cbs, void *ud) {
  np_yamux *s;
  np_yamux_config def;
  *ps = NULL;
  if (cfg == NULL) {
    np_yamux_config_default(&def);
    cfg = &def;
  }
  if (cfg->initial_window < NP_YAMUX_INITIAL_WINDOW ||
      cfg->max_window < cfg->initial_window ||
      cfg->max_window > MAX_WINDOW_LIMIT || cfg->max_output < 1024)
    return NP_EINVAL;
  if ((s = calloc(1, sizeof(*s))) == NULL)
    return NP_ENOMEM;
  s->nbuckets = 16;
  if ((s->buckets = calloc(s->nbuckets, sizeof(*s->buckets))) == NULL) {
    free(s);
    return NP_ENOMEM;
  }
  s->cfg = *cfg;
  if (cbs != NULL)
    s->cbs = *cbs;
  s->ud = ud;
  s->is_client = !!is_client;
  s->next_id = is_client ? 1 : 2;
  np_list_init(&s->streams);
  np_list_init(&s->blocked);
  np_list_init(&s->pending);
  np_list_init(&s->dead);
  *ps = s;
  return 0;
}

void np_yamux_del(np_yamux *s) {
  np_list *pos, *tmp;
  if (s == NULL)
    return;
  enter(s);
  np_list_for_each_safe(pos, tmp, &s->streams) {
    stream_kill(np_list_entry(pos, np_yamux_stream, link), NP_ECANCELED);
  }
  leave(s);
  /* A callback above may have opened a stream: end it without one. */
  np_list_for_each_safe(pos, tmp, &s->streams) {
    stream_free(np_list_entry(pos, np_yamux_stream, link));
  }
  np_list_for_each_safe(pos, tmp, &s->dead) {
    stream_free(np_list_entry(pos, np_yamux_stream, link));
  }
  free(s->buckets);
  bytes_free(&s->out);
  free(s);
}

int np_yamux_error(const np_yamux *s) { return s->err; }
uint64_t np_yamux_rtt(const np_yamux *s) { return s->rtt; }
size_t np_yamux_num_streams(const np_yamux *s) { return s->nstreams; }
size_t np_yamux_num_inbound(const np_yamux *s) { return s->ninbound; }

size_t np_yamux_output(const np_yamux *s, const uint8_t **out) {
  *out = s->out.len ? s->out.p + s->out.off : NULL;
  return s->out.len;
}

void np_yamux_output_drain(np_yamux *s, size_t n) {
  if (n > s->out.len)
    n = s->out.len;
  s->out.off += n;
  s->out.len -= n;
  if (s->out.len == 0) {
    s->out.off = 0;
    if (s->out.cap > KEEP_OUT)
      bytes_free(&s->out);
  }
  enter(s);
  leave(s);
}

int np_yamux_ping(np_yamux *s, uint64_t now_ms) {
  if (s->err)
    return s->err;
  if (s->ping_out)
    return NP_ELIMIT;
  if (emit(s, NP_YAMUX_PING, NP_YAMUX_SYN, 0, s->ping_id + 1, NULL, 0) < 0) {
    enter(s);
    fail(s, NP_ENOMEM);
    leave(s);
    return NP_ENOMEM;
  }
  s->ping_id++;
  s->ping_out = 1;
  s->ping_sent = now_ms;
  return 0;
}

int np_yamux_goaway(np_yamux *s, uint32_t code) {
  if (s->err)
    return s->err;
  if (s->goaway_sent)
    return NP_EEXIST;
  if (emit(s, NP_YAMUX_GO_AWAY, 0, 0, code, NULL, 0) < 0) {
    enter(s);
    fail(s, NP_ENOMEM);
    leave(s);
    return NP_ENOMEM;
  }
  s->goaway_sent = 1;
  return 0;
}

/* ---- receiving ------------------------------------------------------------
 */

/* Give |st|'s consumed bytes back to the peer, growing the window when the
 * last update was less than 2 RTT ago (the window, not the reader, is what
 * limits throughput then). */
static int send_update(np_yamux_stream *st, uint64_t now) {
  np_yamux *s = st->s;
  uint32_t grow = 0, delta;
  uint16_t flags;
  uint64_t rtt2 = 2 * (s->rtt ? s->rtt : 1);
  if (s->rtt_known && st->window < s->cfg.max_window && now >= st->epoch &&
      now - st->epoch < rtt2) {
    uint64_t w = (uint64_t)st->window * 2;
    if (w > s->cfg.max_window)
      w = s->cfg.max_window;
    grow = (uint32_t)w - st->window;
    st->window = (uint32_t)w;
  }
  st->epoch = now;
  delta = (uint32_t)st->credit + grow;
  st->recv_avail += delta;
  st->credit = 0;
  if (hello_flags(st, &flags) < 0 ||
      emit(s, NP_YAMUX_WINDOW_UPDATE, flags, st->id, delta, NULL, 0) < 0)
    return fail(s, NP_ENOMEM);
  return 0;
}

static void deliver(np_yamux_stream *st, const uint8_t *data, size_t n) {
  np_yamux *s = st->s;
  if (st->paused || st->held.len > 0) {
    /* Bounded by the window, enforced at the header. Held bytes are not
     * the application's to consume until delivered. */
    if (reserve(&st->held, n) < 0) {
      fail(s, NP_ENOMEM);
      return;
    }
    memcpy(st->held.p + st->held.off + st->held.len, data, n);
    st->held.len += n;
    return;
  }
  st->unconsumed += n;
  if (s->cbs.on_data)
    s->cbs.on_data(st, data, n, s->ud, st->ud);
}

static void end_flags(np_yamux_stream *st, uint16_t flags) {
  if (st->dead)
    return;
  if (flags & NP_YAMUX_RST) {
    stream_kill(st, NP_ECLOSED);
    return;
  }
  if ((flags & NP_YAMUX_FIN) && !st->remote_fin) {
    st->remote_fin = 1;
    if (st->paused || st->held.len > 0)
      st->fin_pending = 1;
    else
      deliver_fin(st);
  }
}

static void skip_payload(np_yamux *s, uint32_t len) {
  s->cur = NULL;
  s->remaining = len;
  s->in_payload = len > 0;
}

/* A SYN from the peer. Returns the accepted stream or NULL (refused with
 * RST, or the session failed). */
static np_yamux_stream *accept_stream(np_yamux *s, uint32_t id) {
  np_yamux_stream *st;
  int rv;
  if (s->goaway_sent || s->ninbound >= s->cfg.max_streams ||
      s->cbs.on_stream_open == NULL)
    goto refuse;
  if ((st = stream_new(s, id, 1)) == NULL) {
    fail(s, NP_ENOMEM);
    return NULL;
  }
  rv = s->cbs.on_stream_open(st, s->ud);
  if (st->dead || s->err)
    return NULL;
  if (rv != 0) {
    st->silent = 1;
    stream_kill(st, NP_ECANCELED);
    goto refuse;
  }
  /* ACK now unless a write in the callback already carried it. */
  if (st->hello) {
    uint16_t flags;
    /* flags == 0: hello_flags already sent the ACK with extra window. */
    if (hello_flags(st, &flags) < 0 ||
        (flags && emit(s, NP_YAMUX_WINDOW_UPDATE, flags, id, 0, NULL, 0) < 0)) {
      fail(s, NP_ENOMEM);
      return NULL;
    }
  }
  return st;
refuse:
  if (emit(s, NP_YAMUX_WINDOW_UPDATE, NP_YAMUX_RST, id, 0, NULL, 0) < 0)
    fail(s, NP_ENOMEM);
  return NULL;
}

static int stream_frame(np_yamux *s, const np_yamux_header *h) {
  uint32_t id = h->stream_id;
  int is_data = h->type == NP_YAMUX_DATA;
  uint32_t plen = is_data ? h->length : 0;
  np_yamux_stream *st;
  if (id == 0)
    return fail(s, NP_EPROTO);
  /* No window we ever grant is larger: refuse before reading a byte. */
  if (plen > s->cfg.max_window)
    return fail(s, NP_EPROTO);
  st = lookup(s, id);
  if (h->flags & NP_YAMUX_SYN) {
    if (st != NULL || is_local_id(s, id))
      return fail(s, NP_EPROTO); /* duplicate, or "both are clients" */
    if (plen > s->cfg.initial_window)
      return fail(s, NP_EPROTO); /* over the new stream's window */
    if (id > s->max_remote_id)
      s->max_remote_id = id;
    if ((h->flags & NP_YAMUX_RST) || (st = accept_stream(s, id)) == NULL) {
      skip_payload(s, plen);
      return s->err;
    }
  } else if (st == NULL) {
    /* Ids never opened are an error; older ones belong to streams that
     * ended here while the peer was still sending (RST/FIN races). */
    if (is_local_id(s, id) ? id >= s->next_id : id > s->max_remote_id)
      return fail(s, NP_EPROTO);
    skip_payload(s, plen);
    return 0;
  }
  if ((h->flags & NP_YAMUX_ACK) && !st->inbound && !st->acked) {
    st->acked = 1;
    s->nunacked--;
  }
  if (!is_data && (h->flags & NP_YAMUX_RST)) {
    end_flags(st, h->flags); /* go puts an error code in the length */
    return 0;
  }
  if (!is_data) {
    uint64_t w = (uint64_t)st->send_window + h->length;
    if (w > UINT32_MAX)
      return fail(s, NP_EPROTO);
    st->send_window = (uint32_t)w;
    end_flags(st, h->flags);
    return 0;
  }
  if (plen > 0 && st->remote_fin) {
    /* Data after FIN: this stream is broken, the session need not be. */
    if (emit(s, NP_YAMUX_WINDOW_UPDATE, NP_YAMUX_RST, id, 0, NULL, 0) < 0)
      return fail(s, NP_ENOMEM);
    stream_kill(st, NP_EPROTO);
    skip_payload(s, plen);
    return 0;
  }
  if (plen > st->recv_avail)
    return fail(s, NP_EPROTO);
  st->recv_avail -= plen;
  if (plen == 0) {
    end_flags(st, h->flags);
    return 0;
  }
  s->cur = st;
  s->cur_flags = h->flags;
  s->remaining = plen;
  s->in_payload = 1;
  return 0;
}

static int handle_header(np_yamux *s) {
  np_yamux_header h;
  np_yamux_header_decode(s->hdr, &h);
  if (h.version != 0)
    return fail(s, NP_EPROTO);
  switch (h.type) {
  case NP_YAMUX_DATA:
  case NP_YAMUX_WINDOW_UPDATE:
    return stream_frame(s, &h);
  case NP_YAMUX_PING:
    if (h.stream_id != 0)
      return fail(s, NP_EPROTO);
    if (h.flags & NP_YAMUX_SYN) {
      if (emit(s, NP_YAMUX_PING, NP_YAMUX_ACK, 0, h.length, NULL, 0) < 0)
        return fail(s, NP_ENOMEM);
    } else if ((h.flags & NP_YAMUX_ACK) && s->ping_out &&
               h.length == s->ping_id) {
      /* Stray or stale ACKs are ignored, as go does. */
      s->ping_out = 0;
      s->rtt = s->now >= s->ping_sent ? s->now - s->ping_sent : 0;
      s->rtt_known = 1;
      if (s->cbs.on_ping)
        s->cbs.on_ping(s, s->rtt, s->ud);
    }
    return 0;
  case NP_YAMUX_GO_AWAY:
    if (h.stream_id != 0)
      return fail(s, NP_EPROTO);
    if (!s->goaway_recv) {
      s->goaway_recv = 1;
      if (s->cbs.on_goaway)
        s->cbs.on_goaway(s, h.length, s->ud);
    }
    return 0;
  default:
    return fail(s, NP_EPROTO);
  }
}

np_ssize np_yamux_feed(np_yamux *s, const uint8_t *in, size_t len,
                       uint64_t now_ms) {
  size_t off = 0;
  if (s->err)
    return s->err;
  enter(s);
  s->now = now_ms;
  while (off < len && !s->err) {
    size_t take;
    if (s->in_payload) {
      take = len - off < s->remaining ? len - off : s->remaining;
      if (s->cur != NULL)
        deliver(s->cur, in + off, take);
      off += take;
      s->remaining -= (uint32_t)take;
      if (s->remaining == 0) {
        s->in_payload = 0;
        if (s->cur != NULL)
          end_flags(s->cur, s->cur_flags);
        s->cur = NULL;
      }
      continue;
    }
    if (s->hdr_len == 0) {
      /* Between frames: closes and wake-ups happen now, so events come in
       * the same order however the input is split. */
      if (s->depth == 1)
        run_deferred(s);
      /* Stop while the caller does not drain. */
      if (s->out.len >= s->cfg.max_output + CTRL_SLACK)
        break;
    }
    take = NP_YAMUX_HEADER_SIZE - s->hdr_len;
    if (take > len - off)
      take = len - off;
    memcpy(s->hdr + s->hdr_len, in + off, take);
    s->hdr_len += take;
    off += take;
    if (s->hdr_len == NP_YAMUX_HEADER_SIZE) {
      s->hdr_len = 0;
      handle_header(s);
    }
  }
  leave(s);
  return s->err ? s->err : (np_ssize)off;
}

/* ---- streams ---------------------------------------------------------- */

int np_yamux_open(np_yamux *s, np_yamux_stream **pst, void *stream_ud) {
  np_yamux_stream *st;
  *pst = NULL;
  if (s->err)
    return s->err;
  if (s->goaway_recv)
    return NP_ECLOSED;
  if (s->nunacked >= s->cfg.max_unacked || s->next_id > UINT32_MAX)
    return NP_ELIMIT;
  if ((st = stream_new(s, (uint32_t)s->next_id, 0)) == NULL)
    return NP_ENOMEM;
  s->next_id += 2;
  st->ud = stream_ud;
  *pst = st;
  return 0;
}

np_ssize np_yamux_write(np_yamux_stream *st, const uint8_t *data, size_t len) {
  np_yamux *s = st->s;
  size_t done = 0;
  if (s->err)
    return s->err;
  if (st->dead || st->local_fin)
    return NP_ECLOSED;
  if (len == 0)
    return 0;
  enter(s);
  while (done < len) {
    size_t room = out_room(s), chunk = len - done;
    uint16_t flags;
    if (room <= NP_YAMUX_HEADER_SIZE)
      break;
    if (chunk > st->send_window)
      chunk = st->send_window;
    if (chunk > NP_YAMUX_MAX_FRAME)
      chunk = NP_YAMUX_MAX_FRAME;
    if (chunk > room - NP_YAMUX_HEADER_SIZE)
      chunk = room - NP_YAMUX_HEADER_SIZE;
    if (chunk == 0)
      break;
    if (hello_flags(st, &flags) < 0 ||
        emit(s, NP_YAMUX_DATA, flags, st->id, (uint32_t)chunk, data + done,
             chunk) < 0) {
      fail(s, NP_ENOMEM);
      break;
    }
    st->send_window -= (uint32_t)chunk;
    done += chunk;
  }
  if (done < len && !s->err && np_list_empty(&st->blocked))
    np_list_insert_tail(&s->blocked, &st->blocked);
  leave(s);
  if (s->err)
    return s->err;
  return done > 0 ? (np_ssize)done : NP_ELIMIT;
}

int np_yamux_close_write(np_yamux_stream *st) {
  np_yamux *s = st->s;
  uint16_t flags;
  if (s->err)
    return s->err;
  if (st->dead || st->local_fin)
    return NP_ECLOSED;
  enter(s);
  if (hello_flags(st, &flags) < 0 ||
      emit(s, NP_YAMUX_WINDOW_UPDATE, flags | NP_YAMUX_FIN, st->id, 0, NULL,
           0) < 0) {
    fail(s, NP_ENOMEM);
  } else {
    st->local_fin = 1;
    np_list_remove(&st->blocked);
    maybe_done(st);
  }
  leave(s);
  return s->err;
}

void np_yamux_reset(np_yamux_stream *st) {
  np_yamux *s = st->s;
  if (st->dead)
    return;
  enter(s);
  /* A stream of ours the peer never heard of needs no RST. */
  if (!s->err && !(st->hello && !st->inbound) &&
      emit(s, NP_YAMUX_WINDOW_UPDATE, NP_YAMUX_RST, st->id, 0, NULL, 0) < 0)
    fail(s, NP_ENOMEM);
  stream_kill(st, NP_ECANCELED);
  leave(s);
}

int np_yamux_consumed(np_yamux_stream *st, size_t n, uint64_t now_ms) {
  np_yamux *s = st->s;
  if (s->err)
    return s->err;
  if (n > st->unconsumed)
    return NP_EINVAL;
  if (n == 0 || st->dead)
    return 0;
  st->unconsumed -= n;
  st->credit += n;
  /* Batches of half a window, as go; a finished peer needs no credit. */
  if (!st->remote_fin && st->credit >= st->window / 2) {
    enter(s);
    send_update(st, now_ms);
    leave(s);
  }
  return s->err;
}

void np_yamux_pause(np_yamux_stream *st, int paused) {
  np_yamux *s = st->s;
  if (st->dead)
    return;
  st->paused = !!paused;
  if (!st->paused && (st->held.len > 0 || st->fin_pending) &&
      np_list_empty(&st->pend))
    np_list_insert_tail(&s->pending, &st->pend);
  enter(s);
  leave(s);
}

uint32_t np_yamux_stream_id(const np_yamux_stream *st) { return st->id; }
void *np_yamux_stream_ud(const np_yamux_stream *st) { return st->ud; }
void np_yamux_stream_set_ud(np_yamux_stream *st, void *stream_ud) {
  st->ud = stream_ud;
}
uint32_t np_yamux_stream_recv_window(const np_yamux_stream *st) {
  return st->window;
}
uint32_t np_yamux_stream_send_window(const np_yamux_stream *st) {
  return st->send_window;
}
size_t np_yamux_stream_unconsumed(const np_yamux_stream *st) {
  return st->unconsumed + st->held.len;
}
