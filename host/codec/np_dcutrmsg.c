/* DCUtR HolePunch messages over protobuf-c (see np_dcutrmsg.h). */
#include "np_dcutrmsg.h"

#include <stdlib.h>
#include <string.h>

#include "proto/holepunch.pb-c.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_pb.h"

void np_dcutrmsg_limits_default(np_dcutrmsg_limits *l) {
  l->max_msg = NP_DCUTRMSG_MSG_MAX;
  l->max_addrs = NP_DCUTRMSG_ADDRS_MAX;
}

void np_dcutrmsg_init(np_dcutrmsg *m) { memset(m, 0, sizeof(*m)); }

void np_dcutrmsg_free(np_dcutrmsg *m) {
  size_t i;
  for (i = 0; i < m->naddrs; i++)
    free(m->addrs[i].data);
  free(m->addrs);
  np_dcutrmsg_init(m);
}

static int valid_type(unsigned t) {
  return t == NP_DCUTRMSG_CONNECT || t == NP_DCUTRMSG_SYNC;
}

int np_dcutrmsg_decode(np_dcutrmsg *m, const uint8_t *buf, size_t len,
                       const np_dcutrmsg_limits *lim) {
  np_dcutrmsg_limits def;
  Np__Holepunch__HolePunch *pm;
  size_t i, keep = 0;
  int rv = 0;
  np_dcutrmsg_init(m);
  if (lim == NULL) {
    np_dcutrmsg_limits_default(&def);
    lim = &def;
  }
  if (len > lim->max_msg)
    return NP_ELIMIT;
  pm = (Np__Holepunch__HolePunch *)np_pb_unpack(
      &np__holepunch__hole_punch__descriptor, buf, len,
      8 * lim->max_msg + 64 * 1024, &rv);
  if (pm == NULL)
    return rv;
  /* protobuf-c stores any enum number it reads. */
  if (!valid_type((unsigned)pm->type)) {
    rv = NP_EPROTO;
    goto out;
  }
  m->type = (np_dcutrmsg_type)pm->type;
  for (i = 0; i < pm->n_obsaddrs; i++)
    keep += np_maddr_validate(pm->obsaddrs[i].data, pm->obsaddrs[i].len) == 0;
  if (keep > lim->max_addrs)
    keep = lim->max_addrs;
  if (keep > 0 && (m->addrs = calloc(keep, sizeof(*m->addrs))) == NULL) {
    rv = NP_ENOMEM;
    goto out;
  }
  for (i = 0; i < pm->n_obsaddrs && m->naddrs < keep; i++) {
    const ProtobufCBinaryData *a = &pm->obsaddrs[i];
    np_dcutrmsg_blob *b = &m->addrs[m->naddrs];
    if (np_maddr_validate(a->data, a->len) != 0)
      continue;
    if ((b->data = malloc(a->len)) == NULL) {
      rv = NP_ENOMEM;
      goto out;
    }
    memcpy(b->data, a->data, a->len);
    b->len = a->len;
    m->naddrs++;
  }
out:
  np_pb_free(&pm->base);
  if (rv != 0)
    np_dcutrmsg_free(m);
  return rv;
}

np_ssize np_dcutrmsg_decode_lp(np_dcutrmsg *m, const uint8_t *in, size_t len,
                               const np_dcutrmsg_limits *lim) {
  np_dcutrmsg_limits def;
  const uint8_t *body;
  size_t blen;
  np_ssize n;
  int rv;
  np_dcutrmsg_init(m);
  if (lim == NULL) {
    np_dcutrmsg_limits_default(&def);
    lim = &def;
  }
  if ((n = np_lp_parse(in, len, lim->max_msg, &body, &blen)) < 0)
    return n;
  if ((rv = np_dcutrmsg_decode(m, body, blen, lim)) != 0)
    return rv;
  return n;
}

static np_ssize encode(const np_dcutrmsg *m, int lp, uint8_t *out,
                       size_t cap) {
  Np__Holepunch__HolePunch pm = NP__HOLEPUNCH__HOLE_PUNCH__INIT;
  ProtobufCBinaryData *addrs = NULL;
  np_ssize rv;
  size_t i;
  if (!valid_type((unsigned)m->type) || (m->addrs == NULL && m->naddrs > 0))
    return NP_EINVAL;
  /* Bound the array before allocating it: more addresses than the body
   * could hold are refused anyway. */
  if (m->naddrs > NP_DCUTRMSG_MSG_MAX / 2)
    return NP_ELIMIT;
  if (m->naddrs > 0 && (addrs = calloc(m->naddrs, sizeof(*addrs))) == NULL)
    return NP_ENOMEM;
  for (i = 0; i < m->naddrs; i++) {
    addrs[i].data = m->addrs[i].data;
    addrs[i].len = m->addrs[i].len;
  }
  pm.type = (Np__Holepunch__HolePunch__Type)m->type;
  pm.n_obsaddrs = m->naddrs;
  pm.obsaddrs = addrs;
  rv = np_pb_pack(&pm.base, NP_DCUTRMSG_MSG_MAX, lp, out, cap);
  free(addrs);
  return rv;
}

np_ssize np_dcutrmsg_encode(const np_dcutrmsg *m, uint8_t *out, size_t cap) {
  return encode(m, 0, out, cap);
}

np_ssize np_dcutrmsg_encode_lp(const np_dcutrmsg *m, uint8_t *out,
                               size_t cap) {
  return encode(m, 1, out, cap);
}
