/* Identify (/ipfs/id/1.0.0, push /ipfs/id/push/1.0.0; libp2p-wire.md §6)
 * and the signed peer record it carries (§15), sans-I/O: message bodies in,
 * a bounded struct out; parameters in, framed messages out.
 *
 * Stream use: read with an np_lp_reader of max NP_IDENTIFY_MSG_MAX and pass
 * each message to np_identify_parse until EOF; a peer may split one
 * logical message in several (go sends the record on its own when big). */
#ifndef NP_IDENTIFY_H
#define NP_IDENTIFY_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"
#include "np_identity.h"
#include "np_peerid.h"

#define NP_IDENTIFY_PROTOCOL "/ipfs/id/1.0.0"
#define NP_IDENTIFY_PUSH_PROTOCOL "/ipfs/id/push/1.0.0"
#define NP_IDENTIFY_MSG_MAX 8192      /* largest body read (go, js) */
#define NP_IDENTIFY_MSG_OUT 4096      /* largest body written (rust's limit) */
#define NP_IDENTIFY_SPLIT 2048        /* above: the record goes separately */
#define NP_IDENTIFY_MAX_MSGS 10       /* messages merged per stream (go, js) */
#define NP_IDENTIFY_MAX_PROTOCOLS 512 /* more are dropped */
#define NP_IDENTIFY_MAX_ADDRS 128     /* more are dropped */
#define NP_IDENTIFY_VERSION_MAX 256   /* longer version texts are cut */
#define NP_ENVELOPE_MAX NP_IDENTIFY_MSG_MAX /* largest envelope opened */

/* Peer-record envelope: domain (not sent) and payload type (raw bytes). */
#define NP_PEER_RECORD_DOMAIN "libp2p-peer-record"
#define NP_PEER_RECORD_TYPE "\x03\x01"
#define NP_PEER_RECORD_TYPE_LEN 2

/* An owned or borrowed byte string, as the context says. */
typedef struct np_identify_blob {
  uint8_t *data;
  size_t len;
} np_identify_blob;

/* What a peer said about itself. Everything is owned by the struct (free
 * with np_identify_free); absent optional fields have data/pointer NULL. */
typedef struct np_identify {
  np_identify_blob pubkey;   /* PublicKey protobuf, canonical re-encoding */
  np_identify_blob observed; /* our address as the peer saw it (valid) */
  np_identify_blob signed_record; /* raw Envelope, not yet verified */
  char *protocol_version;
  char *agent_version;
  np_identify_blob *addrs; /* valid binary multiaddrs, <= MAX_ADDRS */
  size_t naddrs;
  char **protocols; /* 1..NP_MSS_MAX_NAME-byte names, <= MAX_PROTOCOLS */
  size_t nprotocols;
  unsigned nmsgs; /* messages merged so far */
} np_identify;

void np_identify_init(np_identify *id);
void np_identify_free(np_identify *id);

/* Merge one Identify message body into |id|: repeated fields are appended,
 * optional ones replace earlier values. Entries past the caps, addresses
 * np_maddr_validate refuses (unknown protocols included) and unusable
 * protocol names are dropped, as go does. Returns 0 or
 *   NP_ELIMIT  |len| > NP_IDENTIFY_MSG_MAX (checked first), or more than
 *              NP_IDENTIFY_MAX_MSGS messages
 *   NP_EPROTO  not an Identify message, or publicKey is not a PublicKey
 *   NP_ENOMEM  (|id| then holds what was merged so far)
 * On error |id| is still valid and must be freed. */
int np_identify_parse(np_identify *id, const uint8_t *body, size_t len);

/* Peer ID of |id|'s public key. Returns 0, or NP_ENOENT if none was sent. */
int np_identify_peerid(const np_identify *id, np_peerid *out);

/* What this host says about itself. Pointers are borrowed for the call. */
typedef struct np_identify_params {
  const char *protocol_version;         /* NULL: not sent */
  const char *agent_version;            /* NULL: not sent */
  const np_identify_blob *listen_addrs; /* binary multiaddrs */
  size_t nlisten;
  const uint8_t *observed; /* the remote's address of this connection */
  size_t observed_len;     /* 0: not sent */
  const char *const *protocols;
  size_t nprotocols;
  uint64_t record_seq; /* nonzero: attach a peer record of listen_addrs
                          signed by the host key, with this seq */
  /* Alternatively an already sealed record (np_peer_record_seal), sent as
   * is: signing once instead of per connection. Takes precedence. */
  const uint8_t *signed_record;
  size_t signed_record_len;
} np_identify_params;

/* Write the identify answer of host |self| (publicKey = its key) as one
 * uvarint-framed message, or two when the body would exceed
 * NP_IDENTIFY_SPLIT and carries a record (the record then travels alone
 * in the second, as go does). Returns the bytes written, NP_EINVAL (a NULL
 * pointer with a nonzero count), NP_ELIMIT (|cap| too small, or a body
 * over NP_IDENTIFY_MSG_OUT), NP_ENOMEM, or a signing error. */
np_ssize np_identify_build(const np_identity *self, const np_identify_params *p,
                           uint8_t *out, size_t cap);

/* ---- signed envelopes (RFC 0002) and peer records (RFC 0003) ---- */

/* Seal |payload| in an Envelope signed by |self| under |domain| (not sent)
 * with payload type |type| (raw bytes, e.g. 03 01). Writes the Envelope
 * protobuf (no length prefix) to |out|. Returns its length, NP_ELIMIT,
 * NP_ENOMEM or a signing error. */
np_ssize np_envelope_seal(const np_identity *self, const char *domain,
                          const uint8_t *type, size_t tlen,
                          const uint8_t *payload, size_t plen, uint8_t *out,
                          size_t cap);

/* Open the Envelope |env|: check the signature for |domain|, then that the
 * payload type is |type|. Sets |*signer| to the signing key's peer ID and
 * copies the payload to |payload| (|cap| bytes). Returns the payload
 * length, or
 *   NP_ELIMIT   |len| > NP_ENVELOPE_MAX (checked first) or |cap| too small
 *   NP_EPROTO   malformed envelope or key, or another payload type
 *   NP_ENOTSUP  a signing key of an unknown type (or RSA over 8192 bits)
 *   NP_ECRYPTO  bad signature
 *   NP_ENOMEM */
np_ssize np_envelope_open(const uint8_t *env, size_t len, const char *domain,
                          const uint8_t *type, size_t tlen, np_peerid *signer,
                          uint8_t *payload, size_t cap);

/* A verified peer record. Owned; free with np_peer_record_free. */
typedef struct np_peer_record {
  np_peerid id;
  uint64_t seq;
  np_identify_blob *addrs; /* valid binary multiaddrs, <= MAX_ADDRS */
  size_t naddrs;
} np_peer_record;

/* Seal a peer record of |self| with |seq| and |addrs| (a signed Envelope,
 * no length prefix). Returns its length or an error as np_envelope_seal;
 * NP_EINVAL for NULL addrs with naddrs > 0. */
np_ssize np_peer_record_seal(const np_identity *self, uint64_t seq,
                             const np_identify_blob *addrs, size_t naddrs,
                             uint8_t *out, size_t cap);

/* Verify the peer-record Envelope |env| and decode it into |rec|: errors of
 * np_envelope_open, NP_EPROTO for a malformed record, NP_EPEERID when the
 * record's peer_id is not the signer's. The caller still compares rec->id
 * with the peer it talks to and keeps only increasing seq. Invalid
 * addresses are dropped. On error |rec| holds nothing to free. */
int np_peer_record_open(np_peer_record *rec, const uint8_t *env, size_t len);
void np_peer_record_free(np_peer_record *rec);

#endif
