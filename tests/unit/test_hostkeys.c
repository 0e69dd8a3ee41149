/* Host keys of every libp2p type as the identity of a running host: for
 * Ed25519, RSA (hivemind's 2048-bit PKCS#1 file from tests/fixtures/keys),
 * secp256k1 and ECDSA P-256, two daemons on loopback connect over QUIC
 * (libp2p TLS: the certificate extension is signed by the host key), over
 * TCP with Noise (the handshake payload is signed by it) and over TCP with
 * libp2p TLS. Each side must
 * see the other's expected peer ID; identify read from the wire carries
 * the host's PublicKey and a signed peer record that verifies; a relay
 * voucher sealed with the key opens. */
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_daemon.h"
#include "np_event.h"
#include "np_host.h"
#include "np_identify.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_relaymsg.h"
#include "np_stream.h"
#include "np_varint.h"
#include "tap.h"
#include "test_util.h"

static struct ev_loop *ev;
static np_daemon *D[2];
static np_host *Hh[2];
static np_identity Id[2];

static void tick(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l, (void)w, (void)revents;
}

/* A periodic timer keeps ev_run(EVRUN_ONCE) from blocking past |secs|. */
static void run_until(const int *flag, double secs) {
  ev_timer t;
  double end;
  ev_timer_init(&t, tick, 0.05, 0.05);
  ev_timer_start(ev, &t);
  ev_now_update(ev);
  end = ev_now(ev) + secs;
  while (!*flag && ev_now(ev) < end) {
    ev_run(ev, EVRUN_ONCE);
    ev_now_update(ev);
  }
  ev_timer_stop(ev, &t);
}

static void settle(double secs) {
  int never = 0;
  run_until(&never, secs);
}

/* The rounds: QUIC (TLS), TCP with Noise, TCP with libp2p TLS. */
enum { R_QUIC, R_NOISE, R_TLS, R_N };
static const char *const round_name[R_N] = {"QUIC/TLS", "TCP/Noise",
                                            "TCP/TLS"};

/* Host |i| listening on one transport with one security protocol, so that
 * every connection between the two goes through the one under test. */
static int up(int i, int r) {
  char ini[320], err[256];
  np_conf *c;
  int n = snprintf(ini, sizeof(ini),
                   "[host]\nlisten = %s\nsecurity = %s\nlog_level = error\n"
                   "[dht]\nmode = off\n[plugins]\nautoload = no\n",
                   r == R_QUIC ? "/ip4/127.0.0.1/udp/0/quic-v1"
                               : "/ip4/127.0.0.1/tcp/0",
                   r == R_TLS ? "tls" : "noise");
  if (np_conf_load_string(&c, "t.ini", ini, (size_t)n, err, sizeof(err)) !=
          0 ||
      np_daemon_new(&D[i], ev, c, &Id[i]) != 0)
    return -1;
  Hh[i] = np_daemon_host(D[i]);
  return np_daemon_start(D[i], NP_DAEMON_NET);
}

static void down(int i) {
  if (D[i] != NULL)
    np_daemon_del(D[i]);
  D[i] = NULL;
}

/* Host |h|'s listen address of transport |tcp| (binary). */
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

/* Does host |h| have a connection of |kind| to the peer |id|? */
static int sees(int h, const np_peerid *id, int kind) {
  void *net;
  const np_net_ops *ops = np_host_net(Hh[h], &net);
  np_conn_info ci[16];
  size_t n = ops->conns(net, ci, 16);
  for (size_t i = 0; i < n && i < 16; i++)
    if (np_peerid_equal(&ci[i].peer, id) && ci[i].transport == kind)
      return 1;
  return 0;
}

typedef struct waitv {
  int done, err;
} waitv;
static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err;
}

/* An /ipfs/id/1.0.0 stream read to its end. */
typedef struct idread {
  int opened, closed, err;
  uint8_t buf[16384];
  size_t len, over;
} idread;

static void id_data(np_stream *s, const uint8_t *d, size_t n, void *ud) {
  idread *r = ud;
  if (n == 0) { /* B is done: finish ours, on_close follows */
    s->ops->close(s);
    return;
  }
  if (r->len + n > sizeof(r->buf)) {
    r->over = 1;
    return;
  }
  memcpy(r->buf + r->len, d, n);
  r->len += n;
}
static void id_close(np_stream *s, int err, void *ud) {
  idread *r = ud;
  (void)s;
  r->closed = 1;
  r->err = err;
}
static void id_opened(void *ud, int err, np_stream *s, const char *proto) {
  static const np_stream_cbs cbs = {sizeof(np_stream_cbs), NULL, id_data,
                                    id_close, NULL};
  idread *r = ud;
  (void)proto;
  r->opened = 1;
  r->err = err;
  if (err == 0)
    np_stream_set_cbs(s, &cbs, r);
  else
    r->closed = 1;
}

/* A asks B's identify over the current connection and checks what B said
 * about itself: its PublicKey and its signed peer record. */
static void check_identify(const char *what) {
  static const char *const protos[] = {"/ipfs/id/1.0.0"};
  static idread r;
  void *net;
  const np_net_ops *ops = np_host_net(Hh[0], &net);
  np_identify idf;
  np_peer_record rec;
  size_t off = 0;
  int perr = 0;
  memset(&r, 0, sizeof(r));
  if (ops->open_stream(net, &Id[1].id, protos, 1, 0, 10000, id_opened, &r,
                       NULL) != 0) {
    ok(0, "%s: identify stream opens", what);
    return;
  }
  run_until(&r.closed, 15);
  ok(r.opened && r.len > 0 && !r.over, "%s: identify read (%zu bytes)", what,
     r.len);
  np_identify_init(&idf);
  while (off < r.len && perr == 0) {
    uint64_t l;
    np_ssize n = np_varint_decode(r.buf + off, r.len - off, &l);
    if (n <= 0 || l > r.len - off - (size_t)n) {
      perr = NP_EPROTO;
      break;
    }
    off += (size_t)n;
    perr = np_identify_parse(&idf, r.buf + off, (size_t)l);
    off += (size_t)l;
  }
  ok(perr == 0, "%s: identify parses", what);
  is_mem(idf.pubkey.data, idf.pubkey.len, Id[1].pub_pb, Id[1].pub_pb_len,
         "%s: identify carries B's PublicKey", what);
  if (idf.signed_record.data != NULL &&
      np_peer_record_open(&rec, idf.signed_record.data,
                          idf.signed_record.len) == 0) {
    ok(np_peerid_equal(&rec.id, &Id[1].id),
       "%s: B's signed peer record verifies, signer is B", what);
    np_peer_record_free(&rec);
  } else {
    ok(0, "%s: B's signed peer record verifies, signer is B", what);
  }
  np_identify_free(&idf);
}

/* A dials B on its only address. */
static void dial(const char *name, int r) {
  char what[64];
  int tcp = r != R_QUIC;
  int kind = tcp ? NP_TRANSPORT_TCP : NP_TRANSPORT_QUIC;
  uint8_t b[128];
  size_t bl = listen_addr(1, tcp, b, sizeof(b));
  const uint8_t *addrs[1] = {b};
  size_t lens[1] = {bl};
  void *net;
  const np_net_ops *ops = np_host_net(Hh[0], &net);
  waitv w;
  int i;
  snprintf(what, sizeof(what), "%s over %s", name, round_name[r]);
  memset(&w, 0, sizeof(w));
  if (bl == 0 || ops->connect_identified(net, &Id[1].id, addrs, lens, 1,
                                         10000, on_done, &w, NULL) != 0) {
    ok(0, "%s: A connects to B", what);
    return;
  }
  run_until(&w.done, 15);
  ok(w.done && w.err == 0, "%s: A connects to B's expected peer ID (%s)",
     what, np_errname(w.err));
  for (i = 0; i < 100 && !sees(1, &Id[0].id, kind); i++)
    settle(0.05);
  ok(sees(0, &Id[1].id, kind) && sees(1, &Id[0].id, kind),
     "%s: each side sees the other's peer ID", what);
  check_identify(what);
}

/* Seal and open records with the key, no network. */
static void records(const char *name) {
  uint8_t env[4096];
  np_identify_blob a;
  uint8_t addr[32];
  np_peer_record rec;
  np_relaymsg_voucher v;
  np_ssize n;
  static const char ma[] = "/ip4/127.0.0.1/tcp/4001";
  a.len = (size_t)np_maddr_parse(ma, sizeof(ma) - 1, addr, sizeof(addr));
  a.data = addr;
  n = np_peer_record_seal(&Id[0], 7, &a, 1, env, sizeof(env));
  if (n > 0 && np_peer_record_open(&rec, env, (size_t)n) == 0) {
    ok(np_peerid_equal(&rec.id, &Id[0].id) && rec.seq == 7,
       "%s: peer record seals and opens", name);
    np_peer_record_free(&rec);
  } else {
    ok(0, "%s: peer record seals and opens", name);
  }
  if (n > 0) {
    env[n - 3] ^= 0x01; /* inside the signature */
    ok(np_peer_record_open(&rec, env, (size_t)n) != 0,
       "%s: a record with an altered signature is refused", name);
  }
  n = np_relaymsg_voucher_seal(&Id[0], &Id[1].id, 4000000000u, env,
                               sizeof(env));
  ok(n > 0 && np_relaymsg_voucher_open(&v, env, (size_t)n, &Id[0].id,
                                       &Id[1].id) == 0,
     "%s: relay voucher seals and opens", name);
}

static int fixture(np_identity *id, const char *file) {
  char src[1024], dir[512], dst[1024], err[512], cmd[3200];
  int rv;
  tu_tmpdir(dir, sizeof(dir));
  snprintf(src, sizeof(src), "%s/tests/fixtures/keys/%s", tu_srcdir(), file);
  snprintf(dst, sizeof(dst), "%s/%s", dir, file);
  snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 600 '%s'", src, dst, dst);
  rv = system(cmd) == 0 ? np_identity_load(id, dst, NULL, err, sizeof(err))
                        : -1;
  tu_rmrf(dir);
  return rv;
}

int main(void) {
  static const struct {
    int type;
    const char *fixture, *prefix;
  } t[] = {{NP_KEY_ED25519, NULL, "12D3KooW"},
           {NP_KEY_RSA, "rsa2048.key", "Qm"},
           {NP_KEY_SECP256K1, "secp256k1.key", "16Uiu2"},
           {NP_KEY_ECDSA, "p256.key", "Qm"}};
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  alarm(240);
  for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
    const char *name = np_identity_type_name(t[k].type);
    /* A runs the fixture key (the file a user would give), B a fresh one. */
    int ka = t[k].fixture ? fixture(&Id[0], t[k].fixture)
                          : np_identity_generate(&Id[0]);
    int kb = np_identity_generate_type(&Id[1], t[k].type);
    if (ka != 0 || kb != 0 || Id[0].type != t[k].type ||
        strncmp(Id[0].id_str, t[k].prefix, strlen(t[k].prefix)) != 0) {
      ok(0, "%s: keys ready (%d %d)", name, ka, kb);
      continue;
    }
    ok(1, "%s: A is %s, B %s", name, Id[0].id_str, Id[1].id_str);
    records(name);
    for (int r = 0; r < R_N; r++) {
      if (up(0, r) != 0 || up(1, r) != 0) {
        ok(0, "%s: two hosts on loopback (%s)", name, round_name[r]);
        down(0);
        down(1);
        continue;
      }
      dial(name, r);
      down(0);
      down(1);
    }
    np_identity_clear(&Id[0]);
    np_identity_clear(&Id[1]);
  }
  np_crypto_cleanup();
  return done_testing();
}
