/* Fuzz the kadstore file loader (untrusted bytes from disk): whatever it
 * accepts must be consistent (every loaded record found by key, counts
 * matching the walk), and a refusal must leave the store as it was. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_kadstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct walk {
  const np_kadstore *s;
  size_t n;
} walk;

static void on_rec(const uint8_t *key, size_t keylen, const uint8_t *val,
                   size_t vallen, uint64_t received, uint64_t expires,
                   void *ud) {
  walk *w = ud;
  const uint8_t *v;
  size_t vl;
  (void)received;
  if (np_kadstore_get(w->s, key, keylen, expires - 1, &v, &vl, NULL) != 0 ||
      vl != vallen || memcmp(v, val, vl) != 0)
    abort();
  w->n++;
}

static void on_prov(const np_kadstore_provider *p, void *ud) {
  walk *w = ud;
  if (p->naddrs > NP_KADSTORE_ADDRS_MAX || p->id->len == 0)
    abort();
  w->n++;
}

/* CRC-32 as zlib computes it (the file's entry checksum). */
static uint32_t crc(uint32_t c, const uint8_t *p, size_t n) {
  int k;
  c = ~c;
  while (n--) {
    c ^= *p++;
    for (k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

/* Rewrite every entry's checksum so mutations reach the entry parsers
 * instead of dying at the CRC. */
static void fix_crcs(uint8_t *b, size_t len) {
  size_t off = 8;
  while (off < len && len - off >= 9) {
    size_t blen = (size_t)b[off + 1] << 24 | (size_t)b[off + 2] << 16 |
                  (size_t)b[off + 3] << 8 | b[off + 4];
    uint32_t c;
    if (blen > len - off - 9)
      blen = len - off - 9;
    c = crc(crc(0, b + off, 5), b + off + 9, blen);
    b[off + 5] = (uint8_t)(c >> 24);
    b[off + 6] = (uint8_t)(c >> 16);
    b[off + 7] = (uint8_t)(c >> 8);
    b[off + 8] = (uint8_t)c;
    off += 9 + blen;
  }
}

static void one(const uint8_t *data, size_t size) {
  np_kadstore_config cfg;
  np_kadstore *s;
  np_kadstore_stats st;
  char err[256];
  walk w = {NULL, 0};
  static const uint8_t key[] = "/pk/\x00\x04\x08\x01\x12\x00";
  np_kadstore_config_default(&cfg);
  cfg.max_records = 64;
  cfg.max_value = 4096;
  cfg.max_provider_keys = 16;
  cfg.max_providers = 8;
  if (np_kadstore_new(&s, &cfg) != 0)
    abort();
  /* A refused load must not disturb what is there: one provider. */
  {
    np_peerid id = {3, {0x00, 0x01, 0x07}};
    if (np_kadstore_add_provider(s, key, sizeof(key) - 1, &id, NULL, NULL, 0,
                                 1, NULL) != 0)
      abort();
  }
  if (np_kadstore_load_buf(s, data, size, "fuzz", 1000, NULL, err,
                           sizeof(err)) != 0) {
    np_kadstore_stats_get(s, &st);
    if (st.providers != 1 || st.records != 0 || strstr(err, "fuzz") == NULL)
      abort();
  } else {
    w.s = s;
    np_kadstore_each_record(s, on_rec, &w);
    np_kadstore_stats_get(s, &st);
    if (w.n != st.records || st.records > cfg.max_records)
      abort();
    w.n = 0;
    np_kadstore_each_provider(s, on_prov, &w);
    if (w.n != st.providers)
      abort();
    np_kadstore_expire(s, UINT64_MAX);
    np_kadstore_stats_get(s, &st);
    if (st.records || st.providers || st.provider_keys)
      abort();
  }
  np_kadstore_del(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *copy;
  one(data, size);
  if (size < 17 || (copy = malloc(size)) == NULL)
    return 0;
  memcpy(copy, data, size);
  fix_crcs(copy, size);
  one(copy, size);
  free(copy);
  return 0;
}
