/* The Noise XX pattern alone (Noise_XX_25519_ChaChaPoly_SHA256, Noise
 * Protocol Framework rev. 34): cipher state, symmetric state and handshake
 * state, with the static and ephemeral keys, the prologue and the payloads
 * supplied by the caller. Nothing libp2p-specific lives here, so the
 * standard test vectors run against it; np_noise.c builds libp2p's
 * handshake on top. Internal to the host: structs are public so that they
 * can be embedded, their fields are private. */
#ifndef NP_NOISE_XX_H
#define NP_NOISE_XX_H

#include <stddef.h>
#include <stdint.h>

#include "np_crypto.h"
#include "np_err.h"

#define NP_NOISE_NAME "Noise_XX_25519_ChaChaPoly_SHA256"
#define NP_NOISE_DHLEN 32
#define NP_NOISE_HASHLEN 32
#define NP_NOISE_TAGLEN 16

/* CipherState: key and 64-bit nonce. */
typedef struct np_noise_cs {
  uint8_t k[32];
  uint64_t n;
  int has_k;
} np_noise_cs;

/* EncryptWithAd / DecryptWithAd. Without a key the data is copied as is;
 * with one, |out| gets |len| + 16 bytes (encrypt) or |len| - 16 (decrypt);
 * |out| may equal the input. Return the bytes written, or:
 *   NP_ELIMIT   the nonce reached 2^64-1, which Noise reserves: the state
 *               never wraps and stays exhausted (no rekey here);
 *   NP_ECRYPTO  (decrypt) short input or a bad tag; the nonce is kept.
 * A failed decrypt leaves |out| zeroed. */
np_ssize np_noise_cs_encrypt(np_noise_cs *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *pt, size_t len, uint8_t *out);
np_ssize np_noise_cs_decrypt(np_noise_cs *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *ct, size_t len, uint8_t *out);

/* HandshakeState for XX. */
typedef struct np_noise_xx {
  int initiator;
  int msg;  /* index of the next message, 0..2; 3 after the last */
  int fail; /* sticky error */
  uint8_t ck[32], h[32];
  np_noise_cs cs;
  uint8_t s[32], s_pub[32];
  uint8_t e[32], e_pub[32];
  int has_e;
  uint8_t rs[32], re[32];
  int has_rs;
} np_noise_xx;

/* Start a handshake. |s| is the local static private key (32 bytes, any
 * value: X25519 clamps). |e| is the ephemeral private key to use, or NULL
 * for a fresh random one when it is needed (only tests pass one).
 * Returns 0 or NP_ECRYPTO. */
int np_noise_xx_init(np_noise_xx *hs, int initiator, const uint8_t *prologue,
                     size_t plen, const uint8_t s[32], const uint8_t *e);

/* Upper bound of a message carrying |payload_len| payload bytes. */
#define NP_NOISE_XX_MSG_MAX(payload_len)                                       \
  (2 * NP_NOISE_DHLEN + 2 * NP_NOISE_TAGLEN + (payload_len))

/* Write the next message (it must be ours: initiator 0 and 2, responder 1)
 * with |payload| into |out| (|cap| bytes). Returns its length, or NP_EINVAL
 * (not our turn, handshake over or failed), NP_ELIMIT (|cap| too small),
 * NP_ECRYPTO. */
np_ssize np_noise_xx_write(np_noise_xx *hs, const uint8_t *payload, size_t plen,
                           uint8_t *out, size_t cap);

/* Read the peer's next message |msg|; its payload goes to |payload| (room
 * for |len| bytes always suffices; |cap| is checked). Returns the payload
 * length, or NP_EINVAL (not their turn), NP_EPROTO (message too short),
 * NP_ECRYPTO (bad tag or a low-order key), NP_ELIMIT (|cap|). Any error
 * ends the handshake. */
np_ssize np_noise_xx_read(np_noise_xx *hs, const uint8_t *msg, size_t len,
                          uint8_t *payload, size_t cap);

/* After the third message: the transport cipher states for sending and
 * receiving (initiator sends with the first of Split's pair), and the
 * handshake hash into |hash| (may be NULL). Returns 0 or NP_EINVAL. */
int np_noise_xx_split(np_noise_xx *hs, np_noise_cs *tx, np_noise_cs *rx,
                      uint8_t hash[NP_NOISE_HASHLEN]);

/* The peer's static public key, valid once the message carrying it was
 * read (responder's: after message 1 for the initiator; initiator's: after
 * message 2 for the responder); NULL before. */
const uint8_t *np_noise_xx_remote_static(const np_noise_xx *hs);
/* Our static public key. */
const uint8_t *np_noise_xx_local_static(const np_noise_xx *hs);

/* Wipe every secret of |hs|. */
void np_noise_xx_wipe(np_noise_xx *hs);

#endif
