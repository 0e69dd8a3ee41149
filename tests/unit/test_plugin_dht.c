/* The plugin SDK's DHT entries (ABI 1.3) on hosts in one DHT over
 * /memory/: the test plugin tp_dht, loaded on host 1, finds a peer, puts a
 * value other hosts then get, gets a value another host put, provides a
 * key others find, finds providers (and cancels from inside |each|), and
 * withdraws a lookup with no callback after. A lookup pending when the
 * plugin unloads, or when the host stops, ends with NP_ECANCELED while the
 * plugin is still loaded; nothing of the plugin runs after (ASan run). */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_daemon.h"
#include "np_err.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_kad.h"
#include "np_kadstore.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_plugin.h"
#include "tap.h"
#include "test_util.h"

#define NH 8

static struct ev_loop *ev;
static char dir[512];

typedef struct phost {
  np_daemon *d;
  np_host *h;
  np_identity id;
  char addr[64];
  char peer[NP_PEERID_STRMAX];
} phost;

static phost H[NH];

static void run_until(const int *flag, double secs) {
  tu_run_until(ev, flag, secs);
}

static void run_for(double secs) {
  int never = 0;
  tu_run_until(ev, &never, secs);
}

/* The test namespace "/tp/": any value up to 64 bytes. */
static int tp_validate(void *ud, const uint8_t *key, size_t keylen,
                       const uint8_t *val, size_t vallen, uint64_t now,
                       const char **why) {
  (void)ud, (void)key, (void)keylen, (void)val, (void)now;
  if (vallen > 64) {
    *why = "longer than 64 bytes";
    return NP_ELIMIT;
  }
  return 0;
}

/* A host config with |extra| appended (the listen address is replaced
 * by a /memory/ one before a host starts with it). */
static np_conf *make_conf(const char *extra) {
  char ini[2048], err[256];
  np_conf *c = NULL;
  snprintf(ini, sizeof(ini),
           "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\nlog_level = "
           "error\n[dht]\nmode = server\n[plugins]\nautoload = no\n%s",
           extra ? extra : "");
  if (np_conf_load_string(&c, "mem.ini", ini, strlen(ini), err, sizeof(err)) !=
      0) {
    printf("# conf: %s\n", err);
    return NULL;
  }
  return c;
}

static int host_up(int i, const char *extra) {
  np_conf *c;
  np_kad *kad;
  np_kadstore_validator v;
  int rv;
  snprintf(H[i].addr, sizeof(H[i].addr), "/memory/pdht%d", i);
  if ((c = make_conf(extra)) == NULL)
    return -1;
  free(c->host.listen.v[0]);
  c->host.listen.v[0] = strdup(H[i].addr);
  if (np_identity_generate(&H[i].id) != 0 ||
      np_daemon_new(&H[i].d, ev, c, &H[i].id) != 0)
    return -1;
  H[i].h = np_daemon_host(H[i].d);
  np_peerid_to_string(&H[i].id.id, H[i].peer, sizeof(H[i].peer));
  if ((rv = np_daemon_start(H[i].d, NP_DAEMON_NET)) != 0)
    return rv;
  if ((kad = np_daemon_module(H[i].d, "kad")) == NULL)
    return -2;
  memset(&v, 0, sizeof(v));
  v.struct_size = sizeof(v);
  v.ns = "tp";
  v.validate = tp_validate;
  return np_kadstore_register(np_kad_store(kad), &v);
}

static void host_down(int i) {
  np_daemon_del(H[i].d);
  H[i].d = NULL;
  H[i].h = NULL;
}

static np_kad *kad_of(int i) { return np_daemon_module(H[i].d, "kad"); }

static int load_tp_dht(int i, char *why, size_t whylen) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/tests/plugins/.libs/tp_dht.so",
           tu_builddir());
  return np_plugins_load_file(np_daemon_plugins(H[i].d), np_host_conf(H[i].h),
                              path, why, whylen);
}

typedef struct result {
  int done, err;
  char data[4096];
} result;

static void on_reply(void *ud, int err, const uint8_t *data, size_t len) {
  result *r = ud;
  r->done = 1;
  r->err = err;
  if (len >= sizeof(r->data))
    len = sizeof(r->data) - 1;
  if (data)
    memcpy(r->data, data, len);
  r->data[len] = 0;
}

/* Call the plugin on host |i| (a local call) and wait, bounded. */
static const char *call(int i, const char *proto, const char *req, size_t len,
                        result *r) {
  memset(r, 0, sizeof(*r));
  if (np_host_call(H[i].h, H[i].peer, proto, (const uint8_t *)req, len,
                   on_reply, r, NULL) != 0)
    return "(call refused)";
  run_until(&r->done, 40);
  return r->done ? (r->err ? "(call failed)" : r->data) : "(no answer)";
}

static const char *calls(int i, const char *proto, const char *req, result *r) {
  return call(i, proto, req, strlen(req), r);
}

typedef struct kwait {
  int done, err, calls;
  size_t n;
  char val[128];
  int saw;
  const np_peerid *want;
} kwait;

static void on_boot(void *ud, int err) {
  kwait *w = ud;
  w->done = 1, w->err = err, w->calls++;
}
static void on_value(void *ud, int err, const uint8_t *val, size_t len) {
  kwait *w = ud;
  w->done = 1, w->err = err, w->calls++;
  if (err == 0 && len < sizeof(w->val)) {
    memcpy(w->val, val, len);
    w->val[len] = 0;
  }
}
static void on_count(void *ud, int err, size_t n) {
  kwait *w = ud;
  w->done = 1, w->err = err, w->calls++, w->n = n;
}
static void on_provider(void *ud, const np_kad_provider *p) {
  kwait *w = ud;
  if (np_peerid_equal(p->id, w->want))
    w->saw = 1;
}

/* The mark file of a held lookup: its one line, or "". */
static const char *mark(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  size_t n = 0;
  buf[0] = 0;
  if (f) {
    n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
  }
  return buf;
}

int main(void) {
  char why[512] = "", path[1024], want[512], buf[256];
  np_identity ghost;
  result r;
  int ok_all = 1, rv0;

  snprintf(path, sizeof(path), "%s/tests/plugins/.libs/tp_dht.so",
           tu_builddir());
  if (access(path, R_OK) != 0) {
    printf("1..0 # SKIP test plugins not built (%s)\n", path);
    return 0;
  }
  setenv("TMPDIR", "/tmp", 0);
  tu_tmpdir(dir, sizeof(dir));
  ev = ev_default_loop(0);
  np_log_set_level(NP_LOG_ERROR);
  np_identity_generate(&ghost);

  for (int i = 0; i < NH; i++)
    if ((rv0 = host_up(i, NULL)) != 0) {
      printf("# host %d: %s\n", i, np_errname(rv0));
      ok_all = 0;
    }
  ok(ok_all, "%d DHT hosts up, each validating \"/tp/\" records", NH);
  if (!ok_all)
    return done_testing();
  {
    uint8_t a[256];
    const uint8_t *ap = a;
    char t[256];
    np_ssize al;
    snprintf(t, sizeof(t), "%s/p2p/%s", H[0].addr, H[0].peer);
    al = np_maddr_parse(t, strlen(t), a, sizeof(a));
    for (int i = 1; i < NH; i++) {
      np_kad_lookup *lk;
      kwait w;
      size_t len = (size_t)al;
      memset(&w, 0, sizeof(w));
      if (np_kad_bootstrap(kad_of(i), &ap, &len, 1, on_boot, &w, &lk) != 0) {
        ok_all = 0;
        continue;
      }
      run_until(&w.done, 35);
      ok_all &= w.done && w.err == 0;
    }
  }
  ok(ok_all, "%d hosts bootstrap from host 0", NH - 1);
  ok(load_tp_dht(1, why, sizeof(why)) == 0, "tp_dht loads on host 1 (%s)", why);

  /* find peer */
  snprintf(want, sizeof(want), "ok n=1 %s", H[6].addr);
  is_str(calls(1, "tp.dht.find", H[6].peer, &r), want,
         "dht_find_peer: host 6's address");
  snprintf(want, sizeof(want), "err=%d", NP_ENOENT);
  {
    char g[NP_PEERID_STRMAX];
    np_peerid_to_string(&ghost.id, g, sizeof(g));
    is_str(calls(1, "tp.dht.find", g, &r), want,
           "dht_find_peer of a peer nobody knows: NP_ENOENT");
  }
  snprintf(want, sizeof(want), "ok n=1 %s", H[5].addr);
  is_str(calls(1, "tp.dht.selfcancel", H[5].peer, &r), want,
         "dht_cancel from inside done does nothing more");
  snprintf(want, sizeof(want), "err=%d", NP_EINVAL);
  is_str(calls(1, "tp.dht.find", "not-a-peer-id", &r), want,
         "a malformed peer ID: NP_EINVAL at once");

  /* put, then get from other hosts through the C API */
  {
    const char *res = call(1, "tp.dht.put", "/tp/k1\nhello", 12, &r);
    kwait w;
    np_kad_lookup *lk;
    ok(strncmp(res, "ok n=", 5) == 0 && atoi(res + 5) >= 1,
       "dht_put_value stores at peers (%s)", res);
    memset(&w, 0, sizeof(w));
    ok(np_kad_get_value(kad_of(5), (const uint8_t *)"/tp/k1", 6, on_value, &w,
                        &lk) == 0,
       "host 5 looks /tp/k1 up");
    run_until(&w.done, 35);
    is_str(w.val, "hello", "and gets the plugin's value (%s)",
           np_errname(w.err));
  }
  /* get what another host put */
  {
    kwait w;
    np_kad_lookup *lk;
    memset(&w, 0, sizeof(w));
    ok(np_kad_put_value(kad_of(6), (const uint8_t *)"/tp/k2", 6,
                        (const uint8_t *)"world", 5, on_count, &w, &lk) == 0,
       "host 6 puts /tp/k2");
    run_until(&w.done, 35);
    ok(w.done && w.err == 0, "stored (%s, %zu peers)", np_errname(w.err), w.n);
    is_str(calls(1, "tp.dht.get", "/tp/k2", &r), "ok world",
           "dht_get_value: the value host 6 put");
  }
  snprintf(want, sizeof(want), "err=%d", NP_ENOENT);
  is_str(calls(1, "tp.dht.get", "/tp/absent", &r), want,
         "dht_get_value of an absent key: NP_ENOENT");
  snprintf(want, sizeof(want), "err=%d", NP_ENOTSUP);
  is_str(call(1, "tp.dht.put", "/zz/k\nx", 7, &r), want,
         "dht_put_value in a namespace nobody validates: NP_ENOTSUP at once");

  /* provide, find providers */
  {
    const char *res = calls(1, "tp.dht.provide", "tp-key-1", &r);
    kwait w;
    np_kad_lookup *lk;
    ok(strncmp(res, "ok n=", 5) == 0 && atoi(res + 5) >= 1,
       "dht_provide announces at peers (%s)", res);
    memset(&w, 0, sizeof(w));
    w.want = &H[1].id.id;
    ok(np_kad_find_providers(kad_of(7), (const uint8_t *)"tp-key-1", 8, 0,
                             on_provider, on_boot, &w, &lk) == 0,
       "host 7 looks for providers");
    run_until(&w.done, 35);
    ok(w.saw, "and finds host 1 (%s)", np_errname(w.err));
  }
  {
    kwait w;
    np_kad_lookup *lk;
    memset(&w, 0, sizeof(w));
    np_kad_provide(kad_of(4), (const uint8_t *)"tp-key-2", 8, on_count, &w,
                   &lk);
    run_until(&w.done, 35);
    ok(w.done && w.err == 0, "host 4 provides tp-key-2 (%s)",
       np_errname(w.err));
    snprintf(want, sizeof(want), "ok n=1 %s", H[4].peer);
    is_str(calls(1, "tp.dht.providers", "tp-key-2", &r), want,
           "dht_find_providers: host 4, once");
    snprintf(want, sizeof(want), "first %s", H[4].peer);
    is_str(calls(1, "tp.dht.first", "tp-key-2", &r), want,
           "a provider reported, then canceled from inside |each|");
  }

  /* cancel */
  {
    char g[NP_PEERID_STRMAX];
    np_peerid_to_string(&ghost.id, g, sizeof(g));
    is_str(calls(1, "tp.dht.cancel", g, &r), "canceled",
           "a lookup started and withdrawn at once");
    run_for(1.0);
    is_str(calls(1, "tp.dht.late", "", &r), "late=0",
           "no callback of a withdrawn operation ran");
  }

  /* Unloading with a lookup pending: it ends (NP_ECANCELED) while the
   * plugin still runs. */
  {
    char extra[1200], g[NP_PEERID_STRMAX], m[700];
    np_plugins_result res;
    np_conf *c;
    np_peerid_to_string(&ghost.id, g, sizeof(g));
    snprintf(m, sizeof(m), "%s/mark-unload", dir);
    snprintf(extra, sizeof(extra), "[plugin.tp_dht]\nhold = %s\nmark = %s\n", g,
             m);
    snprintf(want, sizeof(want), "done err=%d\n", NP_ECANCELED);
    /* The plugin's section names the held peer; the lookup starts in
     * init. */
    ok((c = make_conf(extra)) != NULL,
       "a config naming the held peer and the mark file");
    ok(np_plugins_load_file(np_daemon_plugins(H[2].d), c, path, why,
                            sizeof(why)) == 0,
       "tp_dht loads on host 2 with a lookup pending from its init");
    is_str(mark(m, buf, sizeof(buf)), "", "nothing ended yet");
    np_plugins_sync(np_daemon_plugins(H[2].d), np_host_conf(H[2].h), &res);
    is_int((int)res.unloaded, 1, "a sync without it unloads it");
    is_str(mark(m, buf, sizeof(buf)), want,
           "its pending lookup ended with NP_ECANCELED before the unload");
    run_for(1.0);
    is_str(mark(m, buf, sizeof(buf)), want, "once, and nothing after");

    /* The host stopping with a lookup pending. */
    snprintf(m, sizeof(m), "%s/mark-stop", dir);
    snprintf(extra, sizeof(extra), "[plugin.tp_dht]\nhold = %s\nmark = %s\n", g,
             m);
    np_conf_del(c);
    c = make_conf(extra);
    ok(c && np_plugins_load_file(np_daemon_plugins(H[3].d), c, path, why,
                                 sizeof(why)) == 0,
       "tp_dht loads on host 3 with a lookup pending");
    np_conf_del(c);
    host_down(3);
    is_str(mark(m, buf, sizeof(buf)), want,
           "stopping the host ends it with NP_ECANCELED, once");
  }

  for (int i = 0; i < NH; i++) {
    if (H[i].d)
      host_down(i);
    np_identity_clear(&H[i].id);
  }
  np_identity_clear(&ghost);
  run_for(0.1);
  np_crypto_cleanup();
  tu_rmrf(dir);
  return done_testing();
}
