/* Checks on raw protobuf bytes that protobuf-c's unpack cannot make: it
 * copies a string field up to its length and hands it out NUL-terminated,
 * so "a\0b" silently becomes "a". Run before (or after) unpacking. */
#ifndef NP_PB_H
#define NP_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Walk |buf| as a message of type |d| (recursing into known sub-message
 * fields, at most 16 deep) and find a `string` field holding a NUL byte.
 * Returns 0 if there is none, NP_EINVAL if there is (|*field| names it),
 * NP_EPROTO if the bytes are not a well-formed message. */
int np_pb_check_strings(const ProtobufCMessageDescriptor *d,
                        const uint8_t *buf, size_t len, const char **field);

#endif
