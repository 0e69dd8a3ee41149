/* Kademlia DHT messages over protobuf-c (see np_kadmsg.h). */
#include "np_kadmsg.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dht.pb-c.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_pb.h"

void np_kadmsg_limits_default(np_kadmsg_limits *l) {
  l->max_msg = NP_KADMSG_MSG_MAX;
  l->max_peers = NP_KADMSG_PEERS_MAX;
  l->max_addrs = NP_KADMSG_ADDRS_MAX;
  l->max_key = NP_KADMSG_KEY_MAX;
}

void np_kadmsg_init(np_kadmsg *m) { memset(m, 0, sizeof(*m)); }

static void peers_free(np_kadmsg_peer *p, size_t n) {
  size_t i, j;
  for (i = 0; i < n; i++) {
    for (j = 0; j < p[i].naddrs; j++)
      free(p[i].addrs[j].data);
    free(p[i].addrs);
  }
  free(p);
}

void np_kadmsg_free(np_kadmsg *m) {
  free(m->key.data);
  free(m->record.key.data);
  free(m->record.value.data);
  free(m->record.time_received);
  peers_free(m->closer, m->ncloser);
  peers_free(m->providers, m->nproviders);
  np_kadmsg_init(m);
}

static int blob_copy(np_kadmsg_blob *b, const ProtobufCBinaryData *in) {
  if (in->len == 0)
    return 0;
  if ((b->data = malloc(in->len)) == NULL)
    return NP_ENOMEM;
  memcpy(b->data, in->data, in->len);
  b->len = in->len;
  return 0;
}

static int peers_copy(np_kadmsg_peer **out, size_t *nout,
                      Np__Dht__Message__Peer **in, size_t nin,
                      const np_kadmsg_limits *lim) {
  np_kadmsg_peer *a;
  size_t i, j, want = nin < lim->max_peers ? nin : lim->max_peers;
  if (want == 0)
    return 0;
  if ((a = calloc(want, sizeof(*a))) == NULL)
    return NP_ENOMEM;
  *out = a;
  for (i = 0; i < nin && *nout < want; i++) {
    np_kadmsg_peer *p = &a[*nout];
    size_t na = 0;
    if (np_peerid_from_bytes(&p->id, in[i]->id.data, in[i]->id.len) != 0)
      continue; /* not a peer we could ever dial or verify */
    p->conn = (unsigned)in[i]->connection <= NP_KADMSG_CANNOT_CONNECT
                  ? (np_kadmsg_conn)in[i]->connection
                  : NP_KADMSG_NOT_CONNECTED;
    for (j = 0; j < in[i]->n_addrs; j++)
      na += np_maddr_validate(in[i]->addrs[j].data, in[i]->addrs[j].len) == 0;
    if (na > lim->max_addrs)
      na = lim->max_addrs;
    (*nout)++; /* counted before filling, so np_kadmsg_free sees it */
    if (na == 0)
      continue;
    if ((p->addrs = calloc(na, sizeof(*p->addrs))) == NULL)
      return NP_ENOMEM;
    for (j = 0; j < in[i]->n_addrs && p->naddrs < na; j++) {
      if (np_maddr_validate(in[i]->addrs[j].data, in[i]->addrs[j].len) != 0)
        continue;
      if (blob_copy(&p->addrs[p->naddrs], &in[i]->addrs[j]) != 0)
        return NP_ENOMEM;
      p->naddrs++;
    }
  }
  return 0;
}

int np_kadmsg_decode(np_kadmsg *m, const uint8_t *buf, size_t len,
                     const np_kadmsg_limits *lim) {
  np_kadmsg_limits def;
  Np__Dht__Message *pm;
  const char *field;
  int rv;
  np_kadmsg_init(m);
  if (lim == NULL) {
    np_kadmsg_limits_default(&def);
    lim = &def;
  }
  if (len > lim->max_msg)
    return NP_ELIMIT;
  /* A budget bounds protobuf-c's allocations by the message size. */
  if ((pm = (Np__Dht__Message *)np_pb_unpack(&np__dht__message__descriptor,
                                             buf, len,
                                             8 * lim->max_msg + 64 * 1024,
                                             &rv)) == NULL)
    return rv;
  rv = 0;
  if ((unsigned)pm->type > NP_KADMSG_PING)
    rv = NP_EPROTO;
  else if (pm->key.len > lim->max_key ||
           (pm->record && pm->record->key.len > lim->max_key))
    rv = NP_ELIMIT;
  if (rv == 0) {
    m->type = (np_kadmsg_type)pm->type;
    m->cluster_level = pm->clusterlevelraw;
    rv = blob_copy(&m->key, &pm->key);
  }
  if (rv == 0 && pm->record != NULL) {
    const char *t = pm->record->timereceived;
    m->has_record = 1;
    rv = blob_copy(&m->record.key, &pm->record->key);
    if (rv == 0)
      rv = blob_copy(&m->record.value, &pm->record->value);
    /* protobuf-c cuts a string at an embedded NUL; such a time is a lie,
     * and it is informational only, so it is dropped, not fatal. */
    if (rv == 0 && t != NULL && t[0] != '\0' &&
        strlen(t) <= NP_KADMSG_TIME_MAX &&
        np_pb_check_strings(&np__dht__message__descriptor, buf, len,
                            &field) == 0 &&
        (m->record.time_received = strdup(t)) == NULL)
      rv = NP_ENOMEM;
  }
  if (rv == 0)
    rv = peers_copy(&m->closer, &m->ncloser, pm->closerpeers,
                    pm->n_closerpeers, lim);
  if (rv == 0)
    rv = peers_copy(&m->providers, &m->nproviders, pm->providerpeers,
                    pm->n_providerpeers, lim);
  np_pb_free(&pm->base);
  if (rv != 0)
    np_kadmsg_free(m);
  return rv;
}

static void bin_set(ProtobufCBinaryData *d, const np_kadmsg_blob *b) {
  d->data = b->data;
  d->len = b->len;
}

/* Point the wire structs |pb| (listed in |pp|) at |in|'s fields; |addrs|
 * has room for all their addrs, taken in order. Nothing is copied. */
static int peers_to_pb(const np_kadmsg_peer *in, size_t n,
                       Np__Dht__Message__Peer *pb, Np__Dht__Message__Peer **pp,
                       ProtobufCBinaryData *addrs) {
  size_t i, j, off = 0;
  for (i = 0; i < n; i++) {
    if (in[i].id.len == 0 || in[i].id.len > NP_PEERID_MAX ||
        (unsigned)in[i].conn > NP_KADMSG_CANNOT_CONNECT)
      return NP_EINVAL;
    np__dht__message__peer__init(&pb[i]);
    pb[i].id.data = (uint8_t *)in[i].id.bytes;
    pb[i].id.len = in[i].id.len;
    pb[i].connection = (Np__Dht__Message__ConnectionType)in[i].conn;
    pb[i].n_addrs = in[i].naddrs;
    pb[i].addrs = in[i].naddrs ? &addrs[off] : NULL; /* addrs may be NULL */
    for (j = 0; j < in[i].naddrs; j++)
      bin_set(&addrs[off++], &in[i].addrs[j]);
    pp[i] = &pb[i];
  }
  return 0;
}

static size_t addr_count(const np_kadmsg_peer *p, size_t n) {
  size_t i, t = 0;
  for (i = 0; i < n; i++)
    t += p[i].naddrs;
  return t;
}

np_ssize np_kadmsg_encode(const np_kadmsg *m, uint8_t *out, size_t cap) {
  Np__Dht__Message pm = NP__DHT__MESSAGE__INIT;
  Np__Dht__Record rec = NP__DHT__RECORD__INIT;
  size_t npeers = m->ncloser + m->nproviders;
  size_t na = addr_count(m->closer, m->ncloser) +
              addr_count(m->providers, m->nproviders);
  Np__Dht__Message__Peer *pb = NULL, **pp = NULL;
  ProtobufCBinaryData *addrs = NULL;
  np_ssize rv = 0;
  size_t need;
  if ((unsigned)m->type > NP_KADMSG_PING)
    return NP_EINVAL;
  pm.type = (Np__Dht__Message__MessageType)m->type;
  pm.clusterlevelraw = m->cluster_level;
  bin_set(&pm.key, &m->key);
  if (m->has_record) {
    bin_set(&rec.key, &m->record.key);
    bin_set(&rec.value, &m->record.value);
    if (m->record.time_received != NULL)
      rec.timereceived = m->record.time_received;
    pm.record = &rec;
  }
  if (npeers > 0 && ((pb = calloc(npeers, sizeof(*pb))) == NULL ||
                     (pp = calloc(npeers, sizeof(*pp))) == NULL)) {
    rv = NP_ENOMEM;
    goto out;
  }
  if (na > 0 && (addrs = calloc(na, sizeof(*addrs))) == NULL) {
    rv = NP_ENOMEM;
    goto out;
  }
  rv = peers_to_pb(m->closer, m->ncloser, pb, pp, addrs);
  /* No pointer arithmetic on the NULL arrays of an empty list (UB). */
  if (rv == 0 && m->nproviders > 0) {
    size_t skip = addr_count(m->closer, m->ncloser);
    rv = peers_to_pb(m->providers, m->nproviders, pb + m->ncloser,
                     pp + m->ncloser, addrs ? addrs + skip : NULL);
  }
  if (rv != 0)
    goto out;
  pm.n_closerpeers = m->ncloser;
  pm.closerpeers = pp;
  pm.n_providerpeers = m->nproviders;
  pm.providerpeers = pp ? pp + m->ncloser : NULL;
  need = np__dht__message__get_packed_size(&pm);
  if (need > cap || need > (size_t)SSIZE_MAX) {
    rv = NP_ELIMIT;
    goto out;
  }
  rv = (np_ssize)np__dht__message__pack(&pm, out);
out:
  free(addrs);
  free(pp);
  free(pb);
  return rv;
}

np_ssize np_kadmsg_encode_lp(const np_kadmsg *m, uint8_t *out, size_t cap) {
  uint8_t tmp[NP_VARINT_MAX];
  np_ssize n, p;
  size_t room = cap > NP_VARINT_MAX ? cap - NP_VARINT_MAX : 0;
  /* Encode after the longest possible prefix, then slide it into place. */
  if (cap <= NP_VARINT_MAX)
    return NP_ELIMIT;
  n = np_kadmsg_encode(m, out + NP_VARINT_MAX, room);
  if (n < 0)
    return n;
  p = np_lp_put_prefix((size_t)n, tmp, sizeof(tmp));
  if (p < 0)
    return p;
  memmove(out + p, out + NP_VARINT_MAX, (size_t)n);
  memcpy(out, tmp, (size_t)p);
  return p + n;
}
