/* The DHT store: put/get/select, TTLs with explicit times, every limit,
 * providers, the /pk/ validator, save/load round trips, refusal of corrupt
 * files (every flipped byte, every truncation, wrong version), atomic
 * saves and the file mode. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "np_err.h"
#include "np_identity.h"
#include "np_kadstore.h"
#include "tap.h"
#include "test_util.h"

#define HOUR (3600ULL * 1000)

/* "/pk/" + peer ID of |id|. */
static size_t pk_key(const np_identity *id, uint8_t *out) {
  memcpy(out, "/pk/", 4);
  memcpy(out + 4, id->id.bytes, id->id.len);
  return 4 + (size_t)id->id.len;
}

/* Test namespace "seq": the value's first byte is a sequence number; a
 * higher one wins (select), an empty value is invalid. */
static int seq_validate(void *ud, const uint8_t *key, size_t keylen,
                        const uint8_t *val, size_t vallen, uint64_t now,
                        const char **why) {
  (void)ud, (void)key, (void)keylen, (void)val, (void)now;
  if (vallen == 0) {
    *why = "empty seq value";
    return NP_EINVAL;
  }
  return 0;
}
static int seq_select(void *ud, const uint8_t *key, size_t keylen,
                      const uint8_t *const *vals, const size_t *lens,
                      size_t n) {
  size_t i, best = 0;
  (void)ud, (void)key, (void)keylen, (void)lens;
  for (i = 1; i < n; i++)
    if (vals[i][0] > vals[best][0])
      best = i;
  return (int)best;
}
static const np_kadstore_validator seq_v = {
    sizeof(np_kadstore_validator), "seq", seq_validate, seq_select, NULL};

static np_kadstore *mk(const np_kadstore_config *cfg) {
  np_kadstore *s = NULL;
  int rv = np_kadstore_new(&s, cfg);
  if (rv != 0) {
    printf("Bail out! np_kadstore_new: %s\n", np_strerror(rv));
    exit(1);
  }
  if (np_kadstore_register(s, &seq_v) != 0) {
    printf("Bail out! register seq\n");
    exit(1);
  }
  return s;
}

#define PUT(s, k, v, now, why)                                                 \
  np_kadstore_put((s), (const uint8_t *)(k), strlen(k), (const uint8_t *)(v), \
                  strlen(v), (now), (why))

static int get_str(np_kadstore *s, const char *k, uint64_t now, char *out,
                   size_t cap) {
  const uint8_t *v;
  size_t n;
  int rv = np_kadstore_get(s, (const uint8_t *)k, strlen(k), now, &v, &n,
                           NULL);
  if (rv == 0) {
    n = n < cap - 1 ? n : cap - 1;
    memcpy(out, v, n);
    out[n] = 0;
  }
  return rv;
}

static void test_config(void) {
  np_kadstore_config c;
  np_kadstore *s = (np_kadstore *)&c;
  np_kadstore_config_default(&c);
  is_int(c.record_ttl_ms, 48 * HOUR, "default record TTL is 48 h");
  is_int(c.provider_ttl_ms, 48 * HOUR, "default provider TTL is 48 h");
  c.max_records = 0;
  is_int(np_kadstore_new(&s, &c), NP_EINVAL, "a zero limit is refused");
  ok(s == NULL, "no store on a refused config");
  np_kadstore_config_default(&c);
  c.max_addrs = NP_KADSTORE_ADDRS_MAX + 1;
  is_int(np_kadstore_new(&s, &c), NP_EINVAL, "max_addrs over the hard cap");
  np_kadstore_del(NULL);
}

static void test_registry(void) {
  np_kadstore *s = mk(NULL);
  np_kadstore_validator v = seq_v;
  char name[8];
  int i, rv = 0;
  is_int(np_kadstore_register(s, &seq_v), NP_EEXIST, "namespace taken");
  v.ns = "a/b";
  is_int(np_kadstore_register(s, &v), NP_EINVAL, "slash in a namespace");
  v.ns = "pk";
  is_int(np_kadstore_register(s, &v), NP_EEXIST, "/pk/ is built in");
  v.ns = "x";
  v.validate = NULL;
  is_int(np_kadstore_register(s, &v), NP_EINVAL, "validate is required");
  v.validate = seq_validate;
  for (i = 0; i < NP_KADSTORE_NS_MAX && rv == 0; i++) {
    snprintf(name, sizeof(name), "n%d", i);
    v.ns = name;
    rv = np_kadstore_register(s, &v);
  }
  is_int(rv, NP_ELIMIT, "the namespace table is bounded");
  np_kadstore_del(s);
  /* A validator built before select existed: its struct ends at validate,
   * so select reads as NULL and a newer put refreshes. */
  s = mk(NULL);
  v = seq_v;
  v.ns = "old";
  v.struct_size = offsetof(np_kadstore_validator, select);
  is_int(np_kadstore_register(s, &v), 0, "a shorter (older) struct registers");
  {
    const uint8_t *val;
    size_t n;
    np_kadstore_put(s, (const uint8_t *)"/old/k", 6, (const uint8_t *)"\x09",
                    1, 0, NULL);
    is_int(np_kadstore_put(s, (const uint8_t *)"/old/k", 6,
                           (const uint8_t *)"\x01", 1, 1, NULL),
           0, "without select the incoming record wins");
    ok(np_kadstore_get(s, (const uint8_t *)"/old/k", 6, 1, &val, &n, NULL) ==
               0 &&
           n == 1 && val[0] == 1,
       "and is what get returns");
  }
  v.struct_size = offsetof(np_kadstore_validator, validate);
  v.ns = "older";
  is_int(np_kadstore_register(s, &v), NP_EINVAL, "a struct without validate");
  np_kadstore_del(s);
}

static void test_put_get_select(void) {
  np_kadstore *s = mk(NULL);
  const char *why = NULL;
  char buf[64];
  const uint8_t *v;
  size_t n;
  uint64_t rcv = 0;
  is_int(PUT(s, "/seq/a", "\x02two", 1000, &why), 0, "put a record");
  is_int(np_kadstore_get(s, (const uint8_t *)"/seq/a", 6, 1000, &v, &n, &rcv),
         0, "get it");
  is_mem(v, n, "\x02two", 4, "same value");
  is_int(rcv, 1000, "received time kept");
  is_int(PUT(s, "/seq/a", "\x01one", 2000, &why), NP_EEXIST,
         "an older seq is refused (select keeps the stored one)");
  is_str(why, "the stored record was selected", "reason given");
  get_str(s, "/seq/a", 2000, buf, sizeof(buf));
  is_str(buf, "\x02two", "stored value unchanged");
  is_int(PUT(s, "/seq/a", "\x03three", 3000, &why), 0, "a newer seq replaces");
  np_kadstore_get(s, (const uint8_t *)"/seq/a", 6, 3000, &v, &n, &rcv);
  is_mem(v, n, "\x03three", 6, "replaced value");
  is_int(rcv, 3000, "replaced record has the new reception time");
  is_int(PUT(s, "/seq/b", "", 1000, &why), NP_EINVAL,
         "the validator's refusal");
  is_str(why, "empty seq value", "validator's reason passed on");
  is_int(PUT(s, "/ipns/x", "v", 1000, &why), NP_ENOTSUP,
         "unknown namespace (/ipns/ not implemented) refused");
  is_int(PUT(s, "seq/a", "\x01", 1000, &why), NP_EINVAL, "no leading slash");
  is_int(PUT(s, "/seq", "\x01", 1000, &why), NP_EINVAL, "no second slash");
  is_int(PUT(s, "//a", "\x01", 1000, &why), NP_EINVAL, "empty namespace");
  is_int(np_kadstore_remove(s, (const uint8_t *)"/seq/a", 6), 0, "remove");
  is_int(get_str(s, "/seq/a", 3000, buf, sizeof(buf)), NP_ENOENT,
         "gone after remove");
  is_int(np_kadstore_remove(s, (const uint8_t *)"/seq/a", 6), NP_ENOENT,
         "remove of an absent key");
  np_kadstore_del(s);
}

static void test_ttl(void) {
  np_kadstore_config c;
  np_kadstore *s;
  np_kadstore_stats st;
  char buf[16];
  np_kadstore_config_default(&c);
  c.record_ttl_ms = 100;
  s = mk(&c);
  PUT(s, "/seq/a", "\x05", 1000, NULL);
  PUT(s, "/seq/b", "\x01", 1050, NULL);
  is_int(get_str(s, "/seq/a", 1099, buf, sizeof(buf)), 0, "alive at 99 ms");
  is_int(get_str(s, "/seq/a", 1100, buf, sizeof(buf)), NP_ENOENT,
         "expired at the TTL");
  is_int(PUT(s, "/seq/a", "\x02", 1100, NULL), 0,
         "an expired record does not win select");
  is_int(np_kadstore_expire(s, 1150), 1, "sweep drops only the expired one");
  is_int(PUT(s, "/seq/z", "\x01", UINT64_MAX - 10, NULL), 0, "put near the "
         "end of time");
  is_int(get_str(s, "/seq/z", UINT64_MAX - 10, buf, sizeof(buf)), 0,
         "its expiry saturates instead of wrapping");
  np_kadstore_remove(s, (const uint8_t *)"/seq/z", 6);
  np_kadstore_stats_get(s, &st);
  is_int(st.records, 1, "one record left");
  is_int(get_str(s, "/seq/a", 1150, buf, sizeof(buf)), 0,
         "the re-put record survives");
  np_kadstore_del(s);
}

static void test_record_limits(void) {
  np_kadstore_config c;
  np_kadstore *s;
  const char *why = NULL;
  char key[32], val[64];
  int i;
  np_kadstore_config_default(&c);
  c.max_records = 3;
  c.max_key = 10;
  c.max_value = 8;
  c.record_ttl_ms = 100;
  s = mk(&c);
  is_int(PUT(s, "/seq/12345", "\x01", 0, &why), 0, "key at max_key");
  is_int(PUT(s, "/seq/123456", "\x01", 0, &why), NP_ELIMIT, "key over");
  is_str(why, "max_key", "reason names max_key");
  memset(val, 1, 9);
  val[9] = 0;
  is_int(PUT(s, "/seq/v", val, 0, &why), NP_ELIMIT, "value over max_value");
  is_str(why, "max_value", "reason names max_value");
  val[8] = 0;
  is_int(PUT(s, "/seq/v", val, 0, &why), 0, "value at max_value");
  PUT(s, "/seq/c", "\x01", 50, &why);
  is_int(PUT(s, "/seq/d", "\x01", 60, &why), NP_ELIMIT, "max_records");
  is_str(why, "max_records", "reason names max_records");
  is_int(get_str(s, "/seq/12345", 60, val, sizeof(val)), 0,
         "no valid record was evicted");
  is_int(PUT(s, "/seq/v", "\x05", 60, &why), 0,
         "replacing a stored key at the limit is fine");
  is_int(PUT(s, "/seq/d", "\x01", 100, &why), 0,
         "expired records are swept to make room");
  is_int(get_str(s, "/seq/c", 100, val, sizeof(val)), 0,
         "the unexpired one stayed");
  for (i = 0; i < 3; i++) {
    snprintf(key, sizeof(key), "/seq/e%d", i);
    PUT(s, key, "\x01", 120, NULL);
  }
  is_int(PUT(s, "/seq/f", "\x01", 120, &why), NP_ELIMIT, "full again");
  np_kadstore_del(s);
}

static void test_pk(void) {
  np_kadstore *s = mk(NULL);
  np_identity a, b;
  uint8_t key[64], bad[64];
  size_t klen;
  const char *why = NULL;
  const uint8_t *v;
  size_t n;
  np_identity_generate(&a);
  np_identity_generate(&b);
  klen = pk_key(&a, key);
  is_int(np_kadstore_put(s, key, klen, a.pub_pb, a.pub_pb_len, 1, &why), 0,
         "/pk/ with the matching key");
  ok(np_kadstore_get(s, key, klen, 1, &v, &n, NULL) == 0 &&
         n == a.pub_pb_len && memcmp(v, a.pub_pb, n) == 0,
     "/pk/ value read back");
  is_int(np_kadstore_put(s, key, klen, a.pub_pb, a.pub_pb_len, 5, &why), 0,
         "/pk/ refresh (same key) accepted");
  is_int(np_kadstore_put(s, key, klen, b.pub_pb, b.pub_pb_len, 5, &why),
         NP_EPEERID, "/pk/ with another peer's key refused");
  is_str(why, "pk value does not hash to the key's peer ID", "reason");
  is_int(np_kadstore_put(s, key, klen, (const uint8_t *)"junk", 4, 5, &why),
         NP_EINVAL, "/pk/ with a non-PublicKey value refused");
  memcpy(bad, key, klen);
  bad[5] ^= 1; /* identity multihash length byte */
  is_int(np_kadstore_put(s, bad, klen, a.pub_pb, a.pub_pb_len, 5, &why),
         NP_EINVAL, "/pk/ key that is not a multihash refused");
  is_int(np_kadstore_put(s, key, klen - 1, a.pub_pb, a.pub_pb_len, 5, &why),
         NP_EINVAL, "/pk/ truncated key refused");
  np_kadstore_del(s);
}

typedef struct pcollect {
  size_t n;
  np_peerid ids[8];
  uint64_t expires[8];
  size_t naddrs[8];
} pcollect;

static int collect(const np_kadstore_provider *p, void *ud) {
  pcollect *c = ud;
  if (c->n < 8) {
    c->ids[c->n] = *p->id;
    c->expires[c->n] = p->expires;
    c->naddrs[c->n] = p->naddrs;
  }
  c->n++;
  return 0;
}

static int stop_first(const np_kadstore_provider *p, void *ud) {
  (void)p, (void)ud;
  return 1;
}

static np_peerid pid(uint8_t tag) {
  np_peerid id = {3, {0x00, 0x01, 0}};
  id.bytes[2] = tag;
  return id;
}

static void test_providers(void) {
  np_kadstore_config c;
  np_kadstore *s;
  np_kadstore_stats st;
  const uint8_t *k = (const uint8_t *)"cid1";
  const uint8_t ma1[] = {0x04, 127, 0, 0, 1, 0x06, 0x0f, 0xa1};
  const uint8_t ma2[] = {0x04, 10, 0, 0, 2, 0x06, 0x0f, 0xa1};
  const uint8_t *addrs[3] = {ma1, ma2, ma1};
  size_t lens[3] = {sizeof(ma1), sizeof(ma2), sizeof(ma1)};
  np_peerid p1 = pid(1), p2 = pid(2), p3 = pid(3), bad = {2, {0, 0}};
  pcollect col;
  const char *why = NULL;
  uint8_t bigaddr[300];
  const uint8_t *ba[1] = {bigaddr};
  size_t bl[1] = {sizeof(bigaddr)};
  np_kadstore_config_default(&c);
  c.provider_ttl_ms = 100;
  c.max_providers = 2;
  c.max_provider_keys = 2;
  c.max_addrs = 2;
  s = mk(&c);
  is_int(np_kadstore_add_provider(s, k, 4, &p1, addrs, lens, 3, 0, &why), 0,
         "add a provider with 3 addresses");
  memset(&col, 0, sizeof(col));
  np_kadstore_providers(s, k, 4, 0, collect, &col);
  ok(col.n == 1 && np_peerid_equal(&col.ids[0], &p1), "listed");
  is_int(col.naddrs[0], 2, "addresses cut at max_addrs");
  is_int(col.expires[0], 100, "expiry = now + provider TTL");
  is_int(np_kadstore_add_provider(s, k, 4, &p1, addrs + 1, lens + 1, 1, 50,
                                  &why),
         0, "refresh");
  memset(&col, 0, sizeof(col));
  np_kadstore_providers(s, k, 4, 50, collect, &col);
  ok(col.n == 1 && col.expires[0] == 150 && col.naddrs[0] == 1,
     "refresh moves the expiry and replaces the addresses");
  np_kadstore_add_provider(s, k, 4, &p2, NULL, NULL, 0, 60, NULL);
  is_int(np_kadstore_add_provider(s, k, 4, &p3, NULL, NULL, 0, 60, &why),
         NP_ELIMIT, "per-key cap");
  is_str(why, "max_providers", "reason names max_providers");
  is_int(np_kadstore_add_provider(s, k, 4, &p3, NULL, NULL, 0, 160, &why), 0,
         "room after p2 expired (swept first)");
  memset(&col, 0, sizeof(col));
  np_kadstore_providers(s, k, 4, 160, collect, &col);
  ok(col.n == 1 && np_peerid_equal(&col.ids[0], &p3),
     "expired providers are not listed");
  np_kadstore_add_provider(s, k, 4, &p1, NULL, NULL, 0, 160, NULL);
  is_int(np_kadstore_providers(s, k, 4, 160, stop_first, NULL), 1,
         "a callback returning nonzero stops the walk");
  is_int(np_kadstore_add_provider(s, k, 4, &bad, NULL, NULL, 0, 160, &why),
         NP_EINVAL, "an invalid peer ID is refused");
  is_int(np_kadstore_add_provider(s, k, 4, &p1, ba, bl, 1, 160, &why),
         NP_ELIMIT, "an address over max_addr");
  is_str(why, "max_addr", "reason names max_addr");
  np_kadstore_add_provider(s, (const uint8_t *)"cid2", 4, &p1, NULL, NULL, 0,
                           160, NULL);
  is_int(np_kadstore_add_provider(s, (const uint8_t *)"cid3", 4, &p1, NULL,
                                  NULL, 0, 160, &why),
         NP_ELIMIT, "max_provider_keys");
  is_str(why, "max_provider_keys", "reason names max_provider_keys");
  is_int(np_kadstore_add_provider(s, (const uint8_t *)"cid3", 4, &p1, NULL,
                                  NULL, 0, 260, &why),
         0, "at max_provider_keys, expired keys are swept to make room");
  np_kadstore_stats_get(s, &st);
  ok(st.providers == 1 && st.provider_keys == 1,
     "the expired keys went, the new one is there");
  is_int(np_kadstore_expire(s, 359), 0, "nothing due before its expiry");
  is_int(np_kadstore_expire(s, 360), 1, "expire drops the provider");
  np_kadstore_stats_get(s, &st);
  ok(st.providers == 0 && st.provider_keys == 0,
     "an empty provider key is dropped too");
  np_kadstore_del(s);
}

/* ---- persistence ---- */

typedef struct cmp {
  const np_kadstore *other;
  uint64_t now;
  size_t n, mismatches;
} cmp;

static void cmp_rec(const uint8_t *key, size_t keylen, const uint8_t *val,
                    size_t vallen, uint64_t received, uint64_t expires,
                    void *ud) {
  cmp *c = ud;
  const uint8_t *v;
  size_t n;
  uint64_t r;
  (void)expires;
  c->n++;
  if (np_kadstore_get(c->other, key, keylen, c->now, &v, &n, &r) != 0 ||
      n != vallen || memcmp(v, val, n) != 0 || r != received)
    c->mismatches++;
}

typedef struct pfind {
  const np_kadstore_provider *want;
  int found;
} pfind;

static int pfind_cb(const np_kadstore_provider *p, void *ud) {
  pfind *f = ud;
  size_t i;
  if (!np_peerid_equal(p->id, f->want->id) || p->expires != f->want->expires ||
      p->naddrs != f->want->naddrs)
    return 0;
  for (i = 0; i < p->naddrs; i++)
    if (p->lens[i] != f->want->lens[i] ||
        memcmp(p->addrs[i], f->want->addrs[i], p->lens[i]) != 0)
      return 0;
  f->found = 1;
  return 1;
}

static void cmp_prov(const np_kadstore_provider *p, void *ud) {
  cmp *c = ud;
  pfind f = {p, 0};
  c->n++;
  np_kadstore_providers(c->other, p->key, p->keylen, c->now, pfind_cb, &f);
  if (!f.found)
    c->mismatches++;
}

/* Same records and providers both ways. */
static int same(const np_kadstore *a, const np_kadstore *b, uint64_t now) {
  cmp c1 = {b, now, 0, 0}, c2 = {a, now, 0, 0};
  np_kadstore_each_record(a, cmp_rec, &c1);
  np_kadstore_each_record(b, cmp_rec, &c2);
  np_kadstore_each_provider(a, cmp_prov, &c1);
  np_kadstore_each_provider(b, cmp_prov, &c2);
  return c1.mismatches == 0 && c2.mismatches == 0 && c1.n == c2.n;
}

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *b = malloc(1 << 16);
  *len = f ? fread(b, 1, 1 << 16, f) : 0;
  if (f)
    fclose(f);
  return b;
}

static void spit(const char *path, const uint8_t *b, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(b, 1, len, f);
    fclose(f);
  }
}

/* A small store: a /pk/ record, a seq record and two providers. */
static np_kadstore *sample(np_identity *a) {
  np_kadstore *s = mk(NULL);
  uint8_t key[64];
  size_t klen = pk_key(a, key);
  const uint8_t ma[] = {0x04, 127, 0, 0, 1, 0x06, 0x0f, 0xa1};
  const uint8_t *addrs[1] = {ma};
  size_t lens[1] = {sizeof(ma)};
  np_peerid p1 = pid(1);
  np_kadstore_put(s, key, klen, a->pub_pb, a->pub_pb_len, 1000, NULL);
  PUT(s, "/seq/x", "\x07seven", 2000, NULL);
  np_kadstore_add_provider(s, (const uint8_t *)"cid", 3, &a->id, addrs, lens,
                           1, 3000, NULL);
  np_kadstore_add_provider(s, (const uint8_t *)"cid", 3, &p1, NULL, NULL, 0,
                           3000, NULL);
  return s;
}

/* Seeds written by tests/fuzz/gen_kadstore_seeds.py, an independent encoder:
 * the format is what the header comment says. */
static void test_seeds(void) {
  static const struct {
    const char *file;
    int rv;
    size_t records, providers, skipped;
  } cases[] = {
      {"empty.bin", 0, 0, 0, 0},       {"pk_record.bin", 0, 1, 0, 0},
      {"providers.bin", 0, 0, 2, 0},   {"mixed.bin", 0, 1, 1, 1},
      {"expired.bin", 0, 0, 0, 0},     {"bad_pk.bin", NP_EPROTO, 0, 0, 0},
      {"version2.bin", NP_ENOTSUP, 0, 0, 0},
      {"truncated.bin", NP_EPROTO, 0, 0, 0},
      {"dup_record.bin", NP_EPROTO, 0, 0, 0},
  };
  char path[1024], err[512];
  size_t i, len, skipped;
  for (i = 0; i < NP_ARRAY_LEN(cases); i++) {
    np_kadstore *s;
    np_kadstore_config c;
    np_kadstore_stats st;
    uint8_t *b;
    int rv;
    np_kadstore_config_default(&c); /* no seq namespace: /other/ skipped */
    if (np_kadstore_new(&s, &c) != 0)
      continue;
    snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/kadstore/%s",
             tu_srcdir(), cases[i].file);
    b = slurp(path, &len);
    skipped = 0;
    rv = np_kadstore_load_buf(s, b, len, cases[i].file, 1000, &skipped, err,
                              sizeof(err));
    np_kadstore_stats_get(s, &st);
    ok(len > 0 && rv == cases[i].rv && st.records == cases[i].records &&
           st.providers == cases[i].providers && skipped == cases[i].skipped,
       "seed %s: %s, %zu records, %zu providers, %zu skipped", cases[i].file,
       rv ? np_errname(rv) : "loads", st.records, st.providers, skipped);
    if (rv != 0)
      printf("#   %s\n", err);
    free(b);
    np_kadstore_del(s);
  }
}

static void test_roundtrip(const char *dir) {
  np_identity a;
  np_kadstore *s, *t, *u;
  np_kadstore_stats st;
  np_kadstore_config c;
  char err[512], path[1024];
  struct stat sb;
  size_t skipped = 99;
  np_identity_generate(&a);
  s = sample(&a);
  is_int(np_kadstore_save(s, dir, err, sizeof(err)), 0, "save");
  snprintf(path, sizeof(path), "%s/%s", dir, NP_KADSTORE_FILE);
  ok(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600, "file mode 0600");
  t = mk(NULL);
  is_int(np_kadstore_load(t, dir, 3000, &skipped, err, sizeof(err)), 0,
         "load");
  is_int(skipped, 0, "nothing skipped");
  ok(same(s, t, 3000), "records and providers equal after the round trip");
  np_kadstore_stats_get(t, &st);
  ok(st.records == 2 && st.providers == 2 && st.provider_keys == 1,
     "counts equal");
  /* Record TTL 48 h from 1000/2000, provider 48 h from 3000. */
  is_int(np_kadstore_load(t, dir, 48 * HOUR + 1500, NULL, err, sizeof(err)),
         0, "load later");
  np_kadstore_stats_get(t, &st);
  ok(st.records == 1 && st.providers == 2, "expired entries dropped at load");
  /* A store without the seq namespace skips its record. */
  np_kadstore_config_default(&c);
  if (np_kadstore_new(&u, &c) == 0) {
    is_int(np_kadstore_load(u, dir, 3000, &skipped, err, sizeof(err)), 0,
           "load without the seq validator");
    is_int(skipped, 1, "its record is skipped and counted");
    np_kadstore_del(u);
  }
  /* A clock that ran ahead when saving: expiries cut to one TTL. */
  np_kadstore_config_default(&c);
  c.record_ttl_ms = c.provider_ttl_ms = 100;
  if (np_kadstore_new(&u, &c) == 0) {
    const uint8_t *v;
    size_t n;
    np_kadstore_register(u, &seq_v);
    is_int(np_kadstore_load(u, dir, 0, NULL, err, sizeof(err)), 0,
           "load with a short TTL at an earlier time");
    is_int(np_kadstore_get(u, (const uint8_t *)"/seq/x", 6, 99, &v, &n, NULL),
           0, "record alive before the cut expiry");
    is_int(np_kadstore_get(u, (const uint8_t *)"/seq/x", 6, 100, &v, &n,
                           NULL),
           NP_ENOENT, "expiry cut to load time + TTL");
    is_int(np_kadstore_expire(u, 100), 4, "2 records and 2 providers due then");
    np_kadstore_del(u);
  }
  /* Limits of the loading store apply. */
  np_kadstore_config_default(&c);
  c.max_records = 1;
  if (np_kadstore_new(&u, &c) == 0) {
    np_kadstore_register(u, &seq_v);
    is_int(np_kadstore_load(u, dir, 3000, NULL, err, sizeof(err)), NP_ELIMIT,
           "more records than max_records refused");
    ok(strstr(err, "max_records") != NULL, "error names the limit: %s", err);
    np_kadstore_del(u);
  }
  np_kadstore_del(t);
  np_kadstore_del(s);
}

static void test_corrupt(const char *dir) {
  np_identity a;
  np_kadstore *s, *t;
  np_kadstore_stats st;
  char err[512], path[1024];
  uint8_t *orig, *b;
  size_t len, i, refused = 0, named = 0, intact = 0;
  np_identity_generate(&a);
  s = sample(&a);
  np_kadstore_save(s, dir, err, sizeof(err));
  snprintf(path, sizeof(path), "%s/%s", dir, NP_KADSTORE_FILE);
  orig = slurp(path, &len);
  b = malloc(len);
  t = mk(NULL);
  PUT(t, "/seq/keep", "\x01", 0, NULL);
  for (i = 0; i < len; i++) {
    memcpy(b, orig, len);
    b[i] ^= 0x01;
    spit(path, b, len);
    if (np_kadstore_load(t, dir, 3000, NULL, err, sizeof(err)) != 0)
      refused++;
    if (strstr(err, path) && strstr(err, "offset"))
      named++;
    np_kadstore_stats_get(t, &st);
    if (st.records == 1 && st.providers == 0)
      intact++;
  }
  is_int(refused, len, "every flipped bit refused (%zu bytes)", len);
  is_int(named, len, "each error names the file and offset");
  is_int(intact, len, "a refused load changes nothing");
  printf("# e.g. %s\n", err);
  refused = named = 0;
  for (i = 0; i < len; i++) {
    spit(path, orig, i);
    if (np_kadstore_load(t, dir, 3000, NULL, err, sizeof(err)) != 0)
      refused++;
    if (strstr(err, path))
      named++;
  }
  is_int(refused, len, "truncation at every length refused");
  is_int(named, len, "each names the file");
  memcpy(b, orig, len);
  b[5] = 2; /* version 2; CRCs cover entries only */
  spit(path, b, len);
  is_int(np_kadstore_load(t, dir, 3000, NULL, err, sizeof(err)), NP_ENOTSUP,
         "wrong version refused");
  ok(strstr(err, path) && strstr(err, "version 2"), "says so: %s", err);
  spit(path, orig, len);
  is_int(np_kadstore_load(t, dir, 3000, NULL, err, sizeof(err)), 0,
         "the original still loads");
  unlink(path);
  is_int(np_kadstore_load(t, dir, 3000, NULL, err, sizeof(err)), NP_ENOENT,
         "no file: NP_ENOENT");
  free(orig);
  free(b);
  np_kadstore_del(t);
  np_kadstore_del(s);
}

static int count_tmp(const char *dir) {
  char cmd[1200];
  FILE *p;
  int n = -1;
  snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -c tmp", dir);
  p = popen(cmd, "r");
  if (p) {
    if (fscanf(p, "%d", &n) != 1)
      n = -1;
    pclose(p);
  }
  return n;
}

static void test_atomic(const char *dir) {
  np_identity a;
  np_kadstore *s;
  struct rlimit old, lim;
  char err[512], path[1024], key[32];
  uint8_t *before, *after, val[4000];
  size_t blen, alen;
  int i, rv;
  np_identity_generate(&a);
  s = sample(&a);
  np_kadstore_save(s, dir, err, sizeof(err));
  snprintf(path, sizeof(path), "%s/%s", dir, NP_KADSTORE_FILE);
  before = slurp(path, &blen);
  memset(val, 9, sizeof(val));
  for (i = 0; i < 8; i++) {
    snprintf(key, sizeof(key), "/seq/big%d", i);
    np_kadstore_put(s, (const uint8_t *)key, strlen(key), val, sizeof(val),
                    4000, NULL);
  }
  /* A write that fails midway: the file size limit (works as root, where a
   * read-only directory would not stop us). */
  signal(SIGXFSZ, SIG_IGN);
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 8192;
  setrlimit(RLIMIT_FSIZE, &lim);
  rv = np_kadstore_save(s, dir, err, sizeof(err));
  setrlimit(RLIMIT_FSIZE, &old);
  is_int(rv, NP_ESYS, "save failing midway reports NP_ESYS");
  printf("# %s\n", err);
  ok(strstr(err, dir) != NULL, "the error names the file");
  after = slurp(path, &alen);
  ok(alen == blen && memcmp(before, after, blen) == 0,
     "the old file is intact");
  is_int(count_tmp(dir), 0, "no temp file left behind");
  free(after);
  is_int(np_kadstore_save(s, "/nonexistent/np-kadstore", err, sizeof(err)),
         NP_ESYS, "unwritable directory refused");
  ok(strstr(err, "/nonexistent/np-kadstore") != NULL, "names it: %s", err);
  is_int(np_kadstore_save(s, dir, err, sizeof(err)), 0,
         "save succeeds without the limit");
  after = slurp(path, &alen);
  ok(alen > blen, "new file replaced the old");
  free(after);
  free(before);
  np_kadstore_del(s);
}

/* Memory per record for /pk/-sized entries (40-byte key, 36-byte value). */
static void test_mem(void) {
  np_kadstore *s = mk(NULL);
  np_kadstore_stats st0, st;
  struct mallinfo2 m0, m1;
  char key[48];
  uint8_t val[36];
  int i, n = 10000;
  size_t stored = 0;
  memset(val, 1, sizeof(val));
  np_kadstore_stats_get(s, &st0);
  m0 = mallinfo2();
  for (i = 0; i < n; i++) {
    snprintf(key, sizeof(key), "/seq/%034d", i);
    if (np_kadstore_put(s, (const uint8_t *)key, 39, val, sizeof(val), 0,
                        NULL) == 0)
      stored++;
  }
  m1 = mallinfo2();
  np_kadstore_stats_get(s, &st);
  is_int(stored, (size_t)n, "10000 records stored");
  for (i = 0, stored = 0; i < n; i++) {
    const uint8_t *v;
    size_t vl;
    snprintf(key, sizeof(key), "/seq/%034d", i);
    if (np_kadstore_get(s, (const uint8_t *)key, 39, 0, &v, &vl, NULL) == 0 &&
        vl == sizeof(val))
      stored++;
  }
  is_int(stored, (size_t)n, "each found by its key");
  /* mallinfo2 counts malloc's own overhead too (0 under ASan). */
  printf("# diag: memory per record: %zu bytes accounted, %zu by malloc "
         "(39-byte key + 36-byte value = 75 payload, index included)\n",
         (st.mem - st0.mem) / stored, (m1.uordblks - m0.uordblks) / stored);
  np_kadstore_del(s);
}

int main(void) {
  char dir[256];
  test_config();
  test_registry();
  test_put_get_select();
  test_ttl();
  test_record_limits();
  test_pk();
  test_providers();
  if (tu_tmpdir(dir, sizeof(dir)) == NULL) {
    printf("Bail out! mkdtemp\n");
    return 1;
  }
  test_seeds();
  test_roundtrip(dir);
  test_corrupt(dir);
  test_atomic(dir);
  tu_rmrf(dir);
  test_mem();
  return done_testing();
}
