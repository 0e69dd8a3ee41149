/* Fuzz the AutoNAT decoders as a stream reader sees them: the input is
 * uvarint-framed bodies; each is decoded as a v1 message and as a v2
 * dial-request message under default and tiny caps, must respect them,
 * re-encodes and decodes again to the same message; and as the v2
 * dial-back pair. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_autonatmsg.h"
#include "np_lp.h"
#include "np_multiaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int blob_eq(const np_autonatmsg_blob *a, const np_autonatmsg_blob *b) {
  return a->len == b->len &&
         (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void v1_check(const np_autonatmsg *m, const np_autonatmsg_limits *lim) {
  size_t i;
  if (m->naddrs > lim->max_addrs ||
      (m->status_text && strlen(m->status_text) > NP_AUTONATMSG_TEXT_MAX))
    abort();
  if (m->type == NP_AUTONATMSG_DIAL && m->peer.len == 0)
    abort();
  if (m->type == NP_AUTONATMSG_DIAL_RESPONSE &&
      m->status == NP_AUTONATMSG_OK && m->addr.len == 0)
    abort();
  for (i = 0; i < m->naddrs; i++)
    if (np_maddr_validate(m->addrs[i].data, m->addrs[i].len) != 0)
      abort();
  if (m->addr.len && np_maddr_validate(m->addr.data, m->addr.len) != 0)
    abort();
}

static void v1_roundtrip(const np_autonatmsg *m, size_t inlen) {
  static uint8_t out[NP_AUTONATMSG_MSG_MAX + 16];
  np_autonatmsg back;
  size_t i;
  np_ssize n = np_autonatmsg_encode_lp(m, out, sizeof(out));
  /* The encoder always writes the type, which a DIAL may leave out. */
  if (n == NP_ELIMIT && inlen > NP_AUTONATMSG_MSG_MAX - 8)
    return;
  if (n < 0)
    abort();
  if (np_autonatmsg_decode_lp(&back, out, (size_t)n, NULL) != n)
    abort();
  if (back.type != m->type || !np_peerid_equal(&back.peer, &m->peer) ||
      back.naddrs != m->naddrs || back.status != m->status ||
      !blob_eq(&back.addr, &m->addr) ||
      (back.status_text == NULL) != (m->status_text == NULL ||
                                     m->status_text[0] == '\0') ||
      (back.status_text && strcmp(back.status_text, m->status_text) != 0))
    abort();
  for (i = 0; i < m->naddrs; i++)
    if (!blob_eq(&back.addrs[i], &m->addrs[i]))
      abort();
  np_autonatmsg_free(&back);
}

static void v2_check(const np_autonatmsg_v2 *m,
                     const np_autonatmsg_limits *lim) {
  size_t i;
  if (m->naddrs > lim->max_addrs ||
      m->data.len > NP_AUTONATMSG_V2_CHUNK_MAX ||
      m->num_bytes > lim->max_data)
    abort();
  for (i = 0; i < m->naddrs; i++)
    if (m->addrs[i].len != 0 &&
        np_maddr_validate(m->addrs[i].data, m->addrs[i].len) != 0)
      abort();
}

static void v2_roundtrip(const np_autonatmsg_v2 *m) {
  static uint8_t out[NP_AUTONATMSG_V2_MSG_MAX + 16];
  np_autonatmsg_v2 back;
  size_t i;
  np_ssize n = np_autonatmsg_v2_encode_lp(m, out, sizeof(out));
  if (n < 0)
    abort(); /* proto3 writes nothing the input did not hold */
  if (np_autonatmsg_v2_decode_lp(&back, out, (size_t)n, NULL) != n)
    abort();
  if (back.kind != m->kind || back.naddrs != m->naddrs ||
      back.nonce != m->nonce || back.status != m->status ||
      back.addr_idx != m->addr_idx || back.dial_status != m->dial_status ||
      back.num_bytes != m->num_bytes || !blob_eq(&back.data, &m->data))
    abort();
  for (i = 0; i < m->naddrs; i++)
    if (!blob_eq(&back.addrs[i], &m->addrs[i]))
      abort();
  np_autonatmsg_v2_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_autonatmsg_limits v1, v2, tiny = {96, 1, 1000};
  np_lp_reader r;
  size_t off = 0;
  np_autonatmsg_limits_default(&v1);
  np_autonatmsg_v2_limits_default(&v2);
  np_lp_init(&r, NP_AUTONATMSG_V2_MSG_MAX);
  while (off < size) {
    const uint8_t *msg;
    size_t mlen;
    np_autonatmsg m;
    np_autonatmsg_v2 m2;
    uint64_t nonce;
    np_ssize n = np_lp_feed(&r, data + off, size - off, &msg, &mlen);
    if (n < 0)
      break;
    off += (size_t)n;
    if (msg == NULL)
      continue;
    if (np_autonatmsg_decode(&m, msg, mlen, &tiny) == 0) {
      v1_check(&m, &tiny);
      np_autonatmsg_free(&m);
    }
    if (np_autonatmsg_decode(&m, msg, mlen, &v1) == 0) {
      v1_check(&m, &v1);
      v1_roundtrip(&m, mlen);
      np_autonatmsg_free(&m);
    }
    if (np_autonatmsg_v2_decode(&m2, msg, mlen, &tiny) == 0) {
      v2_check(&m2, &tiny);
      np_autonatmsg_v2_free(&m2);
    }
    if (np_autonatmsg_v2_decode(&m2, msg, mlen, &v2) == 0) {
      v2_check(&m2, &v2);
      v2_roundtrip(&m2);
      np_autonatmsg_v2_free(&m2);
    }
    if (np_autonatmsg_v2_dialback_decode(&nonce, msg, mlen) != 0 &&
        nonce != 0)
      abort();
    (void)np_autonatmsg_v2_dialback_response_decode(msg, mlen);
  }
  np_lp_free(&r);
  return 0;
}
