/* tcp_probe: libp2p over TCP + Noise + yamux with the sans-I/O modules
 * (np_mss, np_noise, np_yamux, np_identify) on blocking-style POSIX
 * sockets, for interop checks against other libp2p implementations.
 *
 *   tcp_probe dial /ip4/A/tcp/PORT/p2p/ID [--timeout S] [--echo PROTO]
 *       connect; multistream /noise; Noise XX as initiator expecting ID
 *       (offering /yamux/1.0.0 in the handshake extensions, else
 *       multistream /yamux/1.0.0 inside Noise); yamux client; then on
 *       streams: identify (/ipfs/id/1.0.0), ping (/ipfs/ping/1.0.0, 32
 *       random bytes), and a raw echo stream when the peer lists PROTO
 *       (default /js/echo/1.0.0; --echo-bytes N sends N random bytes
 *       instead of a short text). Serves identify and ping to the peer
 *       meanwhile. Prints ONE JSON line.
 *   tcp_probe listen [--timeout S]
 *       listens on 127.0.0.1:0, prints /ip4/127.0.0.1/tcp/PORT/p2p/ID as
 *       the first stdout line, accepts one connection (multistream
 *       listener, Noise responder, yamux server), serves identify and ping
 *       until the peer closes the connection or the timeout; then prints
 *       ONE JSON line.
 *   --no-early-muxer: offer no muxer in the Noise handshake, so that
 *       /yamux/1.0.0 is negotiated with multistream inside Noise.
 *
 * Exit: 0 ok, 1 protocol or remote failure, 2 usage, 3 unreachable or
 * timed out. Every wait is bounded by --timeout (default 15 s, max 20 s).
 * NP_PROBE_TRACE=1 hex-dumps the wire (raw TCP and Noise plaintext) to
 * stderr; NP_PROBE_DUMP=PREFIX writes the whole Noise plaintext (the
 * muxer's bytes) to PREFIX.in and PREFIX.out. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_identify.h"
#include "np_identity.h"
#include "np_lp.h"
#include "np_mss.h"
#include "np_multiaddr.h"
#include "np_noise.h"
#include "np_peerid.h"
#include "np_yamux.h"

enum { EX_OK = 0, EX_REMOTE = 1, EX_USAGE = 2, EX_UNREACH = 3 };

#define PING_PROTOCOL "/ipfs/ping/1.0.0"
#define PING_SIZE 32
#define RBUF_CAP (256u * 1024u)
#define MAX_STREAMS 64
#define AGENT "natpeer/" PACKAGE_VERSION " tcp_probe"

/* ---- failures, time, tracing --------------------------------------------- */

static int g_code = EX_OK;
static char g_err[512];
static const char *g_phase = "start";
static uint64_t g_deadline; /* monotonic ms */
static int g_trace;

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
static uint64_t now_ms(void) { return now_us() / 1000u; }

/* Records the first failure only; returns -1 for `return failf(...)`. */
__attribute__((format(printf, 2, 3))) static int failf(int code,
                                                       const char *fmt, ...) {
  va_list ap;
  if (g_code != EX_OK)
    return -1;
  g_code = code;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof(g_err), fmt, ap);
  va_end(ap);
  if (g_trace)
    fprintf(stderr, "tcp_probe: FAIL [%s] %s\n", g_phase, g_err);
  return -1;
}

static FILE *g_dump_in, *g_dump_out; /* NP_PROBE_DUMP: whole plaintext */

static void trace(const char *what, const uint8_t *p, size_t len) {
  if (strcmp(what, "<< plain") == 0 && g_dump_in != NULL)
    fwrite(p, 1, len, g_dump_in);
  if (strcmp(what, ">> plain") == 0 && g_dump_out != NULL)
    fwrite(p, 1, len, g_dump_out);
  if (!g_trace)
    return;
  fprintf(stderr, "%s %zu:", what, len);
  for (size_t i = 0; i < len && i < 512; i++)
    fprintf(stderr, "%s%02x", i % 32 == 0 ? "\n  " : " ", p[i]);
  fprintf(stderr, "%s\n", len > 512 ? " ..." : "");
}

/* Milliseconds left before the deadline (0 when over). */
static int left_ms(void) {
  uint64_t t = now_ms();
  return t >= g_deadline ? 0 : (int)(g_deadline - t);
}

/* ---- connection and streams ---------------------------------------------- */

typedef struct conn conn;

typedef struct pstream {
  conn *c;
  np_yamux_stream *st; /* NULL once closed */
  int inbound;
  np_mss mss;
  const char *proto; /* dialer's proposal */
  int app;           /* negotiation over: in[] is application data */
  uint8_t *in;       /* received, not yet used */
  size_t inlen, incap;
  uint8_t *out; /* to write on the stream */
  size_t outlen, outcap;
  int want_fin, fin_sent;
  int fin, closed, close_err;
  int served; /* inbound identify answered */
} pstream;

struct conn {
  int fd, initiator, eof;
  const np_identity *self;
  np_noise *nz;
  np_yamux *ym;
  uint8_t *rb; /* raw bytes read, not yet consumed by the current stage */
  size_t rblen;
  uint8_t *pre; /* Noise plaintext before yamux (muxer multistream) */
  size_t prelen, precap;
  uint8_t local_ma[64], remote_ma[64];
  size_t local_ma_len, remote_ma_len;
  pstream *streams[MAX_STREAMS];
  size_t nstreams;
  unsigned served_identify, served_ping, ping_bytes;
  int goaway, yerr;
};

static int append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *p,
                  size_t n) {
  if (*len + n > *cap) {
    size_t nc = *cap ? *cap : 256;
    uint8_t *q;
    while (nc < *len + n)
      nc *= 2;
    if ((q = realloc(*buf, nc)) == NULL)
      return failf(EX_REMOTE, "out of memory");
    *buf = q;
    *cap = nc;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
  return 0;
}

static void consume(uint8_t *buf, size_t *len, size_t n) {
  if (n < *len) /* an empty buffer may be NULL */
    memmove(buf, buf + n, *len - n);
  *len -= n;
}

/* ---- socket --------------------------------------------------------------- */

static int sock_send(conn *c, const uint8_t *p, size_t len) {
  trace(">> tcp", p, len);
  while (len > 0) {
    ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL);
    if (k > 0) {
      p += k;
      len -= (size_t)k;
      continue;
    }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
      int ms = left_ms();
      if (ms == 0)
        return failf(EX_UNREACH, "timeout while sending");
      poll(&pf, 1, ms);
      continue;
    }
    return failf(EX_REMOTE, "send: %s", strerror(errno));
  }
  return 0;
}

/* Wait up to |wait_ms| (bounded by the deadline) for bytes. Returns 1 when
 * some arrived, 0 when none did, -1 on EOF or error (c->eof set). */
static int sock_read(conn *c, int wait_ms) {
  struct pollfd pf = {.fd = c->fd, .events = POLLIN};
  int ms = left_ms(), r;
  ssize_t k;
  if (wait_ms < ms)
    ms = wait_ms;
  if (c->rblen == RBUF_CAP)
    return failf(EX_REMOTE, "read buffer full");
  r = poll(&pf, 1, ms);
  if (r <= 0)
    return 0;
  k = recv(c->fd, c->rb + c->rblen, RBUF_CAP - c->rblen, 0);
  if (k > 0) {
    trace("<< tcp", c->rb + c->rblen, (size_t)k);
    c->rblen += (size_t)k;
    return 1;
  }
  if (k < 0 && (errno == EAGAIN || errno == EINTR))
    return 0;
  c->eof = 1;
  if (g_trace)
    fprintf(stderr, "tcp_probe: connection closed by peer (%s)\n",
            k == 0 ? "EOF" : strerror(errno));
  return -1;
}

/* A read that must bring something before the deadline. */
static int need_read(conn *c, const char *what) {
  int r = sock_read(c, 200);
  if (r < 0)
    return failf(EX_REMOTE, "connection closed during %s", what);
  if (r == 0 && left_ms() == 0)
    return failf(EX_UNREACH, "timeout during %s", what);
  return 0;
}

static void set_nonblock(int fd) {
  int one = 1;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void sockaddr_ma(const struct sockaddr_in *sa, uint8_t *out,
                        size_t *len) {
  char text[64], ip[INET_ADDRSTRLEN];
  np_ssize n;
  inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
  snprintf(text, sizeof(text), "/ip4/%s/tcp/%u", ip,
           (unsigned)ntohs(sa->sin_port));
  n = np_maddr_parse(text, strlen(text), out, 64);
  *len = n > 0 ? (size_t)n : 0;
}

/* ---- multistream on the raw connection or inside Noise -------------------- */

static int flush_noise(conn *c) {
  const uint8_t *o;
  size_t n = np_noise_output(c->nz, &o);
  if (n == 0)
    return 0;
  if (sock_send(c, o, n) != 0)
    return -1;
  np_noise_output_drain(c->nz, n);
  return 0;
}

static int secure_write(conn *c, const uint8_t *p, size_t len) {
  trace(">> plain", p, len);
  while (len > 0) {
    np_ssize k = np_noise_encrypt(c->nz, p, len);
    if (k < 0)
      return failf(EX_REMOTE, "noise encrypt: %s", np_errname((int)k));
    p += k;
    len -= (size_t)k;
    if (flush_noise(c) != 0)
      return -1;
  }
  return 0;
}

static int deliver(conn *c, const uint8_t *p, size_t len);

/* Decrypt every whole frame in rb and deliver its plaintext. */
static int secure_input(conn *c) {
  static uint8_t pt[NP_NOISE_FRAME_MAX];
  while (c->rblen > 0) {
    const uint8_t *p;
    size_t plen = 0;
    np_ssize k = np_noise_decrypt_feed(c->nz, c->rb, c->rblen, &p, &plen);
    if (k < 0)
      return failf(EX_REMOTE, "noise transport: %s", np_errname((int)k));
    if (p != NULL)
      memcpy(pt, p, plen);
    consume(c->rb, &c->rblen, (size_t)k);
    if (p != NULL) {
      trace("<< plain", pt, plen);
      if (deliver(c, pt, plen) != 0)
        return -1;
    }
    if (p == NULL && k == 0)
      break;
  }
  return 0;
}

/* One multistream negotiation over the raw socket (|secure| 0) or inside
 * Noise (|secure| 1, input from c->pre). */
static int mss_conn(conn *c, np_mss *m, int secure, const char *what) {
  for (;;) {
    const uint8_t *o;
    size_t n = np_mss_output(m, &o);
    uint8_t **buf = secure ? &c->pre : &c->rb;
    size_t *len = secure ? &c->prelen : &c->rblen;
    np_ssize k;
    if (n > 0) {
      if ((secure ? secure_write(c, o, n) : sock_send(c, o, n)) != 0)
        return -1;
      np_mss_drain(m, n);
    }
    if (np_mss_state(m) == NP_MSS_DONE)
      return 0;
    if (np_mss_state(m) == NP_MSS_FAILED)
      return failf(EX_REMOTE, "multistream %s: %s", what,
                   np_errname(np_mss_error(m)));
    k = np_mss_feed(m, *buf, *len);
    if (k < 0)
      return failf(EX_REMOTE, "multistream %s: %s", what,
                   np_errname((int)k));
    consume(*buf, len, (size_t)k);
    if (k > 0 || np_mss_output(m, &o) > 0 ||
        np_mss_state(m) != NP_MSS_NEGOTIATING)
      continue;
    if (need_read(c, what) != 0)
      return -1;
    if (secure && secure_input(c) != 0)
      return -1;
  }
}

/* ---- yamux ---------------------------------------------------------------- */

static int lookup(const char *name, size_t len, void *ud) {
  (void)len;
  (void)ud;
  return strcmp(name, NP_IDENTIFY_PROTOCOL) == 0 ||
         strcmp(name, PING_PROTOCOL) == 0;
}

static pstream *ps_new(conn *c, int inbound) {
  pstream *ps;
  if (c->nstreams == MAX_STREAMS || (ps = calloc(1, sizeof(*ps))) == NULL)
    return NULL;
  ps->c = c;
  ps->inbound = inbound;
  c->streams[c->nstreams++] = ps;
  return ps;
}

static int on_stream_open(np_yamux_stream *st, void *ud) {
  conn *c = ud;
  pstream *ps = ps_new(c, 1);
  if (ps == NULL)
    return 1;
  ps->st = st;
  np_mss_init_listener(&ps->mss, lookup, c);
  np_yamux_stream_set_ud(st, ps);
  return 0;
}

static void on_data(np_yamux_stream *st, const uint8_t *data, size_t len,
                    void *ud, void *sud) {
  pstream *ps = sud;
  (void)ud;
  if (append(&ps->in, &ps->inlen, &ps->incap, data, len) != 0)
    return;
  np_yamux_consumed(st, len, now_ms());
}

static void on_fin(np_yamux_stream *st, void *ud, void *sud) {
  pstream *ps = sud;
  (void)st;
  (void)ud;
  ps->fin = 1;
}

static void on_close(np_yamux_stream *st, int err, void *ud, void *sud) {
  pstream *ps = sud;
  (void)st;
  (void)ud;
  ps->st = NULL;
  ps->closed = 1;
  ps->close_err = err;
}

static void on_goaway(np_yamux *s, uint32_t code, void *ud) {
  conn *c = ud;
  (void)s;
  (void)code;
  c->goaway = 1;
}

static void on_error(np_yamux *s, int err, void *ud) {
  conn *c = ud;
  (void)s;
  c->yerr = err;
}

static int deliver(conn *c, const uint8_t *p, size_t len) {
  size_t off = 0;
  if (c->ym == NULL) /* muxer multistream still going on */
    return append(&c->pre, &c->prelen, &c->precap, p, len);
  while (off < len) {
    np_ssize r = np_yamux_feed(c->ym, p + off, len - off, now_ms());
    if (r < 0)
      return failf(EX_REMOTE, "yamux: %s", np_errname((int)r));
    off += (size_t)r;
    if (off < len) { /* output over its bound: send it, feed the rest */
      const uint8_t *o;
      size_t n;
      while ((n = np_yamux_output(c->ym, &o)) > 0) {
        if (secure_write(c, o, n) != 0)
          return -1;
        np_yamux_output_drain(c->ym, n);
      }
    }
  }
  return 0;
}

static int ps_send(pstream *ps, const uint8_t *p, size_t len) {
  return append(&ps->out, &ps->outlen, &ps->outcap, p, len);
}

/* Queued stream bytes into yamux, then FIN when asked and all is out. */
static void ps_flush(pstream *ps) {
  while (ps->st != NULL && ps->outlen > 0) {
    np_ssize k = np_yamux_write(ps->st, ps->out, ps->outlen);
    if (k <= 0)
      break; /* window or output full (on_writable later), or closed */
    consume(ps->out, &ps->outlen, (size_t)k);
  }
  if (ps->st != NULL && ps->want_fin && !ps->fin_sent && ps->outlen == 0) {
    np_yamux_close_write(ps->st);
    ps->fin_sent = 1;
  }
}

static void serve_identify(conn *c, pstream *ps) {
  const char *protos[] = {NP_IDENTIFY_PROTOCOL, PING_PROTOCOL};
  np_identify_blob listen = {c->local_ma, c->local_ma_len};
  np_identify_params p;
  uint8_t out[2 * NP_IDENTIFY_MSG_OUT + 64];
  np_ssize n;
  memset(&p, 0, sizeof(p));
  p.protocol_version = "ipfs/0.1.0";
  p.agent_version = AGENT;
  p.listen_addrs = c->initiator ? NULL : &listen;
  p.nlisten = c->initiator ? 0 : 1;
  p.observed = c->remote_ma;
  p.observed_len = c->remote_ma_len;
  p.protocols = protos;
  p.nprotocols = NP_ARRAY_LEN(protos);
  p.record_seq = c->initiator ? 0 : (uint64_t)time(NULL);
  n = np_identify_build(c->self, &p, out, sizeof(out));
  if (n < 0) {
    failf(EX_REMOTE, "np_identify_build: %s", np_errname((int)n));
    np_yamux_reset(ps->st);
    return;
  }
  ps_send(ps, out, (size_t)n);
  ps->want_fin = 1;
  c->served_identify++;
}

/* Advance one stream: multistream, then what its protocol does. */
static void ps_service(conn *c, pstream *ps) {
  if (ps->st == NULL)
    return;
  if (!ps->app) {
    const uint8_t *o;
    size_t n;
    np_ssize k = np_mss_feed(&ps->mss, ps->in, ps->inlen);
    if (k > 0)
      consume(ps->in, &ps->inlen, (size_t)k);
    if ((n = np_mss_output(&ps->mss, &o)) > 0) {
      ps_send(ps, o, n);
      np_mss_drain(&ps->mss, n);
    }
    if (np_mss_state(&ps->mss) == NP_MSS_FAILED) {
      if (g_trace)
        fprintf(stderr, "tcp_probe: stream %u multistream failed: %s\n",
                np_yamux_stream_id(ps->st),
                np_errname(np_mss_error(&ps->mss)));
      ps_flush(ps);
      if (ps->inbound) {
        np_yamux_reset(ps->st);
        return;
      }
    } else if (np_mss_state(&ps->mss) == NP_MSS_DONE) {
      ps->app = 1;
      if (g_trace)
        fprintf(stderr, "tcp_probe: stream %u %s %s\n",
                np_yamux_stream_id(ps->st), ps->inbound ? "serves" : "speaks",
                np_mss_protocol(&ps->mss, NULL));
    } else if (k > 0) {
      ps_service(c, ps); /* more messages may wait in in[] */
      return;
    }
  }
  if (ps->app && ps->inbound) {
    const char *proto = np_mss_protocol(&ps->mss, NULL);
    if (strcmp(proto, NP_IDENTIFY_PROTOCOL) == 0 && !ps->served) {
      ps->served = 1;
      serve_identify(c, ps);
    } else if (strcmp(proto, PING_PROTOCOL) == 0) {
      while (ps->inlen >= PING_SIZE) {
        if (ps->served++ == 0)
          c->served_ping++;
        c->ping_bytes += PING_SIZE;
        ps_send(ps, ps->in, PING_SIZE);
        consume(ps->in, &ps->inlen, PING_SIZE);
      }
      if (ps->fin)
        ps->want_fin = 1;
    }
  }
  if (ps->st != NULL)
    ps_flush(ps);
}

static int flush_yamux(conn *c) {
  const uint8_t *o;
  size_t n;
  for (size_t i = 0; i < c->nstreams; i++)
    ps_service(c, c->streams[i]);
  while ((n = np_yamux_output(c->ym, &o)) > 0) {
    if (secure_write(c, o, n) != 0)
      return -1;
    np_yamux_output_drain(c->ym, n);
  }
  return g_code == EX_OK ? 0 : -1;
}

/* One round: send what is queued, wait up to |wait_ms| for input and run
 * it through Noise and yamux. Returns -1 on failure or EOF. */
static int pump(conn *c, int wait_ms) {
  int r;
  if (flush_yamux(c) != 0)
    return -1;
  r = sock_read(c, wait_ms);
  if (r < 0)
    return -1;
  if (r > 0 && secure_input(c) != 0)
    return -1;
  if (c->yerr != 0)
    return failf(EX_REMOTE, "yamux session error: %s", np_errname(c->yerr));
  return flush_yamux(c);
}

typedef int (*pred_fn)(const pstream *ps);
static int negotiated(const pstream *ps) {
  return ps->app || ps->closed ||
         np_mss_state(&ps->mss) == NP_MSS_FAILED;
}
static int got_ping(const pstream *ps) {
  return ps->inlen >= PING_SIZE || ps->fin || ps->closed;
}
static int got_eof(const pstream *ps) { return ps->fin || ps->closed; }

static int wait_for(conn *c, pstream *ps, pred_fn pred, const char *what) {
  while (!pred(ps)) {
    if (pump(c, 100) != 0) {
      if (c->eof)
        return failf(EX_REMOTE, "connection closed during %s", what);
      return -1;
    }
    if (!pred(ps) && left_ms() == 0)
      return failf(EX_UNREACH, "timeout during %s", what);
  }
  return 0;
}

/* Open a stream and negotiate |proto| on it. */
static pstream *open_proto(conn *c, const char *proto) {
  np_yamux_stream *st;
  pstream *ps = ps_new(c, 0);
  int rv;
  if (ps == NULL) {
    failf(EX_REMOTE, "too many streams");
    return NULL;
  }
  ps->proto = proto;
  if ((rv = np_yamux_open(c->ym, &st, ps)) != 0) {
    failf(EX_REMOTE, "yamux open: %s", np_errname(rv));
    return NULL;
  }
  ps->st = st;
  np_mss_init_dialer(&ps->mss, &ps->proto, 1, 0);
  if (wait_for(c, ps, negotiated, proto) != 0)
    return NULL;
  if (!ps->app) {
    failf(EX_REMOTE, "%s: %s", proto,
          ps->closed ? "stream reset during negotiation"
                     : np_errname(np_mss_error(&ps->mss)));
    return NULL;
  }
  return ps;
}

/* ---- connection setup: /noise, handshake, muxer ---------------------------- */

static char g_muxer_how[32] = "none";
static int g_early_muxer = 1; /* offer /yamux/1.0.0 in the Noise handshake */

static int lookup_noise_fn(const char *name, size_t len, void *ud) {
  (void)len;
  (void)ud;
  return strcmp(name, NP_NOISE_PROTOCOL) == 0;
}
static int lookup_yamux_fn(const char *name, size_t len, void *ud) {
  (void)len;
  (void)ud;
  return strcmp(name, NP_YAMUX_PROTOCOL) == 0;
}

static int secure_and_mux(conn *c, const np_peerid *expected,
                          np_peerid *remote) {
  static const char *const noise_p[] = {NP_NOISE_PROTOCOL};
  static const char *const yamux_p[] = {NP_YAMUX_PROTOCOL};
  np_yamux_cbs cbs;
  np_mss m;
  int rv;
  const char *mux;

  g_phase = "multistream /noise";
  if (c->initiator)
    np_mss_init_dialer(&m, (const char *const *)noise_p, 1, 0);
  else
    np_mss_init_listener(&m, lookup_noise_fn, NULL);
  if (mss_conn(c, &m, 0, "/noise") != 0)
    return -1;

  g_phase = "noise handshake";
  rv = np_noise_new(&c->nz, c->initiator, c->self, expected,
                    g_early_muxer ? yamux_p : NULL, g_early_muxer ? 1 : 0);
  if (rv != 0)
    return failf(EX_REMOTE, "np_noise_new: %s", np_errname(rv));
  for (;;) {
    np_ssize k;
    if (flush_noise(c) != 0)
      return -1;
    if (np_noise_done(c->nz))
      break;
    k = np_noise_handshake_feed(c->nz, c->rb, c->rblen);
    if (k < 0)
      return failf(EX_REMOTE, "noise handshake: %s", np_errname((int)k));
    consume(c->rb, &c->rblen, (size_t)k);
    if (k > 0)
      continue;
    if (need_read(c, "noise handshake") != 0)
      return -1;
  }
  np_noise_remote(c->nz, remote);

  g_phase = "muxer";
  mux = np_noise_muxer(c->nz);
  if (mux != NULL) {
    if (strcmp(mux, NP_YAMUX_PROTOCOL) != 0)
      return failf(EX_REMOTE, "noise extension chose muxer %s", mux);
    snprintf(g_muxer_how, sizeof(g_muxer_how), "noise-extension");
    if (secure_input(c) != 0) /* early frames, into c->pre */
      return -1;
  } else {
    snprintf(g_muxer_how, sizeof(g_muxer_how), "multistream");
    if (secure_input(c) != 0)
      return -1;
    if (c->initiator)
      np_mss_init_dialer(&m, (const char *const *)yamux_p, 1, 0);
    else
      np_mss_init_listener(&m, lookup_yamux_fn, NULL);
    if (mss_conn(c, &m, 1, "/yamux/1.0.0") != 0)
      return -1;
  }
  memset(&cbs, 0, sizeof(cbs));
  cbs.on_stream_open = on_stream_open;
  cbs.on_data = on_data;
  cbs.on_fin = on_fin;
  cbs.on_close = on_close;
  cbs.on_goaway = on_goaway;
  cbs.on_error = on_error;
  if ((rv = np_yamux_new(&c->ym, c->initiator, NULL, &cbs, c)) != 0)
    return failf(EX_REMOTE, "np_yamux_new: %s", np_errname(rv));
  g_phase = "yamux";
  if (c->prelen > 0) { /* bytes after the muxer negotiation */
    size_t n = c->prelen;
    c->prelen = 0;
    if (deliver(c, c->pre, n) != 0)
      return -1;
  }
  return 0;
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; s != NULL && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void json_end(FILE *f) {
  if (g_code != EX_OK) {
    fputs(",\"error\":", f);
    json_str(f, g_err);
    fputs(",\"phase\":", f);
    json_str(f, g_phase);
  }
  fputs("}\n", f);
  fflush(f);
}

/* ---- dial ---------------------------------------------------------------- */

static int do_identify(conn *c, np_identify *idf) {
  pstream *ps;
  np_lp_reader rd;
  size_t off = 0;
  int rv = 0;
  g_phase = "identify";
  if ((ps = open_proto(c, NP_IDENTIFY_PROTOCOL)) == NULL)
    return -1;
  if (wait_for(c, ps, got_eof, "identify") != 0)
    return -1;
  np_lp_init(&rd, NP_IDENTIFY_MSG_MAX);
  while (off < ps->inlen && rv == 0) {
    const uint8_t *msg;
    size_t mlen = 0;
    np_ssize k = np_lp_feed(&rd, ps->in + off, ps->inlen - off, &msg, &mlen);
    if (k < 0) {
      rv = failf(EX_REMOTE, "identify framing: %s", np_errname((int)k));
      break;
    }
    off += (size_t)k;
    if (msg != NULL && (rv = np_identify_parse(idf, msg, mlen)) != 0)
      rv = failf(EX_REMOTE, "identify parse: %s", np_errname(rv));
  }
  if (rv == 0 && (!np_lp_idle(&rd) || idf->nmsgs == 0))
    rv = failf(EX_REMOTE, "identify: %s",
               idf->nmsgs == 0 ? "no message before EOF" : "truncated");
  np_lp_free(&rd);
  if (ps->st != NULL && !ps->fin_sent) {
    ps->want_fin = 1;
    ps_flush(ps);
  }
  return rv;
}

static int do_ping(conn *c, double *rtt_ms) {
  uint8_t data[PING_SIZE];
  uint64_t t0;
  pstream *ps;
  g_phase = "ping";
  if ((ps = open_proto(c, PING_PROTOCOL)) == NULL)
    return -1;
  np_crypto_random(data, sizeof(data));
  t0 = now_us();
  ps_send(ps, data, sizeof(data));
  if (wait_for(c, ps, got_ping, "ping") != 0)
    return -1;
  if (ps->inlen < PING_SIZE)
    return failf(EX_REMOTE, "ping: stream ended after %zu bytes", ps->inlen);
  *rtt_ms = (double)(now_us() - t0) / 1000.0;
  if (memcmp(ps->in, data, PING_SIZE) != 0)
    return failf(EX_REMOTE, "ping: different bytes came back");
  ps->want_fin = 1;
  ps_flush(ps);
  return 0;
}

/* Write |len| bytes on a |proto| stream, FIN, read to EOF: the same bytes
 * must come back. More than a window's worth exercises flow control both
 * ways. */
static int do_echo(conn *c, const char *proto, const uint8_t *data,
                   size_t len) {
  pstream *ps;
  g_phase = "echo";
  if ((ps = open_proto(c, proto)) == NULL)
    return -1;
  if (ps_send(ps, data, len) != 0)
    return -1;
  ps->want_fin = 1;
  if (wait_for(c, ps, got_eof, "echo") != 0)
    return -1;
  if (ps->close_err != 0)
    return failf(EX_REMOTE, "echo: stream reset (%s) after %zu bytes back",
                 np_errname(ps->close_err), ps->inlen);
  if (ps->inlen != len || memcmp(ps->in, data, len) != 0)
    return failf(EX_REMOTE, "echo: %zu bytes back, not the %zu sent%s",
                 ps->inlen, len,
                 ps->inlen == len ? " (contents differ)" : "");
  return 0;
}

/* Let the peer's own identify of us finish (bounded), then GO_AWAY. */
static void wind_down(conn *c, int ms) {
  uint64_t until = now_ms() + (uint64_t)ms;
  int code = g_code;
  while (now_ms() < until && !c->eof) {
    int busy = 0;
    for (size_t i = 0; i < c->nstreams; i++)
      if (c->streams[i]->inbound && c->streams[i]->st != NULL)
        busy = 1;
    if (!busy)
      break;
    if (pump(c, 50) != 0)
      break;
  }
  if (c->ym != NULL && !c->eof) {
    np_yamux_goaway(c->ym, NP_YAMUX_GOAWAY_NORMAL);
    flush_yamux(c);
  }
  if (code == EX_OK && g_code != EX_OK) { /* wind-down trouble is no failure */
    g_code = EX_OK;
    g_err[0] = '\0';
  }
}

static int parse_target(const char *text, struct sockaddr_storage *sa,
                        socklen_t *salen, np_peerid *id) {
  const char *p2p = strstr(text, "/p2p/");
  uint8_t bin[NP_MADDR_MAX];
  np_ssize n;
  if (p2p == NULL || np_peerid_parse(id, p2p + 5, strlen(p2p + 5)) != 0)
    return -1;
  n = np_maddr_parse(text, (size_t)(p2p - text), bin, sizeof(bin));
  if (n <= 0)
    return -1;
  return np_maddr_to_stream_sockaddr(bin, (size_t)n, sa, salen) == 0 &&
                 sa->ss_family == AF_INET
             ? 0
             : -1;
}

static int run_dial(conn *c, const char *target, const char *echo_proto,
                    size_t echo_bytes) {
  struct sockaddr_storage sa;
  socklen_t salen;
  struct sockaddr_in local;
  socklen_t llen = sizeof(local);
  np_peerid want, remote;
  char remote_str[NP_PEERID_STRMAX] = "";
  np_identify idf;
  double rtt = -1;
  int have_echo = 0, echo_ok = 0, rv = 0;
  struct pollfd pf;
  np_identify_init(&idf);
  if (parse_target(target, &sa, &salen, &want) != 0) {
    fprintf(stderr, "tcp_probe: target must be /ip4/A/tcp/PORT/p2p/ID\n");
    return EX_USAGE;
  }
  g_phase = "connect";
  c->initiator = 1;
  if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0) {
    failf(EX_UNREACH, "socket: %s", strerror(errno));
    goto out;
  }
  set_nonblock(c->fd);
  if (connect(c->fd, (struct sockaddr *)&sa, salen) != 0 &&
      errno != EINPROGRESS) {
    failf(EX_UNREACH, "connect: %s", strerror(errno));
    goto out;
  }
  pf.fd = c->fd;
  pf.events = POLLOUT;
  if (poll(&pf, 1, left_ms()) != 1) {
    failf(EX_UNREACH, "connect: timeout");
    goto out;
  } else {
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
      failf(EX_UNREACH, "connect: %s", strerror(err));
      goto out;
    }
  }
  getsockname(c->fd, (struct sockaddr *)&local, &llen);
  sockaddr_ma(&local, c->local_ma, &c->local_ma_len);
  sockaddr_ma((struct sockaddr_in *)&sa, c->remote_ma, &c->remote_ma_len);

  if (secure_and_mux(c, &want, &remote) != 0)
    goto out;
  np_peerid_to_string(&remote, remote_str, sizeof(remote_str));
  if (do_identify(c, &idf) != 0)
    goto out;
  if (do_ping(c, &rtt) != 0)
    goto out;
  for (size_t i = 0; i < idf.nprotocols; i++)
    if (strcmp(idf.protocols[i], echo_proto) == 0)
      have_echo = 1;
  if (have_echo) {
    static const char text[] = "natpeer tcp_probe echo \xe2\x9c\x93";
    uint8_t *buf = malloc(echo_bytes ? echo_bytes : sizeof(text));
    if (buf == NULL) {
      failf(EX_REMOTE, "out of memory");
      goto out;
    }
    if (echo_bytes == 0) {
      echo_bytes = sizeof(text) - 1;
      memcpy(buf, text, echo_bytes);
    } else {
      np_crypto_random(buf, echo_bytes);
    }
    rv = do_echo(c, echo_proto, buf, echo_bytes);
    free(buf);
    if (rv != 0)
      goto out;
    echo_ok = 1;
  }
  g_phase = "close";
  wind_down(c, 2000);
out:
  printf("{\"mode\":\"dial\",\"target\":");
  json_str(stdout, target);
  printf(",\"peer\":");
  json_str(stdout, remote_str);
  printf(",\"muxer\":");
  json_str(stdout, c->ym != NULL ? NP_YAMUX_PROTOCOL : "");
  printf(",\"muxerNegotiation\":");
  json_str(stdout, g_muxer_how);
  if (idf.nmsgs > 0) {
    np_peerid idp;
    char ids[NP_PEERID_STRMAX] = "";
    if (np_identify_peerid(&idf, &idp) == 0)
      np_peerid_to_string(&idp, ids, sizeof(ids));
    printf(",\"identifyPeer\":");
    json_str(stdout, ids);
    printf(",\"agentVersion\":");
    json_str(stdout, idf.agent_version);
    printf(",\"protocolVersion\":");
    json_str(stdout, idf.protocol_version);
    printf(",\"protocols\":[");
    for (size_t i = 0; i < idf.nprotocols; i++) {
      if (i)
        putchar(',');
      json_str(stdout, idf.protocols[i]);
    }
    printf("],\"listenAddrs\":[");
    for (size_t i = 0; i < idf.naddrs; i++) {
      char t[256] = "";
      np_maddr_to_string(idf.addrs[i].data, idf.addrs[i].len, t, sizeof(t));
      if (i)
        putchar(',');
      json_str(stdout, t);
    }
    printf("],\"observedAddr\":");
    if (idf.observed.data != NULL) {
      char t[256] = "";
      np_maddr_to_string(idf.observed.data, idf.observed.len, t, sizeof(t));
      json_str(stdout, t);
    } else {
      printf("null");
    }
    printf(",\"signedRecord\":%s",
           idf.signed_record.data != NULL ? "true" : "false");
  }
  if (rtt >= 0)
    printf(",\"pingMs\":%.3f", rtt);
  if (have_echo)
    printf(",\"echo\":%s,\"echoBytes\":%zu", echo_ok ? "true" : "false",
           echo_bytes);
  printf(",\"servedIdentify\":%u", c->served_identify);
  json_end(stdout);
  np_identify_free(&idf);
  return g_code;
}

/* ---- listen -------------------------------------------------------------- */

static int run_listen(conn *c) {
  struct sockaddr_in sa, peer;
  socklen_t slen = sizeof(sa), plen = sizeof(peer);
  np_peerid remote;
  char remote_str[NP_PEERID_STRMAX] = "";
  struct pollfd pf;
  int lfd, one = 1, secured = 0;
  if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0) {
    failf(EX_UNREACH, "socket: %s", strerror(errno));
    goto out;
  }
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(lfd, 4) != 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &slen) != 0) {
    failf(EX_UNREACH, "listen: %s", strerror(errno));
    goto out;
  }
  sockaddr_ma(&sa, c->local_ma, &c->local_ma_len);
  printf("/ip4/127.0.0.1/tcp/%u/p2p/%s\n", (unsigned)ntohs(sa.sin_port),
         c->self->id_str);
  fflush(stdout);

  g_phase = "accept";
  pf.fd = lfd;
  pf.events = POLLIN;
  if (poll(&pf, 1, left_ms()) != 1) {
    failf(EX_UNREACH, "no connection before the timeout");
    goto out;
  }
  if ((c->fd = accept(lfd, (struct sockaddr *)&peer, &plen)) < 0) {
    failf(EX_UNREACH, "accept: %s", strerror(errno));
    goto out;
  }
  close(lfd);
  lfd = -1;
  set_nonblock(c->fd);
  sockaddr_ma(&peer, c->remote_ma, &c->remote_ma_len);
  c->initiator = 0;
  if (secure_and_mux(c, NULL, &remote) != 0)
    goto out;
  secured = 1;
  np_peerid_to_string(&remote, remote_str, sizeof(remote_str));
  g_phase = "serve";
  /* Serve until the peer hangs up (or says GO_AWAY with nothing left). */
  while (!c->eof && left_ms() > 0) {
    if (pump(c, 100) != 0)
      break;
    if (c->goaway && np_yamux_num_streams(c->ym) == 0)
      break;
  }
  if (g_code == EX_OK && c->served_identify == 0)
    failf(left_ms() == 0 ? EX_UNREACH : EX_REMOTE,
          "the peer never asked for identify");
out:
  if (lfd >= 0)
    close(lfd);
  printf("{\"mode\":\"listen\",\"peer\":");
  json_str(stdout, remote_str);
  printf(",\"secured\":%s,\"muxer\":", secured ? "true" : "false");
  json_str(stdout, c->ym != NULL ? NP_YAMUX_PROTOCOL : "");
  printf(",\"muxerNegotiation\":");
  json_str(stdout, g_muxer_how);
  printf(",\"servedIdentify\":%u,\"servedPing\":%u,\"pingBytes\":%u",
         c->served_identify, c->served_ping, c->ping_bytes);
  printf(",\"peerClosed\":%s", c->eof || c->goaway ? "true" : "false");
  json_end(stdout);
  return g_code;
}

/* ---- main ---------------------------------------------------------------- */

static void conn_free(conn *c) {
  np_yamux_del(c->ym); /* on_close for the live streams first */
  for (size_t i = 0; i < c->nstreams; i++) {
    free(c->streams[i]->in);
    free(c->streams[i]->out);
    free(c->streams[i]);
  }
  np_noise_del(c->nz);
  if (c->fd >= 0)
    close(c->fd);
  free(c->rb);
  free(c->pre);
}

int main(int argc, char **argv) {
  static np_identity self;
  conn c;
  const char *mode = argc > 1 ? argv[1] : "", *target = NULL;
  const char *echo_proto = "/js/echo/1.0.0";
  double timeout = 15;
  size_t echo_bytes = 0;
  int code;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
      timeout = atof(argv[++i]);
    else if (strcmp(argv[i], "--echo") == 0 && i + 1 < argc)
      echo_proto = argv[++i];
    else if (strcmp(argv[i], "--echo-bytes") == 0 && i + 1 < argc)
      echo_bytes = (size_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--no-early-muxer") == 0)
      g_early_muxer = 0;
    else if (argv[i][0] == '/' && target == NULL)
      target = argv[i];
    else
      mode = "";
  }
  if (timeout <= 0 || timeout > 20)
    timeout = 20;
  if (echo_bytes > 64u << 20)
    echo_bytes = 64u << 20;
  if ((strcmp(mode, "dial") != 0 || target == NULL) &&
      strcmp(mode, "listen") != 0) {
    fprintf(stderr, "usage: tcp_probe dial /ip4/A/tcp/PORT/p2p/ID "
                    "[--timeout S] [--echo PROTO] [--echo-bytes N]\n"
                    "                 [--no-early-muxer]\n"
                    "       tcp_probe listen [--timeout S] "
                    "[--no-early-muxer]\n");
    return EX_USAGE;
  }
  g_trace = getenv("NP_PROBE_TRACE") != NULL &&
            strcmp(getenv("NP_PROBE_TRACE"), "0") != 0;
  g_deadline = now_ms() + (uint64_t)(timeout * 1000);
  if (getenv("NP_PROBE_DUMP") != NULL) {
    char path[4096];
    snprintf(path, sizeof(path), "%s.in", getenv("NP_PROBE_DUMP"));
    g_dump_in = fopen(path, "wb");
    snprintf(path, sizeof(path), "%s.out", getenv("NP_PROBE_DUMP"));
    g_dump_out = fopen(path, "wb");
  }
  memset(&c, 0, sizeof(c));
  c.fd = -1;
  c.self = &self;
  if (np_identity_generate(&self) != 0 || (c.rb = malloc(RBUF_CAP)) == NULL) {
    fprintf(stderr, "tcp_probe: no identity\n");
    return EX_REMOTE;
  }
  if (g_trace)
    fprintf(stderr, "tcp_probe: we are %s\n", self.id_str);
  code = strcmp(mode, "dial") == 0
             ? run_dial(&c, target, echo_proto, echo_bytes)
             : run_listen(&c);
  conn_free(&c);
  np_identity_clear(&self);
  if (g_dump_in != NULL)
    fclose(g_dump_in);
  if (g_dump_out != NULL)
    fclose(g_dump_out);
  return code;
}
