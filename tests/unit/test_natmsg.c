/* NAT traversal message codecs: AutoNAT v1/v2 (np_autonatmsg), circuit
 * relay v2 hop/stop and reservation vouchers (np_relaymsg), DCUtR
 * (np_dcutrmsg). Hand-written wire vectors (libp2p-wire.md §12-15) for
 * each message type both ways, every enum value, and refusals: truncated,
 * oversized and garbage input, missing or unknown fields, every cap. */
#include <stdlib.h>
#include <string.h>

#include "np_autonatmsg.h"
#include "np_dcutrmsg.h"
#include "np_identify.h"
#include "np_identity.h"
#include "np_relaymsg.h"
#include "tap.h"

/* ---- vectors ----
 * PID_A/PID_B: sha2-256 peer IDs (12 20 || 32 bytes).
 * ADDR_T: /ip4/1.2.3.4/tcp/4001; ADDR_Q: /ip4/5.6.7.8/udp/4001/quic-v1;
 * ADDR_R: /ip4/1.2.3.4/tcp/4001/p2p/PID_A (a relay address). */
#define AA8 "aaaaaaaaaaaaaaaa"
#define BB8 "bbbbbbbbbbbbbbbb"
#define PID_A "1220" AA8 AA8 AA8 AA8
#define PID_B "1220" BB8 BB8 BB8 BB8
#define ADDR_T "0401020304060fa1"
#define ADDR_Q "0405060708 9102 0fa1 cd03"
#define ADDR_R ADDR_T "a50322" PID_A
#define ADDR_BAD "040102" /* ip4 cut short */

/* Hex (spaces allowed) into |out|; returns the byte count. */
static size_t hx(uint8_t *out, const char *s) {
  size_t n = 0;
  while (*s) {
    unsigned v;
    if (*s == ' ') {
      s++;
      continue;
    }
    if (sscanf(s, "%2x", &v) != 1)
      abort();
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return n;
}

static uint8_t addr_t[8], addr_q[11], addr_r[45];

static void pid(np_peerid *id, const char *h) {
  uint8_t b[64];
  size_t n = hx(b, h);
  if (np_peerid_from_bytes(id, b, n) != 0)
    abort();
}

static int blob_is(const uint8_t *d, size_t n, const uint8_t *w, size_t wn) {
  return n == wn && (n == 0 || memcmp(d, w, n) == 0);
}

/* Decode each of the first |n| bytes prefixes of |buf| with |dec| and count
 * those accepted: a cut message must never decode as something else. The
 * callers pass only messages whose every proper prefix is malformed. */
typedef int (*decode_fn)(const uint8_t *buf, size_t len);

static size_t prefixes_accepted(decode_fn dec, const uint8_t *buf, size_t n) {
  size_t i, acc = 0;
  for (i = 1; i < n; i++) {
    uint8_t *cp = malloc(i); /* exact size: ASan sees over-reads */
    memcpy(cp, buf, i);
    acc += dec(cp, i) == 0;
    free(cp);
  }
  return acc;
}

/* ---- DCUtR --------------------------------------------------------------- */

static int dcutr_dec(const uint8_t *b, size_t n) {
  np_dcutrmsg m;
  int rv = np_dcutrmsg_decode(&m, b, n, NULL);
  np_dcutrmsg_free(&m);
  return rv;
}

static void test_dcutr(void) {
  uint8_t v[8192], out[8192];
  size_t n, i;
  np_ssize w;
  np_dcutrmsg m, back;
  np_dcutrmsg_blob addrs[400];
  np_dcutrmsg_limits tiny = {64, 1};

  /* CONNECT{ObsAddrs: ADDR_T, ADDR_Q}: 08 64, then 12 len addr each. */
  n = hx(v, "0864 1208" ADDR_T " 120b" ADDR_Q);
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), 0, "dcutr: CONNECT decodes");
  ok(m.type == NP_DCUTRMSG_CONNECT && m.naddrs == 2 &&
         blob_is(m.addrs[0].data, m.addrs[0].len, addr_t, 8) &&
         blob_is(m.addrs[1].data, m.addrs[1].len, addr_q, 11),
     "dcutr: CONNECT type 100 and both ObsAddrs in order");
  w = np_dcutrmsg_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "dcutr: CONNECT re-encodes to the same bytes");
  np_dcutrmsg_free(&m);
  ok(m.addrs == NULL && m.naddrs == 0, "dcutr: free leaves it empty");

  /* SYNC: type 300 = ac 02, no addrs. */
  n = hx(v, "08ac02");
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), 0, "dcutr: SYNC decodes");
  ok(m.type == NP_DCUTRMSG_SYNC && m.naddrs == 0, "dcutr: SYNC is 300");
  np_dcutrmsg_init(&back);
  back.type = NP_DCUTRMSG_SYNC;
  w = np_dcutrmsg_encode_lp(&back, out, sizeof(out));
  ok(w == 4 && memcmp(out, "\x03\x08\xac\x02", 4) == 0,
     "dcutr: SYNC framed is 03 08 ac 02");
  np_dcutrmsg_free(&m);

  /* Framing: the message, then bytes that are not ours. */
  n = hx(v, "0308ac02 ffff");
  is_int(np_dcutrmsg_decode_lp(&m, v, n, NULL), 4,
         "dcutr: decode_lp takes prefix and body only");
  is_int(m.type, NP_DCUTRMSG_SYNC, "dcutr: decode_lp type");
  np_dcutrmsg_free(&m);
  is_int(np_dcutrmsg_decode_lp(&m, v, 3, NULL), NP_ETRUNC,
         "dcutr: decode_lp of a cut message is NP_ETRUNC");
  n = hx(v, "818001");
  is_int(np_dcutrmsg_decode_lp(&m, v, n, NULL), NP_ELIMIT,
         "dcutr: decode_lp refuses a 16 KiB prefix before reading");

  /* Refusals. */
  n = hx(v, "1208" ADDR_T);
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "dcutr: missing (required) type is NP_EPROTO");
  n = hx(v, "08c801");
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "dcutr: type 200 is NP_EPROTO");
  n = hx(v, "0800");
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "dcutr: type 0 is NP_EPROTO");
  n = hx(v, "ffffffff");
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "dcutr: garbage is NP_EPROTO");
  n = hx(v, "0864 1208" ADDR_T);
  is_int(prefixes_accepted(dcutr_dec, v, n), 1,
         "dcutr: of the cuts of CONNECT only 08 64 decodes");
  memset(v, 0, NP_DCUTRMSG_MSG_MAX + 1);
  is_int(np_dcutrmsg_decode(&m, v, NP_DCUTRMSG_MSG_MAX + 1, NULL), NP_ELIMIT,
         "dcutr: a body over 4 KiB is NP_ELIMIT");
  ok(m.addrs == NULL && m.naddrs == 0, "dcutr: refused message is empty");

  /* Invalid addrs are dropped, valid ones kept in order. */
  n = hx(v, "0864 1203" ADDR_BAD " 1200 1203ffff03 1208" ADDR_T);
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), 0,
         "dcutr: CONNECT with bad addrs decodes");
  ok(m.naddrs == 1 && blob_is(m.addrs[0].data, m.addrs[0].len, addr_t, 8),
     "dcutr: truncated, empty and unknown addrs dropped");
  np_dcutrmsg_free(&m);

  /* Caps: 40 addrs -> 32 by default, 1 under tiny limits (and tiny's
   * 64-byte body cap refuses the whole). */
  n = hx(v, "0864");
  for (i = 0; i < 40; i++)
    n += hx(v + n, "1208" ADDR_T);
  is_int(np_dcutrmsg_decode(&m, v, n, NULL), 0, "dcutr: 40 addrs decode");
  is_int(m.naddrs, NP_DCUTRMSG_ADDRS_MAX, "dcutr: addrs capped at 32");
  np_dcutrmsg_free(&m);
  is_int(np_dcutrmsg_decode(&m, v, n, &tiny), NP_ELIMIT,
         "dcutr: body over the caller's max_msg is NP_ELIMIT");
  is_int(np_dcutrmsg_decode(&m, v, 2 + 3 * 10, &tiny), 0,
         "dcutr: 3 addrs under tiny limits");
  is_int(m.naddrs, 1, "dcutr: caller's max_addrs applies");
  np_dcutrmsg_free(&m);

  /* Encoder refusals. */
  np_dcutrmsg_init(&back);
  back.type = (np_dcutrmsg_type)101;
  is_int(np_dcutrmsg_encode(&back, out, sizeof(out)), NP_EINVAL,
         "dcutr: encode refuses type 101");
  back.type = NP_DCUTRMSG_CONNECT;
  back.naddrs = 1;
  is_int(np_dcutrmsg_encode(&back, out, sizeof(out)), NP_EINVAL,
         "dcutr: encode refuses NULL addrs");
  for (i = 0; i < 400; i++) {
    addrs[i].data = addr_q;
    addrs[i].len = sizeof(addr_q);
  }
  back.addrs = addrs;
  back.naddrs = 400;
  is_int(np_dcutrmsg_encode(&back, out, sizeof(out)), NP_ELIMIT,
         "dcutr: encode refuses a body over 4 KiB");
  back.naddrs = 2;
  is_int(np_dcutrmsg_encode(&back, out, 20), NP_ELIMIT,
         "dcutr: encode refuses a small buffer");
  is_int(np_dcutrmsg_encode_lp(&back, out, 28), NP_ELIMIT,
         "dcutr: encode_lp counts the prefix");
  is_int(np_dcutrmsg_encode_lp(&back, out, 29), 29,
         "dcutr: encode_lp fits exactly");
}

/* ---- relay --------------------------------------------------------------- */

static int hop_dec(const uint8_t *b, size_t n) {
  np_relaymsg m;
  int rv = np_relaymsg_decode(&m, NP_RELAYMSG_HOP, b, n, NULL);
  np_relaymsg_free(&m);
  return rv;
}

static void relay_roundtrip(const np_relaymsg *m, const char *what) {
  uint8_t out[NP_RELAYMSG_MSG_MAX];
  np_relaymsg back;
  np_ssize w = np_relaymsg_encode(m, out, sizeof(out));
  int rv = w < 0 ? (int)w
                 : np_relaymsg_decode(&back, m->kind, out, (size_t)w, NULL);
  ok(rv == 0 && back.type == m->type && back.has_status == m->has_status &&
         (!m->has_status || back.status == m->status),
     "relay: %s round trip", what);
  if (rv == 0)
    np_relaymsg_free(&back);
}

static void test_relay_msgs(void) {
  static const unsigned statuses[] = {0, 100, 200, 201, 202, 203, 204, 400, 401};
  uint8_t v[16384], out[8192];
  size_t n, i;
  np_ssize w;
  np_relaymsg m;
  np_peerid a, b;
  np_relaymsg_limits lim;
  np_relaymsg_blob many[400];
  pid(&a, PID_A);
  pid(&b, PID_B);

  /* Hop RESERVE: proto3-optional/proto2 presence, so type 0 is sent. */
  n = hx(v, "0800");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), 0,
         "relay: hop RESERVE decodes");
  ok(m.kind == NP_RELAYMSG_HOP && m.type == NP_RELAYMSG_HOP_RESERVE &&
         !m.has_peer && !m.has_reservation && !m.has_limit && !m.has_status,
     "relay: hop RESERVE has nothing else");
  w = np_relaymsg_encode(&m, out, sizeof(out));
  ok(w == 2 && memcmp(out, "\x08\x00", 2) == 0,
     "relay: hop RESERVE encodes as 08 00");
  np_relaymsg_free(&m);

  /* Hop CONNECT{peer{id B, addrs ADDR_T}}. */
  n = hx(v, "0801 122e 0a22" PID_B "1208" ADDR_T);
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), 0,
         "relay: hop CONNECT decodes");
  ok(m.type == NP_RELAYMSG_HOP_CONNECT && m.has_peer &&
         np_peerid_equal(&m.peer.id, &b) && m.peer.naddrs == 1 &&
         blob_is(m.peer.addrs[0].data, m.peer.addrs[0].len, addr_t, 8),
     "relay: hop CONNECT peer id and addr");
  w = np_relaymsg_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "relay: hop CONNECT re-encodes to the same bytes");
  np_relaymsg_free(&m);

  /* Hop STATUS OK with reservation{expire 1700000000, addrs ADDR_R,
   * voucher "v0ucher"} and limit{120 s, 128 KiB}. */
  n = hx(v, "0802 1a3e 0880e2cfaa06 122d" ADDR_R " 1a07 76307563686572"
            " 2206 0878 10808008 2864");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), 0,
         "relay: hop STATUS with reservation decodes");
  ok(m.type == NP_RELAYMSG_HOP_STATUS && m.has_status &&
         m.status == NP_RELAYMSG_OK && m.has_reservation &&
         m.reservation.expire == 1700000000u && m.reservation.naddrs == 1 &&
         blob_is(m.reservation.addrs[0].data, m.reservation.addrs[0].len,
                 addr_r, sizeof(addr_r)) &&
         blob_is(m.reservation.voucher.data, m.reservation.voucher.len,
                 (const uint8_t *)"v0ucher", 7),
     "relay: reservation expire, addr and voucher");
  ok(m.has_limit && m.limit.duration == 120 && m.limit.data == 131072,
     "relay: limit 120 s / 128 KiB");
  w = np_relaymsg_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "relay: hop STATUS re-encodes to the same bytes");
  np_relaymsg_free(&m);

  /* Stop CONNECT{peer A, limit} and stop STATUS OK. */
  n = hx(v, "0800 1224 0a22" PID_A " 1a06 0878 10808008");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_STOP, v, n, NULL), 0,
         "relay: stop CONNECT decodes");
  ok(m.kind == NP_RELAYMSG_STOP && m.type == NP_RELAYMSG_STOP_CONNECT &&
         m.has_peer && np_peerid_equal(&m.peer.id, &a) &&
         m.peer.naddrs == 0 && m.has_limit && m.limit.duration == 120,
     "relay: stop CONNECT peer and limit");
  w = np_relaymsg_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "relay: stop CONNECT re-encodes to the same bytes");
  np_relaymsg_free(&m);
  n = hx(v, "0801 2064");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_STOP, v, n, NULL), 0,
         "relay: stop STATUS decodes");
  ok(m.type == NP_RELAYMSG_STOP_STATUS && m.has_status &&
         m.status == NP_RELAYMSG_OK,
     "relay: stop STATUS OK (field 4 in stop)");
  np_relaymsg_free(&m);
  /* The same bytes as a hop message: field 4 is a Limit there. */
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_EPROTO,
         "relay: stop STATUS bytes are not a hop message");

  /* A status with a two-byte value: 401 = 91 03. */
  n = hx(v, "0802 289103");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), 0,
         "relay: hop STATUS 401 decodes");
  is_int(m.status, NP_RELAYMSG_UNEXPECTED_MESSAGE, "relay: 401 value");
  np_relaymsg_free(&m);

  /* Every type and status both ways. */
  for (i = 0; i < NP_ARRAY_LEN(statuses); i++) {
    np_relaymsg_init(&m);
    m.kind = i % 2 ? NP_RELAYMSG_STOP : NP_RELAYMSG_HOP;
    m.type = i % 2 ? NP_RELAYMSG_STOP_STATUS : NP_RELAYMSG_HOP_STATUS;
    m.has_status = 1;
    m.status = (np_relaymsg_status)statuses[i];
    relay_roundtrip(&m, i % 2 ? "stop status" : "hop status");
  }
  for (i = 0; i <= NP_RELAYMSG_HOP_STATUS; i++) {
    np_relaymsg_init(&m);
    m.kind = NP_RELAYMSG_HOP;
    m.type = (unsigned)i;
    relay_roundtrip(&m, "hop type");
  }
  for (i = 0; i <= NP_RELAYMSG_STOP_STATUS; i++) {
    np_relaymsg_init(&m);
    m.kind = NP_RELAYMSG_STOP;
    m.type = (unsigned)i;
    relay_roundtrip(&m, "stop type");
  }

  /* Framing: STATUS then upgrade bytes (multistream header) that must be
   * left to the caller. */
  n = hx(v, "04 0801 2064 13 2f6d756c746973747265616d");
  is_int(np_relaymsg_decode_lp(&m, NP_RELAYMSG_STOP, v, n, NULL), 5,
         "relay: decode_lp stops at the end of the message");
  np_relaymsg_free(&m);
  is_int(np_relaymsg_decode_lp(&m, NP_RELAYMSG_STOP, v, 4, NULL), NP_ETRUNC,
         "relay: decode_lp of a cut message is NP_ETRUNC");
  n = hx(v, "818001");
  is_int(np_relaymsg_decode_lp(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_ELIMIT,
         "relay: decode_lp refuses a 16 KiB prefix");
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_STOP;
  m.type = NP_RELAYMSG_STOP_STATUS;
  m.has_status = 1;
  m.status = NP_RELAYMSG_OK;
  w = np_relaymsg_encode_lp(&m, out, sizeof(out));
  ok(w == 5 && memcmp(out, "\x04\x08\x01\x20\x64", 5) == 0,
     "relay: stop STATUS framed is 04 08 01 20 64");

  /* Refusals. */
  /* A missing type is 0, as go's GetType() reads it (one go revision sent
   * RESERVE and stop CONNECT without it). */
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, 0, NULL), 0,
         "relay: empty hop message decodes");
  is_int(m.type, NP_RELAYMSG_HOP_RESERVE, "relay: ... as RESERVE");
  np_relaymsg_free(&m);
  n = hx(v, "1224 0a22" PID_A);
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_STOP, v, n, NULL), 0,
         "relay: stop message without type decodes");
  ok(m.type == NP_RELAYMSG_STOP_CONNECT && m.has_peer,
     "relay: ... as CONNECT with its peer");
  np_relaymsg_free(&m);
  n = hx(v, "0803");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_EPROTO,
         "relay: hop type 3 is NP_EPROTO");
  n = hx(v, "0802");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_STOP, v, n, NULL), NP_EPROTO,
         "relay: stop type 2 is NP_EPROTO");
  n = hx(v, "0802 289601");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_EPROTO,
         "relay: status 150 is NP_EPROTO");
  n = hx(v, "0801 1200");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_EPROTO,
         "relay: peer without id is NP_EPROTO");
  n = hx(v, "0801 1203 0a0100");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_EPROTO,
         "relay: peer with a bad id is NP_EPROTO");
  n = hx(v, "0801 ffff");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_EPROTO,
         "relay: garbage is NP_EPROTO");
  n = hx(v, "0801 1224 0a22" PID_B);
  is_int(prefixes_accepted(hop_dec, v, n), 1,
         "relay: of the cuts of hop CONNECT only 08 01 decodes");
  is_int(np_relaymsg_decode(&m, (np_relaymsg_kind)2, v, n, NULL), NP_EINVAL,
         "relay: unknown kind is NP_EINVAL");
  memset(v, 0, NP_RELAYMSG_MSG_MAX + 1);
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, NP_RELAYMSG_MSG_MAX + 1,
                            NULL),
         NP_ELIMIT, "relay: a body over 4 KiB is NP_ELIMIT");

  /* Caps: addrs dropped when invalid or past max_addrs, voucher length. */
  n = hx(v, "0801 12");
  v[n++] = 0x80 | ((36 + 5 + 20 * 10) & 0x7f);
  v[n++] = (36 + 5 + 20 * 10) >> 7;
  n += hx(v + n, "0a22" PID_B "1203" ADDR_BAD);
  for (i = 0; i < 20; i++)
    n += hx(v + n, "1208" ADDR_T);
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), 0,
         "relay: peer with 21 addrs decodes");
  is_int(m.peer.naddrs, NP_RELAYMSG_ADDRS_MAX,
         "relay: bad addr dropped, 16 kept");
  np_relaymsg_free(&m);
  np_relaymsg_limits_default(&lim);
  lim.max_voucher = 6;
  n = hx(v, "0802 1a09 1a07 76307563686572");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, &lim), NP_ELIMIT,
         "relay: voucher over max_voucher is NP_ELIMIT");
  lim.max_voucher = 7;
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, &lim), 0,
         "relay: voucher of max_voucher bytes is kept");
  ok(m.has_reservation && m.reservation.expire == 0 &&
         m.reservation.naddrs == 0 && m.reservation.voucher.len == 7,
     "relay: reservation without expire or addrs");
  np_relaymsg_free(&m);
  /* Memory budget: protobuf-c allocates a fresh Limit for each of 2000
   * repeated empty ones (merging them), far more heap than the 4 KiB on
   * the wire; the budget (8 * max_msg + 64 KiB) refuses it, a larger
   * max_msg lets it through. */
  n = hx(v, "0802");
  for (i = 0; i < 2000; i++)
    n += hx(v + n, "2200");
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, NULL), NP_ELIMIT,
         "relay: 2000 repeated limits exceed the unpack budget");
  lim.max_msg = 64 * 1024;
  is_int(np_relaymsg_decode(&m, NP_RELAYMSG_HOP, v, n, &lim), 0,
         "relay: a 64 KiB max_msg has the budget for them");
  ok(m.has_limit && m.limit.duration == 0, "relay: merged into one limit");
  np_relaymsg_free(&m);

  /* Encoder refusals. */
  np_relaymsg_init(&m);
  m.kind = NP_RELAYMSG_STOP;
  m.type = NP_RELAYMSG_STOP_CONNECT;
  m.has_reservation = 1;
  is_int(np_relaymsg_encode(&m, out, sizeof(out)), NP_EINVAL,
         "relay: encode refuses a reservation in a stop message");
  m.has_reservation = 0;
  m.type = 2;
  is_int(np_relaymsg_encode(&m, out, sizeof(out)), NP_EINVAL,
         "relay: encode refuses stop type 2");
  m.type = NP_RELAYMSG_STOP_STATUS;
  m.has_status = 1;
  m.status = (np_relaymsg_status)99;
  is_int(np_relaymsg_encode(&m, out, sizeof(out)), NP_EINVAL,
         "relay: encode refuses status 99");
  m.has_status = 0;
  m.has_peer = 1;
  is_int(np_relaymsg_encode(&m, out, sizeof(out)), NP_EINVAL,
         "relay: encode refuses an empty peer ID");
  m.peer.id = a;
  m.peer.naddrs = 3;
  is_int(np_relaymsg_encode(&m, out, sizeof(out)), NP_EINVAL,
         "relay: encode refuses NULL addrs");
  for (i = 0; i < 400; i++) {
    many[i].data = addr_r;
    many[i].len = sizeof(addr_r);
  }
  m.peer.addrs = many;
  m.peer.naddrs = 400;
  is_int(np_relaymsg_encode(&m, out, sizeof(out)), NP_ELIMIT,
         "relay: encode refuses a body over 4 KiB");
  m.peer.naddrs = 1;
  is_int(np_relaymsg_encode(&m, out, 10), NP_ELIMIT,
         "relay: encode refuses a small buffer");
}

static void test_relay_voucher(void) {
  uint8_t seed[NP_ED25519_SEED_LEN], env[1024], bad[1024], pl[256];
  np_ed25519 k1, k2;
  np_identity relay, other;
  np_relaymsg_voucher v;
  np_peerid b;
  np_ssize n;
  size_t pn;
  pid(&b, PID_B);
  memset(seed, 1, sizeof(seed));
  if (np_ed25519_from_seed(&k1, seed) != 0 ||
      np_identity_from_key(&relay, &k1) != 0)
    abort();
  memset(seed, 2, sizeof(seed));
  if (np_ed25519_from_seed(&k2, seed) != 0 ||
      np_identity_from_key(&other, &k2) != 0)
    abort();

  n = np_relaymsg_voucher_seal(&relay, &b, 1700000000u, env, sizeof(env));
  ok(n > 0, "voucher: sealed (%d bytes)", (int)n);
  /* Envelope{public_key 0a 24 (08 01 12 20 pub), payload_type 12 02 03 02,
   * payload 1a .., signature 2a 40 ..}; payload = Voucher{0a 26 relay ID,
   * 12 22 PID_B, 18 expiration}. */
  pn = hx(pl, "0a2408011220");
  ok(n > 40 && memcmp(env, pl, pn) == 0 &&
         memcmp(env + pn, k1.pub, 32) == 0,
     "voucher: envelope starts with the relay's Ed25519 key");
  pn = hx(pl, "12020302 1a52 0a26");
  ok(memcmp(env + 38, pl, pn) == 0 &&
         memcmp(env + 38 + pn, relay.id.bytes, 38) == 0,
     "voucher: payload type 03 02 (raw), payload starts with relay ID");
  pn = hx(pl, "1222" PID_B "1880e2cfaa06 2a40");
  ok(memcmp(env + 38 + 8 + 38, pl, pn) == 0 && (size_t)n == 38 + 8 + 38 + pn + 64,
     "voucher: then peer, expiration and a 64-byte signature");

  is_int(np_relaymsg_voucher_open(&v, env, (size_t)n, &relay.id, &b), 0,
         "voucher: opens for the expected relay and peer");
  ok(np_peerid_equal(&v.relay, &relay.id) && np_peerid_equal(&v.peer, &b) &&
         v.expiration == 1700000000u,
     "voucher: relay, peer and expiration");
  is_int(np_relaymsg_voucher_open(&v, env, (size_t)n, NULL, NULL), 0,
         "voucher: opens without expectations");
  is_int(np_relaymsg_voucher_open(&v, env, (size_t)n, &other.id, NULL),
         NP_EPEERID, "voucher: another relay expected is NP_EPEERID");
  is_int(np_relaymsg_voucher_open(&v, env, (size_t)n, NULL, &relay.id),
         NP_EPEERID, "voucher: another peer expected is NP_EPEERID");
  ok(v.relay.len == 0 && v.expiration == 0, "voucher: refused is zeroed");

  /* A flipped payload byte (the expiration) breaks the signature. */
  memcpy(bad, env, (size_t)n);
  bad[38 + 8 + 38 + 36 + 1] ^= 1;
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_ECRYPTO,
         "voucher: tampered payload is NP_ECRYPTO");
  /* Cut and garbage envelopes. */
  is_int(np_relaymsg_voucher_open(&v, env, (size_t)n - 1, NULL, NULL),
         NP_EPROTO, "voucher: cut envelope is NP_EPROTO");
  is_int(np_relaymsg_voucher_open(&v, (const uint8_t *)"\xff\xff", 2, NULL,
                                  NULL),
         NP_EPROTO, "voucher: garbage is NP_EPROTO");

  /* The same payload under the peer-record domain (signature covers the
   * domain) and under the peer-record type. */
  pn = 0x52;
  memcpy(pl, env + 44, pn);
  n = np_envelope_seal(&relay, NP_PEER_RECORD_DOMAIN,
                       (const uint8_t *)"\x03\x02", 2, pl, pn, bad,
                       sizeof(bad));
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_ECRYPTO,
         "voucher: signed under another domain is NP_ECRYPTO");
  n = np_envelope_seal(&relay, NP_RELAYMSG_VOUCHER_DOMAIN,
                       (const uint8_t *)"\x03\x01", 2, pl, pn, bad,
                       sizeof(bad));
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_EPROTO,
         "voucher: payload type 03 01 is NP_EPROTO");
  /* Signed by |other| while naming |relay|: the signer must be the relay. */
  n = np_envelope_seal(&other, NP_RELAYMSG_VOUCHER_DOMAIN,
                       (const uint8_t *)"\x03\x02", 2, pl, pn, bad,
                       sizeof(bad));
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_EPEERID,
         "voucher: signer other than voucher.relay is NP_EPEERID");
  /* Payload without peer; payload with a bad relay ID; not a payload. */
  pn = hx(pl, "0a22" PID_A "1801");
  n = np_envelope_seal(&relay, NP_RELAYMSG_VOUCHER_DOMAIN,
                       (const uint8_t *)"\x03\x02", 2, pl, pn, bad,
                       sizeof(bad));
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_EPROTO,
         "voucher: payload without peer is NP_EPROTO");
  pn = hx(pl, "0a0100 1222" PID_B);
  n = np_envelope_seal(&relay, NP_RELAYMSG_VOUCHER_DOMAIN,
                       (const uint8_t *)"\x03\x02", 2, pl, pn, bad,
                       sizeof(bad));
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_EPROTO,
         "voucher: payload with a bad relay ID is NP_EPROTO");
  pn = hx(pl, "ffffff");
  n = np_envelope_seal(&relay, NP_RELAYMSG_VOUCHER_DOMAIN,
                       (const uint8_t *)"\x03\x02", 2, pl, pn, bad,
                       sizeof(bad));
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_EPROTO,
         "voucher: garbage payload is NP_EPROTO");
  memset(pl, 0, sizeof(pl));
  n = np_envelope_seal(&relay, NP_RELAYMSG_VOUCHER_DOMAIN,
                       (const uint8_t *)"\x03\x02", 2, pl, sizeof(pl), bad,
                       sizeof(bad));
  is_int(np_relaymsg_voucher_open(&v, bad, (size_t)n, NULL, NULL), NP_EPROTO,
         "voucher: a payload larger than any voucher is NP_EPROTO");
  is_int(np_relaymsg_voucher_seal(&relay, &b, 1, env, 100), NP_ELIMIT,
         "voucher: seal into a small buffer is NP_ELIMIT");
  np_identity_clear(&relay);
  np_identity_clear(&other);
}

/* ---- AutoNAT v1 ---------------------------------------------------------- */

static int an_dec(const uint8_t *b, size_t n) {
  np_autonatmsg m;
  int rv = np_autonatmsg_decode(&m, b, n, NULL);
  np_autonatmsg_free(&m);
  return rv;
}

#define DIAL_V "0800 123d 0a3b 0a22" PID_A "1208" ADDR_T "120b" ADDR_Q

static void test_autonat_v1(void) {
  static const unsigned statuses[] = {0, 100, 101, 200, 300};
  uint8_t v[8192], out[8192];
  char text[400];
  size_t n, i;
  np_ssize w;
  np_autonatmsg m, back;
  np_autonatmsg_limits tiny = {4096, 2, 0};
  np_peerid a;
  pid(&a, PID_A);

  /* DIAL{peer{id A, addrs T, Q}}. */
  n = hx(v, DIAL_V);
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0, "autonat: DIAL decodes");
  ok(m.type == NP_AUTONATMSG_DIAL && np_peerid_equal(&m.peer, &a) &&
         m.naddrs == 2 &&
         blob_is(m.addrs[0].data, m.addrs[0].len, addr_t, 8) &&
         blob_is(m.addrs[1].data, m.addrs[1].len, addr_q, 11),
     "autonat: DIAL peer and addrs");
  w = np_autonatmsg_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "autonat: DIAL re-encodes to the same bytes");
  w = np_autonatmsg_encode_lp(&m, out, sizeof(out));
  ok(w == (np_ssize)n + 1 && out[0] == n && memcmp(out + 1, v, n) == 0,
     "autonat: DIAL framed");
  np_autonatmsg_free(&m);
  /* Without the type field: proto2 default DIAL, as go reads it. */
  is_int(np_autonatmsg_decode(&m, v + 2, n - 2, NULL), 0,
         "autonat: DIAL without type decodes");
  is_int(m.type, NP_AUTONATMSG_DIAL, "autonat: absent type is DIAL");
  np_autonatmsg_free(&m);

  /* DIAL_RESPONSE{OK, addr T}. */
  n = hx(v, "0801 1a0c 0800 1a08" ADDR_T);
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0,
         "autonat: DIAL_RESPONSE OK decodes");
  ok(m.type == NP_AUTONATMSG_DIAL_RESPONSE && m.status == NP_AUTONATMSG_OK &&
         m.status_text == NULL && blob_is(m.addr.data, m.addr.len, addr_t, 8),
     "autonat: OK with the address reached");
  w = np_autonatmsg_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "autonat: DIAL_RESPONSE re-encodes to the same bytes");
  np_autonatmsg_free(&m);

  /* DIAL_RESPONSE{E_DIAL_ERROR, "dial failed"}. */
  n = hx(v, "0801 1a0f 0864 120b 6469616c206661696c6564");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0,
         "autonat: E_DIAL_ERROR decodes");
  ok(m.status == NP_AUTONATMSG_E_DIAL_ERROR && m.status_text &&
         strcmp(m.status_text, "dial failed") == 0 && m.addr.len == 0,
     "autonat: E_DIAL_ERROR status 100 and text");
  w = np_autonatmsg_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "autonat: E_DIAL_ERROR re-encodes to the same bytes");
  np_autonatmsg_free(&m);
  /* E_INTERNAL_ERROR = 300 = ac 02. */
  n = hx(v, "0801 1a03 08ac02");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0,
         "autonat: E_INTERNAL_ERROR decodes");
  is_int(m.status, NP_AUTONATMSG_E_INTERNAL_ERROR, "autonat: status 300");
  np_autonatmsg_free(&m);

  /* Every status both ways. */
  for (i = 0; i < NP_ARRAY_LEN(statuses); i++) {
    np_autonatmsg_init(&back);
    back.type = NP_AUTONATMSG_DIAL_RESPONSE;
    back.status = (np_autonatmsg_status)statuses[i];
    back.addr.data = addr_q;
    back.addr.len = sizeof(addr_q);
    w = np_autonatmsg_encode(&back, out, sizeof(out));
    ok(w > 0 && np_autonatmsg_decode(&m, out, (size_t)w, NULL) == 0 &&
           m.status == back.status &&
           blob_is(m.addr.data, m.addr.len, addr_q, 11),
       "autonat: status %u round trip", statuses[i]);
    np_autonatmsg_free(&m);
  }

  /* Refusals. */
  n = hx(v, "0802");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: type 2 is NP_EPROTO");
  n = hx(v, "0800");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: DIAL without dial is NP_EPROTO");
  n = hx(v, "0800 1200");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: DIAL without peer is NP_EPROTO");
  n = hx(v, "0800 1204 0a02 1200");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: DIAL peer without id is NP_EPROTO");
  n = hx(v, "0800 1205 0a03 0a0100");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: DIAL peer with a bad id is NP_EPROTO");
  n = hx(v, "0801");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: DIAL_RESPONSE without dialResponse is NP_EPROTO");
  n = hx(v, "0801 1a00");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: response without status is NP_EPROTO");
  n = hx(v, "0801 1a02 0805");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: status 5 is NP_EPROTO");
  n = hx(v, "0801 1a02 0800");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: OK without addr is NP_EPROTO");
  n = hx(v, "0801 1a07 0800 1a03" ADDR_BAD);
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: OK with an invalid addr is NP_EPROTO");
  n = hx(v, "0801 1a07 0865 1a03" ADDR_BAD);
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0,
         "autonat: E_DIAL_REFUSED with an invalid addr decodes");
  ok(m.status == NP_AUTONATMSG_E_DIAL_REFUSED && m.addr.len == 0,
     "autonat: its invalid addr is dropped");
  np_autonatmsg_free(&m);
  n = hx(v, "ffff");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat: garbage is NP_EPROTO");
  n = hx(v, DIAL_V);
  is_int(prefixes_accepted(an_dec, v, n), 0,
         "autonat: no cut of DIAL decodes");
  memset(v, 0, NP_AUTONATMSG_MSG_MAX + 1);
  is_int(np_autonatmsg_decode(&m, v, NP_AUTONATMSG_MSG_MAX + 1, NULL),
         NP_ELIMIT, "autonat: a body over 4 KiB is NP_ELIMIT");

  /* statusText: NUL inside dropped, long cut. */
  n = hx(v, "0801 1a07 0864 1203 610062");
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0,
         "autonat: text with a NUL decodes");
  ok(m.status_text == NULL, "autonat: text with a NUL dropped");
  np_autonatmsg_free(&m);
  n = hx(v, "0801 1aaf02 0864 12aa02");
  memset(v + n, 'x', 298);
  n += 298;
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0,
         "autonat: 298-byte text decodes");
  ok(m.status_text && strlen(m.status_text) == NP_AUTONATMSG_TEXT_MAX,
     "autonat: text cut to 256 bytes");
  np_autonatmsg_free(&m);
  memset(text, 'y', sizeof(text) - 1);
  text[sizeof(text) - 1] = '\0';

  /* Addr caps: invalid dropped, 70 valid -> 64, tiny 2. */
  n = hx(v, "0800 12");
  {
    size_t peer_len = 36 + 5 + 70 * 10;
    size_t dial_len = 3 + peer_len;
    v[n++] = (uint8_t)(0x80 | (dial_len & 0x7f));
    v[n++] = (uint8_t)(dial_len >> 7);
    v[n++] = 0x0a;
    v[n++] = (uint8_t)(0x80 | (peer_len & 0x7f));
    v[n++] = (uint8_t)(peer_len >> 7);
  }
  n += hx(v + n, "0a22" PID_A "1203" ADDR_BAD);
  for (i = 0; i < 70; i++)
    n += hx(v + n, "1208" ADDR_T);
  is_int(np_autonatmsg_decode(&m, v, n, NULL), 0,
         "autonat: DIAL with 71 addrs decodes");
  is_int(m.naddrs, NP_AUTONATMSG_ADDRS_MAX, "autonat: 64 addrs kept");
  np_autonatmsg_free(&m);
  is_int(np_autonatmsg_decode(&m, v, n, &tiny), 0,
         "autonat: DIAL under tiny caps decodes");
  is_int(m.naddrs, 2, "autonat: caller's max_addrs applies");
  np_autonatmsg_free(&m);

  /* Framing. */
  n = hx(v, "07 0801 1a03 08ac02 00");
  is_int(np_autonatmsg_decode_lp(&m, v, n, NULL), 8,
         "autonat: decode_lp takes one message");
  np_autonatmsg_free(&m);
  is_int(np_autonatmsg_decode_lp(&m, v, 7, NULL), NP_ETRUNC,
         "autonat: decode_lp of a cut message is NP_ETRUNC");
  n = hx(v, "8120");
  is_int(np_autonatmsg_decode_lp(&m, v, n, NULL), NP_ELIMIT,
         "autonat: decode_lp refuses a 4097-byte prefix");

  /* Encoder refusals. */
  np_autonatmsg_init(&back);
  is_int(np_autonatmsg_encode(&back, out, sizeof(out)), NP_EINVAL,
         "autonat: encode refuses a DIAL without peer ID");
  back.peer = a;
  back.naddrs = 1;
  is_int(np_autonatmsg_encode(&back, out, sizeof(out)), NP_EINVAL,
         "autonat: encode refuses NULL addrs");
  back.type = (np_autonatmsg_type)2;
  is_int(np_autonatmsg_encode(&back, out, sizeof(out)), NP_EINVAL,
         "autonat: encode refuses type 2");
  back.type = NP_AUTONATMSG_DIAL_RESPONSE;
  back.status = (np_autonatmsg_status)1;
  is_int(np_autonatmsg_encode(&back, out, sizeof(out)), NP_EINVAL,
         "autonat: encode refuses status 1");
  back.status = NP_AUTONATMSG_E_BAD_REQUEST;
  {
    char *big = malloc(4200);
    memset(big, 'z', 4199);
    big[4199] = '\0';
    back.status_text = big;
    is_int(np_autonatmsg_encode(&back, out, sizeof(out)), NP_ELIMIT,
           "autonat: encode refuses a body over 4 KiB");
    back.status_text = text;
    is_int(np_autonatmsg_encode(&back, out, 100), NP_ELIMIT,
           "autonat: encode refuses a small buffer");
    free(big);
  }
}

/* ---- AutoNAT v2 ---------------------------------------------------------- */

static void test_autonat_v2(void) {
  static const unsigned st[] = {0, 100, 101, 200}, ds[] = {0, 100, 101, 200};
  uint8_t v[16384], out[16384];
  size_t n, i, j;
  np_ssize w;
  np_autonatmsg_v2 m, back;
  uint64_t nonce;

  /* dialRequest{addrs T, (invalid), Q; nonce 0102030405060708}. */
  n = hx(v, "0a25 0a08" ADDR_T " 0a03" ADDR_BAD " 0a0b" ADDR_Q
            " 110807060504030201");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: dialRequest decodes");
  ok(m.kind == NP_AUTONATMSG_V2_DIAL_REQUEST && m.naddrs == 3 &&
         m.nonce == 0x0102030405060708ull &&
         blob_is(m.addrs[0].data, m.addrs[0].len, addr_t, 8) &&
         m.addrs[1].len == 0 && m.addrs[1].data == NULL &&
         blob_is(m.addrs[2].data, m.addrs[2].len, addr_q, 11),
     "autonat2: positions kept, invalid addr empty, nonce fixed64 LE");
  np_autonatmsg_v2_free(&m);
  n = hx(v, "0a20 0a08" ADDR_T " 0a0b" ADDR_Q);
  n += hx(v + n, "110807060504030201");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: valid dialRequest decodes");
  w = np_autonatmsg_v2_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "autonat2: dialRequest re-encodes to the same bytes");
  np_autonatmsg_v2_free(&m);

  /* dialResponse{OK 200, addrIdx 2, dialStatus OK 200}. */
  n = hx(v, "1208 08c801 1002 18c801");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: dialResponse decodes");
  ok(m.kind == NP_AUTONATMSG_V2_DIAL_RESPONSE &&
         m.status == NP_AUTONATMSG_V2_OK && m.addr_idx == 2 &&
         m.dial_status == NP_AUTONATMSG_V2_DIAL_OK,
     "autonat2: dialResponse fields");
  w = np_autonatmsg_v2_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "autonat2: dialResponse re-encodes to the same bytes");
  np_autonatmsg_v2_free(&m);
  /* proto3: all-zero response (E_INTERNAL_ERROR, 0, UNUSED) is 12 00. */
  n = hx(v, "1200");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: empty dialResponse decodes");
  ok(m.kind == NP_AUTONATMSG_V2_DIAL_RESPONSE &&
         m.status == NP_AUTONATMSG_V2_E_INTERNAL_ERROR &&
         m.dial_status == NP_AUTONATMSG_V2_DIAL_UNUSED,
     "autonat2: zero values are the defaults");
  w = np_autonatmsg_v2_encode(&m, out, sizeof(out));
  ok(w == 2 && memcmp(out, "\x12\x00", 2) == 0,
     "autonat2: zero response encodes as 12 00");
  np_autonatmsg_v2_free(&m);

  /* dialDataRequest{addrIdx 1, numBytes 30000}. */
  n = hx(v, "1a06 0801 10b0ea01");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: dialDataRequest decodes");
  ok(m.kind == NP_AUTONATMSG_V2_DIAL_DATA_REQUEST && m.addr_idx == 1 &&
         m.num_bytes == 30000,
     "autonat2: dialDataRequest fields");
  w = np_autonatmsg_v2_encode(&m, out, sizeof(out));
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "autonat2: dialDataRequest re-encodes to the same bytes");
  np_autonatmsg_v2_free(&m);

  /* dialDataResponse{data: 100 zero bytes}. */
  n = hx(v, "2266 0a64");
  memset(v + n, 0, 100);
  n += 100;
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: dialDataResponse decodes");
  ok(m.kind == NP_AUTONATMSG_V2_DIAL_DATA_RESPONSE && m.data.len == 100,
     "autonat2: 100 data bytes");
  w = np_autonatmsg_v2_encode_lp(&m, out, sizeof(out));
  ok(w == (np_ssize)n + 1 && out[0] == n && memcmp(out + 1, v, n) == 0,
     "autonat2: dialDataResponse framed");
  np_autonatmsg_v2_free(&m);

  /* Every status and dial status. */
  for (i = 0; i < NP_ARRAY_LEN(st); i++)
    for (j = 0; j < NP_ARRAY_LEN(ds); j++) {
      np_autonatmsg_v2_init(&back);
      back.kind = NP_AUTONATMSG_V2_DIAL_RESPONSE;
      back.status = (np_autonatmsg_v2_status)st[i];
      back.dial_status = (np_autonatmsg_v2_dial_status)ds[j];
      back.addr_idx = (uint32_t)(i + j);
      w = np_autonatmsg_v2_encode(&back, out, sizeof(out));
      ok(w > 0 && np_autonatmsg_v2_decode(&m, out, (size_t)w, NULL) == 0 &&
             m.status == back.status && m.dial_status == back.dial_status &&
             m.addr_idx == back.addr_idx,
         "autonat2: status %u / dial status %u round trip", st[i], ds[j]);
      np_autonatmsg_v2_free(&m);
    }

  /* Refusals. */
  is_int(np_autonatmsg_v2_decode(&m, v, 0, NULL), NP_EPROTO,
         "autonat2: empty Message (no oneof) is NP_EPROTO");
  n = hx(v, "1202 0807");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat2: status 7 is NP_EPROTO");
  n = hx(v, "1202 1807");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat2: dial status 7 is NP_EPROTO");
  n = hx(v, "0a05 0a08 0401");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat2: truncated is NP_EPROTO");
  n = hx(v, "ff");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), NP_EPROTO,
         "autonat2: garbage is NP_EPROTO");
  n = hx(v, "2284 20 0a8120");
  memset(v + n, 0, 4097);
  n += 4097;
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), NP_ELIMIT,
         "autonat2: 4097 data bytes is NP_ELIMIT");
  /* numBytes 100000 (a0 8d 06) is go's cap; 100001 is over it. */
  n = hx(v, "1a06 0801 10a08d06");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: numBytes 100000 decodes");
  is_int(m.num_bytes, 100000, "autonat2: numBytes value");
  np_autonatmsg_v2_free(&m);
  n = hx(v, "1a06 0801 10a18d06");
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), NP_ELIMIT,
         "autonat2: numBytes 100001 is NP_ELIMIT");
  memset(v, 0, NP_AUTONATMSG_V2_MSG_MAX + 1);
  is_int(np_autonatmsg_v2_decode(&m, v, NP_AUTONATMSG_V2_MSG_MAX + 1, NULL),
         NP_ELIMIT, "autonat2: a body over 8 KiB is NP_ELIMIT");
  /* 60 addrs: the list is cut at 50. */
  n = hx(v, "0a");
  v[n++] = 0x80 | ((60 * 10) & 0x7f);
  v[n++] = (60 * 10) >> 7;
  for (i = 0; i < 60; i++)
    n += hx(v + n, "0a08" ADDR_T);
  is_int(np_autonatmsg_v2_decode(&m, v, n, NULL), 0,
         "autonat2: 60 addrs decode");
  is_int(m.naddrs, NP_AUTONATMSG_V2_ADDRS_MAX, "autonat2: cut at 50");
  np_autonatmsg_v2_free(&m);

  /* Encoder refusals. */
  np_autonatmsg_v2_init(&back);
  is_int(np_autonatmsg_v2_encode(&back, out, sizeof(out)), NP_EINVAL,
         "autonat2: encode refuses kind 0");
  back.kind = NP_AUTONATMSG_V2_DIAL_RESPONSE;
  back.status = (np_autonatmsg_v2_status)1;
  is_int(np_autonatmsg_v2_encode(&back, out, sizeof(out)), NP_EINVAL,
         "autonat2: encode refuses status 1");
  back.kind = NP_AUTONATMSG_V2_DIAL_DATA_RESPONSE;
  back.data.data = v;
  back.data.len = 4097;
  is_int(np_autonatmsg_v2_encode(&back, out, sizeof(out)), NP_ELIMIT,
         "autonat2: encode refuses 4097 data bytes");
  back.data.data = NULL;
  back.data.len = 1;
  is_int(np_autonatmsg_v2_encode(&back, out, sizeof(out)), NP_EINVAL,
         "autonat2: encode refuses NULL data");

  /* Dial-back stream. */
  w = np_autonatmsg_v2_dialback_encode_lp(0x0102030405060708ull, out,
                                          sizeof(out));
  n = hx(v, "09 090807060504030201");
  ok(w == (np_ssize)n && memcmp(out, v, n) == 0,
     "autonat2: DialBack framed is 09 09 nonce(LE)");
  is_int(np_autonatmsg_v2_dialback_decode(&nonce, v + 1, n - 1), 0,
         "autonat2: DialBack decodes");
  ok(nonce == 0x0102030405060708ull, "autonat2: DialBack nonce");
  is_int(np_autonatmsg_v2_dialback_decode(&nonce, v + 1, 5), NP_EPROTO,
         "autonat2: cut DialBack is NP_EPROTO");
  memset(v, 0, 65);
  is_int(np_autonatmsg_v2_dialback_decode(&nonce, v, 65), NP_ELIMIT,
         "autonat2: DialBack over 64 bytes is NP_ELIMIT");
  is_int(np_autonatmsg_v2_dialback_encode_lp(1, out, 9), NP_ELIMIT,
         "autonat2: DialBack into 9 bytes is NP_ELIMIT");
  w = np_autonatmsg_v2_dialback_response_encode_lp(out, sizeof(out));
  ok(w == 1 && out[0] == 0,
     "autonat2: DialBackResponse OK is an empty body (proto3)");
  is_int(np_autonatmsg_v2_dialback_response_decode(out + 1, 0), 0,
         "autonat2: empty DialBackResponse is OK");
  n = hx(v, "0801");
  is_int(np_autonatmsg_v2_dialback_response_decode(v, n), NP_EPROTO,
         "autonat2: DialBackResponse status 1 is NP_EPROTO");
  n = hx(v, "08");
  is_int(np_autonatmsg_v2_dialback_response_decode(v, n), NP_EPROTO,
         "autonat2: cut DialBackResponse is NP_EPROTO");
}

int main(void) {
  hx(addr_t, ADDR_T);
  hx(addr_q, ADDR_Q);
  hx(addr_r, ADDR_R);
  test_dcutr();
  test_relay_msgs();
  test_relay_voucher();
  test_autonat_v1();
  test_autonat_v2();
  return done_testing();
}
