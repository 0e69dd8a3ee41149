/* Fuzz the yamux session. Input: byte 0 = mode (bit 0: client; bit 1:
 * consume in on_data; bit 2: small output bound; bit 3: reset a stream
 * from inside on_data; bit 4: larger windows), then operations, each an
 * opcode byte and its arguments:
 *   raw feed     len8, then len bytes of frames
 *   frame        type, flags, id8 (ids 0..255), len8, payload (DATA only)
 *   open / write / close_write / reset / consumed / pause / resume on a
 *   harness slot, ping, go-away, drain output, refuse-next toggle, time.
 * Checks: no crash or leak (ASan), on_close exactly once per stream and
 * nothing after it, unconsumed <= window <= max_window, bounded output,
 * errors sticky. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_yamux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSLOT 16

typedef struct slot {
  np_yamux_stream *st;
  int fin;
  size_t owed; /* delivered, not yet consumed */
} slot;

typedef struct harness {
  np_yamux *s;
  np_yamux_config cfg;
  slot slots[NSLOT];
  int consume, reset_in_data, refuse;
  uint64_t now;
  int errors;
} harness;

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c))                                                                  \
      abort();                                                                 \
  } while (0)

static slot *slot_of(harness *h, np_yamux_stream *st, void *sud) {
  slot *sl = sud;
  CHECK(sl >= h->slots && sl < h->slots + NSLOT);
  CHECK(sl->st == st);
  return sl;
}

static void check_stream(harness *h, np_yamux_stream *st) {
  CHECK(np_yamux_stream_unconsumed(st) <= np_yamux_stream_recv_window(st));
  CHECK(np_yamux_stream_recv_window(st) <= h->cfg.max_window);
}

static int on_open(np_yamux_stream *st, void *ud) {
  harness *h = ud;
  int i;
  if (h->refuse)
    return 1;
  for (i = 0; i < NSLOT; i++)
    if (h->slots[i].st == NULL) {
      h->slots[i].st = st;
      h->slots[i].fin = 0;
      h->slots[i].owed = 0;
      np_yamux_stream_set_ud(st, &h->slots[i]);
      return 0;
    }
  return 1;
}

static void on_data(np_yamux_stream *st, const uint8_t *d, size_t len, void *ud,
                    void *sud) {
  harness *h = ud;
  slot *sl = slot_of(h, st, sud);
  CHECK(len > 0 && d != NULL && !sl->fin);
  check_stream(h, st);
  sl->owed += len;
  if (h->consume) {
    CHECK(np_yamux_consumed(st, len, h->now) == 0 || np_yamux_error(h->s));
    sl->owed -= len;
  }
  if (h->reset_in_data && (d[0] & 7) == 0)
    np_yamux_reset(st);
}

static void on_fin(np_yamux_stream *st, void *ud, void *sud) {
  slot *sl = slot_of(ud, st, sud);
  CHECK(!sl->fin);
  sl->fin = 1;
}

static void on_writable(np_yamux_stream *st, void *ud, void *sud) {
  slot_of(ud, st, sud);
}

static void on_close(np_yamux_stream *st, int err, void *ud, void *sud) {
  slot *sl = slot_of(ud, st, sud);
  CHECK(err == 0 || err == NP_ECLOSED || err == NP_ECANCELED ||
        err == NP_EPROTO || err == NP_ENOMEM);
  sl->st = NULL;
}

static void on_ping(np_yamux *s, uint64_t rtt, void *ud) {
  (void)s, (void)rtt, (void)ud;
}

static void on_goaway(np_yamux *s, uint32_t code, void *ud) {
  (void)s, (void)code, (void)ud;
}

static void on_error(np_yamux *s, int err, void *ud) {
  harness *h = ud;
  (void)s;
  CHECK(err == NP_EPROTO || err == NP_ENOMEM);
  CHECK(h->errors++ == 0);
}

static const np_yamux_cbs cbs = {on_open,  on_data, on_fin,    on_writable,
                                 on_close, on_ping, on_goaway, on_error};

static void drain(harness *h, size_t n) {
  const uint8_t *o;
  size_t have = np_yamux_output(h->s, &o);
  /* Control answers may pass max_output by a bounded margin only. */
  CHECK(have <= h->cfg.max_output + 16 * 1024 + NSLOT * 24 + 64);
  np_yamux_output_drain(h->s, n);
}

static void feed(harness *h, const uint8_t *in, size_t len) {
  size_t off = 0;
  int guard = 0;
  while (off < len) {
    np_ssize r = np_yamux_feed(h->s, in + off, len - off, h->now);
    if (r < 0) {
      CHECK(r == np_yamux_error(h->s));
      return;
    }
    CHECK((size_t)r <= len - off);
    off += (size_t)r;
    if (off < len) {
      /* Paused for output room: draining must unblock it. */
      drain(h, SIZE_MAX);
      CHECK(++guard < 4);
    }
  }
}

static slot *pick(harness *h, uint8_t b) { return &h->slots[b % NSLOT]; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t junk[65536];
  harness h;
  size_t i = 1;
  int k;
  if (size < 1)
    return 0;
  memset(&h, 0, sizeof(h));
  np_yamux_config_default(&h.cfg);
  if (data[0] & 4)
    h.cfg.max_output = 1024;
  if (data[0] & 16) {
    h.cfg.initial_window = 512 * 1024;
    h.cfg.max_window = 1024 * 1024;
  } else {
    h.cfg.max_window = 512 * 1024;
  }
  h.cfg.max_streams = 8;
  h.cfg.max_unacked = 8;
  h.consume = !!(data[0] & 2);
  h.reset_in_data = !!(data[0] & 8);
  CHECK(np_yamux_new(&h.s, data[0] & 1, &h.cfg, &cbs, &h) == 0);
  while (i < size) {
    uint8_t op = data[i++];
    uint8_t a = i < size ? data[i] : 0, b = i + 1 < size ? data[i + 1] : 0;
    slot *sl = pick(&h, a);
    switch (op % 16) {
    case 0: /* raw bytes */
    case 1: {
      size_t n = a;
      i++;
      if (n > size - (i < size ? i : size))
        n = size - (i < size ? i : size);
      feed(&h, data + i, n);
      i += n;
      break;
    }
    case 2: /* a well-formed header, payload from the input */
    case 3: {
      uint8_t hdr[NP_YAMUX_HEADER_SIZE];
      uint8_t type = a & 3, flags = (a >> 2) & 15;
      uint8_t id = b, lenb = i + 2 < size ? data[i + 2] : 0;
      uint32_t len = lenb;
      i += 3;
      if (type == NP_YAMUX_WINDOW_UPDATE && (lenb & 0x80))
        len = (uint32_t)(lenb & 0x7f) << 16; /* big credits */
      if (type == NP_YAMUX_DATA && (lenb & 0x80))
        len = (uint32_t)(lenb & 0x7f) * 4096; /* long frames */
      np_yamux_header_encode(hdr, type, flags, id, len);
      feed(&h, hdr, sizeof(hdr));
      if (type == NP_YAMUX_DATA) {
        size_t left = len;
        while (left > 0 && !np_yamux_error(h.s)) {
          size_t n = left < sizeof(junk) ? left : sizeof(junk);
          size_t from = size - (i < size ? i : size);
          if (from > n)
            from = n;
          memcpy(junk, data + (i < size ? i : size), from);
          memset(junk + from, 0, n - from);
          i += from;
          feed(&h, junk, n);
          left -= n;
        }
      }
      break;
    }
    case 4: /* open into a free slot */
      i++;
      if (sl->st == NULL) {
        k = np_yamux_open(h.s, &sl->st, sl);
        CHECK((k == 0) == (sl->st != NULL));
        sl->fin = 0;
        sl->owed = 0;
      }
      break;
    case 5: /* write */
      i += 2;
      if (sl->st) {
        size_t n = (size_t)b * 1024 + 1;
        np_ssize w;
        static uint8_t payload[256 * 1024 + 1];
        w = np_yamux_write(sl->st, payload, n);
        CHECK(w != 0 && (w < 0 || (size_t)w <= n));
      }
      break;
    case 6:
      i++;
      if (sl->st)
        np_yamux_close_write(sl->st);
      break;
    case 7:
      i++;
      if (sl->st) {
        np_yamux_reset(sl->st);
        CHECK(sl->st == NULL);
      }
      break;
    case 8: /* consume part of what was delivered */
      i += 2;
      if (sl->st) {
        size_t n = sl->owed * b / 255;
        check_stream(&h, sl->st);
        CHECK(sl->owed <= np_yamux_stream_unconsumed(sl->st));
        if (!np_yamux_error(h.s))
          CHECK(np_yamux_consumed(sl->st, sl->owed + 1, h.now) == NP_EINVAL);
        CHECK(np_yamux_consumed(sl->st, n, h.now) == 0 || np_yamux_error(h.s));
        sl->owed -= n;
      }
      break;
    case 9:
    case 10:
      i++;
      if (sl->st)
        np_yamux_pause(sl->st, op % 16 == 9);
      break;
    case 11:
      np_yamux_ping(h.s, h.now);
      break;
    case 12:
      i++;
      k = np_yamux_goaway(h.s, a);
      CHECK(k == 0 || k == NP_EEXIST || k == np_yamux_error(h.s));
      break;
    case 13:
      i++;
      drain(&h, (size_t)a * 64);
      break;
    case 14:
      drain(&h, SIZE_MAX);
      break;
    default:
      i++;
      h.refuse = a & 1;
      h.now += a >> 1;
      break;
    }
  }
  drain(&h, SIZE_MAX);
  np_yamux_del(h.s);
  for (k = 0; k < NSLOT; k++)
    CHECK(h.slots[k].st == NULL);
  return 0;
}
