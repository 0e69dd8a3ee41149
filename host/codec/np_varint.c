#include "np_varint.h"

size_t np_varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

np_ssize np_varint_encode(uint64_t v, uint8_t *out, size_t cap) {
  size_t n = np_varint_size(v), i;
  if (v > NP_VARINT_VMAX)
    return NP_EINVAL;
  if (n > cap)
    return NP_ELIMIT;
  for (i = 0; i + 1 < n; i++) {
    out[i] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[i] = (uint8_t)v;
  return (np_ssize)n;
}

np_ssize np_varint_decode(const uint8_t *in, size_t len, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  for (i = 0; i < NP_VARINT_MAX; i++) {
    uint8_t b;
    if (i >= len)
      return NP_ETRUNC;
    b = in[i];
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      /* A zero final group after the first byte could have been omitted. */
      if (b == 0 && i > 0)
        return NP_EPROTO;
      *out = v;
      return (np_ssize)(i + 1);
    }
  }
  /* The 9th byte still had its continuation bit: over 63 bits. */
  return NP_EPROTO;
}
