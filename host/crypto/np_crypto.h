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
/* SHA-256 of |a| || |b|; |out| may overlap either input. */
int np_crypto_sha256_cat(const void *a, size_t alen, const void *b,
                         size_t blen, uint8_t out[NP_SHA256_LEN]);

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

/* X25519 (RFC 7748), all values in RFC byte order. The private key is
 * clamped here, so any 32 bytes are a valid private key. */
#define NP_X25519_LEN 32
int np_x25519_public(uint8_t pub[NP_X25519_LEN],
                     const uint8_t priv[NP_X25519_LEN]);
/* Shared secret of |priv| and the peer's |pub| (its top bit is ignored, as
 * RFC 7748 says). Returns 0, or NP_ECRYPTO when the result is all zero (a
 * low-order peer key: go's x/crypto refuses it as well). */
int np_x25519(uint8_t out[NP_X25519_LEN], const uint8_t priv[NP_X25519_LEN],
              const uint8_t pub[NP_X25519_LEN]);

/* ChaCha20-Poly1305 AEAD (RFC 8439). Seal writes |len| bytes of ciphertext
 * and the 16-byte tag to |out| (|len| + 16 bytes; |out| may be |pt|).
 * Open takes |len| >= 16 bytes of ciphertext||tag and writes |len| - 16
 * bytes of plaintext (|out| may be |ct|); on a bad tag it returns
 * NP_ECRYPTO and zeroes |out|. */
#define NP_AEAD_KEY_LEN 32
#define NP_AEAD_NONCE_LEN 12
#define NP_AEAD_TAG_LEN 16
int np_aead_seal(const uint8_t key[NP_AEAD_KEY_LEN],
                 const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                 size_t adlen, const uint8_t *pt, size_t len, uint8_t *out);
int np_aead_open(const uint8_t key[NP_AEAD_KEY_LEN],
                 const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                 size_t adlen, const uint8_t *ct, size_t len, uint8_t *out);
/* Which implementation np_aead_seal/open use: OpenSSL's libcrypto when
 * libcrypto.so.3 can be loaded at the first call (its AVX-512 code is
 * 2.4x faster than wolfCrypt's on the machines we measured; loaded only
 * when a Noise connection first needs it, so a host without one does not
 * pay its memory), else wolfCrypt. NP_AEAD=wolfcrypt in the environment
 * keeps wolfCrypt. "libcrypto" or "wolfcrypt". */
const char *np_aead_backend(void);
/* Tests: use |name| ("libcrypto" or "wolfcrypt") from now on. Returns 0,
 * or NP_ENOTSUP when libcrypto cannot be loaded. */
int np_aead_use(const char *name);
/* The wolfCrypt implementation, always available. */
int np_aead_seal_wc(const uint8_t key[NP_AEAD_KEY_LEN],
                    const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                    size_t adlen, const uint8_t *pt, size_t len, uint8_t *out);
int np_aead_open_wc(const uint8_t key[NP_AEAD_KEY_LEN],
                    const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                    size_t adlen, const uint8_t *ct, size_t len, uint8_t *out);
/* Free the calling thread's libcrypto contexts (np_crypto_cleanup does it
 * for the thread that calls it). */
void np_aead_thread_cleanup(void);

/* HMAC-SHA256 of |d1| || |d2| (either may be empty) under |key|. */
int np_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *d1,
                   size_t len1, const uint8_t *d2, size_t len2,
                   uint8_t out[NP_SHA256_LEN]);

/* Zero |len| bytes in a way the compiler keeps. */
void np_crypto_wipe(void *p, size_t len);

/* Release the global DRBG (tests call it for a clean leak check). */
void np_crypto_cleanup(void);

#endif
