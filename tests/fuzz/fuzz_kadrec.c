/* Fuzz the DHT's record checks on values from the network (np_kad.c's
 * serve_put and value_seen): length-prefixed kad messages, each decoded
 * (np_kadmsg), its record checked (np_kadstore_check) and stored
 * (np_kadstore_put) in a small store with the built-in /pk/ namespace, an
 * open one (any value, NULL select: as /natpeer/) and one whose select
 * prefers the larger value. Check and put must agree: put stores exactly
 * what check accepts as better than what is held, get then returns it, and
 * a refused put leaves the held value as it was. Time moves a minute per
 * message, so records expire under the 3-minute TTL. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_kadmsg.h"
#include "np_kadstore.h"
#include "np_lp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() with the broken rule named (the compiler merges bare aborts). */
#define FAIL(why)                                                              \
  do {                                                                         \
    fprintf(stderr, "fuzz_kadrec: %s (line %d)\n", why, __LINE__);             \
    abort();                                                                   \
  } while (0)

static int open_validate(void *ud, const uint8_t *key, size_t keylen,
                         const uint8_t *val, size_t vallen, uint64_t now,
                         const char **why) {
  (void)ud, (void)key, (void)keylen, (void)val, (void)vallen, (void)now;
  (void)why;
  return 0;
}

/* "best": non-empty values; the larger (memcmp, then length) wins; a
 * value starting with 0xEE makes select fail. */
static int best_validate(void *ud, const uint8_t *key, size_t keylen,
                         const uint8_t *val, size_t vallen, uint64_t now,
                         const char **why) {
  (void)ud, (void)key, (void)keylen, (void)val, (void)now;
  if (vallen == 0) {
    *why = "empty";
    return NP_EINVAL;
  }
  return 0;
}

static int best_select(void *ud, const uint8_t *key, size_t keylen,
                       const uint8_t *const *vals, const size_t *lens,
                       size_t n) {
  size_t best = 0;
  (void)ud, (void)key, (void)keylen;
  for (size_t i = 0; i < n; i++) {
    size_t m = lens[i] < lens[best] ? lens[i] : lens[best];
    int c = memcmp(vals[i], vals[best], m);
    if (lens[i] > 0 && vals[i][0] == 0xEE)
      return NP_EINVAL;
    if (c > 0 || (c == 0 && lens[i] > lens[best]))
      best = i;
  }
  return (int)best;
}

/* Equal bytes (an absent field is NULL with length 0). */
static int same(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
  return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* One record from the network at |now|. */
static void feed(np_kadstore *s, const np_kadmsg_record *r, uint64_t now) {
  const uint8_t *key = r->key.data, *val = r->value.data, *cur;
  size_t klen = r->key.len, vlen = r->value.len, curlen, heldlen = 0;
  uint8_t *held = NULL;
  int had, c, cb, p;
  had = np_kadstore_get(s, key, klen, now, &cur, &curlen, NULL) == 0;
  if (had) {
    if ((held = malloc(curlen ? curlen : 1)) == NULL)
      return;
    memcpy(held, cur, curlen);
    heldlen = curlen;
  }
  c = np_kadstore_check(s, key, klen, val, vlen, NULL, 0, now, NULL);
  cb = had ? np_kadstore_check(s, key, klen, val, vlen, held, heldlen, now,
                               NULL)
           : c;
  p = np_kadstore_put(s, key, klen, val, vlen, now, NULL);
  if (c != 0 && p == 0)
    FAIL("put stored what check refused");
  if (c == 0 && cb == 0 && p != 0 && !(p == NP_ELIMIT && !had) &&
      p != NP_ENOMEM)
    FAIL("put refused a better value (only a full store may refuse a new key)");
  /* The same value again: check says NP_EEXIST at once, put asks select
   * (a refresh, or select's own error). */
  if (cb == NP_EEXIST && p != NP_EEXIST && !same(val, vlen, held, heldlen))
    FAIL("held was better, yet put replaced it");
  if (cb != 0 && cb != NP_EEXIST && p == 0)
    FAIL("select failed for check but not for put");
  if (np_kadstore_get(s, key, klen, now, &cur, &curlen, NULL) == 0) {
    if (p == 0 && !same(cur, curlen, val, vlen))
      FAIL("stored, but get returns something else");
    if (p != 0 && had && !same(cur, curlen, held, heldlen))
      FAIL("refused, yet the held value changed");
  } else if (p == 0 || had) {
    FAIL("stored (or held), and now gone");
  }
  /* |than| NULL means "none": an empty value must come as a pointer (as
   * np_kad's copies do). */
  if (p == 0 && np_kadstore_check(s, key, klen, val, vlen,
                                  val ? val : (const uint8_t *)"", vlen, now,
                                  NULL) != NP_EEXIST)
    FAIL("a value is better than itself");
  free(held);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  np_kadstore_config cfg;
  np_kadstore_validator open = {sizeof(open), "open", open_validate, NULL,
                                NULL};
  np_kadstore_validator best = {sizeof(best), "best", best_validate,
                                best_select, NULL};
  np_kadstore *s;
  np_lp_reader lr;
  size_t off = 0;
  uint64_t now = 1000000;
  np_kadstore_config_default(&cfg);
  cfg.record_ttl_ms = 180000;
  cfg.max_records = 4;
  cfg.max_key = 128;
  cfg.max_value = 512;
  if (np_kadstore_new(&s, &cfg) != 0)
    return 0;
  if (np_kadstore_register(s, &open) != 0 ||
      np_kadstore_register(s, &best) != 0)
    FAIL("register");
  np_lp_init(&lr, NP_KADMSG_MSG_MAX);
  while (off < size) {
    const uint8_t *msg;
    size_t mlen;
    np_kadmsg m;
    np_ssize n = np_lp_feed(&lr, data + off, size - off, &msg, &mlen);
    if (n < 0)
      break;
    off += (size_t)n;
    if (msg == NULL)
      continue;
    if (np_kadmsg_decode(&m, msg, mlen, NULL) == 0) {
      if (m.has_record)
        feed(s, &m.record, now);
      np_kadmsg_free(&m);
    }
    now += 60000;
  }
  np_lp_free(&lr);
  np_kadstore_del(s);
  return 0;
}
