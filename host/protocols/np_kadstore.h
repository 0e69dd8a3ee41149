/* The Kademlia DHT's local store (issue 9): value records (PUT_VALUE /
 * GET_VALUE) and provider records (ADD_PROVIDER / GET_PROVIDERS), with
 * limits on everything the network can make it hold, namespace validators
 * (record spec: "/<namespace>/<rest>"), and a crash-safe file so the store
 * survives a restart. No I/O but np_kadstore_save/np_kadstore_load, no
 * clock reads: every time is a |now| argument, wall-clock milliseconds since
 * the Unix epoch (saved expiries must mean the same after a reboot; tests
 * use small numbers).
 *
 * Namespaces: "/pk/" is built in. "/ipns/" is NOT implemented: it needs the
 * IPNS record protobuf and V2 signatures over its CBOR data, and half a
 * check is worse than none; until a validator is registered for "ipns",
 * such records are refused like any unknown namespace. Plugins (or the DHT
 * module) add namespaces with np_kadstore_register. */
#ifndef NP_KADSTORE_H
#define NP_KADSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "np_err.h"
#include "np_peerid.h"

typedef struct np_kadstore np_kadstore; /* opaque; one thread */

#define NP_KADSTORE_FILE "kadstore.bin" /* name inside the save directory */
#define NP_KADSTORE_VERSION 1           /* on-disk format version */
#define NP_KADSTORE_NS_MAX 16           /* registered namespaces */
#define NP_KADSTORE_NSLEN_MAX 32        /* namespace name bytes */
#define NP_KADSTORE_ADDRS_MAX 32        /* hard cap of max_addrs */

typedef struct np_kadstore_config {
  uint64_t record_ttl_ms;   /* default 48 h */
  uint64_t provider_ttl_ms; /* default 48 h */
  size_t max_records;       /* value records held */
  size_t max_key;           /* key bytes, records and provider keys */
  size_t max_value;         /* value bytes */
  size_t max_provider_keys; /* distinct keys with providers */
  size_t max_providers;     /* providers per key */
  size_t max_addrs;         /* addresses kept per provider (<= ADDRS_MAX) */
  size_t max_addr;          /* bytes of one binary multiaddr */
  size_t max_file;          /* bytes of a store file np_kadstore_load reads */
  uint64_t hash_seed[2];    /* random per process: keys come from peers */
} np_kadstore_config;

/* Fill |cfg| with the defaults (48 h TTLs, 16384 records of up to 16 KiB
 * under keys of up to 512 bytes, 65536 provider keys with 64 providers of
 * 8 addresses each, 256 MiB files) and a zero hash seed. */
void np_kadstore_config_default(np_kadstore_config *cfg);

/* A namespace validator, registered under |ns| (no slashes: "pk").
 * validate: 0 if |val| is acceptable under |key| at |now| (records with
 *   their own validity, like IPNS, need it), else a negative NP_E* code
 *   and a short phrase in |*why|. Also run on every record loaded.
 * select: given |n| >= 2 valid values for |key| (vals[0] is the incoming
 *   one, vals[1] the stored one), the index of the best, or a negative code.
 *   NULL selects the incoming value (a refresh). */
typedef struct np_kadstore_validator {
  size_t struct_size; /* = sizeof(np_kadstore_validator) */
  const char *ns;
  int (*validate)(void *ud, const uint8_t *key, size_t keylen,
                  const uint8_t *val, size_t vallen, uint64_t now,
                  const char **why);
  int (*select)(void *ud, const uint8_t *key, size_t keylen,
                const uint8_t *const *vals, const size_t *lens, size_t n);
  void *ud;
} np_kadstore_validator;

/* Create a store with |cfg| (copied; NULL: defaults) and the "/pk/"
 * validator. Returns 0, NP_ENOMEM, or NP_EINVAL (a zero limit or TTL,
 * max_addrs over NP_KADSTORE_ADDRS_MAX, max_key over 65535). Free with
 * np_kadstore_del (NULL is fine). */
int np_kadstore_new(np_kadstore **ps, const np_kadstore_config *cfg);
void np_kadstore_del(np_kadstore *s);

/* Register |v| (copied; |v->ns| copied; |v->ud| borrowed for the store's
 * life). Returns 0, NP_EEXIST (namespace taken), NP_ELIMIT (table full),
 * NP_EINVAL (bad name, no validate). */
int np_kadstore_register(np_kadstore *s, const np_kadstore_validator *v);

/* Store |val| under |key| as received at |now|, expiring at now +
 * record_ttl_ms. The namespace's validator must accept it; if a record is
 * already stored, the validator's select decides which one stays (the kept
 * one's times are those of its own reception). Expired records are swept
 * before a limit is applied; valid records are never evicted.
 * Returns 0 (stored), or, with |*why| (may be NULL) naming the cause:
 * NP_EEXIST (the stored record was selected; nothing changed), NP_ELIMIT
 * ("max_key", "max_value", "max_records"), NP_ENOTSUP (no validator for
 * the namespace), NP_EINVAL (malformed key, or the validator's code),
 * NP_ENOMEM. */
int np_kadstore_put(np_kadstore *s, const uint8_t *key, size_t keylen,
                    const uint8_t *val, size_t vallen, uint64_t now,
                    const char **why);

/* The checks of np_kadstore_put without storing: 0 if |val| is valid under
 * |key| at |now| and (when |than| is not NULL) better than |than| by the
 * namespace's select (NULL select: a different value is better). Returns
 * 0, NP_EEXIST (|than| is the same or better), or put's errors. */
int np_kadstore_check(const np_kadstore *s, const uint8_t *key,
                      size_t keylen, const uint8_t *val, size_t vallen,
                      const uint8_t *than, size_t thanlen, uint64_t now,
                      const char **why);

/* Find the unexpired record of |key|. |*val| points into the store until
 * the next call that changes it. |received| may be NULL. Returns 0 or
 * NP_ENOENT (absent or expired). */
int np_kadstore_get(const np_kadstore *s, const uint8_t *key, size_t keylen,
                    uint64_t now, const uint8_t **val, size_t *vallen,
                    uint64_t *received);

/* Drop the record of |key|: 0 or NP_ENOENT. */
int np_kadstore_remove(np_kadstore *s, const uint8_t *key, size_t keylen);

/* Add or refresh provider |id| of |key| with |naddrs| binary multiaddrs
 * (copied, replacing what was stored; kept as opaque bytes, the DHT module
 * parses them), expiring at now + provider_ttl_ms.
 * Addresses beyond max_addrs are dropped (peers list many; the first ones
 * are kept). Expired providers of the key are swept before a limit applies.
 * Returns 0, or NP_ELIMIT with |*why| ("max_key", "max_addr",
 * "max_providers", "max_provider_keys"), NP_EINVAL, NP_ENOMEM. */
int np_kadstore_add_provider(np_kadstore *s, const uint8_t *key,
                             size_t keylen, const np_peerid *id,
                             const uint8_t *const *addrs, const size_t *lens,
                             size_t naddrs, uint64_t now, const char **why);

/* One provider, as handed to a callback (borrowed for the call). */
typedef struct np_kadstore_provider {
  const uint8_t *key;
  size_t keylen;
  const np_peerid *id;
  uint64_t expires;
  size_t naddrs;
  const uint8_t *addrs[NP_KADSTORE_ADDRS_MAX];
  size_t lens[NP_KADSTORE_ADDRS_MAX];
} np_kadstore_provider;

/* Call |cb| for each unexpired provider of |key| (in insertion order);
 * a nonzero return from |cb| stops. Returns the number of calls. */
size_t np_kadstore_providers(const np_kadstore *s, const uint8_t *key,
                             size_t keylen, uint64_t now,
                             int (*cb)(const np_kadstore_provider *p,
                                       void *ud),
                             void *ud);

/* Every record / every provider of every key, expired ones included, in
 * no particular order; the store must not change during the walk. */
void np_kadstore_each_record(const np_kadstore *s,
                             void (*cb)(const uint8_t *key, size_t keylen,
                                        const uint8_t *val, size_t vallen,
                                        uint64_t received, uint64_t expires,
                                        void *ud),
                             void *ud);
void np_kadstore_each_provider(const np_kadstore *s,
                               void (*cb)(const np_kadstore_provider *p,
                                          void *ud),
                               void *ud);

/* Drop every record and provider whose expiry is <= |now|; a provider key
 * left empty goes too. Returns the number of records + providers dropped. */
size_t np_kadstore_expire(np_kadstore *s, uint64_t now);

typedef struct np_kadstore_stats {
  size_t records, provider_keys, providers;
  size_t mem; /* heap bytes held (structures, keys, values, index) */
} np_kadstore_stats;
void np_kadstore_stats_get(const np_kadstore *s, np_kadstore_stats *st);

/* Write the store to |dir|/NP_KADSTORE_FILE atomically: a 0600 temp file
 * in |dir|, fsync, rename over the old file, fsync of |dir|. On failure the
 * old file is untouched and the temp file removed (except when only the
 * final directory fsync fails: the new file is then in place). Returns 0,
 * NP_ESYS, NP_EINVAL (path too long) or NP_ENOMEM; on error |err| gets one
 * line naming the file and the cause. */
int np_kadstore_save(const np_kadstore *s, const char *dir, char *err,
                     size_t errlen);

/* Replace the content of |s| with |dir|/NP_KADSTORE_FILE. All or nothing:
 * on any error |s| is unchanged. Entries expired at |now| are dropped (and
 * expiries beyond one TTL from |now| cut to it), as
 * are records whose namespace has no validator now (counted in |*skipped|,
 * may be NULL); a record its validator refuses, a bad checksum, a length
 * over a cap, a truncation or an unknown version refuse the whole file.
 * Returns 0, NP_ENOENT (no file; |s| unchanged, not an error to callers
 * starting fresh), NP_EPROTO (corrupt), NP_ENOTSUP (version), NP_ELIMIT
 * (over a limit of |s|), NP_ESYS, NP_ENOMEM; |err| then names the file and
 * the byte offset of the bad entry. */
int np_kadstore_load(np_kadstore *s, const char *dir, uint64_t now,
                     size_t *skipped, char *err, size_t errlen);

/* np_kadstore_load from memory; |name| is used in |err|. */
int np_kadstore_load_buf(np_kadstore *s, const uint8_t *buf, size_t len,
                         const char *name, uint64_t now, size_t *skipped,
                         char *err, size_t errlen);

#endif
