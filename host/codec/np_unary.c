#include "np_unary.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "np_lp.h"
#include "proto/p2pd.pb-c.h"

typedef Np__P2pd__PersistentConnectionRequest pcr;

static int say(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int say(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  if (err != NULL && errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Fill |m| (and its sub-message |cu|) from |r|; pointers are borrowed. */
static int req_pb(const np_unary_req *r, pcr *m,
                  Np__P2pd__CallUnaryRequest *cu) {
  if (r->proto == NULL || (r->peer == NULL && r->peer_len) ||
      (r->data == NULL && r->data_len))
    return NP_EINVAL;
  m->callid.data = (uint8_t *)r->call_id;
  m->callid.len = NP_UNARY_CALLID_LEN;
  m->message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY;
  m->callunary = cu;
  cu->peer.data = (uint8_t *)r->peer;
  cu->peer.len = r->peer_len;
  cu->proto = (char *)r->proto;
  cu->data.data = (uint8_t *)r->data;
  cu->data.len = r->data_len;
  return 0;
}

static int resp_pb(const np_unary_resp *r, pcr *m,
                   Np__P2pd__CallUnaryResponse *ur) {
  ProtobufCBinaryData b;
  if (r->data == NULL && r->data_len)
    return NP_EINVAL;
  m->callid.data = (uint8_t *)r->call_id;
  m->callid.len = NP_UNARY_CALLID_LEN;
  m->message_case =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_UNARY_RESPONSE;
  m->unaryresponse = ur;
  /* Exactly one member of the wire oneof, even when empty. */
  b.data = (uint8_t *)r->data;
  b.len = r->data_len;
  if (r->is_error) {
    ur->has_error = 1;
    ur->error = b;
  } else {
    ur->has_response = 1;
    ur->response = b;
  }
  return 0;
}

static np_ssize frame(const pcr *m, uint8_t *out, size_t cap) {
  size_t body = np__p2pd__persistent_connection_request__get_packed_size(m);
  size_t pre = np_lp_prefix_size(body);
  if (cap < pre || cap - pre < body)
    return NP_ELIMIT;
  np_lp_put_prefix(body, out, cap);
  np__p2pd__persistent_connection_request__pack(m, out + pre);
  return (np_ssize)(pre + body);
}

size_t np_unary_req_size(const np_unary_req *r) {
  pcr m = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryRequest cu = NP__P2PD__CALL_UNARY_REQUEST__INIT;
  size_t body;
  if (req_pb(r, &m, &cu) < 0)
    return 0;
  body = np__p2pd__persistent_connection_request__get_packed_size(&m);
  return np_lp_prefix_size(body) + body;
}

np_ssize np_unary_encode_req(const np_unary_req *r, uint8_t *out, size_t cap) {
  pcr m = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryRequest cu = NP__P2PD__CALL_UNARY_REQUEST__INIT;
  int rv = req_pb(r, &m, &cu);
  return rv < 0 ? rv : frame(&m, out, cap);
}

size_t np_unary_resp_size(const np_unary_resp *r) {
  pcr m = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryResponse ur = NP__P2PD__CALL_UNARY_RESPONSE__INIT;
  size_t body;
  if (resp_pb(r, &m, &ur) < 0)
    return 0;
  body = np__p2pd__persistent_connection_request__get_packed_size(&m);
  return np_lp_prefix_size(body) + body;
}

np_ssize np_unary_encode_resp(const np_unary_resp *r, uint8_t *out,
                              size_t cap) {
  pcr m = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryResponse ur = NP__P2PD__CALL_UNARY_RESPONSE__INIT;
  int rv = resp_pb(r, &m, &ur);
  return rv < 0 ? rv : frame(&m, out, cap);
}

/* Size check, unpack and the checks common to both directions. */
static int unpack(pcr **pm, const uint8_t *body, size_t len, size_t max,
                  int want_case, char *err, size_t errlen) {
  pcr *m;
  *pm = NULL;
  if (len > max)
    return say(err, errlen, NP_ELIMIT,
               "unary message of %zu bytes exceeds the %zu-byte limit", len,
               max);
  m = np__p2pd__persistent_connection_request__unpack(NULL, len, body);
  if (m == NULL)
    return say(err, errlen, NP_EPROTO,
               "malformed PersistentConnectionRequest (%zu bytes)", len);
  if (m->callid.len != NP_UNARY_CALLID_LEN) {
    size_t got = m->callid.len;
    np__p2pd__persistent_connection_request__free_unpacked(m, NULL);
    return say(err, errlen, NP_EPROTO, "callId of %zu bytes, expected %d", got,
               NP_UNARY_CALLID_LEN);
  }
  if ((int)m->message_case != want_case) {
    np__p2pd__persistent_connection_request__free_unpacked(m, NULL);
    return say(
        err, errlen, NP_EPROTO, "PersistentConnectionRequest without %s",
        want_case == NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY
            ? "callUnary"
            : "unaryResponse");
  }
  *pm = m;
  return 0;
}

int np_unary_parse_req(np_unary_req *r, const uint8_t *body, size_t len,
                       size_t max, char *err, size_t errlen) {
  pcr *m;
  int rv = unpack(&m, body, len, max,
                  NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY,
                  err, errlen);
  memset(r, 0, sizeof(*r));
  if (rv < 0)
    return rv;
  memcpy(r->call_id, m->callid.data, NP_UNARY_CALLID_LEN);
  r->peer = m->callunary->peer.data;
  r->peer_len = m->callunary->peer.len;
  r->proto = m->callunary->proto;
  r->proto_len = strlen(r->proto);
  r->data = m->callunary->data.data;
  r->data_len = m->callunary->data.len;
  r->pb_ = m;
  return 0;
}

int np_unary_parse_resp(np_unary_resp *r, const uint8_t *body, size_t len,
                        size_t max, char *err, size_t errlen) {
  pcr *m;
  int rv =
      unpack(&m, body, len, max,
             NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_UNARY_RESPONSE,
             err, errlen);
  const Np__P2pd__CallUnaryResponse *ur;
  memset(r, 0, sizeof(*r));
  if (rv < 0)
    return rv;
  ur = m->unaryresponse;
  memcpy(r->call_id, m->callid.data, NP_UNARY_CALLID_LEN);
  if (ur->has_error) {
    r->is_error = 1;
    r->data = ur->error.data;
    r->data_len = ur->error.len;
  } else if (ur->has_response) {
    r->data = ur->response.data;
    r->data_len = ur->response.len;
  }
  r->pb_ = m;
  return 0;
}

/* Split off the frame at |in|, then parse its body with |parse|. */
static np_ssize decode(void *r, const uint8_t *in, size_t len, size_t max,
                       char *err, size_t errlen,
                       int (*parse)(void *, const uint8_t *, size_t, size_t,
                                    char *, size_t)) {
  const uint8_t *body;
  size_t blen;
  np_ssize n = np_lp_parse(in, len, max, &body, &blen);
  int rv;
  if (n == NP_ELIMIT) {
    uint64_t v = 0;
    np_varint_decode(in, len, &v);
    return say(err, errlen, NP_ELIMIT,
               "unary message of %llu bytes exceeds the %zu-byte limit",
               (unsigned long long)v, max);
  }
  if (n < 0)
    return n == NP_ETRUNC ? n
                          : say(err, errlen, (int)n, "malformed length prefix");
  rv = parse(r, body, blen, max, err, errlen);
  return rv < 0 ? rv : n;
}

static int parse_req_v(void *r, const uint8_t *b, size_t l, size_t max,
                       char *err, size_t errlen) {
  return np_unary_parse_req(r, b, l, max, err, errlen);
}

static int parse_resp_v(void *r, const uint8_t *b, size_t l, size_t max,
                        char *err, size_t errlen) {
  return np_unary_parse_resp(r, b, l, max, err, errlen);
}

np_ssize np_unary_decode_req(np_unary_req *r, const uint8_t *in, size_t len,
                             size_t max, char *err, size_t errlen) {
  memset(r, 0, sizeof(*r));
  return decode(r, in, len, max, err, errlen, parse_req_v);
}

np_ssize np_unary_decode_resp(np_unary_resp *r, const uint8_t *in, size_t len,
                              size_t max, char *err, size_t errlen) {
  memset(r, 0, sizeof(*r));
  return decode(r, in, len, max, err, errlen, parse_resp_v);
}

void np_unary_req_free(np_unary_req *r) {
  if (r->pb_ != NULL)
    np__p2pd__persistent_connection_request__free_unpacked(r->pb_, NULL);
  memset(r, 0, sizeof(*r));
}

void np_unary_resp_free(np_unary_resp *r) {
  if (r->pb_ != NULL)
    np__p2pd__persistent_connection_request__free_unpacked(r->pb_, NULL);
  memset(r, 0, sizeof(*r));
}
