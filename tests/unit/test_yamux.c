/* Yamux: hand-built header bytes for each frame type, then two sessions
 * back to back in memory (open/accept, data both ways, FIN, RST, GO_AWAY,
 * ping, limits, a 64 MiB slow reader, auto-tuning, pause), malformed
 * frames, and byte-at-a-time feeding. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_err.h"
#include "np_yamux.h"
#include "tap.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* ---- an application on top of a session -------------------------------- */

typedef struct app_stream {
  np_yamux_stream *st; /* NULL once closed */
  uint32_t id;
  int fin, closed, close_err, writable;
  size_t rx_total;       /* bytes delivered */
  uint64_t hash;         /* FNV-1a over them */
  size_t max_unconsumed; /* high-water of np_yamux_stream_unconsumed */
  uint8_t rx[4096];      /* first bytes, for small-message checks */
  size_t data_calls;
} app_stream;

typedef struct peer {
  np_yamux *s;
  uint64_t now;
  int refuse;         /* on_stream_open answer */
  int consume;        /* consume in on_data */
  uint64_t tick;      /* advance now by this per on_data */
  app_stream *in[64]; /* streams the remote opened, in order */
  size_t nin;
  app_stream *all[256]; /* every app_stream, freed at the end */
  size_t nall;
  int pings, goaways, errors, error;
  uint64_t rtt;
  uint32_t goaway_code;
  char log[16384]; /* events, to compare runs */
  size_t log_len;
} peer;

static void logf_(peer *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(peer *p, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(p->log + p->log_len, sizeof(p->log) - p->log_len, fmt, ap);
  va_end(ap);
  if (n > 0 && (size_t)n < sizeof(p->log) - p->log_len)
    p->log_len += (size_t)n;
}

static app_stream *app_new(peer *p) {
  app_stream *a = calloc(1, sizeof(*a));
  a->hash = 1469598103934665603ull;
  if (p->nall < NP_ARRAY_LEN(p->all))
    p->all[p->nall++] = a;
  return a;
}

static int cb_open(np_yamux_stream *st, void *ud) {
  peer *p = ud;
  app_stream *a;
  if (p->refuse)
    return 1;
  a = app_new(p);
  a->st = st;
  a->id = np_yamux_stream_id(st);
  np_yamux_stream_set_ud(st, a);
  if (p->nin < NP_ARRAY_LEN(p->in))
    p->in[p->nin++] = a;
  logf_(p, "open %u;", a->id);
  return 0;
}

static void cb_data(np_yamux_stream *st, const uint8_t *data, size_t len,
                    void *ud, void *sud) {
  peer *p = ud;
  app_stream *a = sud;
  size_t i, u;
  (void)st;
  a->data_calls++;
  for (i = 0; i < len; i++) {
    if (a->rx_total + i < sizeof(a->rx))
      a->rx[a->rx_total + i] = data[i];
    a->hash = (a->hash ^ data[i]) * 1099511628211ull;
  }
  a->rx_total += len;
  u = np_yamux_stream_unconsumed(st);
  if (u > a->max_unconsumed)
    a->max_unconsumed = u;
  p->now += p->tick;
  if (p->consume)
    np_yamux_consumed(st, len, p->now);
}

static void cb_fin(np_yamux_stream *st, void *ud, void *sud) {
  app_stream *a = sud;
  (void)st;
  a->fin++;
  logf_(ud, "fin %u total=%d;", a->id, (int)a->rx_total);
}

static void cb_writable(np_yamux_stream *st, void *ud, void *sud) {
  app_stream *a = sud;
  (void)st, (void)ud;
  if (a)
    a->writable++;
}

static void cb_close(np_yamux_stream *st, int err, void *ud, void *sud) {
  app_stream *a = sud;
  (void)st;
  if (a == NULL)
    return;
  a->closed++;
  a->close_err = err;
  a->st = NULL;
  logf_(ud, "close %u %d;", a->id, err);
}

static void cb_ping(np_yamux *s, uint64_t rtt, void *ud) {
  peer *p = ud;
  (void)s;
  p->pings++;
  p->rtt = rtt;
  logf_(p, "ping %u;", (unsigned)rtt);
}

static void cb_goaway(np_yamux *s, uint32_t code, void *ud) {
  peer *p = ud;
  (void)s;
  p->goaways++;
  p->goaway_code = code;
  logf_(p, "goaway %u;", code);
}

static void cb_error(np_yamux *s, int err, void *ud) {
  peer *p = ud;
  (void)s;
  p->errors++;
  p->error = err;
  logf_(p, "error %d;", err);
}

static const np_yamux_cbs cbs = {cb_open,  cb_data, cb_fin,    cb_writable,
                                 cb_close, cb_ping, cb_goaway, cb_error};

static void peer_init(peer *p, int client, const np_yamux_config *cfg) {
  memset(p, 0, sizeof(*p));
  p->consume = 1;
  if (np_yamux_new(&p->s, client, cfg, &cbs, p) != 0)
    abort();
}

static void peer_free(peer *p) {
  size_t i;
  np_yamux_del(p->s);
  for (i = 0; i < p->nall; i++)
    free(p->all[i]);
}

static app_stream *open_stream(peer *p) {
  app_stream *a = app_new(p);
  if (np_yamux_open(p->s, &a->st, a) != 0)
    return NULL;
  a->id = np_yamux_stream_id(a->st);
  return a;
}

/* Move |from|'s output into |to| (|step| bytes per feed, 0: all at once).
 * Returns the bytes moved. */
static size_t xfer(peer *from, peer *to, size_t step) {
  const uint8_t *p;
  size_t n = np_yamux_output(from->s, &p), off = 0;
  uint8_t *copy;
  if (n == 0)
    return 0;
  /* A copy: |to|'s callbacks never touch |from|, but be strict anyway. */
  copy = malloc(n);
  memcpy(copy, p, n);
  while (off < n) {
    size_t k = step && n - off > step ? step : n - off;
    np_ssize r = np_yamux_feed(to->s, copy + off, k, to->now);
    if (r < 0) {
      off = n; /* dead receiver: drop the rest */
      break;
    }
    off += (size_t)r;
    if ((size_t)r < k)
      break; /* |to| wants its own output drained first */
  }
  free(copy);
  np_yamux_output_drain(from->s, off);
  return off;
}

static void pump_step(peer *a, peer *b, size_t step) {
  int i;
  for (i = 0; i < 1000000; i++)
    if (xfer(a, b, step) + xfer(b, a, step) == 0)
      return;
}

static void pump(peer *a, peer *b) { pump_step(a, b, 0); }

/* ---- known answers ------------------------------------------------------ */

static void test_header_bytes(void) {
  static const struct {
    uint8_t type;
    uint16_t flags;
    uint32_t id, len;
    const char *bytes;
    const char *what;
  } v[] = {
      {NP_YAMUX_DATA, NP_YAMUX_SYN, 1, 5,
       "\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x05", "DATA SYN id 1"},
      {NP_YAMUX_DATA, NP_YAMUX_FIN, 0x01020304, 0x10000,
       "\x00\x00\x00\x04\x01\x02\x03\x04\x00\x01\x00\x00", "DATA FIN"},
      {NP_YAMUX_WINDOW_UPDATE, NP_YAMUX_ACK, 2, 0x40000,
       "\x00\x01\x00\x02\x00\x00\x00\x02\x00\x04\x00\x00", "WINDOW_UPDATE ACK"},
      {NP_YAMUX_WINDOW_UPDATE, NP_YAMUX_RST, 3, 0,
       "\x00\x01\x00\x08\x00\x00\x00\x03\x00\x00\x00\x00", "WINDOW_UPDATE RST"},
      {NP_YAMUX_PING, NP_YAMUX_SYN, 0, 0xdeadbeef,
       "\x00\x02\x00\x01\x00\x00\x00\x00\xde\xad\xbe\xef", "PING SYN"},
      {NP_YAMUX_PING, NP_YAMUX_ACK, 0, 7,
       "\x00\x02\x00\x02\x00\x00\x00\x00\x00\x00\x00\x07", "PING ACK"},
      {NP_YAMUX_GO_AWAY, 0, 0, NP_YAMUX_GOAWAY_PROTO,
       "\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", "GO_AWAY proto"},
  };
  size_t i;
  for (i = 0; i < NP_ARRAY_LEN(v); i++) {
    uint8_t b[12];
    np_yamux_header h;
    np_yamux_header_encode(b, v[i].type, v[i].flags, v[i].id, v[i].len);
    is_mem(b, 12, v[i].bytes, 12, "header_encode %s", v[i].what);
    np_yamux_header_decode((const uint8_t *)v[i].bytes, &h);
    ok(h.version == 0 && h.type == v[i].type && h.flags == v[i].flags &&
           h.stream_id == v[i].id && h.length == v[i].len,
       "header_decode %s", v[i].what);
  }
}

/* Exactly what a session puts on the wire for each operation. */
static void test_session_bytes(void) {
  peer c, s;
  app_stream *a;
  const uint8_t *o;
  size_t n;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);

  a = open_stream(&c);
  is_int(np_yamux_output(c.s, &o), 0, "open sends nothing (lazy SYN)");
  is_int(np_yamux_write(a->st, (const uint8_t *)"hi", 2), 2, "write 2");
  n = np_yamux_output(c.s, &o);
  is_mem(o, n, "\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x02hi", 14,
         "first write: DATA|SYN on stream 1");
  xfer(&c, &s, 0);
  n = np_yamux_output(s.s, &o);
  is_mem(o, n, "\x00\x01\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00", 12,
         "accept: WINDOW_UPDATE|ACK delta 0");
  np_yamux_output_drain(s.s, n);

  is_int(np_yamux_close_write(a->st), 0, "close_write");
  n = np_yamux_output(c.s, &o);
  is_mem(o, n, "\x00\x01\x00\x04\x00\x00\x00\x01\x00\x00\x00\x00", 12,
         "FIN: WINDOW_UPDATE|FIN");
  np_yamux_output_drain(c.s, n);

  a = open_stream(&c);
  is_int(a->id, 3, "next client stream is 3");
  is_int(np_yamux_close_write(a->st), 0, "close_write before any data");
  n = np_yamux_output(c.s, &o);
  is_mem(o, n, "\x00\x01\x00\x05\x00\x00\x00\x03\x00\x00\x00\x00", 12,
         "SYN travels with the FIN");
  np_yamux_output_drain(c.s, n);

  a = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"x", 1);
  np_yamux_output_drain(c.s, 13);
  np_yamux_reset(a->st);
  n = np_yamux_output(c.s, &o);
  is_mem(o, n, "\x00\x01\x00\x08\x00\x00\x00\x05\x00\x00\x00\x00", 12,
         "reset: WINDOW_UPDATE|RST");
  np_yamux_output_drain(c.s, n);
  ok(a->closed == 1 && a->close_err == NP_ECANCELED,
     "local reset gives on_close(NP_ECANCELED)");

  a = open_stream(&c);
  np_yamux_reset(a->st);
  is_int(np_yamux_output(c.s, &o), 0, "reset before SYN sends nothing");

  is_int(np_yamux_ping(c.s, 0), 0, "ping");
  n = np_yamux_output(c.s, &o);
  is_mem(o, n, "\x00\x02\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01", 12,
         "PING|SYN opaque 1");
  np_yamux_output_drain(c.s, n);

  np_yamux_feed(c.s,
                (const uint8_t *)"\x00\x02\x00\x01\x00\x00\x00\x00\xde\xad\xbe"
                                 "\xef",
                12, 0);
  n = np_yamux_output(c.s, &o);
  is_mem(o, n, "\x00\x02\x00\x02\x00\x00\x00\x00\xde\xad\xbe\xef", 12,
         "peer's ping echoed with ACK, same opaque");
  np_yamux_output_drain(c.s, n);

  is_int(np_yamux_goaway(c.s, NP_YAMUX_GOAWAY_NORMAL), 0, "goaway");
  n = np_yamux_output(c.s, &o);
  is_mem(o, n, "\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 12,
         "GO_AWAY normal");
  is_int(np_yamux_goaway(c.s, 0), NP_EEXIST, "second goaway refused");
  peer_free(&c);
  peer_free(&s);

  /* A receive window above 256 KiB is granted with the SYN. */
  {
    np_yamux_config cfg;
    np_yamux_config_default(&cfg);
    cfg.initial_window = 512 * KIB;
    peer_init(&c, 1, &cfg);
    peer_init(&s, 0, NULL);
    a = open_stream(&c);
    np_yamux_write(a->st, (const uint8_t *)"z", 1);
    n = np_yamux_output(c.s, &o);
    is_mem(o, n,
           "\x00\x01\x00\x01\x00\x00\x00\x01\x00\x04\x00\x00"
           "\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01z",
           25, "bigger window: WINDOW_UPDATE|SYN +256 KiB, then DATA");
    pump(&c, &s);
    is_int(np_yamux_stream_send_window(s.in[0]->st), 512 * KIB,
           "peer may send 512 KiB");
    peer_free(&c);
    peer_free(&s);
  }
}

/* ---- behaviour between two sessions ------------------------------------- */

static void test_open_accept_data(void) {
  peer c, s;
  app_stream *a, *b, *x;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  a = open_stream(&c);
  b = open_stream(&c);
  ok(a && b && a->id == 1 && b->id == 3, "client ids are odd: 1, 3");
  np_yamux_write(b->st, (const uint8_t *)"second", 6);
  np_yamux_write(a->st, (const uint8_t *)"hello", 5);
  pump(&c, &s);
  is_int(s.nin, 2, "server accepted two streams");
  ok(s.nin == 2 && s.in[0]->id == 3 && s.in[1]->id == 1,
     "SYNs arrive in first-write order (lazy SYN)");
  ok(s.nin == 2 && s.in[1]->rx_total == 5 && !memcmp(s.in[1]->rx, "hello", 5),
     "server got hello on 1");
  np_yamux_write(s.in[1]->st, (const uint8_t *)"world", 5);
  pump(&c, &s);
  ok(a->rx_total == 5 && !memcmp(a->rx, "world", 5), "client got world");
  x = open_stream(&s);
  is_int(x->id, 2, "server ids are even");
  np_yamux_write(x->st, (const uint8_t *)"srv", 3);
  pump(&c, &s);
  ok(c.nin == 1 && c.in[0]->id == 2 && c.in[0]->rx_total == 3,
     "client accepted the server's stream");
  is_int(np_yamux_num_streams(c.s), 3, "client has 3 streams");
  is_int(np_yamux_num_inbound(s.s), 2, "server has 2 inbound");
  peer_free(&c);
  peer_free(&s);
}

static void test_half_close(void) {
  peer c, s;
  app_stream *a, *r;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  a = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"req", 3);
  np_yamux_close_write(a->st);
  pump(&c, &s);
  r = s.in[0];
  ok(r->fin == 1 && r->rx_total == 3, "server sees data then FIN");
  is_int(np_yamux_write(a->st, (const uint8_t *)"x", 1), NP_ECLOSED,
         "no writes after close_write");
  is_int(np_yamux_write(r->st, (const uint8_t *)"resp", 4), 4,
         "server still writes after the client's FIN");
  pump(&c, &s);
  ok(a->rx_total == 4 && !a->closed, "client reads the answer, stream open");
  np_yamux_close_write(r->st);
  ok(r->closed && r->close_err == 0, "server: FIN both ways closes (0)");
  pump(&c, &s);
  ok(a->fin && a->closed && a->close_err == 0, "client: closed cleanly");
  ok(np_yamux_num_streams(c.s) == 0 && np_yamux_num_streams(s.s) == 0,
     "no streams left on either side");
  peer_free(&c);
  peer_free(&s);
}

static void test_reset(void) {
  peer c, s;
  app_stream *a, *r;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  a = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"x", 1);
  pump(&c, &s);
  r = s.in[0];
  np_yamux_reset(a->st);
  /* The server writes before the RST reaches it: a race, not an error. */
  np_yamux_write(r->st, (const uint8_t *)"late", 4);
  xfer(&s, &c, 0);
  is_int(np_yamux_error(c.s), 0, "data for a stream reset here is ignored");
  pump(&c, &s);
  ok(r->closed && r->close_err == NP_ECLOSED, "server: on_close(NP_ECLOSED)");
  ok(a->closed && a->close_err == NP_ECANCELED, "client: on_close(ECANCELED)");
  is_int(np_yamux_error(s.s), 0, "server session fine");
  /* A FIN/RST crossing the other way. */
  a = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"y", 1);
  pump(&c, &s);
  r = s.in[1];
  np_yamux_reset(r->st);
  np_yamux_close_write(a->st);
  xfer(&c, &s, 0);
  xfer(&s, &c, 0);
  ok(!np_yamux_error(c.s) && !np_yamux_error(s.s), "FIN/RST race is fine");
  ok(a->closed && a->close_err == NP_ECLOSED, "client sees the RST");
  peer_free(&c);
  peer_free(&s);
}

static void test_goaway(void) {
  peer c, s;
  app_stream *a, *b, *late;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  a = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"a", 1);
  late = open_stream(&c); /* opened, SYN not sent yet */
  pump(&c, &s);
  is_int(np_yamux_goaway(s.s, NP_YAMUX_GOAWAY_NORMAL), 0, "server goaway");
  pump(&c, &s);
  ok(c.goaways == 1 && c.goaway_code == 0, "client got GO_AWAY(0)");
  b = app_new(&c);
  is_int(np_yamux_open(c.s, &b->st, b), NP_ECLOSED, "no new streams after");
  np_yamux_write(a->st, (const uint8_t *)"b", 1);
  np_yamux_write(late->st, (const uint8_t *)"c", 1);
  pump(&c, &s);
  ok(s.in[0]->rx_total == 2, "existing stream still carries data");
  ok(late->closed && late->close_err == NP_ECLOSED,
     "a SYN after our GO_AWAY is refused with RST");
  is_int(s.nin, 1, "server accepted nothing new");
  peer_free(&c);
  peer_free(&s);
}

static void test_ping(void) {
  peer c, s;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  is_int(np_yamux_rtt(c.s), 0, "no RTT before a ping");
  is_int(np_yamux_ping(c.s, 1000), 0, "ping at t=1000");
  is_int(np_yamux_ping(c.s, 1001), NP_ELIMIT, "one ping at a time");
  xfer(&c, &s, 0);
  c.now = 1042;
  xfer(&s, &c, 0);
  ok(c.pings == 1 && c.rtt == 42, "on_ping with rtt 42");
  is_int(np_yamux_rtt(c.s), 42, "np_yamux_rtt");
  is_int(s.pings, 0, "the answering side gets no on_ping");
  is_int(np_yamux_ping(c.s, 2000), 0, "next ping allowed");
  /* A stray ACK is ignored. */
  np_yamux_feed(c.s,
                (const uint8_t *)"\x00\x02\x00\x02\x00\x00\x00\x00\x00\x00\x00"
                                 "\x09",
                12, 2001);
  ok(c.pings == 1 && !np_yamux_error(c.s), "mismatched ping ACK ignored");
  peer_free(&c);
  peer_free(&s);
}

static void test_stream_limit(void) {
  peer c, s;
  np_yamux_config cfg;
  app_stream *a[3], *d;
  int i;
  np_yamux_config_default(&cfg);
  cfg.max_streams = 2;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, &cfg);
  for (i = 0; i < 3; i++) {
    a[i] = open_stream(&c);
    np_yamux_write(a[i]->st, (const uint8_t *)"q", 1);
  }
  pump(&c, &s);
  is_int(s.nin, 2, "server accepted max_streams = 2");
  ok(a[2]->closed && a[2]->close_err == NP_ECLOSED,
     "third stream refused with RST");
  ok(!a[0]->closed && !a[1]->closed, "the first two live on");
  np_yamux_reset(a[0]->st);
  pump(&c, &s);
  d = open_stream(&c);
  np_yamux_write(d->st, (const uint8_t *)"r", 1);
  pump(&c, &s);
  ok(s.nin == 3 && !d->closed, "a slot freed by RST is reused");

  /* The application may refuse too. */
  s.refuse = 1;
  d = open_stream(&c);
  np_yamux_write(d->st, (const uint8_t *)"r", 1);
  np_yamux_reset(s.in[1]->st);
  pump(&c, &s);
  ok(d->closed && d->close_err == NP_ECLOSED, "refused by on_stream_open");
  peer_free(&c);
  peer_free(&s);

  /* Unacknowledged outbound streams are bounded. */
  np_yamux_config_default(&cfg);
  cfg.max_unacked = 2;
  peer_init(&c, 1, &cfg);
  peer_init(&s, 0, NULL);
  a[0] = open_stream(&c);
  a[1] = open_stream(&c);
  d = app_new(&c);
  is_int(np_yamux_open(c.s, &d->st, d), NP_ELIMIT, "max_unacked reached");
  np_yamux_write(a[0]->st, (const uint8_t *)"1", 1);
  pump(&c, &s);
  is_int(np_yamux_open(c.s, &d->st, d), 0, "an ACK frees a slot");
  peer_free(&c);
  peer_free(&s);
}

/* Payload byte at stream offset |i|. */
static uint8_t gen(uint64_t i) {
  return (uint8_t)((i * 2654435761u) >> 13 ^ (i >> 7));
}

static void fill(uint8_t *buf, size_t n, uint64_t off) {
  size_t i;
  for (i = 0; i < n; i++)
    buf[i] = gen(off + i);
}

static void test_slow_reader(void) {
  peer c, s;
  app_stream *a, *r;
  static uint8_t chunk[256 * 1024];
  const uint64_t total = 64ull * MIB;
  uint64_t sent = 0, hash = 1469598103934665603ull, i;
  np_ssize w;
  int blocked = 0, rounds = 0;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  s.consume = 0;
  a = open_stream(&c);
  /* Phase 1: the reader consumes nothing. */
  for (;;) {
    fill(chunk, sizeof(chunk), sent);
    w = np_yamux_write(a->st, chunk, sizeof(chunk));
    if (w < 0)
      break;
    for (i = 0; i < (uint64_t)w; i++)
      hash = (hash ^ chunk[i]) * 1099511628211ull;
    sent += (uint64_t)w;
    pump(&c, &s);
    if (++rounds > 100)
      break;
  }
  r = s.in[0];
  is_int(w, NP_ELIMIT, "writer blocked");
  is_int(sent, NP_YAMUX_INITIAL_WINDOW, "after exactly the initial window");
  is_int(np_yamux_stream_unconsumed(r->st), sent,
         "receiver holds what was sent");
  ok(r->max_unconsumed <= NP_YAMUX_INITIAL_WINDOW,
     "receiver never held more than the window");
  is_int(np_yamux_stream_send_window(a->st), 0, "send window is 0");
  /* Phase 2: the reader consumes what it has, in pieces. */
  while (sent < total) {
    size_t u = np_yamux_stream_unconsumed(r->st);
    if (u > 0)
      np_yamux_consumed(r->st, u > 100000 ? 100000 : u, 0);
    pump(&c, &s);
    for (;;) {
      size_t n =
          total - sent < sizeof(chunk) ? (size_t)(total - sent) : sizeof(chunk);
      fill(chunk, n, sent);
      w = np_yamux_write(a->st, chunk, n);
      if (w <= 0) {
        blocked++;
        break;
      }
      for (i = 0; i < (uint64_t)w; i++)
        hash = (hash ^ chunk[i]) * 1099511628211ull;
      sent += (uint64_t)w;
      if (sent == total)
        break;
    }
    pump(&c, &s);
  }
  np_yamux_close_write(a->st);
  np_yamux_consumed(r->st, np_yamux_stream_unconsumed(r->st), 0);
  pump(&c, &s);
  is_int(r->rx_total, total, "all 64 MiB arrived");
  ok(r->hash == hash, "checksum matches");
  ok(r->fin == 1, "FIN after the data");
  ok(r->max_unconsumed <= NP_YAMUX_INITIAL_WINDOW,
     "receiver held at most 256 KiB at any time");
  is_int(np_yamux_stream_recv_window(r->st), NP_YAMUX_INITIAL_WINDOW,
         "no RTT known: the window never grew");
  ok(a->writable > 0 && blocked > 0, "writer was blocked and woken");
  peer_free(&c);
  peer_free(&s);
}

/* Writer |c| sends |total| bytes on one stream to |s|, which consumes in
 * on_data. Returns the largest send window the writer saw. */
static uint32_t transfer(peer *c, peer *s, size_t total, app_stream **pr) {
  static uint8_t chunk[64 * 1024];
  app_stream *a = open_stream(c);
  size_t sent = 0;
  uint32_t maxw = 0;
  int guard = 0;
  memset(chunk, 'a', sizeof(chunk));
  while (sent < total && guard++ < 100000) {
    np_ssize w;
    uint32_t sw = np_yamux_stream_send_window(a->st);
    if (sw > maxw)
      maxw = sw;
    w = np_yamux_write(a->st, chunk,
                       total - sent < sizeof(chunk) ? total - sent
                                                    : sizeof(chunk));
    if (w > 0)
      sent += (size_t)w;
    else
      pump(c, s);
  }
  pump(c, s);
  *pr = s->in[s->nin - 1];
  return maxw;
}

static void test_autotune(void) {
  peer c, s;
  np_yamux_config cfg;
  app_stream *r;
  uint32_t maxw;
  np_yamux_config_default(&cfg);
  cfg.max_window = 1 * MIB;
  /* The receiver measures an RTT of 10 ms first. */
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, &cfg);
  np_yamux_ping(s.s, 0);
  xfer(&s, &c, 0);
  s.now = 10;
  xfer(&c, &s, 0);
  is_int(np_yamux_rtt(s.s), 10, "receiver RTT 10 ms");
  /* Updates due at once (time stands still): the window doubles. */
  maxw = transfer(&c, &s, 8 * MIB, &r);
  is_int(r->rx_total, 8 * MIB, "8 MiB arrived");
  is_int(np_yamux_stream_recv_window(r->st), 1 * MIB,
         "window grew to max_window");
  ok(maxw > NP_YAMUX_INITIAL_WINDOW, "the writer saw the bigger window (%u)",
     (unsigned)maxw);
  ok(maxw <= 1 * MIB, "but never more than max_window");
  ok(r->max_unconsumed <= 1 * MIB, "receiver held at most max_window");
  peer_free(&c);
  peer_free(&s);

  /* Updates 100 ms apart, RTT 10 ms: reading is the limit, no growth. */
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, &cfg);
  np_yamux_ping(s.s, 0);
  xfer(&s, &c, 0);
  s.now = 10;
  xfer(&c, &s, 0);
  s.tick = 100;
  maxw = transfer(&c, &s, 4 * MIB, &r);
  is_int(np_yamux_stream_recv_window(r->st), NP_YAMUX_INITIAL_WINDOW,
         "slow updates: window stays 256 KiB");
  ok(maxw <= NP_YAMUX_INITIAL_WINDOW, "writer never saw more");
  peer_free(&c);
  peer_free(&s);
}

static void test_pause(void) {
  peer c, s;
  app_stream *a, *r;
  static uint8_t buf[100000];
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  a = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"x", 1);
  pump(&c, &s);
  r = s.in[0];
  np_yamux_pause(r->st, 1);
  fill(buf, sizeof(buf), 0);
  is_int(np_yamux_write(a->st, buf, sizeof(buf)), sizeof(buf), "write 100 KB");
  np_yamux_close_write(a->st);
  pump(&c, &s);
  ok(r->rx_total == 1 && r->fin == 0, "paused: no data, no FIN delivered");
  is_int(np_yamux_stream_unconsumed(r->st), sizeof(buf) + 0,
         "held bytes count as unconsumed");
  is_int(np_yamux_consumed(r->st, 1, 0), NP_EINVAL,
         "held bytes cannot be consumed before they are delivered");
  np_yamux_pause(r->st, 0);
  ok(r->rx_total == 1 + sizeof(buf) && r->fin == 1,
     "resume delivers held data, then FIN");
  peer_free(&c);
  peer_free(&s);
}

static void test_output_bound(void) {
  peer c, s;
  np_yamux_config cfg;
  app_stream *a;
  static uint8_t buf[10000];
  const uint8_t *o;
  size_t n, i;
  uint8_t *pings;
  np_ssize r;
  np_yamux_config_default(&cfg);
  cfg.max_output = 4096;
  peer_init(&c, 1, &cfg);
  peer_init(&s, 0, &cfg);
  a = open_stream(&c);
  is_int(np_yamux_write(a->st, buf, sizeof(buf)), 4096 - 12,
         "write stops at max_output");
  is_int(np_yamux_write(a->st, buf, sizeof(buf)), NP_ELIMIT, "then NP_ELIMIT");
  n = np_yamux_output(c.s, &o);
  np_yamux_output_drain(c.s, n);
  is_int(a->writable, 1, "draining the output fires on_writable");
  /* A ping flood against an undrained output: feeding pauses. */
  pings = malloc(12 * 2000);
  for (i = 0; i < 2000; i++)
    np_yamux_header_encode(pings + 12 * i, NP_YAMUX_PING, NP_YAMUX_SYN, 0,
                           (uint32_t)i);
  r = np_yamux_feed(s.s, pings, 12 * 2000, 0);
  ok(r > 0 && r < 12 * 2000, "feed stops consuming when output is full");
  n = np_yamux_output(s.s, &o);
  ok(n <= 4096 + 16 * KIB + 12, "output bounded (%zu)", n);
  np_yamux_output_drain(s.s, n);
  is_int(np_yamux_feed(s.s, pings + r, 12 * 2000 - (size_t)r, 0), 12 * 2000 - r,
         "after draining the rest goes in");
  free(pings);
  peer_free(&c);
  peer_free(&s);
}

static void test_del_closes(void) {
  peer c, s;
  app_stream *a;
  peer_init(&c, 1, NULL);
  peer_init(&s, 0, NULL);
  a = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"x", 1);
  pump(&c, &s);
  np_yamux_del(s.s);
  ok(s.in[0]->closed && s.in[0]->close_err == NP_ECANCELED,
     "np_yamux_del closes live streams with NP_ECANCELED");
  s.s = NULL;
  peer_free(&c);
  peer_free(&s);
}

/* ---- malformed input ------------------------------------------------------
 */

#define H(t, f, id, len)                                                       \
  (uint8_t)0, (uint8_t)(t), (uint8_t)((f) >> 8), (uint8_t)(f),                 \
      (uint8_t)((uint32_t)(id) >> 24), (uint8_t)((uint32_t)(id) >> 16),        \
      (uint8_t)((uint32_t)(id) >> 8), (uint8_t)(id),                           \
      (uint8_t)((uint32_t)(len) >> 24), (uint8_t)((uint32_t)(len) >> 16),      \
      (uint8_t)((uint32_t)(len) >> 8), (uint8_t)(len)

/* Feed |in| to a fresh session (server unless |client|) that has stream 1
 * (server) or 2 (client) open with the peer; expect a protocol error with
 * GO_AWAY(1) last in the output and the live stream closed. */
static void expect_proto(const char *what, int client, const uint8_t *in,
                         size_t len) {
  peer p;
  const uint8_t *o;
  size_t n;
  np_ssize r;
  static const uint8_t ga[] = {H(NP_YAMUX_GO_AWAY, 0, 0, 1)};
  uint8_t syn[] = {H(NP_YAMUX_WINDOW_UPDATE, NP_YAMUX_SYN, client ? 2 : 1, 0)};
  peer_init(&p, client, NULL);
  np_yamux_feed(p.s, syn, sizeof(syn), 0);
  r = np_yamux_feed(p.s, in, len, 0);
  n = np_yamux_output(p.s, &o);
  ok(r == NP_EPROTO && p.errors == 1 && p.error == NP_EPROTO && n >= 12 &&
         memcmp(o + n - 12, ga, 12) == 0 && p.nin == 1 && p.in[0]->closed &&
         p.in[0]->close_err == NP_EPROTO,
     "%s: GO_AWAY(protocol error), session error, streams closed", what);
  is_int(np_yamux_feed(p.s, syn, sizeof(syn), 0), NP_EPROTO,
         "%s: error is sticky", what);
  peer_free(&p);
}

static void test_malformed(void) {
  static const uint8_t badver[] = {1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
  static const uint8_t badtype[] = {H(4, 0, 0, 0)};
  static const uint8_t overwin[] = {H(NP_YAMUX_DATA, 0, 1, 256 * 1024 + 1)};
  static const uint8_t oversyn[] = {
      H(NP_YAMUX_DATA, NP_YAMUX_SYN, 3, 256 * 1024 + 1)};
  static const uint8_t parity_s[] = {H(NP_YAMUX_DATA, NP_YAMUX_SYN, 4, 0)};
  static const uint8_t parity_c[] = {H(NP_YAMUX_DATA, NP_YAMUX_SYN, 3, 0)};
  static const uint8_t dup[] = {H(NP_YAMUX_DATA, NP_YAMUX_SYN, 1, 0)};
  static const uint8_t never[] = {H(NP_YAMUX_DATA, 0, 9, 1), 'x'};
  static const uint8_t never_ours[] = {H(NP_YAMUX_WINDOW_UPDATE, 0, 2, 1)};
  static const uint8_t ping5[] = {H(NP_YAMUX_PING, NP_YAMUX_SYN, 5, 0)};
  static const uint8_t ga5[] = {H(NP_YAMUX_GO_AWAY, 0, 5, 0)};
  static const uint8_t data0[] = {H(NP_YAMUX_DATA, 0, 0, 0)};
  static const uint8_t wuover[] = {
      H(NP_YAMUX_WINDOW_UPDATE, 0, 1, 0xffffffffu)};
  static const uint8_t huge[] = {H(NP_YAMUX_DATA, 0, 1, 0x7fffffffu)};
  expect_proto("bad version", 0, badver, sizeof(badver));
  expect_proto("unknown type", 0, badtype, sizeof(badtype));
  expect_proto("data over the window", 0, overwin, sizeof(overwin));
  expect_proto("SYN with data over the window", 0, oversyn, sizeof(oversyn));
  expect_proto("server gets SYN with an even id", 0, parity_s,
               sizeof(parity_s));
  expect_proto("client gets SYN with an odd id", 1, parity_c, sizeof(parity_c));
  expect_proto("duplicate SYN", 0, dup, sizeof(dup));
  expect_proto("data for a stream never opened", 0, never, sizeof(never));
  expect_proto("window update for our id never used", 0, never_ours,
               sizeof(never_ours));
  expect_proto("ping on a stream", 0, ping5, sizeof(ping5));
  expect_proto("go-away on a stream", 0, ga5, sizeof(ga5));
  expect_proto("data on stream 0", 0, data0, sizeof(data0));
  expect_proto("window overflow", 0, wuover, sizeof(wuover));
  expect_proto("2 GiB data frame", 0, huge, sizeof(huge));

  /* Between real sessions: the peer learns why. */
  {
    peer c, s;
    peer_init(&c, 1, NULL);
    peer_init(&s, 0, NULL);
    np_yamux_feed(s.s, badver, sizeof(badver), 0);
    pump(&c, &s);
    ok(c.goaways == 1 && c.goaway_code == NP_YAMUX_GOAWAY_PROTO,
       "the peer receives GO_AWAY(1)");
    {
      app_stream *b = app_new(&c);
      is_int(np_yamux_open(c.s, &b->st, b), NP_ECLOSED,
             "and opens no stream after it");
    }
    peer_free(&c);
    peer_free(&s);
  }
}

/* ---- byte-at-a-time equals all-at-once --------------------------------- */

/* A client session's output for a varied script, captured. */
static size_t script_bytes(uint8_t **out, int with_garbage) {
  peer c;
  app_stream *a, *b, *d;
  static uint8_t big[200000];
  const uint8_t *o;
  size_t n;
  peer_init(&c, 1, NULL);
  fill(big, sizeof(big), 7);
  a = open_stream(&c);
  b = open_stream(&c);
  d = open_stream(&c);
  np_yamux_write(a->st, (const uint8_t *)"alpha", 5);
  np_yamux_write(b->st, big, sizeof(big));
  np_yamux_ping(c.s, 0);
  np_yamux_write(d->st, (const uint8_t *)"delta", 5);
  np_yamux_close_write(a->st);
  np_yamux_reset(d->st);
  np_yamux_write(b->st, (const uint8_t *)"tail", 4);
  np_yamux_close_write(b->st);
  np_yamux_goaway(c.s, NP_YAMUX_GOAWAY_NORMAL);
  n = np_yamux_output(c.s, &o);
  *out = malloc(n + 24);
  memcpy(*out, o, n);
  if (with_garbage) {
    static const uint8_t tail[] = {
        H(NP_YAMUX_DATA, 0, 1, 0), 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    memcpy(*out + n, tail, sizeof(tail));
    n += sizeof(tail);
  }
  peer_free(&c);
  return n;
}

static void run_script(const uint8_t *in, size_t len, size_t step, peer *s) {
  size_t off = 0;
  peer_init(s, 0, NULL);
  while (off < len) {
    size_t k = step && len - off > step ? step : len - off;
    const uint8_t *o;
    np_ssize r = np_yamux_feed(s->s, in + off, k, 0);
    np_yamux_output_drain(s->s, np_yamux_output(s->s, &o));
    if (r < 0)
      break;
    off += (size_t)r;
  }
}

static void test_byte_by_byte(void) {
  int g;
  for (g = 0; g < 2; g++) {
    uint8_t *in;
    size_t len = script_bytes(&in, g), i;
    peer one, each;
    int same = 1;
    run_script(in, len, 0, &one);
    run_script(in, len, 1, &each);
    ok(one.log_len > 0 && one.log_len == each.log_len &&
           memcmp(one.log, each.log, one.log_len) == 0,
       "%s: same events byte by byte", g ? "with garbage" : "clean");
    if (one.log_len != each.log_len || memcmp(one.log, each.log, one.log_len))
      printf("#   one:  %.*s\n#   each: %.*s\n", (int)one.log_len, one.log,
             (int)each.log_len, each.log);
    same = one.nin == each.nin && one.nin == 3;
    for (i = 0; same && i < one.nin; i++)
      same = one.in[i]->rx_total == each.in[i]->rx_total &&
             one.in[i]->hash == each.in[i]->hash;
    ok(same, "%s: same data on every stream", g ? "with garbage" : "clean");
    ok(each.in[0]->data_calls > one.in[0]->data_calls || g,
       "data really came in pieces");
    is_int(np_yamux_error(each.s), g ? NP_EPROTO : 0,
           g ? "garbage ends the session" : "clean script: no error");
    peer_free(&one);
    peer_free(&each);
    free(in);
  }
}

int main(void) {
  test_header_bytes();
  test_session_bytes();
  test_open_accept_data();
  test_half_close();
  test_reset();
  test_goaway();
  test_ping();
  test_stream_limit();
  test_slow_reader();
  test_autotune();
  test_pause();
  test_output_bound();
  test_del_closes();
  test_malformed();
  test_byte_by_byte();
  return done_testing();
}
