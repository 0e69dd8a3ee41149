/* Fuzz Noise from the peer's side. The first byte picks the attack:
 *   0  bytes to a fresh responder as handshake input (then the rest, if
 *      the handshake ended, as transport input);
 *   1  the same against a fresh initiator (after its message 1);
 *   2  transport ops on an established pair: encrypt/deliver in fuzzer-
 *      chosen pieces, which must arrive intact, or raw frames to a
 *      receiver, which must not yield plaintext for anything we did not
 *      encrypt (the pair is rebuilt after such a failure);
 *   3  a correctly encrypted handshake whose payload is the fuzzer's
 *      (bit 2 of the first byte: the harness is the initiator):
 *      the harness plays the peer with np_noise_xx, so protobuf decoding,
 *      host-key parsing and signature checks see arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_identity.h"
#include "np_noise.h"
#include "np_noise_xx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static np_identity self;
static np_noise *pi, *pr; /* the transport pair of mode 2 */
static const char *const muxers[] = {"/yamux/1.0.0"};

static void setup(void) {
  static int ready;
  np_ed25519 k;
  uint8_t seed[NP_ED25519_SEED_LEN] = {7};
  if (ready)
    return;
  if (np_ed25519_from_seed(&k, seed) != 0 ||
      np_identity_from_key(&self, &k) != 0)
    abort();
  ready = 1;
}

/* Move a's pending output into b's handshake. */
static int move(np_noise *a, np_noise *b) {
  const uint8_t *o;
  size_t n = np_noise_output(a, &o);
  np_ssize k = n ? np_noise_handshake_feed(b, o, n) : 0;
  if (k < 0)
    return (int)k;
  np_noise_output_drain(a, (size_t)k);
  return 0;
}

static void make_pair(void) {
  if (pi != NULL)
    return;
  if (np_noise_new(&pi, 1, &self, NULL, muxers, 1) != 0 ||
      np_noise_new(&pr, 0, &self, NULL, muxers, 1) != 0 || move(pi, pr) ||
      move(pr, pi) || move(pi, pr) || !np_noise_done(pi) || !np_noise_done(pr))
    abort();
}

static void drop_pair(void) {
  np_noise_del(pi);
  np_noise_del(pr);
  pi = pr = NULL;
}

static void peer_input(int initiator, const uint8_t *d, size_t n) {
  np_noise *x;
  np_ssize k;
  if (np_noise_new(&x, initiator, &self, NULL, muxers, 1) != 0)
    abort();
  k = np_noise_handshake_feed(x, d, n);
  if (k > (np_ssize)n)
    abort();
  if (k >= 0 && np_noise_done(x)) {
    const uint8_t *pt;
    size_t ptlen, off = (size_t)k;
    while (off < n) {
      np_ssize m = np_noise_decrypt_feed(x, d + off, n - off, &pt, &ptlen);
      if (m <= 0)
        break;
      off += (size_t)m;
    }
  }
  np_noise_del(x);
}

/* Deliver everything pending from a to b in pieces of |piece| bytes and
 * check that exactly |want| (len |wlen|) comes out. */
static void deliver(np_noise *a, np_noise *b, const uint8_t *want, size_t wlen,
                    size_t piece) {
  const uint8_t *o, *pt;
  size_t n = np_noise_output(a, &o), off = 0, got = 0, ptlen;
  while (off < n) {
    size_t step = n - off < piece ? n - off : piece;
    size_t used = 0;
    while (used < step) {
      np_ssize m =
          np_noise_decrypt_feed(b, o + off + used, step - used, &pt, &ptlen);
      if (m <= 0)
        abort(); /* our own frames must always decrypt */
      used += (size_t)m;
      if (pt != NULL) {
        if (got + ptlen > wlen || memcmp(want + got, pt, ptlen) != 0)
          abort();
        got += ptlen;
      }
    }
    off += step;
  }
  if (got != wlen)
    abort();
  np_noise_output_drain(a, n);
}

static void transport_ops(const uint8_t *d, size_t n) {
  make_pair();
  while (n >= 2) {
    uint8_t op = d[0];
    size_t len = d[1];
    np_noise *a = op & 1 ? pr : pi, *b = op & 1 ? pi : pr;
    d += 2;
    n -= 2;
    if (len > n)
      len = n;
    if (op & 0x80) {
      /* Raw frames: nothing may decrypt (we never sent them). */
      const uint8_t *pt;
      size_t ptlen;
      np_ssize m = np_noise_decrypt_feed(b, d, len, &pt, &ptlen);
      if (m >= 0 && pt != NULL && len > 0)
        abort(); /* forged frame accepted */
      if (m < 0) {
        drop_pair();
        return;
      }
      if (m > 0) { /* a partial frame now sits in b: start over later */
        drop_pair();
        return;
      }
    } else {
      /* Repeat the bytes up to ~200 KiB to cross frame boundaries. */
      size_t reps = (op & 0x40) ? 1000 : 1, total = len * reps;
      uint8_t *buf = malloc(total ? total : 1);
      size_t taken = 0;
      for (size_t r = 0; r < reps; r++)
        memcpy(buf + r * len, d, len);
      while (taken < total) {
        np_ssize k = np_noise_encrypt(a, buf + taken, total - taken);
        if (k < 0)
          abort();
        deliver(a, b, buf + taken, (size_t)k, ((op >> 1) & 0x1f) * 97 + 1);
        taken += (size_t)k;
      }
      free(buf);
    }
    d += len;
    n -= len;
  }
}

/* The harness is the peer: a real XX handshake carrying |d| as payload. */
static void payload(int initiator, const uint8_t *d, size_t n) {
  static const uint8_t s[32] = {1, 2, 3}; /* gen seeds sign its public key */
  uint8_t *msg = malloc(NP_NOISE_XX_MSG_MAX(n) + 2), pl[600];
  np_noise_xx hs;
  np_noise *x;
  const uint8_t *o;
  size_t olen;
  np_ssize m;
  if (n > 65000)
    n = 65000;
  if (np_noise_new(&x, !initiator, &self, NULL, muxers, 1) != 0 ||
      np_noise_xx_init(&hs, initiator, NULL, 0, s, NULL) != 0)
    abort();
  if (initiator) { /* x responds: we send 1 and 3 */
    m = np_noise_xx_write(&hs, NULL, 0, msg + 2, 64);
    msg[0] = 0, msg[1] = 32;
    if (m != 32 || np_noise_handshake_feed(x, msg, 34) != 34)
      abort();
  }
  olen = np_noise_output(x, &o);
  if (olen < 2 || np_noise_xx_read(&hs, o + 2, olen - 2, pl, sizeof(pl)) < 0)
    abort();
  np_noise_output_drain(x, olen);
  m = np_noise_xx_write(&hs, d, n, msg + 2, NP_NOISE_XX_MSG_MAX(n));
  if (m < 0 || m > NP_NOISE_FRAME_MAX)
    abort();
  msg[0] = (uint8_t)(m >> 8), msg[1] = (uint8_t)m;
  m = np_noise_handshake_feed(x, msg, (size_t)m + 2);
  if (m >= 0 && !initiator && !np_noise_done(x))
    abort(); /* x was the initiator: message 2 either fails or ends it */
  if (m >= 0 && np_noise_done(x) && np_noise_remote(x, NULL) != 0)
    abort();
  np_noise_xx_wipe(&hs);
  np_noise_del(x);
  free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  if (size == 0)
    return 0;
  switch (data[0] & 3) {
  case 0:
  case 1:
    peer_input(data[0] & 1, data + 1, size - 1);
    break;
  case 2:
    transport_ops(data + 1, size - 1);
    break;
  case 3:
    payload((data[0] >> 2) & 1, data + 1, size - 1);
    break;
  }
  return 0;
}
