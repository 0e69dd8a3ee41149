/* Fuzz host key decoding (a key file, or p2pd's -id file: PrivateKey
 * protobuf of any type). An accepted key must sign what np_pubkey (the
 * remote side) verifies under the same peer ID, and re-encode to bytes
 * that decode to the same key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_identity.h"
#include "np_pubkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static np_identity a, b;
  static uint8_t enc[8192], sig[NP_IDENTITY_SIG_MAX];
  static const char msg[] = "fuzz";
  np_peerid id;
  size_t sl = 0;
  long n;
  if (np_identity_decode_private(&a, data, size) != 0)
    return 0;
  if (np_identity_sign(&a, msg, sizeof(msg) - 1, sig, sizeof(sig), &sl) != 0 ||
      np_pubkey_verify(a.pub_pb, a.pub_pb_len, msg, sizeof(msg) - 1, sig, sl,
                       &id, NULL) != 0 ||
      !np_peerid_equal(&id, &a.id))
    abort();
  n = np_identity_encode_private(&a, enc, sizeof(enc));
  if (n <= 0 || np_identity_decode_private(&b, enc, (size_t)n) != 0 ||
      !np_peerid_equal(&a.id, &b.id) || a.type != b.type)
    abort();
  np_identity_clear(&a);
  np_identity_clear(&b);
  return 0;
}
