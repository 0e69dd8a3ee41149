/* Kademlia DHT core: message codec (round trips, every cap, garbage), the
 * routing table (placement, the eviction protocol, closest-k against a
 * brute-force sort) and the lookup, alone and over a simulated network of
 * 1,000 nodes with 0, 10 and 30 % of them dead. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "np_kadmsg.h"
#include "np_kadquery.h"
#include "np_kbucket.h"
#include "np_lp.h"
#include "tap.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void) { /* xorshift64*: deterministic runs */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

static void rnd_bytes(uint8_t *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    b[i] = (uint8_t)rnd();
}

/* A sha2-256 peer ID with random digest. */
static void rnd_id(np_peerid *id) {
  uint8_t mh[34] = {0x12, 0x20};
  rnd_bytes(mh + 2, 32);
  if (np_peerid_from_bytes(id, mh, sizeof(mh)) != 0)
    abort();
}

/* /ip4/10.0.x.y/tcp/4001 */
static uint8_t addr_a[] = {0x04, 10, 0, 0, 1, 0x06, 0x0f, 0xa1};
static uint8_t addr_b[] = {0x04, 10, 0, 0, 2, 0x06, 0x0f, 0xa1};
static uint8_t addr_bad[] = {0x04, 10, 0}; /* truncated */

static int peer_eq(const np_kadmsg_peer *a, const np_kadmsg_peer *b) {
  size_t i;
  if (!np_peerid_equal(&a->id, &b->id) || a->naddrs != b->naddrs ||
      a->conn != b->conn)
    return 0;
  for (i = 0; i < a->naddrs; i++)
    if (a->addrs[i].len != b->addrs[i].len ||
        memcmp(a->addrs[i].data, b->addrs[i].data, a->addrs[i].len) != 0)
      return 0;
  return 1;
}

static int blob_eq(const np_kadmsg_blob *a, const np_kadmsg_blob *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int msg_eq(const np_kadmsg *a, const np_kadmsg *b) {
  size_t i;
  if (a->type != b->type || a->cluster_level != b->cluster_level ||
      !blob_eq(&a->key, &b->key) || a->has_record != b->has_record ||
      a->ncloser != b->ncloser || a->nproviders != b->nproviders)
    return 0;
  if (a->has_record &&
      (!blob_eq(&a->record.key, &b->record.key) ||
       !blob_eq(&a->record.value, &b->record.value) ||
       (a->record.time_received == NULL) != (b->record.time_received == NULL) ||
       (a->record.time_received &&
        strcmp(a->record.time_received, b->record.time_received) != 0)))
    return 0;
  for (i = 0; i < a->ncloser; i++)
    if (!peer_eq(&a->closer[i], &b->closer[i]))
      return 0;
  for (i = 0; i < a->nproviders; i++)
    if (!peer_eq(&a->providers[i], &b->providers[i]))
      return 0;
  return 1;
}

static uint8_t buf[1 << 20];

static np_kadmsg_blob two_addrs[2] = {{addr_a, sizeof(addr_a)},
                                      {addr_b, sizeof(addr_b)}};

static void test_msg_roundtrip(void) {
  np_kadmsg m, d;
  np_kadmsg_peer peers[3];
  np_peerid target;
  char when[] = "2026-11-29T21:00:00Z";
  const uint8_t *body;
  size_t blen, i;
  np_ssize n;

  rnd_id(&target);
  np_kadmsg_init(&m);
  m.type = NP_KADMSG_FIND_NODE;
  m.key.data = target.bytes;
  m.key.len = target.len;
  n = np_kadmsg_encode(&m, buf, sizeof(buf));
  ok(n > 0, "kadmsg_find_node_request_encodes");
  is_int(buf[0], 0x08, "kadmsg_type_is_field_1_varint");
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, NULL), 0,
         "kadmsg_find_node_request_decodes");
  ok(msg_eq(&m, &d), "kadmsg_find_node_request_round_trips");
  np_kadmsg_free(&d);

  memset(peers, 0, sizeof(peers));
  for (i = 0; i < 3; i++) {
    rnd_id(&peers[i].id);
    peers[i].addrs = two_addrs;
    peers[i].naddrs = i == 2 ? 0 : 2;
    peers[i].conn = (np_kadmsg_conn)i;
  }
  m.type = NP_KADMSG_GET_VALUE;
  m.has_record = 1;
  m.record.key.data = (uint8_t *)"/pk/abc";
  m.record.key.len = 7;
  m.record.value.data = (uint8_t *)"value";
  m.record.value.len = 5;
  m.record.time_received = when;
  m.closer = peers;
  m.ncloser = 2;
  m.providers = peers + 2;
  m.nproviders = 1;
  n = np_kadmsg_encode_lp(&m, buf, sizeof(buf));
  ok(n > 0, "kadmsg_response_encodes_framed");
  ok(np_lp_parse(buf, (size_t)n, NP_KADMSG_MSG_MAX, &body, &blen) == n,
     "kadmsg_frame_is_one_lp_message");
  is_int(np_kadmsg_decode(&d, body, blen, NULL), 0, "kadmsg_response_decodes");
  ok(msg_eq(&m, &d), "kadmsg_response_round_trips_peers_addrs_record");
  np_kadmsg_free(&d);

  /* PUT_VALUE is 0: proto3 leaves the field out, the decoder restores it. */
  np_kadmsg_init(&m);
  m.type = NP_KADMSG_PUT_VALUE;
  m.cluster_level = 3;
  m.has_record = 1;
  m.record.value.data = (uint8_t *)"v";
  m.record.value.len = 1;
  n = np_kadmsg_encode(&m, buf, sizeof(buf));
  ok(n > 0 && buf[0] != 0x08, "kadmsg_put_value_type_omitted_on_wire");
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, NULL), 0,
         "kadmsg_put_value_decodes");
  ok(msg_eq(&m, &d) && d.record.time_received == NULL,
     "kadmsg_put_value_round_trips");
  np_kadmsg_free(&d);

  is_int(np_kadmsg_encode(&m, buf, 2), NP_ELIMIT,
         "kadmsg_encode_refuses_small_buffer");
  m.type = (np_kadmsg_type)6;
  is_int(np_kadmsg_encode(&m, buf, sizeof(buf)), NP_EINVAL,
         "kadmsg_encode_refuses_unknown_type");
  is_int(np_kadmsg_decode(&d, NULL, 0, NULL), 0, "kadmsg_empty_body_is_put");
  ok(d.type == NP_KADMSG_PUT_VALUE && !d.has_record && d.ncloser == 0,
     "kadmsg_empty_body_has_nothing");
  np_kadmsg_free(&d);
}

/* Every field of the spec's Message, byte for byte: tags 0x08 0x12 0x1a
 * 0x42 0x4a 0x50, Peer 0x0a 0x12 0x18, Record 0x0a 0x12 0x2a. */
static void test_msg_wire_bytes(void) {
  np_kadmsg m, d;
  np_kadmsg_peer p[2];
  np_kadmsg_blob one = {addr_a, sizeof(addr_a)};
  uint8_t want[128], *w = want;
  char t[] = "t";
  np_ssize n;
  memset(p, 0, sizeof(p));
  rnd_id(&p[0].id);
  rnd_id(&p[1].id);
  p[0].addrs = &one;
  p[0].naddrs = 1;
  p[0].conn = NP_KADMSG_CONNECTED;
  np_kadmsg_init(&m);
  m.type = NP_KADMSG_FIND_NODE;
  m.key.data = (uint8_t *)"k";
  m.key.len = 1;
  m.has_record = 1;
  m.record.key.data = (uint8_t *)"r";
  m.record.key.len = 1;
  m.record.value.data = (uint8_t *)"v";
  m.record.value.len = 1;
  m.record.time_received = t;
  m.closer = &p[0];
  m.ncloser = 1;
  m.providers = &p[1];
  m.nproviders = 1;
  m.cluster_level = 2;
  memcpy(w, "\x08\x04\x12\x01k\x1a\x09\x0a\x01r\x12\x01v\x2a\x01t", 16);
  w += 16;
  memcpy(w, "\x42\x30\x0a\x22", 4);
  memcpy(w + 4, p[0].id.bytes, 34);
  memcpy(w + 38, "\x12\x08", 2);
  memcpy(w + 40, addr_a, 8);
  memcpy(w + 48, "\x18\x01", 2);
  w += 50;
  memcpy(w, "\x4a\x24\x0a\x22", 4);
  memcpy(w + 4, p[1].id.bytes, 34);
  w += 38;
  memcpy(w, "\x50\x02", 2);
  w += 2;
  n = np_kadmsg_encode(&m, buf, sizeof(buf));
  is_mem(buf, n, want, (size_t)(w - want), "kadmsg_wire_bytes_match_spec");
  is_int(np_kadmsg_decode(&d, want, (size_t)(w - want), NULL), 0,
         "kadmsg_spec_bytes_decode");
  ok(msg_eq(&m, &d), "kadmsg_spec_bytes_decode_to_every_field");
  np_kadmsg_free(&d);
}

/* A response with |n| closer peers of |na| addrs each (|bad_every|-th peer
 * with an invalid ID, every |bad_addr|-th addr invalid; 0: none). */
static np_ssize build_peers(size_t n, size_t na, size_t bad_every,
                            size_t bad_addr, uint8_t *out, size_t cap) {
  static np_kadmsg_peer peers[2000];
  static np_kadmsg_blob addrs[64];
  np_kadmsg m;
  size_t i;
  for (i = 0; i < na && i < 64; i++) {
    addrs[i].data = (bad_addr && i % bad_addr == 0) ? addr_bad : addr_a;
    addrs[i].len = (bad_addr && i % bad_addr == 0) ? sizeof(addr_bad)
                                                   : sizeof(addr_a);
  }
  for (i = 0; i < n; i++) {
    memset(&peers[i], 0, sizeof(peers[i]));
    rnd_id(&peers[i].id);
    if (bad_every && i % bad_every == 0)
      peers[i].id.bytes[0] = 0x55; /* no such multihash code */
    peers[i].addrs = addrs;
    peers[i].naddrs = na;
  }
  np_kadmsg_init(&m);
  m.type = NP_KADMSG_FIND_NODE;
  m.closer = peers;
  m.ncloser = n;
  return np_kadmsg_encode(&m, out, cap);
}

static void test_msg_caps(void) {
  np_kadmsg d;
  np_kadmsg_limits lim;
  np_ssize n;
  size_t i, bad;
  uint8_t raw[64];

  np_kadmsg_limits_default(&lim);
  n = build_peers(100, 1, 0, 0, buf, sizeof(buf));
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, NULL), 0,
         "kadmsg_100_peers_decode");
  is_int(d.ncloser, NP_KADMSG_PEERS_MAX, "kadmsg_peers_cut_to_default_cap");
  np_kadmsg_free(&d);
  lim.max_peers = 5;
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, &lim), 0,
         "kadmsg_custom_peer_cap_decodes");
  is_int(d.ncloser, 5, "kadmsg_peers_cut_to_custom_cap");
  np_kadmsg_free(&d);

  np_kadmsg_limits_default(&lim);
  n = build_peers(2, 50, 0, 0, buf, sizeof(buf));
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, NULL), 0,
         "kadmsg_50_addrs_decode");
  ok(d.ncloser == 2 && d.closer[0].naddrs == NP_KADMSG_ADDRS_MAX &&
         d.closer[1].naddrs == NP_KADMSG_ADDRS_MAX,
     "kadmsg_addrs_cut_to_cap");
  np_kadmsg_free(&d);

  n = build_peers(10, 6, 3, 2, buf, sizeof(buf));
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, NULL), 0,
         "kadmsg_bad_ids_and_addrs_decode");
  bad = 0;
  for (i = 0; i < d.ncloser; i++)
    bad += d.closer[i].naddrs != 3;
  ok(d.ncloser == 6 && bad == 0, "kadmsg_invalid_peers_and_addrs_dropped");
  np_kadmsg_free(&d);

  n = build_peers(2000, 1, 0, 0, buf, sizeof(buf));
  ok(n > NP_KADMSG_MSG_MAX, "kadmsg_2000_peers_exceed_64k");
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, NULL), NP_ELIMIT,
         "kadmsg_body_over_max_msg_refused");
  lim.max_msg = (size_t)n;
  is_int(np_kadmsg_decode(&d, buf, (size_t)n, &lim), 0,
         "kadmsg_max_msg_is_a_parameter");
  is_int(d.ncloser, NP_KADMSG_PEERS_MAX, "kadmsg_big_message_still_capped");
  np_kadmsg_free(&d);

  /* 32,000 empty Peers in 64 KiB: ~2 MiB to unpack, over the budget. */
  np_kadmsg_limits_default(&lim);
  for (i = 0; i + 1 < NP_KADMSG_MSG_MAX; i += 2) {
    buf[i] = 0x42;
    buf[i + 1] = 0x00;
  }
  is_int(np_kadmsg_decode(&d, buf, NP_KADMSG_MSG_MAX, NULL), NP_ELIMIT,
         "kadmsg_empty_peer_flood_refused_by_memory_budget");

  /* key = 2, length 300 */
  memset(buf, 'k', 400);
  buf[0] = 0x12;
  buf[1] = 0xac;
  buf[2] = 0x02;
  is_int(np_kadmsg_decode(&d, buf, 303, NULL), NP_ELIMIT,
         "kadmsg_key_over_cap_refused");
  lim.max_key = 300;
  is_int(np_kadmsg_decode(&d, buf, 303, &lim), 0, "kadmsg_key_cap_is_a_parameter");
  is_int(d.key.len, 300, "kadmsg_key_kept_whole");
  np_kadmsg_free(&d);
  /* record = 3 { key = 1 (300 bytes) } */
  buf[0] = 0x1a;
  buf[1] = 0xaf;
  buf[2] = 0x02;
  buf[3] = 0x0a;
  buf[4] = 0xac;
  buf[5] = 0x02;
  is_int(np_kadmsg_decode(&d, buf, 306, NULL), NP_ELIMIT,
         "kadmsg_record_key_over_cap_refused");

  raw[0] = 0x08;
  raw[1] = 0x07;
  is_int(np_kadmsg_decode(&d, raw, 2, NULL), NP_EPROTO,
         "kadmsg_unknown_type_refused");
  raw[1] = 0x05;
  is_int(np_kadmsg_decode(&d, raw, 2, NULL), 0, "kadmsg_ping_decodes");
  is_int(d.type, NP_KADMSG_PING, "kadmsg_ping_type");
  np_kadmsg_free(&d);

  /* closerPeers = 8 { id = 1 (34 bytes), connection = 3: 9 } */
  {
    np_peerid id;
    rnd_id(&id);
    raw[0] = 0x42;
    raw[1] = 2 + 34 + 2;
    raw[2] = 0x0a;
    raw[3] = 34;
    memcpy(raw + 4, id.bytes, 34);
    raw[38] = 0x18;
    raw[39] = 0x09;
    is_int(np_kadmsg_decode(&d, raw, 40, NULL), 0,
           "kadmsg_unknown_connection_type_decodes");
    ok(d.ncloser == 1 && d.closer[0].conn == NP_KADMSG_NOT_CONNECTED &&
           np_peerid_equal(&d.closer[0].id, &id) && d.closer[0].naddrs == 0,
       "kadmsg_unknown_connection_type_is_not_connected");
    np_kadmsg_free(&d);
  }

  /* record { timeReceived = 5: "a\0b" }: protobuf-c would cut it to "a" */
  {
    const uint8_t t[] = {0x1a, 0x05, 0x2a, 0x03, 'a', 0x00, 'b'};
    is_int(np_kadmsg_decode(&d, t, sizeof(t), NULL), 0,
           "kadmsg_time_with_nul_decodes");
    ok(d.has_record && d.record.time_received == NULL,
       "kadmsg_time_with_nul_dropped");
    np_kadmsg_free(&d);
  }
}

static void test_msg_garbage(void) {
  np_kadmsg d;
  np_ssize n;
  size_t i, cut, bad = 0, okay = 0;
  /* Every prefix of a valid framed response: refused or within the caps. */
  n = build_peers(45, 3, 7, 2, buf, sizeof(buf));
  for (cut = 0; cut < (size_t)n; cut++) {
    int rv = np_kadmsg_decode(&d, buf, cut, NULL);
    if (rv == 0) {
      okay++;
      if (d.ncloser > NP_KADMSG_PEERS_MAX)
        bad++;
      np_kadmsg_free(&d);
    } else if (rv != NP_EPROTO) {
      bad++;
    }
  }
  ok(bad == 0 && okay > 0, "kadmsg_every_truncation_refused_or_capped");
  bad = 0;
  for (i = 0; i < 20000; i++) {
    size_t len = (size_t)(rnd() % 200);
    int rv;
    rnd_bytes(buf, len);
    if (i & 1)
      buf[0] = 0x42; /* start like a peer list */
    rv = np_kadmsg_decode(&d, buf, len, NULL);
    if (rv == 0) {
      if (d.ncloser > NP_KADMSG_PEERS_MAX || d.nproviders > NP_KADMSG_PEERS_MAX)
        bad++;
      np_kadmsg_free(&d);
    } else if (rv != NP_EPROTO && rv != NP_ELIMIT) {
      bad++;
    }
  }
  is_int(bad, 0, "kadmsg_random_garbage_refused_or_capped");
}

/* ---- routing table ---- */

static np_peerid self_id;
static uint8_t self_key[NP_KBUCKET_KEYLEN];

/* A random ID whose key has common prefix length |cpl| with self's. */
static void id_in_bucket(np_peerid *id, unsigned cpl) {
  uint8_t key[NP_KBUCKET_KEYLEN];
  do {
    rnd_id(id);
    np_kbucket_key(id, key);
  } while (np_kbucket_cpl(self_key, key) != cpl);
}

static void test_bucket_basics(void) {
  np_kbucket *t;
  np_kbucket_config cfg = {2, 3};
  np_peerid a, b, c, d, e, cand, x;
  uint8_t key[NP_KBUCKET_KEYLEN];
  size_t i, placed = 0;

  rnd_id(&self_id);
  np_kbucket_key(&self_id, self_key);
  ok(np_kbucket_new(&t, &self_id, NULL) == 0, "kbucket_new_defaults");
  is_int(np_kbucket_add(t, &self_id, 0, NULL), NP_EINVAL,
         "kbucket_refuses_self");
  for (i = 0; i < 200; i++) {
    unsigned cpl;
    size_t before;
    rnd_id(&x);
    np_kbucket_key(&x, key);
    cpl = np_kbucket_cpl(self_key, key);
    before = np_kbucket_bucket_size(t, cpl);
    if (np_kbucket_add(t, &x, i, NULL) == NP_KBUCKET_ADDED &&
        np_kbucket_bucket_size(t, cpl) == before + 1)
      placed++;
    else if (before < 20)
      break;
  }
  is_int(i, 200, "kbucket_peer_lands_in_bucket_of_its_cpl");
  ok(placed > 0 && np_kbucket_size(t) == placed, "kbucket_size_counts_peers");
  is_int(np_kbucket_add(t, &x, 999, NULL),
         np_kbucket_contains(t, &x) ? NP_KBUCKET_UPDATED : NP_KBUCKET_QUEUED,
         "kbucket_known_peer_is_updated");
  np_kbucket_del(t);
  is_int(np_kbucket_new(&t, &self_id, &(np_kbucket_config){0, 3}), NP_EINVAL,
         "kbucket_refuses_k_0");

  /* The eviction protocol in bucket 0 with k = 2. */
  ok(np_kbucket_new(&t, &self_id, &cfg) == 0, "kbucket_new_k2");
  id_in_bucket(&a, 0);
  id_in_bucket(&b, 0);
  id_in_bucket(&c, 0);
  id_in_bucket(&d, 0);
  id_in_bucket(&e, 0);
  is_int(np_kbucket_add(t, &a, 1, NULL), NP_KBUCKET_ADDED, "kbucket_add_a");
  is_int(np_kbucket_add(t, &b, 2, NULL), NP_KBUCKET_ADDED, "kbucket_add_b");
  is_int(np_kbucket_add(t, &a, 3, NULL), NP_KBUCKET_UPDATED,
         "kbucket_seen_a_again");
  is_int(np_kbucket_add(t, &c, 4, &cand), NP_KBUCKET_FULL,
         "kbucket_full_bucket_asks_for_check");
  ok(np_peerid_equal(&cand, &b), "kbucket_candidate_is_least_recently_seen");
  ok(!np_kbucket_contains(t, &c), "kbucket_newcomer_not_admitted_yet");
  is_int(np_kbucket_add(t, &d, 5, &cand), NP_KBUCKET_QUEUED,
         "kbucket_one_check_at_a_time");
  is_int(np_kbucket_report(t, &b, 1, 6), 0, "kbucket_report_alive");
  ok(np_kbucket_contains(t, &b) && !np_kbucket_contains(t, &c) &&
         !np_kbucket_contains(t, &d) && np_kbucket_size(t) == 2,
     "kbucket_alive_keeps_old_drops_new");
  is_int(np_kbucket_add(t, &e, 7, &cand), NP_KBUCKET_FULL,
         "kbucket_next_newcomer_asks_again");
  ok(np_peerid_equal(&cand, &a), "kbucket_alive_moved_old_to_tail");
  is_int(np_kbucket_report(t, &a, 0, 8), 0, "kbucket_report_dead");
  ok(!np_kbucket_contains(t, &a) && np_kbucket_contains(t, &e) &&
         np_kbucket_size(t) == 2,
     "kbucket_dead_replaced_by_newest_cached");
  is_int(np_kbucket_report(t, &a, 1, 9), NP_ENOENT,
         "kbucket_report_unknown_is_enoent");
  is_int(np_kbucket_remove(t, &b), 0, "kbucket_remove");
  ok(!np_kbucket_contains(t, &b) && np_kbucket_contains(t, &d) &&
         np_kbucket_size(t) == 2,
     "kbucket_remove_promotes_cached");
  is_int(np_kbucket_remove(t, &c), 0, "kbucket_remove_cached_peer");
  is_int(np_kbucket_remove(t, &e), 0, "kbucket_remove_again");
  ok(np_kbucket_size(t) == 1 && np_kbucket_contains(t, &d),
     "kbucket_cache_empty_after_removals");
  is_int(np_kbucket_remove(t, &a), NP_ENOENT, "kbucket_remove_unknown");
  np_kbucket_del(t);
  np_kbucket_del(NULL);

  /* The replacement cache keeps only the 3 newest of 10 newcomers. */
  {
    np_peerid nc[10], cand2;
    size_t promoted = 0, stale = 0;
    ok(np_kbucket_new(&t, &self_id, &cfg) == 0, "kbucket_new_for_cache");
    id_in_bucket(&a, 1);
    id_in_bucket(&b, 1);
    np_kbucket_add(t, &a, 1, NULL);
    np_kbucket_add(t, &b, 2, NULL);
    for (i = 0; i < 10; i++) {
      id_in_bucket(&nc[i], 1);
      np_kbucket_add(t, &nc[i], 10 + i, &cand2);
    }
    np_kbucket_remove(t, &a);
    np_kbucket_remove(t, &b);
    for (i = 0; i < 10; i++) {
      int in = np_kbucket_contains(t, &nc[i]);
      promoted += in;
      stale += in && i < 8;
    }
    ok(promoted == 2 && stale == 0 && np_kbucket_size(t) == 2 &&
           np_kbucket_bucket_size(t, 1) == 2,
       "kbucket_cache_bounded_newest_promoted_first");
    np_kbucket_remove(t, &nc[9]);
    ok(np_kbucket_contains(t, &nc[7]) && np_kbucket_size(t) == 2,
       "kbucket_third_newest_promoted_last");
    np_kbucket_remove(t, &nc[8]);
    is_int(np_kbucket_size(t), 1, "kbucket_cache_exhausted");
    np_kbucket_del(t);
  }
}

static const uint8_t *sort_target;
static int by_dist(const void *a, const void *b) {
  return np_kbucket_cmp(sort_target, a, b);
}

static uint8_t (*sort_keys)[NP_KBUCKET_KEYLEN];
static int by_key_desc(const void *a, const void *b) {
  return np_kbucket_cmp(sort_target, sort_keys[*(const size_t *)b],
                        sort_keys[*(const size_t *)a]);
}

static void test_bucket_closest(size_t k) {
  enum { N = 10000, Q = 300, W = 20 };
  static np_peerid ids[N];
  static uint8_t keys[N][NP_KBUCKET_KEYLEN], members[N][NP_KBUCKET_KEYLEN];
  np_kbucket *t;
  np_kbucket_config cfg = {k, 3};
  np_peerid out[W];
  uint8_t target[NP_KBUCKET_KEYLEN], key[NP_KBUCKET_KEYLEN];
  size_t i, j, nm = 0, bad = 0;
  struct mallinfo2 m0, m1;

  m0 = mallinfo2();
  if (np_kbucket_new(&t, &self_id, &cfg) != 0)
    abort();
  for (i = 0; i < N; i++) {
    rnd_id(&ids[i]);
    np_kbucket_key(&ids[i], keys[i]);
    np_kbucket_add(t, &ids[i], i, NULL);
  }
  m1 = mallinfo2();
  for (i = 0; i < N; i++)
    if (np_kbucket_contains(t, &ids[i]))
      memcpy(members[nm++], keys[i], NP_KBUCKET_KEYLEN);
  is_int(nm, np_kbucket_size(t), "kbucket_k%zu_contains_matches_size", k);
  if (m1.uordblks > m0.uordblks)
    printf("# kbucket k=%zu: %zu of %d peers kept, %zu bytes per entry "
           "(entry %zu, table heap %zu bytes)\n",
           k, nm, N, (size_t)(m1.uordblks - m0.uordblks) / (nm ? nm : 1),
           np_kbucket_entry_size(), (size_t)(m1.uordblks - m0.uordblks));
  else /* a sanitizer's allocator: mallinfo2 sees nothing */
    printf("# kbucket k=%zu: %zu of %d peers kept, entry %zu bytes\n", k, nm,
           N, np_kbucket_entry_size());
  for (i = 0; i < Q; i++) {
    size_t got, want;
    if (i == 0)
      memcpy(target, self_key, sizeof(target));
    else if (i < 50)
      memcpy(target, members[rnd() % nm], sizeof(target));
    else
      rnd_bytes(target, sizeof(target));
    got = np_kbucket_closest(t, target, W, out);
    sort_target = target;
    qsort(members, nm, NP_KBUCKET_KEYLEN, by_dist);
    want = nm < W ? nm : W;
    if (got != want) {
      bad++;
      continue;
    }
    for (j = 0; j < got; j++) {
      np_kbucket_key(&out[j], key);
      if (memcmp(key, members[j], NP_KBUCKET_KEYLEN) != 0) {
        bad++;
        break;
      }
    }
  }
  is_int(bad, 0, "kbucket_k%zu_closest_matches_brute_force_on_%d_ids", k, N);
  np_kbucket_del(t);
}

/* ---- lookups ---- */

static void test_query_unit(void) {
  np_kadquery *q;
  np_kadquery_config cfg;
  np_kadquery_stats st;
  np_peerid seeds[30], out[64], junk[5000];
  uint8_t target[NP_KBUCKET_KEYLEN];
  size_t i, n, steps;

  rnd_bytes(target, sizeof(target));
  ok(np_kadquery_new(&q, target, &self_id, NULL) == 0, "kadquery_new");
  np_kadquery_seed(q, NULL, 0);
  is_int(np_kadquery_state_get(q), NP_KADQUERY_FAILED,
         "kadquery_without_seeds_fails");
  np_kadquery_del(q);

  np_kadquery_config_default(&cfg);
  cfg.max_candidates = cfg.k;
  is_int(np_kadquery_new(&q, target, &self_id, &cfg), NP_EINVAL,
         "kadquery_refuses_set_smaller_than_k_plus_alpha");

  np_kadquery_config_default(&cfg);
  cfg.timeout = 10;
  np_kadquery_new(&q, target, &self_id, &cfg);
  for (i = 0; i < 30; i++)
    rnd_id(&seeds[i]);
  seeds[29] = self_id;
  np_kadquery_seed(q, seeds, 30);
  n = np_kadquery_next(q, 100, out, 64);
  is_int(n, cfg.alpha, "kadquery_hands_out_alpha");
  is_int(np_kadquery_next(q, 100, out + n, 64), 0,
         "kadquery_no_more_while_alpha_in_flight");
  is_int(np_kadquery_deadline(q), 110, "kadquery_deadline_is_now_plus_timeout");
  is_int(np_kadquery_on_response(q, &seeds[29], NULL, 0), NP_ENOENT,
         "kadquery_unsolicited_response_ignored");
  is_int(np_kadquery_on_timeout(q, 109), 0, "kadquery_nothing_due_early");
  is_int(np_kadquery_on_response(q, &out[0], NULL, 0), 0,
         "kadquery_response_accepted");
  is_int(np_kadquery_on_response(q, &out[0], NULL, 0), NP_ENOENT,
         "kadquery_second_response_ignored");
  is_int(np_kadquery_on_failure(q, &out[1]), 0, "kadquery_failure_accepted");
  is_int(np_kadquery_on_timeout(q, 110), cfg.alpha - 2,
         "kadquery_rest_time_out");
  np_kadquery_stats_get(q, &st);
  ok(st.queried == cfg.alpha && st.answered == 1 &&
         st.failed == cfg.alpha - 1 && st.timed_out == cfg.alpha - 2 &&
         st.ignored == 2,
     "kadquery_stats_count_events");
  for (steps = 0; steps < 100; steps++) { /* the rest all fail */
    n = np_kadquery_next(q, 200, out, 64);
    if (n == 0)
      break;
    for (i = 0; i < n; i++) {
      if (np_peerid_equal(&out[i], &self_id))
        abort();
      np_kadquery_on_failure(q, &out[i]);
    }
  }
  is_int(np_kadquery_state_get(q), NP_KADQUERY_DONE,
         "kadquery_done_with_the_one_that_answered");
  ok(np_kadquery_result(q, out, 64) == 1, "kadquery_result_is_the_answerer");
  np_kadquery_del(q);

  /* max_queried: answers that lead on, but only 5 requests allowed. */
  np_kadquery_config_default(&cfg);
  cfg.max_queried = 5;
  np_kadquery_new(&q, target, &self_id, &cfg);
  np_kadquery_seed(q, seeds, 29);
  for (steps = 0; steps < 100; steps++) {
    n = np_kadquery_next(q, steps, out, 64);
    if (n == 0 && np_kadquery_state_get(q) != NP_KADQUERY_RUNNING)
      break;
    for (i = 0; i < n; i++)
      np_kadquery_on_response(q, &out[i], NULL, 0);
  }
  np_kadquery_stats_get(q, &st);
  ok(np_kadquery_state_get(q) == NP_KADQUERY_LIMIT && st.queried == 5 &&
         np_kadquery_result(q, out, 64) == 5,
     "kadquery_max_queried_ends_with_partial_result");
  np_kadquery_del(q);

  /* Every peer answers with 5,000 fresh random peers: the set stays
   * bounded and max_queried ends it. */
  for (i = 0; i < 5000; i++)
    rnd_id(&junk[i]);
  np_kadquery_config_default(&cfg);
  np_kadquery_new(&q, target, &self_id, &cfg);
  np_kadquery_seed(q, seeds, 20);
  for (steps = 0; steps < 10000; steps++) {
    n = np_kadquery_next(q, steps, out, 64);
    if (n == 0)
      break;
    for (i = 0; i < n; i++) {
      size_t off = (size_t)(rnd() % 4000);
      np_kadquery_on_response(q, &out[i], junk + off, 1000);
    }
  }
  np_kadquery_stats_get(q, &st);
  ok(np_kadquery_state_get(q) != NP_KADQUERY_RUNNING &&
         st.queried <= cfg.max_queried,
     "kadquery_hostile_flood_terminates");
  printf("# flood: state=%d queried=%zu dropped=%zu depth=%u\n",
         (int)np_kadquery_state_get(q), st.queried, st.dropped, st.depth);
  np_kadquery_del(q);

  /* Every answer is strictly closer than anything seen so far (a pool
   * handed out farthest first): the depth and request bounds end it. */
  {
    static np_peerid pool[6000];
    static size_t idx[6000];
    static uint8_t pkeys[6000][NP_KBUCKET_KEYLEN];
    size_t next_chunk = 0;
    for (i = 0; i < 6000; i++) {
      rnd_id(&pool[i]);
      np_kbucket_key(&pool[i], pkeys[i]);
      idx[i] = i;
    }
    sort_target = target;
    sort_keys = pkeys;
    qsort(idx, 6000, sizeof(size_t), by_key_desc);
    np_kadquery_config_default(&cfg);
    np_kadquery_new(&q, target, &self_id, &cfg);
    for (i = 0; i < 20; i++)
      seeds[i] = pool[idx[next_chunk++]];
    np_kadquery_seed(q, seeds, 20);
    for (steps = 0; steps < 10000; steps++) {
      n = np_kadquery_next(q, steps, out, 64);
      if (n == 0)
        break;
      for (i = 0; i < n; i++) {
        np_peerid chunk[20];
        size_t c;
        for (c = 0; c < 20 && next_chunk < 6000; c++)
          chunk[c] = pool[idx[next_chunk++]];
        np_kadquery_on_response(q, &out[i], chunk, c);
      }
    }
    np_kadquery_stats_get(q, &st);
    ok(np_kadquery_state_get(q) != NP_KADQUERY_RUNNING &&
           st.queried <= cfg.max_queried && st.depth <= cfg.max_depth,
       "kadquery_ever_closer_answers_bounded_by_depth_and_requests");
    printf("# ever closer: state=%d queried=%zu depth=%u offered=%zu\n",
           (int)np_kadquery_state_get(q), st.queried, st.depth, next_chunk);
    np_kadquery_del(q);
  }
}

/* Simulated network: every node's table holds its true 20 nearest
 * neighbours plus random others; a query is answered from the table. */
enum { SIM_N = 1000, SIM_K = 20, SIM_RANDOM = 60, SIM_LOOKUPS = 200 };

typedef struct sim_node {
  np_peerid id;
  uint8_t key[NP_KBUCKET_KEYLEN];
  np_kbucket *t;
  int dead;
} sim_node;

static sim_node sim[SIM_N];

static int sim_find(const np_peerid *id) {
  size_t i;
  for (i = 0; i < SIM_N; i++)
    if (np_peerid_equal(&sim[i].id, id))
      return (int)i;
  return -1;
}

static size_t sim_order[SIM_N];
static int by_sim_dist(const void *a, const void *b) {
  return np_kbucket_cmp(sort_target, sim[*(const size_t *)a].key,
                        sim[*(const size_t *)b].key);
}

static void sim_build(void) {
  size_t i, j;
  for (i = 0; i < SIM_N; i++) {
    rnd_id(&sim[i].id);
    np_kbucket_key(&sim[i].id, sim[i].key);
    if (np_kbucket_new(&sim[i].t, &sim[i].id, NULL) != 0)
      abort();
  }
  for (i = 0; i < SIM_N; i++) {
    np_peerid cand;
    for (j = 0; j < SIM_N; j++)
      sim_order[j] = j;
    sort_target = sim[i].key;
    qsort(sim_order, SIM_N, sizeof(size_t), by_sim_dist);
    for (j = 1; j <= SIM_K; j++) /* [0] is the node itself */
      if (np_kbucket_add(sim[i].t, &sim[sim_order[j]].id, 0, &cand) ==
          NP_KBUCKET_FULL)
        np_kbucket_report(sim[i].t, &cand, 1, 0);
    for (j = 0; j < SIM_RANDOM; j++) {
      size_t r = (size_t)(rnd() % SIM_N);
      if (r != i && np_kbucket_add(sim[i].t, &sim[r].id, 1, &cand) ==
                        NP_KBUCKET_FULL)
        np_kbucket_report(sim[i].t, &cand, 1, 1);
    }
  }
}

/* |timeouts|: dead nodes stay silent and their requests time out after 2
 * rounds, instead of failing at once. */
static void sim_lookups(unsigned dead_pct, int timeouts) {
  np_peerid seeds[SIM_K], out[64], resp[SIM_K];
  size_t i, j, l, found = 0, perfect = 0, msgs = 0, rounds_total = 0,
               depth_total = 0, stuck = 0, dead_in_result = 0, worst = SIM_K;
  for (i = 0; i < SIM_N; i++)
    sim[i].dead = (rnd() % 100) < dead_pct;
  for (l = 0; l < SIM_LOOKUPS; l++) {
    np_kadquery *q;
    np_kadquery_config cfg;
    np_kadquery_stats st;
    uint8_t target[NP_KBUCKET_KEYLEN];
    size_t src, n, rounds = 0, hit = 0, want, got;
    do
      src = (size_t)(rnd() % SIM_N);
    while (sim[src].dead);
    if (l % 2)
      rnd_bytes(target, sizeof(target));
    else /* look a node up */
      memcpy(target, sim[rnd() % SIM_N].key, sizeof(target));
    np_kadquery_config_default(&cfg);
    cfg.timeout = timeouts ? 2 : 0;
    np_kadquery_new(&q, target, &sim[src].id, &cfg);
    n = np_kbucket_closest(sim[src].t, target, SIM_K, seeds);
    np_kadquery_seed(q, seeds, n);
    while (np_kadquery_state_get(q) == NP_KADQUERY_RUNNING && rounds < 1000) {
      n = np_kadquery_next(q, rounds, out, 64);
      rounds++;
      for (i = 0; i < n; i++) {
        int who = sim_find(&out[i]);
        if (who < 0 || sim[who].dead) {
          if (!timeouts)
            np_kadquery_on_failure(q, &out[i]);
          continue;
        }
        np_kadquery_on_response(
            q, &out[i], resp,
            np_kbucket_closest(sim[who].t, target, SIM_K, resp));
      }
      np_kadquery_on_timeout(q, rounds);
    }
    stuck += np_kadquery_state_get(q) != NP_KADQUERY_DONE;
    /* Truth: the k live nodes nearest the target, the source excluded. */
    for (j = 0; j < SIM_N; j++)
      sim_order[j] = j;
    sort_target = target;
    qsort(sim_order, SIM_N, sizeof(size_t), by_sim_dist);
    got = np_kadquery_result(q, out, 64);
    for (i = 0; i < got; i++)
      dead_in_result += sim[sim_find(&out[i])].dead;
    want = 0;
    for (j = 0; j < SIM_N && want < SIM_K; j++) {
      size_t s = sim_order[j];
      if (s == src || sim[s].dead)
        continue;
      want++;
      for (i = 0; i < got; i++)
        if (np_peerid_equal(&out[i], &sim[s].id)) {
          hit++;
          break;
        }
    }
    found += hit;
    perfect += hit == SIM_K;
    if (hit < worst)
      worst = hit;
    np_kadquery_stats_get(q, &st);
    msgs += st.queried;
    depth_total += st.depth;
    rounds_total += rounds;
    np_kadquery_del(q);
  }
  printf("# sim N=%d dead=%u%%%s: recall %.3f (%zu/%d lookups all %d found, "
         "worst %zu), messages/lookup %.1f, rounds/lookup %.2f, "
         "hops/lookup %.2f\n",
         SIM_N, dead_pct, timeouts ? " (silent, timeouts)" : "",
         (double)found / (SIM_LOOKUPS * SIM_K), perfect,
         SIM_LOOKUPS, SIM_K, worst, (double)msgs / SIM_LOOKUPS,
         (double)rounds_total / SIM_LOOKUPS, (double)depth_total / SIM_LOOKUPS);
  is_int(stuck, 0, "kadquery_sim_dead%u%s_every_lookup_converges", dead_pct,
         timeouts ? "_timeouts" : "");
  is_int(dead_in_result, 0, "kadquery_sim_dead%u%s_no_dead_peer_in_result",
         dead_pct, timeouts ? "_timeouts" : "");
  ok((double)found / (SIM_LOOKUPS * SIM_K) >= (dead_pct >= 30 ? 0.90 : 0.95),
     "kadquery_sim_dead%u%s_recall_high", dead_pct,
     timeouts ? "_timeouts" : "");
}

int main(void) {
  size_t i;
  test_msg_roundtrip();
  test_msg_wire_bytes();
  test_msg_caps();
  test_msg_garbage();
  test_bucket_basics();
  test_bucket_closest(20);
  test_bucket_closest(255);
  test_query_unit();
  sim_build();
  sim_lookups(0, 0);
  sim_lookups(10, 0);
  sim_lookups(30, 0);
  sim_lookups(30, 1);
  for (i = 0; i < SIM_N; i++)
    np_kbucket_del(sim[i].t);
  return done_testing();
}
