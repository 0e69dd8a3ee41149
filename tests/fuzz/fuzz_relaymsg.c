/* Fuzz the circuit relay v2 decoders as a stream reader sees them: the
 * input is uvarint-framed bodies; each is decoded as a hop and as a stop
 * message under the default caps and under tiny ones, must respect them,
 * re-encodes, and decodes again to the same message. A reservation's
 * voucher, and each body itself, is opened as a voucher envelope. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_relaymsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addrs(const np_relaymsg_blob *a, size_t n, size_t max) {
  size_t i;
  if (n > max || (n > 0 && a == NULL))
    abort();
  for (i = 0; i < n; i++)
    if (np_maddr_validate(a[i].data, a[i].len) != 0)
      abort();
}

static void check(const np_relaymsg *m, const np_relaymsg_limits *lim) {
  unsigned top = m->kind == NP_RELAYMSG_HOP ? NP_RELAYMSG_HOP_STATUS
                                            : NP_RELAYMSG_STOP_STATUS;
  if (m->type > top || (m->has_reservation && m->kind != NP_RELAYMSG_HOP) ||
      m->reservation.voucher.len > lim->max_voucher ||
      (m->has_peer && m->peer.id.len == 0))
    abort();
  check_addrs(m->peer.addrs, m->peer.naddrs, lim->max_addrs);
  check_addrs(m->reservation.addrs, m->reservation.naddrs, lim->max_addrs);
}

static int blobs_eq(const np_relaymsg_blob *a, const np_relaymsg_blob *b,
                    size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (a[i].len != b[i].len ||
        (a[i].len && memcmp(a[i].data, b[i].data, a[i].len) != 0))
      return 0;
  return 1;
}

static void roundtrip(const np_relaymsg *m, size_t inlen) {
  static uint8_t out[NP_RELAYMSG_MSG_MAX + 16];
  np_relaymsg back;
  np_ssize n = np_relaymsg_encode_lp(m, out, sizeof(out));
  /* The encoder always writes type, expire and both limit fields, which
   * the input may have left out: near the size cap that can tip it over. */
  if (n == NP_ELIMIT && inlen > NP_RELAYMSG_MSG_MAX - 40)
    return;
  if (n < 0)
    abort();
  if (np_relaymsg_decode_lp(&back, m->kind, out, (size_t)n, NULL) != n)
    abort();
  if (back.type != m->type || back.has_peer != m->has_peer ||
      back.has_reservation != m->has_reservation ||
      back.has_limit != m->has_limit || back.has_status != m->has_status ||
      back.status != m->status || back.limit.duration != m->limit.duration ||
      back.limit.data != m->limit.data ||
      back.reservation.expire != m->reservation.expire ||
      !np_peerid_equal(&back.peer.id, &m->peer.id) ||
      back.peer.naddrs != m->peer.naddrs ||
      back.reservation.naddrs != m->reservation.naddrs ||
      back.reservation.voucher.len != m->reservation.voucher.len ||
      !blobs_eq(back.peer.addrs, m->peer.addrs, m->peer.naddrs) ||
      !blobs_eq(back.reservation.addrs, m->reservation.addrs,
                m->reservation.naddrs) ||
      !blobs_eq(&back.reservation.voucher, &m->reservation.voucher, 1))
    abort();
  np_relaymsg_free(&back);
}

static void voucher(const uint8_t *env, size_t len) {
  np_relaymsg_voucher v;
  int rv = np_relaymsg_voucher_open(&v, env, len, NULL, NULL);
  if (rv == 0 && (v.relay.len == 0 || v.peer.len == 0))
    abort();
  if (rv != 0 && (v.relay.len != 0 || v.peer.len != 0 || v.expiration != 0))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_relaymsg_limits def, tiny = {128, 1, 8};
  np_lp_reader r;
  size_t off = 0;
  int k;
  np_relaymsg_limits_default(&def);
  np_lp_init(&r, NP_RELAYMSG_MSG_MAX);
  while (off < size) {
    const uint8_t *msg;
    size_t mlen;
    np_relaymsg m;
    np_ssize n = np_lp_feed(&r, data + off, size - off, &msg, &mlen);
    if (n < 0)
      break;
    off += (size_t)n;
    if (msg == NULL)
      continue;
    for (k = NP_RELAYMSG_HOP; k <= NP_RELAYMSG_STOP; k++) {
      if (np_relaymsg_decode(&m, (np_relaymsg_kind)k, msg, mlen, &tiny) == 0) {
        check(&m, &tiny);
        np_relaymsg_free(&m);
      }
      if (np_relaymsg_decode(&m, (np_relaymsg_kind)k, msg, mlen, &def) == 0) {
        check(&m, &def);
        roundtrip(&m, mlen);
        if (m.reservation.voucher.len > 0)
          voucher(m.reservation.voucher.data, m.reservation.voucher.len);
        np_relaymsg_free(&m);
      }
    }
    voucher(msg, mlen);
  }
  np_lp_free(&r);
  return 0;
}
