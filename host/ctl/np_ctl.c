#include "np_ctl.h"
#include "np_natstatus.h"
#include "np_relayc.h"
#include "np_relaymsg.h"
#include "np_trelay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "np_call.h"
#include "np_conn.h"
#include "np_crypto.h"
#include "np_err.h"
#include "np_cid.h"
#include "np_host.h"
#include "np_kad.h"
#include "np_kadmsg.h"
#include "np_list.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_varint.h"
#include "np_multiaddr.h"
#include "np_pb.h"
#include "np_plugin.h"
#include "np_stream.h"
#include "proto/natpeer_ctl.pb-c.h"
#include "proto/p2pd.pb-c.h"

/* Caps on what one control client (or all of them) can make the host hold.
 * The number of clients and their idle timeout are [limits] keys. */
#define MAX_HANDLERS_PER_CLIENT 1024 /* registrations over one connection */
#define MAX_BALANCED 64              /* callback addresses per protocol */
#define MAX_CTL_PROTOS 16384         /* names held by all clients together */
#define MAX_OUTCALLS 1024            /* CallUnary in flight per connection */
#define MAX_CB_DIALS 256             /* callback connections being dialed */
#define CB_DIAL_TIMEOUT 5.0          /* seconds for a callback connect */
#define CB_RETRY_FIRST 0.005 /* backlog full: retry after 5 ms, doubling */
#define CB_RETRY_MAX 0.1     /* up to 100 ms (jittered), until the timeout */
#define SKIP_HEAD 64                 /* kept of an oversized message: callId */
#define REQ_MAX (64 * 1024)          /* one control request */
#define OUT_MAX_BASE (8u << 20)      /* queued bytes per client beyond */
#define SPLICE_HIGH (1u << 20)       /* pause the stream above this */
#define OUT_HIGH (1u << 20) /* answers queued: stop reading requests */
#define PERSIST_OVERHEAD 4096        /* framing around a unary payload */
#define CALL_ID_LEN 16
#define DEFAULT_TIMEOUT_MS 60000

enum mode { M_REQ, M_BUSY, M_PERSIST, M_SPLICE, M_CONNECTING, M_DEAD };

typedef struct outbuf {
  np_list link;
  size_t len, off;
  uint8_t data[];
} outbuf;

typedef struct client client;
typedef struct dhtreq dhtreq;

/* A unary handler name served by control clients (round-robin when
 * registered `balanced` by several persistent connections). */
typedef struct ugroup {
  np_list link; /* in ctl->ugroups */
  np_ctl *ctl;
  char *proto;
  np_list members; /* umember.glink */
  size_t n, rr;
  np_list pending; /* np_call queued for this name (np_handler.pending) */
} ugroup;

typedef struct umember {
  np_list glink, clink;
  ugroup *g;
  client *c;
} umember;

/* An incoming call handed to a client: awaits its unaryResponse. */
typedef struct routed {
  np_list link; /* in client->routed */
  client *c;
  np_call *call;
  uint8_t id[CALL_ID_LEN];
} routed;

/* An outgoing call a client made (CallUnary): Cancel finds it. */
typedef struct outcall {
  np_list link; /* in client->outcalls */
  client *c;
  np_outgoing *o;
  uint8_t id[CALL_ID_LEN];
} outcall;

/* A stream handler name served by control clients, each reachable at its
 * callback address. */
typedef struct sgroup {
  np_list link;
  np_ctl *ctl;
  char *proto;
  np_list addrs; /* saddr.link */
  size_t n, rr;
  np_list streams; /* np_stream given to us (np_handler.streams) */
} sgroup;

typedef struct saddr {
  np_list link;
  uint8_t bin[NP_MADDR_MAX];
  size_t len;
} saddr;

struct client {
  np_ctl *ctl;
  np_list link;
  int fd;
  ev_io rw, ww;
  int mode;
  np_lp_reader rd;
  np_list out;
  size_t out_bytes, out_max;
  int closing;  /* close once the output is flushed */
  int shut_wr;  /* shutdown(SHUT_WR) once the output is flushed */
  int eof_read; /* the client finished writing (splice) */
  int busy_peek; /* M_BUSY and the client sent more: stop watching */
  ev_timer idle_w; /* M_REQ: closes a client that sends no request */
  unsigned nhandlers; /* handler registrations made over this connection */
  unsigned noutcalls;
  /* An oversized persistent message being skipped (its callId gets the
   * error; the connection lives on). */
  int skipping;
  uint64_t skip_left, skip_size;
  uint8_t skip_head[SKIP_HEAD];
  size_t skip_head_len;
  /* A callback connection (STREAM_HANDLER address) being dialed. */
  int is_cb;
  int dialing; /* counted in ctl->ndials */
  ev_timer dial_w; /* connect timeout, or the retry back-off */
  unsigned dial_tries;
  ev_tstamp dial_deadline; /* CB_DIAL_TIMEOUT after the first attempt */
  uint8_t cb_addr[NP_MADDR_MAX];
  size_t cb_addr_len;
  char *cb_proto;
  void *net_op; /* pending connect/open/ping handle */
  np_peerid connect_peer; /* the pending CONNECT's peer */
  dhtreq *dht;  /* pending DHT request */
  np_list umembers; /* umember.clink */
  np_list routed;
  np_list outcalls;
  np_stream *stream; /* splice */
  int stream_paused;
  int read_paused;
  int out_paused; /* answers back up (OUT_HIGH): requests wait unread */
  uint8_t *held;  /* requests read but not yet handled while out_paused */
  size_t held_len;
  uint8_t *pend; /* client bytes the stream refused (buffer full) */
  size_t pend_len;
  uint64_t id;
  np_defer freeing; /* frees a closed client on the next turn */
};

struct np_ctl {
  np_host *h;
  int fd;
  ev_io accept_w;
  char *unix_path; /* to unlink */
  char addr[512];
  np_list clients;
  unsigned nclients; /* accepted ones; callback connections are apart */
  unsigned ndials;   /* callback connections still connecting */
  unsigned nprotos;  /* ugroups + sgroups */
  uint64_t next_id;
  np_ratelimit full_rl;
  np_list refused;  /* turned-away connections lingering (struct turned) */
  unsigned nrefused;
  np_list ugroups, sgroups;
  /* natpeer-p2pd only (np_ctl_p2pd_mode): p2pd's semantics for calls to
   * oneself, and the persistent-connection count its lifetime follows. */
  int p2pd;
  unsigned npersist;
  np_ctl_persist_fn persist_fn;
  void *persist_ud;
};

static struct ev_loop *EV(np_ctl *ctl) {
  return np_loop_ev(np_host_loop(ctl->h));
}

static void client_close(client *c, const char *why);
static void client_try_read(client *c);
static client *client_new(np_ctl *ctl, int fd, int mode);

/* natpeer-p2pd: tell main() how many persistent connections are open (it
 * only arms timers: the hook must not close clients). */
static void ctl_persist_count(np_ctl *ctl, int delta) {
  ctl->npersist = (unsigned)((int)ctl->npersist + delta);
  if (ctl->persist_fn)
    ctl->persist_fn(ctl->persist_ud, ctl->npersist);
}

/* p2pd semantics (natpeer-p2pd only): a call to this host's own peer ID
 * fails as go-libp2p's dial to self does, instead of running the local
 * handler (natpeer-host keeps the local dispatch). */
static int is_self_call(const client *c, const char *peer) {
  return c->ctl->p2pd &&
         strcmp(peer, np_host_identity(c->ctl->h)->id_str) == 0;
}

/* Close once everything queued has been written. */
static void close_after_flush(client *c);
static void idle_arm(client *c);

/* ---- output ----------------------------------------------------------- */

static void flush(client *c) {
  if (c->mode == M_CONNECTING) {
    if (c->fd >= 0)
      ev_io_start(EV(c->ctl), &c->ww); /* on_write finishes the connect */
    return;
  }
  while (!np_list_empty(&c->out)) {
    outbuf *b = np_list_entry(c->out.next, outbuf, link);
    ssize_t n = send(c->fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      client_close(c, "write failed");
      return;
    }
    b->off += (size_t)n;
    c->out_bytes -= (size_t)n;
    if (b->off < b->len)
      break;
    np_list_remove(&b->link);
    free(b);
  }
  if (np_list_empty(&c->out)) {
    ev_io_stop(EV(c->ctl), &c->ww);
    if (c->closing) {
      client_close(c, NULL);
      return;
    }
    if (c->shut_wr)
      shutdown(c->fd, SHUT_WR);
  } else {
    ev_io_start(EV(c->ctl), &c->ww);
  }
  /* Answers drained: read requests again, from the next loop turn (flush
   * runs inside handlers; on_read handles what was held back first). */
  if (c->out_paused && c->out_bytes < OUT_HIGH / 2) {
    c->out_paused = 0;
    idle_arm(c);
    ev_io_start(EV(c->ctl), &c->rw);
    ev_feed_event(EV(c->ctl), &c->rw, EV_READ);
  }
  /* A spliced stream paused for our sake may flow again. */
  if (c->mode == M_SPLICE && c->stream && c->stream_paused &&
      c->out_bytes < SPLICE_HIGH / 2) {
    c->stream_paused = 0;
    c->stream->ops->pause(c->stream, 0);
  }
}

static void close_after_flush(client *c) {
  if (c->mode == M_DEAD)
    return;
  c->closing = 1;
  flush(c);
}

/* Queue |len| bytes (with an optional uvarint length prefix). */
static int queue(client *c, const uint8_t *data, size_t len, int prefixed) {
  size_t pre = prefixed ? np_lp_prefix_size(len) : 0;
  outbuf *b;
  if (c->mode == M_DEAD)
    return NP_ECLOSED;
  if (c->out_bytes + pre + len > c->out_max) {
    client_close(c, "client does not read its answers");
    return NP_ELIMIT;
  }
  if ((b = malloc(sizeof(*b) + pre + len)) == NULL)
    return NP_ENOMEM;
  b->off = 0;
  b->len = pre + len;
  if (prefixed)
    np_lp_put_prefix(len, b->data, pre);
  if (len)
    memcpy(b->data + pre, data, len);
  np_list_insert_tail(&c->out, &b->link);
  c->out_bytes += b->len;
  flush(c);
  return 0;
}

static int send_response(client *c, const Np__P2pd__Response *r) {
  size_t n = np__p2pd__response__get_packed_size(r);
  uint8_t stackbuf[4096], *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
  int rv;
  if (buf == NULL)
    return NP_ENOMEM;
  np__p2pd__response__pack(r, buf);
  rv = queue(c, buf, n, 1);
  if (buf != stackbuf)
    free(buf);
  return rv;
}

static void send_ok(client *c) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  send_response(c, &r);
}

static void send_error(client *c, const char *fmt, ...) NP_PRINTF(2, 3);
static void send_error(client *c, const char *fmt, ...) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  Np__P2pd__ErrorResponse e = NP__P2PD__ERROR_RESPONSE__INIT;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  e.msg = msg;
  r.type = NP__P2PD__RESPONSE__TYPE__ERROR;
  r.error = &e;
  send_response(c, &r);
}

static int send_persist(client *c, const Np__P2pd__PersistentConnectionResponse *r) {
  size_t n = np__p2pd__persistent_connection_response__get_packed_size(r);
  uint8_t stackbuf[4096], *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
  int rv;
  if (buf == NULL)
    return NP_ENOMEM;
  np__p2pd__persistent_connection_response__pack(r, buf);
  rv = queue(c, buf, n, 1);
  if (buf != stackbuf)
    free(buf);
  return rv;
}

static void persist_error(client *c, const uint8_t *id, const char *msg) {
  Np__P2pd__PersistentConnectionResponse r =
      NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__INIT;
  Np__P2pd__DaemonError e = NP__P2PD__DAEMON_ERROR__INIT;
  r.callid.data = (uint8_t *)id;
  r.callid.len = CALL_ID_LEN;
  e.message = (char *)msg;
  r.message_case =
      NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_DAEMON_ERROR;
  r.daemonerror = &e;
  send_persist(c, &r);
}

static void persist_plain(client *c, const uint8_t *id, int cancel) {
  Np__P2pd__PersistentConnectionResponse r =
      NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__INIT;
  Np__P2pd__Cancel cn = NP__P2PD__CANCEL__INIT;
  r.callid.data = (uint8_t *)id;
  r.callid.len = CALL_ID_LEN;
  if (cancel) {
    r.message_case = NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CANCEL;
    r.cancel = &cn;
  }
  send_persist(c, &r);
}

/* ---- peer ID helpers ----------------------------------------------------- */

static int peer_from_bytes(const ProtobufCBinaryData *b, np_peerid *id) {
  return np_peerid_from_bytes(id, b->data, b->len);
}

static int peer_text(const ProtobufCBinaryData *b, char *out, size_t cap) {
  np_peerid id;
  if (peer_from_bytes(b, &id) != 0)
    return NP_EINVAL;
  return np_peerid_to_string(&id, out, cap) < 0 ? NP_EINVAL : 0;
}

/* ---- unary handlers served by clients ----------------------------------- */

static void routed_free(routed *r) {
  np_list_remove(&r->link);
  free(r);
}

static void on_call_canceled(np_call *call, void *ud) {
  routed *r = ud;
  client *c = r->c;
  uint8_t id[CALL_ID_LEN];
  (void)call;
  /* The caller went away: forget the call, then tell the client (telling
   * it may fail and close it, which must not find |r| again). */
  memcpy(id, r->id, CALL_ID_LEN);
  routed_free(r);
  persist_plain(c, id, 1);
}

static void ctl_on_unary(np_call *call, const uint8_t *req, size_t len,
                         void *ud) {
  ugroup *g = ud;
  Np__P2pd__PersistentConnectionResponse r =
      NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__INIT;
  Np__P2pd__CallUnaryRequest cu = NP__P2PD__CALL_UNARY_REQUEST__INIT;
  np_peerid pid;
  umember *m;
  routed *rt;
  np_list *it;
  size_t i;
  if (g->n == 0) {
    np_call_fail(call, "handler unavailable");
    return;
  }
  it = g->members.next;
  for (i = g->rr++ % g->n; i > 0; i--)
    it = it->next;
  /* Round robin, passing over clients that do not read what they were
   * sent: a call they would only queue fails now, and they stay. */
  for (i = 0, m = NULL; i < g->n; i++, it = it->next) {
    if (it == &g->members)
      it = it->next;
    m = np_list_entry(it, umember, glink);
    if (m->c->out_bytes < m->c->out_max / 2)
      break;
    m = NULL;
  }
  if (m == NULL) {
    np_call_fail(call, "handler client is not reading its requests");
    return;
  }
  if ((rt = calloc(1, sizeof(*rt))) == NULL) {
    np_call_fail(call, "out of memory");
    return;
  }
  rt->c = m->c;
  rt->call = call;
  memcpy(rt->id, call->call_id, CALL_ID_LEN);
  np_list_insert_tail(&m->c->routed, &rt->link);
  /* The call belongs to the client it went to from now on. */
  np_list_remove(&call->owner_link);
  call->cancel_cb = on_call_canceled;
  call->cancel_ud = rt;
  if (np_peerid_parse(&pid, call->peer, strlen(call->peer)) != 0)
    pid.len = 0;
  cu.peer.data = pid.bytes;
  cu.peer.len = pid.len;
  cu.proto = g->proto;
  cu.data.data = (uint8_t *)req;
  cu.data.len = len;
  r.callid.data = rt->id;
  r.callid.len = CALL_ID_LEN;
  r.message_case =
      NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_REQUEST_HANDLING;
  r.requesthandling = &cu;
  send_persist(m->c, &r);
}

static void ugroup_free(ugroup *g) {
  np_list *it, *tmp;
  np_proto_remove(np_host_protos(g->ctl->h), g->proto, g);
  np_list_for_each_safe(it, tmp, &g->pending) {
    np_call_owner_gone(np_list_entry(it, np_call, owner_link));
  }
  np_list_remove(&g->link);
  g->ctl->nprotos--;
  free(g->proto);
  free(g);
}

static void umember_free(umember *m) {
  ugroup *g = m->g;
  np_list_remove(&m->glink);
  np_list_remove(&m->clink);
  m->c->nhandlers--;
  g->n--;
  free(m);
  if (g->n == 0)
    ugroup_free(g);
}

static ugroup *ugroup_find(np_ctl *ctl, const char *proto) {
  np_list *it;
  for (it = ctl->ugroups.next; it != &ctl->ugroups; it = it->next) {
    ugroup *g = np_list_entry(it, ugroup, link);
    if (strcmp(g->proto, proto) == 0)
      return g;
  }
  return NULL;
}

static const char *taken_msg(const np_handler *t, char *buf, size_t cap,
                             const char *proto) {
  snprintf(buf, cap, "handler for protocol %s already set%s%s", proto,
           t && t->owner_kind == NP_OWNER_PLUGIN ? " by plugin " : "",
           t && t->owner_kind == NP_OWNER_PLUGIN && t->owner_name
               ? t->owner_name
               : "");
  return buf;
}

static void add_unary(client *c, const uint8_t *id,
                      const Np__P2pd__AddUnaryHandlerRequest *a) {
  np_ctl *ctl = c->ctl;
  ugroup *g;
  umember *m;
  char msg[1200];
  size_t plen = a->proto ? strlen(a->proto) : 0;
  if (np_proto_name_check(a->proto, plen) != 0) {
    persist_error(c, id, "invalid protocol name");
    return;
  }
  if (c->nhandlers >= MAX_HANDLERS_PER_CLIENT) {
    snprintf(msg, sizeof(msg),
             "too many handlers on this connection (at most %d)",
             MAX_HANDLERS_PER_CLIENT);
    persist_error(c, id, msg);
    return;
  }
  g = ugroup_find(ctl, a->proto);
  if (g != NULL) {
    np_list *it;
    for (it = g->members.next; it != &g->members; it = it->next)
      if (np_list_entry(it, umember, glink)->c == c) {
        persist_error(c, id, taken_msg(NULL, msg, sizeof(msg), a->proto));
        return;
      }
    if (!a->balanced) {
      persist_error(c, id, taken_msg(NULL, msg, sizeof(msg), a->proto));
      return;
    }
    if (g->n >= MAX_BALANCED) {
      snprintf(msg, sizeof(msg),
               "too many balanced handlers for this protocol (at most %d)",
               MAX_BALANCED);
      persist_error(c, id, msg);
      return;
    }
  } else {
    np_handler h;
    const np_handler *taken = NULL;
    int rv;
    if (ctl->nprotos >= MAX_CTL_PROTOS) {
      snprintf(msg, sizeof(msg),
               "control clients hold too many protocols (at most %d)",
               MAX_CTL_PROTOS);
      persist_error(c, id, msg);
      return;
    }
    if ((g = calloc(1, sizeof(*g))) == NULL ||
        (g->proto = strdup(a->proto)) == NULL) {
      free(g);
      persist_error(c, id, "out of memory");
      return;
    }
    g->ctl = ctl;
    np_list_init(&g->members);
    np_list_init(&g->pending);
    memset(&h, 0, sizeof(h));
    h.proto = g->proto;
    h.kind = NP_HANDLER_UNARY;
    h.owner_kind = NP_OWNER_CTL;
    h.owner = g;
    h.owner_name = "control client";
    h.unary = ctl_on_unary;
    h.ud = g;
    h.pending = &g->pending;
    rv = np_proto_add(np_host_protos(ctl->h), &h, &taken);
    if (rv != 0) {
      persist_error(c, id,
                    rv == NP_EEXIST
                        ? taken_msg(taken, msg, sizeof(msg), a->proto)
                        : np_strerror(rv));
      free(g->proto);
      free(g);
      return;
    }
    np_list_insert_tail(&ctl->ugroups, &g->link);
    ctl->nprotos++;
  }
  if ((m = calloc(1, sizeof(*m))) == NULL) {
    if (g->n == 0)
      ugroup_free(g);
    persist_error(c, id, "out of memory");
    return;
  }
  m->g = g;
  m->c = c;
  np_list_insert_tail(&g->members, &m->glink);
  np_list_insert_tail(&c->umembers, &m->clink);
  g->n++;
  c->nhandlers++;
  np_info("ctl", "unary-handler-added client=%llu proto=\"%s\" balanced=%d",
          (unsigned long long)c->id, g->proto, a->balanced ? 1 : 0);
  persist_plain(c, id, 0);
}

static void remove_unary(client *c, const uint8_t *id, const char *proto) {
  np_list *it;
  for (it = c->umembers.next; it != &c->umembers; it = it->next) {
    umember *m = np_list_entry(it, umember, clink);
    if (strcmp(m->g->proto, proto) == 0) {
      umember_free(m);
      persist_plain(c, id, 0);
      return;
    }
  }
  persist_error(c, id, "handler not registered on this connection");
}

static void unary_response(client *c, const uint8_t *id,
                           const Np__P2pd__CallUnaryResponse *u) {
  np_list *it;
  for (it = c->routed.next; it != &c->routed; it = it->next) {
    routed *r = np_list_entry(it, routed, link);
    if (memcmp(r->id, id, CALL_ID_LEN) != 0)
      continue;
    np_call *call = r->call;
    routed_free(r);
    call->cancel_cb = NULL;
    if (u && u->has_error) {
      char msg[1024];
      size_t n = u->error.len < sizeof(msg) - 1 ? u->error.len : sizeof(msg) - 1;
      if (n) /* an empty bytes field has no data pointer */
        memcpy(msg, u->error.data, n);
      msg[n] = '\0';
      np_call_fail(call, msg);
    } else {
      np_call_reply(call, u && u->has_response ? u->response.data : NULL,
                    u && u->has_response ? u->response.len : 0);
    }
    return;
  }
  /* No such call: it was canceled meanwhile. Nothing to do. */
}

/* ---- unary calls made by clients ---------------------------------------- */

static void outcall_done(void *ud, int err, const uint8_t *data, size_t len) {
  outcall *oc = ud;
  client *c = oc->c;
  Np__P2pd__PersistentConnectionResponse r =
      NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__INIT;
  Np__P2pd__CallUnaryResponse u = NP__P2PD__CALL_UNARY_RESPONSE__INIT;
  np_list_remove(&oc->link);
  c->noutcalls--;
  r.callid.data = oc->id;
  r.callid.len = CALL_ID_LEN;
  if (err == 0 || err == NP_EREMOTE) {
    if (err == 0) {
      u.has_response = 1;
      u.response.data = (uint8_t *)(data ? data : (const uint8_t *)"");
      u.response.len = len;
    } else {
      u.has_error = 1;
      u.error.data = (uint8_t *)(data ? data : (const uint8_t *)"");
      u.error.len = len;
    }
    r.message_case =
        NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CALL_UNARY_RESPONSE;
    r.callunaryresponse = &u;
    send_persist(c, &r);
  } else if (err == NP_ELIMIT) {
    char msg[160];
    snprintf(msg, sizeof(msg),
             "response exceeds max_message (%llu bytes)",
             (unsigned long long)np_host_conf(c->ctl->h)->limits.max_message);
    persist_error(c, oc->id, msg);
  } else {
    char msg[600];
    if (len && data)
      snprintf(msg, sizeof(msg), "%s: %.*s", np_strerror(err),
               (int)(len > 400 ? 400 : len), (const char *)data);
    else
      snprintf(msg, sizeof(msg), "%s", np_strerror(err));
    persist_error(c, oc->id, msg);
  }
  free(oc);
}

static void call_unary(client *c, const uint8_t *id,
                       const Np__P2pd__CallUnaryRequest *cu) {
  char peer[NP_PEERID_STRMAX];
  outcall *oc;
  int rv;
  if (peer_text(&cu->peer, peer, sizeof(peer)) != 0) {
    persist_error(c, id, "invalid peer ID");
    return;
  }
  if (cu->proto == NULL || np_proto_name_check(cu->proto, strlen(cu->proto))) {
    persist_error(c, id, "invalid protocol name");
    return;
  }
  if (is_self_call(c, peer)) {
    persist_error(c, id, "dial to self attempted");
    return;
  }
  if (c->noutcalls >= MAX_OUTCALLS) {
    char msg[120];
    snprintf(msg, sizeof(msg),
             "too many calls in flight on this connection (at most %d)",
             MAX_OUTCALLS);
    persist_error(c, id, msg);
    return;
  }
  if ((oc = calloc(1, sizeof(*oc))) == NULL) {
    persist_error(c, id, "out of memory");
    return;
  }
  oc->c = c;
  memcpy(oc->id, id, CALL_ID_LEN);
  np_list_init(&oc->link);
  rv = np_host_call_id(c->ctl->h, peer, cu->proto, id, cu->data.data,
                       cu->data.len, outcall_done, oc, &oc->o);
  if (rv != 0) {
    char msg[256];
    if (rv == NP_ELIMIT &&
        cu->data.len > np_host_conf(c->ctl->h)->limits.max_message)
      snprintf(msg, sizeof(msg), "message of %zu bytes exceeds max_message "
               "(%llu bytes)", cu->data.len,
               (unsigned long long)np_host_conf(c->ctl->h)->limits.max_message);
    else
      snprintf(msg, sizeof(msg), "%s", np_strerror(rv));
    persist_error(c, id, msg);
    free(oc);
    return;
  }
  np_list_insert_tail(&c->outcalls, &oc->link);
  c->noutcalls++;
}

static void cancel_call(client *c, const uint8_t *id) {
  np_list *it;
  for (it = c->outcalls.next; it != &c->outcalls; it = it->next) {
    outcall *oc = np_list_entry(it, outcall, link);
    if (memcmp(oc->id, id, CALL_ID_LEN) != 0)
      continue;
    np_list_remove(&oc->link);
    c->noutcalls--;
    np_host_call_cancel(c->ctl->h, oc->o);
    free(oc);
    persist_plain(c, id, 1);
    return;
  }
}

static void handle_persist(client *c, const uint8_t *msg, size_t len) {
  Np__P2pd__PersistentConnectionRequest *p =
      np__p2pd__persistent_connection_request__unpack(NULL, len, msg);
  const char *field;
  if (p == NULL) {
    client_close(c, "malformed PersistentConnectionRequest");
    return;
  }
  if (p->callid.len == CALL_ID_LEN &&
      np_pb_check_strings(
          &np__p2pd__persistent_connection_request__descriptor, msg, len,
          &field) == NP_EINVAL) {
    char m[160];
    snprintf(m, sizeof(m), "invalid request: %s contains a NUL byte", field);
    persist_error(c, p->callid.data, m);
    np__p2pd__persistent_connection_request__free_unpacked(p, NULL);
    return;
  }
  /* hivemind's daemon drops messages whose callId is not a uuid. */
  if (p->callid.len != CALL_ID_LEN) {
    np__p2pd__persistent_connection_request__free_unpacked(p, NULL);
    return;
  }
  switch (p->message_case) {
  case NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_ADD_UNARY_HANDLER:
    add_unary(c, p->callid.data, p->addunaryhandler);
    break;
  case NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_REMOVE_UNARY_HANDLER:
    remove_unary(c, p->callid.data,
                 p->removeunaryhandler->proto ? p->removeunaryhandler->proto
                                              : "");
    break;
  case NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY:
    call_unary(c, p->callid.data, p->callunary);
    break;
  case NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_UNARY_RESPONSE:
    unary_response(c, p->callid.data, p->unaryresponse);
    break;
  case NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CANCEL:
    cancel_call(c, p->callid.data);
    break;
  default:
    persist_error(c, p->callid.data, "empty request");
    break;
  }
  np__p2pd__persistent_connection_request__free_unpacked(p, NULL);
}

/* ---- splice: control connection <-> network stream ----------------------- */

static void splice_on_data(np_stream *s, const uint8_t *data, size_t len,
                           void *ud) {
  client *c = ud;
  (void)s;
  if (len == 0) { /* remote finished writing */
    c->shut_wr = 1;
    flush(c);
    return;
  }
  if (queue(c, data, len, 0) != 0)
    return;
  if (c->out_bytes >= SPLICE_HIGH && !c->stream_paused && c->stream) {
    c->stream_paused = 1;
    c->stream->ops->pause(c->stream, 1);
  }
}

static void splice_on_close(np_stream *s, int err, void *ud) {
  client *c = ud;
  (void)s;
  c->stream = NULL;
  if (err != 0 && err != NP_ECANCELED)
    np_info("ctl", "stream-closed client=%llu err=%s reason=\"%s\"",
            (unsigned long long)c->id, np_errname(err), np_strerror(err));
  else
    np_debug("ctl", "splice-closed client=%llu err=%s",
             (unsigned long long)c->id, np_errname(err));
  /* Deliver what is queued, then close. */
  close_after_flush(c);
}

static void splice_on_writable(np_stream *s, void *ud) {
  client *c = ud;
  if (c->pend) {
    int rv = s->ops->write(s, c->pend, c->pend_len);
    if (rv == NP_ELIMIT)
      return;
    free(c->pend);
    c->pend = NULL;
    if (rv < 0) {
      client_close(c, "stream write failed");
      return;
    }
  }
  if (c->read_paused) {
    c->read_paused = 0;
    ev_io_start(EV(c->ctl), &c->rw);
    client_try_read(c);
  }
}

static const np_stream_cbs splice_cbs = {sizeof(np_stream_cbs), NULL,
                                         splice_on_data, splice_on_close,
                                         splice_on_writable};

static void splice_start(client *c, np_stream *s) {
  c->mode = M_SPLICE;
  c->stream = s;
  np_stream_set_cbs(s, &splice_cbs, c);
  /* Pausing the stream stops the sender after at most one stream window
   * (np_quic: up to half of recv_window_max, 8 MiB), still delivered. */
  c->out_max = SPLICE_HIGH + (16u << 20);
}

static void splice_from_client(client *c, const uint8_t *data, size_t len) {
  int rv;
  if (c->stream == NULL)
    return;
  rv = c->stream->ops->write(c->stream, data, len);
  if (rv == NP_ELIMIT) {
    /* The network is slower than the client: hold this chunk and stop
     * reading the socket until the stream drains (on_writable). */
    if ((c->pend = malloc(len)) == NULL) {
      client_close(c, "out of memory");
      return;
    }
    memcpy(c->pend, data, len);
    c->pend_len = len;
    c->read_paused = 1;
    ev_io_stop(EV(c->ctl), &c->rw);
  } else if (rv < 0) {
    client_close(c, "stream write failed");
  }
}

/* ---- requests ------------------------------------------------------------ */

static void net_done(client *c) {
  c->net_op = NULL;
  if (c->mode == M_BUSY) {
    c->mode = M_REQ;
    c->busy_peek = 0;
    idle_arm(c);
    if (!c->out_paused) {
      ev_io_start(EV(c->ctl), &c->rw);
      client_try_read(c);
    }
  }
}

/* A request now waits on the network. The read watcher stays on so that a
 * client hanging up is noticed (and its op canceled) at once, not only when
 * the answer comes (busy_check). */
static void busy_begin(client *c) {
  c->mode = M_BUSY;
  c->busy_peek = 0;
}

/* Readable while a request waits: EOF or an error closes the client, which
 * cancels the op; bytes (a pipelined request) wait for the answer. */
static void busy_check(client *c) {
  uint8_t b;
  ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
  if (n == 0) {
    client_close(c, "client hung up while its request waited");
  } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    client_close(c, "read failed");
  } else if (n > 0) {
    c->busy_peek = 1; /* level-triggered: stop until the answer */
    ev_io_stop(EV(c->ctl), &c->rw);
  }
}

static void on_connected(void *ud, int err) {
  client *c = ud;
  np_relayc *rc;
  int st;
  /* The op is finishing: answering may close the client, which must not
   * cancel it again. */
  c->net_op = NULL;
  if (err == 0)
    send_ok(c);
  else if (err == NP_EUNREACH &&
           (rc = np_host_module(c->ctl->h, "relayc")) != NULL &&
           (st = np_trelay_refusal(np_relayc_transport(rc), &c->connect_peer,
                                   60000)) != 0)
    /* Name the relay's answer, as go's p2pd does ("NO_RESERVATION"). */
    send_error(c, "%s: the relay refused the circuit: %s (%d)",
               np_strerror(err), np_relaymsg_status_name(st), st);
  else
    send_error(c, "%s", np_strerror(err));
  net_done(c);
}

static void on_stream_opened(void *ud, int err, np_stream *s,
                             const char *proto) {
  client *c = ud;
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  Np__P2pd__StreamInfo si = NP__P2PD__STREAM_INFO__INIT;
  np_peerid pid;
  c->net_op = NULL;
  if (err != 0) {
    send_error(c, "%s", np_strerror(err));
    net_done(c);
    return;
  }
  np_peerid_parse(&pid, s->peer, strlen(s->peer));
  si.peer.data = pid.bytes;
  si.peer.len = pid.len;
  si.addr.data = s->addr;
  si.addr.len = s->addr_len;
  si.proto = (char *)proto;
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  r.streaminfo = &si;
  send_response(c, &r);
  if (c->mode == M_DEAD) {
    s->ops->reset(s);
    return;
  }
  splice_start(c, s);
  ev_io_start(EV(c->ctl), &c->rw);
  client_try_read(c);
}

static void on_pinged(void *ud, int err, int64_t rtt_us) {
  client *c = ud;
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  Np__Ctl__NpResponse nr = NP__CTL__NP_RESPONSE__INIT;
  uint8_t buf[64];
  c->net_op = NULL; /* as in on_connected */
  if (err != 0) {
    send_error(c, "ping failed: %s", np_strerror(err));
    net_done(c);
    return;
  }
  nr.n_rtt_us = 1;
  nr.rtt_us = &rtt_us;
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  r.has_natpeer = 1;
  r.natpeer.len = np__ctl__np_response__pack(&nr, buf);
  r.natpeer.data = buf;
  send_response(c, &r);
  net_done(c);
}

static uint64_t timeout_ms(int has, int64_t secs) {
  if (!has || secs <= 0)
    return DEFAULT_TIMEOUT_MS;
  if (secs > 3600)
    secs = 3600;
  return (uint64_t)secs * 1000;
}

static void req_identify(client *c) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  Np__P2pd__IdentifyResponse idr = NP__P2PD__IDENTIFY_RESPONSE__INIT;
  const np_identity *id = np_host_identity(c->ctl->h);
  void *net;
  const np_net_ops *ops = np_host_net(c->ctl->h, &net);
  const uint8_t *bins[32];
  size_t lens[32], n = 0;
  ProtobufCBinaryData addrs[32];
  if (ops)
    n = ops->addrs(net, bins, lens, 32);
  if (n > 32)
    n = 32;
  for (size_t i = 0; i < n; i++) {
    addrs[i].data = (uint8_t *)bins[i];
    addrs[i].len = lens[i];
  }
  idr.id.data = (uint8_t *)id->id.bytes;
  idr.id.len = id->id.len;
  idr.n_addrs = n;
  idr.addrs = addrs;
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  r.identify = &idr;
  send_response(c, &r);
}

static const np_net_ops *need_net(client *c, void **net) {
  const np_net_ops *ops = np_host_net(c->ctl->h, net);
  if (ops == NULL)
    send_error(c, "this host has no network transport");
  return ops;
}

static void req_connect(client *c, const Np__P2pd__ConnectRequest *cr) {
  void *net;
  const np_net_ops *ops;
  np_peerid pid;
  const uint8_t *bins[64];
  size_t lens[64], n;
  int rv;
  if (cr == NULL || peer_from_bytes(&cr->peer, &pid) != 0) {
    send_error(c, "invalid peer ID");
    return;
  }
  if ((ops = need_net(c, &net)) == NULL)
    return;
  n = cr->n_addrs < 64 ? cr->n_addrs : 64;
  for (size_t i = 0; i < n; i++) {
    bins[i] = cr->addrs[i].data;
    lens[i] = cr->addrs[i].len;
  }
  busy_begin(c);
  c->connect_peer = pid;
  rv = ops->connect(net, &pid, bins, lens, n,
                    timeout_ms(cr->has_timeout, cr->timeout), on_connected, c,
                    &c->net_op);
  if (rv != 0) {
    send_error(c, "%s", np_strerror(rv));
    net_done(c);
  }
}

static void req_stream_open(client *c, const Np__P2pd__StreamOpenRequest *so) {
  void *net;
  const np_net_ops *ops;
  np_peerid pid;
  int rv;
  if (so == NULL || peer_from_bytes(&so->peer, &pid) != 0) {
    send_error(c, "invalid peer ID");
    return;
  }
  if (so->n_proto == 0 || so->n_proto > 16) {
    send_error(c, "expected 1 to 16 protocols");
    return;
  }
  for (size_t i = 0; i < so->n_proto; i++)
    if (np_proto_name_check(so->proto[i], strlen(so->proto[i])) != 0) {
      send_error(c, "invalid protocol name");
      return;
    }
  /* A stream to oneself: say so (the network layer's NP_EINVAL read
   * "invalid argument"); go-libp2p's text. */
  if (np_peerid_equal(&pid, &np_host_identity(c->ctl->h)->id)) {
    send_error(c, "dial to self attempted (cannot open a stream to this "
                  "host's own peer ID)");
    return;
  }
  if ((ops = need_net(c, &net)) == NULL)
    return;
  busy_begin(c);
  rv = ops->open_stream(net, &pid, (const char *const *)so->proto, so->n_proto,
                        0, timeout_ms(so->has_timeout, so->timeout),
                        on_stream_opened, c, &c->net_op);
  if (rv != 0) {
    send_error(c, "%s", np_strerror(rv));
    net_done(c);
  }
}

static void req_disconnect(client *c, const Np__P2pd__DisconnectRequest *d) {
  void *net;
  const np_net_ops *ops;
  np_peerid pid;
  if (d == NULL || peer_from_bytes(&d->peer, &pid) != 0) {
    send_error(c, "invalid peer ID");
    return;
  }
  if ((ops = need_net(c, &net)) == NULL)
    return;
  ops->disconnect(net, &pid);
  send_ok(c);
}

static void req_list_peers(client *c) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  void *net;
  const np_net_ops *ops = np_host_net(c->ctl->h, &net);
  np_conn_info *ci = NULL;
  Np__P2pd__PeerInfo *pi = NULL, **pp = NULL;
  ProtobufCBinaryData *ad = NULL;
  size_t n = 0;
  if (ops) {
    n = ops->conns(net, NULL, 0);
    if (n > 4096)
      n = 4096;
    ci = calloc(n ? n : 1, sizeof(*ci));
    pi = calloc(n ? n : 1, sizeof(*pi));
    pp = calloc(n ? n : 1, sizeof(*pp));
    ad = calloc(n ? n : 1, sizeof(*ad));
    if (!ci || !pi || !pp || !ad) {
      send_error(c, "out of memory");
      goto out;
    }
    n = ops->conns(net, ci, n);
  }
  for (size_t i = 0; i < n; i++) {
    np__p2pd__peer_info__init(&pi[i]);
    pi[i].id.data = ci[i].peer.bytes;
    pi[i].id.len = ci[i].peer.len;
    ad[i].data = ci[i].addr;
    ad[i].len = ci[i].addr_len;
    pi[i].n_addrs = 1;
    pi[i].addrs = &ad[i];
    pp[i] = &pi[i];
  }
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  r.n_peers = n;
  r.peers = pp;
  send_response(c, &r);
out:
  free(ci);
  free(pi);
  free(pp);
  free(ad);
}

/* ---- stream handlers served by clients ------------------------------------ */

typedef struct sh_ctx {
  sgroup *g;
  client *cb; /* the connection to the client's callback address */
} sh_ctx;

static int dial_addr(const uint8_t *bin, size_t len, int *pfd, int *perr);
static void cb_dial(client *c);
static sgroup *sgroup_find(np_ctl *ctl, const char *proto);
static void sgroup_free(sgroup *g);

/* The remote's stream was accepted (its protocol confirmed) but no callback
 * connection will carry it. Finish it gracefully so that the confirmation
 * reaches the remote first: its open succeeds and its read ends, as with
 * go-libp2p-daemon. A reset here would discard the queued confirmation and
 * the remote would see its open fail instead. */
static void sh_fail(np_stream *s) {
  static const np_stream_cbs none = {sizeof(np_stream_cbs), NULL, NULL, NULL,
                                     NULL};
  if (s->closed)
    return;
  np_stream_set_cbs(s, &none, NULL);
  s->ops->close(s);
}

/* Nothing listens at |bin| any more (the client that registered it is
 * gone): drop it from |proto|'s callback addresses; the last one takes the
 * protocol out of the table. */
static void sh_forget(np_ctl *ctl, const char *proto, const uint8_t *bin,
                      size_t len) {
  sgroup *g = sgroup_find(ctl, proto);
  np_list *it, *tmp;
  if (g == NULL)
    return;
  np_list_for_each_safe(it, tmp, &g->addrs) {
    saddr *a = np_list_entry(it, saddr, link);
    if (a->len == len && memcmp(a->bin, bin, len) == 0) {
      np_list_remove(it);
      free(a);
      g->n--;
    }
  }
  if (g->n == 0) {
    np_info("ctl",
            "stream-handler-removed proto=\"%s\" reason=\"callback socket "
            "gone\"",
            proto);
    sgroup_free(g);
  }
}

/* The callback connection is made or abandoned: it no longer counts
 * against MAX_CB_DIALS. */
static void dial_done(client *c) {
  ev_timer_stop(EV(c->ctl), &c->dial_w);
  if (c->dialing) {
    c->dialing = 0;
    c->ctl->ndials--;
  }
}

/* The callback connection for c->stream cannot be made. */
static void cb_fail(client *c, int err, const char *why) {
  np_stream *s = c->stream;
  np_info("ctl",
          "callback-dial-failed client=%llu proto=\"%s\" reason=\"%s%s%s\"",
          (unsigned long long)c->id, c->cb_proto ? c->cb_proto : "", why,
          err ? ": " : "", err ? strerror(err) : "");
  if ((err == ENOENT || err == ECONNREFUSED) && c->cb_proto)
    sh_forget(c->ctl, c->cb_proto, c->cb_addr, c->cb_addr_len);
  c->stream = NULL;
  if (s)
    sh_fail(s);
  client_close(c, NULL);
}

static void on_dial_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  client *c = np_container_of(w, client, dial_w);
  (void)ev, (void)revents;
  if (c->fd < 0)
    cb_dial(c); /* back-off over: try again */
  else
    cb_fail(c, ETIMEDOUT, "connect did not complete");
}

static void cb_dial(client *c) {
  int fd = -1, err = 0, rv;
  if (c->stream == NULL || c->stream->closed) {
    client_close(c, NULL); /* the remote gave up meanwhile */
    return;
  }
  if (c->dial_tries == 0)
    c->dial_deadline = ev_now(EV(c->ctl)) + CB_DIAL_TIMEOUT;
  rv = dial_addr(c->cb_addr, c->cb_addr_len, &fd, &err);
  if (rv == 0) {
    c->fd = fd;
    ev_io_set(&c->rw, fd, EV_READ);
    ev_io_set(&c->ww, fd, EV_WRITE);
    ev_io_start(EV(c->ctl), &c->ww); /* on_write finishes the connect */
    ev_timer_set(&c->dial_w, c->dial_deadline - ev_now(EV(c->ctl)), 0.);
    ev_timer_start(EV(c->ctl), &c->dial_w);
    return;
  }
  if (err == EAGAIN && ev_now(EV(c->ctl)) < c->dial_deadline) {
    /* A unix listener whose backlog is full (asyncio's default is 100) is
     * busy, not gone: try again shortly. Jitter spreads the dials that hit
     * the full backlog together, so they do not all come back at once. */
    unsigned shift = c->dial_tries < 8 ? c->dial_tries : 8;
    uint16_t j;
    double d = CB_RETRY_FIRST * (double)(1u << shift);
    c->dial_tries++;
    if (d > CB_RETRY_MAX)
      d = CB_RETRY_MAX;
    np_crypto_random((uint8_t *)&j, sizeof(j));
    d *= 0.5 + (double)j / 65535.0; /* 50 % .. 150 % */
    ev_timer_set(&c->dial_w, d, 0.);
    ev_timer_start(EV(c->ctl), &c->dial_w);
    return;
  }
  cb_fail(c, err,
          err == EAGAIN ? "callback socket backlog stayed full" : "connect");
}

static void sh_on_open(np_stream *s, void *ud) {
  sgroup *g = ud;
  np_ctl *ctl = g->ctl;
  saddr *a;
  np_list *it;
  client *c;
  size_t i;
  if (g->n == 0) {
    sh_fail(s);
    return;
  }
  if (ctl->ndials >= MAX_CB_DIALS) {
    np_info("ctl",
            "callback-dial-refused proto=\"%s\" reason=\"%d callback "
            "connections already being dialed\"",
            g->proto, MAX_CB_DIALS);
    sh_fail(s);
    return;
  }
  it = g->addrs.next;
  for (i = g->rr++ % g->n; i > 0; i--)
    it = it->next;
  a = np_list_entry(it, saddr, link);
  /* A client object for the callback connection, spliced to |s|. */
  c = client_new(ctl, -1, M_CONNECTING);
  if (c == NULL || (c->cb_proto = strdup(g->proto)) == NULL) {
    if (c)
      client_close(c, NULL);
    sh_fail(s);
    return;
  }
  memcpy(c->cb_addr, a->bin, a->len);
  c->cb_addr_len = a->len;
  {
    Np__P2pd__StreamInfo si = NP__P2PD__STREAM_INFO__INIT;
    np_peerid pid;
    uint8_t buf[2048];
    size_t n;
    np_peerid_parse(&pid, s->peer, strlen(s->peer));
    si.peer.data = pid.bytes;
    si.peer.len = pid.len;
    si.addr.data = s->addr;
    si.addr.len = s->addr_len;
    si.proto = g->proto;
    n = np__p2pd__stream_info__get_packed_size(&si);
    if (n > sizeof(buf)) {
      client_close(c, "stream info too large");
      sh_fail(s);
      return;
    }
    np__p2pd__stream_info__pack(&si, buf);
    /* The bare StreamInfo goes first, queued until the dial completes;
     * reading the callback socket starts once it is connected. */
    splice_start(c, s);
    c->mode = M_CONNECTING;
    queue(c, buf, n, 1);
  }
  cb_dial(c);
}

/* The stream handler callbacks the protocol table holds for sgroups. Data
 * that arrives before splice_start (none: on_open splices at once) would
 * go nowhere, so on_open always splices or resets. */
static const np_stream_cbs sh_cbs = {sizeof(np_stream_cbs), sh_on_open, NULL,
                                     NULL, NULL};

static sgroup *sgroup_find(np_ctl *ctl, const char *proto) {
  np_list *it;
  for (it = ctl->sgroups.next; it != &ctl->sgroups; it = it->next) {
    sgroup *g = np_list_entry(it, sgroup, link);
    if (strcmp(g->proto, proto) == 0)
      return g;
  }
  return NULL;
}

static void sgroup_free(sgroup *g) {
  np_list *it, *tmp;
  np_proto_remove(np_host_protos(g->ctl->h), g->proto, g);
  /* Streams already handed out live on with their splice clients. */
  np_list_for_each_safe(it, tmp, &g->streams) { np_list_remove(it); }
  np_list_for_each_safe(it, tmp, &g->addrs) {
    np_list_remove(it);
    free(np_list_entry(it, saddr, link));
  }
  np_list_remove(&g->link);
  g->ctl->nprotos--;
  free(g->proto);
  free(g);
}

static int check_cb_addr(const uint8_t *bin, size_t len) {
  size_t off = 0;
  np_maddr_comp comp;
  int n = 0, ok = 0;
  if (np_maddr_validate(bin, len) != 0)
    return NP_EINVAL;
  while (np_maddr_next(bin, len, &off, &comp) == 1) {
    n++;
    if (n == 1 && comp.code == NP_MADDR_UNIX)
      ok = 1;
    if (n == 2 && comp.code == NP_MADDR_TCP)
      ok = 1;
  }
  return ok ? 0 : NP_ENOTSUP;
}

static void req_stream_handler(client *c, const Np__P2pd__StreamHandlerRequest *sh) {
  np_ctl *ctl = c->ctl;
  if (sh == NULL || check_cb_addr(sh->addr.data, sh->addr.len) != 0) {
    send_error(c, "callback address must be /unix/PATH or /ip4|ip6/A/tcp/P");
    return;
  }
  if (sh->n_proto == 0 || sh->n_proto > 64) {
    send_error(c, "expected 1 to 64 protocols");
    return;
  }
  if (sh->addr.len > NP_MADDR_MAX) {
    send_error(c, "callback address too long");
    return;
  }
  for (size_t i = 0; i < sh->n_proto; i++) {
    const char *proto = sh->proto[i];
    int balanced = sh->has_balanced && sh->balanced;
    sgroup *g;
    saddr *a;
    np_list *ai;
    if (np_proto_name_check(proto, strlen(proto)) != 0) {
      send_error(c, "invalid protocol name");
      return;
    }
    if (c->nhandlers >= MAX_HANDLERS_PER_CLIENT) {
      send_error(c, "too many handlers on this connection (at most %d)",
                 MAX_HANDLERS_PER_CLIENT);
      return;
    }
    g = sgroup_find(ctl, proto);
    if (g != NULL) {
      /* The same address again is the same registration, not another. */
      int dup = 0;
      for (ai = g->addrs.next; ai != &g->addrs; ai = ai->next) {
        saddr *o = np_list_entry(ai, saddr, link);
        if (o->len == sh->addr.len &&
            memcmp(o->bin, sh->addr.data, o->len) == 0)
          dup = 1;
      }
      if (dup && (balanced || g->n == 1))
        continue;
      if (balanced && g->n >= MAX_BALANCED) {
        send_error(c,
                   "too many balanced handlers for protocol %s (at most %d)",
                   proto, MAX_BALANCED);
        return;
      }
    }
    if (g == NULL) {
      np_handler h;
      const np_handler *taken = NULL;
      int rv;
      char msg[1200];
      if (ctl->nprotos >= MAX_CTL_PROTOS) {
        send_error(c, "control clients hold too many protocols (at most %d)",
                   MAX_CTL_PROTOS);
        return;
      }
      if ((g = calloc(1, sizeof(*g))) == NULL ||
          (g->proto = strdup(proto)) == NULL) {
        free(g);
        send_error(c, "out of memory");
        return;
      }
      g->ctl = ctl;
      np_list_init(&g->addrs);
      np_list_init(&g->streams);
      memset(&h, 0, sizeof(h));
      h.proto = g->proto;
      h.kind = NP_HANDLER_STREAM;
      h.owner_kind = NP_OWNER_CTL;
      h.owner = g;
      h.owner_name = "control client";
      h.stream = sh_cbs;
      h.ud = g;
      h.streams = &g->streams;
      rv = np_proto_add(np_host_protos(ctl->h), &h, &taken);
      if (rv != 0) {
        send_error(c, "%s", rv == NP_EEXIST
                                ? taken_msg(taken, msg, sizeof(msg), proto)
                                : np_strerror(rv));
        free(g->proto);
        free(g);
        return;
      }
      np_list_insert_tail(&ctl->sgroups, &g->link);
      ctl->nprotos++;
    } else if (!balanced) {
      /* Upstream p2pd overwrites the registration: the newest address
       * wins unless the client asked for balancing. */
      np_list *it, *tmp;
      np_list_for_each_safe(it, tmp, &g->addrs) {
        np_list_remove(it);
        free(np_list_entry(it, saddr, link));
      }
      g->n = 0;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL) {
      if (g->n == 0)
        sgroup_free(g);
      send_error(c, "out of memory");
      return;
    }
    memcpy(a->bin, sh->addr.data, sh->addr.len);
    a->len = sh->addr.len;
    np_list_insert_tail(&g->addrs, &a->link);
    g->n++;
    c->nhandlers++;
    np_info("ctl", "stream-handler-added proto=\"%s\" handlers=%zu", g->proto,
            g->n);
  }
  send_ok(c);
}

static void req_remove_stream_handler(client *c, const uint8_t *f9,
                                      size_t f9len) {
  Np__P2pd__RemoveStreamHandlerRequest *rs =
      np__p2pd__remove_stream_handler_request__unpack(NULL, f9len, f9);
  if (rs == NULL) {
    send_error(c, "malformed RemoveStreamHandlerRequest");
    return;
  }
  for (size_t i = 0; i < rs->n_proto; i++) {
    sgroup *g = sgroup_find(c->ctl, rs->proto[i]);
    np_list *it, *tmp;
    if (g == NULL)
      continue;
    np_list_for_each_safe(it, tmp, &g->addrs) {
      saddr *a = np_list_entry(it, saddr, link);
      if (a->len == rs->addr.len && memcmp(a->bin, rs->addr.data, a->len) == 0) {
        np_list_remove(it);
        free(a);
        g->n--;
      }
    }
    if (g->n == 0)
      sgroup_free(g);
  }
  np__p2pd__remove_stream_handler_request__free_unpacked(rs, NULL);
  send_ok(c);
}

/* ---- natpeer requests ----------------------------------------------------- */

typedef struct proto_list {
  Np__Ctl__NpProtocol *v;
  Np__Ctl__NpProtocol **pv;
  char (*owner)[80];
  size_t n, cap;
} proto_list;

static int collect_proto(const np_handler *h, void *ud) {
  proto_list *l = ud;
  if (l->n >= l->cap)
    return 1;
  np__ctl__np_protocol__init(&l->v[l->n]);
  l->v[l->n].name = h->proto;
  snprintf(l->owner[l->n], sizeof(l->owner[0]), "%s%s%s",
           h->owner_kind == NP_OWNER_PLUGIN ? "plugin"
           : h->owner_kind == NP_OWNER_CTL  ? "client"
                                            : "host",
           h->owner_kind == NP_OWNER_PLUGIN ? " " : "",
           h->owner_kind == NP_OWNER_PLUGIN && h->owner_name ? h->owner_name
                                                             : "");
  l->v[l->n].owner = l->owner[l->n];
  l->v[l->n].kind = h->kind == NP_HANDLER_UNARY ? "unary" : "stream";
  l->pv[l->n] = &l->v[l->n];
  l->n++;
  return 0;
}

static void send_np(client *c, const Np__Ctl__NpResponse *nr) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  size_t n = np__ctl__np_response__get_packed_size(nr);
  uint8_t *buf = malloc(n ? n : 1);
  if (buf == NULL) {
    send_error(c, "out of memory");
    return;
  }
  np__ctl__np_response__pack(nr, buf);
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  r.has_natpeer = 1;
  r.natpeer.data = buf;
  r.natpeer.len = n;
  send_response(c, &r);
  free(buf);
}

static void req_natpeer(client *c, int type, const ProtobufCBinaryData *body) {
  Np__Ctl__NpRequest *nq = NULL;
  Np__Ctl__NpResponse nr = NP__CTL__NP_RESPONSE__INIT;
  if (body && body->len) {
    nq = np__ctl__np_request__unpack(NULL, body->len, body->data);
    if (nq == NULL) {
      send_error(c, "malformed natpeer request");
      return;
    }
  }
  switch (type) {
  case NP__CTL__NP_TYPE__NP_PING: {
    void *net;
    const np_net_ops *ops;
    np_peerid pid;
    int rv;
    if (nq == NULL || !nq->has_peer || peer_from_bytes(&nq->peer, &pid) != 0) {
      send_error(c, "invalid peer ID");
      break;
    }
    if ((ops = need_net(c, &net)) == NULL)
      break;
    busy_begin(c);
    rv = ops->ping(net, &pid,
                   nq->has_timeout_ms && nq->timeout_ms > 0
                       ? (uint64_t)nq->timeout_ms
                       : 10000,
                   on_pinged, c, &c->net_op);
    if (rv != 0) {
      send_error(c, "ping failed: %s", np_strerror(rv));
      net_done(c);
    }
    break;
  }
  case NP__CTL__NP_TYPE__NP_PROTOCOLS: {
    proto_list l;
    size_t n = np_proto_count(np_host_protos(c->ctl->h));
    memset(&l, 0, sizeof(l));
    l.cap = n;
    l.v = calloc(n ? n : 1, sizeof(*l.v));
    l.pv = calloc(n ? n : 1, sizeof(*l.pv));
    l.owner = calloc(n ? n : 1, sizeof(*l.owner));
    if (l.v && l.pv && l.owner) {
      np_proto_foreach(np_host_protos(c->ctl->h), collect_proto, &l);
      nr.n_protocols = l.n;
      nr.protocols = l.pv;
      send_np(c, &nr);
    } else {
      send_error(c, "out of memory");
    }
    free(l.v);
    free(l.pv);
    free(l.owner);
    break;
  }
  case NP__CTL__NP_TYPE__NP_CONNS: {
    void *net;
    const np_net_ops *ops = np_host_net(c->ctl->h, &net);
    size_t n = ops ? ops->conns(net, NULL, 0) : 0;
    np_conn_info *ci;
    Np__Ctl__NpConn *cv, **pv;
    if (n > 4096)
      n = 4096;
    ci = calloc(n ? n : 1, sizeof(*ci));
    cv = calloc(n ? n : 1, sizeof(*cv));
    pv = calloc(n ? n : 1, sizeof(*pv));
    if (ci && cv && pv) {
      if (ops)
        n = ops->conns(net, ci, n);
      for (size_t i = 0; i < n; i++) {
        np__ctl__np_conn__init(&cv[i]);
        cv[i].peer.data = ci[i].peer.bytes;
        cv[i].peer.len = ci[i].peer.len;
        cv[i].addr.data = ci[i].addr;
        cv[i].addr.len = ci[i].addr_len;
        cv[i].outbound = ci[i].outbound;
        cv[i].has_rtt_us = ci[i].rtt_us >= 0;
        cv[i].rtt_us = ci[i].rtt_us;
        cv[i].has_age_ms = 1;
        cv[i].age_ms = ci[i].age_ms;
        cv[i].agent = ci[i].agent[0] ? ci[i].agent : NULL;
        cv[i].transport =
            ci[i].transport ? (char *)np_transport_name(ci[i].transport) : NULL;
        cv[i].has_limited = ci[i].limited != 0;
        cv[i].limited = ci[i].limited != 0;
        pv[i] = &cv[i];
      }
      nr.n_conns = n;
      nr.conns = pv;
      send_np(c, &nr);
    } else {
      send_error(c, "out of memory");
    }
    free(ci);
    free(cv);
    free(pv);
    break;
  }
  case NP__CTL__NP_TYPE__NP_NAT: {
    Np__Ctl__NpNat nat;
    np_natstatus *arena = NULL;
    if (np_natstatus_build(c->ctl->h, &nat, &arena) != 0) {
      send_error(c, "out of memory");
    } else {
      nr.nat = &nat;
      send_np(c, &nr);
    }
    np_natstatus_free(arena);
    break;
  }
  case NP__CTL__NP_TYPE__NP_VERSION: {
    char v[128];
    snprintf(v, sizeof(v), "natpeer/%s abi=%d.%d", PACKAGE_VERSION,
             NP_ABI_MAJOR, NP_ABI_MINOR);
    nr.version = v;
    send_np(c, &nr);
    break;
  }
  default:
    send_error(c, "unknown natpeer request type %u", (unsigned)type);
    close_after_flush(c);
    break;
  }
  if (nq)
    np__ctl__np_request__free_unpacked(nq, NULL);
}

/* ---- DHT requests (np_kad) ----------------------------------------------- */

#define DHT_COUNT_DEFAULT 20 /* FIND_PROVIDERS without a count (p2pd) */
#define DHT_COUNT_MAX 1000   /* providers asked for at most */
#define DHT_ADDRS_MAX 32          /* addresses in one PeerInfo */
#define DHT_TIMEOUT_MAX 3600      /* seconds */

/* A DHT request waiting on np_kad (one per client: requests are
 * sequential). It may outlive its client: when the client goes from inside
 * np_kad's stack (a write fails, the client is cut), the lookup is
 * cancelled from the next loop turn, never from inside kad's callback. */
struct dhtreq {
  client *c; /* NULL once the client went or the request was answered */
  np_loop *loop;
  struct ev_loop *ev;
  np_kad *kad;
  np_kad_lookup *lk; /* NULL once the lookup ended or was cancelled */
  int type;          /* Np__P2pd__DHTRequest__Type */
  int begun;         /* streaming: OK{dht BEGIN} sent */
  unsigned held;     /* frames on the stack using it: do not free */
  ev_timer timer_w;  /* the request's own timeout */
  np_defer reap;     /* the deferred cancel, then free */
};

static void dht_reap(void *arg) {
  dhtreq *q = arg;
  if (q->lk) /* still running: the module would have ended it on stop */
    np_kad_cancel(q->kad, q->lk);
  free(q);
}

/* The client is going (client_close): withdraw its request. */
static void dht_detach(client *c) {
  dhtreq *q = c->dht;
  if (q == NULL)
    return;
  c->dht = NULL;
  q->c = NULL;
  ev_timer_stop(q->ev, &q->timer_w);
  if (q->held) /* dht_leave finishes it */
    return;
  if (q->lk)
    np_kad_cancel(q->kad, q->lk);
  free(q);
}

static void dht_hold(dhtreq *q) { q->held++; }

/* A frame is done with |q|: free it once nothing refers to it; a lookup
 * still running whose client went is cancelled on the next turn. |q| may
 * be gone after this. */
static void dht_leave(dhtreq *q) {
  if (--q->held > 0 || q->c != NULL)
    return;
  if (q->lk == NULL) {
    if (np_defer_queued(&q->reap))
      np_loop_cancel(q->loop, &q->reap);
    free(q);
  } else if (!np_defer_queued(&q->reap)) {
    np_loop_post(q->loop, &q->reap);
  }
}

/* The request is answered: the client returns to its request loop on the
 * next turn (not from inside kad's callback, which a pipelined request
 * would re-enter). */
static void dht_finish(dhtreq *q) {
  client *c = q->c;
  if (c == NULL)
    return;
  c->dht = NULL;
  q->c = NULL;
  ev_timer_stop(q->ev, &q->timer_w);
  c->net_op = NULL;
  if (c->mode != M_BUSY)
    return;
  c->mode = M_REQ;
  c->busy_peek = 0;
  idle_arm(c);
  if (!c->out_paused) {
    ev_io_start(EV(c->ctl), &c->rw);
    ev_feed_event(EV(c->ctl), &c->rw, EV_READ);
  }
}

static const char *dht_errmsg(int err) {
  switch (err) {
  case NP_ENOENT:
    return "not found";
  case NP_ETIMEDOUT:
    return "timed out";
  case NP_ECANCELED:
    return "DHT stopped";
  case NP_ELIMIT:
    return "too many DHT lookups running";
  case NP_ENOTSUP:
    return "the DHT has no network";
  case NP_EINVAL:
    return "invalid key";
  default:
    return np_strerror(err);
  }
}

/* Answer the request with an error and finish it. */
static void dht_fail(dhtreq *q, const char *msg) {
  if (q->c == NULL)
    return;
  send_error(q->c, "%s", msg);
  dht_finish(q);
}

/* PeerInfo{id, addrs}: |pi| borrows |id| and |ad| (DHT_ADDRS_MAX). */
static void dht_peerinfo(Np__P2pd__PeerInfo *pi, ProtobufCBinaryData *ad,
                         const np_peerid *id, const uint8_t *const *addrs,
                         const size_t *lens, size_t n) {
  np__p2pd__peer_info__init(pi);
  pi->id.data = (uint8_t *)id->bytes;
  pi->id.len = id->len;
  if (n > DHT_ADDRS_MAX)
    n = DHT_ADDRS_MAX;
  for (size_t i = 0; i < n; i++) {
    ad[i].data = (uint8_t *)addrs[i];
    ad[i].len = lens[i];
  }
  pi->n_addrs = n;
  pi->addrs = ad;
}

/* |id|'s unexpired peerstore addresses (at most DHT_ADDRS_MAX). */
static size_t dht_ps_addrs(dhtreq *q, client *c, const np_peerid *id,
                           const uint8_t **addrs, size_t *lens) {
  np_ps_peer *p = np_peerstore_get(np_host_peerstore(c->ctl->h), id);
  size_t n = 0;
  if (p == NULL)
    return 0;
  np_peerstore_expire(p, np_now(q->loop));
  for (size_t i = 0; i < p->naddrs && n < DHT_ADDRS_MAX; i++) {
    addrs[n] = p->addrs[i].bin;
    lens[n++] = p->addrs[i].len;
  }
  return n;
}

/* A bare DHTResponse (a streamed item or END). */
static int send_dht(client *c, const Np__P2pd__DHTResponse *d) {
  size_t n = np__p2pd__dhtresponse__get_packed_size(d);
  uint8_t stackbuf[4096], *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
  int rv;
  if (buf == NULL)
    return NP_ENOMEM;
  np__p2pd__dhtresponse__pack(d, buf);
  rv = queue(c, buf, n, 1);
  if (buf != stackbuf)
    free(buf);
  return rv;
}

/* OK{dht{VALUE, peer or value}}: the single-shot answers. */
static void dht_answer(dhtreq *q, Np__P2pd__PeerInfo *pi, const uint8_t *val,
                       size_t len) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  Np__P2pd__DHTResponse d = NP__P2PD__DHTRESPONSE__INIT;
  if (q->c == NULL)
    return;
  d.type = NP__P2PD__DHTRESPONSE__TYPE__VALUE;
  d.peer = pi;
  if (val) {
    d.has_value = 1;
    d.value.data = (uint8_t *)val;
    d.value.len = len;
  }
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  r.dht = &d;
  send_response(q->c, &r);
  dht_finish(q);
}

/* OK{dht BEGIN}, once, before the first item. 0, or -1: client gone. */
static int dht_begin(dhtreq *q) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  Np__P2pd__DHTResponse b = NP__P2PD__DHTRESPONSE__INIT;
  if (q->c == NULL)
    return -1;
  if (q->begun)
    return 0;
  b.type = NP__P2PD__DHTRESPONSE__TYPE__BEGIN;
  r.type = NP__P2PD__RESPONSE__TYPE__OK;
  r.dht = &b;
  q->begun = 1;
  return send_response(q->c, &r) != 0 || q->c == NULL ? -1 : 0;
}

/* A streamed item (bare DHTResponse{VALUE}). Returns 0, or -1 when the
 * client is gone. A lookup cannot pause, but what one lookup reports is
 * bounded (np_kad: k closest, 256 providers or peers, one value per
 * answer), well under the client's out_max; a client that does not read
 * is not read either (out_backed_up), so it cannot start another. */
static int dht_item(dhtreq *q, Np__P2pd__PeerInfo *pi, const uint8_t *val,
                    size_t len) {
  Np__P2pd__DHTResponse d = NP__P2PD__DHTRESPONSE__INIT;
  if (q->c == NULL)
    return -1;
  if (dht_begin(q) != 0)
    return -1;
  d.type = NP__P2PD__DHTRESPONSE__TYPE__VALUE;
  d.peer = pi;
  if (val) {
    d.has_value = 1;
    d.value.data = (uint8_t *)val;
    d.value.len = len;
  }
  if (send_dht(q->c, &d) != 0 || q->c == NULL)
    return -1;
  return 0;
}

/* A stream ends: END after the items (none is an answer too: "nothing
 * found"); an error before any item is an ERROR answer; the module
 * stopping mid-stream closes the connection, so that a cut-short list
 * never looks complete. A timeout mid-stream ends it (what was found). */
static void dht_stream_end(dhtreq *q, int err) {
  Np__P2pd__DHTResponse d = NP__P2PD__DHTRESPONSE__INIT;
  if (q->c == NULL)
    return;
  if (err != 0 && err != NP_ENOENT && !(q->begun && err == NP_ETIMEDOUT)) {
    if (q->begun)
      client_close(q->c, "DHT stopped in the middle of a stream");
    else
      dht_fail(q, dht_errmsg(err));
    return;
  }
  if (dht_begin(q) != 0)
    return;
  d.type = NP__P2PD__DHTRESPONSE__TYPE__END;
  send_dht(q->c, &d);
  dht_finish(q);
}

static void dht_on_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  dhtreq *q = np_container_of(w, dhtreq, timer_w);
  (void)ev, (void)revents;
  if (q->lk) {
    np_kad_cancel(q->kad, q->lk);
    q->lk = NULL;
  }
  dht_hold(q);
  if (q->type == NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS ||
      q->type == NP__P2PD__DHTREQUEST__TYPE__SEARCH_VALUE ||
      q->type == NP__P2PD__DHTREQUEST__TYPE__FIND_PEERS_CONNECTED_TO_PEER)
    dht_stream_end(q, NP_ETIMEDOUT);
  else
    dht_fail(q, "timed out");
  dht_leave(q);
}

/* ---- np_kad callbacks: the final one clears q->lk first ---- */

static void dht_on_peer(void *ud, int err, const np_peerid *peer) {
  dhtreq *q = ud;
  q->lk = NULL;
  dht_hold(q);
  if (q->c && err == 0) {
    Np__P2pd__PeerInfo pi;
    ProtobufCBinaryData ad[DHT_ADDRS_MAX];
    const uint8_t *a[DHT_ADDRS_MAX];
    size_t l[DHT_ADDRS_MAX], n = dht_ps_addrs(q, q->c, peer, a, l);
    dht_peerinfo(&pi, ad, peer, a, l, n);
    dht_answer(q, &pi, NULL, 0);
  } else {
    dht_fail(q, dht_errmsg(err));
  }
  dht_leave(q);
}

static void dht_on_closest(void *ud, int err, const np_peerid *peers,
                           size_t n) {
  dhtreq *q = ud;
  q->lk = NULL;
  dht_hold(q);
  if (err == NP_ENOENT)
    dht_fail(q, "no peer answered");
  else if (err != 0)
    dht_fail(q, dht_errmsg(err));
  else {
    size_t i;
    for (i = 0; i < n; i++)
      if (dht_item(q, NULL, peers[i].bytes, peers[i].len) != 0)
        break;
    if (i == n)
      dht_stream_end(q, 0);
  }
  dht_leave(q);
}

static void dht_on_value(void *ud, int err, const uint8_t *val, size_t len) {
  dhtreq *q = ud;
  q->lk = NULL;
  dht_hold(q);
  if (err == 0)
    dht_answer(q, NULL, val, len);
  else
    dht_fail(q, dht_errmsg(err));
  dht_leave(q);
}

static void dht_on_each_value(void *ud, const uint8_t *val, size_t len) {
  dhtreq *q = ud;
  dht_hold(q);
  dht_item(q, NULL, val, len);
  dht_leave(q);
}

static void dht_on_provider(void *ud, const np_kad_provider *p) {
  dhtreq *q = ud;
  Np__P2pd__PeerInfo pi;
  ProtobufCBinaryData ad[DHT_ADDRS_MAX];
  dht_hold(q);
  dht_peerinfo(&pi, ad, p->id, p->addrs, p->lens, p->naddrs);
  dht_item(q, &pi, NULL, 0);
  dht_leave(q);
}

static void dht_on_connected_peer(void *ud, const np_peerid *peer) {
  dhtreq *q = ud;
  dht_hold(q);
  if (q->c) {
    Np__P2pd__PeerInfo pi;
    ProtobufCBinaryData ad[DHT_ADDRS_MAX];
    const uint8_t *a[DHT_ADDRS_MAX];
    size_t l[DHT_ADDRS_MAX], n = dht_ps_addrs(q, q->c, peer, a, l);
    dht_peerinfo(&pi, ad, peer, a, l, n);
    dht_item(q, &pi, NULL, 0);
  }
  dht_leave(q);
}

static void dht_on_stream_done(void *ud, int err) {
  dhtreq *q = ud;
  q->lk = NULL;
  dht_hold(q);
  dht_stream_end(q, err);
  dht_leave(q);
}

static void dht_on_count(void *ud, int err, size_t n) {
  dhtreq *q = ud;
  (void)n;
  q->lk = NULL;
  dht_hold(q);
  if (err == 0) {
    if (q->c)
      send_ok(q->c);
    dht_finish(q);
  } else if (err == NP_ENOENT) {
    dht_fail(q, q->type == NP__P2PD__DHTREQUEST__TYPE__PROVIDE
                    ? "no peer accepted the provider record (kept locally)"
                    : "no peer stored the value (kept locally)");
  } else {
    dht_fail(q, dht_errmsg(err));
  }
  dht_leave(q);
}

/* Why np_kad refused to start |type| (its error |rv|). */
static const char *dht_start_errmsg(int type, int rv) {
  if (type == NP__P2PD__DHTREQUEST__TYPE__PUT_VALUE) {
    if (rv == NP_ENOTSUP)
      return "no validator for the key's namespace";
    if (rv == NP_EINVAL)
      return "the namespace's validator refused the value (malformed)";
    if (rv == NP_EPEERID)
      return "the namespace's validator refused the value (a /pk/ key that "
             "is not the value's)";
    if (rv == NP_ELIMIT)
      return "value too large, or too many DHT lookups running";
  }
  return dht_errmsg(rv);
}

static int dht_key(const Np__P2pd__DHTRequest *d) {
  return d->has_key && d->key.len >= 1 && d->key.len <= NP_KADMSG_KEY_MAX;
}

static void req_dht(client *c, const Np__P2pd__DHTRequest *d) {
  np_kad *kad = np_host_module(c->ctl->h, "kad");
  np_peerid pid;
  const uint8_t *mh = NULL;
  size_t mhlen = 0, count = DHT_COUNT_DEFAULT;
  dhtreq *q;
  int rv, type;
  if (kad == NULL) {
    send_error(c, "DHT not enabled");
    return;
  }
  if (d == NULL) {
    send_error(c, "DHT request without its dht field");
    return;
  }
  type = (int)d->type;
  switch (type) {
  case NP__P2PD__DHTREQUEST__TYPE__FIND_PEER:
  case NP__P2PD__DHTREQUEST__TYPE__FIND_PEERS_CONNECTED_TO_PEER:
  case NP__P2PD__DHTREQUEST__TYPE__GET_PUBLIC_KEY:
    if (!d->has_peer || peer_from_bytes(&d->peer, &pid) != 0) {
      send_error(c, "invalid peer ID");
      return;
    }
    break;
  case NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS:
  case NP__P2PD__DHTREQUEST__TYPE__PROVIDE:
    if (!d->has_cid ||
        np_cid_multihash(d->cid.data, d->cid.len, &mh, &mhlen) != 0) {
      send_error(c, "invalid CID");
      return;
    }
    if (d->has_count && d->count > 0)
      count = d->count < DHT_COUNT_MAX ? (size_t)d->count : DHT_COUNT_MAX;
    break;
  case NP__P2PD__DHTREQUEST__TYPE__PUT_VALUE:
    if (!d->has_value) {
      send_error(c, "PUT_VALUE without a value");
      return;
    }
    /* fall through */
  case NP__P2PD__DHTREQUEST__TYPE__GET_CLOSEST_PEERS:
  case NP__P2PD__DHTREQUEST__TYPE__GET_VALUE:
  case NP__P2PD__DHTREQUEST__TYPE__SEARCH_VALUE:
    if (!dht_key(d)) {
      send_error(c, "invalid key (1 to %d bytes)", NP_KADMSG_KEY_MAX);
      return;
    }
    break;
  default:
    send_error(c, "unknown DHT request type %d", type);
    return;
  }
  if ((q = calloc(1, sizeof(*q))) == NULL) {
    send_error(c, "out of memory");
    return;
  }
  q->c = c;
  q->loop = np_host_loop(c->ctl->h);
  q->ev = EV(c->ctl);
  q->kad = kad;
  q->type = type;
  np_defer_init(&q->reap, dht_reap, q);
  ev_timer_init(&q->timer_w, dht_on_timeout, 0., 0.);
  c->dht = q;
  busy_begin(c);
  dht_hold(q); /* item callbacks may come before the call returns */
  switch (type) {
  case NP__P2PD__DHTREQUEST__TYPE__FIND_PEER:
    rv = np_kad_find_peer(kad, &pid, dht_on_peer, q, &q->lk);
    break;
  case NP__P2PD__DHTREQUEST__TYPE__FIND_PEERS_CONNECTED_TO_PEER:
    rv = np_kad_find_connected(kad, &pid, dht_on_connected_peer,
                               dht_on_stream_done, q, &q->lk);
    break;
  case NP__P2PD__DHTREQUEST__TYPE__GET_PUBLIC_KEY:
    rv = np_kad_get_public_key(kad, &pid, dht_on_value, q, &q->lk);
    break;
  case NP__P2PD__DHTREQUEST__TYPE__FIND_PROVIDERS:
    rv = np_kad_find_providers(kad, mh, mhlen, count, dht_on_provider,
                               dht_on_stream_done, q, &q->lk);
    break;
  case NP__P2PD__DHTREQUEST__TYPE__PROVIDE:
    rv = np_kad_provide(kad, mh, mhlen, dht_on_count, q, &q->lk);
    break;
  case NP__P2PD__DHTREQUEST__TYPE__GET_CLOSEST_PEERS:
    rv = np_kad_closest(kad, d->key.data, d->key.len, dht_on_closest, q,
                        &q->lk);
    break;
  case NP__P2PD__DHTREQUEST__TYPE__GET_VALUE:
    rv = np_kad_get_value(kad, d->key.data, d->key.len, dht_on_value, q,
                          &q->lk);
    break;
  case NP__P2PD__DHTREQUEST__TYPE__SEARCH_VALUE:
    rv = np_kad_search_value(kad, d->key.data, d->key.len, dht_on_each_value,
                             dht_on_stream_done, q, &q->lk);
    break;
  default: /* PUT_VALUE */
    rv = np_kad_put_value(kad, d->key.data, d->key.len, d->value.data,
                          d->value.len, dht_on_count, q, &q->lk);
    break;
  }
  if (rv != 0) {
    q->lk = NULL;
    dht_fail(q, dht_start_errmsg(type, rv));
  } else if (q->c && d->has_timeout && d->timeout > 0) {
    int64_t secs = d->timeout < DHT_TIMEOUT_MAX ? d->timeout : DHT_TIMEOUT_MAX;
    ev_timer_set(&q->timer_w, (double)secs, 0.);
    ev_timer_start(q->ev, &q->timer_w);
  }
  dht_leave(q);
}

static void handle_request(client *c, const uint8_t *msg, size_t len) {
  Np__P2pd__Request *r;
  const char *field;
  if (np_pb_check_strings(&np__p2pd__request__descriptor, msg, len, &field) ==
      NP_EINVAL) {
    /* protobuf-c would cut the string at the NUL: refuse, never guess. */
    send_error(c, "invalid request: %s contains a NUL byte", field);
    return;
  }
  r = np__p2pd__request__unpack(NULL, len, msg);
  if (r == NULL) {
    send_error(c, "malformed request");
    close_after_flush(c);
    return;
  }
  switch ((int)r->type) {
  case NP__P2PD__REQUEST__TYPE__IDENTIFY:
    req_identify(c);
    break;
  case NP__P2PD__REQUEST__TYPE__CONNECT:
    req_connect(c, r->connect);
    break;
  case NP__P2PD__REQUEST__TYPE__STREAM_OPEN:
    req_stream_open(c, r->streamopen);
    break;
  case NP__P2PD__REQUEST__TYPE__STREAM_HANDLER:
    req_stream_handler(c, r->streamhandler);
    break;
  case NP__P2PD__REQUEST__TYPE__DHT:
    req_dht(c, r->dht);
    break;
  case NP__P2PD__REQUEST__TYPE__LIST_PEERS:
    req_list_peers(c);
    break;
  case NP__P2PD__REQUEST__TYPE__CONNMANAGER:
    send_ok(c);
    break;
  case NP__P2PD__REQUEST__TYPE__DISCONNECT:
    req_disconnect(c, r->disconnect);
    break;
  case NP__P2PD__REQUEST__TYPE__PUBSUB:
    send_error(c, "PubSub not enabled");
    break;
  case NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE:
    if (r->has_field9) {
      send_error(c, "peerstore requests are not supported");
      break;
    }
    send_ok(c);
    if (c->mode == M_DEAD) /* the answer could not be written */
      break;
    c->mode = M_PERSIST;
    ctl_persist_count(c->ctl, +1); /* natpeer-p2pd's lifetime */
    np_lp_free(&c->rd);
    np_lp_init(&c->rd, np_host_conf(c->ctl->h)->limits.max_message +
                           PERSIST_OVERHEAD);
    c->out_max = OUT_MAX_BASE + 4 * np_host_conf(c->ctl->h)->limits.max_message;
    np_debug("ctl", "persistent client=%llu", (unsigned long long)c->id);
    break;
  case NP__P2PD__REQUEST__TYPE__REMOVE_STREAM_HANDLER:
    req_remove_stream_handler(c, r->field9.data, r->has_field9 ? r->field9.len : 0);
    break;
  default:
    if ((int)r->type >= 64)
      req_natpeer(c, (int)r->type, r->has_natpeer ? &r->natpeer : NULL);
    else {
      send_error(c, "unknown request type %u", (unsigned)r->type);
      close_after_flush(c);
    }
    break;
  }
  np__p2pd__request__free_unpacked(r, NULL);
}

/* ---- reading -------------------------------------------------------------- */

/* The callId and the kind (3 callUnary, 4 unaryResponse) of a skipped
 * PersistentConnectionRequest, from its first bytes. 0 if not found. */
static int skipped_call(const uint8_t *b, size_t len, uint8_t id[CALL_ID_LEN],
                        int *kind) {
  size_t off = 0;
  int have_id = 0;
  *kind = 0;
  while (off < len) {
    uint64_t tag, v;
    np_ssize n = np_varint_decode(b + off, len - off, &tag);
    if (n < 0)
      break;
    off += (size_t)n;
    if ((tag & 7) != 2) /* our requests have only length-delimited fields */
      break;
    if ((tag >> 3) == 3 || (tag >> 3) == 4) {
      *kind = (int)(tag >> 3);
      break; /* the rest is the oversized body */
    }
    if ((n = np_varint_decode(b + off, len - off, &v)) < 0)
      break;
    off += (size_t)n;
    if (v > len - off)
      break;
    if ((tag >> 3) == 1 && v == CALL_ID_LEN) {
      memcpy(id, b + off, CALL_ID_LEN);
      have_id = 1;
    }
    off += (size_t)v;
  }
  return have_id;
}

/* An oversized persistent message has been skipped: fail that one call,
 * keep the connection (hivemind has other calls in flight on it). */
static void skip_done(client *c) {
  uint8_t id[CALL_ID_LEN];
  int kind;
  char msg[200];
  unsigned long long max = np_host_conf(c->ctl->h)->limits.max_message;
  c->skipping = 0;
  if (!skipped_call(c->skip_head, c->skip_head_len, id, &kind)) {
    np_info("ctl",
            "oversized-message-dropped client=%llu bytes=%llu reason=\"no "
            "callId\"",
            (unsigned long long)c->id, (unsigned long long)c->skip_size);
    return;
  }
  if (kind == 4) {
    np_list *it;
    snprintf(msg, sizeof(msg),
             "response of %llu bytes exceeds max_message (%llu bytes)",
             (unsigned long long)c->skip_size, max);
    np_info("ctl", "oversized-response client=%llu bytes=%llu",
            (unsigned long long)c->id, (unsigned long long)c->skip_size);
    for (it = c->routed.next; it != &c->routed; it = it->next) {
      routed *r = np_list_entry(it, routed, link);
      if (memcmp(r->id, id, CALL_ID_LEN) == 0) {
        np_call *call = r->call;
        routed_free(r);
        call->cancel_cb = NULL;
        np_call_fail(call, msg);
        break;
      }
    }
    /* The handler client is not told: it expects nothing for that callId
     * (hivemind would not know what to do with it); its caller is. */
    return;
  }
  snprintf(msg, sizeof(msg),
           "message of %llu bytes exceeds max_message (%llu bytes)",
           (unsigned long long)c->skip_size, max);
  persist_error(c, id, msg);
}

/* Feed bytes of a message being skipped; returns how many it took. */
static size_t skip_feed(client *c, const uint8_t *buf, size_t len) {
  size_t take = len < c->skip_left ? len : (size_t)c->skip_left;
  if (c->skip_head_len < SKIP_HEAD) {
    size_t h = SKIP_HEAD - c->skip_head_len;
    if (h > take)
      h = take;
    memcpy(c->skip_head + c->skip_head_len, buf, h);
    c->skip_head_len += h;
  }
  c->skip_left -= take;
  if (c->skip_left == 0)
    skip_done(c);
  return take;
}

/* A client that does not read its answers stops being read (back-pressure:
 * it cannot ask for more), instead of being disconnected. */
static int out_backed_up(const client *c) {
  return (c->mode == M_REQ || c->mode == M_PERSIST) &&
         c->out_bytes >= OUT_HIGH;
}

static void pause_for_output(client *c, const uint8_t *rest, size_t len) {
  if (len) {
    if ((c->held = malloc(len)) == NULL) {
      client_close(c, "out of memory");
      return;
    }
    memcpy(c->held, rest, len);
    c->held_len = len;
  }
  c->out_paused = 1;
  ev_io_stop(EV(c->ctl), &c->rw);
  ev_timer_stop(EV(c->ctl), &c->idle_w); /* it is we who wait, not it */
}

static void consume(client *c, const uint8_t *buf, size_t len) {
  size_t off = 0;
  while (off < len && (c->mode == M_REQ || c->mode == M_PERSIST)) {
    const uint8_t *msg;
    size_t mlen;
    np_ssize n;
    if (out_backed_up(c) && !c->skipping) {
      pause_for_output(c, buf + off, len - off);
      return;
    }
    if (c->skipping) {
      off += skip_feed(c, buf + off, len - off);
      continue;
    }
    n = np_lp_feed(&c->rd, buf + off, len - off, &msg, &mlen);
    if (n == NP_ELIMIT && c->mode == M_PERSIST) {
      /* Over max_message + framing: read past it, answer its call. */
      size_t max = c->rd.max;
      off += np_lp_error_offset(&c->rd);
      c->skipping = 1;
      c->skip_size = c->skip_left = np_lp_declared(&c->rd);
      c->skip_head_len = 0;
      np_lp_free(&c->rd);
      np_lp_init(&c->rd, max);
      if (c->skip_left == 0)
        skip_done(c);
      continue;
    }
    if (n < 0) {
      if (n == NP_ELIMIT)
        client_close(c, "request too large");
      else
        client_close(c, "bad framing");
      return;
    }
    off += (size_t)n;
    if (msg == NULL)
      continue;
    if (c->mode == M_REQ) {
      handle_request(c, msg, mlen);
      if (c->mode != M_DEAD)
        idle_arm(c);
    } else {
      handle_persist(c, msg, mlen);
    }
    if (c->mode == M_DEAD)
      return;
  }
  /* Bytes after STREAM_OPEN's request belong to the stream. */
  if (off < len && c->mode == M_SPLICE)
    splice_from_client(c, buf + off, len - off);
  else if (off < len && c->mode == M_BUSY) {
    /* Clients wait for answers; one pipelining is a protocol error. */
    client_close(c, "request sent while another is in progress");
  }
}

static void client_try_read(client *c) {
  uint8_t buf[65536];
  if (c->out_paused)
    return;
  if (c->held) { /* read before the pause: handle it first, in order */
    uint8_t *h = c->held;
    size_t hl = c->held_len;
    c->held = NULL;
    c->held_len = 0;
    consume(c, h, hl);
    free(h);
    if (c->mode == M_DEAD || c->out_paused || c->held)
      return;
  }
  for (int rounds = 0; rounds < 16 && c->mode != M_DEAD; rounds++) {
    ssize_t n;
    if (out_backed_up(c)) {
      pause_for_output(c, NULL, 0);
      return;
    }
    if (c->mode == M_BUSY && !c->busy_peek) {
      busy_check(c);
      return;
    }
    if (c->mode == M_BUSY || c->mode == M_CONNECTING || c->read_paused ||
        c->eof_read)
      return;
    if (c->mode == M_SPLICE && c->stream == NULL)
      return;
    n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        client_close(c, "read failed");
      return;
    }
    if (n == 0) {
      if (c->mode == M_SPLICE && c->stream) {
        c->eof_read = 1;
        ev_io_stop(EV(c->ctl), &c->rw);
        c->stream->ops->close(c->stream); /* FIN to the remote */
      } else {
        client_close(c, NULL);
      }
      return;
    }
    consume(c, buf, (size_t)n);
    if ((size_t)n < sizeof(buf))
      return;
  }
}

static void on_read(struct ev_loop *ev, ev_io *w, int revents) {
  client *c = np_container_of(w, client, rw);
  (void)ev, (void)revents;
  client_try_read(c);
}

static void on_write(struct ev_loop *ev, ev_io *w, int revents) {
  client *c = np_container_of(w, client, ww);
  (void)ev, (void)revents;
  if (c->mode == M_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err != 0) {
      cb_fail(c, err, "connect");
      return;
    }
    dial_done(c);
    c->mode = M_SPLICE;
    ev_io_start(EV(c->ctl), &c->rw);
  }
  flush(c);
}

/* ---- client lifecycle ------------------------------------------------------ */

static void on_idle(struct ev_loop *ev, ev_timer *w, int revents) {
  client *c = np_container_of(w, client, idle_w);
  char why[96];
  (void)ev, (void)revents;
  snprintf(why, sizeof(why), "no request within %.1f s", w->repeat);
  client_close(c, why);
}

/* A client waiting for its next request has control_idle_timeout to send
 * it; persistent, busy and spliced clients do not (their lifetime is the
 * client's business or bounded by their operation). Partial requests do
 * not restart the clock. */
static void idle_arm(client *c) {
  if (c->mode == M_REQ && !c->is_cb) {
    c->idle_w.repeat =
        (double)np_host_conf(c->ctl->h)->limits.control_idle_ms / 1000.;
    ev_timer_again(EV(c->ctl), &c->idle_w);
  } else {
    ev_timer_stop(EV(c->ctl), &c->idle_w);
  }
}

/* An accepted control connection (M_REQ, fd >= 0), or the callback
 * connection of a client stream handler (M_CONNECTING, fd -1 until
 * cb_dial). The caller checked the caps. */
static client *client_new(np_ctl *ctl, int fd, int mode) {
  client *c;
  if ((c = calloc(1, sizeof(*c))) == NULL) {
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  c->ctl = ctl;
  c->fd = fd;
  c->mode = mode;
  c->id = ++ctl->next_id;
  c->out_max = OUT_MAX_BASE;
  np_list_init(&c->out);
  np_list_init(&c->umembers);
  np_list_init(&c->routed);
  np_list_init(&c->outcalls);
  np_lp_init(&c->rd, REQ_MAX);
  ev_io_init(&c->rw, on_read, fd, EV_READ);
  ev_io_init(&c->ww, on_write, fd, EV_WRITE);
  ev_timer_init(&c->idle_w, on_idle, 0., 1.);
  ev_timer_init(&c->dial_w, on_dial_timer, 0., 0.);
  np_list_insert_tail(&ctl->clients, &c->link);
  if (mode == M_CONNECTING) {
    c->is_cb = 1;
    c->dialing = 1;
    ctl->ndials++;
  } else {
    ctl->nclients++;
    ev_io_start(EV(ctl), &c->rw);
    idle_arm(c);
  }
  return c;
}

/* Free a dead client on the next loop turn: callers up the stack may still
 * look at it. */
static void client_free(void *arg) {
  client *c = arg;
  free(c);
}

static void client_close(client *c, const char *why) {
  np_ctl *ctl = c->ctl;
  np_list *it, *tmp;
  void *net;
  const np_net_ops *ops;
  if (c->mode == M_DEAD)
    return;
  if (why)
    np_info("ctl", "client-closed client=%llu reason=\"%s\"",
            (unsigned long long)c->id, why);
  if (c->mode == M_PERSIST)
    ctl_persist_count(ctl, -1); /* natpeer-p2pd's lifetime */
  c->mode = M_DEAD;
  ev_io_stop(EV(ctl), &c->rw);
  ev_io_stop(EV(ctl), &c->ww);
  ev_timer_stop(EV(ctl), &c->idle_w);
  dial_done(c);
  ops = np_host_net(ctl->h, &net);
  if (c->net_op && ops)
    ops->cancel(net, c->net_op);
  c->net_op = NULL;
  dht_detach(c);
  /* Its handlers go; calls it was answering fail; calls it made cancel. */
  np_list_for_each_safe(it, tmp, &c->umembers) {
    umember_free(np_list_entry(it, umember, clink));
  }
  np_list_for_each_safe(it, tmp, &c->routed) {
    routed *r = np_list_entry(it, routed, link);
    np_call *call = r->call;
    routed_free(r);
    call->cancel_cb = NULL;
    np_call_fail(call, "handler client disconnected");
  }
  np_list_for_each_safe(it, tmp, &c->outcalls) {
    outcall *oc = np_list_entry(it, outcall, link);
    np_list_remove(&oc->link);
    c->noutcalls--;
    np_host_call_cancel(ctl->h, oc->o);
    free(oc);
  }
  if (c->stream) {
    np_stream *s = c->stream;
    c->stream = NULL;
    if (!s->closed) {
      s->cbs.on_close = NULL; /* we are its receiver and we are going */
      s->ops->reset(s);
    }
  }
  np_list_for_each_safe(it, tmp, &c->out) {
    np_list_remove(it);
    free(np_list_entry(it, outbuf, link));
  }
  free(c->pend);
  c->pend = NULL;
  free(c->held);
  c->held = NULL;
  np_lp_free(&c->rd);
  free(c->cb_proto);
  c->cb_proto = NULL;
  if (c->fd >= 0)
    close(c->fd);
  np_list_remove(&c->link);
  if (!c->is_cb)
    ctl->nclients--;
  np_defer_init(&c->freeing, client_free, c);
  np_loop_post(np_host_loop(ctl->h), &c->freeing);
}

/* A turned-away connection is kept open for a moment after its answer,
 * reading and dropping what the client sends: closing at once would make
 * the client's own request write fail (EPIPE) before it reads why. */
#define TURNED_MAX 64
#define TURNED_LINGER 1.0

typedef struct turned {
  np_list link;
  np_ctl *ctl;
  ev_io rw;
  ev_timer t;
} turned;

static void turned_free(turned *t) {
  ev_io_stop(EV(t->ctl), &t->rw);
  ev_timer_stop(EV(t->ctl), &t->t);
  close(t->rw.fd);
  np_list_remove(&t->link);
  t->ctl->nrefused--;
  free(t);
}

static void turned_read(struct ev_loop *ev, ev_io *w, int revents) {
  turned *t = np_container_of(w, turned, rw);
  uint8_t buf[4096];
  ssize_t n = recv(w->fd, buf, sizeof(buf), 0);
  (void)ev, (void)revents;
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
    turned_free(t);
}

static void turned_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev, (void)revents;
  turned_free(np_container_of(w, turned, t));
}

/* Every slot is taken: say so in the protocol's own terms (an ERROR
 * Response, which p2pd clients print) and hang up. The answer is small
 * enough for any socket buffer; a client that cannot take it loses it. */
static void refuse_full(np_ctl *ctl, int fd, uint32_t max) {
  Np__P2pd__Response r = NP__P2PD__RESPONSE__INIT;
  Np__P2pd__ErrorResponse e = NP__P2PD__ERROR_RESPONSE__INIT;
  char msg[160];
  uint8_t buf[256];
  size_t n, pre;
  snprintf(msg, sizeof(msg),
           "too many control clients (%u connected, [limits] "
           "max_control_clients); try again later",
           (unsigned)max);
  e.msg = msg;
  r.type = NP__P2PD__RESPONSE__TYPE__ERROR;
  r.error = &e;
  n = np__p2pd__response__get_packed_size(&r);
  pre = (size_t)np_lp_put_prefix(n, buf, sizeof(buf));
  np__p2pd__response__pack(&r, buf + pre);
  if (send(fd, buf, pre + n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    /* nothing more to do: it is closed below either way */
  }
  shutdown(fd, SHUT_WR);
  {
    turned *t = ctl->nrefused < TURNED_MAX ? calloc(1, sizeof(*t)) : NULL;
    if (t == NULL) {
      close(fd);
    } else {
      t->ctl = ctl;
      ev_io_init(&t->rw, turned_read, fd, EV_READ);
      ev_timer_init(&t->t, turned_timeout, TURNED_LINGER, 0.);
      ev_io_start(EV(ctl), &t->rw);
      ev_timer_start(EV(ctl), &t->t);
      np_list_insert_tail(&ctl->refused, &t->link);
      ctl->nrefused++;
    }
  }
  if (np_ratelimit_ok(&ctl->full_rl, 5, "ctl", "client-refused"))
    np_warn("ctl", "client-refused reason=\"more than %u clients\"",
            (unsigned)max);
}

static void on_accept(struct ev_loop *ev, ev_io *w, int revents) {
  np_ctl *ctl = np_container_of(w, np_ctl, accept_w);
  (void)ev, (void)revents;
  for (int i = 0; i < 64; i++) {
    int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    uint32_t max = np_host_conf(ctl->h)->limits.max_control_clients;
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        np_warn("ctl", "accept-failed err=\"%s\"", strerror(errno));
      return;
    }
    if (ctl->nclients >= max) {
      refuse_full(ctl, fd, max);
      continue;
    }
    client_new(ctl, fd, M_REQ);
  }
}

/* ---- addresses ------------------------------------------------------------- */

/* Dial a /unix/PATH or /ip4|ip6/A/tcp/P callback address (nonblocking).
 * On failure |*perr| gets the errno (0 if the address is unusable). */
static int dial_addr(const uint8_t *bin, size_t len, int *pfd, int *perr) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int fd, rv = np_maddr_to_stream_sockaddr(bin, len, &ss, &sl);
  *perr = 0;
  if (rv != 0)
    return rv;
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *perr = errno;
    return NP_ESYS;
  }
  if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
    *perr = errno == EWOULDBLOCK ? EAGAIN : errno;
    close(fd);
    return NP_EUNREACH;
  }
  *pfd = fd;
  return 0;
}

static int listen_unix(np_ctl *ctl, const char *path, char *err,
                       size_t errlen) {
  const np_conf *conf = np_host_conf(ctl->h);
  struct sockaddr_un un;
  struct stat st;
  mode_t old;
  int fd;
  if (strlen(path) >= sizeof(un.sun_path)) {
    snprintf(err, errlen, "control socket %s: path too long", path);
    return NP_EINVAL;
  }
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path, strlen(path));
  if (lstat(path, &st) == 0) {
    int probe;
    if (!S_ISSOCK(st.st_mode)) {
      snprintf(err, errlen, "control socket %s: exists and is not a socket",
               path);
      return NP_EEXIST;
    }
    /* A live daemon answers: do not steal its socket. */
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 &&
        connect(probe, (struct sockaddr *)&un, sizeof(un)) == 0) {
      close(probe);
      snprintf(err, errlen,
               "control socket %s: in use by another running host", path);
      return NP_EEXIST;
    }
    if (probe >= 0)
      close(probe);
    unlink(path);
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
    return NP_ESYS;
  }
  old = umask(0177); /* created 0600: never world- or group-writable */
  if (bind(fd, (struct sockaddr *)&un, sizeof(un)) != 0) {
    umask(old);
    snprintf(err, errlen, "control socket %s: bind: %s", path,
             strerror(errno));
    close(fd);
    return NP_ESYS;
  }
  umask(old);
  if (conf->host.control_group) {
    struct group *gr = getgrnam(conf->host.control_group);
    if (gr == NULL || chown(path, (uid_t)-1, gr->gr_gid) != 0 ||
        chmod(path, 0660) != 0) {
      snprintf(err, errlen, "control socket %s: cannot give it to group %s%s%s",
               path, conf->host.control_group, gr ? ": " : " (no such group)",
               gr ? strerror(errno) : "");
      close(fd);
      unlink(path);
      return NP_ESYS;
    }
  }
  if (listen(fd, 128) != 0) {
    snprintf(err, errlen, "control socket %s: listen: %s", path,
             strerror(errno));
    close(fd);
    unlink(path);
    return NP_ESYS;
  }
  ctl->fd = fd;
  ctl->unix_path = strdup(path);
  snprintf(ctl->addr, sizeof(ctl->addr), "/unix%s", path);
  return 0;
}

static int listen_tcp(np_ctl *ctl, const char *text, char *err,
                      size_t errlen) {
  const np_conf *conf = np_host_conf(ctl->h);
  uint8_t bin[NP_MADDR_MAX];
  struct sockaddr_storage ss;
  socklen_t sl;
  np_ssize n = np_maddr_parse(text, strlen(text), bin, sizeof(bin));
  int fd, one = 1, loop;
  char host[64];
  if (n < 0 ||
      np_maddr_to_stream_sockaddr(bin, (size_t)n, &ss, &sl) != 0 ||
      ss.ss_family == AF_UNIX) {
    snprintf(err, errlen, "control %s: not a /ip4|ip6/A/tcp/PORT address",
             text);
    return NP_EINVAL;
  }
  loop = ss.ss_family == AF_INET
             ? ((const uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr)[0] ==
                   127
             : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
  if (!loop && !conf->host.control_allow_remote) {
    snprintf(err, errlen,
             "control %s: not a loopback address (set [host] "
             "control_allow_remote = yes to allow it)",
             text);
    return NP_EPERM;
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "control %s: %s", text, strerror(errno));
    return NP_ESYS;
  }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
    snprintf(err, errlen, "control %s: %s", text, strerror(errno));
    close(fd);
    return NP_ESYS;
  }
  sl = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
              sizeof(host));
    snprintf(ctl->addr, sizeof(ctl->addr), "/ip4/%s/tcp/%u", host,
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
  } else {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
              sizeof(host));
    snprintf(ctl->addr, sizeof(ctl->addr), "/ip6/%s/tcp/%u", host,
             ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  }
  ctl->fd = fd;
  return 0;
}

int np_ctl_new(np_ctl **pc, np_host *h, char *err, size_t errlen) {
  const char *addr = np_host_conf(h)->host.control;
  np_ctl *ctl = calloc(1, sizeof(*ctl));
  int rv;
  if (ctl == NULL)
    return NP_ENOMEM;
  ctl->h = h;
  ctl->fd = -1;
  np_list_init(&ctl->clients);
  np_list_init(&ctl->ugroups);
  np_list_init(&ctl->sgroups);
  np_list_init(&ctl->refused);
  if (strncmp(addr, "/ip4/", 5) == 0 || strncmp(addr, "/ip6/", 5) == 0)
    rv = listen_tcp(ctl, addr, err, errlen);
  else
    rv = listen_unix(ctl, addr, err, errlen);
  if (rv != 0) {
    free(ctl);
    return rv;
  }
  ev_io_init(&ctl->accept_w, on_accept, ctl->fd, EV_READ);
  ev_io_start(EV(ctl), &ctl->accept_w);
  np_info("ctl", "listening addr=%s", ctl->addr);
  *pc = ctl;
  return 0;
}

void np_ctl_p2pd_mode(np_ctl *ctl, np_ctl_persist_fn fn, void *ud) {
  ctl->p2pd = 1;
  ctl->persist_fn = fn;
  ctl->persist_ud = ud;
}

void np_ctl_del(np_ctl *ctl) {
  if (ctl == NULL)
    return;
  ctl->persist_fn = NULL; /* closing everything is no client leaving */
  ev_io_stop(EV(ctl), &ctl->accept_w);
  while (!np_list_empty(&ctl->refused))
    turned_free(np_list_entry(ctl->refused.next, turned, link));
  while (!np_list_empty(&ctl->clients))
    client_close(np_list_entry(ctl->clients.next, client, link), NULL);
  while (!np_list_empty(&ctl->ugroups))
    ugroup_free(np_list_entry(ctl->ugroups.next, ugroup, link));
  while (!np_list_empty(&ctl->sgroups))
    sgroup_free(np_list_entry(ctl->sgroups.next, sgroup, link));
  close(ctl->fd);
  if (ctl->unix_path) {
    unlink(ctl->unix_path);
    free(ctl->unix_path);
  }
  free(ctl);
}

const char *np_ctl_addr(const np_ctl *c) { return c->addr; }
