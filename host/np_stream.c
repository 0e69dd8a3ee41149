#include "np_stream.h"

void np_stream_closed(np_stream *s, int err) {
  if (s->closed)
    return;
  s->closed = 1;
  np_list_remove(&s->owner_link);
  if (s->cbs.on_close)
    s->cbs.on_close(s, err, s->ud);
}
