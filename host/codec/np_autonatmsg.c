/* AutoNAT v1 and v2 messages over protobuf-c (see np_autonatmsg.h). */
#include "np_autonatmsg.h"

#include <stdlib.h>
#include <string.h>

#include "proto/autonat.pb-c.h"
#include "proto/autonatv2.pb-c.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_pb.h"

#define DIALBACK_MAX 64 /* DialBack is a fixed64, its response one enum */

void np_autonatmsg_limits_default(np_autonatmsg_limits *l) {
  l->max_msg = NP_AUTONATMSG_MSG_MAX;
  l->max_addrs = NP_AUTONATMSG_ADDRS_MAX;
  l->max_data = NP_AUTONATMSG_V2_DATA_MAX;
}

void np_autonatmsg_v2_limits_default(np_autonatmsg_limits *l) {
  l->max_msg = NP_AUTONATMSG_V2_MSG_MAX;
  l->max_addrs = NP_AUTONATMSG_V2_ADDRS_MAX;
  l->max_data = NP_AUTONATMSG_V2_DATA_MAX;
}

static size_t unpack_budget(const np_autonatmsg_limits *lim) {
  return 8 * lim->max_msg + 64 * 1024;
}

static void addrs_free(np_autonatmsg_blob *a, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    free(a[i].data);
  free(a);
}

static int blob_copy(np_autonatmsg_blob *b, const uint8_t *data, size_t len) {
  if (len == 0)
    return 0;
  if ((b->data = malloc(len)) == NULL)
    return NP_ENOMEM;
  memcpy(b->data, data, len);
  b->len = len;
  return 0;
}

/* Wire view of |n| caller blobs in a fresh array (*out NULL when n == 0). */
static int blobs_to_pb(ProtobufCBinaryData **out, const np_autonatmsg_blob *in,
                       size_t n, size_t max_msg) {
  size_t i;
  *out = NULL;
  if (n == 0)
    return 0;
  if (in == NULL)
    return NP_EINVAL;
  /* More addrs than a body could hold are refused before allocating. */
  if (n > max_msg / 2)
    return NP_ELIMIT;
  if ((*out = calloc(n, sizeof(**out))) == NULL)
    return NP_ENOMEM;
  for (i = 0; i < n; i++) {
    (*out)[i].data = in[i].data;
    (*out)[i].len = in[i].len;
  }
  return 0;
}

/* ---- v1 ------------------------------------------------------------------ */

void np_autonatmsg_init(np_autonatmsg *m) { memset(m, 0, sizeof(*m)); }

void np_autonatmsg_free(np_autonatmsg *m) {
  addrs_free(m->addrs, m->naddrs);
  free(m->status_text);
  free(m->addr.data);
  np_autonatmsg_init(m);
}

static int valid_status(unsigned s) {
  return s == NP_AUTONATMSG_OK || s == NP_AUTONATMSG_E_DIAL_ERROR ||
         s == NP_AUTONATMSG_E_DIAL_REFUSED ||
         s == NP_AUTONATMSG_E_BAD_REQUEST ||
         s == NP_AUTONATMSG_E_INTERNAL_ERROR;
}

static int dial_copy(np_autonatmsg *m, const Np__Autonat__Message__Dial *d,
                     const np_autonatmsg_limits *lim) {
  const Np__Autonat__Message__PeerInfo *p = d ? d->peer : NULL;
  size_t i, keep = 0;
  if (p == NULL || !p->has_id ||
      np_peerid_from_bytes(&m->peer, p->id.data, p->id.len) != 0)
    return NP_EPROTO;
  for (i = 0; i < p->n_addrs; i++)
    keep += np_maddr_validate(p->addrs[i].data, p->addrs[i].len) == 0;
  if (keep > lim->max_addrs)
    keep = lim->max_addrs;
  if (keep == 0)
    return 0;
  if ((m->addrs = calloc(keep, sizeof(*m->addrs))) == NULL)
    return NP_ENOMEM;
  for (i = 0; i < p->n_addrs && m->naddrs < keep; i++) {
    if (np_maddr_validate(p->addrs[i].data, p->addrs[i].len) != 0)
      continue;
    if (blob_copy(&m->addrs[m->naddrs], p->addrs[i].data, p->addrs[i].len))
      return NP_ENOMEM;
    m->naddrs++;
  }
  return 0;
}

static int response_copy(np_autonatmsg *m,
                         const Np__Autonat__Message__DialResponse *r,
                         const uint8_t *buf, size_t len) {
  const char *field;
  int addr_ok;
  if (r == NULL || !r->has_status || !valid_status((unsigned)r->status))
    return NP_EPROTO;
  m->status = (np_autonatmsg_status)r->status;
  addr_ok = r->has_addr && np_maddr_validate(r->addr.data, r->addr.len) == 0;
  /* go's client fails an OK it cannot take an address from. */
  if (m->status == NP_AUTONATMSG_OK && !addr_ok)
    return NP_EPROTO;
  if (addr_ok && blob_copy(&m->addr, r->addr.data, r->addr.len) != 0)
    return NP_ENOMEM;
  /* protobuf-c cuts a string at an embedded NUL; the text is only for
   * logs, so such a one is dropped rather than failing the answer. */
  if (r->statustext != NULL && r->statustext[0] != '\0' &&
      np_pb_check_strings(&np__autonat__message__descriptor, buf, len,
                          &field) == 0) {
    size_t n = strlen(r->statustext);
    if (n > NP_AUTONATMSG_TEXT_MAX)
      n = NP_AUTONATMSG_TEXT_MAX;
    if ((m->status_text = strndup(r->statustext, n)) == NULL)
      return NP_ENOMEM;
  }
  return 0;
}

int np_autonatmsg_decode(np_autonatmsg *m, const uint8_t *buf, size_t len,
                         const np_autonatmsg_limits *lim) {
  np_autonatmsg_limits def;
  Np__Autonat__Message *pm;
  int rv = 0;
  np_autonatmsg_init(m);
  if (lim == NULL) {
    np_autonatmsg_limits_default(&def);
    lim = &def;
  }
  if (len > lim->max_msg)
    return NP_ELIMIT;
  pm = (Np__Autonat__Message *)np_pb_unpack(&np__autonat__message__descriptor,
                                            buf, len, unpack_budget(lim), &rv);
  if (pm == NULL)
    return rv;
  /* protobuf-c stores any enum number it reads; absent is DIAL (0). */
  switch ((unsigned)pm->type) {
  case NP_AUTONATMSG_DIAL:
    m->type = NP_AUTONATMSG_DIAL;
    rv = dial_copy(m, pm->dial, lim);
    break;
  case NP_AUTONATMSG_DIAL_RESPONSE:
    m->type = NP_AUTONATMSG_DIAL_RESPONSE;
    rv = response_copy(m, pm->dialresponse, buf, len);
    break;
  default:
    rv = NP_EPROTO;
  }
  np_pb_free(&pm->base);
  if (rv != 0)
    np_autonatmsg_free(m);
  return rv;
}

np_ssize np_autonatmsg_decode_lp(np_autonatmsg *m, const uint8_t *in,
                                 size_t len, const np_autonatmsg_limits *lim) {
  np_autonatmsg_limits def;
  const uint8_t *body;
  size_t blen;
  np_ssize n;
  int rv;
  np_autonatmsg_init(m);
  if (lim == NULL) {
    np_autonatmsg_limits_default(&def);
    lim = &def;
  }
  if ((n = np_lp_parse(in, len, lim->max_msg, &body, &blen)) < 0)
    return n;
  if ((rv = np_autonatmsg_decode(m, body, blen, lim)) != 0)
    return rv;
  return n;
}

static np_ssize encode(const np_autonatmsg *m, int lp, uint8_t *out,
                       size_t cap) {
  Np__Autonat__Message pm = NP__AUTONAT__MESSAGE__INIT;
  Np__Autonat__Message__Dial dial = NP__AUTONAT__MESSAGE__DIAL__INIT;
  Np__Autonat__Message__PeerInfo peer = NP__AUTONAT__MESSAGE__PEER_INFO__INIT;
  Np__Autonat__Message__DialResponse resp =
      NP__AUTONAT__MESSAGE__DIAL_RESPONSE__INIT;
  ProtobufCBinaryData *addrs = NULL;
  np_ssize rv;
  pm.has_type = 1;
  pm.type = (Np__Autonat__Message__MessageType)m->type;
  if (m->type == NP_AUTONATMSG_DIAL) {
    if (m->peer.len == 0 || m->peer.len > NP_PEERID_MAX)
      return NP_EINVAL;
    if ((rv = blobs_to_pb(&addrs, m->addrs, m->naddrs,
                          NP_AUTONATMSG_MSG_MAX)) != 0)
      return rv;
    peer.has_id = 1;
    peer.id.data = (uint8_t *)m->peer.bytes;
    peer.id.len = m->peer.len;
    peer.n_addrs = m->naddrs;
    peer.addrs = addrs;
    dial.peer = &peer;
    pm.dial = &dial;
  } else if (m->type == NP_AUTONATMSG_DIAL_RESPONSE) {
    if (!valid_status((unsigned)m->status))
      return NP_EINVAL;
    resp.has_status = 1;
    resp.status = (Np__Autonat__Message__ResponseStatus)m->status;
    if (m->status_text != NULL && m->status_text[0] != '\0')
      resp.statustext = m->status_text;
    if (m->addr.len > 0) {
      resp.has_addr = 1;
      resp.addr.data = m->addr.data;
      resp.addr.len = m->addr.len;
    }
    pm.dialresponse = &resp;
  } else {
    return NP_EINVAL;
  }
  rv = np_pb_pack(&pm.base, NP_AUTONATMSG_MSG_MAX, lp, out, cap);
  free(addrs);
  return rv;
}

np_ssize np_autonatmsg_encode(const np_autonatmsg *m, uint8_t *out,
                              size_t cap) {
  return encode(m, 0, out, cap);
}

np_ssize np_autonatmsg_encode_lp(const np_autonatmsg *m, uint8_t *out,
                                 size_t cap) {
  return encode(m, 1, out, cap);
}

/* ---- v2 ------------------------------------------------------------------ */

void np_autonatmsg_v2_init(np_autonatmsg_v2 *m) { memset(m, 0, sizeof(*m)); }

void np_autonatmsg_v2_free(np_autonatmsg_v2 *m) {
  addrs_free(m->addrs, m->naddrs);
  free(m->data.data);
  np_autonatmsg_v2_init(m);
}

static int valid_v2_status(unsigned s) {
  return s == NP_AUTONATMSG_V2_E_INTERNAL_ERROR ||
         s == NP_AUTONATMSG_V2_E_REQUEST_REJECTED ||
         s == NP_AUTONATMSG_V2_E_DIAL_REFUSED || s == NP_AUTONATMSG_V2_OK;
}

static int valid_v2_dial_status(unsigned s) {
  return s == NP_AUTONATMSG_V2_DIAL_UNUSED ||
         s == NP_AUTONATMSG_V2_DIAL_E_DIAL_ERROR ||
         s == NP_AUTONATMSG_V2_DIAL_E_DIAL_BACK_ERROR ||
         s == NP_AUTONATMSG_V2_DIAL_OK;
}

static int request_copy(np_autonatmsg_v2 *m,
                        const Np__Autonatv2__DialRequest *r,
                        const np_autonatmsg_limits *lim) {
  size_t i, keep = r->n_addrs < lim->max_addrs ? r->n_addrs : lim->max_addrs;
  m->nonce = r->nonce;
  if (keep == 0)
    return 0;
  if ((m->addrs = calloc(keep, sizeof(*m->addrs))) == NULL)
    return NP_ENOMEM;
  for (i = 0; i < keep; i++) {
    m->naddrs++; /* counted first: an empty slot marks an invalid addr */
    if (np_maddr_validate(r->addrs[i].data, r->addrs[i].len) == 0 &&
        blob_copy(&m->addrs[i], r->addrs[i].data, r->addrs[i].len) != 0)
      return NP_ENOMEM;
  }
  return 0;
}

static int v2_copy(np_autonatmsg_v2 *m, const Np__Autonatv2__Message *pm,
                   const np_autonatmsg_limits *lim) {
  switch (pm->msg_case) {
  case NP__AUTONATV2__MESSAGE__MSG_DIAL_REQUEST:
    m->kind = NP_AUTONATMSG_V2_DIAL_REQUEST;
    return request_copy(m, pm->dialrequest, lim);
  case NP__AUTONATV2__MESSAGE__MSG_DIAL_RESPONSE:
    if (!valid_v2_status((unsigned)pm->dialresponse->status) ||
        !valid_v2_dial_status((unsigned)pm->dialresponse->dialstatus))
      return NP_EPROTO;
    m->kind = NP_AUTONATMSG_V2_DIAL_RESPONSE;
    m->status = (np_autonatmsg_v2_status)pm->dialresponse->status;
    m->addr_idx = pm->dialresponse->addridx;
    m->dial_status =
        (np_autonatmsg_v2_dial_status)pm->dialresponse->dialstatus;
    return 0;
  case NP__AUTONATV2__MESSAGE__MSG_DIAL_DATA_REQUEST:
    /* A server asking for more than we would send is refused before the
     * caller starts sending. */
    if (pm->dialdatarequest->numbytes > lim->max_data)
      return NP_ELIMIT;
    m->kind = NP_AUTONATMSG_V2_DIAL_DATA_REQUEST;
    m->addr_idx = pm->dialdatarequest->addridx;
    m->num_bytes = pm->dialdatarequest->numbytes;
    return 0;
  case NP__AUTONATV2__MESSAGE__MSG_DIAL_DATA_RESPONSE:
    if (pm->dialdataresponse->data.len > NP_AUTONATMSG_V2_CHUNK_MAX)
      return NP_ELIMIT;
    m->kind = NP_AUTONATMSG_V2_DIAL_DATA_RESPONSE;
    return blob_copy(&m->data, pm->dialdataresponse->data.data,
                     pm->dialdataresponse->data.len);
  default:
    return NP_EPROTO;
  }
}

int np_autonatmsg_v2_decode(np_autonatmsg_v2 *m, const uint8_t *buf,
                            size_t len, const np_autonatmsg_limits *lim) {
  np_autonatmsg_limits def;
  Np__Autonatv2__Message *pm;
  int rv = 0;
  np_autonatmsg_v2_init(m);
  if (lim == NULL) {
    np_autonatmsg_v2_limits_default(&def);
    lim = &def;
  }
  if (len > lim->max_msg)
    return NP_ELIMIT;
  pm = (Np__Autonatv2__Message *)np_pb_unpack(
      &np__autonatv2__message__descriptor, buf, len, unpack_budget(lim), &rv);
  if (pm == NULL)
    return rv;
  rv = v2_copy(m, pm, lim);
  np_pb_free(&pm->base);
  if (rv != 0)
    np_autonatmsg_v2_free(m);
  return rv;
}

np_ssize np_autonatmsg_v2_decode_lp(np_autonatmsg_v2 *m, const uint8_t *in,
                                    size_t len,
                                    const np_autonatmsg_limits *lim) {
  np_autonatmsg_limits def;
  const uint8_t *body;
  size_t blen;
  np_ssize n;
  int rv;
  np_autonatmsg_v2_init(m);
  if (lim == NULL) {
    np_autonatmsg_v2_limits_default(&def);
    lim = &def;
  }
  if ((n = np_lp_parse(in, len, lim->max_msg, &body, &blen)) < 0)
    return n;
  if ((rv = np_autonatmsg_v2_decode(m, body, blen, lim)) != 0)
    return rv;
  return n;
}

static np_ssize v2_encode(const np_autonatmsg_v2 *m, int lp, uint8_t *out,
                          size_t cap) {
  Np__Autonatv2__Message pm = NP__AUTONATV2__MESSAGE__INIT;
  Np__Autonatv2__DialRequest req = NP__AUTONATV2__DIAL_REQUEST__INIT;
  Np__Autonatv2__DialResponse resp = NP__AUTONATV2__DIAL_RESPONSE__INIT;
  Np__Autonatv2__DialDataRequest dreq = NP__AUTONATV2__DIAL_DATA_REQUEST__INIT;
  Np__Autonatv2__DialDataResponse dresp =
      NP__AUTONATV2__DIAL_DATA_RESPONSE__INIT;
  ProtobufCBinaryData *addrs = NULL;
  np_ssize rv;
  switch (m->kind) {
  case NP_AUTONATMSG_V2_DIAL_REQUEST:
    if ((rv = blobs_to_pb(&addrs, m->addrs, m->naddrs,
                          NP_AUTONATMSG_V2_MSG_MAX)) != 0)
      return rv;
    req.n_addrs = m->naddrs;
    req.addrs = addrs;
    req.nonce = m->nonce;
    pm.msg_case = NP__AUTONATV2__MESSAGE__MSG_DIAL_REQUEST;
    pm.dialrequest = &req;
    break;
  case NP_AUTONATMSG_V2_DIAL_RESPONSE:
    if (!valid_v2_status((unsigned)m->status) ||
        !valid_v2_dial_status((unsigned)m->dial_status))
      return NP_EINVAL;
    resp.status = (Np__Autonatv2__DialResponse__ResponseStatus)m->status;
    resp.addridx = m->addr_idx;
    resp.dialstatus = (Np__Autonatv2__DialStatus)m->dial_status;
    pm.msg_case = NP__AUTONATV2__MESSAGE__MSG_DIAL_RESPONSE;
    pm.dialresponse = &resp;
    break;
  case NP_AUTONATMSG_V2_DIAL_DATA_REQUEST:
    dreq.addridx = m->addr_idx;
    dreq.numbytes = m->num_bytes;
    pm.msg_case = NP__AUTONATV2__MESSAGE__MSG_DIAL_DATA_REQUEST;
    pm.dialdatarequest = &dreq;
    break;
  case NP_AUTONATMSG_V2_DIAL_DATA_RESPONSE:
    if (m->data.data == NULL && m->data.len > 0)
      return NP_EINVAL;
    if (m->data.len > NP_AUTONATMSG_V2_CHUNK_MAX)
      return NP_ELIMIT;
    dresp.data.data = m->data.data;
    dresp.data.len = m->data.len;
    pm.msg_case = NP__AUTONATV2__MESSAGE__MSG_DIAL_DATA_RESPONSE;
    pm.dialdataresponse = &dresp;
    break;
  default:
    return NP_EINVAL;
  }
  rv = np_pb_pack(&pm.base, NP_AUTONATMSG_V2_MSG_MAX, lp, out, cap);
  free(addrs);
  return rv;
}

np_ssize np_autonatmsg_v2_encode(const np_autonatmsg_v2 *m, uint8_t *out,
                                 size_t cap) {
  return v2_encode(m, 0, out, cap);
}

np_ssize np_autonatmsg_v2_encode_lp(const np_autonatmsg_v2 *m, uint8_t *out,
                                    size_t cap) {
  return v2_encode(m, 1, out, cap);
}

np_ssize np_autonatmsg_v2_dialback_encode_lp(uint64_t nonce, uint8_t *out,
                                             size_t cap) {
  Np__Autonatv2__DialBack db = NP__AUTONATV2__DIAL_BACK__INIT;
  db.nonce = nonce;
  return np_pb_pack(&db.base, DIALBACK_MAX, 1, out, cap);
}

int np_autonatmsg_v2_dialback_decode(uint64_t *nonce, const uint8_t *buf,
                                     size_t len) {
  Np__Autonatv2__DialBack *db;
  int rv = 0;
  *nonce = 0;
  if (len > DIALBACK_MAX)
    return NP_ELIMIT;
  db = (Np__Autonatv2__DialBack *)np_pb_unpack(
      &np__autonatv2__dial_back__descriptor, buf, len, 4096, &rv);
  if (db == NULL)
    return rv;
  *nonce = db->nonce;
  np_pb_free(&db->base);
  return 0;
}

np_ssize np_autonatmsg_v2_dialback_response_encode_lp(uint8_t *out,
                                                      size_t cap) {
  Np__Autonatv2__DialBackResponse r = NP__AUTONATV2__DIAL_BACK_RESPONSE__INIT;
  r.status = NP__AUTONATV2__DIAL_BACK_RESPONSE__DIAL_BACK_STATUS__OK;
  return np_pb_pack(&r.base, DIALBACK_MAX, 1, out, cap);
}

int np_autonatmsg_v2_dialback_response_decode(const uint8_t *buf,
                                              size_t len) {
  Np__Autonatv2__DialBackResponse *r;
  int rv = 0;
  if (len > DIALBACK_MAX)
    return NP_ELIMIT;
  r = (Np__Autonatv2__DialBackResponse *)np_pb_unpack(
      &np__autonatv2__dial_back_response__descriptor, buf, len, 4096, &rv);
  if (r == NULL)
    return rv;
  if (r->status != NP__AUTONATV2__DIAL_BACK_RESPONSE__DIAL_BACK_STATUS__OK)
    rv = NP_EPROTO;
  np_pb_free(&r->base);
  return rv;
}
