/* CIDs, as far as the DHT needs them: a provider record is keyed by the
 * CID's multihash. Binary: CIDv0 is a bare sha2-256 multihash; CIDv1 is
 * uvarint(1) || uvarint(content codec) || multihash. Text: CIDv0 is
 * base58btc without a prefix ("Qm..."), CIDv1 is multibase ('b', 'z',
 * 'u'). */
#ifndef NP_CID_H
#define NP_CID_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"

#define NP_CID_MAX 128 /* longest binary CID accepted */

/* The multihash inside the |len| binary CID bytes at |cid|: |*mh| points
 * into |cid|. Returns 0, or NP_EINVAL (not a CIDv0/v1, trailing bytes). */
int np_cid_multihash(const uint8_t *cid, size_t len, const uint8_t **mh,
                     size_t *mhlen);

/* Parse |len| chars of CID text into its binary form in |out| (|cap|
 * bytes). Returns the byte length, NP_EINVAL (not a CID) or NP_ELIMIT. */
np_ssize np_cid_parse(const char *text, size_t len, uint8_t *out, size_t cap);

#endif
