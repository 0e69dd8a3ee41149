/* The control socket's DHT requests (p2pd Request.type DHT) against a
 * small DHT in one process: 8 daemons on /memory/, host 0 with a control
 * socket driven by a non-blocking client while the test runs the loop.
 * Every request type, its errors, and the lifecycle: a client leaving
 * while its lookup waits or mid-stream (the lookup is cancelled), a
 * request timeout, a client that does not read a stream (cut, memory
 * bounded), the module stopping under waiting and streaming requests.
 * A "silent" peer (kad protocol, never answers) keeps lookups waiting.
 * Every wait is bounded by a deadline. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_client.h"
#include "np_cid.h"
#include "np_conf.h"
#include "np_crypto.h"
#include "np_daemon.h"
#include "np_err.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_kad.h"
#include "np_kadmsg.h"
#include "np_kadstore.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_stream.h"
#include "tap.h"

#define NH 8
#define SILENT NH

static struct ev_loop *ev;

typedef struct khost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  np_kad *kad;
  char addr[64];
} khost;

static khost H[NH + 1];
static char sock_path[108];
static np_kad *cur_kad; /* what host 0's control socket reaches */
static int silent_open, silent_closed;
static np_list silent_streams;

#define diag(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))

static double now_s(void) {
  ev_now_update(ev);
  return ev_now(ev);
}

static void run_until(const int *flag, double secs) {
  double end = now_s() + secs;
  while (!*flag && now_s() < end)
    ev_run(ev, EVRUN_ONCE);
}

static void run_for(double secs) {
  int never = 0;
  run_until(&never, secs);
}

/* Keeps ev_run(EVRUN_ONCE) returning while the client polls its socket. */
static void on_tick(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l, (void)w, (void)revents;
}

static void *test_find(void *ud, const char *name) {
  (void)ud;
  return strcmp(name, "kad") == 0 ? cur_kad : NULL;
}

/* The silent peer's kad handler: takes streams, never answers. */
static void silent_on_open(np_stream *s, void *ud) {
  (void)s, (void)ud;
  silent_open++;
}
static void silent_on_data(np_stream *s, const uint8_t *d, size_t len,
                           void *ud) {
  (void)s, (void)d, (void)len, (void)ud;
}
static void silent_on_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err, (void)ud;
  silent_closed++;
}

static int host_up(int i) {
  char ini[512];
  np_conf *c;
  char err[256];
  int rv;
  snprintf(H[i].addr, sizeof(H[i].addr), "/memory/ctldht%d", i);
  snprintf(ini, sizeof(ini),
           "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n%s%s%s"
           "log_level = error\n[dht]\nmode = server\n"
           "[plugins]\nautoload = no\n",
           i == 0 ? "control = " : "", i == 0 ? sock_path : "",
           i == 0 ? "\n" : "");
  if (np_conf_load_string(&c, "mem.ini", ini, strlen(ini), err,
                          sizeof(err)) != 0) {
    diag("config: %s", err);
    return -1;
  }
  /* Only the in-memory transport: the config check wants a real one. */
  free(c->host.listen.v[0]);
  c->host.listen.v[0] = strdup(H[i].addr);
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  if ((rv = np_daemon_start(H[i].d, i == 0 ? NP_DAEMON_NET | NP_DAEMON_CONTROL
                                           : NP_DAEMON_NET)) != 0)
    return rv;
  if ((H[i].kad = np_daemon_module(H[i].d, "kad")) == NULL)
    return -1;
  if (i == SILENT) {
    np_handler hd;
    np_proto_remove_owner(np_host_protos(H[i].h), H[i].kad);
    H[i].kad = NULL;
    memset(&hd, 0, sizeof(hd));
    hd.proto = NP_KADMSG_PROTOCOL;
    hd.proto_len = strlen(hd.proto);
    hd.kind = NP_HANDLER_STREAM;
    hd.owner_kind = NP_OWNER_HOST;
    hd.owner = &H[i];
    hd.owner_name = "test";
    hd.stream.struct_size = sizeof(hd.stream);
    hd.stream.on_open = silent_on_open;
    hd.stream.on_data = silent_on_data;
    hd.stream.on_close = silent_on_close;
    hd.streams = &silent_streams;
    return np_proto_add(np_host_protos(H[i].h), &hd, NULL);
  }
  return 0;
}

static size_t p2p_addr(int i, uint8_t *out, size_t cap) {
  char t[256], idt[NP_PEERID_STRMAX];
  np_ssize n;
  np_peerid_to_string(&H[i].id.id, idt, sizeof(idt));
  snprintf(t, sizeof(t), "%s/p2p/%s", H[i].addr, idt);
  n = np_maddr_parse(t, strlen(t), out, cap);
  return n < 0 ? 0 : (size_t)n;
}

typedef struct waitv {
  int done, err, calls;
  size_t n;
} waitv;

static void on_boot(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
}
static void on_count(void *ud, int err, size_t n) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++, w->n = n;
}
static void on_net(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
}

/* ---- the control client, polled while the loop runs -------------------- */

/* One delimited message within |secs|: 0, -2 at EOF, -1 on timeout. */
static int cl_wait(cl *c, const uint8_t **msg, size_t *mlen, double secs) {
  double end = now_s() + secs;
  if (c->consumed) {
    memmove(c->buf, c->buf + c->consumed, c->len - c->consumed);
    c->len -= c->consumed;
    c->consumed = 0;
  }
  for (;;) {
    np_ssize n = np_lp_parse(c->buf, c->len, 64u << 20, msg, mlen);
    ssize_t r;
    if (n >= 0) {
      c->consumed = (size_t)n;
      return 0;
    }
    if (n != NP_ETRUNC)
      return -1;
    r = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
    if (r > 0) {
      c->len += (size_t)r;
      continue;
    }
    if (r == 0)
      return -2;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -2;
    if (now_s() > end)
      return -1;
    ev_run(ev, EVRUN_ONCE);
  }
}

static int cl_connect(cl *c) {
  if (cl_open(c, sock_path) != 0) {
    cl_close(c);
    return -1;
  }
  return 0;
}

static Np__P2pd__Response *wait_resp(cl *c, double secs) {
  const uint8_t *m;
  size_t ml;
  if (cl_wait(c, &m, &ml, secs) != 0)
    return NULL;
  return np__p2pd__response__unpack(NULL, ml, m);
}

static Np__P2pd__Response *dht_req(cl *c, const Np__P2pd__DHTRequest *d,
                                   double secs) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  rq.type = NP__P2PD__REQUEST__TYPE__DHT;
  rq.dht = (Np__P2pd__DHTRequest *)d;
  if (cl_send_req(c, &rq) != 0)
    return NULL;
  return wait_resp(c, secs);
}

static int send_dht(cl *c, const Np__P2pd__DHTRequest *d) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  rq.type = NP__P2PD__REQUEST__TYPE__DHT;
  rq.dht = (Np__P2pd__DHTRequest *)d;
  return cl_send_req(c, &rq);
}

static Np__P2pd__DHTResponse *dht_next(cl *c, double secs) {
  const uint8_t *m;
  size_t ml;
  if (cl_wait(c, &m, &ml, secs) != 0)
    return NULL;
  return np__p2pd__dhtresponse__unpack(NULL, ml, m);
}

static void rfree(Np__P2pd__Response *r) {
  if (r)
    np__p2pd__response__free_unpacked(r, NULL);
}

static int is_error(const Np__P2pd__Response *r, const char *want) {
  int okv = r && r->type == NP__P2PD__RESPONSE__TYPE__ERROR && r->error &&
            r->error->msg && strstr(r->error->msg, want);
  if (!okv)
    diag("want ERROR \"%s\", got %s \"%s\"", want,
         r ? (r->type == NP__P2PD__RESPONSE__TYPE__OK ? "OK" : "ERROR")
           : "nothing",
         r && r->error && r->error->msg ? r->error->msg : "");
  return okv;
}

static int is_begin(const Np__P2pd__Response *r) {
  return r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->dht &&
         r->dht->type == NP__P2PD__DHTRESPONSE__TYPE__BEGIN;
}

static int host_of(const ProtobufCBinaryData *b) {
  np_peerid id;
  if (np_peerid_from_bytes(&id, b->data, b->len) != 0)
    return -1;
  for (int i = 0; i <= NH; i++)
    if (np_peerid_equal(&id, &H[i].id.id))
      return i;
  return -1;
}

/* A fresh peer ID nobody has. */
static void stranger(np_peerid *p) {
  np_identity x;
  np_identity_generate(&x);
  *p = x.id;
  np_identity_clear(&x);
}

/* Stream items until END: the number of VALUE items, -1 on anything else
 * (|hosts|: bit i set per item naming host i, by peer or value). */
static int read_stream(cl *c, double secs, unsigned *hosts, int by_value) {
  int n = 0;
  for (int i = 0; i < 10000; i++) {
    Np__P2pd__DHTResponse *d = dht_next(c, secs);
    int type;
    if (d == NULL)
      return -1;
    type = d->type;
    if (type == NP__P2PD__DHTRESPONSE__TYPE__VALUE) {
      int h = by_value ? (d->has_value ? host_of(&d->value) : -1)
                       : (d->peer ? host_of(&d->peer->id) : -1);
      if (hosts && h >= 0)
        *hosts |= 1u << h;
      n++;
    }
    np__p2pd__dhtresponse__free_unpacked(d, NULL);
    if (type == NP__P2PD__DHTRESPONSE__TYPE__END)
      return n;
    if (type != NP__P2PD__DHTRESPONSE__TYPE__VALUE)
      return -1;
  }
  return -1;
}

static int identify_ok(cl *c) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *r;
  int okv;
  rq.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
  if (cl_send_req(c, &rq) != 0)
    return 0;
  r = wait_resp(c, 3);
  okv = r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->identify;
  rfree(r);
  return okv;
}

/* ---- phase A: each request type on the daemon's module ------------------- */

static void test_off(void) {
  cl c;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  cur_kad = NULL;
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PEER;
  d.has_peer = 1;
  d.peer.data = H[1].id.id.bytes;
  d.peer.len = H[1].id.id.len;
  ok(cl_connect(&c) == 0, "control client connects");
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "DHT not enabled"), "DHT off: \"DHT not enabled\"");
  rfree(r);
  cur_kad = H[0].kad;
  ok(identify_ok(&c), "the connection goes on after the refusal");
  cl_close(&c);
}

static void test_find_peer(void) {
  cl c;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  uint8_t want[NP_MADDR_MAX];
  np_ssize wl = np_maddr_parse(H[5].addr, strlen(H[5].addr), want,
                               sizeof(want));
  np_peerid s;
  int found = 0;
  cl_connect(&c);
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PEER;
  d.has_peer = 1;
  d.peer.data = H[5].id.id.bytes;
  d.peer.len = H[5].id.id.len;
  r = dht_req(&c, &d, 35);
  ok(r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->dht &&
         r->dht->type == NP__P2PD__DHTRESPONSE__TYPE__VALUE && r->dht->peer &&
         host_of(&r->dht->peer->id) == 5,
     "FIND_PEER host 5: OK, dht{VALUE, peer: host 5}");
  if (r && r->dht && r->dht->peer)
    for (size_t i = 0; i < r->dht->peer->n_addrs; i++)
      if (wl > 0 && r->dht->peer->addrs[i].len == (size_t)wl &&
          memcmp(r->dht->peer->addrs[i].data, want, (size_t)wl) == 0)
        found = 1;
  ok(found, "its addresses (from the peerstore) include %s", H[5].addr);
  rfree(r);
  stranger(&s);
  d.peer.data = s.bytes;
  d.peer.len = s.len;
  r = dht_req(&c, &d, 35);
  ok(is_error(r, "not found"), "FIND_PEER of a stranger: \"not found\"");
  rfree(r);
  cl_close(&c);
}

static void test_closest(void) {
  cl c;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  unsigned hosts = 0;
  int n;
  cl_connect(&c);
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_CLOSEST_PEERS;
  d.has_key = 1;
  d.key.data = (uint8_t *)"ctldht key";
  d.key.len = 10;
  r = dht_req(&c, &d, 35);
  ok(is_begin(r), "GET_CLOSEST_PEERS: OK, dht{BEGIN}");
  rfree(r);
  n = read_stream(&c, 5, &hosts, 1);
  ok(n == NH - 1 && hosts == ((1u << NH) - 2),
     "then %d VALUE items, the peer IDs of hosts 1..%d, then END", n, NH - 1);
  ok(identify_ok(&c), "the connection returns to the request loop");
  cl_close(&c);
}

static void test_invalid(void) {
  cl c;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *r;
  cl_connect(&c);
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PEER;
  d.has_peer = 1;
  d.peer.data = (uint8_t *)"junk";
  d.peer.len = 4;
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "invalid peer ID"), "FIND_PEER with junk: invalid peer ID");
  rfree(r);
  d.has_peer = 0;
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_PUBLIC_KEY;
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "invalid peer ID"), "GET_PUBLIC_KEY without a peer");
  rfree(r);
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_CLOSEST_PEERS;
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "invalid key"), "GET_CLOSEST_PEERS without a key");
  rfree(r);
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_VALUE;
  d.has_key = 1;
  d.key.len = NP_KADMSG_KEY_MAX + 1;
  d.key.data = calloc(1, d.key.len);
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "invalid key"), "GET_VALUE with a %zu-byte key",
     d.key.len);
  rfree(r);
  free(d.key.data);
  d.key.data = (uint8_t *)"/pk/x";
  d.key.len = 5;
  d.type = NP__P2PD__DHTREQUEST__TYPE__PUT_VALUE;
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "without a value"), "PUT_VALUE without a value");
  rfree(r);
  d.type = NP__P2PD__DHTREQUEST__TYPE__PROVIDE;
  d.has_cid = 1;
  d.cid.data = (uint8_t *)"\x01\x55\x12\x20tooshort";
  d.cid.len = 12;
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "invalid CID"), "PROVIDE with a truncated CID");
  rfree(r);
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS;
  d.has_cid = 0;
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "invalid CID"), "FIND_PROVIDERS without a CID");
  rfree(r);
  d.type = (Np__P2pd__DHTRequest__Type)42;
  r = dht_req(&c, &d, 3);
  ok(is_error(r, "unknown DHT request type 42"), "DHT request type 42");
  rfree(r);
  rq.type = NP__P2PD__REQUEST__TYPE__DHT;
  cl_send_req(&c, &rq);
  r = wait_resp(&c, 3);
  ok(is_error(r, "without its dht field"), "a DHT request without dht");
  rfree(r);
  ok(identify_ok(&c), "the connection goes on after each error");
  cl_close(&c);
}

/* /pk/<host i's ID> and its value: the PublicKey protobuf. */
static size_t pk_key(int i, uint8_t *key) {
  memcpy(key, "/pk/", 4);
  memcpy(key + 4, H[i].id.id.bytes, H[i].id.id.len);
  return 4 + H[i].id.id.len;
}

static void test_records(void) {
  cl c;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  uint8_t key[80];
  waitv w;
  np_kad_lookup *lk;
  int n;
  cl_connect(&c);

  /* PUT_VALUE through the control socket, GET_VALUE back through it and
   * directly on another host. */
  d.type = NP__P2PD__DHTREQUEST__TYPE__PUT_VALUE;
  d.has_key = d.has_value = 1;
  d.key.data = key;
  d.key.len = pk_key(0, key);
  d.value.data = H[0].id.pub_pb;
  d.value.len = H[0].id.pub_pb_len;
  r = dht_req(&c, &d, 35);
  ok(r && r->type == NP__P2PD__RESPONSE__TYPE__OK, "PUT_VALUE /pk/host0: OK");
  rfree(r);
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_VALUE;
  d.has_value = 0;
  r = dht_req(&c, &d, 35);
  ok(r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->dht &&
         r->dht->type == NP__P2PD__DHTRESPONSE__TYPE__VALUE &&
         r->dht->has_value && r->dht->value.len == H[0].id.pub_pb_len &&
         memcmp(r->dht->value.data, H[0].id.pub_pb, H[0].id.pub_pb_len) == 0,
     "GET_VALUE: OK, dht{VALUE, value: the record}");
  rfree(r);

  /* A record host 4 put: found through the network. */
  memset(&w, 0, sizeof(w));
  d.key.len = pk_key(4, key);
  ok(np_kad_put_value(H[4].kad, key, d.key.len, H[4].id.pub_pb,
                      H[4].id.pub_pb_len, on_count, &w, &lk) == 0,
     "host 4 puts its /pk/ record");
  run_until(&w.done, 35);
  ok(w.done && w.err == 0 && w.n >= 1, "stored at %zu peers (%s)", w.n,
     np_errname(w.err));
  r = dht_req(&c, &d, 35);
  ok(r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->dht &&
         r->dht->has_value && r->dht->value.len == H[4].id.pub_pb_len &&
         memcmp(r->dht->value.data, H[4].id.pub_pb, H[4].id.pub_pb_len) == 0,
     "GET_VALUE of host 4's record through host 0");
  rfree(r);
  d.type = NP__P2PD__DHTREQUEST__TYPE__SEARCH_VALUE;
  r = dht_req(&c, &d, 35);
  ok(is_begin(r), "SEARCH_VALUE: OK, dht{BEGIN}");
  rfree(r);
  n = read_stream(&c, 35, NULL, 1);
  ok(n >= 1, "then %d value(s), then END", n);

  /* Missing records and refused values. */
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_VALUE;
  d.key.len = pk_key(6, key);
  r = dht_req(&c, &d, 35);
  ok(is_error(r, "not found"), "GET_VALUE of a record nobody put");
  rfree(r);
  d.type = NP__P2PD__DHTREQUEST__TYPE__PUT_VALUE;
  d.has_value = 1;
  d.value.data = H[2].id.pub_pb; /* not host 6's key */
  d.value.len = H[2].id.pub_pb_len;
  r = dht_req(&c, &d, 5);
  ok(is_error(r, "refused"), "PUT_VALUE of another peer's key under /pk/");
  rfree(r);
  d.key.data = (uint8_t *)"/nons/key";
  d.key.len = 9;
  r = dht_req(&c, &d, 5);
  ok(is_error(r, "no validator"), "PUT_VALUE in an unknown namespace");
  rfree(r);

  /* GET_PUBLIC_KEY. */
  memset(&d, 0, sizeof(d));
  np__p2pd__dhtrequest__init(&d);
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_PUBLIC_KEY;
  d.has_peer = 1;
  d.peer.data = H[3].id.id.bytes;
  d.peer.len = H[3].id.id.len;
  r = dht_req(&c, &d, 35);
  ok(r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->dht &&
         r->dht->has_value && r->dht->value.len == H[3].id.pub_pb_len &&
         memcmp(r->dht->value.data, H[3].id.pub_pb, H[3].id.pub_pb_len) == 0,
     "GET_PUBLIC_KEY host 3: its PublicKey protobuf");
  rfree(r);

  /* FIND_PEERS_CONNECTED_TO_PEER: a well-formed stream of known hosts. */
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PEERS_CONNECTED_TO_PEER;
  d.peer.data = H[5].id.id.bytes;
  d.peer.len = H[5].id.id.len;
  r = dht_req(&c, &d, 35);
  ok(is_begin(r), "FIND_PEERS_CONNECTED_TO_PEER: OK, dht{BEGIN}");
  rfree(r);
  {
    unsigned hosts = 0;
    n = read_stream(&c, 35, &hosts, 0);
    ok(n >= 1 && (hosts & ~((1u << NH) - 1)) == 0 && !(hosts & (1u << 5)),
       "then %d peers connected to host 5 (hosts %#x), then END", n, hosts);
  }
  cl_close(&c);
}

/* CIDv1 (raw) of sha2-256 over |text|. */
static size_t make_cid(const char *text, uint8_t *out) {
  out[0] = 0x01, out[1] = 0x55, out[2] = 0x12, out[3] = 0x20;
  np_crypto_sha256((const uint8_t *)text, strlen(text), out + 4);
  return 36;
}

static void test_providers(void) {
  cl c;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  uint8_t cid[64];
  size_t cl_len = make_cid("ctldht content", cid);
  const uint8_t *mh;
  size_t mhlen;
  waitv w;
  np_kad_lookup *lk;
  unsigned hosts = 0;
  int n;
  cl_connect(&c);
  np_cid_multihash(cid, cl_len, &mh, &mhlen);
  d.type = NP__P2PD__DHTREQUEST__TYPE__PROVIDE;
  d.has_cid = 1;
  d.cid.data = cid;
  d.cid.len = cl_len;
  r = dht_req(&c, &d, 35);
  ok(r && r->type == NP__P2PD__RESPONSE__TYPE__OK, "PROVIDE a CIDv1: OK");
  rfree(r);
  /* Host 6 provides the same content, directly. */
  memset(&w, 0, sizeof(w));
  np_kad_provide(H[6].kad, mh, mhlen, on_count, &w, &lk);
  run_until(&w.done, 35);
  ok(w.done && w.err == 0, "host 6 provides it too (%s)", np_errname(w.err));
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS;
  r = dht_req(&c, &d, 35);
  ok(is_begin(r), "FIND_PROVIDERS (default count): OK, dht{BEGIN}");
  rfree(r);
  n = read_stream(&c, 35, &hosts, 0);
  ok(n == 2 && hosts == ((1u << 0) | (1u << 6)),
     "then hosts 0 and 6 (%d items, %#x), then END", n, hosts);
  d.has_count = 1;
  d.count = 1;
  r = dht_req(&c, &d, 35);
  n = is_begin(r) ? read_stream(&c, 35, NULL, 0) : -1;
  ok(n == 1, "with count 1: one provider (%d)", n);
  rfree(r);
  /* CIDv0 (the bare multihash) names the same key. */
  d.cid.data = (uint8_t *)mh;
  d.cid.len = mhlen;
  d.has_count = 0;
  r = dht_req(&c, &d, 35);
  hosts = 0;
  n = is_begin(r) ? read_stream(&c, 35, &hosts, 0) : -1;
  ok(n == 2 && hosts == ((1u << 0) | (1u << 6)),
     "the CIDv0 form finds the same two providers");
  rfree(r);
  /* Content nobody provides: an empty stream. */
  d.cid.len = make_cid("nobody has this", cid);
  d.cid.data = cid;
  r = dht_req(&c, &d, 35);
  n = is_begin(r) ? read_stream(&c, 35, NULL, 0) : -1;
  ok(n == 0, "FIND_PROVIDERS of content nobody has: BEGIN, END (%d)", n);
  rfree(r);
  cl_close(&c);
}

/* ---- phase B: lifecycle, on a second module instance of host 0 ----------- */

static np_kad *k2;

static int silent_in_table(void) {
  return k2 && np_kbucket_contains(np_kad_table(k2), &H[SILENT].id.id);
}

/* The silent peer (re)enters k2's table through identify: a lookup that
 * timed out on it dropped it. Returns whether it is in. */
static int silent_join(void) {
  uint8_t bin[NP_MADDR_MAX];
  const uint8_t *ba[1] = {bin};
  size_t bl[1];
  void *net;
  const np_net_ops *ops = np_host_net(H[0].h, &net);
  waitv w;
  double end;
  if (silent_in_table())
    return 1;
  ops->disconnect(net, &H[SILENT].id.id);
  run_for(0.1);
  bl[0] = p2p_addr(SILENT, bin, sizeof(bin));
  memset(&w, 0, sizeof(w));
  ops->connect(net, &H[SILENT].id.id, ba, bl, 1, 5000, on_net, &w, NULL);
  run_until(&w.done, 6);
  end = now_s() + 5;
  while (!silent_in_table() && now_s() < end)
    ev_run(ev, EVRUN_ONCE);
  return silent_in_table();
}

static int setup_k2(void) {
  np_kad_config cfg;
  uint8_t bin[NP_MADDR_MAX];
  const uint8_t *ba[1] = {bin};
  size_t bl[1];
  void *net;
  const np_net_ops *ops = np_host_net(H[0].h, &net);
  waitv w;
  np_kad_lookup *lk;
  np_kad_config_default(&cfg);
  cfg.request_ms = 2500; /* the silent peer holds a lookup this long */
  np_proto_remove_owner(np_host_protos(H[0].h), H[0].kad);
  if (np_kad_start(H[0].h, &cfg, &k2) != 0)
    return -1;
  /* Its table fills from identify: connect anew. */
  for (int i = 1; i < NH; i++)
    ops->disconnect(net, &H[i].id.id);
  run_for(0.2);
  bl[0] = p2p_addr(1, bin, sizeof(bin));
  memset(&w, 0, sizeof(w));
  if (np_kad_bootstrap(k2, ba, bl, 1, on_boot, &w, &lk) != 0)
    return -2;
  run_until(&w.done, 30);
  if (!w.done || w.err) {
    diag("k2 bootstrap: done %d %s", w.done, np_errname(w.err));
    return -3;
  }
  cur_kad = k2;
  return silent_join() ? 0 : -4;
}

static void find_stranger(Np__P2pd__DHTRequest *d, np_peerid *s) {
  np__p2pd__dhtrequest__init(d);
  stranger(s);
  d->type = NP__P2PD__DHTREQUEST__TYPE__FIND_PEER;
  d->has_peer = 1;
  d->peer.data = s->bytes;
  d->peer.len = s->len;
}

static void test_timeout(void) {
  cl c;
  Np__P2pd__DHTRequest d;
  np_peerid s;
  Np__P2pd__Response *r;
  double t0, t;
  cl_connect(&c);
  find_stranger(&d, &s);
  d.has_timeout = 1;
  d.timeout = 1;
  t0 = now_s();
  r = dht_req(&c, &d, 5);
  t = now_s() - t0;
  ok(is_error(r, "timed out"), "FIND_PEER with timeout 1 s, held by the "
                                "silent peer: \"timed out\"");
  ok(t >= 0.9 && t < 2.2, "after %.2f s", t);
  rfree(r);
  ok(identify_ok(&c), "the connection goes on");
  cl_close(&c);
}

static void test_leave_waiting(void) {
  cl c;
  Np__P2pd__DHTRequest d;
  np_peerid s;
  int open0 = silent_open, closed0;
  double t0;
  cl_connect(&c);
  find_stranger(&d, &s);
  send_dht(&c, &d);
  t0 = now_s();
  while (silent_open == open0 && now_s() < t0 + 2)
    ev_run(ev, EVRUN_ONCE);
  ok(silent_open > open0, "the lookup waits on the silent peer");
  closed0 = silent_closed;
  cl_close(&c); /* hang up while the lookup waits */
  t0 = now_s();
  while (silent_closed == closed0 && now_s() < t0 + 1.5)
    ev_run(ev, EVRUN_ONCE);
  ok(silent_closed > closed0 && now_s() - t0 < 1.5,
     "the client hangs up: the lookup is cancelled, its request to the "
     "silent peer reset after %.2f s (request_ms 2.5 s)", now_s() - t0);
  run_for(3); /* past request_ms: nothing of the request is left to run */
  cl_connect(&c);
  ok(identify_ok(&c), "the control socket serves the next client");
  cl_close(&c);
}

/* A client that asks for a stream and reads nothing: it is paused, not
 * cut (its requests stop being read while answers back up; what one
 * lookup reports is bounded); once it reads it gets every answer. */
static void test_not_reading(void) {
  enum { K = 12000 };
  cl c;
  Np__P2pd__Request id = NP__P2PD__REQUEST__INIT;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  uint8_t one[16], *all;
  size_t n1, total = 0;
  int got = 0, dht = 0, rv = 0;
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  uint8_t tail[128];
  size_t tl;
  cl_connect(&c);
  id.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
  n1 = np__p2pd__request__get_packed_size(&id);
  one[0] = (uint8_t)n1;
  np__p2pd__request__pack(&id, one + 1);
  d.type = NP__P2PD__DHTREQUEST__TYPE__GET_CLOSEST_PEERS;
  d.has_key = 1;
  d.key.data = (uint8_t *)"unread";
  d.key.len = 6;
  rq.type = NP__P2PD__REQUEST__TYPE__DHT;
  rq.dht = &d;
  tl = np__p2pd__request__get_packed_size(&rq);
  tail[0] = (uint8_t)tl;
  np__p2pd__request__pack(&rq, tail + 1);
  all = malloc(K * (n1 + 1) + tl + 1);
  for (int i = 0; i < K; i++) {
    memcpy(all + total, one, n1 + 1);
    total += n1 + 1;
  }
  memcpy(all + total, tail, tl + 1);
  total += tl + 1;
  /* K identify requests, then the DHT request, in one go; no reading. */
  for (size_t off = 0; off < total;) {
    ssize_t w = send(c.fd, all + off, total - off, MSG_DONTWAIT);
    if (w > 0)
      off += (size_t)w;
    else
      ev_run(ev, EVRUN_ONCE);
  }
  free(all);
  run_for(3.5); /* the lookup ends (request_ms) while nobody reads */
  for (int i = 0; i < K + 100; i++) {
    Np__P2pd__Response *r;
    const uint8_t *m;
    size_t ml;
    if ((rv = cl_wait(&c, &m, &ml, 3)) != 0)
      break;
    r = np__p2pd__response__unpack(NULL, ml, m);
    if (r && r->identify)
      got++;
    else if (r && r->dht)
      dht++;
    rfree(r);
  }
  ok(rv != -2 && got == K && dht >= 1,
     "a client that does not read is paused, not cut: %d of %d answers, "
     "then the DHT stream", got, K);
  cl_close(&c);
  cl_connect(&c);
  ok(identify_ok(&c), "the control socket serves the next client");
  cl_close(&c);
}

/* Providers of |mh| in k2's own store: a stream's first items come at
 * once, then the lookup waits on the silent peer. */
static int local_providers(const uint8_t *mh, size_t mhlen, int n) {
  np_kadstore *st = np_kad_store(k2);
  const char *why;
  uint8_t a[NP_MADDR_MAX];
  np_ssize al = np_maddr_parse("/ip4/192.0.2.1/tcp/4001", 23, a, sizeof(a));
  const uint8_t *addrs[1] = {a};
  size_t lens[1] = {(size_t)al};
  if (st == NULL)
    return -1;
  for (int i = 0; i < n; i++) {
    np_peerid p;
    stranger(&p);
    if (np_kadstore_add_provider(st, mh, mhlen, &p, addrs, lens, 1,
                                 (uint64_t)(now_s() * 1000), &why) != 0)
      return -1;
  }
  return 0;
}

static int begin_stream(cl *c, const uint8_t *cid, size_t len, int items) {
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  int okv;
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS;
  d.has_cid = 1;
  d.cid.data = (uint8_t *)cid;
  d.cid.len = len;
  d.has_count = 1;
  d.count = 100;
  r = dht_req(c, &d, 3);
  okv = is_begin(r);
  rfree(r);
  for (int i = 0; okv && i < items; i++) {
    Np__P2pd__DHTResponse *it = dht_next(c, 3);
    okv = it && it->type == NP__P2PD__DHTRESPONSE__TYPE__VALUE && it->peer;
    if (it)
      np__p2pd__dhtresponse__free_unpacked(it, NULL);
  }
  return okv;
}

static void test_leave_mid_stream(void) {
  cl c;
  uint8_t cid[64];
  size_t len = make_cid("mid-stream", cid);
  const uint8_t *mh;
  size_t mhlen;
  int closed0;
  double t0;
  np_cid_multihash(cid, len, &mh, &mhlen);
  ok(silent_join(), "the silent peer is in the table (again)");
  ok(local_providers(mh, mhlen, 3) == 0, "3 providers in host 0's store");
  cl_connect(&c);
  ok(begin_stream(&c, cid, len, 3),
     "FIND_PROVIDERS: BEGIN and 3 items, the lookup goes on");
  run_for(0.3);
  closed0 = silent_closed;
  cl_close(&c);
  t0 = now_s();
  while (silent_closed == closed0 && now_s() < t0 + 1.5)
    ev_run(ev, EVRUN_ONCE);
  ok(silent_closed > closed0,
     "the client hangs up mid-stream: the lookup is cancelled (%.2f s)",
     now_s() - t0);
  cl_connect(&c);
  ok(identify_ok(&c), "the control socket serves the next client");
  cl_close(&c);
}

/* A timeout in the middle of a stream ends it with what was found. */
static void test_timeout_mid_stream(void) {
  cl c;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  uint8_t cid[64];
  size_t len = make_cid("timeout mid-stream", cid);
  const uint8_t *mh;
  size_t mhlen;
  double t0;
  int n;
  np_cid_multihash(cid, len, &mh, &mhlen);
  ok(silent_join() && local_providers(mh, mhlen, 2) == 0,
     "2 local providers; the silent peer is in the table");
  cl_connect(&c);
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS;
  d.has_cid = 1;
  d.cid.data = cid;
  d.cid.len = len;
  d.has_count = 1;
  d.count = 100;
  d.has_timeout = 1;
  d.timeout = 1;
  t0 = now_s();
  r = dht_req(&c, &d, 3);
  n = is_begin(r) ? read_stream(&c, 3, NULL, 0) : -1;
  ok(n == 2 && now_s() - t0 >= 0.9 && now_s() - t0 < 2.2,
     "FIND_PROVIDERS with timeout 1 s: BEGIN, the 2 providers, END after "
     "%.2f s", now_s() - t0);
  rfree(r);
  ok(identify_ok(&c), "the connection goes on");
  cl_close(&c);
}

/* A client that reads nothing while a providers stream is due: nothing is
 * cut; once it reads it gets every answer and the stream. */
static void test_not_reading_providers(void) {
  enum { K = 12000 };
  cl c;
  Np__P2pd__Request id = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  uint8_t cid[64], one[16], tail[128], *all;
  size_t len = make_cid("unread providers", cid), n1, tl, total = 0;
  const uint8_t *mh, *m;
  size_t mhlen, ml;
  int rv = 0, dht = 0;
  double t0;
  np_cid_multihash(cid, len, &mh, &mhlen);
  ok(silent_join() && local_providers(mh, mhlen, 3) == 0,
     "3 local providers; the silent peer is in the table");
  cl_connect(&c);
  id.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
  n1 = np__p2pd__request__get_packed_size(&id);
  one[0] = (uint8_t)n1;
  np__p2pd__request__pack(&id, one + 1);
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS;
  d.has_cid = 1;
  d.cid.data = cid;
  d.cid.len = len;
  d.has_count = 1;
  d.count = 100;
  rq.type = NP__P2PD__REQUEST__TYPE__DHT;
  rq.dht = &d;
  tl = np__p2pd__request__get_packed_size(&rq);
  tail[0] = (uint8_t)tl;
  np__p2pd__request__pack(&rq, tail + 1);
  all = malloc(K * (n1 + 1) + tl + 1);
  for (int i = 0; i < K; i++) {
    memcpy(all + total, one, n1 + 1);
    total += n1 + 1;
  }
  memcpy(all + total, tail, tl + 1);
  total += tl + 1;
  for (size_t off = 0; off < total;) {
    ssize_t w = send(c.fd, all + off, total - off, MSG_DONTWAIT);
    if (w > 0)
      off += (size_t)w;
    else
      ev_run(ev, EVRUN_ONCE);
  }
  free(all);
  t0 = now_s();
  while (now_s() < t0 + 1) /* nobody reads meanwhile */
    ev_run(ev, EVRUN_ONCE);
  for (int i = 0; i < K + 100; i++) {
    Np__P2pd__Response *r;
    if ((rv = cl_wait(&c, &m, &ml, 3)) != 0)
      break;
    r = np__p2pd__response__unpack(NULL, ml, m);
    if (r && r->dht)
      dht++;
    rfree(r);
  }
  ok(rv != -2 && dht >= 1,
     "the client then reads every answer and the DHT stream, not EOF");
  cl_close(&c);
}

/* The module stops under a waiting request and a stream in the middle. */
static void test_module_stop(void) {
  cl a, b;
  Np__P2pd__DHTRequest d;
  np_peerid s;
  Np__P2pd__Response *r;
  uint8_t cid[64];
  size_t len = make_cid("module stop", cid);
  const uint8_t *mh;
  size_t mhlen;
  const uint8_t *m;
  size_t ml;
  int rv;
  np_cid_multihash(cid, len, &mh, &mhlen);
  ok(silent_join(), "the silent peer is in the table (again)");
  local_providers(mh, mhlen, 2);
  cl_connect(&a);
  cl_connect(&b);
  find_stranger(&d, &s);
  send_dht(&a, &d);
  ok(begin_stream(&b, cid, len, 2), "a stream has begun (2 items)");
  run_for(0.3);
  cur_kad = NULL; /* what the daemon's lookup does while a module stops */
  np_kad_stop(k2);
  k2 = NULL;
  r = wait_resp(&a, 2);
  ok(is_error(r, "DHT stopped"),
     "the waiting request is answered \"DHT stopped\"");
  rfree(r);
  find_stranger(&d, &s);
  r = dht_req(&a, &d, 2);
  ok(is_error(r, "DHT not enabled"),
     "the next DHT request on that connection: \"DHT not enabled\"");
  rfree(r);
  rv = cl_wait(&b, &m, &ml, 2);
  is_int(rv, -2, "the stream cut short ends with EOF, not END");
  cl_close(&a);
  cl_close(&b);
}

int main(void) {
  int ok_all = 1;
  ev_timer tick;
  uint8_t bin[NP_MADDR_MAX];
  const uint8_t *ba[1] = {bin};
  size_t bl[1];
  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? 3 : 0);
  alarm(240);
  snprintf(sock_path, sizeof(sock_path), "/tmp/np-ctldht-%d.sock",
           (int)getpid());
  ev_timer_init(&tick, on_tick, 0.01, 0.01);
  ev_timer_start(ev, &tick);
  np_list_init(&silent_streams);

  for (int i = 0; i <= NH; i++)
    ok_all &= host_up(i) == 0;
  ok(ok_all, "%d kad hosts and a silent peer on /memory/", NH);
  np_host_set_module_find(H[0].h, test_find, NULL);
  cur_kad = H[0].kad;
  bl[0] = p2p_addr(1, bin, sizeof(bin));
  for (int i = 0; i < NH; i++) {
    waitv w;
    np_kad_lookup *lk;
    if (i == 1)
      continue;
    memset(&w, 0, sizeof(w));
    np_kad_bootstrap(H[i].kad, ba, bl, 1, on_boot, &w, &lk);
    run_until(&w.done, 30);
    ok_all &= w.done && w.err == 0;
  }
  ok(ok_all, "hosts bootstrap from host 1");

  test_off();
  test_find_peer();
  test_closest();
  test_invalid();
  test_records();
  test_providers();

  ok(setup_k2() == 0, "host 0 serves from a second module instance; the "
                      "silent peer is in its table");
  test_timeout();
  test_leave_waiting();
  test_not_reading();
  test_leave_mid_stream();
  test_timeout_mid_stream();
  test_not_reading_providers();
  test_module_stop();

  /* The daemon goes with a request waiting (its own module). */
  {
    cl c;
    Np__P2pd__DHTRequest d;
    np_peerid s;
    const uint8_t *m;
    size_t ml;
    cur_kad = H[0].kad;
    cl_connect(&c);
    find_stranger(&d, &s);
    send_dht(&c, &d);
    run_for(0.3);
    cur_kad = NULL;
    np_daemon_del(H[0].d);
    H[0].d = NULL;
    is_int(cl_wait(&c, &m, &ml, 2), -2,
           "the daemon stops under a waiting request: the client sees EOF");
    cl_close(&c);
  }

  for (int i = 0; i <= NH; i++) {
    if (H[i].d)
      np_daemon_del(H[i].d);
    np_identity_clear(&H[i].id);
  }
  ev_timer_stop(ev, &tick);
  run_for(0.1);
  unlink(sock_path);
  np_crypto_cleanup();
  return done_testing();
}
