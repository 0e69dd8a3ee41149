#include "np_ping.h"

#include <stdlib.h>
#include <string.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_host.h"
#include "np_list.h"
#include "np_peerstore.h"
#include "np_stream.h"
#include "np_swarm.h"

#define PING_BACKLOG_MAX (64 * 1024) /* unread echo before a reset */

typedef struct np_ping {
  np_host *h;
  np_swarm *sw;
  np_list streams; /* every np_stream it holds (owner_link) */
  np_list pings;   /* pingop */
} np_ping;

/* One ping we send. */
typedef struct pingop {
  np_list link; /* in pm->pings */
  np_ping *pm;
  np_net_ping_fn cb;
  void *ud;
  void *open;   /* the swarm's op until the stream is handed over */
  np_stream *s; /* then the stream */
  uint8_t data[NP_PING_LEN];
  size_t got;
  double t0;
  ev_timer timer;
  int timer_on;
  np_defer fail; /* errors reach the caller on the next turn */
  int err;
} pingop;

static struct ev_loop *EV(np_ping *pm) {
  return np_loop_ev(np_host_loop(pm->h));
}


/* ---- answering
 * ----------------------------------------------------------------------- */

/* Echo what comes, FIN after the remote's. A remote that sends without
 * reading the echo is cut off at PING_BACKLOG_MAX (send resets). */
static void echo_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  (void)ud;
  s->ops->send(s, data, len, len == 0, PING_BACKLOG_MAX);
}

static const np_stream_cbs echo_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = echo_data,
    .on_close = np_stream_ignore_close,
};

/* ---- pinging
 * ------------------------------------------------------------------------- */

/* Let go of the stream or the pending open, without a callback. */
static void pop_release(pingop *p, int reset) {
  if (p->open) {
    void *net;
    const np_net_ops *ops = np_host_net(p->pm->h, &net);
    if (ops)
      ops->cancel(net, p->open);
    p->open = NULL;
  }
  if (p->s) {
    np_stream *s = p->s;
    p->s = NULL;
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    if (reset)
      s->ops->reset(s);
  }
  if (p->timer_on) {
    ev_timer_stop(EV(p->pm), &p->timer);
    p->timer_on = 0;
  }
}

static void pop_free(pingop *p) {
  np_loop_cancel(np_host_loop(p->pm->h), &p->fail);
  np_list_remove(&p->link);
  free(p);
}

static void deliver_fail(void *arg) {
  pingop *p = arg;
  np_net_ping_fn cb = p->cb;
  void *ud = p->ud;
  int err = p->err;
  pop_free(p);
  cb(ud, err, -1);
}

static void pop_fail(pingop *p, int err, int reset) {
  pop_release(p, reset);
  p->err = err;
  np_loop_post(np_host_loop(p->pm->h), &p->fail);
}

static void out_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  pingop *p = ud;
  size_t take = len < NP_PING_LEN - p->got ? len : NP_PING_LEN - p->got;
  int64_t rtt;
  np_ps_peer *pp;
  if (len == 0) { /* FIN before the whole echo */
    pop_fail(p, NP_ECLOSED, 1);
    return;
  }
  if (memcmp(p->data + p->got, data, take) != 0) {
    pop_fail(p, NP_EPROTO, 1);
    return;
  }
  p->got += take;
  if (p->got < NP_PING_LEN)
    return;
  rtt = (int64_t)((ev_time() - p->t0) * 1e6);
  if ((pp = np_peerstore_get(np_host_peerstore(p->pm->h), &s->peer_id)))
    pp->rtt_us = rtt;
  pop_release(p, 0);
  s->ops->close(s);
  p->cb(p->ud, 0, rtt);
  pop_free(p);
}

static void out_close(np_stream *s, int err, void *ud) {
  pingop *p = ud;
  (void)s;
  p->s = NULL;
  pop_fail(p, err ? err : NP_ECLOSED, 0);
}

static const np_stream_cbs out_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = out_data,
    .on_close = out_close,
};

static void opened(void *ud, int err, np_stream *s, const char *proto) {
  pingop *p = ud;
  (void)proto;
  p->open = NULL;
  if (err != 0) {
    pop_fail(p, err, 0);
    return;
  }
  p->s = s;
  np_stream_set_cbs(s, &out_cbs, p);
  np_list_insert_tail(&p->pm->streams, &s->owner_link);
  np_crypto_random(p->data, NP_PING_LEN);
  p->t0 = ev_time();
  /* A failure resets the stream; out_close follows and reports it. */
  s->ops->send(s, p->data, NP_PING_LEN, 0, PING_BACKLOG_MAX);
}

static void on_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  pingop *p = np_container_of(w, pingop, timer);
  (void)ev, (void)revents;
  p->timer_on = 0;
  pop_fail(p, NP_ETIMEDOUT, 1);
}

static pingop *pop_new(np_ping *pm, uint64_t timeout_ms, np_net_ping_fn cb,
                       void *ud) {
  pingop *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return NULL;
  p->pm = pm;
  p->cb = cb;
  p->ud = ud;
  np_defer_init(&p->fail, deliver_fail, p);
  np_list_insert_tail(&pm->pings, &p->link);
  if (timeout_ms) {
    ev_timer_init(&p->timer, on_timeout, (double)timeout_ms / 1000.0, 0.);
    ev_timer_start(EV(pm), &p->timer);
    p->timer_on = 1;
  }
  return p;
}

/* The swarm's prober: a ping on connection |c|. The swarm runs it for
 * liveness and for np_net_ops ping (on the peer's best connection). */
static int ping_conn(void *pud, const np_conn *c, uint64_t timeout_ms,
                     np_net_ping_fn cb, void *ud, void **handle) {
  np_ping *pm = pud;
  pingop *p = pop_new(pm, timeout_ms, cb, ud);
  int rv;
  if (p == NULL)
    return NP_ENOMEM;
  *handle = p;
  rv = np_swarm_conn_open(pm->sw, c, NP_PING_PROTOCOL, opened, p, &p->open);
  if (rv != 0) {
    *handle = NULL;
    p->open = NULL;
    pop_release(p, 0);
    pop_free(p);
  }
  return rv;
}

static void ping_cancel(void *pud, void *handle) {
  pingop *p = handle;
  (void)pud;
  pop_release(p, 1);
  pop_free(p);
}

static const np_swarm_prober prober = {ping_conn, ping_cancel};

/* ---- np_module
 * ----------------------------------------------------------------------- */

static void ping_stop(void *state) {
  np_ping *pm = state;
  if (pm == NULL)
    return;
  np_swarm_set_prober(pm->sw, NULL, NULL); /* withdraws the probes */
  np_proto_remove_owner(np_host_protos(pm->h), pm);
  while (!np_list_empty(&pm->pings)) {
    pingop *p = np_list_entry(pm->pings.next, pingop, link);
    np_net_ping_fn cb = p->cb;
    void *ud = p->ud;
    pop_release(p, 1);
    pop_free(p);
    cb(ud, NP_ECANCELED, -1);
  }
  while (!np_list_empty(&pm->streams))
    np_stream_abandon(np_list_entry(pm->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  free(pm);
}

static int ping_start(np_host *h, void **state) {
  np_ping *pm = calloc(1, sizeof(*pm));
  np_handler hd;
  int rv;
  if (pm == NULL)
    return NP_ENOMEM;
  pm->h = h;
  pm->sw = np_host_swarm(h);
  np_list_init(&pm->streams);
  np_list_init(&pm->pings);
  if (pm->sw == NULL) {
    free(pm);
    return NP_EINVAL;
  }
  memset(&hd, 0, sizeof(hd));
  hd.proto = (char *)NP_PING_PROTOCOL;
  hd.kind = NP_HANDLER_STREAM;
  hd.owner_kind = NP_OWNER_HOST;
  hd.owner = pm;
  hd.owner_name = "ping";
  hd.stream = echo_cbs;
  hd.ud = pm;
  hd.streams = &pm->streams;
  hd.max_streams = NP_PROTO_UNLIMITED; /* bounded per connection */
  if ((rv = np_proto_add(np_host_protos(h), &hd, NULL)) != 0) {
    free(pm);
    return rv;
  }
  np_swarm_set_prober(pm->sw, &prober, pm);
  *state = pm;
  return 0;
}

const np_module np_ping_module = {"ping", ping_start, ping_stop};
