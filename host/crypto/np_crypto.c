#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <string.h>

#include "np_crypto.h"
#include "np_err.h"

/* One DRBG for the process: the host is single-threaded. */
static WC_RNG rng;
static int rng_ready;

static WC_RNG *get_rng(void) {
  if (!rng_ready) {
    if (wc_InitRng(&rng) != 0)
      return NULL;
    rng_ready = 1;
  }
  return &rng;
}

void np_crypto_cleanup(void) {
  np_aead_thread_cleanup();
  if (rng_ready) {
    wc_FreeRng(&rng);
    rng_ready = 0;
  }
}

int np_crypto_random(void *buf, size_t len) {
  WC_RNG *r = get_rng();
  if (r == NULL || wc_RNG_GenerateBlock(r, buf, (word32)len) != 0)
    return NP_ECRYPTO;
  return 0;
}

void np_crypto_sha256(const void *data, size_t len, uint8_t out[32]) {
  wc_Sha256Hash(data, (word32)len, out);
}

int np_crypto_sha256_cat(const void *a, size_t alen, const void *b, size_t blen,
                         uint8_t out[NP_SHA256_LEN]) {
  wc_Sha256 sha;
  int rv = NP_ECRYPTO;
  if (alen > UINT32_MAX || blen > UINT32_MAX)
    return NP_EINVAL;
  if (wc_InitSha256(&sha) != 0)
    return NP_ECRYPTO;
  if ((alen == 0 || wc_Sha256Update(&sha, a, (word32)alen) == 0) &&
      (blen == 0 || wc_Sha256Update(&sha, b, (word32)blen) == 0) &&
      wc_Sha256Final(&sha, out) == 0)
    rv = 0;
  wc_Sha256Free(&sha);
  return rv;
}

void np_crypto_wipe(void *p, size_t len) {
  volatile uint8_t *v = p;
  while (len--)
    *v++ = 0;
}

int np_ed25519_from_seed(np_ed25519 *k, const uint8_t seed[32]) {
  ed25519_key key;
  word32 outlen = NP_ED25519_PUB_LEN;
  int rv = NP_ECRYPTO;
  if (wc_ed25519_init(&key) != 0)
    return NP_ECRYPTO;
  if (wc_ed25519_import_private_only(seed, 32, &key) == 0 &&
      wc_ed25519_make_public(&key, k->pub, NP_ED25519_PUB_LEN) == 0) {
    (void)outlen;
    memmove(k->seed, seed, 32);
    rv = 0;
  }
  wc_ed25519_free(&key);
  return rv;
}

int np_ed25519_generate(np_ed25519 *k) {
  uint8_t seed[32];
  int rv = np_crypto_random(seed, sizeof(seed));
  if (rv == 0)
    rv = np_ed25519_from_seed(k, seed);
  np_crypto_wipe(seed, sizeof(seed));
  return rv;
}

int np_ed25519_sign(const np_ed25519 *k, const void *msg, size_t len,
                    uint8_t sig[64]) {
  ed25519_key key;
  word32 siglen = 64;
  int rv = NP_ECRYPTO;
  if (wc_ed25519_init(&key) != 0)
    return NP_ECRYPTO;
  if (wc_ed25519_import_private_key(k->seed, 32, k->pub, 32, &key) == 0 &&
      wc_ed25519_sign_msg(msg, (word32)len, sig, &siglen, &key) == 0 &&
      siglen == 64)
    rv = 0;
  wc_ed25519_free(&key);
  return rv;
}

int np_ed25519_verify(const uint8_t pub[32], const void *msg, size_t len,
                      const uint8_t *sig, size_t siglen) {
  ed25519_key key;
  int res = 0, rv = NP_ECRYPTO;
  if (siglen != 64)
    return NP_ECRYPTO;
  if (wc_ed25519_init(&key) != 0)
    return NP_ECRYPTO;
  if (wc_ed25519_import_public(pub, 32, &key) == 0 &&
      wc_ed25519_verify_msg(sig, 64, msg, (word32)len, &res, &key) == 0 &&
      res == 1)
    rv = 0;
  wc_ed25519_free(&key);
  return rv;
}

/* wolfCrypt's raw X25519 functions refuse unclamped scalars; RFC 7748
 * clamps as part of the function, so do it on a copy. */
static void clamp(uint8_t k[NP_X25519_LEN], const uint8_t priv[NP_X25519_LEN]) {
  memcpy(k, priv, NP_X25519_LEN);
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
}

int np_x25519_public(uint8_t pub[NP_X25519_LEN],
                     const uint8_t priv[NP_X25519_LEN]) {
  uint8_t k[NP_X25519_LEN];
  int rv;
  clamp(k, priv);
  rv = wc_curve25519_make_pub(NP_X25519_LEN, pub, NP_X25519_LEN, k);
  np_crypto_wipe(k, sizeof(k));
  return rv == 0 ? 0 : NP_ECRYPTO;
}

int np_x25519(uint8_t out[NP_X25519_LEN], const uint8_t priv[NP_X25519_LEN],
              const uint8_t pub[NP_X25519_LEN]) {
  uint8_t k[NP_X25519_LEN], p[NP_X25519_LEN], acc = 0;
  int rv;
  clamp(k, priv);
  memcpy(p, pub, NP_X25519_LEN);
  p[31] &= 127;
  rv = wc_curve25519_generic(NP_X25519_LEN, out, NP_X25519_LEN, k,
                             NP_X25519_LEN, p);
  np_crypto_wipe(k, sizeof(k));
  if (rv != 0)
    return NP_ECRYPTO;
  for (size_t i = 0; i < NP_X25519_LEN; i++)
    acc |= out[i];
  return acc == 0 ? NP_ECRYPTO : 0;
}

/* np_aead_seal/np_aead_open (np_aead.c) pick these or libcrypto's. */
int np_aead_seal_wc(const uint8_t key[NP_AEAD_KEY_LEN],
                    const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                    size_t adlen, const uint8_t *pt, size_t len,
                    uint8_t *out) {
  /* wolfCrypt wants non-NULL data pointers even for zero lengths. */
  static const uint8_t none[1];
  if (len > UINT32_MAX - NP_AEAD_TAG_LEN || adlen > UINT32_MAX)
    return NP_EINVAL;
  if (wc_ChaCha20Poly1305_Encrypt(key, nonce, adlen ? ad : none, (word32)adlen,
                                  len ? pt : none, (word32)len, out,
                                  out + len) != 0)
    return NP_ECRYPTO;
  return 0;
}

int np_aead_open_wc(const uint8_t key[NP_AEAD_KEY_LEN],
                    const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                    size_t adlen, const uint8_t *ct, size_t len,
                    uint8_t *out) {
  static const uint8_t none[1];
  uint8_t tag[NP_AEAD_TAG_LEN], scratch[1];
  size_t n;
  if (len < NP_AEAD_TAG_LEN || len > UINT32_MAX || adlen > UINT32_MAX)
    return NP_ECRYPTO;
  n = len - NP_AEAD_TAG_LEN;
  /* The tag may sit where the plaintext goes (in place): keep a copy. */
  memcpy(tag, ct + n, NP_AEAD_TAG_LEN);
  if (wc_ChaCha20Poly1305_Decrypt(key, nonce, adlen ? ad : none, (word32)adlen,
                                  n ? ct : none, (word32)n, tag,
                                  n ? out : scratch) != 0) {
    /* wolfCrypt writes the plaintext before it checks the tag. */
    np_crypto_wipe(out, n);
    return NP_ECRYPTO;
  }
  return 0;
}

int np_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *d1,
                   size_t len1, const uint8_t *d2, size_t len2,
                   uint8_t out[NP_SHA256_LEN]) {
  Hmac h;
  int rv = NP_ECRYPTO;
  if (keylen > UINT32_MAX || len1 > UINT32_MAX || len2 > UINT32_MAX)
    return NP_EINVAL;
  if (wc_HmacInit(&h, NULL, INVALID_DEVID) != 0)
    return NP_ECRYPTO;
  if (wc_HmacSetKey(&h, WC_SHA256, key, (word32)keylen) == 0 &&
      (len1 == 0 || wc_HmacUpdate(&h, d1, (word32)len1) == 0) &&
      (len2 == 0 || wc_HmacUpdate(&h, d2, (word32)len2) == 0) &&
      wc_HmacFinal(&h, out) == 0)
    rv = 0;
  wc_HmacFree(&h);
  np_crypto_wipe(&h, sizeof(h));
  return rv;
}
