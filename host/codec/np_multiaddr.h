/* Multiaddr: text ("/ip4/1.2.3.4/udp/4001/quic-v1") and binary (repeated
 * uvarint(code) || value) forms, converted without heap allocation.
 *
 * Known protocols (others are refused with NP_ENOTSUP):
 *   ip4 ip6 ip6zone tcp udp dns dns4 dns6 dnsaddr sni unix p2p (text alias
 *   ipfs) p2p-circuit quic quic-v1 tls noise ws wss http https webtransport
 *   certhash webrtc-direct webrtc memory
 * Values are checked the same way in both directions, so every accepted
 * binary prints as text that parses back to the same bytes:
 *   - ports: decimal 0..65535; ip4/ip6 via inet_pton/inet_ntop (no zones);
 *   - dns*, sni, ip6zone, memory: 1..255 bytes of printable ASCII without
 *     '/' (memory: js-libp2p's in-process transport, "/memory/NAME");
 *   - p2p: a peer ID as np_peerid_from_bytes accepts (text: base58 or CID);
 *   - certhash: exactly one multihash (text: multibase 'u', 'b' or 'z';
 *     printed as 'u' base64url);
 *   - unix: a path starting with '/', not ending with '/', without control
 *     characters; it must be the last component (in text it is the rest of
 *     the string: "/unix/tmp/x.sock" has the path "/tmp/x.sock").
 * Text may end with '/' characters (ignored, as go-multiaddr does). */
#ifndef NP_MULTIADDR_H
#define NP_MULTIADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "np_err.h"
#include "np_peerid.h"

#define NP_MADDR_MAX 1024 /* max binary length accepted anywhere */

/* Protocol codes used by natpeer itself. */
#define NP_MADDR_IP4 0x04
#define NP_MADDR_TCP 0x06
#define NP_MADDR_IP6 0x29
#define NP_MADDR_DNS 0x35
#define NP_MADDR_DNS4 0x36
#define NP_MADDR_DNS6 0x37
#define NP_MADDR_DNSADDR 0x38
#define NP_MADDR_UDP 0x0111
#define NP_MADDR_P2P_CIRCUIT 0x0122
#define NP_MADDR_UNIX 0x0190
#define NP_MADDR_P2P 0x01a5
#define NP_MADDR_TLS 0x01c0
#define NP_MADDR_NOISE 0x01c6
#define NP_MADDR_QUIC 0x01cc /* draft-29, obsolete */
#define NP_MADDR_QUIC_V1 0x01cd
#define NP_MADDR_WEBTRANSPORT 0x01d1
#define NP_MADDR_CERTHASH 0x01d2
#define NP_MADDR_WS 0x01dd
#define NP_MADDR_WSS 0x01de
#define NP_MADDR_MEMORY 0x0309

/* Convert |len| chars of text (no NUL needed) to binary in |out| (|cap|
 * bytes). Returns the binary length, NP_EINVAL for malformed text (not
 * starting with '/', unknown protocol name, missing or bad value, empty
 * address), or NP_ELIMIT if the result exceeds |cap| or NP_MADDR_MAX. */
np_ssize np_maddr_parse(const char *text, size_t len, uint8_t *out, size_t cap);

/* Convert the |len|-byte binary |bin| to NUL-terminated text in |out|
 * (|cap| bytes), validating it as np_maddr_validate does. Returns the text
 * length, one of np_maddr_validate's errors, or NP_ELIMIT if the text does
 * not fit. */
np_ssize np_maddr_to_string(const uint8_t *bin, size_t len, char *out,
                            size_t cap);

/* Check that |bin| is a whole, well-formed multiaddr. Returns 0, NP_ETRUNC
 * (input ends inside a component), NP_EPROTO (empty, malformed varint or
 * value, component after unix), NP_ENOTSUP (unknown protocol code) or
 * NP_ELIMIT (len > NP_MADDR_MAX). */
int np_maddr_validate(const uint8_t *bin, size_t len);

/* One component: |name| is static ("p2p" for p2p/ipfs); |val| points into
 * the binary (the value bytes, without any length prefix). */
typedef struct np_maddr_comp {
  uint64_t code;
  const char *name;
  const uint8_t *val;
  size_t vlen;
} np_maddr_comp;

/* Iterate over |bin|: start with *off = 0; each call checks and returns
 * the component at *off and advances *off. Returns 1 with |*c| filled, 0 at
 * the end, or a negative np_maddr_validate error (then stop). */
int np_maddr_next(const uint8_t *bin, size_t len, size_t *off,
                  np_maddr_comp *c);

/* Convert /ip4|ip6/A/udp/P/quic-v1, optionally followed by one /p2p/ID, to
 * a sockaddr_in or sockaddr_in6 in |*sa| and its length in |*salen|.
 * Returns 0, NP_ENOTSUP for any other shape (DNS names, TCP, circuits...),
 * or a np_maddr_validate error. */
int np_maddr_to_sockaddr(const uint8_t *bin, size_t len,
                         struct sockaddr_storage *sa, socklen_t *salen);

/* /unix/PATH or /ip4|ip6/A/tcp/P -> a stream socket address (AF_UNIX,
 * AF_INET or AF_INET6). Returns 0, NP_ENOTSUP (other shapes), NP_ELIMIT
 * (unix path too long for sockaddr_un) or a np_maddr_validate error. */
int np_maddr_to_stream_sockaddr(const uint8_t *bin, size_t len,
                                struct sockaddr_storage *sa, socklen_t *salen);

/* np_maddr_to_sockaddr for /ip4|ip6/A/tcp/P, optionally followed by one
 * /p2p/ID (the TCP transport's dial and listen addresses). */
int np_maddr_to_sockaddr_tcp(const uint8_t *bin, size_t len,
                             struct sockaddr_storage *sa, socklen_t *salen);

/* Write /ip4|ip6/A/udp/P/quic-v1 for the AF_INET or AF_INET6 address |sa|
 * into |out|. IPv4-mapped IPv6 addresses (from dual-stack sockets) become
 * /ip4; an IPv6 scope id is dropped. Returns the binary length, NP_ELIMIT
 * if |cap| is too small, or NP_EINVAL for another address family. */
np_ssize np_maddr_from_sockaddr_quic(const struct sockaddr *sa, uint8_t *out,
                                     size_t cap);
/* The same with /ip4|ip6/A/tcp/P. */
/* 1 if |sa| (AF_INET or AF_INET6) is 0.0.0.0 or ::. */
int np_sockaddr_is_wildcard(const struct sockaddr *sa);
/* 1 if |sa| is a public unicast address: not private, loopback,
 * link-local, CGNAT, documentation, benchmarking or multicast (the DHT's
 * auto mode; the NAT lab's treat_as_public will widen it). */
int np_sockaddr_is_public(const struct sockaddr *sa);
/* np_sockaddr_is_public of an /ip4|ip6/.../udp/P/quic-v1 or .../tcp/P
 * address; 0 for any other shape. */
int np_maddr_is_public(const uint8_t *bin, size_t len);

/* An address prefix ("192.0.2.0/24", "2001:db8::/32"): [nat]
 * treat_as_public makes the NAT lab's documentation ranges count as
 * public. */
typedef struct np_prefix {
  int family; /* AF_INET or AF_INET6 */
  uint8_t addr[16];
  unsigned bits;
} np_prefix;
/* Parse |text| (a bare address means all its bits). 0 or NP_EINVAL. */
int np_prefix_parse(const char *text, np_prefix *out);
/* As np_maddr_is_public, also 1 when the address is inside one of the |n|
 * |extra| prefixes. */
int np_maddr_is_public_with(const uint8_t *bin, size_t len,
                            const np_prefix *extra, size_t n);
/* How well a socket bound to |local| suits as the source of a dial to |to|
 * (both AF_INET or AF_INET6): 2 bound to the wildcard of |to|'s family, 1
 * same family and scope (loopback or not), 0 unusable. The QUIC and TCP
 * transports pick their dial sockets with it. */
int np_sockaddr_source_fit(const struct sockaddr *local,
                           const struct sockaddr *to);

np_ssize np_maddr_from_sockaddr_tcp(const struct sockaddr *sa, uint8_t *out,
                                    size_t cap);

/* Set |*id| from the last /p2p/ component of |bin| (for a relay address
 * without a target, ".../p2p/RELAY/p2p-circuit", that is the relay). Returns
 * 0, NP_ENOENT if there is none, or a np_maddr_validate error. */
int np_maddr_get_p2p(const uint8_t *bin, size_t len, np_peerid *id);

/* Append /p2p/|id| to the |len|-byte multiaddr in |bin| (|cap| bytes in
 * all). Returns the new length or NP_ELIMIT if it exceeds |cap| or
 * NP_MADDR_MAX. |bin| is not revalidated. */
np_ssize np_maddr_append_p2p(uint8_t *bin, size_t len, size_t cap,
                             const np_peerid *id);

#endif
