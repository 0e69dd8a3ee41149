/* natpeer-cli: drive a running natpeer-host through its control socket
 * (p2pd control protocol + natpeer's requests >= 64). Synchronous and
 * bounded: every wait has a deadline. Exit codes: 0 ok, 1 remote error,
 * 2 usage, 3 unreachable or timeout. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

#include "np_cid.h"
#include "np_conf.h"
#include "np_crypto.h"
#include "np_err.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_peerid.h"
#include "proto/natpeer_ctl.pb-c.h"
#include "proto/p2pd.pb-c.h"

enum { EX_OK = 0, EX_REMOTE = 1, EX_USAGE = 2, EX_UNREACH = 3 };

static int opt_json, opt_hex, opt_verbose;
static double opt_timeout = 30.0;
static const char *prog = "natpeer-cli";

static void usage(FILE *f) {
  fprintf(f,
          "Usage: natpeer-cli [--config FILE | --control ADDR] [OPTION]... "
          "COMMAND [ARG]...\n"
          "Talk to a running natpeer-host through its control socket.\n"
          "\n"
          "Commands:\n"
          "  id                         this host's peer ID and addresses\n"
          "  peers                      connected peers (direction, transport, "
          "RTT,\n"
          "                             address, agent)\n"
          "  connect MULTIADDR          connect to "
          "/ip4/A/udp/P/quic-v1/p2p/PEER\n"
          "                             or /ip4/A/tcp/P/p2p/PEER\n"
          "  disconnect PEER            close the connection to PEER\n"
          "  ping PEER                  round-trip time to PEER\n"
          "  call PEER PROTOCOL [DATA|-]\n"
          "                             unary call of handler PROTOCOL on PEER "
          "(- reads\n"
          "                             the request from stdin); prints the "
          "response\n"
          "  protocols                  handlers registered on this host\n"
          "  nat                        reachability, external addresses, NAT "
          "mapping,\n"
          "                             relay reservations held and served, "
          "hole punches\n"
          "  dht findpeer PEER          the addresses of PEER, found through "
          "the DHT\n"
          "  dht closest KEY            the peers closest to KEY, one per "
          "line\n"
          "  dht get KEY                the value stored under KEY\n"
          "  dht put KEY VALUE|@FILE    store VALUE (text, or FILE's bytes) "
          "under KEY\n"
          "  dht provide CID            announce this host as a provider of "
          "CID\n"
          "  dht findprovs CID [-n N]   up to N (default 20) providers of "
          "CID: each\n"
          "                             peer ID, then its addresses "
          "indented\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE   read the control address from FILE's [host] "
          "control\n"
          "  -C, --control ADDR  unix socket path, /unix/PATH or "
          "/ip4/127.0.0.1/tcp/PORT\n"
          "  -j, --json          JSON output (one object)\n"
          "  -x, --hex           print call responses and DHT values as hex\n"
          "  -t, --timeout SECS  give up after SECS (default 30)\n"
          "  -v, --verbose       call: narrate on stderr how the peer is "
          "reached (lookup,\n"
          "                      relay, hole punch, direct); also after "
          "the command\n"
          "  -h, --help          this help\n"
          "\n"
          "DHT keys are text: /natpeer/NAME takes any value (the latest "
          "put wins);\n"
          "/pk/PEER stands for /pk/ and PEER's binary multihash, where "
          "public keys live.\n"
          "CIDs are Qm... (v0) or multibase (bafy..., v1). The host's "
          "[dht] must be on.\n"
          "\n"
          "Without --config or --control the address comes from " NP_SYSCONFDIR
          "/natpeer.ini\n"
          "if it exists, else the built-in default.\n"
          "Exit status: 0 ok, 1 remote error, 2 usage, 3 unreachable or "
          "timeout.\n");
}

static int fail(int code, const char *fmt, ...) NP_PRINTF(2, 3);
static int fail(int code, const char *fmt, ...) {
  va_list ap;
  if (opt_json) {
    char msg[1024], esc[1100];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    np_log_escape(esc, sizeof(esc), msg, strlen(msg));
    printf("{\"error\":\"%s\",\"exit\":%d}\n", esc, code);
  }
  fprintf(stderr, "%s: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return code;
}

/* ---- connection ------------------------------------------------------------ */

typedef struct conn {
  int fd;
  uint8_t buf[1 << 16];
  size_t len;
  double deadline;
  size_t max;
  const char *addr;
} conn;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int ctl_open(conn *c, const char *addr) {
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof(ss));
  memset(c, 0, sizeof(*c));
  c->addr = addr;
  c->max = 64 << 20;
  c->deadline = now() + opt_timeout;
  {
    /* A bare path is a unix socket; anything else must be a multiaddr. */
    uint8_t bin[NP_MADDR_MAX];
    char ma[1200];
    np_ssize n;
    if (strncmp(addr, "/unix/", 6) == 0 || strncmp(addr, "/ip4/", 5) == 0 ||
        strncmp(addr, "/ip6/", 5) == 0)
      snprintf(ma, sizeof(ma), "%.1100s", addr);
    else
      snprintf(ma, sizeof(ma), "/unix%s%.1100s", addr[0] == '/' ? "" : "/",
               addr);
    n = np_maddr_parse(ma, strlen(ma), bin, sizeof(bin));
    if (n < 0 || np_maddr_to_stream_sockaddr(bin, (size_t)n, &ss, &sl) != 0)
      return fail(EX_USAGE,
                  "control address %s: expected a unix socket path, "
                  "/unix/PATH or /ip4/127.0.0.1/tcp/PORT",
                  addr);
  }
  c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&ss, sl) != 0)
    return fail(EX_UNREACH,
                "cannot reach the host's control socket %s: %s (is "
                "natpeer-host running?)",
                addr, strerror(errno));
  return 0;
}

static int wait_fd(conn *c, short ev) {
  struct pollfd p = {c->fd, ev, 0};
  double left = c->deadline - now();
  int r;
  if (left <= 0)
    return -1;
  r = poll(&p, 1, (int)(left * 1000) + 1);
  return r > 0 ? 0 : -1;
}

static int send_all(conn *c, const uint8_t *d, size_t n) {
  while (n > 0) {
    ssize_t w;
    if (wait_fd(c, POLLOUT) != 0)
      return fail(EX_UNREACH, "timed out writing to %s", c->addr);
    w = send(c->fd, d, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return fail(EX_UNREACH, "write to %s failed: %s", c->addr,
                  strerror(errno));
    }
    d += w;
    n -= (size_t)w;
  }
  return 0;
}

static int send_msg(conn *c, const uint8_t *d, size_t n) {
  uint8_t pre[NP_VARINT_MAX];
  np_ssize p = np_lp_put_prefix(n, pre, sizeof(pre));
  int rv = send_all(c, pre, (size_t)p);
  return rv ? rv : send_all(c, d, n);
}

/* Read one delimited message; *msg is heap memory the caller frees. */
static int recv_msg(conn *c, uint8_t **msg, size_t *len) {
  for (;;) {
    const uint8_t *m;
    size_t ml;
    np_ssize n = np_lp_parse(c->buf, c->len, c->max, &m, &ml);
    if (n >= 0) {
      uint8_t *copy = malloc(ml ? ml : 1);
      if (copy == NULL)
        return fail(EX_REMOTE, "out of memory");
      memcpy(copy, m, ml);
      memmove(c->buf, c->buf + n, c->len - (size_t)n);
      c->len -= (size_t)n;
      *msg = copy;
      *len = ml;
      return 0;
    }
    if (n != NP_ETRUNC)
      return fail(EX_REMOTE, "bad answer from %s: %s", c->addr, np_strerror((int)n));
    if (c->len == sizeof(c->buf)) {
      /* A message larger than the buffer: read it in one piece. */
      uint64_t want;
      np_ssize h = np_varint_decode(c->buf, c->len, &want);
      uint8_t *big;
      size_t have;
      if (h < 0 || want > c->max)
        return fail(EX_REMOTE, "answer too large");
      big = malloc((size_t)want ? (size_t)want : 1);
      if (big == NULL)
        return fail(EX_REMOTE, "out of memory");
      have = c->len - (size_t)h;
      memcpy(big, c->buf + h, have);
      while (have < want) {
        ssize_t r;
        if (wait_fd(c, POLLIN) != 0) {
          free(big);
          return fail(EX_UNREACH, "timed out after %.0f s waiting for %s",
                      opt_timeout, c->addr);
        }
        r = recv(c->fd, big + have, (size_t)want - have, 0);
        if (r <= 0) {
          free(big);
          return fail(EX_UNREACH, "control connection closed");
        }
        have += (size_t)r;
      }
      c->len = 0;
      *msg = big;
      *len = (size_t)want;
      return 0;
    }
    if (wait_fd(c, POLLIN) != 0)
      return -2; /* timeout: the caller decides what it means */
    {
      ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
      if (r == 0)
        return fail(EX_UNREACH, "the host closed the control connection");
      if (r < 0) {
        if (errno == EINTR)
          continue;
        return fail(EX_UNREACH, "read from %s failed: %s", c->addr,
                    strerror(errno));
      }
      c->len += (size_t)r;
    }
  }
}

/* Send |req| and read a Response; ERROR answers are printed and mapped. */
static int roundtrip(conn *c, const Np__P2pd__Request *req,
                     Np__P2pd__Response **out) {
  size_t n = np__p2pd__request__get_packed_size(req);
  uint8_t *buf = malloc(n ? n : 1), *msg;
  size_t len;
  int rv;
  if (buf == NULL)
    return fail(EX_REMOTE, "out of memory");
  np__p2pd__request__pack(req, buf);
  rv = send_msg(c, buf, n);
  free(buf);
  if (rv)
    return rv;
  rv = recv_msg(c, &msg, &len);
  if (rv == -2)
    return fail(EX_UNREACH, "timed out after %.0f s", opt_timeout);
  if (rv)
    return rv;
  *out = np__p2pd__response__unpack(NULL, len, msg);
  free(msg);
  if (*out == NULL)
    return fail(EX_REMOTE, "malformed answer from the host");
  if ((*out)->type == NP__P2PD__RESPONSE__TYPE__ERROR) {
    const char *m = (*out)->error && (*out)->error->msg ? (*out)->error->msg
                                                        : "error";
    int code = strstr(m, "unreachable") || strstr(m, "timed out") ||
                       strstr(m, "closed")
                   ? EX_UNREACH
                   : EX_REMOTE;
    rv = fail(code, "%s", m);
    np__p2pd__response__free_unpacked(*out, NULL);
    *out = NULL;
    return rv;
  }
  return 0;
}

static int np_request(conn *c, int type, const Np__Ctl__NpRequest *nq,
                      Np__Ctl__NpResponse **out) {
  Np__P2pd__Request req = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *resp = NULL;
  uint8_t body[512];
  int rv;
  req.type = (Np__P2pd__Request__Type)type;
  if (nq) {
    req.has_natpeer = 1;
    req.natpeer.len = np__ctl__np_request__pack(nq, body);
    req.natpeer.data = body;
  }
  if ((rv = roundtrip(c, &req, &resp)) != 0)
    return rv;
  *out = np__ctl__np_response__unpack(
      NULL, resp->has_natpeer ? resp->natpeer.len : 0,
      resp->has_natpeer ? resp->natpeer.data : (const uint8_t *)"");
  np__p2pd__response__free_unpacked(resp, NULL);
  if (*out == NULL)
    return fail(EX_REMOTE, "malformed natpeer answer");
  return 0;
}

/* ---- output helpers ---------------------------------------------------------- */

static void json_str(const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      printf("\\%c", ch);
    else if (ch < 0x20 || ch >= 0x7f)
      printf("\\u00%c%c", hex[ch >> 4], hex[ch & 15]);
    else
      putchar(ch);
  }
  putchar('"');
}

static void peer_str(const ProtobufCBinaryData *b, char *out, size_t cap) {
  np_peerid id;
  if (np_peerid_from_bytes(&id, b->data, b->len) != 0 ||
      np_peerid_to_string(&id, out, cap) < 0)
    snprintf(out, cap, "(invalid peer ID)");
}

static void addr_str(const ProtobufCBinaryData *b, char *out, size_t cap) {
  if (np_maddr_to_string(b->data, b->len, out, cap) < 0)
    snprintf(out, cap, "(invalid address)");
}

static int parse_peer(const char *s, np_peerid *id) {
  if (np_peerid_parse(id, s, strlen(s)) != 0)
    return fail(EX_USAGE, "\"%s\" is not a peer ID (expected 12D3KooW..., "
                          "Qm... or bafz...)", s);
  return 0;
}

/* ---- commands -------------------------------------------------------------------- */

static int cmd_id(conn *c) {
  Np__P2pd__Request req = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *r;
  char id[NP_PEERID_STRMAX], a[1024];
  int rv;
  req.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
  if ((rv = roundtrip(c, &req, &r)) != 0)
    return rv;
  if (r->identify == NULL) {
    np__p2pd__response__free_unpacked(r, NULL);
    return fail(EX_REMOTE, "IDENTIFY answer without identify");
  }
  peer_str(&r->identify->id, id, sizeof(id));
  if (opt_json) {
    printf("{\"peer\":\"%s\",\"control\":", id);
    json_str(c->addr, strlen(c->addr));
    printf(",\"addrs\":[");
  } else {
    printf("peer    %s\ncontrol %s\n", id, c->addr);
  }
  for (size_t i = 0; i < r->identify->n_addrs; i++) {
    addr_str(&r->identify->addrs[i], a, sizeof(a));
    if (opt_json)
      printf("%s\"%s/p2p/%s\"", i ? "," : "", a, id);
    else
      printf("addr    %s/p2p/%s\n", a, id);
  }
  if (opt_json)
    printf("]}\n");
  else if (r->identify->n_addrs == 0)
    printf("addr    (none: not listening)\n");
  np__p2pd__response__free_unpacked(r, NULL);
  return 0;
}

static int cmd_peers(conn *c) {
  Np__Ctl__NpResponse *nr;
  char id[NP_PEERID_STRMAX], a[1024];
  int rv = np_request(c, NP__CTL__NP_TYPE__NP_CONNS, NULL, &nr);
  if (rv)
    return rv;
  if (opt_json)
    printf("{\"peers\":[");
  else if (nr->n_conns == 0)
    printf("no connected peers\n");
  else
    printf("%-52s %-4s %-7s %-5s %9s  %s\n", "PEER", "DIR", "PATH", "VIA",
           "RTT", "ADDRESS / AGENT");
  for (size_t i = 0; i < nr->n_conns; i++) {
    Np__Ctl__NpConn *k = nr->conns[i];
    peer_str(&k->peer, id, sizeof(id));
    addr_str(&k->addr, a, sizeof(a));
    if (opt_json) {
      printf("%s{\"peer\":\"%s\",\"addr\":", i ? "," : "", id);
      json_str(a, strlen(a));
      printf(",\"direction\":\"%s\"", k->outbound ? "out" : "in");
      if (k->transport)
        printf(",\"transport\":\"%s\"", k->transport);
      printf(",\"limited\":%s", k->has_limited && k->limited ? "true" : "false");
      printf(",\"path\":\"%s\"",
             k->has_limited && k->limited ? "relayed" : "direct");
      if (k->has_rtt_us)
        printf(",\"rtt_ms\":%.3f", (double)k->rtt_us / 1000.0);
      if (k->agent) {
        printf(",\"agent\":");
        json_str(k->agent, strlen(k->agent));
      }
      printf("}");
    } else {
      char rtt[32] = "-";
      if (k->has_rtt_us)
        snprintf(rtt, sizeof(rtt), "%.2f ms", (double)k->rtt_us / 1000.0);
      printf("%-52s %-4s %-7s %-5s %9s  %s%s%s\n", id,
             k->outbound ? "out" : "in",
             k->has_limited && k->limited ? "relayed" : "direct",
             k->transport ? k->transport : "?", rtt, a, k->agent ? "  " : "",
             k->agent ? k->agent : "");
    }
  }
  if (opt_json)
    printf("]}\n");
  np__ctl__np_response__free_unpacked(nr, NULL);
  return 0;
}

/* "in 58m", "2h ago": |expire_s| against now. */
static void until_str(uint64_t expire_s, char *out, size_t cap) {
  double d = (double)expire_s - (double)time(NULL);
  const char *pre = d >= 0 ? "in " : "", *post = d >= 0 ? "" : " ago";
  if (d < 0)
    d = -d;
  if (d < 120)
    snprintf(out, cap, "%s%.0fs%s", pre, d, post);
  else if (d < 7200)
    snprintf(out, cap, "%s%.0fm%s", pre, d / 60, post);
  else
    snprintf(out, cap, "%s%.1fh%s", pre, d / 3600, post);
}

static void json_addrs(const char *key, ProtobufCBinaryData *v, size_t n) {
  char a[1024];
  printf(",\"%s\":[", key);
  for (size_t i = 0; i < n; i++) {
    addr_str(&v[i], a, sizeof(a));
    if (i)
      putchar(',');
    json_str(a, strlen(a));
  }
  putchar(']');
}

static void json_resv(const char *key, Np__Ctl__NpReservation **v, size_t n) {
  char id[NP_PEERID_STRMAX];
  printf(",\"%s\":[", key);
  for (size_t i = 0; i < n; i++) {
    peer_str(&v[i]->peer, id, sizeof(id));
    printf("%s{\"peer\":\"%s\"", i ? "," : "", id);
    if (v[i]->has_expire_s)
      printf(",\"expire_s\":%llu", (unsigned long long)v[i]->expire_s);
    if (v[i]->has_limit_duration_s)
      printf(",\"limit_duration_s\":%u", v[i]->limit_duration_s);
    if (v[i]->has_limit_bytes)
      printf(",\"limit_bytes\":%llu", (unsigned long long)v[i]->limit_bytes);
    if (v[i]->state) {
      printf(",\"state\":");
      json_str(v[i]->state, strlen(v[i]->state));
    }
    json_addrs("addrs", v[i]->addrs, v[i]->n_addrs);
    putchar('}');
  }
  putchar(']');
}

static void nat_json(const Np__Ctl__NpNat *n) {
  char id[NP_PEERID_STRMAX], a[1024];
  printf("{\"reachability\":\"%s\"", n->reachability);
  if (n->reachability_source)
    printf(",\"reachability_source\":\"%s\"", n->reachability_source);
  if (n->has_confidence)
    printf(",\"confidence\":%d", n->confidence);
  json_addrs("confirmed", n->confirmed, n->n_confirmed);
  json_addrs("observed", n->observed, n->n_observed);
  if (n->mapping_udp)
    printf(",\"mapping_udp\":\"%s\"", n->mapping_udp);
  if (n->mapping_tcp)
    printf(",\"mapping_tcp\":\"%s\"", n->mapping_tcp);
  json_resv("held", n->held, n->n_held);
  json_resv("served", n->served, n->n_served);
  printf(",\"relay_service\":%s", n->relay_service ? "true" : "false");
  if (n->has_circuits)
    printf(",\"circuits\":%u", n->circuits);
  if (n->has_circuits_total)
    printf(",\"circuits_total\":%llu",
           (unsigned long long)n->circuits_total);
  if (n->has_relayed_bytes)
    printf(",\"relayed_bytes\":%llu", (unsigned long long)n->relayed_bytes);
  if (n->has_reservations_refused)
    printf(",\"reservations_refused\":%llu",
           (unsigned long long)n->reservations_refused);
  printf(",\"autonat_service\":%s", n->autonat_service ? "true" : "false");
  if (n->has_autonat_served)
    printf(",\"autonat_served\":%llu", (unsigned long long)n->autonat_served);
  if (n->has_autonat_refused)
    printf(",\"autonat_refused\":%llu",
           (unsigned long long)n->autonat_refused);
  printf(",\"punches\":[");
  for (size_t i = 0; i < n->n_punches; i++) {
    const Np__Ctl__NpPunch *p = n->punches[i];
    peer_str(&p->peer, id, sizeof(id));
    printf("%s{\"peer\":\"%s\",\"state\":", i ? "," : "", id);
    json_str(p->state, strlen(p->state));
    if (p->role)
      printf(",\"role\":\"%s\"", p->role);
    if (p->has_attempts)
      printf(",\"attempts\":%u", p->attempts);
    if (p->has_ms)
      printf(",\"ms\":%llu", (unsigned long long)p->ms);
    if (p->has_addr) {
      addr_str(&p->addr, a, sizeof(a));
      printf(",\"addr\":");
      json_str(a, strlen(a));
    }
    if (p->error) {
      printf(",\"error\":");
      json_str(p->error, strlen(p->error));
    }
    putchar('}');
  }
  printf("]}\n");
}

static void nat_text(const Np__Ctl__NpNat *n) {
  char id[NP_PEERID_STRMAX], a[1024], t[32];
  printf("reachability    %s", n->reachability);
  if (n->reachability_source && strcmp(n->reachability_source, "none") != 0)
    printf(" (%s%s", n->reachability_source, n->has_confidence ? "" : ")");
  if (n->has_confidence)
    printf("%sconfidence %d)",
           n->reachability_source &&
                   strcmp(n->reachability_source, "none") != 0
               ? ", "
               : " (",
           n->confidence);
  putchar('\n');
  if (n->n_confirmed == 0)
    printf("external        none confirmed yet (peers must report the same "
           "address)\n");
  for (size_t i = 0; i < n->n_confirmed; i++) {
    addr_str(&n->confirmed[i], a, sizeof(a));
    printf("%s%s  confirmed\n", i ? "                " : "external        ",
           a);
  }
  printf("nat mapping     udp %s, tcp %s\n",
         n->mapping_udp ? n->mapping_udp : "unknown",
         n->mapping_tcp ? n->mapping_tcp : "unknown");
  printf("relays held     %zu\n", n->n_held);
  for (size_t i = 0; i < n->n_held; i++) {
    const Np__Ctl__NpReservation *r = n->held[i];
    peer_str(&r->peer, id, sizeof(id));
    until_str(r->expire_s, t, sizeof(t));
    printf("  %s  %s, expires %s", id, r->state ? r->state : "ok", t);
    if (r->has_limit_duration_s || r->has_limit_bytes)
      printf(", limit %us/%llu bytes", r->limit_duration_s,
             (unsigned long long)r->limit_bytes);
    putchar('\n');
    for (size_t k = 0; k < r->n_addrs; k++) {
      addr_str(&r->addrs[k], a, sizeof(a));
      printf("      %s\n", a);
    }
  }
  if (!n->relay_service) {
    printf("relay service   off\n");
  } else {
    printf("relay service   on: %zu reservations, %u circuits now, %llu in "
           "all, %llu bytes relayed, %llu reservations refused\n",
           n->n_served, n->circuits, (unsigned long long)n->circuits_total,
           (unsigned long long)n->relayed_bytes,
           (unsigned long long)n->reservations_refused);
    for (size_t i = 0; i < n->n_served; i++) {
      peer_str(&n->served[i]->peer, id, sizeof(id));
      until_str(n->served[i]->expire_s, t, sizeof(t));
      printf("  %s  expires %s\n", id, t);
    }
  }
  if (n->autonat_service)
    printf("autonat service on: %llu dial-backs, %llu refused\n",
           (unsigned long long)n->autonat_served,
           (unsigned long long)n->autonat_refused);
  else
    printf("autonat service off\n");
  printf("hole punches    %zu\n", n->n_punches);
  for (size_t i = 0; i < n->n_punches; i++) {
    const Np__Ctl__NpPunch *p = n->punches[i];
    peer_str(&p->peer, id, sizeof(id));
    printf("  %s  %s", id, p->state);
    if (p->role)
      printf(" as %s", p->role);
    if (p->has_attempts)
      printf(", %u attempt%s", p->attempts, p->attempts == 1 ? "" : "s");
    if (p->has_ms)
      printf(", %llu ms", (unsigned long long)p->ms);
    if (p->has_addr) {
      addr_str(&p->addr, a, sizeof(a));
      printf(", via %s", a);
    }
    if (p->error)
      printf(": %s", p->error);
    putchar('\n');
  }
}

static int cmd_nat(conn *c) {
  Np__Ctl__NpResponse *nr;
  int rv = np_request(c, NP__CTL__NP_TYPE__NP_NAT, NULL, &nr);
  if (rv)
    return rv;
  if (nr->nat == NULL) {
    np__ctl__np_response__free_unpacked(nr, NULL);
    return fail(EX_REMOTE, "the host sent no NAT status (an older host?)");
  }
  if (opt_json)
    nat_json(nr->nat);
  else
    nat_text(nr->nat);
  np__ctl__np_response__free_unpacked(nr, NULL);
  return 0;
}

static int cmd_connect(conn *c, const char *ma) {
  Np__P2pd__Request req = NP__P2PD__REQUEST__INIT;
  Np__P2pd__ConnectRequest cr = NP__P2PD__CONNECT_REQUEST__INIT;
  Np__P2pd__Response *r;
  uint8_t bin[NP_MADDR_MAX];
  ProtobufCBinaryData addr;
  np_peerid id;
  char ids[NP_PEERID_STRMAX];
  np_ssize n = np_maddr_parse(ma, strlen(ma), bin, sizeof(bin));
  int rv;
  if (n < 0)
    return fail(EX_USAGE, "\"%s\" is not a multiaddr: %s", ma,
                np_strerror((int)n));
  if (np_maddr_get_p2p(bin, (size_t)n, &id) != 0)
    return fail(EX_USAGE, "\"%s\" has no /p2p/PEER part", ma);
  addr.data = bin;
  addr.len = (size_t)n;
  cr.peer.data = id.bytes;
  cr.peer.len = id.len;
  cr.n_addrs = 1;
  cr.addrs = &addr;
  cr.has_timeout = 1;
  cr.timeout = (int64_t)(opt_timeout + 0.5);
  req.type = NP__P2PD__REQUEST__TYPE__CONNECT;
  req.connect = &cr;
  if ((rv = roundtrip(c, &req, &r)) != 0)
    return rv;
  np__p2pd__response__free_unpacked(r, NULL);
  np_peerid_to_string(&id, ids, sizeof(ids));
  if (opt_json)
    printf("{\"connected\":\"%s\"}\n", ids);
  else
    printf("connected to %s\n", ids);
  return 0;
}

static int cmd_disconnect(conn *c, const char *peer) {
  Np__P2pd__Request req = NP__P2PD__REQUEST__INIT;
  Np__P2pd__DisconnectRequest d = NP__P2PD__DISCONNECT_REQUEST__INIT;
  Np__P2pd__Response *r;
  np_peerid id;
  int rv;
  if ((rv = parse_peer(peer, &id)) != 0)
    return rv;
  d.peer.data = id.bytes;
  d.peer.len = id.len;
  req.type = NP__P2PD__REQUEST__TYPE__DISCONNECT;
  req.disconnect = &d;
  if ((rv = roundtrip(c, &req, &r)) != 0)
    return rv;
  np__p2pd__response__free_unpacked(r, NULL);
  if (opt_json)
    printf("{\"disconnected\":\"%s\"}\n", peer);
  else
    printf("disconnected %s\n", peer);
  return 0;
}

static int cmd_ping(conn *c, const char *peer) {
  Np__Ctl__NpRequest nq = NP__CTL__NP_REQUEST__INIT;
  Np__Ctl__NpResponse *nr;
  np_peerid id;
  int rv;
  if ((rv = parse_peer(peer, &id)) != 0)
    return rv;
  nq.has_peer = 1;
  nq.peer.data = id.bytes;
  nq.peer.len = id.len;
  nq.has_timeout_ms = 1;
  nq.timeout_ms = (int64_t)(opt_timeout * 1000);
  if ((rv = np_request(c, NP__CTL__NP_TYPE__NP_PING, &nq, &nr)) != 0)
    return rv;
  if (nr->n_rtt_us == 0) {
    np__ctl__np_response__free_unpacked(nr, NULL);
    return fail(EX_REMOTE, "ping answer without RTT");
  }
  if (opt_json)
    printf("{\"peer\":\"%s\",\"rtt_ms\":%.3f}\n", peer,
           (double)nr->rtt_us[0] / 1000.0);
  else
    printf("%s rtt=%.3f ms\n", peer, (double)nr->rtt_us[0] / 1000.0);
  np__ctl__np_response__free_unpacked(nr, NULL);
  return 0;
}

static int cmd_protocols(conn *c) {
  Np__Ctl__NpResponse *nr;
  int rv = np_request(c, NP__CTL__NP_TYPE__NP_PROTOCOLS, NULL, &nr);
  if (rv)
    return rv;
  if (opt_json)
    printf("{\"protocols\":[");
  for (size_t i = 0; i < nr->n_protocols; i++) {
    Np__Ctl__NpProtocol *p = nr->protocols[i];
    if (opt_json) {
      printf("%s{\"name\":", i ? "," : "");
      json_str(p->name, strlen(p->name));
      printf(",\"kind\":\"%s\",\"owner\":", p->kind);
      json_str(p->owner, strlen(p->owner));
      printf("}");
    } else {
      printf("%-40s %-7s %s\n", p->name, p->kind, p->owner);
    }
  }
  if (opt_json)
    printf("]}\n");
  np__ctl__np_response__free_unpacked(nr, NULL);
  return 0;
}

static void print_bytes(const uint8_t *d, size_t n, const char *key) {
  static const char hex[] = "0123456789abcdef";
  if (opt_json) {
    printf("\"%s\":", key);
    if (opt_hex) {
      putchar('"');
      for (size_t i = 0; i < n; i++)
        printf("%c%c", hex[d[i] >> 4], hex[d[i] & 15]);
      putchar('"');
    } else {
      json_str((const char *)d, n);
    }
  } else if (opt_hex) {
    for (size_t i = 0; i < n; i++)
      printf("%c%c", hex[d[i] >> 4], hex[d[i] & 15]);
    putchar('\n');
  } else {
    fwrite(d, 1, n, stdout);
    if (n == 0 || d[n - 1] != '\n')
      putchar('\n');
  }
}

static uint8_t *read_stdin(size_t *len, size_t max) {
  size_t cap = 65536, n = 0;
  uint8_t *b = malloc(cap);
  while (b) {
    size_t r;
    if (n == cap) {
      uint8_t *nb;
      if (cap > max)
        break;
      nb = realloc(b, cap * 2);
      if (nb == NULL)
        break;
      b = nb;
      cap *= 2;
    }
    r = fread(b + n, 1, cap - n, stdin);
    n += r;
    if (r == 0)
      break;
  }
  *len = n;
  return b;
}

/* ---- call -v: what the host does to reach the peer ----------------------
 * A child process polls the host's connections to the peer on a control
 * connection of its own and narrates each change on stderr (stdout stays
 * the reply): not connected (a DHT lookup), a relayed connection, a direct
 * one replacing it (the hole punch). The parent names the path the reply
 * came over. */

/* The peer's best connection: 2 direct, 1 relayed, 0 none; |addr| and
 * |via| (transport) of it. -1 when the host cannot be asked. */
static int peer_path(const char *ctl, const np_peerid *id, char *addr,
                     size_t cap, char *via, size_t vcap) {
  conn *c = malloc(sizeof(*c));
  Np__Ctl__NpResponse *nr = NULL;
  int best = 0, rv;
  if (c == NULL)
    return -1;
  rv = ctl_open(c, ctl);
  if (rv == 0)
    rv = np_request(c, NP__CTL__NP_TYPE__NP_CONNS, NULL, &nr);
  if (c->fd > 0)
    close(c->fd);
  free(c);
  if (rv != 0)
    return -1;
  for (size_t i = 0; i < nr->n_conns; i++) {
    Np__Ctl__NpConn *k = nr->conns[i];
    int path = k->has_limited && k->limited ? 1 : 2;
    if (k->peer.len != id->len || memcmp(k->peer.data, id->bytes, id->len) ||
        path <= best)
      continue;
    best = path;
    addr_str(&k->addr, addr, cap);
    snprintf(via, vcap, "%s", k->transport ? k->transport : "?");
  }
  np__ctl__np_response__free_unpacked(nr, NULL);
  return best;
}

static void narrate(const char *ctl, const np_peerid *id, const char *peer,
                    double t0) {
  char addr[1024], via[16];
  int last = -2;
  double end = t0 + opt_timeout;
  while (now() < end) {
    int p = peer_path(ctl, id, addr, sizeof(addr), via, sizeof(via));
    double ms = (now() - t0) * 1000.0;
    if (p != last) {
      if (p == 0 && last == -2)
        fprintf(stderr, "find:   not connected to %s; looking it up (known "
                        "addresses, then the DHT)\n", peer);
      else if (p == 0)
        fprintf(stderr, "lost:   no connection to %s (%.0f ms)\n", peer, ms);
      else if (p == 1)
        fprintf(stderr, "relay:  reached %s through a relay: %s, %s, limited "
                        "(%.0f ms)\n", peer, addr, via, ms);
      else if (p == 2 && last == 1)
        fprintf(stderr, "punch:  direct %s connection to %s at %s replaces "
                        "the relayed one (%.0f ms)\n", via, peer, addr, ms);
      else if (p == 2 && last == -2)
        fprintf(stderr, "direct: already connected to %s at %s over %s\n",
                peer, addr, via);
      else if (p == 2)
        fprintf(stderr, "direct: connected to %s at %s over %s (%.0f ms)\n",
                peer, addr, via, ms);
      last = p;
    }
    if (p == 2)
      return; /* nothing better can come */
    usleep(50 * 1000);
  }
}

static pid_t narrator_start(const char *ctl, const np_peerid *id,
                            const char *peer, double t0) {
  pid_t pid;
  fflush(stdout);
  fflush(stderr);
  if ((pid = fork()) != 0)
    return pid; /* the parent (or -1: no narration) */
  narrate(ctl, id, peer, t0);
  fflush(stderr);
  _exit(0);
}

static void narrator_stop(pid_t pid, const char *ctl, const np_peerid *id,
                          double t0, int ok) {
  char addr[1024], via[16];
  int p;
  if (pid > 0) {
    /* Let it report a change it is about to see, then stop it. */
    usleep(60 * 1000);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
  }
  p = peer_path(ctl, id, addr, sizeof(addr), via, sizeof(via));
  fprintf(stderr, "%s  %.0f ms; the connection now: %s%s%s%s\n",
          ok ? "reply: " : "failed:", (now() - t0) * 1000.0,
          p == 2 ? "direct " : p == 1 ? "relayed " : "none",
          p > 0 ? via : "", p > 0 ? " " : "", p > 0 ? addr : "");
}

/* hivemind's pattern: upgrade, CallUnary with a uuid4 callId, Cancel on
 * timeout. */
static int cmd_call(conn *c, const char *peer, const char *proto,
                    const char *data) {
  Np__P2pd__Request up = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *r;
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryRequest cu = NP__P2PD__CALL_UNARY_REQUEST__INIT;
  uint8_t callid[16], *req = NULL, *buf = NULL, *msg = NULL;
  size_t reqlen = 0, n, mlen;
  np_peerid id;
  int rv;
  pid_t narrator = -1;
  double t0 = now();
  if ((rv = parse_peer(peer, &id)) != 0)
    return rv;
  if (strcmp(data, "-") == 0) {
    req = read_stdin(&reqlen, (size_t)1 << 30);
    if (req == NULL)
      return fail(EX_REMOTE, "cannot read stdin");
  } else {
    reqlen = strlen(data);
    req = malloc(reqlen ? reqlen : 1);
    if (req == NULL)
      return fail(EX_REMOTE, "out of memory");
    memcpy(req, data, reqlen);
  }
  up.type = NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE;
  if ((rv = roundtrip(c, &up, &r)) != 0)
    goto out;
  np__p2pd__response__free_unpacked(r, NULL);
  np_crypto_random(callid, sizeof(callid));
  callid[6] = (uint8_t)((callid[6] & 0x0f) | 0x40); /* uuid4 */
  callid[8] = (uint8_t)((callid[8] & 0x3f) | 0x80);
  pr.callid.data = callid;
  pr.callid.len = 16;
  cu.peer.data = id.bytes;
  cu.peer.len = id.len;
  cu.proto = (char *)proto;
  cu.data.data = req;
  cu.data.len = reqlen;
  pr.message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY;
  pr.callunary = &cu;
  n = np__p2pd__persistent_connection_request__get_packed_size(&pr);
  if ((buf = malloc(n)) == NULL) {
    rv = fail(EX_REMOTE, "out of memory");
    goto out;
  }
  np__p2pd__persistent_connection_request__pack(&pr, buf);
  if (opt_verbose) {
    t0 = now();
    narrator = narrator_start(c->addr, &id, peer, t0);
  }
  if ((rv = send_msg(c, buf, n)) != 0)
    goto out;
  for (;;) {
    Np__P2pd__PersistentConnectionResponse *pc;
    rv = recv_msg(c, &msg, &mlen);
    if (rv == -2) {
      /* Give up: tell the host, which closes the stream to the peer. */
      Np__P2pd__PersistentConnectionRequest cr =
          NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
      Np__P2pd__Cancel cn = NP__P2PD__CANCEL__INIT;
      uint8_t cb[64];
      cr.callid.data = callid;
      cr.callid.len = 16;
      cr.message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CANCEL;
      cr.cancel = &cn;
      c->deadline = now() + 1.0;
      send_msg(c, cb, np__p2pd__persistent_connection_request__pack(&cr, cb));
      rv = fail(EX_UNREACH, "call %s on %s timed out after %.0f s", proto,
                peer, opt_timeout);
      goto out;
    }
    if (rv)
      goto out;
    pc = np__p2pd__persistent_connection_response__unpack(NULL, mlen, msg);
    free(msg);
    msg = NULL;
    if (pc == NULL) {
      rv = fail(EX_REMOTE, "malformed answer from the host");
      goto out;
    }
    if (pc->callid.len != 16 || memcmp(pc->callid.data, callid, 16) != 0) {
      np__p2pd__persistent_connection_response__free_unpacked(pc, NULL);
      continue;
    }
    if (opt_verbose) { /* the story first, then the answer */
      int ok = pc->message_case ==
                   NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CALL_UNARY_RESPONSE &&
               !pc->callunaryresponse->has_error;
      narrator_stop(narrator, c->addr, &id, t0, ok);
      opt_verbose = 0;
    }
    if (pc->message_case ==
        NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CALL_UNARY_RESPONSE) {
      Np__P2pd__CallUnaryResponse *u = pc->callunaryresponse;
      if (u->has_error) {
        rv = fail(EX_REMOTE, "remote handler %s on %s failed: %.*s", proto,
                  peer, (int)u->error.len, (const char *)u->error.data);
      } else {
        if (opt_json) {
          printf("{\"peer\":\"%s\",\"protocol\":", peer);
          json_str(proto, strlen(proto));
          putchar(',');
        }
        print_bytes(u->has_response ? u->response.data : (const uint8_t *)"",
                    u->has_response ? u->response.len : 0, "response");
        if (opt_json)
          printf("}\n");
        rv = 0;
      }
    } else if (pc->message_case ==
               NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_DAEMON_ERROR) {
      const char *m = pc->daemonerror->message ? pc->daemonerror->message
                                               : "error";
      int code = strstr(m, "unreachable") || strstr(m, "timed out") ||
                         strstr(m, "connection or stream closed")
                     ? EX_UNREACH
                     : EX_REMOTE;
      rv = fail(code, "call %s on %s: %s", proto, peer, m);
    } else {
      rv = fail(EX_REMOTE, "call %s on %s was canceled", proto, peer);
    }
    np__p2pd__persistent_connection_response__free_unpacked(pc, NULL);
    break;
  }
out:
  if (opt_verbose)
    narrator_stop(narrator, c->addr, &id, t0, rv == 0);
  free(msg);
  free(buf);
  free(req);
  return rv;
}

/* ---- dht --------------------------------------------------------------------------- */

#define DHT_VALUE_FILE_MAX (1u << 20) /* @file values: the DHT keeps 16 KiB */

/* KEY as typed: the bytes of the text, except /pk/PEER, whose peer ID
 * becomes its binary multihash (the form the /pk/ namespace stores). */
static int dht_parse_key(const char *s, uint8_t *out, size_t *len) {
  size_t n = strlen(s);
  np_peerid id;
  if (strncmp(s, "/pk/", 4) == 0 && np_peerid_parse(&id, s + 4, n - 4) == 0) {
    memcpy(out, "/pk/", 4);
    memcpy(out + 4, id.bytes, id.len);
    *len = 4 + id.len;
    return 0;
  }
  if (n == 0 || n > 256)
    return fail(EX_USAGE, "a DHT key is 1 to 256 bytes (\"%s\")", s);
  memcpy(out, s, n);
  *len = n;
  return 0;
}

static int dht_parse_cid(const char *s, uint8_t *out, size_t cap,
                         size_t *len) {
  np_ssize n = np_cid_parse(s, strlen(s), out, cap);
  if (n < 0)
    return fail(EX_USAGE, "\"%s\" is not a CID (expected Qm... or bafy...)",
                s);
  *len = (size_t)n;
  return 0;
}

/* Send a DHT request; *out is the first Response (OK). */
static int dht_roundtrip(conn *c, Np__P2pd__DHTRequest *d,
                         Np__P2pd__Response **out) {
  Np__P2pd__Request req = NP__P2PD__REQUEST__INIT;
  /* The host gives up when we do (whole seconds, rounded up). */
  d->has_timeout = 1;
  d->timeout = (int64_t)opt_timeout + (opt_timeout > (int64_t)opt_timeout);
  req.type = NP__P2PD__REQUEST__TYPE__DHT;
  req.dht = d;
  return roundtrip(c, &req, out);
}

/* The items of a stream after OK{BEGIN}, each given to |fn|, until END. */
static int dht_stream(conn *c, Np__P2pd__Response *first,
                      void (*fn)(const Np__P2pd__DHTResponse *, size_t i)) {
  size_t i = 0;
  int begun = first->dht && first->dht->type == NP__P2PD__DHTRESPONSE__TYPE__BEGIN;
  np__p2pd__response__free_unpacked(first, NULL);
  if (!begun)
    return fail(EX_REMOTE, "the host did not begin a stream");
  for (;;) {
    uint8_t *msg;
    size_t len;
    Np__P2pd__DHTResponse *d;
    int rv = recv_msg(c, &msg, &len);
    if (rv == -2)
      return fail(EX_UNREACH, "timed out after %.0f s", opt_timeout);
    if (rv)
      return rv;
    d = np__p2pd__dhtresponse__unpack(NULL, len, msg);
    free(msg);
    if (d == NULL)
      return fail(EX_REMOTE, "malformed answer from the host");
    if (d->type == NP__P2PD__DHTRESPONSE__TYPE__END) {
      np__p2pd__dhtresponse__free_unpacked(d, NULL);
      return 0;
    }
    if (d->type == NP__P2PD__DHTRESPONSE__TYPE__VALUE)
      fn(d, i++);
    np__p2pd__dhtresponse__free_unpacked(d, NULL);
  }
}

static void print_peerinfo(const Np__P2pd__PeerInfo *p, int first) {
  char id[NP_PEERID_STRMAX], a[1024];
  peer_str(&p->id, id, sizeof(id));
  if (opt_json)
    printf("%s{\"peer\":\"%s\",\"addrs\":[", first ? "" : ",", id);
  else
    printf("%s\n", id);
  for (size_t i = 0; i < p->n_addrs; i++) {
    addr_str(&p->addrs[i], a, sizeof(a));
    if (opt_json) {
      printf("%s", i ? "," : "");
      json_str(a, strlen(a));
    } else {
      printf("  %s\n", a);
    }
  }
  if (opt_json)
    printf("]}");
}

static void on_closest(const Np__P2pd__DHTResponse *d, size_t i) {
  char id[NP_PEERID_STRMAX];
  if (!d->has_value)
    return;
  peer_str(&d->value, id, sizeof(id));
  if (opt_json)
    printf("%s\"%s\"", i ? "," : "", id);
  else
    printf("%s\n", id);
}

static void on_provider(const Np__P2pd__DHTResponse *d, size_t i) {
  if (d->peer)
    print_peerinfo(d->peer, i == 0);
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *b = malloc(DHT_VALUE_FILE_MAX + 1);
  size_t n = 0;
  if (f == NULL || b == NULL) {
    if (f)
      fclose(f);
    free(b);
    return NULL;
  }
  n = fread(b, 1, DHT_VALUE_FILE_MAX + 1, f);
  fclose(f);
  *len = n;
  return b;
}

static int cmd_dht(conn *c, int nargs, char **args) {
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  Np__P2pd__Response *r;
  const char *sub = args[0];
  uint8_t key[300], cid[160];
  size_t klen, cidlen;
  np_peerid id;
  int rv, want = nargs - 1;
  if (strcmp(sub, "findpeer") == 0 && want == 1) {
    if ((rv = parse_peer(args[1], &id)) != 0)
      return rv;
    d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PEER;
    d.has_peer = 1;
    d.peer.data = id.bytes;
    d.peer.len = id.len;
    if ((rv = dht_roundtrip(c, &d, &r)) != 0)
      return rv;
    if (r->dht == NULL || r->dht->peer == NULL) {
      np__p2pd__response__free_unpacked(r, NULL);
      return fail(EX_REMOTE, "FIND_PEER answer without a peer");
    }
    print_peerinfo(r->dht->peer, 1);
    if (opt_json)
      putchar('\n');
    np__p2pd__response__free_unpacked(r, NULL);
    return 0;
  }
  if (strcmp(sub, "closest") == 0 && want == 1) {
    if ((rv = dht_parse_key(args[1], key, &klen)) != 0)
      return rv;
    d.type = NP__P2PD__DHTREQUEST__TYPE__GET_CLOSEST_PEERS;
    d.has_key = 1;
    d.key.data = key;
    d.key.len = klen;
    if ((rv = dht_roundtrip(c, &d, &r)) != 0)
      return rv;
    if (opt_json)
      printf("{\"peers\":[");
    rv = dht_stream(c, r, on_closest);
    if (opt_json && rv == 0)
      printf("]}\n");
    return rv;
  }
  if (strcmp(sub, "get") == 0 && want == 1) {
    if ((rv = dht_parse_key(args[1], key, &klen)) != 0)
      return rv;
    d.type = NP__P2PD__DHTREQUEST__TYPE__GET_VALUE;
    d.has_key = 1;
    d.key.data = key;
    d.key.len = klen;
    if ((rv = dht_roundtrip(c, &d, &r)) != 0)
      return rv;
    if (r->dht == NULL || !r->dht->has_value) {
      np__p2pd__response__free_unpacked(r, NULL);
      return fail(EX_REMOTE, "GET_VALUE answer without a value");
    }
    if (opt_json) {
      printf("{\"key\":");
      json_str(args[1], strlen(args[1]));
      putchar(',');
    }
    print_bytes(r->dht->value.data, r->dht->value.len, "value");
    if (opt_json)
      printf("}\n");
    np__p2pd__response__free_unpacked(r, NULL);
    return 0;
  }
  if (strcmp(sub, "put") == 0 && want == 2) {
    uint8_t *val = NULL;
    size_t vlen;
    if ((rv = dht_parse_key(args[1], key, &klen)) != 0)
      return rv;
    if (args[2][0] == '@') {
      if ((val = read_file(args[2] + 1, &vlen)) == NULL)
        return fail(EX_USAGE, "cannot read %s: %s", args[2] + 1,
                    strerror(errno));
      if (vlen > DHT_VALUE_FILE_MAX) {
        free(val);
        return fail(EX_USAGE, "%s is larger than %u bytes", args[2] + 1,
                    DHT_VALUE_FILE_MAX);
      }
    }
    d.type = NP__P2PD__DHTREQUEST__TYPE__PUT_VALUE;
    d.has_key = d.has_value = 1;
    d.key.data = key;
    d.key.len = klen;
    d.value.data = val ? val : (uint8_t *)args[2];
    d.value.len = val ? vlen : strlen(args[2]);
    rv = dht_roundtrip(c, &d, &r);
    free(val);
    if (rv != 0)
      return rv;
    np__p2pd__response__free_unpacked(r, NULL);
    if (opt_json) {
      printf("{\"stored\":");
      json_str(args[1], strlen(args[1]));
      printf("}\n");
    } else {
      printf("stored %s\n", args[1]);
    }
    return 0;
  }
  if (strcmp(sub, "provide") == 0 && want == 1) {
    if ((rv = dht_parse_cid(args[1], cid, sizeof(cid), &cidlen)) != 0)
      return rv;
    d.type = NP__P2PD__DHTREQUEST__TYPE__PROVIDE;
    d.has_cid = 1;
    d.cid.data = cid;
    d.cid.len = cidlen;
    if ((rv = dht_roundtrip(c, &d, &r)) != 0)
      return rv;
    np__p2pd__response__free_unpacked(r, NULL);
    if (opt_json)
      printf("{\"providing\":\"%s\"}\n", args[1]);
    else
      printf("providing %s\n", args[1]);
    return 0;
  }
  if (strcmp(sub, "findprovs") == 0 && (want == 1 || want == 3)) {
    long count = 20;
    const char *cidtext = args[1];
    if (want == 3) {
      /* CID -n N or -n N CID */
      int n_at = strcmp(args[1], "-n") == 0 ? 1 : strcmp(args[2], "-n") == 0 ? 2 : 0;
      char *end;
      if (n_at == 0)
        return fail(EX_USAGE, "dht findprovs CID [-n N]; see --help");
      count = strtol(args[n_at + 1], &end, 10);
      if (*end || count < 1 || count > 1000)
        return fail(EX_USAGE, "-n: \"%s\" is not a count (1 to 1000)",
                    args[n_at + 1]);
      cidtext = n_at == 1 ? args[3] : args[1];
    }
    if ((rv = dht_parse_cid(cidtext, cid, sizeof(cid), &cidlen)) != 0)
      return rv;
    d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS;
    d.has_cid = 1;
    d.cid.data = cid;
    d.cid.len = cidlen;
    d.has_count = 1;
    d.count = (int32_t)count;
    if ((rv = dht_roundtrip(c, &d, &r)) != 0)
      return rv;
    if (opt_json)
      printf("{\"providers\":[");
    rv = dht_stream(c, r, on_provider);
    if (opt_json && rv == 0)
      printf("]}\n");
    return rv;
  }
  return fail(EX_USAGE,
              "dht: expected findpeer PEER | closest KEY | get KEY | "
              "put KEY VALUE | provide CID | findprovs CID [-n N]; see --help");
}

/* ---- main -------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"control", required_argument, NULL, 'C'},
      {"json", no_argument, NULL, 'j'},
      {"hex", no_argument, NULL, 'x'},
      {"timeout", required_argument, NULL, 't'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config = NULL, *control = NULL, *cmd;
  char err[1024], addrbuf[1100];
  np_conf *conf = NULL;
  conn *c;
  int o, rv, nargs;
  char **args;

  while ((o = getopt_long(argc, argv, "+c:C:jxt:vh", opts, NULL)) != -1) {
    switch (o) {
    case 'c':
      config = optarg;
      break;
    case 'C':
      control = optarg;
      break;
    case 'j':
      opt_json = 1;
      break;
    case 'x':
      opt_hex = 1;
      break;
    case 'v':
      opt_verbose = 1;
      break;
    case 't': {
      char *end;
      opt_timeout = strtod(optarg, &end);
      if (*end || opt_timeout <= 0 || opt_timeout > 86400) {
        fprintf(stderr, "%s: --timeout: \"%s\" is not a number of seconds "
                        "(expected 0 < SECS <= 86400)\n",
                prog, optarg);
        return EX_USAGE;
      }
      break;
    }
    case 'h':
      usage(stdout);
      return EX_OK;
    default:
      fprintf(stderr, "Try '%s --help'.\n", prog);
      return EX_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return EX_USAGE;
  }
  cmd = argv[optind];
  args = argv + optind + 1;
  nargs = argc - optind - 1;
  if (strcmp(cmd, "call") == 0) { /* `call -v PEER PROTO` reads naturally */
    int k = 0;
    for (int i = 0; i < nargs; i++) {
      if (strcmp(args[i], "-v") == 0 || strcmp(args[i], "--verbose") == 0)
        opt_verbose = 1;
      else
        args[k++] = args[i];
    }
    nargs = k;
  }
  {
    static const struct {
      const char *name;
      int min, max;
    } cmds[] = {{"id", 0, 0},      {"peers", 0, 0}, {"connect", 1, 1},
                {"disconnect", 1, 1}, {"ping", 1, 1}, {"call", 2, 3},
                {"protocols", 0, 0}, {"dht", 1, 4}, {"nat", 0, 0}};
    int found = 0;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
      if (strcmp(cmd, cmds[i].name) != 0)
        continue;
      found = 1;
      if (nargs < cmds[i].min || nargs > cmds[i].max) {
        fprintf(stderr, "%s: %s takes %d%s%d argument%s; see --help\n", prog,
                cmd, cmds[i].min, cmds[i].min == cmds[i].max ? "" : " to ",
                cmds[i].max, cmds[i].max == 1 ? "" : "s");
        return EX_USAGE;
      }
    }
    if (!found) {
      fprintf(stderr, "%s: unknown command \"%s\"; see --help\n", prog, cmd);
      return EX_USAGE;
    }
  }
  if (control == NULL) {
    const char *path = config;
    if (path == NULL && access(NP_SYSCONFDIR "/natpeer.ini", R_OK) == 0)
      path = NP_SYSCONFDIR "/natpeer.ini";
    rv = path ? np_conf_load(&conf, path, err, sizeof(err))
              : np_conf_new_default(&conf);
    if (rv != 0) {
      fprintf(stderr, "%s: %s\n", prog, path ? err : np_strerror(rv));
      return EX_USAGE;
    }
    snprintf(addrbuf, sizeof(addrbuf), "%s", conf->host.control);
    control = addrbuf;
    np_conf_del(conf);
  }
  if ((c = malloc(sizeof(*c))) == NULL)
    return EX_REMOTE;
  rv = ctl_open(c, control);
  if (rv == 0) {
    if (strcmp(cmd, "id") == 0)
      rv = cmd_id(c);
    else if (strcmp(cmd, "peers") == 0)
      rv = cmd_peers(c);
    else if (strcmp(cmd, "connect") == 0)
      rv = cmd_connect(c, args[0]);
    else if (strcmp(cmd, "disconnect") == 0)
      rv = cmd_disconnect(c, args[0]);
    else if (strcmp(cmd, "ping") == 0)
      rv = cmd_ping(c, args[0]);
    else if (strcmp(cmd, "call") == 0)
      rv = cmd_call(c, args[0], args[1], nargs > 2 ? args[2] : "");
    else if (strcmp(cmd, "dht") == 0)
      rv = cmd_dht(c, nargs, args);
    else if (strcmp(cmd, "nat") == 0)
      rv = cmd_nat(c);
    else
      rv = cmd_protocols(c);
  }
  if (c->fd > 0)
    close(c->fd);
  free(c);
  np_crypto_cleanup();
  fflush(stdout);
  return rv;
}
