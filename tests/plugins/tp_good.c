/* Test plugin: unary "tp.good" answers "<greeting>:<request>"; "tp.selfcall"
 * calls this host's own "hello" from a timer and answers with the result
 * (exercises timers, api->call and deferred replies). REPLY_TAG is set at
 * build time so two builds can stand for an old and a new version. */
#include <natpeer/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef REPLY_TAG
#define REPLY_TAG "good"
#endif
#ifndef PLUGIN_NAME
#define PLUGIN_NAME "tp_good"
#endif
#ifndef PROTO_PREFIX
#define PROTO_PREFIX "tp."
#endif

typedef struct pending pending;

typedef struct st {
  const np_host_api *api;
  np_plugin *p;
  const char *greeting;
  pending *pend; /* selfcalls in progress: freed at shutdown if still there
                    (the host drops a plugin's timers without calling them) */
} st;

struct pending {
  st *s;
  np_call *c;
  pending *next, **prev;
  char peer[128]; /* whom to call from the timer; "" = this host */
};

static void pending_free(pending *pd) {
  *pd->prev = pd->next;
  if (pd->next)
    pd->next->prev = pd->prev;
  free(pd);
}

static void on_good(np_call *c, const uint8_t *req, size_t len, void *ud) {
  st *s = ud;
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "%s:%s:%.*s:%s", REPLY_TAG, s->greeting,
                   (int)(len > 256 ? 256 : len), (const char *)req,
                   s->api->call_peer(c));
  s->api->call_reply(c, (const uint8_t *)buf, (size_t)n);
}

static void on_hello_done(int err, const uint8_t *resp, size_t len, void *ud) {
  pending *pd = ud;
  if (err == 0)
    pd->s->api->call_reply(pd->c, resp, len);
  else
    pd->s->api->call_fail(pd->c, pd->s->api->strerror(err));
  pending_free(pd);
}

static void on_timer(np_timer *t, void *ud) {
  pending *pd = ud;
  int rv;
  (void)t;
  rv = pd->s->api->call(pd->s->p,
                        pd->peer[0] ? pd->peer
                                    : pd->s->api->self_peer(pd->s->p),
                        "hello", NULL, 0, on_hello_done, pd);
  if (rv < 0) {
    pd->s->api->call_fail(pd->c, pd->s->api->strerror(rv));
    pending_free(pd);
  }
}

/* "tp.selfcall": call hello from a timer; the request (if any) names the
 * peer to call, else this host. */
static void on_selfcall(np_call *c, const uint8_t *req, size_t len,
                        void *ud) {
  st *s = ud;
  pending *pd = calloc(1, sizeof(*pd));
  if (pd == NULL) {
    s->api->call_fail(c, "out of memory");
    return;
  }
  pd->s = s;
  pd->c = c;
  pd->next = s->pend;
  pd->prev = &s->pend;
  if (s->pend)
    s->pend->prev = &pd->next;
  s->pend = pd;
  if (len > 0 && len < sizeof(pd->peer))
    memcpy(pd->peer, req, len);
  if (s->api->timer_start(s->p, NULL, 10, on_timer, pd) < 0) {
    s->api->call_fail(c, "timer");
    pending_free(pd);
  }
}

static void on_never(np_call *c, const uint8_t *req, size_t len, void *ud) {
  (void)c, (void)req, (void)len, (void)ud; /* never answers */
}

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  st *s;
  int rv;
  if (!NP_HAS(api, call))
    return NP_ENOTSUP;
  if ((s = calloc(1, sizeof(*s))) == NULL)
    return NP_ENOMEM;
  s->api = api;
  s->p = p;
  s->greeting = api->conf_get(p, "greeting");
  if (s->greeting == NULL)
    s->greeting = "hi";
  rv = api->register_unary(p, PROTO_PREFIX "good", on_good, s);
  if (rv == 0)
    rv = api->register_unary(p, PROTO_PREFIX "selfcall", on_selfcall, s);
  if (rv == 0)
    rv = api->register_unary(p, PROTO_PREFIX "never", on_never, s);
  if (rv < 0) {
    free(s);
    return rv;
  }
  api->log(p, NP_LOG_INFO, "ready greeting=%s", s->greeting);
  *ud = s;
  return 0;
}

static void shutdown_(np_plugin *p, void *ud) {
  st *s = ud;
  s->api->log(p, NP_LOG_INFO, "shutdown");
  while (s->pend)
    pending_free(s->pend);
  free(ud);
}

NP_PLUGIN_DEFINE2(PLUGIN_NAME, "1.0.0", init, shutdown_, "unit-test plugin")
