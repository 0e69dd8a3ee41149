/* Fuzz the p2pd control-socket request stream as the server reads it:
 * uvarint-delimited Request messages under a size limit, field 9 decoded
 * by request type (fork REMOVE_STREAM_HANDLER vs js PEERSTORE), and after
 * PERSISTENT_CONN_UPGRADE, PersistentConnectionRequest messages; a DHT
 * request's CID as the server reads its multihash. Byte 0 is
 * the chunk size the socket delivers. Decoded messages must re-encode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_cid.h"
#include "np_err.h"
#include "np_lp.h"
#include "np_pb.h"
#include "proto/p2pd.pb-c.h"

#define CTL_MAX (1u << 16) /* smaller than the daemon's 4 MiB: same code */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-encoding must give a message of the same packed size as computed. */
static void repack(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (buf == NULL || protobuf_c_message_pack(m, buf) != n)
    abort();
  free(buf);
}

/* Returns 1 when the connection turned persistent. */
/* The NUL check walks the same bytes with the message's descriptor: any
 * input, without reading past the end; a refusal names its field. */
static void check_strings(const ProtobufCMessageDescriptor *d,
                          const uint8_t *msg, size_t len) {
  const char *field = NULL;
  int rv = np_pb_check_strings(d, msg, len, &field);
  if (rv == NP_EINVAL && field == NULL)
    abort();
  if (rv != 0 && rv != NP_EINVAL && rv != NP_EPROTO)
    abort();
}

static int request(const uint8_t *msg, size_t len) {
  Np__P2pd__Request *r;
  int upgrade = 0;
  check_strings(&np__p2pd__request__descriptor, msg, len);
  r = np__p2pd__request__unpack(NULL, len, msg);
  if (r == NULL)
    return 0; /* the server answers ERROR and closes */
  repack(&r->base);
  if (r->type == NP__P2PD__REQUEST__TYPE__REMOVE_STREAM_HANDLER &&
      r->has_field9) {
    Np__P2pd__RemoveStreamHandlerRequest *rm =
        np__p2pd__remove_stream_handler_request__unpack(NULL, r->field9.len,
                                                        r->field9.data);
    if (rm != NULL) {
      repack(&rm->base);
      np__p2pd__remove_stream_handler_request__free_unpacked(rm, NULL);
    }
  } else if (r->type == 9 && r->has_field9) {
    Np__P2pd__PeerstoreRequest *ps = np__p2pd__peerstore_request__unpack(
        NULL, r->field9.len, r->field9.data);
    if (ps != NULL) {
      repack(&ps->base);
      np__p2pd__peerstore_request__free_unpacked(ps, NULL);
    }
  } else if (r->type == NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE) {
    upgrade = 1;
  } else if (r->type == NP__P2PD__REQUEST__TYPE__DHT && r->dht &&
             r->dht->has_cid) {
    /* PROVIDE / FIND_PROVIDERS: the DHT key is the CID's multihash, a
     * tail of the bytes received. */
    const uint8_t *mh;
    size_t mhlen;
    const ProtobufCBinaryData *cid = &r->dht->cid;
    if (np_cid_multihash(cid->data, cid->len, &mh, &mhlen) == 0 &&
        (mh < cid->data || mhlen == 0 || mh + mhlen != cid->data + cid->len))
      abort();
  }
  np__p2pd__request__free_unpacked(r, NULL);
  return upgrade;
}

static void persistent(const uint8_t *msg, size_t len) {
  Np__P2pd__PersistentConnectionRequest *p;
  check_strings(&np__p2pd__persistent_connection_request__descriptor, msg,
                len);
  p = np__p2pd__persistent_connection_request__unpack(NULL, len, msg);
  if (p == NULL)
    return;
  repack(&p->base);
  np__p2pd__persistent_connection_request__free_unpacked(p, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_lp_reader r;
  size_t off = 1, chunk;
  int upgraded = 0;
  if (size < 1)
    return 0;
  chunk = data[0] ? data[0] : size;
  np_lp_init(&r, CTL_MAX);
  while (off < size) {
    const uint8_t *msg;
    size_t mlen, n = size - off < chunk ? size - off : chunk, used = 0;
    while (used < n) {
      np_ssize k = np_lp_feed(&r, data + off + used, n - used, &msg, &mlen);
      if (k < 0)
        goto out;
      used += (size_t)k;
      if (msg == NULL)
        continue;
      if (mlen > CTL_MAX)
        abort();
      if (upgraded)
        persistent(msg, mlen);
      else
        upgraded = request(msg, mlen);
    }
    off += n;
  }
out:
  np_lp_free(&r);
  return 0;
}
