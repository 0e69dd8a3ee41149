#include "np_autonat.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_autonatmsg.h"
#include "np_err.h"
#include "np_host.h"
#include "np_list.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_obsaddr.h"
#include "np_peerstore.h"
#include "np_stream.h"
#include "np_swarm.h"

#define SUB "nat"
#define SEND_MAX (NP_AUTONATMSG_MSG_MAX + 16) /* one message and prefix */
#define CLIENT_ADDRS_MAX 32 /* addresses we ask to be dialed at */
#define PENDING_MAX 16      /* dial-backs at once */
#define REQS_MAX 64         /* inbound requests open at once */
#define DIAL_ADDR_MAX 128   /* longest address dialed back (ip6, QUIC,
                               /p2p/ID: 63 bytes) */
#define NO_RESULT (-1000)

/* Per-peer request count in the current window (fixed windows, as go). */
typedef struct ratepeer {
  np_peerid id;
  uint64_t start;
  uint32_t n;
} ratepeer;

struct np_autonat {
  np_host *h;
  np_swarm *sw;
  np_event_sub *sub;
  /* config, read once at start */
  int client_on, service_on, forced;
  uint64_t interval_ms, boot_ms;
  uint32_t peer_limit, global_limit;
  /* state */
  int reach, confidence;
  uint64_t last_change;
  /* server */
  np_list sstreams; /* inbound streams (the proto table links them) */
  np_list reqs;     /* srvreq */
  size_t nreqs;
  size_t pending;
  ratepeer peers[NP_AUTONAT_PEERS_TRACKED];
  size_t npeers;
  uint64_t gstart;
  uint32_t gn;
  /* client */
  np_list cstreams; /* our probe's stream, while it is open */
  ev_timer timer;   /* next probe */
  int timer_on;
  int waiting; /* a probe is due but no (new) server is connected */
  int kick;    /* the timer was set by a newly identified server */
  int round_over; /* everyone connected was asked: the next timer starts
                     a new round */
  void *open;  /* the probe's pending open */
  np_stream *cs;
  np_lp_reader crd;
  ev_timer ctimer; /* the probe's answer deadline */
  int ctimer_on;
  np_peerid asking;
  np_peerid round[NP_AUTONAT_QUORUM]; /* failed in this UNKNOWN round */
  size_t nround;
  np_peerid tried[NP_AUTONAT_QUORUM * 2]; /* asked in this round, any answer */
  size_t ntried;
  np_autonat_status st; /* counters and last result */
};

static struct ev_loop *EV(np_autonat *a) {
  return np_loop_ev(np_host_loop(a->h));
}
static uint64_t now_ms(np_autonat *a) { return np_now(np_host_loop(a->h)); }


const char *np_autonat_reach_name(int r) {
  return r == NP_REACH_PUBLIC    ? "public"
         : r == NP_REACH_PRIVATE ? "private"
                                 : "unknown";
}

int np_autonat_reachability(const np_autonat *a) { return a->reach; }

void np_autonat_get_status(const np_autonat *a, np_autonat_status *st) {
  *st = a->st;
  st->reachability = a->reach;
  st->confidence = a->confidence;
  st->forced = a->forced;
  st->client_on = a->client_on;
  st->service_on = a->service_on;
  st->last_change_ms = a->last_change;
  st->pending = a->pending;
}

static void set_reach(np_autonat *a, int r, const char *why) {
  np_event ev;
  if (r == a->reach)
    return;
  a->reach = r;
  a->last_change = now_ms(a);
  np_info(SUB, "reachability=%s why=\"%s\" confidence=%d",
          np_autonat_reach_name(r), why, a->confidence);
  memset(&ev, 0, sizeof(ev));
  ev.type = NP_EV_REACHABILITY;
  ev.reachability = r;
  np_events_emit(np_host_events(a->h), &ev);
}

/* The IP of /ip4|ip6/A/(udp/P/quic-v1|tcp/P)[/p2p/ID] into |ip| (4 or 16
 * bytes; returns the length) and its port, or 0 for another shape. */
static size_t ip_of(const uint8_t *bin, size_t len, uint8_t ip[16],
                    uint16_t *port) {
  struct sockaddr_storage ss;
  socklen_t sl;
  if (np_maddr_to_sockaddr(bin, len, &ss, &sl) != 0 &&
      np_maddr_to_sockaddr_tcp(bin, len, &ss, &sl) != 0)
    return 0;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const void *)&ss;
    memcpy(ip, &s4->sin_addr, 4);
    *port = ntohs(s4->sin_port);
    return 4;
  }
  if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const void *)&ss;
    memcpy(ip, &s6->sin6_addr, 16);
    *port = ntohs(s6->sin6_port);
    return 16;
  }
  return 0;
}

/* ---- server
 * -------------------------------------------------------------------------- */

/* One DIAL request on an inbound stream. */
typedef struct srvreq {
  np_list link; /* in a->reqs */
  np_autonat *a;
  np_stream *s;
  np_lp_reader rd;
  ev_timer timer; /* the request must arrive in time */
  int timer_on;
  void *dial; /* the dial-back while it runs */
  np_peerid peer;
  uint8_t addrs[NP_AUTONAT_DIAL_ADDRS_MAX][DIAL_ADDR_MAX];
  size_t lens[NP_AUTONAT_DIAL_ADDRS_MAX];
  size_t naddrs;
} srvreq;

/* Let go of everything |r| holds, unlink and free. Its stream, if any, is
 * returned with the linger callbacks: the caller resets or closes it. */
static np_stream *req_free(srvreq *r) {
  np_stream *s = r->s;
  np_autonat *a = r->a;
  if (r->dial) {
    void *net;
    const np_net_ops *ops = np_host_net(a->h, &net);
    if (ops)
      ops->cancel(net, r->dial);
    r->dial = NULL;
    a->pending--;
  }
  if (r->timer_on)
    ev_timer_stop(EV(a), &r->timer);
  if (s)
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
  np_lp_free(&r->rd);
  np_list_remove(&r->link);
  a->nreqs--;
  free(r);
  return s;
}

/* Answer |status| (with |addr| when OK), FIN, and end |r|. */
static void respond(srvreq *r, np_autonatmsg_status status, const char *text,
                    const uint8_t *addr, size_t alen) {
  np_autonat *a = r->a;
  np_autonatmsg m;
  uint8_t buf[SEND_MAX];
  np_ssize n;
  np_stream *s;
  np_autonatmsg_init(&m);
  m.type = NP_AUTONATMSG_DIAL_RESPONSE;
  m.status = status;
  m.status_text = (char *)text;
  m.addr.data = (uint8_t *)addr;
  m.addr.len = addr ? alen : 0;
  if (status == NP_AUTONATMSG_OK)
    a->st.served_ok++;
  else if (status == NP_AUTONATMSG_E_DIAL_ERROR)
    a->st.served_error++;
  else if (status == NP_AUTONATMSG_E_DIAL_REFUSED)
    a->st.refused++;
  else if (status == NP_AUTONATMSG_E_BAD_REQUEST)
    a->st.bad_requests++;
  n = np_autonatmsg_encode_lp(&m, buf, sizeof(buf)); /* |addr| is r's */
  s = req_free(r);
  if (s == NULL)
    return;
  if (n < 0 || s->ops->send(s, buf, (size_t)n, 1, SEND_MAX) != 0)
    s->ops->reset(s);
}

/* The rate limits: 1 when the request may go on (and is counted). */
static int rate_admit(np_autonat *a, const np_peerid *peer) {
  uint64_t now = now_ms(a);
  size_t i, free_i = a->npeers;
  if (now - a->gstart >= NP_AUTONAT_RATE_WINDOW_MS || a->gstart == 0)
    a->gstart = now ? now : 1, a->gn = 0;
  if (a->gn >= a->global_limit)
    return 0;
  for (i = 0; i < a->npeers; i++) {
    ratepeer *p = &a->peers[i];
    if (np_peerid_equal(&p->id, peer)) {
      if (now - p->start >= NP_AUTONAT_RATE_WINDOW_MS)
        p->start = now, p->n = 0;
      if (p->n >= a->peer_limit)
        return 0;
      p->n++;
      a->gn++;
      return 1;
    }
    if (now - p->start >= NP_AUTONAT_RATE_WINDOW_MS && free_i == a->npeers)
      free_i = i; /* expired: reusable */
  }
  if (free_i == a->npeers) {
    if (a->npeers == NP_AUTONAT_PEERS_TRACKED)
      return 0; /* every entry is active: refuse rather than forget */
    a->npeers++;
  }
  a->peers[free_i].id = *peer;
  a->peers[free_i].start = now;
  a->peers[free_i].n = 1;
  a->gn++;
  return 1;
}

static void dial_done(void *ud, int err);

/* Find the outbound connection to |r->peer| at one of its addresses: the
 * address the dial-back reached. */
typedef struct findc {
  srvreq *r;
  size_t which;
  int found;
} findc;
static int find_conn(const np_conn *c, void *ud) {
  findc *f = ud;
  size_t i;
  if (c->inbound || !np_peerid_equal(&c->peer, &f->r->peer))
    return 0;
  for (i = 0; i < f->r->naddrs; i++)
    if (c->raddr_len == f->r->lens[i] &&
        memcmp(c->raddr, f->r->addrs[i], c->raddr_len) == 0) {
      f->which = i, f->found = 1;
      return 1;
    }
  return 0;
}

static void dial_done(void *ud, int err) {
  srvreq *r = ud;
  np_autonat *a = r->a;
  char ptxt[NP_PEERID_STRMAX];
  r->dial = NULL;
  a->pending--;
  np_peerid_to_string(&r->peer, ptxt, sizeof(ptxt));
  if (err == 0) {
    findc f = {r, 0, 0};
    np_swarm_foreach_conn(a->sw, find_conn, &f);
    np_info(SUB, "autonat-served peer=%s result=ok", ptxt);
    respond(r, NP_AUTONATMSG_OK, NULL, r->addrs[f.which], r->lens[f.which]);
  } else {
    np_info(SUB, "autonat-served peer=%s result=dial-error err=%s", ptxt,
            np_errname(err));
    respond(r, NP_AUTONATMSG_E_DIAL_ERROR, "dial failed", NULL, 0);
  }
}

/* Keep the requested addresses we may dial: the observed IP only, QUIC or
 * TCP, a nonzero port, no /p2p/ of another peer; at most
 * NP_AUTONAT_DIAL_ADDRS_MAX, no duplicates. */
static void pick_addrs(srvreq *r, const np_autonatmsg *m, const uint8_t *oip,
                       size_t oiplen) {
  np_autonat *a = r->a;
  size_t i, j;
  for (i = 0; i < m->naddrs; i++) {
    const np_autonatmsg_blob *b = &m->addrs[i];
    uint8_t ip[16];
    uint16_t port = 0;
    size_t iplen = ip_of(b->data, b->len, ip, &port);
    np_peerid id;
    int dup = 0;
    if (iplen == 0 || iplen != oiplen || memcmp(ip, oip, iplen) != 0 ||
        port == 0 || b->len > DIAL_ADDR_MAX ||
        r->naddrs == NP_AUTONAT_DIAL_ADDRS_MAX ||
        (np_maddr_get_p2p(b->data, b->len, &id) == 0 &&
         !np_peerid_equal(&id, &r->peer))) {
      a->st.addrs_skipped++;
      continue;
    }
    for (j = 0; j < r->naddrs && !dup; j++)
      dup = r->lens[j] == b->len && memcmp(r->addrs[j], b->data, b->len) == 0;
    if (dup)
      continue;
    memcpy(r->addrs[r->naddrs], b->data, b->len);
    r->lens[r->naddrs++] = b->len;
  }
}

static void handle_request(srvreq *r, const uint8_t *msg, size_t len) {
  np_autonat *a = r->a;
  np_autonatmsg m;
  const np_conn *c = np_swarm_stream_conn(r->s);
  uint8_t oip[16];
  uint16_t oport;
  size_t oiplen;
  char ptxt[NP_PEERID_STRMAX];
  const uint8_t *ptrs[NP_AUTONAT_DIAL_ADDRS_MAX];
  int rv;
  if (r->timer_on) {
    ev_timer_stop(EV(a), &r->timer);
    r->timer_on = 0;
  }
  np_peerid_to_string(&r->s->peer_id, ptxt, sizeof(ptxt));
  if (np_autonatmsg_decode(&m, msg, len, NULL) != 0 ||
      m.type != NP_AUTONATMSG_DIAL) {
    np_autonatmsg_free(&m); /* empty after an error */
    np_debug(SUB, "autonat-refused peer=%s why=\"bad request\"", ptxt);
    respond(r, NP_AUTONATMSG_E_BAD_REQUEST, "bad request", NULL, 0);
    return;
  }
  if (!np_peerid_equal(&m.peer, &r->s->peer_id)) {
    np_autonatmsg_free(&m);
    np_info(SUB, "autonat-refused peer=%s why=\"asks for another peer\"",
            ptxt);
    respond(r, NP_AUTONATMSG_E_BAD_REQUEST, "peer id mismatch", NULL, 0);
    return;
  }
  r->peer = m.peer;
  if (c == NULL || c->limited) {
    np_autonatmsg_free(&m);
    np_info(SUB, "autonat-refused peer=%s why=\"relayed connection\"", ptxt);
    respond(r, NP_AUTONATMSG_E_DIAL_REFUSED, "relayed connection", NULL, 0);
    return;
  }
  if (!rate_admit(a, &r->peer)) {
    np_autonatmsg_free(&m);
    a->st.rate_limited++;
    np_debug(SUB, "autonat-refused peer=%s why=\"rate limit\"", ptxt);
    respond(r, NP_AUTONATMSG_E_DIAL_REFUSED, "rate limited", NULL, 0);
    return;
  }
  oiplen = ip_of(c->raddr, c->raddr_len, oip, &oport);
  if (oiplen)
    pick_addrs(r, &m, oip, oiplen);
  else
    a->st.addrs_skipped += m.naddrs;
  np_autonatmsg_free(&m);
  if (r->naddrs == 0 || a->pending >= PENDING_MAX) {
    const char *why =
        r->naddrs == 0 ? "no address at the observed IP" : "busy";
    np_info(SUB, "autonat-refused peer=%s why=\"%s\"", ptxt, why);
    respond(r, NP_AUTONATMSG_E_DIAL_REFUSED, why, NULL, 0);
    return;
  }
  for (size_t i = 0; i < r->naddrs; i++)
    ptrs[i] = r->addrs[i];
  a->st.addrs_dialed += r->naddrs;
  a->pending++;
  rv = np_swarm_dial_new(a->sw, &r->peer, ptrs, r->lens, r->naddrs,
                         NP_SWARM_DIAL_NEW_PORT, NP_AUTONAT_DIAL_TIMEOUT_MS,
                         dial_done, r, &r->dial);
  if (rv != 0) {
    r->dial = NULL;
    a->pending--;
    np_info(SUB, "autonat-served peer=%s result=dial-error err=%s", ptxt,
            np_errname(rv));
    respond(r, NP_AUTONATMSG_E_DIAL_ERROR, "dial failed", NULL, 0);
    return;
  }
  for (size_t i = 0; i < r->naddrs; i++) {
    char atxt[256];
    if (np_maddr_to_string(r->addrs[i], r->lens[i], atxt, sizeof(atxt)) < 0)
      snprintf(atxt, sizeof(atxt), "?");
    np_debug(SUB, "autonat-dialing-back peer=%s addr=%s", ptxt, atxt);
  }
}

static void srv_data(np_stream *s, const uint8_t *data, size_t len,
                     void *ud) {
  srvreq *r = ud;
  (void)s;
  if (len == 0 && r->dial) /* a half-close after the request: answer */
    return;
  if (len == 0) { /* FIN before a whole request */
    np_stream *st = req_free(r);
    if (st)
      st->ops->reset(st);
    return;
  }
  while (len > 0 && r->dial == NULL) {
    const uint8_t *msg = NULL;
    size_t mlen = 0;
    np_ssize n = np_lp_feed(&r->rd, data, len, &msg, &mlen);
    if (n < 0) {
      respond(r, NP_AUTONATMSG_E_BAD_REQUEST, "bad framing", NULL, 0);
      return;
    }
    data += n, len -= (size_t)n;
    if (msg) {
      handle_request(r, msg, mlen);
      return; /* one request per stream; the rest is ignored */
    }
  }
}

/* The requester went away (or the module stops): withdraw the dial. */
static void srv_close(np_stream *s, int err, void *ud) {
  srvreq *r = ud;
  (void)s, (void)err;
  r->s = NULL;
  req_free(r);
}

static const np_stream_cbs srv_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = srv_data,
    .on_close = srv_close,
};

static void srv_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  srvreq *r = np_container_of(w, srvreq, timer);
  np_stream *s;
  (void)ev, (void)revents;
  r->timer_on = 0;
  s = req_free(r);
  if (s)
    s->ops->reset(s);
}

static void srv_open(np_stream *s, void *ud) {
  np_autonat *a = ud;
  srvreq *r = a->nreqs < REQS_MAX ? calloc(1, sizeof(*r)) : NULL;
  if (r == NULL) { /* out of memory, or too many at once */
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    s->ops->reset(s);
    return;
  }
  r->a = a;
  r->s = s;
  np_lp_init(&r->rd, NP_AUTONATMSG_MSG_MAX);
  np_list_insert_tail(&a->reqs, &r->link);
  a->nreqs++;
  ev_timer_init(&r->timer, srv_timeout, NP_AUTONAT_READ_TIMEOUT_MS / 1000.0,
                0.);
  ev_timer_start(EV(a), &r->timer);
  r->timer_on = 1;
  np_stream_set_cbs(s, &srv_cbs, r);
}

static const np_stream_cbs srv_open_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = srv_open,
    .on_data = np_stream_ignore_data, /* replaced in on_open */
    .on_close = np_stream_ignore_close,
};

/* ---- client
 * -------------------------------------------------------------------------- */

static void schedule(np_autonat *a, uint64_t ms);

static int peer_in(const np_peerid *v, size_t n, const np_peerid *p) {
  for (size_t i = 0; i < n; i++)
    if (np_peerid_equal(&v[i], p))
      return 1;
  return 0;
}

/* Let go of the probe's stream, open and deadline (no callbacks). */
static void probe_release(np_autonat *a, int reset) {
  if (a->open) {
    void *net;
    const np_net_ops *ops = np_host_net(a->h, &net);
    if (ops)
      ops->cancel(net, a->open);
    a->open = NULL;
  }
  if (a->cs) {
    np_stream *s = a->cs;
    a->cs = NULL;
    np_stream_set_cbs(s, &np_stream_linger_cbs, NULL);
    if (reset)
      s->ops->reset(s);
    else
      s->ops->close(s);
  }
  if (a->ctimer_on) {
    ev_timer_stop(EV(a), &a->ctimer);
    a->ctimer_on = 0;
  }
  np_lp_free(&a->crd);
}

/* A probe ended with |result| (a status, or a negative error). */
static void probe_result(np_autonat *a, int result) {
  char ptxt[NP_PEERID_STRMAX];
  uint64_t next = a->interval_ms;
  int more = 0; /* the round goes on with the next server */
  np_peerid_to_string(&a->asking, ptxt, sizeof(ptxt));
  a->st.last_result = result;
  a->st.last_server = a->asking;
  np_info(SUB, "autonat-probe server=%s result=%s", ptxt,
          result == NP_AUTONATMSG_OK              ? "ok"
          : result == NP_AUTONATMSG_E_DIAL_ERROR  ? "dial-error"
          : result == NP_AUTONATMSG_E_DIAL_REFUSED ? "refused"
          : result >= 0                            ? "error"
                                                   : np_errname(result));
  if (a->ntried < NP_ARRAY_LEN(a->tried) &&
      !peer_in(a->tried, a->ntried, &a->asking))
    a->tried[a->ntried++] = a->asking;
  if (result == NP_AUTONATMSG_OK) {
    a->nround = 0;
    if (a->reach == NP_REACH_PUBLIC) {
      if (a->confidence < NP_AUTONAT_CONFIDENCE_MAX)
        a->confidence++;
    } else {
      a->confidence = 0;
      set_reach(a, NP_REACH_PUBLIC, "a peer dialed us back");
    }
  } else if (result == NP_AUTONATMSG_E_DIAL_ERROR) {
    if (a->reach == NP_REACH_PRIVATE) {
      if (a->confidence < NP_AUTONAT_CONFIDENCE_MAX)
        a->confidence++;
    } else if (a->reach == NP_REACH_PUBLIC) {
      if (a->confidence > 0)
        a->confidence--;
      else
        set_reach(a, NP_REACH_PRIVATE, "a dial-back failed");
    } else {
      if (!peer_in(a->round, a->nround, &a->asking))
        a->round[a->nround++] = a->asking;
      if (a->nround >= NP_AUTONAT_QUORUM) {
        a->nround = 0;
        a->confidence = 0;
        set_reach(a, NP_REACH_PRIVATE, "dial-backs failed from 3 peers");
      } else {
        more = 1; /* ask the next server now */
      }
    }
  } else if (a->reach == NP_REACH_UNKNOWN) {
    more = 1; /* no answer: another server */
  }
  if (more)
    next = NP_AUTONAT_GAP_MS;
  else if (a->reach == NP_REACH_UNKNOWN)
    next = NP_AUTONAT_RETRY_MS;
  if (!more)
    a->ntried = 0, a->round_over = 0; /* the next is a new round */
  schedule(a, next);
}

static void probe_end(np_autonat *a, int result, int reset) {
  probe_release(a, reset);
  probe_result(a, result);
}

static void cl_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  np_autonat *a = ud;
  (void)s;
  if (len == 0) {
    probe_end(a, NP_ECLOSED, 1);
    return;
  }
  while (len > 0) {
    const uint8_t *msg = NULL;
    size_t mlen = 0;
    np_autonatmsg m;
    np_ssize n = np_lp_feed(&a->crd, data, len, &msg, &mlen);
    if (n < 0) {
      probe_end(a, NP_EPROTO, 1);
      return;
    }
    data += n, len -= (size_t)n;
    if (msg == NULL)
      continue;
    if (np_autonatmsg_decode(&m, msg, mlen, NULL) != 0) {
      probe_end(a, NP_EPROTO, 1);
      return;
    }
    if (m.type != NP_AUTONATMSG_DIAL_RESPONSE) {
      np_autonatmsg_free(&m);
      probe_end(a, NP_EPROTO, 1);
      return;
    }
    {
      int st = (int)m.status;
      np_autonatmsg_free(&m);
      probe_end(a, st, 0);
    }
    return;
  }
}

static void cl_close(np_stream *s, int err, void *ud) {
  np_autonat *a = ud;
  (void)s;
  a->cs = NULL;
  probe_end(a, err ? err : NP_ECLOSED, 0);
}

static const np_stream_cbs cl_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = cl_data,
    .on_close = cl_close,
};

static void cl_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  np_autonat *a = np_container_of(w, np_autonat, ctimer);
  (void)ev, (void)revents;
  a->ctimer_on = 0;
  probe_end(a, NP_ETIMEDOUT, 1);
}

static int is_dialable_shape(const uint8_t *bin, size_t len) {
  uint8_t ip[16];
  uint16_t port;
  size_t n = ip_of(bin, len, ip, &port);
  static const uint8_t zero[16];
  return n != 0 && port != 0 && memcmp(ip, zero, n) != 0;
}

/* Our listen addresses, the swarm's adverts and the confirmed observed
 * addresses, deduplicated; returns how many went to |bins|. */
static size_t our_addrs(np_autonat *a, const uint8_t **bins, size_t *lens,
                        size_t max) {
  const uint8_t *b[CLIENT_ADDRS_MAX];
  size_t l[CLIENT_ADDRS_MAX], n = 0, k, i, j;
  void *net;
  const np_net_ops *ops = np_host_net(a->h, &net);
  np_obsaddr *o = np_host_module(a->h, "obsaddr");
  if (ops && ops->addrs) {
    k = ops->addrs(net, b, l, CLIENT_ADDRS_MAX);
    n = k < CLIENT_ADDRS_MAX ? k : CLIENT_ADDRS_MAX;
  }
  if (o && n < CLIENT_ADDRS_MAX) {
    k = np_obsaddr_confirmed(o, now_ms(a), b + n, l + n, CLIENT_ADDRS_MAX - n);
    n += k < CLIENT_ADDRS_MAX - n ? k : CLIENT_ADDRS_MAX - n;
  }
  for (i = 0, k = 0; i < n && k < max; i++) {
    int dup = 0;
    if (!is_dialable_shape(b[i], l[i]))
      continue;
    for (j = 0; j < k && !dup; j++)
      dup = lens[j] == l[i] && memcmp(bins[j], b[i], l[i]) == 0;
    if (!dup)
      bins[k] = b[i], lens[k++] = l[i];
  }
  return k;
}

static void cl_opened(void *ud, int err, np_stream *s, const char *proto) {
  np_autonat *a = ud;
  np_autonatmsg m;
  np_autonatmsg_blob blobs[CLIENT_ADDRS_MAX];
  const uint8_t *bins[CLIENT_ADDRS_MAX];
  size_t lens[CLIENT_ADDRS_MAX], n, i;
  uint8_t buf[SEND_MAX];
  np_ssize len;
  (void)proto;
  a->open = NULL;
  if (err != 0) {
    probe_end(a, err, 0);
    return;
  }
  a->cs = s;
  np_stream_set_cbs(s, &cl_cbs, a);
  np_list_insert_tail(&a->cstreams, &s->owner_link);
  np_lp_init(&a->crd, NP_AUTONATMSG_MSG_MAX);
  n = our_addrs(a, bins, lens, CLIENT_ADDRS_MAX);
  for (i = 0; i < n; i++)
    blobs[i].data = (uint8_t *)bins[i], blobs[i].len = lens[i];
  np_autonatmsg_init(&m);
  m.type = NP_AUTONATMSG_DIAL;
  m.peer = np_host_identity(a->h)->id;
  m.addrs = blobs;
  m.naddrs = n;
  a->st.probes++;
  len = np_autonatmsg_encode_lp(&m, buf, sizeof(buf));
  if (len < 0) { /* too many addresses for one message: send fewer */
    while (len == NP_ELIMIT && m.naddrs > 1) {
      m.naddrs /= 2;
      len = np_autonatmsg_encode_lp(&m, buf, sizeof(buf));
    }
  }
  if (len < 0) {
    probe_end(a, (int)len, 1);
    return;
  }
  /* A failure resets the stream; cl_close follows and reports it. */
  s->ops->send(s, buf, (size_t)len, 0, SEND_MAX);
}

/* Pick a server: a direct connection to a peer that lists the protocol,
 * not asked yet in this round, and not the last one asked if another
 * will do. */
typedef struct pick {
  np_autonat *a;
  const np_conn *best;
  int best_score;
} pick;
static int pick_conn(const np_conn *c, void *ud) {
  pick *p = ud;
  np_autonat *a = p->a;
  np_ps_peer *pp;
  int score = 3;
  if (c->limited ||
      np_peerid_equal(&c->peer, &np_host_identity(a->h)->id))
    return 0;
  pp = np_peerstore_get(np_host_peerstore(a->h), &c->peer);
  if (pp == NULL || !np_peerstore_supports(pp, NP_AUTONATMSG_PROTOCOL))
    return 0;
  if (peer_in(a->tried, a->ntried, &c->peer))
    return 0;
  if (a->st.last_server.len && np_peerid_equal(&a->st.last_server, &c->peer))
    score = 1;
  if (score > p->best_score)
    p->best = c, p->best_score = score;
  return 0;
}

static void probe_start(np_autonat *a) {
  pick p = {a, NULL, 0};
  int rv;
  if (a->open || a->cs)
    return;
  np_swarm_foreach_conn(a->sw, pick_conn, &p);
  np_debug(SUB, "autonat-pick found=%d tried=%zu", p.best != NULL, a->ntried);
  if (p.best == NULL) {
    /* A peer identified with the protocol wakes us; when everyone
     * connected was asked in this round, a new round comes after
     * NP_AUTONAT_RETRY_MS (never the same servers back to back). */
    a->waiting = 1;
    if (a->ntried > 0) {
      a->round_over = 1;
      schedule(a, NP_AUTONAT_RETRY_MS);
    }
    return;
  }
  a->waiting = 0;
  a->asking = p.best->peer;
  ev_timer_init(&a->ctimer, cl_timeout,
                NP_AUTONAT_CLIENT_TIMEOUT_MS / 1000.0, 0.);
  ev_timer_start(EV(a), &a->ctimer);
  a->ctimer_on = 1;
  rv = np_swarm_conn_open(a->sw, p.best, NP_AUTONATMSG_PROTOCOL, cl_opened,
                          a, &a->open);
  if (rv != 0) {
    a->open = NULL;
    probe_end(a, rv, 0);
  }
}

static void on_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  np_autonat *a = np_container_of(w, np_autonat, timer);
  (void)ev, (void)revents;
  a->timer_on = 0;
  if (!a->kick && a->round_over)
    a->ntried = 0, a->round_over = 0;
  a->kick = 0;
  probe_start(a);
}

static void schedule(np_autonat *a, uint64_t ms) {
  if (a->timer_on)
    ev_timer_stop(EV(a), &a->timer);
  ev_timer_init(&a->timer, on_timer, (double)ms / 1000.0, 0.);
  ev_timer_start(EV(a), &a->timer);
  a->timer_on = 1;
}

static void on_event(const np_event *ev, void *ud) {
  np_autonat *a = ud;
  size_t i;
  if (!a->waiting || ev->peer == NULL)
    return;
  for (i = 0; i < ev->nprotocols; i++)
    if (strcmp(ev->protocols[i], NP_AUTONATMSG_PROTOCOL) == 0) {
      schedule(a, 0); /* on the next turn, outside the dispatch */
      a->waiting = 0;
      a->kick = 1;
      return;
    }
}

/* ---- np_module
 * ----------------------------------------------------------------------- */

static void autonat_stop(void *state) {
  np_autonat *a = state;
  if (a == NULL)
    return;
  np_events_unsubscribe(np_host_events(a->h), a->sub);
  np_proto_remove_owner(np_host_protos(a->h), a);
  if (a->timer_on)
    ev_timer_stop(EV(a), &a->timer);
  a->timer_on = 0;
  probe_release(a, 1);
  while (!np_list_empty(&a->reqs)) {
    srvreq *r = np_list_entry(a->reqs.next, srvreq, link);
    np_stream *s = req_free(r); /* withdraws its dial-back */
    if (s)
      np_stream_abandon(s, NP_ECANCELED);
  }
  while (!np_list_empty(&a->sstreams))
    np_stream_abandon(np_list_entry(a->sstreams.next, np_stream, owner_link),
                      NP_ECANCELED);
  while (!np_list_empty(&a->cstreams))
    np_stream_abandon(np_list_entry(a->cstreams.next, np_stream, owner_link),
                      NP_ECANCELED);
  free(a);
}

static int autonat_start(np_host *h, void **state) {
  const np_conf *c = np_host_conf(h);
  np_autonat *a = calloc(1, sizeof(*a));
  int rv;
  if (a == NULL)
    return NP_ENOMEM;
  a->h = h;
  a->sw = np_host_swarm(h);
  np_list_init(&a->sstreams);
  np_list_init(&a->cstreams);
  np_list_init(&a->reqs);
  np_lp_init(&a->crd, NP_AUTONATMSG_MSG_MAX);
  a->st.last_result = NO_RESULT;
  if (a->sw == NULL) {
    free(a);
    return NP_EINVAL;
  }
  a->service_on = c->nat.autonat_service;
  a->forced = c->nat.reachability == NP_REACH_PUBLIC ||
              c->nat.reachability == NP_REACH_PRIVATE;
  a->client_on = c->nat.autonat && !a->forced;
  a->interval_ms = c->nat.autonat_interval_ms;
  a->boot_ms = c->nat.autonat_boot_delay_ms;
  a->peer_limit = c->nat.autonat_peer_limit;
  a->global_limit = c->nat.autonat_global_limit;
  if (a->service_on) {
    np_handler hd;
    memset(&hd, 0, sizeof(hd));
    hd.proto = (char *)NP_AUTONATMSG_PROTOCOL;
    hd.kind = NP_HANDLER_STREAM;
    hd.owner_kind = NP_OWNER_HOST;
    hd.owner = a;
    hd.owner_name = "autonat";
    hd.stream = srv_open_cbs;
    hd.ud = a;
    hd.streams = &a->sstreams;
    hd.max_streams = 2; /* per connection; the rate limits do the rest */
    if ((rv = np_proto_add(np_host_protos(h), &hd, NULL)) != 0) {
      free(a);
      return rv;
    }
  }
  if (a->client_on &&
      (rv = np_events_subscribe(np_host_events(h),
                                NP_EV_PEER_IDENTIFIED |
                                    NP_EV_PROTOCOLS_CHANGED,
                                on_event, a, &a->sub)) != 0) {
    np_proto_remove_owner(np_host_protos(h), a);
    free(a);
    return rv;
  }
  *state = a;
  if (a->forced)
    set_reach(a,
              c->nat.reachability == NP_REACH_PUBLIC ? NP_REACH_PUBLIC
                                                          : NP_REACH_PRIVATE,
              "configured");
  if (a->client_on)
    schedule(a, a->boot_ms);
  np_info(SUB, "autonat client=%s service=%s reachability=%s",
          a->client_on ? "on" : "off", a->service_on ? "on" : "off",
          np_autonat_reach_name(a->reach));
  return 0;
}

const np_module np_autonat_module = {"autonat", autonat_start, autonat_stop};
