#include "np_cid.h"

#include "np_base58.h"
#include "np_multibase.h"
#include "np_multihash.h"
#include "np_varint.h"

#include <string.h>

/* The whole of |in| must be one multihash. */
static int whole_multihash(const uint8_t *in, size_t len) {
  uint64_t code;
  const uint8_t *d;
  size_t dl;
  np_ssize n = np_multihash_parse(in, len, &code, &d, &dl);
  return n > 0 && (size_t)n == len ? 0 : NP_EINVAL;
}

int np_cid_multihash(const uint8_t *cid, size_t len, const uint8_t **mh,
                     size_t *mhlen) {
  uint64_t version, codec;
  np_ssize n, m;
  if (len == 0 || len > NP_CID_MAX)
    return NP_EINVAL;
  /* CIDv0: 0x12 0x20 + 32 bytes; no CIDv1 starts with 0x12 (version 18). */
  if (len == 34 && cid[0] == NP_MH_SHA2_256 && cid[1] == 32) {
    *mh = cid;
    *mhlen = len;
    return 0;
  }
  if ((n = np_varint_decode(cid, len, &version)) < 0 || version != 1)
    return NP_EINVAL;
  if ((m = np_varint_decode(cid + n, len - (size_t)n, &codec)) < 0)
    return NP_EINVAL;
  n += m;
  if (whole_multihash(cid + n, len - (size_t)n) != 0)
    return NP_EINVAL;
  *mh = cid + n;
  *mhlen = len - (size_t)n;
  return 0;
}

np_ssize np_cid_parse(const char *text, size_t len, uint8_t *out,
                      size_t cap) {
  uint8_t buf[NP_CID_MAX];
  const uint8_t *mh;
  size_t mhlen;
  np_ssize n;
  if (len == 46 && text[0] == 'Q' && text[1] == 'm')
    n = np_base58_decode(text, len, buf, sizeof(buf));
  else
    n = np_multibase_decode(text, len, NULL, buf, sizeof(buf));
  if (n == NP_ELIMIT)
    return NP_EINVAL; /* no CID is that long */
  if (n <= 0 || np_cid_multihash(buf, (size_t)n, &mh, &mhlen) != 0)
    return NP_EINVAL;
  if ((size_t)n > cap)
    return NP_ELIMIT;
  memcpy(out, buf, (size_t)n);
  return n;
}
