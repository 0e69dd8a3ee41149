/* Kademlia routing table (see np_kbucket.h). */
#include "np_kbucket.h"

#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"

/* 96 bytes: the key is kept so queries never hash. */
typedef struct kb_entry {
  uint64_t seen;
  uint8_t key[NP_KBUCKET_KEYLEN];
  np_peerid id;
} kb_entry;

/* Arrays grow on demand: buckets near the local key stay nearly empty, so
 * reserving k slots in all 256 would waste most of the memory. */
typedef struct kb_bucket {
  kb_entry *e;   /* least recently seen first */
  kb_entry *rep; /* replacement cache, oldest first */
  uint8_t n, cap, nrep;
  uint8_t pinging; /* a FULL candidate's check is outstanding */
} kb_bucket;

struct np_kbucket {
  uint8_t self[NP_KBUCKET_KEYLEN];
  size_t k, nrep_max, size;
  kb_bucket b[NP_KBUCKET_BUCKETS];
};

void np_kbucket_key(const np_peerid *id, uint8_t key[NP_KBUCKET_KEYLEN]) {
  np_crypto_sha256(id->bytes, id->len, key);
}

unsigned np_kbucket_cpl(const uint8_t *a, const uint8_t *b) {
  unsigned i;
  for (i = 0; i < NP_KBUCKET_KEYLEN; i++) {
    uint8_t x = a[i] ^ b[i];
    if (x != 0)
      return i * 8 + (unsigned)__builtin_clz((unsigned)x) - 24;
  }
  return NP_KBUCKET_KEYLEN * 8;
}

int np_kbucket_cmp(const uint8_t *target, const uint8_t *a, const uint8_t *b) {
  unsigned i;
  for (i = 0; i < NP_KBUCKET_KEYLEN; i++) {
    uint8_t da = a[i] ^ target[i], db = b[i] ^ target[i];
    if (da != db)
      return da < db ? -1 : 1;
  }
  return 0;
}

int np_kbucket_new(np_kbucket **pt, const np_peerid *self,
                   const np_kbucket_config *cfg) {
  np_kbucket *t;
  size_t k = cfg ? cfg->k : 20, r = cfg ? cfg->replacements : 3;
  if (k == 0 || k > 255 || r > 255)
    return NP_EINVAL;
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return NP_ENOMEM;
  np_kbucket_key(self, t->self);
  t->k = k;
  t->nrep_max = r;
  *pt = t;
  return 0;
}

void np_kbucket_del(np_kbucket *t) {
  unsigned i;
  if (t == NULL)
    return;
  for (i = 0; i < NP_KBUCKET_BUCKETS; i++) {
    free(t->b[i].e);
    free(t->b[i].rep);
  }
  free(t);
}

static int find(const kb_entry *e, size_t n, const np_peerid *id) {
  size_t i;
  for (i = 0; i < n; i++)
    if (np_peerid_equal(&e[i].id, id))
      return (int)i;
  return -1;
}

/* Move e[i] to the tail (most recently seen). */
static void to_tail(kb_entry *e, size_t n, size_t i) {
  kb_entry tmp = e[i];
  memmove(&e[i], &e[i + 1], (n - i - 1) * sizeof(*e));
  e[n - 1] = tmp;
}

static void cache(np_kbucket *t, kb_bucket *b, const kb_entry *x) {
  int i;
  if (t->nrep_max == 0)
    return;
  if (b->rep == NULL &&
      (b->rep = malloc(t->nrep_max * sizeof(*b->rep))) == NULL)
    return; /* the cache is a hint; losing a newcomer is harmless */
  if ((i = find(b->rep, b->nrep, &x->id)) >= 0) {
    b->rep[i] = *x;
    to_tail(b->rep, b->nrep, (size_t)i);
    return;
  }
  if (b->nrep == t->nrep_max) { /* forget the oldest */
    memmove(&b->rep[0], &b->rep[1], (b->nrep - 1) * sizeof(*b->rep));
    b->nrep--;
  }
  b->rep[b->nrep++] = *x;
}

/* Insert |x| keeping least-recently-seen order; room is guaranteed. */
static void insert_seen(kb_bucket *b, const kb_entry *x) {
  size_t i = b->n;
  while (i > 0 && b->e[i - 1].seen > x->seen)
    i--;
  memmove(&b->e[i + 1], &b->e[i], (b->n - i) * sizeof(*b->e));
  b->e[i] = *x;
  b->n++;
}

int np_kbucket_add(np_kbucket *t, const np_peerid *id, uint64_t now,
                   np_peerid *candidate) {
  kb_entry x;
  kb_bucket *b;
  unsigned cpl;
  int i;
  x.seen = now;
  x.id = *id;
  np_kbucket_key(id, x.key);
  cpl = np_kbucket_cpl(t->self, x.key);
  if (cpl >= NP_KBUCKET_BUCKETS)
    return NP_EINVAL;
  b = &t->b[cpl];
  if ((i = find(b->e, b->n, id)) >= 0) {
    b->e[i].seen = now;
    to_tail(b->e, b->n, (size_t)i);
    return NP_KBUCKET_UPDATED;
  }
  if (b->n == t->k) {
    cache(t, b, &x);
    if (b->pinging)
      return NP_KBUCKET_QUEUED;
    b->pinging = 1;
    if (candidate != NULL)
      *candidate = b->e[0].id;
    return NP_KBUCKET_FULL;
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? (size_t)b->cap * 2 : 2;
    kb_entry *e;
    if (cap > t->k)
      cap = t->k;
    if ((e = realloc(b->e, cap * sizeof(*e))) == NULL)
      return NP_ENOMEM;
    b->e = e;
    b->cap = (uint8_t)cap;
  }
  insert_seen(b, &x);
  t->size++;
  return NP_KBUCKET_ADDED;
}

static kb_bucket *bucket_of(np_kbucket *t, const np_peerid *id) {
  uint8_t key[NP_KBUCKET_KEYLEN];
  unsigned cpl;
  np_kbucket_key(id, key);
  cpl = np_kbucket_cpl(t->self, key);
  return cpl < NP_KBUCKET_BUCKETS ? &t->b[cpl] : NULL;
}

/* Drop e[i] and let the newest cached peer take the slot. */
static void evict(np_kbucket *t, kb_bucket *b, size_t i) {
  memmove(&b->e[i], &b->e[i + 1], (b->n - i - 1) * sizeof(*b->e));
  b->n--;
  t->size--;
  b->pinging = 0;
  if (b->nrep > 0) {
    insert_seen(b, &b->rep[--b->nrep]);
    t->size++;
  }
}

int np_kbucket_report(np_kbucket *t, const np_peerid *candidate, int alive,
                      uint64_t now) {
  kb_bucket *b = bucket_of(t, candidate);
  int i;
  if (b == NULL || (i = find(b->e, b->n, candidate)) < 0)
    return NP_ENOENT;
  b->pinging = 0;
  if (!alive) {
    evict(t, b, (size_t)i);
    return 0;
  }
  b->e[i].seen = now;
  to_tail(b->e, b->n, (size_t)i);
  return 0;
}

int np_kbucket_remove(np_kbucket *t, const np_peerid *id) {
  kb_bucket *b = bucket_of(t, id);
  int i;
  if (b == NULL)
    return NP_ENOENT;
  if ((i = find(b->e, b->n, id)) >= 0) {
    evict(t, b, (size_t)i);
    return 0;
  }
  if ((i = find(b->rep, b->nrep, id)) >= 0) {
    memmove(&b->rep[i], &b->rep[i + 1],
            (b->nrep - (size_t)i - 1) * sizeof(*b->rep));
    b->nrep--;
    return 0;
  }
  return NP_ENOENT;
}

int np_kbucket_contains(const np_kbucket *t, const np_peerid *id) {
  kb_bucket *b = bucket_of((np_kbucket *)t, id);
  return b != NULL && find(b->e, b->n, id) >= 0;
}

size_t np_kbucket_size(const np_kbucket *t) { return t->size; }

size_t np_kbucket_bucket_size(const np_kbucket *t, unsigned i) {
  return i < NP_KBUCKET_BUCKETS ? t->b[i].n : 0;
}

/* Keep |best| (|*nbest| of at most |n|) sorted by distance to |target|. */
static void offer(const kb_entry **best, size_t *nbest, size_t n,
                  const uint8_t *target, const kb_entry *x) {
  size_t i = *nbest;
  if (i == n) {
    if (np_kbucket_cmp(target, x->key, best[n - 1]->key) >= 0)
      return;
    i--;
  } else {
    (*nbest)++;
  }
  while (i > 0 && np_kbucket_cmp(target, x->key, best[i - 1]->key) < 0) {
    best[i] = best[i - 1];
    i--;
  }
  best[i] = x;
}

size_t np_kbucket_closest(const np_kbucket *t,
                          const uint8_t target[NP_KBUCKET_KEYLEN], size_t n,
                          np_peerid *out) {
  const kb_entry *stackbuf[64], **best = stackbuf;
  size_t nbest = 0, i, j;
  unsigned c = np_kbucket_cpl(t->self, target);
  if (n == 0)
    return 0;
  if (n > NP_ARRAY_LEN(stackbuf) &&
      (best = malloc(n * sizeof(*best))) == NULL) {
    best = stackbuf; /* out of memory: fewer peers beat none */
    n = NP_ARRAY_LEN(stackbuf);
  }
  /* Bucket c agrees with the target up to bit c, buckets above c differ
   * from it first at bit c, and each bucket below c at its own index: so
   * after c..255 each lower bucket is wholly farther than all before it,
   * and the walk stops once n peers are in hand. */
  for (i = c; i < NP_KBUCKET_BUCKETS; i++)
    for (j = 0; j < t->b[i].n; j++)
      offer(best, &nbest, n, target, &t->b[i].e[j]);
  for (i = c < NP_KBUCKET_BUCKETS ? c : NP_KBUCKET_BUCKETS; i-- > 0 && nbest < n;)
    for (j = 0; j < t->b[i].n; j++)
      offer(best, &nbest, n, target, &t->b[i].e[j]);
  for (i = 0; i < nbest; i++)
    out[i] = best[i]->id;
  if (best != stackbuf)
    free(best);
  return nbest;
}

size_t np_kbucket_entry_size(void) { return sizeof(kb_entry); }
