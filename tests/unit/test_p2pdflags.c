/* natpeer-p2pd's command line: Go `flag` syntax and value forms, and the
 * mapping of every go-libp2p-daemon flag family onto np_conf. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_err.h"
#include "np_event.h"
#include "np_p2pdflags.h"
#include "tap.h"

#define PEER "12D3KooWHTKEqhNUxCeevXU5hQq1EcobhEVNyRAPVuWmX34283nw"

static char errtext[65536];

/* Parse a NULL-terminated argument list; stderr text lands in errtext. */
static int parse(np_p2pd_opts *o, const char *const *args) {
  char *argv[64];
  int argc = 0, rv;
  FILE *f = tmpfile();
  size_t n;
  while (args[argc] && argc < 63) {
    argv[argc] = (char *)args[argc];
    argc++;
  }
  argv[argc] = NULL;
  rv = np_p2pd_parse(o, "natpeer-p2pd", argc, argv, f);
  rewind(f);
  n = fread(errtext, 1, sizeof(errtext) - 1, f);
  errtext[n] = '\0';
  fclose(f);
  return rv;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* Parse and build the config; NULL on any failure (errtext says why). */
static np_conf *conf_of(np_p2pd_opts *o, const char *const *args) {
  np_conf *c = NULL;
  char e[1024];
  if (parse(o, args) != NP_P2PD_RUN)
    return NULL;
  if (np_p2pd_conf(o, &c, e, sizeof(e)) != 0) {
    snprintf(errtext, sizeof(errtext), "%s", e);
    np_p2pd_opts_free(o);
    return NULL;
  }
  return c;
}

static int has(const np_strv *s, const char *v) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], v) == 0)
      return 1;
  return 0;
}

static void test_bool(void) {
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  static const char *const bad[] = {"yes", "2", "", "tRUE", "on", " 1"};
  int b;
  for (size_t i = 0; i < 6; i++) {
    b = 0;
    ok(np_goflag_bool(t[i], &b) == 0 && b == 1, "bool \"%s\" is true", t[i]);
    b = 1;
    ok(np_goflag_bool(f[i], &b) == 0 && b == 0, "bool \"%s\" is false", f[i]);
    ok(np_goflag_bool(bad[i], &b) == NP_EINVAL, "bool \"%s\" refused", bad[i]);
  }
}

static void test_int(void) {
  static const struct {
    const char *s;
    int rv;
    int64_t v;
  } c[] = {{"10", 0, 10},
           {"-5", 0, -5},
           {"+7", 0, 7},
           {"0", 0, 0},
           {"0x1F", 0, 31},
           {"0X10", 0, 16},
           {"0o17", 0, 15},
           {"017", 0, 15},
           {"0b101", 0, 5},
           {"0x_1f", 0, 31},
           {"0b1_0_1", 0, 5},
           {"4194304", 0, 4194304},
           {"9223372036854775807", 0, INT64_MAX},
           {"-9223372036854775808", 0, INT64_MIN},
           {"9223372036854775808", NP_ELIMIT, 0},
           {"99999999999999999999", NP_ELIMIT, 0},
           {"1_000", NP_EINVAL, 0},
           {"0x", NP_EINVAL, 0},
           {"08", NP_EINVAL, 0},
           {"0x1__2", NP_EINVAL, 0},
           {"0x1_", NP_EINVAL, 0},
           {"abc", NP_EINVAL, 0},
           {"", NP_EINVAL, 0},
           {"-", NP_EINVAL, 0},
           {"1.5", NP_EINVAL, 0}};
  for (size_t i = 0; i < NP_ARRAY_LEN(c); i++) {
    int64_t v = -1;
    int rv = np_goflag_int(c[i].s, &v);
    ok(rv == c[i].rv && (rv != 0 || v == c[i].v), "int \"%s\" -> %d/%lld",
       c[i].s, rv, (long long)v);
  }
  uint64_t u = 0;
  ok(np_goflag_uint("-1", &u) == NP_EINVAL, "uint refuses a sign");
  ok(np_goflag_uint("18446744073709551615", &u) == 0 && u == UINT64_MAX,
     "uint max");
  ok(np_goflag_uint("18446744073709551616", &u) == NP_ELIMIT,
     "uint overflow is out of range");
}

static void test_duration(void) {
  static const struct {
    const char *s;
    int rv;
    int64_t ns;
  } c[] = {{"0", 0, 0},
           {"-0", 0, 0},
           {"300ms", 0, 300000000},
           {"1.5h", 0, 5400000000000LL},
           {"2h45m", 0, 9900000000000LL},
           {"10s", 0, 10000000000LL},
           {"30.0s", 0, 30000000000LL},
           {"1m30s", 0, 90000000000LL},
           {"-1.5h", 0, -5400000000000LL},
           {"1h2m3s4ms5us6ns", 0, 3723004005006LL},
           {"1\xc2\xb5s", 0, 1000},
           {"1\xce\xbcs", 0, 1000},
           {".5s", 0, 500000000},
           {"5.s", 0, 5000000000LL},
           {"1.000000001s", 0, 1000000001},
           {"9223372036854775807ns", 0, INT64_MAX},
           {"2562047h", 0, 2562047LL * 3600 * 1000000000LL},
           {"9223372036854775808ns", NP_ELIMIT, 0},
           {"2562048h", NP_ELIMIT, 0},
           {"", NP_EINVAL, 0},
           {"1", NP_EINVAL, 0},
           {"10", NP_EINVAL, 0},
           {"1x", NP_EINVAL, 0},
           {"s", NP_EINVAL, 0},
           {".s", NP_EINVAL, 0},
           {"1s2", NP_EINVAL, 0},
           {"1 s", NP_EINVAL, 0},
           {"-", NP_EINVAL, 0},
           {"1d", NP_EINVAL, 0}};
  for (size_t i = 0; i < NP_ARRAY_LEN(c); i++) {
    int64_t v = -1;
    int rv = np_goflag_duration(c[i].s, &v);
    ok(rv == c[i].rv && (rv != 0 || v == c[i].ns), "duration \"%s\" -> %d/%lld",
       c[i].s, rv, (long long)v);
  }
}

static void test_syntax(void) {
  np_p2pd_opts o;
  int rv;
  {
    const char *a[] = {"-q", NULL};
    ok(parse(&o, a) == 0 && o.quiet == 1, "-q");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"--q", NULL};
    ok(parse(&o, a) == 0 && o.quiet == 1, "--q");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-q=false", NULL};
    ok(parse(&o, a) == 0 && o.quiet == 0, "-q=false");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-q", "-q=F", NULL};
    ok(parse(&o, a) == 0 && o.quiet == 0, "the last of a repeated flag wins");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-idleTimeout", "30s", NULL};
    ok(parse(&o, a) == 0 && o.idle_timeout_ns == 30000000000LL,
       "-name value");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"--idleTimeout=1m", NULL};
    ok(parse(&o, a) == 0 && o.idle_timeout_ns == 60000000000LL,
       "--name=value");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-listen", "-q", NULL};
    np_conf *c = conf_of(&o, a);
    ok(c != NULL && o.quiet == 0 && strcmp(c->host.control, "-q") == 0,
       "-name value takes the next argument even if it looks like a flag");
    np_p2pd_opts_free(&o);
    np_conf_del(c);
  }
  {
    /* A bool never takes the next argument: "true" ends the flags. */
    const char *a[] = {"-q", "true", "-idleTimeout=5s", NULL};
    ok(parse(&o, a) == 0 && o.quiet == 1 && o.idle_timeout_ns == 0,
       "-bool value: the value is the first non-flag argument, parsing stops");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"--", "-q", NULL};
    ok(parse(&o, a) == 0 && o.quiet == 0, "-- ends the flags");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-", "-q", NULL};
    ok(parse(&o, a) == 0 && o.quiet == 0, "- is a non-flag argument");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-x", NULL};
    rv = parse(&o, a);
    ok(rv == NP_P2PD_USAGE &&
           strncmp(errtext, "flag provided but not defined: -x\n", 34) == 0 &&
           strstr(errtext, "Usage of natpeer-p2pd:\n") &&
           strstr(errtext, "  -idleTimeout duration\n"),
       "unknown flag: Go's message, then the usage");
  }
  {
    const char *a[] = {"--nope=1", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE &&
           strstr(errtext, "flag provided but not defined: -nope\n"),
       "unknown --flag=value");
  }
  {
    const char *a[] = {"-h", NULL};
    ok(parse(&o, a) == NP_P2PD_EXIT_OK && strstr(errtext, "Usage of"), "-h");
  }
  {
    const char *a[] = {"-help", NULL};
    ok(parse(&o, a) == NP_P2PD_EXIT_OK, "-help");
  }
  {
    const char *a[] = {"---q", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE &&
           strstr(errtext, "bad flag syntax: ---q"),
       "---q is bad syntax");
  }
  {
    const char *a[] = {"-=1", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE && strstr(errtext, "bad flag syntax"),
       "-=1 is bad syntax");
  }
  {
    const char *a[] = {"-idleTimeout", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE &&
           strstr(errtext, "flag needs an argument: -idleTimeout"),
       "a value flag at the end");
  }
  {
    const char *a[] = {"-idleTimeout=10", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE &&
           strstr(errtext,
                  "invalid value \"10\" for flag -idleTimeout: parse error"),
       "a duration without unit");
  }
  {
    const char *a[] = {"-q=yes", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE &&
           strstr(errtext, "invalid boolean value \"yes\" for -q: parse error"),
       "a bad bool");
  }
  {
    const char *a[] = {"-connLo=99999999999999999999", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE &&
           strstr(errtext, "for flag -connLo: value out of range"),
       "an int out of range");
  }
}

/* hivemind 0.9.9.post1's exact command line (p2pd-control §3.1). */
static void test_seed(void) {
  const char *a[] = {
      "-quic=1", "-tls=1", "-connManager=1", "-natPortMap=1", "-autonat=1",
      "-relay=1", "-relayHop=0", "-relayDiscovery=0", "-autoRelay=0",
      "-relayHopLimit=0", "-b=1",
      "-bootstrapPeers=/ip4/127.0.0.1/tcp/4001/p2p/" PEER
      ",/ip4/127.0.0.1/udp/4001/quic/p2p/" PEER,
      "-dht=1", "-hostAddrs=/ip4/0.0.0.0/tcp/31337,/ip4/0.0.0.0/udp/31337/quic",
      "-listen=/ip4/127.0.0.1/tcp/31338", NULL};
  np_p2pd_opts o;
  np_conf *c = conf_of(&o, a);
  ok(c != NULL, "the seed's command line is accepted");
  if (c == NULL)
    return;
  is_str(c->host.control, "/ip4/127.0.0.1/tcp/31338", "-listen -> control");
  ok(c->host.listen.n == 2 && has(&c->host.listen, "/ip4/0.0.0.0/tcp/31337") &&
         has(&c->host.listen, "/ip4/0.0.0.0/udp/31337/quic-v1"),
     "-hostAddrs -> listen, /quic as /quic-v1");
  ok(c->bootstrap.peers.n == 2 &&
         has(&c->bootstrap.peers,
             "/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" PEER),
     "-b -bootstrapPeers -> [bootstrap] peers, /quic as /quic-v1");
  is_int(count(errtext, "/quic (QUIC draft-29)"), 1,
         "one /quic warning line for the whole command line");
  is_int(c->dht.mode, NP_DHT_AUTO, "-dht -> [dht] mode = auto");
  is_int(c->nat.autonat_service, 1, "-autonat=1 -> autonat_service");
  is_int(c->relay.service, NP_TRI_OFF, "-relayHop=0 -> relay service off");
  is_int(c->relay.client, NP_TRI_OFF, "-autoRelay=0 -> relay client off");
  ok(c->relay.circuit_bytes == (uint64_t)1 << 32 &&
         c->relay.circuit_duration_ms == 1800000 &&
         c->relay.max_circuits == 16 && c->relay.max_reservations == 128,
     "-relay=1: hivemind's relay limits (4 GiB, 30 min, 16, 128)");
  ok(strstr(errtext, "-natPortMap: ignored") &&
         strstr(errtext, "-connManager/-connLo/-connHi/-connGrace: ignored"),
     "flags without natpeer meaning are named on stderr");
  ok(strstr(errtext, "relayHopLimit") == NULL,
     "v1 relay flags at their zero values raise no warning");
  is_int(c->plugins.autoload, 0, "no plugin scan in p2pd mode");
  np_conf_del(c);
  np_p2pd_opts_free(&o);
}

/* Current hivemind's P2P.create command line. */
static void test_current(void) {
  const char *a[] = {"-autoRelay=0", "-autonat=1", "-b=0", "-connManager=1",
                     "-idleTimeout=30s",
                     "-listen=/unix/tmp/hivemind-p2pd-abc.sock",
                     "-natPortMap=1", "-relay=1", "-relayHopLimit=0", "-tls=1",
                     "-persistentConnMaxMsgSize=8388608", "-dhtServer=1",
                     "-forceReachabilityPublic=1",
                     "-bootstrapPeers=/ip4/127.0.0.1/tcp/4001/p2p/" PEER,
                     "-hostAddrs=/ip4/127.0.0.1/tcp/0",
                     "-announceAddrs=/ip4/203.0.113.5/tcp/4001",
                     "-trustedRelays=/ip4/127.0.0.1/tcp/4002/p2p/" PEER, NULL};
  np_p2pd_opts o;
  np_conf *c = conf_of(&o, a);
  ok(c != NULL, "current hivemind's command line is accepted");
  if (c == NULL)
    return;
  ok(o.idle_timeout_ns == 30000000000LL, "-idleTimeout=30s");
  is_str(c->host.control, "/tmp/hivemind-p2pd-abc.sock",
         "-listen=/unix/...");
  is_int(c->limits.max_message, 8388608,
         "-persistentConnMaxMsgSize -> max_message");
  is_int(c->dht.mode, NP_DHT_SERVER, "-dhtServer -> server");
  is_int(c->nat.reachability, NP_REACH_PUBLIC, "-forceReachabilityPublic");
  is_int(c->bootstrap.peers.n, 0, "-bootstrapPeers without -b: not used");
  ok(strstr(errtext, "not used without -b") != NULL, "... and said so");
  ok(c->host.listen.n == 1 && has(&c->host.listen, "/ip4/127.0.0.1/tcp/0"),
     "-hostAddrs");
  ok(has(&c->host.announce, "/ip4/203.0.113.5/tcp/4001"), "-announceAddrs");
  ok(has(&c->relay.relays, "/ip4/127.0.0.1/tcp/4002/p2p/" PEER),
     "-trustedRelays -> [relay] relays");
  ok(strstr(errtext, "/quic (QUIC") == NULL, "no /quic warning without /quic");
  np_conf_del(c);
  np_p2pd_opts_free(&o);
}

static void test_families(void) {
  np_p2pd_opts o;
  np_conf *c;
  {
    const char *a[] = {NULL};
    c = conf_of(&o, a);
    ok(c && strcmp(c->host.control, "/tmp/p2pd.sock") == 0 &&
           c->dht.mode == NP_DHT_OFF && c->bootstrap.peers.n == 0 &&
           c->host.listen.n == 2 &&
           has(&c->host.listen, "/ip4/0.0.0.0/udp/0/quic-v1") &&
           o.id_file == NULL && o.quiet == 0 && errtext[0] == '\0' &&
           c->relay.client == NP_TRI_OFF && c->relay.service == NP_TRI_AUTO &&
           c->relay.accept_any_relay == 1,
       "no flags: p2pd's defaults (control /tmp/p2pd.sock, no DHT, port 0, "
       "no relay reservations, circuits through any relay)");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-relay", NULL};
    c = conf_of(&o, a);
    ok(c && c->relay.service == NP_TRI_ON,
       "-relay alone: relay service on (p2pd's relayService defaults to true)");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-dhtClient", NULL};
    c = conf_of(&o, a);
    ok(c && c->dht.mode == NP_DHT_CLIENT, "-dhtClient");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-dht=0", NULL};
    c = conf_of(&o, a);
    ok(c && c->dht.mode == NP_DHT_OFF, "-dht=0");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-noListenAddrs", NULL};
    c = conf_of(&o, a);
    ok(c && c->host.listen.n == 2 &&
           has(&c->host.listen, "/ip4/127.0.0.1/tcp/0") &&
           strstr(errtext, "-noListenAddrs: listening on 127.0.0.1"),
       "-noListenAddrs: loopback only, said");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-quic=false", NULL};
    c = conf_of(&o, a);
    ok(c && c->host.listen.n == 1 && has(&c->host.listen, "/ip4/0.0.0.0/tcp/0"),
       "-quic=false drops QUIC listen addresses");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-quic=0", "-hostAddrs=/ip4/0.0.0.0/udp/1/quic-v1", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE && strstr(errtext, "no listen address"),
       "-quic=0 with only QUIC addresses is an error");
  }
  {
    const char *a[] = {"-announceAddrs=/dns4/quic/udp/5/quic,/dns4/quic/tcp/5",
                       NULL};
    c = conf_of(&o, a);
    ok(c && has(&c->host.announce, "/dns4/quic/udp/5/quic-v1") &&
           has(&c->host.announce, "/dns4/quic/tcp/5"),
       "only the /quic protocol after /udp/PORT is rewritten, not a name");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-relay=false", NULL};
    c = conf_of(&o, a);
    ok(c && c->relay.service == NP_TRI_OFF && c->relay.client == NP_TRI_OFF &&
           c->relay.circuit_bytes == 128 * 1024,
       "-relay=false: service and client off, natpeer's limits");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-relayService", "-autoRelay", "-relayMaxCircuits=3",
                       "-relayMaxReservations=7", "-relayTimeLimit=1h",
                       "-relayDataLimit=1048576", "-relayBufferSize=10",
                       NULL};
    c = conf_of(&o, a);
    ok(c && c->relay.service == NP_TRI_ON && c->relay.client == NP_TRI_AUTO &&
           c->relay.max_circuits == 3 && c->relay.max_reservations == 7 &&
           c->relay.circuit_duration_ms == 3600000 &&
           c->relay.circuit_bytes == 1048576 &&
           strstr(errtext, "-relayBufferSize: ignored"),
       "relay service flags map onto [relay]");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-relayDataLimit=8589934592", NULL};
    c = conf_of(&o, a);
    ok(c == NULL && strstr(errtext, "[relay] circuit_bytes"),
       "-relayDataLimit above natpeer's 4G is refused, naming the key");
  }
  {
    const char *a[] = {"-autonat=false", "-forceReachabilityPrivate", NULL};
    c = conf_of(&o, a);
    ok(c && c->nat.autonat_service == 0 &&
           c->nat.reachability == NP_REACH_PRIVATE,
       "-autonat=false, -forceReachabilityPrivate");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-forceReachabilityPublic", "-forceReachabilityPrivate",
                       NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE, "both reachabilities: an error");
  }
  {
    const char *a[] = {"-pubsub", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE && strstr(errtext, "no pubsub"),
       "-pubsub is refused");
  }
  {
    const char *a[] = {"-pubsub=false", "-pubsubRouter=floodsub",
                       "-gossipsubHeartbeatInterval=1s", NULL};
    ok(parse(&o, a) == 0 && count(errtext, "no pubsub") == 1,
       "-pubsub*/-gossipsub* accepted with one warning");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-plaintext=true", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE, "-plaintext=true is refused");
  }
  {
    const char *a[] = {"-plaintext=false", "-noise=true", "-tls=true",
                       "-muxer=yamux", NULL};
    ok(parse(&o, a) == 0 && errtext[0] == '\0',
       "security and muxer flags natpeer matches: silent");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-tls=false", NULL};
    c = conf_of(&o, a);
    ok(c && c->host.security == NP_CONF_SEC_NOISE &&
           strstr(errtext, "-tls=false: TCP uses Noise only"),
       "-tls=false: [host] security = noise");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-noise=0", NULL};
    c = conf_of(&o, a);
    ok(c && c->host.security == NP_CONF_SEC_TLS, "-noise=0: [host] security = tls");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-tls=true", NULL};
    c = conf_of(&o, a);
    ok(c && c->host.security == (NP_CONF_SEC_NOISE | NP_CONF_SEC_TLS << 8),
       "-tls=true: Noise and TLS on TCP");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-noise=false", "-tls=false", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE, "no security protocol left: an error");
  }
  {
    const char *a[] = {"-muxer=mplex", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE && strstr(errtext, "yamux only"),
       "-muxer=mplex is refused");
  }
  {
    const char *a[] = {"-f", "/dev/null", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE && strstr(errtext, "-config"),
       "-f (JSON config) is refused, pointing to -config");
  }
  {
    const char *a[] = {"-i", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE, "-i is refused");
  }
  {
    const char *a[] = {"-metricsAddr=/ip4/127.0.0.1/tcp/9", "-pprof",
                       "-pprofPort=6060", "-echo", NULL};
    ok(parse(&o, a) == 0 && strstr(errtext, "-metricsAddr: ignored") &&
           strstr(errtext, "-pprof/-pprofPort: ignored") &&
           strstr(errtext, "-echo: ignored"),
       "metrics/pprof/echo accepted and named");
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-id=/nonexistent/key", NULL};
    ok(parse(&o, a) == NP_P2PD_USAGE && strstr(errtext, "-id /nonexistent/key"),
       "-id of a missing file is an error");
  }
  {
    const char *a[] = {"-id=test_p2pdflags.c", NULL};
    char *cwd = getcwd(NULL, 0);
    /* Any existing file passes the parser; np_identity reads it later. */
    int rv = chdir(SRCDIR "/tests/unit");
    ok(rv == 0 && parse(&o, a) == 0 && o.id_file && o.id_file[0] == '/' &&
           strstr(o.id_file, "/tests/unit/test_p2pdflags.c"),
       "-id: a relative path is made absolute");
    np_p2pd_opts_free(&o);
    if (cwd && chdir(cwd) != 0)
      perror("chdir");
    free(cwd);
  }
  {
    const char *a[] = {"-hostAddrs=/ip4/1.2.3.4/tcp/x", NULL};
    c = conf_of(&o, a);
    ok(c == NULL && strncmp(errtext, "command line: [host] listen:", 28) == 0,
       "a bad multiaddr is reported with its key");
  }
  {
    const char *a[] = {"-persistentConnMaxMsgSize=100", NULL};
    c = conf_of(&o, a);
    ok(c == NULL && strstr(errtext, "[limits] max_message"),
       "-persistentConnMaxMsgSize below 1K is refused");
  }
}

static void test_config_file(void) {
  char path[] = "/tmp/test_p2pdflags-XXXXXX";
  const char ini[] = "[dht]\nmode = client\n[limits]\ncall_timeout = 5s\n"
                     "[host]\nlisten = /ip4/127.0.0.1/tcp/0\n";
  int fd = mkstemp(path);
  np_p2pd_opts o;
  np_conf *c;
  ok(fd >= 0 && write(fd, ini, sizeof(ini) - 1) == (ssize_t)sizeof(ini) - 1,
     "wrote an INI");
  if (fd >= 0)
    close(fd);
  {
    const char *a[] = {"-config", path, NULL};
    c = conf_of(&o, a);
    ok(c && c->dht.mode == NP_DHT_CLIENT && c->limits.call_timeout_ms == 5000 &&
           c->host.listen.n == 1 &&
           strcmp(c->host.control, "/tmp/p2pd.sock") == 0 &&
           c->plugins.autoload == 0,
       "-config: the file's keys win over p2pd-mode defaults");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  {
    const char *a[] = {"-config", path, "-dhtServer", "-hostAddrs",
                       "/ip4/127.0.0.1/tcp/5,/ip4/127.0.0.1/tcp/6", NULL};
    c = conf_of(&o, a);
    ok(c && c->dht.mode == NP_DHT_SERVER && c->host.listen.n == 2 &&
           c->limits.call_timeout_ms == 5000,
       "-config: flags given win over the file");
    np_conf_del(c);
    np_p2pd_opts_free(&o);
  }
  unlink(path);
  {
    const char *a[] = {"-config", path, NULL};
    c = conf_of(&o, a);
    ok(c == NULL && strstr(errtext, path), "-config of a missing file");
  }
}

int main(void) {
  test_bool();
  test_int();
  test_duration();
  test_syntax();
  test_seed();
  test_current();
  test_families();
  test_config_file();
  return done_testing();
}
