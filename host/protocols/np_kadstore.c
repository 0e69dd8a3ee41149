/* DHT record and provider store. Two chained hash tables keyed by SipHash
 * (keys are chosen by peers, so the index must not be floodable), plus the
 * file format:
 *
 *   header  "NPKS" u16 version u16 flags(0)                 (8 bytes)
 *   entry   u8 type, u32 body length, u32 CRC-32 of type+length+body, body
 *     type 1 record:   u64 received, u64 expires, u16 keylen, key,
 *                      u32 vallen, value
 *     type 2 provider: u16 keylen, key, u8 idlen, id, u64 expires,
 *                      u8 naddrs, naddrs x (u16 len, bytes)
 *     type 0 end:      u32 number of entries before it
 *
 * Integers are big-endian. The per-entry CRC turns any flipped byte into a
 * refusal that names the entry; the end entry turns any truncation into
 * one. */
#include "np_kadstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "np_pubkey.h"

#define H_MIN_BUCKETS 16
#define F_MAGIC "NPKS"
#define F_HDR 8
#define F_EHDR 9 /* type, length, crc */
#define T_END 0
#define T_REC 1
#define T_PROV 2

typedef struct hent {
  struct hent *next;
  uint64_t hash;
  uint8_t *key;
  size_t keylen;
} hent;

typedef struct htab {
  hent **b;
  size_t nb, n;
} htab;

typedef struct rec {
  hent h; /* first: a hent* is a rec* */
  uint8_t *val; /* after the key, same allocation */
  size_t vallen;
  uint64_t received, expires;
} rec;

typedef struct prov {
  np_peerid id;
  uint64_t expires;
  size_t naddrs;
  uint16_t lens[NP_KADSTORE_ADDRS_MAX];
  uint8_t *addrs; /* concatenated */
  size_t addrbytes;
} prov;

typedef struct pkey {
  hent h;
  prov *v;
  size_t n, cap;
} pkey;

typedef struct vslot {
  char ns[NP_KADSTORE_NSLEN_MAX + 1];
  size_t nslen;
  np_kadstore_validator v;
} vslot;

struct np_kadstore {
  np_kadstore_config cfg;
  htab recs, pkeys;
  size_t nprov;
  size_t mem;
  /* Lower bounds of the expiries: a limit sweeps only when one is due,
   * so a peer pushing at a full store cannot make every insert O(n). */
  uint64_t rec_next_expiry, prov_next_expiry;
  vslot vals[NP_KADSTORE_NS_MAX];
  size_t nvals;
};

/* ---- SipHash-2-4 ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = ROTL(v1, 13);                                                         \
    v1 ^= v0;                                                                  \
    v0 = ROTL(v0, 32);                                                         \
    v2 += v3;                                                                  \
    v3 = ROTL(v3, 16);                                                         \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = ROTL(v3, 21);                                                         \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = ROTL(v1, 17);                                                         \
    v1 ^= v2;                                                                  \
    v2 = ROTL(v2, 32);                                                         \
  } while (0)

static uint64_t siphash(const uint64_t k[2], const uint8_t *in, size_t len) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
  uint64_t b = (uint64_t)len << 56, m;
  size_t i, end = len - len % 8;
  int j;
  for (i = 0; i < end; i += 8) {
    m = 0;
    for (j = 7; j >= 0; j--)
      m = m << 8 | in[i + (size_t)j];
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  for (j = (int)(len % 8) - 1; j >= 0; j--)
    b |= (uint64_t)in[end + (size_t)j] << (8 * j);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- hash table ---- */

static hent *ht_find(const htab *t, uint64_t h, const uint8_t *key,
                     size_t len) {
  hent *e;
  if (t->nb == 0)
    return NULL;
  for (e = t->b[h & (t->nb - 1)]; e; e = e->next)
    if (e->hash == h && e->keylen == len && memcmp(e->key, key, len) == 0)
      return e;
  return NULL;
}

/* Grow at load factor 1 so chains stay short; NP_ENOMEM leaves |t| as is. */
static int ht_reserve(np_kadstore *s, htab *t) {
  size_t nb, i;
  hent **b;
  if (t->n < t->nb)
    return 0;
  nb = t->nb ? t->nb * 2 : H_MIN_BUCKETS;
  b = calloc(nb, sizeof(*b));
  if (b == NULL)
    return NP_ENOMEM;
  for (i = 0; i < t->nb; i++) {
    hent *e = t->b[i], *next;
    for (; e; e = next) {
      next = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
    }
  }
  free(t->b);
  s->mem += (nb - t->nb) * sizeof(*b);
  t->b = b;
  t->nb = nb;
  return 0;
}

static void ht_insert(htab *t, hent *e) {
  hent **slot = &t->b[e->hash & (t->nb - 1)];
  e->next = *slot;
  *slot = e;
  t->n++;
}

static void ht_unlink(htab *t, hent *e) {
  hent **p = &t->b[e->hash & (t->nb - 1)];
  while (*p != e)
    p = &(*p)->next;
  *p = e->next;
  t->n--;
}

/* ---- records ---- */

static void rec_free(np_kadstore *s, rec *r) {
  s->mem -= sizeof(*r) + r->h.keylen + r->vallen;
  free(r);
}

static void prov_free(np_kadstore *s, prov *p) {
  s->mem -= p->addrbytes;
  free(p->addrs);
}

static void pkey_free(np_kadstore *s, pkey *k) {
  size_t i;
  for (i = 0; i < k->n; i++)
    prov_free(s, &k->v[i]);
  s->nprov -= k->n;
  s->mem -= sizeof(*k) + k->h.keylen + k->cap * sizeof(prov);
  free(k->v);
  free(k);
}

void np_kadstore_config_default(np_kadstore_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->record_ttl_ms = 48ULL * 3600 * 1000;
  cfg->provider_ttl_ms = 48ULL * 3600 * 1000;
  cfg->max_records = 16384;
  cfg->max_key = 512;
  cfg->max_value = 16384;
  cfg->max_provider_keys = 65536;
  cfg->max_providers = 64;
  cfg->max_addrs = 8;
  cfg->max_addr = 256;
  cfg->max_file = 256u << 20;
}

/* "/pk/" + multihash of the PublicKey protobuf in the value (go-libp2p-record
 * PublicKeyValidator): the value must hash to the key's peer ID. */
static int pk_validate(void *ud, const uint8_t *key, size_t keylen,
                       const uint8_t *val, size_t vallen, uint64_t now,
                       const char **why) {
  np_peerid want, got;
  const uint8_t *data;
  size_t datalen;
  int type;
  (void)ud, (void)now;
  if (keylen < 4 || np_peerid_from_bytes(&want, key + 4, keylen - 4) != 0) {
    *why = "pk key is not a peer ID multihash";
    return NP_EINVAL;
  }
  if (np_pubkey_parse(val, vallen, &type, &data, &datalen) != 0) {
    *why = "pk value is not a PublicKey protobuf";
    return NP_EINVAL;
  }
  if (np_peerid_from_pubkey(&got, val, vallen) != 0 ||
      !np_peerid_equal(&want, &got)) {
    *why = "pk value does not hash to the key's peer ID";
    return NP_EPEERID;
  }
  return 0;
}

int np_kadstore_new(np_kadstore **ps, const np_kadstore_config *cfg) {
  np_kadstore *s;
  np_kadstore_config c;
  np_kadstore_validator pk = {sizeof(pk), "pk", pk_validate, NULL, NULL};
  *ps = NULL;
  if (cfg == NULL)
    np_kadstore_config_default(&c);
  else
    c = *cfg;
  if (c.record_ttl_ms == 0 || c.provider_ttl_ms == 0 || c.max_records == 0 ||
      c.max_key == 0 || c.max_key > UINT16_MAX || c.max_value == 0 ||
      c.max_value > UINT32_MAX / 2 || c.max_provider_keys == 0 ||
      c.max_providers == 0 || c.max_addrs == 0 ||
      c.max_addrs > NP_KADSTORE_ADDRS_MAX || c.max_addr == 0 ||
      c.max_addr > UINT16_MAX || c.max_file < F_HDR)
    return NP_EINVAL;
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NP_ENOMEM;
  s->cfg = c;
  s->mem = sizeof(*s);
  s->rec_next_expiry = s->prov_next_expiry = UINT64_MAX;
  np_kadstore_register(s, &pk);
  *ps = s;
  return 0;
}

static void clear(np_kadstore *s) {
  size_t i;
  for (i = 0; i < s->recs.nb; i++) {
    hent *e = s->recs.b[i], *next;
    for (; e; e = next) {
      next = e->next;
      rec_free(s, (rec *)e);
    }
  }
  for (i = 0; i < s->pkeys.nb; i++) {
    hent *e = s->pkeys.b[i], *next;
    for (; e; e = next) {
      next = e->next;
      pkey_free(s, (pkey *)e);
    }
  }
  s->mem -= (s->recs.nb + s->pkeys.nb) * sizeof(hent *);
  free(s->recs.b);
  free(s->pkeys.b);
  memset(&s->recs, 0, sizeof(s->recs));
  memset(&s->pkeys, 0, sizeof(s->pkeys));
}

void np_kadstore_del(np_kadstore *s) {
  if (s == NULL)
    return;
  clear(s);
  free(s);
}

int np_kadstore_register(np_kadstore *s, const np_kadstore_validator *v) {
  np_kadstore_validator c;
  size_t i, n;
  if (v == NULL || v->struct_size < offsetof(np_kadstore_validator, select) ||
      v->ns == NULL)
    return NP_EINVAL;
  memset(&c, 0, sizeof(c));
  memcpy(&c, v, v->struct_size < sizeof(c) ? v->struct_size : sizeof(c));
  n = strlen(c.ns);
  if (c.validate == NULL || n == 0 || n > NP_KADSTORE_NSLEN_MAX ||
      memchr(c.ns, '/', n) != NULL)
    return NP_EINVAL;
  for (i = 0; i < s->nvals; i++)
    if (s->vals[i].nslen == n && memcmp(s->vals[i].ns, c.ns, n) == 0)
      return NP_EEXIST;
  if (s->nvals == NP_KADSTORE_NS_MAX)
    return NP_ELIMIT;
  memcpy(s->vals[s->nvals].ns, c.ns, n + 1);
  s->vals[s->nvals].nslen = n;
  c.ns = s->vals[s->nvals].ns;
  s->vals[s->nvals].v = c;
  s->nvals++;
  return 0;
}

/* The validator of "/ns/rest", NULL if none; NP_EINVAL-worthy keys (no
 * leading slash, no second slash) set |*bad|. */
static const np_kadstore_validator *find_validator(const np_kadstore *s,
                                                   const uint8_t *key,
                                                   size_t len, int *bad) {
  const uint8_t *slash;
  size_t i, n;
  *bad = 0;
  if (len < 2 || key[0] != '/' ||
      (slash = memchr(key + 1, '/', len - 1)) == NULL || slash == key + 1) {
    *bad = 1;
    return NULL;
  }
  n = (size_t)(slash - key - 1);
  for (i = 0; i < s->nvals; i++)
    if (s->vals[i].nslen == n && memcmp(s->vals[i].ns, key + 1, n) == 0)
      return &s->vals[i].v;
  return NULL;
}

static void sweep_records(np_kadstore *s, uint64_t now, size_t *dropped) {
  uint64_t next = UINT64_MAX;
  size_t i;
  for (i = 0; i < s->recs.nb; i++) {
    hent **p = &s->recs.b[i];
    while (*p) {
      rec *r = (rec *)*p;
      if (r->expires <= now) {
        *p = r->h.next;
        s->recs.n--;
        rec_free(s, r);
        (*dropped)++;
      } else {
        if (r->expires < next)
          next = r->expires;
        p = &r->h.next;
      }
    }
  }
  s->rec_next_expiry = next;
}

/* now + ttl without wrapping (a far-future |now| must not expire at 0). */
static uint64_t deadline(uint64_t now, uint64_t ttl) {
  return now > UINT64_MAX - ttl ? UINT64_MAX : now + ttl;
}

static int set_why(const char **why, const char *w, int rv) {
  if (why)
    *why = w;
  return rv;
}

/* Insert without validation (the caller validated); used by put and load.
 * Key and value share the record's allocation (one malloc per record), so
 * a replacement is a new record swapped in for |old|. */
static int rec_store(np_kadstore *s, rec *old, const uint8_t *key,
                     size_t keylen, uint64_t h, const uint8_t *val,
                     size_t vallen, uint64_t received, uint64_t expires) {
  rec *r;
  if ((old == NULL && ht_reserve(s, &s->recs) != 0) ||
      (r = malloc(sizeof(*r) + keylen + vallen)) == NULL)
    return NP_ENOMEM;
  r->h.key = (uint8_t *)(r + 1);
  memcpy(r->h.key, key, keylen);
  r->h.keylen = keylen;
  r->h.hash = h;
  r->val = r->h.key + keylen;
  if (vallen)
    memcpy(r->val, val, vallen);
  r->vallen = vallen;
  r->received = received;
  r->expires = expires;
  if (old) {
    ht_unlink(&s->recs, &old->h);
    rec_free(s, old);
  }
  ht_insert(&s->recs, &r->h);
  s->mem += sizeof(*r) + keylen + vallen;
  if (expires < s->rec_next_expiry)
    s->rec_next_expiry = expires;
  return 0;
}

/* Limits, namespace and the validator: 0 with *pv, or put's error. */
static int check_valid(const np_kadstore *s, const uint8_t *key,
                       size_t keylen, const uint8_t *val, size_t vallen,
                       uint64_t now, const char **why,
                       const np_kadstore_validator **pv) {
  const char *vwhy = "refused by the namespace validator";
  int bad, rv;
  if (keylen > s->cfg.max_key)
    return set_why(why, "max_key", NP_ELIMIT);
  if (vallen > s->cfg.max_value)
    return set_why(why, "max_value", NP_ELIMIT);
  *pv = find_validator(s, key, keylen, &bad);
  if (bad)
    return set_why(why, "key is not /namespace/...", NP_EINVAL);
  if (*pv == NULL)
    return set_why(why, "no validator for the namespace", NP_ENOTSUP);
  rv = (*pv)->validate((*pv)->ud, key, keylen, val, vallen, now, &vwhy);
  if (rv != 0)
    return set_why(why, vwhy, rv < 0 ? rv : NP_EINVAL);
  return 0;
}

int np_kadstore_put(np_kadstore *s, const uint8_t *key, size_t keylen,
                    const uint8_t *val, size_t vallen, uint64_t now,
                    const char **why) {
  const np_kadstore_validator *v;
  uint64_t h;
  rec *old;
  int rv;
  size_t dropped = 0;
  if ((rv = check_valid(s, key, keylen, val, vallen, now, why, &v)) != 0)
    return rv;
  h = siphash(s->cfg.hash_seed, key, keylen);
  old = (rec *)ht_find(&s->recs, h, key, keylen);
  if (old && old->expires > now && v->select) {
    const uint8_t *vals[2] = {val, old->val};
    size_t lens[2] = {vallen, old->vallen};
    rv = v->select(v->ud, key, keylen, vals, lens, 2);
    if (rv < 0 || rv > 1)
      return set_why(why, "select failed", rv < 0 ? rv : NP_EINVAL);
    if (rv == 1)
      return set_why(why, "the stored record was selected", NP_EEXIST);
  }
  if (old == NULL && s->recs.n >= s->cfg.max_records) {
    if (s->rec_next_expiry <= now)
      sweep_records(s, now, &dropped);
    if (s->recs.n >= s->cfg.max_records)
      return set_why(why, "max_records", NP_ELIMIT);
  }
  rv = rec_store(s, old, key, keylen, h, val, vallen, now,
                 deadline(now, s->cfg.record_ttl_ms));
  return set_why(why, rv ? "out of memory" : "", rv);
}

int np_kadstore_check(const np_kadstore *s, const uint8_t *key,
                      size_t keylen, const uint8_t *val, size_t vallen,
                      const uint8_t *than, size_t thanlen, uint64_t now,
                      const char **why) {
  const np_kadstore_validator *v;
  int rv;
  if ((rv = check_valid(s, key, keylen, val, vallen, now, why, &v)) != 0)
    return rv;
  if (than == NULL)
    return set_why(why, "", 0);
  /* An empty value from a decoded message has a NULL pointer. */
  if (thanlen == vallen && (vallen == 0 || memcmp(than, val, vallen) == 0))
    return set_why(why, "the same value", NP_EEXIST);
  if (v->select) {
    const uint8_t *vals[2] = {val, than};
    size_t lens[2] = {vallen, thanlen};
    rv = v->select(v->ud, key, keylen, vals, lens, 2);
    if (rv < 0 || rv > 1)
      return set_why(why, "select failed", rv < 0 ? rv : NP_EINVAL);
    if (rv == 1)
      return set_why(why, "the other value was selected", NP_EEXIST);
  }
  return set_why(why, "", 0);
}

int np_kadstore_get(const np_kadstore *s, const uint8_t *key, size_t keylen,
                    uint64_t now, const uint8_t **val, size_t *vallen,
                    uint64_t *received) {
  rec *r = (rec *)ht_find(&s->recs, siphash(s->cfg.hash_seed, key, keylen),
                          key, keylen);
  if (r == NULL || r->expires <= now)
    return NP_ENOENT;
  *val = r->val;
  *vallen = r->vallen;
  if (received)
    *received = r->received;
  return 0;
}

int np_kadstore_remove(np_kadstore *s, const uint8_t *key, size_t keylen) {
  rec *r = (rec *)ht_find(&s->recs, siphash(s->cfg.hash_seed, key, keylen),
                          key, keylen);
  if (r == NULL)
    return NP_ENOENT;
  ht_unlink(&s->recs, &r->h);
  rec_free(s, r);
  return 0;
}

/* ---- providers ---- */

static size_t sweep_key(np_kadstore *s, pkey *k, uint64_t now) {
  size_t i, j = 0, dropped = 0;
  for (i = 0; i < k->n; i++) {
    if (k->v[i].expires <= now) {
      prov_free(s, &k->v[i]);
      dropped++;
    } else {
      k->v[j++] = k->v[i];
    }
  }
  k->n = j;
  s->nprov -= dropped;
  return dropped;
}

static int prov_set(np_kadstore *s, prov *p, const uint8_t *const *addrs,
                    const size_t *lens, size_t naddrs) {
  size_t i, total = 0, off = 0;
  uint8_t *buf;
  for (i = 0; i < naddrs; i++)
    total += lens[i];
  buf = malloc(total ? total : 1);
  if (buf == NULL)
    return NP_ENOMEM;
  for (i = 0; i < naddrs; i++) {
    memcpy(buf + off, addrs[i], lens[i]);
    p->lens[i] = (uint16_t)lens[i];
    off += lens[i];
  }
  free(p->addrs);
  s->mem = s->mem - p->addrbytes + total;
  p->addrs = buf;
  p->addrbytes = total;
  p->naddrs = naddrs;
  return 0;
}

/* Add or refresh with an explicit expiry (load keeps the saved one). */
static int prov_store(np_kadstore *s, const uint8_t *key, size_t keylen,
                      const np_peerid *id, const uint8_t *const *addrs,
                      const size_t *lens, size_t naddrs, uint64_t now,
                      uint64_t expires, const char **why) {
  uint64_t h;
  pkey *k;
  prov *p = NULL;
  np_peerid chk;
  size_t i;
  int rv;
  /* Only IDs the loader accepts, or a save would write an unloadable file. */
  if (keylen == 0 || id == NULL || id->len > NP_PEERID_MAX ||
      np_peerid_from_bytes(&chk, id->bytes, id->len) != 0 ||
      (naddrs && (addrs == NULL || lens == NULL)))
    return set_why(why, "bad argument", NP_EINVAL);
  if (keylen > s->cfg.max_key)
    return set_why(why, "max_key", NP_ELIMIT);
  if (naddrs > s->cfg.max_addrs)
    naddrs = s->cfg.max_addrs;
  for (i = 0; i < naddrs; i++)
    if (lens[i] > s->cfg.max_addr)
      return set_why(why, "max_addr", NP_ELIMIT);
  h = siphash(s->cfg.hash_seed, key, keylen);
  k = (pkey *)ht_find(&s->pkeys, h, key, keylen);
  if (k == NULL) {
    if (s->pkeys.n >= s->cfg.max_provider_keys) {
      if (s->prov_next_expiry <= now)
        np_kadstore_expire(s, now);
      if (s->pkeys.n >= s->cfg.max_provider_keys)
        return set_why(why, "max_provider_keys", NP_ELIMIT);
    }
    if (ht_reserve(s, &s->pkeys) != 0 ||
        (k = calloc(1, sizeof(*k) + keylen)) == NULL)
      return set_why(why, "out of memory", NP_ENOMEM);
    k->h.key = (uint8_t *)(k + 1);
    memcpy(k->h.key, key, keylen);
    k->h.keylen = keylen;
    k->h.hash = h;
    ht_insert(&s->pkeys, &k->h);
    s->mem += sizeof(*k) + keylen;
  }
  for (i = 0; i < k->n; i++)
    if (np_peerid_equal(&k->v[i].id, id))
      p = &k->v[i];
  if (p == NULL) {
    if (k->n >= s->cfg.max_providers && sweep_key(s, k, now) == 0)
      return set_why(why, "max_providers", NP_ELIMIT);
    if (k->n == k->cap) {
      size_t cap = k->cap ? k->cap * 2 : 4;
      prov *nv;
      if (cap > s->cfg.max_providers)
        cap = s->cfg.max_providers;
      nv = realloc(k->v, cap * sizeof(*nv));
      if (nv == NULL) {
        if (k->n == 0) {
          ht_unlink(&s->pkeys, &k->h);
          pkey_free(s, k);
        }
        return set_why(why, "out of memory", NP_ENOMEM);
      }
      s->mem += (cap - k->cap) * sizeof(*nv);
      k->v = nv;
      k->cap = cap;
    }
    p = &k->v[k->n];
    memset(p, 0, sizeof(*p));
    p->id = *id;
  }
  rv = prov_set(s, p, addrs, lens, naddrs);
  if (rv != 0) {
    if (k->n == 0) {
      ht_unlink(&s->pkeys, &k->h);
      pkey_free(s, k);
    }
    return set_why(why, "out of memory", rv);
  }
  p->expires = expires;
  if (expires < s->prov_next_expiry)
    s->prov_next_expiry = expires;
  if (p == &k->v[k->n]) {
    k->n++;
    s->nprov++;
  }
  return set_why(why, "", 0);
}

int np_kadstore_add_provider(np_kadstore *s, const uint8_t *key,
                             size_t keylen, const np_peerid *id,
                             const uint8_t *const *addrs, const size_t *lens,
                             size_t naddrs, uint64_t now, const char **why) {
  return prov_store(s, key, keylen, id, addrs, lens, naddrs, now,
                    deadline(now, s->cfg.provider_ttl_ms), why);
}

static void prov_view(const pkey *k, const prov *p, np_kadstore_provider *o) {
  size_t i, off = 0;
  o->key = k->h.key;
  o->keylen = k->h.keylen;
  o->id = &p->id;
  o->expires = p->expires;
  o->naddrs = p->naddrs;
  for (i = 0; i < p->naddrs; i++) {
    o->addrs[i] = p->addrs + off;
    o->lens[i] = p->lens[i];
    off += p->lens[i];
  }
}

size_t np_kadstore_providers(const np_kadstore *s, const uint8_t *key,
                             size_t keylen, uint64_t now,
                             int (*cb)(const np_kadstore_provider *p,
                                       void *ud),
                             void *ud) {
  pkey *k = (pkey *)ht_find(&s->pkeys, siphash(s->cfg.hash_seed, key, keylen),
                            key, keylen);
  np_kadstore_provider o;
  size_t i, n = 0;
  if (k == NULL)
    return 0;
  for (i = 0; i < k->n; i++) {
    if (k->v[i].expires <= now)
      continue;
    prov_view(k, &k->v[i], &o);
    n++;
    if (cb(&o, ud) != 0)
      break;
  }
  return n;
}

void np_kadstore_each_record(const np_kadstore *s,
                             void (*cb)(const uint8_t *key, size_t keylen,
                                        const uint8_t *val, size_t vallen,
                                        uint64_t received, uint64_t expires,
                                        void *ud),
                             void *ud) {
  size_t i;
  hent *e;
  for (i = 0; i < s->recs.nb; i++)
    for (e = s->recs.b[i]; e; e = e->next) {
      rec *r = (rec *)e;
      cb(e->key, e->keylen, r->val, r->vallen, r->received, r->expires, ud);
    }
}

void np_kadstore_each_provider(const np_kadstore *s,
                               void (*cb)(const np_kadstore_provider *p,
                                          void *ud),
                               void *ud) {
  np_kadstore_provider o;
  size_t i, j;
  hent *e;
  for (i = 0; i < s->pkeys.nb; i++)
    for (e = s->pkeys.b[i]; e; e = e->next) {
      pkey *k = (pkey *)e;
      for (j = 0; j < k->n; j++) {
        prov_view(k, &k->v[j], &o);
        cb(&o, ud);
      }
    }
}

size_t np_kadstore_expire(np_kadstore *s, uint64_t now) {
  uint64_t next = UINT64_MAX;
  size_t i, j, dropped = 0;
  sweep_records(s, now, &dropped);
  for (i = 0; i < s->pkeys.nb; i++) {
    hent **p = &s->pkeys.b[i];
    while (*p) {
      pkey *k = (pkey *)*p;
      dropped += sweep_key(s, k, now);
      if (k->n == 0) {
        *p = k->h.next;
        s->pkeys.n--;
        pkey_free(s, k);
      } else {
        for (j = 0; j < k->n; j++)
          if (k->v[j].expires < next)
            next = k->v[j].expires;
        p = &k->h.next;
      }
    }
  }
  s->prov_next_expiry = next;
  return dropped;
}

void np_kadstore_stats_get(const np_kadstore *s, np_kadstore_stats *st) {
  st->records = s->recs.n;
  st->provider_keys = s->pkeys.n;
  st->providers = s->nprov;
  st->mem = s->mem;
}

/* ---- file format ---- */

/* CRC-32 (IEEE, as zlib) continued from |crc| (0 to start). */
static uint32_t crc32(uint32_t crc, const uint8_t *p, size_t n) {
  static const uint32_t t[16] = {
      0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
      0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
      0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c};
  uint32_t c = crc ^ 0xffffffffu;
  while (n--) {
    c ^= *p++;
    c = (c >> 4) ^ t[c & 15];
    c = (c >> 4) ^ t[c & 15];
  }
  return c ^ 0xffffffffu;
}

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v);
}
static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t get32(const uint8_t *p) {
  return get16(p) << 16 | get16(p + 2);
}
static uint64_t get64(const uint8_t *p) {
  return (uint64_t)get32(p) << 32 | get32(p + 4);
}

typedef struct wctx {
  FILE *f;
  uint8_t *buf; /* one entry */
  size_t cap;
  uint32_t count;
  int err; /* errno of the first failure, or -1 for ENOMEM */
} wctx;

static void w_entry(wctx *w, int type, size_t len) {
  uint8_t hdr[F_EHDR];
  if (w->err)
    return;
  hdr[0] = (uint8_t)type;
  put32(hdr + 1, (uint32_t)len);
  put32(hdr + 5, crc32(crc32(0, hdr, 5), w->buf, len));
  if (fwrite(hdr, 1, sizeof(hdr), w->f) != sizeof(hdr) ||
      fwrite(w->buf, 1, len, w->f) != len)
    w->err = errno ? errno : EIO;
  w->count++;
}

static int w_room(wctx *w, size_t need) {
  uint8_t *b;
  if (need <= w->cap)
    return 1;
  b = realloc(w->buf, need);
  if (b == NULL) {
    if (!w->err)
      w->err = -1;
    return 0;
  }
  w->buf = b;
  w->cap = need;
  return 1;
}

static void w_rec(const uint8_t *key, size_t keylen, const uint8_t *val,
                  size_t vallen, uint64_t received, uint64_t expires,
                  void *ud) {
  wctx *w = ud;
  size_t len = 8 + 8 + 2 + keylen + 4 + vallen;
  uint8_t *p;
  if (!w_room(w, len))
    return;
  p = w->buf;
  put64(p, received);
  put64(p + 8, expires);
  put16(p + 16, (uint32_t)keylen);
  memcpy(p + 18, key, keylen);
  put32(p + 18 + keylen, (uint32_t)vallen);
  memcpy(p + 22 + keylen, val, vallen);
  w_entry(w, T_REC, len);
}

static void w_prov(const np_kadstore_provider *pv, void *ud) {
  wctx *w = ud;
  size_t len = 2 + pv->keylen + 1 + pv->id->len + 8 + 1, i, off;
  for (i = 0; i < pv->naddrs; i++)
    len += 2 + pv->lens[i];
  if (!w_room(w, len))
    return;
  put16(w->buf, (uint32_t)pv->keylen);
  memcpy(w->buf + 2, pv->key, pv->keylen);
  off = 2 + pv->keylen;
  w->buf[off++] = pv->id->len;
  memcpy(w->buf + off, pv->id->bytes, pv->id->len);
  off += pv->id->len;
  put64(w->buf + off, pv->expires);
  off += 8;
  w->buf[off++] = (uint8_t)pv->naddrs;
  for (i = 0; i < pv->naddrs; i++) {
    put16(w->buf + off, (uint32_t)pv->lens[i]);
    memcpy(w->buf + off + 2, pv->addrs[i], pv->lens[i]);
    off += 2 + pv->lens[i];
  }
  w_entry(w, T_PROV, len);
}

int np_kadstore_save(const np_kadstore *s, const char *dir, char *err,
                     size_t errlen) {
  char path[4096], tmp[4096];
  uint8_t hdr[F_HDR];
  wctx w;
  int fd, dfd, rv = 0;
  const char *what = "write";
  memset(&w, 0, sizeof(w));
  if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, NP_KADSTORE_FILE) >=
          sizeof(path) ||
      (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >=
          sizeof(tmp)) {
    snprintf(err, errlen, "%s: directory path too long", dir);
    return NP_EINVAL;
  }
  fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot create a temp file: %s", tmp,
             strerror(errno));
    return NP_ESYS;
  }
  /* mkstemp already uses 0600; say so for umask-free certainty. */
  if (fchmod(fd, 0600) != 0 || (w.f = fdopen(fd, "wb")) == NULL) {
    snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    return NP_ESYS;
  }
  memcpy(hdr, F_MAGIC, 4);
  put16(hdr + 4, NP_KADSTORE_VERSION);
  put16(hdr + 6, 0);
  errno = 0;
  if (fwrite(hdr, 1, sizeof(hdr), w.f) != sizeof(hdr))
    w.err = errno ? errno : EIO;
  np_kadstore_each_record(s, w_rec, &w);
  np_kadstore_each_provider(s, w_prov, &w);
  if (w_room(&w, 4)) {
    uint32_t n = w.count;
    put32(w.buf, n);
    w_entry(&w, T_END, 4);
  }
  free(w.buf);
  if (w.err == 0 && fflush(w.f) != 0)
    w.err = errno;
  if (w.err == 0 && fsync(fileno(w.f)) != 0) {
    w.err = errno;
    what = "fsync";
  }
  if (fclose(w.f) != 0 && w.err == 0)
    w.err = errno;
  if (w.err == 0 && rename(tmp, path) != 0) {
    w.err = errno;
    what = "rename";
  }
  if (w.err != 0) {
    if (w.err == -1) {
      snprintf(err, errlen, "%s: out of memory", tmp);
      rv = NP_ENOMEM;
    } else {
      snprintf(err, errlen, "%s: %s failed: %s (old %s kept)", tmp, what,
               strerror(w.err), path);
      rv = NP_ESYS;
    }
    unlink(tmp);
    return rv;
  }
  /* The rename is durable only once the directory entry is. */
  dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd < 0 || fsync(dfd) != 0) {
    snprintf(err, errlen, "%s: directory fsync failed: %s", dir,
             strerror(errno));
    rv = NP_ESYS;
  }
  if (dfd >= 0)
    close(dfd);
  return rv;
}

/* ---- loading ---- */

static int load_err(char *err, size_t errlen, const char *name, size_t off,
               int rv, const char *what) {
  snprintf(err, errlen, "%s: offset %zu: %s", name, off, what);
  return rv;
}

/* Parse one record body into |s|. */
static int l_rec(np_kadstore *s, const uint8_t *p, size_t len, uint64_t now,
                 size_t *skipped, const char **what) {
  uint64_t received, expires;
  size_t keylen, vallen;
  const np_kadstore_validator *v;
  const char *vwhy = "refused by the namespace validator";
  int isbad;
  if (len < 22)
    return *what = "record entry too short", NP_EPROTO;
  received = get64(p);
  expires = get64(p + 8);
  keylen = get16(p + 16);
  if (keylen > s->cfg.max_key)
    return *what = "record key over max_key", NP_ELIMIT;
  if (len < 22 + keylen)
    return *what = "record key past the entry", NP_EPROTO;
  vallen = get32(p + 18 + keylen);
  if (vallen > s->cfg.max_value)
    return *what = "record value over max_value", NP_ELIMIT;
  if (len != 22 + keylen + vallen)
    return *what = "record length mismatch", NP_EPROTO;
  if (expires <= now)
    return 0;
  /* A file from a clock that ran ahead cannot pin a record for longer
   * than one TTL from now. */
  if (expires > deadline(now, s->cfg.record_ttl_ms))
    expires = deadline(now, s->cfg.record_ttl_ms);
  v = find_validator(s, p + 18, keylen, &isbad);
  if (isbad)
    return *what = "record key is not /namespace/...", NP_EPROTO;
  if (v == NULL) {
    (*skipped)++;
    return 0;
  }
  if (v->validate(v->ud, p + 18, keylen, p + 22 + keylen, vallen, now,
                  &vwhy) != 0)
    return *what = vwhy, NP_EPROTO;
  {
    uint64_t h = siphash(s->cfg.hash_seed, p + 18, keylen);
    if (ht_find(&s->recs, h, p + 18, keylen))
      return *what = "duplicate record key", NP_EPROTO;
    if (s->recs.n >= s->cfg.max_records)
      return *what = "more records than max_records", NP_ELIMIT;
    if (rec_store(s, NULL, p + 18, keylen, h, p + 22 + keylen, vallen,
                  received, expires) != 0)
      return *what = "out of memory", NP_ENOMEM;
  }
  return 0;
}

static int l_prov(np_kadstore *s, const uint8_t *p, size_t len, uint64_t now,
                  const char **what) {
  const uint8_t *addrs[NP_KADSTORE_ADDRS_MAX];
  size_t lens[NP_KADSTORE_ADDRS_MAX], keylen, idlen, off, n, i;
  np_peerid id;
  uint64_t expires;
  const char *why = "";
  int rv;
  if (len < 2)
    return *what = "provider entry too short", NP_EPROTO;
  keylen = get16(p);
  if (keylen == 0)
    return *what = "empty provider key", NP_EPROTO;
  if (keylen > s->cfg.max_key)
    return *what = "provider key over max_key", NP_ELIMIT;
  off = 2 + keylen;
  if (len < off + 1)
    return *what = "provider key past the entry", NP_EPROTO;
  idlen = p[off++];
  if (len < off + idlen + 9 ||
      np_peerid_from_bytes(&id, p + off, idlen) != 0)
    return *what = "provider peer ID invalid", NP_EPROTO;
  off += idlen;
  expires = get64(p + off);
  off += 8;
  n = p[off++];
  if (n > s->cfg.max_addrs)
    return *what = "provider addresses over max_addrs", NP_EPROTO;
  for (i = 0; i < n; i++) {
    if (len < off + 2)
      return *what = "provider address past the entry", NP_EPROTO;
    lens[i] = get16(p + off);
    addrs[i] = p + off + 2;
    off += 2;
    if (lens[i] > s->cfg.max_addr || len < off + lens[i])
      return *what = "provider address too long", NP_EPROTO;
    off += lens[i];
  }
  if (off != len)
    return *what = "provider length mismatch", NP_EPROTO;
  if (expires <= now)
    return 0;
  if (expires > deadline(now, s->cfg.provider_ttl_ms))
    expires = deadline(now, s->cfg.provider_ttl_ms);
  rv = prov_store(s, p + 2, keylen, &id, addrs, lens, n, now, expires, &why);
  if (rv != 0)
    *what = why;
  return rv;
}

/* Parse into |s| (empty, same config and validators as the target). */
static int parse(np_kadstore *s, const uint8_t *buf, size_t len,
                 const char *name, uint64_t now, size_t *skipped, char *err,
                 size_t errlen) {
  size_t off = F_HDR, max_entry;
  uint32_t count = 0;
  if (len < F_HDR || memcmp(buf, F_MAGIC, 4) != 0)
    return load_err(err, errlen, name, 0, NP_EPROTO, "not a kadstore file");
  if (get16(buf + 4) != NP_KADSTORE_VERSION || get16(buf + 6) != 0) {
    char w[64];
    snprintf(w, sizeof(w), "version %u.%u, this host reads %d.0",
             (unsigned)get16(buf + 4), (unsigned)get16(buf + 6),
             NP_KADSTORE_VERSION);
    return load_err(err, errlen, name, 4, NP_ENOTSUP, w);
  }
  /* Largest body the limits allow: a record or a full provider. */
  max_entry = 22 + s->cfg.max_key + s->cfg.max_value;
  if (max_entry < 13 + s->cfg.max_key + NP_PEERID_MAX +
                      s->cfg.max_addrs * (2 + s->cfg.max_addr))
    max_entry = 13 + s->cfg.max_key + NP_PEERID_MAX +
                s->cfg.max_addrs * (2 + s->cfg.max_addr);
  for (;;) {
    const uint8_t *body;
    const char *what = "";
    size_t blen;
    int type, rv = 0;
    if (len - off < F_EHDR)
      return load_err(err, errlen, name, off, NP_EPROTO,
                 "truncated (no end entry)");
    type = buf[off];
    blen = get32(buf + off + 1);
    if (blen > max_entry)
      return load_err(err, errlen, name, off, NP_EPROTO, "entry over the caps");
    if (len - off - F_EHDR < blen)
      return load_err(err, errlen, name, off, NP_EPROTO, "truncated entry");
    body = buf + off + F_EHDR;
    if (crc32(crc32(0, buf + off, 5), body, blen) != get32(buf + off + 5))
      return load_err(err, errlen, name, off, NP_EPROTO, "checksum mismatch");
    if (type == T_END) {
      if (blen != 4 || get32(body) != count)
        return load_err(err, errlen, name, off, NP_EPROTO, "bad end entry");
      if (off + F_EHDR + blen != len)
        return load_err(err, errlen, name, off + F_EHDR + blen, NP_EPROTO,
                   "data after the end entry");
      return 0;
    }
    if (type == T_REC)
      rv = l_rec(s, body, blen, now, skipped, &what);
    else if (type == T_PROV)
      rv = l_prov(s, body, blen, now, &what);
    else
      rv = NP_EPROTO, what = "unknown entry type";
    if (rv != 0)
      return load_err(err, errlen, name, off, rv, what);
    count++;
    off += F_EHDR + blen;
  }
}

/* Swap the contents of |a| and |b| (validators are the same). */
static void swap_content(np_kadstore *a, np_kadstore *b) {
  htab r = a->recs, k = a->pkeys;
  size_t np = a->nprov, mem = a->mem;
  uint64_t nx = a->rec_next_expiry, px = a->prov_next_expiry;
  a->recs = b->recs;
  a->pkeys = b->pkeys;
  a->nprov = b->nprov;
  a->mem = b->mem;
  a->rec_next_expiry = b->rec_next_expiry;
  a->prov_next_expiry = b->prov_next_expiry;
  b->recs = r;
  b->pkeys = k;
  b->nprov = np;
  b->mem = mem;
  b->rec_next_expiry = nx;
  b->prov_next_expiry = px;
}

int np_kadstore_load_buf(np_kadstore *s, const uint8_t *buf, size_t len,
                         const char *name, uint64_t now, size_t *skipped,
                         char *err, size_t errlen) {
  np_kadstore *t = calloc(1, sizeof(*t));
  size_t sk = 0, i;
  int rv;
  if (t == NULL) {
    snprintf(err, errlen, "%s: out of memory", name);
    return NP_ENOMEM;
  }
  t->cfg = s->cfg;
  t->mem = sizeof(*t);
  t->rec_next_expiry = t->prov_next_expiry = UINT64_MAX;
  memcpy(t->vals, s->vals, sizeof(s->vals));
  t->nvals = s->nvals;
  for (i = 0; i < t->nvals; i++)
    t->vals[i].v.ns = t->vals[i].ns;
  rv = parse(t, buf, len, name, now, &sk, err, errlen);
  if (rv == 0) {
    swap_content(s, t);
    if (skipped)
      *skipped = sk;
  }
  np_kadstore_del(t);
  return rv;
}

int np_kadstore_load(np_kadstore *s, const char *dir, uint64_t now,
                     size_t *skipped, char *err, size_t errlen) {
  char path[4096];
  struct stat st;
  uint8_t *buf;
  size_t got = 0;
  int fd, rv;
  if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, NP_KADSTORE_FILE) >=
      sizeof(path)) {
    snprintf(err, errlen, "%s: directory path too long", dir);
    return NP_EINVAL;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return errno == ENOENT ? NP_ENOENT : NP_ESYS;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: not a regular file", path);
    close(fd);
    return NP_ESYS;
  }
  if ((uint64_t)st.st_size > s->cfg.max_file) {
    snprintf(err, errlen, "%s: %lld bytes, over max_file %zu", path,
             (long long)st.st_size, s->cfg.max_file);
    close(fd);
    return NP_ELIMIT;
  }
  buf = malloc(st.st_size ? (size_t)st.st_size : 1);
  if (buf == NULL) {
    close(fd);
    snprintf(err, errlen, "%s: out of memory", path);
    return NP_ENOMEM;
  }
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      break;
    }
    got += (size_t)n;
  }
  close(fd);
  rv = np_kadstore_load_buf(s, buf, got, path, now, skipped, err, errlen);
  free(buf);
  return rv;
}
