/* Unsigned varint (multiformats "uvarint"): 7 bits per byte, least
 * significant group first, high bit = more bytes follow. libp2p restricts it
 * to minimal encodings of at most 9 bytes, i.e. values up to 2^63 - 1. */
#ifndef NP_VARINT_H
#define NP_VARINT_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_VARINT_MAX 9                      /* longest accepted encoding */
#define NP_VARINT_VMAX ((uint64_t)INT64_MAX) /* largest encodable value */

/* Number of bytes np_varint_encode writes for |v| (1..9); values above
 * NP_VARINT_VMAX return NP_VARINT_MAX + 1 and cannot be encoded. */
size_t np_varint_size(uint64_t v);

/* Write |v| to |out| (|cap| bytes). Returns the number of bytes written,
 * NP_ELIMIT if |cap| is too small, or NP_EINVAL if v > NP_VARINT_VMAX. */
np_ssize np_varint_encode(uint64_t v, uint8_t *out, size_t cap);

/* Read one varint from the |len| bytes at |in| into |*out|. Returns the
 * number of bytes consumed (1..9), NP_ETRUNC if the input ends inside the
 * varint, or NP_EPROTO for a non-minimal encoding (e.g. 81 00) or one longer
 * than NP_VARINT_MAX bytes. Never reads past in[len - 1]. */
np_ssize np_varint_decode(const uint8_t *in, size_t len, uint64_t *out);

#endif
