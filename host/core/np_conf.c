#include "np_conf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "np_err.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_peerid.h"

#define CONF_MAX_FILE (1u << 20) /* a config larger than 1 MiB is a mistake */
#define CONF_MAX_LINE 8192
#define CONF_MAX_LIST 256 /* values per list key */

typedef enum kind {
  K_STR,
  K_PROTO, /* a protocol name: /..., printable, no spaces */
  K_PATH,
  K_LEVEL,
  K_BOOL,
  K_DHT_MODE,
  K_REACH,
  K_TRI,
  K_U32,
  K_SIZE,
  K_MS,
  K_LISTEN,  /* list of /ip4|ip6/A/udp/P/quic-v1 or /ip4|ip6/A/tcp/P */
  K_MADDRS,  /* list of multiaddrs */
  K_PEERS,   /* list of multiaddrs ending in /p2p/ID */
  K_CONTROL, /* unix path or /unix/PATH or /ip4|ip6/A/tcp/P */
  K_NAMES,   /* list of words */
  K_PATHS,   /* list of paths */
  K_PREFIXES, /* list of address prefixes */
  K_PEERIDS,  /* list of peer IDs */
  K_SECURITY  /* "noise tls": security protocols in preference order */
} kind;

typedef struct key {
  const char *section, *name;
  kind k;
  size_t off;
  uint64_t min, max;
  const char *expected;
} key;

#define OFF(f) offsetof(np_conf, f)
#define MS(x) ((uint64_t)(x))
#define SEC(x) ((uint64_t)(x)*1000u)

static const key keys[] = {
    {"host", "identity_file", K_PATH, OFF(host.identity_file), 0, 0,
     "a file path; created 0600 if missing"},
    {"host", "listen", K_LISTEN, OFF(host.listen), 0, 0,
     "multiaddrs like /ip4/0.0.0.0/udp/4001/quic-v1 or /ip4/0.0.0.0/tcp/4001"},
    {"host", "announce", K_MADDRS, OFF(host.announce), 0, 0,
     "multiaddrs like /ip4/203.0.113.7/udp/4001/quic-v1"},
    {"host", "control", K_CONTROL, OFF(host.control), 0, 0,
     "a unix socket path, /unix/PATH or /ip4/127.0.0.1/tcp/PORT"},
    {"host", "control_group", K_STR, OFF(host.control_group), 0, 0,
     "a group name"},
    {"host", "control_allow_remote", K_BOOL, OFF(host.control_allow_remote), 0,
     0, "yes or no"},
    {"host", "data_dir", K_PATH, OFF(host.data_dir), 0, 0, "a directory path"},
    {"host", "log_level", K_LEVEL, OFF(host.log_level), 0, 0,
     "error, warn, info or debug"},
    {"host", "log_timestamps", K_BOOL, OFF(host.log_timestamps), 0, 0,
     "yes or no"},
    {"host", "security", K_SECURITY, OFF(host.security), 0, 0,
     "noise and/or tls, in preference order (e.g. noise tls)"},
    {"bootstrap", "peers", K_PEERS, OFF(bootstrap.peers), 0, 0,
     "multiaddrs ending in /p2p/PEER_ID"},
    {"bootstrap", "connect_timeout", K_MS, OFF(bootstrap.connect_timeout_ms),
     MS(100), SEC(600), "a duration like 10s, from 100ms to 10m"},
    {"dht", "mode", K_DHT_MODE, OFF(dht.mode), 0, 0,
     "auto, server, client or off"},
    {"dht", "protocol", K_PROTO, OFF(dht.protocol), 1, 128,
     "a protocol name like /ipfs/kad/1.0.0 (/, then printable, no spaces)"},
    {"dht", "bucket_size", K_U32, OFF(dht.bucket_size), 1, 64,
     "a number from 1 to 64"},
    {"dht", "alpha", K_U32, OFF(dht.alpha), 1, 16, "a number from 1 to 16"},
    {"dht", "record_ttl", K_MS, OFF(dht.record_ttl_ms), SEC(60),
     SEC(7 * 86400), "a duration like 48h, from 1m to 7d"},
    {"dht", "refresh_interval", K_MS, OFF(dht.refresh_interval_ms), SEC(1),
     SEC(86400), "a duration like 10m, from 1s to 24h"},
    {"nat", "reachability", K_REACH, OFF(nat.reachability), 0, 0,
     "auto, public or private"},
    {"nat", "autonat", K_BOOL, OFF(nat.autonat), 0, 0, "yes or no"},
    {"nat", "autonat_service", K_BOOL, OFF(nat.autonat_service), 0, 0,
     "yes or no"},
    {"nat", "autonat_interval", K_MS, OFF(nat.autonat_interval_ms), SEC(1),
     SEC(86400), "a duration like 15m, from 1s to 24h"},
    {"nat", "autonat_boot_delay", K_MS, OFF(nat.autonat_boot_delay_ms),
     MS(100), SEC(3600), "a duration like 15s, from 100ms to 1h"},
    {"nat", "autonat_peer_limit", K_U32, OFF(nat.autonat_peer_limit), 1, 1000,
     "a number from 1 to 1000"},
    {"nat", "autonat_global_limit", K_U32, OFF(nat.autonat_global_limit), 1,
     10000, "a number from 1 to 10000"},
    {"nat", "hole_punch", K_BOOL, OFF(nat.hole_punch), 0, 0, "yes or no"},
    {"nat", "hole_punch_attempts", K_U32, OFF(nat.hole_punch_attempts), 1, 10,
     "a number from 1 to 10"},
    {"nat", "hole_punch_timeout", K_MS, OFF(nat.hole_punch_timeout_ms),
     MS(100), SEC(120), "a duration like 10s, from 100ms to 2m"},
    {"nat", "keepalive", K_MS, OFF(nat.keepalive_ms), SEC(1), SEC(600),
     "a duration like 15s, from 1s to 10m"},
    {"nat", "treat_as_public", K_PREFIXES, OFF(nat.treat_as_public), 0, 0,
     "address prefixes like 192.0.2.0/24 (for NAT labs)"},
    {"relay", "service", K_TRI, OFF(relay.service), 0, 0, "auto, on or off"},
    {"relay", "client", K_TRI, OFF(relay.client), 0, 0, "auto, on or off"},
    {"relay", "relays", K_PEERS, OFF(relay.relays), 0, 0,
     "multiaddrs ending in /p2p/PEER_ID"},
    {"relay", "client_reservations", K_U32, OFF(relay.client_reservations), 1,
     16, "a number from 1 to 16"},
    {"relay", "accept_any_relay", K_BOOL, OFF(relay.accept_any_relay), 0, 0,
     "yes or no"},
    {"relay", "max_reservations", K_U32, OFF(relay.max_reservations), 0, 65536,
     "a number from 0 to 65536"},
    {"relay", "max_circuits", K_U32, OFF(relay.max_circuits), 0, 65536,
     "a number from 0 to 65536"},
    {"relay", "reservation_ttl", K_MS, OFF(relay.reservation_ttl_ms), SEC(10),
     SEC(86400), "a duration like 1h, from 10s to 24h"},
    {"relay", "circuit_duration", K_MS, OFF(relay.circuit_duration_ms), SEC(1),
     SEC(86400), "a duration like 2m, from 1s to 24h"},
    {"relay", "circuit_bytes", K_SIZE, OFF(relay.circuit_bytes), 1024,
     (uint64_t)1 << 32, "a size like 128K, from 1K to 4G"},
    {"relay", "max_reservations_per_ip", K_U32,
     OFF(relay.max_reservations_per_ip), 0, 65536, "a number from 0 to 65536"},
    {"relay", "reserve_rate", K_U32, OFF(relay.reserve_rate), 1, 10000,
     "a number from 1 to 10000"},
    {"relay", "max_circuits_total", K_U32, OFF(relay.max_circuits_total), 0,
     1000000, "a number from 0 to 1000000"},
    {"relay", "unlimited_peers", K_PEERIDS, OFF(relay.unlimited_peers), 0, 0,
     "peer IDs like 12D3KooW..."},
    {"limits", "max_connections", K_U32, OFF(limits.max_connections), 1,
     1000000, "a number from 1 to 1000000"},
    {"limits", "max_streams_per_conn", K_U32, OFF(limits.max_streams_per_conn),
     1, 65536, "a number from 1 to 65536"},
    {"limits", "max_streams_per_protocol", K_U32,
     OFF(limits.max_streams_per_protocol), 1, 1000000,
     "a number from 1 to 1000000"},
    {"limits", "max_message", K_SIZE, OFF(limits.max_message), 1024,
     (uint64_t)64 << 20, "a size like 4M, from 1K to 64M"},
    {"limits", "idle_timeout", K_MS, OFF(limits.idle_timeout_ms), SEC(1),
     SEC(86400), "a duration like 60s, from 1s to 24h"},
    {"limits", "call_timeout", K_MS, OFF(limits.call_timeout_ms), MS(10),
     SEC(3600), "a duration like 30s, from 10ms to 1h"},
    {"limits", "max_peers", K_U32, OFF(limits.max_peers), 1, 1000000,
     "a number from 1 to 1000000"},
    {"limits", "max_pending_calls", K_U32, OFF(limits.max_pending_calls), 1,
     1000000, "a number from 1 to 1000000"},
    {"limits", "max_control_clients", K_U32, OFF(limits.max_control_clients),
     1, 65536, "a number from 1 to 65536"},
    {"limits", "control_idle_timeout", K_MS, OFF(limits.control_idle_ms),
     MS(100), SEC(3600), "a duration like 10s, from 100ms to 1h"},
    {"plugins", "dir", K_PATH, OFF(plugins.dir), 0, 0, "a directory path"},
    {"plugins", "autoload", K_BOOL, OFF(plugins.autoload), 0, 0, "yes or no"},
    {"plugins", "load", K_PATHS, OFF(plugins.load), 0, 0,
     "paths of .so files"},
    {"plugins", "deny", K_NAMES, OFF(plugins.deny), 0, 0,
     "plugin names or .so file names"},
};
#define NKEYS NP_ARRAY_LEN(keys)

static const char *const sections[] = {"host",  "bootstrap", "dht",    "nat",
                                       "relay", "limits",    "plugins"};

const char *np_conf_key_name(size_t i) {
  static char buf[64];
  if (i >= NKEYS)
    return NULL;
  snprintf(buf, sizeof(buf), "%s.%s", keys[i].section, keys[i].name);
  return buf;
}

/* ---- helpers ------------------------------------------------------------ */

void np_strv_free(np_strv *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
  s->v = NULL;
  s->n = 0;
}

static int strv_push(np_strv *s, const char *v) {
  char **nv;
  char *d = strdup(v);
  if (d == NULL)
    return NP_ENOMEM;
  nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
  if (nv == NULL) {
    free(d);
    return NP_ENOMEM;
  }
  s->v = nv;
  s->v[s->n++] = d;
  return 0;
}

static int set_str(char **dst, const char *v) {
  char *d = v ? strdup(v) : NULL;
  if (v && d == NULL)
    return NP_ENOMEM;
  free(*dst);
  *dst = d;
  return 0;
}

static void free_fields(np_conf *c);

int np_conf_defaults(np_conf *c) {
  memset(c, 0, sizeof(*c));
  c->host.log_level = NP_LOG_INFO;
  c->host.data_dir = strdup("/var/lib/natpeer"); /* systemd StateDirectory */
  c->bootstrap.connect_timeout_ms = SEC(10);
  c->dht.mode = NP_DHT_AUTO;
  c->host.security = NP_CONF_SEC_NOISE | NP_CONF_SEC_TLS << 8;
  c->dht.bucket_size = 20;
  c->dht.alpha = 10; /* go-libp2p-kad-dht's default */
  c->dht.protocol = strdup("/ipfs/kad/1.0.0");
  c->dht.record_ttl_ms = SEC(48 * 3600);
  c->dht.refresh_interval_ms = SEC(600);
  c->nat.reachability = NP_REACH_AUTO;
  c->nat.autonat = 1;
  c->nat.autonat_service = 1;
  c->nat.autonat_interval_ms = SEC(900);
  c->nat.autonat_boot_delay_ms = SEC(15);
  c->nat.autonat_peer_limit = 3;
  c->nat.autonat_global_limit = 30;
  c->nat.hole_punch = 1;
  c->nat.hole_punch_attempts = 3;
  c->nat.hole_punch_timeout_ms = SEC(10);
  c->nat.keepalive_ms = SEC(15);
  c->relay.service = NP_TRI_AUTO;
  c->relay.client = NP_TRI_AUTO;
  c->relay.client_reservations = 3;
  c->relay.max_reservations = 128;
  c->relay.max_circuits = 16;
  c->relay.reservation_ttl_ms = SEC(3600);
  c->relay.circuit_duration_ms = SEC(120);
  c->relay.circuit_bytes = 128 * 1024;
  c->relay.max_reservations_per_ip = 8;
  c->relay.reserve_rate = 8;
  c->relay.max_circuits_total = 1024;
  c->limits.max_connections = 256;
  c->limits.max_streams_per_conn = 256;
  c->limits.max_streams_per_protocol = 1024;
  c->limits.max_message = 4u << 20;
  c->limits.idle_timeout_ms = SEC(60);
  c->limits.call_timeout_ms = SEC(30);
  c->limits.max_peers = 4096;
  c->limits.max_pending_calls = 4096;
  c->limits.max_control_clients = 1024;
  c->limits.control_idle_ms = SEC(10);
  c->plugins.dir = strdup(NP_PLUGINDIR);
  c->plugins.autoload = 1;
  if (c->host.data_dir == NULL || c->plugins.dir == NULL ||
      strv_push(&c->host.listen, "/ip4/0.0.0.0/udp/4001/quic-v1") != 0 ||
      strv_push(&c->host.listen, "/ip6/::/udp/4001/quic-v1") != 0 ||
      strv_push(&c->host.listen, "/ip4/0.0.0.0/tcp/4001") != 0 ||
      strv_push(&c->host.listen, "/ip6/::/tcp/4001") != 0) {
    free_fields(c);
    return NP_ENOMEM;
  }
  return 0;
}

static void free_fields(np_conf *c) {
  for (size_t i = 0; i < NKEYS; i++) {
    void *f = (char *)c + keys[i].off;
    switch (keys[i].k) {
    case K_STR:
    case K_PROTO:
    case K_PATH:
    case K_CONTROL:
      free(*(char **)f);
      *(char **)f = NULL;
      break;
    case K_LISTEN:
    case K_MADDRS:
    case K_PEERS:
    case K_NAMES:
    case K_PATHS:
    case K_PREFIXES:
    case K_PEERIDS:
      np_strv_free(f);
      break;
    default:
      break;
    }
  }
  for (size_t i = 0; i < c->n_psec; i++) {
    for (size_t j = 0; j < c->psec[i].n; j++) {
      free(c->psec[i].kv[j].key);
      free(c->psec[i].kv[j].value);
    }
    free(c->psec[i].kv);
    free(c->psec[i].name);
  }
  free(c->psec);
  c->psec = NULL;
  c->n_psec = 0;
  free(c->path);
  c->path = NULL;
  free(c->key_line);
  c->key_line = NULL;
}

void np_conf_del(np_conf *c) {
  if (c == NULL)
    return;
  free_fields(c);
  free(c);
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct pctx {
  np_conf *c;
  const char *name;
  char *dir; /* directory of the file, for relative paths */
  const char *buf;
  size_t len, off;
  int line;
  int failed;
  char *err;
  size_t errlen;
  int seen[NKEYS]; /* line of first assignment, 0 if none */
} pctx;

static void fail(pctx *p, const char *fmt, ...) NP_PRINTF(2, 3);
static void fail(pctx *p, const char *fmt, ...) {
  va_list ap;
  int n;
  if (p->failed)
    return; /* keep the first error */
  p->failed = 1;
  if (p->err == NULL || p->errlen == 0)
    return;
  n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, p->line);
  if (n < 0 || (size_t)n >= p->errlen)
    return;
  va_start(ap, fmt);
  vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
  va_end(ap);
}

/* Quote a user value for an error message, bounded and escaped. */
static const char *q(char *b, size_t cap, const char *v) {
  char tmp[96];
  np_log_escape(tmp, sizeof(tmp), v, strlen(v));
  snprintf(b, cap, "\"%s\"", tmp);
  return b;
}

/* [plugin.NAME]: NAME as plugins may call themselves (np_plugin.c). */
static int plugin_name_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-' &&
        s[n] != '.')
      return 0;
  return n > 0 && n <= 64;
}

static int is_section(const char *s) {
  for (size_t i = 0; i < NP_ARRAY_LEN(sections); i++)
    if (strcmp(s, sections[i]) == 0)
      return 1;
  return strncmp(s, "plugin.", 7) == 0 && plugin_name_ok(s + 7);
}

static void check_section_line(pctx *p, const char *l, size_t n) {
  char name[128];
  const char *e;
  size_t i = 0;
  while (i < n && (l[i] == ' ' || l[i] == '\t'))
    i++;
  if (i >= n || l[i] != '[')
    return;
  e = memchr(l + i, ']', n - i);
  if (e == NULL)
    return; /* inih reports the syntax error */
  n = (size_t)(e - (l + i + 1));
  if (n >= sizeof(name)) {
    fail(p, "[...]: section name too long");
    return;
  }
  memcpy(name, l + i + 1, n);
  name[n] = '\0';
  if (strncmp(name, "plugin.", 7) == 0) {
    if (!plugin_name_ok(name + 7)) {
      char esc[160];
      np_log_escape(esc, sizeof(esc), name, n);
      fail(p, "[%s]: not a plugin name (expected plugin.NAME with NAME "
              "[A-Za-z0-9_.-]{1,64})", esc);
    }
    return;
  }
  if (!is_section(name))
    fail(p,
         "[%s]: unknown section (expected host, bootstrap, dht, nat, relay, "
         "limits, plugins or plugin.NAME)",
         name);
}

/* fgets-like reader over the in-memory file: counts lines (the handler sees
 * the number of the line it is called for) and refuses over-long lines
 * instead of letting inih split them. */
static char *reader(char *str, int num, void *stream) {
  pctx *p = stream;
  const char *s, *nl;
  size_t n, take;
  if (p->off >= p->len || num < 2)
    return NULL;
  s = p->buf + p->off;
  nl = memchr(s, '\n', p->len - p->off);
  n = nl ? (size_t)(nl - s) + 1 : p->len - p->off;
  p->off += n;
  p->line++;
  check_section_line(p, s, n);
  take = n;
  if (take > (size_t)num - 1) {
    fail(p, "line is longer than %d bytes (split a list over several lines)",
         num - 3);
    take = 0;
  }
  memcpy(str, s, take);
  str[take] = '\0';
  return str;
}

static char *resolve(pctx *p, const char *v) {
  char *out;
  size_t n;
  if (v[0] == '/' || p->dir == NULL)
    return strdup(v);
  n = strlen(p->dir) + strlen(v) + 2;
  if ((out = malloc(n)) != NULL)
    snprintf(out, n, "%s/%s", p->dir, v);
  return out;
}

static int parse_bool(const char *v) {
  static const char *const yes[] = {"yes", "true", "on", "1"};
  static const char *const no[] = {"no", "false", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0)
      return 1;
    if (strcasecmp(v, no[i]) == 0)
      return 0;
  }
  return -1;
}

static int parse_word(const char *v, const char *const *w, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcasecmp(v, w[i]) == 0)
      return (int)i;
  return -1;
}

/* Decimal with optional unit; |units| maps suffix -> multiplier. */
typedef struct unit {
  const char *suffix;
  uint64_t mul;
} unit;

static int parse_units(const char *v, const unit *u, size_t nu, uint64_t *out) {
  char *end;
  unsigned long long x;
  if (!isdigit((unsigned char)v[0]))
    return -1;
  errno = 0;
  x = strtoull(v, &end, 10);
  if (errno != 0)
    return -1;
  while (*end == ' ')
    end++;
  for (size_t i = 0; i < nu; i++) {
    if (strcasecmp(end, u[i].suffix) == 0) {
      if (u[i].mul && x > UINT64_MAX / u[i].mul)
        return -1;
      *out = x * u[i].mul;
      return 0;
    }
  }
  return -1;
}

static const unit size_units[] = {{"", 1},
                                  {"b", 1},
                                  {"k", 1024},
                                  {"kb", 1024},
                                  {"kib", 1024},
                                  {"m", 1024 * 1024},
                                  {"mb", 1024 * 1024},
                                  {"mib", 1024 * 1024},
                                  {"g", 1024ull * 1024 * 1024},
                                  {"gb", 1024ull * 1024 * 1024},
                                  {"gib", 1024ull * 1024 * 1024}};
static const unit ms_units[] = {{"", 1000},   {"ms", 1},        {"s", 1000},
                                {"m", 60000}, {"h", 3600000},   {"d", 86400000},
                                {"min", 60000}};

static int check_maddr(pctx *p, const key *k, const char *v) {
  uint8_t bin[NP_MADDR_MAX];
  char qb[128];
  np_ssize n = np_maddr_parse(v, strlen(v), bin, sizeof(bin));
  if (n < 0) {
    fail(p, "[%s] %s: %s is not a valid multiaddr: %s (expected %s)",
         k->section, k->name, q(qb, sizeof(qb), v), np_strerror((int)n),
         k->expected);
    return -1;
  }
  if (k->k == K_LISTEN) {
    struct sockaddr_storage ss;
    socklen_t sl;
    if (np_maddr_to_sockaddr(bin, (size_t)n, &ss, &sl) != 0 &&
        np_maddr_to_sockaddr_tcp(bin, (size_t)n, &ss, &sl) != 0) {
      fail(p, "[%s] %s: %s cannot be listened on (expected %s)", k->section,
           k->name, q(qb, sizeof(qb), v), k->expected);
      return -1;
    }
  }
  if (k->k == K_PEERS) {
    np_peerid id;
    if (np_maddr_get_p2p(bin, (size_t)n, &id) != 0) {
      fail(p, "[%s] %s: %s has no /p2p/ peer ID (expected %s)", k->section,
           k->name, q(qb, sizeof(qb), v), k->expected);
      return -1;
    }
  }
  return 0;
}

static int check_control(pctx *p, const key *k, const char *v) {
  char qb[128];
  if (v[0] == '/' && strncmp(v, "/unix/", 6) != 0 &&
      (strncmp(v, "/ip4/", 5) == 0 || strncmp(v, "/ip6/", 5) == 0)) {
    uint8_t bin[NP_MADDR_MAX];
    size_t off = 0;
    np_maddr_comp comp;
    int ncomp = 0, tcp = 0;
    np_ssize n = np_maddr_parse(v, strlen(v), bin, sizeof(bin));
    if (n >= 0) {
      while (np_maddr_next(bin, (size_t)n, &off, &comp) == 1) {
        ncomp++;
        if (ncomp == 2 && comp.code == 6)
          tcp = 1;
      }
    }
    if (n < 0 || ncomp != 2 || !tcp) {
      fail(p, "[%s] %s: %s is not a control address (expected %s)", k->section,
           k->name, q(qb, sizeof(qb), v), k->expected);
      return -1;
    }
  } else if (strncmp(v, "/unix/", 6) == 0 && v[6] == '\0') {
    fail(p, "[%s] %s: empty unix socket path (expected %s)", k->section,
         k->name, k->expected);
    return -1;
  }
  if (strlen(v) > 100 && strncmp(v, "/ip", 3) != 0) {
    fail(p, "[%s] %s: unix socket path longer than 100 bytes (expected %s)",
         k->section, k->name, k->expected);
    return -1;
  }
  return 0;
}

static int set_list(pctx *p, const key *k, np_strv *lst, const char *value) {
  char *dup = strdup(value), *save = NULL, *tok;
  int rv = 0;
  if (dup == NULL)
    return NP_ENOMEM;
  for (tok = strtok_r(dup, " \t,", &save); tok && rv == 0;
       tok = strtok_r(NULL, " \t,", &save)) {
    char *v;
    if (lst->n >= CONF_MAX_LIST) {
      fail(p, "[%s] %s: more than %d values (expected %s)", k->section,
           k->name, CONF_MAX_LIST, k->expected);
      rv = NP_ELIMIT;
      break;
    }
    if (k->k == K_LISTEN || k->k == K_MADDRS || k->k == K_PEERS) {
      if (check_maddr(p, k, tok) != 0) {
        rv = NP_EINVAL;
        break;
      }
      rv = strv_push(lst, tok);
    } else if (k->k == K_PREFIXES) {
      np_prefix px;
      if (np_prefix_parse(tok, &px) != 0) {
        fail(p, "[%s] %s: \"%s\" is not an address prefix (expected %s)",
             k->section, k->name, tok, k->expected);
        rv = NP_EINVAL;
        break;
      }
      rv = strv_push(lst, tok);
    } else if (k->k == K_PEERIDS) {
      np_peerid id;
      if (np_peerid_parse(&id, tok, strlen(tok)) != 0) {
        fail(p, "[%s] %s: \"%s\" is not a peer ID (expected %s)",
             k->section, k->name, tok, k->expected);
        rv = NP_EINVAL;
        break;
      }
      rv = strv_push(lst, tok);
    } else if (k->k == K_PATHS) {
      if ((v = resolve(p, tok)) == NULL) {
        rv = NP_ENOMEM;
        break;
      }
      rv = strv_push(lst, v);
      free(v);
    } else {
      rv = strv_push(lst, tok);
    }
  }
  free(dup);
  return rv;
}

static int set_key(pctx *p, const key *k, int idx, const char *v) {
  void *f = (char *)p->c + k->off;
  char qb[128];
  uint64_t x = 0;
  int r;
  static const char *const dht_modes[] = {"auto", "server", "client", "off"};
  static const char *const reach[] = {"auto", "public", "private"};
  static const char *const tri[] = {"auto", "on", "off"};
  int is_list = k->k == K_LISTEN || k->k == K_MADDRS || k->k == K_PEERS ||
                k->k == K_NAMES || k->k == K_PATHS || k->k == K_PREFIXES ||
                k->k == K_PEERIDS;

  if (p->seen[idx] && !is_list) {
    fail(p, "[%s] %s: set twice (first on line %d; expected %s)", k->section,
         k->name, p->seen[idx], k->expected);
    return -1;
  }
  if (!p->seen[idx] && is_list)
    np_strv_free(f); /* the file's first mention replaces the default */
  if (!p->seen[idx])
    p->seen[idx] = p->line;

  if (!is_list && v[0] == '\0' && k->k != K_STR) {
    fail(p, "[%s] %s: empty value (expected %s)", k->section, k->name,
         k->expected);
    return -1;
  }
  switch (k->k) {
  case K_STR:
    return set_str(f, v[0] ? v : NULL);
  case K_PROTO: {
    size_t n = strlen(v);
    int ok = v[0] == '/' && n >= k->min && n <= k->max;
    for (size_t i = 0; ok && i < n; i++)
      ok = v[i] > 0x20 && v[i] < 0x7f;
    if (!ok) {
      fail(p, "[%s] %s: \"%s\" is not a protocol name (expected %s)",
           k->section, k->name, v, k->expected);
      return -1;
    }
    return set_str(f, v);
  }
  case K_PATH: {
    char *r2 = resolve(p, v);
    if (r2 == NULL)
      return NP_ENOMEM;
    free(*(char **)f);
    *(char **)f = r2;
    return 0;
  }
  case K_CONTROL:
    if (check_control(p, k, v) != 0)
      return -1;
    if (v[0] != '/' || strncmp(v, "/unix/", 6) != 0) {
      if (strncmp(v, "/ip", 3) == 0)
        return set_str(f, v);
      char *r2 = resolve(p, v);
      if (r2 == NULL)
        return NP_ENOMEM;
      free(*(char **)f);
      *(char **)f = r2;
      return 0;
    }
    return set_str(f, v + 5); /* "/unix/tmp/x" -> "/tmp/x" */
  case K_LEVEL:
    if ((r = np_log_level_parse(v)) < 0)
      goto bad;
    *(int *)f = r;
    return 0;
  case K_BOOL:
    if ((r = parse_bool(v)) < 0)
      goto bad;
    *(int *)f = r;
    return 0;
  case K_SECURITY: {
    /* Words split by spaces or commas; each at most once. */
    static const char *const sec[] = {"noise", "tls"};
    char w[16];
    int packed = 0, n = 0;
    const char *q0 = v;
    while (*q0 != '\0') {
      size_t len = strcspn(q0, " \t,");
      if (len == 0) {
        q0++;
        continue;
      }
      if (len >= sizeof(w) || n == 2)
        goto bad;
      memcpy(w, q0, len);
      w[len] = '\0';
      if ((r = parse_word(w, sec, 2)) < 0)
        goto bad;
      r += 1; /* NP_CONF_SEC_NOISE or NP_CONF_SEC_TLS */
      if (n == 1 && (packed & 0xff) == r)
        goto bad;
      packed |= r << (8 * n++);
      q0 += len;
    }
    if (n == 0)
      goto bad;
    *(int *)f = packed;
    return 0;
  }
  case K_DHT_MODE:
    if ((r = parse_word(v, dht_modes, 4)) < 0)
      goto bad;
    *(int *)f = r;
    return 0;
  case K_REACH:
    if ((r = parse_word(v, reach, 3)) < 0)
      goto bad;
    *(int *)f = r;
    return 0;
  case K_TRI:
    if ((r = parse_word(v, tri, 3)) < 0)
      goto bad;
    *(int *)f = r;
    return 0;
  case K_U32:
    if (parse_units(v, size_units, 1, &x) != 0) {
      fail(p, "[%s] %s: %s is not a number (expected %s)", k->section, k->name,
           q(qb, sizeof(qb), v), k->expected);
      return -1;
    }
    if (x < k->min || x > k->max)
      goto range;
    *(uint32_t *)f = (uint32_t)x;
    return 0;
  case K_SIZE:
    if (parse_units(v, size_units, NP_ARRAY_LEN(size_units), &x) != 0) {
      fail(p, "[%s] %s: %s is not a size (expected %s)", k->section, k->name,
           q(qb, sizeof(qb), v), k->expected);
      return -1;
    }
    if (x < k->min || x > k->max)
      goto range;
    *(uint64_t *)f = x;
    return 0;
  case K_MS:
    if (parse_units(v, ms_units, NP_ARRAY_LEN(ms_units), &x) != 0) {
      fail(p, "[%s] %s: %s is not a duration (expected %s)", k->section,
           k->name, q(qb, sizeof(qb), v), k->expected);
      return -1;
    }
    if (x < k->min || x > k->max)
      goto range;
    *(uint64_t *)f = x;
    return 0;
  case K_LISTEN:
  case K_MADDRS:
  case K_PEERS:
  case K_NAMES:
  case K_PATHS:
  case K_PREFIXES:
  case K_PEERIDS:
    return set_list(p, k, f, v);
  }
  return 0;
bad:
  fail(p, "[%s] %s: invalid value %s (expected %s)", k->section, k->name,
       q(qb, sizeof(qb), v), k->expected);
  return -1;
range:
  fail(p, "[%s] %s: %s is out of range (expected %s)", k->section, k->name,
       q(qb, sizeof(qb), v), k->expected);
  return -1;
}

static int plugin_kv(pctx *p, const char *section, const char *name,
                     const char *value) {
  np_conf *c = p->c;
  const char *pname = section + 7;
  np_conf_plugin *s = NULL;
  np_conf_kv *kv;
  for (size_t i = 0; i < c->n_psec; i++)
    if (strcmp(c->psec[i].name, pname) == 0)
      s = &c->psec[i];
  if (s == NULL) {
    np_conf_plugin *ns = realloc(c->psec, (c->n_psec + 1) * sizeof(*ns));
    if (ns == NULL)
      return NP_ENOMEM;
    c->psec = ns;
    s = &c->psec[c->n_psec];
    memset(s, 0, sizeof(*s));
    if ((s->name = strdup(pname)) == NULL)
      return NP_ENOMEM;
    c->n_psec++;
  }
  for (size_t i = 0; i < s->n; i++) {
    if (strcmp(s->kv[i].key, name) == 0) {
      fail(p, "[%s] %s: set twice (first on line %d)", section, name,
           s->kv[i].line);
      return -1;
    }
  }
  if (s->n >= CONF_MAX_LIST) {
    fail(p, "[%s] %s: more than %d keys in one plugin section", section, name,
         CONF_MAX_LIST);
    return -1;
  }
  kv = realloc(s->kv, (s->n + 1) * sizeof(*kv));
  if (kv == NULL)
    return NP_ENOMEM;
  s->kv = kv;
  kv = &s->kv[s->n];
  kv->key = strdup(name);
  kv->value = strdup(value);
  kv->line = p->line;
  if (kv->key == NULL || kv->value == NULL) {
    free(kv->key);
    free(kv->value);
    return NP_ENOMEM;
  }
  s->n++;
  return 0;
}

static int handler(void *user, const char *section, const char *name,
                   const char *value) {
  pctx *p = user;
  char expected[1024];
  size_t o = 0;
  if (p->failed)
    return 0;
  if (!is_section(section)) {
    fail(p,
         "[%s]: unknown section (expected host, bootstrap, dht, nat, relay, "
         "limits, plugins or plugin.NAME)",
         section);
    return 0;
  }
  if (strncmp(section, "plugin.", 7) == 0)
    return plugin_kv(p, section, name, value) == 0 ? 1 : 0;
  for (size_t i = 0; i < NKEYS; i++) {
    if (strcmp(keys[i].section, section) == 0 &&
        strcmp(keys[i].name, name) == 0) {
      int rv = set_key(p, &keys[i], (int)i, value);
      if (rv < 0 && !p->failed)
        fail(p, "[%s] %s: %s", section, name, np_strerror(rv));
      return rv == 0;
    }
  }
  expected[0] = '\0';
  for (size_t i = 0; i < NKEYS; i++) {
    if (strcmp(keys[i].section, section) != 0)
      continue;
    int n = snprintf(expected + o, sizeof(expected) - o, "%s%s",
                     o ? ", " : "", keys[i].name);
    if (n > 0 && (size_t)n < sizeof(expected) - o)
      o += (size_t)n;
  }
  {
    char nb[96];
    np_log_escape(nb, sizeof(nb), name, strlen(name));
    fail(p, "[%s] %s: unknown key (expected one of %s)", section, nb,
         expected);
  }
  return 0;
}

static int finish(pctx *p) {
  np_conf *c = p->c;
  char buf[4096];
  if (c->host.identity_file == NULL) {
    snprintf(buf, sizeof(buf), "%s/identity.key", c->host.data_dir);
    if (set_str(&c->host.identity_file, buf) != 0)
      return NP_ENOMEM;
  }
  if (c->host.control == NULL) {
    snprintf(buf, sizeof(buf), "%s/control.sock", c->host.data_dir);
    if (strlen(buf) > 100) {
      p->line = 0;
      fail(p, "[host] control: default path %s is too long for a unix socket "
              "(expected a shorter control = path)", buf);
      return NP_EINVAL;
    }
    if (set_str(&c->host.control, buf) != 0)
      return NP_ENOMEM;
  }
  if (c->host.listen.n == 0) {
    p->line = p->seen[1];
    fail(p, "[host] listen: no address (expected %s)", keys[1].expected);
    return NP_EINVAL;
  }
  return 0;
}

/* Debian's libinih exposes its line limit at run time; use it so a long
 * `listen =` line works. Elsewhere the 200-byte compile-time limit holds and
 * the reader reports longer lines clearly. */
static int reader_cap(void) {
#if defined(HAVE_DECL_INI_MAX_LINE) && HAVE_DECL_INI_MAX_LINE &&               \
    defined(HAVE_DECL_INI_INITIAL_ALLOC) && HAVE_DECL_INI_INITIAL_ALLOC
  ini_use_stack = 0;
  ini_allow_realloc = 0;
  ini_initial_alloc = CONF_MAX_LINE;
  ini_max_line = CONF_MAX_LINE;
#endif
  return 0;
}

int np_conf_load_string(np_conf **pc, const char *name, const char *text,
                        size_t len, char *err, size_t errlen) {
  pctx p;
  char *line_buf_dir = NULL;
  int rv;
  np_conf *c = calloc(1, sizeof(*c));
  if (err && errlen)
    err[0] = '\0';
  if (c == NULL || np_conf_defaults(c) != 0) {
    free(c);
    return NP_ENOMEM;
  }
  memset(&p, 0, sizeof(p));
  p.c = c;
  p.name = name;
  p.buf = text;
  p.len = len;
  p.err = err;
  p.errlen = errlen;
  if (name && strchr(name, '/')) {
    line_buf_dir = strdup(name);
    if (line_buf_dir)
      *strrchr(line_buf_dir, '/') = '\0';
    if (line_buf_dir && line_buf_dir[0] == '\0') {
      free(line_buf_dir);
      line_buf_dir = strdup("/");
    }
  }
  p.dir = line_buf_dir;
  if (memchr(text, '\0', len) != NULL) {
    p.line = 1;
    fail(&p, "file contains a NUL byte (expected a text file)");
    rv = NP_EINVAL;
  } else {
    reader_cap();
    rv = ini_parse_stream(reader, &p, handler, &p);
    if (rv > 0 && !p.failed) {
      p.line = rv;
      fail(&p, "syntax error (expected [section], key = value or a comment)");
    }
    rv = p.failed ? NP_EINVAL : rv < 0 ? NP_ENOMEM : 0;
    if (rv == 0)
      rv = finish(&p);
    if (rv == 0) {
      if ((c->key_line = calloc(NKEYS, sizeof(int))) == NULL)
        rv = NP_ENOMEM;
      else
        memcpy(c->key_line, p.seen, sizeof(p.seen));
    }
  }
  free(line_buf_dir);
  if (rv == 0 && name && (c->path = strdup(name)) == NULL)
    rv = NP_ENOMEM;
  if (rv != 0) {
    np_conf_del(c);
    return rv;
  }
  *pc = c;
  return 0;
}

/* ---- key flags ------------------------------------------------------------ */

static unsigned flags_of(const key *k) {
  static const char *const unbuilt[] = {"nat", "relay"};
  static const char *const restart[] = {
      "host.identity_file", "host.listen",         "host.announce",
      "host.security",
      "host.control",       "host.control_group",  "host.control_allow_remote",
      "host.data_dir",      "limits.max_connections",
      "limits.max_streams_per_conn", "limits.idle_timeout", "limits.max_peers",
      /* the DHT module reads its config once, at start */
      "bootstrap.peers", "bootstrap.connect_timeout", "dht.mode", "dht.protocol",
      "dht.bucket_size", "dht.alpha", "dht.record_ttl", "dht.refresh_interval",
      "nat.treat_as_public", "nat.keepalive", "relay.service",
      /* the relay client reads its config once, at start */
      "relay.client", "relay.relays", "relay.client_reservations",
      "relay.accept_any_relay",
      /* the AutoNAT module reads its config once, at start */
      "nat.reachability", "nat.autonat", "nat.autonat_service",
      "nat.autonat_interval", "nat.autonat_boot_delay",
      "nat.autonat_peer_limit", "nat.autonat_global_limit"};
  char full[96];
  unsigned f = 0;
  snprintf(full, sizeof(full), "%s.%s", k->section, k->name);
  /* Built keys of the unbuilt sections. */
  static const char *const built[] = {
      "nat.treat_as_public",
      /* hole punching (np_dcutr) and the QUIC keep-alive */
      "nat.hole_punch", "nat.hole_punch_attempts", "nat.hole_punch_timeout",
      "nat.keepalive",
      /* the relay service (np_relaysvc) */
      "relay.service", "relay.max_reservations", "relay.max_circuits",
      "relay.reservation_ttl", "relay.circuit_duration", "relay.circuit_bytes",
      "relay.max_reservations_per_ip", "relay.reserve_rate",
      "relay.max_circuits_total", "relay.unlimited_peers",
      /* the relay client (np_relayc) */
      "relay.client", "relay.relays", "relay.client_reservations",
      "relay.accept_any_relay",
      /* AutoNAT (np_autonat) */
      "nat.reachability", "nat.autonat", "nat.autonat_service",
      "nat.autonat_interval", "nat.autonat_boot_delay",
      "nat.autonat_peer_limit", "nat.autonat_global_limit"};
  int is_built = 0;
  for (size_t i = 0; i < NP_ARRAY_LEN(built); i++)
    if (strcmp(full, built[i]) == 0)
      is_built = 1;
  for (size_t i = 0; i < NP_ARRAY_LEN(unbuilt); i++)
    if (strcmp(k->section, unbuilt[i]) == 0 && !is_built)
      f |= NP_KEY_UNBUILT;
  for (size_t i = 0; i < NP_ARRAY_LEN(restart); i++)
    if (strcmp(full, restart[i]) == 0)
      f |= NP_KEY_RESTART;
  return f;
}

unsigned np_conf_key_flags(const char *section, const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].section, section) == 0 &&
        strcmp(keys[i].name, name) == 0)
      return flags_of(&keys[i]);
  return 0;
}

void np_conf_foreach_set(const np_conf *c, unsigned flag, np_conf_key_fn fn,
                         void *ud) {
  for (size_t i = 0; i < NKEYS; i++)
    if ((flags_of(&keys[i]) & flag) && c->key_line && c->key_line[i])
      fn(keys[i].section, keys[i].name, c->key_line[i], ud);
}

static int str_eq(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

static int value_eq(const key *k, const np_conf *a, const np_conf *b) {
  const void *x = (const char *)a + k->off, *y = (const char *)b + k->off;
  switch (k->k) {
  case K_STR:
  case K_PROTO:
  case K_PATH:
  case K_CONTROL:
    return str_eq(*(char *const *)x, *(char *const *)y);
  case K_LISTEN:
  case K_MADDRS:
  case K_PEERS:
  case K_NAMES:
  case K_PATHS:
  case K_PREFIXES:
  case K_PEERIDS: {
    const np_strv *u = x, *v = y;
    if (u->n != v->n)
      return 0;
    for (size_t i = 0; i < u->n; i++)
      if (!str_eq(u->v[i], v->v[i]))
        return 0;
    return 1;
  }
  case K_U32:
    return *(const uint32_t *)x == *(const uint32_t *)y;
  case K_SIZE:
  case K_MS:
    return *(const uint64_t *)x == *(const uint64_t *)y;
  default: /* the enums and booleans are ints */
    return *(const int *)x == *(const int *)y;
  }
}

void np_conf_foreach_changed(const np_conf *a, const np_conf *b,
                             unsigned flag, np_conf_key_fn fn, void *ud) {
  for (size_t i = 0; i < NKEYS; i++)
    if ((flags_of(&keys[i]) & flag) && !value_eq(&keys[i], a, b))
      fn(keys[i].section, keys[i].name, b->key_line ? b->key_line[i] : 0,
         ud);
}

int np_conf_load(np_conf **pc, const char *path, char *err, size_t errlen) {
  /* O_NONBLOCK so that a FIFO given as the config cannot hang start-up
   * before it is refused as not a regular file. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st;
  FILE *f;
  char *buf;
  size_t n;
  int rv;
  if (fd < 0) {
    if (err)
      snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return NP_ENOENT;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (err)
      snprintf(err, errlen, "%s: not a regular file", path);
    close(fd);
    return NP_EINVAL;
  }
  if ((f = fdopen(fd, "rb")) == NULL) {
    if (err)
      snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
    return NP_ESYS;
  }
  buf = malloc(CONF_MAX_FILE + 1);
  if (buf == NULL) {
    fclose(f);
    return NP_ENOMEM;
  }
  n = fread(buf, 1, CONF_MAX_FILE + 1, f);
  if (ferror(f) || n > CONF_MAX_FILE) {
    if (err)
      snprintf(err, errlen, "%s: %s", path,
               ferror(f) ? strerror(errno) : "larger than 1 MiB");
    fclose(f);
    free(buf);
    return NP_EINVAL;
  }
  fclose(f);
  rv = np_conf_load_string(pc, path, buf, n, err, errlen);
  free(buf);
  return rv;
}

int np_conf_new_default(np_conf **pc) {
  return np_conf_load_string(pc, NULL, "", 0, NULL, 0);
}

const np_conf_plugin *np_conf_plugin_section(const np_conf *c,
                                             const char *name) {
  for (size_t i = 0; i < c->n_psec; i++)
    if (strcmp(c->psec[i].name, name) == 0)
      return &c->psec[i];
  return NULL;
}

const char *np_conf_plugin_get(const np_conf_plugin *s, const char *k) {
  if (s == NULL)
    return NULL;
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->kv[i].key, k) == 0)
      return s->kv[i].value;
  return NULL;
}

/* ---- overlay (natpeer-p2pd: command-line keys over a file) --------------- */

int np_conf_key_line(const np_conf *c, const char *section, const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].section, section) == 0 &&
        strcmp(keys[i].name, name) == 0)
      return c->key_line ? c->key_line[i] : 0;
  return 0;
}

void np_conf_overlay(np_conf *dst, np_conf *src, int only_unset) {
  if (src->key_line == NULL)
    return;
  for (size_t i = 0; i < NKEYS; i++) {
    void *d = (char *)dst + keys[i].off, *s = (char *)src + keys[i].off;
    if (!src->key_line[i] || (only_unset && dst->key_line && dst->key_line[i]))
      continue;
    switch (keys[i].k) {
    case K_STR:
    case K_PROTO:
    case K_PATH:
    case K_CONTROL: /* move the string */
      free(*(char **)d);
      *(char **)d = *(char **)s;
      *(char **)s = NULL;
      break;
    case K_LISTEN:
    case K_MADDRS:
    case K_PEERS:
    case K_NAMES:
    case K_PATHS:
    case K_PREFIXES:
    case K_PEERIDS:
      np_strv_free(d);
      *(np_strv *)d = *(np_strv *)s;
      memset(s, 0, sizeof(np_strv));
      break;
    case K_U32:
      *(uint32_t *)d = *(uint32_t *)s;
      break;
    case K_SIZE:
    case K_MS:
      *(uint64_t *)d = *(uint64_t *)s;
      break;
    default: /* K_LEVEL, K_BOOL, K_DHT_MODE, K_REACH, K_TRI: int */
      *(int *)d = *(int *)s;
      break;
    }
  }
}
