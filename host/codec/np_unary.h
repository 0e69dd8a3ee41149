/* hivemind's unary calls between daemons (p2pd-control.md §2.3), sans-I/O.
 * On a libp2p stream whose protocol ID is the handler name, the caller
 * writes one uvarint-delimited
 *   PersistentConnectionRequest{callId, callUnary{peer, proto, data}}
 * and the callee answers with one uvarint-delimited
 *   PersistentConnectionRequest{callId, unaryResponse{response | error}}
 * (a Request, field 4, not a PersistentConnectionResponse), then closes.
 * Encoders write the whole frame, prefix included. Decoders check the size
 * against the caller's limit before decoding anything. */
#ifndef NP_UNARY_H
#define NP_UNARY_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_UNARY_CALLID_LEN 16 /* uuid4 bytes; other lengths are refused */
#define NP_UNARY_MAX_DEFAULT (4u << 20) /* -persistentConnMaxMsgSize */

/* A call. For encoding, fill the public fields (|proto| NUL-terminated,
 * |proto_len| ignored); decoded calls point into memory owned by the
 * struct until np_unary_req_free. */
typedef struct np_unary_req {
  uint8_t call_id[NP_UNARY_CALLID_LEN];
  const uint8_t *peer; /* binary peer ID: the target as sent by the caller;
                          the callee overwrites it with the remote's ID */
  size_t peer_len;
  const char *proto; /* handler name, NUL-terminated */
  size_t proto_len;
  const uint8_t *data;
  size_t data_len;
  void *pb_; /* private: the decoded protobuf */
} np_unary_req;

/* An answer: the handler's response bytes, or (is_error) its error text. */
typedef struct np_unary_resp {
  uint8_t call_id[NP_UNARY_CALLID_LEN];
  int is_error;
  const uint8_t *data;
  size_t data_len;
  void *pb_; /* private: the decoded protobuf */
} np_unary_resp;

/* Size of the whole frame np_unary_encode_req would write. */
size_t np_unary_req_size(const np_unary_req *r);
/* Write the frame for |r| to |out| (|cap| bytes). Returns its length,
 * NP_EINVAL (proto NULL, or peer/data NULL with a nonzero length) or
 * NP_ELIMIT (|cap| too small). */
np_ssize np_unary_encode_req(const np_unary_req *r, uint8_t *out, size_t cap);

/* Decode one message body (without its prefix, e.g. from np_lp_feed) into
 * |r|. Returns 0 or
 *   NP_ELIMIT  |len| > |max|, checked first
 *   NP_EPROTO  not a PersistentConnectionRequest, no callUnary in it, or a
 *              callId that is not NP_UNARY_CALLID_LEN bytes
 *   NP_ENOMEM
 * On error |r| holds nothing to free; |err| (|errlen| bytes, may be NULL)
 * gets one line saying why, fit for a DaemonError. On success free |r| with
 * np_unary_req_free. */
int np_unary_parse_req(np_unary_req *r, const uint8_t *body, size_t len,
                       size_t max, char *err, size_t errlen);
/* As np_unary_parse_req, for a frame at the start of |in|: returns the
 * bytes taken (prefix + body), NP_ETRUNC if |in| ends inside the frame, or
 * an error as above (NP_ELIMIT comes from the prefix alone, NP_EPROTO also
 * for a malformed prefix). */
np_ssize np_unary_decode_req(np_unary_req *r, const uint8_t *in, size_t len,
                             size_t max, char *err, size_t errlen);
void np_unary_req_free(np_unary_req *r);

/* Size and encoding of the answer frame; as for requests. Returns
 * NP_EINVAL if data is NULL with a nonzero length. */
size_t np_unary_resp_size(const np_unary_resp *r);
np_ssize np_unary_encode_resp(const np_unary_resp *r, uint8_t *out, size_t cap);
/* As for requests; NP_EPROTO also when the message has no unaryResponse.
 * A CallUnaryResponse with neither member set reads as an empty success;
 * one with `error` set is an error whatever else it holds. */
int np_unary_parse_resp(np_unary_resp *r, const uint8_t *body, size_t len,
                        size_t max, char *err, size_t errlen);
np_ssize np_unary_decode_resp(np_unary_resp *r, const uint8_t *in, size_t len,
                              size_t max, char *err, size_t errlen);
void np_unary_resp_free(np_unary_resp *r);

#endif
