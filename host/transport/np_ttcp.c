/* TCP transport: sockets, listen and connect; the rest is np_upgrade's. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "np_bstream.h"
#include "np_log.h"
#include "np_multiaddr.h"
#include "np_ttcp.h"

#define SUB "tcp"
#define RX_BUF (256u * 1024u) /* one read; shared by the transport's sockets   \
                               */
#define ACCEPT_BATCH 64       /* accepts per readiness event */
#define ACCEPT_PAUSE 0.1      /* seconds without accept after EMFILE */
#define MADDR_CAP 64

typedef struct ttcp ttcp;

typedef struct tlisten {
  np_list link;
  ttcp *t;
  int fd;
  ev_io io;
  struct sockaddr_storage local;
  socklen_t locallen;
  uint8_t maddr[MADDR_CAP];
  size_t maddrlen;
} tlisten;

struct ttcp {
  np_transport pub; /* first */
  np_loop *loop;
  struct ev_loop *ev;
  np_ttcp_config cfg;
  np_upgrade *up;
  np_list listeners;
  uint8_t *rxbuf;
  ev_timer resume; /* restarts accepting after EMFILE */
  int deleting;
  np_ratelimit refused_rl, accept_rl;
};

static void setopt(int fd, int level, int name, int val) {
  (void)setsockopt(fd, level, name, &val, sizeof(val));
}

static void addr_text(const uint8_t *bin, size_t len, char *out, size_t cap) {
  if (len == 0 || np_maddr_to_string(bin, len, out, cap) < 0)
    snprintf(out, cap, "?");
}

/* ---- accept -------------------------------------------------------------- */

static void accept_one(ttcp *t, int fd, const struct sockaddr *peer) {
  uint8_t laddr[MADDR_CAP], raddr[MADDR_CAP];
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  np_ssize ln = 0, rn;
  np_bstream *bs;
  np_conn *c;
  if (np_upgrade_count(t->up) >= t->cfg.max_connections) {
    if (np_ratelimit_ok(&t->refused_rl, 5, SUB, "conn-refused"))
      np_info(SUB, "conn-refused reason=max_connections limit=%u",
              t->cfg.max_connections);
    close(fd);
    return;
  }
  setopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
    ln = np_maddr_from_sockaddr_tcp((struct sockaddr *)&ss, laddr,
                                    sizeof(laddr));
  rn = np_maddr_from_sockaddr_tcp(peer, raddr, sizeof(raddr));
  if (np_bstream_tcp_new(&bs, t->loop, fd, 0, 0, t->rxbuf, RX_BUF) != 0)
    return;
  np_upgrade_start(t->up, bs, 1, NULL, laddr, ln > 0 ? (size_t)ln : 0, raddr,
                   rn > 0 ? (size_t)rn : 0, NULL, &c);
}

static void resume_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  ttcp *t = np_container_of(w, ttcp, resume);
  np_list *l;
  (void)revents;
  for (l = t->listeners.next; l != &t->listeners; l = l->next)
    ev_io_start(ev, &np_list_entry(l, tlisten, link)->io);
}

static void accept_cb(struct ev_loop *ev, ev_io *w, int revents) {
  tlisten *ls = np_container_of(w, tlisten, io);
  ttcp *t = ls->t;
  (void)revents;
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_one(t, fd, (struct sockaddr *)&ss);
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
      continue;
    /* Out of descriptors or memory: stop polling a while instead of
     * spinning on a socket that stays readable. */
    if (np_ratelimit_ok(&t->accept_rl, 5, SUB, "accept-failed"))
      np_warn(SUB, "accept-failed errno=%d (%s)", errno, strerror(errno));
    for (np_list *l = t->listeners.next; l != &t->listeners; l = l->next)
      ev_io_stop(ev, &np_list_entry(l, tlisten, link)->io);
    ev_timer_stop(ev, &t->resume);
    ev_timer_set(&t->resume, ACCEPT_PAUSE, 0.);
    ev_timer_start(ev, &t->resume);
    return;
  }
}

/* ---- transport ops ------------------------------------------------------- */

static int t_can_dial(const np_transport *pt, const uint8_t *maddr,
                      size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl;
  (void)pt;
  return np_maddr_to_sockaddr_tcp(maddr, len, &ss, &sl) == 0;
}

static int t_listen(np_transport *pt, const uint8_t *maddr, size_t len) {
  ttcp *t = (ttcp *)pt;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  tlisten *ls;
  char text[128];
  np_ssize n;
  int fd, rv, e;
  if (t->deleting)
    return NP_ECANCELED;
  if ((rv = np_maddr_to_sockaddr_tcp(maddr, len, &ss, &sl)) != 0)
    return rv;
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    np_warn(SUB, "socket-failed errno=%d (%s)", errno, strerror(errno));
    return NP_ESYS;
  }
  setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  setopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (ss.ss_family == AF_INET6)
    setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1); /* /ip4 is its own address */
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 ||
      listen(fd, t->cfg.backlog) != 0) {
    uint8_t bin[MADDR_CAP];
    e = errno;
    n = np_maddr_from_sockaddr_tcp((struct sockaddr *)&ss, bin, sizeof(bin));
    addr_text(bin, n > 0 ? (size_t)n : 0, text, sizeof(text));
    np_warn(SUB, "bind-failed addr=%s errno=%d (%s)", text, e, strerror(e));
    close(fd);
    return NP_ESYS;
  }
  if ((ls = calloc(1, sizeof(*ls))) == NULL) {
    close(fd);
    return NP_ENOMEM;
  }
  ls->t = t;
  ls->fd = fd;
  ls->locallen = sizeof(ls->local);
  if (getsockname(fd, (struct sockaddr *)&ls->local, &ls->locallen) != 0 ||
      (n = np_maddr_from_sockaddr_tcp((struct sockaddr *)&ls->local, ls->maddr,
                                      sizeof(ls->maddr))) < 0) {
    np_warn(SUB, "getsockname-failed errno=%d (%s)", errno, strerror(errno));
    close(fd);
    free(ls);
    return NP_ESYS;
  }
  ls->maddrlen = (size_t)n;
  ev_io_init(&ls->io, accept_cb, fd, EV_READ);
  if (!ev_is_active(&t->resume))
    ev_io_start(t->ev, &ls->io);
  np_list_insert_tail(&t->listeners, &ls->link);
  addr_text(ls->maddr, ls->maddrlen, text, sizeof(text));
  np_info(SUB, "listen addr=%s", text);
  return 0;
}

/* The listener a dial to |to| leaves from: wildcard-bound of the same
 * family, else one whose scope (loopback or not) fits; NULL if none. */
static const tlisten *pick_listener(const ttcp *t, const struct sockaddr *to) {
  const tlisten *best = NULL;
  for (const np_list *l = t->listeners.next; l != &t->listeners; l = l->next) {
    const tlisten *ls = np_list_entry(l, tlisten, link);
    int fit = np_sockaddr_source_fit((const struct sockaddr *)&ls->local, to);
    if (fit == 2)
      return ls;
    if (best == NULL && fit == 1)
      best = ls;
  }
  return best;
}

/* Start connect(2) to |to|, from |from| when given. Returns the socket
 * with *|done| set when it completed at once, or -errno. */
static int start_connect(const struct sockaddr *to, socklen_t tolen,
                         const tlisten *from, int *done) {
  int fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int e;
  if (fd < 0)
    return -errno;
  setopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (to->sa_family == AF_INET6)
    setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
  if (from != NULL) {
    setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    setopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (bind(fd, (const struct sockaddr *)&from->local, from->locallen) != 0) {
      e = errno;
      close(fd);
      return -e;
    }
  }
  *done = connect(fd, to, tolen) == 0;
  if (*done || errno == EINPROGRESS)
    return fd;
  e = errno;
  close(fd);
  return -e;
}

/* How a dial leaves and which side of the handshake it takes. */
enum { DIAL_LISTEN_PORT = 0, DIAL_NEW_PORT = 1, DIAL_PUNCH = 2 };

static int dial_from(np_transport *pt, const uint8_t *maddr, size_t len,
                     int how, void *ud, np_conn **pc) {
  ttcp *t = (ttcp *)pt;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  const tlisten *from;
  np_peerid expected;
  uint8_t raddr[MADDR_CAP];
  np_bstream *bs;
  np_ssize rn;
  int rv, fd, done = 0, has_expected;
  if (t->deleting)
    return NP_ECANCELED;
  if ((rv = np_maddr_to_sockaddr_tcp(maddr, len, &ss, &sl)) != 0)
    return rv;
  has_expected = np_maddr_get_p2p(maddr, len, &expected) == 0;
  if (np_upgrade_count(t->up) >= t->cfg.max_connections)
    return NP_ELIMIT;
  rn = np_maddr_from_sockaddr_tcp((struct sockaddr *)&ss, raddr, sizeof(raddr));
  from = how == DIAL_NEW_PORT ? NULL : pick_listener(t, (struct sockaddr *)&ss);
  if (how == DIAL_PUNCH && from == NULL)
    return NP_ENOENT; /* a punch from another port opens the wrong mapping */
  fd = start_connect((struct sockaddr *)&ss, sl, from, &done);
  if (fd < 0 && from != NULL && how != DIAL_PUNCH) {
    /* The 4-tuple from our listen port is taken (EADDRNOTAVAIL), or the
     * bind failed: an ephemeral port still reaches the peer. */
    np_debug(SUB, "dial-reuseport-failed errno=%d (%s)", -fd, strerror(-fd));
    fd = start_connect((struct sockaddr *)&ss, sl, NULL, &done);
  }
  if (fd < 0) {
    int e = -fd;
    if (how == DIAL_PUNCH)
      return e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH
                 ? NP_EUNREACH
                 : NP_ESYS;
    if (e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH)
      return np_upgrade_dial_failed(t->up, NP_EUNREACH, raddr,
                                    rn > 0 ? (size_t)rn : 0, ud, pc);
    np_warn(SUB, "connect-failed errno=%d (%s)", e, strerror(e));
    return NP_ESYS;
  }
  if ((rv = np_bstream_tcp_new(&bs, t->loop, fd, !done,
                               t->cfg.connect_timeout_ms, t->rxbuf, RX_BUF)) !=
      0)
    return rv;
  if (how == DIAL_PUNCH) {
    np_conn *c;
    /* The listener's side of the handshake: to the upper layer this is
     * an inbound connection (conn_up with no ud, nothing on failure). */
    return np_upgrade_start(t->up, bs, 1, NULL, NULL, 0, raddr,
                            rn > 0 ? (size_t)rn : 0, NULL, &c);
  }
  return np_upgrade_start(t->up, bs, 0, has_expected ? &expected : NULL, NULL,
                          0, raddr, rn > 0 ? (size_t)rn : 0, ud, pc);
}

static int t_dial(np_transport *pt, const uint8_t *maddr, size_t len, void *ud,
                  np_conn **pc) {
  return dial_from(pt, maddr, len, DIAL_LISTEN_PORT, ud, pc);
}

/* From an ephemeral port, not the listen port (AutoNAT dial-backs). */
static int t_dial_new_port(np_transport *pt, const uint8_t *maddr, size_t len,
                           void *ud, np_conn **pc) {
  return dial_from(pt, maddr, len, DIAL_NEW_PORT, ud, pc);
}

static size_t t_listen_count(const np_transport *pt) {
  const ttcp *t = (const ttcp *)pt;
  size_t n = 0;
  for (const np_list *l = t->listeners.next; l != &t->listeners; l = l->next)
    n++;
  return n;
}

static np_ssize t_listen_addr(const np_transport *pt, size_t i, uint8_t *out,
                              size_t cap) {
  const ttcp *t = (const ttcp *)pt;
  for (const np_list *l = t->listeners.next; l != &t->listeners; l = l->next) {
    const tlisten *ls = np_list_entry(l, tlisten, link);
    if (i-- > 0)
      continue;
    if (ls->maddrlen > cap)
      return NP_ELIMIT;
    memcpy(out, ls->maddr, ls->maddrlen);
    return (np_ssize)ls->maddrlen;
  }
  return NP_ENOENT;
}

static size_t t_conn_count(const np_transport *pt) {
  return np_upgrade_count(((const ttcp *)pt)->up);
}

static void t_del(np_transport *pt) {
  ttcp *t = (ttcp *)pt;
  if (t == NULL)
    return;
  t->deleting = 1;
  np_upgrade_del(t->up);
  while (!np_list_empty(&t->listeners)) {
    tlisten *ls = np_list_entry(t->listeners.next, tlisten, link);
    ev_io_stop(t->ev, &ls->io);
    close(ls->fd);
    np_list_remove(&ls->link);
    free(ls);
  }
  ev_timer_stop(t->ev, &t->resume);
  free(t->rxbuf);
  free(t);
}

static const np_transport_ops ttcp_ops = {
    .kind = NP_TRANSPORT_TCP,
    .can_dial = t_can_dial,
    .dial = t_dial,
    .listen = t_listen,
    .listen_count = t_listen_count,
    .listen_addr = t_listen_addr,
    .conn_count = t_conn_count,
    .del = t_del,
    .dial_new_port = t_dial_new_port,
};

void np_ttcp_config_default(np_ttcp_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->max_connections = 512;
  cfg->backlog = 128;
  cfg->connect_timeout_ms = 10000;
  np_upgrade_config_default(&cfg->upgrade);
}

int np_ttcp_punch(np_transport *pt, const uint8_t *maddr, size_t len) {
  if (pt == NULL || pt->ops != &ttcp_ops)
    return NP_EINVAL;
  return dial_from(pt, maddr, len, DIAL_PUNCH, NULL, NULL);
}

int np_ttcp_new(np_transport **pt, np_loop *loop, const np_identity *id,
                const np_ttcp_config *cfg, const np_conn_cbs *cbs, void *ud) {
  ttcp *t;
  int rv;
  if (pt == NULL || loop == NULL || id == NULL || cbs == NULL)
    return NP_EINVAL;
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return NP_ENOMEM;
  np_ttcp_config_default(&t->cfg);
  if (cfg != NULL) {
#define TAKE(f) (t->cfg.f = cfg->f ? cfg->f : t->cfg.f)
    TAKE(max_connections);
    TAKE(backlog);
    TAKE(connect_timeout_ms);
#undef TAKE
  }
  t->pub.ops = &ttcp_ops;
  t->loop = loop;
  t->ev = np_loop_ev(loop);
  np_list_init(&t->listeners);
  ev_timer_init(&t->resume, resume_cb, ACCEPT_PAUSE, 0.);
  if ((t->rxbuf = malloc(RX_BUF)) == NULL) {
    free(t);
    return NP_ENOMEM;
  }
  rv = np_upgrade_new(&t->up, loop, id, NP_TRANSPORT_TCP,
                      cfg ? &cfg->upgrade : NULL, cbs, ud);
  if (rv != 0) {
    free(t->rxbuf);
    free(t);
    return rv;
  }
  *pt = &t->pub;
  return 0;
}
