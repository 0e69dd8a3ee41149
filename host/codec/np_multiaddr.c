#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "np_base58.h"
#include "np_multiaddr.h"
#include "np_multibase.h"
#include "np_multihash.h"
#include "np_varint.h"

/* How a protocol's value is sized, checked and printed. */
enum kind {
  K_NONE,     /* no value */
  K_IP4,      /* 4 bytes */
  K_IP6,      /* 16 bytes */
  K_PORT,     /* 2 bytes, big-endian */
  K_NAME,     /* V: dns names, sni, ip6zone */
  K_P2P,      /* V: peer-ID multihash */
  K_CERTHASH, /* V: multihash */
  K_UNIX      /* V: path, last component */
};

typedef struct proto {
  uint64_t code;
  const char *name;
  enum kind kind;
} proto;

static const proto protos[] = {
    {NP_MADDR_IP4, "ip4", K_IP4},
    {NP_MADDR_TCP, "tcp", K_PORT},
    {NP_MADDR_UDP, "udp", K_PORT},
    {NP_MADDR_IP6, "ip6", K_IP6},
    {0x2a, "ip6zone", K_NAME},
    {NP_MADDR_DNS, "dns", K_NAME},
    {NP_MADDR_DNS4, "dns4", K_NAME},
    {NP_MADDR_DNS6, "dns6", K_NAME},
    {NP_MADDR_DNSADDR, "dnsaddr", K_NAME},
    {0x0118, "webrtc-direct", K_NONE},
    {0x0119, "webrtc", K_NONE},
    {NP_MADDR_P2P_CIRCUIT, "p2p-circuit", K_NONE},
    {NP_MADDR_UNIX, "unix", K_UNIX},
    {NP_MADDR_P2P, "p2p", K_P2P},
    {0x01bb, "https", K_NONE},
    {NP_MADDR_TLS, "tls", K_NONE},
    {0x01c1, "sni", K_NAME},
    {NP_MADDR_NOISE, "noise", K_NONE},
    {NP_MADDR_QUIC, "quic", K_NONE},
    {NP_MADDR_QUIC_V1, "quic-v1", K_NONE},
    {NP_MADDR_WEBTRANSPORT, "webtransport", K_NONE},
    {NP_MADDR_CERTHASH, "certhash", K_CERTHASH},
    {NP_MADDR_WS, "ws", K_NONE},
    {NP_MADDR_WSS, "wss", K_NONE},
    {0x01e0, "http", K_NONE},
    {NP_MADDR_MEMORY, "memory", K_NAME},
};

#define NAME_MAX_LEN 255 /* longest dns/sni/ip6zone/memory value */

static const proto *by_code(uint64_t code) {
  for (size_t i = 0; i < NP_ARRAY_LEN(protos); i++)
    if (protos[i].code == code)
      return &protos[i];
  return NULL;
}

static const proto *by_name(const char *s, size_t n) {
  if (n == 4 && memcmp(s, "ipfs", 4) == 0) /* legacy alias */
    return by_code(NP_MADDR_P2P);
  for (size_t i = 0; i < NP_ARRAY_LEN(protos); i++)
    if (strlen(protos[i].name) == n && memcmp(protos[i].name, s, n) == 0)
      return &protos[i];
  return NULL;
}

/* Fixed value size, or -1 for a length-prefixed value. */
static int fixed_size(enum kind k) {
  switch (k) {
  case K_NONE:
    return 0;
  case K_IP4:
    return 4;
  case K_IP6:
    return 16;
  case K_PORT:
    return 2;
  default:
    return -1;
  }
}

/* Value rules shared by binary validation and text parsing, so that both
 * forms accept exactly the same addresses. */
static int check_value(const proto *p, const uint8_t *v, size_t n) {
  np_peerid id;
  uint64_t code;
  const uint8_t *dig;
  size_t dlen;
  switch (p->kind) {
  case K_NAME:
    /* '/' would split the text form; control bytes would reach logs. */
    if (n == 0 || n > NAME_MAX_LEN)
      return NP_EPROTO;
    for (size_t i = 0; i < n; i++)
      if (v[i] <= 0x20 || v[i] >= 0x7f || v[i] == '/')
        return NP_EPROTO;
    return 0;
  case K_P2P:
    return np_peerid_from_bytes(&id, v, n) == 0 ? 0 : NP_EPROTO;
  case K_CERTHASH: {
    np_ssize r = np_multihash_parse(v, n, &code, &dig, &dlen);
    return r >= 0 && (size_t)r == n ? 0 : NP_EPROTO;
  }
  case K_UNIX:
    /* Text gives the path its leading '/' and drops trailing ones. */
    if (n < 2 || v[0] != '/' || v[n - 1] == '/')
      return NP_EPROTO;
    for (size_t i = 0; i < n; i++)
      if (v[i] < 0x20 || v[i] == 0x7f)
        return NP_EPROTO;
    return 0;
  default:
    return 0; /* fixed sizes: every value is valid */
  }
}

int np_maddr_next(const uint8_t *bin, size_t len, size_t *off,
                  np_maddr_comp *c) {
  size_t o = *off, vlen;
  uint64_t code, l;
  const proto *p;
  np_ssize n;
  int fs, rv;
  if (len > NP_MADDR_MAX)
    return NP_ELIMIT;
  if (o >= len)
    return 0;
  if ((n = np_varint_decode(bin + o, len - o, &code)) < 0)
    return (int)n;
  o += (size_t)n;
  if ((p = by_code(code)) == NULL)
    return NP_ENOTSUP;
  if ((fs = fixed_size(p->kind)) >= 0) {
    vlen = (size_t)fs;
  } else {
    if ((n = np_varint_decode(bin + o, len - o, &l)) < 0)
      return (int)n;
    o += (size_t)n;
    if (l > len - o)
      return NP_ETRUNC;
    vlen = (size_t)l;
  }
  if (vlen > len - o)
    return NP_ETRUNC;
  if ((rv = check_value(p, bin + o, vlen)) < 0)
    return rv;
  if (p->kind == K_UNIX && o + vlen != len)
    return NP_EPROTO; /* nothing may follow a path */
  c->code = code;
  c->name = p->name;
  c->val = bin + o;
  c->vlen = vlen;
  *off = o + vlen;
  return 1;
}

int np_maddr_validate(const uint8_t *bin, size_t len) {
  np_maddr_comp c;
  size_t off = 0;
  int rv;
  if (len == 0)
    return NP_EPROTO;
  while ((rv = np_maddr_next(bin, len, &off, &c)) > 0)
    ;
  return rv;
}

/* ---- text -> binary ---------------------------------------------------- */

static int parse_port(const char *s, size_t n, uint8_t out[2]) {
  unsigned v = 0;
  if (n == 0)
    return NP_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return NP_EINVAL;
    v = v * 10 + (unsigned)(s[i] - '0');
    if (v > 65535)
      return NP_EINVAL;
  }
  out[0] = (uint8_t)(v >> 8);
  out[1] = (uint8_t)v;
  return 0;
}

static int parse_ip(int af, const char *s, size_t n, uint8_t *out) {
  char buf[INET6_ADDRSTRLEN];
  /* inet_pton wants a C string; an over-long token cannot be an address. */
  if (n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL)
    return NP_EINVAL;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return inet_pton(af, buf, out) == 1 ? 0 : NP_EINVAL;
}

/* Text value |s| of protocol |p| to bytes in |val| (|cap| bytes). */
static np_ssize parse_value(const proto *p, const char *s, size_t n,
                            uint8_t *val, size_t cap) {
  np_peerid id;
  np_ssize r;
  switch (p->kind) {
  case K_IP4:
    r = parse_ip(AF_INET, s, n, val);
    return r < 0 ? r : 4;
  case K_IP6:
    r = parse_ip(AF_INET6, s, n, val);
    return r < 0 ? r : 16;
  case K_PORT:
    r = parse_port(s, n, val);
    return r < 0 ? r : 2;
  case K_P2P:
    if (np_peerid_parse(&id, s, n) < 0)
      return NP_EINVAL;
    memcpy(val, id.bytes, id.len);
    return id.len;
  case K_CERTHASH:
    r = np_multibase_decode(s, n, NULL, val, cap);
    return r < 0 ? NP_EINVAL : r;
  default: /* K_NAME, K_UNIX: the text is the value */
    if (n > cap)
      return NP_EINVAL;
    memcpy(val, s, n);
    return (np_ssize)n;
  }
}

np_ssize np_maddr_parse(const char *text, size_t len, uint8_t *out,
                        size_t cap) {
  uint8_t val[NP_MADDR_MAX];
  size_t pos = 0, o = 0;
  np_ssize n;
  if (cap > NP_MADDR_MAX)
    cap = NP_MADDR_MAX;
  while (len > 0 && text[len - 1] == '/')
    len--;
  if (len == 0 || text[0] != '/')
    return NP_EINVAL;
  /* Invariant: text[pos] == '/' starts the next component. */
  while (pos < len) {
    const char *name = text + pos + 1, *end, *v;
    const proto *p;
    size_t nlen, vlen;
    end = memchr(name, '/', len - pos - 1);
    nlen = end ? (size_t)(end - name) : len - pos - 1;
    if ((p = by_name(name, nlen)) == NULL)
      return NP_EINVAL;
    if ((n = np_varint_encode(p->code, out + o, cap - o)) < 0)
      return n;
    o += (size_t)n;
    pos += 1 + nlen;
    if (p->kind == K_NONE)
      continue;
    if (pos >= len)
      return NP_EINVAL; /* value missing */
    if (p->kind == K_UNIX) {
      v = text + pos; /* the rest, with its leading '/' */
      vlen = len - pos;
    } else {
      v = text + pos + 1;
      end = memchr(v, '/', len - pos - 1);
      vlen = end ? (size_t)(end - v) : len - pos - 1;
    }
    if ((n = parse_value(p, v, vlen, val, sizeof(val))) < 0)
      return n;
    if (check_value(p, val, (size_t)n) < 0)
      return NP_EINVAL;
    if (fixed_size(p->kind) < 0) {
      np_ssize m = np_varint_encode((uint64_t)n, out + o, cap - o);
      if (m < 0)
        return m;
      o += (size_t)m;
    }
    if ((size_t)n > cap - o)
      return NP_ELIMIT;
    memcpy(out + o, val, (size_t)n);
    o += (size_t)n;
    pos = (size_t)(v - text) + vlen;
  }
  return (np_ssize)o;
}

/* ---- binary -> text ---------------------------------------------------- */

typedef struct sbuf {
  char *out;
  size_t cap, n;
  int err;
} sbuf;

static void put(sbuf *b, const void *s, size_t n) {
  if (b->err)
    return;
  if (n >= b->cap - b->n) { /* keep room for the NUL */
    b->err = NP_ELIMIT;
    return;
  }
  memcpy(b->out + b->n, s, n);
  b->n += n;
}

static void put_str(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* Append the output of an encoder that writes a NUL-terminated string. */
static void put_encoded(sbuf *b, np_ssize r) {
  if (b->err)
    return;
  if (r < 0)
    b->err = (int)r;
  else
    b->n += (size_t)r;
}

static void print_value(sbuf *b, const proto *p, const uint8_t *v, size_t n) {
  char tmp[INET6_ADDRSTRLEN];
  switch (p->kind) {
  case K_NONE:
    return;
  case K_IP4:
  case K_IP6:
    inet_ntop(p->kind == K_IP4 ? AF_INET : AF_INET6, v, tmp, sizeof(tmp));
    put(b, "/", 1);
    put_str(b, tmp);
    return;
  case K_PORT:
    snprintf(tmp, sizeof(tmp), "/%u", (unsigned)(v[0] << 8 | v[1]));
    put_str(b, tmp);
    return;
  case K_P2P:
    put(b, "/", 1);
    if (!b->err)
      put_encoded(b, np_base58_encode(v, n, b->out + b->n, b->cap - b->n));
    return;
  case K_CERTHASH:
    put(b, "/", 1);
    if (!b->err)
      put_encoded(b, np_multibase_encode(NP_MULTIBASE_BASE64URL, v, n,
                                         b->out + b->n, b->cap - b->n));
    return;
  case K_UNIX:
    put(b, v, n); /* starts with '/' */
    return;
  default:
    put(b, "/", 1);
    put(b, v, n);
    return;
  }
}

np_ssize np_maddr_to_string(const uint8_t *bin, size_t len, char *out,
                            size_t cap) {
  sbuf b = {out, cap, 0, 0};
  np_maddr_comp c;
  size_t off = 0;
  int rv;
  if (cap == 0)
    return NP_ELIMIT;
  if ((rv = np_maddr_validate(bin, len)) < 0)
    return rv;
  while ((rv = np_maddr_next(bin, len, &off, &c)) > 0) {
    const proto *p = by_code(c.code);
    put(&b, "/", 1);
    put_str(&b, p->name);
    print_value(&b, p, c.val, c.vlen);
  }
  if (b.err) {
    out[0] = '\0';
    return b.err;
  }
  out[b.n] = '\0';
  return (np_ssize)b.n;
}

/* ---- sockets and peer IDs ---------------------------------------------- */

/* |ip| (ip4 or ip6) and |port| (both network order) into |*sa|. */
static void ip_port_sockaddr(const np_maddr_comp *ip, const np_maddr_comp *port,
                             struct sockaddr_storage *sa, socklen_t *salen) {
  memset(sa, 0, sizeof(*sa));
  if (ip->code == NP_MADDR_IP4) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, ip->val, 4);
    memcpy(&s4->sin_port, port->val, 2);
    *salen = sizeof(*s4);
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_addr, ip->val, 16);
    memcpy(&s6->sin6_port, port->val, 2);
    *salen = sizeof(*s6);
  }
}

int np_maddr_to_sockaddr(const uint8_t *bin, size_t len,
                         struct sockaddr_storage *sa, socklen_t *salen) {
  /* ip, udp, quic-v1, then an optional p2p; 0 = ip4 or ip6 */
  static const uint64_t shape[] = {0, NP_MADDR_UDP, NP_MADDR_QUIC_V1,
                                   NP_MADDR_P2P};
  np_maddr_comp c[NP_ARRAY_LEN(shape)], cur;
  size_t off = 0, n = 0;
  int rv;
  if ((rv = np_maddr_validate(bin, len)) < 0)
    return rv;
  while ((rv = np_maddr_next(bin, len, &off, &cur)) > 0) {
    if (n == NP_ARRAY_LEN(shape))
      return NP_ENOTSUP;
    if (n == 0 ? cur.code != NP_MADDR_IP4 && cur.code != NP_MADDR_IP6
               : cur.code != shape[n])
      return NP_ENOTSUP;
    c[n++] = cur;
  }
  if (n < 3)
    return NP_ENOTSUP;
  ip_port_sockaddr(&c[0], &c[1], sa, salen);
  return 0;
}

int np_maddr_to_sockaddr_tcp(const uint8_t *bin, size_t len,
                             struct sockaddr_storage *sa, socklen_t *salen) {
  /* ip, tcp, then an optional p2p; 0 = ip4 or ip6 */
  static const uint64_t shape[] = {0, NP_MADDR_TCP, NP_MADDR_P2P};
  np_maddr_comp c[NP_ARRAY_LEN(shape)], cur;
  size_t off = 0, n = 0;
  int rv;
  if ((rv = np_maddr_validate(bin, len)) < 0)
    return rv;
  while ((rv = np_maddr_next(bin, len, &off, &cur)) > 0) {
    if (n == NP_ARRAY_LEN(shape))
      return NP_ENOTSUP;
    if (n == 0 ? cur.code != NP_MADDR_IP4 && cur.code != NP_MADDR_IP6
               : cur.code != shape[n])
      return NP_ENOTSUP;
    c[n++] = cur;
  }
  if (n < 2)
    return NP_ENOTSUP;
  ip_port_sockaddr(&c[0], &c[1], sa, salen);
  return 0;
}

int np_maddr_to_stream_sockaddr(const uint8_t *bin, size_t len,
                                struct sockaddr_storage *sa, socklen_t *salen) {
  np_maddr_comp c[2], cur;
  size_t off = 0, n = 0;
  int rv;
  if ((rv = np_maddr_validate(bin, len)) < 0)
    return rv;
  while ((rv = np_maddr_next(bin, len, &off, &cur)) > 0) {
    if (n == 2)
      return NP_ENOTSUP;
    c[n++] = cur;
  }
  memset(sa, 0, sizeof(*sa));
  if (n == 1 && c[0].code == NP_MADDR_UNIX) {
    struct sockaddr_un *un = (struct sockaddr_un *)sa;
    if (c[0].vlen >= sizeof(un->sun_path))
      return NP_ELIMIT;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, c[0].val, c[0].vlen);
    *salen = (socklen_t)sizeof(*un);
    return 0;
  }
  if (n != 2 || c[1].code != NP_MADDR_TCP)
    return NP_ENOTSUP;
  if (c[0].code == NP_MADDR_IP4) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, c[0].val, 4);
    memcpy(&s4->sin_port, c[1].val, 2);
    *salen = sizeof(*s4);
  } else if (c[0].code == NP_MADDR_IP6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_addr, c[0].val, 16);
    memcpy(&s6->sin6_port, c[1].val, 2);
    *salen = sizeof(*s6);
  } else {
    return NP_ENOTSUP;
  }
  return 0;
}

/* /ip4|ip6/A/<transport>/P[/<suffix>] for |sa|: |transport| is tcp or
 * udp, |suffix| 0 for none. */
static np_ssize from_sockaddr(const struct sockaddr *sa, uint64_t transport,
                              uint64_t suffix, uint8_t *out, size_t cap) {
  uint8_t buf[32];
  size_t n = 0;
  const uint8_t *port;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    buf[n++] = NP_MADDR_IP4;
    memcpy(buf + n, &s4->sin_addr, 4);
    n += 4;
    port = (const uint8_t *)&s4->sin_port;
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      buf[n++] = NP_MADDR_IP4;
      memcpy(buf + n, s6->sin6_addr.s6_addr + 12, 4);
      n += 4;
    } else {
      buf[n++] = NP_MADDR_IP6;
      memcpy(buf + n, &s6->sin6_addr, 16);
      n += 16;
    }
    port = (const uint8_t *)&s6->sin6_port;
  } else {
    return NP_EINVAL;
  }
  n += (size_t)np_varint_encode(transport, buf + n, sizeof(buf) - n);
  buf[n++] = port[0];
  buf[n++] = port[1];
  if (suffix != 0)
    n += (size_t)np_varint_encode(suffix, buf + n, sizeof(buf) - n);
  if (n > cap)
    return NP_ELIMIT;
  memcpy(out, buf, n);
  return (np_ssize)n;
}

np_ssize np_maddr_from_sockaddr_quic(const struct sockaddr *sa, uint8_t *out,
                                     size_t cap) {
  return from_sockaddr(sa, NP_MADDR_UDP, NP_MADDR_QUIC_V1, out, cap);
}

np_ssize np_maddr_from_sockaddr_tcp(const struct sockaddr *sa, uint8_t *out,
                                    size_t cap) {
  return from_sockaddr(sa, NP_MADDR_TCP, 0, out, cap);
}

int np_maddr_get_p2p(const uint8_t *bin, size_t len, np_peerid *id) {
  np_maddr_comp c, last = {0, NULL, NULL, 0};
  size_t off = 0;
  int rv;
  if ((rv = np_maddr_validate(bin, len)) < 0)
    return rv;
  while ((rv = np_maddr_next(bin, len, &off, &c)) > 0)
    if (c.code == NP_MADDR_P2P)
      last = c;
  if (last.val == NULL)
    return NP_ENOENT;
  return np_peerid_from_bytes(id, last.val, last.vlen);
}

np_ssize np_maddr_append_p2p(uint8_t *bin, size_t len, size_t cap,
                             const np_peerid *id) {
  size_t n = 2 + 1 + id->len; /* code a5 03, one-byte length, multihash */
  if (cap > NP_MADDR_MAX)
    cap = NP_MADDR_MAX;
  if (len > cap || n > cap - len)
    return NP_ELIMIT;
  bin[len] = 0xa5;
  bin[len + 1] = 0x03;
  bin[len + 2] = id->len;
  memcpy(bin + len + 3, id->bytes, id->len);
  return (np_ssize)(len + n);
}

int np_sockaddr_is_wildcard(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return ((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr ==
           htonl(INADDR_ANY);
  return IN6_IS_ADDR_UNSPECIFIED(
      &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
}

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)(const void *)sa)
                      ->sin_addr.s_addr) >>
            24) == 127;
  return IN6_IS_ADDR_LOOPBACK(
      &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
}

int np_sockaddr_is_public(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    uint32_t a =
        ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr);
    static const struct {
      uint32_t net, mask;
    } no[] = {
        {0x00000000, 0xff000000}, /* 0/8 "this network" */
        {0x0a000000, 0xff000000}, /* 10/8 */
        {0x64400000, 0xffc00000}, /* 100.64/10 CGNAT */
        {0x7f000000, 0xff000000}, /* 127/8 */
        {0xa9fe0000, 0xffff0000}, /* 169.254/16 link-local */
        {0xac100000, 0xfff00000}, /* 172.16/12 */
        {0xc0000000, 0xffffff00}, /* 192.0.0/24 */
        {0xc0000200, 0xffffff00}, /* 192.0.2/24 documentation */
        {0xc0a80000, 0xffff0000}, /* 192.168/16 */
        {0xc6120000, 0xfffe0000}, /* 198.18/15 benchmarking */
        {0xc6336400, 0xffffff00}, /* 198.51.100/24 documentation */
        {0xcb007100, 0xffffff00}, /* 203.0.113/24 documentation */
        {0xe0000000, 0xe0000000}, /* 224/3 multicast, reserved, broadcast */
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
      if ((a & no[i].mask) == no[i].net)
        return 0;
    return 1;
  }
  if (sa->sa_family == AF_INET6) {
    const uint8_t *b =
        ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
    /* Global unicast is 2000::/3, less documentation (2001:db8::/32). */
    if ((b[0] & 0xe0) != 0x20)
      return 0;
    return !(b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8);
  }
  return 0;
}

int np_prefix_parse(const char *text, np_prefix *out) {
  char buf[64];
  const char *slash = strchr(text, '/');
  size_t alen = slash ? (size_t)(slash - text) : strlen(text);
  unsigned max;
  memset(out, 0, sizeof(*out));
  if (alen == 0 || alen >= sizeof(buf))
    return NP_EINVAL;
  memcpy(buf, text, alen);
  buf[alen] = '\0';
  if (inet_pton(AF_INET, buf, out->addr) == 1)
    out->family = AF_INET, max = 32;
  else if (inet_pton(AF_INET6, buf, out->addr) == 1)
    out->family = AF_INET6, max = 128;
  else
    return NP_EINVAL;
  out->bits = max;
  if (slash) {
    char *end;
    unsigned long b;
    if (slash[1] < '0' || slash[1] > '9')
      return NP_EINVAL;
    b = strtoul(slash + 1, &end, 10);
    if (*end != '\0' || b > max)
      return NP_EINVAL;
    out->bits = (unsigned)b;
  }
  return 0;
}

static int in_prefix(const struct sockaddr *sa, const np_prefix *p) {
  const uint8_t *a;
  unsigned full, rest;
  if (sa->sa_family != p->family)
    return 0;
  a = sa->sa_family == AF_INET
          ? (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)
                ->sin_addr
          : ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
  full = p->bits / 8, rest = p->bits % 8;
  if (memcmp(a, p->addr, full) != 0)
    return 0;
  return rest == 0 ||
         ((a[full] ^ p->addr[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

int np_maddr_is_public_with(const uint8_t *bin, size_t len,
                            const np_prefix *extra, size_t n) {
  struct sockaddr_storage ss;
  socklen_t sl;
  size_t i;
  if (np_maddr_to_sockaddr(bin, len, &ss, &sl) != 0 &&
      np_maddr_to_sockaddr_tcp(bin, len, &ss, &sl) != 0)
    return 0;
  for (i = 0; i < n; i++)
    if (in_prefix((const struct sockaddr *)&ss, &extra[i]))
      return 1;
  return np_sockaddr_is_public((const struct sockaddr *)&ss);
}

int np_maddr_is_public(const uint8_t *bin, size_t len) {
  return np_maddr_is_public_with(bin, len, NULL, 0);
}

int np_sockaddr_source_fit(const struct sockaddr *local,
                           const struct sockaddr *to) {
  if (local->sa_family != to->sa_family)
    return 0;
  if (np_sockaddr_is_wildcard(local))
    return 2;
  return is_loopback(local) == is_loopback(to);
}
