/* libp2p Noise (/noise; libp2p/specs noise/README.md, libp2p-wire.md §8):
 * the XX handshake with the libp2p payload (host key, its signature over
 * the Noise static key, early muxer negotiation), then the encrypted
 * transport. Sans-I/O: bytes in, bytes out, no sockets, no clock.
 *
 * Wire: every handshake and transport message is a 2-byte big-endian
 * length and at most NP_NOISE_FRAME_MAX bytes; a transport frame carries
 * at most NP_NOISE_PLAINTEXT_MAX plaintext bytes. Input is framed with one
 * buffer of at most NP_NOISE_FRAME_MAX bytes; pending output is capped at
 * NP_NOISE_OUT_MAX bytes. Loop thread only (one object, one thread). */
#ifndef NP_NOISE_H
#define NP_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_identity.h"
#include "np_peerid.h"

#define NP_NOISE_PROTOCOL "/noise"
#define NP_NOISE_FRAME_MAX 65535
#define NP_NOISE_PLAINTEXT_MAX (NP_NOISE_FRAME_MAX - 16)
#define NP_NOISE_OUT_MAX (4 * (NP_NOISE_FRAME_MAX + 2))
#define NP_NOISE_MUXERS_MAX 32 /* entries kept from each list */

typedef struct np_noise np_noise; /* opaque */

/* np_noise_new starts one side of a handshake. |initiator| is the side that
 * dialed. |local| signs our fresh X25519 static key (read during this call
 * only). |expected_remote| (copied; NULL accepts any peer) is the peer the
 * caller dialed: another one fails the handshake with NP_EPEERID.
 * |muxers| (|nmuxers| non-empty strings, at most NP_NOISE_MUXERS_MAX,
 * copied) go into our extensions for early muxer negotiation; none means
 * the caller negotiates the muxer with multistream afterwards. The
 * initiator's first message is in the output right away. Returns 0,
 * NP_EINVAL, NP_ELIMIT (muxer names too long for one message), NP_ENOMEM or
 * NP_ECRYPTO. Free with np_noise_del (NULL is fine). */
int np_noise_new(np_noise **pn, int initiator, const np_identity *local,
                 const np_peerid *expected_remote, const char *const *muxers,
                 size_t nmuxers);

/* Signs |len| bytes of |msg| with the host key into |sig| (|cap| bytes),
 * setting |*siglen|. Returns 0 or a negative code. */
typedef int (*np_noise_sign_fn)(void *ud, const uint8_t *msg, size_t len,
                                uint8_t *sig, size_t cap, size_t *siglen);

/* np_noise_new with a host key of any type: |pub_pb| is its PublicKey
 * protobuf and |sign| (called during this call only) makes signatures
 * that np_pubkey_verify accepts for it. */
int np_noise_new_signer(np_noise **pn, int initiator, const uint8_t *pub_pb,
                        size_t pub_pb_len, np_noise_sign_fn sign, void *ud,
                        const np_peerid *expected_remote,
                        const char *const *muxers, size_t nmuxers);

/* Wipes the keys and buffered plaintext, then frees |n|. */
void np_noise_del(np_noise *n);

/* Handshake input from the peer; any split is fine. Returns the bytes
 * consumed: it stops right after the last handshake message, so bytes
 * past it (early transport frames) stay with the caller for
 * np_noise_decrypt_feed. Errors (sticky: every later call returns the same
 * one):
 *   NP_EPROTO   malformed message or payload (too short, bad protobuf, no
 *               identity key or signature, NUL in a muxer name);
 *   NP_ECRYPTO  bad tag, low-order X25519 key, bad payload signature;
 *   NP_EPEERID  the peer is not |expected_remote|;
 *   NP_ENOTSUP  unknown host key type (or RSA size out of range);
 *   NP_ELIMIT   host key or signature above np_pubkey's caps;
 *   NP_EINVAL   handshake already over; NP_ENOMEM. */
np_ssize np_noise_handshake_feed(np_noise *n, const uint8_t *in, size_t len);

/* Bytes to send (handshake messages, then transport frames): |*out| stays
 * valid until the next call that changes |n|. Returns their count. */
size_t np_noise_output(np_noise *n, const uint8_t **out);
/* The first |len| bytes of the output were sent (len is clamped). */
void np_noise_output_drain(np_noise *n, size_t len);

/* 1 once the handshake has completed (the remote is authenticated), else 0;
 * it stays 1 after a transport error (see np_noise_error). */
int np_noise_done(const np_noise *n);
/* The sticky error, or 0. */
int np_noise_error(const np_noise *n);

/* The authenticated remote peer ID. Returns 0 once the handshake is done
 * (initiator: after message 2, responder: after message 3), else
 * NP_ENOENT. A later transport failure does not erase it. */
int np_noise_remote(const np_noise *n, np_peerid *out);

/* The remote's stream_muxers (at most NP_NOISE_MUXERS_MAX entries, in its
 * order; borrowed, valid as long as |n|); sets |*count|, 0 if it sent
 * none. */
const char *const *np_noise_remote_muxers(const np_noise *n, size_t *count);

/* The inlined muxer once done: the first entry of the initiator's list that
 * the responder also lists (borrowed), or NULL if either list is empty or
 * they share none (then negotiate with multistream, as go does). */
const char *np_noise_muxer(const np_noise *n);

/* Encrypt |len| bytes of plaintext into transport frames appended to the
 * output, split at NP_NOISE_PLAINTEXT_MAX. Takes as much as fits under
 * NP_NOISE_OUT_MAX pending output, in whole frames, and returns the bytes
 * taken (0 when the output is full: drain it and call again). Errors:
 * NP_EINVAL (handshake not done or failed), NP_ELIMIT (send nonce
 * exhausted: the connection must close), NP_ENOMEM, NP_ECRYPTO. */
np_ssize np_noise_encrypt(np_noise *n, const uint8_t *pt, size_t len);

/* Transport input from the peer. Consumes bytes up to the end of at most
 * one frame and returns their count; when a frame completes, sets |*pt| to
 * its plaintext (borrowed, valid until the next call on |n|) and |*ptlen|,
 * else |*pt| = NULL. Feed the rest again for further frames. Errors
 * (sticky): NP_ECRYPTO (bad tag: tampered, replayed or reordered frame),
 * NP_EPROTO (frame shorter than the tag), NP_ELIMIT (receive nonce
 * exhausted), NP_EINVAL (handshake not done), NP_ENOMEM. */
np_ssize np_noise_decrypt_feed(np_noise *n, const uint8_t *in, size_t len,
                               const uint8_t **pt, size_t *ptlen);

#endif
