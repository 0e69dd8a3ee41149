/* Fuzz the Kademlia message decoder as a stream reader sees it: the input
 * is uvarint-framed bodies; each is decoded under the default caps and
 * under tiny ones, must respect them, re-encodes, and decodes again to the
 * same message. The closer peers then feed a lookup as a hostile answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_kadmsg.h"
#include "np_kadquery.h"
#include "np_lp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int blob_eq(const np_kadmsg_blob *a, const np_kadmsg_blob *b) {
  return a->len == b->len &&
         (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void same_peers(const np_kadmsg_peer *a, const np_kadmsg_peer *b,
                       size_t n) {
  size_t i, j;
  for (i = 0; i < n; i++) {
    if (!np_peerid_equal(&a[i].id, &b[i].id) || a[i].naddrs != b[i].naddrs ||
        a[i].conn != b[i].conn)
      abort();
    for (j = 0; j < a[i].naddrs; j++)
      if (!blob_eq(&a[i].addrs[j], &b[i].addrs[j]))
        abort();
  }
}

static void check(const np_kadmsg *m, const np_kadmsg_limits *lim) {
  size_t i;
  if (m->ncloser > lim->max_peers || m->nproviders > lim->max_peers ||
      m->key.len > lim->max_key || m->record.key.len > lim->max_key ||
      (unsigned)m->type > NP_KADMSG_PING)
    abort();
  for (i = 0; i < m->ncloser; i++)
    if (m->closer[i].naddrs > lim->max_addrs)
      abort();
  for (i = 0; i < m->nproviders; i++)
    if (m->providers[i].naddrs > lim->max_addrs)
      abort();
}

static void roundtrip(const np_kadmsg *m) {
  static uint8_t out[2 * NP_KADMSG_MSG_MAX];
  np_kadmsg back;
  np_ssize n = np_kadmsg_encode(m, out, sizeof(out));
  if (n < 0)
    abort(); /* what was kept never grows past the input */
  if (np_kadmsg_decode(&back, out, (size_t)n, NULL) != 0)
    abort();
  if (back.type != m->type || back.cluster_level != m->cluster_level ||
      !blob_eq(&back.key, &m->key) || back.has_record != m->has_record ||
      !blob_eq(&back.record.key, &m->record.key) ||
      !blob_eq(&back.record.value, &m->record.value) ||
      (back.record.time_received == NULL) !=
          (m->record.time_received == NULL) ||
      back.ncloser != m->ncloser || back.nproviders != m->nproviders)
    abort();
  if (m->record.time_received &&
      strcmp(m->record.time_received, back.record.time_received) != 0)
    abort();
  same_peers(m->closer, back.closer, m->ncloser);
  same_peers(m->providers, back.providers, m->nproviders);
  np_kadmsg_free(&back);
}

/* The decoded peers as one lookup's answers. */
static void lookup(const np_kadmsg *m) {
  np_peerid self, seed[NP_KADMSG_PEERS_MAX], out[16];
  uint8_t target[NP_KBUCKET_KEYLEN] = {0};
  np_kadquery *q;
  size_t i, n, rounds;
  memset(&self, 0, sizeof(self));
  self.len = 1;
  if (np_kadquery_new(&q, target, &self, NULL) != 0)
    abort();
  for (i = 0; i < m->ncloser; i++)
    seed[i] = m->closer[i].id;
  np_kadquery_seed(q, seed, m->ncloser);
  for (rounds = 0; rounds < 400; rounds++) {
    n = np_kadquery_next(q, rounds, out, 16);
    if (n == 0)
      break;
    for (i = 0; i < n; i++)
      np_kadquery_on_response(q, &out[i], seed, m->ncloser);
  }
  if (np_kadquery_state_get(q) == NP_KADQUERY_RUNNING)
    abort();
  np_kadquery_del(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_kadmsg_limits def, tiny = {256, 3, 2, 8};
  np_lp_reader r;
  size_t off = 0;
  np_kadmsg_limits_default(&def);
  np_lp_init(&r, NP_KADMSG_MSG_MAX);
  while (off < size) {
    const uint8_t *msg;
    size_t mlen;
    np_kadmsg m;
    np_ssize n = np_lp_feed(&r, data + off, size - off, &msg, &mlen);
    if (n < 0)
      break;
    off += (size_t)n;
    if (msg == NULL)
      continue;
    if (np_kadmsg_decode(&m, msg, mlen, &tiny) == 0) {
      check(&m, &tiny);
      np_kadmsg_free(&m);
    }
    if (np_kadmsg_decode(&m, msg, mlen, &def) == 0) {
      check(&m, &def);
      roundtrip(&m);
      lookup(&m);
      np_kadmsg_free(&m);
    }
  }
  np_lp_free(&r);
  return 0;
}
