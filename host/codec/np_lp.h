/* Length-prefixed framing: each message is uvarint(length) || bytes, as
 * used by identify, the p2pd control socket and hivemind's unary calls.
 * Sans-I/O: bytes in, complete messages out. The length prefix is checked
 * against the caller's limit before anything is buffered or allocated. */
#ifndef NP_LP_H
#define NP_LP_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"
#include "np_varint.h"

/* Incremental reader; embed it and call np_lp_init / np_lp_free. Fields are
 * private. */
typedef struct np_lp_reader {
  size_t max;                 /* largest message accepted */
  uint8_t hdr[NP_VARINT_MAX]; /* prefix bytes seen so far */
  size_t hdr_len;
  int in_body;   /* prefix complete, reading |want| body bytes */
  size_t want;   /* declared message length */
  size_t have;   /* body bytes buffered */
  uint8_t *buf;  /* heap copy of a message that arrived split */
  int delivered; /* last call returned a message that lives in buf */
  int err;       /* sticky error, 0 while usable */
  uint64_t declared; /* NP_ELIMIT: the length the prefix announced */
  size_t err_off;    /* bytes of the failing call's input taken (prefix) */
} np_lp_reader;

/* Set up |r| to accept messages of at most |max| bytes (without prefix). */
void np_lp_init(np_lp_reader *r, size_t max);
/* Release the buffer of |r|; |r| may be initialised again afterwards. */
void np_lp_free(np_lp_reader *r);

/* Consume input up to the end of at most one message. Returns the number of
 * bytes consumed (0..len), and when a message became complete sets |*msg|
 * to it and |*msglen| to its length (|*msg| is NULL otherwise). The message
 * points either into |in| or into |r|'s buffer, and stays valid until the
 * next call on |r| or until |in| changes, whichever comes first. Feed the
 * rest of |in| again to read further messages. Errors (the reader is then
 * unusable until np_lp_free + np_lp_init):
 *   NP_ELIMIT  the prefix announces more than |max| bytes (nothing buffered)
 *   NP_EPROTO  the prefix is not a minimal uvarint of at most 9 bytes
 *   NP_ENOMEM  no memory for a message that arrived in pieces */
np_ssize np_lp_feed(np_lp_reader *r, const uint8_t *in, size_t len,
                    const uint8_t **msg, size_t *msglen);

/* After NP_ELIMIT: the announced length, and how many bytes of the input
 * of that np_lp_feed call the prefix took (the body starts there), so a
 * caller can skip the message instead of dropping the stream. */
uint64_t np_lp_declared(const np_lp_reader *r);
size_t np_lp_error_offset(const np_lp_reader *r);

/* Nonzero when |r| sits between messages, i.e. an end of stream now is
 * clean; zero when it holds part of a prefix or a body (truncation). */
int np_lp_idle(const np_lp_reader *r);

/* One-shot: read the message at the start of |in| (|len| bytes). Returns
 * the bytes taken by prefix and message together and sets |*msg|/|*msglen|
 * (pointing into |in|), NP_ETRUNC if |in| ends first, NP_ELIMIT if the
 * prefix announces more than |max| bytes, or NP_EPROTO for a bad prefix. */
np_ssize np_lp_parse(const uint8_t *in, size_t len, size_t max,
                     const uint8_t **msg, size_t *msglen);

/* Write the uvarint prefix for a |len|-byte message to |out| (|cap| bytes,
 * NP_VARINT_MAX always fits). Returns the prefix length or NP_ELIMIT. */
np_ssize np_lp_put_prefix(size_t len, uint8_t *out, size_t cap);

/* Bytes that the prefix of a |len|-byte message takes. */
size_t np_lp_prefix_size(size_t len);

#endif
