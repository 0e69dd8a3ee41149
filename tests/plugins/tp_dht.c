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

/* One per load (two hosts in one process share the mapped .so). */
typedef struct tp {
  const np_host_api *api;
  np_plugin *p;
  const char *mark;
} tp;

static unsigned late; /* callbacks that should never have run, any load */

/* One call in progress and the answer being built. */
typedef struct job {
  tp *t;
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
    j->t->api->call_reply(j->c, (const uint8_t *)j->out, j->len);
  free(j);
}

static job *job_new(np_call *c, void *ud) {
  tp *t = ud;
  job *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    t->api->call_fail(c, "out of memory");
    return NULL;
  }
  j->t = t;
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
  job *j = job_new(c, ud);
  char *peer = text(req, len);
  if (j && peer)
    started(j, j->t->api->dht_find_peer(j->t->p, peer, find_done, j, NULL));
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
  job *j = job_new(c, ud);
  if (j)
    started(j, j->t->api->dht_get_value(j->t->p, req, len, get_done, j, NULL));
}

/* "KEY\nVALUE" */
static void on_put(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c, ud);
  const uint8_t *nl = memchr(req, '\n', len);
  size_t klen = nl ? (size_t)(nl - req) : len;
  if (j == NULL)
    return;
  started(j, j->t->api->dht_put_value(j->t->p, req, klen, nl ? nl + 1 : NULL,
                                      nl ? len - klen - 1 : 0, count_done, j,
                                      NULL));
}

static void on_provide(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c, ud);
  if (j)
    started(j, j->t->api->dht_provide(j->t->p, req, len, count_done, j, NULL));
}

static void provider_each(const char *peer, const char *const *addrs, size_t n,
                          void *ud) {
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

static void on_providers(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c, ud);
  if (j)
    started(j,
            j->t->api->dht_find_providers(j->t->p, req, len, 0, provider_each,
                                          providers_done, j, NULL));
}

/* The first provider, then the operation is canceled from inside |each|:
 * its done must never run. */
static void first_each(const char *peer, const char *const *addrs, size_t n,
                       void *ud) {
  job *j = ud;
  (void)addrs, (void)n;
  put(j, "first %s", peer);
  j->t->api->call_reply(j->c, (const uint8_t *)j->out, j->len);
  j->replied = 1;
  j->t->api->dht_cancel(j->op);
  free(j);
}

static void first_done(int err, size_t n, void *ud) {
  (void)err, (void)n, (void)ud;
  late++;
}

static void on_first(np_call *c, const uint8_t *req, size_t len, void *ud) {
  job *j = job_new(c, ud);
  if (j)
    started(j, j->t->api->dht_find_providers(j->t->p, req, len, 0, first_each,
                                             first_done, j, &j->op));
}

/* dht_cancel from inside |done| is harmless (ASan: no double free). */
static void selfcancel_done(int err, const char *const *addrs, size_t n,
                            void *ud) {
  job *j = ud;
  j->t->api->dht_cancel(j->op);
  find_done(err, addrs, n, ud);
}

static void on_selfcancel(np_call *c, const uint8_t *req, size_t len,
                          void *ud) {
  job *j = job_new(c, ud);
  char *peer = text(req, len);
  if (j && peer)
    started(j, j->t->api->dht_find_peer(j->t->p, peer, selfcancel_done, j,
                                        &j->op));
  else if (j)
    finish(j);
  free(peer);
}

static void late_find(int err, const char *const *addrs, size_t n, void *ud) {
  (void)err, (void)addrs, (void)n, (void)ud;
  late++;
}

/* Start a lookup of the peer and withdraw it at once. */
static void on_cancel(np_call *c, const uint8_t *req, size_t len, void *ud) {
  tp *t = ud;
  char *peer = text(req, len);
  np_dht_op *op = NULL;
  int rv = peer ? t->api->dht_find_peer(t->p, peer, late_find, NULL, &op)
                : NP_ENOMEM;
  char b[32];
  free(peer);
  if (rv == 0) {
    t->api->dht_cancel(op);
    t->api->call_reply(c, (const uint8_t *)"canceled", 8);
    return;
  }
  snprintf(b, sizeof(b), "err=%d", rv);
  t->api->call_reply(c, (const uint8_t *)b, strlen(b));
}

static void on_late(np_call *c, const uint8_t *req, size_t len, void *ud) {
  tp *t = ud;
  char b[32];
  (void)req, (void)len;
  snprintf(b, sizeof(b), "late=%u", late);
  t->api->call_reply(c, (const uint8_t *)b, strlen(b));
}

/* Runs while the plugin is loaded, or ASan sees |t| used after free. */
static void hold_done(int err, const char *const *addrs, size_t n, void *ud) {
  tp *t = ud;
  FILE *f = t->mark ? fopen(t->mark, "a") : NULL;
  (void)addrs, (void)n;
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
                  {"tp.dht.selfcancel", on_selfcancel},
                  {"tp.dht.late", on_late}};
  const char *hold;
  tp *t;
  int rv = 0;
  if (!NP_HAS(api, dht_cancel)) {
    api->log(p, NP_LOG_ERROR, "host older than ABI 1.3: no DHT entries");
    return NP_ENOTSUP;
  }
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return NP_ENOMEM;
  t->api = api;
  t->p = p;
  t->mark = api->conf_get(p, "mark");
  for (size_t i = 0; rv == 0 && i < sizeof(handlers) / sizeof(handlers[0]); i++)
    rv = api->register_unary(p, handlers[i].proto, handlers[i].cb, t);
  if (rv == 0 && (hold = api->conf_get(p, "hold")) != NULL)
    rv = api->dht_find_peer(p, hold, hold_done, t, NULL);
  if (rv != 0) {
    free(t); /* no shutdown follows a failed init */
    return rv;
  }
  *ud = t;
  return 0;
}

static void fini(np_plugin *p, void *ud) {
  (void)p;
  free(ud); /* a DHT callback after this is a use after free */
}

NP_PLUGIN_DEFINE("tp_dht", "1.0.0", init, fini)
