/* wolfCrypt wrappers: the only place (with np_tls) that includes wolfSSL.
 * Everything returns 0 or a negative NP_E* code. */
#ifndef NP_CRYPTO_H
#define NP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define NP_SHA256_LEN 32
#define NP_ED25519_SEED_LEN 32
#define NP_ED25519_PUB_LEN 32
#define NP_ED25519_SIG_LEN 64

/* Fill |buf| with |len| bytes from the OS-seeded DRBG. */
int np_crypto_random(void *buf, size_t len);
void np_crypto_sha256(const void *data, size_t len, uint8_t out[NP_SHA256_LEN]);

/* Ed25519 key pair (seed + public key). */
typedef struct np_ed25519 {
  uint8_t seed[NP_ED25519_SEED_LEN];
  uint8_t pub[NP_ED25519_PUB_LEN];
} np_ed25519;

int np_ed25519_generate(np_ed25519 *k);
/* Derive pub from seed. */
int np_ed25519_from_seed(np_ed25519 *k, const uint8_t seed[NP_ED25519_SEED_LEN]);
int np_ed25519_sign(const np_ed25519 *k, const void *msg, size_t len,
                    uint8_t sig[NP_ED25519_SIG_LEN]);
/* Returns 0 if |sig| is valid for |msg| under |pub|, NP_ECRYPTO if not. */
int np_ed25519_verify(const uint8_t pub[NP_ED25519_PUB_LEN], const void *msg,
                      size_t len, const uint8_t *sig, size_t siglen);

/* Zero |len| bytes in a way the compiler keeps. */
void np_crypto_wipe(void *p, size_t len);

/* Release the global DRBG (tests call it for a clean leak check). */
void np_crypto_cleanup(void);

#endif
