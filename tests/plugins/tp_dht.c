/* Test plugin for the ABI 1.3 DHT entries: each unary handler runs one DHT
 * operation and answers with its outcome ("ok ..." or "err=CODE"), so a
 * test drives the table through calls. With [plugin.tp_dht] hold = PEER and
 * mark = FILE, init starts a lookup of PEER whose completion is appended
 * to FILE ("done err=CODE"): it shows when (and whether) a pending
 * operation ends as the plugin unloads or the host stops. */
#include <natpeer/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MAX 4096

typedef struct tp {
  const np_host_api *api;
  np_plugin *p;
  const char *mark;
  unsigned late; /* callbacks that should never have run */
} tp;

static tp g;

/* One call in progress and the answer being built. */
typedef struct job {
  np_call *c;
  np_dht_op *op;
  char out[OUT_MAX];
  size_t len;
  int replied;
} job;

static void put(job *j, const char *fmt, const char *s) {
  int n = snprintf(j->out + j->len, OUT_MAX - j->len, fmt, s);
  if (n > 0 && (size_t)n < OUT_MAX - j->len)
    j->len += (size_t)n;
}

static void put_err(job *j, int err) {
  char b[32];
  snprintf(b, sizeof(b), "%d", err);
  put(j, "err=%s", b);
}

static void finish(job *j) {
  if (!j->replied)
    g.api->call_reply(j->c, (const uint8_t *)j->out, j->len);
  free(j);
}

static job *job_new(np_call *c) {
  job *j = calloc(1, sizeof(*j));
  if (j == NULL)
    g.api->call_fail(c, "out of memory");
  else
    j->c = c;
  return j;
}

/* |rv| from a start: on failure, answer now. Returns 1 when started. */
static int started(job *j, int rv) {
  if (rv == 0)
    return 1;
  put_err(j, rv);
  finish(j);
  return 0;
}

/* Copy |req| as a C string (keys and peer IDs arrive as call bodies). */
static char *text(const uint8_t *req, size_t len) {
  char *s = malloc(len + 1);
  if (s) {
    memcpy(s, req, len);
    s[len] = 0;
  }
  return s;
}

static void count_done(int err, size_t n, void *ud) {
  job *j = ud;
  char b[32];
  snprintf(b, sizeof(b), "%zu", n);
  if (err)
    put_err(j, err);
  else
    put(j, "ok n=%s", b);
  finish(j);
}

static void find_done(int err, const char *const *addrs, size_t n, void *ud) {
  job *j = ud;
  char b[32];
  snprintf(b, sizeof(b), "%zu", n);
  if (err) {
    put_err(j, err);
  } else {
    put(j, "ok n=%s", b);
    for (size_t i = 0; i < n; i++)
      put(j, " %s", addrs[i]);
  }
  finish(j);
}

static void on_find(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c);
  char *peer = text(req, len);
  (void)ud;
  if (j && peer)
    started(j, g.api->dht_find_peer(g.p, peer, find_done, j, NULL));
  else if (j)
    finish(j);
  free(peer);
}

static void get_done(int err, const uint8_t *val, size_t len, void *ud) {
  job *j = ud;
  if (err) {
    put_err(j, err);
  } else {
    put(j, "ok %s", "");
    if (len > OUT_MAX - j->len)
      len = OUT_MAX - j->len;
    memcpy(j->out + j->len, val, len);
    j->len += len;
  }
  finish(j);
}

static void on_get(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c);
  (void)ud;
  if (j)
    started(j, g.api->dht_get_value(g.p, req, len, get_done, j, NULL));
}

/* "KEY\nVALUE" */
static void on_put(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c);
  const uint8_t *nl = memchr(req, '\n', len);
  size_t klen = nl ? (size_t)(nl - req) : len;
  (void)ud;
  if (j == NULL)
    return;
  started(j, g.api->dht_put_value(g.p, req, klen, nl ? nl + 1 : NULL,
                                  nl ? len - klen - 1 : 0, count_done, j,
                                  NULL));
}

static void on_provide(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c);
  (void)ud;
  if (j)
    started(j, g.api->dht_provide(g.p, req, len, count_done, j, NULL));
}

static void provider_each(const char *peer, const char *const *addrs,
                          size_t n, void *ud) {
  job *j = ud;
  (void)addrs, (void)n;
  put(j, " %s", peer);
}

static void providers_done(int err, size_t n, void *ud) {
  job *j = ud;
  char b[32], keep[OUT_MAX];
  size_t klen = j->len;
  memcpy(keep, j->out, klen);
  j->len = 0;
  snprintf(b, sizeof(b), "%zu", n);
  if (err)
    put_err(j, err);
  else
    put(j, "ok n=%s", b);
  if (klen > OUT_MAX - j->len)
    klen = OUT_MAX - j->len;
  memcpy(j->out + j->len, keep, klen);
  j->len += klen;
  finish(j);
}

static void on_providers(np_call *c, const uint8_t *req, size_t len,
                         void *ud) {
  job *j = job_new(c);
  (void)ud;
  if (j)
    started(j, g.api->dht_find_providers(g.p, req, len, 0, provider_each,
                                         providers_done, j, NULL));
}

/* The first provider, then the operation is canceled from inside |each|:
 * its done must never run. */
static void first_each(const char *peer, const char *const *addrs, size_t n,
                       void *ud) {
  job *j = ud;
  (void)addrs, (void)n;
  put(j, "first %s", peer);
  g.api->call_reply(j->c, (const uint8_t *)j->out, j->len);
  j->replied = 1;
  g.api->dht_cancel(j->op);
  free(j);
}

static void first_done(int err, size_t n, void *ud) {
  (void)err, (void)n, (void)ud;
  g.late++;
}

static void on_first(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c);
  (void)ud;
  if (j)
    started(j, g.api->dht_find_providers(g.p, req, len, 0, first_each,
                                         first_done, j, &j->op));
}

static void late_find(int err, const char *const *addrs, size_t n, void *ud) {
  (void)err, (void)addrs, (void)n, (void)ud;
  g.late++;
}

/* Start a lookup of the peer and withdraw it at once. */
static void on_cancel(np_call *c, const uint8_t *req, size_t len, void *ud) {
  char *peer = text(req, len);
  np_dht_op *op = NULL;
  int rv = peer ? g.api->dht_find_peer(g.p, peer, late_find, NULL, &op)
                : NP_ENOMEM;
  char b[32];
  (void)ud;
  free(peer);
  if (rv == 0) {
    g.api->dht_cancel(op);
    g.api->call_reply(c, (const uint8_t *)"canceled", 8);
    return;
  }
  snprintf(b, sizeof(b), "err=%d", rv);
  g.api->call_reply(c, (const uint8_t *)b, strlen(b));
}

static void on_late(np_call *c, const uint8_t *req, size_t len, void *ud) {
  char b[32];
  (void)req, (void)len, (void)ud;
  snprintf(b, sizeof(b), "late=%u", g.late);
  g.api->call_reply(c, (const uint8_t *)b, strlen(b));
}

static void hold_done(int err, const char *const *addrs, size_t n, void *ud) {
  FILE *f = g.mark ? fopen(g.mark, "a") : NULL;
  (void)addrs, (void)n, (void)ud;
  if (f) {
    fprintf(f, "done err=%d\n", err);
    fclose(f);
  }
}

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  static const struct {
    const char *proto;
    np_unary_cb cb;
  } handlers[] = {{"tp.dht.find", on_find},
                  {"tp.dht.get", on_get},
                  {"tp.dht.put", on_put},
                  {"tp.dht.provide", on_provide},
                  {"tp.dht.providers", on_providers},
                  {"tp.dht.first", on_first},
                  {"tp.dht.cancel", on_cancel},
                  {"tp.dht.late", on_late}};
  const char *hold;
  int rv;
  (void)ud;
  if (!NP_HAS(api, dht_cancel)) {
    api->log(p, NP_LOG_ERROR, "host older than ABI 1.3: no DHT entries");
    return NP_ENOTSUP;
  }
  memset(&g, 0, sizeof(g));
  g.api = api;
  g.p = p;
  g.mark = api->conf_get(p, "mark");
  for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
    if ((rv = api->register_unary(p, handlers[i].proto, handlers[i].cb,
                                  NULL)) != 0)
      return rv;
  if ((hold = api->conf_get(p, "hold")) != NULL &&
      (rv = api->dht_find_peer(p, hold, hold_done, NULL, NULL)) != 0)
    return rv;
  return 0;
}

static void fini(np_plugin *p, void *ud) {
  (void)p, (void)ud;
  g.api = NULL; /* a callback after this would crash the test */
}

NP_PLUGIN_DEFINE("tp_dht", "1.0.0", init, fini)
