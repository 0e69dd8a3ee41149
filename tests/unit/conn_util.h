/* Shared by the np_conn transport tests (test_ttcp, test_tmem): nodes
 * that record every np_conn event, stream drivers (send a pattern, sink
 * and check it, echo), and contract checks: no event from inside an ops
 * call, nothing after a stream's or connection's last event, every stream
 * closed before its connection goes down. Every wait is bounded. */
#ifndef NP_CONN_UTIL_H
#define NP_CONN_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_conn.h"
#include "np_err.h"
#include "np_identity.h"
#include "np_loop.h"
#include "np_multiaddr.h"
#include "tap.h"

#define CU_CHUNK 65536

static struct ev_loop *EV;
static np_loop *LOOP;
static ev_timer cu_guard;
static int cu_guard_fired;
static double cu_wait_secs = 10.0;
static int cu_in_op;      /* > 0 while the test is inside an ops call */
static int cu_violations; /* contract breaches seen by the callbacks */

static void cu_guard_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev, (void)w, (void)revents;
  cu_guard_fired = 1;
}

/* Runs the loop until |cond| holds or cu_wait_secs pass. */
#define WAIT_FOR(cond)                                                         \
  do {                                                                         \
    cu_guard_fired = 0;                                                        \
    ev_timer_set(&cu_guard, cu_wait_secs, 0.);                                 \
    ev_timer_start(EV, &cu_guard);                                             \
    while (!(cond) && !cu_guard_fired)                                         \
      ev_run(EV, EVRUN_ONCE);                                                  \
    ev_timer_stop(EV, &cu_guard);                                              \
  } while (0)

/* Runs the loop for |secs| whatever happens. */
static void cu_run_for(double secs) {
  cu_guard_fired = 0;
  ev_timer_set(&cu_guard, secs, 0.);
  ev_timer_start(EV, &cu_guard);
  while (!cu_guard_fired)
    ev_run(EV, EVRUN_ONCE);
}

/* Ops calls go through OP() so that an event fired from inside is seen. */
#define OP(expr)                                                               \
  __extension__({                                                              \
    long v_;                                                                   \
    cu_in_op++;                                                                \
    v_ = (long)(expr);                                                         \
    cu_in_op--;                                                                \
    v_;                                                                        \
  })
#define OPV(expr)                                                              \
  do {                                                                         \
    cu_in_op++;                                                                \
    expr;                                                                      \
    cu_in_op--;                                                                \
  } while (0)

/* Everything the tests allocate, freed at the end (ASan's leak check
 * then covers the transports alone). */
static void **cu_allocs;
static size_t cu_nallocs, cu_capallocs;

static void *cu_alloc(size_t n) {
  void *p = calloc(1, n);
  if (p == NULL)
    abort();
  if (cu_nallocs == cu_capallocs) {
    cu_capallocs = cu_capallocs ? cu_capallocs * 2 : 256;
    cu_allocs = realloc(cu_allocs, cu_capallocs * sizeof(*cu_allocs));
    if (cu_allocs == NULL)
      abort();
  }
  cu_allocs[cu_nallocs++] = p;
  return p;
}

static void cu_free_all(void) {
  for (size_t i = 0; i < cu_nallocs; i++)
    free(cu_allocs[i]);
  free(cu_allocs);
  cu_allocs = NULL;
  cu_nallocs = cu_capallocs = 0;
}

static uint8_t cu_pattern(int k, size_t i) {
  return (uint8_t)(i * 31 + (size_t)k * 7 + (i >> 9));
}

enum { M_SINK = 0, M_ECHO = 1, M_SEND = 2 };

typedef struct tnode tnode;

typedef struct tconn {
  tnode *n;
  np_conn *c;
  int up, down, err, credits, nstreams;
} tconn;

typedef struct tstream {
  tnode *n;
  tconn *tc;
  np_cstream *s;
  int mode, k;
  size_t total, sent, rcvd;
  uint8_t *pend; /* echo: received, not yet written back */
  size_t poff, plen, pcap;
  int fin_rx, fin_tx, closed, close_err, mismatch, werr, writables;
  int paused, no_fin;
} tstream;

struct tnode {
  const char *name;
  np_identity id;
  np_transport *t;
  uint8_t addr[256]; /* first listen address + /p2p/ID */
  size_t addrlen;
  int ups, downs, opens, ins, last_err;
  int inbound_mode, pause_inbound, reset_inbound;
  tconn *last_in;
  tstream *last_in_stream;
};

static tstream *cu_stream_new(tnode *n, tconn *tc, np_cstream *s, int mode,
                              int k) {
  tstream *ts = cu_alloc(sizeof(*ts));
  ts->n = n;
  ts->tc = tc;
  ts->s = s;
  ts->mode = mode;
  ts->k = k;
  if (tc != NULL)
    tc->nstreams++;
  return ts;
}

static void cu_pump(tstream *ts) {
  static uint8_t buf[CU_CHUNK];
  int rv;
  if (ts->closed || ts->s == NULL)
    return;
  if (ts->mode == M_ECHO) {
    while (ts->plen > 0) {
      size_t n = ts->plen < CU_CHUNK ? ts->plen : CU_CHUNK;
      if ((rv = (int)OP(np_cstream_write(ts->s, ts->pend + ts->poff, n))) !=
          0) {
        if (rv != NP_ELIMIT)
          ts->werr = rv;
        return;
      }
      ts->poff += n;
      ts->plen -= n;
    }
    ts->poff = 0;
    if (ts->paused) { /* caught up: let the peer send again */
      ts->paused = 0;
      OPV(np_cstream_pause(ts->s, 0));
    }
    if (ts->fin_rx && !ts->fin_tx) {
      ts->fin_tx = 1;
      OP(np_cstream_shutdown(ts->s));
    }
    return;
  }
  if (ts->mode == M_SINK) { /* answer the peer's FIN with ours */
    if (ts->fin_rx && !ts->fin_tx && !ts->no_fin) {
      ts->fin_tx = 1;
      OP(np_cstream_shutdown(ts->s));
    }
    return;
  }
  while (ts->sent < ts->total) {
    size_t n =
        ts->total - ts->sent < CU_CHUNK ? ts->total - ts->sent : CU_CHUNK;
    for (size_t i = 0; i < n; i++)
      buf[i] = cu_pattern(ts->k, ts->sent + i);
    if ((rv = (int)OP(np_cstream_write(ts->s, buf, n))) != 0) {
      if (rv != NP_ELIMIT)
        ts->werr = rv;
      return;
    }
    ts->sent += n;
  }
  if (!ts->fin_tx && !ts->no_fin) {
    ts->fin_tx = 1;
    OP(np_cstream_shutdown(ts->s));
  }
}

static void cu_check_event(void) {
  if (cu_in_op)
    cu_violations++;
}

static void cb_conn_up(np_conn *c, void *ud) {
  tnode *n = ud;
  tconn *tc = c->ud;
  cu_check_event();
  if (tc == NULL) {
    tc = cu_alloc(sizeof(*tc));
    tc->n = n;
    tc->c = c;
    c->ud = tc;
    n->last_in = tc;
    n->ins++;
  }
  if (tc->up || tc->down)
    cu_violations++;
  tc->up = 1;
  n->ups++;
}

static void cb_conn_down(np_conn *c, int err, void *ud) {
  tnode *n = ud;
  tconn *tc = c->ud;
  cu_check_event();
  if (tc != NULL) {
    if (tc->down || tc->nstreams != 0)
      cu_violations++;
    tc->down = 1;
    tc->err = err;
    tc->c = NULL;
  }
  n->downs++;
  n->last_err = err;
}

static void cb_stream_open(np_cstream *s, void *ud) {
  tnode *n = ud;
  tconn *tc = s->conn->ud;
  tstream *ts;
  cu_check_event();
  if (tc == NULL || !tc->up || tc->down)
    cu_violations++;
  ts = cu_stream_new(n, tc, s, n->inbound_mode, 0);
  s->ud = ts;
  n->opens++;
  n->last_in_stream = ts;
  if (n->reset_inbound) {
    OPV(np_cstream_reset(s));
    return;
  }
  if (n->pause_inbound) {
    ts->paused = 1;
    OPV(np_cstream_pause(s, 1));
  }
}

static void cb_stream_data(np_cstream *s, const uint8_t *data, size_t len,
                           int fin, void *ud) {
  tstream *ts = s->ud;
  (void)ud;
  cu_check_event();
  if (ts == NULL || ts->closed || ts->fin_rx) {
    cu_violations++;
    return;
  }
  if (ts->mode == M_ECHO) {
    if (ts->poff + ts->plen + len > ts->pcap) {
      if (ts->poff > 0) {
        memmove(ts->pend, ts->pend + ts->poff, ts->plen);
        ts->poff = 0;
      }
      if (ts->plen + len > ts->pcap) {
        ts->pcap = (ts->plen + len) * 2;
        ts->pend = realloc(ts->pend, ts->pcap);
      }
    }
    if (len > 0)
      memcpy(ts->pend + ts->poff + ts->plen, data, len);
    ts->plen += len;
  } else {
    for (size_t i = 0; i < len; i++)
      if (data[i] != cu_pattern(ts->k, ts->rcvd + i))
        ts->mismatch = 1;
  }
  ts->rcvd += len;
  if (fin)
    ts->fin_rx = 1;
  cu_pump(ts);
  /* An echo that cannot keep up stops the peer (bounded by the window). */
  if (ts->mode == M_ECHO && ts->plen > 0 && !ts->paused && !ts->closed) {
    ts->paused = 1;
    OPV(np_cstream_pause(s, 1));
  }
}

static void cb_stream_close(np_cstream *s, int err, void *ud) {
  tstream *ts = s->ud;
  (void)ud;
  cu_check_event();
  if (ts == NULL || ts->closed) {
    cu_violations++;
    return;
  }
  ts->closed = 1;
  ts->close_err = err;
  ts->s = NULL;
  free(ts->pend);
  ts->pend = NULL;
  ts->plen = ts->poff = ts->pcap = 0;
  if (ts->tc != NULL)
    ts->tc->nstreams--;
}

static void cb_stream_writable(np_cstream *s, void *ud) {
  tstream *ts = s->ud;
  (void)ud;
  cu_check_event();
  if (ts == NULL || ts->closed) {
    cu_violations++;
    return;
  }
  ts->writables++;
  cu_pump(ts);
}

static void cb_stream_credit(np_conn *c, void *ud) {
  tconn *tc = c->ud;
  (void)ud;
  cu_check_event();
  if (tc != NULL)
    tc->credits++;
}

static const np_conn_cbs cu_cbs = {
    cb_conn_up,      cb_conn_down,       cb_stream_open,  cb_stream_data,
    cb_stream_close, cb_stream_writable, cb_stream_credit};

/* Dial |to| (its address with /p2p/ID unless |no_id|) from |n|. */
static tconn *cu_dial_addr(tnode *n, const uint8_t *addr, size_t len, int *rv) {
  tconn *tc = cu_alloc(sizeof(*tc));
  np_conn *c = NULL;
  tc->n = n;
  *rv = (int)OP(n->t->ops->dial(n->t, addr, len, tc, &c));
  tc->c = *rv == 0 ? c : NULL;
  return tc;
}

static tconn *cu_dial(tnode *n, const tnode *to) {
  int rv;
  tconn *tc = cu_dial_addr(n, to->addr, to->addrlen, &rv);
  return rv == 0 ? tc : NULL;
}

/* Open a stream on |tc| in |mode| (pattern |k|, |total| bytes to send). */
static tstream *cu_open(tconn *tc, int mode, int k, size_t total) {
  tstream *ts = cu_stream_new(tc->n, tc, NULL, mode, k);
  np_cstream *s = NULL;
  int rv = (int)OP(np_cstream_open(tc->c, ts, &s));
  if (rv != 0) {
    ts->closed = 1;
    ts->close_err = rv;
    tc->nstreams--;
    return ts;
  }
  ts->s = s;
  ts->total = total;
  cu_pump(ts);
  return ts;
}

/* The node's first listen address with /p2p/ID appended. */
static int cu_node_addr(tnode *n) {
  np_ssize r = n->t->ops->listen_addr(n->t, 0, n->addr, sizeof(n->addr));
  if (r < 0)
    return -1;
  r = np_maddr_append_p2p(n->addr, (size_t)r, sizeof(n->addr), &n->id.id);
  if (r < 0)
    return -1;
  n->addrlen = (size_t)r;
  return 0;
}

static int cu_streams_closed(tstream **ts, int n) {
  for (int i = 0; i < n; i++)
    if (!ts[i]->closed)
      return 0;
  return 1;
}

#endif
