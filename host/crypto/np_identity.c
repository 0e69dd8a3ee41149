#include "np_identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "np_err.h"
#include "proto/keys.pb-c.h"

#define KEYFILE_MAX 4096

int np_identity_from_key(np_identity *id, const np_ed25519 *key) {
  Np__Keys__PublicKey pk = NP__KEYS__PUBLIC_KEY__INIT;
  np_ssize n;
  memset(id, 0, sizeof(*id));
  id->key = *key;
  pk.type = NP__KEYS__KEY_TYPE__Ed25519;
  pk.data.data = id->key.pub;
  pk.data.len = NP_ED25519_PUB_LEN;
  if (np__keys__public_key__get_packed_size(&pk) > sizeof(id->pub_pb))
    return NP_ELIMIT;
  id->pub_pb_len = np__keys__public_key__pack(&pk, id->pub_pb);
  if (np_peerid_from_pubkey(&id->id, id->pub_pb, id->pub_pb_len) != 0)
    return NP_EINVAL;
  n = np_peerid_to_string(&id->id, id->id_str, sizeof(id->id_str));
  return n < 0 ? (int)n : 0;
}

int np_identity_generate(np_identity *id) {
  np_ed25519 k;
  int rv = np_ed25519_generate(&k);
  if (rv == 0)
    rv = np_identity_from_key(id, &k);
  np_crypto_wipe(&k, sizeof(k));
  return rv;
}

int np_identity_decode_private(np_identity *id, const uint8_t *buf,
                               size_t len) {
  Np__Keys__PrivateKey *pk;
  np_ed25519 k;
  int rv = NP_EINVAL;
  if (len > KEYFILE_MAX)
    return NP_ELIMIT;
  pk = np__keys__private_key__unpack(NULL, len, buf);
  if (pk == NULL)
    return NP_EINVAL;
  if (pk->type != NP__KEYS__KEY_TYPE__Ed25519) {
    rv = NP_ENOTSUP;
  } else if (pk->data.len == 64 ||
             (pk->data.len == 96 &&
              memcmp(pk->data.data + 32, pk->data.data + 64, 32) == 0)) {
    /* Derive the public key and insist it matches the stored one: a file
     * whose halves disagree is corrupt, not a key to trust. */
    if (np_ed25519_from_seed(&k, pk->data.data) == 0 &&
        memcmp(k.pub, pk->data.data + 32, 32) == 0)
      rv = np_identity_from_key(id, &k);
    np_crypto_wipe(&k, sizeof(k));
  }
  if (pk->data.data)
    np_crypto_wipe(pk->data.data, pk->data.len);
  np__keys__private_key__free_unpacked(pk, NULL);
  return rv;
}

long np_identity_encode_private(const np_identity *id, uint8_t *out,
                                size_t cap) {
  Np__Keys__PrivateKey pk = NP__KEYS__PRIVATE_KEY__INIT;
  uint8_t data[64];
  size_t n;
  memcpy(data, id->key.seed, 32);
  memcpy(data + 32, id->key.pub, 32);
  pk.type = NP__KEYS__KEY_TYPE__Ed25519;
  pk.data.data = data;
  pk.data.len = sizeof(data);
  if (np__keys__private_key__get_packed_size(&pk) > cap) {
    np_crypto_wipe(data, sizeof(data));
    return NP_ELIMIT;
  }
  n = np__keys__private_key__pack(&pk, out);
  np_crypto_wipe(data, sizeof(data));
  return (long)n;
}

int np_identity_sign(const np_identity *id, const void *msg, size_t len,
                     uint8_t sig[NP_ED25519_SIG_LEN]) {
  return np_ed25519_sign(&id->key, msg, len, sig);
}

void np_identity_clear(np_identity *id) { np_crypto_wipe(id, sizeof(*id)); }

static int mkdirs(const char *dir) {
  char buf[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof(buf))
    return -1;
  memcpy(buf, dir, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  if (mkdir(buf, 0700) != 0 && errno != EEXIST)
    return -1;
  return 0;
}

static int create_key(np_identity *id, const char *path, char *err,
                      size_t errlen) {
  uint8_t buf[128];
  char tmp[4200], dir[4096];
  long n;
  int fd, rv;
  const char *slash = strrchr(path, '/');
  if (slash && slash != path) {
    size_t dl = (size_t)(slash - path);
    if (dl >= sizeof(dir)) {
      snprintf(err, errlen, "%s: path too long", path);
      return NP_EINVAL;
    }
    memcpy(dir, path, dl);
    dir[dl] = '\0';
    if (mkdirs(dir) != 0) {
      snprintf(err, errlen, "%s: cannot create directory %s: %s", path, dir,
               strerror(errno));
      return NP_ESYS;
    }
  }
  if ((rv = np_identity_generate(id)) != 0) {
    snprintf(err, errlen, "%s: key generation failed: %s", path,
             np_strerror(rv));
    return rv;
  }
  n = np_identity_encode_private(id, buf, sizeof(buf));
  if (n < 0)
    return (int)n;
  /* Write a 0600 temp file, then rename: a crash never leaves a half key. */
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot create key file: %s", path,
             strerror(errno));
    np_crypto_wipe(buf, sizeof(buf));
    return NP_ESYS;
  }
  rv = fchmod(fd, 0600) == 0 && write(fd, buf, (size_t)n) == n &&
               fsync(fd) == 0
           ? 0
           : NP_ESYS;
  np_crypto_wipe(buf, sizeof(buf));
  if (close(fd) != 0)
    rv = NP_ESYS;
  /* link() fails if another process created the key meanwhile: keep
   * theirs rather than replacing an identity someone may already use. */
  if (rv == 0 && link(tmp, path) != 0)
    rv = NP_ESYS;
  if (rv != 0)
    snprintf(err, errlen, "%s: cannot write key file: %s", path,
             strerror(errno));
  unlink(tmp);
  return rv;
}

int np_identity_load(np_identity *id, const char *path, int *created,
                     char *err, size_t errlen) {
  struct stat st;
  uint8_t buf[KEYFILE_MAX + 1];
  ssize_t n;
  int fd, rv;
  char dummy[8];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = '\0';
  if (created)
    *created = 0;
  /* O_NONBLOCK: a FIFO or device must not hang us before the S_ISREG
   * check (it has no effect on a regular file). */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) {
    rv = create_key(id, path, err, errlen);
    if (rv == 0 && created)
      *created = 1;
    if (rv == NP_ESYS && errno == EEXIST)
      return np_identity_load(id, path, created, err, errlen);
    return rv;
  }
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open key file: %s", path,
             strerror(errno));
    return errno == EACCES ? NP_EPERM : NP_ESYS;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: key file is not a regular file", path);
    close(fd);
    return NP_EINVAL;
  }
  if (st.st_mode & 077) {
    snprintf(err, errlen,
             "%s: key file is accessible by group or others (mode %04o); "
             "fix: chmod 600 %s",
             path, (unsigned)(st.st_mode & 07777), path);
    close(fd);
    return NP_EPERM;
  }
  n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n < 0) {
    snprintf(err, errlen, "%s: read failed: %s", path, strerror(errno));
    return NP_ESYS;
  }
  rv = np_identity_decode_private(id, buf, (size_t)n);
  np_crypto_wipe(buf, sizeof(buf));
  if (rv == NP_ENOTSUP)
    snprintf(err, errlen,
             "%s: key type not supported for a host identity (expected an "
             "Ed25519 libp2p PrivateKey)",
             path);
  else if (rv != 0)
    snprintf(err, errlen,
             "%s: not a valid libp2p PrivateKey (%s); move it away to "
             "generate a new identity",
             path, n > KEYFILE_MAX ? "larger than 4 KiB" : np_strerror(rv));
  return rv;
}
