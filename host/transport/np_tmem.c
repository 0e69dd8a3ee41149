/* In-memory transport: a name table per network, byte-stream pairs for
 * connections, np_upgrade on both ends. */
#include <stdlib.h>
#include <string.h>

#include "np_bstream.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_tmem.h"

#define SUB "mem"
#define ADDR_CAP 300 /* /memory/NAME: 2-byte code, length, 255 bytes */

typedef struct tmem tmem;

typedef struct tname {
  struct tname *next; /* hash chain */
  np_list link;       /* owner's names */
  tmem *t;
  uint8_t maddr[ADDR_CAP]; /* /memory/NAME */
  size_t maddrlen;
  const uint8_t *name; /* inside maddr */
  size_t nlen;
} tname;

struct np_tmem_net {
  np_loop *loop;
  tname **buckets;
  size_t nbuckets, count;
};

struct tmem {
  np_transport pub; /* first */
  np_tmem_net *net;
  np_tmem_config cfg;
  np_upgrade *up;
  np_list names;
  int deleting;
  int gone; /* np_tmem_vanish; read by our ends of each pair */
};

/* ---- the name table ------------------------------------------------------ */

static size_t hash(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return (size_t)h;
}

static tname **slot(np_tmem_net *net, const uint8_t *name, size_t n) {
  tname **pp = &net->buckets[hash(name, n) & (net->nbuckets - 1)];
  while (*pp != NULL && ((*pp)->nlen != n || memcmp((*pp)->name, name, n) != 0))
    pp = &(*pp)->next;
  return pp;
}

static int grow(np_tmem_net *net) {
  size_t nb = net->nbuckets * 2;
  tname **b = calloc(nb, sizeof(*b));
  if (b == NULL)
    return NP_ENOMEM;
  for (size_t i = 0; i < net->nbuckets; i++) {
    tname *e = net->buckets[i], *next;
    for (; e != NULL; e = next) {
      size_t k = hash(e->name, e->nlen) & (nb - 1);
      next = e->next;
      e->next = b[k];
      b[k] = e;
    }
  }
  free(net->buckets);
  net->buckets = b;
  net->nbuckets = nb;
  return 0;
}

int np_tmem_net_new(np_tmem_net **pn, np_loop *loop) {
  np_tmem_net *n = calloc(1, sizeof(*n));
  if (n == NULL)
    return NP_ENOMEM;
  n->loop = loop;
  n->nbuckets = 64;
  if ((n->buckets = calloc(n->nbuckets, sizeof(*n->buckets))) == NULL) {
    free(n);
    return NP_ENOMEM;
  }
  *pn = n;
  return 0;
}

void np_tmem_net_del(np_tmem_net *n) {
  if (n == NULL)
    return;
  free(n->buckets);
  free(n);
}

/* /memory/NAME[/p2p/ID]: sets the /memory/NAME prefix and the name. */
static int parse(const uint8_t *maddr, size_t len, size_t *prefix,
                 const uint8_t **name, size_t *nlen) {
  np_maddr_comp c;
  size_t off = 0;
  int rv, n = 0;
  if ((rv = np_maddr_validate(maddr, len)) < 0)
    return rv;
  while ((rv = np_maddr_next(maddr, len, &off, &c)) > 0) {
    if (n == 0) {
      if (c.code != NP_MADDR_MEMORY)
        return NP_ENOTSUP;
      *prefix = off;
      *name = c.val;
      *nlen = c.vlen;
    } else if (n > 1 || c.code != NP_MADDR_P2P) {
      return NP_ENOTSUP;
    }
    n++;
  }
  return *prefix <= ADDR_CAP ? 0 : NP_ENOTSUP;
}

/* ---- transport ops ------------------------------------------------------- */

static int m_can_dial(const np_transport *pt, const uint8_t *maddr,
                      size_t len) {
  size_t prefix = 0, nlen;
  const uint8_t *name;
  (void)pt;
  return parse(maddr, len, &prefix, &name, &nlen) == 0;
}

static int m_listen(np_transport *pt, const uint8_t *maddr, size_t len) {
  tmem *t = (tmem *)pt;
  np_tmem_net *net = t->net;
  size_t prefix = 0, nlen;
  const uint8_t *name;
  tname *e, **pp;
  char text[ADDR_CAP * 2];
  int rv;
  if (t->deleting)
    return NP_ECANCELED;
  if ((rv = parse(maddr, len, &prefix, &name, &nlen)) != 0)
    return rv;
  if (*slot(net, name, nlen) != NULL)
    return NP_EEXIST;
  if (net->count >= net->nbuckets * 2 && grow(net) != 0)
    return NP_ENOMEM;
  if ((e = calloc(1, sizeof(*e))) == NULL)
    return NP_ENOMEM;
  e->t = t;
  memcpy(e->maddr, maddr, prefix);
  e->maddrlen = prefix;
  e->name = e->maddr + (name - maddr);
  e->nlen = nlen;
  pp = slot(net, name, nlen);
  *pp = e;
  net->count++;
  np_list_insert_tail(&t->names, &e->link);
  if (np_maddr_to_string(e->maddr, e->maddrlen, text, sizeof(text)) >= 0)
    np_debug(SUB, "listen addr=%s", text);
  return 0;
}

static int m_dial(np_transport *pt, const uint8_t *maddr, size_t len, void *ud,
                  np_conn **pc) {
  tmem *t = (tmem *)pt, *l;
  size_t prefix = 0, nlen, llen = 0;
  const uint8_t *name, *laddr = NULL;
  np_peerid expected;
  np_bstream *a, *b;
  np_conn *lc;
  tname *e;
  int rv, has_expected;
  if (t->deleting)
    return NP_ECANCELED;
  if ((rv = parse(maddr, len, &prefix, &name, &nlen)) != 0)
    return rv;
  if (np_upgrade_count(t->up) >= t->cfg.max_connections)
    return NP_ELIMIT;
  if (t->gone) /* an unplugged host reaches nobody */
    return np_upgrade_dial_failed(t->up, NP_EUNREACH, maddr, prefix, ud, pc);
  has_expected = np_maddr_get_p2p(maddr, len, &expected) == 0;
  e = *slot(t->net, name, nlen);
  l = e != NULL ? e->t : NULL;
  if (l == NULL || l->deleting)
    return np_upgrade_dial_failed(t->up, NP_EUNREACH, maddr, prefix, ud, pc);
  if (np_upgrade_count(l->up) >= l->cfg.max_connections) /* as TCP: closed */
    return np_upgrade_dial_failed(t->up, NP_ECLOSED, maddr, prefix, ud, pc);
  if (!np_list_empty(&t->names)) {
    const tname *mine = np_list_entry(t->names.next, tname, link);
    laddr = mine->maddr;
    llen = mine->maddrlen;
  }
  if ((rv = np_bstream_pair_new(&a, &b, t->net->loop, t->cfg.pipe_bytes)) != 0)
    return rv;
  /* A vanished listener still takes the pair: the dialer waits for a
   * handshake that never comes, as for a host that stopped answering. */
  np_bstream_pair_set_gone(a, &t->gone);
  np_bstream_pair_set_gone(b, &l->gone);
  if ((rv = np_upgrade_start(t->up, a, 0, has_expected ? &expected : NULL,
                             laddr, llen, maddr, prefix, ud, pc)) != 0) {
    b->ops->close(b);
    return rv;
  }
  /* A failure here closes |b|: the dialer sees EOF, as from a full TCP
   * listener. */
  (*pc)->limited = t->cfg.limited;
  if (np_upgrade_start(l->up, b, 1, NULL, e->maddr, e->maddrlen, laddr, llen,
                       NULL, &lc) == 0)
    lc->limited = l->cfg.limited;
  return 0;
}

static size_t m_listen_count(const np_transport *pt) {
  const tmem *t = (const tmem *)pt;
  size_t n = 0;
  for (const np_list *l = t->names.next; l != &t->names; l = l->next)
    n++;
  return n;
}

static np_ssize m_listen_addr(const np_transport *pt, size_t i, uint8_t *out,
                              size_t cap) {
  const tmem *t = (const tmem *)pt;
  for (const np_list *l = t->names.next; l != &t->names; l = l->next) {
    const tname *e = np_list_entry(l, tname, link);
    if (i-- > 0)
      continue;
    if (e->maddrlen > cap)
      return NP_ELIMIT;
    memcpy(out, e->maddr, e->maddrlen);
    return (np_ssize)e->maddrlen;
  }
  return NP_ENOENT;
}

static size_t m_conn_count(const np_transport *pt) {
  return np_upgrade_count(((const tmem *)pt)->up);
}

static void m_del(np_transport *pt) {
  tmem *t = (tmem *)pt;
  if (t == NULL)
    return;
  t->deleting = 1;
  while (!np_list_empty(&t->names)) {
    tname *e = np_list_entry(t->names.next, tname, link);
    tname **pp = slot(t->net, e->name, e->nlen);
    *pp = e->next;
    t->net->count--;
    np_list_remove(&e->link);
    free(e);
  }
  np_upgrade_del(t->up);
  free(t);
}

/* dial_new_port is m_dial: there are no ports and no NAT in memory. */
static const np_transport_ops tmem_ops = {
    NP_TRANSPORT_MEM, m_can_dial,    m_dial,       m_listen,
    m_listen_count,   m_listen_addr, m_conn_count, m_del,
    m_dial};

int np_tmem_vanish(np_transport *pt) {
  if (pt == NULL || pt->ops != &tmem_ops)
    return NP_EINVAL;
  ((tmem *)pt)->gone = 1;
  return 0;
}

void np_tmem_config_default(np_tmem_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->max_connections = 512;
  cfg->pipe_bytes = 256u * 1024u;
  np_upgrade_config_default(&cfg->upgrade);
}

int np_tmem_new(np_transport **pt, np_tmem_net *net, const np_identity *id,
                const np_tmem_config *cfg, const np_conn_cbs *cbs, void *ud) {
  tmem *t;
  int rv;
  if (pt == NULL || net == NULL || id == NULL || cbs == NULL)
    return NP_EINVAL;
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return NP_ENOMEM;
  np_tmem_config_default(&t->cfg);
  if (cfg != NULL) {
#define TAKE(f) (t->cfg.f = cfg->f ? cfg->f : t->cfg.f)
    TAKE(max_connections);
    TAKE(pipe_bytes);
    t->cfg.limited = cfg->limited;
#undef TAKE
  }
  t->pub.ops = &tmem_ops;
  t->net = net;
  np_list_init(&t->names);
  rv = np_upgrade_new(&t->up, net->loop, id, NP_TRANSPORT_MEM,
                      cfg ? &cfg->upgrade : NULL, cbs, ud);
  if (rv != 0) {
    free(t);
    return rv;
  }
  *pt = &t->pub;
  return 0;
}
