/* TLS records over a byte stream: wolfSSL reads ciphertext from |rx| and
 * writes it to |out| through custom I/O callbacks, never touching a
 * socket. The send callback always takes everything (|out| grows);
 * np_tlsstream_write is what bounds it, so wolfSSL never sees WANT_WRITE
 * and never holds a half-sent record of its own. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_log.h"
#include "np_tlsstream.h"

#define SUB "tls"

struct np_tlsstream {
  np_tls_conn *tc;
  WOLFSSL *ssl; /* owned by tc */
  int server, done, err;
  const char *muxer; /* points into muxers[] */
  char muxers[NP_TLSSTREAM_MUXERS_MAX][64];
  size_t nmuxers;
  char why[160];
  uint8_t *out;
  size_t ooff, olen, ocap; /* pending: out[ooff .. ooff+olen) */
  size_t roff, rlen;
  uint8_t rx[NP_TLSSTREAM_RX_MAX];
};

static int recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  np_tlsstream *s = ctx;
  size_t n;
  (void)ssl;
  if (s->rlen == 0 || sz <= 0)
    return WOLFSSL_CBIO_ERR_WANT_READ;
  n = (size_t)sz < s->rlen ? (size_t)sz : s->rlen;
  memcpy(buf, s->rx + s->roff, n);
  s->roff += n;
  s->rlen -= n;
  if (s->rlen == 0)
    s->roff = 0;
  return (int)n;
}

static int send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  np_tlsstream *s = ctx;
  (void)ssl;
  if (sz <= 0)
    return 0;
  if (s->ooff > 0) {
    memmove(s->out, s->out + s->ooff, s->olen);
    s->ooff = 0;
  }
  if (s->olen + (size_t)sz > s->ocap) {
    size_t cap = s->ocap ? s->ocap : 4096;
    uint8_t *p;
    while (cap < s->olen + (size_t)sz)
      cap *= 2;
    if ((p = realloc(s->out, cap)) == NULL)
      return WOLFSSL_CBIO_ERR_GENERAL;
    s->out = p;
    s->ocap = cap;
  }
  memcpy(s->out + s->olen, buf, (size_t)sz);
  s->olen += (size_t)sz;
  return sz;
}

static int set_err(np_tlsstream *s, int err, const char *why) {
  if (s->err == 0) {
    s->err = err;
    snprintf(s->why, sizeof(s->why), "%s", why);
  }
  return s->err;
}

/* A failed wolfSSL call: the certificate check's reason if it had one. */
static int tls_fail(np_tlsstream *s, int wolf_err) {
  int rv = np_tls_conn_peer(s->tc, NULL);
  char buf[96];
  if (rv != 0 && rv != NP_ENOENT)
    return set_err(s, rv, np_tls_conn_error(s->tc));
  if (wolf_err == MEMORY_E)
    return set_err(s, NP_ENOMEM, "out of memory");
  snprintf(buf, sizeof(buf), "wolfssl %d: %s", wolf_err,
           wc_GetErrorString(wolf_err));
  return set_err(s, NP_ECRYPTO, buf);
}

static void finish(np_tlsstream *s) {
  const char *alpn;
  size_t len;
  int rv = np_tls_conn_finish_stream(s->tc, &alpn, &len);
  if (rv != 0) {
    set_err(s, rv, np_tls_conn_error(s->tc));
    return;
  }
  for (size_t i = 0; alpn != NULL && i < s->nmuxers; i++)
    if (strlen(s->muxers[i]) == len && memcmp(s->muxers[i], alpn, len) == 0)
      s->muxer = s->muxers[i];
  s->done = 1;
}

static void drive(np_tlsstream *s) {
  int r, e;
  if (s->done || s->err)
    return;
  r = s->server ? wolfSSL_accept(s->ssl) : wolfSSL_connect(s->ssl);
  if (r == WOLFSSL_SUCCESS) {
    finish(s);
    return;
  }
  e = wolfSSL_get_error(s->ssl, r);
  if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
    return;
  tls_fail(s, e);
}

int np_tlsstream_new(np_tlsstream **ps, np_tls *t, int initiator,
                     const np_peerid *expected, const char *const *muxers,
                     size_t nmuxers) {
  np_tlsstream *s;
  char list[NP_TLS_ALPN_LIST_MAX];
  size_t o = 0;
  int rv;
  if (ps == NULL || t == NULL || nmuxers > NP_TLSSTREAM_MUXERS_MAX ||
      (nmuxers > 0 && muxers == NULL))
    return NP_EINVAL;
  if ((s = calloc(1, sizeof(*s))) == NULL)
    return NP_ENOMEM;
  for (size_t i = 0; i < nmuxers; i++) {
    size_t n = strlen(muxers[i]);
    if (n == 0 || n >= sizeof(s->muxers[i]) || strchr(muxers[i], ',') ||
        o + n + 1 >= sizeof(list)) {
      free(s);
      return NP_EINVAL;
    }
    memcpy(s->muxers[i], muxers[i], n + 1);
    memcpy(list + o, muxers[i], n);
    o += n;
    list[o++] = ',';
  }
  s->nmuxers = nmuxers;
  memcpy(list + o, NP_TLS_ALPN, sizeof(NP_TLS_ALPN));
  s->server = !initiator;
  if ((rv = np_tls_conn_new_stream(&s->tc, t, s->server, expected, list)) !=
      0) {
    free(s);
    return rv;
  }
  s->ssl = np_tls_conn_native(s->tc);
  wolfSSL_SSLSetIORecv(s->ssl, recv_cb);
  wolfSSL_SSLSetIOSend(s->ssl, send_cb);
  wolfSSL_SetIOReadCtx(s->ssl, s);
  wolfSSL_SetIOWriteCtx(s->ssl, s);
  if (initiator) {
    drive(s); /* the ClientHello */
    if (s->err != 0) {
      rv = s->err == NP_ENOMEM ? NP_ENOMEM : NP_ECRYPTO;
      np_tlsstream_del(s);
      return rv;
    }
  }
  *ps = s;
  return 0;
}

void np_tlsstream_del(np_tlsstream *s) {
  if (s == NULL)
    return;
  np_tls_conn_del(s->tc); /* frees the WOLFSSL with its keys */
  np_crypto_wipe(s->rx, sizeof(s->rx));
  free(s->out);
  free(s);
}

np_ssize np_tlsstream_feed(np_tlsstream *s, const uint8_t *in, size_t len) {
  size_t room, n;
  if (s->err)
    return s->err;
  if (s->roff > 0 && s->rlen > 0) {
    memmove(s->rx, s->rx + s->roff, s->rlen);
    s->roff = 0;
  }
  room = sizeof(s->rx) - s->rlen;
  n = len < room ? len : room;
  memcpy(s->rx + s->rlen, in, n);
  s->rlen += n;
  drive(s);
  if (s->err)
    return s->err;
  return (np_ssize)n;
}

int np_tlsstream_done(const np_tlsstream *s) { return s->done; }
int np_tlsstream_error(const np_tlsstream *s) { return s->err; }
const char *np_tlsstream_why(const np_tlsstream *s) { return s->why; }

int np_tlsstream_remote(const np_tlsstream *s, np_peerid *out) {
  if (s->err)
    return s->err;
  if (!s->done)
    return NP_ENOENT;
  return np_tls_conn_peer(s->tc, out);
}

const char *np_tlsstream_muxer(const np_tlsstream *s) {
  return s->done ? s->muxer : NULL;
}

np_ssize np_tlsstream_read(np_tlsstream *s, uint8_t *buf, size_t cap) {
  int r, e;
  if (s->err)
    return s->err;
  if (!s->done)
    return NP_EINVAL;
  if (cap == 0)
    return 0;
  if (cap > NP_TLSSTREAM_RECORD_MAX)
    cap = NP_TLSSTREAM_RECORD_MAX;
  r = wolfSSL_read(s->ssl, buf, (int)cap);
  if (r > 0)
    return r;
  e = wolfSSL_get_error(s->ssl, r);
  if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
    return 0;
  if (e == WOLFSSL_ERROR_ZERO_RETURN)
    return set_err(s, NP_ECLOSED, "close_notify");
  return tls_fail(s, e);
}

np_ssize np_tlsstream_write(np_tlsstream *s, const uint8_t *pt, size_t len) {
  size_t off = 0;
  if (s->err)
    return s->err;
  if (!s->done)
    return NP_EINVAL;
  while (off < len && s->olen < NP_TLSSTREAM_OUT_SOFT) {
    size_t n = len - off;
    int r, e;
    if (n > NP_TLSSTREAM_RECORD_MAX)
      n = NP_TLSSTREAM_RECORD_MAX;
    r = wolfSSL_write(s->ssl, pt + off, (int)n);
    if (r <= 0) {
      e = wolfSSL_get_error(s->ssl, r);
      return tls_fail(s, e);
    }
    off += (size_t)r;
  }
  return (np_ssize)off;
}

size_t np_tlsstream_output(np_tlsstream *s, const uint8_t **out) {
  *out = s->out + s->ooff;
  return s->olen;
}

void np_tlsstream_output_drain(np_tlsstream *s, size_t len) {
  if (len >= s->olen) {
    s->ooff = s->olen = 0;
    return;
  }
  s->ooff += len;
  s->olen -= len;
}
