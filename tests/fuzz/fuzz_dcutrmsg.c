/* Fuzz the DCUtR HolePunch decoder as a stream reader sees it: the input
 * is uvarint-framed bodies; each is decoded under the default caps and
 * under tiny ones, must respect them, re-encodes, and decodes again to the
 * same message. The whole input also goes through decode_lp. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_dcutrmsg.h"
#include "np_lp.h"
#include "np_multiaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const np_dcutrmsg *m, const np_dcutrmsg_limits *lim) {
  size_t i;
  if (m->naddrs > lim->max_addrs ||
      (m->type != NP_DCUTRMSG_CONNECT && m->type != NP_DCUTRMSG_SYNC))
    abort();
  for (i = 0; i < m->naddrs; i++)
    if (np_maddr_validate(m->addrs[i].data, m->addrs[i].len) != 0)
      abort();
}

static void roundtrip(const np_dcutrmsg *m) {
  static uint8_t out[NP_DCUTRMSG_MSG_MAX + 16];
  np_dcutrmsg back;
  size_t i;
  np_ssize n = np_dcutrmsg_encode_lp(m, out, sizeof(out));
  if (n < 0)
    abort(); /* what was kept never grows past the input */
  if (np_dcutrmsg_decode_lp(&back, out, (size_t)n, NULL) != n)
    abort();
  if (back.type != m->type || back.naddrs != m->naddrs)
    abort();
  for (i = 0; i < m->naddrs; i++)
    if (back.addrs[i].len != m->addrs[i].len ||
        memcmp(back.addrs[i].data, m->addrs[i].data, m->addrs[i].len) != 0)
      abort();
  np_dcutrmsg_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_dcutrmsg_limits def, tiny = {64, 1};
  np_lp_reader r;
  np_dcutrmsg m;
  size_t off = 0;
  np_ssize n;
  np_dcutrmsg_limits_default(&def);
  if ((n = np_dcutrmsg_decode_lp(&m, data, size, NULL)) >= 0) {
    if ((size_t)n > size)
      abort();
    check(&m, &def);
    np_dcutrmsg_free(&m);
  } else if (m.addrs != NULL || m.naddrs != 0) {
    abort();
  }
  np_lp_init(&r, NP_DCUTRMSG_MSG_MAX);
  while (off < size) {
    const uint8_t *msg;
    size_t mlen;
    n = np_lp_feed(&r, data + off, size - off, &msg, &mlen);
    if (n < 0)
      break;
    off += (size_t)n;
    if (msg == NULL)
      continue;
    if (np_dcutrmsg_decode(&m, msg, mlen, &tiny) == 0) {
      check(&m, &tiny);
      np_dcutrmsg_free(&m);
    }
    if (np_dcutrmsg_decode(&m, msg, mlen, &def) == 0) {
      check(&m, &def);
      roundtrip(&m);
      np_dcutrmsg_free(&m);
    }
  }
  np_lp_free(&r);
  return 0;
}
