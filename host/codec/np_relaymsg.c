/* Circuit Relay v2 messages and vouchers over protobuf-c (see
 * np_relaymsg.h). */
#include "np_relaymsg.h"

#include <stdlib.h>
#include <string.h>

#include "proto/circuit.pb-c.h"
#include "np_identify.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_pb.h"

/* A voucher payload is two peer IDs and a varint: well under this. */
#define VOUCHER_PAYLOAD_MAX 256

void np_relaymsg_limits_default(np_relaymsg_limits *l) {
  l->max_msg = NP_RELAYMSG_MSG_MAX;
  l->max_addrs = NP_RELAYMSG_ADDRS_MAX;
  l->max_voucher = NP_RELAYMSG_VOUCHER_MAX;
}

void np_relaymsg_init(np_relaymsg *m) { memset(m, 0, sizeof(*m)); }

static void addrs_free(np_relaymsg_blob *a, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    free(a[i].data);
  free(a);
}

void np_relaymsg_free(np_relaymsg *m) {
  addrs_free(m->peer.addrs, m->peer.naddrs);
  addrs_free(m->reservation.addrs, m->reservation.naddrs);
  free(m->reservation.voucher.data);
  np_relaymsg_init(m);
}

static int valid_status(unsigned s) {
  switch (s) {
  case NP_RELAYMSG_UNUSED:
  case NP_RELAYMSG_OK:
  case NP_RELAYMSG_RESERVATION_REFUSED:
  case NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED:
  case NP_RELAYMSG_PERMISSION_DENIED:
  case NP_RELAYMSG_CONNECTION_FAILED:
  case NP_RELAYMSG_NO_RESERVATION:
  case NP_RELAYMSG_MALFORMED_MESSAGE:
  case NP_RELAYMSG_UNEXPECTED_MESSAGE:
    return 1;
  default:
    return 0;
  }
}

static int valid_type(np_relaymsg_kind kind, unsigned t) {
  return kind == NP_RELAYMSG_HOP ? t <= NP_RELAYMSG_HOP_STATUS
                                 : t <= NP_RELAYMSG_STOP_STATUS;
}

/* Keep the first |max| of |n| addrs that np_maddr_validate accepts. */
static int addrs_copy(np_relaymsg_blob **out, size_t *nout,
                      const ProtobufCBinaryData *in, size_t n, size_t max) {
  size_t i, keep = 0;
  for (i = 0; i < n; i++)
    keep += np_maddr_validate(in[i].data, in[i].len) == 0;
  if (keep > max)
    keep = max;
  if (keep == 0)
    return 0;
  if ((*out = calloc(keep, sizeof(**out))) == NULL)
    return NP_ENOMEM;
  for (i = 0; i < n && *nout < keep; i++) {
    np_relaymsg_blob *b = &(*out)[*nout];
    if (np_maddr_validate(in[i].data, in[i].len) != 0)
      continue;
    if ((b->data = malloc(in[i].len)) == NULL)
      return NP_ENOMEM;
    memcpy(b->data, in[i].data, in[i].len);
    b->len = in[i].len;
    (*nout)++;
  }
  return 0;
}

static int peer_copy(np_relaymsg *m, const Np__Circuit__Peer *p,
                     const np_relaymsg_limits *lim) {
  if (p == NULL)
    return 0;
  /* The spec makes the id required; go answers MALFORMED_MESSAGE to a bad
   * one. */
  if (!p->has_id || np_peerid_from_bytes(&m->peer.id, p->id.data, p->id.len))
    return NP_EPROTO;
  m->has_peer = 1;
  return addrs_copy(&m->peer.addrs, &m->peer.naddrs, p->addrs, p->n_addrs,
                    lim->max_addrs);
}

static int reservation_copy(np_relaymsg *m, const Np__Circuit__Reservation *r,
                            const np_relaymsg_limits *lim) {
  np_relaymsg_reservation *out = &m->reservation;
  int rv;
  if (r == NULL)
    return 0;
  if (r->has_voucher && r->voucher.len > lim->max_voucher)
    return NP_ELIMIT;
  m->has_reservation = 1;
  out->expire = r->has_expire ? r->expire : 0;
  if ((rv = addrs_copy(&out->addrs, &out->naddrs, r->addrs, r->n_addrs,
                       lim->max_addrs)) != 0)
    return rv;
  if (r->has_voucher && r->voucher.len > 0) {
    if ((out->voucher.data = malloc(r->voucher.len)) == NULL)
      return NP_ENOMEM;
    memcpy(out->voucher.data, r->voucher.data, r->voucher.len);
    out->voucher.len = r->voucher.len;
  }
  return 0;
}

static void limit_copy(np_relaymsg *m, const Np__Circuit__Limit *l) {
  if (l == NULL)
    return;
  m->has_limit = 1;
  m->limit.duration = l->has_duration ? l->duration : 0;
  m->limit.data = l->has_data ? l->data : 0;
}

/* The parts hop and stop share, taken from either wire struct. */
typedef struct parts {
  unsigned type;
  const Np__Circuit__Peer *peer;
  const Np__Circuit__Reservation *reservation;
  const Np__Circuit__Limit *limit;
  int has_status;
  unsigned status;
} parts;

static int parts_copy(np_relaymsg *m, const parts *p,
                      const np_relaymsg_limits *lim) {
  int rv;
  /* protobuf-c stores any enum number it reads. A missing type reads as
   * 0, as go's GetType() does: one go revision of circuit.proto (plain
   * proto3) left type 0 out. */
  if (!valid_type(m->kind, p->type) ||
      (p->has_status && !valid_status(p->status)))
    return NP_EPROTO;
  m->type = p->type;
  if (p->has_status) {
    m->has_status = 1;
    m->status = (np_relaymsg_status)p->status;
  }
  limit_copy(m, p->limit);
  if ((rv = peer_copy(m, p->peer, lim)) != 0)
    return rv;
  return reservation_copy(m, p->reservation, lim);
}

int np_relaymsg_decode(np_relaymsg *m, np_relaymsg_kind kind,
                       const uint8_t *buf, size_t len,
                       const np_relaymsg_limits *lim) {
  np_relaymsg_limits def;
  const ProtobufCMessageDescriptor *d;
  ProtobufCMessage *pm;
  parts p;
  int rv = 0;
  np_relaymsg_init(m);
  if (kind != NP_RELAYMSG_HOP && kind != NP_RELAYMSG_STOP)
    return NP_EINVAL;
  if (lim == NULL) {
    np_relaymsg_limits_default(&def);
    lim = &def;
  }
  if (len > lim->max_msg)
    return NP_ELIMIT;
  d = kind == NP_RELAYMSG_HOP ? &np__circuit__hop_message__descriptor
                              : &np__circuit__stop_message__descriptor;
  if ((pm = np_pb_unpack(d, buf, len, 8 * lim->max_msg + 64 * 1024, &rv)) ==
      NULL)
    return rv;
  memset(&p, 0, sizeof(p));
  if (kind == NP_RELAYMSG_HOP) {
    const Np__Circuit__HopMessage *h = (const Np__Circuit__HopMessage *)pm;
    p.type = h->has_type ? (unsigned)h->type : 0;
    p.peer = h->peer;
    p.reservation = h->reservation;
    p.limit = h->limit;
    p.has_status = h->has_status;
    p.status = (unsigned)h->status;
  } else {
    const Np__Circuit__StopMessage *s = (const Np__Circuit__StopMessage *)pm;
    p.type = s->has_type ? (unsigned)s->type : 0;
    p.peer = s->peer;
    p.limit = s->limit;
    p.has_status = s->has_status;
    p.status = (unsigned)s->status;
  }
  m->kind = kind;
  rv = parts_copy(m, &p, lim);
  np_pb_free(pm);
  if (rv != 0)
    np_relaymsg_free(m);
  return rv;
}

np_ssize np_relaymsg_decode_lp(np_relaymsg *m, np_relaymsg_kind kind,
                               const uint8_t *in, size_t len,
                               const np_relaymsg_limits *lim) {
  np_relaymsg_limits def;
  const uint8_t *body;
  size_t blen;
  np_ssize n;
  int rv;
  np_relaymsg_init(m);
  if (lim == NULL) {
    np_relaymsg_limits_default(&def);
    lim = &def;
  }
  if ((n = np_lp_parse(in, len, lim->max_msg, &body, &blen)) < 0)
    return n;
  if ((rv = np_relaymsg_decode(m, kind, body, blen, lim)) != 0)
    return rv;
  return n;
}

/* Wire view of |n| caller addrs in a fresh array (*out NULL when n == 0). */
static int addrs_to_pb(ProtobufCBinaryData **out, const np_relaymsg_blob *in,
                       size_t n) {
  size_t i;
  *out = NULL;
  if (n == 0)
    return 0;
  if (in == NULL)
    return NP_EINVAL;
  /* More addrs than a body could hold are refused before allocating. */
  if (n > NP_RELAYMSG_MSG_MAX / 2)
    return NP_ELIMIT;
  if ((*out = calloc(n, sizeof(**out))) == NULL)
    return NP_ENOMEM;
  for (i = 0; i < n; i++) {
    (*out)[i].data = in[i].data;
    (*out)[i].len = in[i].len;
  }
  return 0;
}

static np_ssize encode(const np_relaymsg *m, int lp, uint8_t *out,
                       size_t cap) {
  Np__Circuit__HopMessage hop = NP__CIRCUIT__HOP_MESSAGE__INIT;
  Np__Circuit__StopMessage stop = NP__CIRCUIT__STOP_MESSAGE__INIT;
  Np__Circuit__Peer peer = NP__CIRCUIT__PEER__INIT;
  Np__Circuit__Reservation rsvp = NP__CIRCUIT__RESERVATION__INIT;
  Np__Circuit__Limit limit = NP__CIRCUIT__LIMIT__INIT;
  ProtobufCBinaryData *paddrs = NULL, *raddrs = NULL;
  np_ssize rv;
  if ((m->kind != NP_RELAYMSG_HOP && m->kind != NP_RELAYMSG_STOP) ||
      !valid_type(m->kind, m->type) ||
      (m->has_status && !valid_status((unsigned)m->status)) ||
      (m->has_reservation && m->kind != NP_RELAYMSG_HOP) ||
      (m->has_peer &&
       (m->peer.id.len == 0 || m->peer.id.len > NP_PEERID_MAX)))
    return NP_EINVAL;
  if (m->has_peer) {
    if ((rv = addrs_to_pb(&paddrs, m->peer.addrs, m->peer.naddrs)) != 0)
      goto out;
    peer.has_id = 1;
    peer.id.data = (uint8_t *)m->peer.id.bytes;
    peer.id.len = m->peer.id.len;
    peer.n_addrs = m->peer.naddrs;
    peer.addrs = paddrs;
  }
  if (m->has_reservation) {
    const np_relaymsg_reservation *r = &m->reservation;
    if ((rv = addrs_to_pb(&raddrs, r->addrs, r->naddrs)) != 0)
      goto out;
    rsvp.has_expire = 1;
    rsvp.expire = r->expire;
    rsvp.n_addrs = r->naddrs;
    rsvp.addrs = raddrs;
    if (r->voucher.len > 0) {
      rsvp.has_voucher = 1;
      rsvp.voucher.data = r->voucher.data;
      rsvp.voucher.len = r->voucher.len;
    }
  }
  if (m->has_limit) {
    limit.has_duration = 1;
    limit.duration = m->limit.duration;
    limit.has_data = 1;
    limit.data = m->limit.data;
  }
  if (m->kind == NP_RELAYMSG_HOP) {
    hop.has_type = 1; /* explicit presence: RESERVE (0) is sent too */
    hop.type = (Np__Circuit__HopMessage__Type)m->type;
    hop.peer = m->has_peer ? &peer : NULL;
    hop.reservation = m->has_reservation ? &rsvp : NULL;
    hop.limit = m->has_limit ? &limit : NULL;
    hop.has_status = m->has_status;
    hop.status = (Np__Circuit__Status)m->status;
    rv = np_pb_pack(&hop.base, NP_RELAYMSG_MSG_MAX, lp, out, cap);
  } else {
    stop.has_type = 1;
    stop.type = (Np__Circuit__StopMessage__Type)m->type;
    stop.peer = m->has_peer ? &peer : NULL;
    stop.limit = m->has_limit ? &limit : NULL;
    stop.has_status = m->has_status;
    stop.status = (Np__Circuit__Status)m->status;
    rv = np_pb_pack(&stop.base, NP_RELAYMSG_MSG_MAX, lp, out, cap);
  }
out:
  free(paddrs);
  free(raddrs);
  return rv;
}

np_ssize np_relaymsg_encode(const np_relaymsg *m, uint8_t *out, size_t cap) {
  return encode(m, 0, out, cap);
}

np_ssize np_relaymsg_encode_lp(const np_relaymsg *m, uint8_t *out,
                               size_t cap) {
  return encode(m, 1, out, cap);
}

/* ---- vouchers ------------------------------------------------------------ */

np_ssize np_relaymsg_voucher_seal(const np_identity *self,
                                  const np_peerid *peer, uint64_t expiration,
                                  uint8_t *out, size_t cap) {
  Np__Circuit__ReservationVoucher v = NP__CIRCUIT__RESERVATION_VOUCHER__INIT;
  uint8_t payload[VOUCHER_PAYLOAD_MAX];
  size_t n;
  if (peer->len == 0 || peer->len > NP_PEERID_MAX)
    return NP_EINVAL;
  v.has_relay = 1;
  v.relay.data = (uint8_t *)self->id.bytes;
  v.relay.len = self->id.len;
  v.has_peer = 1;
  v.peer.data = (uint8_t *)peer->bytes;
  v.peer.len = peer->len;
  v.has_expiration = 1;
  v.expiration = expiration;
  n = np__circuit__reservation_voucher__get_packed_size(&v);
  if (n > sizeof(payload))
    return NP_ELIMIT; /* cannot happen with valid peer IDs */
  n = np__circuit__reservation_voucher__pack(&v, payload);
  return np_envelope_seal(self, NP_RELAYMSG_VOUCHER_DOMAIN,
                          (const uint8_t *)NP_RELAYMSG_VOUCHER_TYPE,
                          NP_RELAYMSG_VOUCHER_TYPE_LEN, payload, n, out, cap);
}

int np_relaymsg_voucher_open(np_relaymsg_voucher *v, const uint8_t *env,
                             size_t len, const np_peerid *relay,
                             const np_peerid *peer) {
  Np__Circuit__ReservationVoucher *pv;
  uint8_t payload[VOUCHER_PAYLOAD_MAX];
  np_peerid signer;
  np_ssize n;
  int rv = 0;
  memset(v, 0, sizeof(*v));
  n = np_envelope_open(env, len, NP_RELAYMSG_VOUCHER_DOMAIN,
                       (const uint8_t *)NP_RELAYMSG_VOUCHER_TYPE,
                       NP_RELAYMSG_VOUCHER_TYPE_LEN, &signer, payload,
                       sizeof(payload));
  if (n < 0)
    return n == NP_ELIMIT && len <= NP_ENVELOPE_MAX ? NP_EPROTO : (int)n;
  pv = (Np__Circuit__ReservationVoucher *)np_pb_unpack(
      &np__circuit__reservation_voucher__descriptor, payload, (size_t)n,
      64 * 1024, &rv);
  if (pv == NULL)
    return rv;
  if (!pv->has_relay || !pv->has_peer ||
      np_peerid_from_bytes(&v->relay, pv->relay.data, pv->relay.len) != 0 ||
      np_peerid_from_bytes(&v->peer, pv->peer.data, pv->peer.len) != 0)
    rv = NP_EPROTO;
  else if (!np_peerid_equal(&signer, &v->relay) ||
           (relay != NULL && !np_peerid_equal(relay, &v->relay)) ||
           (peer != NULL && !np_peerid_equal(peer, &v->peer)))
    rv = NP_EPEERID;
  else
    v->expiration = pv->has_expiration ? pv->expiration : 0;
  np_pb_free(&pv->base);
  if (rv != 0)
    memset(v, 0, sizeof(*v));
  return rv;
}

const char *np_relaymsg_status_name(int status) {
  switch (status) {
  case NP_RELAYMSG_OK:
    return "OK";
  case NP_RELAYMSG_RESERVATION_REFUSED:
    return "RESERVATION_REFUSED";
  case NP_RELAYMSG_RESOURCE_LIMIT_EXCEEDED:
    return "RESOURCE_LIMIT_EXCEEDED";
  case NP_RELAYMSG_PERMISSION_DENIED:
    return "PERMISSION_DENIED";
  case NP_RELAYMSG_CONNECTION_FAILED:
    return "CONNECTION_FAILED";
  case NP_RELAYMSG_NO_RESERVATION:
    return "NO_RESERVATION";
  case NP_RELAYMSG_MALFORMED_MESSAGE:
    return "MALFORMED_MESSAGE";
  case NP_RELAYMSG_UNEXPECTED_MESSAGE:
    return "UNEXPECTED_MESSAGE";
  default:
    return "UNKNOWN";
  }
}
