/* Circuit Relay v2 messages (hop /libp2p/circuit/relay/0.2.0/hop, stop
 * /libp2p/circuit/relay/0.2.0/stop; libp2p-wire.md §13) and reservation
 * vouchers (an Envelope, §15), sans-I/O: a message body in, a bounded
 * struct out; a struct in, bytes out.
 *
 * Stream use: the hop and stop streams become the relayed connection right
 * after the STATUS message, so read them with np_relaymsg_decode_lp on the
 * buffered bytes: it says how many bytes the message took, and what
 * follows belongs to the upgrade (§10). */
#ifndef NP_RELAYMSG_H
#define NP_RELAYMSG_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"
#include "np_identity.h"
#include "np_peerid.h"

#define NP_RELAYMSG_HOP_PROTOCOL "/libp2p/circuit/relay/0.2.0/hop"
#define NP_RELAYMSG_STOP_PROTOCOL "/libp2p/circuit/relay/0.2.0/stop"
#define NP_RELAYMSG_MSG_MAX 4096     /* largest body (go, js, rust) */
#define NP_RELAYMSG_ADDRS_MAX 16     /* default addrs kept per list */
#define NP_RELAYMSG_VOUCHER_MAX 1024 /* default longest voucher kept */

/* Voucher envelope: domain (not sent) and payload type (raw bytes). */
#define NP_RELAYMSG_VOUCHER_DOMAIN "libp2p-relay-rsvp"
#define NP_RELAYMSG_VOUCHER_TYPE "\x03\x02"
#define NP_RELAYMSG_VOUCHER_TYPE_LEN 2

/* Which protocol a message belongs to: the two have their own types. */
typedef enum np_relaymsg_kind {
  NP_RELAYMSG_HOP = 0,
  NP_RELAYMSG_STOP = 1
} np_relaymsg_kind;

/* np_relaymsg.type of a hop message (wire values). */
typedef enum np_relaymsg_hop_type {
  NP_RELAYMSG_HOP_RESERVE = 0,
  NP_RELAYMSG_HOP_CONNECT = 1,
  NP_RELAYMSG_HOP_STATUS = 2
} np_relaymsg_hop_type;

/* np_relaymsg.type of a stop message (wire values). */
typedef enum np_relaymsg_stop_type {
  NP_RELAYMSG_STOP_CONNECT = 0,
  NP_RELAYMSG_STOP_STATUS = 1
} np_relaymsg_stop_type;

typedef enum np_relaymsg_status {
  NP_RELAYMSG_UNUSED = 0,
  NP_RELAYMSG_OK = 100,
  NP_RELAYMSG_RESERVATION_REFUSED = 200,
  NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED = 201,
  NP_RELAYMSG_PERMISSION_DENIED = 202,
  NP_RELAYMSG_CONNECTION_FAILED = 203,
  NP_RELAYMSG_NO_RESERVATION = 204,
  NP_RELAYMSG_MALFORMED_MESSAGE = 400,
  NP_RELAYMSG_UNEXPECTED_MESSAGE = 401
} np_relaymsg_status;
/* "NO_RESERVATION", … as the spec names them; "UNKNOWN" otherwise. */
const char *np_relaymsg_status_name(int status);

/* Caps applied by np_relaymsg_decode; np_relaymsg_limits_default fills the
 * NP_RELAYMSG_*_MAX values. */
typedef struct np_relaymsg_limits {
  size_t max_msg;     /* body bytes; larger bodies: NP_ELIMIT */
  size_t max_addrs;   /* per list (peer, reservation); more are dropped */
  size_t max_voucher; /* voucher bytes; longer: NP_ELIMIT */
} np_relaymsg_limits;

void np_relaymsg_limits_default(np_relaymsg_limits *l);

/* A byte string: owned by a decoded message, borrowed when encoding. */
typedef struct np_relaymsg_blob {
  uint8_t *data;
  size_t len;
} np_relaymsg_blob;

typedef struct np_relaymsg_peer {
  np_peerid id;
  np_relaymsg_blob *addrs; /* valid binary multiaddrs */
  size_t naddrs;
} np_relaymsg_peer;

typedef struct np_relaymsg_reservation {
  uint64_t expire;         /* unix seconds, UTC; 0 when absent */
  np_relaymsg_blob *addrs; /* valid binary multiaddrs */
  size_t naddrs;
  np_relaymsg_blob voucher; /* raw Envelope, not verified; len 0: none */
} np_relaymsg_reservation;

typedef struct np_relaymsg_limit {
  uint32_t duration; /* seconds, 0 = unlimited */
  uint64_t data;     /* bytes per direction, 0 = unlimited */
} np_relaymsg_limit;

/* One hop or stop message. From np_relaymsg_decode everything is owned
 * (free with np_relaymsg_free); np_relaymsg_encode only reads the caller's
 * pointers. has_* say whether the optional parts are present. */
typedef struct np_relaymsg {
  np_relaymsg_kind kind;
  unsigned type; /* np_relaymsg_hop_type or np_relaymsg_stop_type */
  int has_peer;
  np_relaymsg_peer peer;
  int has_reservation; /* hop only */
  np_relaymsg_reservation reservation;
  int has_limit;
  np_relaymsg_limit limit;
  int has_status;
  np_relaymsg_status status;
} np_relaymsg;

void np_relaymsg_init(np_relaymsg *m);
/* Release what np_relaymsg_decode allocated; |m| is then empty again. */
void np_relaymsg_free(np_relaymsg *m);

/* Decode the |kind| message body |buf| (|len| bytes) into |m|
 * (overwritten, need not be initialised) under |lim| (NULL: defaults).
 * Addrs np_maddr_validate refuses are dropped, as are those past
 * max_addrs. A missing type reads as 0 (hop RESERVE, stop CONNECT), as go
 * reads it. Returns 0 or
 *   NP_ELIMIT  |len| > max_msg (checked first), a voucher over max_voucher,
 *              or a body that would take more than 8 * max_msg + 64 KiB to
 *              unpack
 *   NP_EPROTO  not a message of |kind|; a type outside its enum; a
 *              status outside its enum; a peer whose id is missing or not
 *              a peer ID
 *   NP_EINVAL  |kind| is neither HOP nor STOP
 *   NP_ENOMEM
 * A relay answers NP_EPROTO with MALFORMED_MESSAGE. On error |m| is left
 * empty (nothing to free). */
int np_relaymsg_decode(np_relaymsg *m, np_relaymsg_kind kind,
                       const uint8_t *buf, size_t len,
                       const np_relaymsg_limits *lim);

/* One-shot framing: decode the uvarint-prefixed |kind| message at the
 * start of |in| (|len| bytes). Returns the bytes it took (prefix and body;
 * what follows is left alone), NP_ETRUNC if |in| ends inside it, an
 * np_lp_parse error for a bad prefix (NP_ELIMIT over max_msg), or an
 * np_relaymsg_decode error. */
np_ssize np_relaymsg_decode_lp(np_relaymsg *m, np_relaymsg_kind kind,
                               const uint8_t *in, size_t len,
                               const np_relaymsg_limits *lim);

/* Encode |m| (its kind) into |out| (|cap| bytes); addrs and the voucher
 * are sent as given. Returns the body length, or
 *   NP_EINVAL  a kind, type or status outside its enum, a reservation in a
 *              stop message, an empty peer ID, NULL addrs with naddrs > 0
 *   NP_ELIMIT  the body exceeds NP_RELAYMSG_MSG_MAX or |cap|
 *   NP_ENOMEM */
np_ssize np_relaymsg_encode(const np_relaymsg *m, uint8_t *out, size_t cap);
/* As np_relaymsg_encode, with the uvarint length prefix in front. */
np_ssize np_relaymsg_encode_lp(const np_relaymsg *m, uint8_t *out,
                               size_t cap);

/* ---- reservation vouchers ---- */

typedef struct np_relaymsg_voucher {
  np_peerid relay;     /* the relay, which signed it */
  np_peerid peer;      /* the peer holding the reservation */
  uint64_t expiration; /* unix seconds, UTC */
} np_relaymsg_voucher;

/* Seal a voucher for |peer| signed by the relay |self| (voucher.relay is
 * |self|'s ID): a signed Envelope, no length prefix, into |out| (|cap|
 * bytes). Returns its length, NP_ELIMIT, NP_ENOMEM or a signing error. */
np_ssize np_relaymsg_voucher_seal(const np_identity *self,
                                  const np_peerid *peer, uint64_t expiration,
                                  uint8_t *out, size_t cap);

/* Verify the voucher Envelope |env| (|len| bytes) and decode it into |v|:
 * the signature under "libp2p-relay-rsvp" and the payload type 03 02 (the
 * errors of np_envelope_open), then
 *   NP_EPROTO   a malformed payload, or relay/peer missing or not peer IDs
 *   NP_EPEERID  the signer is not voucher.relay, or not |relay| (when not
 *               NULL), or voucher.peer is not |peer| (when not NULL)
 * The caller compares the expiration with its clock (vouchers are
 * advisory). Returns 0 or one of those codes. */
int np_relaymsg_voucher_open(np_relaymsg_voucher *v, const uint8_t *env,
                             size_t len, const np_peerid *relay,
                             const np_peerid *peer);

#endif
