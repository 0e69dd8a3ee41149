/* Yamux stream multiplexer, /yamux/1.0.0 (libp2p-wire.md §9; hashicorp
 * yamux spec.md). Sans-I/O: the caller feeds the bytes read from the
 * secured connection, sends what np_yamux_output hands out, and passes the
 * current time in milliseconds where a call needs it. No sockets, no
 * timers, no clock reads.
 *
 * Frames: 12-byte header, big-endian: version (0) | type | flags u16 |
 * stream id u32 | length u32. The client (the connection's initiator) uses
 * odd stream ids, the server even ones; 0 is the session.
 *
 * Flow control is per stream. Received data is handed to on_data and then
 * counts against the receive window until the application reports it
 * consumed (np_yamux_consumed): only then is credit returned to the peer.
 * A receiver that stops consuming therefore stops the remote writer, and
 * what it holds is bounded by the window it granted (<= max_window).
 *
 * Callbacks run only from inside np_yamux_* calls, never from another
 * thread. Pointers handed to a callback are borrowed for that call. A
 * callback may call any np_yamux_* function except np_yamux_feed and
 * np_yamux_del. */
#ifndef NP_YAMUX_H
#define NP_YAMUX_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_YAMUX_PROTOCOL "/yamux/1.0.0"
#define NP_YAMUX_HEADER_SIZE 12
/* Window both sides assume for a new stream before any update. */
#define NP_YAMUX_INITIAL_WINDOW (256u * 1024u)
/* Largest DATA frame we send (go does the same): keeps streams fair. */
#define NP_YAMUX_MAX_FRAME (64u * 1024u)

enum np_yamux_type {
  NP_YAMUX_DATA = 0,
  NP_YAMUX_WINDOW_UPDATE = 1,
  NP_YAMUX_PING = 2,
  NP_YAMUX_GO_AWAY = 3
};
enum np_yamux_flag {
  NP_YAMUX_SYN = 1,
  NP_YAMUX_ACK = 2,
  NP_YAMUX_FIN = 4,
  NP_YAMUX_RST = 8
};
enum np_yamux_goaway_code {
  NP_YAMUX_GOAWAY_NORMAL = 0,
  NP_YAMUX_GOAWAY_PROTO = 1,
  NP_YAMUX_GOAWAY_INTERNAL = 2
};

typedef struct np_yamux np_yamux;               /* opaque; one connection */
typedef struct np_yamux_stream np_yamux_stream; /* opaque; see on_close */

typedef struct np_yamux_config {
  /* Receive window of each new stream; at least NP_YAMUX_INITIAL_WINDOW
   * (the peer assumes that much), the extra is granted with SYN/ACK. */
  uint32_t initial_window;
  /* Auto-tuning doubles a stream's window up to this, never beyond. It is
   * also the most a stream ever holds unconsumed (delivered or paused). */
  uint32_t max_window;
  /* Concurrent streams the peer may open; a SYN beyond gets RST. */
  uint32_t max_streams;
  /* Our streams not yet acknowledged by the peer (spec: 256). */
  uint32_t max_unacked;
  /* Output high-water mark: np_yamux_write refuses data while this many
   * bytes wait in the output, and np_yamux_feed stops reading frames a
   * little above it (room for control answers) until it is drained. */
  size_t max_output;
} np_yamux_config;

/* initial_window 256 KiB, max_window 16 MiB, max_streams 256 (go's SYN
 * backlog; js allows 1000), max_unacked 256, max_output 1 MiB. */
void np_yamux_config_default(np_yamux_config *cfg);

typedef struct np_yamux_cbs {
  /* The peer opened |st|. Return 0 to accept it (np_yamux_stream_set_ud may
   * attach state), nonzero to refuse it with RST (|st| then vanishes, no
   * on_close). NULL refuses every stream. */
  int (*on_stream_open)(np_yamux_stream *st, void *ud);
  /* |len| (> 0) bytes arrived on |st|, in order. They count against the
   * receive window until np_yamux_consumed (may be called right here). */
  void (*on_data)(np_yamux_stream *st, const uint8_t *data, size_t len,
                  void *ud, void *stream_ud);
  /* The peer half-closed |st| (FIN): no more data follows. */
  void (*on_fin)(np_yamux_stream *st, void *ud, void *stream_ud);
  /* A write to |st| that was refused or cut short can make progress now. */
  void (*on_writable)(np_yamux_stream *st, void *ud, void *stream_ud);
  /* Last callback for |st|, which is freed when it returns. |err|: 0 both
   * directions finished (FIN both ways); NP_ECLOSED the peer reset it
   * (RST); NP_ECANCELED reset here (np_yamux_reset, np_yamux_del);
   * NP_EPROTO the peer broke the protocol on it (reset by us), or the
   * session error. May run inside the np_yamux_* call that ended it. */
  void (*on_close)(np_yamux_stream *st, int err, void *ud, void *stream_ud);
  /* Our ping was answered after |rtt_ms|. */
  void (*on_ping)(np_yamux *s, uint64_t rtt_ms, void *ud);
  /* The peer will accept no new streams; existing ones go on. */
  void (*on_goaway)(np_yamux *s, uint32_t code, void *ud);
  /* The session failed with |err| (NP_EPROTO peer broke the protocol,
   * NP_ENOMEM): a GO_AWAY is queued, every stream gets on_close(err) next.
   * Flush the output, then close the connection. */
  void (*on_error)(np_yamux *s, int err, void *ud);
} np_yamux_cbs;

/* Create a session; |is_client| is the connection's initiator (odd stream
 * ids). |cfg| (NULL: defaults) and |cbs| are copied; |ud| is passed to every
 * callback. Returns 0, NP_ENOMEM, or NP_EINVAL (initial_window below
 * 256 KiB, max_window below initial_window or above 1 GiB, max_output below
 * 1 KiB). Free with np_yamux_del. */
int np_yamux_new(np_yamux **ps, int is_client, const np_yamux_config *cfg,
                 const np_yamux_cbs *cbs, void *ud);
/* Free |s| (NULL is fine): every live stream gets on_close(NP_ECANCELED)
 * first. Not from a callback. */
void np_yamux_del(np_yamux *s);

/* Parse frames from the peer (any split, one byte at a time included) and
 * run the callbacks. Returns the bytes consumed: |len|, or fewer when the
 * output is over its bound (drain it, then feed the rest again), or the
 * session error (sticky; NP_EPROTO, NP_ENOMEM). */
np_ssize np_yamux_feed(np_yamux *s, const uint8_t *in, size_t len,
                       uint64_t now_ms);

/* Bytes waiting to be sent: sets |*out| and returns their number. Valid
 * until the next np_yamux_* call. After a session error it still holds the
 * GO_AWAY. */
size_t np_yamux_output(const np_yamux *s, const uint8_t **out);
/* Remove the first |n| output bytes once written (clamped). May run
 * on_writable callbacks. */
void np_yamux_output_drain(np_yamux *s, size_t n);

/* Send a ping; its answer gives on_ping and the RTT used for window
 * auto-tuning. Returns 0, NP_ELIMIT (one is outstanding) or the session
 * error. */
int np_yamux_ping(np_yamux *s, uint64_t now_ms);
/* Send GO_AWAY(|code|): the peer's new streams are refused from now on.
 * Returns 0, NP_EEXIST (already sent) or the session error. */
int np_yamux_goaway(np_yamux *s, uint32_t code);
/* The session error, or 0. */
int np_yamux_error(const np_yamux *s);
/* Last measured RTT in ms; 0 before the first ping answer. */
uint64_t np_yamux_rtt(const np_yamux *s);
/* Streams alive (both directions), and those the peer opened. */
size_t np_yamux_num_streams(const np_yamux *s);
size_t np_yamux_num_inbound(const np_yamux *s);

/* Open a stream. Nothing is sent yet: the SYN goes out with the first
 * frame (data, FIN or a window update), as in go-yamux. Returns 0,
 * NP_ECLOSED (GO_AWAY received or sent, or session failed), NP_ELIMIT
 * (max_unacked streams await an ACK, or stream ids are exhausted) or
 * NP_ENOMEM. */
int np_yamux_open(np_yamux *s, np_yamux_stream **pst, void *stream_ud);

/* Queue up to |len| bytes of |data| (copied) on |st|. Returns the bytes
 * accepted (> 0; fewer than |len| when the send window or the output bound
 * runs out), 0 for |len| == 0, NP_ELIMIT when nothing fits now (on_writable
 * follows), NP_ECLOSED after np_yamux_close_write, or the session error. */
np_ssize np_yamux_write(np_yamux_stream *st, const uint8_t *data, size_t len);
/* Half-close: send FIN. Returns 0, NP_ECLOSED (already closed) or the
 * session error. */
int np_yamux_close_write(np_yamux_stream *st);
/* Abort |st| (RST to the peer). on_close(NP_ECANCELED) follows, possibly
 * before this returns; do not use |st| afterwards. */
void np_yamux_reset(np_yamux_stream *st);
/* The application is done with |n| more bytes delivered by on_data (held
 * bytes of a paused stream do not count until delivered); the
 * credit goes back to the peer in batches of half a window. |now_ms| drives
 * auto-tuning: with a known RTT, a window refilled within 2 RTT doubles
 * (up to max_window). Returns 0, NP_EINVAL (more than delivered) or the
 * session error. */
int np_yamux_consumed(np_yamux_stream *st, size_t n, uint64_t now_ms);
/* Pause (1) or resume (0) on_data for |st|. While paused, arriving data is
 * kept (at most the granted window); resuming delivers it, before this
 * returns or, inside a callback, when the current np_yamux_* call ends. */
void np_yamux_pause(np_yamux_stream *st, int paused);

uint32_t np_yamux_stream_id(const np_yamux_stream *st);
void *np_yamux_stream_ud(const np_yamux_stream *st);
void np_yamux_stream_set_ud(np_yamux_stream *st, void *stream_ud);
/* The stream's current receive window (grows with auto-tuning). */
uint32_t np_yamux_stream_recv_window(const np_yamux_stream *st);
/* Bytes the peer still lets us send. */
uint32_t np_yamux_stream_send_window(const np_yamux_stream *st);
/* Bytes delivered or held while paused and not yet consumed. */
size_t np_yamux_stream_unconsumed(const np_yamux_stream *st);

/* Frame header codec, exposed for tests and tools. */
typedef struct np_yamux_header {
  uint8_t version, type;
  uint16_t flags;
  uint32_t stream_id, length;
} np_yamux_header;
void np_yamux_header_encode(uint8_t out[NP_YAMUX_HEADER_SIZE], uint8_t type,
                            uint16_t flags, uint32_t stream_id,
                            uint32_t length);
void np_yamux_header_decode(const uint8_t in[NP_YAMUX_HEADER_SIZE],
                            np_yamux_header *h);

#endif
