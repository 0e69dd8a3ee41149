/* Iterative Kademlia lookup (see np_kadquery.h). */
#include "np_kadquery.h"

#include <stdlib.h>
#include <string.h>

enum { C_FRESH, C_INFLIGHT, C_ANSWERED, C_FAILED };

typedef struct kq_cand {
  uint8_t key[NP_KBUCKET_KEYLEN];
  np_peerid id;
  uint8_t state;
  uint8_t depth; /* hops from the seeds: seeds are 1 */
  uint64_t deadline;
} kq_cand;

/* One lookup path: its candidates, nearest first. */
typedef struct kq_path {
  kq_cand *c;
  size_t n, inflight;
} kq_path;

struct np_kadquery {
  uint8_t target[NP_KBUCKET_KEYLEN];
  np_peerid self;
  np_kadquery_config cfg;
  np_kadquery_state state;
  np_kadquery_stats st;
  kq_path path; /* disjoint paths would make this an array */
};

void np_kadquery_config_default(np_kadquery_config *c) {
  c->k = 20;
  c->alpha = 10;
  c->max_candidates = 3 * c->k + c->alpha;
  c->max_per_response = 2 * c->k;
  c->max_queried = 256;
  c->max_depth = 20;
  c->timeout = 0;
}

int np_kadquery_new(np_kadquery **pq, const uint8_t target[NP_KBUCKET_KEYLEN],
                    const np_peerid *self, const np_kadquery_config *cfg) {
  np_kadquery *q;
  np_kadquery_config c;
  if (cfg == NULL)
    np_kadquery_config_default(&c);
  else
    c = *cfg;
  if (c.k == 0 || c.k > 255 || c.alpha == 0 ||
      c.max_candidates < c.k + c.alpha || c.max_queried == 0 ||
      c.max_depth == 0 || c.max_depth > 255)
    return NP_EINVAL;
  if ((q = calloc(1, sizeof(*q))) == NULL)
    return NP_ENOMEM;
  if ((q->path.c = calloc(c.max_candidates, sizeof(*q->path.c))) == NULL) {
    free(q);
    return NP_ENOMEM;
  }
  memcpy(q->target, target, NP_KBUCKET_KEYLEN);
  q->self = *self;
  q->cfg = c;
  *pq = q;
  return 0;
}

void np_kadquery_del(np_kadquery *q) {
  if (q == NULL)
    return;
  free(q->path.c);
  free(q);
}

static void update_state(np_kadquery *q) {
  const kq_path *p = &q->path;
  size_t i, seen = 0, answered = 0, pending = 0;
  if (q->state != NP_KADQUERY_RUNNING)
    return;
  for (i = 0; i < p->n && seen < q->cfg.k; i++) {
    if (p->c[i].state == C_FAILED)
      continue;
    seen++;
    if (p->c[i].state == C_ANSWERED)
      answered++;
    else
      pending++;
  }
  if (pending == 0 && answered > 0)
    q->state = NP_KADQUERY_DONE;
  else if (p->inflight > 0)
    return;
  else if (pending == 0)
    q->state = NP_KADQUERY_FAILED;
  else if (q->st.queried >= q->cfg.max_queried)
    q->state = NP_KADQUERY_LIMIT;
}

/* Insert |id| at |depth| if it is new, not us, and near enough. */
static void offer(np_kadquery *q, kq_path *p, const np_peerid *id,
                  unsigned depth) {
  uint8_t key[NP_KBUCKET_KEYLEN];
  size_t lo = 0, hi = p->n, pos;
  int c;
  if (np_peerid_equal(id, &q->self) || depth > q->cfg.max_depth) {
    q->st.dropped++;
    return;
  }
  np_kbucket_key(id, key);
  while (lo < hi) { /* binary search by distance */
    size_t mid = lo + (hi - lo) / 2;
    c = np_kbucket_cmp(q->target, key, p->c[mid].key);
    if (c == 0) { /* same key: the same peer (SHA-256) */
      q->st.dropped++;
      return;
    }
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  pos = lo;
  if (p->n == q->cfg.max_candidates) {
    /* Make room by dropping the farthest idle entry behind |pos|; an entry
     * in flight stays so its answer still finds it. */
    size_t v = p->n;
    while (v > pos && p->c[v - 1].state == C_INFLIGHT)
      v--;
    if (v == pos) {
      q->st.dropped++;
      return;
    }
    v--;
    memmove(&p->c[v], &p->c[v + 1], (p->n - v - 1) * sizeof(*p->c));
    p->n--;
    q->st.dropped++;
  }
  memmove(&p->c[pos + 1], &p->c[pos], (p->n - pos) * sizeof(*p->c));
  memset(&p->c[pos], 0, sizeof(p->c[pos]));
  memcpy(p->c[pos].key, key, sizeof(key));
  p->c[pos].id = *id;
  p->c[pos].state = C_FRESH;
  p->c[pos].depth = (uint8_t)depth;
  p->n++;
}

int np_kadquery_seed(np_kadquery *q, const np_peerid *peers, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    offer(q, &q->path, &peers[i], 1);
  update_state(q);
  return 0;
}

size_t np_kadquery_next(np_kadquery *q, uint64_t now, np_peerid *out,
                        size_t max) {
  kq_path *p = &q->path;
  size_t i, seen = 0, got = 0;
  update_state(q);
  if (q->state != NP_KADQUERY_RUNNING)
    return 0;
  /* Only the k closest not-failed candidates are worth asking: farther
   * ones cannot change the result unless nearer ones fail. */
  for (i = 0; i < p->n && seen < q->cfg.k; i++) {
    kq_cand *c = &p->c[i];
    if (c->state == C_FAILED)
      continue;
    seen++;
    if (c->state != C_FRESH)
      continue;
    if (got == max || p->inflight >= q->cfg.alpha ||
        q->st.queried >= q->cfg.max_queried)
      break;
    c->state = C_INFLIGHT;
    c->deadline = q->cfg.timeout ? now + q->cfg.timeout : UINT64_MAX;
    p->inflight++;
    q->st.queried++;
    out[got++] = c->id;
  }
  update_state(q);
  return got;
}

static kq_cand *inflight(kq_path *p, const np_peerid *id) {
  size_t i;
  for (i = 0; i < p->n; i++)
    if (p->c[i].state == C_INFLIGHT && np_peerid_equal(&p->c[i].id, id))
      return &p->c[i];
  return NULL;
}

int np_kadquery_on_response(np_kadquery *q, const np_peerid *from,
                            const np_peerid *closer, size_t n) {
  kq_path *p = &q->path;
  kq_cand *c = inflight(p, from);
  unsigned depth;
  size_t i;
  if (c == NULL) {
    q->st.ignored++;
    return NP_ENOENT;
  }
  c->state = C_ANSWERED;
  p->inflight--;
  q->st.answered++;
  depth = c->depth; /* |c| moves as peers are inserted */
  if (depth > q->st.depth)
    q->st.depth = depth;
  if (n > q->cfg.max_per_response) {
    q->st.dropped += n - q->cfg.max_per_response;
    n = q->cfg.max_per_response;
  }
  for (i = 0; i < n; i++)
    offer(q, p, &closer[i], depth + 1);
  update_state(q);
  return 0;
}

int np_kadquery_on_failure(np_kadquery *q, const np_peerid *from) {
  kq_cand *c = inflight(&q->path, from);
  if (c == NULL)
    return NP_ENOENT;
  c->state = C_FAILED;
  q->path.inflight--;
  q->st.failed++;
  update_state(q);
  return 0;
}

size_t np_kadquery_on_timeout(np_kadquery *q, uint64_t now) {
  kq_path *p = &q->path;
  size_t i, t = 0;
  for (i = 0; i < p->n; i++)
    if (p->c[i].state == C_INFLIGHT && p->c[i].deadline <= now) {
      p->c[i].state = C_FAILED;
      p->inflight--;
      t++;
    }
  q->st.failed += t;
  q->st.timed_out += t;
  update_state(q);
  return t;
}

uint64_t np_kadquery_deadline(const np_kadquery *q) {
  uint64_t d = UINT64_MAX;
  size_t i;
  for (i = 0; i < q->path.n; i++)
    if (q->path.c[i].state == C_INFLIGHT && q->path.c[i].deadline < d)
      d = q->path.c[i].deadline;
  return d;
}

np_kadquery_state np_kadquery_state_get(const np_kadquery *q) {
  return q->state;
}

size_t np_kadquery_result(const np_kadquery *q, np_peerid *out, size_t max) {
  size_t i, got = 0;
  if (max > q->cfg.k)
    max = q->cfg.k;
  for (i = 0; i < q->path.n && got < max; i++)
    if (q->path.c[i].state == C_ANSWERED)
      out[got++] = q->path.c[i].id;
  return got;
}

void np_kadquery_stats_get(const np_kadquery *q, np_kadquery_stats *st) {
  *st = q->st;
}
