/* echo: returns what it is sent.
 * Unary handler [plugin.echo] protocol (default "echo") answers with the
 * request bytes; stream handler [plugin.echo] stream_protocol (default
 * "/natpeer/echo/1.0.0") writes back every byte it reads. When the remote
 * does not read as fast as it writes, the stream is paused (ABI 1.2) until
 * the echo has gone out, so a stream costs at most a window of memory. */
#include <natpeer/plugin.h>
#include <stdlib.h>
#include <string.h>

#define PIECE 16384               /* stream_write takes all or nothing */
#define PENDING_MAX (4u << 20)    /* a host without stream_pause */

typedef struct echo {
  const np_host_api *api;
} echo;

/* One stream's bytes read but not yet written back. */
typedef struct estream {
  const np_host_api *api;
  uint8_t *buf;
  size_t len, off, cap;
  int fin, paused;
} estream;

static void echo_on_call(np_call *c, const uint8_t *req, size_t len,
                         void *ud) {
  echo *e = ud;
  e->api->call_reply(c, req, len);
}

/* Write what is pending; pause reading while the send buffer is full. */
static void pump(np_stream *s, estream *es) {
  const np_host_api *api = es->api;
  while (es->off < es->len) {
    size_t n = es->len - es->off < PIECE ? es->len - es->off : PIECE;
    int rv = api->stream_write(s, es->buf + es->off, n);
    if (rv == NP_ELIMIT) {
      if (!es->paused && NP_HAS(api, stream_pause)) {
        es->paused = 1;
        api->stream_pause(s, 1);
      }
      return; /* on_writable brings us back */
    }
    if (rv < 0) {
      api->stream_close(s);
      return;
    }
    es->off += n;
  }
  es->off = es->len = 0;
  if (es->paused) {
    es->paused = 0;
    api->stream_pause(s, 0);
  }
  if (es->fin)
    api->stream_close(s);
}

static void echo_on_open(np_stream *s, void *ud) {
  echo *e = ud;
  estream *es = calloc(1, sizeof(*es));
  if (es == NULL) {
    e->api->stream_set_ud(s, NULL); /* later callbacks must not see |e| */
    if (NP_HAS(e->api, stream_reset))
      e->api->stream_reset(s);
    else
      e->api->stream_close(s);
    return;
  }
  es->api = e->api;
  e->api->stream_set_ud(s, es);
}

static void echo_on_data(np_stream *s, const uint8_t *data, size_t len,
                         void *ud) {
  estream *es = ud;
  if (es == NULL)
    return;
  if (len == 0) { /* the remote finished writing: finish after the echo */
    es->fin = 1;
    if (es->len == 0)
      es->api->stream_close(s);
    return;
  }
  if (es->len + len > es->cap) {
    size_t cap = es->cap ? es->cap : PIECE;
    uint8_t *nb;
    while (cap < es->len + len)
      cap *= 2;
    if ((!NP_HAS(es->api, stream_pause) && cap > PENDING_MAX) ||
        (nb = realloc(es->buf, cap)) == NULL) {
      es->api->stream_close(s); /* a peer that writes without reading */
      return;
    }
    es->buf = nb;
    es->cap = cap;
  }
  memcpy(es->buf + es->len, data, len);
  es->len += len;
  pump(s, es);
}

static void echo_on_writable(np_stream *s, void *ud) {
  if (ud)
    pump(s, ud);
}

static void echo_on_close(np_stream *s, int err, void *ud) {
  estream *es = ud;
  (void)s, (void)err;
  if (es) {
    free(es->buf);
    free(es);
  }
}

static const np_stream_cbs echo_stream = {sizeof(np_stream_cbs), echo_on_open,
                                          echo_on_data, echo_on_close,
                                          echo_on_writable};

static int echo_init(np_plugin *p, const np_host_api *api, void **plugin_ud) {
  const char *proto = api->conf_get(p, "protocol");
  const char *sproto = api->conf_get(p, "stream_protocol");
  echo *e;
  int rv;
  if (!NP_HAS(api, stream_set_ud)) /* per-stream state needs ABI 1.1 */
    return NP_ENOTSUP;
  if ((e = calloc(1, sizeof(*e))) == NULL)
    return NP_ENOMEM;
  e->api = api;
  rv = api->register_unary(p, proto ? proto : "echo", echo_on_call, e);
  if (rv == 0)
    rv = api->register_stream(p, sproto ? sproto : "/natpeer/echo/1.0.0",
                              &echo_stream, e);
  if (rv < 0) {
    free(e);
    return rv;
  }
  *plugin_ud = e;
  return 0;
}

static void echo_shutdown(np_plugin *p, void *ud) {
  (void)p;
  free(ud);
}

NP_PLUGIN_DEFINE2("echo", "1.0.0", echo_init, echo_shutdown,
                  "returns the request bytes (unary) or the stream (stream)")
