/* Host keys of the types other than Ed25519 (ECDSA P-256, secp256k1, RSA),
 * made with wolfCrypt at test time: their PublicKey protobuf and a signer
 * producing what libp2p expects (peer-ids.md: ECDSA(SHA-256(m)) in DER,
 * RSA PKCS#1 v1.5 with SHA-256). */
#ifndef NP_TEST_KEYS_H
#define NP_TEST_KEYS_H

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/signature.h>

#include <stdint.h>
#include <string.h>

#include "np_pubkey.h"

typedef struct tk_key {
  int type;
  WC_RNG rng;
  ecc_key ecc;
  RsaKey rsa;
  uint8_t pub_pb[1400];
  size_t pub_pb_len;
} tk_key;

/* PublicKey protobuf: 08 type 12 uvarint(len) data (len < 16384). */
static size_t tk_pb(uint8_t *out, int type, const uint8_t *data, size_t len) {
  size_t o = 0;
  out[o++] = 0x08;
  out[o++] = (uint8_t)type;
  out[o++] = 0x12;
  if (len < 0x80) {
    out[o++] = (uint8_t)len;
  } else {
    out[o++] = (uint8_t)(0x80 | (len & 0x7f));
    out[o++] = (uint8_t)(len >> 7);
  }
  memcpy(out + o, data, len);
  return o + len;
}

static int tk_make(tk_key *k, int type) {
  uint8_t der[1300];
  word32 len = sizeof(der);
  int rv;
  memset(k, 0, sizeof(*k));
  k->type = type;
  if (wc_InitRng(&k->rng) != 0)
    return -1;
  if (type == NP_KEY_RSA) {
    if (wc_InitRsaKey(&k->rsa, NULL) != 0 ||
        wc_MakeRsaKey(&k->rsa, 2048, 65537, &k->rng) != 0)
      return -1;
    rv = wc_RsaKeyToPublicDer(&k->rsa, der, sizeof(der));
    if (rv <= 0)
      return -1;
    len = (word32)rv;
  } else {
    int curve = type == NP_KEY_SECP256K1 ? ECC_SECP256K1 : ECC_SECP256R1;
    if (wc_ecc_init(&k->ecc) != 0 ||
        wc_ecc_make_key_ex(&k->rng, 32, &k->ecc, curve) != 0)
      return -1;
    if (type == NP_KEY_SECP256K1) {
      if (wc_ecc_export_x963_ex(&k->ecc, der, &len, 1) != 0)
        return -1;
    } else {
      rv = wc_EccPublicKeyToDer(&k->ecc, der, sizeof(der), 1);
      if (rv <= 0)
        return -1;
      len = (word32)rv;
    }
  }
  k->pub_pb_len = tk_pb(k->pub_pb, type, der, len);
  return 0;
}

/* np_noise_sign_fn */
static int tk_sign(void *ud, const uint8_t *msg, size_t len, uint8_t *sig,
                   size_t cap, size_t *siglen) {
  tk_key *k = ud;
  word32 sl = (word32)cap;
  if (k->type == NP_KEY_RSA) {
    if (wc_SignatureGenerate(WC_HASH_TYPE_SHA256, WC_SIGNATURE_TYPE_RSA_W_ENC,
                             msg, (word32)len, sig, &sl, &k->rsa,
                             sizeof(k->rsa), &k->rng) != 0)
      return -1;
  } else {
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(msg, (word32)len, h) != 0 ||
        wc_ecc_sign_hash(h, sizeof(h), sig, &sl, &k->rng, &k->ecc) != 0)
      return -1;
  }
  *siglen = sl;
  return 0;
}

static void tk_free(tk_key *k) {
  if (k->type == NP_KEY_RSA)
    wc_FreeRsaKey(&k->rsa);
  else
    wc_ecc_free(&k->ecc);
  wc_FreeRng(&k->rng);
}

#endif
