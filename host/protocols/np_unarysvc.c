#include "np_unarysvc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_call.h"
#include "np_crypto.h"
#include "np_err.h"
#include "np_host.h"
#include "np_identify.h"
#include "np_list.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_stream.h"
#include "np_swarm.h"
#include "np_unary.h"

typedef struct np_unarysvc {
  np_host *h;
  np_list streams; /* every np_stream it holds (owner_link) */
  np_list calls;   /* outcall in flight */
} np_unarysvc;

/* One incoming call (the stream's ud). */
typedef struct uin {
  np_unarysvc *us;
  np_stream *s;
  np_lp_reader rd;
  np_call *call; /* the local call, until answered */
  uint8_t call_id[NP_UNARY_CALLID_LEN];
  int got; /* the request came: one per stream */
} uin;

/* One outgoing call. */
typedef struct outcall {
  np_list link; /* in us->calls */
  np_unarysvc *us;
  np_call_complete_fn done;
  void *ud;
  uint8_t *req; /* the whole frame, until written */
  size_t req_len;
  void *open;   /* the swarm's op until the stream is handed over */
  np_stream *s; /* then the stream, until the response */
  np_lp_reader rd;
  ev_timer timer;
  int timer_on;
  np_defer fail; /* errors reach the caller on the next turn */
  int err;
} outcall;

static size_t max_frame(np_unarysvc *us) {
  return np_host_conf(us->h)->limits.max_message + NP_UNARY_OVERHEAD;
}

/* What a stream may have queued: one answer at most (with slack, as the
 * swarm always allowed). */
static size_t send_cap(np_unarysvc *us) {
  return max_frame(us) + NP_IDENTIFY_MSG_OUT * 2;
}


/* ---- incoming
 * ------------------------------------------------------------------------ */

static void call_done(void *ud, int err, const uint8_t *data, size_t len) {
  uin *u = ud;
  np_unary_resp r;
  size_t cap;
  uint8_t *out;
  np_ssize n;
  char msg[256]; /* r.data may point here until the encode below */
  u->call = NULL;
  memset(&r, 0, sizeof(r));
  memcpy(r.call_id, u->call_id, NP_UNARY_CALLID_LEN);
  if (err == 0) {
    r.data = data;
    r.data_len = len;
  } else {
    r.is_error = 1;
    if (err == NP_EREMOTE) {
      r.data = data;
      r.data_len = len;
    } else {
      snprintf(msg, sizeof(msg), "%s", np_strerror(err));
      r.data = (const uint8_t *)msg;
      r.data_len = strlen(msg);
    }
  }
  cap = np_unary_resp_size(&r);
  if ((out = malloc(cap)) == NULL) {
    u->s->ops->reset(u->s);
    return;
  }
  n = np_unary_encode_resp(&r, out, cap);
  if (n < 0)
    u->s->ops->reset(u->s);
  else
    u->s->ops->send(u->s, out, (size_t)n, 1, send_cap(u->us));
  free(out);
}

static void in_request(uin *u, const uint8_t *msg, size_t len) {
  np_stream *s = u->s;
  np_unary_req r;
  char err[256];
  int rv = np_unary_parse_req(&r, msg, len, max_frame(u->us), err, sizeof(err));
  if (rv != 0) {
    char esc[300];
    np_log_escape(esc, sizeof(esc), err, strlen(err));
    np_warn("unary", "bad-request peer=%s err=\"%s\"", s->peer, esc);
    s->ops->reset(s);
    return;
  }
  memcpy(u->call_id, r.call_id, NP_UNARY_CALLID_LEN);
  /* The caller's stated target is ignored: the authenticated remote is the
   * caller, and the negotiated protocol names the handler. */
  rv = np_host_call_local(u->us->h, s->peer, s->name, s->name_len, r.call_id,
                          r.data, r.data_len, call_done, u, &u->call);
  np_unary_req_free(&r);
  if (rv != 0) {
    u->call = NULL;
    call_done(u, rv, NULL, 0);
  }
}

static void in_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  uin *u = ud;
  size_t off = 0;
  while (off < len) {
    const uint8_t *m;
    size_t ml;
    np_ssize n = np_lp_feed(&u->rd, data + off, len - off, &m, &ml);
    if (n < 0 || (m && u->got)) { /* one request per stream */
      np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
      s->ops->reset(s);
      if (u->call)
        np_call_caller_gone(u->call);
      np_lp_free(&u->rd);
      free(u);
      return;
    }
    off += (size_t)n;
    if (m) {
      u->got = 1;
      in_request(u, m, ml);
    }
  }
  /* len == 0: the caller finished writing; the answer still goes back. */
}

static void in_close(np_stream *s, int err, void *ud) {
  uin *u = ud;
  (void)s, (void)err;
  if (u->call)
    np_call_caller_gone(u->call);
  np_lp_free(&u->rd);
  free(u);
}

static void in_open(np_stream *s, void *ud) {
  np_unarysvc *us = ud;
  uin *u = calloc(1, sizeof(*u));
  np_list_insert_tail(&us->streams, &s->owner_link);
  if (u == NULL) {
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    s->ops->reset(s);
    return;
  }
  u->us = us;
  u->s = s;
  np_lp_init(&u->rd, max_frame(us));
  s->ud = u;
}

static const np_stream_cbs server_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = in_open,
    .on_data = in_data,
    .on_close = in_close,
};

/* ---- outgoing
 * ------------------------------------------------------------------------ */

static struct ev_loop *EV(np_unarysvc *us) {
  return np_loop_ev(np_host_loop(us->h));
}

/* Let go of the stream or the pending open, without a callback. */
static void oc_release(outcall *oc, int reset) {
  if (oc->open) {
    void *net;
    const np_net_ops *ops = np_host_net(oc->us->h, &net);
    if (ops)
      ops->cancel(net, oc->open);
    oc->open = NULL;
  }
  if (oc->s) {
    np_stream *s = oc->s;
    oc->s = NULL;
    np_swarm_stream_await(s, 0);
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    if (reset)
      s->ops->reset(s);
  }
  if (oc->timer_on) {
    ev_timer_stop(EV(oc->us), &oc->timer);
    oc->timer_on = 0;
  }
}

static void oc_free(outcall *oc) {
  np_loop_cancel(np_host_loop(oc->us->h), &oc->fail);
  np_list_remove(&oc->link);
  np_lp_free(&oc->rd);
  free(oc->req);
  free(oc);
}

static void deliver_fail(void *arg) {
  outcall *oc = arg;
  np_call_complete_fn done = oc->done;
  void *ud = oc->ud;
  int err = oc->err;
  oc_free(oc);
  done(ud, err, NULL, 0);
}

static void oc_fail(outcall *oc, int err, int reset) {
  oc_release(oc, reset);
  oc->err = err;
  np_loop_post(np_host_loop(oc->us->h), &oc->fail);
}

static void oc_response(outcall *oc, np_stream *s, const uint8_t *msg,
                        size_t len) {
  size_t max = np_host_conf(oc->us->h)->limits.max_message;
  np_unary_resp r;
  char err[256];
  int rv =
      np_unary_parse_resp(&r, msg, len, max_frame(oc->us), err, sizeof(err));
  if (rv == 0 && r.data_len > max) {
    /* Within the framing slack but over the limit: refused like a bigger
     * one, whatever the remote's own limit is. */
    np_unary_resp_free(&r);
    rv = NP_ELIMIT;
  }
  oc_release(oc, 0);
  /* Our side is done either way: FIN, and the stream closes once the
   * remote's FIN is in. */
  s->ops->close(s);
  if (rv != 0) {
    oc->err = rv;
    np_loop_post(np_host_loop(oc->us->h), &oc->fail);
    return;
  }
  oc->done(oc->ud, r.is_error ? NP_EREMOTE : 0, r.data, r.data_len);
  np_unary_resp_free(&r);
  oc_free(oc);
}

static void out_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  outcall *oc = ud;
  size_t off = 0;
  if (len == 0) { /* FIN before the response */
    oc_fail(oc, NP_ECLOSED, 1);
    return;
  }
  while (off < len) {
    const uint8_t *m;
    size_t ml;
    np_ssize n = np_lp_feed(&oc->rd, data + off, len - off, &m, &ml);
    if (n < 0) {
      oc_fail(oc, (int)n, 1);
      return;
    }
    off += (size_t)n;
    if (m) {
      oc_response(oc, s, m, ml); /* |oc| is gone */
      return;
    }
  }
}

static void out_close(np_stream *s, int err, void *ud) {
  outcall *oc = ud;
  (void)s;
  oc->s = NULL;
  oc_fail(oc, err ? err : NP_ECLOSED, 0);
}

static const np_stream_cbs client_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = out_data,
    .on_close = out_close,
};

static void opened(void *ud, int err, np_stream *s, const char *proto) {
  outcall *oc = ud;
  (void)proto;
  oc->open = NULL;
  if (err != 0) {
    oc_fail(oc, err, 0);
    return;
  }
  oc->s = s;
  np_stream_set_cbs(s, &client_cbs, oc);
  np_list_insert_tail(&oc->us->streams, &s->owner_link);
  np_lp_init(&oc->rd, max_frame(oc->us));
  np_swarm_stream_await(s, 1);
  /* A failure resets the stream; out_close follows and reports it. */
  s->ops->send(s, oc->req, oc->req_len, 0, send_cap(oc->us));
  free(oc->req);
  oc->req = NULL;
}

static void on_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  outcall *oc = np_container_of(w, outcall, timer);
  (void)ev, (void)revents;
  oc->timer_on = 0;
  oc_fail(oc, NP_ETIMEDOUT, 1);
}

static int remote_call(void *tud, const char *peer, const char *proto,
                       const uint8_t *call_id, const uint8_t *req, size_t len,
                       np_call_complete_fn done, void *ud, void **cancel) {
  np_unarysvc *us = tud;
  const char *protos[1] = {proto};
  uint64_t timeout = np_host_conf(us->h)->limits.call_timeout_ms;
  const np_net_ops *ops;
  np_unary_req r;
  np_peerid id;
  outcall *oc;
  void *net;
  np_ssize n;
  int rv;
  if (np_peerid_parse(&id, peer, strlen(peer)) != 0)
    return NP_EINVAL;
  if ((ops = np_host_net(us->h, &net)) == NULL)
    return NP_EUNREACH;
  if ((oc = calloc(1, sizeof(*oc))) == NULL)
    return NP_ENOMEM;
  memset(&r, 0, sizeof(r));
  if (call_id)
    memcpy(r.call_id, call_id, NP_UNARY_CALLID_LEN);
  else
    np_crypto_random(r.call_id, NP_UNARY_CALLID_LEN);
  r.peer = id.bytes;
  r.peer_len = id.len;
  r.proto = proto;
  r.data = req;
  r.data_len = len;
  oc->req_len = np_unary_req_size(&r);
  if ((oc->req = malloc(oc->req_len)) == NULL) {
    free(oc);
    return NP_ENOMEM;
  }
  if ((n = np_unary_encode_req(&r, oc->req, oc->req_len)) < 0) {
    free(oc->req);
    free(oc);
    return (int)n;
  }
  oc->req_len = (size_t)n;
  oc->us = us;
  oc->done = done;
  oc->ud = ud;
  np_defer_init(&oc->fail, deliver_fail, oc);
  np_list_insert_tail(&us->calls, &oc->link);
  if (timeout) {
    ev_timer_init(&oc->timer, on_timeout, (double)timeout / 1000.0, 0.);
    ev_timer_start(EV(us), &oc->timer);
    oc->timer_on = 1;
  }
  *cancel = oc;
  /* |opened| may run from inside this call, on a connection that exists. */
  rv = ops->open_stream(net, &id, protos, 1, NP_NET_LAZY, 0, opened, oc,
                        &oc->open);
  if (rv != 0) {
    *cancel = NULL;
    oc_release(oc, 0);
    oc_free(oc);
  }
  return rv;
}

static void remote_cancel(void *tud, void *handle) {
  outcall *oc = handle;
  (void)tud;
  oc_release(oc, 1);
  oc_free(oc);
}

/* ---- np_module
 * ----------------------------------------------------------------------- */

static void unarysvc_stop(void *state) {
  np_unarysvc *us = state;
  if (us == NULL)
    return;
  np_host_set_remote(us->h, NULL, NULL, NULL);
  np_host_set_unary_server(us->h, NULL, NULL);
  while (!np_list_empty(&us->calls)) {
    outcall *oc = np_list_entry(us->calls.next, outcall, link);
    np_call_complete_fn done = oc->done;
    void *ud = oc->ud;
    oc_release(oc, 1);
    oc_free(oc);
    done(ud, NP_ECANCELED, NULL, 0);
  }
  while (!np_list_empty(&us->streams))
    np_stream_abandon(np_list_entry(us->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  free(us);
}

static int unarysvc_start(np_host *h, void **state) {
  np_unarysvc *us = calloc(1, sizeof(*us));
  if (us == NULL)
    return NP_ENOMEM;
  us->h = h;
  np_list_init(&us->streams);
  np_list_init(&us->calls);
  np_host_set_remote(h, remote_call, remote_cancel, us);
  np_host_set_unary_server(h, &server_cbs, us);
  *state = us;
  return 0;
}

const np_module np_unarysvc_module = {"unary", unarysvc_start, unarysvc_stop};
