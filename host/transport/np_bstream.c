/* Byte streams: a non-blocking TCP socket on libev, and an in-memory pair
 * delivered through np_defer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "np_bstream.h"
#include "np_log.h"
#include "np_multiaddr.h"

/* Owners may close a stream from inside its callback: the memory goes
 * once the outermost callback returns. */
#define CALL_BEGIN(s) ((s)->depth++)
#define CALL_END(s, freefn)                                                    \
  do {                                                                         \
    if (--(s)->depth == 0 && (s)->dead)                                        \
      freefn(s);                                                               \
  } while (0)

/* ---- TCP ----------------------------------------------------------------- */

typedef struct tcp_bs {
  np_bstream pub;
  struct ev_loop *ev;
  np_loop *loop;
  int fd;
  ev_io rio, wio;
  ev_timer ctimer; /* connect timeout */
  np_defer redo;   /* deliver kept bytes after a resume */
  uint8_t *rxbuf;
  size_t rxcap;
  uint8_t *kept; /* unconsumed input, kept while paused */
  size_t koff, klen;
  int connecting, paused, eof, failed, shut, want_write, dead, depth;
} tcp_bs;

static void tcp_free(tcp_bs *t) {
  free(t->kept);
  free(t);
}

static void tcp_stop(tcp_bs *t) {
  ev_io_stop(t->ev, &t->rio);
  ev_io_stop(t->ev, &t->wio);
  ev_timer_stop(t->ev, &t->ctimer);
  np_loop_cancel(t->loop, &t->redo);
}

static int map_errno(int e) {
  switch (e) {
  case ECONNREFUSED:
  case EHOSTUNREACH:
  case ENETUNREACH:
  case EHOSTDOWN:
  case ENETDOWN:
    return NP_EUNREACH;
  case ETIMEDOUT:
    return NP_ETIMEDOUT;
  case ECONNRESET:
  case EPIPE:
  case ECONNABORTED:
    return NP_ECLOSED;
  default:
    return NP_ESYS;
  }
}

static void tcp_fail(tcp_bs *t, int e) {
  int err = map_errno(e);
  t->failed = 1;
  tcp_stop(t);
  if (err == NP_ESYS)
    np_warn("tcp", "socket-error fd=%d errno=%d (%s)", t->fd, e, strerror(e));
  if (t->pub.cbs->on_error)
    t->pub.cbs->on_error(&t->pub, err, t->pub.ud);
}

static void tcp_read_start(tcp_bs *t) {
  if (!t->paused && !t->eof && !t->failed && !t->dead && !t->connecting &&
      t->klen == 0)
    ev_io_start(t->ev, &t->rio);
}

/* Offer |len| bytes at |p| to the owner; keep what it leaves. Returns 0,
 * or -1 if the stream died meanwhile. */
static int tcp_deliver(tcp_bs *t, const uint8_t *p, size_t len, int from_kept) {
  size_t k = t->pub.cbs->on_data(&t->pub, p, len, t->pub.ud);
  if (t->dead || t->failed)
    return -1;
  if (k > len)
    k = len;
  if (from_kept) {
    t->koff += k;
    t->klen -= k;
    if (t->klen == 0) {
      free(t->kept);
      t->kept = NULL;
      t->koff = 0;
    }
  } else if (k < len) {
    if ((t->kept = malloc(len - k)) == NULL) {
      tcp_fail(t, ENOMEM);
      return -1;
    }
    memcpy(t->kept, p + k, len - k);
    t->koff = 0;
    t->klen = len - k;
  }
  if (t->klen > 0) {
    t->paused = 1; /* the owner took less: it resumes us */
    ev_io_stop(t->ev, &t->rio);
  }
  return 0;
}

static void tcp_eof(tcp_bs *t) {
  t->eof = 1;
  ev_io_stop(t->ev, &t->rio);
  if (t->pub.cbs->on_eof)
    t->pub.cbs->on_eof(&t->pub, t->pub.ud);
}

static void tcp_read_cb(struct ev_loop *ev, ev_io *w, int revents) {
  tcp_bs *t = np_container_of(w, tcp_bs, rio);
  ssize_t n;
  (void)ev, (void)revents;
  n = recv(t->fd, t->rxbuf, t->rxcap, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  CALL_BEGIN(t);
  if (n > 0)
    tcp_deliver(t, t->rxbuf, (size_t)n, 0);
  else if (n == 0)
    tcp_eof(t);
  else
    tcp_fail(t, errno);
  CALL_END(t, tcp_free);
}

static void tcp_redo_cb(void *arg) {
  tcp_bs *t = arg;
  if (t->paused || t->dead || t->failed)
    return;
  CALL_BEGIN(t);
  if (t->klen > 0 && tcp_deliver(t, t->kept + t->koff, t->klen, 1) < 0)
    goto out;
  tcp_read_start(t);
out:
  CALL_END(t, tcp_free);
}

static void tcp_write_cb(struct ev_loop *ev, ev_io *w, int revents) {
  tcp_bs *t = np_container_of(w, tcp_bs, wio);
  (void)ev, (void)revents;
  ev_io_stop(t->ev, &t->wio);
  CALL_BEGIN(t);
  if (t->connecting) {
    int e = 0;
    socklen_t el = sizeof(e);
    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
      e = errno;
    if (e != 0) {
      tcp_fail(t, e);
      goto out;
    }
    t->connecting = 0;
    ev_timer_stop(t->ev, &t->ctimer);
    if (t->shut)
      shutdown(t->fd, SHUT_WR);
    tcp_read_start(t);
  }
  if (t->want_write) {
    t->want_write = 0;
    if (t->pub.cbs->on_writable)
      t->pub.cbs->on_writable(&t->pub, t->pub.ud);
  }
out:
  CALL_END(t, tcp_free);
}

static void tcp_ctimer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  tcp_bs *t = np_container_of(w, tcp_bs, ctimer);
  (void)ev, (void)revents;
  CALL_BEGIN(t);
  tcp_fail(t, ETIMEDOUT);
  CALL_END(t, tcp_free);
}

static np_ssize tcp_write(np_bstream *b, const uint8_t *data, size_t len) {
  tcp_bs *t = (tcp_bs *)b;
  ssize_t n;
  if (t->failed || t->shut || t->dead)
    return NP_ECLOSED;
  if (len == 0)
    return 0;
  if (t->connecting) {
    t->want_write = 1; /* the watcher is on already */
    return 0;
  }
  n = send(t->fd, data, len, MSG_NOSIGNAL);
  if (n < 0) {
    /* The read side reports the failure as an event; here just refuse. */
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      return NP_ECLOSED;
    n = 0;
  }
  if ((size_t)n < len) {
    t->want_write = 1;
    ev_io_start(t->ev, &t->wio);
  }
  return (np_ssize)n;
}

static int tcp_shutdown(np_bstream *b) {
  tcp_bs *t = (tcp_bs *)b;
  if (t->failed || t->shut || t->dead)
    return NP_ECLOSED;
  t->shut = 1;
  if (!t->connecting)
    shutdown(t->fd, SHUT_WR);
  return 0;
}

static void tcp_pause(np_bstream *b, int paused) {
  tcp_bs *t = (tcp_bs *)b;
  if (t->dead)
    return;
  t->paused = !!paused;
  if (t->paused) {
    ev_io_stop(t->ev, &t->rio);
    np_loop_cancel(t->loop, &t->redo);
  } else if (t->klen > 0) {
    np_loop_post(t->loop, &t->redo); /* never from inside this call */
  } else {
    tcp_read_start(t);
  }
}

static np_ssize tcp_local_addr(const np_bstream *b, uint8_t *out, size_t cap) {
  const tcp_bs *t = (const tcp_bs *)b;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(t->fd, (struct sockaddr *)&ss, &sl) != 0)
    return NP_ENOENT;
  return np_maddr_from_sockaddr_tcp((struct sockaddr *)&ss, out, cap);
}

static void tcp_close(np_bstream *b) {
  tcp_bs *t = (tcp_bs *)b;
  if (t->dead)
    return;
  t->dead = 1;
  tcp_stop(t);
  close(t->fd);
  t->fd = -1;
  if (t->depth == 0)
    tcp_free(t);
}

static const np_bstream_ops tcp_ops = {tcp_write, tcp_shutdown, tcp_pause,
                                       tcp_local_addr, tcp_close};

int np_bstream_tcp_new(np_bstream **pb, np_loop *loop, int fd, int connecting,
                       uint64_t connect_timeout_ms, uint8_t *rxbuf,
                       size_t rxcap) {
  tcp_bs *t;
  if ((t = calloc(1, sizeof(*t))) == NULL) {
    close(fd);
    return NP_ENOMEM;
  }
  t->pub.ops = &tcp_ops;
  t->loop = loop;
  t->ev = np_loop_ev(loop);
  t->fd = fd;
  t->rxbuf = rxbuf;
  t->rxcap = rxcap;
  t->connecting = !!connecting;
  np_defer_init(&t->redo, tcp_redo_cb, t);
  ev_io_init(&t->rio, tcp_read_cb, fd, EV_READ);
  ev_io_init(&t->wio, tcp_write_cb, fd, EV_WRITE);
  ev_timer_init(&t->ctimer, tcp_ctimer_cb, (double)connect_timeout_ms / 1e3,
                0.);
  if (t->connecting) {
    ev_io_start(t->ev, &t->wio);
    if (connect_timeout_ms > 0)
      ev_timer_start(t->ev, &t->ctimer);
  } else {
    ev_io_start(t->ev, &t->rio);
  }
  *pb = &t->pub;
  return 0;
}

/* ---- in-memory pair ------------------------------------------------------ */

typedef struct mem_bs mem_bs;
struct mem_bs {
  np_bstream pub;
  np_loop *loop;
  mem_bs *peer; /* NULL once the peer closed */
  np_defer work;
  size_t cap;
  uint8_t *rx; /* bytes the peer wrote: rx[roff .. roff+rlen) */
  size_t roff, rlen, rcap;
  int rx_eof;   /* the peer ended its direction after rx */
  int eof_done; /* on_eof delivered */
  int paused, shut, want_write, wake, dead, depth;
  const int *gone; /* np_bstream_pair_set_gone: our host vanished */
  int void_peer;   /* the peer vanished and closed: writes fall into a void */
};

/* A vanished end neither sends nor receives, and its peer hears nothing. */
static int mem_gone(const mem_bs *m) { return m->gone != NULL && *m->gone; }

static void mem_free(mem_bs *m) {
  free(m->rx);
  free(m);
}

static void mem_work_cb(void *arg) {
  mem_bs *m = arg;
  if (m->dead)
    return;
  if (mem_gone(m)) { /* what arrived is lost; no event runs any more */
    free(m->rx);
    m->rx = NULL;
    m->roff = m->rlen = m->rcap = 0;
    return;
  }
  CALL_BEGIN(m);
  if (!m->paused && m->rlen > 0) {
    size_t k =
        m->pub.cbs->on_data(&m->pub, m->rx + m->roff, m->rlen, m->pub.ud);
    if (m->dead)
      goto out;
    if (k > m->rlen)
      k = m->rlen;
    m->roff += k;
    m->rlen -= k;
    if (m->rlen == 0) { /* idle connections hold no buffer */
      free(m->rx);
      m->rx = NULL;
      m->roff = m->rcap = 0;
    } else {
      m->paused = 1;
    }
    if (k > 0 && m->peer != NULL && m->peer->want_write) {
      m->peer->wake = 1;
      np_loop_post(m->loop, &m->peer->work);
    }
  }
  if (!m->paused && m->rlen == 0 && m->rx_eof && !m->eof_done) {
    m->eof_done = 1;
    if (m->pub.cbs->on_eof)
      m->pub.cbs->on_eof(&m->pub, m->pub.ud);
    if (m->dead)
      goto out;
  }
  if (m->wake) {
    m->wake = 0;
    if (m->want_write) {
      m->want_write = 0;
      if (m->pub.cbs->on_writable)
        m->pub.cbs->on_writable(&m->pub, m->pub.ud);
    }
  }
out:
  CALL_END(m, mem_free);
}

static np_ssize mem_write(np_bstream *b, const uint8_t *data, size_t len) {
  mem_bs *m = (mem_bs *)b, *p = m->peer;
  size_t room, k;
  if (m->dead || m->shut)
    return NP_ECLOSED;
  if ((p == NULL && m->void_peer) || mem_gone(m) || (p != NULL && mem_gone(p)))
    return (np_ssize)len; /* taken, never delivered */
  if (p == NULL)
    return NP_ECLOSED;
  if (len == 0)
    return 0;
  room = m->cap > p->rlen ? m->cap - p->rlen : 0;
  k = len < room ? len : room;
  if (k > 0) {
    if (p->roff + p->rlen + k > p->rcap) {
      if (p->roff > 0) {
        memmove(p->rx, p->rx + p->roff, p->rlen);
        p->roff = 0;
      }
      if (p->rlen + k > p->rcap) {
        size_t nc = p->rcap ? p->rcap : 4096;
        uint8_t *nb;
        while (nc < p->rlen + k)
          nc *= 2;
        if (nc > m->cap)
          nc = m->cap;
        if ((nb = realloc(p->rx, nc)) == NULL)
          return 0; /* try again later, as if full */
        p->rx = nb;
        p->rcap = nc;
      }
    }
    memcpy(p->rx + p->roff + p->rlen, data, k);
    p->rlen += k;
    np_loop_post(m->loop, &p->work);
  }
  if (k < len)
    m->want_write = 1;
  return (np_ssize)k;
}

static int mem_shutdown(np_bstream *b) {
  mem_bs *m = (mem_bs *)b;
  if (m->dead || m->shut)
    return NP_ECLOSED;
  m->shut = 1;
  if (m->peer != NULL && !mem_gone(m) && !mem_gone(m->peer)) {
    m->peer->rx_eof = 1;
    np_loop_post(m->loop, &m->peer->work);
  }
  return 0;
}

static void mem_pause(np_bstream *b, int paused) {
  mem_bs *m = (mem_bs *)b;
  if (m->dead)
    return;
  m->paused = !!paused;
  if (!m->paused && (m->rlen > 0 || (m->rx_eof && !m->eof_done)))
    np_loop_post(m->loop, &m->work);
}

static np_ssize mem_local_addr(const np_bstream *b, uint8_t *out, size_t cap) {
  (void)b, (void)out, (void)cap;
  return NP_ENOENT;
}

static void mem_close(np_bstream *b) {
  mem_bs *m = (mem_bs *)b, *p = m->peer;
  if (m->dead)
    return;
  m->dead = 1;
  np_loop_cancel(m->loop, &m->work);
  if (p != NULL && mem_gone(m)) { /* no FIN, no reset: silence */
    p->peer = NULL;
    p->void_peer = 1;
  } else if (p != NULL) {
    p->peer = NULL;
    p->rx_eof = 1;
    p->wake = 1; /* a blocked writer learns of it by writing */
    np_loop_post(m->loop, &p->work);
  }
  m->peer = NULL;
  if (m->depth == 0)
    mem_free(m);
}

static const np_bstream_ops mem_ops = {mem_write, mem_shutdown, mem_pause,
                                       mem_local_addr, mem_close};

void np_bstream_pair_set_gone(np_bstream *b, const int *gone) {
  if (b != NULL && b->ops == &mem_ops)
    ((mem_bs *)b)->gone = gone;
}

int np_bstream_pair_new(np_bstream **pa, np_bstream **pb, np_loop *loop,
                        size_t cap) {
  mem_bs *m[2];
  if (cap == 0)
    return NP_EINVAL;
  m[0] = calloc(1, sizeof(*m[0]));
  m[1] = calloc(1, sizeof(*m[1]));
  if (m[0] == NULL || m[1] == NULL) {
    free(m[0]);
    free(m[1]);
    return NP_ENOMEM;
  }
  for (int i = 0; i < 2; i++) {
    m[i]->pub.ops = &mem_ops;
    m[i]->loop = loop;
    m[i]->cap = cap;
    m[i]->peer = m[1 - i];
    np_defer_init(&m[i]->work, mem_work_cb, m[i]);
  }
  *pa = &m[0]->pub;
  *pb = &m[1]->pub;
  return 0;
}
