/* base58btc (Bitcoin alphabet), as used for legacy peer-ID text. The
 * conversion is quadratic, so both directions bound their input. */
#ifndef NP_BASE58_H
#define NP_BASE58_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_BASE58_MAX 256 /* max bytes on the binary side, both ways */

/* Encoded length bound (excluding the NUL) for |n| input bytes. */
#define NP_BASE58_ENCLEN(n) ((n)*138 / 100 + 1)
/* Longest text np_base58_decode looks at. */
#define NP_BASE58_TEXTMAX NP_BASE58_ENCLEN(NP_BASE58_MAX)

/* Encode |len| bytes (len <= NP_BASE58_MAX) as NUL-terminated text in |out|
 * (|cap| bytes; NP_BASE58_ENCLEN(len) + 1 always fits). Each leading zero
 * byte becomes a '1'. Returns strlen(out), or NP_ELIMIT if |len| is too large
 * or the text and NUL do not fit. */
np_ssize np_base58_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Decode |len| chars (no NUL needed) into |out| (|cap| bytes). Returns the
 * number of bytes written, NP_EINVAL on a character outside the alphabet,
 * or NP_ELIMIT if |len| > NP_BASE58_TEXTMAX, the result exceeds
 * NP_BASE58_MAX bytes or does not fit |cap|. The empty string decodes to 0
 * bytes. Whatever np_base58_encode produces decodes. */
np_ssize np_base58_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
