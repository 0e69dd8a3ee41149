/* Dialing several addresses of one peer (issue 8): attempts run in parallel
 * with a small stagger, so an address that swallows packets costs a
 * stagger and not a handshake timeout; an address that reaches another
 * peer does not end the dial; addresses given to a CONNECT that joins a
 * running dial are tried at once; the attempts that lose are closed, one
 * connection remains. Two real natpeer-host processes on loopback. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "ctl_client.h"
#include "np_identity.h"
#include "np_multiaddr.h"
#include "tap.h"

static char dir[512];
static th A, B;

static void kill_hosts(void) {
  if (A.pid > 0)
    kill(A.pid, SIGKILL);
  if (B.pid > 0)
    kill(B.pid, SIGKILL);
}

static void on_signal(int sig) {
  kill_hosts();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Binary multiaddr of |text| with any /p2p/ suffix removed. */
static size_t maddr_bin(const char *text, uint8_t *out, size_t cap) {
  char t[256];
  char *p2p;
  np_ssize n;
  snprintf(t, sizeof(t), "%s", text);
  if ((p2p = strstr(t, "/p2p/")) != NULL)
    *p2p = '\0';
  n = np_maddr_parse(t, strlen(t), out, cap);
  return n < 0 ? 0 : (size_t)n;
}

/* CONNECT to |peer| with |n| addresses (text); sends only. */
static int send_connect(cl *c, const np_peerid *peer, const char *const *addrs,
                        size_t n, int64_t timeout_s) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__ConnectRequest cr = NP__P2PD__CONNECT_REQUEST__INIT;
  ProtobufCBinaryData ad[8];
  uint8_t bins[8][256];
  for (size_t i = 0; i < n && i < 8; i++) {
    ad[i].data = bins[i];
    ad[i].len = maddr_bin(addrs[i], bins[i], sizeof(bins[i]));
  }
  cr.peer.data = (uint8_t *)peer->bytes;
  cr.peer.len = peer->len;
  cr.n_addrs = n;
  cr.addrs = ad;
  cr.has_timeout = 1;
  cr.timeout = timeout_s;
  rq.type = NP__P2PD__REQUEST__TYPE__CONNECT;
  rq.connect = &cr;
  return cl_send_req(c, &rq);
}

/* Wait for the CONNECT answer: 0 OK, -1 ERROR (message in |err|), -100 no
 * answer within |secs|. */
static int connect_answer(cl *c, int secs, char *err, size_t errlen) {
  const uint8_t *m;
  size_t ml;
  Np__P2pd__Response *r;
  int rv;
  if (err && errlen)
    err[0] = '\0';
  if (cl_recv(c, &m, &ml, secs) != 0 ||
      (r = np__p2pd__response__unpack(NULL, ml, m)) == NULL)
    return -100;
  rv = r->type == NP__P2PD__RESPONSE__TYPE__OK ? 0 : -1;
  if (rv && err)
    snprintf(err, errlen, "%s",
             r->error && r->error->msg ? r->error->msg : "?");
  np__p2pd__response__free_unpacked(r, NULL);
  return rv;
}

static int connect_to(const np_peerid *peer, const char *const *addrs,
                      size_t n, int64_t timeout_s, char *err, size_t errlen) {
  cl c;
  int rv = -100;
  if (cl_open(&c, A.sock) == 0 && send_connect(&c, peer, addrs, n,
                                               timeout_s) == 0)
    rv = connect_answer(&c, (int)timeout_s + 3, err, errlen);
  cl_close(&c);
  return rv;
}

/* Connections A has to |peer| (NP_CONNS), or -1. */
static int conns_to(const np_peerid *peer) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__Ctl__NpRequest nq = NP__CTL__NP_REQUEST__INIT;
  Np__P2pd__Response *r;
  Np__Ctl__NpResponse *nr;
  uint8_t body[64];
  cl c;
  int n = -1;
  rq.type = (Np__P2pd__Request__Type)NP__CTL__NP_TYPE__NP_CONNS;
  rq.has_natpeer = 1;
  rq.natpeer.data = body;
  rq.natpeer.len = np__ctl__np_request__pack(&nq, body);
  if (cl_open(&c, A.sock) != 0) {
    cl_close(&c);
    return -1;
  }
  if ((r = request(&c, &rq)) != NULL) {
    if (r->has_natpeer &&
        (nr = np__ctl__np_response__unpack(NULL, r->natpeer.len,
                                           r->natpeer.data)) != NULL) {
      n = 0;
      for (size_t i = 0; i < nr->n_conns; i++)
        if (nr->conns[i]->peer.len == peer->len &&
            memcmp(nr->conns[i]->peer.data, peer->bytes, peer->len) == 0)
          n++;
      np__ctl__np_response__free_unpacked(nr, NULL);
    }
    np__p2pd__response__free_unpacked(r, NULL);
  }
  cl_close(&c);
  return n;
}

static void disconnect_all(const np_peerid *peer) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__DisconnectRequest dr = NP__P2PD__DISCONNECT_REQUEST__INIT;
  Np__P2pd__Response *r;
  cl c;
  dr.peer.data = (uint8_t *)peer->bytes;
  dr.peer.len = peer->len;
  rq.type = NP__P2PD__REQUEST__TYPE__DISCONNECT;
  rq.disconnect = &dr;
  if (cl_open(&c, A.sock) == 0 && (r = request(&c, &rq)) != NULL)
    np__p2pd__response__free_unpacked(r, NULL);
  cl_close(&c);
  for (int i = 0; i < 200 && conns_to(peer) > 0; i++)
    usleep(10000);
}

/* A UDP port on loopback that takes packets and never answers: a QUIC dial
 * to it can only end by its handshake timeout. */
static int blackhole(char *text, size_t cap) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
    return -1;
  snprintf(text, cap, "/ip4/127.0.0.1/udp/%u/quic-v1", ntohs(sa.sin_port));
  return fd;
}

int main(void) {
  char da[600], db[600], hole[128], err[512];
  struct sigaction sa;
  int hole_fd;
  np_identity C; /* a peer that exists nowhere */
  signal(SIGPIPE, SIG_IGN);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);
  atexit(kill_hosts);
  alarm(120); /* a hang is a failure, never a stuck CI */
  tu_tmpdir(dir, sizeof(dir));
  snprintf(da, sizeof(da), "%s/a", dir);
  snprintf(db, sizeof(db), "%s/b", dir);
  mkdir(da, 0700);
  mkdir(db, 0700);
  ok(th_start(&A, da, NULL, 0) == 0 && A.addr[0], "host A starts (%s)",
     A.addr);
  ok(th_start(&B, db, NULL, 0) == 0 && B.addr[0], "host B starts (%s)",
     B.addr);
  np_identity_generate(&C);
  hole_fd = blackhole(hole, sizeof(hole));
  ok(hole_fd >= 0, "a silent UDP port (%s)", hole);

  {
    /* The silent address first: the handshake there would take 10 s, the
     * CONNECT allows 3 s; the real address starts after the stagger. */
    const char *addrs[] = {hole, B.addr};
    is_int(connect_to(&B.id, addrs, 2, 3, err, sizeof(err)), 0,
           "silent address first, B's second: connected within 3 s %s", err);
    is_int(conns_to(&B.id), 1, "one connection to B (the losing attempt is "
                               "not a connection)");
    disconnect_all(&B.id);
  }
  {
    /* Only the silent address, for a peer we know nothing else about: the
     * dial fails by the CONNECT's deadline. */
    const char *addrs[] = {hole};
    int rv = connect_to(&C.id, addrs, 1, 1, err, sizeof(err));
    ok(rv == -1 && strstr(err, "timed out") != NULL,
       "only the silent address: ERROR timed out (%s)", err);
  }
  {
    /* A's own address with B's ID reaches the wrong peer: that attempt
     * fails with a peer ID mismatch, the next address still connects. */
    const char *addrs[] = {A.addr, B.addr};
    is_int(connect_to(&B.id, addrs, 2, 5, err, sizeof(err)), 0,
           "wrong-peer address first, B's second: connected %s", err);
    disconnect_all(&B.id);
  }
  {
    const char *addrs[] = {B.addr};
    int rv = connect_to(&C.id, addrs, 1, 5, err, sizeof(err));
    ok(rv == -1 && (strstr(err, "peer ID") || strstr(err, "peer id")),
       "only a wrong-peer address: the error names the peer ID mismatch (%s)",
       err);
  }
  {
    /* A CONNECT joins a dial that is stuck on the silent address and
     * brings B's real address: it is tried at once, both complete. */
    const char *first[] = {hole}, *second[] = {B.addr};
    cl c1, c2;
    int r1 = -100, r2 = -100;
    char e1[256] = "", e2[256] = "";
    if (cl_open(&c1, A.sock) == 0 && send_connect(&c1, &B.id, first, 1, 8) ==
                                         0) {
      usleep(300000); /* the first dial is running (past its stagger) */
      if (cl_open(&c2, A.sock) == 0 &&
          send_connect(&c2, &B.id, second, 1, 3) == 0)
        r2 = connect_answer(&c2, 6, e2, sizeof(e2));
      cl_close(&c2);
      r1 = connect_answer(&c1, 10, e1, sizeof(e1));
    }
    cl_close(&c1);
    is_int(r2, 0, "a CONNECT joining a stuck dial with a new address "
                  "connects within its 3 s %s", e2);
    is_int(r1, 0, "the first CONNECT completes with the same connection %s",
           e1);
    is_int(conns_to(&B.id), 1, "one connection to B");
  }

  close(hole_fd);
  np_identity_clear(&C);
  ok(th_alive(&A) && th_alive(&B), "both hosts are still running");
  is_int(th_stop(&A), 0, "A exits 0 on SIGTERM");
  is_int(th_stop(&B), 0, "B exits 0 on SIGTERM");
  ok(th_log_clean(&A) && th_log_clean(&B),
     "no sanitizer report in the hosts' logs");
  if (getenv("KEEP") == NULL)
    tu_rmrf(dir);
  else
    printf("# kept %s\n", dir);
  return done_testing();
}
