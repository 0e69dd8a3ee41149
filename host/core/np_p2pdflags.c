#include "np_p2pdflags.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "np_err.h"
#include "np_log.h"

/* ---- Go value syntax ---------------------------------------------------- */

int np_goflag_bool(const char *s, int *out) {
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < NP_ARRAY_LEN(t); i++) {
    if (strcmp(s, t[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcmp(s, f[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return NP_EINVAL;
}

static int digit_val(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'z')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'Z')
    return ch - 'A' + 10;
  return 99;
}

/* strconv.ParseUint(s, 0, 64) on the unsigned part: base prefixes 0x 0o
 * 0b and a leading 0 (octal); '_' only after a prefix, between digits. */
static int parse_u64(const char *s, uint64_t *out) {
  unsigned base = 10;
  int prefixed = 0, prev_digit;
  uint64_t v = 0;
  if (*s == '\0')
    return NP_EINVAL;
  if (s[0] == '0' && s[1] != '\0') {
    prefixed = 1;
    if (s[1] == 'x' || s[1] == 'X')
      base = 16, s += 2;
    else if (s[1] == 'o' || s[1] == 'O')
      base = 8, s += 2;
    else if (s[1] == 'b' || s[1] == 'B')
      base = 2, s += 2;
    else
      base = 8, s += 1;
  }
  /* After an 0x/0o/0b prefix the prefix counts as a digit for '_'. */
  prev_digit = prefixed;
  if (*s == '\0' && base != 8)
    return NP_EINVAL;
  for (; *s; s++) {
    unsigned d;
    if (*s == '_') {
      if (!prefixed || !prev_digit)
        return NP_EINVAL;
      prev_digit = 0;
      continue;
    }
    if ((d = (unsigned)digit_val(*s)) >= base)
      return NP_EINVAL;
    if (v > (UINT64_MAX - d) / base)
      return NP_ELIMIT;
    v = v * base + d;
    prev_digit = 1;
  }
  if (!prev_digit)
    return NP_EINVAL; /* trailing '_' */
  *out = v;
  return 0;
}

int np_goflag_uint(const char *s, uint64_t *out) {
  if (*s == '+' || *s == '-')
    return NP_EINVAL; /* ParseUint takes no sign */
  return parse_u64(s, out);
}

int np_goflag_int(const char *s, int64_t *out) {
  int neg = 0, rv;
  uint64_t u;
  if (*s == '+' || *s == '-')
    neg = *s++ == '-';
  if ((rv = parse_u64(s, &u)) != 0)
    return rv;
  if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX)
    return NP_ELIMIT;
  *out = neg ? (int64_t)(0 - u) : (int64_t)u;
  return 0;
}

/* time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?unit)+, or "0"; units ns us
 * µs μs ms s m h. */
int np_goflag_duration(const char *s, int64_t *ns) {
  static const struct {
    const char *u;
    uint64_t scale;
  } units[] = {{"ns", 1ull},
               {"us", 1000ull},
               {"\xc2\xb5s", 1000ull}, /* U+00B5 micro sign */
               {"\xce\xbcs", 1000ull}, /* U+03BC Greek mu */
               {"ms", 1000000ull},
               {"s", 1000000000ull},
               {"m", 60000000000ull},
               {"h", 3600000000000ull}};
  const uint64_t lim = (uint64_t)1 << 63;
  uint64_t d = 0;
  int neg = 0;
  if (*s == '-' || *s == '+')
    neg = *s++ == '-';
  if (strcmp(s, "0") == 0) {
    *ns = 0;
    return 0;
  }
  if (*s == '\0')
    return NP_EINVAL;
  while (*s) {
    uint64_t v = 0, unit = 0;
    double f = 0, scale = 1;
    int pre = 0, post = 0;
    size_t ul;
    if (!(*s == '.' || (*s >= '0' && *s <= '9')))
      return NP_EINVAL;
    for (; *s >= '0' && *s <= '9'; s++, pre = 1) {
      if (v > (lim - 1) / 10)
        return NP_ELIMIT;
      v = v * 10 + (uint64_t)(*s - '0');
      if (v > lim)
        return NP_ELIMIT;
    }
    if (*s == '.') {
      for (s++; *s >= '0' && *s <= '9'; s++, post = 1)
        if (scale < 1e18) { /* further digits cannot matter */
          f = f * 10 + (*s - '0');
          scale *= 10;
        }
    }
    if (!pre && !post)
      return NP_EINVAL;
    for (ul = 0; s[ul] && s[ul] != '.' && !(s[ul] >= '0' && s[ul] <= '9');
         ul++)
      ;
    if (ul == 0)
      return NP_EINVAL; /* missing unit */
    for (size_t i = 0; i < NP_ARRAY_LEN(units); i++)
      if (strlen(units[i].u) == ul && memcmp(units[i].u, s, ul) == 0)
        unit = units[i].scale;
    if (unit == 0)
      return NP_EINVAL; /* unknown unit */
    s += ul;
    if (v > lim / unit)
      return NP_ELIMIT;
    v *= unit;
    if (f > 0) {
      v += (uint64_t)(f * ((double)unit / scale));
      if (v > lim)
        return NP_ELIMIT;
    }
    d += v;
    if (d > lim)
      return NP_ELIMIT;
  }
  if (neg) {
    *ns = d == lim ? INT64_MIN : -(int64_t)d;
    return 0;
  }
  if (d > lim - 1)
    return NP_ELIMIT;
  *ns = (int64_t)d;
  return 0;
}

/* ---- the flag table ----------------------------------------------------- */

enum ftype { F_BOOL, F_STR, F_INT, F_UINT, F_DUR };

typedef struct gflag {
  const char *name;
  int type;
  const char *def; /* Go's default, as its usage prints it */
  const char *usage;
} gflag;

/* go-libp2p-daemon's flags, hivemind's fork's, and natpeer's -config.
 * The usage text says what natpeer does with each. */
static const gflag flags[] = {
    {"listen", F_STR, "/unix/tmp/p2pd.sock",
     "daemon control listen multiaddr (/unix/PATH or /ip4|ip6/A/tcp/P)"},
    {"q", F_BOOL, "false", "be quiet (no Control socket/Peer ID/Peer Addrs lines)"},
    {"id", F_STR, "", "peer identity; private key file (libp2p protobuf "
                      "PrivateKey); without it a new identity each run"},
    {"b", F_BOOL, "false", "connects to -bootstrapPeers (and bootstraps the DHT "
                           "if enabled)"},
    {"bootstrap", F_BOOL, "false", "natpeer: the same as -b"},
    {"bootstrapPeers", F_STR, "",
     "comma separated list of bootstrap peers (natpeer has no built-in list)"},
    {"dht", F_BOOL, "false", "Enables the DHT (natpeer [dht] mode = auto)"},
    {"dhtClient", F_BOOL, "false", "Enables the DHT in client mode"},
    {"dhtServer", F_BOOL, "false", "Enables the DHT in server mode"},
    {"connManager", F_BOOL, "false",
     "accepted; natpeer has no trimming connection manager ([limits] "
     "max_connections caps connections)"},
    {"connLo", F_INT, "256", "accepted, no effect (see -connManager)"},
    {"connHi", F_INT, "512", "accepted, no effect (see -connManager)"},
    {"connGrace", F_DUR, "2m0s", "accepted, no effect (see -connManager)"},
    {"natPortMap", F_BOOL, "false", "accepted; natpeer does no UPnP/NAT-PMP"},
    {"pubsub", F_BOOL, "false", "natpeer has no pubsub: true is an error"},
    {"pubsubRouter", F_STR, "gossipsub", "accepted, no effect (no pubsub)"},
    {"pubsubSign", F_BOOL, "true", "accepted, no effect (no pubsub)"},
    {"pubsubSignStrict", F_BOOL, "true", "accepted, no effect (no pubsub)"},
    {"gossipsubHeartbeatInterval", F_DUR, "0s",
     "accepted, no effect (no pubsub)"},
    {"gossipsubHeartbeatInitialDelay", F_DUR, "0s",
     "accepted, no effect (no pubsub)"},
    {"relay", F_BOOL, "true",
     "circuit relay; true (given) applies hivemind's relay-service limits, "
     "false turns natpeer's relay service and client off"},
    {"relayActive", F_BOOL, "false", "circuit v1 option: accepted, no effect"},
    {"relayHop", F_BOOL, "false", "relay service on/off ([relay] service)"},
    {"relayHopLimit", F_INT, "0", "circuit v1 option: accepted, no effect"},
    {"relayDiscovery", F_BOOL, "false", "circuit v1 option: accepted, no effect"},
    {"relayService", F_BOOL, "true",
     "relay service on/off ([relay] service; not given: auto)"},
    {"relayMaxCircuits", F_INT, "16", "[relay] max_circuits"},
    {"relayMaxReservations", F_INT, "128", "[relay] max_reservations"},
    {"relayBufferSize", F_INT, "16777216", "accepted, no effect"},
    {"relayDataLimit", F_INT, "4294967296", "[relay] circuit_bytes (at most 4G)"},
    {"relayTimeLimit", F_DUR, "30m0s", "[relay] circuit_duration"},
    {"autoRelay", F_BOOL, "false",
     "reserve on relays while private ([relay] client = auto; false: off)"},
    {"trustedRelays", F_STR, "", "comma separated relays ([relay] relays)"},
    {"autonat", F_BOOL, "false",
     "Enables the AutoNAT service ([nat] autonat_service)"},
    {"forceReachabilityPublic", F_BOOL, "false", "[nat] reachability = public"},
    {"forceReachabilityPrivate", F_BOOL, "false",
     "[nat] reachability = private"},
    {"hostAddrs", F_STR, "",
     "comma separated listen multiaddrs (default /ip4/0.0.0.0/tcp/0,"
     "/ip4/0.0.0.0/udp/0/quic-v1; /quic is served as /quic-v1)"},
    {"announceAddrs", F_STR, "",
     "comma separated multiaddrs announced in addition ([host] announce)"},
    {"noListenAddrs", F_BOOL, "false",
     "no public listen address: natpeer listens on 127.0.0.1 port 0 only "
     "(it dials from its listen sockets)"},
    {"quic", F_BOOL, "true", "QUIC (false: no /quic-v1 listen address)"},
    {"tls", F_BOOL, "true",
     "TLS on TCP ([host] security; QUIC always uses TLS)"},
    {"noise", F_BOOL, "true", "Noise on TCP ([host] security)"},
    {"plaintext", F_BOOL, "false", "natpeer has no /plaintext/2.0.0: true is an error"},
    {"muxer", F_STR, "yamux", "muxer; natpeer has yamux only"},
    {"echo", F_BOOL, "false", "accepted, no effect (no /echo/1.0.0 handler)"},
    {"metricsAddr", F_STR, "", "accepted, no effect (no metrics endpoint)"},
    {"pprof", F_BOOL, "false", "accepted, no effect"},
    {"pprofPort", F_UINT, "0", "accepted, no effect"},
    {"f", F_STR, "", "JSON daemon config: not supported (an error); see -config"},
    {"i", F_BOOL, "false", "JSON config on stdin: not supported (an error)"},
    {"idleTimeout", F_DUR, "0s",
     "exit if no persistent control connection opens within this time"},
    {"persistentConnMaxMsgSize", F_INT, "4194304",
     "largest persistent-connection message ([limits] max_message, 1K-64M)"},
    {"config", F_STR, "",
     "natpeer: an INI file (natpeer.ini) read first; flags override it"},
};
#define NFLAGS NP_ARRAY_LEN(flags)

static int flag_index(const char *name, size_t len) {
  for (size_t i = 0; i < NFLAGS; i++)
    if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
      return (int)i;
  return -1;
}

static int by_name(const void *a, const void *b) {
  return strcmp(flags[*(const int *)a].name, flags[*(const int *)b].name);
}

/* Go's flag.PrintDefaults layout, sorted by name. */
void np_p2pd_usage(FILE *f, const char *prog) {
  static const char *const tname[] = {"", "string", "int", "uint", "duration"};
  int idx[NFLAGS];
  for (size_t i = 0; i < NFLAGS; i++)
    idx[i] = (int)i;
  qsort(idx, NFLAGS, sizeof(idx[0]), by_name);
  fprintf(f, "Usage of %s:\n", prog);
  for (size_t j = 0; j < NFLAGS; j++) {
    const gflag *g = &flags[idx[j]];
    int zero = g->def[0] == '\0' || strcmp(g->def, "false") == 0 ||
               strcmp(g->def, "0") == 0 || strcmp(g->def, "0s") == 0;
    fprintf(f, "  -%s%s%s\n    \t%s", g->name, g->type == F_BOOL ? "" : " ",
            tname[g->type], g->usage);
    if (!zero)
      fprintf(f, g->type == F_STR ? " (default \"%s\")" : " (default %s)",
              g->def);
    fputc('\n', f);
  }
}

/* ---- INI builder ---------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) NP_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  int k;
  if (b->oom)
    return;
  for (;;) {
    va_start(ap, fmt);
    k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    size_t nc = (b->cap ? b->cap * 2 : 1024) + (size_t)k;
    char *np = realloc(b->p, nc);
    if (np == NULL) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
}

/* One key: "[section]\nkey = value\n". Values never hold newlines: a
 * command-line value with one is refused before it gets here. */
static void ini_set(sbuf *b, const char *section, const char *key,
                    const char *value) {
  sb_printf(b, "[%s]\n%s = %s\n", section, key, value);
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct pstate {
  const char *val[NFLAGS];
  int set[NFLAGS];
  FILE *err;
  const char *prog;
  int quic_warned;
} pstate;

static int usage_fail(pstate *st, const char *fmt, ...) NP_PRINTF(2, 3);
static int usage_fail(pstate *st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(st->err, fmt, ap);
  va_end(ap);
  fputc('\n', st->err);
  np_p2pd_usage(st->err, st->prog);
  return NP_P2PD_USAGE;
}

static int check_value(pstate *st, int i, const char *v) {
  int b;
  int64_t x;
  uint64_t u;
  int rv = 0;
  switch (flags[i].type) {
  case F_BOOL:
    if (np_goflag_bool(v, &b) != 0)
      return usage_fail(st, "invalid boolean value \"%s\" for -%s: parse error",
                        v, flags[i].name);
    return 0;
  case F_INT:
    rv = np_goflag_int(v, &x);
    break;
  case F_UINT:
    rv = np_goflag_uint(v, &u);
    break;
  case F_DUR:
    rv = np_goflag_duration(v, &x);
    break;
  default:
    break;
  }
  if (rv == 0 && strpbrk(v, "\r\n") != NULL)
    rv = NP_EINVAL; /* it would break the INI text */
  if (rv != 0)
    return usage_fail(st, "invalid value \"%s\" for flag -%s: %s", v,
                      flags[i].name,
                      rv == NP_ELIMIT ? "value out of range" : "parse error");
  return 0;
}

static int fbool(const pstate *st, const char *name) {
  int i = flag_index(name, strlen(name)), b = 0;
  np_goflag_bool(st->set[i] ? st->val[i] : flags[i].def, &b);
  return b;
}
static int fset(const pstate *st, const char *name) {
  return st->set[flag_index(name, strlen(name))];
}
static const char *fstr(const pstate *st, const char *name) {
  int i = flag_index(name, strlen(name));
  return st->set[i] ? st->val[i] : flags[i].def;
}
static int64_t fint(const pstate *st, const char *name) {
  int64_t x = 0;
  int i = flag_index(name, strlen(name));
  if (flags[i].type == F_DUR)
    np_goflag_duration(st->set[i] ? st->val[i] : flags[i].def, &x);
  else
    np_goflag_int(st->set[i] ? st->val[i] : flags[i].def, &x);
  return x;
}

static void note(pstate *st, const char *fmt, ...) NP_PRINTF(2, 3);
static void note(pstate *st, const char *fmt, ...) {
  va_list ap;
  fprintf(st->err, "%s: warning: ", st->prog);
  va_start(ap, fmt);
  vfprintf(st->err, fmt, ap);
  va_end(ap);
  fputc('\n', st->err);
}

/* |q| (inside |list|) follows a /udp/PORT component: the /quic protocol,
 * not a DNS name "quic". */
static int after_udp_port(const char *list, const char *q) {
  const char *d = q;
  while (d > list && d[-1] >= '0' && d[-1] <= '9')
    d--;
  return d < q && d - list >= 5 && memcmp(d - 5, "/udp/", 5) == 0;
}

/* A comma list of multiaddrs with each /quic (draft-29) component made
 * /quic-v1; the first rewrite is reported, once per command line. */
static char *quic_v1(pstate *st, const char *flag, const char *list) {
  sbuf b = {0};
  const char *p = list;
  size_t nrew = 0;
  char first[256] = "";
  sb_printf(&b, "%s", "");
  while (*p) {
    const char *q = strstr(p, "/quic");
    if (q == NULL || (q[5] != '\0' && q[5] != '/' && q[5] != ',') ||
        !after_udp_port(list, q)) {
      size_t l = q ? (size_t)(q - p) + 5 : strlen(p);
      sb_printf(&b, "%.*s", (int)l, p);
      p += l;
      continue;
    }
    sb_printf(&b, "%.*s/quic-v1", (int)(q - p), p);
    if (nrew++ == 0) {
      const char *s = q, *e = q;
      while (s > list && s[-1] != ',')
        s--;
      while (*e && *e != ',')
        e++;
      snprintf(first, sizeof(first), "%.*s", (int)(e - s), s);
    }
    p = q + 5;
  }
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (nrew && !st->quic_warned) {
    st->quic_warned = 1;
    note(st,
         "-%s: /quic (QUIC draft-29) is served as /quic-v1 (QUIC v1, RFC "
         "9000): %s%s",
         flag, first, nrew > 1 ? " and others" : "");
  }
  return b.p;
}

/* Drop /quic-v1 addresses from a comma list (-quic=false). */
static char *drop_quic(const char *list) {
  sbuf b = {0};
  char *dup = strdup(list), *save = NULL, *tok;
  if (dup == NULL)
    return NULL;
  sb_printf(&b, "%s", "");
  for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    if (strstr(tok, "/quic") == NULL)
      sb_printf(&b, "%s%s", b.n ? "," : "", tok);
  free(dup);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

static char *abs_path(const char *p) {
  char cwd[PATH_MAX], *out;
  size_t n;
  if (p[0] == '/')
    return strdup(p);
  if (getcwd(cwd, sizeof(cwd)) == NULL)
    return NULL;
  n = strlen(cwd) + strlen(p) + 2;
  if ((out = malloc(n)) != NULL)
    snprintf(out, n, "%s/%s", cwd, p);
  return out;
}

static int fatal(pstate *st, const char *fmt, ...) NP_PRINTF(2, 3);
static int fatal(pstate *st, const char *fmt, ...) {
  va_list ap;
  fprintf(st->err, "%s: ", st->prog);
  va_start(ap, fmt);
  vfprintf(st->err, fmt, ap);
  va_end(ap);
  fputc('\n', st->err);
  return NP_P2PD_USAGE;
}

/* The flags onto natpeer keys. */
static int map_flags(pstate *st, np_p2pd_opts *o) {
  sbuf set = {0}, mode = {0};
  char num[64], *s = NULL;
  int rv = NP_P2PD_RUN;
#define MAPFAIL(...)                                                           \
  do {                                                                         \
    rv = fatal(st, __VA_ARGS__);                                               \
    goto out;                                                                  \
  } while (0)
  const char *listen = NULL;
  int b;

  sb_printf(&set, "%s", "");
  sb_printf(&mode, "%s", "");
  o->quiet = fbool(st, "q");
  o->idle_timeout_ns = fint(st, "idleTimeout");

  /* Refused: they would turn on what natpeer does not have. */
  if (fbool(st, "pubsub"))
    MAPFAIL("-pubsub: natpeer has no pubsub (PUBSUB requests answer "
                     "\"PubSub not enabled\")");
  if (fbool(st, "plaintext"))
    MAPFAIL("-plaintext: natpeer has no /plaintext/2.0.0 security");
  if (fstr(st, "f")[0])
    MAPFAIL("-f: JSON daemon configs are not supported; give "
                     "natpeer's INI with -config FILE");
  if (fbool(st, "i"))
    MAPFAIL("-i: JSON daemon configs are not supported; give "
                     "natpeer's INI with -config FILE");
  if (fbool(st, "forceReachabilityPublic") &&
      fbool(st, "forceReachabilityPrivate"))
    MAPFAIL("-forceReachabilityPublic and -forceReachabilityPrivate "
                     "exclude each other");
  {
    const char *m = fstr(st, "muxer");
    if (strstr(m, "yamux") == NULL)
      MAPFAIL("-muxer=%s: natpeer speaks yamux only", m);
    if (strcmp(m, "yamux") != 0)
      note(st, "-muxer=%s: natpeer speaks yamux only", m);
  }

  /* Accepted, with no meaning in natpeer: said once each, when they ask
   * for something. */
  if (fbool(st, "connManager") || fset(st, "connLo") || fset(st, "connHi") ||
      fset(st, "connGrace"))
    note(st, "-connManager/-connLo/-connHi/-connGrace: ignored, natpeer has "
             "no trimming connection manager ([limits] max_connections caps "
             "connections)");
  if (fbool(st, "natPortMap"))
    note(st, "-natPortMap: ignored, natpeer does no UPnP/NAT-PMP");
  if (fset(st, "pubsubRouter") || fset(st, "pubsubSign") ||
      fset(st, "pubsubSignStrict") || fset(st, "gossipsubHeartbeatInterval") ||
      fset(st, "gossipsubHeartbeatInitialDelay"))
    note(st, "-pubsub*/-gossipsub*: ignored, natpeer has no pubsub");
  if (fbool(st, "relayActive") || fbool(st, "relayDiscovery") ||
      fint(st, "relayHopLimit") != 0)
    note(st, "-relayActive/-relayDiscovery/-relayHopLimit: ignored (circuit "
             "relay v1 options; natpeer speaks relay v2)");
  if (fset(st, "relayBufferSize"))
    note(st, "-relayBufferSize: ignored (natpeer's relay forwards with "
             "back-pressure, no fixed buffer)");
  /* TCP security: what -noise/-tls leave on ([host] security). */
  if (fset(st, "tls") || fset(st, "noise")) {
    int n = fbool(st, "noise"), t = fbool(st, "tls");
    if (!n && !t)
      MAPFAIL("-noise=false -tls=false: no security protocol left for TCP");
    ini_set(&set, "host", "security", n && t ? "noise tls" : n ? "noise" : "tls");
    if (!t)
      note(st, "-tls=false: TCP uses Noise only; QUIC still uses TLS (its "
               "only security)");
  }
  if (fbool(st, "echo"))
    note(st, "-echo: ignored, natpeer-p2pd has no /echo/1.0.0 handler");
  if (fstr(st, "metricsAddr")[0])
    note(st, "-metricsAddr: ignored, natpeer has no metrics endpoint");
  if (fbool(st, "pprof") || fset(st, "pprofPort"))
    note(st, "-pprof/-pprofPort: ignored, natpeer has no pprof");

  /* Control socket. */
  ini_set(fset(st, "listen") ? &set : &mode, "host", "control",
          fstr(st, "listen"));

  /* Listen addresses. */
  if (fbool(st, "noListenAddrs")) {
    if (fset(st, "hostAddrs"))
      note(st, "-noListenAddrs: -hostAddrs ignored");
    note(st, "-noListenAddrs: listening on 127.0.0.1 port 0 only (natpeer "
             "dials from its listen sockets)");
    listen = "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1";
    s = strdup(listen);
  } else if (fstr(st, "hostAddrs")[0]) {
    s = quic_v1(st, "hostAddrs", fstr(st, "hostAddrs"));
  } else {
    s = strdup("/ip4/0.0.0.0/tcp/0,/ip4/0.0.0.0/udp/0/quic-v1");
  }
  if (s && !fbool(st, "quic")) {
    char *t = drop_quic(s);
    free(s);
    s = t;
    if (s && s[0] == '\0') {
      free(s);
      s = NULL;
      MAPFAIL("-quic=false: no listen address left");
    }
  }
  if (s == NULL)
    goto oom;
  ini_set(fset(st, "hostAddrs") || fset(st, "noListenAddrs") ||
                  fset(st, "quic")
              ? &set
              : &mode,
          "host", "listen", s);
  free(s);
  s = NULL;
  if (fstr(st, "announceAddrs")[0]) {
    if ((s = quic_v1(st, "announceAddrs", fstr(st, "announceAddrs"))) == NULL)
      goto oom;
    ini_set(&set, "host", "announce", s);
    free(s);
    s = NULL;
  }

  /* Identity. */
  if (fstr(st, "id")[0]) {
    struct stat sb;
    if ((o->id_file = abs_path(fstr(st, "id"))) == NULL)
      goto oom;
    if (stat(o->id_file, &sb) != 0)
      MAPFAIL("-id %s: %s", fstr(st, "id"), strerror(errno));
  }

  /* Bootstrap: p2pd connects to -bootstrapPeers only with -b. */
  b = fbool(st, "b") || fbool(st, "bootstrap");
  o->bootstrap = b;
  if (b && fstr(st, "bootstrapPeers")[0]) {
    if ((s = quic_v1(st, "bootstrapPeers", fstr(st, "bootstrapPeers"))) ==
        NULL)
      goto oom;
    ini_set(&set, "bootstrap", "peers", s);
    free(s);
    s = NULL;
  } else {
    if (b)
      note(st, "-b: no -bootstrapPeers given, and natpeer has no built-in "
               "bootstrap list: nothing to bootstrap from");
    else if (fstr(st, "bootstrapPeers")[0])
      note(st, "-bootstrapPeers: not used without -b (as p2pd)");
    ini_set(b || fset(st, "b") || fset(st, "bootstrap") ? &set : &mode,
            "bootstrap", "peers", "");
  }

  /* DHT: off unless asked for (p2pd starts none, and connects nowhere). */
  if (fbool(st, "dht") || fbool(st, "dhtClient") || fbool(st, "dhtServer"))
    ini_set(&set, "dht", "mode",
            fbool(st, "dhtClient")   ? "client"
            : fbool(st, "dhtServer") ? "server"
                                     : "auto");
  else
    ini_set(fset(st, "dht") || fset(st, "dhtClient") || fset(st, "dhtServer")
                ? &set
                : &mode,
            "dht", "mode", "off");

  /* NAT. */
  if (fset(st, "autonat"))
    ini_set(&set, "nat", "autonat_service", fbool(st, "autonat") ? "yes" : "no");
  if (fbool(st, "forceReachabilityPublic"))
    ini_set(&set, "nat", "reachability", "public");
  else if (fbool(st, "forceReachabilityPrivate"))
    ini_set(&set, "nat", "reachability", "private");

  /* Relay. hivemind's fork serves relays with far larger limits than
   * go-libp2p's (its traffic depends on them): with -relay or -autoRelay
   * given, those become the defaults. */
  if ((fset(st, "relay") && fbool(st, "relay")) || fbool(st, "autoRelay")) {
    ini_set(&mode, "relay", "max_circuits", "16");
    ini_set(&mode, "relay", "max_reservations", "128");
    ini_set(&mode, "relay", "circuit_bytes", "4G");
    ini_set(&mode, "relay", "circuit_duration", "30m");
  }
  if (fset(st, "relay") && !fbool(st, "relay")) {
    note(st, "-relay=false: relay service and client off; natpeer still "
             "dials /p2p-circuit addresses it is given");
    ini_set(&set, "relay", "service", "off");
    ini_set(&set, "relay", "client", "off");
  } else {
    if (fset(st, "relayService"))
      ini_set(&set, "relay", "service", fbool(st, "relayService") ? "on" : "off");
    else if (fset(st, "relayHop"))
      ini_set(&set, "relay", "service", fbool(st, "relayHop") ? "on" : "off");
    else if (fset(st, "relay"))
      /* -relay alone: p2pd's relayService defaults to true. */
      ini_set(&set, "relay", "service", "on");
    /* p2pd takes circuits through any relay (a client may reserve for it
     * over the control socket, as the @libp2p/interop suite does). */
    ini_set(&mode, "relay", "accept_any_relay", "yes");
    /* p2pd reserves on relays only with -autoRelay (default false). */
    ini_set(fset(st, "autoRelay") ? &set : &mode, "relay", "client",
            fbool(st, "autoRelay") ? "auto" : "off");
  }
  if (fstr(st, "trustedRelays")[0]) {
    if ((s = quic_v1(st, "trustedRelays", fstr(st, "trustedRelays"))) == NULL)
      goto oom;
    ini_set(&set, "relay", "relays", s);
    free(s);
    s = NULL;
  }
  if (fset(st, "relayMaxCircuits")) {
    snprintf(num, sizeof(num), "%lld", (long long)fint(st, "relayMaxCircuits"));
    ini_set(&set, "relay", "max_circuits", num);
  }
  if (fset(st, "relayMaxReservations")) {
    snprintf(num, sizeof(num), "%lld",
             (long long)fint(st, "relayMaxReservations"));
    ini_set(&set, "relay", "max_reservations", num);
  }
  if (fset(st, "relayDataLimit")) {
    snprintf(num, sizeof(num), "%lld", (long long)fint(st, "relayDataLimit"));
    ini_set(&set, "relay", "circuit_bytes", num);
  }
  if (fset(st, "relayTimeLimit")) {
    snprintf(num, sizeof(num), "%lldms",
             (long long)(fint(st, "relayTimeLimit") / 1000000));
    ini_set(&set, "relay", "circuit_duration", num);
  }

  /* Limits. */
  if (fset(st, "persistentConnMaxMsgSize")) {
    snprintf(num, sizeof(num), "%lld",
             (long long)fint(st, "persistentConnMaxMsgSize"));
    ini_set(&set, "limits", "max_message", num);
  }

  /* No plugin folder scan: p2pd serves only what its clients register. */
  ini_set(&mode, "plugins", "autoload", "no");

  if (fstr(st, "config")[0] && (o->config = strdup(fstr(st, "config"))) == NULL)
    goto oom;
  if (set.oom || mode.oom)
    goto oom;
  o->set_ini = set.p;
  o->mode_ini = mode.p;
  return NP_P2PD_RUN;
oom:
  rv = fatal(st, "out of memory");
out: /* every failure: the INI texts go, |o| is freed by the caller */
  free(s);
  free(set.p);
  free(mode.p);
  return rv;
#undef MAPFAIL
}

int np_p2pd_parse(np_p2pd_opts *o, const char *prog, int argc, char **argv,
                  FILE *err) {
  pstate st;
  int rv;
  memset(o, 0, sizeof(*o));
  memset(&st, 0, sizeof(st));
  st.err = err;
  st.prog = prog;
  for (int a = 0; a < argc; a++) {
    const char *arg = argv[a], *name, *eq, *v = NULL;
    size_t nlen;
    int i, dashes = 1;
    /* Go stops at the first non-flag argument ("-" is one) or after "--". */
    if (arg[0] != '-' || arg[1] == '\0')
      break;
    if (arg[1] == '-') {
      dashes = 2;
      if (arg[2] == '\0')
        break;
    }
    name = arg + dashes;
    if (name[0] == '-' || name[0] == '=')
      return usage_fail(&st, "bad flag syntax: %s", arg);
    eq = strchr(name, '=');
    nlen = eq ? (size_t)(eq - name) : strlen(name);
    if ((i = flag_index(name, nlen)) < 0) {
      if ((nlen == 1 && name[0] == 'h') ||
          (nlen == 4 && memcmp(name, "help", 4) == 0)) {
        np_p2pd_usage(err, prog);
        return NP_P2PD_EXIT_OK;
      }
      return usage_fail(&st, "flag provided but not defined: -%.*s", (int)nlen,
                        name);
    }
    if (eq)
      v = eq + 1;
    else if (flags[i].type == F_BOOL)
      v = "true";
    else if (a + 1 < argc)
      v = argv[++a];
    else
      return usage_fail(&st, "flag needs an argument: -%s", flags[i].name);
    if ((rv = check_value(&st, i, v)) != 0)
      return rv;
    st.val[i] = v; /* the last one wins, as in Go */
    st.set[i] = 1;
  }
  if ((rv = map_flags(&st, o)) != NP_P2PD_RUN)
    np_p2pd_opts_free(o);
  return rv;
}

/* Load |text| as "command line" INI; a bad value is reported in the flags'
 * terms ("-hostAddrs ...: [host] listen: ..."), not as a file line. */
static int load_ini(np_conf **pc, const char *text, char *errbuf,
                    size_t errlen) {
  char e[1024];
  int rv = np_conf_load_string(pc, "command line", text, strlen(text), e,
                               sizeof(e));
  if (rv != 0 && errbuf && errlen) {
    const char *m = strstr(e, ": ");
    snprintf(errbuf, errlen, "command line: %s", m ? m + 2 : e);
  }
  return rv;
}

int np_p2pd_conf(const np_p2pd_opts *o, np_conf **pc, char *errbuf,
                 size_t errlen) {
  np_conf *c = NULL, *mode = NULL, *set = NULL;
  int rv;
  rv = o->config ? np_conf_load(&c, o->config, errbuf, errlen)
                 : np_conf_new_default(&c);
  if (rv != 0) {
    if (!o->config && errbuf && errlen)
      snprintf(errbuf, errlen, "%s", np_strerror(rv));
    return rv;
  }
  if ((rv = load_ini(&mode, o->mode_ini, errbuf, errlen)) != 0 ||
      (rv = load_ini(&set, o->set_ini, errbuf, errlen)) != 0) {
    np_conf_del(mode);
    np_conf_del(c);
    return rv;
  }
  np_conf_overlay(c, mode, 1);
  np_conf_overlay(c, set, 0);
  np_conf_del(mode);
  np_conf_del(set);
  *pc = c;
  return 0;
}

void np_p2pd_opts_free(np_p2pd_opts *o) {
  free(o->config);
  free(o->id_file);
  free(o->set_ini);
  free(o->mode_ini);
  memset(o, 0, sizeof(*o));
}
