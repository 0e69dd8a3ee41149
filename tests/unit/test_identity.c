/* Identity: the spec key vector, key file creation (0600), refusal of
 * group/other-accessible files, corrupt files, the PrivateKey encoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_identity.h"
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
    is_int(np_identity_decode_private(&id, rsa, sizeof(rsa)), NP_ENOTSUP,
           "non-Ed25519 host key is refused as unsupported");
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
  static const char msg[] = "libp2p-tls-handshake:test";
  np_identity_generate(&id);
  is_int(np_identity_sign(&id, msg, sizeof(msg), sig), 0, "signing works");
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
  np_crypto_cleanup();
  return done_testing();
}
