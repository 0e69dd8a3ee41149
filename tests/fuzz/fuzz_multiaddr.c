/* Fuzz the multiaddr codec. Each input is tried both as binary and as text;
 * whatever is accepted must print, and the printed text must parse back to
 * the same bytes. The sockaddr helpers must agree with each other. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_multiaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Text of any valid binary fits: the longest expansion is a no-value
 * protocol like /webrtc-direct (14 chars for 2 bytes). */
#define TEXT_CAP (NP_MADDR_MAX * 8)

static void check_binary(const uint8_t *bin, size_t len) {
  static char text[TEXT_CAP];
  uint8_t back[NP_MADDR_MAX], sbin[64];
  struct sockaddr_storage ss, ss2;
  socklen_t sl, sl2;
  np_maddr_comp c;
  np_peerid id;
  size_t off = 0, count = 0;
  int rv = np_maddr_validate(bin, len), it;
  np_ssize n, m;

  while ((it = np_maddr_next(bin, len, &off, &c)) > 0) {
    if (c.val < bin || c.val + c.vlen > bin + len || off > len)
      abort();
    count++;
  }
  /* Iteration and validation agree; validate also refuses the empty. */
  if (len == 0 ? rv != NP_EPROTO || it != 0 || count != 0 : it != rv)
    abort();
  n = np_maddr_to_string(bin, len, text, sizeof(text));
  if ((n >= 0) != (rv == 0))
    abort();
  if (rv < 0) {
    if (np_maddr_get_p2p(bin, len, &id) != rv ||
        np_maddr_to_sockaddr(bin, len, &ss, &sl) != rv)
      abort();
    return;
  }
  if ((size_t)n != strlen(text))
    abort();
  m = np_maddr_parse(text, (size_t)n, back, sizeof(back));
  if (m < 0 || (size_t)m != len || memcmp(back, bin, len) != 0)
    abort();
  rv = np_maddr_get_p2p(bin, len, &id);
  if (rv != 0 && rv != NP_ENOENT)
    abort();
  if (np_maddr_to_sockaddr(bin, len, &ss, &sl) == 0) {
    n = np_maddr_from_sockaddr_quic((struct sockaddr *)&ss, sbin, sizeof(sbin));
    if (n <= 0 || np_maddr_to_sockaddr(sbin, (size_t)n, &ss2, &sl2) != 0 ||
        sl != sl2 || memcmp(&ss, &ss2, sl) != 0)
      abort();
  }
}

static void check_text(const char *text, size_t len) {
  static char out[TEXT_CAP];
  uint8_t bin[NP_MADDR_MAX], back[NP_MADDR_MAX];
  np_ssize n = np_maddr_parse(text, len, bin, sizeof(bin)), m;
  if (n < 0)
    return;
  if (n == 0 || np_maddr_validate(bin, (size_t)n) != 0)
    abort();
  m = np_maddr_to_string(bin, (size_t)n, out, sizeof(out));
  if (m < 0)
    abort();
  m = np_maddr_parse(out, (size_t)m, back, sizeof(back));
  if (m != n || memcmp(back, bin, (size_t)n) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_binary(data, size);
  check_text((const char *)data, size);
  return 0;
}
