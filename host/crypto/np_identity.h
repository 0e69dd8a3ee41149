/* Host identity: a libp2p private key of any type (Ed25519, RSA, secp256k1,
 * ECDSA) stored as libp2p's protobuf PrivateKey (0600 file), the PublicKey
 * protobuf the peer ID is derived from, and signing with it. */
#ifndef NP_IDENTITY_H
#define NP_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "np_crypto.h"
#include "np_peerid.h"
#include "np_pubkey.h"

/* Host keys are capped at RSA-4096 (the key file is at most 4 KiB):
 * its PublicKey protobuf is 555 bytes, its PKCS#1 DER under 2400, its
 * signature 512 bytes. Remote keys may be larger (np_pubkey.h). */
#define NP_PUBKEY_PB_MAX 600
#define NP_IDENTITY_PRIV_MAX 2400
#define NP_IDENTITY_SIG_MAX 512
#define NP_IDENTITY_RSA_MIN_BITS 2048
#define NP_IDENTITY_RSA_MAX_BITS 4096

typedef struct np_identity {
  int type;       /* NP_KEY_* (np_pubkey.h) */
  np_ed25519 key; /* NP_KEY_ED25519 only */
  /* Other types: PrivateKey.Data as go-libp2p marshals it (RSA PKCS#1 DER,
   * secp256k1 32-byte scalar, ECDSA SEC1 DER), decoded at each signature. */
  uint8_t priv[NP_IDENTITY_PRIV_MAX];
  size_t priv_len;
  uint8_t pub_pb[NP_PUBKEY_PB_MAX]; /* protobuf PublicKey, as hashed */
  size_t pub_pb_len;
  np_peerid id;
  char id_str[NP_PEERID_STRMAX];
} np_identity;

/* Build an Ed25519 identity from a key pair. Returns 0 or a negative code. */
int np_identity_from_key(np_identity *id, const np_ed25519 *key);
/* Fresh random Ed25519 identity (tests, ephemeral hosts). */
int np_identity_generate(np_identity *id);
/* Fresh random identity of |type| (NP_KEY_*; RSA is 2048 bits). */
int np_identity_generate_type(np_identity *id, int type);

/* Decode a protobuf PrivateKey: Ed25519 (64-byte seed||pub, or the legacy
 * 96-byte seed||pub||pub), RSA (PKCS#1 DER, or PKCS#8; 2048..4096 bits),
 * secp256k1 (32-byte scalar), ECDSA (SEC1 DER, or PKCS#8). Unknown type or
 * RSA size out of range: NP_ENOTSUP. Malformed: NP_EINVAL. Inputs over
 * 4 KiB are refused before decoding (NP_ELIMIT). */
int np_identity_decode_private(np_identity *id, const uint8_t *buf,
                               size_t len);
/* Encode as protobuf PrivateKey into |out|; returns bytes or NP_ELIMIT. */
long np_identity_encode_private(const np_identity *id, uint8_t *out,
                                size_t cap);

/* Load |path|, or create it (and its directory, 0700) with a new Ed25519
 * key when it does not exist. A file readable or writable by group/others
 * is refused (NP_EPERM). On error writes one line naming the file and the
 * fix into |err|. |*created| (may be NULL) tells whether a new key was
 * written. */
int np_identity_load(np_identity *id, const char *path, int *created,
                     char *err, size_t errlen);
/* Write |id| to |path| (0600, protobuf PrivateKey); fails with NP_ESYS
 * (errno EEXIST) when the file exists. */
int np_identity_save(const np_identity *id, const char *path, char *err,
                     size_t errlen);

/* Sign |msg| with the host key as libp2p expects for its type (peer-ids.md:
 * Ed25519; RSA PKCS#1 v1.5 SHA-256; ECDSA/secp256k1 SHA-256, DER) into
 * |sig| (|cap| bytes; NP_IDENTITY_SIG_MAX is always enough), setting
 * |*siglen|. Returns 0 or a negative code (NP_ELIMIT: |cap| too small). */
int np_identity_sign(const np_identity *id, const void *msg, size_t len,
                     uint8_t *sig, size_t cap, size_t *siglen);

/* "Ed25519", "RSA", "secp256k1", "ECDSA". */
const char *np_identity_type_name(int type);

/* Wipe the private key. */
void np_identity_clear(np_identity *id);

#endif
