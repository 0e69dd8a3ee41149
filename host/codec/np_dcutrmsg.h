/* DCUtR hole-punch coordination (/libp2p/dcutr, libp2p-wire.md §14),
 * sans-I/O: a HolePunch body in, a bounded struct out; a struct in, bytes
 * out.
 *
 * Stream use: read with an np_lp_reader of max NP_DCUTRMSG_MSG_MAX (or
 * np_dcutrmsg_decode_lp on buffered bytes) and write with
 * np_dcutrmsg_encode_lp. Which addresses to punch towards (public,
 * non-circuit, a transport we have) is the caller's choice: the codec only
 * drops what is not a multiaddr at all. */
#ifndef NP_DCUTRMSG_H
#define NP_DCUTRMSG_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_DCUTRMSG_PROTOCOL "/libp2p/dcutr"
#define NP_DCUTRMSG_MSG_MAX 4096 /* largest body (go, js, rust) */
#define NP_DCUTRMSG_ADDRS_MAX 32 /* default ObsAddrs kept */

typedef enum np_dcutrmsg_type {
  NP_DCUTRMSG_CONNECT = 100,
  NP_DCUTRMSG_SYNC = 300
} np_dcutrmsg_type;

/* Caps applied by np_dcutrmsg_decode; np_dcutrmsg_limits_default fills the
 * NP_DCUTRMSG_*_MAX values. */
typedef struct np_dcutrmsg_limits {
  size_t max_msg;   /* body bytes; larger bodies: NP_ELIMIT */
  size_t max_addrs; /* further addrs are dropped */
} np_dcutrmsg_limits;

void np_dcutrmsg_limits_default(np_dcutrmsg_limits *l);

/* A byte string: owned by a decoded message, borrowed when encoding. */
typedef struct np_dcutrmsg_blob {
  uint8_t *data;
  size_t len;
} np_dcutrmsg_blob;

/* One HolePunch. From np_dcutrmsg_decode everything is owned (free with
 * np_dcutrmsg_free); np_dcutrmsg_encode only reads the caller's pointers. */
typedef struct np_dcutrmsg {
  np_dcutrmsg_type type;
  np_dcutrmsg_blob *addrs; /* ObsAddrs: valid binary multiaddrs */
  size_t naddrs;
} np_dcutrmsg;

void np_dcutrmsg_init(np_dcutrmsg *m);
/* Release what np_dcutrmsg_decode allocated; |m| is then empty again. */
void np_dcutrmsg_free(np_dcutrmsg *m);

/* Decode the body |buf| (|len| bytes) into |m| (overwritten, need not be
 * initialised) under |lim| (NULL: defaults). Addrs np_maddr_validate
 * refuses are dropped, as are those past max_addrs. Returns 0 or
 *   NP_ELIMIT  |len| > max_msg (checked first), or a body that would take
 *              more than 8 * max_msg + 64 KiB to unpack
 *   NP_EPROTO  not a HolePunch, no type, or a type other than CONNECT/SYNC
 *   NP_ENOMEM
 * On error |m| is left empty (nothing to free). */
int np_dcutrmsg_decode(np_dcutrmsg *m, const uint8_t *buf, size_t len,
                       const np_dcutrmsg_limits *lim);

/* One-shot framing: decode the uvarint-prefixed message at the start of
 * |in| (|len| bytes). Returns the bytes it took (prefix and body; what
 * follows is not looked at), NP_ETRUNC if |in| ends inside it, an
 * np_lp_parse error for a bad prefix (NP_ELIMIT over max_msg), or an
 * np_dcutrmsg_decode error. */
np_ssize np_dcutrmsg_decode_lp(np_dcutrmsg *m, const uint8_t *in, size_t len,
                               const np_dcutrmsg_limits *lim);

/* Encode |m| into |out| (|cap| bytes); addrs are sent as given. Returns the
 * body length, NP_EINVAL for a type outside the enum or NULL addrs with
 * naddrs > 0, NP_ELIMIT if the body exceeds NP_DCUTRMSG_MSG_MAX or |cap|,
 * or NP_ENOMEM. */
np_ssize np_dcutrmsg_encode(const np_dcutrmsg *m, uint8_t *out, size_t cap);
/* As np_dcutrmsg_encode, with the uvarint length prefix in front. */
np_ssize np_dcutrmsg_encode_lp(const np_dcutrmsg *m, uint8_t *out,
                               size_t cap);

#endif
