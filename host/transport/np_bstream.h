/* Byte streams: what the connection upgrader (np_upgrade) runs over. A
 * non-blocking TCP socket today, a relayed np_cstream later (circuit
 * relay), an in-memory pair in tests. Ordered, reliable bytes both ways
 * with back-pressure in both directions; no framing, no security.
 *
 * A stream has one owner, who sets the callbacks, writes, reads through
 * on_data and finally calls close. Events never run from inside an ops
 * call: they come from libev watchers or np_defer work. Loop thread only. */
#ifndef NP_BSTREAM_H
#define NP_BSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_loop.h"

typedef struct np_bstream np_bstream;

typedef struct np_bstream_cbs {
  /* |len| (> 0) bytes arrived (borrowed). Returns how many were consumed;
   * fewer than |len| pauses reading (as pause(1)) and keeps the rest,
   * which comes first again after pause(0). */
  size_t (*on_data)(np_bstream *b, const uint8_t *data, size_t len, void *ud);
  /* The peer ended its direction (FIN) and every byte was consumed. */
  void (*on_eof)(np_bstream *b, void *ud);
  /* Once after write took fewer bytes than offered (or nothing while
   * connecting): more may be written now. */
  void (*on_writable)(np_bstream *b, void *ud);
  /* The stream broke: NP_EUNREACH (connect refused, no route),
   * NP_ETIMEDOUT (connect timed out), NP_ECLOSED (reset by the peer) or
   * NP_ESYS (logged with errno). Nothing follows; close it. */
  void (*on_error)(np_bstream *b, int err, void *ud);
} np_bstream_cbs;

typedef struct np_bstream_ops {
  /* Take up to |len| bytes. Returns the count taken (0 when nothing fits
   * now; fewer than |len| arms on_writable), or NP_ECLOSED (after
   * shutdown, a failure, or the peer gone). */
  np_ssize (*write)(np_bstream *b, const uint8_t *data, size_t len);
  /* End our direction (FIN) after the bytes taken. 0 or NP_ECLOSED. */
  int (*shutdown)(np_bstream *b);
  /* Stop (1) or resume (0) on_data. Resuming delivers kept bytes first,
   * from the loop. */
  void (*pause)(np_bstream *b, int paused);
  /* Our end's address as a binary multiaddr into |out|: its length,
   * NP_ENOENT (none) or NP_ELIMIT. */
  np_ssize (*local_addr)(const np_bstream *b, uint8_t *out, size_t cap);
  /* End the stream (TCP: close(2)) and free it; no event follows. Fine
   * from inside one of its callbacks. */
  void (*close)(np_bstream *b);
} np_bstream_ops;

/* Public part, first in every implementation's struct. */
struct np_bstream {
  const np_bstream_ops *ops;
  const np_bstream_cbs *cbs; /* the owner's, borrowed */
  void *ud;
};

static inline void np_bstream_set_cbs(np_bstream *b, const np_bstream_cbs *cbs,
                                      void *ud) {
  b->cbs = cbs;
  b->ud = ud;
}

/* Wrap the non-blocking TCP socket |fd|, owned from now on (closed by
 * close, or here on failure). |connecting|: a non-blocking connect(2) is
 * under way; writes take nothing until it completes (on_writable), a
 * refusal comes as on_error(NP_EUNREACH) and |connect_timeout_ms| (0:
 * none) bounds it with NP_ETIMEDOUT. Reads land in |rxbuf| (|rxcap|
 * bytes), which any number of streams on |loop| may share: only bytes
 * the owner leaves unconsumed are copied out. Returns 0 or NP_ENOMEM. */
int np_bstream_tcp_new(np_bstream **pb, np_loop *loop, int fd, int connecting,
                       uint64_t connect_timeout_ms, uint8_t *rxbuf,
                       size_t rxcap);

/* Two connected in-memory streams: what one writes the other reads on a
 * later loop turn. At most |cap| bytes are in flight each way; buffers
 * are freed whenever they empty. Closing one gives the other EOF after
 * what was written, and NP_ECLOSED on write. Returns 0, NP_EINVAL (cap 0)
 * or NP_ENOMEM. */
int np_bstream_pair_new(np_bstream **pa, np_bstream **pb, np_loop *loop,
                        size_t cap);

/* Simulations: |b| (one end of a pair) belongs to a host that can vanish
 * without notice: once *|gone| is nonzero, what it writes is taken and
 * lost, what was written to it is never delivered and it gets no more
 * events, and neither its close nor its shutdown reaches the other end
 * (whose writes are then taken and lost too): an unplugged machine.
 * |gone| must outlive |b|. Other streams are left as they are. */
void np_bstream_pair_set_gone(np_bstream *b, const int *gone);

#endif
