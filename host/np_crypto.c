#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ed25519.h>
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
