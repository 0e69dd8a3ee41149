#include "np_pb.h"

#include <string.h>

#include "np_err.h"
#include "np_varint.h"

#define PB_MAX_DEPTH 16

static int walk(const ProtobufCMessageDescriptor *d, const uint8_t *buf,
                size_t len, const char **field, int depth) {
  size_t off = 0;
  if (depth > PB_MAX_DEPTH)
    return NP_EPROTO;
  while (off < len) {
    uint64_t tag, v;
    np_ssize n = np_varint_decode(buf + off, len - off, &tag);
    const ProtobufCFieldDescriptor *f;
    if (n < 0)
      return NP_EPROTO;
    off += (size_t)n;
    if (tag >> 3 == 0 || tag >> 3 > UINT32_MAX)
      return NP_EPROTO;
    f = d ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
          : NULL;
    switch (tag & 7) {
    case 0: /* varint */
      if ((n = np_varint_decode(buf + off, len - off, &v)) < 0)
        return NP_EPROTO;
      off += (size_t)n;
      break;
    case 1: /* fixed64 */
      if (len - off < 8)
        return NP_EPROTO;
      off += 8;
      break;
    case 5: /* fixed32 */
      if (len - off < 4)
        return NP_EPROTO;
      off += 4;
      break;
    case 2: { /* length-delimited */
      int rv;
      if ((n = np_varint_decode(buf + off, len - off, &v)) < 0)
        return NP_EPROTO;
      off += (size_t)n;
      if (v > len - off)
        return NP_EPROTO;
      if (f && f->type == PROTOBUF_C_TYPE_STRING &&
          memchr(buf + off, 0, (size_t)v) != NULL) {
        if (field)
          *field = f->name;
        return NP_EINVAL;
      }
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          (rv = walk(f->descriptor, buf + off, (size_t)v, field,
                     depth + 1)) != 0)
        return rv;
      off += (size_t)v;
      break;
    }
    default: /* groups (3, 4) and reserved types: not in our .proto files */
      return NP_EPROTO;
    }
  }
  return 0;
}

int np_pb_check_strings(const ProtobufCMessageDescriptor *d,
                        const uint8_t *buf, size_t len, const char **field) {
  if (field)
    *field = NULL;
  return walk(d, buf, len, field, 0);
}
