#include "np_peerstore.h"

#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"

#define MAX_BUCKETS 65536u

struct np_peerstore {
  np_ps_peer **peers; /* dense array: iteration and eviction */
  size_t n, max;
  np_ps_peer **b; /* hash index by ID, chained through hnext_ */
  uint32_t mask;  /* buckets - 1 (a power of two) */
  uint64_t seed;  /* per store: peers cannot aim IDs at one bucket */
};

int np_peerstore_new(np_peerstore **pps, uint32_t max_peers) {
  np_peerstore *ps = calloc(1, sizeof(*ps));
  uint32_t nb = 16;
  if (ps == NULL)
    return NP_ENOMEM;
  ps->max = max_peers ? max_peers : 1;
  while (nb < ps->max && nb < MAX_BUCKETS)
    nb <<= 1;
  ps->mask = nb - 1;
  if (np_crypto_random(&ps->seed, sizeof(ps->seed)) != 0)
    ps->seed = (uint64_t)(uintptr_t)ps;
  if ((ps->peers = calloc(ps->max, sizeof(*ps->peers))) == NULL ||
      (ps->b = calloc(nb, sizeof(*ps->b))) == NULL) {
    free(ps->peers);
    free(ps);
    return NP_ENOMEM;
  }
  *pps = ps;
  return 0;
}

/* FNV-1a over the ID, started from the store's seed, then mixed. */
static uint32_t bucket(const np_peerstore *ps, const np_peerid *id) {
  uint64_t h = 14695981039346656037ull ^ ps->seed;
  for (size_t i = 0; i < id->len; i++)
    h = (h ^ id->bytes[i]) * 1099511628211ull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (uint32_t)h & ps->mask;
}

static void index_add(np_peerstore *ps, np_ps_peer *p) {
  np_ps_peer **head = &ps->b[bucket(ps, &p->id)];
  p->hnext_ = *head;
  *head = p;
}

static void index_remove(np_peerstore *ps, np_ps_peer *p) {
  np_ps_peer **pp = &ps->b[bucket(ps, &p->id)];
  for (; *pp; pp = &(*pp)->hnext_)
    if (*pp == p) {
      *pp = p->hnext_;
      return;
    }
}

static void free_protocols(np_ps_peer *p) {
  for (size_t i = 0; i < p->nprotocols; i++)
    free(p->protocols[i]);
  free(p->protocols);
  p->protocols = NULL;
  p->nprotocols = 0;
}

/* The entry and what it owns. */
static void free_peer(np_ps_peer *p) {
  free_protocols(p);
  free(p->addrs);
  free(p);
}

void np_peerstore_del(np_peerstore *ps) {
  if (ps == NULL)
    return;
  for (size_t i = 0; i < ps->n; i++) {
    free_peer(ps->peers[i]);
  }
  free(ps->peers);
  free(ps->b);
  free(ps);
}

np_ps_peer *np_peerstore_get(np_peerstore *ps, const np_peerid *id) {
  np_ps_peer *p = ps->b[bucket(ps, id)];
  for (; p; p = p->hnext_)
    if (np_peerid_equal(&p->id, id))
      return p;
  return NULL;
}

np_ps_peer *np_peerstore_upsert(np_peerstore *ps, const np_peerid *id,
                                uint64_t now_ms) {
  np_ps_peer *p = np_peerstore_get(ps, id);
  if (p != NULL) {
    p->last_seen_ms = now_ms;
    return p;
  }
  if (ps->n == ps->max) {
    /* A linear pass, but only when a new peer arrives at a full store. */
    size_t victim = ps->n;
    for (size_t i = 0; i < ps->n; i++)
      if (!ps->peers[i]->connected &&
          (victim == ps->n ||
           ps->peers[i]->last_seen_ms < ps->peers[victim]->last_seen_ms))
        victim = i;
    if (victim == ps->n)
      return NULL;
    index_remove(ps, ps->peers[victim]);
    free_peer(ps->peers[victim]);
    ps->peers[victim] = ps->peers[--ps->n];
  }
  if ((p = calloc(1, sizeof(*p))) == NULL)
    return NULL;
  p->id = *id;
  p->last_seen_ms = now_ms;
  p->rtt_us = -1;
  ps->peers[ps->n++] = p;
  index_add(ps, p);
  return p;
}

int np_peerstore_add_addr(np_ps_peer *p, const uint8_t *bin, size_t len,
                          uint64_t now_ms, uint64_t ttl_ms) {
  size_t off = 0, keep = 0, slot;
  np_maddr_comp c;
  int r;
  uint64_t exp = ttl_ms ? now_ms + ttl_ms : 0;
  if (np_maddr_validate(bin, len) != 0)
    return NP_EINVAL;
  /* Keep the address without its trailing /p2p/ID: the ID is the
   * entry's key. An inner /p2p/ (a circuit's relay) stays. */
  while ((r = np_maddr_next(bin, len, &off, &c)) == 1) {
    if (c.code != 0x01a5 || off != len)
      keep = off;
  }
  if (keep == 0)
    return NP_EINVAL;
  if (keep > NP_PS_ADDR_MAX)
    return NP_ELIMIT;
  for (size_t i = 0; i < p->naddrs; i++) {
    np_ps_addr *a = &p->addrs[i];
    if (a->len == keep && memcmp(a->bin, bin, keep) == 0) {
      if (a->expires_ms != 0 && (exp == 0 || exp > a->expires_ms))
        a->expires_ms = exp;
      return 0;
    }
  }
  if (p->naddrs < NP_PS_MAX_ADDRS) {
    if (p->naddrs == p->acap) { /* most peers have one or two addresses */
      size_t cap = p->acap ? p->acap * 2 : 1;
      np_ps_addr *v;
      if (cap > NP_PS_MAX_ADDRS)
        cap = NP_PS_MAX_ADDRS;
      if ((v = realloc(p->addrs, cap * sizeof(*v))) == NULL)
        return NP_ENOMEM;
      p->addrs = v;
      p->acap = cap;
    }
    slot = p->naddrs++;
  } else {
    slot = NP_PS_MAX_ADDRS;
    for (size_t i = 0; i < p->naddrs; i++)
      if (p->addrs[i].expires_ms != 0 &&
          (slot == NP_PS_MAX_ADDRS ||
           p->addrs[i].expires_ms < p->addrs[slot].expires_ms))
        slot = i;
    if (slot == NP_PS_MAX_ADDRS)
      return NP_ELIMIT; /* all permanent */
  }
  memcpy(p->addrs[slot].bin, bin, keep);
  p->addrs[slot].len = (uint16_t)keep;
  p->addrs[slot].expires_ms = exp;
  return 0;
}

void np_peerstore_expire(np_ps_peer *p, uint64_t now_ms) {
  size_t o = 0;
  for (size_t i = 0; i < p->naddrs; i++)
    if (p->addrs[i].expires_ms == 0 || p->addrs[i].expires_ms > now_ms)
      p->addrs[o++] = p->addrs[i];
  p->naddrs = o;
}

int np_peerstore_set_protocols(np_ps_peer *p, const char *const *names,
                               const size_t *lens, size_t n) {
  char **v;
  size_t k = 0;
  if (n > NP_PS_MAX_PROTOCOLS)
    n = NP_PS_MAX_PROTOCOLS;
  if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL)
    return NP_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (lens[i] == 0 || lens[i] > 1024 || memchr(names[i], '\0', lens[i]))
      continue;
    if ((v[k] = malloc(lens[i] + 1)) == NULL) {
      for (size_t j = 0; j < k; j++)
        free(v[j]);
      free(v);
      return NP_ENOMEM;
    }
    memcpy(v[k], names[i], lens[i]);
    v[k++][lens[i]] = '\0';
  }
  free_protocols(p);
  p->protocols = v;
  p->nprotocols = k;
  return 0;
}

void np_peerstore_set_agent(np_ps_peer *p, const char *agent, size_t len) {
  size_t o = 0;
  /* Keep printable ASCII only: this text ends up in logs and CLI output. */
  for (size_t i = 0; i < len && o < sizeof(p->agent) - 1; i++)
    if (agent[i] >= 0x20 && agent[i] < 0x7f)
      p->agent[o++] = agent[i];
  p->agent[o] = '\0';
}

int np_peerstore_supports(const np_ps_peer *p, const char *proto) {
  for (size_t i = 0; i < p->nprotocols; i++)
    if (strcmp(p->protocols[i], proto) == 0)
      return 1;
  return 0;
}

size_t np_peerstore_count(const np_peerstore *ps) { return ps->n; }

np_ps_peer *np_peerstore_at(np_peerstore *ps, size_t i) {
  return i < ps->n ? ps->peers[i] : NULL;
}
