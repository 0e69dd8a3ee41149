/* Fuzz hivemind's unary frames. Byte 0 picks the direction (bit 0: answer)
 * and the size limit (bits 1-3); the rest is the frame. Whatever decodes
 * must re-encode to a frame that decodes to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_unary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_req(const uint8_t *in, size_t len, size_t max) {
  np_unary_req a, b;
  char err[128];
  uint8_t *buf;
  size_t need;
  np_ssize n = np_unary_decode_req(&a, in, len, max, err, sizeof(err)), m;
  if (n < 0) {
    if (a.pb_ != NULL)
      abort();
    return;
  }
  if ((size_t)n > len || a.proto == NULL || strlen(a.proto) != a.proto_len)
    abort();
  need = np_unary_req_size(&a);
  if ((buf = malloc(need)) == NULL)
    abort();
  m = np_unary_encode_req(&a, buf, need);
  if (m < 0 || (size_t)m != need)
    abort();
  if (np_unary_decode_req(&b, buf, need, need, err, sizeof(err)) != m ||
      memcmp(a.call_id, b.call_id, NP_UNARY_CALLID_LEN) != 0 ||
      a.peer_len != b.peer_len || a.data_len != b.data_len ||
      strcmp(a.proto, b.proto) != 0 ||
      (a.peer_len && memcmp(a.peer, b.peer, a.peer_len) != 0) ||
      (a.data_len && memcmp(a.data, b.data, a.data_len) != 0))
    abort();
  np_unary_req_free(&b);
  np_unary_req_free(&a);
  free(buf);
}

static void check_resp(const uint8_t *in, size_t len, size_t max) {
  np_unary_resp a, b;
  char err[128];
  uint8_t *buf;
  size_t need;
  np_ssize n = np_unary_decode_resp(&a, in, len, max, err, sizeof(err)), m;
  if (n < 0) {
    if (a.pb_ != NULL)
      abort();
    return;
  }
  if ((size_t)n > len)
    abort();
  need = np_unary_resp_size(&a);
  if ((buf = malloc(need)) == NULL)
    abort();
  m = np_unary_encode_resp(&a, buf, need);
  if (m < 0 || (size_t)m != need)
    abort();
  if (np_unary_decode_resp(&b, buf, need, need, err, sizeof(err)) != m ||
      memcmp(a.call_id, b.call_id, NP_UNARY_CALLID_LEN) != 0 ||
      a.is_error != b.is_error || a.data_len != b.data_len ||
      (a.data_len && memcmp(a.data, b.data, a.data_len) != 0))
    abort();
  np_unary_resp_free(&b);
  np_unary_resp_free(&a);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t max;
  if (size < 1)
    return 0;
  max = (size_t)16 << ((data[0] >> 1) & 7); /* 16 B .. 2 KiB */
  if (data[0] & 1)
    check_resp(data + 1, size - 1, max);
  else
    check_req(data + 1, size - 1, max);
  return 0;
}
