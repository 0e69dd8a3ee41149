#include "np_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_err.h"
#include "np_log.h"

struct np_host {
  struct ev_loop *ev;
  np_loop *loop;
  np_conf *conf;
  np_identity id;
  np_proto_table *protos;
  np_swarm *swarm; /* set by the daemon while the network is up */
  np_events *events;
  np_peerstore *ps;
  np_stream_cbs unary_cbs;
  void *unary_ud;
  int unary_on;
  unsigned calls; /* incoming calls in flight, all owners */
  const np_net_ops *net_ops;
  void *net;
  np_remote_call_fn remote_call;
  np_remote_cancel_fn remote_cancel;
  void *remote_ud;
  np_module_find_fn module_find;
  void *module_ud;
  np_router router;
  int router_on;
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
np_events *np_host_events(np_host *h) { return h->events; }
np_peerstore *np_host_peerstore(np_host *h) { return h->ps; }
np_swarm *np_host_swarm(np_host *h) { return h->swarm; }
void np_host_set_swarm(np_host *h, np_swarm *sw) { h->swarm = sw; }

void np_host_set_conf(np_host *h, np_conf *conf) {
  np_conf_del(h->conf);
  h->conf = conf;
}

np_conf *np_host_take_conf(np_host *h) {
  np_conf *c = h->conf;
  h->conf = NULL;
  return c;
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

void np_host_set_module_find(np_host *h, np_module_find_fn fn, void *ud) {
  h->module_find = fn;
  h->module_ud = ud;
}

void *np_host_module(np_host *h, const char *name) {
  return h->module_find ? h->module_find(h->module_ud, name) : NULL;
}

void np_host_set_router(np_host *h, const np_router *r) {
  memset(&h->router, 0, sizeof(h->router));
  h->router_on = r != NULL;
  if (r)
    h->router = *r;
}

const np_router *np_host_router(const np_host *h) {
  return h->router_on ? &h->router : NULL;
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
      (rv = np_proto_table_new(&h->protos, 65536)) != 0) {
    h->conf = NULL; /* not taken on failure */
    np_host_del(h);
    return rv;
  }
  np_proto_table_set_notify(h->protos, protos_changed, h);
  *ph = h;
  return 0;
}

void np_host_del(np_host *h) {
  if (h == NULL)
    return;
  np_loop_del(h->loop);
  np_proto_table_del(h->protos);
  np_peerstore_del(h->ps);
  np_events_del(h->events);
  np_conf_del(h->conf);
  np_identity_clear(&h->id);
  free(h);
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
