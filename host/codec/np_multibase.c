#include "np_base58.h"
#include "np_multibase.h"

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b32_value(unsigned char c) {
  if (c >= 'a' && c <= 'z')
    return c - 'a';
  if (c >= '2' && c <= '7')
    return c - '2' + 26;
  return -1;
}

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

/* Generic bit packer for power-of-two bases of |bits| bits per char. */
static np_ssize encode_bits(const char *alpha, unsigned bits, const uint8_t *in,
                            size_t len, char *out, size_t cap) {
  size_t n = (len * 8 + bits - 1) / bits, i, o = 0;
  uint32_t acc = 0;
  unsigned nacc = 0, mask = (1u << bits) - 1;
  if (len > ((size_t)-1 - bits) / 8 || n + 1 > cap)
    return NP_ELIMIT;
  for (i = 0; i < len; i++) {
    acc = (acc << 8) | in[i];
    nacc += 8;
    while (nacc >= bits) {
      nacc -= bits;
      out[o++] = alpha[(acc >> nacc) & mask];
    }
    acc &= (1u << nacc) - 1;
  }
  if (nacc > 0)
    out[o++] = alpha[(acc << (bits - nacc)) & mask];
  out[o] = '\0';
  return (np_ssize)o;
}

static np_ssize decode_bits(int (*value)(unsigned char), unsigned bits,
                            const char *in, size_t len, uint8_t *out,
                            size_t cap) {
  size_t n = len * bits / 8, i, o = 0;
  uint32_t acc = 0;
  unsigned nacc = 0;
  if (len > NP_MULTIBASE_MAX)
    return NP_ELIMIT;
  /* A trailing group of at least a whole char of padding bits means the
   * length could not have come from an encoder (e.g. base32 len % 8 == 1). */
  if ((len * bits) % 8 >= bits)
    return NP_EINVAL;
  if (n > cap)
    return NP_ELIMIT;
  for (i = 0; i < len; i++) {
    int v = value((unsigned char)in[i]);
    if (v < 0)
      return NP_EINVAL;
    acc = (acc << bits) | (uint32_t)v;
    nacc += bits;
    if (nacc >= 8) {
      nacc -= 8;
      out[o++] = (uint8_t)(acc >> nacc);
    }
    acc &= (1u << nacc) - 1;
  }
  if (acc != 0) /* leftover bits must be zero padding */
    return NP_EINVAL;
  return (np_ssize)o;
}

np_ssize np_multibase_base32_encode(const uint8_t *in, size_t len, char *out,
                                    size_t cap) {
  return encode_bits(b32, 5, in, len, out, cap);
}

np_ssize np_multibase_base32_decode(const char *in, size_t len, uint8_t *out,
                                    size_t cap) {
  return decode_bits(b32_value, 5, in, len, out, cap);
}

np_ssize np_multibase_base64url_encode(const uint8_t *in, size_t len, char *out,
                                       size_t cap) {
  return encode_bits(b64url, 6, in, len, out, cap);
}

np_ssize np_multibase_base64url_decode(const char *in, size_t len, uint8_t *out,
                                       size_t cap) {
  return decode_bits(b64url_value, 6, in, len, out, cap);
}

np_ssize np_multibase_encode(int base, const uint8_t *in, size_t len, char *out,
                             size_t cap) {
  np_ssize n;
  if (base != NP_MULTIBASE_BASE32 && base != NP_MULTIBASE_BASE64URL &&
      base != NP_MULTIBASE_BASE58BTC)
    return NP_EINVAL;
  if (cap < 2)
    return NP_ELIMIT;
  out[0] = (char)base;
  if (base == NP_MULTIBASE_BASE32)
    n = np_multibase_base32_encode(in, len, out + 1, cap - 1);
  else if (base == NP_MULTIBASE_BASE64URL)
    n = np_multibase_base64url_encode(in, len, out + 1, cap - 1);
  else
    n = np_base58_encode(in, len, out + 1, cap - 1);
  return n < 0 ? n : n + 1;
}

np_ssize np_multibase_decode(const char *in, size_t len, int *base,
                             uint8_t *out, size_t cap) {
  np_ssize n;
  if (len < 1)
    return NP_EINVAL;
  if (len - 1 > NP_MULTIBASE_MAX)
    return NP_ELIMIT;
  switch (in[0]) {
  case NP_MULTIBASE_BASE32:
    n = np_multibase_base32_decode(in + 1, len - 1, out, cap);
    break;
  case NP_MULTIBASE_BASE64URL:
    n = np_multibase_base64url_decode(in + 1, len - 1, out, cap);
    break;
  case NP_MULTIBASE_BASE58BTC:
    n = np_base58_decode(in + 1, len - 1, out, cap);
    break;
  default:
    return NP_EINVAL;
  }
  if (n >= 0 && base != NULL)
    *base = in[0];
  return n;
}
