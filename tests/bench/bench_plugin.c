/* Bench plugin: serves the js harness's protocols (tests/bench/js/bench.mjs)
 * so js <-> natpeer pairs can be measured.
 *   /perf/1.0.0         libp2p perf: u64 BE "bytes to send back", the
 *                       client's upload until its FIN, then the download
 *   /bench/unary/1.0.0  one uvarint-length-prefixed request; the answer is
 *                       one prefixed response of the same bytes (echo) */
#include <natpeer/plugin.h>
#include <stdlib.h>
#include <string.h>

#define UNARY_MAX (1u << 20)
#define CHUNK (64 * 1024)

typedef struct bench {
  const np_host_api *api;
} bench;

typedef struct perf {
  bench *b;
  uint8_t hdr[8];
  size_t hdr_len;
  uint64_t down;    /* bytes still to send */
  uint64_t got;     /* upload bytes received */
  int sending;
} perf;

static uint8_t zeros[CHUNK];

static void perf_pump(np_stream *s, perf *st) {
  while (st->down > 0) {
    size_t n = st->down < CHUNK ? (size_t)st->down : CHUNK;
    int rv = st->b->api->stream_write(s, zeros, n);
    if (rv == NP_ELIMIT)
      return; /* on_writable resumes */
    if (rv < 0) {
      st->b->api->stream_close(s);
      return;
    }
    st->down -= n;
  }
  st->b->api->stream_close(s);
}

static void perf_open(np_stream *s, void *ud) {
  bench *b = ud;
  perf *st = calloc(1, sizeof(*st));
  b->api->stream_set_ud(s, st); /* NULL on failure: close frees nothing */
  if (st == NULL) {
    b->api->stream_close(s);
    return;
  }
  st->b = b;
}

static void perf_data(np_stream *s, const uint8_t *data, size_t len,
                      void *ud) {
  perf *st = ud;
  if (st == NULL)
    return;
  if (len == 0) { /* upload finished: send the download */
    if (st->hdr_len < 8) {
      st->b->api->stream_close(s);
      return;
    }
    st->sending = 1;
    perf_pump(s, st);
    return;
  }
  while (st->hdr_len < 8 && len > 0) {
    st->hdr[st->hdr_len++] = *data++;
    len--;
    if (st->hdr_len == 8)
      for (int i = 0; i < 8; i++)
        st->down = (st->down << 8) | st->hdr[i];
  }
  st->got += len;
}

static void perf_writable(np_stream *s, void *ud) {
  perf *st = ud;
  if (st && st->sending)
    perf_pump(s, st);
}

static void perf_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err;
  free(ud); /* the per-stream state perf_open installed */
}

typedef struct unary {
  bench *b;
  uint8_t *buf;
  size_t len, cap;
  int done;
} unary;

static void unary_open(np_stream *s, void *ud) {
  bench *b = ud;
  unary *st = calloc(1, sizeof(*st));
  b->api->stream_set_ud(s, st);
  if (st == NULL) {
    b->api->stream_close(s);
    return;
  }
  st->b = b;
}

/* Try to take one complete prefixed message from st->buf and answer it. */
static void unary_try(np_stream *s, unary *st) {
  uint64_t n = 0;
  size_t i = 0;
  int shift = 0;
  for (;; i++) {
    if (i >= st->len || i >= 9)
      return;
    n |= (uint64_t)(st->buf[i] & 0x7f) << shift;
    shift += 7;
    if (!(st->buf[i] & 0x80))
      break;
  }
  i++;
  if (n > UNARY_MAX) {
    st->b->api->stream_close(s);
    st->done = 1;
    return;
  }
  if (st->len - i < n)
    return;
  /* Echo: the same prefix and bytes. */
  st->done = 1;
  if (st->b->api->stream_write(s, st->buf, i + (size_t)n) != 0) {
    st->b->api->stream_close(s);
    return;
  }
  st->b->api->stream_close(s);
}

static void unary_data(np_stream *s, const uint8_t *data, size_t len,
                       void *ud) {
  unary *st = ud;
  if (st == NULL || st->done || len == 0)
    return;
  if (st->len + len > st->cap) {
    size_t cap = st->cap ? st->cap : 256;
    uint8_t *nb;
    while (cap < st->len + len)
      cap *= 2;
    if (cap > UNARY_MAX + 16 || (nb = realloc(st->buf, cap)) == NULL) {
      st->done = 1;
      st->b->api->stream_close(s);
      return;
    }
    st->buf = nb;
    st->cap = cap;
  }
  memcpy(st->buf + st->len, data, len);
  st->len += len;
  unary_try(s, st);
}

static void unary_close(np_stream *s, int err, void *ud) {
  unary *st = ud;
  (void)s, (void)err;
  if (st) {
    free(st->buf);
    free(st);
  }
}

static const np_stream_cbs perf_cbs = {sizeof(np_stream_cbs), perf_open,
                                       perf_data, perf_close, perf_writable};
static const np_stream_cbs unary_cbs = {sizeof(np_stream_cbs), unary_open,
                                        unary_data, unary_close, NULL};

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  bench *b;
  int rv;
  if (!NP_HAS(api, stream_set_ud))
    return NP_ENOTSUP;
  if ((b = calloc(1, sizeof(*b))) == NULL)
    return NP_ENOMEM;
  b->api = api;
  rv = api->register_stream(p, "/perf/1.0.0", &perf_cbs, b);
  if (rv == 0)
    rv = api->register_stream(p, "/bench/unary/1.0.0", &unary_cbs, b);
  if (rv != 0) {
    free(b);
    return rv;
  }
  *ud = b;
  return 0;
}

static void fini(np_plugin *p, void *ud) {
  (void)p;
  free(ud);
}

NP_PLUGIN_DEFINE2("bench", "1.0.0", init, fini,
                  "serves /perf/1.0.0 and /bench/unary/1.0.0 for benchmarks")
