/* libp2p TLS over a byte stream (/tls/1.0.0; libp2p-wire.md §4): TLS 1.3
 * records through wolfSSL with custom I/O callbacks, certificates and
 * their checks from np_tls (stream mode). Sans-I/O like np_noise:
 * ciphertext in (np_tlsstream_feed), ciphertext out (np_tlsstream_output),
 * plaintext through np_tlsstream_read/np_tlsstream_write. No clock, no
 * sockets.
 *
 * Early muxer negotiation rides on ALPN: the client offers its muxers then
 * "libp2p"; the server takes the first client entry it supports, and no
 * common entry fails the handshake. A muxer agreed there is
 * np_tlsstream_muxer; "libp2p" (or no ALPN from a peer that sent none)
 * means the caller negotiates the muxer with multistream inside TLS.
 *
 * Bounds: ciphertext input is buffered up to NP_TLSSTREAM_RX_MAX bytes
 * (feed takes less when full: read plaintext out first); np_tlsstream_write
 * takes nothing while NP_TLSSTREAM_OUT_SOFT bytes of output are pending,
 * so the output never exceeds that plus one record (or one handshake
 * flight). Loop thread only. */
#ifndef NP_TLSSTREAM_H
#define NP_TLSSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_peerid.h"
#include "np_tls.h"

#define NP_TLSSTREAM_PROTOCOL "/tls/1.0.0"
#define NP_TLSSTREAM_RECORD_MAX 16384 /* plaintext per record */
#define NP_TLSSTREAM_RX_MAX (2u * (NP_TLSSTREAM_RECORD_MAX + 256u + 5u))
#define NP_TLSSTREAM_OUT_SOFT (64u * 1024u)
#define NP_TLSSTREAM_MUXERS_MAX 8

typedef struct np_tlsstream np_tlsstream; /* opaque */

/* Starts one side: |initiator| (the dialer) is the TLS client. |t| comes
 * from np_tls_new_stream and must outlive |*ps|. |expected| (client only,
 * copied; NULL: any peer) fails the handshake with NP_EPEERID when the
 * server is another peer. |muxers| (0..NP_TLSSTREAM_MUXERS_MAX names of
 * 1..63 bytes without ',', copied) go first into ALPN, then "libp2p". The
 * client's first flight is in the output at once. Returns 0, NP_EINVAL,
 * NP_ENOMEM or NP_ECRYPTO. Free with np_tlsstream_del (NULL is fine). */
int np_tlsstream_new(np_tlsstream **ps, np_tls *t, int initiator,
                     const np_peerid *expected, const char *const *muxers,
                     size_t nmuxers);
void np_tlsstream_del(np_tlsstream *s);

/* Ciphertext from the peer, any split. Returns the bytes taken (fewer than
 * |len|, possibly 0, when the input buffer is full: np_tlsstream_read
 * first) and advances the handshake. Errors (sticky): NP_EPEERID,
 * NP_ECRYPTO (handshake failure, bad record), NP_EPROTO, NP_ENOTSUP,
 * NP_ELIMIT (certificate checks, see np_tls_verify_cert), NP_ENOMEM. */
np_ssize np_tlsstream_feed(np_tlsstream *s, const uint8_t *in, size_t len);

/* 1 once the handshake completed and the peer is verified. */
int np_tlsstream_done(const np_tlsstream *s);
int np_tlsstream_error(const np_tlsstream *s); /* sticky error or 0 */
/* Why it failed ("" if it did not), borrowed. */
const char *np_tlsstream_why(const np_tlsstream *s);

/* The verified peer: 0 once done, else NP_ENOENT or the failure. */
int np_tlsstream_remote(const np_tlsstream *s, np_peerid *out);

/* The muxer agreed in ALPN (one of ours, borrowed), or NULL. */
const char *np_tlsstream_muxer(const np_tlsstream *s);

/* Plaintext received, at most |cap| bytes. Returns the count, 0 when no
 * complete record is buffered, NP_ECLOSED after the peer's close_notify,
 * or a sticky error (NP_ECRYPTO, NP_EINVAL before the handshake). May
 * queue output (post-handshake messages): flush after. */
np_ssize np_tlsstream_read(np_tlsstream *s, uint8_t *buf, size_t cap);

/* Encrypts plaintext into records. Returns the bytes taken (0 while the
 * output is at its soft cap: drain it), NP_EINVAL before the handshake,
 * or a sticky error. */
np_ssize np_tlsstream_write(np_tlsstream *s, const uint8_t *pt, size_t len);

/* Pending ciphertext: |*out| is valid until the next call on |s|. */
size_t np_tlsstream_output(np_tlsstream *s, const uint8_t **out);
void np_tlsstream_output_drain(np_tlsstream *s, size_t len);

#endif
