/* QUIC v1 over UDP on libev with ngtcp2. Structure:
 *   - sockets (qsock): one per listen address, plus dial-only ones; recvmmsg
 *     into preallocated buffers (UDP GRO when available), sendmmsg of
 *     bursts (UDP GSO when available); no heap work per packet;
 *   - connections (np_qconn) found by destination CID in a keyed hash;
 *     one ev_timer each, armed at ngtcp2_conn_get_expiry (loss recovery,
 *     idle, keep-alive and pacing all come through it);
 *   - streams (np_qstream) own their unacknowledged bytes (ngtcp2 keeps
 *     only pointers) in a chunk list.
 * Work triggered inside ngtcp2 callbacks or by the upper layer is queued
 * (connection marked dirty) and done by flush_dirty(): from an ev_prepare
 * watcher before the loop sleeps, or at the end of our own I/O and timer
 * callbacks. Connections are freed on a later loop turn (np_loop_post), so
 * no callback ever runs on freed memory. */
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "np_quic.h"
#include "np_crypto.h"
#include "np_list.h"
#include "np_log.h"
#include "np_multiaddr.h"

#define SUB "quic"
#define SCID_LEN 8         /* our CIDs; one length demuxes short headers */
#define CLIENT_DCID_LEN 16 /* random initial DCID of our dials (>= 8) */
#define RX_BATCH 16        /* datagrams per recvmmsg */
#define RX_BUF 65536       /* one GRO-coalesced read fits */
#define RX_ROUNDS 4        /* recvmmsg calls per readiness, then yield */
#define TX_PKT_MAX NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE
#define TX_MAX_PKTS 64
#define TX_BUF (TX_MAX_PKTS * TX_PKT_MAX)
#define GSO_MAX_BYTES 65000 /* below the 65507-byte UDP payload limit */
#define GSO_MAX_SEGS 64
#define CTL_BUF 128
#define MAX_VECS 16
#define CHUNK_MIN 4096
#define SOCK_BUFSZ (4 << 20)
#define STREAM_WINDOW (512 * 1024) /* initial, auto-tuned by ngtcp2 */
#define CONN_WINDOW (1536 * 1024)
#define ALERT_BAD_CERTIFICATE 42
#define ALERT_NO_APP_PROTOCOL 120

enum { ST_HANDSHAKE, ST_UP, ST_CLOSING, ST_DRAINING, ST_DEAD };

/* Pending stream events, handled by conn_flush. */
enum { SE_RESET = 1, SE_PEER_RESET = 2, SE_CLOSED = 4, SE_WRITABLE = 8 };

typedef struct qsock {
  np_list link; /* q->socks */
  np_quic *q;
  int fd;
  int accept;   /* listening socket (else dial-only) */
  np_qconn *owner; /* a socket of its own for one dial: closed with it */
  int wildcard; /* bound to 0.0.0.0 / ::, so replies pick their source */
  int gso, gro;
  int wblocked; /* EAGAIN seen: waiting for EV_WRITE */
  int errq;     /* an ICMP error is queued: read MSG_ERRQUEUE */
  ev_io io;
  np_list waiters; /* connections that want to send when writable */
  struct sockaddr_storage local;
  socklen_t locallen;
  uint8_t maddr[64];
  size_t maddrlen;
} qsock;

typedef struct cid_ent {
  struct cid_ent *next; /* hash chain */
  np_list clink;        /* owner's list */
  np_qconn *c;
  uint8_t len;
  uint8_t b[NGTCP2_MAX_CIDLEN];
} cid_ent;

typedef struct chunk {
  np_list link;
  uint64_t off; /* stream offset of data[0] */
  size_t len, cap;
  uint8_t data[];
} chunk;

struct np_qstream {
  np_list link;  /* c->streams */
  np_list slink; /* c->sendq: has bytes or FIN to send */
  np_list elink; /* c->evq: has SE_* events */
  np_qconn *c;
  int64_t id;
  void *ud;
  np_list chunks;
  chunk *cursor;             /* first chunk with unsent bytes, or NULL */
  uint64_t acked, sent, end; /* stream offsets: acked <= sent <= end */
  uint64_t reset_code;
  unsigned ev;
  int close_err; /* for SE_CLOSED */
  unsigned remote : 1, announced : 1, fin_req : 1, fin_sent : 1, fc_blocked : 1,
      want_writable : 1, write_shut : 1, reset_req : 1, app_done : 1,
      ng_closed : 1, paused : 1;
  uint64_t uncredited; /* delivered while paused: stream window withheld */
};

struct np_qconn {
  np_list link;  /* q->conns, then q->dead */
  np_list dlink; /* q->dirty */
  np_list wlink; /* s->waiters */
  np_quic *q;
  qsock *s;
  int ending; /* counted in q->nending */
  ngtcp2_conn *conn;
  ngtcp2_crypto_conn_ref cref;
  np_tls_conn *tls;
  ev_timer timer;
  uint32_t id; /* for log lines */
  int state;
  int inbound;
  int app_known; /* the upper layer has the handle (dial, or conn_up) */
  int up_done, down_done, buried;
  int close_req;
  uint64_t close_code;
  int err;    /* conn_down reason */
  int cb_err; /* why one of our ngtcp2 callbacks failed */
  int check_writable;
  int want_credit; /* an open failed with NP_ELIMIT */
  int credit;      /* ... and since then a slot may have opened */
  np_peerid peer;
  void *ud;
  np_list cids;
  np_list streams, sendq, evq;
  size_t nlocal;   /* streams we opened and still hold */
  size_t buffered; /* unacknowledged bytes over all streams */
  int has_pktinfo; /* destination address learnt from received packets */
  union {
    struct in_pktinfo v4;
    struct in6_pktinfo v6;
  } pktinfo;
  uint8_t *close_pkt; /* CONNECTION_CLOSE, resent in the closing period */
  size_t close_len;
  uint32_t close_rx;
};


typedef union ctlbuf {
  struct cmsghdr align;
  uint8_t b[CTL_BUF];
} ctlbuf;

struct np_quic {
  np_loop *loop;
  struct ev_loop *ev;
  np_tls *tls;
  np_quic_config cfg;
  np_quic_cbs cbs;
  void *ud;
  np_list socks, conns, dead, dirty;
  size_t nconns;
  np_ratelimit hs_fail_rl; /* inbound handshake-failed lines */
  np_ratelimit conn_err_rl, refused_rl;
  size_t nending; /* of nconns, those in their closing or draining period */
  uint32_t next_id;
  int deleting;
  ev_prepare prep;
  ev_idle idle;
  np_defer reap; /* frees the dead connections on the next turn */
  uint8_t reset_secret[32];
  /* destination CID -> connection */
  cid_ent **tab;
  size_t tabsz, tabn;
  uint64_t hk0, hk1;
  /* receive and send batches, allocated once */
  uint8_t *rxbuf;
  struct mmsghdr rxmsg[RX_BATCH];
  struct iovec rxiov[RX_BATCH];
  struct sockaddr_storage rxname[RX_BATCH];
  ctlbuf rxctl[RX_BATCH];
  uint8_t *txbuf;
  size_t txlen[TX_MAX_PKTS];
  struct mmsghdr txmsg[TX_MAX_PKTS];
  struct iovec txiov[TX_MAX_PKTS];
  ctlbuf txctl[TX_MAX_PKTS];
};

static void conn_flush(np_qconn *c);
static void conn_mark(np_qconn *c);
static void flush_dirty(np_quic *q);

static ngtcp2_tstamp now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

/* ---- CID table ---------------------------------------------------------- */

/* SipHash-2-4: a client picks its first DCID, so the key must be secret. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                  \
    v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                     \
    v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                     \
    v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                  \
  } while (0)

static uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *m, size_t n) {
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  uint64_t w, last = (uint64_t)n << 56;
  size_t i, end = n & ~(size_t)7;
  for (i = 0; i < end; i += 8) {
    w = 0;
    for (int j = 0; j < 8; j++)
      w |= (uint64_t)m[i + (size_t)j] << (8 * j);
    v3 ^= w;
    SIPROUND;
    SIPROUND;
    v0 ^= w;
  }
  for (i = 0; i < (n & 7); i++)
    last |= (uint64_t)m[end + i] << (8 * i);
  v3 ^= last;
  SIPROUND;
  SIPROUND;
  v0 ^= last;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static size_t cid_slot(const np_quic *q, const uint8_t *b, size_t len) {
  return (size_t)(siphash(q->hk0, q->hk1, b, len) & (q->tabsz - 1));
}

static cid_ent *cid_find(const np_quic *q, const uint8_t *b, size_t len) {
  cid_ent *e;
  if (len > NGTCP2_MAX_CIDLEN)
    return NULL;
  for (e = q->tab[cid_slot(q, b, len)]; e != NULL; e = e->next)
    if (e->len == len && memcmp(e->b, b, len) == 0)
      return e;
  return NULL;
}

static int cid_grow(np_quic *q) {
  size_t nsz = q->tabsz * 2;
  cid_ent **nt = calloc(nsz, sizeof(*nt)), **old = q->tab;
  size_t osz = q->tabsz;
  if (nt == NULL)
    return NP_ENOMEM;
  q->tab = nt;
  q->tabsz = nsz;
  for (size_t i = 0; i < osz; i++) {
    cid_ent *e = old[i], *next;
    for (; e != NULL; e = next) {
      size_t k = cid_slot(q, e->b, e->len);
      next = e->next;
      e->next = nt[k];
      nt[k] = e;
    }
  }
  free(old);
  return 0;
}

static int cid_add(np_qconn *c, const uint8_t *b, size_t len) {
  np_quic *q = c->q;
  cid_ent *e;
  size_t k;
  if (len > NGTCP2_MAX_CIDLEN)
    return NP_EINVAL;
  if (cid_find(q, b, len) != NULL)
    return NP_EEXIST;
  if (q->tabn >= q->tabsz && cid_grow(q) != 0)
    return NP_ENOMEM;
  if ((e = calloc(1, sizeof(*e))) == NULL)
    return NP_ENOMEM;
  e->c = c;
  e->len = (uint8_t)len;
  memcpy(e->b, b, len);
  k = cid_slot(q, b, len);
  e->next = q->tab[k];
  q->tab[k] = e;
  q->tabn++;
  np_list_insert_tail(&c->cids, &e->clink);
  return 0;
}

static void cid_del(np_quic *q, cid_ent *e) {
  cid_ent **pp = &q->tab[cid_slot(q, e->b, e->len)];
  while (*pp != e)
    pp = &(*pp)->next;
  *pp = e->next;
  q->tabn--;
  np_list_remove(&e->clink);
  free(e);
}

static void cid_del_all(np_qconn *c) {
  while (!np_list_empty(&c->cids))
    cid_del(c->q, np_list_entry(c->cids.next, cid_ent, clink));
}

/* Fresh random CID of |len| bytes, unused in the table. */
static int cid_make(np_quic *q, ngtcp2_cid *cid, size_t len) {
  for (int i = 0; i < 8; i++) {
    if (np_crypto_random(cid->data, len) != 0)
      return NP_ECRYPTO;
    cid->datalen = len;
    if (cid_find(q, cid->data, len) == NULL)
      return 0;
  }
  return NP_EEXIST;
}

/* ---- error mapping ------------------------------------------------------ */

static int map_liberr(int rv) {
  switch (rv) {
  case NGTCP2_ERR_NOMEM:
    return NP_ENOMEM;
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
  case NGTCP2_ERR_IDLE_CLOSE:
    return NP_ETIMEDOUT;
  case NGTCP2_ERR_CRYPTO:
    return NP_ECRYPTO;
  case NGTCP2_ERR_CLOSING:
  case NGTCP2_ERR_DRAINING:
    return NP_ECLOSED;
  case NGTCP2_ERR_NO_VIABLE_PATH:
    return NP_EUNREACH;
  default:
    return NP_EPROTO;
  }
}

/* conn_down reason for a CONNECTION_CLOSE from the peer. */
static int remote_err(np_qconn *c) {
  const ngtcp2_ccerr *cc = ngtcp2_conn_get_ccerr(c->conn);
  if (cc->type == NGTCP2_CCERR_TYPE_TRANSPORT) {
    if (cc->error_code == NGTCP2_NO_ERROR)
      return NP_ECLOSED;
    if ((cc->error_code & ~(uint64_t)0xff) == NGTCP2_CRYPTO_ERROR)
      return NP_ECRYPTO;
    return NP_EPROTO;
  }
  return NP_ECLOSED;
}

static const char *dir_name(const np_qconn *c) {
  return c->inbound ? "in" : "out";
}

/* Text of the connection's current remote address, for logs. */
static const char *remote_text(const np_qconn *c, char *buf, size_t cap) {
  uint8_t bin[64];
  const ngtcp2_path *p = ngtcp2_conn_get_path(c->conn);
  np_ssize n = np_maddr_from_sockaddr_quic(
      (const struct sockaddr *)p->remote.addr, bin, sizeof(bin));
  if (n < 0 || np_maddr_to_string(bin, (size_t)n, buf, cap) < 0)
    snprintf(buf, cap, "?");
  return buf;
}

/* ---- sending ------------------------------------------------------------ */

/* Control messages for one datagram (or GSO train) of |c| on |s|: the
 * source address learnt from the peer's packets (wildcard sockets on
 * multi-homed hosts), and the GSO segment size. */
static size_t build_ctl(const qsock *s, const np_qconn *c, ctlbuf *ctl,
                        uint16_t gso) {
  size_t used = 0;
  struct cmsghdr *cm;
  memset(ctl, 0, sizeof(*ctl));
  if (s->wildcard && c != NULL && c->has_pktinfo) {
    cm = (struct cmsghdr *)(void *)ctl->b;
    if (s->local.ss_family == AF_INET) {
      struct in_pktinfo pi;
      memset(&pi, 0, sizeof(pi));
      pi.ipi_spec_dst = c->pktinfo.v4.ipi_addr;
      cm->cmsg_level = IPPROTO_IP;
      cm->cmsg_type = IP_PKTINFO;
      cm->cmsg_len = CMSG_LEN(sizeof(pi));
      memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
      used += CMSG_SPACE(sizeof(pi));
    } else {
      cm->cmsg_level = IPPROTO_IPV6;
      cm->cmsg_type = IPV6_PKTINFO;
      cm->cmsg_len = CMSG_LEN(sizeof(c->pktinfo.v6));
      memcpy(CMSG_DATA(cm), &c->pktinfo.v6, sizeof(c->pktinfo.v6));
      used += CMSG_SPACE(sizeof(c->pktinfo.v6));
    }
  }
  if (gso != 0) {
    cm = (struct cmsghdr *)(void *)(ctl->b + used);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(gso));
    memcpy(CMSG_DATA(cm), &gso, sizeof(gso));
    used += CMSG_SPACE(sizeof(gso));
  }
  return used;
}

static void sock_block(qsock *s) {
  if (s->wblocked)
    return;
  s->wblocked = 1;
  ev_io_stop(s->q->ev, &s->io);
  ev_io_set(&s->io, s->fd, EV_READ | EV_WRITE);
  ev_io_start(s->q->ev, &s->io);
}

static void sock_unblock(qsock *s) {
  s->wblocked = 0;
  ev_io_stop(s->q->ev, &s->io);
  ev_io_set(&s->io, s->fd, EV_READ);
  ev_io_start(s->q->ev, &s->io);
  while (!np_list_empty(&s->waiters)) {
    np_qconn *c = np_list_entry(s->waiters.next, np_qconn, wlink);
    np_list_remove(&c->wlink);
    conn_mark(c);
  }
}

/* One datagram, no GSO: Version Negotiation and CONNECTION_CLOSE resends. */
static void sock_send_one(qsock *s, const np_qconn *c,
                          const struct sockaddr *to, socklen_t tolen,
                          const uint8_t *data, size_t len) {
  ctlbuf ctl;
  struct iovec iov = {(void *)(uintptr_t)data, len};
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_name = (void *)(uintptr_t)to;
  m.msg_namelen = tolen;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_controllen = build_ctl(s, c, &ctl, 0);
  m.msg_control = m.msg_controllen ? ctl.b : NULL;
  while (sendmsg(s->fd, &m, 0) < 0 && errno == EINTR)
    ;
}

/* Sends q->txbuf's |npkts| packets of |c| to |to|, grouping runs of equal
 * size into GSO trains (a shorter packet ends a train; PMTU probes, larger
 * than |pathmax|, go alone). On EAGAIN the rest is dropped, as a full
 * socket buffer would; QUIC loss recovery resends it. */
static void send_burst(np_qconn *c, const struct sockaddr *to, socklen_t tolen,
                       size_t npkts, size_t pathmax) {
  np_quic *q = c->q;
  qsock *s = c->s;
  size_t i = 0, off = 0, nmsg = 0, sent = 0;
  while (i < npkts) {
    size_t seg = q->txlen[i], total = seg, j = i + 1;
    struct msghdr *m = &q->txmsg[nmsg].msg_hdr;
    if (s->gso && seg <= pathmax) {
      while (j < npkts && q->txlen[j] <= seg && j - i < GSO_MAX_SEGS &&
             total + q->txlen[j] <= GSO_MAX_BYTES) {
        total += q->txlen[j];
        if (q->txlen[j++] < seg)
          break;
      }
    }
    q->txiov[nmsg].iov_base = q->txbuf + off;
    q->txiov[nmsg].iov_len = total;
    memset(m, 0, sizeof(*m));
    m->msg_name = (void *)(uintptr_t)to;
    m->msg_namelen = tolen;
    m->msg_iov = &q->txiov[nmsg];
    m->msg_iovlen = 1;
    m->msg_controllen =
        build_ctl(s, c, &q->txctl[nmsg], j - i > 1 ? (uint16_t)seg : 0);
    m->msg_control = m->msg_controllen ? q->txctl[nmsg].b : NULL;
    off += total;
    i = j;
    nmsg++;
  }
  while (sent < nmsg) {
    int r = sendmmsg(s->fd, q->txmsg + sent, (unsigned)(nmsg - sent), 0);
    if (r > 0) {
      sent += (size_t)r;
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      sock_block(s);
      break;
    }
    if (errno == EIO && s->gso) {
      /* The device cannot segment (no checksum offload): stop using GSO. */
      s->gso = 0;
      np_info(SUB, "gso-disabled addr=%s", "socket");
    } else if (errno == ECONNREFUSED || errno == EHOSTUNREACH ||
               errno == ENETUNREACH) {
      /* An earlier ICMP error surfaced here: read the error queue from the
       * socket callback, not inside this connection's send loop. */
      s->errq = 1;
      ev_feed_event(s->q->ev, &s->io, EV_READ);
    } else {
      np_debug(SUB, "send-failed conn=%08x errno=%d (%s)", c->id, errno,
               strerror(errno));
    }
    sent++; /* drop that datagram; loss recovery copes */
  }
}

/* ---- streams ------------------------------------------------------------ */

static np_qstream *stream_new(np_qconn *c, int64_t id, int remote) {
  np_qstream *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  np_list_init(&s->slink);
  np_list_init(&s->elink);
  np_list_init(&s->chunks);
  s->c = c;
  s->id = id;
  s->remote = remote ? 1 : 0;
  np_list_insert_tail(&c->streams, &s->link);
  if (!remote)
    c->nlocal++;
  return s;
}

static void stream_free(np_qstream *s) {
  np_qconn *c = s->c;
  np_list_remove(&s->link);
  np_list_remove(&s->slink);
  np_list_remove(&s->elink);
  while (!np_list_empty(&s->chunks)) {
    chunk *ch = np_list_entry(s->chunks.next, chunk, link);
    np_list_remove(&ch->link);
    free(ch);
  }
  c->buffered -= (size_t)(s->end - s->acked);
  c->check_writable = 1; /* others may have waited on conn_buffer_max */
  if (!s->remote) {
    c->nlocal--;
    c->credit = c->want_credit;
  }
  free(s);
}

static void stream_event(np_qstream *s, unsigned ev) {
  s->ev |= ev;
  if (np_list_empty(&s->elink))
    np_list_insert_tail(&s->c->evq, &s->elink);
  conn_mark(s->c);
}

static int stream_has_output(const np_qstream *s) {
  return !s->write_shut && !s->reset_req &&
         (s->sent < s->end || (s->fin_req && !s->fin_sent));
}

static void stream_queue(np_qstream *s) {
  if (!s->fc_blocked && stream_has_output(s) && np_list_empty(&s->slink))
    np_list_insert_tail(&s->c->sendq, &s->slink);
}

static size_t stream_space(const np_qstream *s) {
  const np_quic_config *cfg = &s->c->q->cfg;
  size_t held = (size_t)(s->end - s->acked), a, b;
  a = held < cfg->stream_buffer_max ? cfg->stream_buffer_max - held : 0;
  b = s->c->buffered < cfg->conn_buffer_max
          ? cfg->conn_buffer_max - s->c->buffered
          : 0;
  return a < b ? a : b;
}

/* Vectors of unsent bytes from the cursor; sets |*fin| when they reach the
 * end and FIN was asked for. */
static size_t stream_vecs(const np_qstream *s, ngtcp2_vec *v, int *fin) {
  size_t n = 0;
  uint64_t reach = s->sent;
  const np_list *l;
  if (s->cursor != NULL) {
    for (l = &s->cursor->link; l != &s->chunks && n < MAX_VECS; l = l->next) {
      const chunk *ch = np_list_entry(l, chunk, link);
      size_t skip = s->sent > ch->off ? (size_t)(s->sent - ch->off) : 0;
      v[n].base = (uint8_t *)(uintptr_t)ch->data + skip;
      v[n].len = ch->len - skip;
      reach = ch->off + ch->len;
      n++;
    }
  }
  *fin = s->fin_req && !s->fin_sent && reach == s->end;
  return n;
}

static void stream_sent(np_qstream *s, ngtcp2_ssize ndata, int fin) {
  np_qconn *c = s->c;
  if (ndata < 0)
    return;
  s->sent += (uint64_t)ndata;
  while (s->cursor != NULL && s->cursor->off + s->cursor->len <= s->sent) {
    np_list *next = s->cursor->link.next;
    s->cursor = next == &s->chunks ? NULL : np_list_entry(next, chunk, link);
  }
  if (fin && s->sent == s->end)
    s->fin_sent = 1;
  /* Round robin: a stream that still has bytes goes behind the others. */
  np_list_remove(&s->slink);
  if (stream_has_output(s))
    np_list_insert_tail(&c->sendq, &s->slink);
}

static void stream_acked(np_qstream *s, uint64_t upto) {
  np_qconn *c = s->c;
  if (upto <= s->acked)
    return;
  if (upto > s->end)
    upto = s->end;
  c->buffered -= (size_t)(upto - s->acked);
  s->acked = upto;
  while (!np_list_empty(&s->chunks)) {
    chunk *ch = np_list_entry(s->chunks.next, chunk, link);
    if (ch->off + ch->len > s->acked || ch == s->cursor)
      break;
    np_list_remove(&ch->link);
    free(ch);
  }
  c->check_writable = 1;
}

/* ---- ngtcp2 callbacks --------------------------------------------------- */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  np_qconn *c = ref->user_data;
  return c->conn;
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  if (np_crypto_random(dest, len) != 0)
    memset(dest, 0, len); /* padding/greasing only; not key material */
}

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                          size_t cidlen, void *ud) {
  np_qconn *c = ud;
  (void)conn;
  if (cid_make(c->q, cid, cidlen) != 0 ||
      ngtcp2_crypto_generate_stateless_reset_token(
          token, c->q->reset_secret, sizeof(c->q->reset_secret), cid) != 0 ||
      cid_add(c, cid->data, cidlen) != 0) {
    c->cb_err = NP_ENOMEM;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int remove_cid_cb(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud) {
  np_qconn *c = ud;
  cid_ent *e = cid_find(c->q, cid->data, cid->datalen);
  (void)conn;
  if (e != NULL && e->c == c)
    cid_del(c->q, e);
  return 0;
}

/* First conn_up for |c| (once; never after a close was asked). */
static void conn_set_up(np_qconn *c) {
  char peer[NP_PEERID_STRMAX], addr[128];
  np_quic *q = c->q;
  if (c->up_done || c->close_req || c->state != ST_UP)
    return;
  c->up_done = 1;
  c->app_known = 1;
  np_peerid_to_string(&c->peer, peer, sizeof(peer));
  np_debug(SUB, "conn-open conn=%08x peer=%s addr=%s dir=%s", c->id, peer,
          remote_text(c, addr, sizeof(addr)), dir_name(c));
  if (q->cbs.conn_up)
    q->cbs.conn_up(c, q->ud);
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  np_qconn *c = ud;
  int rv = np_tls_conn_finish(c->tls);
  (void)conn;
  if (rv != 0) {
    c->cb_err = rv;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  np_tls_conn_peer(c->tls, &c->peer);
  c->state = ST_UP;
  /* A server has checked the client certificate by now. A client waits for
   * HANDSHAKE_DONE: only then did the server accept our certificate. */
  if (c->inbound)
    conn_set_up(c);
  return 0;
}

static int handshake_confirmed_cb(ngtcp2_conn *conn, void *ud) {
  (void)conn;
  conn_set_up(ud);
  return 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t stream_id, void *ud) {
  np_qconn *c = ud;
  np_quic *q = c->q;
  np_qstream *s;
  if (!ngtcp2_is_bidi_stream(stream_id))
    return 0; /* our transport parameters allow none */
  if ((s = stream_new(c, stream_id, 1)) == NULL) {
    c->cb_err = NP_ENOMEM;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  ngtcp2_conn_set_stream_user_data(conn, stream_id, s);
  conn_set_up(c); /* client: a server's stream implies it accepted us */
  if (!c->up_done || c->close_req) {
    /* The upper layer has not got the connection (or is closing it). */
    s->app_done = 1;
    s->reset_req = 1;
    stream_event(s, SE_RESET);
    return 0;
  }
  s->announced = 1;
  if (q->cbs.stream_open)
    q->cbs.stream_open(s, q->ud);
  return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags,
                               int64_t stream_id, uint64_t offset,
                               const uint8_t *data, size_t datalen, void *ud,
                               void *sud) {
  np_qconn *c = ud;
  np_qstream *s = sud;
  np_quic *q = c->q;
  (void)offset;
  /* Delivered bytes are consumed: credit the windows back right away,
   * except the stream's own while its reader is paused (back-pressure: the
   * sender stops once the stream window is used up). The connection
   * window is credited regardless, so other streams keep flowing. */
  if (s != NULL && s->paused)
    s->uncredited += datalen;
  else
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
  ngtcp2_conn_extend_max_offset(conn, datalen);
  if (s == NULL || s->reset_req || s->app_done || !s->announced ||
      c->close_req || !c->up_done)
    return 0;
  if (q->cbs.stream_data)
    q->cbs.stream_data(s, data, datalen,
                       (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0, q->ud);
  return 0;
}

static int acked_cb(ngtcp2_conn *conn, int64_t stream_id, uint64_t offset,
                    uint64_t datalen, void *ud, void *sud) {
  np_qstream *s = sud;
  (void)conn, (void)stream_id, (void)ud;
  if (s != NULL)
    stream_acked(s, offset + datalen);
  return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                           uint64_t app_error_code, void *ud, void *sud) {
  np_qstream *s = sud;
  (void)ud, (void)app_error_code;
  if (s == NULL)
    return 0;
  /* ngtcp2 forgets the stream (and our bytes) now; give the peer the
   * stream credit back. */
  if (s->remote && ngtcp2_is_bidi_stream(stream_id))
    ngtcp2_conn_extend_max_streams_bidi(conn, 1);
  s->ng_closed = 1;
  np_list_remove(&s->slink);
  if (!(s->ev & (SE_RESET | SE_PEER_RESET)))
    s->close_err =
        (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) ? NP_ECLOSED : 0;
  stream_event(s, SE_CLOSED);
  return 0;
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t stream_id,
                           uint64_t final_size, uint64_t app_error_code,
                           void *ud, void *sud) {
  np_qstream *s = sud;
  (void)conn, (void)stream_id, (void)final_size, (void)app_error_code, (void)ud;
  /* libp2p's Reset is both directions: close ours too (conn_flush). */
  if (s != NULL && !s->app_done && !s->reset_req)
    stream_event(s, SE_PEER_RESET);
  return 0;
}

static int stream_stop_sending_cb(ngtcp2_conn *conn, int64_t stream_id,
                                  uint64_t app_error_code, void *ud,
                                  void *sud) {
  np_qstream *s = sud;
  (void)conn, (void)stream_id, (void)app_error_code, (void)ud;
  /* ngtcp2 answers with RESET_STREAM itself; later writes fail. */
  if (s != NULL) {
    s->write_shut = 1;
    np_list_remove(&s->slink);
  }
  return 0;
}

static int extend_max_stream_data_cb(ngtcp2_conn *conn, int64_t stream_id,
                                     uint64_t max_data, void *ud, void *sud) {
  np_qstream *s = sud;
  (void)conn, (void)stream_id, (void)max_data, (void)ud;
  if (s != NULL && s->fc_blocked) {
    s->fc_blocked = 0;
    stream_queue(s);
    conn_mark(s->c);
  }
  return 0;
}

static int extend_max_local_bidi_cb(ngtcp2_conn *conn, uint64_t max_streams,
                                    void *ud) {
  np_qconn *c = ud;
  (void)conn, (void)max_streams;
  if (c->want_credit) {
    c->credit = 1;
    conn_mark(c);
  }
  return 0;
}

static void fill_callbacks(ngtcp2_callbacks *cb, int server) {
  memset(cb, 0, sizeof(*cb));
  if (server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb->encrypt = ngtcp2_crypto_encrypt_cb;
  cb->decrypt = ngtcp2_crypto_decrypt_cb;
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->update_key = ngtcp2_crypto_update_key_cb;
  cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb->rand = rand_cb;
  cb->get_new_connection_id = get_new_cid_cb;
  cb->remove_connection_id = remove_cid_cb;
  cb->handshake_completed = handshake_completed_cb;
  cb->handshake_confirmed = handshake_confirmed_cb;
  cb->stream_open = stream_open_cb;
  cb->recv_stream_data = recv_stream_data_cb;
  cb->acked_stream_data_offset = acked_cb;
  cb->stream_close = stream_close_cb;
  cb->stream_reset = stream_reset_cb;
  cb->stream_stop_sending = stream_stop_sending_cb;
  cb->extend_max_stream_data = extend_max_stream_data_cb;
  cb->extend_max_local_streams_bidi = extend_max_local_bidi_cb;
}

static void fill_settings(const np_quic *q, ngtcp2_settings *st,
                          ngtcp2_transport_params *p, ngtcp2_tstamp ts) {
  ngtcp2_settings_default(st);
  st->initial_ts = ts;
  st->cc_algo = NGTCP2_CC_ALGO_CUBIC;
  /* Flow-control windows grow (auto-tuning) up to these; they also bound
   * what ngtcp2 buffers out of order for the connection. */
  st->max_window = q->cfg.recv_window_max;
  st->max_stream_window = q->cfg.recv_window_max / 2;
  st->handshake_timeout = q->cfg.handshake_timeout_ms * NGTCP2_MILLISECONDS;
  ngtcp2_transport_params_default(p);
  p->initial_max_stream_data_bidi_local = st->max_stream_window < STREAM_WINDOW
                                              ? st->max_stream_window
                                              : STREAM_WINDOW;
  p->initial_max_stream_data_bidi_remote =
      p->initial_max_stream_data_bidi_local;
  p->initial_max_stream_data_uni = 0;
  p->initial_max_data =
      st->max_window < CONN_WINDOW ? st->max_window : CONN_WINDOW;
  p->initial_max_streams_bidi = q->cfg.max_streams_per_conn;
  p->initial_max_streams_uni = 0;
  p->max_idle_timeout = q->cfg.idle_timeout_ms * NGTCP2_MILLISECONDS;
  p->max_udp_payload_size = RX_BUF - 9; /* 65527, what a read can hold */
  p->active_connection_id_limit = 4;
}

/* ---- connection lifecycle ----------------------------------------------- */

static void conn_timer_cb(struct ev_loop *ev, ev_timer *w, int revents);

static np_qconn *conn_alloc(np_quic *q, qsock *s, int inbound) {
  np_qconn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  np_list_init(&c->dlink);
  np_list_init(&c->wlink);
  np_list_init(&c->cids);
  np_list_init(&c->streams);
  np_list_init(&c->sendq);
  np_list_init(&c->evq);
  c->q = q;
  c->s = s;
  c->inbound = inbound;
  c->id = ++q->next_id;
  c->cref.get_conn = get_conn;
  c->cref.user_data = c;
  ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
  np_list_insert_tail(&q->conns, &c->link);
  q->nconns++;
  return c;
}

/* Stops all routing to |c|: timer, CIDs, socket wait list. */
static void conn_unlink(np_qconn *c) {
  ev_timer_stop(c->q->ev, &c->timer);
  cid_del_all(c);
  np_list_remove(&c->wlink);
}

/* A connection in its closing or draining period no longer serves anyone:
 * it does not count against max_connections, only against a hard cap on
 * objects (it lives about 3 PTO, typically well under a second). */
static int conn_room(const np_quic *q) {
  return q->nconns - q->nending < q->cfg.max_connections &&
         q->nconns < 4 * (size_t)q->cfg.max_connections;
}

static void conn_ending(np_qconn *c) {
  if (!c->ending) {
    c->ending = 1;
    c->q->nending++;
  }
}

static void sock_close(qsock *s);

static void conn_destroy(np_qconn *c) {
  np_quic *q = c->q;
  if (c->ending)
    q->nending--;
  conn_unlink(c);
  np_list_remove(&c->dlink);
  while (!np_list_empty(&c->streams))
    stream_free(np_list_entry(c->streams.next, np_qstream, link));
  /* TLS first: wolfSSL may still reach the ngtcp2_conn through cref. */
  np_tls_conn_del(c->tls);
  if (c->conn)
    ngtcp2_conn_del(c->conn);
  free(c->close_pkt);
  np_list_remove(&c->link);
  q->nconns--;
  if (c->s && c->s->owner == c)
    sock_close(c->s);
  free(c);
}

static void reap_cb(void *arg) {
  np_quic *q = arg;
  while (!np_list_empty(&q->dead))
    conn_destroy(np_list_entry(q->dead.next, np_qconn, link));
}

/* |c| is dead and notified: free it on a later loop turn. */
static void conn_bury(np_qconn *c) {
  np_quic *q = c->q;
  if (c->buried)
    return;
  c->buried = 1;
  conn_unlink(c);
  np_list_remove(&c->link);
  np_list_insert_tail(&q->dead, &c->link);
  if (!q->deleting)
    np_loop_post(q->loop, &q->reap);
}

/* Delivers the final callbacks of |c| (streams first), once. */
static void notify_down(np_qconn *c) {
  np_quic *q = c->q;
  np_list *l, *tmp;
  char peer[NP_PEERID_STRMAX] = "-", addr[128];
  const char *why = c->tls ? np_tls_conn_error(c->tls) : "";
  if (c->down_done)
    return;
  c->down_done = 1;
  np_list_for_each_safe(l, tmp, &c->streams) {
    np_qstream *s = np_list_entry(l, np_qstream, link);
    np_list_remove(&s->slink);
    s->ng_closed = 1; /* ngtcp2 gets no more packets for it */
    if (!s->app_done) {
      s->app_done = 1;
      if (s->announced && c->app_known && q->cbs.stream_close)
        q->cbs.stream_close(s, c->err, q->ud);
    }
  }
  if (c->up_done)
    np_peerid_to_string(&c->peer, peer, sizeof(peer));
  if (c->up_done)
    np_debug(SUB, "conn-close conn=%08x peer=%s dir=%s err=%s", c->id, peer,
            dir_name(c), np_errname(c->err));
  else if (c->inbound && !np_ratelimit_ok(&q->hs_fail_rl, 20, SUB,
                                          "handshake-failed"))
    ; /* unauthenticated senders do not get to flood the log */
  else if (why[0] != '\0')
    np_warn(SUB,
            "handshake-failed conn=%08x addr=%s dir=%s err=%s reason=\"%s\"",
            c->id, remote_text(c, addr, sizeof(addr)), dir_name(c),
            np_errname(c->err), why);
  else
    np_info(SUB, "handshake-failed conn=%08x addr=%s dir=%s err=%s", c->id,
            remote_text(c, addr, sizeof(addr)), dir_name(c),
            np_errname(c->err));
  if (c->app_known && q->cbs.conn_down)
    q->cbs.conn_down(c, c->err, q->ud);
}

static void arm_timer_ns(np_qconn *c, uint64_t delay) {
  ev_timer_stop(c->q->ev, &c->timer);
  ev_timer_set(&c->timer, (double)delay / 1e9, 0.);
  ev_timer_start(c->q->ev, &c->timer);
}

static void conn_arm_timer(np_qconn *c) {
  ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c->conn), now = now_ns();
  if (exp == UINT64_MAX) {
    ev_timer_stop(c->q->ev, &c->timer);
    return;
  }
  arm_timer_ns(c, exp > now ? exp - now : 0);
}

/* The connection is gone from the peer's point of view without any
 * closing period (idle timeout, dropped, deleted). */
static void conn_kill(np_qconn *c, int err) {
  if (c->state == ST_DEAD)
    return;
  if (c->state < ST_CLOSING)
    c->err = err;
  c->state = ST_DEAD;
  conn_unlink(c);
  conn_mark(c);
}

/* Enter the closing period: send CONNECTION_CLOSE, keep answering the
 * peer's packets with it for 3 PTO, then forget the connection. */
static void conn_start_close(np_qconn *c, int err, const ngtcp2_ccerr *cc) {
  np_quic *q = c->q;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  ngtcp2_ssize n;
  if (c->state >= ST_CLOSING)
    return;
  c->err = err;
  c->state = ST_CLOSING;
  conn_ending(c);
  np_list_remove(&c->wlink);
  ngtcp2_path_storage_zero(&ps);
  n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, q->txbuf,
                                         TX_PKT_MAX, cc, now_ns());
  if (n > 0 && (c->close_pkt = malloc((size_t)n)) != NULL) {
    memcpy(c->close_pkt, q->txbuf, (size_t)n);
    c->close_len = (size_t)n;
    sock_send_one(c->s, c, (const struct sockaddr *)ps.path.remote.addr,
                  ps.path.remote.addrlen, c->close_pkt, c->close_len);
  }
  arm_timer_ns(c, 3 * ngtcp2_conn_get_pto(c->conn));
  conn_mark(c);
}

/* The peer closed: stay silent for 3 PTO (draining), then forget. */
static void conn_drain(np_qconn *c, int err) {
  if (c->state >= ST_CLOSING)
    return;
  c->err = err;
  c->state = ST_DRAINING;
  conn_ending(c);
  np_list_remove(&c->wlink);
  arm_timer_ns(c, 3 * ngtcp2_conn_get_pto(c->conn));
  conn_mark(c);
}

/* The TLS side's verdict, or NP_ECRYPTO if it has none. */
static int tls_err(const np_qconn *c) {
  int rv = c->tls ? np_tls_conn_peer(c->tls, NULL) : NP_ENOENT;
  return rv < 0 && rv != NP_ENOENT ? rv : NP_ECRYPTO;
}

/* Handles a failure |rv| returned by ngtcp2 for |c|. */
static void conn_error(np_qconn *c, int rv) {
  ngtcp2_ccerr cc;
  int err;
  ngtcp2_ccerr_default(&cc);
  switch (rv) {
  case NGTCP2_ERR_DRAINING:
    conn_drain(c, remote_err(c));
    return;
  case NGTCP2_ERR_CLOSING:
    conn_kill(c, NP_ECLOSED);
    return;
  case NGTCP2_ERR_DROP_CONN:
  case NGTCP2_ERR_RETRY: /* we never ask for address validation */
    conn_kill(c, NP_EPROTO);
    return;
  case NGTCP2_ERR_IDLE_CLOSE:
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
    conn_kill(c, NP_ETIMEDOUT);
    return;
  case NGTCP2_ERR_CRYPTO:
    err = tls_err(c);
    ngtcp2_ccerr_set_tls_alert(&cc, ngtcp2_conn_get_tls_alert(c->conn), NULL,
                               0);
    break;
  case NGTCP2_ERR_CALLBACK_FAILURE:
    err = c->cb_err ? c->cb_err : NP_EPROTO;
    if (err == NP_ENOPROTO)
      ngtcp2_ccerr_set_tls_alert(&cc, ALERT_NO_APP_PROTOCOL, NULL, 0);
    else if (err == NP_ECRYPTO)
      ngtcp2_ccerr_set_tls_alert(&cc, ALERT_BAD_CERTIFICATE, NULL, 0);
    else
      ngtcp2_ccerr_set_liberr(&cc, rv, NULL, 0);
    break;
  default:
    err = map_liberr(rv);
    ngtcp2_ccerr_set_liberr(&cc, rv, NULL, 0);
    break;
  }
  /* It ends the connection: say why (bounded: a peer can provoke it). */
  if (np_ratelimit_ok(&c->q->conn_err_rl, 20, SUB, "conn-error"))
    np_info(SUB, "conn-error conn=%08x err=%s quic_err=%s", c->id,
            np_errname(err), ngtcp2_strerror(rv));
  conn_start_close(c, err, &cc);
}

/* ---- the write path ----------------------------------------------------- */

static int same_addr(const ngtcp2_addr *a, const struct sockaddr_storage *b,
                     socklen_t blen) {
  return a->addrlen == blen && memcmp(a->addr, b, blen) == 0;
}

/* Writes up to one send quantum of packets for |c| and sends them; pacing
 * then holds the rest until the timer (ngtcp2_conn_get_expiry). */
static int conn_write(np_qconn *c) {
  np_quic *q = c->q;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  ngtcp2_tstamp ts = now_ns();
  size_t maxpl = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
  size_t pathmax = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
  size_t maxpkts, npkts = 0, off = 0;
  struct sockaddr_storage to;
  socklen_t tolen = 0;
  int rv = 0;

  if (c->s->wblocked) {
    if (np_list_empty(&c->wlink))
      np_list_insert_tail(&c->s->waiters, &c->wlink);
    return 0;
  }
  if (maxpl > TX_PKT_MAX)
    maxpl = TX_PKT_MAX;
  maxpkts = ngtcp2_conn_get_send_quantum(c->conn) / maxpl;
  if (maxpkts < 1)
    maxpkts = 1;
  if (maxpkts > TX_MAX_PKTS)
    maxpkts = TX_MAX_PKTS;
  ngtcp2_path_storage_zero(&ps);

  for (;;) {
    np_qstream *s = NULL;
    ngtcp2_vec vec[MAX_VECS];
    size_t nvec = 0;
    int fin = 0;
    int64_t sid = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_NONE;
    ngtcp2_ssize ndata = -1, n;

    if (!np_list_empty(&c->sendq)) {
      s = np_list_entry(c->sendq.next, np_qstream, slink);
      nvec = stream_vecs(s, vec, &fin);
      sid = s->id;
      flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
      if (fin)
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, q->txbuf + off, maxpl,
                                  &ndata, flags, sid, vec, nvec, ts);
    if (n < 0) {
      switch (n) {
      case NGTCP2_ERR_WRITE_MORE:
        stream_sent(s, ndata, fin);
        continue;
      case NGTCP2_ERR_STREAM_DATA_BLOCKED:
        s->fc_blocked = 1;
        np_list_remove(&s->slink);
        continue;
      case NGTCP2_ERR_STREAM_SHUT_WR:
      case NGTCP2_ERR_STREAM_NOT_FOUND:
        s->write_shut = 1;
        np_list_remove(&s->slink);
        continue;
      default:
        rv = (int)n;
        break;
      }
      break;
    }
    if (s != NULL)
      stream_sent(s, ndata, fin);
    if (n == 0)
      break;
    if (npkts > 0 && !same_addr(&ps.path.remote, &to, tolen)) {
      /* Path changed mid-burst (migration/probing): send what we have. */
      send_burst(c, (const struct sockaddr *)&to, tolen, npkts, pathmax);
      memmove(q->txbuf, q->txbuf + off, (size_t)n);
      off = 0;
      npkts = 0;
    }
    if (npkts == 0) {
      tolen = ps.path.remote.addrlen;
      memcpy(&to, ps.path.remote.addr, tolen);
    }
    q->txlen[npkts++] = (size_t)n;
    off += (size_t)n;
    if (npkts == maxpkts || c->s->wblocked)
      break;
  }
  if (npkts > 0)
    send_burst(c, (const struct sockaddr *)&to, tolen, npkts, pathmax);
  ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
  return rv;
}

/* Runs the queued work of |c|: a requested close, stream resets and
 * events, packets to send, timer, final callbacks. Never called from
 * inside ngtcp2. */
static void conn_flush(np_qconn *c) {
  np_quic *q = c->q;
  np_list_remove(&c->dlink);
  if (c->buried)
    return;
  if (c->close_req && c->state < ST_CLOSING) {
    ngtcp2_ccerr cc;
    ngtcp2_ccerr_set_application_error(&cc, c->close_code, NULL, 0);
    conn_start_close(c, NP_ECANCELED, &cc);
  }
  if (c->check_writable) {
    size_t half = q->cfg.stream_buffer_max < q->cfg.conn_buffer_max
                      ? q->cfg.stream_buffer_max / 2
                      : q->cfg.conn_buffer_max / 2;
    np_list *l;
    c->check_writable = 0;
    for (l = c->streams.next; l != &c->streams; l = l->next) {
      np_qstream *s = np_list_entry(l, np_qstream, link);
      if (s->want_writable && !s->app_done && stream_space(s) >= half) {
        s->want_writable = 0;
        stream_event(s, SE_WRITABLE);
      }
    }
  }
  while (!np_list_empty(&c->evq)) {
    np_qstream *s = np_list_entry(c->evq.next, np_qstream, elink);
    unsigned ev = s->ev;
    s->ev = 0;
    np_list_remove(&s->elink);
    if ((ev & (SE_RESET | SE_PEER_RESET)) && !s->ng_closed &&
        c->state < ST_CLOSING) {
      np_list_remove(&s->slink);
      /* May call stream_close_cb, which queues |s| again. */
      ngtcp2_conn_shutdown_stream(c->conn, 0, s->id,
                                  (ev & SE_RESET) ? s->reset_code : 0);
    }
    if (!s->app_done && (ev & (SE_RESET | SE_PEER_RESET | SE_CLOSED))) {
      int err = (ev & SE_RESET)        ? NP_ECANCELED
                : (ev & SE_PEER_RESET) ? NP_ECLOSED
                                       : s->close_err;
      s->app_done = 1;
      if (s->announced && q->cbs.stream_close)
        q->cbs.stream_close(s, err, q->ud);
    } else if ((ev & SE_WRITABLE) && !s->app_done && !s->reset_req &&
               q->cbs.stream_writable) {
      q->cbs.stream_writable(s, q->ud);
    }
    if (s->app_done && s->ng_closed && np_list_empty(&s->elink))
      stream_free(s);
  }
  if (c->credit && c->state < ST_CLOSING && !c->close_req) {
    c->want_credit = c->credit = 0;
    if (q->cbs.conn_stream_credit)
      q->cbs.conn_stream_credit(c, q->ud);
  }
  if (c->state < ST_CLOSING) {
    int rv = conn_write(c);
    if (rv != 0)
      conn_error(c, rv);
  }
  if (c->state < ST_CLOSING) {
    conn_arm_timer(c);
    return;
  }
  notify_down(c);
  if (c->state == ST_DEAD)
    conn_bury(c);
}

static void conn_mark(np_qconn *c) {
  np_quic *q = c->q;
  if (!np_list_empty(&c->dlink) || c->buried)
    return;
  np_list_insert_tail(&q->dirty, &c->dlink);
  if (!q->deleting && !ev_is_active(&q->prep))
    ev_prepare_start(q->ev, &q->prep);
}

static void flush_dirty(np_quic *q) {
  /* Bounded passes: work queued by callbacks of this pass runs in the next;
   * whatever is left keeps an idle watcher so the loop does not sleep. */
  for (int pass = 0; pass < 8 && !np_list_empty(&q->dirty); pass++) {
    np_list batch;
    batch.next = q->dirty.next;
    batch.prev = q->dirty.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    np_list_init(&q->dirty);
    while (!np_list_empty(&batch))
      conn_flush(np_list_entry(batch.next, np_qconn, dlink));
  }
  if (np_list_empty(&q->dirty)) {
    ev_prepare_stop(q->ev, &q->prep);
    ev_idle_stop(q->ev, &q->idle);
  } else if (!ev_is_active(&q->idle)) {
    ev_idle_start(q->ev, &q->idle);
  }
}

static void prep_cb(struct ev_loop *ev, ev_prepare *w, int revents) {
  (void)ev, (void)revents;
  flush_dirty(np_container_of(w, np_quic, prep));
}

static void idle_cb(struct ev_loop *ev, ev_idle *w, int revents) {
  (void)ev, (void)revents;
  flush_dirty(np_container_of(w, np_quic, idle));
}

static void conn_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  np_qconn *c = np_container_of(w, np_qconn, timer);
  np_quic *q = c->q;
  int rv;
  (void)ev, (void)revents;
  if (c->state == ST_CLOSING || c->state == ST_DRAINING) {
    c->state = ST_DEAD; /* closing or draining period over */
    conn_unlink(c);
  } else if (c->state < ST_CLOSING) {
    rv = ngtcp2_conn_handle_expiry(c->conn, now_ns());
    if (rv != 0)
      conn_error(c, rv);
  }
  conn_mark(c);
  flush_dirty(q);
}

/* ---- the read path ------------------------------------------------------ */

static void conn_recv(np_qconn *c, const ngtcp2_path *path, const uint8_t *data,
                      size_t len, ngtcp2_tstamp ts) {
  ngtcp2_pkt_info pi;
  int rv;
  switch (c->state) {
  case ST_DEAD:
  case ST_DRAINING:
    return;
  case ST_CLOSING:
    /* Answer with our CONNECTION_CLOSE on the 1st, 2nd, 4th, 8th... packet. */
    c->close_rx++;
    if (c->close_pkt != NULL && (c->close_rx & (c->close_rx - 1)) == 0)
      sock_send_one(c->s, c, (const struct sockaddr *)path->remote.addr,
                    path->remote.addrlen, c->close_pkt, c->close_len);
    return;
  default:
    break;
  }
  memset(&pi, 0, sizeof(pi));
  rv = ngtcp2_conn_read_pkt(c->conn, path, &pi, data, len, ts);
  if (rv != 0)
    conn_error(c, rv);
  conn_mark(c);
}

static void send_version_negotiation(qsock *s, const struct sockaddr *to,
                                     socklen_t tolen,
                                     const ngtcp2_version_cid *vc) {
  uint8_t buf[256], r = 0;
  const uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
  ngtcp2_ssize n;
  np_crypto_random(&r, 1);
  n = ngtcp2_pkt_write_version_negotiation(buf, sizeof(buf), r, vc->scid,
                                           vc->scidlen, vc->dcid, vc->dcidlen,
                                           sv, NP_ARRAY_LEN(sv));
  if (n > 0)
    sock_send_one(s, NULL, to, tolen, buf, (size_t)n);
}

static np_qconn *accept_conn(qsock *s, const ngtcp2_path *path,
                             const ngtcp2_pkt_hd *hd, ngtcp2_tstamp ts) {
  np_quic *q = s->q;
  np_qconn *c;
  ngtcp2_callbacks cb;
  ngtcp2_settings st;
  ngtcp2_transport_params p;
  ngtcp2_cid scid;
  int rv;
  if ((c = conn_alloc(q, s, 1)) == NULL)
    return NULL;
  fill_callbacks(&cb, 1);
  fill_settings(q, &st, &p, ts);
  p.original_dcid = hd->dcid;
  p.original_dcid_present = 1;
  p.stateless_reset_token_present = 1;
  if (cid_make(q, &scid, SCID_LEN) != 0 ||
      ngtcp2_crypto_generate_stateless_reset_token(
          p.stateless_reset_token, q->reset_secret, sizeof(q->reset_secret),
          &scid) != 0)
    goto fail;
  rv = ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, path, hd->version,
                              &cb, &st, &p, NULL, c);
  if (rv != 0) {
    np_debug(SUB, "accept-failed quic_err=%s", ngtcp2_strerror(rv));
    goto fail;
  }
  if (np_tls_conn_new(&c->tls, q->tls, 1, NULL, &c->cref) != 0)
    goto fail;
  ngtcp2_conn_set_tls_native_handle(c->conn, np_tls_conn_native(c->tls));
  if (q->cfg.keepalive_ms != UINT64_MAX)
    ngtcp2_conn_set_keep_alive_timeout(c->conn, q->cfg.keepalive_ms *
                                                    NGTCP2_MILLISECONDS);
  /* Our CID, and the client's first DCID for its Initial retransmits. */
  if (cid_add(c, scid.data, scid.datalen) != 0 ||
      cid_add(c, hd->dcid.data, hd->dcid.datalen) != 0)
    goto fail;
  return c;
fail:
  conn_destroy(c);
  return NULL;
}

static void learn_pktinfo(np_qconn *c, const struct msghdr *m) {
  struct cmsghdr *cm;
  if (!c->s->wildcard)
    return;
  for (cm = CMSG_FIRSTHDR(m); cm != NULL;
       cm = CMSG_NXTHDR((struct msghdr *)(uintptr_t)m, cm)) {
    if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
      memcpy(&c->pktinfo.v4, CMSG_DATA(cm), sizeof(c->pktinfo.v4));
      c->has_pktinfo = 1;
    } else if (cm->cmsg_level == IPPROTO_IPV6 &&
               cm->cmsg_type == IPV6_PKTINFO) {
      memcpy(&c->pktinfo.v6, CMSG_DATA(cm), sizeof(c->pktinfo.v6));
      c->has_pktinfo = 1;
    }
  }
}

static void on_datagram(qsock *s, const struct msghdr *m, const uint8_t *data,
                        size_t len, ngtcp2_tstamp ts) {
  np_quic *q = s->q;
  ngtcp2_version_cid vc;
  ngtcp2_path path;
  ngtcp2_pkt_hd hd;
  cid_ent *e;
  np_qconn *c;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, SCID_LEN);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (s->accept && !q->deleting)
      send_version_negotiation(s, m->msg_name, m->msg_namelen, &vc);
    return;
  }
  if (rv != 0)
    return; /* junk, e.g. hole-punching packets */
  path.local.addr = (ngtcp2_sockaddr *)&s->local;
  path.local.addrlen = s->locallen;
  path.remote.addr = m->msg_name;
  path.remote.addrlen = m->msg_namelen;
  path.user_data = NULL;
  if ((e = cid_find(q, vc.dcid, vc.dcidlen)) != NULL) {
    learn_pktinfo(e->c, m);
    conn_recv(e->c, &path, data, len, ts);
    return;
  }
  /* Only a client Initial may start a connection. */
  if (!(data[0] & 0x80) || !s->accept || q->deleting ||
      ngtcp2_accept(&hd, data, len) != 0)
    return;
  if (!conn_room(q)) {
    if (np_ratelimit_ok(&q->refused_rl, 5, SUB, "conn-refused"))
      np_info(SUB, "conn-refused reason=max_connections limit=%u",
              q->cfg.max_connections);
    return;
  }
  if ((c = accept_conn(s, &path, &hd, ts)) == NULL)
    return;
  learn_pktinfo(c, m);
  conn_recv(c, &path, data, len, ts);
}

static int same_sockaddr(const struct sockaddr *a, const struct sockaddr *b) {
  if (a->sa_family != b->sa_family)
    return 0;
  if (a->sa_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->sa_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
  }
  return 0;
}

/* ICMP errors (IP_RECVERR): a peer whose port is closed (its process died,
 * the host is up) fails its established connections at once instead of
 * after the idle timeout. A connection still in its handshake ignores them:
 * during a hole punch the peer's NAT (or the peer, not yet listening)
 * refuses our first Initials until its own packets open the way, and the
 * handshake timeout bounds a dial to a port that stays closed. The error
 * queue names the destination of the refused packet. */
static void sock_read_errors(qsock *s) {
  np_quic *q = s->q;
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage dst;
    union {
      struct cmsghdr align;
      uint8_t b[512];
    } ctl;
    uint8_t buf[64];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr m;
    struct cmsghdr *cm;
    int refused = 0;
    np_list *it, *tmp;
    memset(&m, 0, sizeof(m));
    m.msg_name = &dst;
    m.msg_namelen = sizeof(dst);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    m.msg_controllen = sizeof(ctl.b);
    if (recvmsg(s->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
      return;
    for (cm = CMSG_FIRSTHDR(&m); cm != NULL; cm = CMSG_NXTHDR(&m, cm)) {
      struct sock_extended_err ee;
      if (!((cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_RECVERR) ||
            (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
        continue;
      memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
      if ((ee.ee_origin == SO_EE_ORIGIN_ICMP ||
           ee.ee_origin == SO_EE_ORIGIN_ICMP6) &&
          ee.ee_errno == ECONNREFUSED)
        refused = 1;
    }
    if (!refused)
      continue;
    np_list_for_each_safe(it, tmp, &q->conns) {
      np_qconn *c = np_list_entry(it, np_qconn, link);
      const ngtcp2_path *p;
      if (c->s != s || c->state == ST_DEAD || c->conn == NULL)
        continue;
      p = ngtcp2_conn_get_path(c->conn);
      if (same_sockaddr((const struct sockaddr *)p->remote.addr,
                        (const struct sockaddr *)&dst)) {
        if (c->state == ST_HANDSHAKE) {
          np_debug(SUB, "port-unreachable-ignored conn=%08x state=handshake",
                   c->id);
          continue;
        }
        np_info(SUB, "port-unreachable conn=%08x", c->id);
        conn_kill(c, NP_EUNREACH);
      }
    }
  }
}

static void sock_read(qsock *s) {
  np_quic *q = s->q;
  for (int round = 0; round < RX_ROUNDS; round++) {
    int n;
    ngtcp2_tstamp ts;
    for (int i = 0; i < RX_BATCH; i++) {
      struct msghdr *m = &q->rxmsg[i].msg_hdr;
      q->rxiov[i].iov_base = q->rxbuf + (size_t)i * RX_BUF;
      q->rxiov[i].iov_len = RX_BUF;
      memset(m, 0, sizeof(*m));
      m->msg_name = &q->rxname[i];
      m->msg_namelen = sizeof(q->rxname[i]);
      m->msg_iov = &q->rxiov[i];
      m->msg_iovlen = 1;
      m->msg_control = q->rxctl[i].b;
      m->msg_controllen = sizeof(q->rxctl[i].b);
    }
    n = recvmmsg(s->fd, q->rxmsg, RX_BATCH, 0, NULL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == ECONNREFUSED || errno == EHOSTUNREACH ||
          errno == ENETUNREACH) {
        /* Read the datagrams first (a CONNECTION_CLOSE says more than the
         * ICMP error that may have overtaken it), the error queue after. */
        s->errq = 1;
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        np_debug(SUB, "recv-failed errno=%d (%s)", errno, strerror(errno));
      return;
    }
    ts = now_ns();
    for (int i = 0; i < n; i++) {
      struct msghdr *m = &q->rxmsg[i].msg_hdr;
      const uint8_t *data = q->rxiov[i].iov_base;
      size_t len = q->rxmsg[i].msg_len, seg = len;
      struct cmsghdr *cm;
      if (m->msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        continue;
      for (cm = CMSG_FIRSTHDR(m); cm != NULL; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
          int gso = 0;
          memcpy(&gso, CMSG_DATA(cm), sizeof(gso));
          if (gso > 0)
            seg = (size_t)gso;
        }
      }
      /* A GRO read carries equal-sized datagrams (the last may be shorter). */
      for (size_t off = 0; off < len; off += seg)
        on_datagram(s, m, data + off, len - off < seg ? len - off : seg, ts);
    }
    if (n < RX_BATCH)
      return;
  }
}

static void sock_cb(struct ev_loop *ev, ev_io *w, int revents) {
  qsock *s = np_container_of(w, qsock, io);
  (void)ev;
  if (revents & EV_WRITE)
    sock_unblock(s);
  if (revents & EV_READ)
    sock_read(s);
  if (s->errq) {
    s->errq = 0;
    sock_read_errors(s);
  }
  flush_dirty(s->q);
}

/* ---- sockets ------------------------------------------------------------ */

static void setopt(int fd, int level, int name, int val) {
  (void)setsockopt(fd, level, name, &val, sizeof(val));
}

static int sock_open(np_quic *q, const struct sockaddr *sa, socklen_t salen,
                     int accept, qsock **ps) {
  qsock *s;
  int fd, one = 1, zero = 0, e;
  char text[128];
  np_ssize n;
  fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
              IPPROTO_UDP);
  if (fd < 0) {
    np_warn(SUB, "socket-failed errno=%d (%s)", errno, strerror(errno));
    return NP_ESYS;
  }
  if ((s = calloc(1, sizeof(*s))) == NULL) {
    close(fd);
    return NP_ENOMEM;
  }
  s->q = q;
  s->fd = fd;
  s->accept = accept;
  s->wildcard = np_sockaddr_is_wildcard(sa);
  np_list_init(&s->waiters);
  if (sa->sa_family == AF_INET6) {
    setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1); /* /ip4 is its own address */
    setopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE);
    setopt(fd, IPPROTO_IPV6, IPV6_RECVERR, 1);
    if (s->wildcard)
      setopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  } else {
    /* DF set, kernel PMTU ignored: QUIC probes the path MTU itself. */
    setopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE);
    setopt(fd, IPPROTO_IP, IP_RECVERR, 1);
    if (s->wildcard)
      setopt(fd, IPPROTO_IP, IP_PKTINFO, 1);
  }
  setopt(fd, SOL_SOCKET, SO_RCVBUF, SOCK_BUFSZ);
  setopt(fd, SOL_SOCKET, SO_SNDBUF, SOCK_BUFSZ);
  s->gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
  s->gso = setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof(zero)) == 0;
  if (bind(fd, sa, salen) != 0) {
    e = errno;
    n = np_maddr_from_sockaddr_quic(sa, s->maddr, sizeof(s->maddr));
    if (n < 0 ||
        np_maddr_to_string(s->maddr, (size_t)n, text, sizeof(text)) < 0)
      snprintf(text, sizeof(text), "?");
    np_warn(SUB, "bind-failed addr=%s errno=%d (%s)", text, e, strerror(e));
    close(fd);
    free(s);
    return NP_ESYS;
  }
  s->locallen = sizeof(s->local);
  if (getsockname(fd, (struct sockaddr *)&s->local, &s->locallen) != 0 ||
      (n = np_maddr_from_sockaddr_quic((struct sockaddr *)&s->local, s->maddr,
                                       sizeof(s->maddr))) < 0) {
    np_warn(SUB, "getsockname-failed errno=%d (%s)", errno, strerror(errno));
    close(fd);
    free(s);
    return NP_ESYS;
  }
  s->maddrlen = (size_t)n;
  ev_io_init(&s->io, sock_cb, fd, EV_READ);
  ev_io_start(q->ev, &s->io);
  np_list_insert_tail(&q->socks, &s->link);
  *ps = s;
  return 0;
}

static void sock_close(qsock *s) {
  ev_io_stop(s->q->ev, &s->io);
  close(s->fd);
  np_list_remove(&s->link);
  free(s);
}

/* The socket a dial to |to| leaves from: a wildcard-bound one of the same
 * family, else one whose scope (loopback or not) fits, else a new unbound
 * dial-only socket. */
static int pick_sock(np_quic *q, const struct sockaddr *to, qsock **ps) {
  qsock *best = NULL;
  np_list *l;
  struct sockaddr_storage any;
  socklen_t anylen;
  for (l = q->socks.next; l != &q->socks; l = l->next) {
    qsock *s = np_list_entry(l, qsock, link);
    int fit = np_sockaddr_source_fit((const struct sockaddr *)&s->local, to);
    if (fit == 2) {
      *ps = s;
      return 0;
    }
    if (best == NULL && fit == 1)
      best = s;
  }
  if (best != NULL) {
    *ps = best;
    return 0;
  }
  memset(&any, 0, sizeof(any));
  any.ss_family = to->sa_family;
  anylen = to->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                    : sizeof(struct sockaddr_in6);
  return sock_open(q, (struct sockaddr *)&any, anylen, 0, ps);
}

/* ---- public API --------------------------------------------------------- */

void np_quic_config_default(np_quic_config *cfg) {
  cfg->max_connections = 512;
  cfg->max_streams_per_conn = 256;
  cfg->idle_timeout_ms = 30000;
  cfg->handshake_timeout_ms = 10000;
  cfg->keepalive_ms = 15000;
  cfg->stream_buffer_max = 1 << 20;
  cfg->conn_buffer_max = 16 << 20;
  cfg->recv_window_max = 16 << 20;
}

int np_quic_new(np_quic **pq, np_loop *loop, np_tls *tls,
                const np_quic_config *cfg, const np_quic_cbs *cbs, void *ud) {
  np_quic *q;
  uint8_t key[16];
  if (pq == NULL || loop == NULL || tls == NULL)
    return NP_EINVAL;
  if ((q = calloc(1, sizeof(*q))) == NULL)
    return NP_ENOMEM;
  np_quic_config_default(&q->cfg);
  if (cfg != NULL) {
    /* Zero fields keep their defaults. */
#define TAKE(f) (q->cfg.f = cfg->f ? cfg->f : q->cfg.f)
    TAKE(max_connections);
    TAKE(max_streams_per_conn);
    TAKE(idle_timeout_ms);
    TAKE(handshake_timeout_ms);
    TAKE(keepalive_ms);
    TAKE(stream_buffer_max);
    TAKE(conn_buffer_max);
    TAKE(recv_window_max);
#undef TAKE
  }
  if (cbs != NULL)
    q->cbs = *cbs;
  q->loop = loop;
  np_defer_init(&q->reap, reap_cb, q);
  q->ev = np_loop_ev(loop);
  q->tls = tls;
  q->ud = ud;
  np_list_init(&q->socks);
  np_list_init(&q->conns);
  np_list_init(&q->dead);
  np_list_init(&q->dirty);
  ev_prepare_init(&q->prep, prep_cb);
  ev_idle_init(&q->idle, idle_cb);
  q->tabsz = 64;
  q->tab = calloc(q->tabsz, sizeof(*q->tab));
  q->rxbuf = malloc((size_t)RX_BATCH * RX_BUF);
  q->txbuf = malloc(TX_BUF);
  if (q->tab == NULL || q->rxbuf == NULL || q->txbuf == NULL) {
    np_quic_del(q);
    return NP_ENOMEM;
  }
  if (np_crypto_random(q->reset_secret, sizeof(q->reset_secret)) != 0 ||
      np_crypto_random(key, sizeof(key)) != 0) {
    np_quic_del(q);
    return NP_ECRYPTO;
  }
  memcpy(&q->hk0, key, 8);
  memcpy(&q->hk1, key + 8, 8);
  *pq = q;
  return 0;
}

void np_quic_del(np_quic *q) {
  np_list *l, *tmp;
  if (q == NULL)
    return;
  q->deleting = 1;
  ev_prepare_stop(q->ev, &q->prep);
  ev_idle_stop(q->ev, &q->idle);
  np_list_for_each_safe(l, tmp, &q->conns) {
    np_qconn *c = np_list_entry(l, np_qconn, link);
    if (c->state < ST_CLOSING) {
      ngtcp2_ccerr cc;
      ngtcp2_ccerr_set_application_error(&cc, 0, NULL, 0);
      conn_start_close(c, NP_ECANCELED, &cc);
    }
    c->state = ST_DEAD;
    notify_down(c);
  }
  while (!np_list_empty(&q->conns))
    conn_destroy(np_list_entry(q->conns.next, np_qconn, link));
  while (!np_list_empty(&q->dead))
    conn_destroy(np_list_entry(q->dead.next, np_qconn, link));
  np_loop_cancel(q->loop, &q->reap);
  while (!np_list_empty(&q->socks))
    sock_close(np_list_entry(q->socks.next, qsock, link));
  free(q->tab);
  free(q->rxbuf);
  free(q->txbuf);
  free(q);
}

int np_quic_listen(np_quic *q, const uint8_t *maddr, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  qsock *s;
  char text[128];
  int rv;
  if (q->deleting)
    return NP_ECANCELED;
  if ((rv = np_maddr_to_sockaddr(maddr, len, &ss, &sl)) != 0)
    return rv;
  if ((rv = sock_open(q, (struct sockaddr *)&ss, sl, 1, &s)) != 0)
    return rv;
  if (np_maddr_to_string(s->maddr, s->maddrlen, text, sizeof(text)) < 0)
    snprintf(text, sizeof(text), "?");
  np_info(SUB, "listen addr=%s gso=%d gro=%d", text, s->gso, s->gro);
  return 0;
}

size_t np_quic_listen_count(const np_quic *q) {
  size_t n = 0;
  for (const np_list *l = q->socks.next; l != &q->socks; l = l->next)
    n += np_list_entry(l, qsock, link)->accept ? 1 : 0;
  return n;
}

np_ssize np_quic_listen_addr(const np_quic *q, size_t i, uint8_t *out,
                             size_t cap) {
  for (const np_list *l = q->socks.next; l != &q->socks; l = l->next) {
    const qsock *s = np_list_entry(l, qsock, link);
    if (!s->accept || i-- > 0)
      continue;
    if (s->maddrlen > cap)
      return NP_ELIMIT;
    memcpy(out, s->maddr, s->maddrlen);
    return (np_ssize)s->maddrlen;
  }
  return NP_ENOENT;
}

int np_quic_dial(np_quic *q, const uint8_t *maddr, size_t len, void *ud,
                 np_qconn **pc) {
  return np_quic_dial_flags(q, maddr, len, 0, ud, pc);
}

int np_quic_dial_flags(np_quic *q, const uint8_t *maddr, size_t len,
                       int flags, void *ud, np_qconn **pc) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  np_peerid expected;
  int has_expected, rv;
  qsock *s;
  np_qconn *c;
  ngtcp2_callbacks cb;
  ngtcp2_settings st;
  ngtcp2_transport_params p;
  ngtcp2_cid dcid, scid;
  ngtcp2_path path;
  ngtcp2_tstamp ts = now_ns();
  char text[256];

  if (q->deleting)
    return NP_ECANCELED;
  if ((rv = np_maddr_to_sockaddr(maddr, len, &ss, &sl)) != 0)
    return rv;
  rv = np_maddr_get_p2p(maddr, len, &expected);
  if (rv != 0 && rv != NP_ENOENT)
    return rv;
  has_expected = rv == 0;
  if (!conn_room(q))
    return NP_ELIMIT;
  if (flags & NP_QUIC_DIAL_NEW_PORT) {
    struct sockaddr_storage any;
    memset(&any, 0, sizeof(any));
    any.ss_family = ss.ss_family;
    rv = sock_open(q, (struct sockaddr *)&any,
                   ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                           : sizeof(struct sockaddr_in6),
                   0, &s);
  } else {
    rv = pick_sock(q, (struct sockaddr *)&ss, &s);
  }
  if (rv != 0)
    return rv;
  if ((c = conn_alloc(q, s, 0)) == NULL) {
    if (flags & NP_QUIC_DIAL_NEW_PORT)
      sock_close(s);
    return NP_ENOMEM;
  }
  if (flags & NP_QUIC_DIAL_NEW_PORT)
    s->owner = c;
  rv = NP_ENOMEM;
  if (np_crypto_random(dcid.data, CLIENT_DCID_LEN) != 0 ||
      cid_make(q, &scid, SCID_LEN) != 0) {
    rv = NP_ECRYPTO;
    goto fail;
  }
  dcid.datalen = CLIENT_DCID_LEN;
  fill_callbacks(&cb, 0);
  fill_settings(q, &st, &p, ts);
  path.local.addr = (ngtcp2_sockaddr *)&s->local;
  path.local.addrlen = s->locallen;
  path.remote.addr = (ngtcp2_sockaddr *)&ss;
  path.remote.addrlen = sl;
  path.user_data = NULL;
  if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                             &cb, &st, &p, NULL, c) != 0)
    goto fail;
  if ((rv = np_tls_conn_new(&c->tls, q->tls, 0, has_expected ? &expected : NULL,
                            &c->cref)) != 0)
    goto fail;
  ngtcp2_conn_set_tls_native_handle(c->conn, np_tls_conn_native(c->tls));
  if (q->cfg.keepalive_ms != UINT64_MAX)
    ngtcp2_conn_set_keep_alive_timeout(c->conn, q->cfg.keepalive_ms *
                                                    NGTCP2_MILLISECONDS);
  if ((rv = cid_add(c, scid.data, scid.datalen)) != 0)
    goto fail;
  c->app_known = 1;
  c->ud = ud;
  if (np_maddr_to_string(maddr, len, text, sizeof(text)) < 0)
    snprintf(text, sizeof(text), "?");
  np_debug(SUB, "dial conn=%08x addr=%s", c->id, text);
  conn_mark(c); /* the first Initial goes out before the loop sleeps */
  *pc = c;
  return 0;
fail:
  conn_destroy(c);
  return rv;
}

size_t np_quic_conn_count(const np_quic *q) { return q->nconns; }

int np_quic_punch(np_quic *q, const uint8_t *maddr, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  uint8_t junk[NP_QUIC_PUNCH_LEN];
  qsock *s = NULL;
  np_list *l;
  int rv;
  if (q->deleting)
    return NP_ECANCELED;
  if ((rv = np_maddr_to_sockaddr(maddr, len, &ss, &sl)) != 0)
    return rv;
  /* Only a listening socket: the point is to open the NAT mapping that the
   * peer's Initial will come back through, the one we advertise. */
  for (l = q->socks.next; l != &q->socks; l = l->next) {
    qsock *x = np_list_entry(l, qsock, link);
    int fit;
    if (!x->accept)
      continue;
    fit = np_sockaddr_source_fit((const struct sockaddr *)&x->local,
                                 (const struct sockaddr *)&ss);
    if (fit == 2 || (fit == 1 && s == NULL))
      s = x;
    if (fit == 2)
      break;
  }
  if (s == NULL)
    return NP_ENOENT;
  if (np_crypto_random(junk, sizeof(junk)) != 0)
    return NP_ECRYPTO;
  /* A short-header first byte: no receiver takes it for an Initial or
   * answers it with Version Negotiation. */
  junk[0] = (uint8_t)((junk[0] & 0x3f) | 0x40);
  sock_send_one(s, NULL, (const struct sockaddr *)&ss, sl, junk, sizeof(junk));
  return 0;
}

void np_quic_conn_close(np_qconn *c, uint64_t app_error) {
  if (c->close_req || c->state >= ST_CLOSING)
    return;
  c->close_req = 1;
  c->close_code = app_error;
  conn_mark(c);
}

int np_quic_conn_peer(const np_qconn *c, np_peerid *id) {
  if (!c->up_done)
    return NP_ENOENT;
  *id = c->peer;
  return 0;
}

np_ssize np_quic_conn_remote_addr(const np_qconn *c, uint8_t *out, size_t cap) {
  const ngtcp2_path *p = ngtcp2_conn_get_path(c->conn);
  return np_maddr_from_sockaddr_quic((const struct sockaddr *)p->remote.addr,
                                     out, cap);
}

np_ssize np_quic_conn_local_addr(const np_qconn *c, uint8_t *out, size_t cap) {
  if (c->s->maddrlen > cap)
    return NP_ELIMIT;
  memcpy(out, c->s->maddr, c->s->maddrlen);
  return (np_ssize)c->s->maddrlen;
}

int64_t np_quic_conn_rtt_us(const np_qconn *c) {
  ngtcp2_conn_info ci;
  if (c->conn == NULL)
    return -1;
  ngtcp2_conn_get_conn_info(c->conn, &ci);
  return ci.smoothed_rtt ? (int64_t)(ci.smoothed_rtt / 1000) : -1;
}

int np_quic_conn_inbound(const np_qconn *c) { return c->inbound; }
void np_quic_conn_set_ud(np_qconn *c, void *ud) { c->ud = ud; }
void *np_quic_conn_ud(const np_qconn *c) { return c->ud; }

int np_quic_stream_open(np_qconn *c, void *ud, np_qstream **ps) {
  np_qstream *s;
  int64_t id;
  int rv;
  if (c->state >= ST_CLOSING || c->close_req || c->q->deleting)
    return NP_ECLOSED;
  if (!c->up_done)
    return NP_EINVAL;
  if (c->nlocal >= c->q->cfg.max_streams_per_conn) {
    c->want_credit = 1;
    return NP_ELIMIT;
  }
  if ((s = stream_new(c, -1, 0)) == NULL)
    return NP_ENOMEM;
  rv = ngtcp2_conn_open_bidi_stream(c->conn, &id, s);
  if (rv != 0) {
    stream_free(s);
    c->credit = 0;
    if (rv != NGTCP2_ERR_STREAM_ID_BLOCKED)
      return map_liberr(rv);
    c->want_credit = 1;
    return NP_ELIMIT;
  }
  s->id = id;
  s->ud = ud;
  s->announced = 1;
  *ps = s;
  return 0;
}

int np_quic_stream_write(np_qstream *s, const uint8_t *data, size_t len) {
  np_qconn *c = s->c;
  chunk *tail = NULL;
  if (s->app_done || s->reset_req || s->fin_req || s->write_shut ||
      c->state >= ST_CLOSING || c->close_req)
    return NP_ECLOSED;
  if (len == 0)
    return 0;
  if (len > stream_space(s)) {
    s->want_writable = 1;
    return NP_ELIMIT;
  }
  if (!np_list_empty(&s->chunks))
    tail = np_list_entry(s->chunks.prev, chunk, link);
  /* Append in place when the tail has room (ngtcp2 holds pointers to the
   * bytes before, which do not move). */
  if (tail == NULL || tail->cap - tail->len < len ||
      tail->off + tail->len != s->end) {
    size_t cap = len < CHUNK_MIN ? CHUNK_MIN : len;
    if ((tail = malloc(sizeof(*tail) + cap)) == NULL)
      return NP_ENOMEM;
    tail->off = s->end;
    tail->len = 0;
    tail->cap = cap;
    np_list_insert_tail(&s->chunks, &tail->link);
  }
  memcpy(tail->data + tail->len, data, len);
  tail->len += len;
  s->end += len;
  c->buffered += len;
  if (s->cursor == NULL)
    s->cursor = tail;
  stream_queue(s);
  conn_mark(c);
  return 0;
}

size_t np_quic_stream_write_space(const np_qstream *s) {
  const np_qconn *c = s->c;
  if (s->app_done || s->reset_req || s->fin_req || s->write_shut ||
      c->state >= ST_CLOSING || c->close_req)
    return 0;
  return stream_space(s);
}

int np_quic_stream_shutdown(np_qstream *s) {
  np_qconn *c = s->c;
  if (s->app_done || s->reset_req || s->write_shut || c->state >= ST_CLOSING ||
      c->close_req)
    return NP_ECLOSED;
  if (s->fin_req)
    return 0;
  s->fin_req = 1;
  stream_queue(s);
  conn_mark(c);
  return 0;
}

void np_quic_stream_reset(np_qstream *s, uint64_t app_error) {
  if (s->app_done || s->reset_req)
    return;
  s->reset_req = 1;
  s->reset_code = app_error;
  np_list_remove(&s->slink);
  stream_event(s, SE_RESET);
}

void np_quic_stream_pause(np_qstream *s, int paused) {
  np_qconn *c = s->c;
  s->paused = paused ? 1 : 0;
  if (paused || s->uncredited == 0 || s->app_done || c->conn == NULL ||
      c->state >= ST_CLOSING)
    return;
  ngtcp2_conn_extend_max_stream_offset(c->conn, s->id, s->uncredited);
  s->uncredited = 0;
  conn_mark(c); /* MAX_STREAM_DATA goes out with the next write */
}

np_qconn *np_quic_stream_conn(const np_qstream *s) { return s->c; }
int64_t np_quic_stream_id(const np_qstream *s) { return s->id; }
void np_quic_stream_set_ud(np_qstream *s, void *ud) { s->ud = ud; }
void *np_quic_stream_ud(const np_qstream *s) { return s->ud; }
