/* Loader tests: good plugin, older-minor plugin, wrong ABI, too-small
 * descriptor, missing symbol, duplicate protocol, failing init, deny list,
 * and add/remove/replace through np_plugins_sync (what SIGHUP runs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_err.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_plugin.h"
#include "np_proto.h"
#include "tap.h"
#include "test_util.h"

static struct ev_loop *ev;
static np_daemon *dmn;
static np_host *host;
static char dir[512], pdir[600];

typedef struct result {
  int done, err;
  char data[1024];
  size_t len;
} result;

static void on_done(void *ud, int err, const uint8_t *data, size_t len) {
  result *r = ud;
  r->done = 1;
  r->err = err;
  r->len = len < sizeof(r->data) - 1 ? len : sizeof(r->data) - 1;
  if (data && r->len)
    memcpy(r->data, data, r->len);
  r->data[r->len] = '\0';
}

/* Call |proto| on this host and wait (bounded) for the answer. */
static int call(const char *proto, const char *req, result *r) {
  int rv;
  memset(r, 0, sizeof(*r));
  rv = np_host_call(host, np_host_identity(host)->id_str, proto,
                    (const uint8_t *)req, strlen(req), on_done, r, NULL);
  if (rv != 0) {
    r->err = rv;
    return rv;
  }
  tu_run_until(ev, &r->done, 5.0);
  return r->done ? r->err : NP_ETIMEDOUT;
}

static void so_path(char *out, size_t cap, const char *name) {
  if (strcmp(name, "hello") == 0 || strcmp(name, "echo") == 0)
    snprintf(out, cap, "%s/plugins/.libs/%s.so", tu_builddir(), name);
  else
    snprintf(out, cap, "%s/tests/plugins/.libs/%s.so", tu_builddir(), name);
}

static int install(const char *name, const char *as) {
  char src[1024], dst[1024];
  so_path(src, sizeof(src), name);
  snprintf(dst, sizeof(dst), "%s/%s.so", pdir, as ? as : name);
  return tu_install(src, dst);
}

static void uninstall(const char *as) {
  char dst[1024];
  snprintf(dst, sizeof(dst), "%s/%s.so", pdir, as);
  unlink(dst);
}

static np_conf *make_conf(const char *extra) {
  char text[4096], err[512];
  np_conf *c = NULL;
  snprintf(text, sizeof(text),
           "[host]\ndata_dir = %s\nlog_level = warn\n"
           "[plugins]\ndir = %s\n%s",
           dir, pdir, extra ? extra : "");
  if (np_conf_load_string(&c, "test.ini", text, strlen(text), err,
                          sizeof(err)) != 0) {
    printf("# conf error: %s\n", err);
    return NULL;
  }
  return c;
}

static const np_conf *conf(void) { return np_host_conf(host); }

static int has_proto(const char *p) {
  return np_proto_find(np_host_protos(host), p, strlen(p)) != NULL;
}

static void test_load_refusals(void) {
  char path[1024], why[512];
  np_plugins *pm = np_daemon_plugins(dmn);
  int rv;

  so_path(path, sizeof(path), "tp_wrong_abi");
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv < 0 && strstr(why, "abi_major=2, host speaks 1") != NULL,
     "loader refuses a plugin with another ABI major (%s)", why);

  so_path(path, sizeof(path), "tp_small_desc");
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv < 0 && strstr(why, "descriptor too small") != NULL,
     "loader refuses a descriptor smaller than ABI 1.0 (%s)", why);

  so_path(path, sizeof(path), "tp_nosym");
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv < 0 && strstr(why, "no entry point np_plugin_entry") != NULL,
     "loader refuses a .so without the entry symbol (%s)", why);

  rv = np_plugins_load_file(pm, conf(), "/nonexistent/x.so", why, sizeof(why));
  ok(rv == NP_ENOENT, "loader refuses a missing file");

  snprintf(path, sizeof(path), "%s/garbage.so", dir);
  tu_write(path, "not an ELF file\n", 0644);
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv < 0 && strstr(why, "dlopen failed") != NULL,
     "loader refuses a file that is not a shared object (%s)", why);

  so_path(path, sizeof(path), "tp_failinit");
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv == NP_EINVAL && strstr(why, "init failed") != NULL,
     "loader refuses a plugin whose init fails (%s)", why);
  ok(!has_proto("tp.failinit"),
     "a failed init's registrations are rolled back");

  so_path(path, sizeof(path), "tp_dup");
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv == NP_EEXIST &&
         strstr(why, "protocol \"hello\" already registered by plugin "
                     "hello") != NULL,
     "loader refuses a plugin whose protocol is taken (%s)", why);
  is_int(np_plugins_count(pm), 2, "refusals leave the loaded plugins alone");
}

static void test_calls(void) {
  result r;
  char want[512];
  call("hello", "", &r);
  is_str(r.data, "Hello, World!", "hello plugin answers through dispatch");
  is_int(call("echo", "ping 123", &r), 0, "echo plugin answers");
  is_str(r.data, "ping 123", "echo returns the request");
  is_int(call("no.such.proto", "x", &r), NP_ENOPROTO,
         "unknown protocol fails with NP_ENOPROTO");
  is_int(call("/natpeer/echo/1.0.0", "x", &r), NP_ENOPROTO,
         "a unary call to a stream handler fails with NP_ENOPROTO");
  is_int(call("tp.good", "x", &r), NP_ENOPROTO,
         "tp.good is not there before its plugin is installed");

  install("tp_good", NULL);
  np_plugins_sync(np_daemon_plugins(dmn), conf(), NULL);
  ok(has_proto("tp.good"), "sync loads a plugin dropped into the folder");
  call("tp.good", "abc", &r);
  snprintf(want, sizeof(want), "good:hey:abc:%s",
           np_host_identity(host)->id_str);
  is_str(r.data, want,
         "plugin reads its [plugin.NAME] keys and the caller's peer ID");
  call("tp.selfcall", "", &r);
  is_str(r.data, "Hello, World!",
         "a plugin's call from a timer to this host's hello works");
}

static void test_old_minor(void) {
  result r;
  install("tp_old_minor", NULL);
  np_plugins_sync(np_daemon_plugins(dmn), conf(), NULL);
  ok(has_proto("tp.old"), "a plugin built against ABI 1.0 loads");
  call("tp.old", "compat", &r);
  is_str(r.data, "old:compat", "the ABI 1.0 plugin works on a 1.1 host");
  install("tp_old_minor12", NULL);
  np_plugins_sync(np_daemon_plugins(dmn), conf(), NULL);
  ok(has_proto("tp.old12"), "a plugin built against ABI 1.2 loads");
  call("tp.old12", "compat", &r);
  is_str(r.data, "old:compat", "the ABI 1.2 plugin works on a 1.3 host");
}

/* This host runs no network, hence no DHT: the 1.3 entries are there and
 * fail at once with NP_ENOTSUP. */
static void test_dht_off(void) {
  result r;
  char want[32];
  np_plugins_result res;
  install("tp_dht", NULL);
  np_plugins_sync(np_daemon_plugins(dmn), conf(), NULL);
  ok(has_proto("tp.dht.find"),
     "a plugin that needs ABI 1.3 (NP_HAS(api, dht_cancel)) loads");
  snprintf(want, sizeof(want), "err=%d", NP_ENOTSUP);
  call("tp.dht.find", np_host_identity(host)->id_str, &r);
  is_str(r.data, want, "without a DHT, dht_find_peer fails with NP_ENOTSUP");
  call("tp.dht.get", "/pk/x", &r);
  is_str(r.data, want, "and dht_get_value too");
  uninstall("tp_dht");
  np_plugins_sync(np_daemon_plugins(dmn), conf(), &res);
  is_int(res.unloaded, 1, "tp_dht unloaded");
}

static void test_replace_remove(void) {
  result r;
  np_plugins_result res;
  result pending;
  int rv;

  /* A call the plugin never answers is failed when the plugin goes. */
  memset(&pending, 0, sizeof(pending));
  rv = np_host_call(host, np_host_identity(host)->id_str, "tp.never",
                    (const uint8_t *)"", 0, on_done, &pending, NULL);
  is_int(rv, 0, "call to a handler that never answers is accepted");
  ev_run(ev, EVRUN_NOWAIT); /* hand it to the plugin */

  install("tp_good_v2", "tp_good");
  np_plugins_sync(np_daemon_plugins(dmn), conf(), &res);
  is_int(res.reloaded, 1, "a replaced .so is reloaded");
  call("tp.good", "x", &r);
  ok(strncmp(r.data, "good2:", 6) == 0, "the new version answers (%s)",
     r.data);
  tu_run_until(ev, &pending.done, 2.0);
  ok(pending.done && pending.err == NP_ECANCELED,
     "a pending call fails with NP_ECANCELED when its plugin unloads");

  uninstall("tp_good");
  np_plugins_sync(np_daemon_plugins(dmn), conf(), &res);
  is_int(res.unloaded, 1, "a removed .so is unloaded");
  ok(!has_proto("tp.good") && !has_proto("tp.selfcall"),
     "its protocols are gone");
  is_int(call("tp.good", "x", &r), NP_ENOPROTO,
         "calls to the removed plugin fail with NP_ENOPROTO");
}

static void test_deny(void) {
  np_conf *c;
  char err[64];
  np_plugins_result res;
  (void)err;
  install("tp_good", NULL);
  c = make_conf("deny = tp_good\n[plugin.tp_good]\ngreeting = hey\n");
  ok(c != NULL, "config with a deny list parses");
  if (c == NULL)
    return;
  np_plugins_sync(np_daemon_plugins(dmn), c, &res);
  ok(!has_proto("tp.good"), "a denied plugin is not loaded");
  ok(has_proto("hello"), "other plugins stay loaded");
  np_conf_del(c);
}

/* Misbehaving plugins: invalid descriptor names, an init result that is
 * no NP_E* code, a FIFO in the folder, answering a call twice. */
static void test_misbehaving(void) {
  static const char *const bad[] = {"tp_badname_null", "tp_badname_empty",
                                    "tp_badname_space"};
  char path[1024], why[512];
  np_plugins *pm = np_daemon_plugins(dmn);
  size_t before;
  np_plugins_result res;
  result r;
  int rv;
  np_plugins_sync(pm, conf(), NULL); /* settle what earlier tests left */
  before = np_plugins_count(pm);
  for (size_t i = 0; i < 3; i++) {
    so_path(path, sizeof(path), bad[i]);
    rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
    ok(rv == NP_EINVAL && strstr(why, "descriptor name") != NULL,
       "%s is refused, not read after dlclose (%s)", bad[i], why);
  }
  install("tp_badname_space", "zz_badname");
  np_plugins_sync(pm, conf(), &res);
  ok(!has_proto("zz_badname"), "a bad name in the folder is refused on sync");
  uninstall("zz_badname");
  is_int(np_plugins_count(pm), before, "no plugin was added or lost");
  call("hello", "", &r);
  is_str(r.data, "Hello, World!", "the host runs on after the refusals");

  so_path(path, sizeof(path), "tp_rc");
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv == NP_EINVAL && strstr(why, "returned -999") != NULL &&
         strstr(why, "not an NP_E* code") != NULL,
     "an init result that is no NP_E* code is named as such (%s)", why);

  snprintf(path, sizeof(path), "%s/fifo.so", pdir);
  ok(mkfifo(path, 0644) == 0, "a FIFO named fifo.so in the plugin folder");
  np_plugins_sync(pm, conf(), &res);
  ok(res.refused >= 1, "it is refused on sync, without blocking");
  rv = np_plugins_load_file(pm, conf(), path, why, sizeof(why));
  ok(rv == NP_EINVAL && strstr(why, "not a regular file") != NULL,
     "load_file says why (%s)", why);
  unlink(path);

  install("tp_double", NULL);
  np_plugins_sync(pm, conf(), NULL);
  ok(has_proto("tp.double"), "tp_double loads");
  call("tp.double", "", &r);
  is_str(r.data, "first", "the first answer reaches the caller");
  call("tp.double.later", "", &r);
  is_str(r.data, "now", "so does the first answer of tp.double.later");
  {
    int stop = 0;
    tu_run_until(ev, &stop, 0.2); /* its timer answers again */
  }
  call("tp.double.result", "", &r);
  snprintf(why, sizeof(why), "rv2=%d rv3=%d late=%d", NP_EINVAL, NP_EINVAL,
           NP_EINVAL);
  is_str(r.data, why,
         "answering a gone call again (at once or later) is NP_EINVAL");
  uninstall("tp_double");
  np_plugins_sync(pm, conf(), NULL);
}

int main(void) {
  np_conf *c;
  np_identity id;
  char src[1024];

  setenv("TMPDIR", "/tmp", 0);
  so_path(src, sizeof(src), "tp_good");
  if (access(src, R_OK) != 0) {
    printf("1..0 # SKIP test plugins not built (%s)\n", src);
    return 0;
  }
  tu_tmpdir(dir, sizeof(dir));
  snprintf(pdir, sizeof(pdir), "%s/plugins", dir);
  mkdir(pdir, 0755);
  install("hello", NULL);
  install("echo", NULL);

  c = make_conf("[plugin.tp_good]\ngreeting = hey\n");
  ok(c != NULL, "test config parses");
  np_log_set_level(NP_LOG_WARN);
  ev = ev_loop_new(EVFLAG_AUTO);
  np_identity_generate(&id);
  ok(np_daemon_new(&dmn, ev, c, &id) == 0, "host created");
  host = np_daemon_host(dmn);
  ok(np_daemon_start(dmn, 0) == 0, "host started");
  is_int(np_plugins_count(np_daemon_plugins(dmn)), 2,
         "hello and echo loaded from the folder");

  test_load_refusals();
  test_calls();
  test_old_minor();
  test_dht_off();
  test_replace_remove();
  test_deny();
  test_misbehaving();

  np_daemon_del(dmn);
  is_int(ev_pending_count(ev), 0, "no pending watchers after teardown");
  ev_loop_destroy(ev);
  np_crypto_cleanup();
  tu_rmrf(dir);
  return done_testing();
}
