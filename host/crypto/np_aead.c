/* ChaCha20-Poly1305 for np_aead_seal/np_aead_open (np_crypto.h): OpenSSL's
 * libcrypto when it can be loaded, else wolfCrypt.
 *
 * Why: a Noise (TCP) bulk transfer spends three quarters of its CPU in this
 * AEAD, and libcrypto's AVX-512 code runs it 2.4x faster than wolfCrypt's
 * AVX2 code on the machines we measured (64 KiB: 5.2 vs 2.2 GB/s; TCP bulk
 * 1.43 -> 1.81 GB/s, tests/bench/README.md). Why dlopen: libcrypto costs
 * ~1.4 MiB of resident memory once mapped; loaded at the first Noise frame,
 * a host without TCP connections keeps its 4 MiB footprint, and a machine
 * without libcrypto.so.3 (or NP_AEAD=wolfcrypt) keeps working on wolfCrypt.
 * No OpenSSL header is included: the few entry points are declared here
 * from OpenSSL 3's stable ABI, so the build needs nothing new. */
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"

#define EVP_CTRL_AEAD_GET_TAG 0x10 /* OpenSSL 3 evp.h */
#define EVP_CTRL_AEAD_SET_TAG 0x11

typedef struct lc {
  void *dl;
  void *(*ctx_new)(void);
  void (*ctx_free)(void *);
  const void *(*chacha_poly)(void);
  int (*enc_init)(void *, const void *, void *, const unsigned char *,
                  const unsigned char *);
  int (*enc_update)(void *, unsigned char *, int *, const unsigned char *,
                    int);
  int (*enc_final)(void *, unsigned char *, int *);
  int (*dec_init)(void *, const void *, void *, const unsigned char *,
                  const unsigned char *);
  int (*dec_update)(void *, unsigned char *, int *, const unsigned char *,
                    int);
  int (*dec_final)(void *, unsigned char *, int *);
  int (*ctrl)(void *, int, int, void *);
} lc;

enum { B_UNKNOWN = 0, B_LIBCRYPTO, B_WOLFCRYPT };
static int backend = B_UNKNOWN;
static lc L;

/* One context per thread and direction, set up once: a key and nonce per
 * frame re-init it without allocating. */
static __thread void *seal_ctx, *open_ctx;

/* dlsym's object pointer into a function pointer field, without the
 * type-punned store C forbids. */
static int sym(void *field, const char *name) {
  void *p = dlsym(L.dl, name);
  if (p == NULL)
    return 0;
  memcpy(field, &p, sizeof(p));
  return 1;
}
#define SYM(field, name) sym(&L.field, name)

static int lc_load(void) {
  if (L.dl)
    return 0;
  if ((L.dl = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL)) == NULL)
    return NP_ENOTSUP;
  if (SYM(ctx_new, "EVP_CIPHER_CTX_new") &&
      SYM(ctx_free, "EVP_CIPHER_CTX_free") &&
      SYM(chacha_poly, "EVP_chacha20_poly1305") &&
      SYM(enc_init, "EVP_EncryptInit_ex") &&
      SYM(enc_update, "EVP_EncryptUpdate") &&
      SYM(enc_final, "EVP_EncryptFinal_ex") &&
      SYM(dec_init, "EVP_DecryptInit_ex") &&
      SYM(dec_update, "EVP_DecryptUpdate") &&
      SYM(dec_final, "EVP_DecryptFinal_ex") &&
      SYM(ctrl, "EVP_CIPHER_CTX_ctrl") && L.chacha_poly() != NULL)
    return 0;
  dlclose(L.dl);
  memset(&L, 0, sizeof(L));
  return NP_ENOTSUP;
}

static int pick(void) {
  if (backend == B_UNKNOWN) {
    const char *e = getenv("NP_AEAD");
    backend = (e && strcmp(e, "wolfcrypt") == 0) || lc_load() != 0
                  ? B_WOLFCRYPT
                  : B_LIBCRYPTO;
  }
  return backend;
}

const char *np_aead_backend(void) {
  return pick() == B_LIBCRYPTO ? "libcrypto" : "wolfcrypt";
}

int np_aead_use(const char *name) {
  if (strcmp(name, "wolfcrypt") == 0) {
    backend = B_WOLFCRYPT;
    return 0;
  }
  if (strcmp(name, "libcrypto") == 0 && lc_load() == 0) {
    backend = B_LIBCRYPTO;
    return 0;
  }
  return NP_ENOTSUP;
}

void np_aead_thread_cleanup(void) {
  if (L.ctx_free) {
    L.ctx_free(seal_ctx);
    L.ctx_free(open_ctx);
  }
  seal_ctx = open_ctx = NULL;
}

int np_aead_seal(const uint8_t key[NP_AEAD_KEY_LEN],
                 const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                 size_t adlen, const uint8_t *pt, size_t len, uint8_t *out) {
  int n = 0, fin = 0;
  void *c;
  if (pick() != B_LIBCRYPTO)
    return np_aead_seal_wc(key, nonce, ad, adlen, pt, len, out);
  if (len > INT_MAX - NP_AEAD_TAG_LEN || adlen > INT_MAX)
    return NP_EINVAL;
  if (seal_ctx == NULL && (seal_ctx = L.ctx_new()) == NULL)
    return NP_ENOMEM;
  c = seal_ctx;
  if (L.enc_init(c, L.chacha_poly(), NULL, key, nonce) != 1 ||
      (adlen && L.enc_update(c, NULL, &n, ad, (int)adlen) != 1) ||
      (len && L.enc_update(c, out, &n, pt, (int)len) != 1) ||
      L.enc_final(c, out + (len ? (size_t)n : 0), &fin) != 1 ||
      L.ctrl(c, EVP_CTRL_AEAD_GET_TAG, NP_AEAD_TAG_LEN, out + len) != 1)
    return NP_ECRYPTO;
  return 0;
}

int np_aead_open(const uint8_t key[NP_AEAD_KEY_LEN],
                 const uint8_t nonce[NP_AEAD_NONCE_LEN], const uint8_t *ad,
                 size_t adlen, const uint8_t *ct, size_t len, uint8_t *out) {
  uint8_t tag[NP_AEAD_TAG_LEN];
  int n = 0, fin = 0;
  size_t pl;
  void *c;
  if (pick() != B_LIBCRYPTO)
    return np_aead_open_wc(key, nonce, ad, adlen, ct, len, out);
  if (len < NP_AEAD_TAG_LEN || len > INT_MAX || adlen > INT_MAX)
    return NP_ECRYPTO;
  if (open_ctx == NULL && (open_ctx = L.ctx_new()) == NULL)
    return NP_ENOMEM;
  c = open_ctx;
  pl = len - NP_AEAD_TAG_LEN;
  /* The tag may sit where the plaintext goes (in place): keep a copy. */
  memcpy(tag, ct + pl, NP_AEAD_TAG_LEN);
  if (L.dec_init(c, L.chacha_poly(), NULL, key, nonce) != 1 ||
      L.ctrl(c, EVP_CTRL_AEAD_SET_TAG, NP_AEAD_TAG_LEN, tag) != 1 ||
      (adlen && L.dec_update(c, NULL, &n, ad, (int)adlen) != 1) ||
      (pl && L.dec_update(c, out, &n, ct, (int)pl) != 1) ||
      L.dec_final(c, out + (pl ? (size_t)n : 0), &fin) != 1) {
    /* The plaintext is written before the tag is checked. */
    np_crypto_wipe(out, pl);
    return NP_ECRYPTO;
  }
  return 0;
}
