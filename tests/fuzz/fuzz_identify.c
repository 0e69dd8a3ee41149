/* Fuzz identify as a stream reader sees it: uvarint-framed Identify
 * messages merged until the input ends, the signed peer record opened, and
 * whatever was accepted written back out and read again unchanged. The
 * whole input is also tried as a bare peer-record Envelope. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_identify.h"
#include "np_lp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static np_identity self;

static void same(const np_identify *a, const np_identify *b) {
  size_t i;
  if (a->naddrs != b->naddrs || a->nprotocols != b->nprotocols ||
      a->observed.len != b->observed.len ||
      (a->observed.data == NULL) != (b->observed.data == NULL) ||
      (a->agent_version == NULL) != (b->agent_version == NULL) ||
      (a->protocol_version == NULL) != (b->protocol_version == NULL))
    abort();
  for (i = 0; i < a->naddrs; i++)
    if (a->addrs[i].len != b->addrs[i].len ||
        memcmp(a->addrs[i].data, b->addrs[i].data, a->addrs[i].len) != 0)
      abort();
  for (i = 0; i < a->nprotocols; i++)
    if (strcmp(a->protocols[i], b->protocols[i]) != 0)
      abort();
  if (a->observed.len &&
      memcmp(a->observed.data, b->observed.data, a->observed.len) != 0)
    abort();
  if (a->agent_version && strcmp(a->agent_version, b->agent_version) != 0)
    abort();
  if (a->protocol_version &&
      strcmp(a->protocol_version, b->protocol_version) != 0)
    abort();
}

static void roundtrip(const np_identify *id) {
  static uint8_t out[2 * (NP_IDENTIFY_MSG_OUT + 8)];
  np_identify_params p;
  np_identify back;
  const uint8_t *msg;
  size_t mlen, off = 0;
  np_ssize n;
  memset(&p, 0, sizeof(p));
  p.protocol_version = id->protocol_version;
  p.agent_version = id->agent_version;
  p.listen_addrs = id->addrs;
  p.nlisten = id->naddrs;
  p.observed = id->observed.data;
  p.observed_len = id->observed.len;
  p.protocols = (const char *const *)id->protocols;
  p.nprotocols = id->nprotocols;
  n = np_identify_build(&self, &p, out, sizeof(out));
  if (n == NP_ELIMIT)
    return; /* more than a 4 KiB message: fine to refuse */
  if (n < 0)
    abort();
  np_identify_init(&back);
  while (off < (size_t)n) {
    np_ssize k = np_lp_parse(out + off, (size_t)n - off, NP_IDENTIFY_MSG_MAX,
                             &msg, &mlen);
    if (k < 0 || np_identify_parse(&back, msg, mlen) != 0)
      abort();
    off += (size_t)k;
  }
  same(id, &back);
  np_identify_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  np_lp_reader r;
  np_identify id;
  np_peer_record rec;
  size_t off = 0;
  int rv = 0;
  if (!ready) {
    np_ed25519 k;
    uint8_t seed[NP_ED25519_SEED_LEN] = {42};
    if (np_ed25519_from_seed(&k, seed) != 0 ||
        np_identity_from_key(&self, &k) != 0)
      abort();
    ready = 1;
  }
  np_lp_init(&r, NP_IDENTIFY_MSG_MAX);
  np_identify_init(&id);
  while (off < size && rv == 0) {
    const uint8_t *msg;
    size_t mlen;
    np_ssize n = np_lp_feed(&r, data + off, size - off, &msg, &mlen);
    if (n < 0)
      break;
    off += (size_t)n;
    if (msg != NULL)
      rv = np_identify_parse(&id, msg, mlen);
  }
  np_lp_free(&r);
  if (id.naddrs > NP_IDENTIFY_MAX_ADDRS ||
      id.nprotocols > NP_IDENTIFY_MAX_PROTOCOLS ||
      id.nmsgs > NP_IDENTIFY_MAX_MSGS)
    abort();
  if (id.signed_record.data != NULL &&
      np_peer_record_open(&rec, id.signed_record.data, id.signed_record.len) ==
          0) {
    if (rec.naddrs > NP_IDENTIFY_MAX_ADDRS)
      abort();
    np_peer_record_free(&rec);
  }
  if (rv == 0 && id.nmsgs > 0)
    roundtrip(&id);
  np_identify_free(&id);
  if (np_peer_record_open(&rec, data, size) == 0)
    np_peer_record_free(&rec);
  return 0;
}
