/* The root object: owns the loop glue, config, identity, protocol table and
 * plugins, and every later subsystem. All of it runs on one libev loop. */
#ifndef NP_HOST_H
#define NP_HOST_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "np_call.h"
#include "np_conf.h"
#include "np_identity.h"
#include "np_loop.h"
#include "np_proto.h"

typedef struct np_host np_host;
typedef struct np_plugins np_plugins;

/* np_host_new takes ownership of |conf| on success. |id| is copied. */
int np_host_new(np_host **ph, struct ev_loop *ev, np_conf *conf,
                const np_identity *id);
/* Load plugins, install SIGINT/SIGTERM (graceful stop) and SIGHUP (reload)
 * watchers. Returns 0 or a negative code. */
int np_host_start(np_host *h, int handle_signals);
/* Graceful stop: plugins shut down, sockets closed, the loop breaks. */
void np_host_stop(np_host *h);
void np_host_del(np_host *h);

/* Re-read the config file: on error the running config is kept and the
 * error logged; on success it replaces the running one and the plugin
 * folder is re-scanned. Returns 0 or the error. */
int np_host_reload(np_host *h);

np_loop *np_host_loop(np_host *h);
const np_conf *np_host_conf(const np_host *h);
const np_identity *np_host_identity(const np_host *h);
np_proto_table *np_host_protos(np_host *h);
np_plugins *np_host_plugins(np_host *h);

/* Pending-call accounting against [limits] max_pending_calls. */
int np_host_calls_admit(const np_host *h);
void np_host_calls_add(np_host *h, int delta);

/* Route a unary call to the local handler of |proto| (1..1024 bytes), as if
 * it came from |caller_peer|. |done| runs exactly once, later (never from
 * inside this call), unless the call is withdrawn. Returns 0, NP_ENOPROTO
 * (no such handler, or a stream handler), NP_ELIMIT or NP_ENOMEM. */
int np_host_call_local(np_host *h, const char *caller_peer, const char *proto,
                       size_t proto_len, const uint8_t *req, size_t len,
                       np_call_complete_fn done, void *ud, np_call **pc);

/* Transport hook for calls to other peers (installed by the QUIC layer).
 * Same contract as np_host_call_local; returns 0 and later runs |done|, or
 * returns an error and never runs it. |*cancel| receives a handle for
 * np_host_call_cancel. */
typedef int (*np_remote_call_fn)(void *tud, const char *peer,
                                 const char *proto, const uint8_t *req,
                                 size_t len, np_call_complete_fn done,
                                 void *ud, void **cancel);
typedef void (*np_remote_cancel_fn)(void *tud, void *cancel);
void np_host_set_remote(np_host *h, np_remote_call_fn call,
                        np_remote_cancel_fn cancel, void *tud);

/* Call |proto| on |peer| (this host's own ID dispatches locally). Same
 * contract as np_host_call_local; *handle (may be NULL) lets the caller
 * withdraw with np_host_call_cancel (|done| then never runs). */
typedef struct np_outgoing np_outgoing;
int np_host_call(np_host *h, const char *peer, const char *proto,
                 const uint8_t *req, size_t len, np_call_complete_fn done,
                 void *ud, np_outgoing **handle);
void np_host_call_cancel(np_host *h, np_outgoing *o);

#endif
