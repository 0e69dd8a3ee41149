/* libp2p TLS over wolfSSL for ngtcp2 (libp2p/specs tls/tls.md). The API
 * paths and pitfalls are in the project notes wolfssl-libp2p-tls.md: the
 * verify callback runs only on errors (always, here: a libp2p certificate
 * never chains to a CA), and that error masks date and extension problems,
 * so the callback re-checks the whole certificate itself. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/quic.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/signature.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "np_tls.h"
#include "np_err.h"
#include "np_log.h"
#include "np_pubkey.h"

#define SUB "tls"
#define HANDSHAKE_PREFIX "libp2p-tls-handshake:"
#define HANDSHAKE_PREFIX_LEN (sizeof(HANDSHAKE_PREFIX) - 1)
#define SPKI_MAX 2048    /* RSA-8192 SPKI is ~1.1 KB */
#define OWN_CERT_MAX 2048 /* the extension alone is ~1.1 KB with RSA-4096 */
#define WHY_MAX 200

/* 1.3.6.1.4.1.53594.1.1 as DER contents, and as arcs (wolfSSL's callback). */
static const uint8_t libp2p_oid[] = {0x2b, 0x06, 0x01, 0x04, 0x01,
                                     0x83, 0xa2, 0x5a, 0x01, 0x01};
static const char libp2p_oid_str[] = "1.3.6.1.4.1.53594.1.1";

/* Certificates that passed check_cert, by SHA-256 of their DER: a peer
 * presents the same certificate on every connection of its lifetime, and
 * its self-signature and host-key signature do not change. What TLS checks
 * per handshake (the CertificateVerify proving the certificate key) still
 * runs every time; the validity window is rechecked on every hit. */
#define CERT_MEMO 128
typedef struct cert_memo {
  uint8_t hash[WC_SHA256_DIGEST_SIZE];
  np_peerid id;
  int64_t not_before, not_after;
  uint32_t used; /* LRU tick, 0 = empty */
} cert_memo;

struct np_tls {
  WOLFSSL_CTX *cli, *srv;
  int stream; /* plain TLS 1.3 contexts (np_tls_new_stream), not QUIC */
  uint8_t cert[OWN_CERT_MAX];
  size_t certlen;
  cert_memo memo[CERT_MEMO];
  uint32_t memo_tick;
};

struct np_tls_conn {
  np_tls *t;
  WOLFSSL *ssl;
  int is_server;
  int has_expected;
  np_peerid expected;
  int verified; /* the certificate check passed */
  int done;     /* np_tls_conn_finish passed */
  int fail;     /* first failure, NP_E* */
  np_peerid peer;
  char why[WHY_MAX];
};

/* ---- DER reading (only what a certificate needs) ------------------------ */

typedef struct der {
  const uint8_t *p;
  size_t n;
} der;

/* Reads one TLV with a single-byte tag and a minimal definite length into
 * |*tag|, |*val| (contents) and, if |tlv| is not NULL, the whole element. */
static int der_get(der *in, uint8_t *tag, der *val, der *tlv) {
  size_t len, hl, k;
  if (in->n < 2 || (in->p[0] & 0x1f) == 0x1f)
    return -1;
  if (in->p[1] < 0x80) {
    len = in->p[1];
    hl = 2;
  } else {
    k = in->p[1] & 0x7f;
    /* 0x80 is BER's indefinite length; 3 length bytes exceed any cert. */
    if (k == 0 || k > 3 || in->n < 2 + k || in->p[2] == 0)
      return -1;
    len = 0;
    for (size_t i = 0; i < k; i++)
      len = (len << 8) | in->p[2 + i];
    if (len < 0x80)
      return -1; /* not minimal */
    hl = 2 + k;
  }
  if (len > in->n - hl)
    return -1;
  *tag = in->p[0];
  val->p = in->p + hl;
  val->n = len;
  if (tlv != NULL) {
    tlv->p = in->p;
    tlv->n = hl + len;
  }
  in->p += hl + len;
  in->n -= hl + len;
  return 0;
}

static int der_expect(der *in, uint8_t tag, der *val, der *tlv) {
  uint8_t t;
  der save = *in;
  if (der_get(in, &t, val, tlv) != 0 || t != tag) {
    *in = save;
    return -1;
  }
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (years counted from
 * March so that the leap day ends the year). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  int64_t era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const uint8_t *p, size_t n, unsigned *out) {
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(p[i] - '0');
  }
  *out = v;
  return 0;
}

/* RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ or GeneralizedTime
 * YYYYMMDDHHMMSSZ, always UTC, always with seconds. */
static int der_time(uint8_t tag, const der *v, int64_t *out) {
  static const unsigned mdays[] = {31, 28, 31, 30, 31, 30,
                                   31, 31, 30, 31, 30, 31};
  unsigned y, mo, d, h, mi, s, yl;
  const uint8_t *p = v->p;
  if (tag == 0x17 && v->n == 13)
    yl = 2;
  else if (tag == 0x18 && v->n == 15)
    yl = 4;
  else
    return -1;
  if (p[v->n - 1] != 'Z' || digits(p, yl, &y) || digits(p + yl, 2, &mo) ||
      digits(p + yl + 2, 2, &d) || digits(p + yl + 4, 2, &h) ||
      digits(p + yl + 6, 2, &mi) || digits(p + yl + 8, 2, &s))
    return -1;
  if (yl == 2)
    y += y < 50 ? 2000 : 1900;
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59)
    return -1;
  if (d >
      mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 || y % 400 == 0))))
    return -1;
  *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
  return 0;
}

/* The pieces of a certificate the libp2p checks need. */
typedef struct cert_parts {
  der spki; /* whole SubjectPublicKeyInfo TLV */
  int64_t not_before, not_after;
  der ext;   /* contents of the libp2p extnValue (SignedKey) */
  int n_ext; /* how many libp2p extensions */
} cert_parts;

static int walk_cert(const uint8_t *buf, size_t len, cert_parts *cp,
                     const char **why) {
  der in = {buf, len}, cert, tbs, v, ver, tmp, exts, ext, oid, val;
  uint8_t tag;
  memset(cp, 0, sizeof(*cp));
  *why = "malformed certificate DER";
  if (der_expect(&in, 0x30, &cert, NULL) || in.n != 0)
    return NP_EPROTO;
  if (der_expect(&cert, 0x30, &tbs, NULL) ||
      der_expect(&cert, 0x30, &v, NULL) || der_expect(&cert, 0x03, &v, NULL) ||
      cert.n != 0)
    return NP_EPROTO;
  /* version [0] EXPLICIT INTEGER: v3 (2) is needed for extensions. */
  if (der_expect(&tbs, 0xa0, &ver, NULL) || der_expect(&ver, 0x02, &v, NULL) ||
      ver.n != 0 || v.n != 1 || v.p[0] != 2) {
    *why = "not an X.509 v3 certificate";
    return NP_EPROTO;
  }
  if (der_expect(&tbs, 0x02, &v, NULL) || /* serialNumber */
      der_expect(&tbs, 0x30, &v, NULL) || /* signature */
      der_expect(&tbs, 0x30, &v, NULL))   /* issuer */
    return NP_EPROTO;
  if (der_expect(&tbs, 0x30, &tmp, NULL) || /* validity */
      der_get(&tmp, &tag, &v, NULL) || der_time(tag, &v, &cp->not_before) ||
      der_get(&tmp, &tag, &v, NULL) || der_time(tag, &v, &cp->not_after) ||
      tmp.n != 0) {
    *why = "malformed validity dates";
    return NP_EPROTO;
  }
  if (der_expect(&tbs, 0x30, &v, NULL) ||    /* subject */
      der_expect(&tbs, 0x30, &v, &cp->spki)) /* subjectPublicKeyInfo */
    return NP_EPROTO;
  if (cp->spki.n > SPKI_MAX) {
    *why = "certificate key too large";
    return NP_ELIMIT;
  }
  if (tbs.n > 0 && (tbs.p[0] == 0x81 || tbs.p[0] == 0xa1 || tbs.p[0] == 0x82 ||
                    tbs.p[0] == 0xa2)) {
    *why = "certificate has a unique ID";
    return NP_EPROTO;
  }
  if (der_expect(&tbs, 0xa3, &tmp, NULL) || tbs.n != 0 ||
      der_expect(&tmp, 0x30, &exts, NULL) || tmp.n != 0 || exts.n == 0) {
    *why = "certificate has no extensions";
    return NP_EPROTO;
  }
  while (exts.n > 0) {
    if (der_expect(&exts, 0x30, &ext, NULL) ||
        der_expect(&ext, 0x06, &oid, NULL))
      return NP_EPROTO;
    if (ext.n > 0 && ext.p[0] == 0x01 &&
        (der_expect(&ext, 0x01, &v, NULL) || v.n != 1))
      return NP_EPROTO;
    if (der_expect(&ext, 0x04, &val, NULL) || ext.n != 0)
      return NP_EPROTO;
    if (oid.n == sizeof(libp2p_oid) &&
        memcmp(oid.p, libp2p_oid, sizeof(libp2p_oid)) == 0) {
      cp->ext = val;
      cp->n_ext++;
    }
  }
  if (cp->n_ext != 1) {
    *why = cp->n_ext ? "duplicate libp2p extension" : "no libp2p extension";
    return NP_EPROTO;
  }
  return 0;
}

/* ---- wolfSSL's view: critical extensions, self-signature ---------------- */

/* wolfSSL's unknown-extension callback has no context argument; the
 * extension the walker found is compared by address, so only exactly that
 * one passes as "understood" (an OID merely decoding to the same 16-bit
 * arcs does not). */
static __thread const uint8_t *tl_libp2p_ext;

static int unknown_ext_cb(const word16 *oid, word32 oid_sz, int crit,
                          const unsigned char *der_val, word32 der_sz) {
  (void)oid, (void)oid_sz, (void)der_sz;
  if (der_val != NULL && der_val == tl_libp2p_ext)
    return 0;
  return crit ? ASN_CRIT_EXT_E : 0;
}

static int wolf_check(const uint8_t *buf, size_t len, const cert_parts *cp,
                      const char **why) {
  DecodedCert dc;
  int rv, out = 0;
  tl_libp2p_ext = cp->ext.p;
  wc_InitDecodedCert(&dc, buf, (word32)len, NULL);
  wc_SetUnknownExtCallback(&dc, unknown_ext_cb);
  rv = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
  tl_libp2p_ext = NULL;
  if (rv == ASN_CRIT_EXT_E) {
    *why = "unknown critical extension";
    out = NP_EPROTO;
  } else if (rv != 0) {
    *why = "certificate rejected by the wolfSSL parser";
    out = NP_EPROTO;
  } else {
    switch (dc.signatureOID) {
    case CTC_SHA256wECDSA:
    case CTC_SHA384wECDSA:
    case CTC_SHA512wECDSA:
    case CTC_SHA256wRSA:
    case CTC_SHA384wRSA:
    case CTC_SHA512wRSA:
    case CTC_ED25519:
      break;
    default:
      *why = "unsupported certificate signature algorithm";
      out = NP_ENOTSUP;
    }
    if (out == 0 &&
        (dc.publicKey == NULL ||
         wc_CheckCertSigPubKey(buf, (word32)len, NULL, dc.publicKey,
                               dc.pubKeySize, (int)dc.keyOID) != 0)) {
      *why = "bad certificate self-signature";
      out = NP_ECRYPTO;
    }
  }
  wc_FreeDecodedCert(&dc);
  return out;
}

/* ---- the host key and its signature: np_pubkey.c ---------------------- */

static int check_cert(const uint8_t *buf, size_t len, int64_t now,
                      np_peerid *id, const char **why, int64_t *not_before,
                      int64_t *not_after) {
  cert_parts cp;
  der ext, sk, pk, sig, key;
  int rv, type;
  uint8_t msg[HANDSHAKE_PREFIX_LEN + SPKI_MAX];
  np_peerid tmp;
  if (buf == NULL || len > NP_TLS_CERT_MAX) {
    *why = "certificate too large";
    return buf == NULL ? NP_EINVAL : NP_ELIMIT;
  }
  /* Cheap structural checks first, signatures last (fuzzing, hostile peers). */
  if ((rv = walk_cert(buf, len, &cp, why)) != 0)
    return rv;
  if (now < cp.not_before || now > cp.not_after) {
    *why = now < cp.not_before ? "certificate not yet valid"
                               : "certificate expired";
    return NP_ECRYPTO;
  }
  ext = cp.ext;
  *why = "malformed libp2p extension";
  if (der_expect(&ext, 0x30, &sk, NULL) || ext.n != 0 ||
      der_expect(&sk, 0x04, &pk, NULL) || der_expect(&sk, 0x04, &sig, NULL) ||
      sk.n != 0)
    return NP_EPROTO;
  if (np_pubkey_parse(pk.p, pk.n, &type, &key.p, &key.n) != 0) {
    *why = "malformed host public key";
    return NP_EPROTO;
  }
  if (type > NP_KEY_ECDSA) {
    *why = "unsupported host key type";
    return NP_ENOTSUP;
  }
  if ((rv = wolf_check(buf, len, &cp, why)) != 0)
    return rv;
  memcpy(msg, HANDSHAKE_PREFIX, HANDSHAKE_PREFIX_LEN);
  memcpy(msg + HANDSHAKE_PREFIX_LEN, cp.spki.p, cp.spki.n);
  rv =
      np_pubkey_verify_raw(type, key.p, key.n, msg,
                           HANDSHAKE_PREFIX_LEN + cp.spki.n, sig.p, sig.n, why);
  if (rv != 0)
    return rv;
  if (np_peerid_from_pubkey(&tmp, pk.p, pk.n) != 0) {
    *why = "cannot derive the peer ID";
    return NP_EPROTO;
  }
  if (id != NULL)
    *id = tmp;
  if (not_before)
    *not_before = cp.not_before;
  if (not_after)
    *not_after = cp.not_after;
  *why = "";
  return 0;
}

/* check_cert through the memo of |t|. */
static int check_cert_memo(np_tls *t, const uint8_t *buf, size_t len,
                           int64_t now, np_peerid *id, const char **why) {
  uint8_t h[WC_SHA256_DIGEST_SIZE];
  cert_memo *slot = &t->memo[0];
  int64_t nb, na;
  int rv;
  if (buf == NULL || len > NP_TLS_CERT_MAX ||
      wc_Sha256Hash(buf, (word32)len, h) != 0)
    return check_cert(buf, len, now, id, why, NULL, NULL);
  for (size_t i = 0; i < CERT_MEMO; i++) {
    cert_memo *m = &t->memo[i];
    if (m->used && memcmp(m->hash, h, sizeof(h)) == 0) {
      if (now < m->not_before || now > m->not_after)
        break; /* the full check says why */
      m->used = ++t->memo_tick;
      *id = m->id;
      *why = "";
      return 0;
    }
    if (m->used < slot->used)
      slot = m;
  }
  rv = check_cert(buf, len, now, id, why, &nb, &na);
  if (rv == 0) {
    memcpy(slot->hash, h, sizeof(h));
    slot->id = *id;
    slot->not_before = nb;
    slot->not_after = na;
    slot->used = ++t->memo_tick;
  }
  return rv;
}

int np_tls_verify_cert(const uint8_t *der_buf, size_t len, int64_t now_unix,
                       np_peerid *id) {
  const char *why;
  return check_cert(der_buf, len, now_unix, id, &why, NULL, NULL);
}

/* ---- certificate generation --------------------------------------------- */

static void log_wolf(const char *what, int err) {
  np_warn(SUB, "wolfssl-error call=%s wolfssl_err=%d reason=\"%s\"", what, err,
          wc_GetErrorString(err));
}

/* Writes a DER length; returns the number of bytes (|out| may be NULL). */
static size_t der_len(uint8_t *out, size_t len) {
  if (len < 0x80) {
    if (out)
      out[0] = (uint8_t)len;
    return 1;
  }
  if (len < 0x100) {
    if (out) {
      out[0] = 0x81;
      out[1] = (uint8_t)len;
    }
    return 2;
  }
  if (out) {
    out[0] = 0x82;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
  }
  return 3;
}

/* SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING } */
static size_t make_signed_key(uint8_t *out, size_t cap, const uint8_t *pk,
                              size_t pklen, const uint8_t *sig, size_t siglen) {
  size_t body, total, o = 0;
  if (pklen > cap || siglen > cap)
    return 0;
  body = 1 + der_len(NULL, pklen) + pklen + 1 + der_len(NULL, siglen) + siglen;
  total = 1 + der_len(NULL, body) + body;
  if (total > cap)
    return 0;
  out[o++] = 0x30;
  o += der_len(out + o, body);
  out[o++] = 0x04;
  o += der_len(out + o, pklen);
  memcpy(out + o, pk, pklen);
  o += pklen;
  out[o++] = 0x04;
  o += der_len(out + o, siglen);
  memcpy(out + o, sig, siglen);
  return o + siglen;
}

/* A full Time TLV for |t|: UTCTime through 2049, GeneralizedTime after
 * (RFC 5280 4.1.2.5), as go-libp2p writes them. */
static int make_time(uint8_t *out, int *outlen, time_t t) {
  struct tm tm;
  char s[20];
  int n;
  if (gmtime_r(&t, &tm) == NULL)
    return -1;
  if (tm.tm_year + 1900 < 2050) {
    n = snprintf(s, sizeof(s), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    out[0] = 0x17;
  } else {
    n = snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    out[0] = 0x18;
  }
  if (n != 13 && n != 15)
    return -1;
  out[1] = (uint8_t)n;
  memcpy(out + 2, s, (size_t)n);
  *outlen = n + 2;
  return 0;
}

static int make_cert(np_tls *t, const np_identity *id, uint8_t *keyder,
                     size_t *keylen) {
  WC_RNG rng;
  ecc_key k;
  Cert *cert = NULL;
  uint8_t spki[128], msg[HANDSHAKE_PREFIX_LEN + 128], sig[NP_IDENTITY_SIG_MAX];
  /* SignedKey: two DER OCTET STRINGs of at most 600 and 512 bytes */
  uint8_t sk[NP_PUBKEY_PB_MAX + NP_IDENTITY_SIG_MAX + 16], rnd[8];
  size_t sklen, siglen = 0;
  int n, rv = NP_ECRYPTO, have_key = 0;
  time_t now = time(NULL);

  if ((n = wc_InitRng(&rng)) != 0) {
    log_wolf("wc_InitRng", n);
    return NP_ECRYPTO;
  }
  if ((cert = calloc(1, sizeof(*cert))) == NULL) {
    rv = NP_ENOMEM;
    goto out;
  }
  if ((n = wc_ecc_init(&k)) != 0) {
    log_wolf("wc_ecc_init", n);
    goto out;
  }
  have_key = 1;
  if ((n = wc_ecc_make_key_ex(&rng, 32, &k, ECC_SECP256R1)) != 0) {
    log_wolf("wc_ecc_make_key_ex", n);
    goto out;
  }
  if ((n = wc_EccPublicKeyToDer(&k, spki, sizeof(spki), 1)) <= 0) {
    log_wolf("wc_EccPublicKeyToDer", n);
    goto out;
  }
  memcpy(msg, HANDSHAKE_PREFIX, HANDSHAKE_PREFIX_LEN);
  memcpy(msg + HANDSHAKE_PREFIX_LEN, spki, (size_t)n);
  if ((rv = np_identity_sign(id, msg, HANDSHAKE_PREFIX_LEN + (size_t)n, sig,
                              sizeof(sig), &siglen)) != 0)
    goto out;
  rv = NP_ECRYPTO;
  sklen = make_signed_key(sk, sizeof(sk), id->pub_pb, id->pub_pb_len, sig,
                          siglen);
  if (sklen == 0)
    goto out;

  if ((n = wc_InitCert(cert)) != 0) {
    log_wolf("wc_InitCert", n);
    goto out;
  }
  cert->sigType = CTC_SHA256wECDSA;
  /* Subject {serialNumber: random}, as go-libp2p; issuer = subject. */
  if (wc_RNG_GenerateBlock(&rng, rnd, sizeof(rnd)) != 0)
    goto out;
  snprintf(cert->subject.serialDev, sizeof(cert->subject.serialDev),
           "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
           rnd[4], rnd[5], rnd[6], rnd[7]);
  /* One hour of clock skew allowance, 100 years of validity (go-libp2p). */
  if (make_time(cert->beforeDate, &cert->beforeDateSz, now - 3600) != 0 ||
      make_time(cert->afterDate, &cert->afterDateSz,
                now + (time_t)100 * 365 * 86400) != 0)
    goto out;
  /* Non-critical: rustls/webpki reject unknown critical extensions. The
   * OID string and the value must live until wc_MakeCert_ex. */
  if ((n = wc_SetCustomExtension(cert, 0, libp2p_oid_str, sk, (word32)sklen)) !=
      0) {
    log_wolf("wc_SetCustomExtension", n);
    goto out;
  }
  if ((n = wc_MakeCert_ex(cert, t->cert, sizeof(t->cert), ECC_TYPE, &k,
                          &rng)) <= 0) {
    log_wolf("wc_MakeCert_ex", n);
    goto out;
  }
  if ((n = wc_SignCert_ex(cert->bodySz, cert->sigType, t->cert, sizeof(t->cert),
                          ECC_TYPE, &k, &rng)) <= 0) {
    log_wolf("wc_SignCert_ex", n);
    goto out;
  }
  t->certlen = (size_t)n;
  if ((n = wc_EccKeyToDer(&k, keyder, (word32)*keylen)) <= 0) {
    log_wolf("wc_EccKeyToDer", n);
    goto out;
  }
  *keylen = (size_t)n;
  rv = 0;
out:
  if (have_key)
    wc_ecc_free(&k);
  free(cert);
  wc_FreeRng(&rng);
  return rv;
}

/* ---- TLS contexts and connections --------------------------------------- */

static void conn_fail(np_tls_conn *c, int err, const char *fmt, ...)
    NP_PRINTF(3, 4);

static void conn_fail(np_tls_conn *c, int err, const char *fmt, ...) {
  va_list ap;
  if (c->fail != 0)
    return; /* keep the first reason */
  c->fail = err;
  va_start(ap, fmt);
  vsnprintf(c->why, sizeof(c->why), fmt, ap);
  va_end(ap);
}

static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store) {
  np_tls_conn *c;
  np_peerid id;
  const char *why = "";
  char want[NP_PEERID_STRMAX], got[NP_PEERID_STRMAX];
  int rv;
  (void)preverify; /* 0 in practice (no CA); checked from scratch anyway */
  if (store == NULL || (c = store->userCtx) == NULL)
    return 0;
  if (c->fail != 0)
    return 0;
  if (store->totalCerts != 1 || store->certs == NULL) {
    conn_fail(c, NP_EPROTO, "invalid certificate: chain of %d certificates",
              store->totalCerts);
    return 0;
  }
  rv = check_cert_memo(c->t, store->certs[0].buffer, store->certs[0].length,
                       time(NULL), &id, &why);
  if (rv != 0) {
    conn_fail(c, rv, "invalid certificate: %s", why);
    return 0;
  }
  if (c->has_expected && !np_peerid_equal(&id, &c->expected)) {
    np_peerid_to_string(&c->expected, want, sizeof(want));
    np_peerid_to_string(&id, got, sizeof(got));
    conn_fail(c, NP_EPEERID, "peer ID mismatch: expected %s presented %s", want,
              got);
    np_warn(SUB, "peer-id-mismatch expected=%s presented=%s", want, got);
    return 0;
  }
  c->peer = id;
  c->verified = 1;
  return 1;
}

static WOLFSSL_CTX *make_ctx(int server, const np_tls *t, const uint8_t *key,
                             size_t keylen, int quic) {
  WOLFSSL_CTX *ctx = wolfSSL_CTX_new(server ? wolfTLSv1_3_server_method()
                                            : wolfTLSv1_3_client_method());
  int n;
  if (ctx == NULL) {
    np_warn(SUB, "wolfssl-error call=wolfSSL_CTX_new");
    return NULL;
  }
  if (!quic)
    n = 0; /* records over a byte stream: wolfSSL's own I/O callbacks */
  else if (server)
    n = ngtcp2_crypto_wolfssl_configure_server_context(ctx);
  else
    n = ngtcp2_crypto_wolfssl_configure_client_context(ctx);
  if (n != 0) {
    np_warn(SUB, "ngtcp2-error call=ngtcp2_crypto_wolfssl_configure_context");
    goto fail;
  }
  if ((n = wolfSSL_CTX_use_certificate_buffer(ctx, t->cert, (long)t->certlen,
                                              WOLFSSL_FILETYPE_ASN1)) !=
      WOLFSSL_SUCCESS) {
    log_wolf("wolfSSL_CTX_use_certificate_buffer", n);
    goto fail;
  }
  if ((n = wolfSSL_CTX_use_PrivateKey_buffer(
           ctx, key, (long)keylen, WOLFSSL_FILETYPE_ASN1)) != WOLFSSL_SUCCESS) {
    log_wolf("wolfSSL_CTX_use_PrivateKey_buffer", n);
    goto fail;
  }
  /* Client certificates are mandatory (spec); no CA, so the callback decides.
   */
  wolfSSL_CTX_set_verify(ctx,
                         server ? WOLFSSL_VERIFY_PEER |
                                      WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                : WOLFSSL_VERIFY_PEER,
                         verify_cb);
  /* libp2p never resumes (pitfall 4). */
  if (server && wolfSSL_CTX_no_ticket_TLSv13(ctx) != 0) {
    np_warn(SUB, "wolfssl-error call=wolfSSL_CTX_no_ticket_TLSv13");
    goto fail;
  }
  return ctx;
fail:
  wolfSSL_CTX_free(ctx);
  return NULL;
}

static int tls_new(np_tls **pt, const np_identity *id, int quic) {
  np_tls *t;
  uint8_t key[256];
  size_t keylen = sizeof(key);
  int rv;
  const char *why;
  if (pt == NULL || id == NULL)
    return NP_EINVAL;
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return NP_ENOMEM;
  if ((rv = make_cert(t, id, key, &keylen)) != 0)
    goto fail;
  /* Self-check: what peers will verify must verify here. */
  if ((rv = check_cert(t->cert, t->certlen, (int64_t)time(NULL), NULL, &why,
                       NULL, NULL)) !=
      0) {
    np_warn(SUB, "own-cert-invalid reason=\"%s\"", why);
    goto fail;
  }
  rv = NP_ECRYPTO;
  t->stream = !quic;
  if ((t->cli = make_ctx(0, t, key, keylen, quic)) == NULL ||
      (t->srv = make_ctx(1, t, key, keylen, quic)) == NULL)
    goto fail;
  np_crypto_wipe(key, sizeof(key));
  np_debug(SUB, "cert-ready peer=%s der_len=%zu", id->id_str, t->certlen);
  *pt = t;
  return 0;
fail:
  np_crypto_wipe(key, sizeof(key));
  np_tls_del(t);
  return rv;
}

int np_tls_new(np_tls **pt, const np_identity *id) {
  return tls_new(pt, id, 1);
}

int np_tls_new_stream(np_tls **pt, const np_identity *id) {
  return tls_new(pt, id, 0);
}

void np_tls_del(np_tls *t) {
  if (t == NULL)
    return;
  if (t->cli)
    wolfSSL_CTX_free(t->cli);
  if (t->srv)
    wolfSSL_CTX_free(t->srv);
  free(t);
}

const uint8_t *np_tls_cert(const np_tls *t, size_t *len) {
  *len = t->certlen;
  return t->cert;
}

/* A connection of either kind (QUIC or a byte stream): the peer to
 * expect, ALPN list |alpn| (comma-separated, the first is preferred), key
 * shares, role. */
static int conn_setup(np_tls *t, int is_server, const np_peerid *expected,
                      char *alpn, np_tls_conn **pc) {
  np_tls_conn *c;
  /* X25519 first: wolfSSL's default share (P-256 after P-521/384 in the
   * list) makes rustls answer with a HelloRetryRequest (pitfall 3). */
  int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1,
                  WOLFSSL_ECC_SECP384R1};
  int n;
  if ((c = calloc(1, sizeof(*c))) == NULL)
    return NP_ENOMEM;
  c->t = t;
  c->is_server = is_server;
  if (expected != NULL) {
    c->expected = *expected;
    c->has_expected = 1;
  }
  if ((c->ssl = wolfSSL_new(is_server ? t->srv : t->cli)) == NULL) {
    free(c);
    return NP_ENOMEM;
  }
  wolfSSL_SetCertCbCtx(c->ssl, c);
  if ((n = wolfSSL_UseALPN(c->ssl, alpn, (word32)strlen(alpn),
                           WOLFSSL_ALPN_FAILED_ON_MISMATCH)) !=
      WOLFSSL_SUCCESS) {
    log_wolf("wolfSSL_UseALPN", n);
    goto fail;
  }
  if ((n = wolfSSL_set_groups(c->ssl, groups, (int)NP_ARRAY_LEN(groups))) !=
      WOLFSSL_SUCCESS) {
    log_wolf("wolfSSL_set_groups", n);
    goto fail;
  }
  if (is_server)
    wolfSSL_set_accept_state(c->ssl);
  else
    wolfSSL_set_connect_state(c->ssl);
  *pc = c;
  return 0;
fail:
  wolfSSL_free(c->ssl);
  free(c);
  return NP_ECRYPTO;
}

int np_tls_conn_new(np_tls_conn **pc, np_tls *t, int is_server,
                    const np_peerid *expected, void *ngtcp2_conn_ref) {
  np_tls_conn *c;
  char alpn[] = NP_TLS_ALPN;
  int rv;
  if (pc == NULL || t == NULL || ngtcp2_conn_ref == NULL || t->stream ||
      (is_server && expected != NULL))
    return NP_EINVAL;
  if ((rv = conn_setup(t, is_server, expected, alpn, &c)) != 0)
    return rv;
  /* ngtcp2's helper owns app_data (pitfall 6); ours is the cert ctx. */
  wolfSSL_set_app_data(c->ssl, ngtcp2_conn_ref);
  wolfSSL_set_quic_use_legacy_codepoint(c->ssl, 0);
  *pc = c;
  return 0;
}

void *np_tls_conn_native(np_tls_conn *c) { return c->ssl; }

int np_tls_conn_finish(np_tls_conn *c) {
  char *name = NULL;
  word16 len = 0;
  if (c->fail != 0)
    return c->fail;
  if (!c->verified) {
    /* Only reachable if wolfSSL accepted a certificate without asking. */
    conn_fail(c, NP_ECRYPTO, "peer certificate was not verified");
    return c->fail;
  }
  if (wolfSSL_ALPN_GetProtocol(c->ssl, &name, &len) != WOLFSSL_SUCCESS ||
      len != strlen(NP_TLS_ALPN) || memcmp(name, NP_TLS_ALPN, len) != 0) {
    conn_fail(c, NP_ENOPROTO, "ALPN \"%s\" not negotiated", NP_TLS_ALPN);
    return c->fail;
  }
  c->done = 1;
  return 0;
}

int np_tls_conn_peer(const np_tls_conn *c, np_peerid *id) {
  if (c->fail != 0)
    return c->fail;
  if (!c->done)
    return NP_ENOENT;
  if (id != NULL)
    *id = c->peer;
  return 0;
}

const char *np_tls_conn_error(const np_tls_conn *c) { return c->why; }

void np_tls_conn_del(np_tls_conn *c) {
  if (c == NULL)
    return;
  wolfSSL_free(c->ssl);
  free(c);
}

int np_tls_conn_new_stream(np_tls_conn **pc, np_tls *t, int is_server,
                           const np_peerid *expected, const char *alpn) {
  char list[NP_TLS_ALPN_LIST_MAX];
  if (pc == NULL || t == NULL || !t->stream || alpn == NULL ||
      alpn[0] == '\0' || strlen(alpn) >= sizeof(list) ||
      (is_server && expected != NULL))
    return NP_EINVAL;
  /* No common entry aborts (libp2p-wire.md §4); every libp2p peer lists
   * "libp2p". wolfSSL's list is comma-separated and the server takes the
   * first client entry it also lists. */
  snprintf(list, sizeof(list), "%s", alpn);
  return conn_setup(t, is_server, expected, list, pc);
}

int np_tls_conn_finish_stream(np_tls_conn *c, const char **alpn,
                              size_t *alpnlen) {
  char *name = NULL;
  word16 len = 0;
  if (c->fail != 0)
    return c->fail;
  if (!c->verified) {
    conn_fail(c, NP_ECRYPTO, "peer certificate was not verified");
    return c->fail;
  }
  if (wolfSSL_ALPN_GetProtocol(c->ssl, &name, &len) != WOLFSSL_SUCCESS ||
      name == NULL)
    len = 0;
  *alpn = len > 0 ? name : NULL;
  *alpnlen = len;
  c->done = 1;
  return 0;
}
