#include "np_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_host.h"
#include "np_log.h"
#include "np_loop.h"

/* Every allocated np_call, so that a handle a plugin keeps after answering
 * (a second call_reply, a late call_fail) is recognised as stale instead of
 * being read after free. Open addressing with linear probing and
 * tombstones; one set per process (the host is single-threaded). A handle
 * reused by a newer call at the same address cannot be told apart: the
 * worst a plugin can then do is answer that newer call. */
#define SET_TOMB ((const np_call *)1)
static const np_call **set_v;
static size_t set_cap, set_used, set_live; /* used counts tombstones */

static size_t set_hash(const np_call *c, size_t cap) {
  uint64_t x = (uint64_t)(uintptr_t)c;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x & (cap - 1);
}

static int set_grow(void) {
  size_t ncap = set_live * 4 >= set_cap ? (set_cap ? set_cap * 2 : 64) : set_cap;
  const np_call **nv = calloc(ncap, sizeof(*nv));
  if (nv == NULL)
    return NP_ENOMEM;
  for (size_t i = 0; i < set_cap; i++)
    if (set_v[i] && set_v[i] != SET_TOMB) {
      size_t j = set_hash(set_v[i], ncap);
      while (nv[j])
        j = (j + 1) & (ncap - 1);
      nv[j] = set_v[i];
    }
  free(set_v);
  set_v = nv;
  set_cap = ncap;
  set_used = set_live;
  return 0;
}

static int set_add(const np_call *c) {
  size_t i;
  if ((set_used + 1) * 2 > set_cap && set_grow() != 0)
    return NP_ENOMEM;
  for (i = set_hash(c, set_cap); set_v[i] && set_v[i] != SET_TOMB;
       i = (i + 1) & (set_cap - 1))
    ;
  if (set_v[i] == NULL)
    set_used++;
  set_v[i] = c;
  set_live++;
  return 0;
}

static size_t set_find(const np_call *c) {
  if (set_cap == 0 || c == NULL)
    return SIZE_MAX;
  for (size_t i = set_hash(c, set_cap), n = 0; set_v[i] && n < set_cap;
       i = (i + 1) & (set_cap - 1), n++)
    if (set_v[i] == c)
      return i;
  return SIZE_MAX;
}

static void set_del(const np_call *c) {
  size_t i = set_find(c);
  if (i == SIZE_MAX)
    return;
  set_v[i] = SET_TOMB;
  if (--set_live == 0) { /* empty: start clean, no tombstones kept */
    free(set_v);
    set_v = NULL;
    set_cap = set_used = 0;
  }
}

int np_call_live(const np_call *c) {
  return set_find(c) != SIZE_MAX && c->state != NP_CALL_DEAD;
}

static void call_free(np_call *c) {
  set_del(c);
  np_list_remove(&c->owner_link);
  np_host_calls_add(c->host, -1);
  free(c->req);
  free(c);
}

static void run_handler(void *arg) {
  np_call *c = arg;
  uint8_t *req;
  size_t len;
  if (c->state == NP_CALL_DEAD) {
    call_free(c);
    return;
  }
  c->state = NP_CALL_PENDING;
  /* The handler may answer (and so free c) from inside cb: take the request
   * out of c first and free it afterwards. */
  req = c->req;
  len = c->req_len;
  c->req = NULL;
  c->cb(c, req ? req : (const uint8_t *)"", len, c->cb_ud);
  free(req);
}

int np_call_dispatch(np_host *host, const np_handler *h, np_list *owner_list,
                     const char *caller_peer, const uint8_t *req, size_t len,
                     np_call_complete_fn done, void *done_ud, np_call **pc) {
  return np_call_dispatch_id(host, h, owner_list, caller_peer, NULL, req, len,
                             done, done_ud, pc);
}

int np_call_dispatch_id(np_host *host, const np_handler *h,
                        np_list *owner_list, const char *caller_peer,
                        const uint8_t *call_id, const uint8_t *req, size_t len,
                        np_call_complete_fn done, void *done_ud,
                        np_call **pc) {
  np_call *c;
  if (!np_host_calls_admit(host))
    return NP_ELIMIT;
  if ((c = calloc(1, sizeof(*c))) == NULL)
    return NP_ENOMEM;
  if (len && (c->req = malloc(len)) == NULL) {
    free(c);
    return NP_ENOMEM;
  }
  if (len)
    memcpy(c->req, req, len);
  c->req_len = len;
  c->host = host;
  c->cb = h->unary;
  c->cb_ud = h->ud;
  c->done = done;
  c->done_ud = done_ud;
  c->state = NP_CALL_QUEUED;
  if (call_id)
    memcpy(c->call_id, call_id, sizeof(c->call_id));
  else
    np_crypto_random(c->call_id, sizeof(c->call_id));
  snprintf(c->peer, sizeof(c->peer), "%s", caller_peer ? caller_peer : "");
  np_list_init(&c->owner_link);
  if (set_add(c) != 0) {
    free(c->req);
    free(c);
    return NP_ENOMEM;
  }
  np_defer_init(&c->run, run_handler, c);
  np_loop_post(np_host_loop(host), &c->run);
  np_host_calls_add(host, +1);
  np_list_insert_tail(owner_list, &c->owner_link);
  if (pc)
    *pc = c;
  return 0;
}

/* Finish |c| toward its caller. A queued call is freed by its turn. */
static void finish(np_call *c, int err, const uint8_t *data, size_t len) {
  np_call_complete_fn done = c->done;
  void *ud = c->done_ud;
  int queued = c->state == NP_CALL_QUEUED;
  c->done = NULL;
  c->state = NP_CALL_DEAD;
  np_list_remove(&c->owner_link);
  if (!queued)
    call_free(c);
  if (done)
    done(ud, err, data, len);
}

void np_call_caller_gone(np_call *c) {
  void (*cb)(np_call *, void *) = c->cancel_cb;
  void *cud = c->cancel_ud;
  int pending = c->state == NP_CALL_PENDING;
  c->done = NULL;
  c->cancel_cb = NULL;
  /* Tell the handler while |c| is still valid, then free it. */
  if (pending && cb)
    cb(c, cud);
  finish(c, 0, NULL, 0);
}

void np_call_owner_gone(np_call *c) {
  static const char msg[] = "handler unloaded";
  c->cancel_cb = NULL;
  finish(c, NP_ECANCELED, (const uint8_t *)msg, sizeof(msg) - 1);
}

/* A handle that is not a call waiting for its answer. */
static int stale(const np_call *c, const char *what) {
  if (set_find(c) != SIZE_MAX && c->state == NP_CALL_PENDING)
    return 0;
  np_warn("call", "%s-refused reason=\"call already answered or gone\" "
          "handle=%p", what, (const void *)c);
  return 1;
}

int np_call_reply(np_call *c, const uint8_t *resp, size_t len) {
  if (stale(c, "reply"))
    return NP_EINVAL;
  if (len && resp == NULL)
    return NP_EINVAL;
  if (len > np_host_conf(c->host)->limits.max_message) {
    /* The caller could not take it: it gets this error instead, so every
     * oversized answer fails its own call the same way. */
    char msg[160];
    snprintf(msg, sizeof(msg),
             "response of %zu bytes exceeds max_message (%llu bytes)", len,
             (unsigned long long)np_host_conf(c->host)->limits.max_message);
    np_info("call", "response-too-large bytes=%zu", len);
    finish(c, NP_EREMOTE, (const uint8_t *)msg, strlen(msg));
    return NP_ELIMIT;
  }
  finish(c, 0, resp, len);
  return 0;
}

int np_call_fail(np_call *c, const char *msg) {
  if (stale(c, "fail"))
    return NP_EINVAL;
  if (msg == NULL)
    msg = "handler error";
  finish(c, NP_EREMOTE, (const uint8_t *)msg, strlen(msg));
  return 0;
}
