#include "np_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_host.h"
#include "np_loop.h"

static void call_free(np_call *c) {
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
  if (np_loop_defer(np_host_loop(host), run_handler, c) != 0) {
    free(c->req);
    free(c);
    return NP_ENOMEM;
  }
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

int np_call_reply(np_call *c, const uint8_t *resp, size_t len) {
  if (c == NULL || c->state != NP_CALL_PENDING || (len && resp == NULL))
    return NP_EINVAL;
  finish(c, 0, resp, len);
  return 0;
}

int np_call_fail(np_call *c, const char *msg) {
  if (c == NULL || c->state != NP_CALL_PENDING)
    return NP_EINVAL;
  if (msg == NULL)
    msg = "handler error";
  finish(c, NP_EREMOTE, (const uint8_t *)msg, strlen(msg));
  return 0;
}
