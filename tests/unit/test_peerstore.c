/* Peerstore bounds: eviction of the least recently seen unconnected peer,
 * address dedup/expiry/cap, /p2p/ suffix stripped, protocol list caps; the
 * hash index stays consistent through inserts and evictions. */
#include <stdio.h>
#include <string.h>

#include "np_err.h"
#include "np_peerstore.h"
#include "tap.h"

static np_peerid pid(int i) {
  np_peerid id;
  uint8_t pb[36] = {0x08, 0x01, 0x12, 0x20};
  pb[4] = (uint8_t)i;
  pb[5] = (uint8_t)(i >> 8);
  pb[6] = (uint8_t)(i >> 16);
  np_peerid_from_pubkey(&id, pb, sizeof(pb));
  return id;
}

/* Every stored peer is found by its ID and is the entry iteration gives. */
static int index_consistent(np_peerstore *ps) {
  for (size_t i = 0; i < np_peerstore_count(ps); i++) {
    np_ps_peer *p = np_peerstore_at(ps, i);
    if (np_peerstore_get(ps, &p->id) != p)
      return 0;
  }
  return 1;
}

static void test_index(void) {
  enum { N = 5000 };
  np_peerstore *ps;
  size_t found = 0, missing = 0;
  ok(np_peerstore_new(&ps, N) == 0, "peerstore of %d peers", N);
  for (int i = 0; i < N; i++) {
    np_peerid id = pid(1000 + i);
    np_peerstore_upsert(ps, &id, (uint64_t)i);
  }
  is_int(np_peerstore_count(ps), N, "all %d stored", N);
  for (int i = 0; i < N; i++) {
    np_peerid id = pid(1000 + i), other = pid(100000 + i);
    found += np_peerstore_get(ps, &id) != NULL;
    missing += np_peerstore_get(ps, &other) == NULL;
  }
  is_int(found, N, "each is found by its ID");
  is_int(missing, N, "IDs never stored are not");
  {
    np_peerid again = pid(1000 + 7);
    np_ps_peer *p = np_peerstore_get(ps, &again);
    ok(np_peerstore_upsert(ps, &again, 99999) == p &&
           np_peerstore_count(ps) == N,
       "upserting a known ID returns its entry, adds none");
  }
  /* Only one unconnected peer: it is the one a newcomer evicts. */
  for (size_t i = 0; i < np_peerstore_count(ps); i++)
    np_peerstore_at(ps, i)->connected = 1;
  {
    np_peerid v = pid(1000 + 1234), d = pid(777777);
    np_peerstore_get(ps, &v)->connected = 0;
    ok(np_peerstore_upsert(ps, &d, 100000) != NULL &&
           np_peerstore_get(ps, &v) == NULL &&
           np_peerstore_get(ps, &d) != NULL,
       "the evicted peer leaves the index, the newcomer enters it");
  }
  ok(index_consistent(ps), "index and entries agree after an eviction");
  np_peerstore_del(ps);

  /* Churn: 20000 peers through a store of 100; the 100 seen last stay. */
  ok(np_peerstore_new(&ps, 100) == 0, "peerstore of 100 peers");
  for (int i = 0; i < 20000; i++) {
    np_peerid id = pid(i);
    np_peerstore_upsert(ps, &id, (uint64_t)i + 1);
  }
  is_int(np_peerstore_count(ps), 100, "the count stays at the cap");
  ok(index_consistent(ps), "index and entries agree after 19900 evictions");
  found = 0;
  for (int i = 19900; i < 20000; i++) {
    np_peerid id = pid(i);
    found += np_peerstore_get(ps, &id) != NULL;
  }
  is_int(found, 100, "the 100 most recently seen peers are the ones kept");
  np_peerstore_del(ps);
}

static size_t ma(const char *text, uint8_t *out) {
  np_ssize n = np_maddr_parse(text, strlen(text), out, 256);
  return n < 0 ? 0 : (size_t)n;
}

int main(void) {
  np_peerstore *ps;
  np_ps_peer *p;
  np_peerid a = pid(1);
  uint8_t bin[256];
  size_t n;

  ok(np_peerstore_new(&ps, 3) == 0, "peerstore of 3 peers");
  for (int i = 1; i <= 3; i++) {
    np_peerid id = pid(i);
    np_peerstore_upsert(ps, &id, (uint64_t)i * 10);
  }
  is_int(np_peerstore_count(ps), 3, "three peers stored");
  np_peerstore_get(ps, &a)->connected = 1;
  {
    np_peerid d = pid(4), b = pid(2), c = pid(3);
    ok(np_peerstore_upsert(ps, &d, 100) != NULL, "a fourth peer evicts one");
    ok(np_peerstore_get(ps, &a) != NULL,
       "the connected peer survives though seen first");
    ok(np_peerstore_get(ps, &b) == NULL,
       "the least recently seen unconnected peer is evicted");
    ok(np_peerstore_get(ps, &c) != NULL, "the others stay");
  }
  for (size_t i = 0; i < np_peerstore_count(ps); i++)
    np_peerstore_at(ps, i)->connected = 1;
  {
    np_peerid e = pid(5);
    ok(np_peerstore_upsert(ps, &e, 200) == NULL,
       "no eviction when every peer is connected");
  }

  p = np_peerstore_get(ps, &a);
  n = ma("/ip4/10.0.0.1/udp/4001/quic-v1/p2p/"
         "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
         bin);
  is_int(np_peerstore_add_addr(p, bin, n, 0, 1000), 0, "address added");
  is_int(p->addrs[0].len, 11, "the /p2p/ suffix is stripped");
  np_peerstore_add_addr(p, bin, n, 0, 1000);
  is_int(p->naddrs, 1, "duplicates are merged");
  {
    /* A circuit address keeps its relay's /p2p/; only the target's goes. */
    uint8_t c1[256];
    size_t n1 = ma("/ip4/10.0.0.2/udp/4001/quic-v1/p2p/"
                   "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
                   "/p2p-circuit",
                   c1);
    n = ma("/ip4/10.0.0.2/udp/4001/quic-v1/p2p/"
           "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
           "/p2p-circuit/p2p/"
           "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
           bin);
    is_int(np_peerstore_add_addr(p, bin, n, 0, 1000), 0, "circuit added");
    ok(p->naddrs == 2 && p->addrs[1].len == n1 &&
           memcmp(p->addrs[1].bin, c1, n1) == 0,
       "a circuit address keeps the relay's /p2p/");
    p->naddrs = 1; /* the cap checks below count from one */
  }
  for (int i = 0; i < 20; i++) {
    char t[64];
    snprintf(t, sizeof(t), "/ip4/10.0.1.%d/udp/4001/quic-v1", i);
    n = ma(t, bin);
    np_peerstore_add_addr(p, bin, n, (uint64_t)i, 1000);
  }
  is_int(p->naddrs, NP_PS_MAX_ADDRS, "addresses are capped");
  np_peerstore_expire(p, 1015);
  ok(p->naddrs < NP_PS_MAX_ADDRS, "expired addresses are dropped (%zu left)",
     p->naddrs);
  is_int(np_peerstore_add_addr(p, (const uint8_t *)"\x04\x01", 2, 0, 0),
         NP_EINVAL, "a truncated address is refused");
  {
    const char *names[] = {"/ipfs/id/1.0.0", "hello", "bad\0x"};
    size_t lens[] = {14, 5, 5};
    np_peerstore_set_protocols(p, names, lens, 3);
    is_int(p->nprotocols, 2, "protocols with NUL bytes are skipped");
    ok(np_peerstore_supports(p, "hello"), "supports() finds a protocol");
    ok(!np_peerstore_supports(p, "nope"), "and not an absent one");
  }
  np_peerstore_set_agent(p, "natpeer/0.1\x1b[31m", 16);
  is_str(p->agent, "natpeer/0.1[31m", "control bytes are dropped from agents");
  np_peerstore_del(ps);
  test_index();
  return done_testing();
}
