#include <string.h>

#include "np_multihash.h"
#include "np_varint.h"

np_ssize np_multihash_parse(const uint8_t *in, size_t len, uint64_t *code,
                            const uint8_t **digest, size_t *dlen) {
  uint64_t c, l;
  np_ssize n1, n2;
  size_t off;
  if ((n1 = np_varint_decode(in, len, &c)) < 0)
    return n1;
  off = (size_t)n1;
  if ((n2 = np_varint_decode(in + off, len - off, &l)) < 0)
    return n2;
  off += (size_t)n2;
  /* Compare against what is left rather than adding, so a huge declared
   * length cannot wrap. */
  if (l > len - off)
    return NP_ETRUNC;
  if (c == NP_MH_SHA2_256 && l != 32)
    return NP_EPROTO;
  *code = c;
  *digest = in + off;
  *dlen = (size_t)l;
  return (np_ssize)(off + (size_t)l);
}

np_ssize np_multihash_encode(uint64_t code, const uint8_t *digest, size_t dlen,
                             uint8_t *out, size_t cap) {
  np_ssize n1, n2;
  if (code == NP_MH_SHA2_256 && dlen != 32)
    return NP_EINVAL;
  if ((n1 = np_varint_encode(code, out, cap)) < 0)
    return n1;
  if ((n2 = np_varint_encode(dlen, out + n1, cap - (size_t)n1)) < 0)
    return n2;
  if (dlen > cap - (size_t)(n1 + n2))
    return NP_ELIMIT;
  memmove(out + n1 + n2, digest, dlen);
  return n1 + n2 + (np_ssize)dlen;
}
