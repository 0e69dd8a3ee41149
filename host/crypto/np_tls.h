/* libp2p TLS 1.3 for QUIC and over byte streams (libp2p/specs tls/tls.md): each
 * host presents a self-signed certificate whose extension 1.3.6.1.4.1.53594.1.1
 * carries its PublicKey and a host-key signature over the certificate key; each
 * side checks the other's certificate itself and derives the peer ID from it.
 *
 * This header names no wolfSSL or ngtcp2 type: np_tls.c (with np_crypto.c,
 * and np_tlsstream.c for the record I/O) is the only code that includes
 * wolfSSL. Loop thread only. */
#ifndef NP_TLS_H
#define NP_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "np_identity.h"
#include "np_peerid.h"

#define NP_TLS_ALPN "libp2p"  /* the only application protocol, both sides */
#define NP_TLS_CERT_MAX 16384 /* peer certificates above this are refused */

typedef struct np_tls np_tls;           /* per host; opaque */
typedef struct np_tls_conn np_tls_conn; /* per connection; opaque */

/* np_tls_new makes a fresh ECDSA P-256 certificate key and a certificate
 * valid from one hour ago for 100 years, with the libp2p extension signed by
 * |id|'s Ed25519 host key (|id| is read during the call only), and the
 * client and server TLS 1.3 contexts (configured for ngtcp2: ALPN "libp2p",
 * client certificates required both ways, no tickets from the server).
 * Returns 0, NP_ENOMEM or NP_ECRYPTO (wolfSSL failure, logged with the
 * wolfSSL code). Free with np_tls_del (NULL is fine); every np_tls_conn of
 * |*pt| must be freed first. */
int np_tls_new(np_tls **pt, const np_identity *id);
void np_tls_del(np_tls *t);

/* The DER of this host's own certificate (borrowed; lives as long as |t|). */
const uint8_t *np_tls_cert(const np_tls *t, size_t *len);

/* np_tls_conn_new starts the TLS side of one QUIC connection. |is_server|
 * selects the role. |expected| (client only; may be NULL, copied) is the
 * peer ID from the dialed /p2p/ address: the handshake fails inside the
 * certificate check when the server presents another one, with a warn log
 * line naming both IDs. |ngtcp2_conn_ref| must point to the connection's
 * ngtcp2_crypto_conn_ref, which must outlive the np_tls_conn (ngtcp2's
 * wolfSSL helper reads it from the TLS object). Returns 0, NP_EINVAL,
 * NP_ENOMEM or NP_ECRYPTO. */
int np_tls_conn_new(np_tls_conn **pc, np_tls *t, int is_server,
                    const np_peerid *expected, void *ngtcp2_conn_ref);

/* The native TLS handle (a WOLFSSL *) for ngtcp2_conn_set_tls_native_handle;
 * owned by |c|. */
void *np_tls_conn_native(np_tls_conn *c);

/* np_tls_conn_finish is called once the TLS handshake has completed: it
 * requires a verified peer certificate and the negotiated ALPN "libp2p".
 * Returns 0 or the failure (also kept for np_tls_conn_peer):
 * NP_ECRYPTO (no verified certificate), NP_ENOPROTO (no "libp2p" ALPN). */
int np_tls_conn_finish(np_tls_conn *c);

/* The verified remote peer. Returns 0 with |*id| set (|id| may be NULL)
 * after a successful np_tls_conn_finish; NP_ENOENT while the handshake is
 * still running; or the reason it failed: NP_EPEERID (client: the server's
 * ID is not the expected one), NP_EPROTO, NP_ENOTSUP, NP_ECRYPTO or
 * NP_ELIMIT (see np_tls_verify_cert), NP_ENOPROTO (ALPN). */
int np_tls_conn_peer(const np_tls_conn *c, np_peerid *id);

/* A one-line description of why the handshake failed, e.g. "peer ID
 * mismatch: expected 12D3KooWA... presented 12D3KooWB...", or "" when it has
 * not failed. Borrowed; valid until |c| is freed. */
const char *np_tls_conn_error(const np_tls_conn *c);

void np_tls_conn_del(np_tls_conn *c);

/* ---- stream mode: libp2p TLS over a byte stream (libp2p-wire.md §4) ----
 * The same certificate checks; plain TLS 1.3 records instead of QUIC, ALPN
 * carries the early muxer choice. np_tlsstream.c does the record I/O. */

#define NP_TLS_ALPN_LIST_MAX 256 /* comma-separated ALPN list, with NUL */

/* np_tls_new with contexts for TLS over a byte stream (no ngtcp2): such an
 * np_tls serves np_tls_conn_new_stream only, np_tls_new's only QUIC. */
int np_tls_new_stream(np_tls **pt, const np_identity *id);

/* One connection's TLS object over a byte stream: as np_tls_conn_new, with
 * |alpn| a comma-separated protocol list in preference order (e.g.
 * "/yamux/1.0.0,libp2p"); a peer offering no common one is refused (one
 * sending no ALPN at all is let through: muxer by multistream). The caller
 * installs the I/O callbacks on np_tls_conn_native. Returns 0, NP_EINVAL,
 * NP_ENOMEM or NP_ECRYPTO. */
int np_tls_conn_new_stream(np_tls_conn **pc, np_tls *t, int is_server,
                           const np_peerid *expected, const char *alpn);

/* np_tls_conn_finish for stream mode: requires the verified certificate
 * and sets |*alpn| (borrowed, not NUL-terminated, valid as long as |c|;
 * NULL when none was agreed) and |*alpnlen|. Returns 0 or the failure
 * (as np_tls_conn_peer). */
int np_tls_conn_finish_stream(np_tls_conn *c, const char **alpn,
                              size_t *alpnlen);

/* np_tls_verify_cert checks a peer certificate on its own (no I/O; for the
 * handshake, unit tests and fuzzing): DER X.509 v3 of at most
 * NP_TLS_CERT_MAX bytes, valid at |now_unix| (seconds since 1970, UTC), a
 * correct self-signature (ECDSA P-256/384/521 with SHA-256/384/512, RSA
 * PKCS#1 v1.5 with SHA-256/384/512, or Ed25519), exactly one libp2p
 * extension (critical or not), no other critical extension wolfSSL does not
 * understand, no issuer/subject unique IDs, and a host-key signature over
 * "libp2p-tls-handshake:" || SubjectPublicKeyInfo by an Ed25519, secp256k1,
 * ECDSA or RSA (2048..8192 bit) host key. On success sets |*id| (may be
 * NULL) to the peer ID of that host key and returns 0. Errors:
 *   NP_ELIMIT   input or a field larger than the caps above;
 *   NP_EPROTO   malformed DER, wrong structure, missing or duplicate
 *               extension, unknown critical extension;
 *   NP_ENOTSUP  signature algorithm or host key type not supported;
 *   NP_ECRYPTO  a signature does not verify, or not valid at |now_unix|. */
int np_tls_verify_cert(const uint8_t *der, size_t len, int64_t now_unix,
                       np_peerid *id);

#endif
