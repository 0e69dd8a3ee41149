#include <string.h>

#include "np_base58.h"
#include "np_crypto.h"
#include "np_multibase.h"
#include "np_multihash.h"
#include "np_peerid.h"
#include "np_varint.h"

int np_peerid_from_pubkey(np_peerid *id, const uint8_t *pubkey_pb, size_t len) {
  if (len == 0)
    return NP_EINVAL;
  if (len <= NP_PEERID_INLINE) {
    id->bytes[0] = NP_MH_IDENTITY;
    id->bytes[1] = (uint8_t)len; /* < 128: a one-byte varint */
    memcpy(id->bytes + 2, pubkey_pb, len);
    id->len = (uint8_t)(len + 2);
  } else {
    id->bytes[0] = NP_MH_SHA2_256;
    id->bytes[1] = NP_SHA256_LEN;
    np_crypto_sha256(pubkey_pb, len, id->bytes + 2);
    id->len = 2 + NP_SHA256_LEN;
  }
  return 0;
}

int np_peerid_from_bytes(np_peerid *id, const uint8_t *mh, size_t len) {
  uint64_t code;
  const uint8_t *digest;
  size_t dlen;
  np_ssize n = np_multihash_parse(mh, len, &code, &digest, &dlen);
  if (n < 0 || (size_t)n != len)
    return NP_EINVAL;
  if (code == NP_MH_IDENTITY) {
    if (dlen == 0 || dlen > NP_PEERID_INLINE)
      return NP_EINVAL;
  } else if (code != NP_MH_SHA2_256) {
    return NP_EINVAL;
  }
  /* Both shapes are at most 44 bytes, so this fits NP_PEERID_MAX. */
  memcpy(id->bytes, mh, len);
  id->len = (uint8_t)len;
  return 0;
}

int np_peerid_parse(np_peerid *id, const char *text, size_t len) {
  uint8_t buf[NP_PEERID_MAX + 8];
  np_ssize n;
  uint64_t v;
  np_ssize a, b;
  /* Longer text cannot be a valid ID; stop before any quadratic work. */
  if (len == 0 || len >= NP_PEERID_STRMAX)
    return NP_EINVAL;
  if (text[0] != NP_MULTIBASE_BASE32) {
    n = np_base58_decode(text, len, buf, sizeof(buf));
    return n < 0 ? NP_EINVAL : np_peerid_from_bytes(id, buf, (size_t)n);
  }
  /* CIDv1: version 1, codec libp2p-key, then the multihash. */
  n = np_multibase_base32_decode(text + 1, len - 1, buf, sizeof(buf));
  if (n < 0)
    return NP_EINVAL;
  if ((a = np_varint_decode(buf, (size_t)n, &v)) < 0 || v != 1)
    return NP_EINVAL;
  b = np_varint_decode(buf + a, (size_t)(n - a), &v);
  if (b < 0 || v != NP_PEERID_LIBP2P_KEY)
    return NP_EINVAL;
  return np_peerid_from_bytes(id, buf + a + b, (size_t)(n - a - b));
}

np_ssize np_peerid_to_string(const np_peerid *id, char *out, size_t cap) {
  return np_base58_encode(id->bytes, id->len, out, cap);
}

np_ssize np_peerid_to_cid(const np_peerid *id, char *out, size_t cap) {
  uint8_t buf[NP_PEERID_MAX + 2];
  buf[0] = 0x01;                 /* CID version 1 */
  buf[1] = NP_PEERID_LIBP2P_KEY; /* one-byte varint */
  memcpy(buf + 2, id->bytes, id->len);
  return np_multibase_encode(NP_MULTIBASE_BASE32, buf, (size_t)id->len + 2, out,
                             cap);
}

int np_peerid_equal(const np_peerid *a, const np_peerid *b) {
  return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

int np_peerid_pubkey(const np_peerid *id, const uint8_t **pb, size_t *len) {
  if (id->len < 3 || id->bytes[0] != NP_MH_IDENTITY)
    return NP_ENOENT;
  *pb = id->bytes + 2;
  *len = id->bytes[1];
  return 0;
}
