/* Host public keys (np_pubkey, shared by TLS and Noise): the PublicKey
 * protobuf split, and signatures by each key type libp2p allows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_peerid.h"
#include "np_pubkey.h"
#include "tap.h"
#include "test_keys.h"

static const char msg[] =
    "noise-libp2p-static-key:0123456789abcdef0123456789abcdef";

/* peer-ids.md Ed25519 vector: seed, and the ID derived in libp2p-wire.md §1 */
static const uint8_t spec_seed[32] = {
    0x7e, 0x08, 0x30, 0x61, 0x7c, 0x4a, 0x7d, 0xe8, 0x39, 0x25, 0xdf,
    0xb2, 0x69, 0x45, 0x56, 0xb1, 0x29, 0x36, 0xc4, 0x77, 0xa0, 0xe1,
    0xfe, 0xb2, 0xe1, 0x48, 0xec, 0x9d, 0xa6, 0x0f, 0xee, 0x7d};
static const char spec_id[] =
    "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";

static void ed25519(void) {
  np_ed25519 k;
  uint8_t pb[36], sig[64];
  np_peerid id, want;
  const uint8_t *data;
  size_t dlen;
  int type;
  const char *why;
  np_ed25519_from_seed(&k, spec_seed);
  tk_pb(pb, NP_KEY_ED25519, k.pub, 32);
  np_ed25519_sign(&k, msg, sizeof(msg) - 1, sig);
  np_peerid_parse(&want, spec_id, strlen(spec_id));
  ok(np_pubkey_parse(pb, sizeof(pb), &type, &data, &dlen) == 0 &&
         type == NP_KEY_ED25519 && dlen == 32 && data == pb + 4,
     "parse: Ed25519 PublicKey");
  ok(np_pubkey_verify(pb, sizeof(pb), msg, sizeof(msg) - 1, sig, 64, &id,
                      &why) == 0 &&
         np_peerid_equal(&id, &want) && why[0] == '\0',
     "Ed25519 (spec key): signature verifies, peer ID %s", spec_id);
  sig[10] ^= 1;
  is_int(np_pubkey_verify(pb, sizeof(pb), msg, sizeof(msg) - 1, sig, 64, NULL,
                          NULL),
         NP_ECRYPTO, "Ed25519: tampered signature");
  is_int(np_pubkey_verify(pb, sizeof(pb), msg, sizeof(msg) - 1, sig, 63, NULL,
                          NULL),
         NP_ECRYPTO, "Ed25519: short signature");
  pb[3] = 31;
  is_int(np_pubkey_verify(pb, 35, msg, sizeof(msg) - 1, sig, 64, NULL, NULL),
         NP_EPROTO, "Ed25519: 31-byte key is malformed");
}

static void malformed(void) {
  static const uint8_t trailing[] = {0x08, 0x01, 0x12, 0x01, 0xaa, 0x00};
  static const uint8_t nonmin[] = {0x08, 0x01, 0x12, 0x80, 0x00};
  static const uint8_t order[] = {0x12, 0x01, 0xaa, 0x08, 0x01};
  static const uint8_t unknown[] = {0x08, 0x05, 0x12, 0x01, 0xaa};
  uint8_t sig[2000] = {0};
  const uint8_t *d;
  size_t dl;
  int t;
  const char *why;
  is_int(np_pubkey_parse(trailing, sizeof(trailing), &t, &d, &dl), NP_EPROTO,
         "parse: trailing bytes refused");
  is_int(np_pubkey_parse(nonmin, sizeof(nonmin), &t, &d, &dl), NP_EPROTO,
         "parse: non-minimal length refused");
  is_int(np_pubkey_parse(order, sizeof(order), &t, &d, &dl), NP_EPROTO,
         "parse: fields out of order refused");
  is_int(np_pubkey_parse(order, 0, &t, &d, &dl), NP_EPROTO,
         "parse: empty input refused");
  is_int(
      np_pubkey_verify(unknown, sizeof(unknown), msg, 3, sig, 64, NULL, &why),
      NP_ENOTSUP, "verify: unknown key type is NP_ENOTSUP (%s)", why);
  is_int(np_pubkey_verify_raw(NP_KEY_RSA, sig, 10, msg, 3, sig, 1500, &why),
         NP_ELIMIT, "verify: oversized signature is NP_ELIMIT");
}

static void generated(void) {
  static const struct {
    int type;
    const char *name;
  } types[] = {{NP_KEY_ECDSA, "ECDSA P-256"},
               {NP_KEY_SECP256K1, "secp256k1"},
               {NP_KEY_RSA, "RSA-2048"}};
  for (size_t i = 0; i < NP_ARRAY_LEN(types); i++) {
    tk_key k;
    uint8_t sig[600];
    size_t sl = 0;
    np_peerid id, want;
    if (tk_make(&k, types[i].type) != 0 ||
        tk_sign(&k, (const uint8_t *)msg, sizeof(msg) - 1, sig, sizeof(sig),
                &sl) != 0) {
      ok(0, "%s: key and signature made", types[i].name);
      continue;
    }
    np_peerid_from_pubkey(&want, k.pub_pb, k.pub_pb_len);
    ok(np_pubkey_verify(k.pub_pb, k.pub_pb_len, msg, sizeof(msg) - 1, sig, sl,
                        &id, NULL) == 0 &&
           np_peerid_equal(&id, &want),
       "%s: signature verifies, peer ID derived", types[i].name);
    is_int(np_pubkey_verify(k.pub_pb, k.pub_pb_len, msg, sizeof(msg) - 2, sig,
                            sl, NULL, NULL),
           NP_ECRYPTO, "%s: other message refused", types[i].name);
    k.pub_pb[k.pub_pb_len - 1] ^= 0x01; /* inside the key bytes */
    ok(np_pubkey_verify(k.pub_pb, k.pub_pb_len, msg, sizeof(msg) - 1, sig, sl,
                        NULL, NULL) < 0,
       "%s: altered key refused", types[i].name);
    tk_free(&k);
  }
}

int main(void) {
  ed25519();
  malformed();
  generated();
  np_crypto_cleanup();
  return done_testing();
}
