/* Host identity: an Ed25519 key stored as libp2p's protobuf PrivateKey
 * (0600 file), and the peer ID derived from its PublicKey encoding. */
#ifndef NP_IDENTITY_H
#define NP_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "np_crypto.h"
#include "np_peerid.h"

#define NP_PUBKEY_PB_MAX 64 /* Ed25519 PublicKey protobuf is 36 bytes */

typedef struct np_identity {
  np_ed25519 key;
  uint8_t pub_pb[NP_PUBKEY_PB_MAX]; /* protobuf PublicKey, as hashed */
  size_t pub_pb_len;
  np_peerid id;
  char id_str[NP_PEERID_STRMAX];
} np_identity;

/* Build an identity from a key pair. Returns 0 or a negative code. */
int np_identity_from_key(np_identity *id, const np_ed25519 *key);
/* Fresh random identity (tests, ephemeral hosts). */
int np_identity_generate(np_identity *id);

/* Decode a protobuf PrivateKey (Ed25519: 64-byte seed||pub, or the legacy
 * 96-byte seed||pub||pub). Other key types: NP_ENOTSUP. Malformed: NP_EINVAL.
 * Inputs over 4 KiB are refused before decoding (NP_ELIMIT). */
int np_identity_decode_private(np_identity *id, const uint8_t *buf,
                               size_t len);
/* Encode as protobuf PrivateKey into |out|; returns bytes or NP_ELIMIT. */
long np_identity_encode_private(const np_identity *id, uint8_t *out,
                                size_t cap);

/* Load |path|, or create it (and its directory, 0700) when it does not
 * exist. A file readable or writable by group/others is refused (NP_EPERM).
 * On error writes one line naming the file and the fix into |err|.
 * |*created| (may be NULL) tells whether a new key was written. */
int np_identity_load(np_identity *id, const char *path, int *created,
                     char *err, size_t errlen);

/* Ed25519 signature by the host key. */
int np_identity_sign(const np_identity *id, const void *msg, size_t len,
                     uint8_t sig[NP_ED25519_SIG_LEN]);

/* Wipe the private key. */
void np_identity_clear(np_identity *id);

#endif
