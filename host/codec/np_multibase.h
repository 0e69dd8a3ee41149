/* Multibase text: a one-character base prefix, then the data. Supported:
 * 'b' base32 (RFC 4648 alphabet, lower case, no padding), 'u' base64url (no
 * padding) and 'z' base58btc. Decoding is strict so that every accepted text
 * is the canonical encoding of its bytes: no padding, no upper case in 'b',
 * and the unused bits of the last character must be zero. */
#ifndef NP_MULTIBASE_H
#define NP_MULTIBASE_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_MULTIBASE_BASE32 'b'
#define NP_MULTIBASE_BASE64URL 'u'
#define NP_MULTIBASE_BASE58BTC 'z'

/* Longest text (after the prefix) np_multibase_decode accepts. */
#define NP_MULTIBASE_MAX 2048

/* Encode |len| bytes in |base| as NUL-terminated text with its prefix in
 * |out| (|cap| bytes). Returns strlen(out), NP_ELIMIT if it does not fit (or
 * base58 input exceeds NP_BASE58_MAX), or NP_EINVAL for an unknown |base|. */
np_ssize np_multibase_encode(int base, const uint8_t *in, size_t len, char *out,
                             size_t cap);

/* Decode |len| chars of prefixed text into |out| (|cap| bytes). Returns the
 * number of bytes written and stores the prefix in |*base| (may be NULL);
 * NP_EINVAL for an unknown prefix, a bad character, an impossible length or
 * nonzero trailing bits; NP_ELIMIT if the text exceeds NP_MULTIBASE_MAX or
 * the result does not fit. */
np_ssize np_multibase_decode(const char *in, size_t len, int *base,
                             uint8_t *out, size_t cap);

/* The unprefixed codecs underneath, same conventions. */
np_ssize np_multibase_base32_encode(const uint8_t *in, size_t len, char *out,
                                    size_t cap);
np_ssize np_multibase_base32_decode(const char *in, size_t len, uint8_t *out,
                                    size_t cap);
np_ssize np_multibase_base64url_encode(const uint8_t *in, size_t len, char *out,
                                       size_t cap);
np_ssize np_multibase_base64url_decode(const char *in, size_t len, uint8_t *out,
                                       size_t cap);

#endif
