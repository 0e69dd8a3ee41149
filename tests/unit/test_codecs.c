/* Codec unit tests: uvarint, base58, multibase, multihash, peer IDs and
 * multiaddrs, using the vectors of specs/libp2p-wire.md sections 1 and 2. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include "np_base58.h"
#include "np_cid.h"
#include "np_crypto.h"
#include "np_multiaddr.h"
#include "np_multibase.h"
#include "np_multihash.h"
#include "np_peerid.h"
#include "np_varint.h"
#include "tap.h"

/* Spec section 1: Ed25519 PublicKey protobuf and its two text forms. */
#define ED_PUB                                                                 \
  "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
#define ED_ID "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
#define ED_CID                                                                 \
  "bafzaajaiaejcahwr5d5ofrfbis4l5d6uwr57hu5tjodrypfm6yaq6dsc2r2pzyt6"
/* An RSA-era sha2-256 ID (IPFS bootstrapper) and its multihash. */
#define QM_ID "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
#define QM_HEX                                                                 \
  "12209dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9"
#define QM_CID "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"

/* Hex string to bytes; returns the length (test input is trusted). */
static size_t unhex(const char *s, uint8_t *out) {
  size_t n = 0;
  while (*s) {
    unsigned v;
    if (*s == ' ') {
      s++;
      continue;
    }
    sscanf(s, "%2x", &v);
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return n;
}

static void test_varint(void) {
  static const struct {
    uint64_t v;
    const char *hex;
  } vec[] = {{0, "00"},
             {1, "01"},
             {127, "7f"},
             {128, "8001"},
             {300, "ac02"},
             {16384, "808001"},
             {INT64_MAX, "ffffffffffffffff7f"}};
  uint8_t buf[16], want[16];
  uint64_t v;
  for (size_t i = 0; i < NP_ARRAY_LEN(vec); i++) {
    size_t wn = unhex(vec[i].hex, want);
    np_ssize n = np_varint_encode(vec[i].v, buf, sizeof(buf));
    is_mem(buf, n, want, wn, "varint encodes %llu as %s",
           (unsigned long long)vec[i].v, vec[i].hex);
    is_int(np_varint_size(vec[i].v), wn, "varint size of %llu",
           (unsigned long long)vec[i].v);
    v = 12345;
    n = np_varint_decode(want, wn, &v);
    ok(n == (np_ssize)wn && v == vec[i].v, "varint decodes %s", vec[i].hex);
  }
  is_int(np_varint_decode((const uint8_t *)"\xac\x02\x07", 3, &v), 2,
         "varint decode consumes only its own bytes");
  is_int(np_varint_decode((const uint8_t *)"\x81\x00", 2, &v), NP_EPROTO,
         "varint rejects non-minimal 81 00");
  is_int(np_varint_decode((const uint8_t *)"\x80\x80\x00", 3, &v), NP_EPROTO,
         "varint rejects non-minimal 80 80 00");
  is_int(np_varint_decode((const uint8_t *)"\x80", 1, &v), NP_ETRUNC,
         "varint rejects truncated 80");
  is_int(np_varint_decode(NULL, 0, &v), NP_ETRUNC,
         "varint rejects empty input as truncated");
  unhex("80808080808080808001", buf);
  is_int(np_varint_decode(buf, 10, &v), NP_EPROTO,
         "varint rejects a 10-byte encoding");
  is_int(np_varint_decode(buf, 9, &v), NP_EPROTO,
         "varint rejects 9 bytes that all continue");
  is_int(np_varint_encode((uint64_t)INT64_MAX + 1, buf, sizeof(buf)), NP_EINVAL,
         "varint refuses to encode 2^63");
  is_int(np_varint_size((uint64_t)INT64_MAX + 1), NP_VARINT_MAX + 1,
         "varint size of 2^63 is over the maximum");
  is_int(np_varint_encode(300, buf, 1), NP_ELIMIT,
         "varint encode reports a short buffer");
}

static void test_base58(void) {
  static const struct {
    const char *hex, *text;
  } vec[] = {{"", ""},
             {"00", "1"},
             {"000001", "112"},
             {"61", "2g"},
             {"68656c6c6f20776f726c64", "StV1DL6CwTryKyV"},
             {"0000287fb4cd", "11233QC4"},
             {"ffffffff", "7YXq9G"}};
  uint8_t bin[64], out[64];
  char text[128];
  for (size_t i = 0; i < NP_ARRAY_LEN(vec); i++) {
    size_t bn = unhex(vec[i].hex, bin);
    np_ssize n = np_base58_encode(bin, bn, text, sizeof(text));
    ok(n == (np_ssize)strlen(vec[i].text) && strcmp(text, vec[i].text) == 0,
       "base58 encodes \"%s\" as \"%s\"", vec[i].hex, vec[i].text);
    n = np_base58_decode(vec[i].text, strlen(vec[i].text), out, sizeof(out));
    is_mem(out, n, bin, bn, "base58 decodes \"%s\"", vec[i].text);
  }
  is_int(np_base58_decode("1O", 2, out, sizeof(out)), NP_EINVAL,
         "base58 rejects 'O'");
  is_int(np_base58_decode("0", 1, out, sizeof(out)), NP_EINVAL,
         "base58 rejects '0'");
  is_int(np_base58_decode("2g\0", 3, out, sizeof(out)), NP_EINVAL,
         "base58 rejects an embedded NUL");
  is_int(np_base58_decode("StV1DL6CwTryKyV", 15, out, 10), NP_ELIMIT,
         "base58 decode reports a short buffer");
  is_int(np_base58_encode((const uint8_t *)"hello world", 11, text, 15),
         NP_ELIMIT, "base58 encode needs room for the NUL");
  {
    char big[NP_BASE58_TEXTMAX + 1];
    uint8_t huge[NP_BASE58_MAX + 1];
    memset(big, '2', sizeof(big));
    is_int(np_base58_decode(big, sizeof(big), huge, sizeof(huge)), NP_ELIMIT,
           "base58 rejects text over NP_BASE58_TEXTMAX chars");
    memset(big, 'z', sizeof(big));
    is_int(np_base58_decode(big, NP_BASE58_TEXTMAX, huge, sizeof(huge)),
           NP_ELIMIT, "base58 rejects text worth over NP_BASE58_MAX bytes");
    memset(big, '1', sizeof(big));
    is_int(np_base58_decode(big, NP_BASE58_MAX + 1, huge, sizeof(huge)),
           NP_ELIMIT, "base58 rejects over NP_BASE58_MAX leading '1's");
    is_int(np_base58_decode(big, NP_BASE58_MAX, huge, sizeof(huge)),
           NP_BASE58_MAX, "base58 decodes NP_BASE58_MAX leading '1's");
    memset(huge, 0xff, sizeof(huge));
    is_int(np_base58_encode(huge, sizeof(huge), big, sizeof(big)), NP_ELIMIT,
           "base58 rejects input over NP_BASE58_MAX bytes");
  }
  {
    /* The largest input round-trips: the two limits agree. */
    uint8_t huge[NP_BASE58_MAX], back[NP_BASE58_MAX];
    char t[NP_BASE58_TEXTMAX + 1];
    np_ssize n, m;
    memset(huge, 0xff, sizeof(huge));
    n = np_base58_encode(huge, sizeof(huge), t, sizeof(t));
    m = n > 0 ? np_base58_decode(t, (size_t)n, back, sizeof(back)) : n;
    is_mem(back, m, huge, sizeof(huge),
           "base58 round-trips NP_BASE58_MAX 0xff bytes");
  }
}

/* CIDs: the multihash inside (the DHT key of a provider record), text. */
static void test_cid(void) {
  static const char v0t[] = "QmdLXyBY6w8j99NyYFjZ8oK7zJV8jkXGzezwmakC6HXXiC";
  static const char v1t[] =
      "bafkreig626xnbl57z4pbxiuwe6akfsrzmszlmtlinwo24c2kf3yby77stu";
  uint8_t digest[32], v1[36], b[NP_CID_MAX + 8];
  const uint8_t *mh;
  size_t mhlen;
  np_ssize n;
  np_crypto_sha256((const uint8_t *)"natpeer cid", 11, digest);
  v1[0] = 0x01, v1[1] = 0x55, v1[2] = 0x12, v1[3] = 0x20;
  memcpy(v1 + 4, digest, 32);
  ok(np_cid_multihash(v1, 36, &mh, &mhlen) == 0 && mh == v1 + 2 &&
         mhlen == 34,
     "CIDv1: the multihash follows version and codec");
  ok(np_cid_multihash(v1 + 2, 34, &mh, &mhlen) == 0 && mh == v1 + 2 &&
         mhlen == 34,
     "CIDv0: the bare sha2-256 multihash");
  is_int(np_cid_multihash(v1, 35, &mh, &mhlen), NP_EINVAL,
         "a truncated digest is no CID");
  memcpy(b, v1, 36);
  b[36] = 0;
  is_int(np_cid_multihash(b, 37, &mh, &mhlen), NP_EINVAL,
         "trailing bytes are no CID");
  b[0] = 0x02;
  is_int(np_cid_multihash(b, 36, &mh, &mhlen), NP_EINVAL, "CID version 2");
  is_int(np_cid_multihash(b, 0, &mh, &mhlen), NP_EINVAL, "empty");
  n = np_cid_parse(v1t, strlen(v1t), b, sizeof(b));
  is_mem(b, n, v1, 36, "bafk... text is the CIDv1 bytes");
  n = np_cid_parse(v0t, strlen(v0t), b, sizeof(b));
  is_mem(b, n, v1 + 2, 34, "Qm... text is the CIDv0 bytes");
  is_int(np_cid_parse("bafkreig626", 11, b, sizeof(b)), NP_EINVAL,
         "cut-off text");
  is_int(np_cid_parse("hello", 5, b, sizeof(b)), NP_EINVAL, "not a CID");
  is_int(np_cid_parse(v1t, strlen(v1t), b, 10), NP_ELIMIT,
         "a buffer too small");
}

static void test_multibase(void) {
  static const char *b32[] = {
      "",      "",     "f",       "my",    "fo",       "mzxq",   "foo",
      "mzxw6", "foob", "mzxw6yq", "fooba", "mzxw6ytb", "foobar", "mzxw6ytboi"};
  uint8_t out[64];
  char text[64];
  np_ssize n;
  for (size_t i = 0; i < NP_ARRAY_LEN(b32); i += 2) {
    const char *in = b32[i], *want = b32[i + 1];
    n = np_multibase_base32_encode((const uint8_t *)in, strlen(in), text,
                                   sizeof(text));
    ok(n == (np_ssize)strlen(want) && strcmp(text, want) == 0,
       "base32 encodes \"%s\" as \"%s\"", in, want);
    n = np_multibase_base32_decode(want, strlen(want), out, sizeof(out));
    is_mem(out, n, in, strlen(in), "base32 decodes \"%s\"", want);
  }
  n = np_multibase_base64url_encode((const uint8_t *)"\xfb\xff", 2, text,
                                    sizeof(text));
  is_str(text, "-_8", "base64url uses - and _ without padding");
  n = np_multibase_base64url_decode("Zm9vYg", 6, out, sizeof(out));
  is_mem(out, n, "foob", 4, "base64url decodes unpadded text");
  is_int(np_multibase_base32_decode("MZXQ", 4, out, sizeof(out)), NP_EINVAL,
         "base32 rejects upper case");
  is_int(np_multibase_base32_decode("mzxq====", 8, out, sizeof(out)), NP_EINVAL,
         "base32 rejects padding");
  is_int(np_multibase_base32_decode("mzx", 3, out, sizeof(out)), NP_EINVAL,
         "base32 rejects an impossible length");
  is_int(np_multibase_base32_decode("mz", 2, out, sizeof(out)), NP_EINVAL,
         "base32 rejects nonzero trailing bits");
  is_int(np_multibase_base64url_decode("Zh", 2, out, sizeof(out)), NP_EINVAL,
         "base64url rejects nonzero trailing bits");
  is_int(np_multibase_base64url_decode("Zm9v+", 5, out, sizeof(out)), NP_EINVAL,
         "base64url rejects '+'");
  is_int(np_multibase_base32_decode("mzxw6ytboi", 10, out, 5), NP_ELIMIT,
         "base32 decode reports a short buffer");
  n = np_multibase_encode('b', (const uint8_t *)"foo", 3, text, sizeof(text));
  is_str(text, "bmzxw6", "multibase prefixes base32 with 'b'");
  n = np_multibase_encode('z', (const uint8_t *)"a", 1, text, sizeof(text));
  is_str(text, "z2g", "multibase prefixes base58btc with 'z'");
  is_int(np_multibase_encode('f', out, 1, text, sizeof(text)), NP_EINVAL,
         "multibase encode rejects an unsupported base");
  {
    int base = 0;
    n = np_multibase_decode("uZm9v", 5, &base, out, sizeof(out));
    ok(n == 3 && memcmp(out, "foo", 3) == 0 && base == 'u',
       "multibase decodes 'u' base64url");
  }
  is_int(np_multibase_decode("f666f6f", 7, NULL, out, sizeof(out)), NP_EINVAL,
         "multibase rejects an unsupported prefix");
  is_int(np_multibase_decode("", 0, NULL, out, sizeof(out)), NP_EINVAL,
         "multibase rejects empty text");
}

static void test_multihash(void) {
  uint8_t mh[64], out[64];
  const uint8_t *dig;
  uint64_t code;
  size_t dlen, n = unhex(QM_HEX "ff", mh);
  np_ssize r = np_multihash_parse(mh, n, &code, &dig, &dlen);
  ok(r == 34 && code == NP_MH_SHA2_256 && dlen == 32 && dig == mh + 2,
     "multihash parses sha2-256 and stops at its end");
  is_int(np_multihash_parse(mh, 33, &code, &dig, &dlen), NP_ETRUNC,
         "multihash rejects a truncated digest");
  is_int(np_multihash_parse(mh, 1, &code, &dig, &dlen), NP_ETRUNC,
         "multihash rejects a missing length");
  mh[1] = 31;
  is_int(np_multihash_parse(mh, 33, &code, &dig, &dlen), NP_EPROTO,
         "multihash rejects sha2-256 with a 31-byte digest");
  n = unhex("0003616263", mh);
  r = np_multihash_parse(mh, n, &code, &dig, &dlen);
  ok(r == 5 && code == NP_MH_IDENTITY && dlen == 3 &&
         memcmp(dig, "abc", 3) == 0,
     "multihash parses identity");
  n = unhex("00ffffffffffffffff7f", mh);
  is_int(np_multihash_parse(mh, n, &code, &dig, &dlen), NP_ETRUNC,
         "multihash rejects a huge declared length");
  r = np_multihash_encode(NP_MH_IDENTITY, (const uint8_t *)"abc", 3, out,
                          sizeof(out));
  is_mem(out, r,
         "\x00\x03"
         "abc",
         5, "multihash encodes identity");
  is_int(np_multihash_encode(NP_MH_SHA2_256, out, 20, out, sizeof(out)),
         NP_EINVAL, "multihash refuses sha2-256 with a wrong length");
  is_int(np_multihash_encode(NP_MH_IDENTITY, out, 10, mh, 11), NP_ELIMIT,
         "multihash encode reports a short buffer");
}

static void test_peerid(void) {
  uint8_t pub[64], buf[128], mh[64];
  size_t publen = unhex(ED_PUB, pub), n;
  np_peerid id, id2, id3;
  char text[NP_PEERID_STRMAX], cid[NP_PEERID_CIDMAX];
  const uint8_t *pb;
  size_t pblen;
  np_ssize r;

  is_int(np_peerid_from_pubkey(&id, pub, publen), 0,
         "peerid from Ed25519 public key");
  ok(id.len == 38 && memcmp(id.bytes, "\x00\x24\x08\x01\x12\x20", 6) == 0,
     "peerid of Ed25519 key is a 38-byte identity multihash");
  r = np_peerid_to_string(&id, text, sizeof(text));
  ok(r == (np_ssize)strlen(ED_ID) && strcmp(text, ED_ID) == 0,
     "peerid prints the spec Ed25519 vector");
  r = np_peerid_to_cid(&id, cid, sizeof(cid));
  ok(r == (np_ssize)strlen(ED_CID) && strcmp(cid, ED_CID) == 0,
     "peerid prints the spec CID vector");
  is_int(np_peerid_parse(&id2, ED_ID, strlen(ED_ID)), 0,
         "peerid parses base58 12D3KooW text");
  is_int(np_peerid_parse(&id3, ED_CID, strlen(ED_CID)), 0,
         "peerid parses the bafz CID");
  ok(np_peerid_equal(&id, &id2) && np_peerid_equal(&id, &id3),
     "peerid base58 and CID forms give the same ID");
  ok(np_peerid_pubkey(&id3, &pb, &pblen) == 0 && pblen == publen &&
         memcmp(pb, pub, publen) == 0,
     "peerid extracts the embedded public key");

  is_int(np_peerid_parse(&id, QM_ID, strlen(QM_ID)), 0,
         "peerid parses a Qm sha2-256 ID");
  n = unhex(QM_HEX, mh);
  is_mem(id.bytes, id.len, mh, n, "peerid Qm bytes are the multihash");
  np_peerid_to_string(&id, text, sizeof(text));
  is_str(text, QM_ID, "peerid Qm ID prints back unchanged");
  np_peerid_to_cid(&id, cid, sizeof(cid));
  is_str(cid, QM_CID, "peerid Qm ID prints as CID");
  ok(np_peerid_parse(&id2, QM_CID, strlen(QM_CID)) == 0 &&
         np_peerid_equal(&id, &id2),
     "peerid Qm CID parses to the same ID");
  is_int(np_peerid_pubkey(&id, &pb, &pblen), NP_ENOENT,
         "peerid sha2-256 ID has no embedded key");
  ok(!np_peerid_equal(&id, &id3), "peerid different IDs are not equal");

  /* A secp256k1 key (37-byte protobuf) stays inline: "16Uiu2..." text. */
  n = unhex("08021221 02", buf);
  for (size_t i = 0; i < 32; i++)
    buf[n + i] = (uint8_t)(i + 1);
  np_peerid_from_pubkey(&id, buf, n + 32);
  np_peerid_to_string(&id, text, sizeof(text));
  is_str(text, "16Uiu2HAkuVcAdoCkdw9kxjn3NCjmrTUufY81iXV6hLwfzupWD7ju",
         "peerid prints a secp256k1 identity ID as 16Uiu2");
  ok(np_peerid_parse(&id2, text, strlen(text)) == 0 &&
         np_peerid_equal(&id, &id2) && id2.len == 39,
     "peerid parses 16Uiu2 text back");

  memset(buf, 'x', 43);
  np_peerid_from_pubkey(&id, buf, 43);
  np_peerid_to_string(&id, text, sizeof(text));
  is_str(text, "Qmc59ht7vSBPNMdGpd26waEfuYPZHdVZEC9S4u7tmioV44",
         "peerid hashes a 43-byte key with sha2-256");
  np_peerid_from_pubkey(&id, buf, 42);
  ok(id.len == 44 && id.bytes[0] == 0 && id.bytes[1] == 42,
     "peerid keeps a 42-byte key inline");
  is_int(np_peerid_from_pubkey(&id, buf, 0), NP_EINVAL,
         "peerid rejects an empty key");

  /* Binary form validation. */
  n = unhex("0024" ED_PUB, mh);
  is_int(np_peerid_from_bytes(&id, mh, n), 0, "peerid accepts identity bytes");
  is_int(np_peerid_from_bytes(&id, mh, n - 1), NP_EINVAL,
         "peerid rejects truncated bytes");
  mh[n] = 0;
  is_int(np_peerid_from_bytes(&id, mh, n + 1), NP_EINVAL,
         "peerid rejects trailing bytes");
  memset(buf, 1, sizeof(buf));
  buf[0] = 0x00;
  buf[1] = 43;
  is_int(np_peerid_from_bytes(&id, buf, 45), NP_EINVAL,
         "peerid rejects an identity payload over 42 bytes");
  buf[1] = 0;
  is_int(np_peerid_from_bytes(&id, buf, 2), NP_EINVAL,
         "peerid rejects an empty identity payload");
  buf[0] = 0x16; /* sha3-256 */
  buf[1] = 32;
  is_int(np_peerid_from_bytes(&id, buf, 34), NP_EINVAL,
         "peerid rejects a hash other than sha2-256");
  is_int(np_peerid_from_bytes(&id, buf, 0), NP_EINVAL,
         "peerid rejects empty bytes");

  /* Text rejections. */
  is_int(np_peerid_parse(&id, "", 0), NP_EINVAL, "peerid rejects empty text");
  is_int(np_peerid_parse(
             &id, "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p", 50),
         NP_EINVAL, "peerid rejects truncated base58 text");
  is_int(np_peerid_parse(
             &id, "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pO", 51),
         NP_EINVAL, "peerid rejects a bad base58 character");
  is_int(
      np_peerid_parse(
          &id,
          "BAFZAAJAIAEJCAHWR5D5OFRFBIS4L5D6UWR57HU5TJODRYPFM6YAQ6DSC2R2PZYT6",
          strlen(ED_CID)),
      NP_EINVAL, "peerid rejects an upper-case CID");
  n = unhex("0170"
            "0024" ED_PUB,
            buf); /* dag-pb instead of libp2p-key */
  np_multibase_encode('b', buf, n, cid, sizeof(cid));
  is_int(np_peerid_parse(&id, cid, strlen(cid)), NP_EINVAL,
         "peerid rejects a CID with another codec");
  n = unhex("0272"
            "0024" ED_PUB,
            buf);
  np_multibase_encode('b', buf, n, cid, sizeof(cid));
  is_int(np_peerid_parse(&id, cid, strlen(cid)), NP_EINVAL,
         "peerid rejects a CID version other than 1");
  n = unhex("0024" ED_PUB, buf);
  np_multibase_encode('z', buf, n, cid, sizeof(cid));
  is_int(np_peerid_parse(&id, cid, strlen(cid)), NP_EINVAL,
         "peerid rejects multibase 'z' text");
  {
    char big[NP_PEERID_STRMAX + 8];
    memset(big, '1', sizeof(big));
    is_int(np_peerid_parse(&id, big, sizeof(big)), NP_EINVAL,
           "peerid rejects over-long text");
  }
  np_peerid_parse(&id, ED_ID, strlen(ED_ID));
  is_int(np_peerid_to_string(&id, text, strlen(ED_ID)), NP_ELIMIT,
         "peerid to_string needs room for the NUL");
  is_int(np_peerid_to_cid(&id, cid, 10), NP_ELIMIT,
         "peerid to_cid reports a short buffer");
}

/* Parse |text|, compare with |hex|, print it back and compare with
 * |canon| (NULL: the text itself). */
static void maddr_vector(const char *text, const char *hex, const char *canon) {
  uint8_t want[NP_MADDR_MAX], bin[NP_MADDR_MAX];
  char out[2048];
  size_t wn = unhex(hex, want);
  np_ssize n = np_maddr_parse(text, strlen(text), bin, sizeof(bin));
  is_mem(bin, n, want, wn, "multiaddr parses %s", text);
  n = np_maddr_to_string(want, wn, out, sizeof(out));
  ok(n >= 0 && (size_t)n == strlen(out), "multiaddr prints %s", text);
  is_str(out, canon ? canon : text, "multiaddr prints canonical %s",
         canon ? canon : text);
  is_int(np_maddr_validate(want, wn), 0, "multiaddr validates %s", text);
}

static void maddr_bad_text(const char *text, int err, const char *what) {
  uint8_t bin[NP_MADDR_MAX];
  is_int(np_maddr_parse(text, strlen(text), bin, sizeof(bin)), err,
         "multiaddr rejects %s (%s)", what, text);
}

static void maddr_bad_bin(const char *hex, int err, const char *what) {
  uint8_t bin[NP_MADDR_MAX + 16];
  char out[2048];
  np_peerid id;
  size_t n = unhex(hex, bin);
  is_int(np_maddr_validate(bin, n), err, "multiaddr rejects %s", what);
  is_int(np_maddr_to_string(bin, n, out, sizeof(out)), err,
         "multiaddr to_string rejects %s", what);
  is_int(np_maddr_get_p2p(bin, n, &id), err, "multiaddr get_p2p rejects %s",
         what);
}

#define ED_MH "0024" ED_PUB

static void test_multiaddr(void) {
  uint8_t bin[NP_MADDR_MAX], big[NP_MADDR_MAX + 8];
  char out[256];
  np_maddr_comp c;
  np_peerid id, want;
  size_t off, n;
  np_ssize r;
  int rv;

  maddr_vector("/ip4/127.0.0.1/udp/1234/quic-v1", "047f000001 910204d2 cd03",
               NULL);
  maddr_vector("/p2p/" ED_ID, "a503 26" ED_MH, NULL);
  maddr_vector("/ipfs/" ED_ID, "a503 26" ED_MH, "/p2p/" ED_ID);
  maddr_vector("/p2p/" ED_CID, "a503 26" ED_MH, "/p2p/" ED_ID);
  maddr_vector("/ip4/1.2.3.4/tcp/4001", "0401020304 060fa1", NULL);
  maddr_vector("/ip4/1.2.3.4/tcp/4001/", "0401020304 060fa1",
               "/ip4/1.2.3.4/tcp/4001");
  maddr_vector("/ip6/::1/udp/4001/quic-v1",
               "2900000000000000000000000000000001 91020fa1 cd03", NULL);
  maddr_vector("/ip6/2001:0db8:0:0::1/tcp/0",
               "2920010db8000000000000000000000001 060000",
               "/ip6/2001:db8::1/tcp/0");
  maddr_vector("/ip6/::ffff:1.2.3.4/udp/65535/quic",
               "2900000000000000000000ffff01020304 9102ffff cc03", NULL);
  maddr_vector("/dns4/example.com/tcp/443/wss",
               "360b6578616d706c652e636f6d 0601bb de03", NULL);
  maddr_vector("/dns6/a.b/udp/1/quic-v1/webtransport",
               "3703612e62 91020001 cd03 d103", NULL);
  maddr_vector("/dnsaddr/bootstrap.libp2p.io/p2p/" QM_ID,
               "3813626f6f7473747261702e6c69627032702e696f a503 22" QM_HEX,
               NULL);
  maddr_vector(
      "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/" QM_ID "/p2p-circuit/p2p/" ED_ID,
      "0401020304 91020fa1 cd03 a503 22" QM_HEX " a202 a503 26" ED_MH, NULL);
  maddr_vector("/unix/tmp/x.sock", "9003 0b2f746d702f782e736f636b", NULL);
  maddr_vector("/unix/tmp/x.sock/", "9003 0b2f746d702f782e736f636b",
               "/unix/tmp/x.sock");
  maddr_vector("/ip4/1.2.3.4/tcp/1/tls/sni/a.example/ws",
               "0401020304 060001 c003 c1030961 2e6578616d706c65 dd03", NULL);
  maddr_vector("/ip4/1.2.3.4/tcp/1/noise", "0401020304 060001 c603", NULL);
  maddr_vector("/ip4/1.2.3.4/udp/443/quic-v1/webtransport/certhash/"
               "uEiAGKYQy6AZrKeIiO8wjqpUEtWrlCPq_NDVQiGm5wxkOIg",
               "0401020304 910201bb cd03 d103 d203 22"
               "122006298432e8066b29e2223bcc23aa9504b56ae508fabf3435508869b"
               "9c3190e22",
               NULL);
  maddr_vector(
      "/certhash/bciqamkmegluam2zj4irdxtbdvkkqjnlk4uepvpzugviiq2nzymmq4iq",
      "d203 22"
      "122006298432e8066b29e2223bcc23aa9504b56ae508fabf3435508869b"
      "9c3190e22",
      "/certhash/uEiAGKYQy6AZrKeIiO8wjqpUEtWrlCPq_NDVQiGm5wxkOIg");
  maddr_vector("/ip6zone/eth0/ip6/fe80::1/udp/9/webrtc-direct",
               "2a0465746830 29fe800000000000000000000000000001 91020009 9802",
               NULL);
  maddr_vector("/ip4/0.0.0.0/tcp/00080/http", "0400000000 060050 e003",
               "/ip4/0.0.0.0/tcp/80/http");
  /* js-libp2p's in-memory transport: code 0x0309, a string value. */
  maddr_vector("/memory/host-7", "8906 06686f73742d37", NULL);
  maddr_vector("/memory/a/p2p/" ED_ID, "8906 0161 a503 26" ED_MH, NULL);

  /* Text rejections. */
  maddr_bad_text("/ip4/1.2.3.4/tcp", NP_EINVAL, "truncated port");
  maddr_bad_text("/ip4/1.2.3.4/tcp/65536", NP_EINVAL, "port 65536");
  maddr_bad_text("/ip4/1.2.3.4/tcp/-1", NP_EINVAL, "negative port");
  maddr_bad_text("/ip4/1.2.3.4/tcp/0x10", NP_EINVAL, "hex port");
  maddr_bad_text("/ip4/1.2.3.4/tcp//udp/1", NP_EINVAL, "empty port");
  maddr_bad_text("/ip4/1.2.3.4/tcp/99999999999999999999", NP_EINVAL,
                 "huge port");
  maddr_bad_text("/ip4/1.2.3.4/foo/1", NP_EINVAL, "unknown protocol name");
  maddr_bad_text("/ip4/256.0.0.1/tcp/1", NP_EINVAL, "bad ip4");
  maddr_bad_text("/ip4/1.2.3/tcp/1", NP_EINVAL, "short ip4");
  maddr_bad_text("/ip4/::1/tcp/1", NP_EINVAL, "ip6 text as ip4");
  maddr_bad_text("/ip6/:::/tcp/1", NP_EINVAL, "bad ip6");
  maddr_bad_text("/ip6/fe80::1%eth0/tcp/1", NP_EINVAL, "ip6 with zone");
  maddr_bad_text("/ip4/1.2.3.4/udp/1/quic-v1/xyz", NP_EINVAL,
                 "trailing garbage");
  maddr_bad_text("/ip4/1.2.3.4/tcp/80x", NP_EINVAL, "garbage in port");
  maddr_bad_text("ip4/1.2.3.4", NP_EINVAL, "no leading slash");
  maddr_bad_text("", NP_EINVAL, "empty text");
  maddr_bad_text("/", NP_EINVAL, "a lone slash");
  maddr_bad_text("//ip4/1.2.3.4", NP_EINVAL, "an empty protocol name");
  maddr_bad_text("/dns4/a b/tcp/1", NP_EINVAL, "a space in a dns name");
  maddr_bad_text("/dns4", NP_EINVAL, "dns4 without a name");
  maddr_bad_text("/memory", NP_EINVAL, "memory without a name");
  maddr_bad_text("/memory/a b", NP_EINVAL, "a space in a memory name");
  maddr_bad_text("/unix", NP_EINVAL, "unix without a path");
  maddr_bad_text("/unix/", NP_EINVAL, "unix with an empty path");
  maddr_bad_text("/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p",
                 NP_EINVAL, "a truncated peer ID");
  maddr_bad_text("/p2p/QmNotAPeer", NP_EINVAL, "a bad peer ID");
  maddr_bad_text("/certhash/uEiAG", NP_EINVAL, "a truncated certhash");
  maddr_bad_text("/certhash/fabcd", NP_EINVAL, "certhash in hex multibase");
  {
    char text[NP_MADDR_MAX * 4];
    size_t k = 0;
    while (k + 6 < sizeof(text)) {
      memcpy(text + k, "/noise", 6);
      k += 6;
    }
    is_int(np_maddr_parse(text, k, bin, sizeof(bin)), NP_ELIMIT,
           "multiaddr rejects text encoding beyond NP_MADDR_MAX");
  }
  is_int(np_maddr_parse("/ip4/1.2.3.4/tcp/1", 18, bin, 6), NP_ELIMIT,
         "multiaddr parse reports a short buffer");
  is_int(np_maddr_parse("/ip4/1.2.3.4\0/tcp/1", 19, bin, sizeof(bin)),
         NP_EINVAL, "multiaddr rejects an embedded NUL");

  /* Binary rejections. */
  maddr_bad_bin("047f000001 910204", NP_ETRUNC, "truncated port");
  maddr_bad_bin("047f00", NP_ETRUNC, "truncated ip4");
  maddr_bad_bin("047f000001 91", NP_ETRUNC, "truncated protocol code");
  maddr_bad_bin("0a00", NP_ENOTSUP, "unknown protocol code");
  maddr_bad_bin("8400", NP_EPROTO, "non-minimal protocol code");
  maddr_bad_bin("", NP_EPROTO, "empty binary");
  maddr_bad_bin("36ffffffffffffffff7f 61", NP_ETRUNC,
                "length overflow in dns4");
  maddr_bad_bin("36ffffffffffffffffff01 61", NP_EPROTO,
                "10-byte length varint");
  maddr_bad_bin("36c801 6162636465", NP_ETRUNC, "length beyond the input");
  maddr_bad_bin("36", NP_ETRUNC, "missing length");
  maddr_bad_bin("3600", NP_EPROTO, "empty dns4 name");
  maddr_bad_bin("3603612f62", NP_EPROTO, "slash in dns4 name");
  maddr_bad_bin("3603610a62", NP_EPROTO, "newline in dns4 name");
  maddr_bad_bin("8906 00", NP_EPROTO, "empty memory name");
  maddr_bad_bin("8906 03612f62", NP_EPROTO, "slash in memory name");
  maddr_bad_bin(
      "a503 21 121f"
      "00000000000000000000000000000000000000000000000000000000000000",
      NP_EPROTO, "p2p sha2-256 with a 31-byte digest");
  maddr_bad_bin("a503 04 00016100", NP_EPROTO, "p2p value with trailing bytes");
  maddr_bad_bin("d203 03 122000", NP_EPROTO, "certhash truncated digest");
  maddr_bad_bin("9003 03 746d70", NP_EPROTO, "unix path without a slash");
  maddr_bad_bin("9003 05 2f746d702f", NP_EPROTO,
                "unix path ending with a slash");
  maddr_bad_bin("9003 04 2f746d70 060001", NP_EPROTO, "a component after unix");
  memset(big, 0, sizeof(big));
  for (n = 0; n + 2 <= NP_MADDR_MAX + 2; n += 2) {
    big[n] = 0xc6;
    big[n + 1] = 0x03;
  }
  is_int(np_maddr_validate(big, NP_MADDR_MAX), 0,
         "multiaddr accepts NP_MADDR_MAX bytes");
  is_int(np_maddr_validate(big, NP_MADDR_MAX + 2), NP_ELIMIT,
         "multiaddr rejects more than NP_MADDR_MAX bytes");
  n = unhex("047f000001 910204d2 cd03", bin);
  is_int(np_maddr_to_string(bin, n, out, 10), NP_ELIMIT,
         "multiaddr to_string reports a short buffer");
  is_int(np_maddr_to_string(bin, n, out,
                            strlen("/ip4/127.0.0.1/udp/1234/quic-v1")),
         NP_ELIMIT, "multiaddr to_string needs room for the NUL");

  /* Iteration. */
  {
    static const char *names[] = {"ip4", "udp", "quic-v1", "p2p"};
    int good = 1, k = 0;
    n = unhex("047f000001 910204d2 cd03 a503 26" ED_MH, bin);
    off = 0;
    while ((rv = np_maddr_next(bin, n, &off, &c)) > 0) {
      if (k >= 4 || strcmp(c.name, names[k]) != 0)
        good = 0;
      if (k == 0 && (c.code != 4 || c.vlen != 4 || c.val != bin + 1))
        good = 0;
      if (k == 3 &&
          (c.code != NP_MADDR_P2P || c.vlen != 38 || c.val != bin + 14))
        good = 0;
      k++;
    }
    ok(good && rv == 0 && k == 4 && off == n,
       "multiaddr iterates components with names and values");
    off = 0;
    n = unhex("047f000001 0a", bin);
    rv = np_maddr_next(bin, n, &off, &c);
    ok(rv == 1 && off == 5 && np_maddr_next(bin, n, &off, &c) == NP_ENOTSUP,
       "multiaddr iteration stops at a bad component");
  }

  /* Peer IDs in addresses. */
  np_peerid_parse(&want, ED_ID, strlen(ED_ID));
  r = np_maddr_parse("/ip4/1.2.3.4/udp/4001/quic-v1/p2p/" QM_ID
                     "/p2p-circuit/p2p/" ED_ID,
                     strlen("/ip4/1.2.3.4/udp/4001/quic-v1/p2p/" QM_ID
                            "/p2p-circuit/p2p/" ED_ID),
                     bin, sizeof(bin));
  ok(r > 0 && np_maddr_get_p2p(bin, (size_t)r, &id) == 0 &&
         np_peerid_equal(&id, &want),
     "multiaddr get_p2p returns the relay target");
  r = np_maddr_parse(
      "/ip4/1.2.3.4/udp/4001/quic-v1/p2p/" QM_ID "/p2p-circuit",
      strlen("/ip4/1.2.3.4/udp/4001/quic-v1/p2p/" QM_ID "/p2p-circuit"), bin,
      sizeof(bin));
  np_peerid_parse(&want, QM_ID, strlen(QM_ID));
  ok(r > 0 && np_maddr_get_p2p(bin, (size_t)r, &id) == 0 &&
         np_peerid_equal(&id, &want),
     "multiaddr get_p2p without a target returns the relay");
  n = unhex("047f000001 910204d2 cd03", bin);
  is_int(np_maddr_get_p2p(bin, n, &id), NP_ENOENT,
         "multiaddr get_p2p reports a missing p2p");
  r = np_maddr_append_p2p(bin, n, sizeof(bin), &want);
  ok(r == (np_ssize)n + 3 + 34 && np_maddr_validate(bin, (size_t)r) == 0 &&
         np_maddr_get_p2p(bin, (size_t)r, &id) == 0 &&
         np_peerid_equal(&id, &want),
     "multiaddr append_p2p adds a valid /p2p/ component");
  is_int(np_maddr_append_p2p(bin, n, n + 10, &want), NP_ELIMIT,
         "multiaddr append_p2p reports a short buffer");
}

static void test_sockaddr(void) {
  struct sockaddr_storage ss;
  struct sockaddr_in6 s6;
  struct sockaddr_un su;
  socklen_t sl = 0;
  uint8_t bin[128], back[128];
  size_t n;
  np_ssize r;

  n = unhex("047f000001 910204d2 cd03", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), 0,
         "sockaddr from /ip4/.../udp/.../quic-v1");
  {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    ok(sl == sizeof(*s4) && s4->sin_family == AF_INET &&
           s4->sin_addr.s_addr == htonl(0x7f000001) &&
           s4->sin_port == htons(1234),
       "sockaddr holds 127.0.0.1:1234");
  }
  r = np_maddr_from_sockaddr_quic((struct sockaddr *)&ss, back, sizeof(back));
  is_mem(back, r, bin, n, "sockaddr ip4 round-trips to the multiaddr");

  n = unhex("2920010db8000000000000000000000001 91020fa1 cd03 a503 26" ED_MH,
            bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), 0,
         "sockaddr from ip6 quic-v1 with /p2p/");
  {
    struct sockaddr_in6 *p6 = (struct sockaddr_in6 *)&ss;
    ok(sl == sizeof(*p6) && p6->sin6_family == AF_INET6 &&
           p6->sin6_port == htons(4001) &&
           memcmp(&p6->sin6_addr, bin + 1, 16) == 0,
       "sockaddr holds [2001:db8::1]:4001");
  }
  r = np_maddr_from_sockaddr_quic((struct sockaddr *)&ss, back, sizeof(back));
  is_mem(back, r, bin, 23, "sockaddr ip6 round-trips without the /p2p/");

  memset(&s6, 0, sizeof(s6));
  s6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:10.0.0.2", &s6.sin6_addr);
  s6.sin6_port = htons(4001);
  r = np_maddr_from_sockaddr_quic((struct sockaddr *)&s6, back, sizeof(back));
  n = unhex("040a000002 91020fa1 cd03", bin);
  is_mem(back, r, bin, n, "sockaddr v4-mapped ip6 becomes /ip4");
  is_int(np_maddr_from_sockaddr_quic((struct sockaddr *)&s6, back, n - 1),
         NP_ELIMIT, "sockaddr to multiaddr reports a short buffer");
  memset(&su, 0, sizeof(su));
  su.sun_family = AF_UNIX;
  is_int(
      np_maddr_from_sockaddr_quic((struct sockaddr *)&su, back, sizeof(back)),
      NP_EINVAL, "sockaddr rejects AF_UNIX");

  n = unhex("0401020304 060fa1", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), NP_ENOTSUP,
         "sockaddr refuses tcp");

  /* TCP: ip, tcp, an optional /p2p/ and nothing else. */
  n = unhex("047f000001 0604d2", bin);
  is_int(np_maddr_to_sockaddr_tcp(bin, n, &ss, &sl), 0,
         "tcp sockaddr from /ip4/127.0.0.1/tcp/1234");
  {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    ok(sl == sizeof(*s4) && s4->sin_family == AF_INET &&
           s4->sin_addr.s_addr == htonl(0x7f000001) &&
           s4->sin_port == htons(1234),
       "tcp sockaddr holds 127.0.0.1:1234");
  }
  r = np_maddr_from_sockaddr_tcp((struct sockaddr *)&ss, back, sizeof(back));
  is_mem(back, r, bin, n, "tcp sockaddr ip4 round-trips to the multiaddr");
  is_int(np_maddr_from_sockaddr_tcp((struct sockaddr *)&ss, back, n - 1),
         NP_ELIMIT, "tcp sockaddr to multiaddr reports a short buffer");
  n = unhex("2900000000000000000000000000000001 060fa1 a503 26" ED_MH, bin);
  is_int(np_maddr_to_sockaddr_tcp(bin, n, &ss, &sl), 0,
         "tcp sockaddr from ip6 with /p2p/");
  ok(sl == sizeof(struct sockaddr_in6) &&
         ((struct sockaddr_in6 *)&ss)->sin6_port == htons(4001),
     "tcp sockaddr holds [::1]:4001");
  r = np_maddr_from_sockaddr_tcp((struct sockaddr *)&ss, back, sizeof(back));
  is_mem(back, r, bin, 20, "tcp sockaddr ip6 round-trips without the /p2p/");
  n = unhex("047f000001 910204d2 cd03", bin);
  is_int(np_maddr_to_sockaddr_tcp(bin, n, &ss, &sl), NP_ENOTSUP,
         "tcp sockaddr refuses quic-v1");
  n = unhex("0401020304 060fa1 c603", bin);
  is_int(np_maddr_to_sockaddr_tcp(bin, n, &ss, &sl), NP_ENOTSUP,
         "tcp sockaddr refuses a component after the port");
  n = unhex("360b6578616d706c652e636f6d 060fa1", bin);
  is_int(np_maddr_to_sockaddr_tcp(bin, n, &ss, &sl), NP_ENOTSUP,
         "tcp sockaddr refuses dns names");
  n = unhex("0401020304", bin);
  is_int(np_maddr_to_sockaddr_tcp(bin, n, &ss, &sl), NP_ENOTSUP,
         "tcp sockaddr refuses an address without a port");
  n = unhex("0401020304 91020fa1 cc03", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), NP_ENOTSUP,
         "sockaddr refuses draft-29 quic");
  n = unhex("0401020304 91020fa1", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), NP_ENOTSUP,
         "sockaddr refuses plain udp");
  n = unhex("360b6578616d706c652e636f6d 91020fa1 cd03", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), NP_ENOTSUP,
         "sockaddr refuses dns names");
  n = unhex("0401020304 91020fa1 cd03 a503 26" ED_MH " a202", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), NP_ENOTSUP,
         "sockaddr refuses a relay address");
  n = unhex("0401020304 91020fa1 cd03 d103", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), NP_ENOTSUP,
         "sockaddr refuses webtransport");
  n = unhex("0401020304 9102", bin);
  is_int(np_maddr_to_sockaddr(bin, n, &ss, &sl), NP_ETRUNC,
         "sockaddr rejects a truncated address");
}

/* Public addresses (the DHT's auto mode) and [nat] treat_as_public. */
static void test_public(void) {
  static const struct {
    const char *a;
    int pub;
  } cases[] = {
      {"/ip4/8.8.8.8/udp/4001/quic-v1", 1},
      {"/ip4/1.1.1.1/tcp/4001", 1},
      {"/ip4/10.1.2.3/tcp/4001", 0},
      {"/ip4/172.16.0.1/tcp/1", 0},
      {"/ip4/172.32.0.1/tcp/1", 1},
      {"/ip4/192.168.1.1/udp/1/quic-v1", 0},
      {"/ip4/100.64.0.1/tcp/1", 0},
      {"/ip4/127.0.0.1/tcp/1", 0},
      {"/ip4/169.254.1.1/tcp/1", 0},
      {"/ip4/192.0.2.10/udp/4001/quic-v1", 0},
      {"/ip4/198.51.100.2/tcp/1", 0},
      {"/ip4/203.0.113.2/tcp/1", 0},
      {"/ip4/224.0.0.1/tcp/1", 0},
      {"/ip4/0.0.0.0/tcp/1", 0},
      {"/ip6/2606:4700::1/tcp/1", 1},
      {"/ip6/2001:db8::1/tcp/1", 0},
      {"/ip6/::1/tcp/1", 0},
      {"/ip6/fe80::1/tcp/1", 0},
      {"/ip6/fd00::1/tcp/1", 0},
      {"/dns4/example.com/tcp/1", 0},
  };
  np_prefix px[2];
  uint8_t bin[64];
  int bad = 0;
  for (size_t i = 0; i < NP_ARRAY_LEN(cases); i++) {
    np_ssize n = np_maddr_parse(cases[i].a, strlen(cases[i].a), bin,
                                sizeof(bin));
    if (n < 0 || np_maddr_is_public(bin, (size_t)n) != cases[i].pub) {
      printf("# %s: want %d\n", cases[i].a, cases[i].pub);
      bad++;
    }
  }
  ok(bad == 0, "public vs private, loopback, link-local, CGNAT, "
               "documentation, multicast (%zu addresses)",
     NP_ARRAY_LEN(cases));
  ok(np_prefix_parse("198.51.100.0/24", &px[0]) == 0 &&
         np_prefix_parse("2001:db8::/32", &px[1]) == 0 &&
         px[0].bits == 24 && px[1].family == AF_INET6,
     "prefixes parse");
  ok(np_prefix_parse("10.0.0.0/33", &px[0]) == NP_EINVAL &&
         np_prefix_parse("10.0.0/8", &px[0]) == NP_EINVAL &&
         np_prefix_parse("/8", &px[0]) == NP_EINVAL &&
         np_prefix_parse("10.0.0.0/x", &px[0]) == NP_EINVAL,
     "bad prefixes are refused");
  np_prefix_parse("198.51.100.0/25", &px[0]);
  np_prefix_parse("2001:db8::/32", &px[1]);
  {
    np_ssize a = np_maddr_parse("/ip4/198.51.100.2/tcp/1", 23, bin,
                                sizeof(bin));
    int in = np_maddr_is_public_with(bin, (size_t)a, px, 2);
    np_ssize b = np_maddr_parse("/ip4/198.51.100.200/tcp/1", 25, bin,
                                sizeof(bin));
    int out = np_maddr_is_public_with(bin, (size_t)b, px, 2);
    np_ssize c = np_maddr_parse("/ip6/2001:db8::7/udp/1/quic-v1", 30, bin,
                                sizeof(bin));
    int in6 = np_maddr_is_public_with(bin, (size_t)c, px, 2);
    ok(in && !out && in6, "treat_as_public prefixes count, bit-exact");
  }
}

int main(void) {
  test_public();
  test_varint();
  test_base58();
  test_multibase();
  test_cid();
  test_multihash();
  test_peerid();
  test_multiaddr();
  test_sockaddr();
  return done_testing();
}
