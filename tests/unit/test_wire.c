/* Wire formats: multistream-select (spec transcripts, both roles, lazy
 * mode, byte-at-a-time, limits), length-prefixed framing, hivemind unary
 * frames (hand-checked bytes), identify with signed peer records, and p2pd
 * control messages built by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_identify.h"
#include "np_identity.h"
#include "np_lp.h"
#include "np_mss.h"
#include "np_multiaddr.h"
#include "np_unary.h"
#include "proto/p2pd.pb-c.h"
#include "proto/peer_record.pb-c.h"
#include "tap.h"

#define MS "\x13/multistream/1.0.0\n"
#define MS_LEN 20
#define NA "\x03na\n"

/* Bytes as a (pointer, length) pair from a string literal. */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)
#define NAME(s) (s), (sizeof(s) - 1)
/* is_mem against a string literal (LIT cannot be a macro argument). */
#define is_bytes(got, glen, lit, ...)                                          \
  is_mem(got, glen, lit, sizeof(lit) - 1, __VA_ARGS__)

/* ---- multistream-select -------------------------------------------------- */

static const char *served[] = {"/noise", "/yamux/1.0.0", "/echo/1.0.0"};

static int lookup(const char *name, size_t len, void *ud) {
  size_t i;
  int *calls = ud;
  if (calls)
    (*calls)++;
  for (i = 0; i < NP_ARRAY_LEN(served); i++)
    if (strlen(served[i]) == len && memcmp(served[i], name, len) == 0)
      return 1;
  return 0;
}

/* Queued output of |m| as a copy in |buf|; drains it. */
static size_t take_out(np_mss *m, uint8_t *buf, size_t cap) {
  const uint8_t *p;
  size_t n = np_mss_output(m, &p);
  if (n > cap)
    n = cap;
  memcpy(buf, p, n);
  np_mss_drain(m, n);
  return n;
}

static void test_mss_encode(void) {
  uint8_t buf[64];
  char big[NP_MSS_MAX_NAME + 2];
  is_bytes(buf, np_mss_encode(NAME("/multistream/1.0.0"), buf, sizeof(buf)), MS,
           "header encodes as 13 '/multistream/1.0.0' 0a");
  is_bytes(buf, np_mss_encode(NAME("na"), buf, sizeof(buf)), "\x03na\n",
           "na encodes as 03 6e 61 0a");
  is_bytes(buf, np_mss_encode(NAME("/noise"), buf, sizeof(buf)), "\x07/noise\n",
           "/noise encodes as 07 ... 0a");
  is_bytes(buf, np_mss_encode(NAME("/yamux/1.0.0"), buf, sizeof(buf)),
           "\x0d/yamux/1.0.0\n", "/yamux/1.0.0 encodes as 0d ... 0a");
  is_int(np_mss_encode(NAME("a\nb"), buf, sizeof(buf)), NP_EINVAL,
         "a name with a newline cannot be encoded");
  memset(big, 'x', sizeof(big));
  is_int(np_mss_encode(big, NP_MSS_MAX_NAME + 1, buf, sizeof(buf)), NP_ELIMIT,
         "a 1024-byte name does not fit a 1024-byte message");
}

static void test_mss_dialer_transcript(void) {
  static const char *protos[] = {"/tls/1.0.0", "/noise"};
  /* Listener: header, na to /tls/1.0.0, echo of /noise, then app data. */
  static const uint8_t in[] = MS NA "\x07/noise\n"
                                    "APP";
  uint8_t out[256];
  size_t n, i, used = 0;
  np_mss m;
  np_ssize rv;
  is_int(np_mss_init_dialer(&m, protos, 2, 0), 0, "dialer starts");
  n = take_out(&m, out, sizeof(out));
  is_bytes(out, n, MS "\x0b/tls/1.0.0\n",
           "dialer writes header and first proposal in one go");
  ok(!np_mss_can_write(&m), "eager dialer may not write data yet");
  /* One byte at a time, as a slow transport might deliver it. */
  for (i = 0; i < sizeof(in) - 1; i++) {
    rv = np_mss_feed(&m, in + i, 1);
    if (rv < 0 || np_mss_state(&m) != NP_MSS_NEGOTIATING)
      break;
    used += (size_t)rv;
  }
  if (rv >= 0)
    used += (size_t)rv;
  is_int(np_mss_state(&m), NP_MSS_DONE, "dialer done after the echo");
  is_int(used, sizeof(in) - 1 - 3, "application bytes were not consumed");
  is_int(np_mss_feed(&m, LIT("APP")), 0, "feeding after DONE consumes nothing");
  is_str(np_mss_protocol(&m, NULL), "/noise", "agreed on /noise");
  n = take_out(&m, out, sizeof(out));
  is_bytes(out, n, "\x07/noise\n", "after na the dialer proposes /noise");
  ok(np_mss_can_write(&m), "dialer may write once done");
}

static void test_mss_listener_transcript(void) {
  static const uint8_t in[] = MS "\x0b/tls/1.0.0\n"
                                 "\x0d/yamux/1.0.0\n"
                                 "data";
  uint8_t out[256];
  size_t n, plen;
  int calls = 0;
  np_mss m;
  is_int(np_mss_init_listener(&m, lookup, &calls), 0, "listener starts");
  n = take_out(&m, out, sizeof(out));
  is_bytes(out, n, MS, "listener sends its header at once (like go)");
  is_int(np_mss_feed(&m, in, sizeof(in) - 1), sizeof(in) - 1 - 4,
         "one chunk: consumed up to the accepted proposal");
  is_int(np_mss_state(&m), NP_MSS_DONE, "listener done");
  is_str(np_mss_protocol(&m, &plen), "/yamux/1.0.0", "agreed on yamux");
  is_int(plen, 12, "protocol length");
  is_int(calls, 2, "lookup asked twice");
  n = take_out(&m, out, sizeof(out));
  is_bytes(out, n, NA "\x0d/yamux/1.0.0\n", "listener answered na, echo");
}

static void test_mss_pair(void) {
  static const char *protos[] = {"/tls/1.0.0", "/mplex/6.7.0", "/echo/1.0.0"};
  np_mss d, l;
  int round;
  np_mss_init_dialer(&d, protos, 3, 0);
  np_mss_init_listener(&l, lookup, NULL);
  for (round = 0; round < 10; round++) {
    const uint8_t *p;
    size_t n = np_mss_output(&d, &p);
    np_ssize rv = np_mss_feed(&l, p, n);
    if (rv >= 0)
      np_mss_drain(&d, (size_t)rv);
    n = np_mss_output(&l, &p);
    rv = np_mss_feed(&d, p, n);
    if (rv >= 0)
      np_mss_drain(&l, (size_t)rv);
    if (np_mss_state(&d) != NP_MSS_NEGOTIATING &&
        np_mss_state(&l) != NP_MSS_NEGOTIATING)
      break;
  }
  is_int(np_mss_state(&d), NP_MSS_DONE, "paired dialer done");
  is_int(np_mss_state(&l), NP_MSS_DONE, "paired listener done");
  is_str(np_mss_protocol(&d, NULL), "/echo/1.0.0", "dialer got third choice");
  is_str(np_mss_protocol(&l, NULL), "/echo/1.0.0", "listener agrees");
}

static void test_mss_lazy(void) {
  static const char *one[] = {"/echo/1.0.0"};
  static const char *two[] = {"/a", "/b"};
  uint8_t out[256], wire[512];
  size_t n;
  np_mss d, l;
  is_int(np_mss_init_dialer(&d, two, 2, NP_MSS_LAZY), NP_EINVAL,
         "lazy mode needs exactly one protocol");
  is_int(np_mss_init_dialer(&d, one, 1, NP_MSS_LAZY), 0, "lazy dialer starts");
  ok(np_mss_can_write(&d), "lazy dialer may write data before the echo");
  /* go's lazy NewStream: header || proto || app data in one flush. */
  n = take_out(&d, wire, sizeof(wire));
  memcpy(wire + n, "ping", 4);
  np_mss_init_listener(&l, lookup, NULL);
  is_int(np_mss_feed(&l, wire, n + 4), (long long)n,
         "listener stops before the app data behind the proposal");
  is_str(np_mss_protocol(&l, NULL), "/echo/1.0.0", "listener accepted");
  n = take_out(&l, out, sizeof(out));
  memcpy(out + n, "pong", 4);
  is_int(np_mss_feed(&d, out, n + 4), (long long)n, "dialer reads the echo");
  is_int(np_mss_state(&d), NP_MSS_DONE, "lazy dialer confirmed");

  np_mss_init_dialer(&d, one, 1, NP_MSS_LAZY);
  is_int(np_mss_feed(&d, LIT(MS NA)), NP_ENOPROTO, "lazy dialer fails on na");
  is_int(np_mss_error(&d), NP_ENOPROTO, "error kept");
  ok(!np_mss_can_write(&d), "no writing after failure");
  is_int(np_mss_feed(&d, LIT("x")), NP_ENOPROTO, "failure is sticky");
}

static void test_mss_refused(void) {
  static const char *protos[] = {"/a", "/b"};
  np_mss d;
  np_mss_init_dialer(&d, protos, 2, 0);
  is_int(np_mss_feed(&d, LIT(MS NA NA)), NP_ENOPROTO,
         "all proposals refused: NP_ENOPROTO");
  np_mss_init_dialer(&d, protos, 2, 0);
  is_int(np_mss_feed(&d, LIT(MS "\x03/b\n")), NP_EPROTO,
         "an echo of the wrong protocol is a protocol violation");
  np_mss_init_dialer(&d, protos, 2, 0);
  is_int(np_mss_feed(&d, LIT("\x03/a\n")), NP_EPROTO,
         "first message must be the header");
}

static void test_mss_limits(void) {
  static const char *protos[] = {"/a"};
  static const char *bad[] = {"/a\n"};
  static const char *empty[] = {""};
  uint8_t buf[NP_MSS_MAX_MSG + 8];
  np_mss m;
  int i;
  np_ssize rv = 0;

  /* 1025 = 81 08: over the 1024-byte cap, refused on the prefix alone. */
  np_mss_init_listener(&m, lookup, NULL);
  is_int(np_mss_feed(&m, LIT(MS "\x81\x08")), NP_ELIMIT,
         "1025-byte message refused from its prefix");
  np_mss_init_listener(&m, lookup, NULL);
  is_int(np_mss_feed(&m, LIT("\xff\xff\x7f")), NP_ELIMIT,
         "three-byte length prefix refused");
  np_mss_init_listener(&m, lookup, NULL);
  is_int(np_mss_feed(&m, LIT("\x80\x00")), NP_EPROTO,
         "non-minimal prefix refused");
  np_mss_init_listener(&m, lookup, NULL);
  is_int(np_mss_feed(&m, LIT("\x00")), NP_EPROTO, "empty message refused");
  np_mss_init_listener(&m, lookup, NULL);
  is_int(np_mss_feed(&m, LIT("\x13/multistream/1.0.0x")), NP_EPROTO,
         "message without trailing newline refused");
  np_mss_init_listener(&m, lookup, NULL);
  is_int(np_mss_feed(&m, LIT("\x13/multistream/2.0.0\n")), NP_EPROTO,
         "other multistream version refused");

  /* Exactly 1024 bytes (1023-byte name) is fine; answered with na. */
  np_mss_init_listener(&m, lookup, NULL);
  np_mss_feed(&m, LIT(MS));
  buf[0] = 0x80;
  buf[1] = 0x08;
  memset(buf + 2, 'p', NP_MSS_MAX_NAME);
  buf[2 + NP_MSS_MAX_NAME] = '\n';
  is_int(np_mss_feed(&m, buf, NP_MSS_MAX_MSG + 2), NP_MSS_MAX_MSG + 2,
         "1024-byte message accepted");
  is_int(np_mss_state(&m), NP_MSS_NEGOTIATING,
         "unknown long name: still going");

  /* Bounded na rounds. */
  np_mss_init_listener(&m, lookup, NULL);
  np_mss_feed(&m, LIT(MS));
  for (i = 0; i <= NP_MSS_MAX_NA && rv >= 0; i++) {
    rv = np_mss_feed(&m, LIT("\x06/nope\n"));
    np_mss_drain(&m, 1000);
  }
  is_int(rv, NP_ELIMIT, "listener gives up after NP_MSS_MAX_NA refusals");
  is_int(i, NP_MSS_MAX_NA + 1, "exactly NP_MSS_MAX_NA refusals were sent");

  np_mss_init_listener(&m, lookup, NULL);
  np_mss_feed(&m, LIT(MS));
  np_mss_drain(&m, 100);
  np_mss_feed(&m, LIT("\x03ls\n"));
  {
    const uint8_t *p;
    size_t n = np_mss_output(&m, &p);
    is_bytes(p, n, NA, "ls is answered with na (as go does)");
  }

  np_mss_init_listener(&m, lookup, NULL);
  np_mss_feed(&m, LIT(MS));
  np_mss_drain(&m, 100);
  np_mss_feed(&m, LIT("\x0e/noise\n/noise\n"));
  {
    const uint8_t *p;
    size_t n = np_mss_output(&m, &p);
    is_bytes(p, n, NA, "a name with a newline inside is answered with na");
  }

  is_int(np_mss_init_dialer(&m, bad, 1, 0), NP_EINVAL,
         "proposal with newline refused");
  is_int(np_mss_init_dialer(&m, empty, 1, 0), NP_EINVAL,
         "empty proposal refused");
  is_int(np_mss_init_dialer(&m, protos, 0, 0), NP_EINVAL, "no proposals");
  is_int(np_mss_init_listener(&m, NULL, NULL), NP_EINVAL, "no lookup");
}

static void test_mss_backpressure(void) {
  static char names[3][NP_MSS_MAX_NAME + 1];
  const char *protos[3] = {names[0], names[1], names[2]};
  np_mss d;
  const uint8_t *p;
  size_t n;
  int i;
  for (i = 0; i < 3; i++) {
    memset(names[i], 'a' + i, NP_MSS_MAX_NAME);
    names[i][NP_MSS_MAX_NAME] = '\0';
  }
  np_mss_init_dialer(&d, protos, 3, 0);
  /* Nothing drained: after the first na the second 1 KiB proposal still
   * fits, the third does not. */
  is_int(np_mss_feed(&d, LIT(MS NA NA)), MS_LEN + 8,
         "all input consumed while the answer waits");
  n = np_mss_output(&d, &p);
  is_int(n, MS_LEN + 2 * (NP_MSS_MAX_MSG + 2), "output holds two proposals");
  np_mss_drain(&d, n);
  is_int(np_mss_feed(&d, NULL, 0), 0, "resumed with empty input");
  n = np_mss_output(&d, &p);
  is_int(n, NP_MSS_MAX_MSG + 2, "third proposal queued after draining");
  ok(n > 2 && p[2] == 'c', "it is the third name");
}

/* ---- length-prefixed framing ------------------------------------------ */

static void test_lp(void) {
  static const uint8_t two[] = "\x03"
                               "abc"
                               "\x00"
                               "\x02"
                               "de";
  np_lp_reader r;
  const uint8_t *msg;
  size_t mlen, i, got = 0;
  np_ssize n;
  uint8_t big[300 + 2];

  np_lp_init(&r, 1000);
  big[0] = 0xac;
  big[1] = 0x02; /* 300 */
  for (i = 0; i < 300; i++)
    big[2 + i] = (uint8_t)i;
  ok(np_lp_idle(&r), "fresh reader is idle");
  for (i = 0; i < sizeof(big); i++) {
    n = np_lp_feed(&r, big + i, 1, &msg, &mlen);
    if (n != 1)
      break;
    if (msg != NULL)
      got++;
    if (i == 0)
      ok(!np_lp_idle(&r), "mid-prefix is not idle");
  }
  is_int(i, sizeof(big), "byte-at-a-time: every byte consumed");
  is_int(got, 1, "one message out of 302 single bytes");
  ok(msg != NULL && mlen == 300 && memcmp(msg, big + 2, 300) == 0,
     "split message reassembled");
  ok(np_lp_idle(&r), "idle again after the message");

  n = np_lp_feed(&r, two, sizeof(two) - 1, &msg, &mlen);
  is_int(n, 4, "first of three messages in one chunk");
  ok(msg == two + 1 && mlen == 3, "whole message handed out in place");
  n = np_lp_feed(&r, two + 4, sizeof(two) - 5, &msg, &mlen);
  ok(n == 1 && msg != NULL && mlen == 0, "empty message is a message");
  n = np_lp_feed(&r, two + 5, sizeof(two) - 6, &msg, &mlen);
  ok(n == 3 && mlen == 2 && memcmp(msg, "de", 2) == 0, "third message");
  np_lp_free(&r);

  np_lp_init(&r, 10);
  n = np_lp_feed(&r, LIT("\x0b"), &msg, &mlen);
  is_int(n, NP_ELIMIT, "prefix over the limit refused before any body byte");
  ok(r.buf == NULL, "nothing was allocated");
  is_int(np_lp_feed(&r, LIT("\x01x"), &msg, &mlen), NP_ELIMIT,
         "reader stays failed");
  np_lp_free(&r);

  np_lp_init(&r, 10);
  is_int(np_lp_feed(&r, LIT("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), &msg,
                    &mlen),
         NP_EPROTO, "ten-byte varint prefix refused");
  np_lp_free(&r);
  np_lp_init(&r, 10);
  is_int(np_lp_feed(&r, LIT("\x85\x00"), &msg, &mlen), NP_EPROTO,
         "non-minimal prefix refused");
  np_lp_free(&r);
  np_lp_init(&r, (size_t)1 << 40);
  is_int(
      np_lp_feed(&r, LIT("\x80\x80\x80\x80\x80\x80\x80\x80\x7f"), &msg, &mlen),
      NP_ELIMIT, "2^62-byte prefix refused without allocating");
  np_lp_free(&r);

  np_lp_init(&r, 10);
  np_lp_feed(&r,
             LIT("\x05"
                 "ab"),
             &msg, &mlen);
  ok(msg == NULL && !np_lp_idle(&r), "partial body: no message, not idle");
  np_lp_free(&r);

  is_int(np_lp_parse(LIT("\x05"
                         "ab"),
                     10, &msg, &mlen),
         NP_ETRUNC, "one-shot parse of a short buffer: NP_ETRUNC");
  is_int(np_lp_parse(LIT("\x0b"), 10, &msg, &mlen), NP_ELIMIT,
         "one-shot parse checks the limit on the prefix");
  is_bytes(big, np_lp_put_prefix(300, big, sizeof(big)), "\xac\x02",
           "prefix of 300 is ac 02");
  is_int(np_lp_prefix_size(16384), 3, "prefix of 16384 takes 3 bytes");
}

/* ---- unary ------------------------------------------------------------- */

static const uint8_t call_id[16] = {0, 1, 2,  3,  4,  5,  6,  7,
                                    8, 9, 10, 11, 12, 13, 14, 15};
#define CALL_ID_HEX                                                            \
  "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"

static void test_unary(void) {
  /* Hand-assembled: prefix 0x1f (31); 0a 10 callId; 1a 0b callUnary {
   * 0a 02 peer, 12 01 "p", 1a 02 "hi" }. */
  static const uint8_t want_req[] = "\x1f\x0a\x10" CALL_ID_HEX "\x1a\x0b"
                                    "\x0a\x02\x01\x02"
                                    "\x12\x01p"
                                    "\x1a\x02hi";
  /* Answer: 0a 10 callId; 22 04 unaryResponse { 0a 02 "ok" }. */
  static const uint8_t want_resp[] =
      "\x18\x0a\x10" CALL_ID_HEX "\x22\x04\x0a\x02ok";
  static const uint8_t want_err[] =
      "\x18\x0a\x10" CALL_ID_HEX "\x22\x04\x12\x02no";
  static const uint8_t want_empty[] = "\x16\x0a\x10" CALL_ID_HEX "\x22\x02"
                                      "\x0a\x00";
  np_unary_req q = {0}, dq;
  np_unary_resp s = {0}, ds;
  uint8_t buf[256];
  char err[128] = "";
  np_ssize n;

  memcpy(q.call_id, call_id, 16);
  q.peer = (const uint8_t *)"\x01\x02";
  q.peer_len = 2;
  q.proto = "p";
  q.data = (const uint8_t *)"hi";
  q.data_len = 2;
  n = np_unary_encode_req(&q, buf, sizeof(buf));
  is_mem(buf, n, want_req, sizeof(want_req) - 1,
         "callUnary frame matches the hand-checked bytes");
  is_int(np_unary_req_size(&q), n, "size function agrees");
  is_int(np_unary_encode_req(&q, buf, (size_t)n - 1), NP_ELIMIT,
         "encoder respects the capacity");
  n = np_unary_decode_req(&dq, want_req, sizeof(want_req) - 1,
                          NP_UNARY_MAX_DEFAULT, err, sizeof(err));
  is_int(n, sizeof(want_req) - 1, "request frame decodes whole");
  ok(memcmp(dq.call_id, call_id, 16) == 0 && dq.peer_len == 2 &&
         memcmp(dq.peer, "\x01\x02", 2) == 0 && strcmp(dq.proto, "p") == 0 &&
         dq.proto_len == 1 && dq.data_len == 2 && memcmp(dq.data, "hi", 2) == 0,
     "request fields round-trip");
  np_unary_req_free(&dq);

  memcpy(s.call_id, call_id, 16);
  s.data = (const uint8_t *)"ok";
  s.data_len = 2;
  n = np_unary_encode_resp(&s, buf, sizeof(buf));
  is_bytes(buf, n, want_resp, "unaryResponse frame matches bytes");
  s.is_error = 1;
  s.data = (const uint8_t *)"no";
  n = np_unary_encode_resp(&s, buf, sizeof(buf));
  is_bytes(buf, n, want_err, "error answer matches bytes");
  s.is_error = 0;
  s.data = NULL;
  s.data_len = 0;
  n = np_unary_encode_resp(&s, buf, sizeof(buf));
  is_bytes(buf, n, want_empty, "empty response is still written");

  n = np_unary_decode_resp(&ds, LIT(want_err), 1024, err, sizeof(err));
  ok(n == sizeof(want_err) - 1 && ds.is_error && ds.data_len == 2 &&
         memcmp(ds.data, "no", 2) == 0,
     "error answer decodes");
  np_unary_resp_free(&ds);
  n = np_unary_decode_resp(&ds, LIT(want_resp), 1024, err, sizeof(err));
  ok(n > 0 && !ds.is_error && ds.data_len == 2, "response decodes");
  np_unary_resp_free(&ds);
  /* unaryResponse with neither member: an empty success. */
  n = np_unary_decode_resp(&ds, LIT("\x14\x0a\x10" CALL_ID_HEX "\x22\x00"),
                           1024, err, sizeof(err));
  ok(n > 0 && !ds.is_error && ds.data_len == 0, "bare unaryResponse is empty");
  np_unary_resp_free(&ds);

  n = np_unary_decode_req(&dq, want_req, sizeof(want_req) - 1, 30, err,
                          sizeof(err));
  is_int(n, NP_ELIMIT, "frame over the limit refused");
  ok(strstr(err, "31 bytes") && strstr(err, "30-byte limit"),
     "error text names size and limit: %s", err);
  n = np_unary_decode_req(&dq, LIT("\x81\x80\x80\x02"), NP_UNARY_MAX_DEFAULT,
                          err, sizeof(err));
  is_int(n, NP_ELIMIT, "4 MiB + 1 prefix refused before the body arrives");
  n = np_unary_decode_req(&dq, want_req, 10, NP_UNARY_MAX_DEFAULT, err,
                          sizeof(err));
  is_int(n, NP_ETRUNC, "truncated frame: NP_ETRUNC");
  is_int(np_unary_parse_req(&dq, want_req + 1, sizeof(want_req) - 2, 30, err,
                            sizeof(err)),
         NP_ELIMIT, "body over the limit refused");
  n = np_unary_decode_req(&dq, LIT(want_resp), 1024, err, sizeof(err));
  is_int(n, NP_EPROTO, "an answer is not a call");
  n = np_unary_decode_resp(&ds, want_req, sizeof(want_req) - 1, 1024, err,
                           sizeof(err));
  is_int(n, NP_EPROTO, "a call is not an answer");
  n = np_unary_decode_req(&dq, LIT("\x14\x0a\x0f" CALL_ID_HEX "\x1a\x00"), 1024,
                          err, sizeof(err));
  is_int(n, NP_EPROTO, "15-byte callId refused");
  n = np_unary_decode_req(&dq, LIT("\x12\x0a\x10" CALL_ID_HEX), 1024, err,
                          sizeof(err));
  is_int(n, NP_EPROTO, "call without callUnary refused");
  n = np_unary_decode_req(&dq, LIT("\x03\xff\xff\xff"), 1024, err, sizeof(err));
  is_int(n, NP_EPROTO, "garbage refused");
}

/* ---- identify and peer records ------------------------------------------ */

static uint8_t *find(uint8_t *hay, size_t hlen, const uint8_t *needle,
                     size_t nlen) {
  size_t i;
  for (i = 0; nlen && i + nlen <= hlen; i++)
    if (memcmp(hay + i, needle, nlen) == 0)
      return hay + i;
  return NULL;
}

static size_t maddr(const char *text, uint8_t *out, size_t cap) {
  np_ssize n = np_maddr_parse(text, strlen(text), out, cap);
  return n < 0 ? 0 : (size_t)n;
}

static void test_identify(void) {
  static const char *protos[] = {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0",
                                 "/libp2p/dcutr"};
  static const uint8_t seed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  np_ed25519 key;
  np_identity self, other;
  uint8_t a1[64], a2[64], obs[64], out[8192];
  np_identify_blob addrs[2];
  np_identify_params p;
  np_identify got;
  np_peer_record rec;
  np_peerid pid;
  const uint8_t *msg;
  size_t mlen;
  np_ssize n, off;

  np_ed25519_from_seed(&key, seed);
  np_identity_from_key(&self, &key);
  np_identity_generate(&other);
  addrs[0].data = a1;
  addrs[0].len = maddr("/ip4/127.0.0.1/udp/1234/quic-v1", a1, sizeof(a1));
  addrs[1].data = a2;
  addrs[1].len = maddr("/ip6/::1/udp/4001/quic-v1", a2, sizeof(a2));
  ok(addrs[0].len == 11 && memcmp(a1,
                                  "\x04\x7f\x00\x00\x01\x91\x02\x04\xd2"
                                  "\xcd\x03",
                                  11) == 0,
     "quic-v1 address bytes as in the spec");
  memset(&p, 0, sizeof(p));
  p.protocol_version = "ipfs/0.1.0";
  p.agent_version = "natpeer/0.1";
  p.listen_addrs = addrs;
  p.nlisten = 2;
  p.observed = obs;
  p.observed_len = maddr("/ip4/192.0.2.7/udp/55000/quic-v1", obs, sizeof(obs));
  p.protocols = protos;
  p.nprotocols = 3;
  p.record_seq = 1700000000;
  n = np_identify_build(&self, &p, out, sizeof(out));
  ok(n > 0, "identify built (%ld bytes)", (long)n);
  off = np_lp_parse(out, (size_t)n, NP_IDENTIFY_MSG_MAX, &msg, &mlen);
  is_int(off, n, "small identify is one framed message");

  np_identify_init(&got);
  is_int(np_identify_parse(&got, msg, mlen), 0, "identify parses");
  is_str(got.protocol_version, "ipfs/0.1.0", "protocolVersion");
  is_str(got.agent_version, "natpeer/0.1", "agentVersion");
  is_int(got.nprotocols, 3, "three protocols");
  is_str(got.nprotocols == 3 ? got.protocols[2] : NULL, "/libp2p/dcutr",
         "protocol order kept");
  ok(got.naddrs == 2 && got.addrs[1].len == addrs[1].len &&
         memcmp(got.addrs[1].data, a2, addrs[1].len) == 0,
     "listen addrs round-trip");
  is_mem(got.observed.data, got.observed.len, obs, p.observed_len,
         "observed addr");
  is_mem(got.pubkey.data, got.pubkey.len, self.pub_pb, self.pub_pb_len,
         "publicKey is the host key");
  ok(np_identify_peerid(&got, &pid) == 0 && np_peerid_equal(&pid, &self.id),
     "peer ID from identify matches the sender");
  ok(got.signed_record.data != NULL, "signed peer record present");

  is_int(
      np_peer_record_open(&rec, got.signed_record.data, got.signed_record.len),
      0, "signed peer record verifies");
  ok(np_peerid_equal(&rec.id, &self.id), "record is the sender's");
  is_int(rec.seq, 1700000000, "record seq");
  ok(rec.naddrs == 2 && rec.addrs[0].len == addrs[0].len &&
         memcmp(rec.addrs[0].data, a1, addrs[0].len) == 0,
     "record addrs are the listen addrs");
  np_peer_record_free(&rec);

  /* The signature covers exactly: 12 "libp2p-peer-record" 02 03 01
   * uvarint(len payload) payload. Rebuild it and sign it by hand. */
  {
    uint8_t payload[1024], sb[1200], sig[64];
    np_peerid signer;
    size_t sl = 0;
    np_ssize pl = np_envelope_open(
        got.signed_record.data, got.signed_record.len, NP_PEER_RECORD_DOMAIN,
        (const uint8_t *)"\x03\x01", 2, &signer, payload, sizeof(payload));
    ok(pl > 0, "envelope opens with raw type 03 01");
    sb[sl++] = 18;
    memcpy(sb + sl, "libp2p-peer-record", 18);
    sl += 18;
    memcpy(sb + sl, "\x02\x03\x01", 3);
    sl += 3;
    sb[sl++] = (uint8_t)pl; /* < 128 here */
    memcpy(sb + sl, payload, (size_t)pl);
    sl += (size_t)pl;
    np_identity_sign(&self, sb, sl, sig, 64, &sl);
    ok(got.signed_record.len > 64 &&
           memcmp(got.signed_record.data + got.signed_record.len - 64, sig,
                  64) == 0,
       "signature is over the hand-built signing buffer");
    is_int(np_envelope_open(got.signed_record.data, got.signed_record.len,
                            NP_PEER_RECORD_DOMAIN, (const uint8_t *)"\x81\x06",
                            2, &signer, payload, sizeof(payload)),
           NP_EPROTO, "uvarint 0x0301 (81 06) is not the payload type");
    is_int(np_envelope_open(got.signed_record.data, got.signed_record.len,
                            "libp2p-relay-rsvp", (const uint8_t *)"\x03\x01", 2,
                            &signer, payload, sizeof(payload)),
           NP_ECRYPTO, "another domain does not verify");
  }

  /* Tampering: flip one byte of the payload (an address byte). */
  {
    uint8_t t[1024];
    size_t tl = got.signed_record.len;
    uint8_t *hit;
    memcpy(t, got.signed_record.data, tl);
    hit = find(t, tl, a1, addrs[0].len);
    ok(hit != NULL, "address found inside the envelope");
    if (hit)
      hit[1] ^= 0x01; /* 127.0.0.1 -> 126.0.0.1 */
    is_int(np_peer_record_open(&rec, t, tl), NP_ECRYPTO,
           "tampered record refused");
    memcpy(t, got.signed_record.data, tl);
    t[tl - 1] ^= 0x80;
    is_int(np_peer_record_open(&rec, t, tl), NP_ECRYPTO,
           "tampered signature refused");
    is_int(np_peer_record_open(&rec, t, 5), NP_EPROTO,
           "truncated envelope refused");
  }
  np_identify_free(&got);

  /* A record naming another peer, correctly signed by |self|. */
  {
    Np__Record__PeerRecord r = NP__RECORD__PEER_RECORD__INIT;
    uint8_t pl[128], env[512];
    size_t pn;
    r.peer_id.data = other.id.bytes;
    r.peer_id.len = other.id.len;
    r.seq = 1;
    pn = np__record__peer_record__pack(&r, pl);
    n = np_envelope_seal(&self, NP_PEER_RECORD_DOMAIN,
                         (const uint8_t *)NP_PEER_RECORD_TYPE, 2, pl, pn, env,
                         sizeof(env));
    is_int(np_peer_record_open(&rec, env, (size_t)n), NP_EPEERID,
           "record for another peer ID refused");
    n = np_envelope_seal(&self, NP_PEER_RECORD_DOMAIN,
                         (const uint8_t *)"\x03\x02", 2, pl, pn, env,
                         sizeof(env));
    is_int(np_peer_record_open(&rec, env, (size_t)n), NP_EPROTO,
           "relay-voucher payload type refused as a peer record");
  }

  /* Many protocols: body over 2 KiB, so the record goes separately. */
  {
    static char names[64][40];
    const char *many[64];
    int i;
    size_t total = 0;
    for (i = 0; i < 64; i++) {
      snprintf(names[i], sizeof(names[i]), "/natpeer/some-protocol/%d.0.0", i);
      many[i] = names[i];
    }
    p.protocols = many;
    p.nprotocols = 64;
    n = np_identify_build(&self, &p, out, sizeof(out));
    ok(n > 0, "large identify built");
    np_identify_init(&got);
    while (total < (size_t)n) {
      off = np_lp_parse(out + total, (size_t)n - total, NP_IDENTIFY_MSG_MAX,
                        &msg, &mlen);
      if (off < 0 || np_identify_parse(&got, msg, mlen) != 0)
        break;
      total += (size_t)off;
    }
    is_int(total, n, "all frames parsed");
    is_int(got.nmsgs, 2, "record sent in a second message");
    is_int(got.nprotocols, 64, "protocols merged");
    ok(got.signed_record.data != NULL &&
           np_peer_record_open(&rec, got.signed_record.data,
                               got.signed_record.len) == 0,
       "record from the second message verifies");
    np_peer_record_free(&rec);
    np_identify_free(&got);
    p.protocols = protos;
    p.nprotocols = 3;
  }

  /* Hand-built message from another implementation: unknown field 7,
   * an address with an unknown protocol code (dropped), no key. */
  {
    static const uint8_t m[] = "\x2a\x0aipfs/0.1.0"
                               "\x1a\x0e/ipfs/id/1.0.0"
                               "\x12\x03\xff\xff\x03"
                               "\x12\x0b\x04\x7f\x00\x00\x01\x91\x02\x04\xd2"
                               "\xcd\x03"
                               "\x38\x01";
    np_identify_init(&got);
    is_int(np_identify_parse(&got, LIT(m)), 0, "foreign identify parses");
    ok(got.nprotocols == 1 && strcmp(got.protocols[0], "/ipfs/id/1.0.0") == 0,
       "protocol read");
    is_int(got.naddrs, 1, "invalid address dropped, valid one kept");
    is_int(np_identify_peerid(&got, &pid), NP_ENOENT, "no key: no peer ID");
    is_int(np_identify_parse(&got, LIT("\x0a\x03xyz")), NP_EPROTO,
           "publicKey that is not a PublicKey refused");
    is_int(np_identify_parse(&got, LIT("\x12\xff")), NP_EPROTO,
           "truncated field refused");
    is_int(np_identify_parse(&got, out, NP_IDENTIFY_MSG_MAX + 1), NP_ELIMIT,
           "message over 8 KiB refused before decoding");
    while (got.nmsgs < NP_IDENTIFY_MAX_MSGS)
      np_identify_parse(&got, LIT(""));
    is_int(np_identify_parse(&got, LIT("")), NP_ELIMIT,
           "at most NP_IDENTIFY_MAX_MSGS messages merged");
    np_identify_free(&got);
  }
  np_identity_clear(&self);
  np_identity_clear(&other);
}

/* ---- p2pd control messages ---------------------------------------------- */

static void test_p2pd(void) {
  /* Request{type: STREAM_OPEN, streamOpen{peer: aa bb,
   * proto: ["/echo/1.0.0"], timeout: 10}} */
  static const uint8_t open[] = "\x08\x02\x1a\x13"
                                "\x0a\x02\xaa\xbb"
                                "\x12\x0b/echo/1.0.0"
                                "\x18\x0a";
  /* js STREAM_HANDLER: no `balanced`. */
  static const uint8_t handler[] = "\x08\x03\x22\x0b"
                                   "\x0a\x02\x01\x02"
                                   "\x12\x05/echo";
  /* fork REMOVE_STREAM_HANDLER: type 10, field 9 {addr, proto}. */
  static const uint8_t remove[] = "\x08\x0a\x4a\x09"
                                  "\x0a\x02\x01\x02"
                                  "\x12\x03/a1";
  /* js PEERSTORE: type 9 with field 9 = PeerstoreRequest{GET_PROTOCOLS}. */
  static const uint8_t peerstore[] = "\x08\x09\x4a\x02\x08\x01";
  Np__P2pd__Request *r;
  Np__P2pd__Response resp = NP__P2PD__RESPONSE__INIT;
  uint8_t buf[16];

  r = np__p2pd__request__unpack(NULL, sizeof(open) - 1, open);
  ok(r != NULL && r->type == NP__P2PD__REQUEST__TYPE__STREAM_OPEN &&
         r->streamopen != NULL && r->streamopen->peer.len == 2 &&
         r->streamopen->n_proto == 1 &&
         strcmp(r->streamopen->proto[0], "/echo/1.0.0") == 0 &&
         r->streamopen->has_timeout && r->streamopen->timeout == 10,
     "hand-built STREAM_OPEN request decodes");
  if (r)
    np__p2pd__request__free_unpacked(r, NULL);

  r = np__p2pd__request__unpack(NULL, sizeof(handler) - 1, handler);
  ok(r != NULL && r->streamhandler != NULL && !r->streamhandler->has_balanced &&
         !r->streamhandler->balanced,
     "STREAM_HANDLER without balanced decodes as balanced=false");
  if (r)
    np__p2pd__request__free_unpacked(r, NULL);

  r = np__p2pd__request__unpack(NULL, 2, (const uint8_t *)"\x08\x09");
  ok(r != NULL && r->type == NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE &&
         !r->has_field9,
     "type 9 without field 9: persistent connection upgrade");
  if (r)
    np__p2pd__request__free_unpacked(r, NULL);

  r = np__p2pd__request__unpack(NULL, sizeof(remove) - 1, remove);
  ok(r != NULL && r->type == NP__P2PD__REQUEST__TYPE__REMOVE_STREAM_HANDLER &&
         r->has_field9,
     "REMOVE_STREAM_HANDLER carries field 9");
  if (r) {
    Np__P2pd__RemoveStreamHandlerRequest *rm =
        np__p2pd__remove_stream_handler_request__unpack(NULL, r->field9.len,
                                                        r->field9.data);
    ok(rm != NULL && rm->addr.len == 2 && rm->n_proto == 1 &&
           strcmp(rm->proto[0], "/a1") == 0,
       "field 9 decodes as RemoveStreamHandlerRequest for type 10");
    if (rm)
      np__p2pd__remove_stream_handler_request__free_unpacked(rm, NULL);
    np__p2pd__request__free_unpacked(r, NULL);
  }

  r = np__p2pd__request__unpack(NULL, sizeof(peerstore) - 1, peerstore);
  ok(r != NULL && r->type == NP__P2PD__REQUEST__TYPE__PEERSTORE &&
         r->has_field9,
     "js PEERSTORE: type 9 with field 9");
  if (r) {
    Np__P2pd__PeerstoreRequest *ps = np__p2pd__peerstore_request__unpack(
        NULL, r->field9.len, r->field9.data);
    ok(ps != NULL && ps->has_type &&
           ps->type == NP__P2PD__PEERSTORE_REQUEST__TYPE__GET_PROTOCOLS,
       "field 9 decodes as PeerstoreRequest for type 9");
    if (ps)
      np__p2pd__peerstore_request__free_unpacked(ps, NULL);
    np__p2pd__request__free_unpacked(r, NULL);
  }

  ok(np__p2pd__request__unpack(NULL, 2, (const uint8_t *)"\x10\x01") == NULL,
     "request without its required type refused");

  resp.type = NP__P2PD__RESPONSE__TYPE__OK;
  is_bytes(buf, np__p2pd__response__pack(&resp, buf), "\x08\x00",
           "Response{OK} writes its required enum 0");
}

int main(void) {
  test_mss_encode();
  test_mss_dialer_transcript();
  test_mss_listener_transcript();
  test_mss_pair();
  test_mss_lazy();
  test_mss_refused();
  test_mss_limits();
  test_mss_backpressure();
  test_lp();
  test_unary();
  test_identify();
  test_p2pd();
  np_crypto_cleanup();
  return done_testing();
}
