#include "np_lp.h"

#include <stdlib.h>
#include <string.h>

void np_lp_init(np_lp_reader *r, size_t max) {
  memset(r, 0, sizeof(*r));
  r->max = max;
}

void np_lp_free(np_lp_reader *r) {
  free(r->buf);
  r->buf = NULL;
  r->have = 0;
  r->delivered = 0;
}

static np_ssize fail(np_lp_reader *r, int err) {
  free(r->buf);
  r->buf = NULL;
  r->err = err;
  return err;
}

np_ssize np_lp_feed(np_lp_reader *r, const uint8_t *in, size_t len,
                    const uint8_t **msg, size_t *msglen) {
  /* Non-NULL even for empty messages: NULL means "none yet". */
  static const uint8_t empty[1];
  size_t off = 0, take;
  *msg = NULL;
  *msglen = 0;
  if (r->err)
    return r->err;
  if (r->delivered) {
    free(r->buf);
    r->buf = NULL;
    r->delivered = 0;
  }
  while (!r->in_body) {
    uint64_t v;
    np_ssize n;
    uint8_t b;
    if (off == len)
      return (np_ssize)off;
    b = in[off++];
    r->hdr[r->hdr_len++] = b;
    if (b & 0x80) {
      if (r->hdr_len == NP_VARINT_MAX)
        return fail(r, NP_EPROTO);
      continue;
    }
    n = np_varint_decode(r->hdr, r->hdr_len, &v);
    if (n < 0)
      return fail(r, NP_EPROTO);
    r->hdr_len = 0;
    /* The limit is enforced here, before any byte of the body is kept. */
    if (v > r->max) {
      r->declared = v;
      r->err_off = off;
      return fail(r, NP_ELIMIT);
    }
    r->want = (size_t)v;
    r->have = 0;
    r->in_body = 1;
  }
  if (r->want == 0) {
    r->in_body = 0;
    *msg = empty;
    return (np_ssize)off;
  }
  if (r->have == 0 && len - off >= r->want) {
    /* Whole message in this chunk: hand it out in place, no copy. */
    *msg = in + off;
    *msglen = r->want;
    r->in_body = 0;
    return (np_ssize)(off + r->want);
  }
  if (off == len)
    return (np_ssize)off;
  if (r->buf == NULL && (r->buf = malloc(r->want)) == NULL)
    return fail(r, NP_ENOMEM);
  take = len - off;
  if (take > r->want - r->have)
    take = r->want - r->have;
  if (take > 0)
    memcpy(r->buf + r->have, in + off, take);
  r->have += take;
  off += take;
  if (r->have == r->want) {
    *msg = r->buf;
    *msglen = r->want;
    r->delivered = 1;
    r->in_body = 0;
    r->have = 0;
  }
  return (np_ssize)off;
}

int np_lp_idle(const np_lp_reader *r) { return !r->in_body && r->hdr_len == 0; }

np_ssize np_lp_parse(const uint8_t *in, size_t len, size_t max,
                     const uint8_t **msg, size_t *msglen) {
  uint64_t v;
  np_ssize n = np_varint_decode(in, len, &v);
  if (n < 0)
    return n;
  if (v > max)
    return NP_ELIMIT;
  if (v > len - (size_t)n)
    return NP_ETRUNC;
  *msg = in + n;
  *msglen = (size_t)v;
  return n + (np_ssize)v;
}

np_ssize np_lp_put_prefix(size_t len, uint8_t *out, size_t cap) {
  return np_varint_encode((uint64_t)len, out, cap);
}

size_t np_lp_prefix_size(size_t len) { return np_varint_size((uint64_t)len); }

uint64_t np_lp_declared(const np_lp_reader *r) { return r->declared; }

size_t np_lp_error_offset(const np_lp_reader *r) { return r->err_off; }
