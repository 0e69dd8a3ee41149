/* libp2p TLS over a byte stream (/tls/1.0.0): np_tlsstream on its own
 * (handshake in memory with any split, ALPN muxer choice, peer ID checks,
 * tampered records, bounded buffers), then np_ttcp + np_upgrade over real
 * sockets on 127.0.0.1: TLS-only hosts (inline muxer and multistream
 * inside TLS), mixed preferences, wrong peer ID, an 8 MiB echo through a
 * pausing reader, and scripted peers that leave at each handshake step.
 * Ends with no watcher left. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_util.h"
#include "np_conf.h"
#include "np_log.h"
#include "np_mss.h"
#include "np_tls.h"
#include "np_tlsstream.h"
#include "np_tmem.h"
#include "np_ttcp.h"
#include "np_yamux.h"

static const char LISTEN[] = "/ip4/127.0.0.1/tcp/0";
static const char *const YAMUX[] = {NP_YAMUX_PROTOCOL};

/* ---- np_tlsstream in memory ---------------------------------------------- */

/* Moves |from|'s output into |to| in pieces of at most |step| bytes.
 * Returns the first error of |to|, or 0. */
static int shuttle(np_tlsstream *from, np_tlsstream *to, size_t step) {
  const uint8_t *o;
  size_t n;
  while ((n = np_tlsstream_output(from, &o)) > 0) {
    size_t k = n < step ? n : step;
    np_ssize r = np_tlsstream_feed(to, o, k);
    if (r < 0)
      return (int)r;
    if (r == 0)
      return 0; /* full: the reader must read first */
    np_tlsstream_output_drain(from, (size_t)r);
  }
  return 0;
}

/* Runs a handshake between client |c| and server |s|; returns the first
 * error seen (client's first) or 0 when both are done. */
static int handshake(np_tlsstream *c, np_tlsstream *s, size_t step) {
  for (int i = 0; i < 100 && !(np_tlsstream_done(c) && np_tlsstream_done(s));
       i++) {
    int e1 = shuttle(c, s, step), e2 = shuttle(s, c, step);
    if (e2 != 0)
      return e2;
    if (e1 != 0)
      return e1;
  }
  return np_tlsstream_done(c) && np_tlsstream_done(s) ? 0 : NP_ETIMEDOUT;
}

/* A raw wolfSSL client from np_tls_conn_new_stream with an ALPN list of
 * our choosing, over memory, against an np_tlsstream server. */
typedef struct memio {
  uint8_t in[65536];
  size_t inlen, inoff;
  np_tlsstream *srv;
} memio;

static int mio_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  memio *m = ctx;
  size_t n = m->inlen - m->inoff;
  (void)ssl;
  if (n == 0)
    return WOLFSSL_CBIO_ERR_WANT_READ;
  if (n > (size_t)sz)
    n = (size_t)sz;
  memcpy(buf, m->in + m->inoff, n);
  m->inoff += n;
  return (int)n;
}

static int mio_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  memio *m = ctx;
  (void)ssl;
  return np_tlsstream_feed(m->srv, (const uint8_t *)buf, (size_t)sz) == sz
             ? sz
             : WOLFSSL_CBIO_ERR_CONN_CLOSE;
}

/* Returns 1 if the handshake completed on both sides. */
static int raw_client_vs(np_tls *tc, np_tls *ts, const char *alpn) {
  np_tls_conn *cc = NULL;
  memio *m = calloc(1, sizeof(*m));
  WOLFSSL *ssl;
  int done = 0;
  if (np_tls_conn_new_stream(&cc, tc, 0, NULL, alpn) != 0 ||
      np_tlsstream_new(&m->srv, ts, 0, NULL, YAMUX, 1) != 0)
    goto out;
  ssl = np_tls_conn_native(cc);
  wolfSSL_SSLSetIORecv(ssl, mio_recv);
  wolfSSL_SSLSetIOSend(ssl, mio_send);
  wolfSSL_SetIOReadCtx(ssl, m);
  wolfSSL_SetIOWriteCtx(ssl, m);
  for (int i = 0; i < 20 && !done; i++) {
    const uint8_t *o;
    size_t n;
    int r = wolfSSL_connect(ssl);
    if (r != WOLFSSL_SUCCESS &&
        wolfSSL_get_error(ssl, r) != WOLFSSL_ERROR_WANT_READ)
      break;
    n = np_tlsstream_output(m->srv, &o);
    if (n > sizeof(m->in) - m->inlen)
      break;
    memcpy(m->in + m->inlen, o, n);
    m->inlen += n;
    np_tlsstream_output_drain(m->srv, n);
    done = r == WOLFSSL_SUCCESS && np_tlsstream_done(m->srv);
  }
out:
  np_tls_conn_del(cc);
  np_tlsstream_del(m->srv);
  free(m);
  return done;
}

static void test_alpn(void) {
  np_identity a, b;
  np_tls *ta = NULL, *tb = NULL;
  ok(np_identity_generate(&a) == 0 && np_identity_generate(&b) == 0 &&
         np_tls_new_stream(&ta, &a) == 0 && np_tls_new_stream(&tb, &b) == 0,
     "certificates for the ALPN checks");
  ok(raw_client_vs(ta, tb, "libp2p"), "a client offering only libp2p connects");
  ok(raw_client_vs(ta, tb, "/mplex/6.7.0,libp2p"),
     "one offering another muxer then libp2p connects");
  ok(!raw_client_vs(ta, tb, "h2,http/1.1"),
     "one sharing no ALPN entry is refused");
  np_tls_del(ta);
  np_tls_del(tb);
  np_identity_clear(&a);
  np_identity_clear(&b);
}

static void test_sansio(void) {
  np_identity ic, is, other;
  np_tls *tc = NULL, *ts = NULL, *tq = NULL;
  np_tlsstream *c = NULL, *s = NULL;
  np_peerid p;
  uint8_t buf[NP_TLSSTREAM_RECORD_MAX], *big;
  const uint8_t *o;
  size_t n, got;
  np_ssize r;
  int rv, bad;

  ok(np_identity_generate(&ic) == 0 && np_identity_generate(&is) == 0 &&
         np_identity_generate(&other) == 0,
     "identities");
  ok(np_tls_new_stream(&tc, &ic) == 0 && np_tls_new_stream(&ts, &is) == 0,
     "stream-mode certificates made");
  ok(np_tls_new(&tq, &ic) == 0, "a QUIC-mode np_tls too");
  is_int(np_tlsstream_new(&c, tq, 1, NULL, NULL, 0), NP_EINVAL,
         "a QUIC-mode np_tls is refused for streams");
  np_tls_del(tq);

  /* Both offer yamux: it is chosen in ALPN; one byte at a time. */
  ok(np_tlsstream_new(&c, tc, 1, &is.id, YAMUX, 1) == 0 &&
         np_tlsstream_new(&s, ts, 0, NULL, YAMUX, 1) == 0,
     "client and server created");
  ok(np_tlsstream_output(c, &o) > 0, "the ClientHello is out at once");
  is_int(np_tlsstream_read(c, buf, sizeof(buf)), NP_EINVAL,
         "no read before the handshake");
  is_int(np_tlsstream_write(c, buf, 1), NP_EINVAL,
         "no write before the handshake");
  rv = handshake(c, s, 1);
  is_int(rv, 0, "handshake fed one byte at a time completes");
  ok(np_tlsstream_remote(c, &p) == 0 && np_peerid_equal(&p, &is.id),
     "client sees the server's peer ID");
  ok(np_tlsstream_remote(s, &p) == 0 && np_peerid_equal(&p, &ic.id),
     "server sees the client's peer ID (client certificate required)");
  ok(np_tlsstream_muxer(c) && np_tlsstream_muxer(s) &&
         strcmp(np_tlsstream_muxer(c), NP_YAMUX_PROTOCOL) == 0 &&
         strcmp(np_tlsstream_muxer(s), NP_YAMUX_PROTOCOL) == 0,
     "ALPN picked /yamux/1.0.0 on both sides");

  /* 1 MiB both ways through bounded buffers. */
  big = malloc(1u << 20);
  for (size_t i = 0; i < (1u << 20); i++)
    big[i] = (uint8_t)(i * 13 + (i >> 11));
  {
    size_t sent = 0, maxout = 0;
    bad = 0;
    got = 0;
    for (int guard = 0; guard < 100000 && got < (1u << 20); guard++) {
      if (sent < (1u << 20)) {
        r = np_tlsstream_write(c, big + sent, (1u << 20) - sent);
        if (r < 0)
          break;
        sent += (size_t)r;
      }
      n = np_tlsstream_output(c, &o);
      if (n > maxout)
        maxout = n;
      if (shuttle(c, s, 7000) != 0)
        break;
      while ((r = np_tlsstream_read(s, buf, sizeof(buf))) > 0) {
        if (memcmp(buf, big + got, (size_t)r) != 0)
          bad = 1;
        got += (size_t)r;
      }
      if (r < 0)
        break;
    }
    ok(got == (1u << 20) && !bad, "1 MiB client->server intact (%zu)", got);
    ok(maxout <= NP_TLSSTREAM_OUT_SOFT + NP_TLSSTREAM_RECORD_MAX + 512,
       "output stayed under the soft cap plus one record (%zu)", maxout);
    r = np_tlsstream_write(c, big, 1u << 20);
    ok(r > 0 && (size_t)r < (1u << 20),
       "write takes part of 1 MiB when nobody drains (%zd)", (ssize_t)r);
    r = np_tlsstream_write(c, big, 1u << 20);
    is_int(r, 0, "and nothing more until the output drains");
    n = np_tlsstream_output(c, &o);
    r = np_tlsstream_feed(s, o, n);
    ok(r > 0 && (size_t)r <= NP_TLSSTREAM_RX_MAX && (size_t)r < n,
       "feed takes at most its input bound (%zd of %zu)", (ssize_t)r, n);
    np_tlsstream_output_drain(c, (size_t)r);
    is_int(np_tlsstream_feed(s, o, 1), 0, "full input takes nothing more");
    while (np_tlsstream_read(s, buf, sizeof(buf)) > 0)
      ;
    ok(np_tlsstream_feed(s, buf, 0) == 0, "reading freed the input");
  }

  /* Server -> client, and a tampered record. */
  r = np_tlsstream_write(s, big, 1000);
  is_int(r, 1000, "server writes 1000 bytes");
  n = np_tlsstream_output(s, &o);
  {
    uint8_t *t = malloc(n);
    memcpy(t, o, n);
    t[n - 3] ^= 0x40;
    np_tlsstream_output_drain(s, n);
    r = np_tlsstream_feed(c, t, n);
    ok(r == (np_ssize)n, "the tampered record is taken");
    r = np_tlsstream_read(c, buf, sizeof(buf));
    is_int(r, NP_ECRYPTO, "a tampered record fails with NP_ECRYPTO");
    is_int(np_tlsstream_read(c, buf, sizeof(buf)), NP_ECRYPTO,
           "and the error sticks");
    free(t);
  }
  np_tlsstream_del(c);
  np_tlsstream_del(s);

  /* No common muxer: ALPN lands on "libp2p", muxer NULL. */
  ok(np_tlsstream_new(&c, tc, 1, NULL, NULL, 0) == 0 &&
         np_tlsstream_new(&s, ts, 0, NULL, YAMUX, 1) == 0,
     "client offering no muxer");
  is_int(handshake(c, s, 100000), 0, "handshake completes");
  ok(np_tlsstream_muxer(c) == NULL && np_tlsstream_muxer(s) == NULL,
     "no inline muxer: multistream inside TLS");
  np_tlsstream_del(c);
  np_tlsstream_del(s);

  /* Wrong expected peer. */
  ok(np_tlsstream_new(&c, tc, 1, &other.id, YAMUX, 1) == 0 &&
         np_tlsstream_new(&s, ts, 0, NULL, YAMUX, 1) == 0,
     "client expecting another peer");
  rv = handshake(c, s, 100000);
  is_int(np_tlsstream_error(c), NP_EPEERID, "client fails with NP_EPEERID");
  ok(!np_tlsstream_done(s), "server never completes");
  ok(strstr(np_tlsstream_why(c), "mismatch") != NULL, "why: %s",
     np_tlsstream_why(c));
  (void)rv;
  np_tlsstream_del(c);
  np_tlsstream_del(s);

  /* Garbage to a server. */
  ok(np_tlsstream_new(&s, ts, 0, NULL, YAMUX, 1) == 0, "server");
  memset(buf, 'G', 64);
  r = np_tlsstream_feed(s, buf, 64);
  ok(r < 0, "garbage instead of a ClientHello fails (%s)", np_errname((int)r));
  np_tlsstream_del(s);
  is_int(np_tlsstream_new(&s, ts, 0, &other.id, NULL, 0), NP_EINVAL,
         "a server takes no expected peer");
  free(big);
  np_tls_del(tc);
  np_tls_del(ts);
  np_identity_clear(&ic);
  np_identity_clear(&is);
  np_identity_clear(&other);
}

/* ---- hosts over TCP --------------------------------------------------------
 */

static int node_init(tnode *n, const char *name, const uint8_t *sec,
                     int no_inline) {
  uint8_t bin[64];
  np_ttcp_config cfg;
  np_ssize len;
  memset(n, 0, sizeof(*n));
  n->name = name;
  n->inbound_mode = M_ECHO;
  np_ttcp_config_default(&cfg);
  memcpy(cfg.upgrade.security, sec, NP_UPGRADE_SEC_MAX);
  cfg.upgrade.no_inline_muxer = no_inline;
  if (np_identity_generate(&n->id) != 0 ||
      np_ttcp_new(&n->t, LOOP, &n->id, &cfg, &cu_cbs, n) != 0)
    return -1;
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

static const uint8_t SEC_TLS[NP_UPGRADE_SEC_MAX] = {NP_UPGRADE_TLS, 0};
static const uint8_t SEC_NOISE[NP_UPGRADE_SEC_MAX] = {NP_UPGRADE_NOISE, 0};
static const uint8_t SEC_TLS_NOISE[NP_UPGRADE_SEC_MAX] = {NP_UPGRADE_TLS,
                                                          NP_UPGRADE_NOISE};

static tnode T1, T2, T3, N1, M1;

/* Dial |to| from |from|; returns the tconn once up or down. */
static tconn *dial_wait(tnode *from, tnode *to) {
  int rv;
  tconn *tc = cu_dial_addr(from, to->addr, to->addrlen, &rv);
  if (rv != 0)
    return tc;
  WAIT_FOR(tc->up || tc->down);
  return tc;
}

static void echo_check(tconn *tc, tnode *peer, size_t total, int k,
                       const char *what) {
  tstream *a = cu_open(tc, M_SEND, k, total);
  double t0 = ev_time();
  peer->inbound_mode = M_ECHO;
  WAIT_FOR(a->closed);
  ok(a->closed && a->close_err == 0 && a->rcvd == total && !a->mismatch &&
         a->fin_rx,
     "%s: %zu bytes echoed intact, FIN, closed with 0 (err=%d rcvd=%zu, "
     "%.0f ms)",
     what, total, a->close_err, a->rcvd, (ev_time() - t0) * 1000);
}

static void test_tls_only(void) {
  tconn *tc = dial_wait(&T1, &T2);
  np_conn *bc;
  ok(tc->up, "TLS-only T1 dials TLS-only T2: up");
  if (!tc->up)
    return;
  WAIT_FOR(T2.last_in != NULL && T2.last_in->up);
  bc = T2.last_in ? T2.last_in->c : NULL;
  ok(np_peerid_equal(&tc->c->peer, &T2.id.id) && bc &&
         np_peerid_equal(&bc->peer, &T1.id.id),
     "each side verified the other's peer ID");
  echo_check(tc, &T2, 100000, 1, "T1->T2 stream");
  /* The other direction on the same connection. */
  if (T2.last_in) {
    T1.inbound_mode = M_ECHO;
    echo_check(T2.last_in, &T1, 70000, 2, "T2->T1 stream");
  }
  /* 8 MiB through an echo that pauses its inbound side whenever it
   * cannot write back (back-pressure over yamux, TLS and TCP). */
  echo_check(tc, &T2, 8u << 20, 3, "8 MiB echo");
  WAIT_FOR(np_conn_rtt_us(tc->c) >= 0);
  ok(np_conn_rtt_us(tc->c) >= 0, "yamux ping over TLS measured an RTT");
  OPV(np_conn_close(tc->c, 0));
  WAIT_FOR(tc->down && T2.last_in->down);
  ok(tc->down && T2.last_in->down, "closed: both sides down");
}

static void test_multistream_muxer(void) {
  /* T3 offers no inline muxer: yamux is negotiated inside TLS. */
  tconn *tc = dial_wait(&T3, &T1);
  ok(tc->up, "TLS-only, no ALPN muxer on the dialer: up");
  if (tc->up)
    echo_check(tc, &T1, 300000, 4, "stream over multistream-selected yamux");
  tc = dial_wait(&T1, &T3);
  ok(tc->up, "the same with the listener offering no ALPN muxer");
  if (tc->up) {
    echo_check(tc, &T3, 300000, 5, "stream");
    OPV(np_conn_close(tc->c, 0));
    WAIT_FOR(tc->down);
  }
}

static void test_mixed(void) {
  tconn *tc;
  /* A TLS-only dialer against a Noise-only listener: no common protocol,
   * which also shows T1 really offers only TLS. */
  tc = dial_wait(&T1, &N1);
  ok(tc->down && !tc->up, "TLS-only dialer vs Noise-only listener fails");
  is_int(tc->err, NP_ENOPROTO, "with NP_ENOPROTO");
  tc = dial_wait(&N1, &T1);
  ok(tc->down && tc->err == NP_ENOPROTO, "and the other way round (%s)",
     np_errname(tc->err));
  /* M1 prefers TLS, then Noise: with N1 they settle on Noise. */
  tc = dial_wait(&M1, &N1);
  ok(tc->up, "tls-first dialer vs Noise-only listener: up over Noise");
  if (tc->up)
    echo_check(tc, &N1, 50000, 6, "stream");
  tc = dial_wait(&N1, &M1);
  ok(tc->up, "Noise-only dialer vs tls-first listener: up");
  if (tc->up)
    echo_check(tc, &M1, 50000, 7, "stream");
  /* M1 against a TLS-only host: TLS, its first choice. */
  tc = dial_wait(&M1, &T2);
  ok(tc->up, "tls-first dialer vs TLS-only listener: up");
  if (tc->up)
    echo_check(tc, &T2, 50000, 8, "stream");
}

static void test_wrong_peer(void) {
  uint8_t addr[128];
  size_t base = 0, off = 0;
  np_maddr_comp comp;
  np_ssize r;
  int rv, ins = T2.ins;
  size_t before = T2.t->ops->conn_count(T2.t);
  tconn *tc;
  while (np_maddr_next(T2.addr, T2.addrlen, &off, &comp) == 1)
    if (comp.code != NP_MADDR_P2P)
      base = off;
  memcpy(addr, T2.addr, base);
  r = np_maddr_append_p2p(addr, base, sizeof(addr), &T3.id.id);
  tc = cu_dial_addr(&T1, addr, (size_t)r, &rv);
  is_int(rv, 0, "dial T2 expecting T3's peer ID");
  WAIT_FOR(tc->down);
  is_int(tc->err, NP_EPEERID, "conn_down(NP_EPEERID) over TLS");
  ok(!tc->up, "no conn_up before it");
  WAIT_FOR(T2.t->ops->conn_count(T2.t) == before);
  is_int(T2.ins, ins, "T2 saw no inbound connection");
  is_int((int)T2.t->ops->conn_count(T2.t), (int)before,
         "T2 dropped the half-open one");
}

/* ---- scripted peers on raw sockets ------------------------------------- */

static int raw_connect(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

static void raw_send(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0)
      return;
    p += k;
    n -= (size_t)k;
  }
}

static void raw_mss(int fd, const char *proto) {
  uint8_t m[128];
  np_ssize k = np_mss_encode("/multistream/1.0.0", 18, m, sizeof(m));
  raw_send(fd, m, (size_t)k);
  k = np_mss_encode(proto, strlen(proto), m, sizeof(m));
  raw_send(fd, m, (size_t)k);
}

/* Reads what is there after running the loop a little. */
static size_t raw_drain(int fd, uint8_t *buf, size_t cap) {
  size_t got = 0;
  cu_run_for(0.1);
  for (;;) {
    ssize_t k = recv(fd, buf + got, cap - got, 0);
    if (k <= 0 || (got += (size_t)k) == cap)
      break;
  }
  return got;
}

/* A dialer to T2 that leaves at |step|: 1 after connecting, 2 after the
 * multistream proposal, 3 after the ClientHello, 4 after reading the
 * server's flight (no Finished), 5 sending garbage as its handshake. */
static void leave_at(int step, np_tls *tls) {
  size_t before = T2.t->ops->conn_count(T2.t);
  int ins = T2.ins, fd = raw_connect(port_of(T2.addr, T2.addrlen));
  np_tlsstream *c = NULL;
  static uint8_t buf[1 << 16];
  const uint8_t *o;
  size_t n;
  ok(fd >= 0, "step %d: raw dialer connected", step);
  if (fd < 0)
    return;
  WAIT_FOR(T2.t->ops->conn_count(T2.t) == before + 1);
  if (step >= 2)
    raw_mss(fd, NP_TLSSTREAM_PROTOCOL);
  if (step == 5) {
    memset(buf, 0x16, 600);
    raw_send(fd, buf, 600);
  }
  if (step >= 3 && step <= 4 &&
      np_tlsstream_new(&c, tls, 1, &T2.id.id, YAMUX, 1) == 0) {
    n = np_tlsstream_output(c, &o);
    raw_send(fd, o, n);
    np_tlsstream_output_drain(c, n);
  }
  if (step == 4 && c != NULL) {
    /* The listener's header, echo and server flight; feed the flight past
     * the multistream bytes so the client checks it. */
    size_t got = raw_drain(fd, buf, sizeof(buf)), skip = 0;
    const char *echo = "/tls/1.0.0\n";
    uint8_t *e = memmem(buf, got, echo, strlen(echo));
    if (e != NULL)
      skip = (size_t)(e - buf) + strlen(echo);
    ok(got > skip + 100, "step 4: the server answered (%zu bytes)", got);
    if (got > skip)
      np_tlsstream_feed(c, buf + skip, got - skip);
    ok(!np_tlsstream_done(c) || np_tlsstream_error(c) == 0,
       "step 4: the server's flight verifies on our side");
  }
  close(fd);
  WAIT_FOR(T2.t->ops->conn_count(T2.t) == before);
  is_int((int)T2.t->ops->conn_count(T2.t), (int)before,
         "step %d: T2 dropped the connection", step);
  is_int(T2.ins, ins, "step %d: and reported none", step);
  np_tlsstream_del(c);
}

/* A listener that answers multistream and closes once the dialer's
 * ClientHello arrives (|step| 1) or right away (0). */
typedef struct fake_l {
  int lfd, fd, step;
  ev_io lio, io;
} fake_l;

static void fl_read(struct ev_loop *ev, ev_io *w, int revents) {
  fake_l *f = w->data;
  uint8_t buf[4096];
  ssize_t k = recv(f->fd, buf, sizeof(buf), 0);
  (void)revents;
  if (k > 0 && (f->step == 2 || memmem(buf, (size_t)k, "\x16\x03", 2) == NULL))
    return; /* multistream lines; wait for the ClientHello (2: forever) */
  ev_io_stop(ev, w);
  close(f->fd);
  f->fd = -1;
}

static void fl_accept(struct ev_loop *ev, ev_io *w, int revents) {
  fake_l *f = w->data;
  (void)revents;
  f->fd = accept(f->lfd, NULL, NULL);
  if (f->fd < 0)
    return;
  ev_io_stop(ev, w);
  if (f->step == 0) {
    close(f->fd);
    f->fd = -1;
    return;
  }
  raw_mss(f->fd, NP_TLSSTREAM_PROTOCOL); /* header and the echo */
  ev_io_init(&f->io, fl_read, f->fd, EV_READ);
  f->io.data = f;
  ev_io_start(ev, &f->io);
}

static void dial_leaver(int step) {
  fake_l f;
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  uint8_t addr[128];
  char text[NP_PEERID_STRMAX + 64], idstr[NP_PEERID_STRMAX];
  int rv;
  tconn *tc;
  memset(&f, 0, sizeof(f));
  f.step = step;
  f.fd = -1;
  f.lfd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(f.lfd, 4) != 0 ||
      getsockname(f.lfd, (struct sockaddr *)&sa, &sl) != 0) {
    ok(0, "fake listener");
    close(f.lfd);
    return;
  }
  ev_io_init(&f.lio, fl_accept, f.lfd, EV_READ);
  f.lio.data = &f;
  ev_io_start(EV, &f.lio);
  np_peerid_to_string(&T2.id.id, idstr, sizeof(idstr));
  snprintf(text, sizeof(text), "/ip4/127.0.0.1/tcp/%u/p2p/%s",
           ntohs(sa.sin_port), idstr);
  rv = (int)np_maddr_parse(text, strlen(text), addr, sizeof(addr));
  tc = cu_dial_addr(&T1, addr, (size_t)rv, &rv);
  is_int(rv, 0, "dial a listener that leaves (%d)", step);
  WAIT_FOR(tc->down);
  ok(tc->down && !tc->up && tc->err != 0, "listener leaving %s: conn_down(%s)",
     step ? "after the ClientHello" : "at once", np_errname(tc->err));
  ev_io_stop(EV, &f.lio);
  ev_io_stop(EV, &f.io);
  if (f.fd >= 0)
    close(f.fd);
  close(f.lfd);
}

static void test_leavers(void) {
  np_identity id;
  np_tls *tls = NULL;
  ok(np_identity_generate(&id) == 0 && np_tls_new_stream(&tls, &id) == 0,
     "a scripted peer's certificate");
  for (int step = 1; step <= 5; step++)
    leave_at(step, tls);
  np_tls_del(tls);
  np_identity_clear(&id);
  dial_leaver(0);
  dial_leaver(1);
}

/* Handshakes under way when their transports go: a raw dialer that sent
 * its ClientHello to T2 (T2 holds a TLS server mid-handshake) and a dial
 * from T1 to a listener that answers multistream and nothing more (T1
 * holds a TLS client waiting for the server flight). */
static int pend_fd = -1;
static fake_l pend_l;
static tconn *pend_tc;

static void pending_start(np_tls *tls) {
  np_tlsstream *c = NULL;
  const uint8_t *o;
  size_t n, before = T2.t->ops->conn_count(T2.t);
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  uint8_t addr[128];
  char text[NP_PEERID_STRMAX + 64], idstr[NP_PEERID_STRMAX];
  int rv;
  pend_fd = raw_connect(port_of(T2.addr, T2.addrlen));
  raw_mss(pend_fd, NP_TLSSTREAM_PROTOCOL);
  if (np_tlsstream_new(&c, tls, 1, NULL, YAMUX, 1) == 0) {
    n = np_tlsstream_output(c, &o);
    raw_send(pend_fd, o, n);
  }
  np_tlsstream_del(c);
  WAIT_FOR(T2.t->ops->conn_count(T2.t) == before + 1);
  ok(T2.t->ops->conn_count(T2.t) == before + 1,
     "T2 holds a handshake under way");
  /* a listener that stops after multistream: step 2 never closes */
  memset(&pend_l, 0, sizeof(pend_l));
  pend_l.step = 2;
  pend_l.fd = -1;
  pend_l.lfd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(pend_l.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(pend_l.lfd, 4) != 0 ||
      getsockname(pend_l.lfd, (struct sockaddr *)&sa, &sl) != 0)
    return;
  ev_io_init(&pend_l.lio, fl_accept, pend_l.lfd, EV_READ);
  pend_l.lio.data = &pend_l;
  ev_io_start(EV, &pend_l.lio);
  np_peerid_to_string(&T2.id.id, idstr, sizeof(idstr));
  snprintf(text, sizeof(text), "/ip4/127.0.0.1/tcp/%u/p2p/%s",
           ntohs(sa.sin_port), idstr);
  rv = (int)np_maddr_parse(text, strlen(text), addr, sizeof(addr));
  pend_tc = cu_dial_addr(&T1, addr, (size_t)rv, &rv);
  cu_run_for(0.3);
  ok(rv == 0 && !pend_tc->up && !pend_tc->down,
     "T1's dial waits in the TLS handshake");
}

static void pending_end(void) {
  ok(pend_tc != NULL && pend_tc->down && pend_tc->err == NP_ECANCELED,
     "deleting T1 ended its pending dial with NP_ECANCELED (%s)",
     pend_tc ? np_errname(pend_tc->err) : "-");
  ev_io_stop(EV, &pend_l.lio);
  ev_io_stop(EV, &pend_l.io);
  if (pend_l.fd >= 0)
    close(pend_l.fd);
  if (pend_l.lfd > 0)
    close(pend_l.lfd);
  if (pend_fd >= 0)
    close(pend_fd);
}

/* TLS over the in-memory byte stream with a 2 KiB pipe each way: every
 * record crosses in pieces and both directions push back constantly. */
static void test_memory(void) {
  np_tmem_net *net = NULL;
  np_tmem_config mc;
  tnode *x = cu_alloc(sizeof(*x)), *y = cu_alloc(sizeof(*y));
  uint8_t bin[64];
  np_ssize len;
  tconn *tc;
  np_tmem_config_default(&mc);
  mc.pipe_bytes = 2048;
  memcpy(mc.upgrade.security, SEC_TLS, NP_UPGRADE_SEC_MAX);
  x->name = "X";
  y->name = "Y";
  x->inbound_mode = y->inbound_mode = M_ECHO;
  ok(np_tmem_net_new(&net, LOOP) == 0 && np_identity_generate(&x->id) == 0 &&
         np_identity_generate(&y->id) == 0 &&
         np_tmem_new(&x->t, net, &x->id, &mc, &cu_cbs, x) == 0 &&
         np_tmem_new(&y->t, net, &y->id, &mc, &cu_cbs, y) == 0,
     "two TLS-only in-memory hosts");
  len = np_maddr_parse("/memory/tls-y", 13, bin, sizeof(bin));
  ok(len > 0 && y->t->ops->listen(y->t, bin, (size_t)len) == 0 &&
         cu_node_addr(y) == 0,
     "Y listens on /memory/tls-y");
  tc = dial_wait(x, y);
  ok(tc->up && np_peerid_equal(&tc->c->peer, &y->id.id),
     "X reaches Y over TLS on a byte-stream pair");
  if (tc->up) {
    echo_check(tc, y, 2u << 20, 9, "2 MiB echo through 2 KiB pipes");
    OPV(np_conn_close(tc->c, 0));
    WAIT_FOR(tc->down);
  }
  x->t->ops->del(x->t);
  y->t->ops->del(y->t);
  np_tmem_net_del(net);
}

static void test_config(void) {
  np_upgrade *u = NULL;
  np_upgrade_config cfg;
  np_identity id;
  np_upgrade_config_default(&cfg);
  ok(cfg.security[0] == NP_UPGRADE_NOISE && cfg.security[1] == NP_UPGRADE_TLS,
     "default: noise first, then tls");
  np_identity_generate(&id);
  cfg.security[0] = NP_UPGRADE_TLS;
  cfg.security[1] = NP_UPGRADE_TLS;
  is_int(np_upgrade_new(&u, LOOP, &id, NP_TRANSPORT_TCP, &cfg, &cu_cbs, NULL),
         NP_EINVAL, "a repeated protocol is refused");
  cfg.security[1] = 9;
  is_int(np_upgrade_new(&u, LOOP, &id, NP_TRANSPORT_TCP, &cfg, &cu_cbs, NULL),
         NP_EINVAL, "an unknown one too");
  np_identity_clear(&id);
}

/* [host] security parses into what np_upgrade_config.security takes. */
static int conf_sec(const char *value, char *err, size_t errlen) {
  char text[128];
  np_conf *c = NULL;
  int rv, out;
  if (value == NULL)
    rv = np_conf_new_default(&c);
  else {
    snprintf(text, sizeof(text), "[host]\nsecurity = %s\n", value);
    rv = np_conf_load_string(&c, "t.ini", text, strlen(text), err, errlen);
  }
  if (rv != 0)
    return -1;
  out = c->host.security;
  np_conf_del(c);
  return out;
}

static void test_conf_key(void) {
  char err[256] = "";
  is_int(conf_sec(NULL, err, sizeof(err)),
         NP_UPGRADE_NOISE | NP_UPGRADE_TLS << 8, "default: noise tls");
  is_int(conf_sec("tls noise", err, sizeof(err)),
         NP_UPGRADE_TLS | NP_UPGRADE_NOISE << 8, "security = tls noise");
  is_int(conf_sec("TLS", err, sizeof(err)), NP_UPGRADE_TLS,
         "security = TLS (one, any case)");
  is_int(conf_sec("noise,tls", err, sizeof(err)),
         NP_UPGRADE_NOISE | NP_UPGRADE_TLS << 8, "commas separate too");
  is_int(conf_sec("tls tls", err, sizeof(err)), -1, "a repeat is refused");
  ok(strstr(err, "security") != NULL, "with a message naming the key: %s", err);
  is_int(conf_sec("plaintext", err, sizeof(err)), -1,
         "an unknown protocol is refused");
  is_int(conf_sec("noise tls noise", err, sizeof(err)), -1,
         "three entries are refused");
  is_int(conf_sec(",", err, sizeof(err)), -1, "no entry is refused");
}

int main(void) {
  (void)cu_dial;
  (void)cu_streams_closed;
  signal(SIGPIPE, SIG_IGN);
  if (getenv("NP_TEST_DEBUG") == NULL)
    np_log_set_level(NP_LOG_ERROR);
  else
    np_log_set_level(NP_LOG_DEBUG);
  EV = ev_loop_new(EVFLAG_AUTO);
  ev_timer_init(&cu_guard, cu_guard_cb, 1., 0.);
  ok(EV != NULL && np_loop_new(&LOOP, EV) == 0, "loop created");

  test_sansio();
  test_alpn();
  test_config();
  test_conf_key();
  ok(node_init(&T1, "T1", SEC_TLS, 0) == 0 &&
         node_init(&T2, "T2", SEC_TLS, 0) == 0 &&
         node_init(&T3, "T3", SEC_TLS, 1) == 0 &&
         node_init(&N1, "N1", SEC_NOISE, 0) == 0 &&
         node_init(&M1, "M1", SEC_TLS_NOISE, 0) == 0,
     "five hosts listen (TLS-only x3, Noise-only, tls-then-noise)");
  test_tls_only();
  test_multistream_muxer();
  test_mixed();
  test_wrong_peer();
  test_leavers();
  test_memory();
  {
    np_identity pid;
    np_tls *ptls = NULL;
    if (np_identity_generate(&pid) == 0 && np_tls_new_stream(&ptls, &pid) == 0)
      pending_start(ptls);
    np_tls_del(ptls);
    np_identity_clear(&pid);
  }

  is_int(cu_violations, 0, "no event inside an ops call, none after the last");
  node_del(&T1);
  node_del(&T2);
  node_del(&T3);
  node_del(&N1);
  node_del(&M1);
  ok(1, "transports deleted with live connections");
  pending_end();
  np_loop_del(LOOP);
  cu_free_all();
  alarm(10);
  ev_run(EV, 0);
  alarm(0);
  ok(1, "no active watchers left");
  ev_loop_destroy(EV);
  return done_testing();
}
