#include "np_idsvc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_err.h"
#include "np_event.h"
#include "np_host.h"
#include "np_identify.h"
#include "np_list.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_stream.h"
#include "np_swarm.h"

#define MAX_OWN_ADDRS 32
#define OUT_CAP (2 * NP_IDENTIFY_MSG_OUT + 64) /* one answer, record split */
#define ADDR_TTL_MS (3600u * 1000u)

typedef struct np_idsvc {
  np_host *h;
  np_swarm *sw;
  np_event_sub *sub;
  np_list streams; /* every np_stream it holds (owner_link) */
  np_list opening; /* idopen */
  np_defer push;   /* one identify/push round on the next turn */
  uint8_t record[NP_IDENTIFY_MSG_OUT]; /* our signed peer record, sealed
                                          once (the addresses are fixed) */
  size_t record_len;
} np_idsvc;

/* A stream asked of the swarm, not handed over yet. */
typedef struct idopen {
  np_list link; /* in svc->opening */
  np_idsvc *svc;
  void *handle;
  int push;
} idopen;

/* Reading a peer's identify: the answer to ours, or its push. */
typedef struct idread {
  np_idsvc *svc;
  np_lp_reader rd;
  np_identify idf;
  int push;
  int dead; /* reset: ignore the rest */
} idread;

static uint64_t now_ms(np_idsvc *svc) { return np_now(np_host_loop(svc->h)); }

/* ---- streams done with: wait for the remote's end, hold nothing
 * ---------------- */


/* ---- our identify
 * ------------------------------------------------------------------ */

typedef struct protos_acc {
  const char **v;
  size_t n, cap;
} protos_acc;

static int acc_proto(const np_handler *h, void *ud) {
  protos_acc *a = ud;
  if (a->n < a->cap)
    a->v[a->n++] = h->proto;
  return 0;
}

static size_t own_addrs(np_idsvc *svc, np_identify_blob *out) {
  void *net;
  const np_net_ops *ops = np_host_net(svc->h, &net);
  const uint8_t *bins[MAX_OWN_ADDRS];
  size_t lens[MAX_OWN_ADDRS],
      n = ops ? ops->addrs(net, bins, lens, MAX_OWN_ADDRS) : 0;
  if (n > MAX_OWN_ADDRS)
    n = MAX_OWN_ADDRS;
  for (size_t i = 0; i < n; i++) {
    out[i].data = (uint8_t *)bins[i];
    out[i].len = lens[i];
  }
  return n;
}

/* Write our identify to |s| and finish it (FIN): every protocol of the
 * table, our addresses, the address we see the remote at. */
static void send_identify(np_idsvc *svc, np_stream *s) {
  np_proto_table *pt = np_host_protos(svc->h);
  size_t cap = np_proto_count(pt);
  const char **v = calloc(cap ? cap : 1, sizeof(*v));
  np_identify_blob addrs[MAX_OWN_ADDRS];
  np_identify_params p;
  protos_acc acc;
  uint8_t *out;
  np_ssize n;
  char agent[64];
  if (v == NULL || (out = malloc(OUT_CAP)) == NULL) {
    free(v);
    s->ops->reset(s);
    return;
  }
  acc.v = v;
  acc.n = 0;
  acc.cap = cap;
  np_proto_foreach(pt, acc_proto, &acc);
  snprintf(agent, sizeof(agent), "natpeer/%s", PACKAGE_VERSION);
  memset(&p, 0, sizeof(p));
  p.protocol_version = "ipfs/0.1.0";
  p.agent_version = agent;
  p.listen_addrs = addrs;
  p.nlisten = own_addrs(svc, addrs);
  p.observed = s->addr;
  p.observed_len = s->addr_len;
  p.protocols = v;
  p.nprotocols = acc.n;
  p.signed_record = svc->record;
  p.signed_record_len = svc->record_len;
  n = np_identify_build(np_host_identity(svc->h), &p, out, OUT_CAP);
  if (n == NP_ELIMIT) { /* too many protocols for one message: no record */
    p.signed_record_len = 0;
    n = np_identify_build(np_host_identity(svc->h), &p, out, OUT_CAP);
  }
  if (n < 0) {
    np_warn("identify", "build-failed err=%s", np_errname((int)n));
    s->ops->reset(s);
  } else {
    s->ops->send(s, out, (size_t)n, 1, OUT_CAP);
  }
  free(out);
  free(v);
}

static void seal_record(np_idsvc *svc) {
  np_identify_blob addrs[MAX_OWN_ADDRS];
  size_t n = own_addrs(svc, addrs);
  /* Increasing across restarts: peers keep only newer records. */
  uint64_t seq = (uint64_t)ev_time() * 1000000u + 1;
  np_ssize len = np_peer_record_seal(np_host_identity(svc->h), seq, addrs, n,
                                     svc->record, sizeof(svc->record));
  svc->record_len = len > 0 ? (size_t)len : 0;
}

/* /ipfs/id/1.0.0: the remote asks, we answer. */
static void answer_open(np_stream *s, void *ud) { send_identify(ud, s); }

static const np_stream_cbs answer_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = answer_open,
    .on_data = np_stream_ignore_data,
    .on_close = np_stream_ignore_close,
};

/* ---- reading theirs
 * -------------------------------------------------------------- */

static idread *idread_new(np_idsvc *svc, int push) {
  idread *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->svc = svc;
  r->push = push;
  np_lp_init(&r->rd, NP_IDENTIFY_MSG_MAX);
  np_identify_init(&r->idf);
  return r;
}

static void idread_free(idread *r) {
  np_lp_free(&r->rd);
  np_identify_free(&r->idf);
  free(r);
}

/* Printable ASCII only: the text ends up in logs and CLI output. */
static void clean_text(char *out, size_t cap, const char *in) {
  size_t o = 0;
  for (; in && *in && o + 1 < cap; in++)
    if (*in >= 0x20 && *in < 0x7f)
      out[o++] = *in;
  out[o] = '\0';
}

/* Would the peerstore's list of |p| stay as it is with |v|? */
static int same_protocols(const np_ps_peer *p, char *const *v, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && k < NP_PS_MAX_PROTOCOLS; i++, k++)
    if (!np_peerstore_supports(p, v[i]))
      return 0;
  return k == p->nprotocols;
}

/* What the remote of |s| said about itself: into the peerstore, then to
 * the subscribers. */
static void apply(np_idsvc *svc, np_stream *s, const np_conn *c, idread *r) {
  np_identify *idf = &r->idf;
  const np_peerid *peer = &s->peer_id;
  np_ps_peer *p =
      np_peerstore_upsert(np_host_peerstore(svc->h), peer, now_ms(svc));
  np_ev_addr la[NP_IDENTIFY_MAX_ADDRS];
  char agent[NP_PS_MAX_AGENT];
  np_peerid claimed;
  np_event ev;
  int changed = 0;
  /* The key in identify must be the key the connection authenticated. */
  if (idf->pubkey.data && (np_identify_peerid(idf, &claimed) != 0 ||
                           !np_peerid_equal(&claimed, peer))) {
    np_warn("identify", "identify-key-mismatch peer=%s", s->peer);
    return;
  }
  clean_text(agent, sizeof(agent), idf->agent_version);
  if (p) {
    if (idf->agent_version)
      np_peerstore_set_agent(p, idf->agent_version, strlen(idf->agent_version));
    changed = r->push && !same_protocols(p, idf->protocols, idf->nprotocols);
    {
      size_t *lens =
          calloc(idf->nprotocols ? idf->nprotocols : 1, sizeof(*lens));
      if (lens) {
        for (size_t i = 0; i < idf->nprotocols; i++)
          lens[i] = strlen(idf->protocols[i]);
        np_peerstore_set_protocols(p, (const char *const *)idf->protocols, lens,
                                   idf->nprotocols);
        free(lens);
      }
    }
    for (size_t i = 0; i < idf->naddrs; i++)
      np_peerstore_add_addr(p, idf->addrs[i].data, idf->addrs[i].len,
                            now_ms(svc), ADDR_TTL_MS);
  }
  if (idf->observed.data) {
    char t[200];
    if (np_maddr_to_string(idf->observed.data, idf->observed.len, t,
                           sizeof(t)) >= 0)
      np_debug("identify", "observed-addr peer=%s addr=%s", s->peer, t);
  }
  np_debug("identify",
           "identified peer=%s agent=\"%s\" protocols=%zu "
           "addrs=%zu%s",
           s->peer, agent, idf->nprotocols, idf->naddrs,
           r->push ? " push=1" : "");
  for (size_t i = 0; i < idf->naddrs && i < NP_ARRAY_LEN(la); i++) {
    la[i].bin = idf->addrs[i].data;
    la[i].len = idf->addrs[i].len;
  }
  memset(&ev, 0, sizeof(ev));
  ev.type = NP_EV_PEER_IDENTIFIED;
  ev.peer = peer;
  ev.conn = c;
  ev.protocols = (const char *const *)idf->protocols;
  ev.nprotocols = idf->nprotocols;
  ev.listen_addrs = la;
  ev.nlisten = idf->naddrs < NP_ARRAY_LEN(la) ? idf->naddrs : NP_ARRAY_LEN(la);
  ev.agent = agent;
  ev.push = r->push;
  np_events_emit(np_host_events(svc->h), &ev);
  if (changed) {
    ev.type = NP_EV_PROTOCOLS_CHANGED;
    np_events_emit(np_host_events(svc->h), &ev);
  }
  if (idf->observed.data) {
    memset(&ev, 0, sizeof(ev));
    ev.type = NP_EV_OBSERVED_ADDR;
    ev.peer = peer;
    ev.conn = c;
    ev.observed = idf->observed.data;
    ev.observed_len = idf->observed.len;
    if (c) {
      ev.laddr = c->laddr;
      ev.laddr_len = c->laddr_len;
      ev.raddr = c->raddr;
      ev.raddr_len = c->raddr_len;
    }
    np_events_emit(np_host_events(svc->h), &ev);
  }
}

static void read_data(np_stream *s, const uint8_t *data, size_t len, void *ud) {
  idread *r = ud;
  np_idsvc *svc = r->svc;
  size_t off = 0;
  const np_conn *c;
  if (r->dead)
    return;
  while (off < len) {
    const uint8_t *m;
    size_t ml;
    np_ssize n = np_lp_feed(&r->rd, data + off, len - off, &m, &ml);
    if (n >= 0 && m && np_identify_parse(&r->idf, m, ml) != 0)
      n = NP_EPROTO;
    if (n < 0) {
      r->dead = 1;
      s->ops->reset(s);
      return;
    }
    off += (size_t)n;
  }
  if (len)
    return;
  /* The remote's FIN: the message is complete. */
  c = np_swarm_stream_conn(s);
  apply(svc, s, c, r);
  /* A handler may have reset the stream or closed the connection: both
   * take effect later, so |s| and |c| are still here. */
  if (c)
    np_swarm_conn_identified(svc->sw, c);
  np_stream_set_cbs(s, &np_stream_linger_cbs, svc);
  idread_free(r);
  s->ops->close(s);
}

static void read_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err;
  idread_free(ud);
}

static const np_stream_cbs read_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_data = read_data,
    .on_close = read_close,
};

/* /ipfs/id/push/1.0.0: the remote tells us of a change. */
static void push_open(np_stream *s, void *ud) {
  np_idsvc *svc = ud;
  idread *r = idread_new(svc, 1);
  if (r == NULL) {
    np_stream_set_cbs(s, &np_stream_linger_cbs, svc);
    s->ops->reset(s);
    return;
  }
  np_stream_set_cbs(s, &read_cbs, r);
}

static const np_stream_cbs push_cbs = {
    .struct_size = sizeof(np_stream_cbs),
    .on_open = push_open,
    .on_data = np_stream_ignore_data, /* replaced in on_open */
    .on_close = np_stream_ignore_close,
};

/* ---- streams we open: identify on a new connection, push on a change
 * -------------- */

static void opened(void *ud, int err, np_stream *s, const char *proto) {
  idopen *io = ud;
  np_idsvc *svc = io->svc;
  int push = io->push;
  idread *r;
  (void)proto;
  np_list_remove(&io->link);
  free(io);
  if (err != 0)
    return; /* the connection stays unidentified */
  np_list_insert_tail(&svc->streams, &s->owner_link);
  if (push) {
    np_stream_set_cbs(s, &np_stream_linger_cbs, svc);
    send_identify(svc, s);
  } else if ((r = idread_new(svc, 0)) == NULL) {
    np_stream_set_cbs(s, &np_stream_linger_cbs, svc);
    s->ops->reset(s);
  } else {
    np_stream_set_cbs(s, &read_cbs, r);
  }
}

static void open_on(np_idsvc *svc, const np_conn *c, int push) {
  idopen *io = calloc(1, sizeof(*io));
  if (io == NULL)
    return;
  io->svc = svc;
  io->push = push;
  np_list_insert_tail(&svc->opening, &io->link);
  /* |opened| may run from inside this call (a stream was free): |io| is
   * then gone when it returns. */
  if (np_swarm_conn_open(
          svc->sw, c, push ? NP_IDENTIFY_PUSH_PROTOCOL : NP_IDENTIFY_PROTOCOL,
          opened, io, &io->handle) != 0) {
    np_list_remove(&io->link);
    free(io);
  }
}

static int push_one(const np_conn *c, void *ud) {
  open_on(ud, c, 1);
  return 0;
}

static void push_all(void *arg) {
  np_idsvc *svc = arg;
  np_swarm_foreach_conn(svc->sw, push_one, svc);
}

static void on_event(const np_event *ev, void *ud) {
  np_idsvc *svc = ud;
  if (ev->type == NP_EV_CONN_UP)
    open_on(svc, ev->conn, 0);
  else if (ev->type == NP_EV_LOCAL_ADDRS_CHANGED) {
    seal_record(svc); /* a newer record (higher seq) with the new set */
    np_loop_post(np_host_loop(svc->h), &svc->push);
  } else if (ev->type == NP_EV_LOCAL_PROTOCOLS_CHANGED)
    /* Coalesce a burst of changes (a plugin registering several names, a
     * reload) into one push per connection on the next loop turn. */
    np_loop_post(np_host_loop(svc->h), &svc->push);
}

/* ---- np_module
 * ----------------------------------------------------------------------- */

static void idsvc_stop(void *state) {
  np_idsvc *svc = state;
  const np_net_ops *ops;
  void *net;
  if (svc == NULL)
    return;
  ops = np_host_net(svc->h, &net);
  np_events_unsubscribe(np_host_events(svc->h), svc->sub);
  np_loop_cancel(np_host_loop(svc->h), &svc->push);
  np_proto_remove_owner(np_host_protos(svc->h), svc);
  while (!np_list_empty(&svc->opening)) {
    idopen *io = np_list_entry(svc->opening.next, idopen, link);
    np_list_remove(&io->link);
    if (ops)
      ops->cancel(net, io->handle);
    free(io);
  }
  while (!np_list_empty(&svc->streams))
    np_stream_abandon(np_list_entry(svc->streams.next, np_stream, owner_link),
                      NP_ECANCELED);
  free(svc);
}

static int reg(np_idsvc *svc, const char *proto, const np_stream_cbs *cbs) {
  np_handler h;
  memset(&h, 0, sizeof(h));
  h.proto = (char *)proto;
  h.kind = NP_HANDLER_STREAM;
  h.owner_kind = NP_OWNER_HOST;
  h.owner = svc;
  h.owner_name = "identify";
  h.stream = *cbs;
  h.ud = svc;
  h.streams = &svc->streams;
  h.max_streams = NP_PROTO_UNLIMITED; /* one per push; bounded per conn */
  return np_proto_add(np_host_protos(svc->h), &h, NULL);
}

static int idsvc_start(np_host *h, void **state) {
  np_idsvc *svc = calloc(1, sizeof(*svc));
  int rv;
  if (svc == NULL)
    return NP_ENOMEM;
  svc->h = h;
  svc->sw = np_host_swarm(h);
  np_list_init(&svc->streams);
  np_list_init(&svc->opening);
  np_defer_init(&svc->push, push_all, svc);
  if (svc->sw == NULL) {
    free(svc);
    return NP_EINVAL;
  }
  seal_record(svc);
  if ((rv = reg(svc, NP_IDENTIFY_PROTOCOL, &answer_cbs)) != 0 ||
      (rv = reg(svc, NP_IDENTIFY_PUSH_PROTOCOL, &push_cbs)) != 0 ||
      (rv = np_events_subscribe(np_host_events(h),
                                NP_EV_CONN_UP | NP_EV_LOCAL_PROTOCOLS_CHANGED |
                                    NP_EV_LOCAL_ADDRS_CHANGED,
                                on_event, svc, &svc->sub)) != 0) {
    idsvc_stop(svc);
    return rv;
  }
  *state = svc;
  return 0;
}

const np_module np_idsvc_module = {"identify", idsvc_start, idsvc_stop};
