#include <string.h>

#include "np_base58.h"

static const char alphabet[] =
    "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/* Reverse table: 0..57, or -1 for characters outside the alphabet. */
static int digit_of(unsigned char c) {
  const char *p;
  if (c == 0)
    return -1;
  p = strchr(alphabet, c);
  return p ? (int)(p - alphabet) : -1;
}

np_ssize np_base58_encode(const uint8_t *in, size_t len, char *out,
                          size_t cap) {
  /* Base-58 digits, most significant first, in the tail of |buf|. */
  uint8_t buf[NP_BASE58_ENCLEN(NP_BASE58_MAX)];
  size_t zeros = 0, size = sizeof(buf), start = sizeof(buf), i, n;
  if (len > NP_BASE58_MAX)
    return NP_ELIMIT;
  while (zeros < len && in[zeros] == 0)
    zeros++;
  for (i = zeros; i < len; i++) {
    unsigned carry = in[i];
    size_t j = size;
    /* buf[start..size) *= 256, += carry */
    while (j > start || carry) {
      j--;
      if (j < start)
        buf[j] = 0;
      carry += 256u * buf[j];
      buf[j] = (uint8_t)(carry % 58);
      carry /= 58;
    }
    start = j;
  }
  n = zeros + (size - start);
  if (n + 1 > cap)
    return NP_ELIMIT;
  memset(out, '1', zeros);
  for (i = 0; start + i < size; i++)
    out[zeros + i] = alphabet[buf[start + i]];
  out[n] = '\0';
  return (np_ssize)n;
}

np_ssize np_base58_decode(const char *in, size_t len, uint8_t *out,
                          size_t cap) {
  /* Base-256 digits, most significant first, in the tail of |buf|. */
  uint8_t buf[NP_BASE58_MAX];
  size_t ones = 0, size = sizeof(buf), start = sizeof(buf), i, n;
  if (len > NP_BASE58_TEXTMAX)
    return NP_ELIMIT;
  while (ones < len && in[ones] == '1')
    ones++;
  if (ones > NP_BASE58_MAX)
    return NP_ELIMIT;
  for (i = ones; i < len; i++) {
    int d = digit_of((unsigned char)in[i]);
    unsigned carry;
    size_t j = size;
    if (d < 0)
      return NP_EINVAL;
    carry = (unsigned)d;
    while (j > start || carry) {
      if (j == ones) /* the result would exceed NP_BASE58_MAX bytes */
        return NP_ELIMIT;
      j--;
      if (j < start)
        buf[j] = 0;
      carry += 58u * buf[j];
      buf[j] = (uint8_t)(carry & 0xff);
      carry >>= 8;
    }
    start = j;
  }
  n = ones + (size - start);
  if (n > cap)
    return NP_ELIMIT;
  memset(out, 0, ones);
  memcpy(out + ones, buf + start, size - start);
  return (np_ssize)n;
}
