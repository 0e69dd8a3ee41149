/* Noise: the XX state machine against the cacophony test vector, then two
 * libp2p ends in memory (payload, peer IDs, muxers, transport, framing) and
 * every way a peer can break the handshake or a frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_identity.h"
#include "np_noise.h"
#include "np_noise_xx.h"
#include "np_peerid.h"
#include "tap.h"
#include "test_keys.h"

static size_t unhex(uint8_t *out, const char *hex) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
  return n;
}

/* ---- known answers ---------------------------------------------------------
 */

/* Noise_XX_25519_ChaChaPoly_SHA256 from the cacophony test vectors, as
 * shipped in mcginty/snow tests/vectors/cacophony.txt (commit 8ac60f5). */
static const char kat_prologue[] = "4a6f686e2047616c74";
static const char kat_init_static[] =
    "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1";
static const char kat_init_ephemeral[] =
    "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a";
static const char kat_resp_static[] =
    "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893";
static const char kat_resp_ephemeral[] =
    "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b";
static const char kat_hash[] =
    "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e";
static const struct {
  const char *payload, *ciphertext;
} kat_msgs[] = {
    {"4c756477696720766f6e204d69736573",
     "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c7564"
     "77696720766f6e204d69736573"},
    {"4d757272617920526f746862617264",
     "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad"
     "1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4"
     "f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd"
     "8d162c9326ad"},
    {"462e20412e20486179656b",
     "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475"
     "b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d9594"
     "1d49b25030"},
    {"4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146c"
                               "ee53d5e1df"},
    {"4a65616e2d426170746973746520536179",
     "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5"},
    {"457567656e2042f6686d20766f6e2042617765726b",
     "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502"
     "ae3f"},
};

static void kat_cacophony(void) {
  uint8_t pro[16], is[32], ie[32], rs[32], re[32], h[32], hi[32], hr[32];
  uint8_t pl[64], ct[256], buf[256], got[256];
  size_t plen, ctlen, prolen = unhex(pro, kat_prologue);
  np_noise_xx ini, resp;
  np_noise_cs itx, irx, rtx, rrx;
  int all_w = 1, all_r = 1;
  unhex(is, kat_init_static);
  unhex(ie, kat_init_ephemeral);
  unhex(rs, kat_resp_static);
  unhex(re, kat_resp_ephemeral);
  unhex(h, kat_hash);
  ok(np_noise_xx_init(&ini, 1, pro, prolen, is, ie) == 0 &&
         np_noise_xx_init(&resp, 0, pro, prolen, rs, re) == 0,
     "xx: both sides start with fixed keys");
  for (int i = 0; i < 3; i++) {
    np_noise_xx *w = i % 2 == 0 ? &ini : &resp, *r = i % 2 == 0 ? &resp : &ini;
    np_ssize n, m;
    plen = unhex(pl, kat_msgs[i].payload);
    ctlen = unhex(ct, kat_msgs[i].ciphertext);
    n = np_noise_xx_write(w, pl, plen, buf, sizeof(buf));
    if (n < 0 || (size_t)n != ctlen || memcmp(buf, ct, ctlen) != 0)
      all_w = 0;
    m = np_noise_xx_read(r, ct, ctlen, got, sizeof(got));
    if (m < 0 || (size_t)m != plen || memcmp(got, pl, plen) != 0)
      all_r = 0;
  }
  ok(all_w, "xx: handshake messages 1-3 equal the vector's ciphertexts");
  ok(all_r, "xx: reading them yields the vector's payloads");
  ok(memcmp(np_noise_xx_remote_static(&resp), np_noise_xx_local_static(&ini),
            32) == 0,
     "xx: the responder learned the initiator's static key");
  ok(np_noise_xx_split(&ini, &itx, &irx, hi) == 0 &&
         np_noise_xx_split(&resp, &rtx, &rrx, hr) == 0,
     "xx: split on both sides");
  is_mem(hi, 32, h, 32, "xx: initiator handshake hash matches");
  is_mem(hr, 32, h, 32, "xx: responder handshake hash matches");
  all_w = all_r = 1;
  for (int i = 3; i < 6; i++) {
    /* Messages keep alternating: the responder sends the fourth. */
    np_noise_cs *tx = i % 2 == 0 ? &itx : &rtx, *rx = i % 2 == 0 ? &rrx : &irx;
    np_ssize n, m;
    plen = unhex(pl, kat_msgs[i].payload);
    ctlen = unhex(ct, kat_msgs[i].ciphertext);
    n = np_noise_cs_encrypt(tx, NULL, 0, pl, plen, buf);
    if (n < 0 || (size_t)n != ctlen || memcmp(buf, ct, ctlen) != 0)
      all_w = 0;
    m = np_noise_cs_decrypt(rx, NULL, 0, ct, ctlen, got);
    if (m < 0 || (size_t)m != plen || memcmp(got, pl, plen) != 0)
      all_r = 0;
  }
  ok(all_w, "xx: transport messages 4-6 equal the vector's ciphertexts");
  ok(all_r, "xx: and decrypt to its payloads");
  is_int(np_noise_xx_write(&ini, pl, 1, buf, sizeof(buf)), NP_EINVAL,
         "xx: no fourth handshake message");
  np_noise_xx_wipe(&ini);
  np_noise_xx_wipe(&resp);
}

static void kat_x25519(void) {
  /* RFC 7748 §6.1 */
  uint8_t a[32], ap[32], b[32], bp[32], k[32], s1[32], s2[32], zero[32] = {0};
  unhex(a, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  unhex(b, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  unhex(k, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  ok(np_x25519_public(ap, a) == 0 && np_x25519_public(bp, b) == 0,
     "x25519: public keys");
  unhex(s1, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  is_mem(ap, 32, s1, 32, "x25519: RFC 7748 Alice's public key");
  ok(np_x25519(s1, a, bp) == 0 && np_x25519(s2, b, ap) == 0 &&
         memcmp(s1, k, 32) == 0 && memcmp(s2, k, 32) == 0,
     "x25519: RFC 7748 shared secret, both ways");
  is_int(np_x25519(s1, a, zero), NP_ECRYPTO,
         "x25519: a low-order peer key (all-zero result) is refused");
}

static void cs_nonce_limit(void) {
  np_noise_cs tx = {{1}, UINT64_MAX - 1, 1}, rx = tx;
  uint8_t pt[4] = {1, 2, 3, 4}, ct[20], out[4];
  ok(np_noise_cs_encrypt(&tx, NULL, 0, pt, 4, ct) == 20,
     "nonce 2^64-2 still encrypts");
  is_int(np_noise_cs_encrypt(&tx, NULL, 0, pt, 4, ct), NP_ELIMIT,
         "nonce 2^64-1 is refused for encryption");
  ok(tx.n == UINT64_MAX, "the send counter does not wrap");
  is_int(np_noise_cs_encrypt(&tx, NULL, 0, pt, 4, ct), NP_ELIMIT,
         "and stays exhausted");
  ok(np_noise_cs_decrypt(&rx, NULL, 0, ct, 20, out) == 4 &&
         memcmp(out, pt, 4) == 0,
     "nonce 2^64-2 still decrypts");
  is_int(np_noise_cs_decrypt(&rx, NULL, 0, ct, 20, out), NP_ELIMIT,
         "nonce 2^64-1 is refused for decryption");
}

/* ---- two libp2p ends --------------------------------------------------------
 */

static np_identity id_a, id_b, id_c;
static const char *const mux_a[] = {"/mplex/6.7.0", "/yamux/1.0.0"};
static const char *const mux_b[] = {"/yamux/1.0.0"};

/* Move a's output into b (handshake while b is not done, else transport is
 * not expected here). Returns b's result. */
static np_ssize hs_move(np_noise *a, np_noise *b) {
  const uint8_t *o;
  size_t n = np_noise_output(a, &o);
  np_ssize k;
  if (n == 0)
    return 0;
  k = np_noise_handshake_feed(b, o, n);
  if (k > 0)
    np_noise_output_drain(a, (size_t)k);
  return k;
}

/* Run the handshake to its end or the first error; returns 0 or that. */
static int handshake(np_noise *i, np_noise *r) {
  for (int round = 0; round < 4; round++) {
    np_ssize k;
    if (!np_noise_done(r) && (k = hs_move(i, r)) < 0)
      return (int)k;
    if (!np_noise_done(i) && (k = hs_move(r, i)) < 0)
      return (int)k;
    if (np_noise_done(i) && np_noise_done(r))
      return 0;
  }
  return NP_EPROTO;
}

static int pair(np_noise **i, np_noise **r, const np_peerid *expect) {
  *i = *r = NULL;
  if (np_noise_new(i, 1, &id_a, expect, mux_a, 2) != 0 ||
      np_noise_new(r, 0, &id_b, NULL, mux_b, 1) != 0)
    return -1;
  return handshake(*i, *r);
}

/* Send |len| bytes from a to b through the transport, with a's output
 * drained |chunk| bytes at a time into b. Returns 0 if b got them all. */
static int transfer(np_noise *a, np_noise *b, const uint8_t *data, size_t len,
                    size_t chunk, size_t *frames) {
  size_t sent = 0, got = 0;
  uint8_t *rx = malloc(len ? len : 1);
  int rv = 0;
  *frames = 0;
  while ((sent < len || got < len) && rv == 0) {
    const uint8_t *o;
    size_t n;
    np_ssize k = np_noise_encrypt(a, data + sent, len - sent);
    if (k < 0) {
      rv = (int)k;
      break;
    }
    sent += (size_t)k;
    n = np_noise_output(a, &o);
    if (n > chunk)
      n = chunk;
    for (size_t off = 0; off < n && rv == 0;) {
      const uint8_t *pt;
      size_t ptlen;
      np_ssize m = np_noise_decrypt_feed(b, o + off, n - off, &pt, &ptlen);
      if (m < 0) {
        rv = (int)m;
        break;
      }
      off += (size_t)m;
      if (pt != NULL) {
        (*frames)++;
        if (got + ptlen > len) {
          rv = -100;
          break;
        }
        memcpy(rx + got, pt, ptlen);
        got += ptlen;
      }
    }
    np_noise_output_drain(a, n);
    if (n == 0 && k == 0 && got < len) {
      rv = -101; /* no progress */
    }
  }
  if (rv == 0 && (got != len || memcmp(rx, data, len) != 0))
    rv = -102;
  free(rx);
  return rv;
}

static void libp2p_handshake(void) {
  np_noise *i, *r;
  np_peerid pi, pr;
  const char *const *ml;
  size_t cnt;
  ok(pair(&i, &r, &id_b.id) == 0, "handshake completes (initiator expects B)");
  ok(np_noise_remote(i, &pr) == 0 && np_peerid_equal(&pr, &id_b.id),
     "initiator authenticated the responder's peer ID");
  ok(np_noise_remote(r, &pi) == 0 && np_peerid_equal(&pi, &id_a.id),
     "responder authenticated the initiator's peer ID");
  ml = np_noise_remote_muxers(r, &cnt);
  ok(cnt == 2 && strcmp(ml[0], "/mplex/6.7.0") == 0 &&
         strcmp(ml[1], "/yamux/1.0.0") == 0,
     "responder got the initiator's muxer list in order");
  ml = np_noise_remote_muxers(i, &cnt);
  ok(cnt == 1 && strcmp(ml[0], "/yamux/1.0.0") == 0,
     "initiator got the responder's muxer list");
  is_str(np_noise_muxer(i), "/yamux/1.0.0", "initiator: inlined muxer agreed");
  is_str(np_noise_muxer(r), "/yamux/1.0.0", "responder: same muxer");
  is_int(np_noise_handshake_feed(i, (const uint8_t *)"x", 1), NP_EINVAL,
         "handshake input after the end is refused");
  np_noise_del(i);
  np_noise_del(r);
}

static void muxer_cases(void) {
  np_noise *i = NULL, *r = NULL;
  static const char *const other[] = {"/mplex/6.7.0"};
  ok(np_noise_new(&i, 1, &id_a, NULL, NULL, 0) == 0 &&
         np_noise_new(&r, 0, &id_b, NULL, mux_b, 1) == 0 &&
         handshake(i, r) == 0,
     "handshake without initiator muxers");
  ok(np_noise_muxer(i) == NULL && np_noise_muxer(r) == NULL,
     "no list on one side: no inlined muxer (multistream decides)");
  np_noise_del(i);
  np_noise_del(r);
  ok(np_noise_new(&i, 1, &id_a, NULL, other, 1) == 0 &&
         np_noise_new(&r, 0, &id_b, NULL, mux_b, 1) == 0 &&
         handshake(i, r) == 0,
     "handshake with disjoint muxer lists");
  ok(np_noise_muxer(i) == NULL && np_noise_muxer(r) == NULL,
     "disjoint lists: no inlined muxer");
  np_noise_del(i);
  np_noise_del(r);
  is_int(np_noise_new(&i, 1, &id_a, NULL, (const char *const[]){""}, 1),
         NP_EINVAL, "an empty muxer name is refused");
}

static void byte_by_byte(void) {
  np_noise *i, *r;
  int rv = 0;
  ok(np_noise_new(&i, 1, &id_a, NULL, mux_a, 2) == 0 &&
         np_noise_new(&r, 0, &id_b, NULL, mux_b, 1) == 0,
     "two fresh ends");
  for (int round = 0; round < 3 && rv == 0; round++) {
    np_noise *src = round % 2 == 0 ? i : r, *dst = round % 2 == 0 ? r : i;
    const uint8_t *o;
    size_t n = np_noise_output(src, &o);
    uint8_t *copy = malloc(n);
    memcpy(copy, o, n);
    np_noise_output_drain(src, n);
    for (size_t k = 0; k < n && rv == 0; k++) {
      np_ssize m = np_noise_handshake_feed(dst, copy + k, 1);
      if (m != 1)
        rv = m < 0 ? (int)m : -1;
    }
    free(copy);
  }
  ok(rv == 0 && np_noise_done(i) && np_noise_done(r),
     "handshake fed one byte at a time completes");
  np_noise_del(i);
  np_noise_del(r);
}

static void transport(void) {
  np_noise *i, *r;
  size_t len = 1 << 20, frames;
  uint8_t *big = malloc(len);
  const uint8_t *o, *pt;
  size_t ptlen, n = 0;
  for (size_t k = 0; k < len; k++)
    big[k] = (uint8_t)(k * 31 + (k >> 9));
  ok(pair(&i, &r, NULL) == 0, "handshake for transport");
  ok(transfer(i, r, (const uint8_t *)"hello", 5, 1 << 20, &frames) == 0 &&
         frames == 1,
     "initiator -> responder, one frame");
  ok(transfer(r, i, (const uint8_t *)"world!", 6, 1 << 20, &frames) == 0,
     "responder -> initiator");
  ok(transfer(i, r, big, len, 1 << 20, &frames) == 0,
     "1 MiB initiator -> responder");
  is_int(frames, (len + NP_NOISE_PLAINTEXT_MAX - 1) / NP_NOISE_PLAINTEXT_MAX,
         "1 MiB went in frames of at most 65519 plaintext bytes");
  ok(transfer(r, i, big, len, 1000, &frames) == 0,
     "1 MiB responder -> initiator, delivered in 1000-byte pieces");
  /* frame boundary */
  ok(np_noise_encrypt(i, big, NP_NOISE_PLAINTEXT_MAX) ==
             NP_NOISE_PLAINTEXT_MAX &&
         (n = np_noise_output(i, &o)) == NP_NOISE_FRAME_MAX + 2 &&
         o[0] == 0xff && o[1] == 0xff,
     "65519 bytes make one full frame of length 65535");
  ok(np_noise_decrypt_feed(r, o, n, &pt, &ptlen) == (np_ssize)n &&
         ptlen == NP_NOISE_PLAINTEXT_MAX,
     "the full frame decrypts");
  np_noise_output_drain(i, n);
  ok(np_noise_encrypt(i, big, NP_NOISE_PLAINTEXT_MAX + 1) ==
             NP_NOISE_PLAINTEXT_MAX + 1 &&
         np_noise_output(i, &o) == NP_NOISE_FRAME_MAX + 2 + 2 + 17,
     "65520 bytes split into 65519 + 1");
  {
    size_t off = 0, total = 0;
    n = np_noise_output(i, &o);
    while (off < n) {
      np_ssize m = np_noise_decrypt_feed(r, o + off, n - off, &pt, &ptlen);
      if (m <= 0)
        break;
      off += (size_t)m;
      total += pt ? ptlen : 0;
    }
    ok(off == n && total == NP_NOISE_PLAINTEXT_MAX + 1, "both frames decrypt");
    np_noise_output_drain(i, n);
  }
  /* back-pressure */
  ok(np_noise_encrypt(i, big, len) == 4 * NP_NOISE_PLAINTEXT_MAX &&
         np_noise_encrypt(i, big, 10) == 0,
     "pending output is capped at NP_NOISE_OUT_MAX: encrypt takes 0 when "
     "full");
  n = np_noise_output(i, &o);
  np_noise_output_drain(i, n);
  np_noise_del(i);
  np_noise_del(r);
  free(big);
}

/* Initiator's message 3 and its first transport frame arrive together. */
static void early_data(void) {
  np_noise *i = NULL, *r = NULL;
  const uint8_t *o, *pt;
  size_t n, ptlen;
  np_ssize k;
  ok(np_noise_new(&i, 1, &id_a, NULL, NULL, 0) == 0 &&
         np_noise_new(&r, 0, &id_b, NULL, NULL, 0) == 0 && hs_move(i, r) > 0 &&
         hs_move(r, i) > 0 && np_noise_done(i),
     "initiator done after message 2");
  ok(np_noise_encrypt(i, (const uint8_t *)"early", 5) == 5,
     "initiator encrypts before sending message 3");
  n = np_noise_output(i, &o);
  k = np_noise_handshake_feed(r, o, n);
  ok(k > 0 && (size_t)k == n - (2 + 5 + 16) && np_noise_done(r),
     "responder's handshake stops right after message 3");
  ok(np_noise_decrypt_feed(r, o + k, n - (size_t)k, &pt, &ptlen) ==
             (np_ssize)(n - (size_t)k) &&
         ptlen == 5 && memcmp(pt, "early", 5) == 0,
     "the rest is the transport frame");
  np_noise_del(i);
  np_noise_del(r);
}

/* Flip one byte at |pos| of the next message from src to dst. */
static np_ssize tamper_move(np_noise *src, np_noise *dst, size_t pos) {
  const uint8_t *o;
  size_t n = np_noise_output(src, &o);
  uint8_t *c = malloc(n);
  np_ssize k;
  memcpy(c, o, n);
  c[pos % n] ^= 0x40;
  k = np_noise_handshake_feed(dst, c, n);
  np_noise_output_drain(src, n);
  free(c);
  return k;
}

static void tampering(void) {
  np_noise *i, *r;
  const uint8_t *o, *pt;
  size_t n, ptlen;
  uint8_t *c;
  /* message 2: its static key, then its payload */
  for (int t = 0; t < 2; t++) {
    np_noise_new(&i, 1, &id_a, NULL, NULL, 0);
    np_noise_new(&r, 0, &id_b, NULL, NULL, 0);
    hs_move(i, r);
    is_int(tamper_move(r, i, t == 0 ? 2 + 40 : 2 + 100), NP_ECRYPTO,
           "tampered message 2 (%s) is rejected",
           t == 0 ? "encrypted static key" : "payload");
    is_int(np_noise_handshake_feed(i, (const uint8_t *)"\0", 1), NP_ECRYPTO,
           "the failure sticks");
    ok(np_noise_remote(i, NULL) == NP_ENOENT, "no remote after a failure");
    np_noise_del(i);
    np_noise_del(r);
  }
  /* message 3 */
  np_noise_new(&i, 1, &id_a, NULL, NULL, 0);
  np_noise_new(&r, 0, &id_b, NULL, NULL, 0);
  hs_move(i, r);
  hs_move(r, i);
  is_int(tamper_move(i, r, 2 + 60), NP_ECRYPTO,
         "tampered message 3 is rejected");
  ok(!np_noise_done(r), "responder not done");
  is_int(np_noise_encrypt(r, (const uint8_t *)"x", 1), NP_ECRYPTO,
         "no transport after a failed handshake");
  np_noise_del(i);
  np_noise_del(r);
  /* transport frame */
  pair(&i, &r, NULL);
  np_noise_encrypt(i, (const uint8_t *)"secret", 6);
  n = np_noise_output(i, &o);
  c = malloc(n);
  memcpy(c, o, n);
  c[4] ^= 1;
  is_int(np_noise_decrypt_feed(r, c, n, &pt, &ptlen), NP_ECRYPTO,
         "tampered transport frame is rejected");
  ok(pt == NULL, "and yields no plaintext");
  is_int(np_noise_decrypt_feed(r, o, n, &pt, &ptlen), NP_ECRYPTO,
         "the connection stays failed, even for the genuine frame");
  free(c);
  np_noise_del(i);
  np_noise_del(r);
}

static void wrong_peer(void) {
  np_noise *i = NULL, *r = NULL;
  np_peerid got;
  ok(np_noise_new(&i, 1, &id_a, &id_c.id, NULL, 0) == 0 &&
         np_noise_new(&r, 0, &id_b, NULL, NULL, 0) == 0,
     "initiator expects C, dials B");
  is_int(handshake(i, r), NP_EPEERID, "wrong peer ID: NP_EPEERID");
  ok(np_noise_remote(i, &got) == NP_ENOENT, "no remote reported");
  ok(np_noise_output(i, &(const uint8_t *){NULL}) == 0,
     "initiator sent no message 3 (no identity revealed)");
  np_noise_del(i);
  np_noise_del(r);
  ok(np_noise_new(&i, 1, &id_a, NULL, NULL, 0) == 0 &&
         np_noise_new(&r, 0, &id_b, &id_c.id, NULL, 0) == 0,
     "responder expects C, A dials");
  is_int(handshake(i, r), NP_EPEERID, "responder: NP_EPEERID as well");
  np_noise_del(i);
  np_noise_del(r);
}

static void replays(void) {
  np_noise *i, *r, *i2, *r2;
  const uint8_t *o, *pt;
  size_t n, ptlen;
  uint8_t buf[512];
  /* message 1 twice: the second is read as message 3 */
  np_noise_new(&i, 1, &id_a, NULL, NULL, 0);
  np_noise_new(&r, 0, &id_b, NULL, NULL, 0);
  n = np_noise_output(i, &o);
  memcpy(buf, o, n);
  memcpy(buf + n, o, n);
  is_int(np_noise_handshake_feed(r, buf, 2 * n), NP_EPROTO,
         "replayed message 1 is rejected (too short for message 3)");
  np_noise_del(i);
  np_noise_del(r);
  /* message 3 of one session into another */
  np_noise_new(&i, 1, &id_a, NULL, NULL, 0);
  np_noise_new(&r, 0, &id_b, NULL, NULL, 0);
  np_noise_new(&i2, 1, &id_a, NULL, NULL, 0);
  np_noise_new(&r2, 0, &id_b, NULL, NULL, 0);
  hs_move(i, r);
  hs_move(r, i);
  hs_move(i2, r2);
  hs_move(r2, i2);
  n = np_noise_output(i, &o);
  is_int(np_noise_handshake_feed(r2, o, n), NP_ECRYPTO,
         "message 3 replayed into another session is rejected");
  /* message 2 replayed to an initiator already done */
  ok(hs_move(i, r) > 0 && np_noise_done(r), "first session completes");
  np_noise_encrypt(i, (const uint8_t *)"one", 3);
  n = np_noise_output(i, &o);
  memcpy(buf, o, n);
  ok(np_noise_decrypt_feed(r, buf, n, &pt, &ptlen) == (np_ssize)n && pt,
     "frame delivered once");
  is_int(np_noise_decrypt_feed(r, buf, n, &pt, &ptlen), NP_ECRYPTO,
         "the same frame replayed is rejected (nonce moved on)");
  np_noise_del(i);
  np_noise_del(r);
  np_noise_del(i2);
  np_noise_del(r2);
}

static void framing(void) {
  np_noise *i, *r;
  const uint8_t *o, *pt;
  size_t n, ptlen;
  uint8_t buf[600];
  np_ssize k;
  /* message 2 cut short, with a length prefix that matches */
  np_noise_new(&i, 1, &id_a, NULL, NULL, 0);
  np_noise_new(&r, 0, &id_b, NULL, NULL, 0);
  hs_move(i, r);
  n = np_noise_output(r, &o);
  memcpy(buf, o, 2 + 60);
  buf[0] = 0;
  buf[1] = 60;
  is_int(np_noise_handshake_feed(i, buf, 2 + 60), NP_EPROTO,
         "a 60-byte message 2 is too short: NP_EPROTO");
  np_noise_del(i);
  /* a length prefix announcing more than arrives */
  np_noise_new(&i, 1, &id_a, NULL, NULL, 0);
  memcpy(buf, o, n);
  buf[0] = 0xff;
  buf[1] = 0xff;
  k = np_noise_handshake_feed(i, buf, n);
  ok(k == (np_ssize)n && !np_noise_done(i) && np_noise_error(i) == 0,
     "a frame announcing 65535 bytes waits for them (all input taken)");
  memset(buf, 0, sizeof(buf));
  for (int t = 0; t < 110; t++)
    if ((k = np_noise_handshake_feed(i, buf, sizeof(buf))) < 0)
      break;
  is_int(k, NP_ECRYPTO, "and fails once 65535 bytes are in, not before");
  np_noise_del(i);
  np_noise_del(r);
  /* transport: empty frame, partial frame */
  pair(&i, &r, NULL);
  np_noise_encrypt(i, (const uint8_t *)"abc", 3);
  n = np_noise_output(i, &o);
  ok(np_noise_decrypt_feed(r, o, 1, &pt, &ptlen) == 1 && pt == NULL &&
         np_noise_decrypt_feed(r, o + 1, n - 2, &pt, &ptlen) ==
             (np_ssize)(n - 2) &&
         pt == NULL,
     "a truncated frame is buffered, nothing delivered");
  ok(np_noise_decrypt_feed(r, o + n - 1, 1, &pt, &ptlen) == 1 && pt &&
         ptlen == 3 && memcmp(pt, "abc", 3) == 0,
     "its last byte completes it");
  np_noise_output_drain(i, n);
  buf[0] = buf[1] = 0;
  is_int(np_noise_decrypt_feed(r, buf, 2, &pt, &ptlen), NP_EPROTO,
         "an empty transport frame (no tag) is NP_EPROTO");
  np_noise_del(i);
  np_noise_del(r);
  /* API order */
  np_noise_new(&i, 1, &id_a, NULL, NULL, 0);
  is_int(np_noise_encrypt(i, (const uint8_t *)"x", 1), NP_EINVAL,
         "encrypt before the handshake: NP_EINVAL");
  is_int(np_noise_decrypt_feed(i, buf, 2, &pt, &ptlen), NP_EINVAL,
         "decrypt before the handshake: NP_EINVAL");
  np_noise_del(i);
}

static void other_key_types(void) {
  static const struct {
    int type;
    const char *name;
  } types[] = {{NP_KEY_ECDSA, "ECDSA P-256"},
               {NP_KEY_SECP256K1, "secp256k1"},
               {NP_KEY_RSA, "RSA-2048"}};
  for (size_t t = 0; t < NP_ARRAY_LEN(types); t++) {
    tk_key key;
    np_noise *i = NULL, *r = NULL;
    np_peerid want, got;
    if (tk_make(&key, types[t].type) != 0) {
      ok(0, "%s: key generation", types[t].name);
      continue;
    }
    np_peerid_from_pubkey(&want, key.pub_pb, key.pub_pb_len);
    ok(np_noise_new_signer(&r, 0, key.pub_pb, key.pub_pb_len, tk_sign, &key,
                           NULL, mux_b, 1) == 0 &&
           np_noise_new(&i, 1, &id_a, &want, mux_a, 2) == 0 &&
           handshake(i, r) == 0,
       "%s responder: handshake completes", types[t].name);
    ok(np_noise_remote(i, &got) == 0 && np_peerid_equal(&got, &want),
       "%s responder: initiator derives its peer ID", types[t].name);
    np_noise_del(i);
    np_noise_del(r);
    ok(np_noise_new_signer(&i, 1, key.pub_pb, key.pub_pb_len, tk_sign, &key,
                           NULL, NULL, 0) == 0 &&
           np_noise_new(&r, 0, &id_b, NULL, NULL, 0) == 0 &&
           handshake(i, r) == 0 && np_noise_remote(r, &got) == 0 &&
           np_peerid_equal(&got, &want),
       "%s initiator: responder derives its peer ID", types[t].name);
    np_noise_del(i);
    np_noise_del(r);
    tk_free(&key);
  }
}

/* A signer that signs something else: the peer must refuse it. */
static int bad_sign(void *ud, const uint8_t *msg, size_t len, uint8_t *sig,
                    size_t cap, size_t *siglen) {
  (void)msg, (void)len;
  return np_identity_sign(ud, "other", 5, sig, cap, siglen);
}

static void bad_signature(void) {
  np_noise *i = NULL, *r = NULL;
  ok(np_noise_new(&i, 1, &id_a, NULL, NULL, 0) == 0 &&
         np_noise_new_signer(&r, 0, id_b.pub_pb, id_b.pub_pb_len, bad_sign,
                             &id_b, NULL, NULL, 0) == 0,
     "responder signs the wrong message");
  is_int(handshake(i, r), NP_ECRYPTO, "bad payload signature: NP_ECRYPTO");
  np_noise_del(i);
  np_noise_del(r);
  ok(np_noise_new_signer(&i, 1, id_a.pub_pb, id_a.pub_pb_len, bad_sign, &id_a,
                         NULL, NULL, 0) == 0 &&
         np_noise_new(&r, 0, &id_b, NULL, NULL, 0) == 0,
     "initiator signs the wrong message");
  is_int(handshake(i, r), NP_ECRYPTO, "responder refuses it: NP_ECRYPTO");
  np_noise_del(i);
  np_noise_del(r);
}

/* np_aead's two implementations (libcrypto when loadable, wolfCrypt) must
 * be interchangeable on the wire: each opens what the other sealed, both
 * refuse a flipped bit, in place and not. */
static void aead_backends(void) {
  static uint8_t pt[65519], ct[65519 + NP_AEAD_TAG_LEN], back[65519];
  static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 4096, 65519};
  uint8_t key[NP_AEAD_KEY_LEN], nonce[NP_AEAD_NONCE_LEN], ad[32];
  int agree = 1, refused = 1;
  np_crypto_random(key, sizeof(key));
  np_crypto_random(nonce, sizeof(nonce));
  np_crypto_random(ad, sizeof(ad));
  np_crypto_random(pt, sizeof(pt));
  if (np_aead_use("libcrypto") != 0) {
    ok(1, "# SKIP libcrypto.so.3 not loadable: wolfCrypt only");
    np_aead_use("wolfcrypt");
    return;
  }
  for (size_t k = 0; k < NP_ARRAY_LEN(sizes); k++) {
    for (int dir = 0; dir < 2; dir++) {
      size_t n = sizes[k], adl = k % 2 ? sizeof(ad) : 0;
      np_aead_use(dir ? "libcrypto" : "wolfcrypt");
      agree &= np_aead_seal(key, nonce, ad, adl, pt, n, ct) == 0;
      np_aead_use(dir ? "wolfcrypt" : "libcrypto");
      agree &= np_aead_open(key, nonce, ad, adl, ct, n + NP_AEAD_TAG_LEN,
                            back) == 0 &&
               memcmp(back, pt, n) == 0;
      /* in place */
      memcpy(back, ct, n + NP_AEAD_TAG_LEN < sizeof(back) ? n : 0);
      ct[n / 2] ^= 0x04;
      refused &= np_aead_open(key, nonce, ad, adl, ct, n + NP_AEAD_TAG_LEN,
                              back) == NP_ECRYPTO;
      np_aead_use(dir ? "libcrypto" : "wolfcrypt");
      refused &= np_aead_open(key, nonce, ad, adl, ct, n + NP_AEAD_TAG_LEN,
                              ct) == NP_ECRYPTO;
    }
  }
  ok(agree, "AEAD: libcrypto and wolfCrypt open each other's frames "
            "(0..65519 bytes, with and without AD)");
  ok(refused, "AEAD: both refuse a flipped bit (NP_ECRYPTO), in place too");
  np_aead_use("libcrypto");
  is_str(np_aead_backend(), "libcrypto", "np_aead_backend names the one used");
}

int main(void) {
  aead_backends();
  if (np_identity_generate(&id_a) != 0 || np_identity_generate(&id_b) != 0 ||
      np_identity_generate(&id_c) != 0) {
    printf("Bail out! identity\n");
    return 1;
  }
  kat_cacophony();
  kat_x25519();
  cs_nonce_limit();
  libp2p_handshake();
  muxer_cases();
  byte_by_byte();
  transport();
  early_data();
  tampering();
  wrong_peer();
  replays();
  framing();
  other_key_types();
  bad_signature();
  np_identity_clear(&id_a);
  np_identity_clear(&id_b);
  np_identity_clear(&id_c);
  np_crypto_cleanup();
  return done_testing();
}
