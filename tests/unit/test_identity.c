/* Identity: the spec key vectors of every key type, key file creation
 * (0600), refusal of group/other-accessible files, corrupt files, the
 * PrivateKey encoding, signatures by each type, and key files written by
 * python3-cryptography (tests/fixtures/keys, peer IDs computed there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_identity.h"
#include "np_pubkey.h"
#include "tap.h"
#include "test_util.h"

static size_t unhex(const char *h, uint8_t *out, size_t cap) {
  size_t n = 0;
  for (; h[0] && h[1] && n < cap; h += 2) {
    unsigned v;
    sscanf(h, "%2x", &v);
    out[n++] = (uint8_t)v;
  }
  return n;
}

/* peer-ids spec vector (Ed25519 PrivateKey protobuf). */
static const char *vec_priv =
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
static const char *vec_pub =
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";

static const char ecdsa_priv[] =
    "08031279307702010104203e5b1fe9712e6c314942a750bd67485de3c1efe85b1bfb520a"
    "e8f9ae3dfa4a4ca00a06082a8648ce3d030107a14403420004de3d300fa36ae0e8f5d530"
    "899d83abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e"
    "5c47c646a597fb4dcec034e9f77c409e62";
static const char ecdsa_pub[] =
    "0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa3"
    "6ae0e8f5d530899d83abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d"
    "6851510c098e5c47c646a597fb4dcec034e9f77c409e62";
static const char k1_priv[] =
    "0802122053dadf1d5a164d6b4acdb15e24aa4c5b1d3461bdbd42abedb0a4404d56ced8fb";
static const char k1_pub[] =
    "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca"
    "99";
static const char rsa_priv[] =
    "080012ae123082092a0201000282020100e1beab071d08200bde24eef00d049449b07770"
    "ff9910257b2d7d5dda242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986dbb645dae988"
    "0089704a94e5066d594162ae6ee8892e6ec70701db0a6c445c04778eb3de1293aa1a23c3"
    "825b85c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3da03c33e76c21e9beb172fd4"
    "4c9e43be32e2c99827033cf8d0f0c606f4579326c930eb4e854395ad941256542c793902"
    "185153c474bed109d6ff5141ebf9cd256cf58893a37f83729f97e7cb435ec679d2e33901"
    "d27bb35aa0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb1ad41fa7ed84f6e3e8"
    "ecd5d98b3982d2a901b4454991766da295ab78822add5612a2df83bcee814cf50973e80d"
    "7ef38111b1bd87da2ae92438a2c8cbcc70b31ee319939a3b9c761dbc13b5c086d6b64bf7"
    "ae7dacc14622375d92a8ff9af7eb962162bbddebf90acb32adb5e4e4029f1c96019949ec"
    "fbfeffd7ac1e3fbcc6b6168c34be3d5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b"
    "93411f4cc175e70c0a083e96bfaefb04a9580b4753c1738a6a760ae1afd851a1a4bdad23"
    "1cf56e9284d832483df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63edb6e14fea"
    "effabc90ad317e4875fe648101b0864097e998f0ca3025ef9638cd2b0caecd3770ab54a1"
    "d9c6ca959b0f5dcbc90caeefc4135baca6fd475224269bbe1b02030100010282020100a4"
    "72ffa858efd8588ce59ee264b957452f3673acdf5631d7bfd5ba0ef59779c231b0bc838a"
    "8b14cae367b6d9ef572c03c7883b0a3c652f5c24c316b1ccfd979f13d0cd7da20c7d34d9"
    "ec32dfdc81ee7292167e706d705efde5b8f3edfcba41409e642f8897357df5d320d21c43"
    "b33600a7ae4e505db957c1afbc189d73f0b5d972d9aaaeeb232ca20eebd5de6fe7f29d01"
    "470354413cc9a0af1154b7af7c1029adcd67c74b4798afeb69e09f2cb387305e73a1b5f4"
    "50202d54f0ef096fe1bde340219a1194d1ac9026e90b366cce0c59b239d10e4888f52ca1"
    "780824d39ae01a6b9f4dd6059191a7f12b2a3d8db3c2868cd4e5a5862b8b625a4197d52c"
    "6ac77710116ebd3ced81c4d91ad5fdfbed68312ebce7eea45c1833ca3acf7da2052820ea"
    "cf5c6b07d086dabeb893391c71417fd8a4b1829ae2cf60d1749d0e25da19530d889461c2"
    "1da3492a8dc6ccac7de83ac1c2185262c7473c8cc42f547cc9864b02a8073b6aa54a037d"
    "8c0de3914784e6205e83d97918b944f11b877b12084c0dd1d36592f8a4f8b8da5bb404c3"
    "d2c079b22b6ceabfbcb637c0dbe0201f0909d533f8bf308ada47aee641a012a494d31b54"
    "c974e58b87f140258258bb82f31692659db7aa07e17a5b2a0832c24e122d3a8babcc9ee7"
    "4cbb07d3058bb85b15f6f6b2674aba9fd34367be9782d444335fbed31e3c4086c652597c"
    "27104938b47fa10282010100e9fdf843c1550070ca711cb8ff28411466198f0e212511c3"
    "186623890c0071bf6561219682fe7dbdfd81176eba7c4faba21614a20721e0fcd63768e6"
    "d925688ecc90992059ac89256e0524de90bf3d8a052ce6a9f6adafa712f3107a016e20c8"
    "0255c9e37d8206d1bc327e06e66eb24288da866b55904fd8b59e6b2ab31bc5eab47e5970"
    "93c63fab7872102d57b4c589c66077f534a61f5f65127459a33c91f6db61fc431b1ae90b"
    "e92b4149a3255291baf94304e3efb77b1107b5a3bda911359c40a53c347ff9100baf8f36"
    "dc5cd991066b5bdc28b39ed644f404afe9213f4d31c9d4e40f3a5f5e3c39bebeb244e841"
    "37544e1a1839c1c8aaebf0c78a7fad590282010100f6fa1f1e6b803742d5490b7441152f"
    "500970f46feb0b73a6e4baba2aaf3c0e245ed852fc31d86a8e46eb48e90fac409989dfee"
    "45238f97e8f1f8e83a136488c1b04b8a7fb695f37b8616307ff8a8d63e8cfa0b4fb9b916"
    "7ffaebabf111aa5a4344afbabd002ae8961c38c02da76a9149abdde93eb389eb32595c29"
    "ba30d8283a7885218a5a9d33f7f01dbdf85f3aad016c071395491338ec318d39220e1c7b"
    "d69d3d6b520a13a30d745c102b827ad9984b0dd6aed73916ffa82a06c1c111e7047dcd26"
    "68f988a0570a71474992eecf416e068f029ec323d5d635fd24694fc9bf96973c255d26c7"
    "72a95bf8b7f876547a5beabf86f06cd21b67994f944e7a5493028201010095b02fd30069"
    "e547426a8bea58e8a2816f33688dac6c6f6974415af8402244a22133baedf34ce499d703"
    "6f3f19b38eb00897c18949b0c5a25953c71aeeccfc8f6594173157cc854bd98f16dffe8f"
    "28ca13b77eb43a2730585c49fc3f608cd811bb54b03b84bddaa8ef910988567f78301226"
    "6199667a546a18fd88271fbf63a45ae4fd4884706da8befb9117c0a4d73de5172f8640b1"
    "091ed8a4aea3ed4641463f5ff6a5e3401ad7d0c92811f87956d1fd5f9a1d15c7f3839a08"
    "698d9f35f9d966e5000f7cb2655d7b6c4adcd8a9d950ea5f61bb7c9a33c17508f9baa313"
    "eecfee4ae493249ebe05a5d7770bbd3551b2eeb752e3649e0636de08e3d672e66cb90282"
    "010100ad93e4c31072b063fc5ab5fe22afacece775c795d0efdf7c704cfc027bde0d626a"
    "7646fc905bb5a80117e3ca49059af14e0160089f9190065be9bfecf12c3b2145b211c8e8"
    "9e42dd91c38e9aa23ca73697063564f6f6aa6590088a738722df056004d18d7bccac62b3"
    "bafef6172fc2a4b071ea37f31eff7a076bcab7dd144e51a9da8754219352aef2c7347897"
    "1539fa41de4759285ea626fa3c72e7085be47d554d915bbb5149cb6ef835351f23104304"
    "9cd941506a034bf2f8767f3e1e42ead92f91cb3d75549b57ef7d56ac39c2d80d67f6a2b4"
    "ca192974bfc5060e2dd171217971002193dba12e7e4133ab201f07500a90495a38610279"
    "b13a48d54f0c99028201003e3a1ac0c2b67d54ed5c4bbe04a7db99103659d33a4f9d3580"
    "9e1f60c282e5988dddc964527f3b05e6cc890eab3dcb571d66debf3a5527704c87264b39"
    "54d7265f4e8d2c637dd89b491b9cf23f264801f804b90454d65af0c4c830d1aef76f597e"
    "f61b26ca857ecce9cb78d4f6c2218c00d2975d46c2b013fbf59b750c3b92d8d3ed9e6d1f"
    "d0ef1ec091a5c286a3fe2dead292f40f380065731e2079ebb9f2a7ef2c415ecbb488da98"
    "f3a12609ca1b6ec8c734032c8bd513292ff842c375d4acd1b02dfb206b24cd815f8e2f9d"
    "4af8e7dea0370b19c1b23cc531d78b40e06e1119ee2e08f6f31c6e2e8444c568d13c5d45"
    "1a291ae0c9f1d4f27d23b3a00d60ad";
static const char rsa_pub[] =
    "080012a60430820222300d06092a864886f70d01010105000382020f003082020a028202"
    "0100e1beab071d08200bde24eef00d049449b07770ff9910257b2d7d5dda242ce8f0e2f1"
    "2e1af4b32d9efd2c090f66b0f29986dbb645dae9880089704a94e5066d594162ae6ee889"
    "2e6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85c6620a2bc3f82f9b0c309bc0"
    "ab3aeb1873282bebd3da03c33e76c21e9beb172fd44c9e43be32e2c99827033cf8d0f0c6"
    "06f4579326c930eb4e854395ad941256542c793902185153c474bed109d6ff5141ebf9cd"
    "256cf58893a37f83729f97e7cb435ec679d2e33901d27bb35aa0d7e20561da08885ef0ab"
    "bf8e2fb48d6a5487047a9ecb1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b4454991766d"
    "a295ab78822add5612a2df83bcee814cf50973e80d7ef38111b1bd87da2ae92438a2c8cb"
    "cc70b31ee319939a3b9c761dbc13b5c086d6b64bf7ae7dacc14622375d92a8ff9af7eb96"
    "2162bbddebf90acb32adb5e4e4029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d"
    "5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b93411f4cc175e70c0a083e96bfaefb"
    "04a9580b4753c1738a6a760ae1afd851a1a4bdad231cf56e9284d832483df215a46c1c21"
    "bdf0c6cfe951c18f1ee4078c79c13d63edb6e14feaeffabc90ad317e4875fe648101b086"
    "4097e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca959b0f5dcbc90caeefc4135b"
    "aca6fd475224269bbe1b0203010001";

/* RSA-1024 PrivateKey (python3-cryptography): below the 2048-bit floor. */
static const char rsa1024_priv[] =
    "080012e2043082025e02010002818100c424ba97a1af0f2a425f1cf43c219102160ab5c4"
    "80606448cbe5ce10d28e674b05b176424260ade604b3de61926c8713c3dafa25b4ff459a"
    "5cac343918d2c964537ed0fc40ea3bbac53ea175df42c595b90530634f431e1026e5cd7b"
    "a093ee79c1391a0612fe975f3582720505c80631699bba7571b99cd0f8ffe2fe451e1381"
    "0203010001028181008bc9ad5df1b224b9b671b8ddeb98f492ab08d9008189b10f1c99dc"
    "21ab1e284994762455169f76702f3bcdaa764378854299669bc7020325ff140f67fde403"
    "f887bd553c598157b3087cd4b29a5b3979a01301d38aa1a335817ea8db5a7d724f2efdb7"
    "1d469ed58f69470b4d60b407829754e043a422c1b7c6fdf032ffc1e401024100ea41ed00"
    "cb2a6307d962d27cc422ed986a6e3fcba884afc02432cb3decfcfca1ee9dd8d207c9f2ea"
    "c0f2bbc7ec494f4d3eab3fad27cfb325b1c0c08589b5eda1024100d65931c7ef49494db3"
    "fde4c78d595172e1c44e70add8a2e6d7da821b4e761226640e42ef720031a62591294131"
    "a02012c492f724961071e11e99eba6b65399e10240295c186f426faa6a715c3c53a10195"
    "b78a5b0ad2775f6df45bafc82897d616f8b43b945388e2840c24a2f6ba96a25ee9017e94"
    "d08aade6306a90e0acf32276e1024100c1fec3f141fe401bd5556aa3b8a827f123a7f99e"
    "3d991e067341ce134cb5cbc37736f919a141cfada1be796a09b1f49547d80359d77f56b1"
    "fa72303718391dc10241009b10db64234ea5112ec59fe8cb848fa20f5b910c9a2d376e89"
    "27ed67f0a160123c1112d38dc5ccfbdce0c5ec228da11b62fb29d9e3e5af7c4a9575db38"
    "b82867";

/* A signature by |id| that np_pubkey (the remote side) accepts, and the
 * peer ID np_pubkey derives equals the identity's. */
static int sign_verifies(const np_identity *id) {
  static const char m[] = "noise-libp2p-static-key:0123456789abcdef";
  uint8_t sig[NP_IDENTITY_SIG_MAX];
  size_t sl = 0;
  np_peerid got;
  if (np_identity_sign(id, m, sizeof(m) - 1, sig, sizeof(sig), &sl) != 0)
    return 0;
  if (np_pubkey_verify(id->pub_pb, id->pub_pb_len, m, sizeof(m) - 1, sig, sl,
                       &got, NULL) != 0 ||
      !np_peerid_equal(&got, &id->id))
    return 0;
  sig[sl / 2] ^= 0x10;
  return np_pubkey_verify(id->pub_pb, id->pub_pb_len, m, sizeof(m) - 1, sig,
                          sl, NULL, NULL) == NP_ECRYPTO;
}

/* peer-ids.md vectors of the other key types; the peer IDs were computed
 * by tests/fixtures/keys/keys.py (python3-cryptography, hashlib). */
static void test_spec_types(void) {
  static const struct {
    const char *name, *priv, *pub, *id;
    int type;
  } v[] = {
      {"ECDSA", ecdsa_priv, ecdsa_pub,
       "QmVMT29id3TUASyfZZ6k9hmNyc2nYabCo4uMSpDw4zrgDk", NP_KEY_ECDSA},
      {"secp256k1", k1_priv, k1_pub,
       "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
       NP_KEY_SECP256K1},
      {"RSA-4096", rsa_priv, rsa_pub,
       "QmaeANgBs1DTSxWSrPPtobgQuxW8XTfsS4ydbK4rCHzqxG", NP_KEY_RSA},
  };
  static uint8_t priv[4096], pub[1024], enc[4096];
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    size_t pl = unhex(v[i].priv, priv, sizeof(priv));
    size_t ul = unhex(v[i].pub, pub, sizeof(pub));
    np_identity id;
    long n;
    if (np_identity_decode_private(&id, priv, pl) != 0) {
      ok(0, "spec %s PrivateKey decodes", v[i].name);
      continue;
    }
    ok(id.type == v[i].type, "spec %s PrivateKey decodes", v[i].name);
    is_mem(id.pub_pb, id.pub_pb_len, pub, ul,
           "%s: derived PublicKey protobuf matches the spec vector",
           v[i].name);
    is_str(id.id_str, v[i].id, "%s: peer ID", v[i].name);
    n = np_identity_encode_private(&id, enc, sizeof(enc));
    is_mem(enc, n, priv, pl, "%s: PrivateKey re-encodes byte for byte",
           v[i].name);
    ok(sign_verifies(&id), "%s: signature verifies, tampered one does not",
       v[i].name);
    np_identity_clear(&id);
  }
  /* Corrupt keys of each type. */
  {
    np_identity id;
    size_t pl = unhex(rsa_priv, priv, sizeof(priv));
    priv[pl - 40] ^= 0x01; /* inside the CRT coefficient */
    ok(np_identity_decode_private(&id, priv, pl) < 0,
       "RSA key with a corrupt CRT value is refused");
    is_int(np_identity_decode_private(&id, priv, pl - 1), NP_EINVAL,
           "truncated RSA key is refused");
    memcpy(priv, "\x08\x02\x12\x20", 4);
    memset(priv + 4, 0, 32);
    is_int(np_identity_decode_private(&id, priv, 36), NP_EINVAL,
           "secp256k1 scalar 0 is refused");
    memset(priv + 4, 0xff, 32);
    is_int(np_identity_decode_private(&id, priv, 36), NP_EINVAL,
           "secp256k1 scalar above the group order is refused");
    is_int(np_identity_decode_private(&id, priv, 35), NP_EINVAL,
           "31-byte secp256k1 key is refused");
    pl = unhex(rsa1024_priv, priv, sizeof(priv));
    is_int(np_identity_decode_private(&id, priv, pl), NP_ENOTSUP,
           "RSA-1024 key is refused as unsupported (2048..4096 bits)");
    pl = unhex(ecdsa_priv, priv, sizeof(priv));
    priv[pl - 1] ^= 0x01; /* the stored public point */
    is_int(np_identity_decode_private(&id, priv, pl), NP_EINVAL,
           "ECDSA key whose public point is not its own is refused");
  }
}

/* secp256k1 signatures are in low-S form (js-libp2p and libsecp256k1
 * refuse the others): 64 signatures, each with s <= n/2. */
static void test_low_s(void) {
  static const uint8_t half_n[32] = {
      0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
      0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};
  np_identity id;
  int low = 0, verified = 0;
  if (np_identity_generate_type(&id, NP_KEY_SECP256K1) != 0) {
    ok(0, "secp256k1 key for the low-S check");
    return;
  }
  for (int i = 0; i < 64; i++) {
    uint8_t sig[NP_IDENTITY_SIG_MAX], s32[32];
    size_t sl = 0, o, rlen, slen;
    char m[32];
    snprintf(m, sizeof(m), "message %d", i);
    if (np_identity_sign(&id, m, strlen(m), sig, sizeof(sig), &sl) != 0)
      continue;
    verified += np_pubkey_verify(id.pub_pb, id.pub_pb_len, m, strlen(m), sig,
                                 sl, NULL, NULL) == 0;
    /* DER: 30 L 02 rl r 02 sl s (short lengths) */
    if (sl < 8 || sig[0] != 0x30 || sig[2] != 0x02)
      continue;
    rlen = sig[3];
    o = 4 + rlen;
    if (o + 2 > sl || sig[o] != 0x02)
      continue;
    slen = sig[o + 1];
    o += 2;
    while (slen > 32 && sig[o] == 0)
      o++, slen--;
    if (slen > 32 || o + slen != sl)
      continue;
    memset(s32, 0, sizeof(s32));
    memcpy(s32 + 32 - slen, sig + o, slen);
    low += memcmp(s32, half_n, 32) <= 0;
  }
  is_int(low, 64, "secp256k1: all 64 signatures have a low S");
  is_int(verified, 64, "secp256k1: and verify");
  np_identity_clear(&id);
}

/* Fresh keys of every type: signing, encoding round trip, text form. */
static void test_generated(void) {
  static const struct {
    int type;
    const char *prefix;
  } t[] = {{NP_KEY_ED25519, "12D3KooW"},
           {NP_KEY_RSA, "Qm"},
           {NP_KEY_SECP256K1, "16Uiu2"},
           {NP_KEY_ECDSA, "Qm"}};
  static uint8_t enc[4096];
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    const char *name = np_identity_type_name(t[i].type);
    np_identity a, b;
    long n;
    if (np_identity_generate_type(&a, t[i].type) != 0) {
      ok(0, "%s: key generated", name);
      continue;
    }
    ok(a.type == t[i].type &&
           strncmp(a.id_str, t[i].prefix, strlen(t[i].prefix)) == 0,
       "%s: key generated, peer ID %s", name, a.id_str);
    ok(sign_verifies(&a), "%s: signature verifies", name);
    n = np_identity_encode_private(&a, enc, sizeof(enc));
    ok(n > 0 && np_identity_decode_private(&b, enc, (size_t)n) == 0 &&
           np_peerid_equal(&a.id, &b.id) && b.priv_len == a.priv_len &&
           memcmp(a.priv, b.priv, a.priv_len) == 0,
       "%s: PrivateKey round trip keeps the key", name);
    {
      uint8_t small[8];
      size_t sl = 0;
      is_int(np_identity_sign(&a, "x", 1, small, sizeof(small), &sl),
             NP_ELIMIT, "%s: signature buffer too small is NP_ELIMIT", name);
    }
    np_identity_clear(&a);
    np_identity_clear(&b);
  }
  {
    np_identity x;
    is_int(np_identity_generate_type(&x, 9), NP_ENOTSUP,
           "unknown type cannot be generated");
  }
}

static int copy_file(const char *src, const char *dst, mode_t mode) {
  uint8_t buf[8192];
  ssize_t n;
  int in = open(src, O_RDONLY), out;
  if (in < 0)
    return -1;
  n = read(in, buf, sizeof(buf));
  close(in);
  if (n <= 0 || (out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
    return -1;
  if (write(out, buf, (size_t)n) != n) {
    close(out);
    return -1;
  }
  fchmod(out, mode);
  return close(out);
}

/* What keys.py prints for |path|, or "" when python3-cryptography is
 * missing (then only the recorded IDs are checked). */
static void python_id(const char *path, char *out, size_t cap) {
  char cmd[2048];
  FILE *p;
  out[0] = '\0';
  snprintf(cmd, sizeof(cmd),
           "python3 '%s/tests/fixtures/keys/keys.py' id '%s' 2>/dev/null",
           tu_srcdir(), path);
  if ((p = popen(cmd, "r")) == NULL)
    return;
  if (fgets(out, (int)cap, p) == NULL)
    out[0] = '\0';
  out[strcspn(out, "\n")] = '\0';
  pclose(p);
}

/* Key files made by python3-cryptography (hivemind's RSA form among them),
 * loaded as the daemon loads its identity file. */
static void test_fixtures(void) {
  char exp[1024], dir[512], src[1024], dst[1024], err[1024], py[128];
  char name[64], want[128];
  FILE *f;
  int nkeys = 0;
  tu_tmpdir(dir, sizeof(dir));
  snprintf(exp, sizeof(exp), "%s/tests/fixtures/keys/expected.txt",
           tu_srcdir());
  if ((f = fopen(exp, "r")) == NULL) {
    ok(0, "fixtures: %s opens", exp);
    return;
  }
  while (fscanf(f, "%63s %127s", name, want) == 2) {
    np_identity id;
    int rv;
    nkeys++;
    snprintf(src, sizeof(src), "%s/tests/fixtures/keys/%s", tu_srcdir(),
             name);
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    /* hivemind writes its identity 0400 */
    if (copy_file(src, dst, 0400) != 0) {
      ok(0, "fixture %s copied", name);
      continue;
    }
    rv = np_identity_load(&id, dst, NULL, err, sizeof(err));
    is_int(rv, 0, "fixture %s (mode 0400) loads (%s)", name, err);
    if (rv != 0)
      continue;
    is_str(id.id_str, want, "fixture %s: peer ID as recorded", name);
    python_id(dst, py, sizeof(py));
    if (py[0] != '\0')
      is_str(py, want, "fixture %s: python3-cryptography derives it too", name);
    else
      ok(1, "python check # SKIP python3-cryptography not available");
    ok(sign_verifies(&id), "fixture %s: signature verifies", name);
    if (strstr(name, "-pkcs8") != NULL) {
      /* Stored as go writes it: the file without PKCS#8, byte for byte. */
      static uint8_t enc[4096], plain[4096];
      char base[64];
      long n = np_identity_encode_private(&id, enc, sizeof(enc));
      ssize_t pl = -1;
      int fd;
      snprintf(base, sizeof(base), "%.*s.key",
               (int)(strstr(name, "-pkcs8") - name), name);
      snprintf(src, sizeof(src), "%s/tests/fixtures/keys/%s", tu_srcdir(),
               base);
      if ((fd = open(src, O_RDONLY)) >= 0) {
        pl = read(fd, plain, sizeof(plain));
        close(fd);
      }
      ok(n > 0 && pl == n && memcmp(enc, plain, (size_t)n) == 0,
         "fixture %s re-encodes as %s", name, base);
    }
    np_identity_clear(&id);
  }
  fclose(f);
  ok(nkeys == 5, "five fixture keys (%d)", nkeys);

  /* A key of another type saved and loaded again: the file is the
   * standard PrivateKey, 0600, and python reads the same peer ID. */
  {
    np_identity a, b;
    struct stat st;
    snprintf(dst, sizeof(dst), "%s/rsa.key", dir);
    ok(np_identity_generate_type(&a, NP_KEY_RSA) == 0 &&
           np_identity_save(&a, dst, err, sizeof(err)) == 0,
       "RSA identity saved (%s)", err);
    ok(stat(dst, &st) == 0 && (st.st_mode & 0777) == 0600, "saved 0600");
    is_int(np_identity_load(&b, dst, NULL, err, sizeof(err)), 0,
           "saved RSA identity loads (%s)", err);
    is_str(b.id_str, a.id_str, "the same peer ID comes back");
    python_id(dst, py, sizeof(py));
    if (py[0] != '\0')
      is_str(py, a.id_str, "python3-cryptography derives the same peer ID");
    else
      ok(1, "python check # SKIP python3-cryptography not available");
    ok(np_identity_save(&a, dst, err, sizeof(err)) == NP_ESYS,
       "saving over an existing key file fails");
    np_identity_clear(&a);
    np_identity_clear(&b);
  }
  tu_rmrf(dir);
}

static void test_vector(void) {
  uint8_t priv[128], pub[64], enc[128];
  size_t pl = unhex(vec_priv, priv, sizeof(priv));
  size_t ul = unhex(vec_pub, pub, sizeof(pub));
  np_identity id;
  long n;
  is_int(np_identity_decode_private(&id, priv, pl), 0,
         "spec Ed25519 PrivateKey decodes");
  is_mem(id.pub_pb, id.pub_pb_len, pub, ul,
         "derived PublicKey protobuf matches the spec vector");
  is_str(id.id_str, "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
         "peer ID of the spec key");
  n = np_identity_encode_private(&id, enc, sizeof(enc));
  is_mem(enc, n, priv, pl, "PrivateKey re-encodes byte for byte");

  /* Legacy 96-byte form: seed||pub||pub. */
  {
    uint8_t legacy[128];
    memcpy(legacy, priv, pl);
    legacy[3] = 0x60;
    memcpy(legacy, "\x08\x01\x12\x60", 4);
    memcpy(legacy + 4, priv + 4, 64);
    memcpy(legacy + 68, priv + 36, 32);
    np_identity id2;
    is_int(np_identity_decode_private(&id2, legacy, 100), 0,
           "legacy 96-byte Ed25519 key decodes");
    legacy[99] ^= 1;
    is_int(np_identity_decode_private(&id2, legacy, 100), NP_EINVAL,
           "legacy key with mismatched public halves is refused");
  }
  priv[40] ^= 0x01; /* the stored public key no longer matches the seed */
  is_int(np_identity_decode_private(&id, priv, pl), NP_EINVAL,
         "key whose public half does not match its seed is refused");
  is_int(np_identity_decode_private(&id, priv, 20), NP_EINVAL,
         "truncated PrivateKey is refused");
  {
    static const uint8_t rsa[] = {0x08, 0x00, 0x12, 0x02, 0x01, 0x02};
    static const uint8_t unknown[] = {0x08, 0x07, 0x12, 0x02, 0x01, 0x02};
    is_int(np_identity_decode_private(&id, rsa, sizeof(rsa)), NP_EINVAL,
           "RSA PrivateKey that is not PKCS#1 DER is refused");
    is_int(np_identity_decode_private(&id, unknown, sizeof(unknown)),
           NP_ENOTSUP, "unknown key type is refused as unsupported");
  }
}

static void test_files(void) {
  char dir[512], path[700], err[1024];
  np_identity a, b;
  struct stat st;
  int created = 0;
  tu_tmpdir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/sub/dir/identity.key", dir);
  is_int(np_identity_load(&a, path, &created, err, sizeof(err)), 0,
         "missing key file is created (%s)", err);
  ok(created, "creation is reported");
  ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
     "key file is created 0600");
  snprintf(path, sizeof(path), "%s/sub/dir", dir);
  ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700,
     "its directory is created 0700");
  snprintf(path, sizeof(path), "%s/sub/dir/identity.key", dir);
  is_int(np_identity_load(&b, path, &created, err, sizeof(err)), 0,
         "existing key file loads");
  ok(!created, "loading does not recreate");
  is_str(b.id_str, a.id_str, "the same peer ID comes back");
  ok(strncmp(a.id_str, "12D3KooW", 8) == 0, "Ed25519 peer ID text form");

  chmod(path, 0640);
  is_int(np_identity_load(&b, path, NULL, err, sizeof(err)), NP_EPERM,
         "group-readable key file is refused");
  ok(strstr(err, path) != NULL && strstr(err, "chmod 600") != NULL &&
         strstr(err, "0640") != NULL,
     "the error names the file, the mode and the fix (%s)", err);
  chmod(path, 0604);
  is_int(np_identity_load(&b, path, NULL, err, sizeof(err)), NP_EPERM,
         "other-readable key file is refused");
  chmod(path, 0600);

  snprintf(path, sizeof(path), "%s/corrupt.key", dir);
  tu_write(path, "garbage that is not protobuf\xff\xff", 0600);
  is_int(np_identity_load(&b, path, NULL, err, sizeof(err)), NP_EINVAL,
         "corrupt key file is refused");
  ok(strstr(err, "not a valid libp2p PrivateKey") != NULL,
     "and says so (%s)", err);
  tu_rmrf(dir);
}

static void test_sign(void) {
  np_identity id;
  uint8_t sig[64];
  size_t sl = 0;
  static const char msg[] = "libp2p-tls-handshake:test";
  np_identity_generate(&id);
  is_int(np_identity_sign(&id, msg, sizeof(msg), sig, sizeof(sig), &sl), 0,
         "signing works");
  is_int((int)sl, 64, "Ed25519 signature is 64 bytes");
  is_int(np_ed25519_verify(id.key.pub, msg, sizeof(msg), sig, 64), 0,
         "signature verifies");
  sig[5] ^= 1;
  is_int(np_ed25519_verify(id.key.pub, msg, sizeof(msg), sig, 64), NP_ECRYPTO,
         "tampered signature is rejected");
}

int main(void) {
  test_vector();
  test_files();
  test_sign();
  test_spec_types();
  test_generated();
  test_low_s();
  test_fixtures();
  np_crypto_cleanup();
  return done_testing();
}
