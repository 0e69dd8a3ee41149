/* protobuf-c helpers for the codecs: checks on raw protobuf bytes that
 * unpack cannot make (it copies a string field up to its length and hands
 * it out NUL-terminated, so "a\0b" silently becomes "a"), unpacking under
 * a memory budget, and packing with or without a length prefix. */
#ifndef NP_PB_H
#define NP_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

/* Walk |buf| as a message of type |d| (recursing into known sub-message
 * fields, at most 16 deep) and find a `string` field holding a NUL byte.
 * Returns 0 if there is none, NP_EINVAL if there is (|*field| names it),
 * NP_EPROTO if the bytes are not a well-formed message. */
int np_pb_check_strings(const ProtobufCMessageDescriptor *d,
                        const uint8_t *buf, size_t len, const char **field);

/* protobuf-c sizes its allocations from counts in the input: 2 wire bytes
 * of an empty sub-message cost ~64 heap bytes. Unpack |len| bytes of |buf|
 * as a |d| message with an allocator that refuses once |budget| bytes were
 * handed out. Returns the message (free with np_pb_free), or NULL with
 * |*err| set: NP_ELIMIT (budget exhausted) or NP_EPROTO (not a |d|
 * message, or a required field missing). */
ProtobufCMessage *np_pb_unpack(const ProtobufCMessageDescriptor *d,
                               const uint8_t *buf, size_t len, size_t budget,
                               int *err);
void np_pb_free(ProtobufCMessage *m);

/* Pack |m| into |out| (|cap| bytes), preceded by its uvarint length when
 * |lp| is nonzero. Returns the bytes written, or NP_ELIMIT when the body
 * exceeds |max| or the whole does not fit in |cap|. */
np_ssize np_pb_pack(const ProtobufCMessage *m, size_t max, int lp,
                    uint8_t *out, size_t cap);

#endif
