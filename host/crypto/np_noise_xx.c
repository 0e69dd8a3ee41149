/* Noise XX over np_crypto (X25519, ChaCha20-Poly1305, SHA-256, HMAC).
 * Section numbers refer to the Noise Protocol Framework, revision 34. */
#include <string.h>

#include "np_noise_xx.h"

/* §5.1: nonce = 32 zero bits || 64-bit little-endian counter. */
static void nonce12(uint8_t out[NP_AEAD_NONCE_LEN], uint64_t n) {
  memset(out, 0, 4);
  for (int i = 0; i < 8; i++)
    out[4 + i] = (uint8_t)(n >> (8 * i));
}

np_ssize np_noise_cs_encrypt(np_noise_cs *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *pt, size_t len, uint8_t *out) {
  uint8_t nonce[NP_AEAD_NONCE_LEN];
  if (!cs->has_k) {
    if (len)
      memmove(out, pt, len);
    return (np_ssize)len;
  }
  /* 2^64-1 is reserved (§5.1): fail instead of reusing or wrapping. */
  if (cs->n == UINT64_MAX)
    return NP_ELIMIT;
  nonce12(nonce, cs->n);
  if (np_aead_seal(cs->k, nonce, ad, adlen, pt, len, out) != 0)
    return NP_ECRYPTO;
  cs->n++;
  return (np_ssize)(len + NP_NOISE_TAGLEN);
}

np_ssize np_noise_cs_decrypt(np_noise_cs *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *ct, size_t len, uint8_t *out) {
  uint8_t nonce[NP_AEAD_NONCE_LEN];
  if (!cs->has_k) {
    if (len)
      memmove(out, ct, len);
    return (np_ssize)len;
  }
  if (cs->n == UINT64_MAX)
    return NP_ELIMIT;
  if (len < NP_NOISE_TAGLEN)
    return NP_ECRYPTO;
  nonce12(nonce, cs->n);
  if (np_aead_open(cs->k, nonce, ad, adlen, ct, len, out) != 0)
    return NP_ECRYPTO;
  cs->n++;
  return (np_ssize)(len - NP_NOISE_TAGLEN);
}

/* ---- SymmetricState (§5.2) ----------------------------------------------- */

static int mix_hash(np_noise_xx *hs, const uint8_t *data, size_t len) {
  return np_crypto_sha256_cat(hs->h, sizeof(hs->h), data, len, hs->h);
}

/* HKDF(ck, ikm) with two outputs (§4.3): ck = out1, key = out2. */
static int mix_key(np_noise_xx *hs, const uint8_t *ikm, size_t len) {
  uint8_t tk[32], o1[32], o2[32];
  static const uint8_t one = 1, two = 2;
  int rv = np_hmac_sha256(hs->ck, 32, ikm, len, NULL, 0, tk);
  if (rv == 0)
    rv = np_hmac_sha256(tk, 32, &one, 1, NULL, 0, o1);
  if (rv == 0)
    rv = np_hmac_sha256(tk, 32, o1, 32, &two, 1, o2);
  if (rv == 0) {
    memcpy(hs->ck, o1, 32);
    memcpy(hs->cs.k, o2, 32);
    hs->cs.has_k = 1;
    hs->cs.n = 0;
  }
  np_crypto_wipe(tk, sizeof(tk));
  np_crypto_wipe(o1, sizeof(o1));
  np_crypto_wipe(o2, sizeof(o2));
  return rv;
}

static int mix_dh(np_noise_xx *hs, const uint8_t priv[32],
                  const uint8_t pub[32]) {
  uint8_t dh[32];
  int rv = np_x25519(dh, priv, pub);
  if (rv == 0)
    rv = mix_key(hs, dh, sizeof(dh));
  np_crypto_wipe(dh, sizeof(dh));
  return rv;
}

/* EncryptAndHash: |out| gets len (+16 once keyed) bytes. */
static np_ssize encrypt_hash(np_noise_xx *hs, const uint8_t *pt, size_t len,
                             uint8_t *out) {
  np_ssize n = np_noise_cs_encrypt(&hs->cs, hs->h, sizeof(hs->h), pt, len, out);
  if (n >= 0 && mix_hash(hs, out, (size_t)n) != 0)
    return NP_ECRYPTO;
  return n;
}

static np_ssize decrypt_hash(np_noise_xx *hs, const uint8_t *ct, size_t len,
                             uint8_t *out) {
  uint8_t h[NP_NOISE_HASHLEN];
  np_ssize n;
  /* h must cover the ciphertext, which |out| may overwrite (in place). */
  if (np_crypto_sha256_cat(hs->h, sizeof(hs->h), ct, len, h) != 0)
    return NP_ECRYPTO;
  n = np_noise_cs_decrypt(&hs->cs, hs->h, sizeof(hs->h), ct, len, out);
  if (n >= 0)
    memcpy(hs->h, h, sizeof(h));
  return n;
}

/* ---- HandshakeState (§5.3), pattern XX (§7.5) ---------------------------- */

int np_noise_xx_init(np_noise_xx *hs, int initiator, const uint8_t *prologue,
                     size_t plen, const uint8_t s[32], const uint8_t *e) {
  memset(hs, 0, sizeof(*hs));
  hs->initiator = initiator != 0;
  /* The name is exactly HASHLEN bytes: h = name, unhashed (§5.2). */
  memcpy(hs->h, NP_NOISE_NAME, NP_NOISE_HASHLEN);
  memcpy(hs->ck, hs->h, NP_NOISE_HASHLEN);
  memcpy(hs->s, s, 32);
  if (np_x25519_public(hs->s_pub, hs->s) != 0 ||
      mix_hash(hs, prologue, plen) != 0)
    goto fail;
  if (e != NULL) {
    memcpy(hs->e, e, 32);
    hs->has_e = 1;
  }
  return 0;
fail:
  np_noise_xx_wipe(hs);
  return NP_ECRYPTO;
}

static int our_turn(const np_noise_xx *hs) {
  return hs->msg < 3 && (hs->msg % 2 == 0) == hs->initiator;
}

/* Token "e" when writing. */
static int write_e(np_noise_xx *hs, uint8_t *out) {
  if (!hs->has_e) {
    if (np_crypto_random(hs->e, 32) != 0)
      return NP_ECRYPTO;
    hs->has_e = 1;
  }
  if (np_x25519_public(hs->e_pub, hs->e) != 0)
    return NP_ECRYPTO;
  memcpy(out, hs->e_pub, 32);
  return mix_hash(hs, hs->e_pub, 32) == 0 ? 0 : NP_ECRYPTO;
}

np_ssize np_noise_xx_write(np_noise_xx *hs, const uint8_t *payload, size_t plen,
                           uint8_t *out, size_t cap) {
  size_t off = 0;
  np_ssize n;
  int rv = 0;
  if (hs->fail || !our_turn(hs))
    return NP_EINVAL;
  /* Keys and tags of this step, then the payload (encrypted from 2 on). */
  static const size_t fixed[3] = {32, 32 + 48 + 16, 48 + 16};
  if (plen > cap || cap - plen < fixed[hs->msg])
    return NP_ELIMIT;
  switch (hs->msg) {
  case 0: /* -> e */
    rv = write_e(hs, out);
    off = 32;
    break;
  case 1: /* <- e, ee, s, es */
    if ((rv = write_e(hs, out)) != 0 || (rv = mix_dh(hs, hs->e, hs->re)) != 0)
      break;
    if ((n = encrypt_hash(hs, hs->s_pub, 32, out + 32)) < 0) {
      rv = (int)n;
      break;
    }
    off = 32 + (size_t)n;
    rv = mix_dh(hs, hs->s, hs->re);
    break;
  case 2: /* -> s, se */
    if ((n = encrypt_hash(hs, hs->s_pub, 32, out)) < 0) {
      rv = (int)n;
      break;
    }
    off = (size_t)n;
    rv = mix_dh(hs, hs->s, hs->re);
    break;
  }
  if (rv == 0) {
    n = encrypt_hash(hs, payload, plen, out + off);
    if (n < 0)
      rv = (int)n;
    else
      off += (size_t)n;
  }
  if (rv != 0) {
    hs->fail = rv;
    return rv;
  }
  hs->msg++;
  return (np_ssize)off;
}

np_ssize np_noise_xx_read(np_noise_xx *hs, const uint8_t *msg, size_t len,
                          uint8_t *payload, size_t cap) {
  size_t off = 0;
  np_ssize n;
  int rv = 0;
  if (hs->fail || hs->msg >= 3 || our_turn(hs))
    return NP_EINVAL;
  /* Shortest message: keys and tags of this step, empty payload. */
  static const size_t fixed[3] = {32, 32 + 48 + 16, 48 + 16};
  if (len < fixed[hs->msg]) {
    rv = NP_EPROTO;
    goto out;
  }
  if (cap < len) {
    rv = NP_ELIMIT;
    goto out;
  }
  switch (hs->msg) {
  case 0: /* -> e */
    memcpy(hs->re, msg, 32);
    rv = mix_hash(hs, hs->re, 32) == 0 ? 0 : NP_ECRYPTO;
    off = 32;
    break;
  case 1: /* <- e, ee, s, es */
    memcpy(hs->re, msg, 32);
    if (mix_hash(hs, hs->re, 32) != 0) {
      rv = NP_ECRYPTO;
      break;
    }
    if ((rv = mix_dh(hs, hs->e, hs->re)) != 0)
      break;
    if ((n = decrypt_hash(hs, msg + 32, 48, hs->rs)) < 0) {
      rv = (int)n;
      break;
    }
    hs->has_rs = 1;
    off = 80;
    rv = mix_dh(hs, hs->e, hs->rs);
    break;
  case 2: /* -> s, se */
    if ((n = decrypt_hash(hs, msg, 48, hs->rs)) < 0) {
      rv = (int)n;
      break;
    }
    hs->has_rs = 1;
    off = 48;
    rv = mix_dh(hs, hs->e, hs->rs);
    break;
  }
  if (rv == 0) {
    n = decrypt_hash(hs, msg + off, len - off, payload);
    if (n < 0)
      rv = (int)n;
    else
      off = (size_t)n;
  }
out:
  if (rv != 0) {
    hs->fail = rv;
    return rv;
  }
  hs->msg++;
  return (np_ssize)off;
}

int np_noise_xx_split(np_noise_xx *hs, np_noise_cs *tx, np_noise_cs *rx,
                      uint8_t hash[NP_NOISE_HASHLEN]) {
  uint8_t tk[32], k1[32], k2[32];
  static const uint8_t one = 1, two = 2;
  int rv;
  if (hs->fail || hs->msg != 3)
    return NP_EINVAL;
  /* HKDF(ck, zero-length ikm) (§5.2 Split). */
  rv = np_hmac_sha256(hs->ck, 32, NULL, 0, NULL, 0, tk);
  if (rv == 0)
    rv = np_hmac_sha256(tk, 32, &one, 1, NULL, 0, k1);
  if (rv == 0)
    rv = np_hmac_sha256(tk, 32, k1, 32, &two, 1, k2);
  if (rv == 0) {
    np_noise_cs *c1 = hs->initiator ? tx : rx, *c2 = hs->initiator ? rx : tx;
    memcpy(c1->k, k1, 32);
    memcpy(c2->k, k2, 32);
    c1->n = c2->n = 0;
    c1->has_k = c2->has_k = 1;
    if (hash != NULL)
      memcpy(hash, hs->h, NP_NOISE_HASHLEN);
  }
  np_crypto_wipe(tk, sizeof(tk));
  np_crypto_wipe(k1, sizeof(k1));
  np_crypto_wipe(k2, sizeof(k2));
  return rv == 0 ? 0 : NP_ECRYPTO;
}

const uint8_t *np_noise_xx_remote_static(const np_noise_xx *hs) {
  return hs->has_rs ? hs->rs : NULL;
}

const uint8_t *np_noise_xx_local_static(const np_noise_xx *hs) {
  return hs->s_pub;
}

void np_noise_xx_wipe(np_noise_xx *hs) { np_crypto_wipe(hs, sizeof(*hs)); }
