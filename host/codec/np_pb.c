#include "np_pb.h"

#include <limits.h>
#include <stdlib.h>
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

typedef struct budget {
  size_t left;
  int over;
} budget;

static void *budget_alloc(void *ud, size_t size) {
  budget *b = ud;
  if (size > b->left) {
    b->over = 1;
    return NULL;
  }
  b->left -= size;
  return malloc(size);
}

static void budget_free(void *ud, void *p) {
  (void)ud;
  free(p);
}

ProtobufCMessage *np_pb_unpack(const ProtobufCMessageDescriptor *d,
                               const uint8_t *buf, size_t len, size_t bytes,
                               int *err) {
  budget b = {bytes, 0};
  ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
  ProtobufCMessage *m = protobuf_c_message_unpack(d, &alloc, len, buf);
  if (m == NULL)
    *err = b.over ? NP_ELIMIT : NP_EPROTO;
  return m;
}

/* budget_alloc hands out plain malloc blocks: the default allocator frees
 * them. */
void np_pb_free(ProtobufCMessage *m) {
  if (m != NULL)
    protobuf_c_message_free_unpacked(m, NULL);
}

np_ssize np_pb_pack(const ProtobufCMessage *m, size_t max, int lp,
                    uint8_t *out, size_t cap) {
  size_t n = protobuf_c_message_get_packed_size(m), pre = 0;
  if (n > max || n > (size_t)SSIZE_MAX / 2)
    return NP_ELIMIT;
  if (lp) {
    pre = np_varint_size(n);
    if (pre > cap || np_varint_encode(n, out, cap) != (np_ssize)pre)
      return NP_ELIMIT;
  }
  if (n > cap - pre)
    return NP_ELIMIT;
  return (np_ssize)(pre + protobuf_c_message_pack(m, out + pre));
}
