/* QUIC for hole punching (DCUtR, libp2p-wire.md §5, §14), on 127.0.0.1:
 *  - ICMP port-unreachable during a handshake does not fail the dial: a
 *    dial to a port with no listener yet (the kernel answers its Initial
 *    with ICMP) succeeds once a listener appears there ~300 ms later;
 *  - an established connection still fails at once on ICMP (its peer's
 *    process died);
 *  - np_quic_punch sends NP_QUIC_PUNCH_LEN random bytes from the listen
 *    port, which a receiving endpoint drops silently (no connection, no
 *    answer), and needs a listening socket;
 *  - keep-alive PINGs keep an idle connection past the idle timeout;
 *  - np_ttcp_punch (TCP simultaneous open for DCUtR) leaves from a listen
 *    port or not at all, and a refused punch leaves nothing behind.
 * Every wait is bounded. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_loop.h"
#include "np_multiaddr.h"
#include "np_quic.h"
#include "np_tls.h"
#include "np_tquic.h"
#include "np_ttcp.h"
#include "tap.h"

static struct ev_loop *EV;

/* Run the loop until |cond| holds or |secs| pass. */
#define WAIT_FOR(cond, secs)                                                   \
  do {                                                                         \
    double end_ = ev_time() + (secs);                                          \
    while (!(cond) && ev_time() < end_) {                                      \
      ev_now_update(EV);                                                       \
      ev_run(EV, EVRUN_NOWAIT);                                                \
      if (!(cond))                                                             \
        usleep(500);                                                           \
    }                                                                          \
  } while (0)

typedef struct tconn {
  np_qconn *c;
  int up, down, err;
  double t_up;
} tconn;

typedef struct ep {
  np_identity id;
  np_tls *tls;
  np_quic *q;
  uint8_t addr[64];
  size_t addrlen;
  int ups, downs;
  tconn in[4];
  int nin;
} ep;

static void on_conn_up(np_qconn *c, void *ud) {
  ep *e = ud;
  tconn *t = np_quic_conn_ud(c);
  if (t == NULL && e->nin < 4) {
    t = &e->in[e->nin++];
    t->c = c;
    np_quic_conn_set_ud(c, t);
  }
  if (t != NULL) {
    t->up = 1;
    t->t_up = ev_time();
  }
  e->ups++;
}

static void on_conn_down(np_qconn *c, int err, void *ud) {
  ep *e = ud;
  tconn *t = np_quic_conn_ud(c);
  if (t != NULL) {
    t->down = 1;
    t->err = err;
    t->c = NULL;
  }
  e->downs++;
}

static void on_stream_open(np_qstream *s, void *ud) {
  (void)ud;
  np_quic_stream_reset(s, 0);
}

static const np_quic_cbs cbs = {.conn_up = on_conn_up,
                                .conn_down = on_conn_down,
                                .stream_open = on_stream_open};

static size_t ma(const char *t, uint8_t *out, size_t cap) {
  np_ssize n = np_maddr_parse(t, strlen(t), out, cap);
  return n < 0 ? 0 : (size_t)n;
}

/* An endpoint; |listen| NULL: none yet. */
static int ep_init(ep *e, np_loop *loop, const np_quic_config *cfg,
                   const char *listen) {
  uint8_t bin[64];
  np_ssize n;
  memset(e, 0, sizeof(*e));
  if (np_identity_generate(&e->id) != 0 || np_tls_new(&e->tls, &e->id) != 0 ||
      np_quic_new(&e->q, loop, e->tls, cfg, &cbs, e) != 0)
    return -1;
  if (listen == NULL)
    return 0;
  if (np_quic_listen(e->q, bin, ma(listen, bin, sizeof(bin))) != 0)
    return -1;
  n = np_quic_listen_addr(e->q, 0, e->addr, sizeof(e->addr));
  if (n < 0)
    return -1;
  e->addrlen = (size_t)n;
  return 0;
}

static void ep_free(ep *e) {
  np_quic_del(e->q);
  np_tls_del(e->tls);
  np_identity_clear(&e->id);
}

/* A UDP port on 127.0.0.1 that nobody holds (bound once, then released),
 * and optionally a socket kept bound there (*pfd). */
static uint16_t free_port(int *pfd) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  uint16_t port = 0;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
    port = ntohs(sa.sin_port);
  if (pfd != NULL && fd >= 0)
    *pfd = fd;
  else if (fd >= 0)
    close(fd);
  return port;
}

static size_t port_addr(uint16_t port, const np_peerid *id, uint8_t *out,
                        size_t cap) {
  char t[64];
  size_t n;
  np_ssize m;
  snprintf(t, sizeof(t), "/ip4/127.0.0.1/udp/%u/quic-v1", port);
  n = ma(t, out, cap);
  if (id == NULL || n == 0)
    return n;
  m = np_maddr_append_p2p(out, n, cap, id);
  return m < 0 ? 0 : (size_t)m;
}

static void test_icmp_handshake(np_loop *loop) {
  np_quic_config cfg;
  ep a, b;
  tconn t;
  uint8_t addr[128], bin[64];
  uint16_t port = free_port(NULL);
  char listen[64];
  double t0;
  size_t n;

  np_quic_config_default(&cfg);
  cfg.handshake_timeout_ms = 8000;
  ok(port != 0 && ep_init(&a, loop, &cfg, NULL) == 0 &&
         ep_init(&b, loop, &cfg, "/ip4/127.0.0.1/udp/0/quic-v1") == 0,
     "endpoints: A not listening yet, B listening");
  memset(&t, 0, sizeof(t));
  n = port_addr(port, &a.id.id, addr, sizeof(addr));
  t0 = ev_time();
  is_int(np_quic_dial(b.q, addr, n, &t, &t.c), 0,
         "B dials a port nobody listens on (ICMP port unreachable)");
  WAIT_FOR(t.down || ev_time() - t0 > 0.3, 1.0);
  ok(!t.down, "300 ms of ICMP errors later the dial is still running (%s)",
     t.down ? np_errname(t.err) : "up");
  snprintf(listen, sizeof(listen), "/ip4/127.0.0.1/udp/%u/quic-v1", port);
  is_int(np_quic_listen(a.q, bin, ma(listen, bin, sizeof(bin))), 0,
         "A starts listening on that port");
  WAIT_FOR(t.up || t.down, 9.0);
  ok(t.up && !t.down && a.ups == 1,
     "the dial succeeds within the handshake timeout (%.0f ms, %s)",
     (t.t_up - t0) * 1000, t.down ? np_errname(t.err) : "up");

  ep_free(&a);
  WAIT_FOR(np_quic_conn_count(b.q) == 0, 5.0);
  ep_free(&b);
}

/* A connection up, then its peer's port closes with no CONNECTION_CLOSE:
 * a plain UDP relay in between (its port is what B dialed) is closed. B's
 * next packet draws ICMP port unreachable, which now kills it at once. */
static void test_icmp_established(np_loop *loop) {
  np_quic_config cfg;
  ep a, b;
  tconn t;
  uint8_t addr[128];
  int rfd = -1;
  uint16_t rport = free_port(&rfd);
  uint16_t aport;
  struct sockaddr_in to, from, bpeer;
  socklen_t fl;
  int have_b = 0;
  double t0;
  size_t n;

  np_quic_config_default(&cfg);
  cfg.keepalive_ms = 200; /* B keeps sending after A's side goes */
  ok(rfd >= 0 && ep_init(&a, loop, &cfg, "/ip4/127.0.0.1/udp/0/quic-v1") == 0 &&
         ep_init(&b, loop, &cfg, "/ip4/127.0.0.1/udp/0/quic-v1") == 0,
     "endpoints A and B, and a UDP relay in front of A");
  aport = 0;
  memset(&to, 0, sizeof(to));
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  {
    /* A's port, from its listen address. */
    size_t off = 0;
    np_maddr_comp c;
    while (np_maddr_next(a.addr, a.addrlen, &off, &c) == 1)
      if (c.code == NP_MADDR_UDP && c.vlen == 2)
        aport = (uint16_t)(c.val[0] << 8 | c.val[1]);
  }
  to.sin_port = htons(aport);
  memset(&t, 0, sizeof(t));
  n = port_addr(rport, &a.id.id, addr, sizeof(addr));
  is_int(np_quic_dial(b.q, addr, n, &t, &t.c), 0, "B dials A via the relay");
  t0 = ev_time();
  while (!t.up && !t.down && ev_time() - t0 < 5.0) {
    /* Relay both ways: B -> relay -> A, A -> relay -> B. */
    struct pollfd p = {rfd, POLLIN, 0};
    ev_now_update(EV);
    ev_run(EV, EVRUN_NOWAIT);
    while (poll(&p, 1, 0) == 1) {
      uint8_t buf[2048];
      ssize_t r;
      fl = sizeof(from);
      r = recvfrom(rfd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
      if (r < 0)
        break;
      if (from.sin_port == to.sin_port) {
        if (have_b)
          sendto(rfd, buf, (size_t)r, 0, (struct sockaddr *)&bpeer,
                 sizeof(bpeer));
      } else {
        bpeer = from;
        have_b = 1;
        sendto(rfd, buf, (size_t)r, 0, (struct sockaddr *)&to, sizeof(to));
      }
    }
    usleep(300);
  }
  ok(t.up, "connection up through the relay");
  /* A few more relay rounds so A's side is confirmed too. */
  t0 = ev_time();
  while (ev_time() - t0 < 0.3) {
    struct pollfd p = {rfd, POLLIN, 0};
    ev_now_update(EV);
    ev_run(EV, EVRUN_NOWAIT);
    while (poll(&p, 1, 0) == 1) {
      uint8_t buf[2048];
      ssize_t r;
      fl = sizeof(from);
      r = recvfrom(rfd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
      if (r < 0)
        break;
      if (from.sin_port == to.sin_port)
        sendto(rfd, buf, (size_t)r, 0, (struct sockaddr *)&bpeer,
               sizeof(bpeer));
      else
        sendto(rfd, buf, (size_t)r, 0, (struct sockaddr *)&to, sizeof(to));
    }
    usleep(300);
  }
  close(rfd); /* the relay port is closed: B's packets draw ICMP */
  t0 = ev_time();
  WAIT_FOR(t.down, 3.0);
  ok(t.down && t.err == NP_EUNREACH && ev_time() - t0 < 2.0,
     "established connection: ICMP port unreachable fails it at once "
     "(%s after %.0f ms)",
     t.down ? np_errname(t.err) : "still up", (ev_time() - t0) * 1000);
  ep_free(&a);
  WAIT_FOR(np_quic_conn_count(b.q) == 0, 5.0);
  ep_free(&b);
}

static void test_punch(np_loop *loop) {
  np_quic_config cfg;
  ep a, b, c;
  uint8_t addr[128], buf[2048];
  int rfd = -1;
  uint16_t rport = free_port(&rfd);
  struct sockaddr_in from;
  socklen_t fl = sizeof(from);
  ssize_t r = -1;
  struct pollfd p;
  size_t n, blen;
  uint8_t bl[64];
  int i;
  tconn t;

  np_quic_config_default(&cfg);
  ok(rfd >= 0 && ep_init(&a, loop, &cfg, "/ip4/127.0.0.1/udp/0/quic-v1") == 0 &&
         ep_init(&b, loop, &cfg, "/ip4/127.0.0.1/udp/0/quic-v1") == 0 &&
         ep_init(&c, loop, &cfg, NULL) == 0,
     "endpoints A, B listening, C not listening; a plain UDP receiver");
  n = port_addr(rport, NULL, addr, sizeof(addr));
  is_int(np_quic_punch(b.q, addr, n), 0, "B punches towards the receiver");
  ev_run(EV, EVRUN_NOWAIT);
  p.fd = rfd;
  p.events = POLLIN;
  if (poll(&p, 1, 2000) == 1)
    r = recvfrom(rfd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
  blen = b.addrlen;
  memcpy(bl, b.addr, blen);
  {
    size_t off = 0;
    np_maddr_comp mc;
    uint16_t bport = 0;
    while (np_maddr_next(bl, blen, &off, &mc) == 1)
      if (mc.code == NP_MADDR_UDP && mc.vlen == 2)
        bport = (uint16_t)(mc.val[0] << 8 | mc.val[1]);
    ok(r == NP_QUIC_PUNCH_LEN && ntohs(from.sin_port) == bport &&
           (buf[0] & 0x80) == 0,
       "one %d-byte short-header datagram from B's listen port (%zd bytes "
       "from port %u)",
       NP_QUIC_PUNCH_LEN, r, ntohs(from.sin_port));
  }
  /* Two punches carry different bytes. */
  {
    uint8_t first[NP_QUIC_PUNCH_LEN];
    memcpy(first, buf, sizeof(first));
    np_quic_punch(b.q, addr, n);
    r = -1;
    if (poll(&p, 1, 2000) == 1)
      r = recvfrom(rfd, buf, sizeof(buf), 0, NULL, NULL);
    ok(r == NP_QUIC_PUNCH_LEN && memcmp(first, buf, sizeof(first)) != 0,
       "each punch is fresh random bytes");
  }
  close(rfd);
  is_int(np_quic_punch(c.q, addr, n), NP_ENOENT,
         "no listening socket: NP_ENOENT");
  n = ma("/ip4/127.0.0.1/tcp/1", addr, sizeof(addr));
  ok(np_quic_punch(b.q, addr, n) < 0, "a non-QUIC address is refused");

  /* A QUIC endpoint drops punches: 20 of them make no connection, draw no
   * answer (B would get nothing), and a real dial still works after. */
  for (i = 0; i < 20; i++)
    np_quic_punch(b.q, a.addr, a.addrlen);
  WAIT_FOR(0, 0.3);
  is_int((int)(np_quic_conn_count(a.q) + np_quic_conn_count(b.q)), 0,
         "20 punches at a QUIC endpoint: no connection on either side");
  ok(a.ups == 0 && b.ups == 0, "and no conn_up");
  memset(&t, 0, sizeof(t));
  {
    uint8_t d[128];
    np_ssize m;
    memcpy(d, a.addr, a.addrlen);
    m = np_maddr_append_p2p(d, a.addrlen, sizeof(d), &a.id.id);
    is_int(np_quic_dial(b.q, d, m < 0 ? 0 : (size_t)m, &t, &t.c), 0,
           "B dials A after punching it");
  }
  WAIT_FOR(t.up || t.down, 5.0);
  ok(t.up, "the dial comes up (%s)", t.down ? np_errname(t.err) : "up");
  ep_free(&a);
  WAIT_FOR(np_quic_conn_count(b.q) == 0, 5.0);
  ep_free(&b);
  ep_free(&c);
}

/* Keep-alive PINGs (what [nat] keepalive sets) hold an idle connection
 * open past the idle timeout; without them it ends there. */
static void test_keepalive(np_loop *loop, uint64_t keepalive, int expect_up) {
  np_quic_config cfg;
  ep a, b;
  tconn t;
  uint8_t d[128];
  np_ssize m;
  double t0;
  np_quic_config_default(&cfg);
  cfg.idle_timeout_ms = 600;
  cfg.keepalive_ms = keepalive;
  ok(ep_init(&a, loop, &cfg, "/ip4/127.0.0.1/udp/0/quic-v1") == 0 &&
         ep_init(&b, loop, &cfg, "/ip4/127.0.0.1/udp/0/quic-v1") == 0,
     "endpoints (idle timeout 600 ms, keep-alive %s)",
     keepalive == UINT64_MAX ? "off" : "150 ms");
  memset(&t, 0, sizeof(t));
  memcpy(d, a.addr, a.addrlen);
  m = np_maddr_append_p2p(d, a.addrlen, sizeof(d), &a.id.id);
  np_quic_dial(b.q, d, m < 0 ? 0 : (size_t)m, &t, &t.c);
  WAIT_FOR(t.up || t.down, 5.0);
  t0 = ev_time();
  WAIT_FOR(t.down, 2.0);
  if (expect_up)
    ok(t.up && !t.down, "idle for 2 s: still up");
  else
    ok(t.up && t.down && t.err == NP_ETIMEDOUT,
       "idle: ends with NP_ETIMEDOUT after %.0f ms",
       (ev_time() - t0) * 1000);
  ep_free(&a);
  WAIT_FOR(np_quic_conn_count(b.q) == 0, 5.0);
  ep_free(&b);
}

/* np_ttcp_punch (the TCP side of a DCUtR punch): only from a listen port,
 * only on np_ttcp, and a punch nobody answers leaves nothing behind. */
static int tcp_ups;
static void tcp_up(np_conn *c, void *ud) {
  (void)c, (void)ud;
  tcp_ups++;
}
static void tcp_down(np_conn *c, int err, void *ud) {
  (void)c, (void)err, (void)ud;
}
static void test_tcp_punch(np_loop *loop) {
  static const np_conn_cbs ccbs = {.conn_up = tcp_up, .conn_down = tcp_down};
  np_identity id;
  np_transport *t = NULL, *t2 = NULL;
  uint8_t addr[64], l[64];
  char text[64];
  uint16_t port = free_port(NULL);
  size_t n;
  ok(np_identity_generate(&id) == 0 &&
         np_ttcp_new(&t, loop, &id, NULL, &ccbs, NULL) == 0 &&
         np_ttcp_new(&t2, loop, &id, NULL, &ccbs, NULL) == 0,
     "two TCP transports");
  snprintf(text, sizeof(text), "/ip4/127.0.0.1/tcp/%u", port);
  n = ma(text, addr, sizeof(addr));
  is_int(np_ttcp_punch(t, addr, n), NP_ENOENT,
         "no listen socket: NP_ENOENT (a punch must leave from it)");
  is_int(t->ops->listen(t, l, ma("/ip4/127.0.0.1/tcp/0", l, sizeof(l))), 0,
         "the first one listens");
  {
    np_transport *q = NULL;
    np_tls *tls = NULL;
    ok(np_tls_new(&tls, &id) == 0 &&
           np_tquic_new(&q, loop, tls, NULL, &ccbs, NULL) == 0 &&
           np_ttcp_punch(q, addr, n) == NP_EINVAL,
       "another transport: NP_EINVAL");
    if (q)
      q->ops->del(q);
    np_tls_del(tls);
  }
  n = ma("/ip4/127.0.0.1/udp/1/quic-v1", l, sizeof(l));
  ok(np_ttcp_punch(t, l, n) < 0, "a QUIC address is refused");
  n = ma(text, addr, sizeof(addr));
  {
    int rv = np_ttcp_punch(t, addr, n);
    ok(rv == 0 || rv == NP_EUNREACH,
       "a punch to a closed port starts or is refused at once (%s)",
       np_errname(rv));
  }
  WAIT_FOR(t->ops->conn_count(t) == 0, 3.0);
  ok(t->ops->conn_count(t) == 0 && tcp_ups == 0,
     "refused: nothing left, no conn_up");
  t->ops->del(t);
  t2->ops->del(t2);
  np_identity_clear(&id);
}

int main(void) {
  np_loop *loop = NULL;
  signal(SIGPIPE, SIG_IGN);
  if (getenv("NP_TEST_DEBUG") == NULL)
    np_log_set_level(NP_LOG_WARN);
  EV = ev_loop_new(EVFLAG_AUTO);
  ok(EV != NULL && np_loop_new(&loop, EV) == 0, "loop created");
  test_icmp_handshake(loop);
  test_icmp_established(loop);
  test_punch(loop);
  test_keepalive(loop, 150, 1);
  test_keepalive(loop, UINT64_MAX, 0);
  test_tcp_punch(loop);
  ev_run(EV, EVRUN_NOWAIT);
  is_int(np_loop_pending(loop), 0, "no deferred work left");
  np_loop_del(loop);
  ev_loop_destroy(EV);
  np_crypto_cleanup();
  return done_testing();
}
