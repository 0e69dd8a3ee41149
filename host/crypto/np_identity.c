/* The host key. Ed25519 goes through np_crypto; the other types are decoded
 * from PrivateKey.Data by wolfCrypt at each signature, so np_identity stays
 * a plain value (copyable, wiped by np_identity_clear) with no wolfSSL type
 * in its header. */
#include "np_identity.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/signature.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "np_err.h"
#include "proto/keys.pb-c.h"

#define KEYFILE_MAX 4096
#define SECP256K1_LEN 32

/* secp256k1 group order n: a private scalar is in [1, n-1]. */
static const uint8_t secp256k1_n[SECP256K1_LEN] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
    0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};

/* n / 2: a secp256k1 signature's s must not exceed it (low-S form). */
static const uint8_t secp256k1_half_n[SECP256K1_LEN] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
    0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};

const char *np_identity_type_name(int type) {
  switch (type) {
  case NP_KEY_RSA:
    return "RSA";
  case NP_KEY_ED25519:
    return "Ed25519";
  case NP_KEY_SECP256K1:
    return "secp256k1";
  case NP_KEY_ECDSA:
    return "ECDSA";
  }
  return "unknown";
}

/* ---- wolfCrypt keys (RSA, secp256k1, ECDSA) ------------------------------ */

typedef struct wkey {
  int type;
  int inited;
  RsaKey rsa;
  ecc_key ecc;
} wkey;

static void wk_close(wkey *w) {
  if (!w->inited)
    return;
  if (w->type == NP_KEY_RSA)
    wc_FreeRsaKey(&w->rsa);
  else
    wc_ecc_free(&w->ecc);
  w->inited = 0;
}

/* PKCS#8 wraps the same DER go writes: skip to it when present. */
static word32 pkcs8_offset(const uint8_t *d, size_t n) {
  word32 idx = 0;
  if (wc_GetPkcs8TraditionalOffset((byte *)d, &idx, (word32)n) < 0)
    return 0;
  return idx;
}

static int valid_scalar(const uint8_t *d) {
  int zero = 1;
  for (size_t i = 0; i < SECP256K1_LEN; i++)
    if (d[i] != 0)
      zero = 0;
  return !zero && memcmp(d, secp256k1_n, SECP256K1_LEN) < 0;
}

/* Decode PrivateKey.Data of |type| into |w|. NP_EINVAL when malformed,
 * NP_ENOTSUP for an RSA size outside the host-key range. */
static int wk_open(wkey *w, int type, const uint8_t *d, size_t n) {
  word32 idx;
  memset(w, 0, sizeof(*w));
  w->type = type;
  if (n == 0 || n > NP_IDENTITY_PRIV_MAX)
    return n == 0 ? NP_EINVAL : NP_ENOTSUP;
  switch (type) {
  case NP_KEY_RSA: {
    int bits;
    if (wc_InitRsaKey(&w->rsa, NULL) != 0)
      return NP_ENOMEM;
    w->inited = 1;
    idx = pkcs8_offset(d, n);
    if (wc_RsaPrivateKeyDecode(d, &idx, &w->rsa, (word32)n) != 0 || idx != n)
      return NP_EINVAL;
    bits = wc_RsaEncryptSize(&w->rsa) * 8;
    if (bits < NP_IDENTITY_RSA_MIN_BITS || bits > NP_IDENTITY_RSA_MAX_BITS)
      return NP_ENOTSUP;
    return 0;
  }
  case NP_KEY_SECP256K1:
    if (n != SECP256K1_LEN || !valid_scalar(d))
      return NP_EINVAL;
    if (wc_ecc_init(&w->ecc) != 0)
      return NP_ENOMEM;
    w->inited = 1;
    if (wc_ecc_import_private_key_ex(d, SECP256K1_LEN, NULL, 0, &w->ecc,
                                     ECC_SECP256K1) != 0 ||
        wc_ecc_make_pub(&w->ecc, NULL) != 0)
      return NP_EINVAL;
    return 0;
  case NP_KEY_ECDSA:
    if (wc_ecc_init(&w->ecc) != 0)
      return NP_ENOMEM;
    w->inited = 1;
    idx = pkcs8_offset(d, n);
    if (wc_EccPrivateKeyDecode(d, &idx, &w->ecc, (word32)n) != 0 || idx != n)
      return NP_EINVAL;
    /* SEC1 allows leaving the public key out. */
    if (w->ecc.type == ECC_PRIVATEKEY_ONLY &&
        wc_ecc_make_pub(&w->ecc, NULL) != 0)
      return NP_EINVAL;
    if (wc_ecc_check_key(&w->ecc) != 0)
      return NP_EINVAL;
    return 0;
  }
  return NP_ENOTSUP;
}

/* The canonical PrivateKey.Data (what go-libp2p marshals) and the
 * PublicKey.Data of an opened key. */
static int wk_export(wkey *w, uint8_t *priv, size_t *privlen, uint8_t *pub,
                     size_t *publen) {
  word32 l;
  int n;
  switch (w->type) {
  case NP_KEY_RSA:
    if ((n = wc_RsaKeyToDer(&w->rsa, priv, (word32)*privlen)) <= 0)
      return NP_ELIMIT;
    *privlen = (size_t)n;
    if ((n = wc_RsaKeyToPublicDer(&w->rsa, pub, (word32)*publen)) <= 0)
      return NP_ELIMIT;
    *publen = (size_t)n;
    return 0;
  case NP_KEY_SECP256K1:
    l = (word32)*privlen;
    if (l < SECP256K1_LEN ||
        wc_ecc_export_private_only(&w->ecc, priv, &l) != 0 ||
        l != SECP256K1_LEN)
      return NP_ECRYPTO;
    *privlen = l;
    l = (word32)*publen;
    if (wc_ecc_export_x963_ex(&w->ecc, pub, &l, 1) != 0 || l != 33)
      return NP_ECRYPTO;
    *publen = l;
    return 0;
  case NP_KEY_ECDSA:
    if ((n = wc_EccKeyToDer(&w->ecc, priv, (word32)*privlen)) <= 0)
      return NP_ELIMIT;
    *privlen = (size_t)n;
    if ((n = wc_EccPublicKeyToDer(&w->ecc, pub, (word32)*publen, 1)) <= 0)
      return NP_ELIMIT;
    *publen = (size_t)n;
    return 0;
  }
  return NP_ENOTSUP;
}

/* Rewrite the DER signature |sig| in low-S form (s := n - s when s > n/2),
 * as go (decred) writes them: js-libp2p (noble, lowS) and libsecp256k1
 * refuse the other half, which wolfCrypt produces half of the time. */
static int k1_low_s(uint8_t *sig, word32 *siglen, word32 cap) {
  uint8_t r[40], sv[40], sn[SECP256K1_LEN];
  word32 rl = sizeof(r), sl = sizeof(sv), out = cap, pl = SECP256K1_LEN;
  const uint8_t *p = sn;
  int borrow = 0;
  if (wc_ecc_sig_to_rs(sig, *siglen, r, &rl, sv, &sl) != 0 ||
      sl > SECP256K1_LEN)
    return NP_ECRYPTO;
  memset(sn, 0, sizeof(sn));
  memcpy(sn + SECP256K1_LEN - sl, sv, sl);
  if (memcmp(sn, secp256k1_half_n, SECP256K1_LEN) <= 0)
    return 0;
  for (int i = SECP256K1_LEN - 1; i >= 0; i--) {
    int d = secp256k1_n[i] - sn[i] - borrow;
    borrow = d < 0;
    sn[i] = (uint8_t)(d + (borrow ? 256 : 0));
  }
  while (pl > 1 && *p == 0)
    p++, pl--;
  if (wc_ecc_rs_raw_to_sig(r, rl, p, pl, sig, &out) != 0)
    return NP_ECRYPTO;
  *siglen = out;
  return 0;
}

static int wk_sign(wkey *w, const void *msg, size_t len, uint8_t *sig,
                   size_t cap, size_t *siglen) {
  WC_RNG rng;
  word32 sl = (word32)(cap > UINT32_MAX ? UINT32_MAX : cap);
  int rv = NP_ECRYPTO;
  if (len > UINT32_MAX)
    return NP_ELIMIT;
  if (wc_InitRng(&rng) != 0)
    return NP_ECRYPTO;
  if (w->type == NP_KEY_RSA) {
    if ((word32)wc_RsaEncryptSize(&w->rsa) > sl)
      rv = NP_ELIMIT;
    else if (wc_SignatureGenerate(WC_HASH_TYPE_SHA256,
                                  WC_SIGNATURE_TYPE_RSA_W_ENC, msg,
                                  (word32)len, sig, &sl, &w->rsa,
                                  sizeof(w->rsa), &rng) == 0)
      rv = 0;
  } else {
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    if ((word32)wc_ecc_sig_size(&w->ecc) > sl)
      rv = NP_ELIMIT;
    else if (wc_Sha256Hash(msg, (word32)len, h) == 0 &&
             wc_ecc_sign_hash(h, sizeof(h), sig, &sl, &rng, &w->ecc) == 0)
      rv = w->type == NP_KEY_SECP256K1
               ? k1_low_s(sig, &sl, (word32)(cap > UINT32_MAX ? UINT32_MAX
                                                                : cap))
               : 0;
  }
  wc_FreeRng(&rng);
  if (rv == 0)
    *siglen = sl;
  return rv;
}

/* ---- identities ---------------------------------------------------------- */

static int set_pub(np_identity *id, int type, const uint8_t *data,
                   size_t len) {
  Np__Keys__PublicKey pk = NP__KEYS__PUBLIC_KEY__INIT;
  np_ssize n;
  id->type = type;
  pk.type = (Np__Keys__KeyType)type;
  pk.data.data = (uint8_t *)data;
  pk.data.len = len;
  if (np__keys__public_key__get_packed_size(&pk) > sizeof(id->pub_pb))
    return NP_ELIMIT;
  id->pub_pb_len = np__keys__public_key__pack(&pk, id->pub_pb);
  if (np_peerid_from_pubkey(&id->id, id->pub_pb, id->pub_pb_len) != 0)
    return NP_EINVAL;
  n = np_peerid_to_string(&id->id, id->id_str, sizeof(id->id_str));
  return n < 0 ? (int)n : 0;
}

int np_identity_from_key(np_identity *id, const np_ed25519 *key) {
  memset(id, 0, sizeof(*id));
  id->key = *key;
  return set_pub(id, NP_KEY_ED25519, id->key.pub, NP_ED25519_PUB_LEN);
}

/* A key of another type from its PrivateKey.Data: decoded, stored in the
 * canonical form, and checked by a signature its public key verifies (a
 * key whose parts disagree is corrupt, not a key to trust). */
static int from_wkey(np_identity *id, int type, const uint8_t *d, size_t n) {
  static const char probe[] = "natpeer host key self-test";
  wkey w;
  uint8_t pub[NP_PUBKEY_PB_MAX], sig[NP_IDENTITY_SIG_MAX];
  size_t publen = sizeof(pub), siglen = 0;
  int rv;
  memset(id, 0, sizeof(*id));
  id->priv_len = sizeof(id->priv);
  if ((rv = wk_open(&w, type, d, n)) == 0 &&
      (rv = wk_export(&w, id->priv, &id->priv_len, pub, &publen)) == 0 &&
      (rv = set_pub(id, type, pub, publen)) == 0)
    rv = wk_sign(&w, probe, sizeof(probe) - 1, sig, sizeof(sig), &siglen);
  wk_close(&w);
  np_crypto_wipe(&w, sizeof(w));
  if (rv == 0 && np_pubkey_verify(id->pub_pb, id->pub_pb_len, probe,
                                  sizeof(probe) - 1, sig, siglen, NULL,
                                  NULL) != 0)
    rv = NP_EINVAL;
  if (rv != 0)
    np_crypto_wipe(id, sizeof(*id));
  return rv;
}

int np_identity_generate(np_identity *id) {
  np_ed25519 k;
  int rv = np_ed25519_generate(&k);
  if (rv == 0)
    rv = np_identity_from_key(id, &k);
  np_crypto_wipe(&k, sizeof(k));
  return rv;
}

int np_identity_generate_type(np_identity *id, int type) {
  WC_RNG rng;
  wkey w;
  uint8_t der[NP_IDENTITY_PRIV_MAX];
  word32 l = sizeof(der);
  int n, rv = NP_ECRYPTO;
  if (type == NP_KEY_ED25519)
    return np_identity_generate(id);
  if (type != NP_KEY_RSA && type != NP_KEY_SECP256K1 && type != NP_KEY_ECDSA)
    return NP_ENOTSUP;
  if (wc_InitRng(&rng) != 0)
    return NP_ECRYPTO;
  memset(&w, 0, sizeof(w));
  w.type = type;
  if (type == NP_KEY_RSA) {
    if (wc_InitRsaKey(&w.rsa, NULL) == 0) {
      w.inited = 1;
      if (wc_MakeRsaKey(&w.rsa, 2048, WC_RSA_EXPONENT, &rng) == 0 &&
          (n = wc_RsaKeyToDer(&w.rsa, der, sizeof(der))) > 0) {
        l = (word32)n;
        rv = 0;
      }
    }
  } else if (wc_ecc_init(&w.ecc) == 0) {
    w.inited = 1;
    if (wc_ecc_make_key_ex(&rng, 32, &w.ecc,
                           type == NP_KEY_SECP256K1 ? ECC_SECP256K1
                                                    : ECC_SECP256R1) == 0) {
      if (type == NP_KEY_SECP256K1)
        rv = wc_ecc_export_private_only(&w.ecc, der, &l) == 0 &&
                     l == SECP256K1_LEN
                 ? 0
                 : NP_ECRYPTO;
      else if ((n = wc_EccKeyToDer(&w.ecc, der, sizeof(der))) > 0) {
        l = (word32)n;
        rv = 0;
      }
    }
  }
  wk_close(&w);
  np_crypto_wipe(&w, sizeof(w));
  wc_FreeRng(&rng);
  if (rv == 0)
    rv = from_wkey(id, type, der, l);
  np_crypto_wipe(der, sizeof(der));
  return rv;
}

int np_identity_decode_private(np_identity *id, const uint8_t *buf,
                               size_t len) {
  Np__Keys__PrivateKey *pk;
  np_ed25519 k;
  int rv = NP_EINVAL;
  if (len > KEYFILE_MAX)
    return NP_ELIMIT;
  pk = np__keys__private_key__unpack(NULL, len, buf);
  if (pk == NULL)
    return NP_EINVAL;
  switch ((int)pk->type) {
  case NP_KEY_ED25519:
    if (pk->data.len == 64 ||
        (pk->data.len == 96 &&
         memcmp(pk->data.data + 32, pk->data.data + 64, 32) == 0)) {
      /* Derive the public key and insist it matches the stored one: a file
       * whose halves disagree is corrupt, not a key to trust. */
      if (np_ed25519_from_seed(&k, pk->data.data) == 0 &&
          memcmp(k.pub, pk->data.data + 32, 32) == 0)
        rv = np_identity_from_key(id, &k);
      np_crypto_wipe(&k, sizeof(k));
    }
    break;
  case NP_KEY_RSA:
  case NP_KEY_SECP256K1:
  case NP_KEY_ECDSA:
    rv = from_wkey(id, (int)pk->type, pk->data.data, pk->data.len);
    break;
  default:
    rv = NP_ENOTSUP;
  }
  if (pk->data.data)
    np_crypto_wipe(pk->data.data, pk->data.len);
  np__keys__private_key__free_unpacked(pk, NULL);
  return rv;
}

long np_identity_encode_private(const np_identity *id, uint8_t *out,
                                size_t cap) {
  Np__Keys__PrivateKey pk = NP__KEYS__PRIVATE_KEY__INIT;
  uint8_t data[64];
  size_t n;
  pk.type = (Np__Keys__KeyType)id->type;
  if (id->type == NP_KEY_ED25519) {
    memcpy(data, id->key.seed, 32);
    memcpy(data + 32, id->key.pub, 32);
    pk.data.data = data;
    pk.data.len = sizeof(data);
  } else {
    pk.data.data = (uint8_t *)id->priv;
    pk.data.len = id->priv_len;
  }
  if (np__keys__private_key__get_packed_size(&pk) > cap) {
    np_crypto_wipe(data, sizeof(data));
    return NP_ELIMIT;
  }
  n = np__keys__private_key__pack(&pk, out);
  np_crypto_wipe(data, sizeof(data));
  return (long)n;
}

int np_identity_sign(const np_identity *id, const void *msg, size_t len,
                     uint8_t *sig, size_t cap, size_t *siglen) {
  wkey w;
  int rv;
  if (id->type == NP_KEY_ED25519) {
    if (cap < NP_ED25519_SIG_LEN)
      return NP_ELIMIT;
    if ((rv = np_ed25519_sign(&id->key, msg, len, sig)) == 0)
      *siglen = NP_ED25519_SIG_LEN;
    return rv;
  }
  if ((rv = wk_open(&w, id->type, id->priv, id->priv_len)) == 0)
    rv = wk_sign(&w, msg, len, sig, cap, siglen);
  wk_close(&w);
  np_crypto_wipe(&w, sizeof(w));
  return rv;
}

void np_identity_clear(np_identity *id) { np_crypto_wipe(id, sizeof(*id)); }

static int mkdirs(const char *dir) {
  char buf[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof(buf))
    return -1;
  memcpy(buf, dir, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  if (mkdir(buf, 0700) != 0 && errno != EEXIST)
    return -1;
  return 0;
}

int np_identity_save(const np_identity *id, const char *path, char *err,
                     size_t errlen) {
  uint8_t buf[KEYFILE_MAX];
  char tmp[4200], dir[4096], dummy[8];
  long n;
  int fd, rv, e;
  const char *slash = strrchr(path, '/');
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  if (slash && slash != path) {
    size_t dl = (size_t)(slash - path);
    if (dl >= sizeof(dir)) {
      snprintf(err, errlen, "%s: path too long", path);
      return NP_EINVAL;
    }
    memcpy(dir, path, dl);
    dir[dl] = '\0';
    if (mkdirs(dir) != 0) {
      snprintf(err, errlen, "%s: cannot create directory %s: %s", path, dir,
               strerror(errno));
      return NP_ESYS;
    }
  }
  n = np_identity_encode_private(id, buf, sizeof(buf));
  if (n < 0) {
    snprintf(err, errlen, "%s: key does not fit a key file", path);
    return (int)n;
  }
  /* Write a 0600 temp file, then link: a crash never leaves a half key. */
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot create key file: %s", path,
             strerror(errno));
    np_crypto_wipe(buf, sizeof(buf));
    return NP_ESYS;
  }
  rv = fchmod(fd, 0600) == 0 && write(fd, buf, (size_t)n) == n &&
               fsync(fd) == 0
           ? 0
           : NP_ESYS;
  np_crypto_wipe(buf, sizeof(buf));
  if (close(fd) != 0)
    rv = NP_ESYS;
  /* link() fails if another process created the key meanwhile: keep
   * theirs rather than replacing an identity someone may already use. */
  if (rv == 0 && link(tmp, path) != 0)
    rv = NP_ESYS;
  e = errno;
  if (rv != 0)
    snprintf(err, errlen, "%s: cannot write key file: %s", path,
             strerror(e));
  unlink(tmp);
  errno = e;
  return rv;
}

static int create_key(np_identity *id, const char *path, char *err,
                      size_t errlen) {
  int rv;
  if ((rv = np_identity_generate(id)) != 0) {
    snprintf(err, errlen, "%s: key generation failed: %s", path,
             np_strerror(rv));
    return rv;
  }
  rv = np_identity_save(id, path, err, errlen);
  if (rv != 0) {
    int e = errno;
    np_identity_clear(id);
    errno = e;
  }
  return rv;
}

int np_identity_load(np_identity *id, const char *path, int *created,
                     char *err, size_t errlen) {
  struct stat st;
  uint8_t buf[KEYFILE_MAX + 1];
  ssize_t n;
  int fd, rv;
  char dummy[8];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = '\0';
  if (created)
    *created = 0;
  /* O_NONBLOCK: a FIFO or device must not hang us before the S_ISREG
   * check (it has no effect on a regular file). */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) {
    rv = create_key(id, path, err, errlen);
    if (rv == 0 && created)
      *created = 1;
    if (rv == NP_ESYS && errno == EEXIST)
      return np_identity_load(id, path, created, err, errlen);
    return rv;
  }
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open key file: %s", path,
             strerror(errno));
    return errno == EACCES ? NP_EPERM : NP_ESYS;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: key file is not a regular file", path);
    close(fd);
    return NP_EINVAL;
  }
  if (st.st_mode & 077) {
    snprintf(err, errlen,
             "%s: key file is accessible by group or others (mode %04o); "
             "fix: chmod 600 %s",
             path, (unsigned)(st.st_mode & 07777), path);
    close(fd);
    return NP_EPERM;
  }
  n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n < 0) {
    snprintf(err, errlen, "%s: read failed: %s", path, strerror(errno));
    return NP_ESYS;
  }
  rv = np_identity_decode_private(id, buf, (size_t)n);
  np_crypto_wipe(buf, sizeof(buf));
  if (rv == NP_ENOTSUP)
    snprintf(err, errlen,
             "%s: key not supported for a host identity (key types: "
             "Ed25519, RSA of %d..%d bits, secp256k1, ECDSA)",
             path, NP_IDENTITY_RSA_MIN_BITS, NP_IDENTITY_RSA_MAX_BITS);
  else if (rv != 0)
    snprintf(err, errlen,
             "%s: not a valid libp2p PrivateKey (%s); move it away to "
             "generate a new identity",
             path, n > KEYFILE_MAX ? "larger than 4 KiB" : np_strerror(rv));
  return rv;
}
