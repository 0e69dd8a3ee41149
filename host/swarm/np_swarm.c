#include "np_swarm.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "np_err.h"
#include "np_event.h"
#include "np_host.h"
#include "np_list.h"
#include "np_log.h"
#include "np_mss.h"
#include "np_multiaddr.h"
#include "np_peerstore.h"
#include "np_conn.h"
#include "np_quic.h"
#include "np_tmem.h"
#include "np_tquic.h"
#include "np_ttcp.h"
#include "np_stream.h"
#include "np_tls.h"

#define MAX_ADDRS 32
#define ADDR_LEN 128
#define MAX_DIAL_ADDRS 16
#define OBUF_CHUNK (256 * 1024)
#define ADDR_TTL_MS (3600u * 1000u)
#define NP_SWARM_MAX_TRANSPORTS 6
/* Advertised addresses beyond the listen ones (np_swarm_set_adverts). */
#define MAX_ADVERT_OWNERS 4
#define MAX_ADVERTS 16
#define DIAL_STAGGER_MS 250
/* A stream opened to a peer whose only connection is relayed (limited)
 * waits for a hole-punched direct one: DIRECT_GRACE_MS from the relayed
 * connection's start for a punch to begin, then as long as one runs
 * (np_swarm_conn_punching), at most PUNCH_WAIT_MAX_MS; then it goes over
 * the relayed connection after all. Only when both sides speak DCUtR. */
#define DIRECT_GRACE_MS 3000
#define PUNCH_WAIT_MAX_MS 60000
#define DCUTR_PROTO "/libp2p/dcutr"
/* Peer-routing lookups at once (each dial does at most one). */
#define MAX_ROUTING 32
/* Bytes the swarm itself queues on a stream (multistream messages, a
 * handler's writes after a refused one): far below this. */
#define MSS_CAP (64 * 1024)

typedef struct sconn sconn;
typedef struct sstream sstream;
typedef struct op op;

enum skind {
  S_NEG_IN = 1, /* listener negotiating */
  S_NEG_OUT,    /* dialer negotiating (op attached) */
  S_APP,        /* handed to a handler, a module or a control client */
  S_DEAD
};

/* OP_PROBE: np_net_ops ping, the liveness prober run on the peer's best
 * connection (dialing first if need be). */
enum opkind { OP_CONNECT = 1, OP_OPEN, OP_PROBE };

struct np_swarm {
  np_host *h;
  np_tls *tls;
  np_transport *tr[NP_SWARM_MAX_TRANSPORTS];
  size_t ntr;
  int has_mem;      /* holds a reference to the in-memory network */
  np_peerstore *ps; /* the host's */
  np_list conns;    /* sconn */
  np_list dials;    /* dialing */
  np_list ops;      /* op */
  uint8_t addr[MAX_ADDRS][ADDR_LEN];
  size_t addr_len[MAX_ADDRS];
  size_t naddrs;
  char addr_text[MAX_ADDRS][320];
  size_t nlisten; /* addr[0..nlisten): listen and [host] announce */
  struct advert {
    char owner[16];
    size_t n;
    uint8_t addr[MAX_ADVERTS][ADDR_LEN];
    size_t len[MAX_ADVERTS];
  } adv[MAX_ADVERT_OWNERS];
  np_defer adv_changed; /* NP_EV_LOCAL_ADDRS_CHANGED on the next turn */
  np_conn_cbs cbs;      /* what every transport reports to */
  ev_timer liveness; /* probes connections with answers awaited */
  np_swarm_prober prober;
  void *prober_ud;
  size_t routing; /* dials waiting for the router */
  int closing;
};

struct sconn {
  np_list link;
  np_swarm *sw;
  np_conn *nc; /* NULL once its conn_down ran */
  np_peerid peer;
  char peer_str[NP_PEERID_STRMAX];
  uint8_t raddr[ADDR_LEN];
  size_t raddr_len;
  int up, inbound;
  int closing; /* disconnect asked: not reused for new streams */
  int probing; /* a liveness probe is out (|probe|) */
  void *probe;
  int close_err; /* why we closed it, reported instead of NP_ECANCELED */
  uint64_t t_up_ms;
  unsigned awaiting; /* streams marked by np_swarm_stream_await */
  np_list streams;   /* sstream */
  struct dialing *dial; /* when this is a dial attempt */
  np_list swait; /* ops waiting for stream credit (op.wlink); the
                    transport's stream_credit says when to retry */
  np_list idwait; /* connect ops waiting for the peer's identify */
  np_list dwait;  /* open ops waiting for a direct connection (limited) */
  int punching;   /* a DCUtR exchange runs on it (np_swarm_conn_punching) */
  int identified; /* the peer's identify was read on this connection */
};

/* One dial toward a peer, shared by every op waiting for it. Its addresses
 * are tried in order of preference (QUIC first), the next one starting
 * DIAL_STAGGER_MS after the last or at once when an attempt fails, so a
 * dead address costs a stagger, not a timeout (happy eyeballs). The first
 * attempt that comes up wins; the others are closed. */
typedef struct dialing {
  np_list link;
  np_swarm *sw;
  np_peerid peer;
  uint8_t addrs[MAX_DIAL_ADDRS][ADDR_LEN];
  size_t lens[MAX_DIAL_ADDRS];
  int rank[MAX_DIAL_ADDRS];
  size_t n, next;
  size_t inflight; /* attempts started and not down yet */
  int last_err, peerid_err;
  int fresh; /* asked for a new connection: ops that may reuse one do not
                join it */
  int new_port; /* fresh, from a new ephemeral port (NP_SWARM_DIAL_NEW_PORT) */
  ev_timer stagger;
  int stagger_on;
  np_list waiters; /* op.wlink */
  /* No address was known: the router looks the peer up (|route|), and the
   * dial goes on with what the peerstore then has. |router| is the copy
   * the lookup was started with (its cancel outlives a removal). */
  int route_on;
  void *route;
  np_router router;
} dialing;

struct sstream {
  np_list link; /* in sconn->streams */
  sconn *c;
  np_cstream *cs;
  int kind;
  int reset_sent;
  int awaiting; /* counted in c->awaiting */
  np_mss mss;
  op *op; /* outgoing: the op this stream serves */
  np_stream *app;
  uint8_t *obuf; /* bytes waiting for send-buffer room */
  size_t olen, ooff;
  int fin_after; /* send FIN once obuf is written */
  /* The dialer's proposals: np_mss borrows them while negotiating, and the
   * op that asked may be gone before the answer comes. */
  char *protos[NP_MSS_MAX_PROPOSALS];
  size_t nprotos;
  /* S_APP paused by its receiver: what arrives meanwhile (at most the
   * stream window, which the transport withholds) is held here and
   * delivered on the turn after it resumes. */
  int app_paused;
  uint8_t *held;
  size_t held_len, held_cap;
  int held_fin;
  /* The stream ended cleanly while bytes were still held: |cs| is gone,
   * the stream left its connection's list, and it closes (err) once the
   * receiver has taken them. Data that arrived is never dropped because
   * the reader was slow. */
  int draining, drain_err;
  np_defer resume;
  np_loop *loop; /* outlives the connection and the swarm */
};

/* More than this held for a paused stream means the remote ignored flow
 * control (np_quic's stream window is at most half of recv_window_max). */
#define HELD_MAX ((size_t)32 << 20)

struct op {
  np_list link;  /* in sw->ops */
  np_list wlink; /* in dialing->waiters, sconn->swait or sconn->idwait */
  np_swarm *sw;
  int kind;
  np_peerid peer;
  ev_timer timer;
  int timer_on;
  sstream *st;
  int done;   /* completion queued or delivered */
  int queued; /* op_deliver is queued (or ran): it frees the op */
  np_defer deliver;
  np_loop *loop; /* outlives the swarm */
  /* completions */
  np_net_done_fn done_cb;
  np_net_stream_fn stream_cb;
  np_net_ping_fn ping_cb;
  void *ud;
  void *probe; /* OP_PROBE: the prober's handle while it runs */
  /* OP_OPEN */
  char *protos[NP_MSS_MAX_PROPOSALS];
  size_t nprotos;
  int lazy;
  /* deferred completion */
  int err;
  int want_identify; /* OP_CONNECT: complete after identify */
  int fresh;            /* dial a new connection even if one exists */
  int new_port;         /* fresh: from a new ephemeral port */
  struct dialing *dial; /* the dial it waits for (in its waiters) */
  /* OP_OPEN on a limited connection, waiting for a direct one */
  ev_timer dtimer;
  int dtimer_on;
  int limited_ok; /* go over a limited connection now */
  struct sconn *dconn; /* the limited connection it waits on (dwait) */
};

static struct ev_loop *EV(np_swarm *sw) {
  return np_loop_ev(np_host_loop(sw->h));
}
static uint64_t now_ms(np_swarm *sw) { return np_now(np_host_loop(sw->h)); }

static void op_finish(op *o, int err);
static int op_on_conn(op *o, sconn *c);
static void st_kill(sstream *st, int reset);
static void dial_next(struct dialing *d);
static void dial_abandon(struct dialing *d);
static void sconn_init(sconn *c, np_swarm *sw);

/* ---- addresses ------------------------------------------------------------ */

static void add_own_addr(np_swarm *sw, const uint8_t *bin, size_t len) {
  if (sw->naddrs >= MAX_ADDRS || len > ADDR_LEN)
    return;
  for (size_t i = 0; i < sw->naddrs; i++)
    if (sw->addr_len[i] == len && memcmp(sw->addr[i], bin, len) == 0)
      return;
  memcpy(sw->addr[sw->naddrs], bin, len);
  sw->addr_len[sw->naddrs] = len;
  {
    char t[200];
    if (np_maddr_to_string(bin, len, t, sizeof(t)) >= 0)
      snprintf(sw->addr_text[sw->naddrs], sizeof(sw->addr_text[0]), "%s/p2p/%s",
               t, np_host_identity(sw->h)->id_str);
  }
  sw->naddrs++;
}

/* Is |bin| (a listen address) on the wildcard IP? Sets |*fam|. */
static int wildcard_ip(const uint8_t *bin, size_t len, int *fam) {
  static const uint8_t zero[16];
  if (len >= 5 && bin[0] == NP_MADDR_IP4) {
    *fam = AF_INET;
    return memcmp(bin + 1, zero, 4) == 0;
  }
  if (len >= 17 && bin[0] == NP_MADDR_IP6) {
    *fam = AF_INET6;
    return memcmp(bin + 1, zero, 16) == 0;
  }
  *fam = 0;
  return 0;
}

/* Every bound listen address of every transport; a wildcard IP becomes one
 * address per interface (the same binary with the interface's IP: ip4 and
 * ip6 values have a fixed size, right after the one-byte code). */
static void collect_addrs(np_swarm *sw) {
  const np_conf *conf = np_host_conf(sw->h);
  struct ifaddrs *ifs = NULL;
  int have_ifs = getifaddrs(&ifs) == 0;
  sw->naddrs = 0;
  for (size_t t = 0; t < sw->ntr; t++) {
    const np_transport *tr = sw->tr[t];
    for (size_t i = 0; i < tr->ops->listen_count(tr); i++) {
      uint8_t bin[ADDR_LEN];
      np_ssize n = tr->ops->listen_addr(tr, i, bin, sizeof(bin));
      int fam;
      if (n <= 0)
        continue;
      if (!wildcard_ip(bin, (size_t)n, &fam)) {
        add_own_addr(sw, bin, (size_t)n);
        continue;
      }
      for (struct ifaddrs *it = have_ifs ? ifs : NULL; it; it = it->ifa_next) {
        if (it->ifa_addr == NULL || it->ifa_addr->sa_family != fam ||
            !(it->ifa_flags & IFF_UP))
          continue;
        if (fam == AF_INET) {
          memcpy(bin + 1, &((struct sockaddr_in *)it->ifa_addr)->sin_addr, 4);
        } else {
          const struct in6_addr *a6 =
              &((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr;
          if (IN6_IS_ADDR_LINKLOCAL(a6))
            continue;
          memcpy(bin + 1, a6, 16);
        }
        add_own_addr(sw, bin, (size_t)n);
      }
    }
  }
  if (have_ifs)
    freeifaddrs(ifs);
  for (size_t i = 0; i < conf->host.announce.n; i++) {
    uint8_t bin[ADDR_LEN];
    const char *t = conf->host.announce.v[i];
    np_ssize n = np_maddr_parse(t, strlen(t), bin, sizeof(bin));
    if (n > 0)
      add_own_addr(sw, bin, (size_t)n);
  }
  sw->nlisten = sw->naddrs;
}

/* Listen addresses, then every owner's adverts (deduplicated). */
static void rebuild_addrs(np_swarm *sw) {
  sw->naddrs = sw->nlisten;
  for (size_t o = 0; o < MAX_ADVERT_OWNERS; o++)
    for (size_t i = 0; i < sw->adv[o].n; i++)
      add_own_addr(sw, sw->adv[o].addr[i], sw->adv[o].len[i]);
}

static void adv_emit(void *arg) {
  np_swarm *sw = arg;
  np_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = NP_EV_LOCAL_ADDRS_CHANGED;
  np_events_emit(np_host_events(sw->h), &ev);
}

int np_swarm_set_adverts(np_swarm *sw, const char *owner,
                         const uint8_t *const *addrs, const size_t *lens,
                         size_t n) {
  struct advert *a = NULL, *fresh = NULL;
  size_t k = 0;
  if (owner == NULL || owner[0] == '\0' ||
      strlen(owner) >= sizeof(sw->adv[0].owner) || (n > 0 && !addrs))
    return NP_EINVAL;
  for (size_t o = 0; o < MAX_ADVERT_OWNERS; o++) {
    if (strcmp(sw->adv[o].owner, owner) == 0)
      a = &sw->adv[o];
    else if (fresh == NULL && sw->adv[o].owner[0] == '\0')
      fresh = &sw->adv[o];
  }
  if (a == NULL) {
    if (n == 0)
      return 0;
    if ((a = fresh) == NULL)
      return NP_ELIMIT;
    snprintf(a->owner, sizeof(a->owner), "%s", owner);
  }
  {
    struct advert next;
    memset(&next, 0, sizeof(next));
    for (size_t i = 0; i < n && k < MAX_ADVERTS; i++) {
      if (lens[i] == 0 || lens[i] > ADDR_LEN)
        continue;
      memcpy(next.addr[k], addrs[i], lens[i]);
      next.len[k++] = lens[i];
    }
    next.n = k;
    if (next.n == a->n) {
      size_t i;
      for (i = 0; i < k; i++)
        if (next.len[i] != a->len[i] ||
            memcmp(next.addr[i], a->addr[i], next.len[i]) != 0)
          break;
      if (i == k)
        return 0; /* unchanged: no event, no identify push */
    }
    memcpy(a->addr, next.addr, sizeof(next.addr));
    memcpy(a->len, next.len, sizeof(next.len));
    a->n = k;
  }
  if (k == 0)
    a->owner[0] = '\0';
  rebuild_addrs(sw);
  np_loop_post(np_host_loop(sw->h), &sw->adv_changed);
  return 0;
}

const np_conn_cbs *np_swarm_conn_cbs(np_swarm *sw, void **ud) {
  *ud = sw;
  return &sw->cbs;
}

int np_swarm_add_transport(np_swarm *sw, np_transport *t) {
  if (t == NULL || sw->closing)
    return NP_EINVAL;
  if (sw->ntr >= NP_SWARM_MAX_TRANSPORTS)
    return NP_ELIMIT;
  sw->tr[sw->ntr++] = t;
  return 0;
}

void np_swarm_remove_transport(np_swarm *sw, np_transport *t) {
  for (size_t i = 0; i < sw->ntr; i++) {
    if (sw->tr[i] != t)
      continue;
    memmove(&sw->tr[i], &sw->tr[i + 1], (sw->ntr - i - 1) * sizeof(sw->tr[0]));
    sw->ntr--;
    t->ops->del(t); /* its conn_downs run now, into the swarm */
    return;
  }
}

const char *np_swarm_addr_text(np_swarm *sw, size_t i) {
  return i < sw->naddrs ? sw->addr_text[i] : NULL;
}

/* ---- stream output ----------------------------------------------------------- */

/* Abort |st| from inside an operation a handler called: the reset is
 * queued and its close follows as an event, so the handler's stream
 * outlives the call. Elsewhere streams die at once (st_kill). */
static void st_reset(sstream *st) {
  if (st->reset_sent || st->cs == NULL)
    return;
  st->reset_sent = 1;
  np_cstream_reset(st->cs);
}

static void st_fail(sstream *st) {
  if (st->kind == S_APP)
    st_reset(st);
  else
    st_kill(st, 1);
}

static void st_pump(sstream *st) {
  while (st->obuf && st->ooff < st->olen) {
    size_t space = np_cstream_write_space(st->cs), n = st->olen - st->ooff;
    int rv;
    if (n > space)
      n = space;
    if (n > OBUF_CHUNK)
      n = OBUF_CHUNK;
    if (n == 0) /* a refused write arms stream_writable, which resumes */
      n = st->olen - st->ooff < OBUF_CHUNK ? st->olen - st->ooff : OBUF_CHUNK;
    rv = np_cstream_write(st->cs, st->obuf + st->ooff, n);
    if (rv == NP_ELIMIT)
      return;
    if (rv < 0) {
      st_fail(st);
      return;
    }
    st->ooff += n;
  }
  free(st->obuf);
  st->obuf = NULL;
  st->olen = st->ooff = 0;
  if (st->fin_after) {
    st->fin_after = 0;
    np_cstream_shutdown(st->cs);
  }
}

/* Queue |len| bytes and optionally FIN after them. With nothing queued the
 * transport takes what it can at once and only the rest is copied. More
 * than |cap| bytes waiting aborts the stream (NP_ELIMIT): what waits here
 * is one local answer, or the echo of a peer that does not read. */
static int st_send(sstream *st, const uint8_t *data, size_t len, int fin,
                   size_t cap) {
  if (len) {
    size_t keep = st->obuf ? st->olen - st->ooff : 0;
    if (keep + len > cap) {
      np_debug("swarm", "stream-backlog peer=%s bytes=%zu", st->c->peer_str,
               keep + len);
      st_fail(st);
      return NP_ELIMIT;
    }
    while (keep == 0 && len > 0) {
      size_t n = np_cstream_write_space(st->cs);
      int rv;
      if (n > len)
        n = len;
      if (n > OBUF_CHUNK)
        n = OBUF_CHUNK;
      if (n == 0)
        break;
      rv = np_cstream_write(st->cs, data, n);
      if (rv == NP_ELIMIT)
        break;
      if (rv < 0) {
        st_fail(st);
        return rv;
      }
      data += n;
      len -= n;
    }
    if (len) {
      uint8_t *nb = malloc(keep + len);
      if (nb == NULL)
        return NP_ENOMEM;
      if (keep)
        memcpy(nb, st->obuf + st->ooff, keep);
      memcpy(nb + keep, data, len);
      free(st->obuf);
      st->obuf = nb;
      st->olen = keep + len;
      st->ooff = 0;
    }
  }
  if (fin)
    st->fin_after = 1;
  if (st->obuf == NULL && st->fin_after) {
    st->fin_after = 0;
    return np_cstream_shutdown(st->cs);
  }
  st_pump(st);
  return 0;
}

static void st_send_mss(sstream *st) {
  const uint8_t *out;
  size_t n = np_mss_output(&st->mss, &out);
  if (n) {
    st_send(st, out, n, 0, MSS_CAP);
    np_mss_drain(&st->mss, n);
  }
}

/* ---- np_stream for handlers, modules and control clients ------------------------- */

static sstream *app_st(np_stream *s) {
  sstream *st = s->impl;
  return st && st->kind == S_APP ? st : NULL;
}

static int app_write(np_stream *s, const uint8_t *data, size_t len) {
  sstream *st = app_st(s);
  if (st == NULL || st->draining)
    return NP_ECLOSED;
  if (st->obuf) /* earlier bytes still queued: keep order */
    return NP_ELIMIT;
  return np_cstream_write(st->cs, data, len);
}

static int app_send(np_stream *s, const uint8_t *data, size_t len, int fin,
                    size_t max_queued) {
  sstream *st = app_st(s);
  if (st == NULL || st->draining || st->reset_sent)
    return NP_ECLOSED;
  return st_send(st, data, len, fin, max_queued);
}

static void app_close(np_stream *s) {
  sstream *st = app_st(s);
  if (st && !st->draining && !st->reset_sent)
    st_send(st, NULL, 0, 1, MSS_CAP);
}

static void app_reset(np_stream *s) {
  sstream *st = app_st(s);
  if (st == NULL)
    return;
  if (st->draining) { /* drop what is held; close on the next turn */
    st->held_len = 0;
    st->held_fin = 0;
    st->app_paused = 0;
    st->drain_err = NP_ECANCELED;
    np_loop_post(st->loop, &st->resume);
    return;
  }
  st_reset(st);
}

static void app_pause(np_stream *s, int paused) {
  sstream *st = app_st(s);
  if (st == NULL || st->app_paused == !!paused)
    return;
  st->app_paused = !!paused;
  if (!st->draining)
    np_cstream_pause(st->cs, paused);
  if (!paused && (st->held_len || st->held_fin || st->draining))
    np_loop_post(st->loop, &st->resume);
}

static void st_detach(sstream *st, int err);
static void st_free(sstream *st);

/* The receiver resumed: hand it what was held, then the FIN if one came. */
static void app_resume(void *arg) {
  sstream *st = arg;
  uint8_t *held = st->held;
  size_t len = st->held_len;
  int fin = st->held_fin;
  np_stream *s = st->app;
  if (st->kind != S_APP || s == NULL || st->app_paused)
    return;
  st->held = NULL;
  st->held_len = st->held_cap = 0;
  st->held_fin = 0;
  if (len && s->cbs.on_data)
    s->cbs.on_data(s, held, len, s->ud);
  free(held);
  if (fin && st->app && st->app->cbs.on_data)
    st->app->cbs.on_data(st->app, NULL, 0, st->app->ud);
  /* Everything held is out (the receiver may have paused again meanwhile:
   * it got all of it in that call): a draining stream closes now. */
  if (st->draining && st->held_len == 0 && !st->held_fin) {
    st_detach(st, st->drain_err);
    st_free(st);
  }
}

/* Keep |len| bytes (and the FIN) for a paused or still-draining stream.
 * 0, or NP_ELIMIT/NP_ENOMEM: the stream is reset. */
static int app_hold(sstream *st, const uint8_t *data, size_t len, int fin) {
  if (len) {
    if (st->held_len + len > HELD_MAX)
      return NP_ELIMIT;
    if (st->held_len + len > st->held_cap) {
      size_t cap = st->held_cap ? st->held_cap : 16384;
      uint8_t *n;
      while (cap < st->held_len + len)
        cap *= 2;
      if ((n = realloc(st->held, cap)) == NULL)
        return NP_ENOMEM;
      st->held = n;
      st->held_cap = cap;
    }
    memcpy(st->held + st->held_len, data, len);
    st->held_len += len;
  }
  if (fin)
    st->held_fin = 1;
  return 0;
}

static const np_stream_ops app_ops = {
    .write = app_write,
    .close = app_close,
    .reset = app_reset,
    .pause = app_pause,
    .send = app_send,
};

/* |name| (|len| bytes and a NUL) lives in |st| as long as |st| does, which
 * is longer than the np_stream. */
static np_stream *app_new(sstream *st, const char *name, size_t len) {
  np_stream *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  s->ops = &app_ops;
  s->impl = st;
  np_list_init(&s->owner_link);
  memcpy(s->peer, st->c->peer_str, sizeof(s->peer));
  s->peer_id = st->c->peer;
  snprintf(s->proto, sizeof(s->proto), "%s", name);
  s->name = name;
  s->name_len = len;
  memcpy(s->addr, st->c->raddr, st->c->raddr_len);
  s->addr_len = st->c->raddr_len;
  st->app = s;
  st->kind = S_APP;
  return s;
}

/* ---- stream teardown ---------------------------------------------------------- */

static void st_unawait(sstream *st) {
  if (st->awaiting) {
    st->awaiting = 0;
    st->c->awaiting--;
  }
}

static void st_free(sstream *st) {
  np_list_remove(&st->link);
  for (size_t i = 0; i < st->nprotos; i++)
    free(st->protos[i]);
  np_loop_cancel(st->loop, &st->resume);
  free(st->held);
  free(st->obuf);
  free(st);
}

/* The stream is gone or going: release everything attached to it. */
static void st_detach(sstream *st, int err) {
  if (!st->draining) /* a draining stream left its connection already */
    st_unawait(st);
  if (st->op) {
    op *o = st->op;
    st->op = NULL;
    o->st = NULL;
    op_finish(o, err ? err : NP_ECLOSED);
  }
  if (st->app) {
    np_stream *s = st->app;
    st->app = NULL;
    s->impl = NULL;
    np_stream_closed(s, err);
    free(s);
  }
}

/* Abort a stream from our side; its close callback frees it later. */
static void st_kill(sstream *st, int reset) {
  if (st->kind == S_DEAD)
    return;
  st_detach(st, NP_ECANCELED);
  st->kind = S_DEAD;
  if (reset)
    st_reset(st);
}

static sstream *st_new(sconn *c, np_cstream *cs, int kind) {
  sstream *st = calloc(1, sizeof(*st));
  if (st == NULL)
    return NULL;
  st->c = c;
  st->cs = cs;
  st->kind = kind;
  st->loop = np_host_loop(c->sw->h);
  np_defer_init(&st->resume, app_resume, st);
  np_list_insert_tail(&c->streams, &st->link);
  cs->ud = st;
  return st;
}

/* ---- negotiation and hand-over ---------------------------------------------------- */

static int lookup(const char *name, size_t len, void *ud) {
  sstream *st = ud;
  return np_proto_find(np_host_protos(st->c->sw->h), name, len) != NULL;
}

/* Inbound handler streams of |c| already serving |proto|. */
static uint32_t proto_streams(sconn *c, const char *proto) {
  uint32_t n = 0;
  np_list *it;
  for (it = c->streams.next; it != &c->streams; it = it->next) {
    sstream *o = np_list_entry(it, sstream, link);
    const char *p;
    if (o->kind == S_APP && o->op == NULL && o->nprotos == 0 &&
        (p = np_mss_protocol(&o->mss, NULL)) != NULL && strcmp(p, proto) == 0)
      n++;
  }
  return n;
}

static void st_data(sstream *st, const uint8_t *data, size_t len, int fin);

/* A listener's stream agreed on |proto|: hand it to the handler, or for a
 * unary handler to the host's unary server (np_unarysvc), which frames
 * the call and dispatches it. */
static int st_accept(sstream *st, const char *proto, size_t plen) {
  np_swarm *sw = st->c->sw;
  const np_handler *h = np_proto_find(np_host_protos(sw->h), proto, plen);
  const np_stream_cbs *cbs;
  uint32_t max;
  np_stream *s;
  void *ud;
  if (h == NULL) {
    np_info("swarm",
            "stream-refused peer=%s proto=\"%s\" reason=\"handler removed "
            "during negotiation\"",
            st->c->peer_str, proto);
    return -1;
  }
  max = h->max_streams ? h->max_streams
                       : np_host_conf(sw->h)->limits.max_streams_per_protocol;
  if (max != NP_PROTO_UNLIMITED && proto_streams(st->c, proto) >= max) {
    static np_ratelimit rl; /* the remote decides how often */
    if (np_ratelimit_ok(&rl, 20, "swarm", "stream-refused"))
      np_info("swarm",
              "stream-refused peer=%s proto=\"%s\" "
              "reason=\"max_streams_per_protocol\"",
              st->c->peer_str, proto);
    return -1;
  }
  if (h->kind == NP_HANDLER_UNARY) {
    if ((cbs = np_host_unary_server(sw->h, &ud)) == NULL)
      return -1;
  } else {
    cbs = &h->stream;
    ud = h->ud;
  }
  if ((s = app_new(st, proto, plen)) == NULL)
    return -1;
  np_stream_set_cbs(s, cbs, ud);
  if (h->kind == NP_HANDLER_STREAM && h->streams)
    np_list_insert_tail(h->streams, &s->owner_link);
  if (s->cbs.on_open)
    s->cbs.on_open(s, s->ud);
  return 0;
}

static void st_protocol_ready(sstream *st, const uint8_t *rest, size_t len,
                              int fin) {
  size_t plen;
  const char *proto = np_mss_protocol(&st->mss, &plen);
  if (st->kind == S_NEG_IN) {
    if (st_accept(st, proto, plen) != 0) {
      st_kill(st, 1);
      return;
    }
    if (st->app == NULL) /* closed by its handler meanwhile */
      return;
  } else {
    op *o = st->op;
    np_stream *s;
    if (o == NULL) {
      st_kill(st, 1);
      return;
    }
    /* OP_OPEN: hand the stream over */
    if ((s = app_new(st, proto, plen)) == NULL) {
      st_kill(st, 1);
      return;
    }
    st->op = NULL;
    o->st = NULL;
    o->done = 1;
    o->stream_cb(o->ud, 0, s, proto);
    o->stream_cb = NULL;
    op_finish(o, 0);
    if (st->app == NULL) /* receiver reset it meanwhile */
      return;
  }
  if (st->kind != S_DEAD && (len || fin))
    st_data(st, rest, len, fin);
}

static void st_data(sstream *st, const uint8_t *data, size_t len, int fin) {
  switch (st->kind) {
  case S_NEG_IN:
  case S_NEG_OUT: {
    np_ssize n = np_mss_feed(&st->mss, data, len);
    st_send_mss(st);
    if (n < 0) {
      int err = (int)n;
      if (st->op) {
        op_finish(st->op, err);
        st_kill(st, 1);
      } else {
        /* Listener: let the queued `na` reach the dialer (a reset would
         * drop it and the dialer would see "closed" instead of "not
         * supported"), then finish our side. */
        st_detach(st, err);
        st->kind = S_DEAD;
        st_send(st, NULL, 0, 1, MSS_CAP);
      }
      return;
    }
    if (np_mss_state(&st->mss) == NP_MSS_DONE)
      st_protocol_ready(st, data + n, len - (size_t)n, fin);
    else if (fin)
      st_kill(st, 1);
    return;
  }
  case S_APP: {
    np_stream *s = st->app;
    if (np_mss_state(&st->mss) == NP_MSS_NEGOTIATING && st->nprotos > 0) {
      /* A lazily opened stream: the echo (or `na`) comes first. */
      np_ssize n = np_mss_feed(&st->mss, data, len);
      st_send_mss(st);
      if (n < 0) {
        st_detach(st, (int)n);
        st->kind = S_DEAD;
        st_reset(st);
        return;
      }
      data += n;
      len -= (size_t)n;
      if (np_mss_state(&st->mss) != NP_MSS_DONE) {
        if (fin) {
          st_detach(st, NP_EPROTO);
          st->kind = S_DEAD;
          st_reset(st);
        }
        return;
      }
      s = st->app;
    }
    if (st->app_paused || st->held_len || st->held_fin) {
      /* Paused, or held bytes not yet delivered: keep the order. */
      int rv = app_hold(st, data, len, fin);
      if (rv != 0) {
        np_info("swarm",
                "stream-reset peer=%s reason=\"paused stream over %zu "
                "bytes: the remote ignores flow control\"",
                st->c->peer_str, HELD_MAX);
        st_detach(st, rv);
        st->kind = S_DEAD;
        st_reset(st);
      }
      return;
    }
    if (len && s && s->cbs.on_data)
      s->cbs.on_data(s, data, len, s->ud);
    if (fin && st->app && st->app->cbs.on_data)
      st->app->cbs.on_data(st->app, NULL, 0, st->app->ud);
    return;
  }
  default:
    return;
  }
}

/* ---- ops ----------------------------------------------------------------------- */

static void op_free(op *o) {
  /* Not through o->sw: a delivery queued before np_swarm_del runs after
   * the swarm is gone. */
  np_loop_cancel(o->loop, &o->deliver);
  if (o->timer_on)
    ev_timer_stop(EV(o->sw), &o->timer);
  if (o->dtimer_on)
    ev_timer_stop(EV(o->sw), &o->dtimer);
  np_list_remove(&o->link);
  np_list_remove(&o->wlink);
  for (size_t i = 0; i < o->nprotos; i++)
    free(o->protos[i]);
  free(o);
}

static void op_deliver(void *arg) {
  op *o = arg;
  int err = o->err;
  if (!o->done) {
    o->done = 1;
    switch (o->kind) {
    case OP_CONNECT:
      if (o->done_cb)
        o->done_cb(o->ud, err);
      break;
    case OP_OPEN:
      if (o->stream_cb)
        o->stream_cb(o->ud, err ? err : NP_ECLOSED, NULL, NULL);
      break;
    case OP_PROBE:
      if (o->ping_cb)
        o->ping_cb(o->ud, err ? err : NP_ECLOSED, -1);
      break;
    default:
      break;
    }
  }
  op_free(o);
}

/* Complete |o| with |err| (its callback runs on the next loop turn unless
 * it already ran) and release it. */
static void op_finish(op *o, int err) {
  if (o->probe) {
    void *h = o->probe;
    o->probe = NULL;
    if (o->sw->prober.cancel)
      o->sw->prober.cancel(o->sw->prober_ud, h);
  }
  if (o->st) {
    sstream *st = o->st;
    o->st = NULL;
    st->op = NULL;
    if (st->kind != S_DEAD && st->kind != S_APP)
      st_kill(st, 1);
  }
  if (o->timer_on) {
    ev_timer_stop(EV(o->sw), &o->timer);
    o->timer_on = 0;
  }
  if (o->dtimer_on) {
    ev_timer_stop(EV(o->sw), &o->dtimer);
    o->dtimer_on = 0;
  }
  np_list_remove(&o->wlink);
  np_list_init(&o->wlink);
  if (o->dial) {
    struct dialing *d = o->dial;
    o->dial = NULL;
    if (np_list_empty(&d->waiters))
      dial_abandon(d); /* nobody waits for it any more */
  }
  np_list_remove(&o->link);
  np_list_init(&o->link);
  o->err = err;
  if (o->done) {
    op_free(o);
    return;
  }
  o->queued = 1;
  np_defer_init(&o->deliver, op_deliver, o);
  np_loop_post(o->loop, &o->deliver);
}

static void op_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  op *o = np_container_of(w, op, timer);
  (void)ev, (void)revents;
  o->timer_on = 0;
  op_finish(o, NP_ETIMEDOUT);
}

/* Preference among usable connections: direct over relayed (limited), then
 * QUIC over the others; the newest wins a tie (after a peer restarts on the
 * same address, the old connection is dead until a probe or the idle
 * timeout finds out, while the peer's new one works). */
static int conn_score(const sconn *c) {
  return (c->nc->limited ? 0 : 4) + (c->nc->kind == NP_TRANSPORT_QUIC ? 2 : 0);
}

static sconn *find_conn(np_swarm *sw, const np_peerid *peer) {
  np_list *it;
  sconn *best = NULL;
  for (it = sw->conns.next; it != &sw->conns; it = it->next) {
    sconn *c = np_list_entry(it, sconn, link);
    if (c->up && !c->closing && c->nc && np_peerid_equal(&c->peer, peer) &&
        (best == NULL || conn_score(c) >= conn_score(best)))
      best = c;
  }
  return best;
}

static dialing *find_dial(np_swarm *sw, const np_peerid *peer) {
  np_list *it;
  for (it = sw->dials.next; it != &sw->dials; it = it->next) {
    dialing *d = np_list_entry(it, dialing, link);
    if (!d->fresh && np_peerid_equal(&d->peer, peer))
      return d;
  }
  return NULL;
}

/* The transport that dials |bin|, or NULL. */
static np_transport *transport_for(np_swarm *sw, const uint8_t *bin,
                                   size_t len) {
  for (size_t i = 0; i < sw->ntr; i++)
    if (sw->tr[i]->ops->can_dial(sw->tr[i], bin, len))
      return sw->tr[i];
  return NULL;
}

/* Lower is tried first. */
static int addr_rank(np_swarm *sw, const uint8_t *bin, size_t len) {
  np_transport *t = transport_for(sw, bin, len);
  if (t == NULL)
    return -1;
  /* Relayed last: a circuit is limited and costs the relay. */
  return t->ops->kind == NP_TRANSPORT_QUIC  ? 0
         : t->ops->kind == NP_TRANSPORT_MEM ? 0
         : t->ops->kind == NP_TRANSPORT_RELAY ? 3
                                              : 1;
}

/* A peer's circuit address as identify and the DHT carry it,
 * <relay>/p2p/RELAY/p2p-circuit: its last /p2p/ is the relay's, and the
 * dial appends the peer's own. */
static int ends_in_circuit(const uint8_t *bin, size_t len) {
  np_maddr_comp c;
  size_t off = 0;
  uint64_t last = 0;
  int rv;
  while ((rv = np_maddr_next(bin, len, &off, &c)) > 0)
    last = c.code;
  return rv == 0 && last == NP_MADDR_P2P_CIRCUIT;
}

/* Add an address to try; addresses not yet started stay sorted by rank
 * (stable), so one added to a running dial is still tried. */
static void dial_add_addr(dialing *d, const uint8_t *bin, size_t len) {
  np_peerid id;
  int rank;
  size_t at;
  if (d->n >= MAX_DIAL_ADDRS || len > ADDR_LEN ||
      (rank = addr_rank(d->sw, bin, len)) < 0)
    return;
  /* An address naming another peer is not an address of this one. */
  if (!ends_in_circuit(bin, len) && np_maddr_get_p2p(bin, len, &id) == 0 &&
      !np_peerid_equal(&id, &d->peer))
    return;
  for (size_t i = 0; i < d->n; i++)
    if (d->lens[i] == len && memcmp(d->addrs[i], bin, len) == 0)
      return;
  for (at = d->n; at > d->next && d->rank[at - 1] > rank; at--)
    ;
  memmove(d->addrs[at + 1], d->addrs[at], (d->n - at) * ADDR_LEN);
  memmove(&d->lens[at + 1], &d->lens[at], (d->n - at) * sizeof(d->lens[0]));
  memmove(&d->rank[at + 1], &d->rank[at], (d->n - at) * sizeof(d->rank[0]));
  memcpy(d->addrs[at], bin, len);
  d->lens[at] = len;
  d->rank[at] = rank;
  d->n++;
}

static void dial_free(dialing *d) {
  if (d->stagger_on)
    ev_timer_stop(EV(d->sw), &d->stagger);
  /* Unlinked before the router hears of it: nothing it does while
   * withdrawing the lookup can find and join this dial. */
  np_list_remove(&d->link);
  np_list_init(&d->link);
  if (d->route_on) {
    d->route_on = 0;
    d->sw->routing--;
    d->router.cancel(d->router.rud, d->route);
  }
  free(d);
}

/* Attempts still running belong to nobody after this: they are closed. */
static void dial_orphan_attempts(dialing *d, sconn *keep) {
  np_list *it;
  for (it = d->sw->conns.next; it != &d->sw->conns; it = it->next) {
    sconn *c = np_list_entry(it, sconn, link);
    if (c->dial != d || c == keep)
      continue;
    c->dial = NULL;
    if (c->nc && !c->closing) {
      c->closing = 1;
      np_conn_close(c->nc, 0);
    }
  }
}

static void dial_fail(dialing *d, int err) {
  np_list *it, *tmp;
  char esc[NP_PEERID_STRMAX];
  np_peerid_to_string(&d->peer, esc, sizeof(esc));
  np_info("swarm", "dial-failed peer=%s addrs=%zu err=%s", esc, d->n,
          np_errname(err));
  dial_orphan_attempts(d, NULL);
  np_list_for_each_safe(it, tmp, &d->waiters) {
    op *o = np_list_entry(it, op, wlink);
    np_list_remove(&o->wlink);
    o->dial = NULL;
    op_finish(o, err);
  }
  dial_free(d);
}

/* The last op waiting for |d| left (timeout, cancel): stop dialing. */
static void dial_abandon(dialing *d) {
  char esc[NP_PEERID_STRMAX];
  np_peerid_to_string(&d->peer, esc, sizeof(esc));
  np_debug("swarm", "dial-abandoned peer=%s attempts=%zu", esc, d->inflight);
  dial_orphan_attempts(d, NULL);
  dial_free(d);
}

static void dial_stagger(struct ev_loop *ev, ev_timer *w, int revents);

/* Start the next address that a transport accepts; arm the stagger for
 * the one after. With nothing running and nothing left, the dial fails. */
static void dial_next(dialing *d) {
  np_swarm *sw = d->sw;
  if (d->stagger_on) {
    ev_timer_stop(EV(sw), &d->stagger);
    d->stagger_on = 0;
  }
  while (d->next < d->n) {
    uint8_t bin[ADDR_LEN + 64];
    size_t len = d->lens[d->next];
    np_transport *t;
    np_peerid id;
    sconn *c;
    int rv;
    memcpy(bin, d->addrs[d->next], len);
    d->next++;
    if (ends_in_circuit(bin, len) || np_maddr_get_p2p(bin, len, &id) != 0) {
      np_ssize n = np_maddr_append_p2p(bin, len, sizeof(bin), &d->peer);
      if (n < 0)
        continue;
      len = (size_t)n;
    }
    if ((t = transport_for(sw, bin, len)) == NULL)
      continue;
    if ((c = calloc(1, sizeof(*c))) == NULL) {
      d->last_err = NP_ENOMEM;
      continue;
    }
    sconn_init(c, sw);
    c->peer = d->peer;
    np_peerid_to_string(&d->peer, c->peer_str, sizeof(c->peer_str));
    c->dial = d;
    np_list_insert_tail(&sw->conns, &c->link);
    if (!d->new_port)
      rv = t->ops->dial(t, bin, len, c, &c->nc);
    else if (t->ops->dial_new_port)
      rv = t->ops->dial_new_port(t, bin, len, c, &c->nc);
    else
      rv = NP_ENOTSUP;
    if (rv == 0) {
      d->inflight++;
      if (d->next < d->n) {
        ev_timer_init(&d->stagger, dial_stagger, DIAL_STAGGER_MS / 1000.0, 0.);
        ev_timer_start(EV(sw), &d->stagger);
        d->stagger_on = 1;
      }
      return;
    }
    np_list_remove(&c->link);
    free(c);
    d->last_err = rv;
  }
  /* A lookup under way may still bring addresses. */
  if (d->inflight == 0 && !d->route_on)
    dial_fail(d, d->peerid_err   ? d->peerid_err
                 : d->last_err ? d->last_err
                               : NP_EUNREACH);
}

static void dial_stagger(struct ev_loop *ev, ev_timer *w, int revents) {
  dialing *d = np_container_of(w, dialing, stagger);
  (void)ev, (void)revents;
  d->stagger_on = 0;
  dial_next(d);
}

/* An attempt of |d| went down before it came up. */
static void dial_attempt_down(dialing *d, int err) {
  d->inflight--;
  d->last_err = err;
  if (err == NP_EPEERID)
    d->peerid_err = err; /* the likelier explanation for the user */
  if (err == NP_ECANCELED || d->sw->closing) {
    dial_fail(d, err);
    return;
  }
  if (d->next < d->n)
    dial_next(d); /* the next one now, no stagger */
  else if (d->inflight == 0 && !d->route_on)
    dial_fail(d, d->peerid_err ? d->peerid_err : err);
}

/* |d| is over with |c| up: every waiter goes on on |c|. */
static void dial_complete(dialing *d, sconn *c) {
  np_list *it;
  dial_orphan_attempts(d, c);
  np_list_remove(&d->link);
  np_list_init(&d->link);
  /* One at a time from the head: a stream handed over lazily runs its
   * receiver, which may withdraw other waiters (none of which may free
   * |d| as the last one out: it is done already). */
  for (it = d->waiters.next; it != &d->waiters; it = it->next)
    np_list_entry(it, op, wlink)->dial = NULL;
  while (!np_list_empty(&d->waiters)) {
    op *o = np_list_entry(d->waiters.next, op, wlink);
    np_list_remove(&o->wlink);
    op_on_conn(o, c);
  }
  dial_free(d);
}

/* Add what the peerstore knows of |d|'s peer (a non-fresh dial). */
static void dial_add_known(dialing *d) {
  np_ps_peer *p = np_peerstore_get(d->sw->ps, &d->peer);
  if (p == NULL)
    return;
  np_peerstore_expire(p, now_ms(d->sw));
  for (size_t i = 0; i < p->naddrs; i++)
    dial_add_addr(d, p->addrs[i].bin, p->addrs[i].len);
}

/* May |o| start a lookup? Not for the router's own protocol: its requests
 * to peers without addresses would start lookups of their own. */
static int op_may_route(const op *o, const np_router *r) {
  if (o->kind != OP_OPEN || r->proto == NULL)
    return 1;
  for (size_t i = 0; i < o->nprotos; i++)
    if (strcmp(o->protos[i], r->proto) == 0)
      return 0;
  return 1;
}

/* The router answered (never from inside find_peer). */
static void dial_routed(void *ud, int err, const np_peerid *peer) {
  dialing *d = ud;
  np_swarm *sw = d->sw;
  char esc[NP_PEERID_STRMAX];
  const char *why;
  size_t had = d->n;
  sconn *c;
  (void)peer;
  d->route_on = 0;
  d->route = NULL;
  sw->routing--;
  np_peerid_to_string(&d->peer, esc, sizeof(esc));
  if (err == 0) {
    dial_add_known(d);
    if (d->inflight == 0 && (c = find_conn(sw, &d->peer)) != NULL) {
      np_info("swarm", "peer-routing-found peer=%s conn=1", esc);
      dial_complete(d, c);
      return;
    }
    if (d->n > had) {
      np_info("swarm", "peer-routing-found peer=%s addrs=%zu", esc, d->n - had);
      if (!d->stagger_on && d->next < d->n)
        dial_next(d);
      return;
    }
    why = "no usable address";
  } else {
    why = np_strerror(err);
  }
  np_info("swarm", "peer-routing-failed peer=%s why=\"%s\"", esc, why);
  /* Attempts with addresses that came meanwhile still decide. */
  if (d->inflight == 0 && d->next >= d->n)
    dial_fail(d, err == NP_ECANCELED ? NP_ECANCELED : NP_EUNREACH);
}

/* No address known: ask the router, once for the whole dial. Returns 0
 * (|d| waits for the answer) or the error the dial fails with at once. */
static int dial_route(dialing *d, const op *o) {
  np_swarm *sw = d->sw;
  const np_router *r = np_host_router(sw->h);
  char esc[NP_PEERID_STRMAX];
  int rv;
  if (r == NULL || !op_may_route(o, r))
    return NP_EUNREACH; /* no address known, no way to find one */
  np_peerid_to_string(&d->peer, esc, sizeof(esc));
  if (sw->routing >= MAX_ROUTING) {
    np_warn("swarm", "peer-routing-failed peer=%s why=\"%zu lookups at once\"",
            esc, sw->routing);
    return NP_ELIMIT;
  }
  d->router = *r;
  if ((rv = r->find_peer(r->rud, &d->peer, dial_routed, d, &d->route)) != 0) {
    np_info("swarm", "peer-routing-failed peer=%s why=\"%s\"", esc,
            np_strerror(rv));
    return NP_EUNREACH;
  }
  d->route_on = 1;
  sw->routing++;
  np_debug("swarm", "peer-routing-start peer=%s", esc);
  return 0;
}

/* Undo op_start's first steps (it failed before any callback). */
static void op_unstart(op *o) {
  np_list_remove(&o->link);
  np_list_init(&o->link);
  if (o->timer_on) {
    ev_timer_stop(EV(o->sw), &o->timer);
    o->timer_on = 0;
  }
}

/* Start |o|: on an existing connection, or after a dial (looking the peer
 * up first when no address is known). */
static int op_start(op *o, const uint8_t *const *addrs, const size_t *lens,
                    size_t n, uint64_t timeout_ms) {
  np_swarm *sw = o->sw;
  sconn *c;
  dialing *d;
  int rv;
  np_list_init(&o->wlink);
  np_list_insert_tail(&sw->ops, &o->link);
  if (timeout_ms) {
    ev_timer_init(&o->timer, op_timeout, (double)timeout_ms / 1000.0, 0.);
    ev_timer_start(EV(sw), &o->timer);
    o->timer_on = 1;
  }
  if (np_peerid_equal(&o->peer, &np_host_identity(sw->h)->id)) {
    op_finish(o, NP_EINVAL); /* no connection to ourselves */
    return 0;
  }
  if (!o->fresh && (c = find_conn(sw, &o->peer)) != NULL) {
    op_on_conn(o, c);
    return 0;
  }
  if (o->fresh || (d = find_dial(sw, &o->peer)) == NULL) {
    if ((d = calloc(1, sizeof(*d))) == NULL) {
      op_unstart(o);
      return NP_ENOMEM;
    }
    d->sw = sw;
    d->peer = o->peer;
    d->fresh = o->fresh;
    d->new_port = o->new_port;
    np_list_init(&d->link);
    np_list_init(&d->waiters);
    for (size_t i = 0; i < n; i++)
      dial_add_addr(d, addrs[i], lens[i]);
    /* A fresh dial tries exactly what it was given (a dial-back to one
     * address, a hole punch), not what the peerstore knows. */
    if (!o->fresh)
      dial_add_known(d);
    if (d->n == 0 && (rv = o->fresh ? NP_EUNREACH : dial_route(d, o)) != 0) {
      free(d);
      op_unstart(o);
      return rv;
    }
    np_list_insert_tail(&sw->dials, &d->link);
    np_list_insert_tail(&d->waiters, &o->wlink);
    o->dial = d;
    if (d->n > 0)
      dial_next(d);
    return 0;
  }
  /* Addresses learned since the dial began (a lookup's answers) count. */
  for (size_t i = 0; i < n; i++)
    dial_add_addr(d, addrs[i], lens[i]);
  dial_add_known(d);
  /* Waiting on the lookup alone is for ops that could have started it:
   * the router's own requests fail as if it were not there. */
  if (d->route_on && d->inflight == 0 && d->next >= d->n &&
      !op_may_route(o, &d->router)) {
    op_unstart(o);
    return NP_EUNREACH;
  }
  np_list_insert_tail(&d->waiters, &o->wlink);
  o->dial = d;
  /* Addresses that came with this op start now if every earlier one is
   * already running (no stagger pending). */
  if (!d->stagger_on && d->next < d->n)
    dial_next(d);
  return 0;
}

/* The prober answered an OP_PROBE (never from inside its start). */
static void probe_op_done(void *ud, int err, int64_t rtt_us) {
  op *o = ud;
  o->probe = NULL;
  if (err == 0 && !o->done) {
    o->done = 1;
    o->ping_cb(o->ud, 0, rtt_us);
    o->ping_cb = NULL;
  }
  op_finish(o, err);
}

/* Start |o| on |c|. Returns 1 when it waits for stream credit, else 0
 * (|o| may be gone then: a lazy open hands over and ends at once). */
/* ---- waiting for a direct connection ------------------------------------- */

/* Is a hole-punched connection to |c|'s peer worth waiting for? */
static int direct_expected(sconn *c) {
  np_swarm *sw = c->sw;
  uint64_t age = now_ms(sw) - c->t_up_ms;
  if (c->closing || age >= PUNCH_WAIT_MAX_MS ||
      np_proto_find(np_host_protos(sw->h), DCUTR_PROTO,
                    sizeof(DCUTR_PROTO) - 1) == NULL)
    return 0; /* we do not punch ([nat] hole_punch = no) */
  if (c->punching)
    return 1;
  if (age >= DIRECT_GRACE_MS)
    return 0;
  if (c->identified) {
    np_ps_peer *p = np_peerstore_get(sw->ps, &c->peer);
    if (p && !np_peerstore_supports(p, DCUTR_PROTO))
      return 0; /* the peer does not punch */
  }
  return 1;
}

/* Hand |o| (waiting on limited |from|) to |to|. */
static void dwait_release(op *o, sconn *to) {
  if (o->dtimer_on) {
    ev_timer_stop(EV(o->sw), &o->dtimer);
    o->dtimer_on = 0;
  }
  np_list_remove(&o->wlink);
  np_list_init(&o->wlink);
  o->dconn = NULL;
  o->limited_ok = 1; /* decided: whatever |to| is, go */
  op_on_conn(o, to);
}

static void dwait_tick(struct ev_loop *ev, ev_timer *w, int revents) {
  op *o = np_container_of(w, op, dtimer);
  sconn *c = o->dconn;
  (void)revents;
  o->dtimer_on = 0;
  if (direct_expected(c)) {
    ev_timer_set(&o->dtimer, 0.25, 0.);
    ev_timer_start(ev, &o->dtimer);
    o->dtimer_on = 1;
    return;
  }
  np_debug("swarm", "direct-wait-over peer=%s using=relayed", c->peer_str);
  dwait_release(o, c);
}

static int direct_wait(op *o, sconn *c) {
  if (!direct_expected(c))
    return 0;
  np_list_insert_tail(&c->dwait, &o->wlink);
  o->dconn = c;
  ev_timer_init(&o->dtimer, dwait_tick, 0.25, 0.);
  ev_timer_start(EV(o->sw), &o->dtimer);
  o->dtimer_on = 1;
  return 1;
}

/* A direct connection |c| to a peer is up: streams waiting on its relayed
 * ones go over it. */
static void dwait_direct_up(np_swarm *sw, sconn *c) {
  for (np_list *it = sw->conns.next; it != &sw->conns; it = it->next) {
    sconn *x = np_list_entry(it, sconn, link);
    if (x == c || !np_peerid_equal(&x->peer, &c->peer))
      continue;
    while (!np_list_empty(&x->dwait))
      dwait_release(np_list_entry(x->dwait.next, op, wlink), c);
  }
}

void np_swarm_conn_punching(np_swarm *sw, const np_conn *nc, int on) {
  sconn *c = nc ? nc->ud : NULL;
  (void)sw;
  if (c == NULL || c->nc != nc)
    return;
  c->punching = on ? 1 : 0;
  if (on)
    return;
  /* Over: a direct connection took the waiters already, or none came. */
  while (!np_list_empty(&c->dwait)) {
    op *o = np_list_entry(c->dwait.next, op, wlink);
    sconn *best = find_conn(c->sw, &c->peer);
    dwait_release(o, best ? best : c);
  }
}

static int op_on_conn(op *o, sconn *c) {
  np_cstream *cs;
  sstream *st;
  int rv;
  if (o->kind == OP_CONNECT) {
    if (o->want_identify && !c->identified)
      np_list_insert_tail(&c->idwait, &o->wlink);
    else
      op_finish(o, 0);
    return 0;
  }
  if (o->kind == OP_PROBE) {
    /* No timeout of the prober's own: the op's timer runs already. */
    rv = o->sw->prober.start ? o->sw->prober.start(o->sw->prober_ud, c->nc, 0,
                                                   probe_op_done, o, &o->probe)
                             : NP_ENOTSUP;
    if (rv != 0) {
      o->probe = NULL;
      op_finish(o, rv);
    }
    return 0;
  }
  if (c->nc->limited && !o->limited_ok && direct_wait(o, c))
    return 1;
  rv = np_cstream_open(c->nc, NULL, &cs);
  if (rv == NP_ELIMIT) {
    /* All stream slots are in use: wait for one (bounded by the op's
     * timeout and by max_pending_calls). */
    np_list_insert_tail(&c->swait, &o->wlink);
    return 1;
  }
  if (rv != 0) {
    op_finish(o, rv);
    return 0;
  }
  if ((st = st_new(c, cs, S_NEG_OUT)) == NULL) {
    np_cstream_reset(cs);
    op_finish(o, NP_ENOMEM);
    return 0;
  }
  st->op = o;
  o->st = st;
  for (size_t i = 0; i < o->nprotos; i++) {
    if ((st->protos[i] = strdup(o->protos[i])) == NULL) {
      op_finish(o, NP_ENOMEM);
      return 0;
    }
    st->nprotos++;
  }
  if (np_mss_init_dialer(&st->mss, (const char *const *)st->protos,
                         st->nprotos, o->lazy ? NP_MSS_LAZY : 0) != 0) {
    op_finish(o, NP_EINVAL);
    return 0;
  }
  st_send_mss(st);
  if (o->lazy) {
    /* The stream is the caller's now, the proposal ahead of its data;
     * np_mss keeps reading the echo (or an `na`, which closes it with
     * NP_ENOPROTO) ahead of what the remote sends. */
    np_stream *s = app_new(st, st->protos[0], strlen(st->protos[0]));
    if (s == NULL) {
      op_finish(o, NP_ENOMEM);
      return 0;
    }
    st->op = NULL;
    o->st = NULL;
    o->done = 1;
    o->stream_cb(o->ud, 0, s, st->protos[0]);
    o->stream_cb = NULL;
    op_finish(o, 0);
  }
  return 0;
}

/* Hand queued ops a stream each while the connection has credit. */
static void swait_retry(sconn *c) {
  while (!np_list_empty(&c->swait)) {
    op *o = np_list_entry(c->swait.next, op, wlink);
    np_list_remove(&o->wlink);
    if (op_on_conn(o, c))
      return; /* queued again: no credit yet */
  }
}

static void sconn_init(sconn *c, np_swarm *sw) {
  c->sw = sw;
  np_list_init(&c->streams);
  np_list_init(&c->swait);
  np_list_init(&c->idwait);
  np_list_init(&c->dwait);
}

static op *op_new(np_swarm *sw, int kind, const np_peerid *peer) {
  op *o = calloc(1, sizeof(*o));
  if (o == NULL)
    return NULL;
  o->loop = np_host_loop(sw->h);
  o->sw = sw;
  o->kind = kind;
  o->peer = *peer;
  np_list_init(&o->link);
  np_list_init(&o->wlink);
  return o;
}

/* ---- connection events (np_conn_cbs, from every transport) ------------------------ */

static void emit_conn(np_swarm *sw, sconn *c, unsigned type, int err,
                      int last) {
  np_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = type;
  ev.peer = &c->peer;
  ev.conn = c->nc;
  ev.transport = c->nc->kind;
  ev.inbound = c->inbound;
  ev.limited = c->nc->limited;
  ev.raddr = c->nc->raddr;
  ev.raddr_len = c->nc->raddr_len;
  ev.laddr = c->nc->laddr;
  ev.laddr_len = c->nc->laddr_len;
  ev.err = err;
  ev.last = last;
  np_events_emit(np_host_events(sw->h), &ev);
}

static void c_conn_up(np_conn *nc, void *ud) {
  np_swarm *sw = ud;
  sconn *c = nc->ud;
  np_ps_peer *p;
  char addr[200] = "?";
  if (c == NULL) { /* inbound */
    if ((c = calloc(1, sizeof(*c))) == NULL) {
      np_conn_close(nc, 0);
      return;
    }
    sconn_init(c, sw);
    c->nc = nc;
    c->inbound = 1;
    np_list_insert_tail(&sw->conns, &c->link);
    nc->ud = c;
  } else if (c->closing) {
    return; /* a dial attempt that lost the race: closing */
  }
  c->peer = nc->peer;
  np_peerid_to_string(&c->peer, c->peer_str, sizeof(c->peer_str));
  c->raddr_len = nc->raddr_len <= sizeof(c->raddr) ? nc->raddr_len : 0;
  memcpy(c->raddr, nc->raddr, c->raddr_len);
  if (c->raddr_len)
    np_maddr_to_string(c->raddr, c->raddr_len, addr, sizeof(addr));
  c->up = 1;
  c->t_up_ms = now_ms(sw);
  np_info("swarm", "conn-open peer=%s addr=%s dir=%s transport=%s%s",
          c->peer_str, addr, c->inbound ? "in" : "out",
          np_transport_name(nc->kind), nc->limited ? " limited=1" : "");
  if ((p = np_peerstore_upsert(sw->ps, &c->peer, now_ms(sw))) != NULL) {
    p->connected++;
    if (!c->inbound && c->raddr_len)
      np_peerstore_add_addr(p, c->raddr, c->raddr_len, now_ms(sw),
                            ADDR_TTL_MS);
  }
  if (c->dial) {
    dialing *d = c->dial;
    c->dial = NULL;
    dial_complete(d, c);
  }
  if (!nc->limited)
    dwait_direct_up(sw, c);
  /* Modules learn of it last (identify opens its stream here). */
  emit_conn(sw, c, NP_EV_CONN_UP, 0, 0);
}

static void c_conn_down(np_conn *nc, int err, void *ud) {
  np_swarm *sw = ud;
  sconn *c = nc->ud;
  dialing *d;
  if (c == NULL)
    return;
  if (c->close_err && err == NP_ECANCELED)
    err = c->close_err;
  c->closing = 1; /* nothing new starts on it from here on */
  if (c->probe) {
    void *h = c->probe;
    c->probe = NULL;
    if (sw->prober.cancel)
      sw->prober.cancel(sw->prober_ud, h);
  }
  if (c->up) {
    np_ps_peer *p = np_peerstore_get(sw->ps, &c->peer);
    if (p && p->connected > 0)
      p->connected--;
    np_info("swarm", "conn-closed peer=%s transport=%s err=%s", c->peer_str,
            np_transport_name(nc->kind), np_errname(err));
  }
  while (!np_list_empty(&c->streams)) {
    sstream *st = np_list_entry(c->streams.next, sstream, link);
    st_detach(st, err);
    st_free(st);
  }
  while (!np_list_empty(&c->swait))
    op_finish(np_list_entry(c->swait.next, op, wlink), err);
  while (!np_list_empty(&c->idwait))
    op_finish(np_list_entry(c->idwait.next, op, wlink), err);
  while (!np_list_empty(&c->dwait))
    op_finish(np_list_entry(c->dwait.next, op, wlink), err);
  np_list_remove(&c->link);
  if (c->up) {
    int last = 1;
    np_list *it;
    for (it = sw->conns.next; it != &sw->conns && last; it = it->next) {
      sconn *o = np_list_entry(it, sconn, link);
      last = !(o->up && np_peerid_equal(&o->peer, &c->peer));
    }
    emit_conn(sw, c, NP_EV_CONN_DOWN, err, last);
  }
  d = c->dial;
  c->nc = NULL;
  free(c);
  if (d)
    dial_attempt_down(d, err);
}

static void c_stream_open(np_cstream *cs, void *ud) {
  sconn *c = cs->conn->ud;
  sstream *st;
  (void)ud;
  if (c == NULL || (st = st_new(c, cs, S_NEG_IN)) == NULL) {
    np_cstream_reset(cs);
    return;
  }
  np_mss_init_listener(&st->mss, lookup, st);
  st_send_mss(st);
}

static void c_stream_data(np_cstream *cs, const uint8_t *data, size_t len,
                          int fin, void *ud) {
  sstream *st = cs->ud;
  (void)ud;
  if (st == NULL || st->kind == S_DEAD)
    return;
  st_data(st, data, len, fin);
}

static void c_stream_close(np_cstream *cs, int err, void *ud) {
  sstream *st = cs->ud;
  sconn *c;
  (void)ud;
  if (st == NULL)
    return;
  c = st->c;
  if (c->close_err && err == NP_ECANCELED)
    err = c->close_err;
  if (err == 0 && st->kind == S_APP && st->app &&
      (st->held_len || st->held_fin)) {
    /* Cleanly finished, but the receiver is paused on bytes we hold. */
    st_unawait(st);
    st->draining = 1;
    st->drain_err = 0;
    st->cs = NULL;
    np_list_remove(&st->link);
    np_list_init(&st->link);
    if (!st->app_paused)
      np_loop_post(st->loop, &st->resume);
  } else {
    st_detach(st, err);
    st_free(st);
  }
  if (!np_list_empty(&c->swait))
    swait_retry(c);
}

static void c_stream_writable(np_cstream *cs, void *ud) {
  sstream *st = cs->ud;
  (void)ud;
  if (st == NULL)
    return;
  if (st->obuf || st->fin_after)
    st_pump(st);
  if (st->obuf == NULL && st->kind == S_APP && st->app &&
      st->app->cbs.on_writable)
    st->app->cbs.on_writable(st->app, st->app->ud);
}

static void c_stream_credit(np_conn *nc, void *ud) {
  sconn *c = nc->ud;
  (void)ud;
  if (c)
    swait_retry(c);
}

/* ---- liveness ------------------------------------------------------------------- */

static void probe_done(void *ud, int err, int64_t rtt_us) {
  sconn *c = ud;
  (void)rtt_us;
  c->probe = NULL;
  c->probing = 0;
  if (err == NP_ETIMEDOUT && c->nc && !c->closing) {
    /* A peer that answers nothing for PROBE_TIMEOUT is gone (crashed,
     * unplugged): fail its calls now rather than at the idle timeout. */
    np_info("swarm", "liveness-timeout peer=%s", c->peer_str);
    c->closing = 1;
    c->close_err = NP_ETIMEDOUT;
    np_conn_close(c->nc, 0);
  }
}

/* Every second: a connection with an answer awaited gets a probe (one at
 * a time). A dead peer's port answers with ICMP (the transport fails the
 * connection at once); a vanished host lets the probe time out. */
#define PROBE_TIMEOUT_MS 3000
static void liveness_tick(struct ev_loop *ev, ev_timer *w, int revents) {
  np_swarm *sw = np_container_of(w, np_swarm, liveness);
  np_list *it;
  (void)ev, (void)revents;
  if (sw->prober.start == NULL)
    return;
  for (it = sw->conns.next; it != &sw->conns; it = it->next) {
    sconn *c = np_list_entry(it, sconn, link);
    if (!c->up || c->closing || c->probing || c->awaiting == 0)
      continue;
    c->probing = 1;
    if (sw->prober.start(sw->prober_ud, c->nc, PROBE_TIMEOUT_MS, probe_done,
                         c, &c->probe) != 0) {
      c->probing = 0;
      c->probe = NULL;
    }
  }
}

void np_swarm_set_prober(np_swarm *sw, const np_swarm_prober *p, void *ud) {
  np_list *it, *tmp;
  /* Probes of the one going away are withdrawn: liveness ones silently,
   * pings asked through np_net_ops with NP_ECANCELED. */
  for (it = sw->conns.next; it != &sw->conns; it = it->next) {
    sconn *c = np_list_entry(it, sconn, link);
    if (c->probe && sw->prober.cancel)
      sw->prober.cancel(sw->prober_ud, c->probe);
    c->probe = NULL;
    c->probing = 0;
  }
  np_list_for_each_safe(it, tmp, &sw->ops) {
    op *o = np_list_entry(it, op, link);
    if (o->kind == OP_PROBE && o->probe)
      op_finish(o, NP_ECANCELED);
  }
  memset(&sw->prober, 0, sizeof(sw->prober));
  if (p)
    sw->prober = *p;
  sw->prober_ud = p ? ud : NULL;
}

/* ---- hooks for protocol modules ---------------------------------------------------- */

static sconn *live_conn(const np_conn *nc) {
  sconn *c = nc ? nc->ud : NULL;
  return c && c->nc == nc && c->up && !c->closing ? c : NULL;
}

int np_swarm_conn_open(np_swarm *sw, const np_conn *nc, const char *proto,
                       np_net_stream_fn cb, void *ud, void **handle) {
  sconn *c = live_conn(nc);
  op *o;
  if (proto == NULL || cb == NULL ||
      np_proto_name_check(proto, strlen(proto)) != 0)
    return NP_EINVAL;
  if (c == NULL || sw->closing)
    return NP_ECLOSED;
  if ((o = op_new(sw, OP_OPEN, &c->peer)) == NULL)
    return NP_ENOMEM;
  if ((o->protos[0] = strdup(proto)) == NULL) {
    op_free(o);
    return NP_ENOMEM;
  }
  o->nprotos = 1;
  o->lazy = 1;
  o->limited_ok = 1; /* the caller chose this connection */
  o->stream_cb = cb;
  o->ud = ud;
  np_list_insert_tail(&sw->ops, &o->link);
  if (handle)
    *handle = o; /* before a callback from inside op_on_conn */
  op_on_conn(o, c);
  return 0;
}

void np_swarm_conn_identified(np_swarm *sw, const np_conn *nc) {
  sconn *c = nc ? nc->ud : NULL;
  (void)sw;
  if (c == NULL || c->nc != nc)
    return;
  c->identified = 1;
  while (!np_list_empty(&c->idwait))
    op_finish(np_list_entry(c->idwait.next, op, wlink), 0);
}

void np_swarm_foreach_conn(np_swarm *sw,
                           int (*fn)(const np_conn *c, void *ud), void *ud) {
  np_list *it;
  for (it = sw->conns.next; it != &sw->conns; it = it->next) {
    sconn *c = np_list_entry(it, sconn, link);
    if (c->up && !c->closing && c->nc && fn(c->nc, ud))
      return;
  }
}

const np_conn *np_swarm_stream_conn(const np_stream *s) {
  const sstream *st = s ? s->impl : NULL;
  return st && !st->draining && st->c ? st->c->nc : NULL;
}

void np_swarm_stream_await(np_stream *s, int on) {
  sstream *st = s ? s->impl : NULL;
  if (st == NULL || st->draining || st->kind != S_APP || !!on == st->awaiting)
    return;
  st->awaiting = !!on;
  if (on)
    st->c->awaiting++;
  else
    st->c->awaiting--;
}

/* ---- np_net_ops ------------------------------------------------------------------- */

/* Start |o| and hand out its handle; on failure |o| is freed and no
 * callback will run. */
static int op_launch(op *o, const uint8_t *const *addrs, const size_t *lens,
                     size_t n, uint64_t timeout_ms, void **handle) {
  int rv;
  /* Before starting: a lazy open on a connection that exists hands its
   * stream over from inside op_start, and the callback may free the
   * caller's record holding *handle. A failure comes before any callback,
   * so the record is still there to be cleared. */
  if (handle)
    *handle = o;
  if ((rv = op_start(o, addrs, lens, n, timeout_ms)) != 0) {
    if (handle)
      *handle = NULL;
    op_free(o);
  }
  return rv;
}

static int connect_op(np_swarm *sw, const np_peerid *peer, int want_identify,
                      const uint8_t *const *addrs, const size_t *lens,
                      size_t n, uint64_t timeout_ms, np_net_done_fn cb,
                      void *ud, void **handle) {
  op *o = op_new(sw, OP_CONNECT, peer);
  if (o == NULL)
    return NP_ENOMEM;
  o->done_cb = cb;
  o->ud = ud;
  o->want_identify = want_identify;
  return op_launch(o, addrs, lens, n, timeout_ms, handle);
}

int np_swarm_dial_new(np_swarm *sw, const np_peerid *peer,
                      const uint8_t *const *addrs, const size_t *lens,
                      size_t n, int flags, uint64_t timeout_ms,
                      np_net_done_fn cb, void *ud, void **handle) {
  op *o;
  if (n == 0 || (flags & ~NP_SWARM_DIAL_NEW_PORT))
    return NP_EINVAL;
  if ((o = op_new(sw, OP_CONNECT, peer)) == NULL)
    return NP_ENOMEM;
  o->done_cb = cb;
  o->ud = ud;
  o->fresh = 1;
  o->new_port = !!(flags & NP_SWARM_DIAL_NEW_PORT);
  return op_launch(o, addrs, lens, n, timeout_ms, handle);
}

static int net_connect(void *net, const np_peerid *peer,
                       const uint8_t *const *addrs, const size_t *lens,
                       size_t n, uint64_t timeout_ms, np_net_done_fn cb,
                       void *ud, void **handle) {
  return connect_op(net, peer, 0, addrs, lens, n, timeout_ms, cb, ud, handle);
}

static int net_connect_identified(void *net, const np_peerid *peer,
                                  const uint8_t *const *addrs,
                                  const size_t *lens, size_t n,
                                  uint64_t timeout_ms, np_net_done_fn cb,
                                  void *ud, void **handle) {
  return connect_op(net, peer, 1, addrs, lens, n, timeout_ms, cb, ud, handle);
}

static int net_open(void *net, const np_peerid *peer, const char *const *protos,
                    size_t n, int flags, uint64_t timeout_ms,
                    np_net_stream_fn cb, void *ud, void **handle) {
  np_swarm *sw = net;
  op *o;
  if (n == 0 || n > NP_MSS_MAX_PROPOSALS)
    return NP_EINVAL;
  if ((o = op_new(sw, OP_OPEN, peer)) == NULL)
    return NP_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if ((o->protos[i] = strdup(protos[i])) == NULL) {
      op_free(o);
      return NP_ENOMEM;
    }
    o->nprotos++;
  }
  o->stream_cb = cb;
  o->ud = ud;
  o->lazy = (flags & NP_NET_LAZY) && n == 1;
  return op_launch(o, NULL, NULL, 0, timeout_ms, handle);
}

static int net_ping(void *net, const np_peerid *peer, uint64_t timeout_ms,
                    np_net_ping_fn cb, void *ud, void **handle) {
  np_swarm *sw = net;
  op *o;
  if (sw->prober.start == NULL)
    return NP_ENOTSUP;
  if ((o = op_new(sw, OP_PROBE, peer)) == NULL)
    return NP_ENOMEM;
  o->ping_cb = cb;
  o->ud = ud;
  return op_launch(o, NULL, NULL, 0, timeout_ms, handle);
}

static void net_cancel(void *net, void *handle) {
  op *o = handle;
  (void)net;
  /* An op whose callback is running (or ran) is already on its way out:
   * canceling it from inside that callback must not free it twice. */
  if (o == NULL || o->done)
    return;
  o->done = 1; /* no callback */
  if (o->queued)
    return; /* finished already: its queued delivery frees it, silently */
  op_finish(o, NP_ECANCELED);
}

static int net_disconnect(void *net, const np_peerid *peer) {
  np_swarm *sw = net;
  np_list *it;
  for (it = sw->conns.next; it != &sw->conns; it = it->next) {
    sconn *c = np_list_entry(it, sconn, link);
    if (np_peerid_equal(&c->peer, peer) && c->nc && !c->closing) {
      c->closing = 1;
      np_conn_close(c->nc, 0);
    }
  }
  return 0;
}

static size_t net_conns(void *net, np_conn_info *out, size_t max) {
  np_swarm *sw = net;
  np_list *it;
  size_t n = 0;
  for (it = sw->conns.next; it != &sw->conns; it = it->next) {
    sconn *c = np_list_entry(it, sconn, link);
    if (!c->up)
      continue;
    if (n < max) {
      np_ps_peer *p = np_peerstore_get(sw->ps, &c->peer);
      np_conn_info *ci = &out[n];
      memset(ci, 0, sizeof(*ci));
      ci->peer = c->peer;
      memcpy(ci->addr, c->raddr, c->raddr_len);
      ci->addr_len = c->raddr_len;
      ci->outbound = !c->inbound;
      ci->rtt_us = c->nc ? np_conn_rtt_us(c->nc) : -1;
      ci->transport = c->nc ? c->nc->kind : 0;
      ci->limited = c->nc ? c->nc->limited : 0;
      if (ci->rtt_us < 0 && p) /* the transport has no estimate */
        ci->rtt_us = p->rtt_us;
      ci->age_ms = now_ms(sw) - c->t_up_ms;
      if (p)
        snprintf(ci->agent, sizeof(ci->agent), "%s", p->agent);
    }
    n++;
  }
  return n;
}

static size_t net_addrs(void *net, const uint8_t **bins, size_t *lens,
                        size_t max) {
  np_swarm *sw = net;
  for (size_t i = 0; i < sw->naddrs && i < max; i++) {
    bins[i] = sw->addr[i];
    lens[i] = sw->addr_len[i];
  }
  return sw->naddrs;
}

static const np_net_ops net_ops = {
    .connect = net_connect,
    .open_stream = net_open,
    .ping = net_ping,
    .cancel = net_cancel,
    .disconnect = net_disconnect,
    .conns = net_conns,
    .addrs = net_addrs,
    .connect_identified = net_connect_identified,
};

/* ---- lifecycle ----------------------------------------------------------------------- */

/* Every host of the process shares one in-memory network (/memory/NAME):
 * tests run many swarms over it in one loop, with no sockets. Only swarms
 * with a /memory/ listen address join it. It is made with the first such
 * swarm and freed with the last, on an np_loop of its own
 * (a host's np_loop goes with its host); a swarm on another libev loop
 * goes without it. */
static struct {
  np_tmem_net *net;
  np_loop *loop;
  unsigned refs;
} memnet;

static void memnet_free(void) {
  np_tmem_net_del(memnet.net);
  np_loop_del(memnet.loop);
  memnet.net = NULL;
  memnet.loop = NULL;
}

static int mem_transport(np_swarm *sw, const np_conn_cbs *cbs) {
  np_tmem_config mc;
  struct ev_loop *ev = EV(sw);
  int rv;
  if (memnet.net == NULL) {
    if ((rv = np_loop_new(&memnet.loop, ev)) != 0)
      return rv;
    if ((rv = np_tmem_net_new(&memnet.net, memnet.loop)) != 0) {
      np_loop_del(memnet.loop);
      memnet.loop = NULL;
      return rv;
    }
  } else if (np_loop_ev(memnet.loop) != ev) {
    return 0;
  }
  np_tmem_config_default(&mc);
  mc.max_connections = np_host_conf(sw->h)->limits.max_connections;
  mc.upgrade.max_streams = np_host_conf(sw->h)->limits.max_streams_per_conn;
  if ((rv = np_tmem_new(&sw->tr[sw->ntr], memnet.net, np_host_identity(sw->h),
                        &mc, cbs, sw)) != 0) {
    if (memnet.refs == 0)
      memnet_free();
    return rv;
  }
  sw->ntr++;
  sw->has_mem = 1;
  memnet.refs++;
  return 0;
}

int np_swarm_conn_close_idle(np_swarm *sw, const np_conn *nc) {
  sconn *c = live_conn(nc);
  size_t n = 0;
  np_list *it;
  (void)sw;
  if (c == NULL)
    return NP_ECLOSED;
  for (it = c->streams.next; it != &c->streams; it = it->next)
    n++;
  if (n > 0)
    return n > INT_MAX ? INT_MAX : (int)n;
  c->closing = 1;
  np_conn_close(c->nc, 0);
  return 0;
}

np_transport *np_swarm_transport(np_swarm *sw, int kind) {
  for (size_t i = 0; i < sw->ntr; i++)
    if (sw->tr[i]->ops->kind == kind)
      return sw->tr[i];
  return NULL;
}

int np_swarm_mem_vanish(np_swarm *sw) {
  for (size_t i = 0; i < sw->ntr; i++)
    if (sw->tr[i]->ops->kind == NP_TRANSPORT_MEM)
      return np_tmem_vanish(sw->tr[i]);
  return NP_ENOENT;
}

static int listens_on_memory(const np_conf *conf) {
  for (size_t i = 0; i < conf->host.listen.n; i++)
    if (strncmp(conf->host.listen.v[i], "/memory/", 8) == 0)
      return 1;
  return 0;
}

static void mem_release(np_swarm *sw) {
  if (!sw->has_mem)
    return;
  sw->has_mem = 0;
  if (--memnet.refs == 0)
    memnet_free();
}

int np_swarm_new(np_swarm **psw, np_host *h, char *err, size_t errlen) {
  const np_conf *conf = np_host_conf(h);
  np_swarm *sw = calloc(1, sizeof(*sw));
  np_quic_config qc;
  static const np_conn_cbs cbs = {
      .conn_up = c_conn_up,
      .conn_down = c_conn_down,
      .stream_open = c_stream_open,
      .stream_data = c_stream_data,
      .stream_close = c_stream_close,
      .stream_writable = c_stream_writable,
      .stream_credit = c_stream_credit,
  };
  int rv;
  if (sw == NULL)
    return NP_ENOMEM;
  sw->h = h;
  sw->ps = np_host_peerstore(h);
  sw->cbs = cbs;
  np_defer_init(&sw->adv_changed, adv_emit, sw);
  np_list_init(&sw->conns);
  np_list_init(&sw->dials);
  np_list_init(&sw->ops);
  np_quic_config_default(&qc);
  qc.max_connections = conf->limits.max_connections;
  qc.max_streams_per_conn = conf->limits.max_streams_per_conn;
  qc.idle_timeout_ms = conf->limits.idle_timeout_ms;
  qc.keepalive_ms = conf->nat.keepalive_ms;
  if ((rv = np_tls_new(&sw->tls, np_host_identity(h))) != 0 ||
      (rv = np_tquic_new(&sw->tr[sw->ntr], np_host_loop(h), sw->tls, &qc,
                         &cbs, sw)) != 0) {
    snprintf(err, errlen, "transport set-up failed: %s", np_strerror(rv));
    np_swarm_del(sw);
    return rv;
  }
  sw->ntr++;
  {
    np_ttcp_config tc;
    np_ttcp_config_default(&tc);
    tc.max_connections = conf->limits.max_connections;
    tc.upgrade.max_streams = conf->limits.max_streams_per_conn;
    tc.upgrade.idle_timeout_ms = conf->limits.idle_timeout_ms;
    /* [host] security: NP_CONF_SEC_* are NP_UPGRADE_* */
    tc.upgrade.security[0] = (uint8_t)(conf->host.security & 0xff);
    tc.upgrade.security[1] = (uint8_t)(conf->host.security >> 8 & 0xff);
    if ((rv = np_ttcp_new(&sw->tr[sw->ntr], np_host_loop(h),
                          np_host_identity(h), &tc, &cbs, sw)) != 0) {
      snprintf(err, errlen, "TCP transport set-up failed: %s",
               np_strerror(rv));
      np_swarm_del(sw);
      return rv;
    }
    sw->ntr++;
  }
  /* The in-memory network only for hosts that listen on it (in-process
   * tests): a daemon does not set it up. */
  if (listens_on_memory(conf) && (rv = mem_transport(sw, &cbs)) != 0) {
    snprintf(err, errlen, "in-memory transport set-up failed: %s",
             np_strerror(rv));
    np_swarm_del(sw);
    return rv;
  }
  for (size_t i = 0; i < conf->host.listen.n; i++) {
    const char *t = conf->host.listen.v[i];
    uint8_t bin[NP_MADDR_MAX];
    np_ssize n = np_maddr_parse(t, strlen(t), bin, sizeof(bin));
    rv = n < 0 ? (int)n : NP_ENOTSUP;
    /* The first transport that takes the address listens on it. */
    for (size_t k = 0; n >= 0 && rv == NP_ENOTSUP && k < sw->ntr; k++)
      rv = sw->tr[k]->ops->listen(sw->tr[k], bin, (size_t)n);
    if (rv != 0) {
      snprintf(err, errlen, "[host] listen %s: %s", t,
               rv == NP_ESYS ? "cannot bind (address in use or not local?)"
               : rv == NP_ENOTSUP
                   ? "no transport for this address (this build listens on "
                     "/ip4|ip6/A/udp/P/quic-v1 and /ip4|ip6/A/tcp/P)"
                   : np_strerror(rv));
      np_swarm_del(sw);
      return rv;
    }
  }
  collect_addrs(sw);
  np_host_set_net(h, &net_ops, sw);
  ev_timer_init(&sw->liveness, liveness_tick, 1.0, 1.0);
  ev_timer_start(EV(sw), &sw->liveness);
  *psw = sw;
  return 0;
}

void np_swarm_del(np_swarm *sw) {
  if (sw == NULL)
    return;
  sw->closing = 1;
  np_loop_cancel(np_host_loop(sw->h), &sw->adv_changed);
  np_swarm_set_prober(sw, NULL, NULL);
  ev_timer_stop(EV(sw), &sw->liveness);
  np_host_set_net(sw->h, NULL, NULL);
  /* conn_down for all: ops fail, streams close */
  for (size_t i = 0; i < sw->ntr; i++)
    sw->tr[i]->ops->del(sw->tr[i]);
  mem_release(sw);
  while (!np_list_empty(&sw->dials))
    dial_fail(np_list_entry(sw->dials.next, dialing, link), NP_ECANCELED);
  while (!np_list_empty(&sw->ops)) {
    op *o = np_list_entry(sw->ops.next, op, link);
    op_finish(o, NP_ECANCELED);
  }
  np_tls_del(sw->tls);
  free(sw);
}
