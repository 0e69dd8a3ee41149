/* libp2p peer IDs: the multihash of a PublicKey protobuf (identity when the
 * protobuf is at most 42 bytes, else sha2-256). Text is base58btc of the
 * multihash ("12D3KooW...", "Qm...") or a CIDv1 with codec libp2p-key in
 * base32 ("bafz..."); both are parsed, base58 is printed. */
#ifndef NP_PEERID_H
#define NP_PEERID_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_PEERID_MAX 48    /* multihash bytes; identity of <=42-byte key + 2 */
#define NP_PEERID_STRMAX 96 /* base58 text incl. NUL */
#define NP_PEERID_CIDMAX 96 /* CID text incl. NUL */
#define NP_PEERID_INLINE 42 /* longest key kept inline (identity hash) */
#define NP_PEERID_LIBP2P_KEY 0x72 /* multicodec of a peer-ID CID */

/* A validated peer ID: |len| bytes of binary multihash. Plain value type:
 * copy with '=' and compare with np_peerid_equal. */
typedef struct np_peerid {
  uint8_t len;
  uint8_t bytes[NP_PEERID_MAX];
} np_peerid;

/* Derive the ID of the |len|-byte PublicKey protobuf |pubkey_pb| (not
 * checked here): identity multihash if len <= 42, else sha2-256. Returns 0
 * or NP_EINVAL if len == 0. */
int np_peerid_from_pubkey(np_peerid *id, const uint8_t *pubkey_pb, size_t len);

/* Set |id| from the binary multihash |mh| as carried on the wire; the whole
 * buffer must be one multihash: identity with 1..42 payload bytes, or
 * sha2-256 with 32. Returns 0 or NP_EINVAL (|id| is then unchanged). */
int np_peerid_from_bytes(np_peerid *id, const uint8_t *mh, size_t len);

/* Parse |len| chars of text (no NUL needed): legacy base58btc
 * ("12D3KooW...", "Qm...", "16Uiu2...") or a CIDv1 in multibase 'b' base32
 * with codec libp2p-key ("bafz..."). Returns 0 or NP_EINVAL for anything
 * else (other CID codecs or bases, bad characters, invalid multihash). */
int np_peerid_parse(np_peerid *id, const char *text, size_t len);

/* Write the base58btc text of |id| with a NUL into |out|. Returns the text
 * length or NP_ELIMIT if |cap| is too small (NP_PEERID_STRMAX always fits). */
np_ssize np_peerid_to_string(const np_peerid *id, char *out, size_t cap);

/* Write the CIDv1 text ("bafz...") of |id| with a NUL into |out|. Returns
 * the text length or NP_ELIMIT (NP_PEERID_CIDMAX always fits). */
np_ssize np_peerid_to_cid(const np_peerid *id, char *out, size_t cap);

/* Nonzero if |a| and |b| are the same ID. */
int np_peerid_equal(const np_peerid *a, const np_peerid *b);

/* For an identity ID, point |*pb| at the embedded PublicKey protobuf (inside
 * |id|; valid as long as |id|) and set |*len|; returns 0. For a sha2-256 ID
 * the key is not recoverable: returns NP_ENOENT. */
int np_peerid_pubkey(const np_peerid *id, const uint8_t **pb, size_t *len);

#endif
