/* AutoNAT messages (libp2p-wire.md §12), sans-I/O: a message body in, a
 * bounded struct out; a struct in, bytes out.
 *   v1 /libp2p/autonat/1.0.0: Message{DIAL | DIAL_RESPONSE}, proto2.
 *   v2 /libp2p/autonat/2/dial-request: Message{dialRequest | dialResponse |
 *      dialDataRequest | dialDataResponse}; /libp2p/autonat/2/dial-back:
 *      DialBack{nonce} answered by DialBackResponse{OK}. proto3.
 *
 * Stream use: read with an np_lp_reader of max |limits.max_msg| (or
 * np_autonatmsg_*decode_lp on buffered bytes) and write with the *_lp
 * encoders. Which addresses to dial (public, the observed IP) is the
 * caller's policy; the codec only refuses what is not a multiaddr. */
#ifndef NP_AUTONATMSG_H
#define NP_AUTONATMSG_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"
#include "np_peerid.h"

#define NP_AUTONATMSG_PROTOCOL "/libp2p/autonat/1.0.0"
#define NP_AUTONATMSG_MSG_MAX 4096 /* v1 largest body (go, rust) */
#define NP_AUTONATMSG_ADDRS_MAX 64 /* v1 default addrs kept (go dials 16 of
                                      those it accepts) */
#define NP_AUTONATMSG_TEXT_MAX 256 /* statusText kept; longer is cut */

#define NP_AUTONATMSG_V2_REQUEST_PROTOCOL "/libp2p/autonat/2/dial-request"
#define NP_AUTONATMSG_V2_DIALBACK_PROTOCOL "/libp2p/autonat/2/dial-back"
#define NP_AUTONATMSG_V2_MSG_MAX 8192 /* v2 largest body (go server) */
#define NP_AUTONATMSG_V2_ADDRS_MAX 50 /* v2 addrs considered (go server) */
#define NP_AUTONATMSG_V2_CHUNK_MAX 4096 /* dial data per message (spec) */
#define NP_AUTONATMSG_V2_DATA_MAX 100000 /* dial data a client agrees to
                                            send (go client) */

/* Caps applied by the decoders; np_autonatmsg_limits_default (v1) and
 * np_autonatmsg_v2_limits_default fill the values above. */
typedef struct np_autonatmsg_limits {
  size_t max_msg;   /* body bytes; larger bodies: NP_ELIMIT */
  size_t max_addrs; /* further addrs are dropped */
  uint64_t max_data; /* v2 dialDataRequest numBytes; more: NP_ELIMIT */
} np_autonatmsg_limits;

void np_autonatmsg_limits_default(np_autonatmsg_limits *l);
void np_autonatmsg_v2_limits_default(np_autonatmsg_limits *l);

/* A byte string: owned by a decoded message, borrowed when encoding. */
typedef struct np_autonatmsg_blob {
  uint8_t *data;
  size_t len;
} np_autonatmsg_blob;

/* ---- v1 ---- */

typedef enum np_autonatmsg_type {
  NP_AUTONATMSG_DIAL = 0,
  NP_AUTONATMSG_DIAL_RESPONSE = 1
} np_autonatmsg_type;

typedef enum np_autonatmsg_status {
  NP_AUTONATMSG_OK = 0,
  NP_AUTONATMSG_E_DIAL_ERROR = 100,
  NP_AUTONATMSG_E_DIAL_REFUSED = 101,
  NP_AUTONATMSG_E_BAD_REQUEST = 200,
  NP_AUTONATMSG_E_INTERNAL_ERROR = 300
} np_autonatmsg_status;

/* One v1 message. From np_autonatmsg_decode everything is owned (free with
 * np_autonatmsg_free); np_autonatmsg_encode only reads the caller's
 * pointers. Fields of the other type are zero/NULL. */
typedef struct np_autonatmsg {
  np_autonatmsg_type type;
  /* DIAL: who asks to be dialed, and where */
  np_peerid peer;
  np_autonatmsg_blob *addrs; /* valid binary multiaddrs */
  size_t naddrs;
  /* DIAL_RESPONSE */
  np_autonatmsg_status status;
  char *status_text;       /* NULL when absent; informational */
  np_autonatmsg_blob addr; /* the address reached; len 0 when none */
} np_autonatmsg;

void np_autonatmsg_init(np_autonatmsg *m);
/* Release what np_autonatmsg_decode allocated; |m| is then empty again. */
void np_autonatmsg_free(np_autonatmsg *m);

/* Decode the v1 body |buf| (|len| bytes) into |m| (overwritten, need not
 * be initialised) under |lim| (NULL: v1 defaults). A missing type is DIAL
 * (the proto2 default, as go reads it). DIAL addrs np_maddr_validate
 * refuses are dropped, as are those past max_addrs; a response's addr that
 * is not valid is dropped, and a statusText holding a NUL byte too (one
 * over NP_AUTONATMSG_TEXT_MAX bytes is cut). Returns 0 or
 *   NP_ELIMIT  |len| > max_msg (checked first), or a body that would take
 *              more than 8 * max_msg + 64 KiB to unpack
 *   NP_EPROTO  not a Message; a type outside the enum; a DIAL without a
 *              peer or whose peer id is not a peer ID; a DIAL_RESPONSE
 *              without dialResponse, without a status or with one outside
 *              the enum, or OK without a valid addr
 *   NP_ENOMEM
 * A server answers NP_EPROTO with E_BAD_REQUEST. On error |m| is left
 * empty (nothing to free). */
int np_autonatmsg_decode(np_autonatmsg *m, const uint8_t *buf, size_t len,
                         const np_autonatmsg_limits *lim);

/* One-shot framing: decode the uvarint-prefixed v1 message at the start of
 * |in| (|len| bytes). Returns the bytes it took, NP_ETRUNC if |in| ends
 * inside it, an np_lp_parse error for a bad prefix (NP_ELIMIT over
 * max_msg), or an np_autonatmsg_decode error. */
np_ssize np_autonatmsg_decode_lp(np_autonatmsg *m, const uint8_t *in,
                                 size_t len, const np_autonatmsg_limits *lim);

/* Encode the v1 message |m| into |out| (|cap| bytes); addrs are sent as
 * given, an empty status_text or addr is left out. Returns the body
 * length, or
 *   NP_EINVAL  a type or status outside its enum, a DIAL with an empty
 *              peer ID, NULL addrs with naddrs > 0
 *   NP_ELIMIT  the body exceeds NP_AUTONATMSG_MSG_MAX or |cap|
 *   NP_ENOMEM */
np_ssize np_autonatmsg_encode(const np_autonatmsg *m, uint8_t *out,
                              size_t cap);
/* As np_autonatmsg_encode, with the uvarint length prefix in front. */
np_ssize np_autonatmsg_encode_lp(const np_autonatmsg *m, uint8_t *out,
                                 size_t cap);

/* ---- v2 ---- */

typedef enum np_autonatmsg_v2_kind {
  NP_AUTONATMSG_V2_DIAL_REQUEST = 1,
  NP_AUTONATMSG_V2_DIAL_RESPONSE = 2,
  NP_AUTONATMSG_V2_DIAL_DATA_REQUEST = 3,
  NP_AUTONATMSG_V2_DIAL_DATA_RESPONSE = 4
} np_autonatmsg_v2_kind;

typedef enum np_autonatmsg_v2_status {
  NP_AUTONATMSG_V2_E_INTERNAL_ERROR = 0,
  NP_AUTONATMSG_V2_E_REQUEST_REJECTED = 100,
  NP_AUTONATMSG_V2_E_DIAL_REFUSED = 101,
  NP_AUTONATMSG_V2_OK = 200
} np_autonatmsg_v2_status;

typedef enum np_autonatmsg_v2_dial_status {
  NP_AUTONATMSG_V2_DIAL_UNUSED = 0,
  NP_AUTONATMSG_V2_DIAL_E_DIAL_ERROR = 100,
  NP_AUTONATMSG_V2_DIAL_E_DIAL_BACK_ERROR = 101,
  NP_AUTONATMSG_V2_DIAL_OK = 200
} np_autonatmsg_v2_dial_status;

/* One v2 dial-request stream message; owned/borrowed as in v1. */
typedef struct np_autonatmsg_v2 {
  np_autonatmsg_v2_kind kind;
  /* DIAL_REQUEST. addrs keep their positions (addr_idx refers to them):
   * one np_maddr_validate refuses is kept as an empty blob (len 0). */
  np_autonatmsg_blob *addrs;
  size_t naddrs;
  uint64_t nonce;
  /* DIAL_RESPONSE (status, addr_idx, dial_status); DIAL_DATA_REQUEST
   * (addr_idx, num_bytes) */
  np_autonatmsg_v2_status status;
  uint32_t addr_idx;
  np_autonatmsg_v2_dial_status dial_status;
  uint64_t num_bytes;
  /* DIAL_DATA_RESPONSE: <= NP_AUTONATMSG_V2_CHUNK_MAX bytes */
  np_autonatmsg_blob data;
} np_autonatmsg_v2;

void np_autonatmsg_v2_init(np_autonatmsg_v2 *m);
void np_autonatmsg_v2_free(np_autonatmsg_v2 *m);

/* Decode a v2 dial-request stream body into |m| under |lim| (NULL: v2
 * defaults): addrs past max_addrs are dropped (the list is cut, positions
 * kept). addr_idx is not checked against the request: the caller does.
 * Returns 0 or
 *   NP_ELIMIT  |len| > max_msg (checked first), dial data over
 *              NP_AUTONATMSG_V2_CHUNK_MAX, a numBytes over max_data, or a
 *              body that would take more than 8 * max_msg + 64 KiB to
 *              unpack
 *   NP_EPROTO  not a Message, no message set in it, or a status or dial
 *              status outside its enum
 *   NP_ENOMEM
 * On error |m| is left empty. */
int np_autonatmsg_v2_decode(np_autonatmsg_v2 *m, const uint8_t *buf,
                            size_t len, const np_autonatmsg_limits *lim);
/* Framing as np_autonatmsg_decode_lp. */
np_ssize np_autonatmsg_v2_decode_lp(np_autonatmsg_v2 *m, const uint8_t *in,
                                    size_t len,
                                    const np_autonatmsg_limits *lim);

/* Encode |m| as np_autonatmsg_encode does (NP_EINVAL: a kind or status
 * outside its enum, NULL addrs or data with a nonzero count; NP_ELIMIT:
 * over NP_AUTONATMSG_V2_MSG_MAX, dial data over the chunk size, or
 * |cap|). */
np_ssize np_autonatmsg_v2_encode(const np_autonatmsg_v2 *m, uint8_t *out,
                                 size_t cap);
np_ssize np_autonatmsg_v2_encode_lp(const np_autonatmsg_v2 *m, uint8_t *out,
                                    size_t cap);

/* The dial-back stream: the server sends DialBack{nonce}, the client
 * answers DialBackResponse{status OK}. Encoders write a length-prefixed
 * message and return its length or NP_ELIMIT (|cap| too small). Decoders
 * take one body (at most 64 bytes, else NP_ELIMIT) and return 0 or
 * NP_EPROTO (malformed; a response status other than OK). */
np_ssize np_autonatmsg_v2_dialback_encode_lp(uint64_t nonce, uint8_t *out,
                                             size_t cap);
int np_autonatmsg_v2_dialback_decode(uint64_t *nonce, const uint8_t *buf,
                                     size_t len);
np_ssize np_autonatmsg_v2_dialback_response_encode_lp(uint8_t *out,
                                                      size_t cap);
int np_autonatmsg_v2_dialback_response_decode(const uint8_t *buf, size_t len);

#endif
