/* libp2p host public keys (peer-ids.md): the PublicKey protobuf and
 * signature checks for every key type a peer may use (Ed25519, secp256k1,
 * ECDSA P-256, RSA). Shared by libp2p TLS (certificate extension) and Noise
 * (handshake payload). Like np_crypto.c, np_pubkey.c wraps wolfCrypt so that
 * callers need no wolfSSL type. */
#ifndef NP_PUBKEY_H
#define NP_PUBKEY_H

#include <stddef.h>
#include <stdint.h>

#include "np_peerid.h"

/* PublicKey.Type */
enum {
  NP_KEY_RSA = 0,
  NP_KEY_ED25519 = 1,
  NP_KEY_SECP256K1 = 2,
  NP_KEY_ECDSA = 3
};

#define NP_PUBKEY_DATA_MAX 1200 /* PublicKey.Data: RSA-8192 SPKI */
#define NP_PUBKEY_SIG_MAX 1100  /* RSA-8192 signature is 1024 bytes */

/* Split the PublicKey protobuf |pb| as the peer ID hashes it: field 1
 * (varint type < 128), then field 2 (bytes, length < 16 KiB, minimal
 * varint), nothing else. Sets |*type| and |*data|/|*datalen| (pointing into
 * |pb|). Returns 0 or NP_EPROTO. The type is not checked here. */
int np_pubkey_parse(const uint8_t *pb, size_t len, int *type,
                    const uint8_t **data, size_t *datalen);

/* Check |sig| over |msg| by the key |key| of |type| (PublicKey.Data):
 * Ed25519 (RFC 8032), secp256k1 (33-byte compressed point) and ECDSA
 * (DER SubjectPublicKeyInfo) with SHA-256 and a DER signature, RSA (DER
 * SubjectPublicKeyInfo, 2048..8192 bits) PKCS#1 v1.5 with SHA-256. Returns
 * 0, or: NP_ELIMIT (key or signature over the caps above), NP_EPROTO
 * (malformed key), NP_ENOTSUP (unknown type, RSA size out of range),
 * NP_ECRYPTO (the signature does not verify), NP_ENOMEM. |*why| (not NULL)
 * is set to a short phrase for logs ("" on success). */
int np_pubkey_verify_raw(int type, const uint8_t *key, size_t keylen,
                         const void *msg, size_t msglen, const uint8_t *sig,
                         size_t siglen, const char **why);

/* np_pubkey_parse, np_pubkey_verify_raw, then the peer ID of |pb| into
 * |*id| (may be NULL). Same errors; |why| may be NULL. */
int np_pubkey_verify(const uint8_t *pb, size_t len, const void *msg,
                     size_t msglen, const uint8_t *sig, size_t siglen,
                     np_peerid *id, const char **why);

#endif
