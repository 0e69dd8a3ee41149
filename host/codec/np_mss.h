/* multistream-select 1.0 (libp2p-wire.md §3), one negotiator per stream.
 * Sans-I/O: feed it the bytes read from the stream, send what
 * np_mss_output hands out, and look at np_mss_state.
 *
 * Every message is uvarint(len) || name || '\n', len counting the '\n' and
 * at most NP_MSS_MAX_MSG. Each side first sends "/multistream/1.0.0"; the
 * dialer sends it together with its first proposal and never waits for the
 * listener's header (js listeners answer only after reading it). `ls` is
 * answered with `na`, as go does.
 *
 * Bytes after the final message (the listener's echo for a dialer, the
 * accepted proposal for a listener) are application data: np_mss_feed
 * never consumes them. */
#ifndef NP_MSS_H
#define NP_MSS_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"

#define NP_MSS_PROTOCOL "/multistream/1.0.0"
#define NP_MSS_MAX_MSG 1024 /* bytes of one message incl. '\n' (go, js) */
#define NP_MSS_MAX_NAME (NP_MSS_MAX_MSG - 1) /* longest protocol name */
#define NP_MSS_MAX_PROPOSALS 16 /* protocols a dialer may try in turn */
#define NP_MSS_MAX_NA 16        /* refusals a listener sends before failing */
/* Output held until drained: the header plus two full messages. */
#define NP_MSS_OUT_CAP (32 + 2 * (2 + NP_MSS_MAX_MSG))

enum np_mss_role { NP_MSS_DIALER = 0, NP_MSS_LISTENER = 1 };
enum np_mss_state {
  NP_MSS_NEGOTIATING = 0,
  NP_MSS_DONE = 1,  /* a protocol was agreed: np_mss_protocol */
  NP_MSS_FAILED = 2 /* np_mss_error says why; abort (reset) the stream */
};
#define NP_MSS_LAZY 1 /* dialer flag, see np_mss_init_dialer */

/* Listener's question: is |name| (|len| bytes, NUL-terminated, no NUL or
 * '\n' inside) served here? Return nonzero to accept it. */
typedef int (*np_mss_lookup_cb)(const char *name, size_t len, void *ud);

/* Per-stream state; embed it. Holds no heap memory, so there is no _free.
 * Fields are private. */
typedef struct np_mss {
  int role, state, err, flags;
  int got_header;            /* the peer's "/multistream/1.0.0" was read */
  int pending;               /* a complete message waits for output room */
  const char *const *protos; /* dialer: borrowed proposal list */
  size_t nprotos, cur;       /* dialer: proposal being tried */
  unsigned na_count;         /* listener: refusals sent */
  np_mss_lookup_cb lookup;
  void *ud;
  uint8_t hdr[2]; /* length prefix in progress (2 bytes cover 1024) */
  size_t hdr_len;
  int in_body;
  size_t want, have; /* current message length / bytes read */
  size_t out_len;
  /* Buffers last: init zeroes only what comes before them. */
  char line[NP_MSS_MAX_MSG + 1]; /* current message; the agreed name */
  uint8_t out[NP_MSS_OUT_CAP];
} np_mss;

/* Start a dialer proposing |protos[0..n-1]| in order (1 <= n <=
 * NP_MSS_MAX_PROPOSALS, each 1..NP_MSS_MAX_NAME bytes without '\n'). The
 * strings are borrowed until the state leaves NP_MSS_NEGOTIATING. The
 * header and the first proposal are queued at once. With NP_MSS_LAZY in
 * |flags| (needs n == 1) the caller may write application data right after
 * them (np_mss_can_write) while the echo is still to come; an `na` then
 * fails the stream with NP_ENOPROTO. Returns 0 or NP_EINVAL. */
int np_mss_init_dialer(np_mss *m, const char *const *protos, size_t n,
                       int flags);

/* Start a listener that asks |lookup| about each proposal; its header is
 * queued at once (as go does). Returns 0 or NP_EINVAL (no callback). */
int np_mss_init_listener(np_mss *m, np_mss_lookup_cb lookup, void *ud);

/* Consume bytes read from the stream. Returns the number of bytes consumed
 * (less than |len| once negotiation ends: the rest is application data; 0
 * in any state but NP_MSS_NEGOTIATING), or, when negotiation fails, the
 * error (also kept in np_mss_error):
 *   NP_EPROTO   not multistream: bad first message, a line without '\n',
 *               an empty message, a dialer getting neither echo nor `na`
 *   NP_ELIMIT   a message over NP_MSS_MAX_MSG bytes, or a listener refused
 *               more than NP_MSS_MAX_NA proposals
 *   NP_ENOPROTO a dialer's proposals were all refused
 * Input may be split anywhere, one byte per call included. When the output
 * buffer is too full to answer, consumption pauses after the message in
 * question: drain the output (np_mss_drain), then call again (|len| may be
 * 0) to continue. */
np_ssize np_mss_feed(np_mss *m, const uint8_t *in, size_t len);

/* Bytes queued for sending: sets |*out| and returns their number (0 when
 * none). Valid until the next call that changes |m|. */
size_t np_mss_output(const np_mss *m, const uint8_t **out);
/* Remove the first |n| queued bytes once they are written (n is clamped). */
void np_mss_drain(np_mss *m, size_t n);

/* NP_MSS_NEGOTIATING, NP_MSS_DONE or NP_MSS_FAILED. */
int np_mss_state(const np_mss *m);
/* The failure code when FAILED, else 0. */
int np_mss_error(const np_mss *m);
/* The agreed protocol (NUL-terminated, inside |m|) and its length in |*len|
 * (may be NULL) when DONE; NULL otherwise. */
const char *np_mss_protocol(const np_mss *m, size_t *len);
/* Nonzero when application data may be written after the queued output:
 * DONE, or a lazy dialer still waiting for its echo. */
int np_mss_can_write(const np_mss *m);

/* Encode one multistream message for |name| (|len| bytes) into |out|.
 * Returns its size, NP_EINVAL (empty name or one containing '\n') or
 * NP_ELIMIT (name over NP_MSS_MAX_NAME bytes, or |cap| too small). */
np_ssize np_mss_encode(const char *name, size_t len, uint8_t *out, size_t cap);

#endif
