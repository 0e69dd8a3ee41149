/* Fuzz libp2p TLS over a byte stream (np_tlsstream) from the peer's side.
 * The first byte picks the attack (its low two bits):
 *   0  the rest to a fresh server as its input (a hostile ClientHello and
 *      whatever follows), then reads;
 *   1  the same to a fresh client after its ClientHello (a hostile server
 *      flight);
 *   2  the rest as records to one end of an established pair: nothing we
 *      did not encrypt may come out as plaintext (the pair is rebuilt after
 *      a failure);
 *   3  a real handshake between a client and a server whose bytes travel in
 *      fuzzer-chosen pieces, optionally with one byte flipped in flight
 *      (bytes 1..3: offset and mask; mask 0 flips nothing): unflipped, it
 *      must complete and carry the rest of the input intact. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_identity.h"
#include "np_log.h"
#include "np_tlsstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static np_identity self;
static np_tls *tls;
static np_tlsstream *pc, *ps; /* the established pair of mode 2 */
static const char *const muxers[] = {"/yamux/1.0.0"};

static void setup(void) {
  static int ready;
  np_ed25519 k;
  uint8_t seed[NP_ED25519_SEED_LEN] = {9};
  if (ready)
    return;
  np_log_set_level(NP_LOG_ERROR);
  if (np_ed25519_from_seed(&k, seed) != 0 ||
      np_identity_from_key(&self, &k) != 0 || np_tls_new_stream(&tls, &self))
    abort();
  ready = 1;
}

/* a's output into b, |step| bytes at a time (0: all), flipping the byte at
 * absolute offset |*flip_at| (counted down across calls) with |mask|. */
static int move(np_tlsstream *a, np_tlsstream *b, size_t step, long *flip_at,
                uint8_t mask) {
  const uint8_t *o;
  size_t n;
  uint8_t buf[512];
  while ((n = np_tlsstream_output(a, &o)) > 0) {
    np_ssize k;
    if (step == 0 || step > sizeof(buf))
      step = sizeof(buf);
    if (n > step)
      n = step;
    memcpy(buf, o, n);
    if (mask != 0 && *flip_at >= 0 && (size_t)*flip_at < n)
      buf[*flip_at] ^= mask;
    k = np_tlsstream_feed(b, buf, n);
    if (k < 0)
      return (int)k;
    if (k == 0)
      return 0;
    if (*flip_at >= 0)
      *flip_at -= k;
    np_tlsstream_output_drain(a, (size_t)k);
  }
  return 0;
}

static void drop_pair(void) {
  np_tlsstream_del(pc);
  np_tlsstream_del(ps);
  pc = ps = NULL;
}

static int handshake(np_tlsstream *c, np_tlsstream *s, const uint8_t *steps,
                     size_t nsteps, long flip_at, uint8_t mask) {
  for (int i = 0; i < 64 && !(np_tlsstream_done(c) && np_tlsstream_done(s));
       i++) {
    size_t st = nsteps ? (size_t)steps[i % nsteps] + 1 : 0;
    if (move(c, s, st, &flip_at, mask) != 0 ||
        move(s, c, st, &flip_at, mask) != 0)
      return -1;
    if (np_tlsstream_error(c) || np_tlsstream_error(s))
      return -1;
  }
  return np_tlsstream_done(c) && np_tlsstream_done(s) ? 0 : -1;
}

static void make_pair(void) {
  long none = -1;
  if (pc != NULL)
    return;
  if (np_tlsstream_new(&pc, tls, 1, &self.id, muxers, 1) != 0 ||
      np_tlsstream_new(&ps, tls, 0, NULL, muxers, 1) != 0 ||
      handshake(pc, ps, NULL, 0, none, 0) != 0)
    abort();
}

static void drain_reads(np_tlsstream *s, int must_be_empty) {
  uint8_t buf[NP_TLSSTREAM_RECORD_MAX];
  np_ssize r;
  while ((r = np_tlsstream_read(s, buf, sizeof(buf))) > 0)
    if (must_be_empty)
      abort(); /* plaintext nobody encrypted */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_tlsstream *c = NULL, *s = NULL;
  uint8_t buf[NP_TLSSTREAM_RECORD_MAX];
  size_t off = 0;
  np_ssize k;
  setup();
  if (size == 0)
    return 0;
  switch (data[0] & 3) {
  case 0:
  case 1: {
    np_tlsstream *t;
    if ((data[0] & 3) == 0) {
      if (np_tlsstream_new(&t, tls, 0, NULL, muxers, 1) != 0)
        abort();
    } else if (np_tlsstream_new(&t, tls, 1, &self.id, muxers, 1) != 0) {
      abort();
    }
    data++, size--;
    while (off < size) {
      k = np_tlsstream_feed(t, data + off, size - off);
      if (k <= 0)
        break;
      off += (size_t)k;
      if (np_tlsstream_done(t))
        while (np_tlsstream_read(t, buf, sizeof(buf)) > 0)
          ;
    }
    np_tlsstream_del(t);
    break;
  }
  case 2: {
    np_tlsstream *rx;
    make_pair();
    rx = data[0] & 4 ? pc : ps;
    data++, size--;
    while (off < size) {
      k = np_tlsstream_feed(rx, data + off, size - off);
      if (k < 0)
        break;
      off += (size_t)k;
      drain_reads(rx, 1);
      if (np_tlsstream_error(rx) || k == 0)
        break;
    }
    if (np_tlsstream_error(rx))
      drop_pair();
    break;
  }
  default: {
    long flip_at = -1;
    uint8_t mask = 0;
    size_t got = 0;
    if (size >= 4) {
      flip_at = (long)(data[1] << 8 | data[2]);
      mask = data[3];
    }
    off = size >= 4 ? 4 : size;
    if (np_tlsstream_new(&c, tls, 1, &self.id, muxers, 1) != 0 ||
        np_tlsstream_new(&s, tls, 0, NULL, muxers, 1) != 0)
      abort();
    /* The payload doubles as the piece sizes. */
    if (handshake(c, s, data + off, size - off, flip_at, mask) != 0) {
      if (mask == 0)
        abort(); /* an untouched handshake must complete */
      break;
    }
    k = np_tlsstream_write(c, data + off, size - off);
    if (k < 0 || (size_t)k != size - off) {
      if (mask == 0)
        abort(); /* short inputs fit under the output cap */
      break;
    }
    {
      long none = -1;
      if (move(c, s, 0, &none, 0) != 0 && mask == 0)
        abort();
    }
    while ((k = np_tlsstream_read(s, buf, sizeof(buf))) > 0) {
      if (got + (size_t)k > size - off ||
          memcmp(buf, data + off + got, (size_t)k) != 0)
        abort();
      got += (size_t)k;
    }
    if (mask == 0 && got != size - off)
      abort();
    break;
  }
  }
  np_tlsstream_del(c);
  np_tlsstream_del(s);
  return 0;
}
