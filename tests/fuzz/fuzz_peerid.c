/* Fuzz peer-ID text parsing and binary validation: an accepted ID must
 * print in both text forms, and each must parse back to the same ID. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_peerid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const np_peerid *id) {
  char text[NP_PEERID_STRMAX], cid[NP_PEERID_CIDMAX];
  np_peerid a, b, c;
  const uint8_t *pb;
  size_t pblen;
  np_ssize n = np_peerid_to_string(id, text, sizeof(text));
  np_ssize m = np_peerid_to_cid(id, cid, sizeof(cid));
  if (n <= 0 || m <= 0 || np_peerid_parse(&a, text, (size_t)n) != 0 ||
      np_peerid_parse(&b, cid, (size_t)m) != 0 || !np_peerid_equal(id, &a) ||
      !np_peerid_equal(id, &b))
    abort();
  if (np_peerid_from_bytes(&c, id->bytes, id->len) != 0 ||
      !np_peerid_equal(id, &c))
    abort();
  /* An identity ID is its own key: deriving it again gives the same ID. */
  if (np_peerid_pubkey(id, &pb, &pblen) == 0 &&
      (np_peerid_from_pubkey(&c, pb, pblen) != 0 || !np_peerid_equal(id, &c)))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_peerid id;
  if (np_peerid_parse(&id, (const char *)data, size) == 0)
    roundtrip(&id);
  if (np_peerid_from_bytes(&id, data, size) == 0) {
    if (id.len != size || memcmp(id.bytes, data, size) != 0)
      abort();
    roundtrip(&id);
  }
  if (size > 0 && np_peerid_from_pubkey(&id, data, size) == 0)
    roundtrip(&id);
  return 0;
}
