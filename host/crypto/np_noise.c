/* libp2p Noise over np_noise_xx: framing, the handshake payload, early
 * muxer negotiation and transport frames. */
#include <stdlib.h>
#include <string.h>

#include "np_noise.h"
#include "np_noise_xx.h"
#include "np_pb.h"
#include "np_pubkey.h"
#include "proto/noise.pb-c.h"

#define SIG_PREFIX "noise-libp2p-static-key:"
#define SIG_PREFIX_LEN (sizeof(SIG_PREFIX) - 1)
#define SIG_MAX 1100 /* np_pubkey's cap (RSA-8192) */
#define PUBKEY_PB_MAX (NP_PUBKEY_DATA_MAX + 8)

typedef Np__Noise__NoiseHandshakePayload pb_payload;
typedef Np__Noise__NoiseExtensions pb_ext;

struct np_noise {
  np_noise_xx hs;
  int initiator;
  int done;
  int err; /* sticky */
  np_noise_cs tx, rx;
  uint8_t *payload; /* our encoded handshake payload */
  size_t payload_len;
  int has_expected;
  np_peerid expected, remote;
  char **mux_local, **mux_remote;
  size_t nlocal, nremote;
  const char *muxer;
  /* input framing: 2-byte header, then |want| bytes into rbuf */
  uint8_t hdr[2];
  size_t hdr_len, want, have;
  uint8_t *rbuf; /* rcap bytes: grows with the largest frame seen, so an
                  * idle connection of small messages holds little */
  size_t rcap;
  /* pending output: obuf[ooff..olen) */
  uint8_t *obuf;
  size_t ooff, olen, ocap;
};

static void free_list(char **l, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(l[i]);
  free(l);
}

static int fail(np_noise *n, int err) {
  if (n->err == 0)
    n->err = err;
  return n->err;
}

/* Room for |len| more output bytes, within NP_NOISE_OUT_MAX. */
static int out_reserve(np_noise *n, size_t len) {
  if (n->ooff > 0) {
    memmove(n->obuf, n->obuf + n->ooff, n->olen - n->ooff);
    n->olen -= n->ooff;
    n->ooff = 0;
  }
  if (len > NP_NOISE_OUT_MAX - n->olen)
    return NP_ELIMIT;
  if (n->olen + len > n->ocap) {
    size_t cap = n->ocap ? n->ocap : 1024;
    uint8_t *p;
    while (cap < n->olen + len)
      cap *= 2;
    if (cap > NP_NOISE_OUT_MAX)
      cap = NP_NOISE_OUT_MAX;
    if ((p = realloc(n->obuf, cap)) == NULL)
      return NP_ENOMEM;
    n->obuf = p;
    n->ocap = cap;
  }
  return 0;
}

static void put_len(uint8_t *p, size_t len) {
  p[0] = (uint8_t)(len >> 8);
  p[1] = (uint8_t)len;
}

/* Our next handshake message, framed, into the output. */
static int write_msg(np_noise *n, const uint8_t *payload, size_t plen) {
  size_t max = NP_NOISE_XX_MSG_MAX(plen);
  np_ssize m;
  int rv;
  if (max > NP_NOISE_FRAME_MAX)
    max = NP_NOISE_FRAME_MAX;
  if ((rv = out_reserve(n, 2 + max)) != 0)
    return rv;
  m = np_noise_xx_write(&n->hs, payload, plen, n->obuf + n->olen + 2, max);
  if (m < 0)
    return (int)m;
  put_len(n->obuf + n->olen, (size_t)m);
  n->olen += 2 + (size_t)m;
  return 0;
}

static char **copy_list(const char *const *l, size_t cnt) {
  char **out = calloc(cnt ? cnt : 1, sizeof(*out));
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < cnt; i++)
    if ((out[i] = strdup(l[i])) == NULL) {
      free_list(out, i);
      return NULL;
    }
  return out;
}

static int build_payload(np_noise *n, const uint8_t *pub_pb, size_t pub_len,
                         np_noise_sign_fn sign, void *ud) {
  uint8_t msg[SIG_PREFIX_LEN + NP_X25519_LEN], sig[SIG_MAX];
  size_t siglen = 0;
  pb_payload pl = NP__NOISE__NOISE_HANDSHAKE_PAYLOAD__INIT;
  pb_ext ext = NP__NOISE__NOISE_EXTENSIONS__INIT;
  int rv;
  memcpy(msg, SIG_PREFIX, SIG_PREFIX_LEN);
  memcpy(msg + SIG_PREFIX_LEN, np_noise_xx_local_static(&n->hs), NP_X25519_LEN);
  if ((rv = sign(ud, msg, sizeof(msg), sig, sizeof(sig), &siglen)) != 0)
    return rv;
  if (siglen > sizeof(sig))
    return NP_EINVAL;
  pl.has_identity_key = pl.has_identity_sig = 1;
  pl.identity_key.data = (uint8_t *)pub_pb;
  pl.identity_key.len = pub_len;
  pl.identity_sig.data = sig;
  pl.identity_sig.len = siglen;
  if (n->nlocal > 0) {
    ext.n_stream_muxers = n->nlocal;
    ext.stream_muxers = n->mux_local;
    pl.extensions = &ext;
  }
  n->payload_len = np__noise__noise_handshake_payload__get_packed_size(&pl);
  /* Message 2 carries e, s and two tags besides the payload. */
  if (NP_NOISE_XX_MSG_MAX(n->payload_len) > NP_NOISE_FRAME_MAX)
    return NP_ELIMIT;
  if ((n->payload = malloc(n->payload_len)) == NULL)
    return NP_ENOMEM;
  np__noise__noise_handshake_payload__pack(&pl, n->payload);
  return 0;
}

int np_noise_new_signer(np_noise **pn, int initiator, const uint8_t *pub_pb,
                        size_t pub_pb_len, np_noise_sign_fn sign, void *ud,
                        const np_peerid *expected_remote,
                        const char *const *muxers, size_t nmuxers) {
  np_noise *n;
  uint8_t s[NP_X25519_LEN];
  int rv;
  if (pn == NULL || pub_pb == NULL || pub_pb_len == 0 ||
      pub_pb_len > PUBKEY_PB_MAX || sign == NULL ||
      nmuxers > NP_NOISE_MUXERS_MAX || (nmuxers > 0 && muxers == NULL))
    return NP_EINVAL;
  for (size_t i = 0; i < nmuxers; i++)
    if (muxers[i] == NULL || muxers[i][0] == '\0')
      return NP_EINVAL;
  if ((n = calloc(1, sizeof(*n))) == NULL)
    return NP_ENOMEM;
  n->initiator = initiator != 0;
  if (expected_remote != NULL) {
    n->has_expected = 1;
    n->expected = *expected_remote;
  }
  rv = NP_ENOMEM;
  if ((n->mux_local = copy_list(muxers, nmuxers)) == NULL)
    goto fail;
  n->nlocal = nmuxers;
  /* A fresh static key per connection, as go does: only its signature
   * binds it to the host key. */
  if ((rv = np_crypto_random(s, sizeof(s))) != 0 ||
      (rv = np_noise_xx_init(&n->hs, n->initiator, NULL, 0, s, NULL)) != 0 ||
      (rv = build_payload(n, pub_pb, pub_pb_len, sign, ud)) != 0)
    goto fail;
  if (n->initiator && (rv = write_msg(n, NULL, 0)) != 0)
    goto fail;
  np_crypto_wipe(s, sizeof(s));
  *pn = n;
  return 0;
fail:
  np_crypto_wipe(s, sizeof(s));
  np_noise_del(n);
  return rv;
}

static int sign_identity(void *ud, const uint8_t *msg, size_t len, uint8_t *sig,
                         size_t cap, size_t *siglen) {
  return np_identity_sign(ud, msg, len, sig, cap, siglen);
}

int np_noise_new(np_noise **pn, int initiator, const np_identity *local,
                 const np_peerid *expected_remote, const char *const *muxers,
                 size_t nmuxers) {
  if (local == NULL)
    return NP_EINVAL;
  return np_noise_new_signer(pn, initiator, local->pub_pb, local->pub_pb_len,
                             sign_identity, (void *)local, expected_remote,
                             muxers, nmuxers);
}

void np_noise_del(np_noise *n) {
  if (n == NULL)
    return;
  np_noise_xx_wipe(&n->hs);
  np_crypto_wipe(&n->tx, sizeof(n->tx));
  np_crypto_wipe(&n->rx, sizeof(n->rx));
  if (n->rbuf != NULL) {
    np_crypto_wipe(n->rbuf, n->rcap);
    free(n->rbuf);
  }
  if (n->obuf != NULL) {
    np_crypto_wipe(n->obuf, n->ocap);
    free(n->obuf);
  }
  free(n->payload);
  free_list(n->mux_local, n->nlocal);
  free_list(n->mux_remote, n->nremote);
  free(n);
}

/* ---- input framing --------------------------------------------------------
 */

/* rbuf of at least |need| (<= NP_NOISE_FRAME_MAX) bytes, the |have| bytes
 * of a partial frame kept. Grown by copy, so the old block is wiped. */
static int rbuf_reserve(np_noise *n, size_t need) {
  size_t cap = n->rcap ? n->rcap : 1024;
  uint8_t *p;
  if (need <= n->rcap && n->rbuf != NULL) /* empty frames need a buffer too */
    return 0;
  while (cap < need)
    cap *= 2;
  if (cap > NP_NOISE_FRAME_MAX)
    cap = NP_NOISE_FRAME_MAX;
  if ((p = malloc(cap)) == NULL)
    return NP_ENOMEM;
  if (n->rbuf != NULL) {
    memcpy(p, n->rbuf, n->have);
    np_crypto_wipe(n->rbuf, n->rcap);
    free(n->rbuf);
  }
  n->rbuf = p;
  n->rcap = cap;
  return 0;
}

/* Consume |in| up to the end of one frame. When it completes, |*frame|
 * points at it: into |in| when it arrived whole, else into rbuf. */
static np_ssize read_frame(np_noise *n, const uint8_t *in, size_t len,
                           const uint8_t **frame, size_t *flen) {
  size_t used = 0, take;
  *frame = NULL;
  while (n->hdr_len < 2 && used < len)
    n->hdr[n->hdr_len++] = in[used++];
  if (n->hdr_len < 2)
    return (np_ssize)used;
  n->want = (size_t)n->hdr[0] << 8 | n->hdr[1];
  if (n->have == 0 && len - used >= n->want) {
    *frame = in + used;
    used += n->want;
  } else {
    if (rbuf_reserve(n, n->want) != 0)
      return NP_ENOMEM;
    take = n->want - n->have;
    if (take > len - used)
      take = len - used;
    memcpy(n->rbuf + n->have, in + used, take);
    n->have += take;
    used += take;
    if (n->have < n->want)
      return (np_ssize)used;
    *frame = n->rbuf;
  }
  *flen = n->want;
  n->hdr_len = n->have = 0;
  return (np_ssize)used;
}

/* ---- handshake ------------------------------------------------------------
 */

static int split_done(np_noise *n) {
  int rv = np_noise_xx_split(&n->hs, &n->tx, &n->rx, NULL);
  const char *const *il, *const *rl;
  size_t ni, nr;
  if (rv != 0)
    return rv;
  np_noise_xx_wipe(&n->hs);
  /* Inlined muxer: the initiator's preference wins. */
  il = (const char *const *)(n->initiator ? n->mux_local : n->mux_remote);
  ni = n->initiator ? n->nlocal : n->nremote;
  rl = (const char *const *)(n->initiator ? n->mux_remote : n->mux_local);
  nr = n->initiator ? n->nremote : n->nlocal;
  for (size_t i = 0; i < ni && n->muxer == NULL; i++)
    for (size_t j = 0; j < nr; j++)
      if (strcmp(il[i], rl[j]) == 0) {
        n->muxer = il[i];
        break;
      }
  n->done = 1;
  return 0;
}

static int check_payload(np_noise *n, const uint8_t *p, size_t len) {
  uint8_t msg[SIG_PREFIX_LEN + NP_X25519_LEN];
  const uint8_t *rs = np_noise_xx_remote_static(&n->hs);
  const char *field;
  pb_payload *pl;
  np_peerid id;
  int rv;
  if (rs == NULL)
    return NP_EPROTO;
  if (np_pb_check_strings(&np__noise__noise_handshake_payload__descriptor, p,
                          len, &field) != 0)
    return NP_EPROTO;
  pl = np__noise__noise_handshake_payload__unpack(NULL, len, p);
  if (pl == NULL)
    return NP_EPROTO;
  rv = NP_EPROTO;
  if (!pl->has_identity_key || !pl->has_identity_sig)
    goto out;
  memcpy(msg, SIG_PREFIX, SIG_PREFIX_LEN);
  memcpy(msg + SIG_PREFIX_LEN, rs, NP_X25519_LEN);
  rv = np_pubkey_verify(pl->identity_key.data, pl->identity_key.len, msg,
                        sizeof(msg), pl->identity_sig.data,
                        pl->identity_sig.len, &id, NULL);
  if (rv != 0)
    goto out;
  if (n->has_expected && !np_peerid_equal(&id, &n->expected)) {
    rv = NP_EPEERID;
    goto out;
  }
  if (pl->extensions != NULL && pl->extensions->n_stream_muxers > 0) {
    size_t cnt = pl->extensions->n_stream_muxers;
    if (cnt > NP_NOISE_MUXERS_MAX)
      cnt = NP_NOISE_MUXERS_MAX; /* go ignores what follows too */
    n->mux_remote =
        copy_list((const char *const *)pl->extensions->stream_muxers, cnt);
    if (n->mux_remote == NULL) {
      rv = NP_ENOMEM;
      goto out;
    }
    n->nremote = cnt;
  }
  n->remote = id;
  rv = 0;
out:
  np__noise__noise_handshake_payload__free_unpacked(pl, NULL);
  return rv;
}

/* One complete handshake message from the peer. */
static int on_msg(np_noise *n, const uint8_t *msg, size_t len) {
  uint8_t *pt = malloc(len ? len : 1);
  int step = n->hs.msg, rv;
  np_ssize m;
  if (pt == NULL)
    return NP_ENOMEM;
  m = np_noise_xx_read(&n->hs, msg, len, pt, len);
  if (m < 0) {
    rv = (int)m;
  } else if (step == 0) {
    /* Message 1's payload is empty in libp2p and unauthenticated: ignore. */
    rv = write_msg(n, n->payload, n->payload_len);
  } else if ((rv = check_payload(n, pt, (size_t)m)) == 0) {
    if (step == 1)
      rv = write_msg(n, n->payload, n->payload_len);
    if (rv == 0)
      rv = split_done(n);
  }
  np_crypto_wipe(pt, len);
  free(pt);
  return rv;
}

np_ssize np_noise_handshake_feed(np_noise *n, const uint8_t *in, size_t len) {
  size_t used = 0;
  if (n->err)
    return n->err;
  if (n->done)
    return fail(n, NP_EINVAL);
  while (used < len && !n->done) {
    const uint8_t *frame;
    size_t flen = 0;
    np_ssize k = read_frame(n, in + used, len - used, &frame, &flen);
    int rv;
    if (k < 0)
      return fail(n, (int)k);
    used += (size_t)k;
    if (frame == NULL)
      break;
    if ((rv = on_msg(n, frame, flen)) != 0)
      return fail(n, rv);
  }
  return (np_ssize)used;
}

size_t np_noise_output(np_noise *n, const uint8_t **out) {
  *out = n->obuf ? n->obuf + n->ooff : NULL;
  return n->olen - n->ooff;
}

void np_noise_output_drain(np_noise *n, size_t len) {
  if (len > n->olen - n->ooff)
    len = n->olen - n->ooff;
  n->ooff += len;
  if (n->ooff == n->olen)
    n->ooff = n->olen = 0;
}

int np_noise_done(const np_noise *n) { return n->done; }

int np_noise_error(const np_noise *n) { return n->err; }

int np_noise_remote(const np_noise *n, np_peerid *out) {
  if (!n->done)
    return NP_ENOENT;
  if (out != NULL)
    *out = n->remote;
  return 0;
}

const char *const *np_noise_remote_muxers(const np_noise *n, size_t *count) {
  *count = n->nremote;
  return (const char *const *)n->mux_remote;
}

const char *np_noise_muxer(const np_noise *n) {
  return n->done ? n->muxer : NULL;
}

/* ---- transport ------------------------------------------------------------
 */

np_ssize np_noise_encrypt(np_noise *n, const uint8_t *pt, size_t len) {
  size_t taken = 0;
  if (n->err)
    return n->err;
  if (!n->done)
    return NP_EINVAL;
  while (taken < len) {
    size_t chunk = len - taken;
    np_ssize m;
    int rv;
    if (chunk > NP_NOISE_PLAINTEXT_MAX)
      chunk = NP_NOISE_PLAINTEXT_MAX;
    rv = out_reserve(n, 2 + chunk + NP_NOISE_TAGLEN);
    if (rv == NP_ELIMIT)
      break; /* full: the caller drains and comes back */
    if (rv != 0)
      return taken ? (np_ssize)taken : rv;
    m = np_noise_cs_encrypt(&n->tx, NULL, 0, pt + taken, chunk,
                            n->obuf + n->olen + 2);
    if (m < 0) /* nonce exhausted: frames already queued stay valid */
      return taken ? (np_ssize)taken : (np_ssize)m;
    put_len(n->obuf + n->olen, (size_t)m);
    n->olen += 2 + (size_t)m;
    taken += chunk;
  }
  return (np_ssize)taken;
}

np_ssize np_noise_decrypt_feed(np_noise *n, const uint8_t *in, size_t len,
                               const uint8_t **pt, size_t *ptlen) {
  const uint8_t *frame;
  size_t flen = 0;
  np_ssize k, m;
  *pt = NULL;
  *ptlen = 0;
  if (n->err)
    return n->err;
  if (!n->done)
    return NP_EINVAL;
  k = read_frame(n, in, len, &frame, &flen);
  if (k < 0)
    return fail(n, (int)k);
  if (frame == NULL)
    return k;
  if (flen < NP_NOISE_TAGLEN)
    return fail(n, NP_EPROTO);
  if (frame != n->rbuf && rbuf_reserve(n, flen) != 0)
    return fail(n, NP_ENOMEM);
  /* Plaintext lands in rbuf (in place when the frame was buffered). */
  m = np_noise_cs_decrypt(&n->rx, NULL, 0, frame, flen, n->rbuf);
  if (m < 0)
    return fail(n, (int)m);
  *pt = n->rbuf;
  *ptlen = (size_t)m;
  return k;
}
