#include "np_identify.h"

#include <stdlib.h>
#include <string.h>

#include "np_lp.h"
#include "np_mss.h"
#include "np_multiaddr.h"
#include "np_varint.h"
#include "proto/envelope.pb-c.h"
#include "proto/identify.pb-c.h"
#include "proto/keys.pb-c.h"
#include "proto/peer_record.pb-c.h"

/* ---- parsing ------------------------------------------------------------ */

void np_identify_init(np_identify *id) { memset(id, 0, sizeof(*id)); }

static void blob_free(np_identify_blob *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

void np_identify_free(np_identify *id) {
  size_t i;
  blob_free(&id->pubkey);
  blob_free(&id->observed);
  blob_free(&id->signed_record);
  free(id->protocol_version);
  free(id->agent_version);
  for (i = 0; i < id->naddrs; i++)
    blob_free(&id->addrs[i]);
  free(id->addrs);
  for (i = 0; i < id->nprotocols; i++)
    free(id->protocols[i]);
  free(id->protocols);
  memset(id, 0, sizeof(*id));
}

/* Replace |*b| by a copy of |len| bytes (malloc(0) avoided: data stays
 * non-NULL to mark presence). */
static int blob_set(np_identify_blob *b, const uint8_t *data, size_t len) {
  uint8_t *p = malloc(len ? len : 1);
  if (p == NULL)
    return NP_ENOMEM;
  if (len)
    memcpy(p, data, len);
  free(b->data);
  b->data = p;
  b->len = len;
  return 0;
}

/* Copy of |s| cut to |max| bytes without splitting a UTF-8 sequence. */
static char *text_dup(const char *s, size_t max) {
  size_t n = strlen(s);
  char *p;
  if (n > max) {
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--;
  }
  if ((p = malloc(n + 1)) == NULL)
    return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static int text_set(char **dst, const char *s) {
  char *p = text_dup(s, NP_IDENTIFY_VERSION_MAX);
  if (p == NULL)
    return NP_ENOMEM;
  free(*dst);
  *dst = p;
  return 0;
}

/* Append the valid multiaddrs of |in| to |*arr| (count |*n|, cap |max|). */
static int addrs_append(np_identify_blob **arr, size_t *n, size_t max,
                        ProtobufCBinaryData *in, size_t nin) {
  np_identify_blob *a;
  size_t i, room = max - *n;
  if (nin == 0 || room == 0)
    return 0;
  if (nin < room)
    room = nin;
  a = realloc(*arr, (*n + room) * sizeof(*a));
  if (a == NULL)
    return NP_ENOMEM;
  *arr = a;
  for (i = 0; i < nin && room > 0; i++) {
    if (np_maddr_validate(in[i].data, in[i].len) != 0)
      continue;
    a[*n].data = NULL;
    if (blob_set(&a[*n], in[i].data, in[i].len) != 0)
      return NP_ENOMEM;
    (*n)++;
    room--;
  }
  return 0;
}

static int protocols_append(np_identify *id, char **in, size_t nin) {
  char **a;
  size_t i, room = NP_IDENTIFY_MAX_PROTOCOLS - id->nprotocols;
  if (nin == 0 || room == 0)
    return 0;
  if (nin < room)
    room = nin;
  a = realloc(id->protocols, (id->nprotocols + room) * sizeof(*a));
  if (a == NULL)
    return NP_ENOMEM;
  id->protocols = a;
  for (i = 0; i < nin && room > 0; i++) {
    size_t len = strlen(in[i]);
    /* A name multistream cannot carry is of no use to anyone. */
    if (len == 0 || len > NP_MSS_MAX_NAME || strchr(in[i], '\n'))
      continue;
    if ((a[id->nprotocols] = text_dup(in[i], len)) == NULL)
      return NP_ENOMEM;
    id->nprotocols++;
    room--;
  }
  return 0;
}

/* Canonical PublicKey encoding of |data|, or NULL if it is not one. */
static int pubkey_canon(const uint8_t *data, size_t len,
                        np_identify_blob *out) {
  Np__Keys__PublicKey *pk = np__keys__public_key__unpack(NULL, len, data);
  int rv = NP_EPROTO;
  if (pk == NULL)
    return NP_EPROTO;
  if (pk->data.len > 0) {
    size_t n = np__keys__public_key__get_packed_size(pk);
    uint8_t *p = malloc(n);
    rv = NP_ENOMEM;
    if (p != NULL) {
      np__keys__public_key__pack(pk, p);
      free(out->data);
      out->data = p;
      out->len = n;
      rv = 0;
    }
  }
  np__keys__public_key__free_unpacked(pk, NULL);
  return rv;
}

int np_identify_parse(np_identify *id, const uint8_t *body, size_t len) {
  Np__Identify__Identify *m;
  int rv = 0;
  if (len > NP_IDENTIFY_MSG_MAX || id->nmsgs >= NP_IDENTIFY_MAX_MSGS)
    return NP_ELIMIT;
  m = np__identify__identify__unpack(NULL, len, body);
  if (m == NULL)
    return NP_EPROTO;
  id->nmsgs++;
  if (m->has_publickey)
    rv = pubkey_canon(m->publickey.data, m->publickey.len, &id->pubkey);
  if (rv == 0)
    rv = addrs_append(&id->addrs, &id->naddrs, NP_IDENTIFY_MAX_ADDRS,
                      m->listenaddrs, m->n_listenaddrs);
  if (rv == 0)
    rv = protocols_append(id, m->protocols, m->n_protocols);
  if (rv == 0 && m->has_observedaddr &&
      np_maddr_validate(m->observedaddr.data, m->observedaddr.len) == 0)
    rv = blob_set(&id->observed, m->observedaddr.data, m->observedaddr.len);
  if (rv == 0 && m->protocolversion != NULL)
    rv = text_set(&id->protocol_version, m->protocolversion);
  if (rv == 0 && m->agentversion != NULL)
    rv = text_set(&id->agent_version, m->agentversion);
  if (rv == 0 && m->has_signedpeerrecord)
    rv = blob_set(&id->signed_record, m->signedpeerrecord.data,
                  m->signedpeerrecord.len);
  np__identify__identify__free_unpacked(m, NULL);
  return rv;
}

int np_identify_peerid(const np_identify *id, np_peerid *out) {
  if (id->pubkey.data == NULL)
    return NP_ENOENT;
  return np_peerid_from_pubkey(out, id->pubkey.data, id->pubkey.len);
}

/* ---- envelopes ------------------------------------------------------------
 */

/* uvarint(len domain) || domain || uvarint(len type) || type ||
 * uvarint(len payload) || payload, in a fresh heap buffer. */
static uint8_t *signing_buffer(const char *domain, const uint8_t *type,
                               size_t tlen, const uint8_t *payload, size_t plen,
                               size_t *outlen) {
  const uint8_t *parts[3] = {(const uint8_t *)domain, type, payload};
  size_t lens[3] = {strlen(domain), tlen, plen}, total = 0, off = 0, i;
  uint8_t *buf;
  for (i = 0; i < 3; i++)
    total += np_varint_size(lens[i]) + lens[i];
  if ((buf = malloc(total)) == NULL)
    return NULL;
  for (i = 0; i < 3; i++) {
    off += (size_t)np_varint_encode(lens[i], buf + off, total - off);
    if (lens[i])
      memcpy(buf + off, parts[i], lens[i]);
    off += lens[i];
  }
  *outlen = total;
  return buf;
}

np_ssize np_envelope_seal(const np_identity *self, const char *domain,
                          const uint8_t *type, size_t tlen,
                          const uint8_t *payload, size_t plen, uint8_t *out,
                          size_t cap) {
  Np__Record__Envelope env = NP__RECORD__ENVELOPE__INIT;
  Np__Keys__PublicKey pk = NP__KEYS__PUBLIC_KEY__INIT;
  uint8_t sig[NP_IDENTITY_SIG_MAX];
  const uint8_t *kd;
  size_t slen, siglen = 0, kdlen, n;
  int ktype;
  uint8_t *sb = signing_buffer(domain, type, tlen, payload, plen, &slen);
  int rv;
  if (sb == NULL)
    return NP_ENOMEM;
  rv = np_identity_sign(self, sb, slen, sig, sizeof(sig), &siglen);
  free(sb);
  if (rv < 0)
    return rv;
  /* The host's own PublicKey, whatever its type. */
  if (np_pubkey_parse(self->pub_pb, self->pub_pb_len, &ktype, &kd, &kdlen) !=
      0)
    return NP_EINVAL;
  pk.type = (Np__Keys__KeyType)ktype;
  pk.data.data = (uint8_t *)kd;
  pk.data.len = kdlen;
  env.public_key = &pk;
  env.payload_type.data = (uint8_t *)type;
  env.payload_type.len = tlen;
  env.payload.data = (uint8_t *)payload;
  env.payload.len = plen;
  env.signature.data = sig;
  env.signature.len = siglen;
  n = np__record__envelope__get_packed_size(&env);
  if (n > cap)
    return NP_ELIMIT;
  return (np_ssize)np__record__envelope__pack(&env, out);
}

np_ssize np_envelope_open(const uint8_t *env, size_t len, const char *domain,
                          const uint8_t *type, size_t tlen, np_peerid *signer,
                          uint8_t *payload, size_t cap) {
  Np__Record__Envelope *e;
  uint8_t pkbuf[NP_PUBKEY_DATA_MAX + 8], *sb;
  size_t slen, pklen;
  np_peerid who;
  np_ssize rv;
  if (len > NP_ENVELOPE_MAX)
    return NP_ELIMIT;
  if ((e = np__record__envelope__unpack(NULL, len, env)) == NULL)
    return NP_EPROTO;
  if (e->public_key == NULL) {
    rv = NP_EPROTO;
    goto out;
  }
  /* The ID hashes the canonical key encoding, whatever bytes were sent. */
  if (e->public_key->data.len > NP_PUBKEY_DATA_MAX ||
      np__keys__public_key__get_packed_size(e->public_key) > sizeof(pkbuf)) {
    rv = NP_ELIMIT;
    goto out;
  }
  pklen = np__keys__public_key__pack(e->public_key, pkbuf);
  sb = signing_buffer(domain, e->payload_type.data, e->payload_type.len,
                      e->payload.data, e->payload.len, &slen);
  if (sb == NULL) {
    rv = NP_ENOMEM;
    goto out;
  }
  /* Signature first, then type (RFC 0002 order). */
  rv = np_pubkey_verify(pkbuf, pklen, sb, slen, e->signature.data,
                        e->signature.len, &who, NULL);
  free(sb);
  if (rv < 0) {
    /* NP_ENOTSUP: unknown key type; NP_EPROTO: malformed key */
    if (rv != NP_ENOTSUP && rv != NP_EPROTO && rv != NP_ENOMEM)
      rv = NP_ECRYPTO;
    goto out;
  }
  if (e->payload_type.len != tlen ||
      (tlen && memcmp(e->payload_type.data, type, tlen) != 0)) {
    rv = NP_EPROTO;
    goto out;
  }
  *signer = who;
  if (e->payload.len > cap) {
    rv = NP_ELIMIT;
    goto out;
  }
  if (e->payload.len)
    memcpy(payload, e->payload.data, e->payload.len);
  rv = (np_ssize)e->payload.len;
out:
  np__record__envelope__free_unpacked(e, NULL);
  return rv;
}

/* ---- peer records -------------------------------------------------------- */

np_ssize np_peer_record_seal(const np_identity *self, uint64_t seq,
                             const np_identify_blob *addrs, size_t naddrs,
                             uint8_t *out, size_t cap) {
  Np__Record__PeerRecord rec = NP__RECORD__PEER_RECORD__INIT;
  Np__Record__PeerRecord__AddressInfo *ai = NULL, **aip = NULL;
  uint8_t *payload = NULL;
  size_t i, plen;
  np_ssize rv = NP_ENOMEM;
  if (addrs == NULL && naddrs > 0)
    return NP_EINVAL;
  if (naddrs > 0) {
    ai = calloc(naddrs, sizeof(*ai));
    aip = calloc(naddrs, sizeof(*aip));
    if (ai == NULL || aip == NULL)
      goto out;
  }
  for (i = 0; i < naddrs; i++) {
    np__record__peer_record__address_info__init(&ai[i]);
    ai[i].multiaddr.data = addrs[i].data;
    ai[i].multiaddr.len = addrs[i].len;
    aip[i] = &ai[i];
  }
  rec.peer_id.data = (uint8_t *)self->id.bytes;
  rec.peer_id.len = self->id.len;
  rec.seq = seq;
  rec.n_addresses = naddrs;
  rec.addresses = aip;
  plen = np__record__peer_record__get_packed_size(&rec);
  if ((payload = malloc(plen ? plen : 1)) == NULL)
    goto out;
  np__record__peer_record__pack(&rec, payload);
  rv = np_envelope_seal(self, NP_PEER_RECORD_DOMAIN,
                        (const uint8_t *)NP_PEER_RECORD_TYPE,
                        NP_PEER_RECORD_TYPE_LEN, payload, plen, out, cap);
out:
  free(payload);
  free(aip);
  free(ai);
  return rv;
}

int np_peer_record_open(np_peer_record *rec, const uint8_t *env, size_t len) {
  Np__Record__PeerRecord *r;
  np_peerid signer, claimed;
  uint8_t *payload;
  np_ssize n;
  int rv = 0;
  size_t i;
  memset(rec, 0, sizeof(*rec));
  if (len > NP_ENVELOPE_MAX)
    return NP_ELIMIT;
  /* The payload is smaller than the envelope holding it. */
  if ((payload = malloc(len ? len : 1)) == NULL)
    return NP_ENOMEM;
  n = np_envelope_open(env, len, NP_PEER_RECORD_DOMAIN,
                       (const uint8_t *)NP_PEER_RECORD_TYPE,
                       NP_PEER_RECORD_TYPE_LEN, &signer, payload, len);
  if (n < 0) {
    free(payload);
    return (int)n;
  }
  r = np__record__peer_record__unpack(NULL, (size_t)n, payload);
  free(payload);
  if (r == NULL)
    return NP_EPROTO;
  if (np_peerid_from_bytes(&claimed, r->peer_id.data, r->peer_id.len) != 0)
    rv = NP_EPROTO;
  else if (!np_peerid_equal(&claimed, &signer))
    rv = NP_EPEERID;
  for (i = 0; rv == 0 && i < r->n_addresses; i++) {
    ProtobufCBinaryData *ma = &r->addresses[i]->multiaddr;
    rv = addrs_append(&rec->addrs, &rec->naddrs, NP_IDENTIFY_MAX_ADDRS, ma, 1);
  }
  if (rv == 0) {
    rec->id = signer;
    rec->seq = r->seq;
  } else {
    np_peer_record_free(rec);
  }
  np__record__peer_record__free_unpacked(r, NULL);
  return rv;
}

void np_peer_record_free(np_peer_record *rec) {
  size_t i;
  for (i = 0; i < rec->naddrs; i++)
    blob_free(&rec->addrs[i]);
  free(rec->addrs);
  memset(rec, 0, sizeof(*rec));
}

/* ---- building ------------------------------------------------------------ */

/* Append uvarint(len(m)) || m to out[*off..cap). */
static int put_framed(const Np__Identify__Identify *m, uint8_t *out, size_t cap,
                      size_t *off) {
  size_t body = np__identify__identify__get_packed_size(m);
  size_t pre = np_lp_prefix_size(body);
  if (body > NP_IDENTIFY_MSG_OUT)
    return NP_ELIMIT;
  if (cap - *off < pre + body)
    return NP_ELIMIT;
  np_lp_put_prefix(body, out + *off, cap - *off);
  np__identify__identify__pack(m, out + *off + pre);
  *off += pre + body;
  return 0;
}

np_ssize np_identify_build(const np_identity *self, const np_identify_params *p,
                           uint8_t *out, size_t cap) {
  Np__Identify__Identify m = NP__IDENTIFY__IDENTIFY__INIT;
  Np__Identify__Identify spr_only = NP__IDENTIFY__IDENTIFY__INIT;
  ProtobufCBinaryData *la = NULL;
  uint8_t *spr = NULL;
  size_t i, off = 0;
  np_ssize n;
  int rv = NP_ENOMEM;
  if ((p->listen_addrs == NULL && p->nlisten) ||
      (p->protocols == NULL && p->nprotocols) ||
      (p->observed == NULL && p->observed_len))
    return NP_EINVAL;
  if (p->nlisten && (la = calloc(p->nlisten, sizeof(*la))) == NULL)
    return NP_ENOMEM;
  for (i = 0; i < p->nlisten; i++) {
    la[i].data = p->listen_addrs[i].data;
    la[i].len = p->listen_addrs[i].len;
  }
  m.has_publickey = 1;
  m.publickey.data = (uint8_t *)self->pub_pb;
  m.publickey.len = self->pub_pb_len;
  m.n_listenaddrs = p->nlisten;
  m.listenaddrs = la;
  m.n_protocols = p->nprotocols;
  m.protocols = (char **)p->protocols;
  if (p->observed_len) {
    m.has_observedaddr = 1;
    m.observedaddr.data = (uint8_t *)p->observed;
    m.observedaddr.len = p->observed_len;
  }
  m.protocolversion = (char *)p->protocol_version;
  m.agentversion = (char *)p->agent_version;
  if (p->signed_record_len != 0 || p->record_seq != 0) {
    if (p->signed_record_len != 0) {
      m.signedpeerrecord.data = (uint8_t *)p->signed_record;
      m.signedpeerrecord.len = p->signed_record_len;
    } else {
      if ((spr = malloc(NP_IDENTIFY_MSG_OUT)) == NULL)
        goto out;
      n = np_peer_record_seal(self, p->record_seq, p->listen_addrs,
                              p->nlisten, spr, NP_IDENTIFY_MSG_OUT);
      if (n < 0) {
        rv = (int)n;
        goto out;
      }
      m.signedpeerrecord.data = spr;
      m.signedpeerrecord.len = (size_t)n;
    }
    m.has_signedpeerrecord = 1;
    /* Small peers (old go: 2 KiB) choke on big messages; go moves the
     * record to a message of its own, and readers merge until EOF. */
    if (np__identify__identify__get_packed_size(&m) > NP_IDENTIFY_SPLIT) {
      spr_only.has_signedpeerrecord = 1;
      spr_only.signedpeerrecord = m.signedpeerrecord;
      m.has_signedpeerrecord = 0;
    }
  }
  rv = put_framed(&m, out, cap, &off);
  if (rv == 0 && spr_only.has_signedpeerrecord)
    rv = put_framed(&spr_only, out, cap, &off);
out:
  free(spr);
  free(la);
  return rv < 0 ? rv : (np_ssize)off;
}
