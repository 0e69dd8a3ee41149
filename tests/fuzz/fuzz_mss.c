/* Fuzz multistream-select. Input: byte 0 picks the role (bit 0: listener),
 * lazy mode (bit 1) and how many proposals a dialer makes (bits 2-3); byte
 * 1 is the chunk size; the rest is what the peer sends. The same bytes fed
 * in chunks and one byte at a time must end the same way, consume the same
 * prefix, and never consume application data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_mss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const served[] = {"/noise", "/yamux/1.0.0", "/a"};
static const char *const proposals[] = {"/tls/1.0.0", "/noise", "/a", "/b"};

static int lookup(const char *name, size_t len, void *ud) {
  size_t i;
  (void)ud;
  if (len == 0 || len > NP_MSS_MAX_NAME || strlen(name) != len ||
      memchr(name, '\n', len) != NULL)
    abort();
  for (i = 0; i < sizeof(served) / sizeof(served[0]); i++)
    if (strcmp(served[i], name) == 0)
      return 1;
  return 0;
}

typedef struct result {
  int state, err;
  size_t used;
  char proto[NP_MSS_MAX_MSG + 1];
} result;

static void drain(np_mss *m) {
  const uint8_t *p;
  size_t n = np_mss_output(m, &p);
  if (n > NP_MSS_OUT_CAP)
    abort();
  np_mss_drain(m, n);
}

static void run(uint8_t mode, const uint8_t *in, size_t len, size_t chunk,
                result *r) {
  np_mss m;
  size_t off = 0, nprop = 1 + ((mode >> 2) & 3);
  int lazy = !(mode & 1) && (mode & 2) && nprop == 1;
  const char *p;
  if (mode & 1) {
    if (np_mss_init_listener(&m, lookup, NULL) != 0)
      abort();
  } else if (np_mss_init_dialer(&m, proposals, nprop, lazy ? NP_MSS_LAZY : 0) !=
             0) {
    abort();
  }
  drain(&m);
  while (off < len && np_mss_state(&m) == NP_MSS_NEGOTIATING) {
    size_t n = len - off < chunk ? len - off : chunk;
    np_ssize rv = np_mss_feed(&m, in + off, n);
    drain(&m);
    if (rv < 0) {
      if (rv != np_mss_error(&m) || np_mss_state(&m) != NP_MSS_FAILED)
        abort();
      break;
    }
    if ((size_t)rv > n)
      abort();
    /* Paused for output room: once drained it must move on, or a caller
     * would hang. */
    if (rv == 0 && np_mss_state(&m) == NP_MSS_NEGOTIATING) {
      drain(&m);
      rv = np_mss_feed(&m, in + off, n);
      drain(&m);
      if (rv == 0 && np_mss_state(&m) == NP_MSS_NEGOTIATING)
        abort();
      if (rv < 0)
        break;
    }
    off += (size_t)rv;
  }
  if (np_mss_state(&m) == NP_MSS_NEGOTIATING && lazy != np_mss_can_write(&m))
    abort();
  r->state = np_mss_state(&m);
  r->err = np_mss_error(&m);
  r->used = off;
  r->proto[0] = '\0';
  p = np_mss_protocol(&m, NULL);
  if ((p != NULL) != (r->state == NP_MSS_DONE))
    abort();
  if (p != NULL) {
    size_t i, found = 0;
    const char *const *list = (mode & 1) ? served : proposals;
    size_t nlist = (mode & 1) ? 3 : nprop;
    for (i = 0; i < nlist; i++)
      found |= strcmp(list[i], p) == 0;
    if (!found || !np_mss_can_write(&m))
      abort();
    strcpy(r->proto, p);
    /* Application data stays with the caller. */
    if (np_mss_feed(&m, in, len) != 0)
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  result a, b;
  size_t chunk;
  if (size < 2)
    return 0;
  chunk = data[1] ? data[1] : size;
  run(data[0], data + 2, size - 2, chunk, &a);
  run(data[0], data + 2, size - 2, 1, &b);
  if (a.state != b.state || a.err != b.err || strcmp(a.proto, b.proto) != 0)
    abort();
  /* Failures may be detected at different offsets; successes may not. */
  if (a.state == NP_MSS_DONE && a.used != b.used)
    abort();
  return 0;
}
