#include "np_host.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_ctl.h"
#include "np_swarm.h"
#include "np_err.h"
#include "np_idsvc.h"
#include "np_log.h"
#include "np_module.h"
#include "np_ping.h"
#include "np_plugin.h"
#include "np_unarysvc.h"

/* The host's protocol modules, started in this order once the network is
 * up and stopped in reverse. A new protocol is a new file and a row. */
static const np_module *const host_modules[] = {
    &np_idsvc_module,
    &np_ping_module,
    &np_unarysvc_module,
};
#define NMODULES NP_ARRAY_LEN(host_modules)

struct np_host {
  struct ev_loop *ev;
  np_loop *loop;
  np_conf *conf;
  np_identity id;
  np_proto_table *protos;
  np_plugins *plugins;
  np_ctl *ctl;
  np_swarm *swarm;
  np_events *events;
  np_peerstore *ps;
  void *mod_state[NMODULES];
  size_t nstarted; /* modules started, in host_modules order */
  np_stream_cbs unary_cbs;
  void *unary_ud;
  int unary_on;
  ev_signal sig_int, sig_term, sig_hup;
  int signals_on;
  int stopped;
  unsigned calls; /* incoming calls in flight, all owners */
  const np_net_ops *net_ops;
  void *net;
  np_remote_call_fn remote_call;
  np_remote_cancel_fn remote_cancel;
  void *remote_ud;
};

enum { OUT_ACTIVE = 1, OUT_DELIVERING, OUT_CANCELED };

struct np_outgoing {
  np_host *h;
  np_call_complete_fn done;
  void *ud;
  np_call *local;
  void *remote;
  int state;
  int err;
  uint8_t *resp;
  size_t len;
  np_defer deliver;
};

np_loop *np_host_loop(np_host *h) { return h->loop; }
const np_conf *np_host_conf(const np_host *h) { return h->conf; }
const np_identity *np_host_identity(const np_host *h) { return &h->id; }
np_proto_table *np_host_protos(np_host *h) { return h->protos; }
np_plugins *np_host_plugins(np_host *h) { return h->plugins; }
np_events *np_host_events(np_host *h) { return h->events; }
np_peerstore *np_host_peerstore(np_host *h) { return h->ps; }
np_swarm *np_host_swarm(np_host *h) { return h->swarm; }
const char *np_host_addr_text(np_host *h, size_t i) {
  return h->swarm ? np_swarm_addr_text(h->swarm, i) : NULL;
}

const char *np_host_control_addr(const np_host *h) {
  return h->ctl ? np_ctl_addr(h->ctl) : NULL;
}

int np_host_calls_admit(const np_host *h) {
  return h->calls < h->conf->limits.max_pending_calls;
}

void np_host_calls_add(np_host *h, int delta) {
  h->calls = (unsigned)((int)h->calls + delta);
}

void np_host_set_net(np_host *h, const np_net_ops *ops, void *net) {
  h->net_ops = ops;
  h->net = net;
}

const np_net_ops *np_host_net(np_host *h, void **net) {
  if (net)
    *net = h->net;
  return h->net_ops;
}

void np_host_set_remote(np_host *h, np_remote_call_fn call,
                        np_remote_cancel_fn cancel, void *tud) {
  h->remote_call = call;
  h->remote_cancel = cancel;
  h->remote_ud = tud;
}

void np_host_set_unary_server(np_host *h, const np_stream_cbs *cbs,
                              void *ud) {
  memset(&h->unary_cbs, 0, sizeof(h->unary_cbs));
  h->unary_on = cbs != NULL;
  h->unary_ud = ud;
  if (cbs)
    h->unary_cbs = *cbs;
}

const np_stream_cbs *np_host_unary_server(np_host *h, void **ud) {
  if (!h->unary_on)
    return NULL;
  *ud = h->unary_ud;
  return &h->unary_cbs;
}

static void protos_changed(void *ud) {
  np_host *h = ud;
  np_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = NP_EV_LOCAL_PROTOCOLS_CHANGED;
  np_events_emit(h->events, &ev);
}

static int modules_start(np_host *h) {
  while (h->nstarted < NMODULES) {
    const np_module *m = host_modules[h->nstarted];
    int rv = m->start(h, &h->mod_state[h->nstarted]);
    if (rv != 0) {
      np_error("host", "module-failed module=%s err=%s", m->name,
               np_errname(rv));
      return rv;
    }
    h->nstarted++;
  }
  return 0;
}

static void modules_stop(np_host *h) {
  while (h->nstarted > 0) {
    h->nstarted--;
    host_modules[h->nstarted]->stop(h->mod_state[h->nstarted]);
    h->mod_state[h->nstarted] = NULL;
  }
}

static void on_stop_signal(struct ev_loop *ev, ev_signal *w, int revents) {
  np_host *h = w->data;
  (void)ev, (void)revents;
  np_info("host", "stopping signal=%s", w->signum == SIGINT ? "INT" : "TERM");
  np_host_stop(h);
}

static void on_hup(struct ev_loop *ev, ev_signal *w, int revents) {
  (void)ev, (void)revents;
  np_info("host", "reloading signal=HUP");
  np_host_reload(w->data);
}

int np_host_new(np_host **ph, struct ev_loop *ev, np_conf *conf,
                const np_identity *id) {
  np_host *h = calloc(1, sizeof(*h));
  int rv;
  if (h == NULL)
    return NP_ENOMEM;
  h->ev = ev;
  h->conf = conf;
  h->id = *id;
  if ((rv = np_loop_new(&h->loop, ev)) != 0 ||
      (rv = np_events_new(&h->events)) != 0 ||
      (rv = np_peerstore_new(&h->ps, conf->limits.max_peers)) != 0 ||
      (rv = np_proto_table_new(&h->protos, 65536)) != 0 ||
      (rv = np_plugins_new(&h->plugins, h)) != 0) {
    h->conf = NULL; /* not taken on failure */
    np_host_del(h);
    return rv;
  }
  np_proto_table_set_notify(h->protos, protos_changed, h);
  *ph = h;
  return 0;
}

int np_host_start(np_host *h, int flags) {
  np_plugins_result r;
  int rv;
  if (flags & NP_HOST_NET) {
    char err[1024];
    rv = np_swarm_new(&h->swarm, h, err, sizeof(err));
    if (rv != 0) {
      np_error("host", "network-failed error=\"%s\"", err);
      fprintf(stderr, "natpeer-host: %s\n", err);
      return rv;
    }
    if ((rv = modules_start(h)) != 0) {
      fprintf(stderr, "natpeer-host: protocol module failed: %s\n",
              np_strerror(rv));
      return rv;
    }
  }
  if (flags & NP_HOST_CONTROL) {
    char err[1024];
    rv = np_ctl_new(&h->ctl, h, err, sizeof(err));
    if (rv != 0) {
      np_error("host", "control-failed error=\"%s\"", err);
      fprintf(stderr, "natpeer-host: %s\n", err);
      return rv;
    }
  }
  if (flags & NP_HOST_SIGNALS) {
    ev_signal_init(&h->sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&h->sig_term, on_stop_signal, SIGTERM);
    ev_signal_init(&h->sig_hup, on_hup, SIGHUP);
    h->sig_int.data = h->sig_term.data = h->sig_hup.data = h;
    ev_signal_start(h->ev, &h->sig_int);
    ev_signal_start(h->ev, &h->sig_term);
    ev_signal_start(h->ev, &h->sig_hup);
    h->signals_on = 1;
  }
  rv = np_plugins_sync(h->plugins, h->conf, &r);
  if (rv != 0)
    return rv;
  np_info("host", "started peer=%s plugins=%u refused=%u protocols=%zu",
          h->id.id_str, r.loaded, r.refused, np_proto_count(h->protos));
  return 0;
}

/* Finish queued work while everything it may touch is still alive. */
static void drain(np_host *h) {
  for (int i = 0; i < 64 && np_loop_pending(h->loop) > 0; i++)
    ev_run(h->ev, EVRUN_NOWAIT);
}

void np_host_stop(np_host *h) {
  if (h->stopped)
    return;
  h->stopped = 1;
  drain(h);
  np_ctl_del(h->ctl);
  h->ctl = NULL;
  drain(h);
  modules_stop(h);
  drain(h);
  np_swarm_del(h->swarm);
  h->swarm = NULL;
  drain(h);
  np_plugins_del(h->plugins);
  h->plugins = NULL;
  drain(h);
  if (h->signals_on) {
    ev_signal_stop(h->ev, &h->sig_int);
    ev_signal_stop(h->ev, &h->sig_term);
    ev_signal_stop(h->ev, &h->sig_hup);
    h->signals_on = 0;
  }
  ev_break(h->ev, EVBREAK_ALL);
  np_info("host", "stopped peer=%s", h->id.id_str);
}

void np_host_del(np_host *h) {
  if (h == NULL)
    return;
  if (h->plugins || h->signals_on || h->swarm || h->ctl || h->nstarted) {
    if (!h->stopped)
      np_host_stop(h);
  }
  np_plugins_del(h->plugins);
  np_loop_del(h->loop);
  np_proto_table_del(h->protos);
  np_peerstore_del(h->ps);
  np_events_del(h->events);
  np_conf_del(h->conf);
  np_identity_clear(&h->id);
  free(h);
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

void np_host_conf_warnings(const np_conf *c) {
  np_conf_foreach_set(c, NP_KEY_UNBUILT, say_unbuilt, (void *)c);
}

int np_host_reload(np_host *h) {
  char err[1024];
  np_conf *nc = NULL;
  np_plugins_result r;
  int rv;
  if (h->conf->path == NULL) {
    rv = np_conf_new_default(&nc);
  } else {
    rv = np_conf_load(&nc, h->conf->path, err, sizeof(err));
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
  np_conf_foreach_changed(h->conf, nc, NP_KEY_RESTART, say_needs_restart,
                          nc);
  np_conf_del(h->conf);
  h->conf = nc;
  np_host_conf_warnings(nc);
  np_log_set_level(nc->host.log_level);
  np_log_set_timestamps(nc->host.log_timestamps);
  if (h->plugins == NULL)
    return 0;
  rv = np_plugins_sync(h->plugins, h->conf, &r);
  np_info("host",
          "reloaded plugins_loaded=%u unloaded=%u reloaded=%u refused=%u "
          "kept=%u protocols=%zu",
          r.loaded, r.unloaded, r.reloaded, r.refused, r.kept,
          np_proto_count(h->protos));
  return rv;
}

int np_host_call_local(np_host *h, const char *caller_peer, const char *proto,
                       size_t proto_len, const uint8_t *call_id,
                       const uint8_t *req, size_t len,
                       np_call_complete_fn done, void *ud, np_call **pc) {
  const np_handler *hd;
  if (np_proto_name_check(proto, proto_len) != 0)
    return NP_EINVAL;
  if (len > h->conf->limits.max_message)
    return NP_ELIMIT;
  hd = np_proto_find(h->protos, proto, proto_len);
  if (hd == NULL || hd->kind != NP_HANDLER_UNARY || hd->pending == NULL)
    return NP_ENOPROTO;
  return np_call_dispatch_id(h, hd, hd->pending, caller_peer, call_id, req,
                             len, done, ud, pc);
}

static void out_deliver(void *arg) {
  np_outgoing *o = arg;
  if (o->state == OUT_DELIVERING)
    o->done(o->ud, o->err, o->resp, o->len);
  free(o->resp);
  free(o);
}

static void out_complete(void *ud, int err, const uint8_t *data, size_t len) {
  np_outgoing *o = ud;
  o->local = NULL;
  o->remote = NULL;
  o->err = err;
  if (len && data) {
    if ((o->resp = malloc(len)) == NULL) {
      o->err = NP_ENOMEM;
      len = 0;
    } else {
      memcpy(o->resp, data, len);
    }
  }
  o->len = len;
  o->state = OUT_DELIVERING;
  /* The answer may arrive from inside the callee's handler: deliver it on
   * the next turn so the caller never runs inside someone else's stack. */
  np_defer_init(&o->deliver, out_deliver, o);
  np_loop_post(o->h->loop, &o->deliver);
}

int np_host_call(np_host *h, const char *peer, const char *proto,
                 const uint8_t *req, size_t len, np_call_complete_fn done,
                 void *ud, np_outgoing **handle) {
  return np_host_call_id(h, peer, proto, NULL, req, len, done, ud, handle);
}

int np_host_call_id(np_host *h, const char *peer, const char *proto,
                    const uint8_t *call_id, const uint8_t *req, size_t len,
                    np_call_complete_fn done, void *ud, np_outgoing **handle) {
  np_outgoing *o;
  np_peerid target;
  int rv;
  if (peer == NULL || proto == NULL || done == NULL)
    return NP_EINVAL;
  if (np_peerid_parse(&target, peer, strlen(peer)) != 0)
    return NP_EINVAL;
  if (len > h->conf->limits.max_message)
    return NP_ELIMIT;
  if ((o = calloc(1, sizeof(*o))) == NULL)
    return NP_ENOMEM;
  o->h = h;
  o->done = done;
  o->ud = ud;
  o->state = OUT_ACTIVE;
  if (np_peerid_equal(&target, &h->id.id)) {
    rv = np_host_call_local(h, h->id.id_str, proto, strlen(proto), call_id,
                            req, len, out_complete, o, &o->local);
  } else if (h->remote_call) {
    rv = h->remote_call(h->remote_ud, peer, proto, call_id, req, len,
                        out_complete, o, &o->remote);
  } else {
    rv = NP_EUNREACH;
  }
  if (rv != 0) {
    free(o);
    return rv;
  }
  if (handle)
    *handle = o;
  return 0;
}

void np_host_call_cancel(np_host *h, np_outgoing *o) {
  if (o == NULL)
    return;
  if (o->state == OUT_DELIVERING) {
    o->state = OUT_CANCELED; /* freed by its queued delivery */
    return;
  }
  if (o->local)
    np_call_caller_gone(o->local);
  else if (o->remote && h->remote_cancel)
    h->remote_cancel(h->remote_ud, o->remote);
  free(o);
}
