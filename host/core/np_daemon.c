#include "np_daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_autonat.h"
#include "np_ctl.h"
#include "np_dcutr.h"
#include "np_err.h"
#include "np_idsvc.h"
#include "np_kad.h"
#include "np_kadmsg.h"
#include "np_log.h"
#include "np_module.h"
#include "np_obsaddr.h"
#include "np_relayc.h"
#include "np_ping.h"
#include "np_plugin.h"
#include "np_relaysvc.h"
#include "np_swarm.h"
#include "np_unarysvc.h"

/* The host's protocol modules, started in this order once the network is
 * up and stopped in reverse. A new protocol is a new file and a row. */
static const np_module *const host_modules[] = {
    &np_idsvc_module,
    &np_ping_module,
    &np_unarysvc_module,
    &np_kad_module,
    &np_obsaddr_module,
    &np_relaysvc_module,
    &np_relayc_module,
    &np_autonat_module,
    &np_dcutr_module,
};
#define NMODULES NP_ARRAY_LEN(host_modules)

struct np_daemon {
  struct ev_loop *ev;
  np_host *h;
  np_plugins *plugins;
  np_ctl *ctl;
  np_swarm *swarm;
  void *mod_state[NMODULES];
  size_t nstarted; /* modules started, in host_modules order */
  char *dht_proto; /* the router's protocol (the conf may be reloaded) */
  ev_signal sig_int, sig_term, sig_hup;
  int signals_on;
  int stopped;
};

np_host *np_daemon_host(np_daemon *d) { return d->h; }
np_plugins *np_daemon_plugins(np_daemon *d) { return d->plugins; }

void *np_daemon_module(np_daemon *d, const char *name) {
  size_t i;
  for (i = 0; i < d->nstarted; i++)
    if (strcmp(host_modules[i]->name, name) == 0)
      return d->mod_state[i];
  return NULL;
}

static void *module_find(void *ud, const char *name) {
  return np_daemon_module(ud, name);
}

const char *np_daemon_addr_text(np_daemon *d, size_t i) {
  return d->swarm ? np_swarm_addr_text(d->swarm, i) : NULL;
}

const char *np_daemon_control_addr(const np_daemon *d) {
  return d->ctl ? np_ctl_addr(d->ctl) : NULL;
}

np_ctl *np_daemon_ctl(np_daemon *d) { return d->ctl; }

static int modules_start(np_daemon *d) {
  while (d->nstarted < NMODULES) {
    const np_module *m = host_modules[d->nstarted];
    int rv = m->start(d->h, &d->mod_state[d->nstarted]);
    if (rv != 0) {
      np_error("host", "module-failed module=%s err=%s", m->name,
               np_errname(rv));
      return rv;
    }
    d->nstarted++;
  }
  return 0;
}

/* Peer routing over the DHT: the swarm looks up peers it has no address
 * for. np_kad_find_peer's callback has the router's shape; a lookup that
 * succeeds has put the peer's addresses in the peerstore. */
static int kad_route(void *rud, const np_peerid *peer, np_route_fn cb, void *ud,
                     void **handle) {
  np_kad_lookup *lk = NULL;
  int rv = np_kad_find_peer(rud, peer, cb, ud, &lk);
  *handle = lk;
  return rv;
}

static void kad_route_cancel(void *rud, void *handle) {
  np_kad_cancel(rud, handle);
}

/* The DHT's users outside np_kad: peer routing and the plugins' dht_*. */
static void dht_install(np_daemon *d) {
  np_kad *kad = np_daemon_module(d, "kad");
  np_router r;
  const char *proto = np_host_conf(d->h)->dht.protocol;
  if (kad == NULL)
    return; /* [dht] mode = off: unknown peers stay unreachable */
  np_plugins_set_dht(d->plugins, kad);
  if ((d->dht_proto = strdup(proto ? proto : NP_KADMSG_PROTOCOL)) == NULL) {
    np_error("host", "peer-routing-off err=%s", np_errname(NP_ENOMEM));
    return;
  }
  r.find_peer = kad_route;
  r.cancel = kad_route_cancel;
  r.rud = kad;
  r.proto = d->dht_proto;
  np_host_set_router(d->h, &r);
}

static void modules_stop(np_daemon *d) {
  /* Plugins' operations end here (NP_ECANCELED); the swarm's lookups
   * under way end when the module stops. */
  np_plugins_set_dht(d->plugins, NULL);
  np_host_set_router(d->h, NULL);
  while (d->nstarted > 0) {
    d->nstarted--;
    host_modules[d->nstarted]->stop(d->mod_state[d->nstarted]);
    d->mod_state[d->nstarted] = NULL;
  }
  free(d->dht_proto);
  d->dht_proto = NULL;
}

static void on_stop_signal(struct ev_loop *ev, ev_signal *w, int revents) {
  np_daemon *d = w->data;
  (void)ev, (void)revents;
  np_info("host", "stopping signal=%s", w->signum == SIGINT ? "INT" : "TERM");
  np_daemon_stop(d);
}

static void on_hup(struct ev_loop *ev, ev_signal *w, int revents) {
  (void)ev, (void)revents;
  np_info("host", "reloading signal=HUP");
  np_daemon_reload(w->data);
}

int np_daemon_new(np_daemon **pd, struct ev_loop *ev, np_conf *conf,
                  const np_identity *id) {
  np_daemon *d = calloc(1, sizeof(*d));
  int rv;
  if (d == NULL)
    return NP_ENOMEM;
  d->ev = ev;
  if ((rv = np_host_new(&d->h, ev, conf, id)) != 0) {
    free(d);
    return rv;
  }
  if ((rv = np_plugins_new(&d->plugins, d->h)) != 0) {
    np_host_take_conf(d->h); /* |conf| is not taken on failure */
    np_host_del(d->h);
    free(d);
    return rv;
  }
  np_host_set_module_find(d->h, module_find, d);
  *pd = d;
  return 0;
}

int np_daemon_start(np_daemon *d, int flags) {
  np_host *h = d->h;
  np_plugins_result r;
  int rv;
  if (flags & NP_DAEMON_NET) {
    char err[1024];
    rv = np_swarm_new(&d->swarm, h, err, sizeof(err));
    if (rv != 0) {
      np_error("host", "network-failed error=\"%s\"", err);
      fprintf(stderr, "natpeer-host: %s\n", err);
      return rv;
    }
    np_host_set_swarm(h, d->swarm);
    if ((rv = modules_start(d)) != 0) {
      fprintf(stderr, "natpeer-host: protocol module failed: %s\n",
              np_strerror(rv));
      return rv;
    }
    dht_install(d);
  }
  if (flags & NP_DAEMON_CONTROL) {
    char err[1024];
    rv = np_ctl_new(&d->ctl, h, err, sizeof(err));
    if (rv != 0) {
      np_error("host", "control-failed error=\"%s\"", err);
      fprintf(stderr, "natpeer-host: %s\n", err);
      return rv;
    }
  }
  if (flags & NP_DAEMON_SIGNALS) {
    ev_signal_init(&d->sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&d->sig_term, on_stop_signal, SIGTERM);
    ev_signal_init(&d->sig_hup, on_hup, SIGHUP);
    d->sig_int.data = d->sig_term.data = d->sig_hup.data = d;
    ev_signal_start(d->ev, &d->sig_int);
    ev_signal_start(d->ev, &d->sig_term);
    ev_signal_start(d->ev, &d->sig_hup);
    d->signals_on = 1;
  }
  rv = np_plugins_sync(d->plugins, np_host_conf(h), &r);
  if (rv != 0)
    return rv;
  np_info("host", "started peer=%s plugins=%u refused=%u protocols=%zu",
          np_host_identity(h)->id_str, r.loaded, r.refused,
          np_proto_count(np_host_protos(h)));
  return 0;
}

/* Finish queued work while everything it may touch is still alive. */
static void drain(np_daemon *d) {
  np_loop *l = np_host_loop(d->h);
  for (int i = 0; i < 64 && np_loop_pending(l) > 0; i++)
    ev_run(d->ev, EVRUN_NOWAIT);
}

void np_daemon_stop(np_daemon *d) {
  if (d->stopped)
    return;
  d->stopped = 1;
  drain(d);
  np_ctl_del(d->ctl);
  d->ctl = NULL;
  drain(d);
  modules_stop(d);
  drain(d);
  np_host_set_swarm(d->h, NULL);
  np_swarm_del(d->swarm);
  d->swarm = NULL;
  drain(d);
  np_plugins_del(d->plugins);
  d->plugins = NULL;
  drain(d);
  if (d->signals_on) {
    ev_signal_stop(d->ev, &d->sig_int);
    ev_signal_stop(d->ev, &d->sig_term);
    ev_signal_stop(d->ev, &d->sig_hup);
    d->signals_on = 0;
  }
  ev_break(d->ev, EVBREAK_ALL);
  np_info("host", "stopped peer=%s", np_host_identity(d->h)->id_str);
}

void np_daemon_del(np_daemon *d) {
  if (d == NULL)
    return;
  if (!d->stopped)
    np_daemon_stop(d);
  np_host_del(d->h);
  free(d);
}

static void say_needs_restart(const char *section, const char *name, int line,
                              void *ud) {
  const np_conf *c = ud;
  np_warn("host",
          "reload-not-applied key=[%s] %s file=%s line=%d reason=\"read only "
          "at start: restart to apply\"",
          section, name, c->path ? c->path : "-", line);
}

static void say_unbuilt(const char *section, const char *name, int line,
                        void *ud) {
  const np_conf *c = ud;
  np_warn("conf",
          "key-ignored key=[%s] %s file=%s line=%d reason=\"[%s] is not built "
          "yet in this version\"",
          section, name, c->path ? c->path : "-", line, section);
}

void np_daemon_conf_warnings(const np_conf *c) {
  np_conf_foreach_set(c, NP_KEY_UNBUILT, say_unbuilt, (void *)c);
  for (size_t i = 0; i < c->nat.treat_as_public.n; i++)
    np_warn("conf", "treat-as-public prefix=%s (a NAT lab setting: these "
                    "addresses count as public)",
            c->nat.treat_as_public.v[i]);
}

int np_daemon_reload(np_daemon *d) {
  const np_conf *cur = np_host_conf(d->h);
  char err[1024];
  np_conf *nc = NULL;
  np_plugins_result r;
  int rv;
  if (cur->path == NULL) {
    rv = np_conf_new_default(&nc);
  } else {
    rv = np_conf_load(&nc, cur->path, err, sizeof(err));
    if (rv != 0) {
      char esc[1100];
      np_log_escape(esc, sizeof(esc), err, strlen(err));
      np_error("host", "reload-rejected error=\"%s\" (keeping the running "
                       "config)", esc);
      return rv;
    }
  }
  if (rv != 0)
    return rv;
  /* Keys read only at start keep their running value, each said once. */
  np_conf_foreach_changed(cur, nc, NP_KEY_RESTART, say_needs_restart, nc);
  np_host_set_conf(d->h, nc);
  np_daemon_conf_warnings(nc);
  np_log_set_level(nc->host.log_level);
  np_log_set_timestamps(nc->host.log_timestamps);
  if (d->plugins == NULL)
    return 0;
  rv = np_plugins_sync(d->plugins, nc, &r);
  np_info("host",
          "reloaded plugins_loaded=%u unloaded=%u reloaded=%u refused=%u "
          "kept=%u protocols=%zu",
          r.loaded, r.unloaded, r.reloaded, r.refused, r.kept,
          np_proto_count(np_host_protos(d->h)));
  return rv;
}
