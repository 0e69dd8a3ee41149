/* Fuzz the libp2p peer-certificate check (np_tls_verify_cert) with
 * arbitrary DER: it must never crash or overread, and what it accepts must
 * carry a well-formed peer ID. */
#include <stdint.h>
#include <stdlib.h>

#include "np_log.h"
#include "np_peerid.h"
#include "np_tls.h"

#define NOW 4102444800 /* 2100-01-01: inside every seed's validity */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_peerid id, again;
  char text[NP_PEERID_STRMAX];
  np_ssize n;
  np_log_set_level(NP_LOG_ERROR);
  if (np_tls_verify_cert(data, size, NOW, &id) != 0)
    return 0;
  n = np_peerid_to_string(&id, text, sizeof(text));
  if (n <= 0 || np_peerid_parse(&again, text, (size_t)n) != 0 ||
      !np_peerid_equal(&id, &again))
    abort();
  /* The same input is judged the same way twice (no hidden state). */
  if (np_tls_verify_cert(data, size, NOW, &again) != 0 ||
      !np_peerid_equal(&id, &again))
    abort();
  return 0;
}
