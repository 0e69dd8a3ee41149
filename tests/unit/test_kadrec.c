/* The DHT's records and providers (np_kad) over the in-memory transport:
 * 12 hosts in one process, each bootstrapped by its config ([bootstrap]
 * peers = host 0) with its own data_dir. A /pk/ record put on one host is
 * read by every other; bad records are refused before anything is sent;
 * provider records are found from elsewhere; public keys, search_value and
 * find_connected answer; the store file survives a restart; a client-mode
 * host asks but is never asked; mode off runs no module; a peer flooding
 * requests is rate-limited; lookups end with NP_ECANCELED when their
 * module stops and never call back once cancelled (also from inside their
 * own callbacks). Every wait has a deadline. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
#include "np_multiaddr.h"
#include "np_proto.h"
#include "np_stream.h"
#include "tap.h"

#define NHOSTS 12
#define CLIENT NHOSTS /* a host in client mode */

static struct ev_loop *ev;
static char tmpdir[] = "/tmp/np-kadrec-XXXXXX";

typedef struct khost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  np_kad *kad;
  char addr[64];
} khost;

static khost H[NHOSTS + 1];

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

/* Host |i| with its config: /memory/recN, data_dir tmp/N, bootstrap from
 * host 0 (host 0 too: its own address is skipped), |mode| for [dht]. */
static int host_up(int i, const char *mode) {
  char ini[1024], id0[NP_PEERID_STRMAX], err[256];
  np_conf *c;
  int rv;
  snprintf(H[i].addr, sizeof(H[i].addr), "/memory/rec%d", i);
  np_peerid_to_string(&H[0].id.id, id0, sizeof(id0));
  snprintf(ini, sizeof(ini),
           "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
           "data_dir = %s/%d\nlog_level = error\n"
           "[bootstrap]\npeers = /ip4/127.0.0.1/udp/1/quic-v1/p2p/%s\n"
           "[dht]\nmode = %s\n[nat]\ntreat_as_public = 127.0.0.0/8\n"
           "[plugins]\nautoload = no\n",
           tmpdir, i, id0, mode);
  snprintf(err, sizeof(err), "%s/%d", tmpdir, i);
  mkdir(err, 0700);
  if (np_conf_load_string(&c, "mem.ini", ini, strlen(ini), err,
                          sizeof(err)) != 0) {
    printf("# %s\n", err);
    return -1;
  }
  /* The config refuses /memory/ (tests only): set it after loading. */
  free(c->host.listen.v[0]);
  c->host.listen.v[0] = strdup(H[i].addr);
  snprintf(ini, sizeof(ini), "/memory/rec0/p2p/%s", id0);
  free(c->bootstrap.peers.v[0]);
  c->bootstrap.peers.v[0] = strdup(ini);
  if (np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  H[i].kad = np_daemon_module(H[i].d, "kad");
  return 0;
}

static void host_down(int i) {
  H[i].kad = NULL;
  np_daemon_del(H[i].d);
  H[i].d = NULL;
}

typedef struct waitv {
  int done, err, calls, items;
  size_t n;
  uint8_t val[512];
  size_t vlen;
  np_peerid peers[64];
  size_t naddrs;
  int cancel_in_each; /* np_kad_cancel from the first item callback */
  np_kad *kad;
  np_kad_lookup *lk;
} waitv;

static void on_value(void *ud, int err, const uint8_t *v, size_t len) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
  if (err == 0 && len <= sizeof(w->val)) {
    memcpy(w->val, v, len);
    w->vlen = len;
  }
}
static void on_count(void *ud, int err, size_t n) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++, w->n = n;
}
static void on_done(void *ud, int err) {
  waitv *w = ud;
  w->done = 1, w->err = err, w->calls++;
}
static void on_each_value(void *ud, const uint8_t *v, size_t len) {
  waitv *w = ud;
  w->items++;
  if (len <= sizeof(w->val)) {
    memcpy(w->val, v, len);
    w->vlen = len;
  }
}
static void on_each_prov(void *ud, const np_kad_provider *p) {
  waitv *w = ud;
  if (w->items < 64)
    w->peers[w->items] = *p->id;
  w->items++;
  w->naddrs += p->naddrs;
  if (w->cancel_in_each)
    np_kad_cancel(w->kad, w->lk);
}
static void on_each_peer(void *ud, const np_peerid *p) {
  waitv *w = ud;
  if (w->items < 64)
    w->peers[w->items] = *p;
  w->items++;
}
static void on_peer(void *ud, int err, const np_peerid *p) {
  waitv *w = ud;
  (void)p;
  w->done = 1, w->err = err, w->calls++;
}

/* "/pk/" + |i|'s peer-ID bytes, and its PublicKey protobuf. */
static size_t pk_key(int i, uint8_t *key) {
  memcpy(key, "/pk/", 4);
  memcpy(key + 4, H[i].id.id.bytes, H[i].id.id.len);
  return 4 + H[i].id.id.len;
}

static int get_from(int from, const uint8_t *key, size_t klen, waitv *w) {
  np_kad_lookup *lk;
  int rv;
  memset(w, 0, sizeof(*w));
  if ((rv = np_kad_get_value(H[from].kad, key, klen, on_value, w, &lk)))
    return rv;
  run_until(&w->done, 35);
  return w->done ? w->err : -1000;
}

/* Raw bytes to |to|'s kad service; waits for the stream to end. */
typedef struct rawv {
  int closed, err;
  size_t got;
  const uint8_t *req;
  size_t len;
} rawv;

static void raw_data(np_stream *s, const uint8_t *d, size_t len, void *ud) {
  rawv *r = ud;
  (void)s, (void)d;
  r->got += len;
}
static void raw_close(np_stream *s, int err, void *ud) {
  rawv *r = ud;
  (void)s;
  r->closed = 1, r->err = err;
}
static const np_stream_cbs raw_cbs = {.struct_size = sizeof(np_stream_cbs),
                                      .on_data = raw_data,
                                      .on_close = raw_close};
static void raw_opened(void *ud, int err, np_stream *s, const char *proto) {
  rawv *r = ud;
  (void)proto;
  if (err) {
    r->closed = 1, r->err = err;
    return;
  }
  np_stream_set_cbs(s, &raw_cbs, r);
  s->ops->write(s, r->req, r->len);
}

static int raw_request(int from, int to, const uint8_t *req, size_t len,
                       rawv *r) {
  void *net;
  const np_net_ops *ops = np_host_net(H[from].h, &net);
  const char *protos[1] = {NP_KADMSG_PROTOCOL};
  int rv;
  memset(r, 0, sizeof(*r));
  r->req = req, r->len = len;
  rv = ops->open_stream(net, &H[to].id.id, protos, 1, 0, 5000, raw_opened, r,
                        NULL);
  if (rv)
    return rv;
  run_until(&r->closed, 15);
  return r->closed ? 0 : -1000;
}

static int file_exists(int i) {
  char p[256];
  struct stat st;
  snprintf(p, sizeof(p), "%s/%d/%s", tmpdir, i, NP_KADSTORE_FILE);
  return stat(p, &st) == 0 && (st.st_mode & 0777) == 0600;
}

int main(void) {
  int good = 1, i;
  uint8_t key[64], pkey[34];
  size_t klen;
  waitv w;
  np_kad_lookup *lk;
  np_kad_stats st;

  ev = ev_default_loop(0);
  np_log_set_level(getenv("NP_TEST_DEBUG") ? NP_LOG_DEBUG : 0);
  alarm(240);
  if (mkdtemp(tmpdir) == NULL) {
    printf("Bail out! mkdtemp\n");
    return 1;
  }
  for (i = 0; i <= NHOSTS; i++)
    good &= np_identity_generate(&H[i].id) == 0;
  for (i = 0; i < NHOSTS; i++)
    good &= host_up(i, "server") == 0 && H[i].kad != NULL;
  good &= host_up(CLIENT, "client") == 0 && H[CLIENT].kad != NULL;
  ok(good, "%d server hosts and one client host, bootstrapped by config",
     NHOSTS);
  if (!good)
    return 1;

  /* Config bootstrap: connects to host 0, then a self-lookup. */
  {
    double end = now_s() + 30;
    size_t small = 0;
    while (now_s() < end) {
      small = SIZE_MAX;
      for (i = 0; i <= NHOSTS; i++) {
        size_t n = np_kbucket_size(np_kad_table(H[i].kad));
        if (n < small)
          small = n;
      }
      if (small >= 5)
        break;
      run_for(0.2);
    }
    ok(small >= 5, "every routing table fills from [bootstrap] peers "
                   "(smallest %zu)",
       small);
  }
  {
    int inside = 0;
    for (i = 0; i < NHOSTS; i++)
      inside |= np_kbucket_contains(np_kad_table(H[i].kad), &H[CLIENT].id.id);
    np_kad_stats_get(H[CLIENT].kad, &st);
    ok(!inside && !st.server &&
           np_proto_find(np_host_protos(H[CLIENT].h), NP_KADMSG_PROTOCOL,
                         strlen(NP_KADMSG_PROTOCOL)) == NULL,
       "a client-mode host does not serve kad and enters no table");
  }

  /* put / get of a /pk/ record. */
  klen = pk_key(3, key);
  memset(&w, 0, sizeof(w));
  ok(np_kad_put_value(H[3].kad, key, klen, H[3].id.pub_pb,
                      H[3].id.pub_pb_len, on_count, &w, &lk) == 0 &&
         w.calls == 0,
     "put_value starts (no callback from inside the call)");
  run_until(&w.done, 35);
  ok(w.done && w.err == 0 && w.n >= 5, "the record is stored at %zu peers",
     w.n);
  {
    int all = 1;
    for (i = 0; i <= NHOSTS; i++) {
      waitv g;
      if (i == 3)
        continue;
      if (get_from(i, key, klen, &g) != 0 || g.vlen != H[3].id.pub_pb_len ||
          memcmp(g.val, H[3].id.pub_pb, g.vlen) != 0) {
        printf("# host %d: get_value err %s\n", i, np_errname(g.err));
        all = 0;
      }
    }
    ok(all, "every other host (client included) reads the value");
  }
  {
    uint8_t bad[64];
    memcpy(bad, H[4].id.pub_pb, H[4].id.pub_pb_len);
    ok(np_kad_put_value(H[3].kad, key, klen, bad, H[4].id.pub_pb_len,
                        on_count, &w, &lk) == NP_EPEERID,
       "a /pk/ value that is not the key's public key is refused at once");
    ok(np_kad_put_value(H[3].kad, (const uint8_t *)"/nope/x", 7,
                        (const uint8_t *)"v", 1, on_count, &w,
                        &lk) == NP_ENOTSUP,
       "a namespace without a validator is refused at once");
    ok(np_kad_put_value(H[3].kad, (const uint8_t *)"", 0,
                        (const uint8_t *)"v", 1, on_count, &w,
                        &lk) == NP_EINVAL,
       "an empty key is refused");
  }
  /* The open namespace: any value; a later put replaces it. */
  {
    static const char *vals[2] = {"Hello, World!", "again"};
    int r;
    for (r = 0; r < 2; r++) {
      waitv g;
      memset(&w, 0, sizeof(w));
      np_kad_put_value(H[4].kad, (const uint8_t *)"/natpeer/hello", 14,
                       (const uint8_t *)vals[r], strlen(vals[r]), on_count,
                       &w, &lk);
      run_until(&w.done, 35);
      ok(w.err == 0 && get_from(9, (const uint8_t *)"/natpeer/hello", 14,
                                &g) == 0 &&
             g.vlen == strlen(vals[r]) && memcmp(g.val, vals[r], g.vlen) == 0,
         "/natpeer/hello = \"%s\" put on one host is read on another",
         vals[r]);
    }
    ok(np_kad_put_value(H[4].kad, (const uint8_t *)"/natpeer/", 9,
                        (const uint8_t *)"x", 1, on_count, &w,
                        &lk) == NP_EINVAL,
       "/natpeer/ without a name is refused");
  }
  {
    waitv g;
    klen = pk_key(9, key);
    ok(get_from(2, key, klen, &g) == NP_ENOENT,
       "get_value of a record nobody stored: NP_ENOENT");
  }
  /* search_value reports the value, then done. */
  klen = pk_key(3, key);
  memset(&w, 0, sizeof(w));
  ok(np_kad_search_value(H[7].kad, key, klen, on_each_value, on_done, &w,
                         &lk) == 0,
     "search_value starts");
  run_until(&w.done, 35);
  ok(w.done && w.err == 0 && w.items == 1 &&
         w.vlen == H[3].id.pub_pb_len,
     "search_value reports the one value once (%d), then ends", w.items);

  /* Public keys: an Ed25519 ID holds its key. */
  memset(&w, 0, sizeof(w));
  ok(np_kad_get_public_key(H[2].kad, &H[8].id.id, on_value, &w, &lk) == 0 &&
         w.calls == 0,
     "get_public_key starts");
  run_until(&w.done, 5);
  ok(w.done && w.err == 0 && w.vlen == H[8].id.pub_pb_len &&
         memcmp(w.val, H[8].id.pub_pb, w.vlen) == 0,
     "get_public_key gives the peer's PublicKey bytes");

  /* Providers. */
  pkey[0] = 0x12, pkey[1] = 0x20;
  np_crypto_sha256((const uint8_t *)"natpeer", 7, pkey + 2);
  memset(&w, 0, sizeof(w));
  ok(np_kad_provide(H[5].kad, pkey, sizeof(pkey), on_count, &w, &lk) == 0,
     "provide starts");
  run_until(&w.done, 35);
  ok(w.done && w.err == 0 && w.n >= 5, "the provider record went to %zu "
                                       "peers",
     w.n);
  memset(&w, 0, sizeof(w));
  ok(np_kad_find_providers(H[10].kad, pkey, sizeof(pkey), 0, on_each_prov,
                           on_done, &w, &lk) == 0,
     "find_providers starts");
  run_until(&w.done, 35);
  ok(w.done && w.err == 0 && w.items == 1 &&
         np_peerid_equal(&w.peers[0], &H[5].id.id) && w.naddrs >= 1,
     "find_providers reports the provider once, with its addresses");
  memset(&w, 0, sizeof(w));
  ok(np_kad_find_providers(H[5].kad, pkey, sizeof(pkey), 1, on_each_prov,
                           on_done, &w, &lk) == 0,
     "find_providers on the provider itself");
  run_until(&w.done, 35);
  ok(w.done && w.err == 0 && w.items == 1,
     "the local provider is reported and max 1 ends the lookup");
  {
    uint8_t other[34];
    memcpy(other, pkey, sizeof(other));
    other[5] ^= 0xff;
    memset(&w, 0, sizeof(w));
    np_kad_find_providers(H[10].kad, other, sizeof(other), 0, on_each_prov,
                          on_done, &w, &lk);
    run_until(&w.done, 35);
    ok(w.done && w.err == NP_ENOENT && w.items == 0,
       "find_providers of an unknown key: NP_ENOENT (%s)",
       np_errname(w.err));
  }
  /* Cancel from inside the item callback: done never runs. */
  memset(&w, 0, sizeof(w));
  w.cancel_in_each = 1;
  w.kad = H[11].kad;
  np_kad_find_providers(H[11].kad, pkey, sizeof(pkey), 0, on_each_prov,
                        on_done, &w, &w.lk);
  run_for(2);
  ok(w.items == 1 && w.calls == 0,
     "a lookup cancelled from its own item callback stops calling back");

  /* find_connected: peers that list host 8 as connected to them. */
  memset(&w, 0, sizeof(w));
  ok(np_kad_find_connected(H[1].kad, &H[8].id.id, on_each_peer, on_done, &w,
                           &lk) == 0,
     "find_connected starts");
  run_until(&w.done, 35);
  ok(w.done && w.err == 0 && w.items >= 1,
     "find_connected reports %d peers connected to the target", w.items);

  /* Restart: the store file is written after a change (0600), and a host
   * restarted with the same data_dir serves what it held. */
  klen = pk_key(3, key);
  run_for(1.5);
  {
    int holder = -1;
    for (i = 1; i < NHOSTS && holder < 0; i++) {
      const uint8_t *v;
      size_t vl;
      if (i != 3 && np_kadstore_get(np_kad_store(H[i].kad), key, klen,
                                    (uint64_t)time(NULL) * 1000, &v, &vl,
                                    NULL) == 0)
        holder = i;
    }
    ok(holder > 0 && file_exists(holder),
       "a host holding the record wrote %s (0600)", NP_KADSTORE_FILE);
    if (holder > 0) {
      const uint8_t *v;
      size_t vl;
      host_down(holder);
      good = host_up(holder, "server") == 0 && H[holder].kad;
      ok(good && np_kadstore_get(np_kad_store(H[holder].kad), key, klen,
                                 (uint64_t)time(NULL) * 1000, &v, &vl,
                                 NULL) == 0 &&
             vl == H[3].id.pub_pb_len,
         "restarted host %d has the record again", holder);
    }
  }

  /* Rate limit: 60 FIND_NODE requests in one burst on one stream (under
   * the 64 per stream) pass max_peer_rate (50/s): the stream is reset. */
  {
    static uint8_t burst[60 * 64];
    size_t off = 0;
    np_kadmsg m;
    rawv r;
    np_kad_stats a;
    np_kadmsg_init(&m);
    m.type = NP_KADMSG_FIND_NODE;
    m.key.data = key;
    m.key.len = pk_key(1, key);
    for (i = 0; i < 60; i++) {
      np_ssize n = np_kadmsg_encode_lp(&m, burst + off, sizeof(burst) - off);
      if (n < 0)
        break;
      off += (size_t)n;
    }
    np_kad_stats_get(H[6].kad, &a);
    ok(raw_request(CLIENT, 6, burst, off, &r) == 0 && r.closed && r.err != 0,
       "the burst's stream is reset (%s)", np_errname(r.err));
    np_kad_stats_get(H[6].kad, &st);
    ok(st.rate_limited > a.rate_limited && st.served - a.served <= 50,
       "requests past the rate are counted (%llu limited, %llu answered)",
       (unsigned long long)(st.rate_limited - a.rate_limited),
       (unsigned long long)(st.served - a.served));
  }

  /* Limits on lookups at once. */
  {
    int n, rv = 0;
    for (n = 0; n < 100 && rv == 0; n++)
      rv = np_kad_find_peer(H[4].kad, &H[9].id.id, on_peer, &w, &lk);
    ok(rv == NP_ELIMIT && n <= 65, "lookups at once are capped (%d, %s)", n,
       np_errname(rv));
    run_for(3);
  }

  /* Republish: a second module instance (client mode, so it does not
   * compete for the protocol) with a 1 ms republish period re-puts its
   * record at the next tick after every holder lost it. */
  {
    np_kad_config kc;
    np_kad *k2 = NULL;
    const uint8_t *k = (const uint8_t *)"/natpeer/republished";
    size_t kl = strlen((const char *)k), holders = 0;
    const uint8_t *v;
    size_t vl;
    double end;
    np_kad_config_default(&kc);
    kc.mode = NP_DHT_CLIENT;
    kc.republish_ms = 1;
    ok(np_kad_start(H[11].h, &kc, &k2) == 0, "a second DHT instance starts");
    /* It joins through host 0 like everyone. */
    {
      char t[160], id0[NP_PEERID_STRMAX];
      uint8_t bin[128];
      const uint8_t *ba[1] = {bin};
      size_t bl[1];
      waitv b;
      np_peerid_to_string(&H[0].id.id, id0, sizeof(id0));
      snprintf(t, sizeof(t), "/memory/rec0/p2p/%s", id0);
      bl[0] = (size_t)np_maddr_parse(t, strlen(t), bin, sizeof(bin));
      memset(&b, 0, sizeof(b));
      np_kad_bootstrap(k2, ba, bl, 1, on_done, &b, &lk);
      run_until(&b.done, 35);
    }
    memset(&w, 0, sizeof(w));
    np_kad_put_value(k2, k, kl, (const uint8_t *)"v1", 2, on_count, &w, &lk);
    run_until(&w.done, 35);
    for (i = 0; i < NHOSTS; i++)
      if (H[i].d && H[i].kad &&
          np_kadstore_remove(np_kad_store(H[i].kad), k, kl) == 0)
        holders++;
    ok(w.err == 0 && holders >= 5, "stored at %zu hosts, then removed there",
       holders);
    end = now_s() + 15;
    holders = 0;
    while (holders == 0 && now_s() < end) {
      run_for(0.5);
      for (i = 0; i < NHOSTS; i++)
        if (H[i].d && H[i].kad &&
            np_kadstore_get(np_kad_store(H[i].kad), k, kl,
                            (uint64_t)time(NULL) * 1000, &v, &vl, NULL) == 0)
          holders++;
    }
    ok(holders >= 5, "the next tick republished it (%zu holders)", holders);
    np_kad_stop(k2);
  }

  /* Stop with a lookup pending: NP_ECANCELED, exactly once. */
  {
    waitv g;
    memset(&g, 0, sizeof(g));
    klen = pk_key(11, key);
    np_kad_get_value(H[2].kad, key, klen, on_value, &g, &lk);
    host_down(2);
    ok(g.calls == 1 && g.err == NP_ECANCELED,
       "a module stopping ends its lookups with NP_ECANCELED");
  }

  /* auto: a client while its addresses are private; still a client when a
   * peer observes a public address that is not ours (a NAT's); a server
   * once one observes an address that is public (127/8 via treat_as_public
   * here) and ours, and the others then put it in their tables
   * (identify/push announces the protocol). */
  {
    static const char *const obs[2] = {"/ip4/8.8.4.4/udp/4001/quic-v1",
                                       "/ip4/127.0.0.1/udp/4001/quic-v1"};
    uint8_t pub[64];
    np_event e;
    int inside = 0, k;
    double end;
    host_down(CLIENT);
    ok(host_up(CLIENT, "auto") == 0 && H[CLIENT].kad != NULL,
       "an auto-mode host starts");
    run_for(1);
    np_kad_stats_get(H[CLIENT].kad, &st);
    ok(!st.server, "auto with only private addresses: client");
    for (k = 0; k < 2; k++) {
      np_ssize n = np_maddr_parse(obs[k], strlen(obs[k]), pub, sizeof(pub));
      memset(&e, 0, sizeof(e));
      e.type = NP_EV_OBSERVED_ADDR;
      e.peer = &H[1].id.id;
      e.observed = pub;
      e.observed_len = n > 0 ? (size_t)n : 0;
      np_events_emit(np_host_events(H[CLIENT].h), &e);
      np_kad_stats_get(H[CLIENT].kad, &st);
      if (k == 0)
        ok(!st.server, "a public observed address that is not ours (a "
                       "NAT's): still a client");
    }
    ok(st.server && np_proto_find(np_host_protos(H[CLIENT].h),
                                  NP_KADMSG_PROTOCOL,
                                  strlen(NP_KADMSG_PROTOCOL)) != NULL,
       "a public observed address of our own makes it a server");
    end = now_s() + 10;
    while (!inside && now_s() < end) {
      for (i = 0; i < NHOSTS; i++)
        if (H[i].d && H[i].kad &&
            np_kbucket_contains(np_kad_table(H[i].kad), &H[CLIENT].id.id))
          inside = 1;
      run_for(0.1);
    }
    ok(inside, "connected peers add it once its push announces kad");
  }

  /* mode off: no module. */
  {
    host_down(CLIENT);
    ok(host_up(CLIENT, "off") == 0 && H[CLIENT].kad == NULL,
       "[dht] mode = off runs no DHT module");
  }

  for (i = 0; i <= NHOSTS; i++)
    if (H[i].d)
      host_down(i);
  {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
      printf("# could not remove %s\n", tmpdir);
  }
  return done_testing();
}
