/* A byte stream handed to a stream handler (plugin, control client or host
 * module). The transport that owns it fills in |ops| and |impl|; plugins
 * only see the SDK's stream_* calls and their np_stream_cbs, host modules
 * also the members below. on_data with (NULL, 0) is the remote's FIN. */
#ifndef NP_STREAM_H
#define NP_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "natpeer/plugin.h"
#include "np_list.h"
#include "np_peerid.h"

typedef struct np_stream_ops {
  /* 0, NP_ELIMIT (send buffer full, nothing queued) or NP_ECLOSED. */
  int (*write)(np_stream *s, const uint8_t *data, size_t len);
  void (*close)(np_stream *s); /* graceful: finish writing (FIN) */
  void (*reset)(np_stream *s); /* abort both directions */
  /* Stop (1) or resume (0) delivering on_data; while paused the transport
   * withholds flow-control credit, so the remote slows down. */
  void (*pause)(np_stream *s, int paused);
  /* Host modules: queue all |len| bytes, then FIN if |fin|. What the
   * transport cannot take now is copied and written, in order, as room
   * appears. If more than |max_queued| bytes would wait, the stream is
   * reset instead and NP_ELIMIT returned. 0, NP_ELIMIT, NP_ECLOSED or
   * NP_ENOMEM. */
  int (*send)(np_stream *s, const uint8_t *data, size_t len, int fin,
              size_t max_queued);
} np_stream_ops;

struct np_stream {
  const np_stream_ops *ops;
  void *impl;        /* the transport's own stream object */
  np_stream_cbs cbs; /* receiver callbacks, converted to the current size */
  void *ud;
  np_list owner_link; /* in the handler owner's stream list */
  char peer[NP_PEERID_STRMAX];
  char proto[128]; /* negotiated protocol (truncated for display) */
  const char *name; /* the whole negotiated protocol, |name_len| bytes and
                       a NUL; valid until on_close returns */
  size_t name_len;
  np_peerid peer_id; /* the authenticated remote */
  uint8_t addr[128]; /* remote multiaddr of the connection, binary */
  size_t addr_len;
  int closed;      /* on_close delivered */
};

/* Set the receiver of |s|: |cbs| is converted to the current size (a
 * shorter, older struct leaves the newer members NULL). */
void np_stream_set_cbs(np_stream *s, const np_stream_cbs *cbs, void *ud);

/* Transport side: deliver on_close once and unlink from the owner. */
void np_stream_closed(np_stream *s, int err);

/* For an owner letting go of a stream it no longer reads: callbacks that
 * ignore data and close (np_stream_set_cbs(s, &np_stream_linger_cbs,
 * NULL), then close or reset it). */
void np_stream_ignore_data(np_stream *s, const uint8_t *d, size_t len,
                           void *ud);
void np_stream_ignore_close(np_stream *s, int err, void *ud);
extern const np_stream_cbs np_stream_linger_cbs;

/* Owner side, for an owner going away: reset |s|, deliver its on_close
 * (|err|) now, and take the owner's callbacks off it, so nothing of the
 * owner runs again; the transport frees |s| later. */
void np_stream_abandon(np_stream *s, int err);

#endif
