/* Multihash: uvarint(hash code) || uvarint(digest length) || digest. */
#ifndef NP_MULTIHASH_H
#define NP_MULTIHASH_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_MH_IDENTITY 0x00
#define NP_MH_SHA2_256 0x12

/* Parse one multihash at the start of the |len| bytes at |in|. On success
 * returns the bytes consumed (header + digest; the input may continue) and
 * sets |*code|, |*digest| (pointing into |in|) and |*dlen|. Any code is
 * accepted, but sha2-256 must carry exactly 32 bytes. Returns NP_ETRUNC if
 * the input ends early, NP_EPROTO for a malformed varint or a wrong
 * sha2-256 length. */
np_ssize np_multihash_parse(const uint8_t *in, size_t len, uint64_t *code,
                            const uint8_t **digest, size_t *dlen);

/* Write the multihash header and |dlen| digest bytes for |code| into |out|.
 * Returns the bytes written or NP_ELIMIT if |cap| is too small, NP_EINVAL
 * for sha2-256 with dlen != 32. */
np_ssize np_multihash_encode(uint64_t code, const uint8_t *digest, size_t dlen,
                             uint8_t *out, size_t cap);

#endif
