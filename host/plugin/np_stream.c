#include "np_stream.h"

#include <string.h>

void np_stream_set_cbs(np_stream *s, const np_stream_cbs *cbs, void *ud) {
  size_t n = cbs->struct_size < sizeof(s->cbs) ? cbs->struct_size
                                               : sizeof(s->cbs);
  memset(&s->cbs, 0, sizeof(s->cbs));
  memcpy(&s->cbs, cbs, n);
  s->cbs.struct_size = sizeof(s->cbs);
  s->ud = ud;
}

void np_stream_closed(np_stream *s, int err) {
  if (s->closed)
    return;
  s->closed = 1;
  np_list_remove(&s->owner_link);
  if (s->cbs.on_close)
    s->cbs.on_close(s, err, s->ud);
}

void np_stream_abandon(np_stream *s, int err) {
  if (!s->closed && s->ops && s->ops->reset)
    s->ops->reset(s);
  np_stream_closed(s, err);
  s->cbs.on_open = NULL;
  s->cbs.on_data = NULL;
  s->cbs.on_close = NULL;
  s->cbs.on_writable = NULL;
  s->ud = NULL;
}

void np_stream_ignore_data(np_stream *s, const uint8_t *d, size_t len,
                           void *ud) {
  (void)s, (void)d, (void)len, (void)ud;
}

void np_stream_ignore_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err, (void)ud;
}

const np_stream_cbs np_stream_linger_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = np_stream_ignore_data,
    .on_close = np_stream_ignore_close,
};
