/* TCP transport (np_ttcp + np_upgrade + np_bstream) over real sockets on
 * 127.0.0.1, several nodes in one libev loop: dial and streams both ways,
 * 32 MiB on one stream and 16 concurrent streams checked byte for byte, a
 * paused reader bounding what it holds by the window, FIN/RST and
 * stream_close codes, wrong peer ID, refused connect, handshake and idle
 * timeouts, garbage and peers that leave at each handshake step (scripted
 * with the sans-I/O modules on raw sockets), limits, closing a transport
 * with live connections, port 0 and dials from the listen port
 * (SO_REUSEPORT). Ends with no watcher left. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_util.h"
#include "np_log.h"
#include "np_mss.h"
#include "np_noise.h"
#include "np_ttcp.h"
#include "np_yamux.h"

static const char LISTEN[] = "/ip4/127.0.0.1/tcp/0";

static int node_init(tnode *n, const char *name, const np_ttcp_config *cfg,
                     int listen) {
  uint8_t bin[64];
  np_ssize len;
  memset(n, 0, sizeof(*n));
  n->name = name;
  n->inbound_mode = M_ECHO;
  if (np_identity_generate(&n->id) != 0 ||
      np_ttcp_new(&n->t, LOOP, &n->id, cfg, &cu_cbs, n) != 0)
    return -1;
  if (!listen)
    return 0;
  len = np_maddr_parse(LISTEN, strlen(LISTEN), bin, sizeof(bin));
  if (len < 0 || n->t->ops->listen(n->t, bin, (size_t)len) != 0)
    return -1;
  return cu_node_addr(n);
}

static void node_del(tnode *n) {
  if (n->t != NULL)
    n->t->ops->del(n->t);
  n->t = NULL;
}

static uint16_t port_of(const uint8_t *bin, size_t len) {
  size_t off = 0;
  np_maddr_comp c;
  while (np_maddr_next(bin, len, &off, &c) == 1)
    if (c.code == NP_MADDR_TCP && c.vlen == 2)
      return (uint16_t)(c.val[0] << 8 | c.val[1]);
  return 0;
}

/* |n|'s address with another peer's ID. */
static size_t addr_with(const tnode *n, const np_peerid *id, uint8_t *out,
                        size_t cap) {
  np_ssize r;
  size_t base = 0, off = 0;
  np_maddr_comp c;
  while (np_maddr_next(n->addr, n->addrlen, &off, &c) == 1)
    if (c.code != NP_MADDR_P2P)
      base = off;
  memcpy(out, n->addr, base);
  if (id == NULL)
    return base;
  r = np_maddr_append_p2p(out, base, cap, id);
  return r < 0 ? 0 : (size_t)r;
}

static size_t tcp_addr(uint16_t port, uint8_t *out, size_t cap) {
  char text[64];
  np_ssize r;
  snprintf(text, sizeof(text), "/ip4/127.0.0.1/tcp/%u", port);
  r = np_maddr_parse(text, strlen(text), out, cap);
  return r < 0 ? 0 : (size_t)r;
}

/* ---- a scripted peer on a raw socket --------------------------------------
 */

enum { FK_SILENT, FK_GARBAGE, FK_NA, FK_STEPS };

typedef struct fake {
  int lfd, fd;
  ev_io lio, io;
  int dialer, mode;
  int stop_at; /* 1 connected, 2 multistream done, 3 our first Noise
                  message sent, 4 handshake done; at 4, 5: go silent,
                  6: flood (fk_flood), 7: send a forged frame,
                  8: send a frame that is not yamux */
  int step, closed;
  np_mss mss;
  np_noise *nz;
  np_identity id;
  uint8_t in[1 << 17];
  size_t inlen;
} fake;

static const char *const fk_noise[] = {NP_NOISE_PROTOCOL};
static const char *const fk_yamux[] = {NP_YAMUX_PROTOCOL};

static int fk_lookup(const char *name, size_t len, void *ud) {
  fake *f = ud;
  (void)len;
  return f->mode != FK_NA && strcmp(name, NP_NOISE_PROTOCOL) == 0;
}

static void fk_close(fake *f) {
  if (f->fd >= 0) {
    ev_io_stop(EV, &f->io);
    close(f->fd);
    f->fd = -1;
    f->closed = 1;
  }
}

static void fk_send(fake *f, const uint8_t *p, size_t n) {
  while (n > 0 && f->fd >= 0) {
    ssize_t k = send(f->fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EAGAIN) {
      usleep(100);
      continue;
    }
    if (k <= 0)
      return;
    p += k;
    n -= (size_t)k;
  }
}

static void fk_flush(fake *f) {
  const uint8_t *o;
  size_t n;
  if ((n = np_mss_output(&f->mss, &o)) > 0) {
    fk_send(f, o, n);
    np_mss_drain(&f->mss, n);
  }
  if (f->nz != NULL && (n = np_noise_output(f->nz, &o)) > 0) {
    fk_send(f, o, n);
    np_noise_output_drain(f->nz, n);
  }
}

static void fk_consume(fake *f, size_t k) {
  memmove(f->in, f->in + k, f->inlen - k);
  f->inlen -= k;
}

/* Reached step |s|: close there if asked. Returns 1 if closed. */
static int fk_at(fake *f, int s) {
  f->step = s;
  if (f->stop_at == s) {
    fk_close(f);
    return 1;
  }
  return 0;
}

static void fk_advance(fake *f) {
  while (f->fd >= 0) {
    np_ssize k;
    if (f->step < 2) {
      k = np_mss_feed(&f->mss, f->in, f->inlen);
      if (k < 0) {
        fk_flush(f);
        return;
      }
      fk_consume(f, (size_t)k);
      fk_flush(f);
      if (np_mss_state(&f->mss) != NP_MSS_DONE)
        return;
      if (fk_at(f, 2))
        return;
      np_noise_new(&f->nz, f->dialer, &f->id, NULL, fk_yamux, 1);
      fk_flush(f);
      if (f->dialer && fk_at(f, 3))
        return;
      continue;
    }
    if (np_noise_done(f->nz) || f->inlen == 0)
      return;
    k = np_noise_handshake_feed(f->nz, f->in, f->inlen);
    if (k < 0) {
      fk_close(f);
      return;
    }
    fk_consume(f, (size_t)k);
    fk_flush(f);
    if (!f->dialer && f->step == 2 && fk_at(f, 3))
      return;
    if (np_noise_done(f->nz)) {
      if (fk_at(f, 4))
        return;
      if (f->stop_at == 7) { /* a transport frame with a bad tag */
        uint8_t bad[34] = {0, 32, 1, 2, 3};
        fk_send(f, bad, sizeof(bad));
      }
      if (f->stop_at == 8) { /* a sound frame, not yamux inside */
        static const uint8_t junk[12] = {0xff, 0xff, 0xff, 0xff};
        np_noise_encrypt(f->nz, junk, sizeof(junk));
        fk_flush(f);
      }
      if (f->stop_at >= 5)
        ev_io_stop(EV, &f->io); /* then silent, connection open */
      return;
    }
    if (k == 0)
      return;
  }
}

static void fk_read_cb(struct ev_loop *ev, ev_io *w, int revents) {
  fake *f = np_container_of(w, fake, io);
  ssize_t n;
  (void)ev, (void)revents;
  n = recv(f->fd, f->in + f->inlen, sizeof(f->in) - f->inlen, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN)) {
    fk_close(f);
    return;
  }
  if (n < 0)
    return;
  if (f->mode == FK_GARBAGE) {
    f->inlen = 0; /* discard */
    return;
  }
  f->inlen += (size_t)n;
  fk_advance(f);
}

static void fk_start(fake *f) {
  uint8_t junk[1024];
  if (fk_at(f, 1))
    return;
  if (f->mode == FK_SILENT)
    return; /* never reads, never writes */
  ev_io_init(&f->io, fk_read_cb, f->fd, EV_READ);
  ev_io_start(EV, &f->io);
  if (f->mode == FK_GARBAGE) {
    for (size_t i = 0; i < sizeof(junk); i++)
      junk[i] = (uint8_t)(i * 37 + 11);
    fk_send(f, junk, sizeof(junk));
    return;
  }
  if (f->dialer)
    np_mss_init_dialer(&f->mss, fk_noise, 1, 0);
  else
    np_mss_init_listener(&f->mss, fk_lookup, f);
  fk_flush(f);
}

static void fk_accept_cb(struct ev_loop *ev, ev_io *w, int revents) {
  fake *f = np_container_of(w, fake, lio);
  int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK);
  (void)ev, (void)revents;
  if (fd < 0 || f->fd >= 0 || f->closed) {
    if (fd >= 0)
      close(fd);
    return;
  }
  f->fd = fd;
  fk_start(f);
}

/* A scripted listener; its dialable address goes to |addr|. */
static size_t fk_listen(fake *f, int mode, int stop_at, uint8_t *addr,
                        size_t cap) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  size_t n;
  memset(f, 0, sizeof(*f));
  f->fd = -1;
  f->mode = mode;
  f->stop_at = stop_at;
  np_identity_generate(&f->id);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(f->lfd, 4) != 0 ||
      getsockname(f->lfd, (struct sockaddr *)&sa, &sl) != 0)
    return 0;
  ev_io_init(&f->lio, fk_accept_cb, f->lfd, EV_READ);
  ev_io_start(EV, &f->lio);
  n = tcp_addr(ntohs(sa.sin_port), addr, cap);
  return (size_t)np_maddr_append_p2p(addr, n, cap, &f->id.id);
}

/* A scripted dialer to |to|. */
static int fk_dial(fake *f, int mode, int stop_at, const tnode *to) {
  struct sockaddr_in sa;
  memset(f, 0, sizeof(*f));
  f->fd = -1;
  f->lfd = -1;
  f->dialer = 1;
  f->mode = mode;
  f->stop_at = stop_at;
  np_identity_generate(&f->id);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port_of(to->addr, to->addrlen));
  f->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (f->fd < 0 || connect(f->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
    return -1;
  fk_start(f);
  return 0;
}

static void fk_stop(fake *f) {
  fk_close(f);
  if (f->lfd >= 0) {
    ev_io_stop(EV, &f->lio);
    close(f->lfd);
    f->lfd = -1;
  }
  np_noise_del(f->nz);
  f->nz = NULL;
}

/* After the handshake, send yamux pings without reading the answers until
 * the socket blocks or |limit| bytes went out. Returns the bytes sent. */
static size_t fk_flood(fake *f, size_t limit, int *blocked) {
  static uint8_t frames[1000 * NP_YAMUX_HEADER_SIZE];
  size_t sent = 0;
  uint32_t id = 0;
  int stalls = 0;
  const uint8_t *o;
  size_t n;
  *blocked = 0;
  while (sent < limit && f->fd >= 0) {
    if ((n = np_noise_output(f->nz, &o)) == 0) {
      for (size_t i = 0; i < 1000; i++)
        np_yamux_header_encode(frames + i * NP_YAMUX_HEADER_SIZE, NP_YAMUX_PING,
                               NP_YAMUX_SYN, 0, ++id);
      if (np_noise_encrypt(f->nz, frames, sizeof(frames)) <= 0)
        return sent;
      n = np_noise_output(f->nz, &o);
    }
    {
      ssize_t k = send(f->fd, o, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k > 0) {
        np_noise_output_drain(f->nz, (size_t)k);
        sent += (size_t)k;
        stalls = 0;
        continue;
      }
      if (k < 0 && errno != EAGAIN)
        return sent;
    }
    /* Full: give the node time to read; blocked if it does not. */
    cu_run_for(0.05);
    if (++stalls == 10) {
      *blocked = 1;
      return sent;
    }
  }
  return sent;
}

/* ---- tests ------------------------------------------------------------- */

static tnode A, B;

static void test_listen(void) {
  uint8_t got[64], bin[64];
  np_ssize n;
  uint16_t pa = port_of(A.addr, A.addrlen), pb = port_of(B.addr, B.addrlen);
  ok(pa != 0 && pb != 0 && pa != pb, "port 0 picked real ports (%u, %u)", pa,
     pb);
  is_int(A.t->ops->listen_count(A.t), 1, "A has one listen address");
  is_int(A.t->ops->listen_addr(A.t, 1, got, sizeof(got)), NP_ENOENT,
         "no second listen address");
  is_int(A.t->ops->listen_addr(A.t, 0, got, 3), NP_ELIMIT,
         "listen_addr reports a short buffer");
  ok(A.t->ops->can_dial(A.t, A.addr, A.addrlen), "can dial /ip4/.../tcp/P/p2p");
  n = np_maddr_parse("/ip4/127.0.0.1/udp/1/quic-v1", 28, bin, sizeof(bin));
  ok(n > 0 && !A.t->ops->can_dial(A.t, bin, (size_t)n), "cannot dial QUIC");
  is_int(A.t->ops->listen(A.t, bin, (size_t)n), NP_ENOTSUP,
         "listen refuses a QUIC address");
  is_int(A.t->ops->kind, NP_TRANSPORT_TCP, "kind is tcp");
}

static void test_dial(tconn **out) {
  tconn *tc;
  np_conn *c, *bc;
  double t0 = ev_time();
  int rv;
  tc = cu_dial_addr(&A, B.addr, B.addrlen, &rv);
  is_int(rv, 0, "A dials B with /p2p/B");
  WAIT_FOR(tc->up && B.ins == 1 && B.last_in->up);
  ok(tc->up && B.ins == 1, "both sides see the connection up");
  printf("# handshake: %.2f ms\n", (ev_time() - t0) * 1000);
  *out = tc;
  if (!tc->up || B.last_in == NULL)
    return;
  c = tc->c;
  bc = B.last_in->c;
  ok(np_peerid_equal(&c->peer, &B.id.id) &&
         np_peerid_equal(&bc->peer, &A.id.id),
     "each side authenticated the other's peer ID");
  ok(c->kind == NP_TRANSPORT_TCP && !c->inbound && bc->inbound && !c->limited,
     "kind tcp, directions right");
  is_int(port_of(c->laddr, c->laddr_len), port_of(A.addr, A.addrlen),
         "the dial left from A's listen port (SO_REUSEPORT)");
  is_int(port_of(bc->raddr, bc->raddr_len), port_of(A.addr, A.addrlen),
         "B sees A's listen port as the remote port");
  is_int(port_of(c->raddr, c->raddr_len), port_of(B.addr, B.addrlen),
         "A's remote address is B's");
  is_int(port_of(bc->laddr, bc->laddr_len), port_of(B.addr, B.addrlen),
         "B's local address is its listen address");
  WAIT_FOR(np_conn_rtt_us(c) >= 0 && np_conn_rtt_us(bc) >= 0);
  ok(np_conn_rtt_us(c) >= 0 && np_conn_rtt_us(bc) >= 0,
     "yamux ping measured an RTT (%lld us)", (long long)np_conn_rtt_us(c));
  is_int(A.t->ops->conn_count(A.t), 1, "A counts one connection");
}

static void test_streams(tconn *tc) {
  tstream *a, *b;
  a = cu_open(tc, M_SEND, 1, 100000);
  ok(a->s != NULL, "A opens a stream");
  WAIT_FOR(a->closed && B.last_in_stream && B.last_in_stream->closed);
  b = B.last_in_stream;
  ok(a->closed && a->close_err == 0 && a->rcvd == 100000 && !a->mismatch &&
         a->fin_rx,
     "A->B stream: 100000 bytes echoed, FIN both ways, closed with 0 "
     "(err=%d rcvd=%zu)",
     a->close_err, a->rcvd);
  ok(b != NULL && b->closed && b->close_err == 0 && b->rcvd == 100000,
     "B's side of it closed with 0");
  A.inbound_mode = M_ECHO;
  b = cu_open(B.last_in, M_SEND, 2, 70000);
  WAIT_FOR(b->closed && A.last_in_stream && A.last_in_stream->closed);
  ok(b->closed && b->close_err == 0 && b->rcvd == 70000 && !b->mismatch,
     "B->A stream: 70000 bytes echoed, closed with 0");
  ok(A.last_in_stream && A.last_in_stream->close_err == 0,
     "A's inbound side closed with 0");
}

static void test_bulk(tconn *tc) {
  const size_t total = 32u << 20;
  tstream *a;
  double t0;
  B.inbound_mode = M_SINK;
  t0 = ev_time();
  a = cu_open(tc, M_SEND, 0, total);
  WAIT_FOR(a->closed && B.last_in_stream && B.last_in_stream->closed);
  printf("# 32 MiB one stream: %.0f ms, %.0f MiB/s\n", (ev_time() - t0) * 1000,
         32.0 / (ev_time() - t0));
  ok(a->closed && a->close_err == 0 && a->sent == total,
     "32 MiB sent, stream closed with 0");
  ok(B.last_in_stream && B.last_in_stream->rcvd == total &&
         !B.last_in_stream->mismatch && B.last_in_stream->fin_rx,
     "32 MiB arrived whole and in order (%zu)",
     B.last_in_stream ? B.last_in_stream->rcvd : 0);
  B.inbound_mode = M_ECHO;
}

static void test_concurrent(tconn *tc) {
  tstream *ts[16];
  int bad = 0;
  double t0 = ev_time();
  for (int i = 0; i < 16; i++)
    ts[i] = cu_open(tc, M_SEND, 10 + i, 1u << 20);
  WAIT_FOR(cu_streams_closed(ts, 16));
  printf("# 16 x 1 MiB echo: %.0f ms\n", (ev_time() - t0) * 1000);
  for (int i = 0; i < 16; i++)
    if (!ts[i]->closed || ts[i]->close_err != 0 || ts[i]->rcvd != 1u << 20 ||
        ts[i]->mismatch || ts[i]->werr != 0)
      bad++;
  is_int(bad, 0, "16 concurrent streams: 1 MiB each echoed intact");
}

static void test_pause(tconn *tc) {
  const size_t total = 8u << 20;
  tstream *a, *b;
  size_t held, sent;
  B.inbound_mode = M_SINK;
  B.pause_inbound = 1;
  a = cu_open(tc, M_SEND, 0, total);
  cu_run_for(0.5);
  b = B.last_in_stream;
  held = b ? b->rcvd : 0;
  sent = a->sent;
  ok(b != NULL && held > 0 && held <= NP_YAMUX_INITIAL_WINDOW,
     "a paused reader holds at most one window (%zu <= %u)", held,
     NP_YAMUX_INITIAL_WINDOW);
  ok(sent < total, "the writer is stopped (%zu of %zu sent)", sent, total);
  cu_run_for(0.3);
  ok(a->sent == sent && b->rcvd == held,
     "nothing moves while paused (%zu, %zu)", a->sent, b->rcvd);
  b->paused = 0;
  OPV(np_cstream_pause(b->s, 0));
  WAIT_FOR(a->closed && b->closed);
  ok(a->closed && a->close_err == 0 && b->rcvd == total && !b->mismatch,
     "after resume all %zu bytes arrive intact", b->rcvd);
  B.pause_inbound = 0;
  B.inbound_mode = M_ECHO;
}

static void test_fin_rst(tconn *tc) {
  tstream *a, *b;
  uint8_t x[10] = {0};
  /* Half-close: writes after our FIN fail, the peer can still answer. */
  a = cu_open(tc, M_SINK, 0, 0);
  a->no_fin = 1;
  is_int(OP(np_cstream_write(a->s, x, 0)), 0, "empty write is fine");
  is_int(OP(np_cstream_shutdown(a->s)), 0, "shutdown (FIN)");
  is_int(OP(np_cstream_write(a->s, x, 1)), NP_ECLOSED,
         "write after shutdown: NP_ECLOSED");
  is_int(OP(np_cstream_shutdown(a->s)), NP_ECLOSED,
         "second shutdown: NP_ECLOSED");
  is_int((long)OP(np_cstream_write_space(a->s)), 0,
         "no write space after shutdown");
  WAIT_FOR(a->closed);
  ok(a->closed && a->close_err == 0 && a->fin_rx,
     "the echo FINs back: closed with 0");

  /* Reset here: NP_ECANCELED here, NP_ECLOSED there. */
  a = cu_open(tc, M_SINK, 0, 0);
  a->no_fin = 1;
  OP(np_cstream_write(a->s, x, sizeof(x)));
  WAIT_FOR(B.last_in_stream && B.last_in_stream->rcvd == sizeof(x));
  b = B.last_in_stream;
  OPV(np_cstream_reset(a->s));
  ok(!a->closed, "stream_close does not run inside reset");
  WAIT_FOR(a->closed && b->closed);
  is_int(a->close_err, NP_ECANCELED, "reset here: stream_close(NP_ECANCELED)");
  is_int(b->close_err, NP_ECLOSED,
         "reset by the peer: stream_close(NP_ECLOSED)");

  /* The peer resets at open. */
  B.reset_inbound = 1;
  a = cu_open(tc, M_SEND, 0, 1000);
  WAIT_FOR(a->closed && B.last_in_stream && B.last_in_stream->closed);
  is_int(a->close_err, NP_ECLOSED, "peer reset at open: NP_ECLOSED here");
  is_int(B.last_in_stream->close_err, NP_ECANCELED,
         "reset inside stream_open: NP_ECANCELED there");
  B.reset_inbound = 0;
}

static void test_wrong_peer(void) {
  uint8_t addr[128];
  size_t n = addr_with(&B, &A.id.id, addr, sizeof(addr));
  int rv, ins = B.ins;
  size_t base = B.t->ops->conn_count(B.t);
  tconn *tc = cu_dial_addr(&A, addr, n, &rv);
  is_int(rv, 0, "dial B expecting A's peer ID");
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_EPEERID, "conn_down(NP_EPEERID)");
  ok(!tc->up, "no conn_up before it");
  WAIT_FOR(B.t->ops->conn_count(B.t) == base);
  is_int(B.ins, ins, "B saw no inbound connection");
  is_int(B.t->ops->conn_count(B.t), base, "B dropped the half-open one");
}

static void test_refused(void) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  uint8_t addr[64];
  int fd = socket(AF_INET, SOCK_STREAM, 0), rv;
  tconn *tc;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  close(fd); /* a port nobody listens on */
  tc = cu_dial_addr(&A, addr, tcp_addr(ntohs(sa.sin_port), addr, sizeof(addr)),
                    &rv);
  is_int(rv, 0, "dial a closed port");
  ok(!tc->down, "conn_down does not run inside dial");
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_EUNREACH, "connection refused: conn_down(NP_EUNREACH)");
}

/* A listener whose accept queue is full drops our SYN: the connect
 * timeout (not the longer handshake timeout) ends the dial. */
static void test_connect_timeout(void) {
  np_ttcp_config cfg;
  tnode C;
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  uint8_t addr[64];
  int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[4], rv;
  tconn *tc;
  np_ttcp_config_default(&cfg);
  cfg.connect_timeout_ms = 200;
  cfg.upgrade.handshake_timeout_ms = 60000; /* beyond WAIT_FOR */
  ok(node_init(&C, "C", &cfg, 0) == 0, "node C (connect timeout 200 ms)");
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(lfd, (struct sockaddr *)&sa, sizeof(sa));
  listen(lfd, 0);
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  for (int i = 0; i < 4; i++) { /* fill the queue, never accept */
    fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
  }
  cu_run_for(0.05);
  tc = cu_dial_addr(&C, addr, tcp_addr(ntohs(sa.sin_port), addr, sizeof(addr)),
                    &rv);
  WAIT_FOR(tc->down);
  ok(tc->down && tc->err == NP_ETIMEDOUT,
     "SYN dropped by a full listener: conn_down(NP_ETIMEDOUT) (%s)",
     np_errname(tc->err));
  for (int i = 0; i < 4; i++)
    close(fill[i]);
  close(lfd);
  node_del(&C);
}

static void test_scripted(void) {
  np_ttcp_config cfg;
  tnode C;
  fake f;
  uint8_t addr[128];
  size_t n;
  int rv;
  tconn *tc;
  static const char *const what[] = {"", "after accept", "after multistream",
                                     "after its Noise message",
                                     "after the handshake"};

  np_ttcp_config_default(&cfg);
  cfg.upgrade.handshake_timeout_ms = 500;
  cfg.upgrade.keepalive_ms = 100;
  cfg.upgrade.idle_timeout_ms = 400;
  ok(node_init(&C, "C", &cfg, 0) == 0, "node C (short timeouts, no listener)");

  /* A server that accepts and stays silent. */
  n = fk_listen(&f, FK_SILENT, 0, addr, sizeof(addr));
  tc = cu_dial_addr(&C, addr, n, &rv);
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_ETIMEDOUT, "silent server: handshake timeout");
  fk_stop(&f);

  /* A server that sends garbage. */
  n = fk_listen(&f, FK_GARBAGE, 0, addr, sizeof(addr));
  tc = cu_dial_addr(&A, addr, n, &rv);
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_EPROTO, "garbage from the server: conn_down(NP_EPROTO)");
  fk_stop(&f);

  /* A server without /noise. */
  n = fk_listen(&f, FK_NA, 0, addr, sizeof(addr));
  tc = cu_dial_addr(&A, addr, n, &rv);
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_ENOPROTO, "server answers na to /noise: NP_ENOPROTO");
  fk_stop(&f);

  /* Servers that leave at each step. */
  for (int s = 1; s <= 4; s++) {
    n = fk_listen(&f, FK_STEPS, s, addr, sizeof(addr));
    tc = cu_dial_addr(&A, addr, n, &rv);
    WAIT_FOR(tc->down);
    /* The initiator is done at message 2: conn_up from step 3 on. */
    ok(tc->down && tc->err == NP_ECLOSED && tc->up == (s >= 3),
       "server leaves %s: conn_down(NP_ECLOSED)%s (err=%s)", what[s],
       s >= 3 ? " after conn_up" : "", np_errname(tc->err));
    fk_stop(&f);
  }

  /* A server that completes the handshake, then never answers. */
  n = fk_listen(&f, FK_STEPS, 5, addr, sizeof(addr));
  tc = cu_dial_addr(&C, addr, n, &rv);
  WAIT_FOR(tc->down);
  ok(tc->up && tc->err == NP_ETIMEDOUT,
     "unanswered keepalive pings: conn_down(NP_ETIMEDOUT) after conn_up");
  fk_stop(&f);

  /* A forged transport frame after the handshake. */
  n = fk_listen(&f, FK_STEPS, 7, addr, sizeof(addr));
  tc = cu_dial_addr(&A, addr, n, &rv);
  WAIT_FOR(tc->down);
  ok(tc->up && tc->err == NP_ECRYPTO,
     "a frame failing its tag: conn_down(NP_ECRYPTO) after conn_up (%s)",
     np_errname(tc->err));
  fk_stop(&f);

  /* Well encrypted, but not yamux. */
  n = fk_listen(&f, FK_STEPS, 8, addr, sizeof(addr));
  tc = cu_dial_addr(&A, addr, n, &rv);
  WAIT_FOR(tc->down);
  ok(tc->up && tc->err == NP_EPROTO,
     "a yamux protocol violation: conn_down(NP_EPROTO) after conn_up (%s)",
     np_errname(tc->err));
  fk_stop(&f);

  /* A peer that floods pings and never reads the answers: the node stops
   * reading once its output is full, so the peer's sends block. */
  {
    size_t sent;
    int blocked;
    n = fk_listen(&f, FK_STEPS, 6, addr, sizeof(addr));
    tc = cu_dial_addr(&A, addr, n, &rv);
    WAIT_FOR(tc->up && f.step == 4);
    sent = fk_flood(&f, 512u << 20, &blocked);
    ok(blocked && !tc->down,
       "a ping flood without reading blocks the sender (after %zu KiB), the "
       "connection lives",
       sent >> 10);
    fk_stop(&f);
    WAIT_FOR(tc->down);
  }

  /* Clients that send garbage or leave at each step: B drops them
   * without an event. */
  {
    int ins = B.ins, ok_all = 1;
    size_t base = B.t->ops->conn_count(B.t);
    ok(fk_dial(&f, FK_GARBAGE, 0, &B) == 0, "a client sends garbage to B");
    WAIT_FOR(f.closed);
    ok(f.closed, "B closed the garbage connection");
    fk_stop(&f);
    WAIT_FOR(B.t->ops->conn_count(B.t) == base);
    for (int s = 1; s <= 3; s++) {
      if (fk_dial(&f, FK_STEPS, s, &B) != 0)
        ok_all = 0;
      WAIT_FOR(f.closed);
      WAIT_FOR(B.t->ops->conn_count(B.t) == base);
      if (B.t->ops->conn_count(B.t) != base)
        ok_all = 0;
      fk_stop(&f);
    }
    ok(ok_all && B.ins == ins,
       "clients leaving before the handshake ends: no event, nothing left");
    fk_dial(&f, FK_STEPS, 4, &B);
    WAIT_FOR(B.ins == ins + 1 && B.last_in->down);
    ok(B.ins == ins + 1 && B.last_in->down && B.last_in->err == NP_ECLOSED,
       "a client leaving right after the handshake: conn_up, then "
       "conn_down(NP_ECLOSED)");
    fk_stop(&f);
  }
  node_del(&C);
}

static void test_keepalive(void) {
  np_ttcp_config cfg;
  tnode D, E;
  tconn *tc;
  np_ttcp_config_default(&cfg);
  cfg.upgrade.keepalive_ms = 100;
  cfg.upgrade.idle_timeout_ms = 1000;
  ok(node_init(&D, "D", &cfg, 1) == 0 && node_init(&E, "E", &cfg, 1) == 0,
     "nodes D and E (keepalive 100 ms, idle timeout 1 s)");
  tc = cu_dial(&D, &E);
  WAIT_FOR(tc && tc->up);
  cu_run_for(2.0);
  ok(tc && tc->up && !tc->down && E.last_in && !E.last_in->down,
     "an idle connection stays up on keepalive pings (%s %s)",
     tc ? np_errname(tc->err) : "-",
     E.last_in ? np_errname(E.last_in->err) : "-");
  node_del(&D);
  node_del(&E);
}

static void test_inline_off(void) {
  np_ttcp_config cfg;
  tnode F;
  tconn *tc;
  tstream *ts;
  np_ttcp_config_default(&cfg);
  cfg.upgrade.no_inline_muxer = 1;
  ok(node_init(&F, "F", &cfg, 1) == 0, "node F offers no muxer inside Noise");
  tc = cu_dial(&F, &B);
  WAIT_FOR(tc && tc->up);
  ok(tc && tc->up, "F dials B: /yamux/1.0.0 through multistream");
  ts = cu_open(tc, M_SEND, 3, 50000);
  WAIT_FOR(ts->closed);
  ok(ts->close_err == 0 && ts->rcvd == 50000 && !ts->mismatch,
     "a stream works over it");
  tc = cu_dial(&B, &F);
  WAIT_FOR(tc && tc->up);
  ts = cu_open(tc, M_SEND, 4, 50000);
  WAIT_FOR(ts->closed);
  ok(ts->close_err == 0 && ts->rcvd == 50000 && !ts->mismatch,
     "and the other way (F listens)");
  node_del(&F);
}

static void test_limits(void) {
  np_ttcp_config cfg;
  tnode G, H;
  tconn *tc, *tc2;
  tstream *s1, *s2, *s3;
  np_ttcp_config_default(&cfg);
  cfg.upgrade.max_streams = 2;
  cfg.max_connections = 1;
  int ins = B.ins;
  ok(node_init(&G, "G", &cfg, 1) == 0, "node G: 2 streams, 1 connection");
  tc = cu_dial(&G, &B);
  WAIT_FOR(tc && tc->up && B.ins == ins + 1);
  s1 = cu_open(tc, M_SINK, 0, 0);
  s2 = cu_open(tc, M_SINK, 0, 0);
  s3 = cu_open(tc, M_SINK, 0, 0);
  ok(s1->s && s2->s, "two streams open");
  is_int(s3->close_err, NP_ELIMIT, "a third: NP_ELIMIT");
  OPV(np_cstream_reset(s1->s));
  WAIT_FOR(tc->credits > 0);
  ok(tc->credits > 0, "stream_credit after one ended");
  s3 = cu_open(tc, M_SINK, 0, 0);
  ok(s3->s != NULL, "then an open succeeds");
  {
    int rv;
    tconn *x = cu_dial_addr(&G, B.addr, B.addrlen, &rv);
    is_int(rv, NP_ELIMIT, "a second dial: NP_ELIMIT (max_connections)");
    (void)x;
  }
  ok(node_init(&H, "H", NULL, 1) == 0, "node H");
  tc2 = cu_dial(&H, &G);
  WAIT_FOR(tc2 && tc2->down);
  ok(tc2 && tc2->down && !tc2->up,
     "G, full, closes an inbound connection at accept (err=%s)",
     tc2 ? np_errname(tc2->err) : "-");
  is_int(G.t->ops->conn_count(G.t), 1, "G still has one connection");

  /* Closing a transport with live connections: events from inside. */
  {
    tconn *bside = B.last_in;
    ok(bside && bside->up && !bside->down, "B has G's connection");
    node_del(&G);
    ok(s2->closed && s2->close_err == NP_ECANCELED && s3->closed && tc->down &&
           tc->err == NP_ECANCELED,
       "del: streams then the connection end with NP_ECANCELED, inside del");
    WAIT_FOR(bside->down);
    is_int(bside->err, NP_ECLOSED, "the peer sees conn_down(NP_ECLOSED)");
  }
  node_del(&H);
}

static void test_conn_close(void) {
  int ins = B.ins;
  tconn *tc = cu_dial(&A, &B), *bside;
  tstream *ts, *bs;
  WAIT_FOR(tc && tc->up && B.ins == ins + 1 && B.last_in->up);
  bside = B.last_in;
  B.inbound_mode = M_SINK;
  ts = cu_open(tc, M_SINK, 0, 0);
  ts->no_fin = 1;
  OP(np_cstream_write(ts->s, (const uint8_t *)"0123456789", 10));
  OP(np_cstream_write(ts->s, (const uint8_t *)"0123456789", 10));
  WAIT_FOR(B.last_in_stream && B.last_in_stream->rcvd == 20);
  bs = B.last_in_stream;
  OPV(np_conn_close(tc->c, 0));
  ok(!tc->down && !ts->closed, "close: no event inside the call");
  OPV(np_conn_close(tc->c, 0));
  WAIT_FOR(tc->down && bside->down);
  ok(ts->closed && ts->close_err == NP_ECANCELED && tc->err == NP_ECANCELED,
     "closed here: stream and connection end with NP_ECANCELED");
  ok(bs->closed && bside->err == NP_ECLOSED && bs->close_err == NP_ECLOSED,
     "the peer: NP_ECLOSED for both (%d %s %s)", bs->closed,
     np_errname(bside->err), np_errname(bs->close_err));
  B.inbound_mode = M_ECHO;
}

/* The first A->B connection (test_dial) holds the 4-tuple from A's listen
 * port: another dial must leave from an ephemeral port. */
static void test_tuple_taken(tconn *first) {
  tconn *t1 = cu_dial(&A, &B);
  WAIT_FOR(t1 && t1->up);
  ok(first->up && !first->down && t1 && t1->up,
     "a second connection A->B while the first is up");
  if (t1 && t1->up)
    ok(port_of(t1->c->laddr, t1->c->laddr_len) != port_of(A.addr, A.addrlen),
       "it left from an ephemeral port (4-tuple taken)");
  OPV(np_conn_close(t1->c, 0));
  WAIT_FOR(t1->down);
}

/* IPv6 loopback, when the machine has it: listen, dial from the listen
 * port, a stream. */
static void test_ip6(void) {
  static const char l6[] = "/ip6/::1/tcp/0";
  tnode P, Q;
  uint8_t bin[64];
  np_ssize n = np_maddr_parse(l6, strlen(l6), bin, sizeof(bin));
  tconn *tc;
  tstream *ts;
  if (node_init(&P, "P", NULL, 0) != 0 || node_init(&Q, "Q", NULL, 0) != 0 ||
      P.t->ops->listen(P.t, bin, (size_t)n) != 0 ||
      Q.t->ops->listen(Q.t, bin, (size_t)n) != 0 || cu_node_addr(&P) != 0 ||
      cu_node_addr(&Q) != 0) {
    tap_n++;
    printf("ok %d # SKIP no IPv6 loopback here\n", tap_n);
    node_del(&P);
    node_del(&Q);
    return;
  }
  tc = cu_dial(&P, &Q);
  WAIT_FOR(tc && tc->up);
  ts = tc && tc->up ? cu_open(tc, M_SEND, 7, 30000) : NULL;
  if (ts != NULL)
    WAIT_FOR(ts->closed);
  ok(ts != NULL && ts->close_err == 0 && ts->rcvd == 30000 &&
         port_of(tc->c->laddr, tc->c->laddr_len) == port_of(P.addr, P.addrlen),
     "IPv6: dial from the listen port, an echo stream");
  node_del(&P);
  node_del(&Q);
}

int main(void) {
  tconn *tc = NULL;
  signal(SIGPIPE, SIG_IGN);
  if (getenv("NP_TEST_DEBUG") == NULL)
    np_log_set_level(NP_LOG_ERROR);
  EV = ev_loop_new(EVFLAG_AUTO);
  ev_timer_init(&cu_guard, cu_guard_cb, 1., 0.);
  ok(EV != NULL && np_loop_new(&LOOP, EV) == 0, "loop created");
  ok(node_init(&A, "A", NULL, 1) == 0, "node A listens");
  ok(node_init(&B, "B", NULL, 1) == 0, "node B listens");

  test_listen();
  test_dial(&tc);
  if (tc != NULL && tc->up) {
    test_streams(tc);
    test_bulk(tc);
    test_concurrent(tc);
    test_pause(tc);
    test_fin_rst(tc);
  }
  test_wrong_peer();
  test_refused();
  test_connect_timeout();
  test_scripted();
  test_keepalive();
  test_inline_off();
  test_limits();
  test_conn_close();
  if (tc != NULL && tc->up)
    test_tuple_taken(tc);
  test_ip6();

  is_int(cu_violations, 0, "no event inside an ops call, none after the last");
  node_del(&A);
  node_del(&B);
  ok(1, "transports deleted with live connections");
  np_loop_del(LOOP);
  cu_free_all();
  /* ev_run returns only when no watcher is active; alarm() catches a leak. */
  alarm(10);
  ev_run(EV, 0);
  alarm(0);
  ok(1, "no active watchers left");
  ev_loop_destroy(EV);
  return done_testing();
}
