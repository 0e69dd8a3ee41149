/* Host-key signatures over wolfCrypt (moved here from np_tls.c so that
 * Noise verifies its handshake payload with the same code). */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/signature.h>

#include "np_err.h"
#include "np_pubkey.h"

int np_pubkey_parse(const uint8_t *p, size_t n, int *type, const uint8_t **data,
                    size_t *datalen) {
  size_t len;
  if (p == NULL || n < 4 || p[0] != 0x08 || p[1] > 0x7f || p[2] != 0x12)
    return NP_EPROTO;
  *type = p[1];
  if (p[3] < 0x80) {
    len = p[3];
    p += 4;
    n -= 4;
  } else {
    if (n < 5 || p[4] == 0 || p[4] > 0x7f)
      return NP_EPROTO; /* non-minimal or over 16 KiB */
    len = (size_t)(p[3] & 0x7f) | ((size_t)p[4] << 7);
    p += 5;
    n -= 5;
  }
  if (len != n)
    return NP_EPROTO;
  *data = p;
  *datalen = n;
  return 0;
}

static int ecdsa_verify_sha256(ecc_key *k, const uint8_t *msg, size_t len,
                               const uint8_t *sig, size_t siglen) {
  uint8_t hash[WC_SHA256_DIGEST_SIZE];
  int res = 0;
  if (wc_Sha256Hash(msg, (word32)len, hash) != 0 ||
      wc_ecc_verify_hash(sig, (word32)siglen, hash, sizeof(hash), &res, k) != 0)
    return NP_ECRYPTO;
  return res == 1 ? 0 : NP_ECRYPTO;
}

int np_pubkey_verify_raw(int type, const uint8_t *key, size_t keylen,
                         const void *msg, size_t msglen, const uint8_t *sig,
                         size_t siglen, const char **why) {
  int rv = NP_ECRYPTO;
  word32 idx = 0;
  *why = "bad host key signature";
  if (keylen > NP_PUBKEY_DATA_MAX || siglen > NP_PUBKEY_SIG_MAX ||
      msglen > UINT32_MAX) {
    *why = "host key or signature too large";
    return NP_ELIMIT;
  }
  switch (type) {
  case NP_KEY_ED25519:
    if (keylen != ED25519_PUB_KEY_SIZE) {
      *why = "bad Ed25519 host key";
      return NP_EPROTO;
    } else {
      ed25519_key k;
      int res = 0;
      if (wc_ed25519_init(&k) != 0)
        return NP_ENOMEM;
      if (siglen == ED25519_SIG_SIZE &&
          wc_ed25519_import_public(key, (word32)keylen, &k) == 0 &&
          wc_ed25519_verify_msg(sig, (word32)siglen, msg, (word32)msglen, &res,
                                &k) == 0 &&
          res == 1)
        rv = 0;
      wc_ed25519_free(&k);
    }
    break;
  case NP_KEY_SECP256K1:
  case NP_KEY_ECDSA: {
    ecc_key k;
    int ok;
    if (wc_ecc_init(&k) != 0)
      return NP_ENOMEM;
    if (type == NP_KEY_SECP256K1)
      ok = keylen == 33 &&
           wc_ecc_import_x963_ex(key, 33, &k, ECC_SECP256K1) == 0;
    else
      ok = wc_EccPublicKeyDecode(key, &idx, &k, (word32)keylen) == 0 &&
           idx == keylen;
    if (!ok) {
      *why = "bad ECDSA host key";
      rv = NP_EPROTO;
    } else {
      rv = ecdsa_verify_sha256(&k, msg, msglen, sig, siglen);
    }
    wc_ecc_free(&k);
    break;
  }
  case NP_KEY_RSA: {
    RsaKey k;
    int bits;
    if (wc_InitRsaKey(&k, NULL) != 0)
      return NP_ENOMEM;
    if (wc_RsaPublicKeyDecode(key, &idx, &k, (word32)keylen) != 0 ||
        idx != keylen) {
      *why = "bad RSA host key";
      rv = NP_EPROTO;
    } else if ((bits = wc_RsaEncryptSize(&k) * 8) < 2048 || bits > 8192) {
      *why = "RSA host key size outside 2048..8192 bits";
      rv = NP_ENOTSUP;
    } else if (wc_SignatureVerify(
                   WC_HASH_TYPE_SHA256, WC_SIGNATURE_TYPE_RSA_W_ENC, msg,
                   (word32)msglen, sig, (word32)siglen, &k, sizeof(k)) == 0) {
      rv = 0;
    }
    wc_FreeRsaKey(&k);
    break;
  }
  default:
    *why = "unsupported host key type";
    return NP_ENOTSUP;
  }
  if (rv == 0)
    *why = "";
  return rv;
}

int np_pubkey_verify(const uint8_t *pb, size_t len, const void *msg,
                     size_t msglen, const uint8_t *sig, size_t siglen,
                     np_peerid *id, const char **why) {
  const char *w;
  const uint8_t *data;
  size_t dlen;
  int type, rv;
  np_peerid tmp;
  if (why == NULL)
    why = &w;
  if (np_pubkey_parse(pb, len, &type, &data, &dlen) != 0) {
    *why = "malformed host public key";
    return NP_EPROTO;
  }
  rv = np_pubkey_verify_raw(type, data, dlen, msg, msglen, sig, siglen, why);
  if (rv != 0)
    return rv;
  if (np_peerid_from_pubkey(&tmp, pb, len) != 0) {
    *why = "cannot derive the peer ID";
    return NP_EPROTO;
  }
  if (id != NULL)
    *id = tmp;
  return 0;
}
