/* A byte stream handed to a stream handler. The transport that owns it
 * fills in |ops|; handlers only see the SDK's np_stream_* calls. */
#ifndef NP_STREAM_H
#define NP_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "natpeer/plugin.h"
#include "np_list.h"
#include "np_peerid.h"

typedef struct np_stream_ops {
  int (*write)(np_stream *s, const uint8_t *data, size_t len);
  void (*close)(np_stream *s); /* graceful: finish writing, then close */
  void (*reset)(np_stream *s); /* abort, used when the handler unloads */
} np_stream_ops;

struct np_stream {
  const np_stream_ops *ops;
  np_stream_cbs cbs; /* handler callbacks, converted to the current size */
  void *ud;
  np_list owner_link; /* in the handler owner's stream list */
  char peer[NP_PEERID_STRMAX];
  int closed; /* on_close delivered */
};

/* Deliver on_close once and unlink from the owner. */
void np_stream_closed(np_stream *s, int err);

#endif
