/* AutoNAT v1 (np_autonat), in process over real QUIC/TCP on loopback:
 *  - a client asks a server, which dials it back from a new port: PUBLIC,
 *    NP_EV_REACHABILITY emitted;
 *  - a fake requester listing addresses at another IP (127.0.0.2, where
 *    the test holds a UDP socket and a TCP listener) is refused and
 *    nothing ever reaches those sockets; bad requests, a peer ID that is
 *    not the requester's, a failing dial-back (E_DIAL_ERROR);
 *  - per-peer and global rate limits (E_DIAL_REFUSED) while other peers
 *    are still served;
 *  - the reachability rule against fake servers: PRIVATE only after 3
 *    distinct E_DIAL_ERRORs, one OK flips to PUBLIC, 2 servers are not
 *    enough;
 *  - a requester going away while its dial-back runs; the module stopping
 *    with dial-backs pending;
 *  - [nat] reachability = private|public forces the state and the DHT's
 *    auto mode follows it. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "np_autonat.h"
#include "np_autonatmsg.h"
#include "np_conf.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_kad.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "np_bstream.h"
#include "np_upgrade.h"
#include "tap.h"

#define NH 10
static struct ev_loop *ev;
static np_daemon *D[NH];
static np_host *Hh[NH];
static np_identity Id[NH];

static void run_for(double secs) {
  double end;
  ev_now_update(ev);
  end = ev_now(ev) + secs;
  while (ev_now(ev) < end) {
    ev_run(ev, EVRUN_NOWAIT);
    usleep(2000);
    ev_now_update(ev);
  }
}
static void run_until(const int *flag, double secs) {
  double end;
  ev_now_update(ev);
  end = ev_now(ev) + secs;
  while (!*flag && ev_now(ev) < end) {
    ev_run(ev, EVRUN_NOWAIT);
    usleep(1000);
    ev_now_update(ev);
  }
}

static int up(int i, const char *nat, const char *dht) {
  char ini[1024];
  np_conf *c;
  char err[256];
  int n = snprintf(ini, sizeof(ini),
                   "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1 "
                   "/ip4/127.0.0.1/tcp/0\nlog_level = error\n[dht]\nmode = "
                   "%s\n[plugins]\nautoload = no\n[nat]\n%s",
                   dht ? dht : "off", nat);
  if (np_conf_load_string(&c, "t.ini", ini, (size_t)n, err, sizeof(err)) !=
          0 ||
      np_identity_generate(&Id[i]) != 0 ||
      np_daemon_new(&D[i], ev, c, &Id[i]) != 0) {
    fprintf(stderr, "# up %d: %s\n", i, err);
    return -1;
  }
  Hh[i] = np_daemon_host(D[i]);
  return np_daemon_start(D[i], NP_DAEMON_NET);
}

static np_autonat *AN(int i) { return np_daemon_module(D[i], "autonat"); }
static np_autonat_status ST(int i) {
  np_autonat_status st;
  np_autonat_get_status(AN(i), &st);
  return st;
}

/* Host |h|'s first listen address of the kind asked (binary). */
static size_t listen_addr(int h, int tcp, uint8_t *out, size_t cap) {
  void *net;
  const np_net_ops *ops = np_host_net(Hh[h], &net);
  const uint8_t *bins[8];
  size_t lens[8], n = ops->addrs(net, bins, lens, 8), i;
  for (i = 0; i < n && i < 8; i++) {
    struct sockaddr_storage ss;
    socklen_t sl;
    int is_tcp = np_maddr_to_sockaddr_tcp(bins[i], lens[i], &ss, &sl) == 0;
    if (is_tcp == tcp && lens[i] <= cap) {
      memcpy(out, bins[i], lens[i]);
      return lens[i];
    }
  }
  return 0;
}

typedef struct waitv {
  int done, err;
} waitv;
static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err;
}

/* Connect |a| to |b| and wait for identify. */
static int connect_hosts(int a, int b) {
  uint8_t addr[128];
  size_t len = listen_addr(b, 0, addr, sizeof(addr));
  const uint8_t *addrs[1] = {addr};
  waitv w = {0, 0};
  void *net;
  const np_net_ops *ops = np_host_net(Hh[a], &net);
  if (ops->connect_identified(net, &Id[b].id, addrs, &len, 1, 10000, on_done,
                              &w, NULL) != 0)
    return -1;
  run_until(&w.done, 12);
  return w.done ? w.err : NP_ETIMEDOUT;
}

/* ---- a raw AutoNAT exchange from host |a| to host |b| ---------------- */

typedef struct rpc {
  int opened, closed, got, err;
  np_stream *s;
  uint8_t buf[8192];
  size_t len;
} rpc;

static void r_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  rpc *r = ud;
  (void)s;
  if (r == NULL)
    return;
  if (len == 0) {
    r->got = 1;
    return;
  }
  if (r->len + len <= sizeof(r->buf)) {
    memcpy(r->buf + r->len, d, len);
    r->len += len;
  }
  {
    const uint8_t *m;
    size_t ml;
    if (np_lp_parse(r->buf, r->len, 8192, &m, &ml) > 0)
      r->got = 1;
  }
}
static void r_close(np_stream *s, int err, void *ud) {
  rpc *r = ud;
  (void)s;
  if (r == NULL)
    return;
  r->closed = 1, r->err = err, r->s = NULL, r->got = 1;
}
static const np_stream_cbs r_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = r_data,
    .on_close = r_close,
};
static void r_opened(void *ud, int err, np_stream *s, const char *proto) {
  rpc *r = ud;
  (void)proto;
  r->opened = 1;
  if (err) {
    r->err = err, r->got = 1, r->closed = 1;
    return;
  }
  r->s = s;
  np_stream_set_cbs(s, &r_cbs, r);
}

static int rpc_open(rpc *r, int a, int b) {
  void *net;
  const np_net_ops *ops = np_host_net(Hh[a], &net);
  const char *protos[1] = {NP_AUTONATMSG_PROTOCOL};
  memset(r, 0, sizeof(*r));
  if (ops->open_stream(net, &Id[b].id, protos, 1, 0, 10000, r_opened, r,
                       NULL) != 0)
    return -1;
  run_until(&r->opened, 10);
  return r->s ? 0 : -1;
}

static void rpc_drop(rpc *r) {
  if (r->s) {
    np_stream_set_cbs(r->s, &r_cbs, NULL);
    r->s->ops->reset(r->s);
    r->s = NULL;
  }
}

/* Send DIAL{peer, addrs} (as text) and wait for the answer: its status,
 * or a negative error; the answer's address in |got| (text). */
static int ask(int a, int b, const np_peerid *peer, const char *const *addrs,
               size_t n, double secs, char *got, size_t gotcap) {
  rpc r;
  np_autonatmsg m, resp;
  np_autonatmsg_blob blobs[8];
  uint8_t bins[8][128], buf[4200];
  np_ssize len;
  size_t i;
  int st;
  if (got)
    got[0] = 0;
  if (rpc_open(&r, a, b) != 0)
    return -1;
  for (i = 0; i < n; i++) {
    np_ssize l = np_maddr_parse(addrs[i], strlen(addrs[i]), bins[i], 128);
    if (l < 0)
      return -2;
    blobs[i].data = bins[i], blobs[i].len = (size_t)l;
  }
  np_autonatmsg_init(&m);
  m.type = NP_AUTONATMSG_DIAL;
  m.peer = *peer;
  m.addrs = blobs;
  m.naddrs = n;
  len = np_autonatmsg_encode_lp(&m, buf, sizeof(buf));
  if (len < 0 || r.s->ops->send(r.s, buf, (size_t)len, 0, 8192) != 0)
    return -3;
  run_until(&r.got, secs);
  if (np_autonatmsg_decode_lp(&resp, r.buf, r.len, NULL) <= 0) {
    rpc_drop(&r);
    return r.err ? r.err : -4;
  }
  st = (int)resp.status;
  if (got && resp.addr.len)
    np_maddr_to_string(resp.addr.data, resp.addr.len, got, gotcap);
  np_autonatmsg_free(&resp);
  rpc_drop(&r);
  return st;
}

/* ---- sockets at another IP that must stay silent ---------------------- */

static int udp_fd = -1, tcp_fd = -1;
static int udp_port, tcp_port;

static int bind_other(void) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
  udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (udp_fd < 0 || tcp_fd < 0 ||
      bind(udp_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      bind(tcp_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(tcp_fd, 8) != 0)
    return -1;
  getsockname(udp_fd, (struct sockaddr *)&sa, &sl);
  udp_port = ntohs(sa.sin_port);
  sl = sizeof(sa);
  getsockname(tcp_fd, (struct sockaddr *)&sa, &sl);
  tcp_port = ntohs(sa.sin_port);
  return 0;
}

/* Anything reached the sockets at 127.0.0.2? */
static int other_touched(void) {
  uint8_t b[2048];
  int fd;
  if (recv(udp_fd, b, sizeof(b), 0) >= 0)
    return 1;
  if ((fd = accept(tcp_fd, NULL, NULL)) >= 0) {
    close(fd);
    return 1;
  }
  return 0;
}

/* ---- fake servers: answer every DIAL with a fixed status -------------- */

typedef struct fake {
  int status;
  int asked; /* streams that sent something */
  np_stream *last;
  np_list streams;
} fake;
static fake Fk[NH];

static void f_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  fake *f = ud;
  np_autonatmsg m;
  uint8_t buf[256], addr[128];
  np_ssize n;
  (void)d;
  if (len == 0 || f == NULL || s == f->last)
    return; /* one request per stream (it may come in pieces) */
  f->last = s;
  f->asked++;
  if (f->status < 0)
    return; /* a server that never answers */
  np_autonatmsg_init(&m);
  m.type = NP_AUTONATMSG_DIAL_RESPONSE;
  m.status = (np_autonatmsg_status)f->status;
  if (f->status == NP_AUTONATMSG_OK) {
    n = np_maddr_parse("/ip4/127.0.0.1/udp/9/quic-v1", 28, addr, sizeof(addr));
    m.addr.data = addr, m.addr.len = (size_t)n;
  }
  n = np_autonatmsg_encode_lp(&m, buf, sizeof(buf));
  s->ops->send(s, buf, (size_t)n, 1, 4096);
}
static void f_close(np_stream *s, int err, void *ud) {
  fake *f = ud;
  (void)err;
  if (f && f->last == s)
    f->last = NULL; /* its memory may come back as the next stream */
}
static const np_stream_cbs f_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = f_data,
    .on_close = f_close,
};

static int fake_server(int i, int status) {
  np_handler hd;
  Fk[i].status = status;
  Fk[i].asked = 0;
  Fk[i].last = NULL;
  np_list_init(&Fk[i].streams);
  memset(&hd, 0, sizeof(hd));
  hd.proto = (char *)NP_AUTONATMSG_PROTOCOL;
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = &Fk[i];
  hd.owner_name = "fake";
  hd.stream = f_cbs;
  hd.ud = &Fk[i];
  hd.streams = &Fk[i].streams;
  hd.max_streams = NP_PROTO_UNLIMITED;
  return np_proto_add(np_host_protos(Hh[i]), &hd, NULL);
}

static void fake_del(int i) {
  np_proto_remove_owner(np_host_protos(Hh[i]), &Fk[i]);
  while (!np_list_empty(&Fk[i].streams))
    np_stream_abandon(
        np_list_entry(Fk[i].streams.next, np_stream, owner_link),
        NP_ECANCELED);
  np_daemon_del(D[i]);
  D[i] = NULL;
}


/* ---- a relayed-like connection: Noise + yamux over an in-memory pair,
 * marked limited, handed to both swarms (as a circuit would be) -------- */

static np_upgrade *Ua, *Ub;
static np_conn *Ca, *Cb;

static int limited_conn(int a, int b) {
  np_bstream *ba, *bb;
  void *uda, *udb;
  const np_conn_cbs *cba = np_swarm_conn_cbs(np_host_swarm(Hh[a]), &uda);
  const np_conn_cbs *cbb = np_swarm_conn_cbs(np_host_swarm(Hh[b]), &udb);
  uint8_t ra[64], rb[64];
  np_ssize la = np_maddr_parse("/ip4/127.0.0.1/tcp/1", 20, ra, sizeof(ra));
  np_ssize lb = np_maddr_parse("/ip4/127.0.0.1/tcp/2", 20, rb, sizeof(rb));
  if (np_upgrade_new(&Ua, np_host_loop(Hh[a]), &Id[a], NP_TRANSPORT_RELAY,
                     NULL, cba, uda) != 0 ||
      np_upgrade_new(&Ub, np_host_loop(Hh[b]), &Id[b], NP_TRANSPORT_RELAY,
                     NULL, cbb, udb) != 0 ||
      np_bstream_pair_new(&ba, &bb, np_host_loop(Hh[a]), 65536) != 0)
    return -1;
  /* c->ud NULL: each swarm adopts its end when it comes up */
  if (np_upgrade_start(Ua, ba, 0, &Id[b].id, rb, (size_t)lb, ra, (size_t)la,
                       NULL, &Ca) != 0 ||
      np_upgrade_start(Ub, bb, 1, NULL, ra, (size_t)la, rb, (size_t)lb, NULL,
                       &Cb) != 0)
    return -1;
  Ca->limited = 1;
  Cb->limited = 1;
  return 0;
}

typedef struct lopen {
  int done, err;
  np_stream *s;
} lopen;
static void l_opened(void *ud, int err, np_stream *s, const char *proto) {
  lopen *l = ud;
  (void)proto;
  l->done = 1, l->err = err, l->s = s;
}

/* ---- reachability events ---------------------------------------------- */

static int reach_ev[NH], reach_n[NH];
static void on_reach(const np_event *e, void *ud) {
  int i = (int)(intptr_t)ud;
  reach_ev[i] = e->reachability;
  reach_n[i]++;
}
static void watch(int i) {
  np_events_subscribe(np_host_events(Hh[i]), NP_EV_REACHABILITY, on_reach,
                      (void *)(intptr_t)i, NULL);
}

static int kad_server(int i) {
  np_kad_stats st;
  np_kad *k = np_daemon_module(D[i], "kad");
  if (k == NULL)
    return -1;
  np_kad_stats_get(k, &st);
  return st.server;
}

int main(void) {
  char got[256], a1[128], a2[128], good[128], goodtcp[128], hang[128];
  const char *addrs[4];
  uint8_t bin[128];
  size_t bl;
  np_autonat_status s0, s1;
  int st, i, fd_hang;
  np_peerid other;

  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  alarm(170);

  /* 0: server; 1: client; 2, 3: requesters; 4: a second server */
  ok(up(0,
        "autonat = no\nautonat_peer_limit = 3\nautonat_global_limit = 8\n",
        NULL) == 0 &&
         up(1,
            "autonat_service = no\nautonat_boot_delay = 300ms\n"
            "autonat_interval = 1h\n",
            "auto") == 0 &&
         up(2, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         up(3, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         up(4, "autonat = no\n", NULL) == 0,
     "five hosts on loopback");
  ok(bind_other() == 0, "a UDP socket and a TCP listener on 127.0.0.2");
  watch(1);
  ok(np_autonat_reachability(AN(1)) == NP_REACH_UNKNOWN && kad_server(1) == 0,
     "the client starts UNKNOWN, a DHT client (loopback is not public)");

  /* ---- the client learns PUBLIC from the server ---- */
  ok(connect_hosts(1, 0) == 0, "client connected to the server");
  {
    int flag = 0;
    double end;
    ev_now_update(ev);
    end = ev_now(ev) + 10;
    while (np_autonat_reachability(AN(1)) == NP_REACH_UNKNOWN &&
           ev_now(ev) < end)
      run_until(&flag, 0.05);
  }
  s1 = ST(1);
  s0 = ST(0);
  ok(np_autonat_reachability(AN(1)) == NP_REACH_PUBLIC,
     "the dial-back reached the client: PUBLIC (%s)",
     np_autonat_reach_name(np_autonat_reachability(AN(1))));
  ok(reach_n[1] == 1 && reach_ev[1] == NP_REACH_PUBLIC,
     "one NP_EV_REACHABILITY event, PUBLIC");
  ok(s1.probes == 1 && s1.last_result == NP_AUTONATMSG_OK &&
         np_peerid_equal(&s1.last_server, &Id[0].id) && s1.last_change_ms > 0,
     "client status: 1 probe, last server the server, result OK");
  ok(s0.served_ok == 1 && s0.addrs_dialed >= 1 && s0.pending == 0,
     "server status: one dial-back served (%llu addresses dialed)",
     (unsigned long long)s0.addrs_dialed);
  ok(kad_server(1) == 1, "PUBLIC makes the client's DHT (auto) a server");
  {
    /* The dial-back is a second connection, inbound at the client, from a
     * port other than the server's listen port. */
    void *net;
    const np_net_ops *ops = np_host_net(Hh[1], &net);
    np_conn_info ci[16];
    uint8_t sl[128];
    size_t n = ops->conns(net, ci, 16), k, sll = listen_addr(0, 0, sl, 128);
    int in_other = 0, out_listen = 0;
    for (k = 0; k < n && k < 16; k++) {
      if (!np_peerid_equal(&ci[k].peer, &Id[0].id))
        continue;
      if (ci[k].outbound && ci[k].addr_len == sll &&
          memcmp(ci[k].addr, sl, sll) == 0)
        out_listen++;
      else if (!ci[k].outbound &&
               !(ci[k].addr_len == sll && memcmp(ci[k].addr, sl, sll) == 0))
        in_other++;
    }
    ok(out_listen == 1 && in_other >= 1,
       "the client holds its own connection to the server and the dial-back, "
       "inbound from another port (%d, %d)",
       out_listen, in_other);
  }

  /* ---- refusals, and nothing dialed at another IP ---- */
  ok(connect_hosts(2, 0) == 0, "requester 2 connected");
  snprintf(a1, sizeof(a1), "/ip4/127.0.0.2/udp/%d/quic-v1", udp_port);
  snprintf(a2, sizeof(a2), "/ip4/127.0.0.2/tcp/%d", tcp_port);
  bl = listen_addr(2, 0, bin, sizeof(bin));
  np_maddr_to_string(bin, bl, good, sizeof(good));
  bl = listen_addr(2, 1, bin, sizeof(bin));
  np_maddr_to_string(bin, bl, goodtcp, sizeof(goodtcp));
  s0 = ST(0);
  addrs[0] = a1, addrs[1] = a2;
  st = ask(2, 0, &Id[2].id, addrs, 2, 10, NULL, 0);
  run_for(1.0);
  s1 = ST(0);
  ok(st == NP_AUTONATMSG_E_DIAL_REFUSED,
     "addresses only at another IP: E_DIAL_REFUSED (%d)", st);
  ok(s1.addrs_skipped == s0.addrs_skipped + 2 &&
         s1.addrs_dialed == s0.addrs_dialed,
     "both addresses skipped, none dialed");
  ok(!other_touched(), "nothing reached 127.0.0.2 (UDP or TCP)");

  st = ask(2, 0, &Id[1].id, addrs, 0, 10, NULL, 0);
  ok(st == NP_AUTONATMSG_E_BAD_REQUEST,
     "a DIAL naming another peer: E_BAD_REQUEST (%d)", st);
  {
    rpc r;
    static const uint8_t junk[] = {5, 0xff, 0xff, 0xff, 0xff, 0xff};
    int got_st = -1;
    if (rpc_open(&r, 2, 0) == 0) {
      np_autonatmsg resp;
      r.s->ops->send(r.s, junk, sizeof(junk), 0, 64);
      run_until(&r.got, 10);
      if (np_autonatmsg_decode_lp(&resp, r.buf, r.len, NULL) > 0) {
        got_st = (int)resp.status;
        np_autonatmsg_free(&resp);
      }
      rpc_drop(&r);
    }
    ok(got_st == NP_AUTONATMSG_E_BAD_REQUEST,
       "a message that is not AutoNAT: E_BAD_REQUEST (%d)", got_st);
  }
  {
    /* a DIAL_RESPONSE (with text, which the server must free) is no request */
    rpc r;
    np_autonatmsg m, resp;
    uint8_t buf[256];
    np_ssize len;
    int got_st = -1;
    np_autonatmsg_init(&m);
    m.type = NP_AUTONATMSG_DIAL_RESPONSE;
    m.status = NP_AUTONATMSG_E_DIAL_ERROR;
    m.status_text = (char *)"not a request";
    len = np_autonatmsg_encode_lp(&m, buf, sizeof(buf));
    if (len > 0 && rpc_open(&r, 2, 0) == 0) {
      r.s->ops->send(r.s, buf, (size_t)len, 0, 256);
      run_until(&r.got, 10);
      if (np_autonatmsg_decode_lp(&resp, r.buf, r.len, NULL) > 0) {
        got_st = (int)resp.status;
        np_autonatmsg_free(&resp);
      }
      rpc_drop(&r);
    }
    ok(got_st == NP_AUTONATMSG_E_BAD_REQUEST,
       "a DIAL_RESPONSE sent as a request: E_BAD_REQUEST (%d)", got_st);
  }

  /* The good address and the other IP's together: only the good one is
   * dialed and answered. */
  addrs[0] = a1, addrs[1] = good, addrs[2] = a2;
  s0 = ST(0);
  st = ask(2, 0, &Id[2].id, addrs, 3, 20, got, sizeof(got));
  run_for(0.5);
  s1 = ST(0);
  ok(st == NP_AUTONATMSG_OK && strcmp(got, good) == 0,
     "mixed list: OK with the observed-IP address (%d, %s)", st, got);
  ok(s1.addrs_dialed == s0.addrs_dialed + 1 &&
         s1.addrs_skipped == s0.addrs_skipped + 2,
     "one address dialed, two skipped");
  ok(!other_touched(), "still nothing at 127.0.0.2");

  /* ---- per-peer limit: requester 2 has used 2 of 3 (bad requests are not
   * counted); the third is served, then refused ---- */
  addrs[0] = goodtcp;
  st = ask(2, 0, &Id[2].id, addrs, 1, 20, got, sizeof(got));
  ok(st == NP_AUTONATMSG_OK && strcmp(got, goodtcp) == 0,
     "third request (TCP address) served: OK %s", got);
  s0 = ST(0);
  for (i = 0; i < 4; i++) {
    addrs[0] = good, addrs[1] = a1;
    st = ask(2, 0, &Id[2].id, addrs, 2, 10, NULL, 0);
    if (st != NP_AUTONATMSG_E_DIAL_REFUSED)
      break;
  }
  s1 = ST(0);
  ok(i == 4 && s1.rate_limited == s0.rate_limited + 4 &&
         s1.addrs_dialed == s0.addrs_dialed,
     "a flood of 4 more from the same peer: all E_DIAL_REFUSED by the "
     "per-peer limit, nothing dialed");
  ok(!other_touched(), "the flood reached nothing at 127.0.0.2");

  /* ---- others are still served; then the global limit (8/min: client 1,
   * requester 2's three = 4 so far) ---- */
  ok(connect_hosts(3, 0) == 0, "requester 3 connected");
  bl = listen_addr(3, 0, bin, sizeof(bin));
  np_maddr_to_string(bin, bl, good, sizeof(good));
  addrs[0] = good;
  st = ask(3, 0, &Id[3].id, addrs, 1, 20, got, sizeof(got));
  ok(st == NP_AUTONATMSG_OK, "another peer is still served during the flood");
  /* 5 counted; requester 3 may make 2 more (7), and the client host 1
   * asking by hand the 8th; the 9th is over the global limit. */
  st = ask(3, 0, &Id[3].id, addrs, 1, 20, NULL, 0);
  {
    int st2 = ask(3, 0, &Id[3].id, addrs, 1, 20, NULL, 0);
    ok(st == NP_AUTONATMSG_OK && st2 == NP_AUTONATMSG_OK,
       "requester 3: second and third served");
  }
  bl = listen_addr(1, 0, bin, sizeof(bin));
  np_maddr_to_string(bin, bl, a1, sizeof(a1));
  addrs[0] = a1;
  st = ask(1, 0, &Id[1].id, addrs, 1, 20, NULL, 0);
  ok(st == NP_AUTONATMSG_OK, "host 1 asks by hand: 8th of the minute, OK");
  ok(connect_hosts(4, 0) == 0, "host 4 connected");
  bl = listen_addr(4, 0, bin, sizeof(bin));
  np_maddr_to_string(bin, bl, a2, sizeof(a2));
  addrs[0] = a2;
  s0 = ST(0);
  st = ask(4, 0, &Id[4].id, addrs, 1, 20, NULL, 0);
  s1 = ST(0);
  ok(st == NP_AUTONATMSG_E_DIAL_REFUSED &&
         s1.rate_limited == s0.rate_limited + 1,
     "a fresh peer over the global limit (8/min): E_DIAL_REFUSED");

  /* ---- a request over a limited (relayed) connection is refused ---- */
  {
    lopen lo = {0, 0, NULL};
    rpc r;
    np_autonatmsg m, resp;
    np_autonatmsg_blob b;
    uint8_t buf[512];
    np_ssize len;
    int flag = 0, got_st = -1;
    s0 = ST(4);
    ok(limited_conn(3, 4) == 0, "a limited connection between 3 and 4");
    run_until(&flag, 2.0);
    ok(np_swarm_conn_open(np_host_swarm(Hh[3]), Ca, NP_AUTONATMSG_PROTOCOL,
                          l_opened, &lo, NULL) == 0,
       "requester 3 opens AutoNAT on it");
    run_until(&lo.done, 5);
    memset(&r, 0, sizeof(r));
    if (lo.s) {
      bl = listen_addr(3, 0, bin, sizeof(bin));
      b.data = bin, b.len = bl;
      np_autonatmsg_init(&m);
      m.type = NP_AUTONATMSG_DIAL;
      m.peer = Id[3].id;
      m.addrs = &b;
      m.naddrs = 1;
      r.s = lo.s;
      np_stream_set_cbs(lo.s, &r_cbs, &r);
      len = np_autonatmsg_encode_lp(&m, buf, sizeof(buf));
      lo.s->ops->send(lo.s, buf, (size_t)len, 0, 4096);
      run_until(&r.got, 10);
      if (np_autonatmsg_decode_lp(&resp, r.buf, r.len, NULL) > 0) {
        got_st = (int)resp.status;
        np_autonatmsg_free(&resp);
      }
      rpc_drop(&r);
    }
    s1 = ST(4);
    ok(got_st == NP_AUTONATMSG_E_DIAL_REFUSED &&
           s1.addrs_dialed == s0.addrs_dialed,
       "over a limited connection: E_DIAL_REFUSED, nothing dialed (%d)",
       got_st);
    np_upgrade_del(Ua);
    np_upgrade_del(Ub);
    run_until(&flag, 0.5);
  }

  /* ---- a failing dial-back: E_DIAL_ERROR (host 4 serves, 3 asks) ---- */
  ok(connect_hosts(3, 4) == 0, "requester 3 connected to server 4");
  {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(s, (struct sockaddr *)&sa, &sl);
    close(s); /* a closed port: the dial-back is refused at once */
    snprintf(hang, sizeof(hang), "/ip4/127.0.0.1/tcp/%d", ntohs(sa.sin_port));
  }
  addrs[0] = hang;
  st = ask(3, 4, &Id[3].id, addrs, 1, 20, NULL, 0);
  ok(st == NP_AUTONATMSG_E_DIAL_ERROR,
     "a dial-back to a closed port: E_DIAL_ERROR (%d)", st);
  ok(ST(4).served_error == 1, "server 4 counted it");

  /* ---- the requester goes away while its dial-back runs ---- */
  {
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    rpc r;
    np_autonatmsg m;
    np_autonatmsg_blob b;
    uint8_t buf[512];
    np_ssize len;
    fd_hang = socket(AF_INET, SOCK_DGRAM, 0); /* swallows QUIC Initials */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_hang, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd_hang, (struct sockaddr *)&sa, &sl);
    snprintf(hang, sizeof(hang), "/ip4/127.0.0.1/udp/%d/quic-v1",
             ntohs(sa.sin_port));
    ok(rpc_open(&r, 3, 4) == 0, "requester 3 opens a second request");
    len = np_maddr_parse(hang, strlen(hang), bin, sizeof(bin));
    b.data = bin, b.len = (size_t)len;
    np_autonatmsg_init(&m);
    m.type = NP_AUTONATMSG_DIAL;
    m.peer = Id[3].id;
    m.addrs = &b;
    m.naddrs = 1;
    len = np_autonatmsg_encode_lp(&m, buf, sizeof(buf));
    r.s->ops->send(r.s, buf, (size_t)len, 0, 4096);
    {
      int flag = 0;
      double end;
      ev_now_update(ev);
      end = ev_now(ev) + 5;
      while (ST(4).pending == 0 && ev_now(ev) < end)
        run_until(&flag, 0.02);
    }
    ok(ST(4).pending == 1, "its dial-back is running (to a silent port)");
    rpc_drop(&r); /* the requester resets its stream */
    run_for(0.5);
    ok(ST(4).pending == 0, "the reset withdrew the dial-back");

    /* and once more, then the server stops with it pending */
    ok(rpc_open(&r, 3, 4) == 0, "a third request");
    r.s->ops->send(r.s, buf, (size_t)len, 0, 4096);
    {
      int flag = 0;
      double end;
      ev_now_update(ev);
      end = ev_now(ev) + 5;
      while (ST(4).pending == 0 && ev_now(ev) < end)
        run_until(&flag, 0.02);
    }
    ok(ST(4).pending == 1, "its dial-back is running");
    np_daemon_del(D[4]);
    D[4] = NULL;
    run_until(&r.closed, 5);
    ok(r.closed, "server 4 stopped with it pending: the requester's stream "
                 "ends (%s)", np_errname(r.err));
    rpc_drop(&r);
    close(fd_hang);
  }

  /* ---- the reachability rule against fake servers ---- */
  np_daemon_del(D[1]);
  D[1] = NULL;
  reach_n[1] = 0;
  ok(up(1,
        "autonat_service = no\nautonat_boot_delay = 200ms\n"
        "autonat_interval = 1h\n",
        NULL) == 0 &&
         up(5, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         up(6, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         up(7, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         fake_server(5, NP_AUTONATMSG_E_DIAL_ERROR) == 0 &&
         fake_server(6, NP_AUTONATMSG_E_DIAL_ERROR) == 0 &&
         fake_server(7, NP_AUTONATMSG_E_DIAL_ERROR) == 0,
     "a fresh client and three fake servers answering E_DIAL_ERROR");
  watch(1);
  ok(connect_hosts(1, 5) == 0 && connect_hosts(1, 6) == 0,
     "the client knows two of them");
  run_for(6);
  ok(Fk[5].asked == 1 && Fk[6].asked == 1 &&
         np_autonat_reachability(AN(1)) == NP_REACH_UNKNOWN && reach_n[1] == 0,
     "two failures from two servers: still UNKNOWN (asked %d, %d)",
     Fk[5].asked, Fk[6].asked);
  ok(connect_hosts(1, 7) == 0, "a third server appears");
  run_for(4);
  ok(Fk[7].asked == 1 && np_autonat_reachability(AN(1)) == NP_REACH_PRIVATE &&
         reach_n[1] == 1 && reach_ev[1] == NP_REACH_PRIVATE,
     "after the third: PRIVATE (asked %d), one event", Fk[7].asked);
  (void)other;

  /* one OK flips it to PUBLIC: a server answering OK, asked at the next
   * refresh (autonat_interval 1h: we stop the client's fakes and make one
   * host answer OK; the client asks when the retry comes). Instead of
   * waiting an hour, a new client with a boot delay asks the OK server. */
  np_daemon_del(D[1]);
  D[1] = NULL;
  reach_n[1] = 0;
  ok(up(1,
        "autonat_service = no\nautonat_boot_delay = 200ms\n"
        "autonat_interval = 1h\n",
        NULL) == 0 &&
         up(8, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         fake_server(8, NP_AUTONATMSG_OK) == 0,
     "a fresh client, a fake server answering OK");
  watch(1);
  ok(connect_hosts(1, 5) == 0 && connect_hosts(1, 8) == 0,
     "connected to a failing and an OK server");
  run_for(5);
  ok(np_autonat_reachability(AN(1)) == NP_REACH_PUBLIC && reach_n[1] == 1,
     "one OK: PUBLIC (%s)",
     np_autonat_reach_name(np_autonat_reachability(AN(1))));

  /* ---- confidence once known (autonat_interval 1 s): OKs raise it to
   * 3 at most; while PUBLIC each E_DIAL_ERROR lowers it, at 0 the next one
   * turns PRIVATE; one OK turns PUBLIC again at once ---- */
  np_daemon_del(D[1]);
  D[1] = NULL;
  reach_n[1] = 0;
  ok(up(1,
        "autonat_service = no\nautonat_boot_delay = 200ms\n"
        "autonat_interval = 1s\n",
        NULL) == 0,
     "a fresh client asking every second once known");
  watch(1);
  ok(connect_hosts(1, 8) == 0, "it knows only the OK server");
  {
    int flag = 0, k;
    double end;
    ev_now_update(ev);
    end = ev_now(ev) + 10;
    while (ST(1).confidence < 3 && ev_now(ev) < end)
      run_until(&flag, 0.05);
    k = Fk[8].asked;
    run_for(1.5);
    ok(np_autonat_reachability(AN(1)) == NP_REACH_PUBLIC &&
           ST(1).confidence == 3 && Fk[8].asked > k && reach_n[1] == 1,
       "PUBLIC, confidence 3 after 4 OKs and capped there (asked %d)",
       Fk[8].asked);
    fake_del(8); /* only a failing server is left */
    k = Fk[5].asked;
    ok(connect_hosts(1, 5) == 0, "it now knows only a failing server");
    ev_now_update(ev);
    end = ev_now(ev) + 10;
    while (np_autonat_reachability(AN(1)) == NP_REACH_PUBLIC &&
           ev_now(ev) < end)
      run_until(&flag, 0.05);
    s1 = ST(1);
    ok(np_autonat_reachability(AN(1)) == NP_REACH_PRIVATE && reach_n[1] == 2 &&
           reach_ev[1] == NP_REACH_PRIVATE && s1.confidence == 0 &&
           Fk[5].asked - k == 4,
       "PUBLIC -> PRIVATE once the confidence ran out: 4 dial-errors (%d)",
       Fk[5].asked - k);
    ok(up(8, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
           fake_server(8, NP_AUTONATMSG_OK) == 0 && connect_hosts(1, 8) == 0,
       "an OK server again");
    ev_now_update(ev);
    end = ev_now(ev) + 10;
    while (np_autonat_reachability(AN(1)) == NP_REACH_PRIVATE &&
           ev_now(ev) < end)
      run_until(&flag, 0.05);
    ok(np_autonat_reachability(AN(1)) == NP_REACH_PUBLIC && reach_n[1] == 3,
       "one OK: PUBLIC again");
  }

  /* ---- client lifecycle: the server vanishes mid-probe; the client
   * stops mid-probe ---- */
  np_daemon_del(D[1]);
  D[1] = NULL;
  reach_n[1] = 0;
  ok(up(1,
        "autonat_service = no\nautonat_boot_delay = 200ms\n"
        "autonat_interval = 1h\n",
        NULL) == 0 &&
         up(9, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         fake_server(9, -1) == 0,
     "a fresh client, a fake server that never answers");
  watch(1);
  ok(connect_hosts(1, 9) == 0, "connected");
  {
    int flag = 0;
    double end;
    ev_now_update(ev);
    end = ev_now(ev) + 5;
    while (Fk[9].asked == 0 && ev_now(ev) < end)
      run_until(&flag, 0.02);
  }
  ok(Fk[9].asked == 1 && ST(1).probes == 1, "the client asked it");
  fake_del(9);
  run_for(1.0);
  s1 = ST(1);
  ok(np_autonat_reachability(AN(1)) == NP_REACH_UNKNOWN && reach_n[1] == 0 &&
         s1.last_result < 0 && s1.last_result != -1000,
     "the server went away mid-probe: an error (%s), still UNKNOWN",
     np_errname(s1.last_result));
  ok(up(9, "autonat = no\nautonat_service = no\n", NULL) == 0 &&
         fake_server(9, -1) == 0 && connect_hosts(1, 9) == 0,
     "another silent server");
  {
    int flag = 0;
    double end;
    ev_now_update(ev);
    end = ev_now(ev) + 5;
    while (Fk[9].asked == 0 && ev_now(ev) < end)
      run_until(&flag, 0.02);
  }
  ok(Fk[9].asked == 1, "the client asked it (at once: a new server; %d)",
     Fk[9].asked);
  np_daemon_del(D[1]); /* the client stops with its probe pending */
  D[1] = NULL;
  run_for(1.0);
  ok(np_list_empty(&Fk[9].streams),
     "the client stopped with its probe pending: the server's stream ended");
  fake_del(9);

  /* ---- forced reachability and the DHT's auto mode ---- */
  np_daemon_del(D[1]);
  D[1] = NULL;
  ok(up(1, "reachability = public\n", "auto") == 0 &&
         np_autonat_reachability(AN(1)) == NP_REACH_PUBLIC &&
         kad_server(1) == 1 && ST(1).forced && !ST(1).client_on,
     "reachability = public: PUBLIC, no client, DHT server");
  np_daemon_del(D[1]);
  D[1] = NULL;
  ok(up(1,
        "reachability = private\n"
        "treat_as_public = 127.0.0.0/8\n",
        "auto") == 0 &&
         np_autonat_reachability(AN(1)) == NP_REACH_PRIVATE &&
         kad_server(1) == 0,
     "reachability = private: PRIVATE, DHT client even with a listen "
     "address counted public");

  for (i = 5; i <= 8; i++)
    fake_del(i);
  for (i = 0; i < NH; i++)
    if (D[i])
      np_daemon_del(D[i]);
  close(udp_fd);
  close(tcp_fd);
  return done_testing();
}
