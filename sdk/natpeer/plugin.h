/* natpeer plugin SDK -- the one stable ABI between natpeer-host and handler
 * plugins. C99, no dependencies beyond the C library.
 *
 * Promise: within one NP_ABI_MAJOR, structs only grow at the end and members
 * never change type or meaning. A plugin built against an older minor keeps
 * loading; a plugin that needs a newer member checks it with NP_HAS().
 *
 * For natpeer's developers: every release that appends members bumps
 * NP_ABI_MINOR once and freezes a copy of this header as
 * tests/plugins/abi_1_N/natpeer/plugin.h; test_abi then checks that each
 * member of every frozen copy keeps its offset and size here.
 *
 * A plugin never links against the host: everything it may call arrives in
 * the np_host_api table handed to its init. All callbacks run on the host's
 * single event-loop thread; a plugin needs no locking.
 */
#ifndef NATPEER_PLUGIN_H
#define NATPEER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NP_ABI_MAJOR 1 /* bumped only if an existing member changes meaning */
#define NP_ABI_MINOR 3 /* bumped each time members are appended */

/* Error codes: 0 is success, failures are these negative numbers. Never
 * renumbered; new codes are appended. api->strerror() names each. */
#define NP_ERRORS(X)                                                           \
  X(INVAL, -1, "invalid argument")                                             \
  X(NOMEM, -2, "out of memory")                                                \
  X(EXIST, -3, "already registered")                                           \
  X(LIMIT, -4, "limit exceeded")                                               \
  X(TRUNC, -5, "input truncated")                                              \
  X(PROTO, -6, "protocol violation by peer")                                   \
  X(NOPROTO, -7, "protocol not supported by peer")                             \
  X(TIMEDOUT, -8, "timed out")                                                 \
  X(CLOSED, -9, "connection or stream closed")                                 \
  X(CANCELED, -10, "canceled")                                                 \
  X(SYS, -11, "system call failed")                                            \
  X(NOTSUP, -12, "not supported by this host")                                 \
  X(NOENT, -13, "not found")                                                   \
  X(PERM, -14, "permission denied")                                            \
  X(REMOTE, -15, "remote handler failed")                                      \
  X(UNREACH, -16, "peer unreachable")                                          \
  X(CRYPTO, -17, "cryptographic failure")                                      \
  X(PEERID, -18, "peer identity mismatch")

#define NP_ERR_ENUM_(name, code, msg) NP_E##name = (code),
enum np_error { NP_OK = 0, NP_ERRORS(NP_ERR_ENUM_) NP_ERR_LAST_ = -19 };
#undef NP_ERR_ENUM_

/* Log levels for api->log. */
enum np_log_level {
  NP_LOG_ERROR = 0,
  NP_LOG_WARN = 1,
  NP_LOG_INFO = 2,
  NP_LOG_DEBUG = 3
};

typedef struct np_plugin np_plugin; /* opaque, host-owned, one per .so */
typedef struct np_call np_call;     /* one incoming unary request; dies at reply */
typedef struct np_stream np_stream; /* valid until its on_close returns */
typedef struct np_timer np_timer;   /* stopped by the host on unload */
typedef struct np_dht_op np_dht_op; /* ABI 1.3: a DHT operation in flight */

/* An incoming unary request. |req| is borrowed for the call of this function;
 * answer exactly once, now or later, with api->call_reply or
 * api->call_fail. If the caller goes away first, the callback set with
 * api->call_on_cancel (if any) runs and |c| must not be used afterwards. */
typedef void (*np_unary_cb)(np_call *c, const uint8_t *req, size_t len,
                            void *ud);
/* Completion of an outgoing call: err == 0 and the response, or err < 0
 * (NP_EREMOTE with the remote's message in resp, or a local error). */
typedef void (*np_done_cb)(int err, const uint8_t *resp, size_t len, void *ud);
typedef void (*np_timer_cb)(np_timer *t, void *ud);
/* ABI 1.3, the DHT's completions. Everything passed is borrowed for the
 * call. Peer IDs are "12D3KooW..." text, addresses multiaddr text
 * ("/ip4/192.0.2.1/udp/4001/quic-v1"). */
/* dht_find_peer: err 0 and the addresses the host now knows for the peer
 * (|n| may be 0 when only a connection to it is up). */
typedef void (*np_dht_addrs_cb)(int err, const char *const *addrs, size_t n,
                                void *ud);
/* dht_put_value, dht_provide: err 0 and how many peers stored it (>= 1);
 * dht_find_providers: err 0 and how many providers were reported. */
typedef void (*np_dht_count_cb)(int err, size_t n, void *ud);
/* dht_find_providers: one provider, reported once. */
typedef void (*np_dht_provider_cb)(const char *peer, const char *const *addrs,
                                   size_t n, void *ud);

typedef struct np_stream_cbs {
  size_t struct_size; /* = sizeof(np_stream_cbs) as the plugin was built */
  void (*on_open)(np_stream *s, void *ud);
  /* Bytes read (borrowed for the call). len == 0: the remote finished
   * writing (it may still read what this side writes). */
  void (*on_data)(np_stream *s, const uint8_t *data, size_t len, void *ud);
  void (*on_close)(np_stream *s, int err, void *ud); /* last callback for s */
  /* ABI 1.1: stream_write refused with NP_ELIMIT (send buffer full) may be
   * retried now. May be NULL. */
  void (*on_writable)(np_stream *s, void *ud);
} np_stream_cbs;

typedef struct np_host_api {
  size_t struct_size; /* sizeof the *running host's* table */
  uint16_t abi_major, abi_minor;
  /* ABI 1.0 -- append only: never reorder, retype or remove a member */
  const char *(*strerror)(int err);
  void (*log)(np_plugin *p, int level, const char *fmt, ...)
#if defined(__GNUC__)
      __attribute__((format(printf, 3, 4)))
#endif
      ;
  /* Value of |key| in this plugin's [plugin.NAME] section, or NULL. The
   * string stays valid until the plugin's shutdown returns. */
  const char *(*conf_get)(np_plugin *p, const char *key);
  /* Register a handler for protocol name |proto| (1..1024 bytes). Returns 0,
   * NP_EEXIST (name taken by another plugin or a control client) or
   * NP_EINVAL. Registrations end when the plugin unloads. */
  int (*register_unary)(np_plugin *p, const char *proto, np_unary_cb cb,
                        void *ud);
  int (*register_stream)(np_plugin *p, const char *proto,
                         const np_stream_cbs *cbs, void *ud);
  /* The authenticated remote peer of a call, "12D3KooW..." (borrowed). */
  const char *(*call_peer)(const np_call *c);
  /* Answer |c| once; |resp| is copied. After it, |c| is gone: answering
   * it again gets NP_EINVAL (and a host warning). A response over
   * [limits] max_message fails the call instead (the caller gets an
   * error) and returns NP_ELIMIT. */
  int (*call_reply)(np_call *c, const uint8_t *resp, size_t len);
  /* Queue |data| (copied) on |s|: 0, NP_ELIMIT when the send buffer is
   * full (nothing queued; wait for on_writable) or NP_ECLOSED. */
  int (*stream_write)(np_stream *s, const uint8_t *data, size_t len);
  /* Finish writing; the stream closes once both sides are done. */
  void (*stream_close)(np_stream *s);
  /* One-shot timer firing after |ms| milliseconds on the host loop. The
   * handle stays valid until the callback returns or timer_stop is called. */
  int (*timer_start)(np_plugin *p, np_timer **t, uint64_t ms, np_timer_cb cb,
                     void *ud);
  void (*timer_stop)(np_timer *t);
  /* ABI 1.1 -- guard with NP_HAS(api, member) */
  /* Fail |c| with an error message the caller receives as a remote error. */
  int (*call_fail)(np_call *c, const char *msg);
  /* Call handler |proto| on |peer| ("12D3KooW..." or this host's own ID).
   * |done| runs exactly once, later, never from inside this call. */
  int (*call)(np_plugin *p, const char *peer, const char *proto,
              const uint8_t *req, size_t len, np_done_cb done, void *ud);
  /* This host's own peer ID (borrowed, lives as long as the host). */
  const char *(*self_peer)(np_plugin *p);
  /* The remote peer of a stream (borrowed). */
  const char *(*stream_peer)(const np_stream *s);
  /* Be told when the caller of |c| goes away before the answer: |cb| runs
   * once, and |c| is gone when it returns (do not reply to it). */
  void (*call_on_cancel)(np_call *c, void (*cb)(np_call *c, void *cud),
                         void *cud);
  /* Open a raw stream to |peer| negotiating |proto| (connecting first if
   * needed). Later, never from inside this call: cbs->on_open(s) once the
   * protocol is agreed, or cbs->on_close(NULL, err, ud) if it could not be
   * opened (err: NP_ENOPROTO, NP_EUNREACH, NP_ETIMEDOUT, ...). |cbs| is
   * copied. Returns 0 or an error (then no callback follows). */
  int (*open_stream)(np_plugin *p, const char *peer, const char *proto,
                     const np_stream_cbs *cbs, void *ud);
  /* Replace the |ud| handed to |s|'s later callbacks (per-stream state). */
  void (*stream_set_ud)(np_stream *s, void *ud);
  /* ABI 1.2 -- guard with NP_HAS(api, member) */
  /* Stop (1) or resume (0) on_data for |s| (back-pressure: e.g. when
   * stream_write says NP_ELIMIT, pause until on_writable). While paused the
   * host holds what is already in flight and withholds flow-control
   * credit, so the remote stops after one window; on resume the held
   * bytes (and a FIN) come first, on a later loop turn. */
  void (*stream_pause)(np_stream *s, int paused);
  /* Abort |s| in both directions: the remote sees a reset; on_close
   * follows. */
  void (*stream_reset)(np_stream *s);
  /* ABI 1.3 -- the DHT; guard with NP_HAS(api, member). Each starts an
   * operation and returns 0 with *op set (|op| may be NULL), or an error
   * and no callback follows: NP_EINVAL, NP_ENOMEM, NP_ELIMIT (too many
   * operations), NP_ENOTSUP (this host runs no DHT: [dht] mode = off).
   * Arguments are copied. The final callback (|done|) runs exactly once,
   * later, never from inside the call; *op is invalid once it returns.
   * Errors it may carry: NP_ENOENT (nothing found, or no peer stored it),
   * NP_ETIMEDOUT, NP_ECANCELED (the host's DHT stopped, or the plugin is
   * unloading: pending operations end so before shutdown is called).
   * Keys are 1..256 bytes; a record key is "/namespace/..." and the
   * namespace must be one the host validates (else NP_ENOTSUP). */
  /* Look |peer| up; afterwards call, open_stream, ... reach it. */
  int (*dht_find_peer)(np_plugin *p, const char *peer, np_dht_addrs_cb done,
                       void *ud, np_dht_op **op);
  /* The best value stored under |key| (done's resp, borrowed). */
  int (*dht_get_value)(np_plugin *p, const uint8_t *key, size_t keylen,
                       np_done_cb done, void *ud, np_dht_op **op);
  /* Store |val| under |key| here and at the closest peers (re-published
   * by the host while it runs). A value the namespace refuses fails at
   * once (NP_EINVAL, NP_ELIMIT). */
  int (*dht_put_value)(np_plugin *p, const uint8_t *key, size_t keylen,
                       const uint8_t *val, size_t len, np_dht_count_cb done,
                       void *ud, np_dht_op **op);
  /* Announce this host as a provider of |key| (a multihash, e.g. a CID's). */
  int (*dht_provide)(np_plugin *p, const uint8_t *key, size_t keylen,
                     np_dht_count_cb done, void *ud, np_dht_op **op);
  /* Up to |max| providers of |key| (0: the DHT's k), each reported once
   * through |each| before |done|. */
  int (*dht_find_providers)(np_plugin *p, const uint8_t *key, size_t keylen,
                            size_t max, np_dht_provider_cb each,
                            np_dht_count_cb done, void *ud, np_dht_op **op);
  /* Withdraw |op|: none of its callbacks runs any more (from inside its
   * |each| too). From inside its |done| it does nothing; after |done|
   * returned, |op| is gone and must not be passed. */
  void (*dht_cancel)(np_dht_op *op);
} np_host_api;

/* Nonzero when the running host's table is long enough to hold member M. */
#define NP_HAS(api, M)                                                         \
  ((api)->struct_size >= offsetof(np_host_api, M) + sizeof((api)->M))

typedef struct np_plugin_desc {
  size_t struct_size; /* sizeof(np_plugin_desc) as the plugin was built */
  uint16_t abi_major, abi_minor;
  const char *name;    /* unique; selects the [plugin.NAME] section */
  const char *version; /* free text, logged at load */
  /* Returns 0, or a negative NP_E* code (the plugin is then refused and its
   * shutdown is not called). */
  int (*init)(np_plugin *p, const np_host_api *api, void **plugin_ud);
  void (*shutdown)(np_plugin *p, void *plugin_ud); /* skipped if init failed */
  /* ABI 1.1 */
  const char *description; /* one line, logged at load; may be NULL */
} np_plugin_desc;

#define NP_PLUGIN_ENTRY_SYMBOL "np_plugin_entry"

#if defined(__GNUC__)
#define NP_PLUGIN_EXPORT_ __attribute__((visibility("default")))
#else
#define NP_PLUGIN_EXPORT_
#endif

/* NP_PLUGIN_DEFINE(name, version, init, shutdown) defines the one exported
 * symbol, const np_plugin_desc *np_plugin_entry(void).
 * NP_PLUGIN_DEFINE2 adds a one-line description. */
#define NP_PLUGIN_DEFINE2(NAME, VERSION, INIT, SHUTDOWN, DESCRIPTION)          \
  NP_PLUGIN_EXPORT_ const np_plugin_desc *np_plugin_entry(void);               \
  const np_plugin_desc *np_plugin_entry(void) {                                \
    static const np_plugin_desc d = {sizeof(np_plugin_desc),                   \
                                     NP_ABI_MAJOR,                             \
                                     NP_ABI_MINOR,                             \
                                     (NAME),                                   \
                                     (VERSION),                                \
                                     (INIT),                                   \
                                     (SHUTDOWN),                               \
                                     (DESCRIPTION)};                           \
    return &d;                                                                 \
  }
#define NP_PLUGIN_DEFINE(NAME, VERSION, INIT, SHUTDOWN)                        \
  NP_PLUGIN_DEFINE2(NAME, VERSION, INIT, SHUTDOWN, NULL)

#ifdef __cplusplus
}
#endif
#endif /* NATPEER_PLUGIN_H */
