/* Config: defaults, every documented key, exact error messages with
 * FILE:LINE, long lines, lists, plugin sections, relative paths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_conf.h"
#include "np_err.h"
#include "np_log.h"
#include "tap.h"
#include "test_util.h"

static char err[1024];

static np_conf *load(const char *text) {
  np_conf *c = NULL;
  err[0] = '\0';
  if (np_conf_load_string(&c, "/etc/natpeer/natpeer.ini", text, strlen(text),
                          err, sizeof(err)) != 0)
    return NULL;
  return c;
}

static void expect_err(const char *text, const char *want, const char *name) {
  np_conf *c = load(text);
  ok(c == NULL, "%s: refused", name);
  is_str(err, want, "%s: message", name);
  np_conf_del(c);
}

static void test_defaults(void) {
  np_conf *c = NULL;
  ok(np_conf_new_default(&c) == 0, "built-in defaults load");
  if (c == NULL)
    return;
  is_int(c->host.listen.n, 4, "default listens on IPv4 and IPv6, QUIC and TCP");
  is_str(c->host.listen.v[0], "/ip4/0.0.0.0/udp/4001/quic-v1",
         "default IPv4 listen address");
  is_str(c->host.listen.v[2], "/ip4/0.0.0.0/tcp/4001",
         "default IPv4 TCP listen address on the same port number");
  is_int(c->limits.max_message, 4 << 20, "default max_message is 4 MiB");
  is_int(c->dht.mode, NP_DHT_AUTO, "default dht mode is auto");
  ok(strstr(c->host.identity_file, "/identity.key") != NULL,
     "identity file defaults into data_dir");
  np_conf_del(c);
}

static void test_values(void) {
  np_conf *c = load("[host]\n"
                    "listen = /ip4/127.0.0.1/udp/0/quic-v1\n"
                    "listen = /ip6/::1/udp/0/quic-v1, "
                    "/ip4/127.0.0.2/udp/9/quic-v1\n"
                    "identity_file = keys/id.key\n"
                    "control = /unix/run/np.sock\n"
                    "log_level = debug\n"
                    "[limits]\nmax_message = 8M\nidle_timeout = 90s\n"
                    "call_timeout = 250ms\n"
                    "[dht]\nmode = client\n"
                    "[relay]\nservice = off\n"
                    "[plugins]\ndir = plugins\nload = /opt/x.so extra/y.so\n"
                    "deny = bad\n"
                    "[plugin.hello]\nprotocol = greet\nmessage = Hi there\n");
  ok(c != NULL, "a full config parses (%s)", err);
  if (c == NULL)
    return;
  is_int(c->host.listen.n, 3, "repeated and comma-separated listen values add up");
  is_str(c->host.listen.v[2], "/ip4/127.0.0.2/udp/9/quic-v1",
         "list values keep their order");
  is_str(c->host.identity_file, "/etc/natpeer/keys/id.key",
         "relative paths resolve against the config's directory");
  is_str(c->host.control, "/run/np.sock", "/unix/PATH control address");
  is_int(c->host.log_level, NP_LOG_DEBUG, "log_level");
  is_int(c->limits.max_message, 8 << 20, "size with unit");
  is_int(c->limits.idle_timeout_ms, 90000, "duration in seconds");
  is_int(c->limits.call_timeout_ms, 250, "duration in ms");
  is_int(c->dht.mode, NP_DHT_CLIENT, "dht mode");
  is_int(c->relay.service, NP_TRI_OFF, "tri-state");
  is_str(c->plugins.dir, "/etc/natpeer/plugins", "plugin dir resolved");
  is_int(c->plugins.load.n, 2, "load list");
  is_str(c->plugins.load.v[1], "/etc/natpeer/extra/y.so", "load path resolved");
  is_str(np_conf_plugin_get(np_conf_plugin_section(c, "hello"), "message"),
         "Hi there", "[plugin.NAME] free keys are kept verbatim");
  ok(np_conf_plugin_section(c, "nope") == NULL, "absent plugin section");
  np_conf_del(c);
}

static void test_long_line(void) {
  char text[4096];
  size_t o;
  np_conf *c;
  o = (size_t)snprintf(text, sizeof(text), "[host]\nlisten =");
  for (int i = 0; i < 12; i++)
    o += (size_t)snprintf(text + o, sizeof(text) - o,
                          " /ip4/127.0.0.%d/udp/%d/quic-v1", i + 1, 4000 + i);
  snprintf(text + o, sizeof(text) - o, "\n");
  ok(strlen(text) > 300, "long listen line is %zu bytes", strlen(text));
  c = load(text);
  ok(c != NULL, "a listen line longer than 200 bytes parses (%s)", err);
  if (c)
    is_int(c->host.listen.n, 12, "all 12 addresses of the long line kept");
  np_conf_del(c);
}

static void test_errors(void) {
  expect_err("[host]\nlog_level = info\nbogus_key = 1\n",
             "/etc/natpeer/natpeer.ini:3: [host] bogus_key: unknown key "
             "(expected one of identity_file, listen, announce, control, "
             "control_group, control_allow_remote, data_dir, log_level, "
             "log_timestamps, security)",
             "unknown key");
  expect_err("\n[limits]\n\nmax_message = 4X\n",
             "/etc/natpeer/natpeer.ini:4: [limits] max_message: \"4X\" is not "
             "a size (expected a size like 4M, from 1K to 64M)",
             "bad size");
  expect_err("[limits]\nmax_message = 65M\n",
             "/etc/natpeer/natpeer.ini:2: [limits] max_message: \"65M\" is out "
             "of range (expected a size like 4M, from 1K to 64M)",
             "size out of range");
  expect_err("[host]\n[dhtt]\nmode = auto\n",
             "/etc/natpeer/natpeer.ini:2: [dhtt]: unknown section (expected "
             "host, bootstrap, dht, nat, relay, limits, plugins or "
             "plugin.NAME)",
             "unknown section");
  expect_err("[dhtt]\n",
             "/etc/natpeer/natpeer.ini:1: [dhtt]: unknown section (expected "
             "host, bootstrap, dht, nat, relay, limits, plugins or "
             "plugin.NAME)",
             "unknown empty section");
  expect_err("[host]\nlog_level = loud\n",
             "/etc/natpeer/natpeer.ini:2: [host] log_level: invalid value "
             "\"loud\" (expected error, warn, info or debug)",
             "bad enum");
  expect_err("[dht]\nmode = server\nmode = client\n",
             "/etc/natpeer/natpeer.ini:3: [dht] mode: set twice (first on "
             "line 2; expected auto, server, client or off)",
             "duplicate scalar key");
  expect_err("[host]\nlisten = /ip4/1.2.3.4/udp/99999/quic-v1\n",
             "/etc/natpeer/natpeer.ini:2: [host] listen: "
             "\"/ip4/1.2.3.4/udp/99999/quic-v1\" is not a valid multiaddr: "
             "invalid argument (expected multiaddrs like "
             "/ip4/0.0.0.0/udp/4001/quic-v1 or /ip4/0.0.0.0/tcp/4001)",
             "bad port in listen");
  expect_err("[host]\nlisten = /ip4/1.2.3.4/udp/80\n",
             "/etc/natpeer/natpeer.ini:2: [host] listen: "
             "\"/ip4/1.2.3.4/udp/80\" cannot be listened on (expected "
             "multiaddrs like /ip4/0.0.0.0/udp/4001/quic-v1 or "
             "/ip4/0.0.0.0/tcp/4001)",
             "listen needs quic-v1 or tcp");
  expect_err("[bootstrap]\npeers = /ip4/1.2.3.4/udp/4001/quic-v1\n",
             "/etc/natpeer/natpeer.ini:2: [bootstrap] peers: "
             "\"/ip4/1.2.3.4/udp/4001/quic-v1\" has no /p2p/ peer ID "
             "(expected multiaddrs ending in /p2p/PEER_ID)",
             "bootstrap needs /p2p/");
  expect_err("[host]\nthis line has no equals sign\n",
             "/etc/natpeer/natpeer.ini:2: syntax error (expected [section], "
             "key = value or a comment)",
             "syntax error");
  expect_err("[nat]\nhole_punch = maybe\n",
             "/etc/natpeer/natpeer.ini:2: [nat] hole_punch: invalid value "
             "\"maybe\" (expected yes or no)",
             "bad bool");
  expect_err("[host]\ncontrol = /ip4/127.0.0.1/udp/5\n",
             "/etc/natpeer/natpeer.ini:2: [host] control: "
             "\"/ip4/127.0.0.1/udp/5\" is not a control address (expected a "
             "unix socket path, /unix/PATH or /ip4/127.0.0.1/tcp/PORT)",
             "control must be unix or tcp");
  {
    char big[8300];
    memset(big, 'a', sizeof(big));
    memcpy(big, "[host]\nx = ", 11);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    np_conf *c = load(big);
    ok(c == NULL && strstr(err, ":2: line is longer than") != NULL,
       "a line over the limit is refused with its line number (%s)", err);
    np_conf_del(c);
  }
  {
    np_conf *c = NULL;
    char e2[256];
    int rv = np_conf_load(&c, "/nonexistent/natpeer.ini", e2, sizeof(e2));
    ok(rv == NP_ENOENT && strstr(e2, "/nonexistent/natpeer.ini: cannot open") ==
                              e2,
       "missing file names the file (%s)", e2);
  }
}

/* The sample config must parse and mention every key of the table. */
static void test_sample(void) {
  char path[1024], line[512];
  const char *name;
  np_conf *c = NULL;
  FILE *f;
  char *text = NULL;
  size_t cap = 0, len = 0;
  snprintf(path, sizeof(path), "%s/etc/natpeer.ini", tu_srcdir());
  ok(np_conf_load(&c, path, err, sizeof(err)) == 0,
     "etc/natpeer.ini parses (%s)", err);
  np_conf_del(c);
  f = fopen(path, "r");
  if (f == NULL) {
    ok(0, "etc/natpeer.ini readable");
    return;
  }
  while (fgets(line, sizeof(line), f)) {
    size_t n = strlen(line);
    if (len + n + 1 > cap) {
      cap = (len + n + 1) * 2;
      text = realloc(text, cap);
    }
    memcpy(text + len, line, n + 1);
    len += n;
  }
  fclose(f);
  for (size_t i = 0; (name = np_conf_key_name(i)) != NULL; i++) {
    const char *dot = strchr(name, '.');
    char sec[64], key[64], pat[80];
    int found = 0;
    snprintf(sec, sizeof(sec), "[%.*s]", (int)(dot - name), name);
    snprintf(key, sizeof(key), "%s", dot + 1);
    const char *s = text ? strstr(text, sec) : NULL;
    if (s) {
      const char *next = strstr(s + 1, "\n[");
      snprintf(pat, sizeof(pat), "\n%s =", key);
      const char *k = strstr(s, pat);
      if (k == NULL) {
        snprintf(pat, sizeof(pat), "\n;%s =", key);
        k = strstr(s, pat);
      }
      if (k == NULL) {
        snprintf(pat, sizeof(pat), "\n; %s =", key);
        k = strstr(s, pat);
      }
      found = k != NULL && (next == NULL || k < next);
    }
    ok(found, "etc/natpeer.ini documents %s", name);
  }
  free(text);
}

/* The sample marks exactly the keys that a reload cannot apply with
 * "(restart)", and exactly the sections not built yet. */
static void test_sample_marks(void) {
  char path[1024], line[512], sec[64] = "";
  int marked = 0, unbuilt_sec = 0, bad = 0, n = 0;
  FILE *f;
  snprintf(path, sizeof(path), "%s/etc/natpeer.ini", tu_srcdir());
  if ((f = fopen(path, "r")) == NULL) {
    ok(0, "etc/natpeer.ini readable");
    return;
  }
  while (fgets(line, sizeof(line), f)) {
    char key[64];
    if (sscanf(line, "[%63[^]]]", sec) == 1) {
      marked = 0;
      unbuilt_sec = 0;
      continue;
    }
    if (strstr(line, "NOT BUILT YET"))
      unbuilt_sec = 1;
    if (line[0] == ';' && sscanf(line, ";%63[a-z_] =", key) == 1 &&
        strstr(line, " =") != NULL) {
      unsigned fl = np_conf_key_flags(sec, key);
      if (!!(fl & NP_KEY_RESTART) != marked ||
          !!(fl & NP_KEY_UNBUILT) != unbuilt_sec) {
        printf("# [%s] %s: restart %d/%d, not built %d/%d (flag/sample)\n",
               sec, key, !!(fl & NP_KEY_RESTART), marked,
               !!(fl & NP_KEY_UNBUILT), unbuilt_sec);
        bad++;
      }
      n++;
      marked = 0;
    } else if (line[0] == ';' && strstr(line, "(restart)")) {
      marked = 1;
    }
  }
  fclose(f);
  ok(n > 40 && bad == 0,
     "the sample's (restart) and NOT BUILT YET marks match the key flags "
     "(%d keys)", n);
}

static void collect(const char *section, const char *name, int line,
                    void *ud) {
  char *out = ud;
  size_t l = strlen(out);
  snprintf(out + l, 512 - l, "%s.%s@%d ", section, name, line);
}

static void test_flags(void) {
  np_conf *a = load("[host]\nlog_level = warn\n[nat]\nhole_punch = no\n"
                    "[limits]\nmax_connections = 10\nmax_message = 1M\n");
  np_conf *b = load("[limits]\nmax_connections = 20\nmax_message = 2M\n"
                    "[relay]\nservice = on\n");
  char out[512] = "";
  if (a == NULL || b == NULL) {
    ok(0, "flag test configs parse (%s)", err);
    np_conf_del(a);
    np_conf_del(b);
    return;
  }
  np_conf_foreach_set(a, NP_KEY_UNBUILT, collect, out);
  /* DCUtR built the last of them ([nat] hole_punch*, keepalive). */
  is_str(out, "", "no key is flagged as a feature not built yet");
  out[0] = '\0';
  np_conf_foreach_changed(a, b, NP_KEY_RESTART, collect, out);
  is_str(out, "relay.service@5 limits.max_connections@2 ",
         "a reload finds the changed keys that need a restart (not "
         "max_message, which applies live)");
  np_conf_del(a);
  np_conf_del(b);
}

int main(void) {
  np_log_set_level(NP_LOG_ERROR);
  test_defaults();
  test_values();
  test_long_line();
  test_errors();
  test_sample();
  test_sample_marks();
  test_flags();
  return done_testing();
}
