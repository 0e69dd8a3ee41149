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
