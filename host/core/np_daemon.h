/* The daemon: assembles a host (np_host, the registry) with everything
 * built around it: the network (np_swarm and its transports), the
 * protocol modules, the control socket, the plugins and the signal
 * watchers, and takes them down in order. Only main() and tests include
 * this; no subsystem does, so nothing depends back on the assembly. */
#ifndef NP_DAEMON_H
#define NP_DAEMON_H

#include <ev.h>

#include "np_conf.h"
#include "np_host.h"
#include "np_identity.h"

typedef struct np_daemon np_daemon;
typedef struct np_plugins np_plugins;

/* Create the host (taking |conf| on success; |id| copied) and its plugin
 * manager. Returns 0 or a negative code. */
int np_daemon_new(np_daemon **pd, struct ev_loop *ev, np_conf *conf,
                  const np_identity *id);
enum np_daemon_flags {
  NP_DAEMON_SIGNALS = 1, /* SIGINT/SIGTERM stop, SIGHUP reloads */
  NP_DAEMON_CONTROL = 2, /* open the [host] control socket */
  NP_DAEMON_NET = 4      /* listen and connect, protocol modules */
};
/* Start the network and the protocol modules (NP_DAEMON_NET), open the
 * control socket (NP_DAEMON_CONTROL), install signal watchers
 * (NP_DAEMON_SIGNALS), load plugins. Returns 0 or a negative code (the
 * reason also on stderr and in the log). */
int np_daemon_start(np_daemon *d, int flags);
/* Graceful stop: control socket, modules, network, plugins, in that
 * order; the loop breaks. */
void np_daemon_stop(np_daemon *d);
/* Stop if needed, then free everything. NULL is fine. */
void np_daemon_del(np_daemon *d);
/* Re-read the config file: on error the running config is kept and the
 * error logged; on success it replaces the running one (keys read only at
 * start are named in a warning) and the plugin folder is re-scanned.
 * Returns 0 or the error. */
int np_daemon_reload(np_daemon *d);
/* Log a warning for each key of |c| that this build ignores (a feature
 * not built yet). main() calls it at start, reload on SIGHUP. */
void np_daemon_conf_warnings(const np_conf *c);

np_host *np_daemon_host(np_daemon *d);
np_plugins *np_daemon_plugins(np_daemon *d);
/* The state of the started protocol module |name| (np_module.h; "kad" is
 * an np_kad), or NULL. For tests and main(). */
void *np_daemon_module(np_daemon *d, const char *name);
/* The i-th listen address with /p2p/ID as text, or NULL past the end. */
const char *np_daemon_addr_text(np_daemon *d, size_t i);
/* The control socket (NULL before np_daemon_start or without
 * NP_DAEMON_CONTROL); natpeer-p2pd sets its p2pd mode. */
struct np_ctl *np_daemon_ctl(np_daemon *d);
/* The control socket's bound address, or NULL. */
const char *np_daemon_control_addr(const np_daemon *d);

#endif
