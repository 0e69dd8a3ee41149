/* Fuzz the small decoders: uvarint, base58, multibase and multihash. Each
 * accepted input must be canonical, i.e. re-encode to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_base58.h"
#include "np_multibase.h"
#include "np_multihash.h"
#include "np_varint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_varint(const uint8_t *data, size_t size) {
  uint8_t buf[NP_VARINT_MAX];
  uint64_t v;
  np_ssize n = np_varint_decode(data, size, &v), m;
  if (n < 0)
    return;
  if (n > NP_VARINT_MAX || (size_t)n > size || v > NP_VARINT_VMAX)
    abort();
  m = np_varint_encode(v, buf, sizeof(buf));
  if (m != n || np_varint_size(v) != (size_t)n || memcmp(buf, data, (size_t)n))
    abort();
}

static void check_base58(const uint8_t *data, size_t size) {
  static uint8_t bin[NP_BASE58_MAX];
  static char text[NP_BASE58_ENCLEN(NP_BASE58_MAX) + 1];
  np_ssize n = np_base58_decode((const char *)data, size, bin, sizeof(bin)), m;
  if (n >= 0) {
    m = np_base58_encode(bin, (size_t)n, text, sizeof(text));
    if (m < 0 || (size_t)m != size || memcmp(text, data, size) != 0)
      abort();
  }
  if (size <= NP_BASE58_MAX) {
    n = np_base58_encode(data, size, text, sizeof(text));
    if (n < 0)
      abort();
    m = np_base58_decode(text, (size_t)n, bin, sizeof(bin));
    if (m < 0 || (size_t)m != size || memcmp(bin, data, size) != 0)
      abort();
  }
}

static void check_multibase(const uint8_t *data, size_t size) {
  static uint8_t bin[NP_MULTIBASE_MAX];
  static char text[NP_MULTIBASE_MAX + 2];
  int base = 0;
  np_ssize n = np_multibase_decode((const char *)data, size, &base, bin,
                                   sizeof(bin)),
           m;
  if (n < 0)
    return;
  m = np_multibase_encode(base, bin, (size_t)n, text, sizeof(text));
  if (m < 0 || (size_t)m != size || memcmp(text, data, size) != 0)
    abort();
}

static void check_multihash(const uint8_t *data, size_t size) {
  static uint8_t buf[1 << 16];
  const uint8_t *dig;
  uint64_t code;
  size_t dlen;
  np_ssize n = np_multihash_parse(data, size, &code, &dig, &dlen), m;
  if (n < 0)
    return;
  if ((size_t)n > size || dig < data || dig + dlen != data + n ||
      (code == NP_MH_SHA2_256 && dlen != 32))
    abort();
  if (dlen + 2 * NP_VARINT_MAX <= sizeof(buf)) {
    m = np_multihash_encode(code, dig, dlen, buf, sizeof(buf));
    if (m != n || memcmp(buf, data, (size_t)n) != 0)
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_varint(data, size);
  check_base58(data, size);
  check_multibase(data, size);
  check_multihash(data, size);
  return 0;
}
