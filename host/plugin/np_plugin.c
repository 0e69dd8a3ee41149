#include "np_plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "np_call.h"
#include "np_err.h"
#include "np_host.h"
#include "np_kad.h"
#include "np_list.h"
#include "np_log.h"
#include "np_loop.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_stream.h"

#define MAX_PLUGINS 256
#define MAX_TIMERS_PER_PLUGIN 4096
#define MAX_DHT_OPS_PER_PLUGIN 1024
#define DHT_ADDRS_MAX 16 /* addresses reported per peer */
#define ADDR_TEXT_MAX 320

/* Smallest descriptor the host accepts: ABI 1.0 ends at shutdown. */
#define DESC_MIN_SIZE                                                          \
  (offsetof(np_plugin_desc, shutdown) + sizeof(void (*)(void)))
#define CBS_MIN_SIZE (offsetof(np_stream_cbs, on_close) + sizeof(void (*)(void)))

struct np_plugin {
  np_plugins *pm;
  np_list link; /* in pm->plugins */
  char *path;
  struct stat st;   /* identity of the loaded file, to spot replacements */
  void *dl;
  np_plugin_desc desc; /* converted to the current size */
  char *name;
  void *ud;
  np_conf_kv *kv; /* own copy of [plugin.NAME] */
  size_t nkv;
  int in_init, ready;
  char reg_err[512]; /* why the last registration failed, for the log */
  np_list calls;     /* incoming np_call pending on this plugin */
  np_list outcalls;  /* outcall */
  np_list timers;    /* np_timer */
  np_list streams;   /* np_stream given to this plugin */
  np_list opening;   /* open_stream requests in flight */
  np_list dht_ops;   /* np_dht_op in flight */
  size_t ndht;
  int shut;      /* its shutdown ran: what is left ends silently */
  int unloading; /* no new DHT operation (they would never end) */
};

struct np_plugins {
  np_host *host;
  np_list plugins;
  size_t n;
  np_kad *kad; /* the DHT, or NULL */
};

struct np_timer {
  ev_timer w;
  np_list link;
  np_plugin *p;
  np_timer_cb cb;
  void *ud;
  int firing, stopped;
};

typedef struct outcall {
  np_list link;
  np_plugin *p;
  np_done_cb done;
  void *ud;
  np_outgoing *o;
} outcall;

/* ---- host API table ------------------------------------------------------ */

static void api_log(np_plugin *p, int level, const char *fmt, ...)
    NP_PRINTF(3, 4);
static void api_log(np_plugin *p, int level, const char *fmt, ...) {
  char msg[1024], esc[1100];
  va_list ap;
  if (level < NP_LOG_ERROR)
    level = NP_LOG_ERROR;
  if (level > NP_LOG_DEBUG)
    level = NP_LOG_DEBUG;
  if (level > np_log_get_level())
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  np_log_escape(esc, sizeof(esc), msg, strlen(msg));
  np_log(level, "plugin", "log plugin=%s msg=\"%s\"", p ? p->name : "?", esc);
}

static const char *api_conf_get(np_plugin *p, const char *key) {
  if (p == NULL || key == NULL)
    return NULL;
  for (size_t i = 0; i < p->nkv; i++)
    if (strcmp(p->kv[i].key, key) == 0)
      return p->kv[i].value;
  return NULL;
}

static int do_register(np_plugin *p, const char *proto, int kind,
                       np_unary_cb ucb, const np_stream_cbs *scbs, void *ud) {
  np_handler h;
  const np_handler *taken = NULL;
  int rv;
  char esc[128];
  if (p == NULL || proto == NULL)
    return NP_EINVAL;
  memset(&h, 0, sizeof(h));
  h.proto = (char *)proto;
  h.kind = kind;
  h.owner_kind = NP_OWNER_PLUGIN;
  h.owner = p;
  h.owner_name = p->name;
  h.unary = ucb;
  h.ud = ud;
  h.pending = &p->calls;
  h.streams = &p->streams;
  if (scbs) {
    if (scbs->struct_size < CBS_MIN_SIZE)
      return NP_EINVAL;
    memcpy(&h.stream, scbs,
           scbs->struct_size < sizeof(h.stream) ? scbs->struct_size
                                                : sizeof(h.stream));
    h.stream.struct_size = sizeof(h.stream);
  }
  rv = np_proto_add(np_host_protos(p->pm->host), &h, &taken);
  np_log_escape(esc, sizeof(esc), proto, strlen(proto));
  if (rv == NP_EEXIST)
    snprintf(p->reg_err, sizeof(p->reg_err),
             "protocol \"%s\" already registered by %s %s", esc,
             taken->owner_kind == NP_OWNER_PLUGIN ? "plugin" : "client",
             taken->owner_name ? taken->owner_name : "?");
  else if (rv < 0)
    snprintf(p->reg_err, sizeof(p->reg_err), "protocol \"%s\": %s", esc,
             np_strerror(rv));
  else
    np_debug("plugin", "registered plugin=%s proto=\"%s\" kind=%s", p->name,
             esc, kind == NP_HANDLER_UNARY ? "unary" : "stream");
  return rv;
}

static int api_register_unary(np_plugin *p, const char *proto, np_unary_cb cb,
                              void *ud) {
  if (cb == NULL)
    return NP_EINVAL;
  return do_register(p, proto, NP_HANDLER_UNARY, cb, NULL, ud);
}

static int api_register_stream(np_plugin *p, const char *proto,
                               const np_stream_cbs *cbs, void *ud) {
  if (cbs == NULL)
    return NP_EINVAL;
  return do_register(p, proto, NP_HANDLER_STREAM, NULL, cbs, ud);
}

static const char *api_call_peer(const np_call *c) {
  return np_call_live(c) ? c->peer : NULL;
}

static int api_call_reply(np_call *c, const uint8_t *resp, size_t len) {
  return np_call_reply(c, resp, len);
}

static int api_call_fail(np_call *c, const char *msg) {
  return np_call_fail(c, msg);
}

static void api_call_on_cancel(np_call *c, void (*cb)(np_call *, void *),
                               void *cud) {
  if (!np_call_live(c))
    return;
  c->cancel_cb = cb;
  c->cancel_ud = cud;
}

static int api_stream_write(np_stream *s, const uint8_t *data, size_t len) {
  if (s == NULL || s->closed || s->ops == NULL)
    return NP_ECLOSED;
  return s->ops->write(s, data, len);
}

static void api_stream_close(np_stream *s) {
  if (s && !s->closed && s->ops)
    s->ops->close(s);
}

static const char *api_stream_peer(const np_stream *s) {
  return s ? s->peer : NULL;
}

static void timer_fire(struct ev_loop *ev, ev_timer *w, int revents) {
  np_timer *t = np_container_of(w, np_timer, w);
  (void)ev, (void)revents;
  np_list_remove(&t->link);
  t->firing = 1;
  t->cb(t, t->ud);
  free(t);
}

static int api_timer_start(np_plugin *p, np_timer **pt, uint64_t ms,
                           np_timer_cb cb, void *ud) {
  np_timer *t;
  size_t n = 0;
  np_list *it;
  if (p == NULL || cb == NULL)
    return NP_EINVAL;
  for (it = p->timers.next; it != &p->timers; it = it->next)
    if (++n >= MAX_TIMERS_PER_PLUGIN)
      return NP_ELIMIT;
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return NP_ENOMEM;
  t->p = p;
  t->cb = cb;
  t->ud = ud;
  ev_timer_init(&t->w, timer_fire, (double)ms / 1000.0, 0.);
  ev_timer_start(np_loop_ev(np_host_loop(p->pm->host)), &t->w);
  np_list_insert_tail(&p->timers, &t->link);
  if (pt)
    *pt = t;
  return 0;
}

static void api_timer_stop(np_timer *t) {
  if (t == NULL || t->firing)
    return; /* inside its own callback the host frees it on return */
  ev_timer_stop(np_loop_ev(np_host_loop(t->p->pm->host)), &t->w);
  np_list_remove(&t->link);
  free(t);
}

static void outcall_done(void *ud, int err, const uint8_t *data, size_t len) {
  outcall *oc = ud;
  np_list_remove(&oc->link);
  oc->done(err, data, len, oc->ud);
  free(oc);
}

static int api_call(np_plugin *p, const char *peer, const char *proto,
                    const uint8_t *req, size_t len, np_done_cb done, void *ud) {
  outcall *oc;
  int rv;
  if (p == NULL || peer == NULL || proto == NULL || done == NULL ||
      (len && req == NULL))
    return NP_EINVAL;
  if ((oc = calloc(1, sizeof(*oc))) == NULL)
    return NP_ENOMEM;
  oc->p = p;
  oc->done = done;
  oc->ud = ud;
  np_list_init(&oc->link);
  rv = np_host_call(p->pm->host, peer, proto, req, len, outcall_done, oc,
                    &oc->o);
  if (rv != 0) {
    free(oc);
    return rv;
  }
  np_list_insert_tail(&p->outcalls, &oc->link);
  return 0;
}

typedef struct opening {
  np_list link; /* in plugin->opening */
  np_plugin *p;
  np_stream_cbs cbs;
  void *ud;
  void *handle;
} opening;

static void on_opened(void *arg, int err, np_stream *s, const char *proto) {
  opening *op = arg;
  np_plugin *p = op->p;
  (void)proto;
  np_list_remove(&op->link);
  if (err != 0) {
    if (op->cbs.on_close)
      op->cbs.on_close(NULL, err, op->ud);
    free(op);
    return;
  }
  np_stream_set_cbs(s, &op->cbs, op->ud);
  np_list_insert_tail(&p->streams, &s->owner_link);
  free(op);
  if (s->cbs.on_open)
    s->cbs.on_open(s, s->ud);
}

static int api_open_stream(np_plugin *p, const char *peer, const char *proto,
                           const np_stream_cbs *cbs, void *ud) {
  void *net;
  const np_net_ops *ops;
  np_peerid id;
  opening *op;
  int rv;
  if (p == NULL || peer == NULL || proto == NULL || cbs == NULL ||
      cbs->struct_size < CBS_MIN_SIZE ||
      np_proto_name_check(proto, strlen(proto)) != 0 ||
      np_peerid_parse(&id, peer, strlen(peer)) != 0)
    return NP_EINVAL;
  if ((ops = np_host_net(p->pm->host, &net)) == NULL)
    return NP_EUNREACH;
  if ((op = calloc(1, sizeof(*op))) == NULL)
    return NP_ENOMEM;
  op->p = p;
  op->ud = ud;
  memcpy(&op->cbs, cbs,
         cbs->struct_size < sizeof(op->cbs) ? cbs->struct_size
                                            : sizeof(op->cbs));
  op->cbs.struct_size = sizeof(op->cbs);
  np_list_insert_tail(&p->opening, &op->link);
  rv = ops->open_stream(net, &id, &proto, 1, NP_NET_LAZY,
                        np_host_conf(p->pm->host)->limits.call_timeout_ms,
                        on_opened, op, &op->handle);
  if (rv != 0) {
    np_list_remove(&op->link);
    free(op);
  }
  return rv;
}

static void api_stream_set_ud(np_stream *s, void *ud) {
  if (s)
    s->ud = ud;
}

static void api_stream_pause(np_stream *s, int paused) {
  if (s && !s->closed && s->ops && s->ops->pause)
    s->ops->pause(s, paused ? 1 : 0);
}

static void api_stream_reset(np_stream *s) {
  if (s && !s->closed && s->ops)
    s->ops->reset(s);
}

/* ---- DHT operations (ABI 1.3) -------------------------------------------- */

enum { DHT_PEER = 1, DHT_GET, DHT_COUNT, DHT_PROVIDERS };

struct np_dht_op {
  np_list link; /* in p->dht_ops */
  np_plugin *p;
  int kind;
  np_kad *kad; /* the one it runs on */
  np_kad_lookup *lk;
  np_dht_addrs_cb addrs_cb;   /* DHT_PEER */
  np_done_cb value_cb;        /* DHT_GET */
  np_dht_count_cb count_cb;   /* DHT_COUNT, DHT_PROVIDERS (done) */
  np_dht_provider_cb each_cb; /* DHT_PROVIDERS */
  void *ud;
  size_t found; /* providers reported */
  int in_each, canceled;
  int ending; /* its final callback runs: a cancel from inside is a no-op */
};

/* Multiaddr text of up to DHT_ADDRS_MAX binary addresses; returns how many
 * converted (|txt| holds them, |ptr| points at each). */
static size_t addrs_text(const uint8_t *const *bins, const size_t *lens,
                         size_t n, char txt[][ADDR_TEXT_MAX],
                         const char **ptr) {
  size_t k = 0;
  for (size_t i = 0; i < n && k < DHT_ADDRS_MAX; i++)
    if (np_maddr_to_string(bins[i], lens[i], txt[k], ADDR_TEXT_MAX) > 0) {
      ptr[k] = txt[k];
      k++;
    }
  return k;
}

static np_dht_op *dht_op_new(np_plugin *p, int kind, void *ud) {
  np_dht_op *op;
  if (p->ndht >= MAX_DHT_OPS_PER_PLUGIN)
    return NULL;
  if ((op = calloc(1, sizeof(*op))) == NULL)
    return NULL;
  op->p = p;
  op->kind = kind;
  op->kad = p->pm->kad;
  op->ud = ud;
  np_list_init(&op->link);
  return op;
}

/* Ready to start one: 0, or why not (checked before allocating). */
static int dht_check(np_plugin *p) {
  if (p == NULL)
    return NP_EINVAL;
  if (p->unloading)
    return NP_ECANCELED;
  if (p->pm->kad == NULL)
    return NP_ENOTSUP;
  if (p->ndht >= MAX_DHT_OPS_PER_PLUGIN)
    return NP_ELIMIT;
  return 0;
}

/* The lookup started (rv 0): track it; else free it and pass rv on. */
static int dht_started(np_dht_op *op, int rv, np_dht_op **pop) {
  if (pop)
    *pop = rv == 0 ? op : NULL;
  if (rv != 0) {
    free(op);
    return rv;
  }
  np_list_insert_tail(&op->p->dht_ops, &op->link);
  op->p->ndht++;
  return 0;
}

/* The op leaves its plugin (its final callback is about to run, or it is
 * withdrawn). */
static void dht_unlink(np_dht_op *op) {
  if (np_list_empty(&op->link))
    return; /* already out (canceled from inside |each|) */
  np_list_remove(&op->link);
  np_list_init(&op->link);
  op->p->ndht--;
}

static void dht_peer_done(void *ud, int err, const np_peerid *peer) {
  np_dht_op *op = ud;
  char txt[DHT_ADDRS_MAX][ADDR_TEXT_MAX];
  const char *ptr[DHT_ADDRS_MAX];
  size_t n = 0;
  dht_unlink(op);
  op->ending = 1;
  if (err == 0) {
    np_host *h = op->p->pm->host;
    np_ps_peer *pp = np_peerstore_get(np_host_peerstore(h), peer);
    if (pp) {
      const uint8_t *bins[NP_PS_MAX_ADDRS];
      size_t lens[NP_PS_MAX_ADDRS];
      np_peerstore_expire(pp, np_now(np_host_loop(h)));
      for (size_t i = 0; i < pp->naddrs; i++)
        bins[i] = pp->addrs[i].bin, lens[i] = pp->addrs[i].len;
      n = addrs_text(bins, lens, pp->naddrs, txt, ptr);
    }
  }
  op->addrs_cb(err, n ? ptr : NULL, n, op->ud);
  free(op);
}

static void dht_value_done(void *ud, int err, const uint8_t *val, size_t len) {
  np_dht_op *op = ud;
  dht_unlink(op);
  op->ending = 1;
  op->value_cb(err, err == 0 ? val : NULL, err == 0 ? len : 0, op->ud);
  free(op);
}

static void dht_count_done(void *ud, int err, size_t n) {
  np_dht_op *op = ud;
  dht_unlink(op);
  op->ending = 1;
  op->count_cb(err, err == 0 ? n : 0, op->ud);
  free(op);
}

static void dht_providers_done(void *ud, int err) {
  np_dht_op *op = ud;
  dht_unlink(op);
  op->ending = 1;
  op->count_cb(err, op->found, op->ud);
  free(op);
}

static void dht_provider_each(void *ud, const np_kad_provider *kp) {
  np_dht_op *op = ud;
  char txt[DHT_ADDRS_MAX][ADDR_TEXT_MAX];
  const char *ptr[DHT_ADDRS_MAX];
  char id[NP_PEERID_STRMAX];
  size_t n;
  if (op->canceled || op->each_cb == NULL)
    return;
  np_peerid_to_string(kp->id, id, sizeof(id));
  n = addrs_text(kp->addrs, kp->lens, kp->naddrs, txt, ptr);
  op->found++;
  op->in_each = 1;
  op->each_cb(id, n ? ptr : NULL, n, op->ud);
  op->in_each = 0;
  if (op->canceled) {
    /* Canceled from inside |each|: |op| was still in use until it
     * returned; now it goes, and the lookup with it. */
    np_kad *kad = op->kad;
    np_kad_lookup *lk = op->lk;
    dht_unlink(op);
    free(op);
    np_kad_cancel(kad, lk);
  }
}

/* Withdraw |op| (the plugin's cancel, or its unloading: |notify| then
 * runs its final callback with NP_ECANCELED first). */
static void dht_end(np_dht_op *op, int notify) {
  if (op->ending)
    return; /* inside its final callback: freed when that returns */
  if (op->in_each) {
    op->canceled = 1; /* dht_provider_each finishes the job */
    dht_unlink(op);
    return;
  }
  dht_unlink(op);
  np_kad_cancel(op->kad, op->lk);
  if (notify) {
    switch (op->kind) {
    case DHT_PEER:
      op->addrs_cb(NP_ECANCELED, NULL, 0, op->ud);
      break;
    case DHT_GET:
      op->value_cb(NP_ECANCELED, NULL, 0, op->ud);
      break;
    case DHT_COUNT:
      op->count_cb(NP_ECANCELED, 0, op->ud);
      break;
    default:
      op->count_cb(NP_ECANCELED, op->found, op->ud);
      break;
    }
  }
  free(op);
}

/* End every pending DHT operation of |p|; |notify| as dht_end. */
static void dht_release(np_plugin *p, int notify) {
  /* From the head each time: a callback may cancel another one. None can
   * start (unloading, or no DHT set meanwhile), so this ends. */
  while (!np_list_empty(&p->dht_ops))
    dht_end(np_list_entry(p->dht_ops.next, np_dht_op, link), notify);
}

static void api_dht_cancel(np_dht_op *op) {
  if (op != NULL)
    dht_end(op, 0);
}

static int api_dht_find_peer(np_plugin *p, const char *peer,
                             np_dht_addrs_cb done, void *ud, np_dht_op **pop) {
  np_peerid id;
  np_dht_op *op;
  int rv;
  if (pop)
    *pop = NULL;
  if (peer == NULL || done == NULL ||
      np_peerid_parse(&id, peer, strlen(peer)) != 0)
    return NP_EINVAL;
  if ((rv = dht_check(p)) != 0)
    return rv;
  if ((op = dht_op_new(p, DHT_PEER, ud)) == NULL)
    return NP_ENOMEM;
  op->addrs_cb = done;
  rv = np_kad_find_peer(p->pm->kad, &id, dht_peer_done, op, &op->lk);
  return dht_started(op, rv, pop);
}

static int api_dht_get_value(np_plugin *p, const uint8_t *key, size_t keylen,
                             np_done_cb done, void *ud, np_dht_op **pop) {
  np_dht_op *op;
  int rv;
  if (pop)
    *pop = NULL;
  if (key == NULL || keylen == 0 || done == NULL)
    return NP_EINVAL;
  if ((rv = dht_check(p)) != 0)
    return rv;
  if ((op = dht_op_new(p, DHT_GET, ud)) == NULL)
    return NP_ENOMEM;
  op->value_cb = done;
  rv = np_kad_get_value(p->pm->kad, key, keylen, dht_value_done, op, &op->lk);
  return dht_started(op, rv, pop);
}

static int api_dht_put_value(np_plugin *p, const uint8_t *key, size_t keylen,
                             const uint8_t *val, size_t len,
                             np_dht_count_cb done, void *ud, np_dht_op **pop) {
  np_dht_op *op;
  int rv;
  if (pop)
    *pop = NULL;
  if (key == NULL || keylen == 0 || (len && val == NULL) || done == NULL)
    return NP_EINVAL;
  if ((rv = dht_check(p)) != 0)
    return rv;
  if ((op = dht_op_new(p, DHT_COUNT, ud)) == NULL)
    return NP_ENOMEM;
  op->count_cb = done;
  rv = np_kad_put_value(p->pm->kad, key, keylen, val, len, dht_count_done, op,
                        &op->lk);
  return dht_started(op, rv, pop);
}

static int api_dht_provide(np_plugin *p, const uint8_t *key, size_t keylen,
                           np_dht_count_cb done, void *ud, np_dht_op **pop) {
  np_dht_op *op;
  int rv;
  if (pop)
    *pop = NULL;
  if (key == NULL || keylen == 0 || done == NULL)
    return NP_EINVAL;
  if ((rv = dht_check(p)) != 0)
    return rv;
  if ((op = dht_op_new(p, DHT_COUNT, ud)) == NULL)
    return NP_ENOMEM;
  op->count_cb = done;
  rv = np_kad_provide(p->pm->kad, key, keylen, dht_count_done, op, &op->lk);
  return dht_started(op, rv, pop);
}

static int api_dht_find_providers(np_plugin *p, const uint8_t *key,
                                  size_t keylen, size_t max,
                                  np_dht_provider_cb each, np_dht_count_cb done,
                                  void *ud, np_dht_op **pop) {
  np_dht_op *op;
  int rv;
  if (pop)
    *pop = NULL;
  if (key == NULL || keylen == 0 || each == NULL || done == NULL)
    return NP_EINVAL;
  if ((rv = dht_check(p)) != 0)
    return rv;
  if ((op = dht_op_new(p, DHT_PROVIDERS, ud)) == NULL)
    return NP_ENOMEM;
  op->each_cb = each;
  op->count_cb = done;
  rv = np_kad_find_providers(p->pm->kad, key, keylen, max, dht_provider_each,
                             dht_providers_done, op, &op->lk);
  return dht_started(op, rv, pop);
}

void np_plugins_set_dht(np_plugins *pm, np_kad *kad) {
  np_list *it;
  if (pm == NULL)
    return;
  /* Operations on the DHT that goes away end first; meanwhile none can
   * start (NP_ENOTSUP). */
  pm->kad = NULL;
  for (it = pm->plugins.next; it != &pm->plugins; it = it->next) {
    np_plugin *p = np_list_entry(it, np_plugin, link);
    dht_release(p, p->ready && !p->shut);
  }
  pm->kad = kad;
}

static const char *api_self_peer(np_plugin *p) {
  return p ? np_host_identity(p->pm->host)->id_str : NULL;
}

/* Named initializers: a member out of place cannot slip in unnoticed. */
static const np_host_api api_table = {
    .struct_size = sizeof(np_host_api),
    .abi_major = NP_ABI_MAJOR,
    .abi_minor = NP_ABI_MINOR,
    /* 1.0 */
    .strerror = np_strerror,
    .log = api_log,
    .conf_get = api_conf_get,
    .register_unary = api_register_unary,
    .register_stream = api_register_stream,
    .call_peer = api_call_peer,
    .call_reply = api_call_reply,
    .stream_write = api_stream_write,
    .stream_close = api_stream_close,
    .timer_start = api_timer_start,
    .timer_stop = api_timer_stop,
    /* 1.1 */
    .call_fail = api_call_fail,
    .call = api_call,
    .self_peer = api_self_peer,
    .stream_peer = api_stream_peer,
    .call_on_cancel = api_call_on_cancel,
    .open_stream = api_open_stream,
    .stream_set_ud = api_stream_set_ud,
    /* 1.2 */
    .stream_pause = api_stream_pause,
    .stream_reset = api_stream_reset,
    /* 1.3 */
    .dht_find_peer = api_dht_find_peer,
    .dht_get_value = api_dht_get_value,
    .dht_put_value = api_dht_put_value,
    .dht_provide = api_dht_provide,
    .dht_find_providers = api_dht_find_providers,
    .dht_cancel = api_dht_cancel,
};

const np_host_api *np_plugin_api(void) { return &api_table; }

/* ---- lifecycle ------------------------------------------------------------ */

static void release_resources(np_plugin *p) {
  np_list *it, *tmp;
  struct ev_loop *ev = np_loop_ev(np_host_loop(p->pm->host));
  /* Order: DHT operations, timers, streams, calls, then the plugin's
   * shutdown. A DHT operation hears NP_ECANCELED while the plugin still
   * runs; those started during or after its shutdown end silently. */
  dht_release(p, p->ready && !p->shut);
  np_list_for_each_safe(it, tmp, &p->timers) {
    np_timer *t = np_list_entry(it, np_timer, link);
    ev_timer_stop(ev, &t->w);
    np_list_remove(&t->link);
    free(t);
  }
  np_list_for_each_safe(it, tmp, &p->streams) {
    np_stream *s = np_list_entry(it, np_stream, owner_link);
    if (s->ops && s->ops->reset)
      s->ops->reset(s);
    np_stream_closed(s, NP_ECANCELED);
  }
  np_list_for_each_safe(it, tmp, &p->opening) {
    opening *op = np_list_entry(it, opening, link);
    void *net;
    const np_net_ops *ops = np_host_net(p->pm->host, &net);
    np_list_remove(&op->link);
    if (ops)
      ops->cancel(net, op->handle);
    free(op);
  }
  np_list_for_each_safe(it, tmp, &p->calls) {
    np_call_owner_gone(np_list_entry(it, np_call, owner_link));
  }
  np_list_for_each_safe(it, tmp, &p->outcalls) {
    outcall *oc = np_list_entry(it, outcall, link);
    np_list_remove(&oc->link);
    np_host_call_cancel(p->pm->host, oc->o);
    oc->done(NP_ECANCELED, NULL, 0, oc->ud);
    free(oc);
  }
  np_proto_remove_owner(np_host_protos(p->pm->host), p);
}

static void plugin_free(np_plugin *p) {
  for (size_t i = 0; i < p->nkv; i++) {
    free(p->kv[i].key);
    free(p->kv[i].value);
  }
  free(p->kv);
  free(p->name);
  free(p->path);
  free(p);
}

static void unload(np_plugin *p, const char *reason) {
  np_info("plugin", "unloaded name=%s file=%s reason=%s", p->name, p->path,
          reason);
  p->unloading = 1;
  release_resources(p);
  if (p->ready && p->desc.shutdown)
    p->desc.shutdown(p, p->ud);
  p->shut = 1;
  /* Anything the plugin started from inside its shutdown goes too. */
  release_resources(p);
  np_list_remove(&p->link);
  p->pm->n--;
  if (p->dl)
    dlclose(p->dl);
  plugin_free(p);
}

static int copy_section(np_plugin *p, const np_conf *conf) {
  const np_conf_plugin *s = np_conf_plugin_section(conf, p->name);
  if (s == NULL || s->n == 0)
    return 0;
  if ((p->kv = calloc(s->n, sizeof(*p->kv))) == NULL)
    return NP_ENOMEM;
  for (size_t i = 0; i < s->n; i++) {
    p->kv[i].key = strdup(s->kv[i].key);
    p->kv[i].value = strdup(s->kv[i].value);
    p->nkv = i + 1;
    if (p->kv[i].key == NULL || p->kv[i].value == NULL)
      return NP_ENOMEM;
  }
  return 0;
}

/* Same [plugin.NAME] content as the plugin was loaded with? */
static int section_same(const np_plugin *p, const np_conf *conf) {
  const np_conf_plugin *s = np_conf_plugin_section(conf, p->name);
  size_t n = s ? s->n : 0;
  if (n != p->nkv)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(s->kv[i].key, p->kv[i].key) != 0 ||
        strcmp(s->kv[i].value, p->kv[i].value) != 0)
      return 0;
  return 1;
}

static np_plugin *find_by_path(np_plugins *pm, const char *path) {
  np_list *it;
  for (it = pm->plugins.next; it != &pm->plugins; it = it->next) {
    np_plugin *p = np_list_entry(it, np_plugin, link);
    if (strcmp(p->path, path) == 0)
      return p;
  }
  return NULL;
}

static np_plugin *find_by_name(np_plugins *pm, const char *name) {
  np_list *it;
  for (it = pm->plugins.next; it != &pm->plugins; it = it->next) {
    np_plugin *p = np_list_entry(it, np_plugin, link);
    if (strcmp(p->name, name) == 0)
      return p;
  }
  return NULL;
}

static int denied(const np_conf *conf, const char *path, const char *name) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  for (size_t i = 0; i < conf->plugins.deny.n; i++) {
    const char *d = conf->plugins.deny.v[i];
    if ((name && strcmp(d, name) == 0) || strcmp(d, base) == 0 ||
        strcmp(d, path) == 0)
      return 1;
  }
  return 0;
}

static int valid_name(const char *s) {
  size_t n = 0;
  if (s == NULL)
    return 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return n > 0 && n <= 64;
}

static int refuse(const char *path, char *why, size_t whylen, int code,
                  const char *fmt, ...) NP_PRINTF(5, 6);
static int refuse(const char *path, char *why, size_t whylen, int code,
                  const char *fmt, ...) {
  char buf[1024], esc[1100];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  np_log_escape(esc, sizeof(esc), buf, strlen(buf));
  np_warn("plugin", "refused file=%s reason=\"%s\"", path, esc);
  if (why && whylen)
    snprintf(why, whylen, "%s", buf);
  return code;
}

static int load(np_plugins *pm, const np_conf *conf, const char *path,
                const struct stat *st, char *why, size_t whylen) {
  typedef const np_plugin_desc *(*entry_fn)(void);
  const np_plugin_desc *d;
  entry_fn entry;
  np_plugin *p, *other;
  void *dl;
  int rv;

  if (pm->n >= MAX_PLUGINS)
    return refuse(path, why, whylen, NP_ELIMIT, "more than %d plugins",
                  MAX_PLUGINS);
  /* dlopen of a FIFO would block the host forever. */
  if (!S_ISREG(st->st_mode))
    return refuse(path, why, whylen, NP_EINVAL, "not a regular file");
  dlerror();
  dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (dl == NULL) {
    const char *e = dlerror();
    return refuse(path, why, whylen, NP_EINVAL,
                  "dlopen failed: %s (check it with ldd)", e ? e : "?");
  }
  *(void **)(&entry) = dlsym(dl, NP_PLUGIN_ENTRY_SYMBOL);
  if (entry == NULL) {
    dlclose(dl);
    return refuse(path, why, whylen, NP_EINVAL,
                  "no entry point %s (was it built with NP_PLUGIN_DEFINE?)",
                  NP_PLUGIN_ENTRY_SYMBOL);
  }
  d = entry();
  if (d == NULL || d->struct_size < DESC_MIN_SIZE) {
    size_t got = d ? d->struct_size : 0;
    dlclose(dl);
    return refuse(path, why, whylen, NP_EINVAL,
                  "descriptor too small (%zu bytes, need at least %zu)", got,
                  (size_t)DESC_MIN_SIZE);
  }
  if (d->abi_major != NP_ABI_MAJOR) {
    unsigned maj = d->abi_major;
    dlclose(dl);
    return refuse(path, why, whylen, NP_ENOTSUP, "abi_major=%u, host speaks %d",
                  maj, NP_ABI_MAJOR);
  }
  if (!valid_name(d->name) || d->init == NULL) {
    /* |d| lives in the library: decide the message before dlclose. */
    const char *msg = d->init == NULL ? "descriptor has no init function"
                      : d->name == NULL
                          ? "descriptor name is NULL"
                          : "descriptor name is empty or not "
                            "[A-Za-z0-9_.-]{1,64}";
    dlclose(dl);
    return refuse(path, why, whylen, NP_EINVAL, "%s", msg);
  }
  if (denied(conf, path, d->name)) {
    char nm[80];
    snprintf(nm, sizeof(nm), "%s", d->name);
    dlclose(dl);
    return refuse(path, why, whylen, NP_EPERM,
                  "plugin %s is listed in [plugins] deny", nm);
  }
  if ((other = find_by_name(pm, d->name)) != NULL) {
    char nm[80];
    snprintf(nm, sizeof(nm), "%s", d->name);
    rv = refuse(path, why, whylen, NP_EEXIST,
                "name \"%s\" already used by the plugin loaded from %s", nm,
                other->path);
    dlclose(dl);
    return rv;
  }
  if ((p = calloc(1, sizeof(*p))) == NULL) {
    dlclose(dl);
    return NP_ENOMEM;
  }
  p->pm = pm;
  p->dl = dl;
  p->st = *st;
  np_list_init(&p->calls);
  np_list_init(&p->outcalls);
  np_list_init(&p->timers);
  np_list_init(&p->streams);
  np_list_init(&p->opening);
  np_list_init(&p->dht_ops);
  np_list_init(&p->link);
  /* Convert to the current descriptor: copy what the plugin has, the rest
   * stays zero (ngtcp2's versioned-struct rule). */
  memcpy(&p->desc, d,
         d->struct_size < sizeof(p->desc) ? d->struct_size : sizeof(p->desc));
  p->desc.struct_size = sizeof(p->desc);
  p->path = strdup(path);
  p->name = strdup(d->name);
  if (p->path == NULL || p->name == NULL || copy_section(p, conf) != 0) {
    p->dl = NULL;
    plugin_free(p);
    dlclose(dl);
    return NP_ENOMEM;
  }
  np_list_insert_tail(&pm->plugins, &p->link);
  pm->n++;
  p->in_init = 1;
  rv = p->desc.init(p, &api_table, &p->ud);
  p->in_init = 0;
  if (rv != 0) {
    char reason[700];
    if (!np_err_known(rv)) {
      /* Not one of ours: say what it returned, and refuse with EINVAL. */
      snprintf(reason, sizeof(reason),
               "init failed: returned %d, which is not an NP_E* code%s%s", rv,
               p->reg_err[0] ? "; " : "", p->reg_err);
      rv = NP_EINVAL;
    } else if (p->reg_err[0])
      snprintf(reason, sizeof(reason), "init failed: %s (%s)", p->reg_err,
               np_errname(rv));
    else
      snprintf(reason, sizeof(reason), "init failed: %s (%s)",
               np_strerror(rv), np_errname(rv));
    /* Roll back whatever init registered; no shutdown for a failed init. */
    p->unloading = 1;
    release_resources(p);
    np_list_remove(&p->link);
    pm->n--;
    rv = refuse(path, why, whylen, rv < 0 ? rv : NP_EINVAL, "%s", reason);
    plugin_free(p);
    dlclose(dl);
    return rv;
  }
  p->ready = 1;
  {
    char desc[200] = "";
    if (p->desc.description)
      np_log_escape(desc, sizeof(desc), p->desc.description,
                    strlen(p->desc.description));
    np_info("plugin",
            "loaded name=%s version=%s abi=%u.%u file=%s desc=\"%s\"",
            p->name, p->desc.version ? p->desc.version : "?",
            (unsigned)p->desc.abi_major, (unsigned)p->desc.abi_minor, p->path,
            desc);
  }
  return 0;
}

int np_plugins_new(np_plugins **pm, np_host *host) {
  np_plugins *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return NP_ENOMEM;
  m->host = host;
  np_list_init(&m->plugins);
  *pm = m;
  return 0;
}

void np_plugins_del(np_plugins *pm) {
  if (pm == NULL)
    return;
  /* Newest first: later plugins may use earlier ones. */
  while (!np_list_empty(&pm->plugins))
    unload(np_list_entry(pm->plugins.prev, np_plugin, link), "shutdown");
  free(pm);
}

int np_plugins_load_file(np_plugins *pm, const np_conf *conf, const char *path,
                         char *why, size_t whylen) {
  struct stat st;
  if (stat(path, &st) != 0)
    return refuse(path, why, whylen, NP_ENOENT, "cannot stat: %s",
                  strerror(errno));
  return load(pm, conf, path, &st, why, whylen);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The wanted set: sorted *.so of the folder, then explicit load entries. */
static int wanted_paths(const np_conf *conf, np_strv *out) {
  DIR *d;
  struct dirent *e;
  char path[4096];
  if (conf->plugins.autoload && conf->plugins.dir) {
    if ((d = opendir(conf->plugins.dir)) == NULL) {
      if (errno != ENOENT)
        np_warn("plugin", "dir-unreadable dir=%s err=\"%s\"",
                conf->plugins.dir, strerror(errno));
      else
        np_info("plugin", "dir-missing dir=%s", conf->plugins.dir);
    } else {
      while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n < 4 ||
            strcmp(e->d_name + n - 3, ".so") != 0)
          continue;
        if (out->n >= MAX_PLUGINS)
          break;
        snprintf(path, sizeof(path), "%s/%s", conf->plugins.dir, e->d_name);
        char **nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
        if (nv == NULL || (nv[out->n] = strdup(path)) == NULL) {
          if (nv)
            out->v = nv;
          closedir(d);
          return NP_ENOMEM;
        }
        out->v = nv;
        out->n++;
      }
      closedir(d);
      if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), cmp_str);
    }
  }
  for (size_t i = 0; i < conf->plugins.load.n; i++) {
    int dup = 0;
    for (size_t j = 0; j < out->n; j++)
      dup |= strcmp(out->v[j], conf->plugins.load.v[i]) == 0;
    if (dup)
      continue;
    char **nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
    if (nv == NULL)
      return NP_ENOMEM;
    out->v = nv;
    if ((out->v[out->n] = strdup(conf->plugins.load.v[i])) == NULL)
      return NP_ENOMEM;
    out->n++;
  }
  return 0;
}


static int same_file(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
         a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
         a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

int np_plugins_sync(np_plugins *pm, const np_conf *conf, np_plugins_result *r) {
  np_strv want = {NULL, 0};
  np_plugins_result res = {0, 0, 0, 0, 0};
  np_list *it, *tmp;
  int rv = wanted_paths(conf, &want);
  if (rv != 0) {
    np_strv_free(&want);
    return rv;
  }
  /* 1. Unload what is gone, denied, replaced on disk or reconfigured. */
  np_list_for_each_safe(it, tmp, &pm->plugins) {
    np_plugin *p = np_list_entry(it, np_plugin, link);
    struct stat st;
    int wanted = 0;
    for (size_t i = 0; i < want.n; i++)
      wanted |= strcmp(want.v[i], p->path) == 0;
    if (!wanted || stat(p->path, &st) != 0) {
      unload(p, "removed");
      res.unloaded++;
    } else if (denied(conf, p->path, p->name)) {
      unload(p, "denied");
      res.unloaded++;
    } else if (!same_file(&st, &p->st)) {
      /* glibc hands back the mapped object for the same path while it is
       * loaded: unload first, then load the new file below. */
      unload(p, "changed");
      res.reloaded++;
    } else if (!section_same(p, conf)) {
      unload(p, "reconfigured");
      res.reloaded++;
    }
  }
  /* 2. Load what is wanted and not loaded. */
  for (size_t i = 0; i < want.n; i++) {
    struct stat st;
    if (find_by_path(pm, want.v[i]) != NULL) {
      res.kept++;
      continue;
    }
    if (stat(want.v[i], &st) != 0) {
      refuse(want.v[i], NULL, 0, NP_ENOENT, "cannot stat: %s",
             strerror(errno));
      res.refused++;
      continue;
    }
    if (load(pm, conf, want.v[i], &st, NULL, 0) == 0)
      res.loaded++;
    else
      res.refused++;
  }
  /* A reload counted in step 1 is a load in step 2, not a fresh one. */
  res.loaded = res.loaded >= res.reloaded ? res.loaded - res.reloaded : 0;
  np_strv_free(&want);
  if (r)
    *r = res;
  return 0;
}

size_t np_plugins_count(const np_plugins *pm) { return pm->n; }

int np_plugins_info(const np_plugins *pm, size_t i, np_plugin_info *out) {
  const np_list *it = pm->plugins.next;
  for (; it != &pm->plugins && i > 0; it = it->next)
    i--;
  if (it == &pm->plugins)
    return NP_ENOENT;
  {
    const np_plugin *p = np_list_entry(it, np_plugin, link);
    out->name = p->name;
    out->version = p->desc.version ? p->desc.version : "";
    out->file = p->path;
    out->description = p->desc.description;
    out->abi_major = p->desc.abi_major;
    out->abi_minor = p->desc.abi_minor;
  }
  return 0;
}

