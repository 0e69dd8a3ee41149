/* A minimal blocking control-socket client for tests that talk to a real
 * natpeer-host process: uvarint-delimited p2pd messages over a unix socket,
 * every wait bounded. Shared by test_ctl and test_ctl_life. */
#ifndef NP_TEST_CTL_CLIENT_H
#define NP_TEST_CTL_CLIENT_H

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_lp.h"
#include "proto/p2pd.pb-c.h"

typedef struct cl {
  int fd;
  uint8_t *buf;
  size_t len, cap, consumed;
} cl;

static inline double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Connect to the unix socket |path|. 0 ok; on failure c->fd may be -1. */
static inline int cl_open(cl *c, const char *path) {
  struct sockaddr_un un;
  memset(c, 0, sizeof(*c));
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  c->fd = -1;
  if (strlen(path) >= sizeof(un.sun_path))
    return -1;
  memcpy(un.sun_path, path, strlen(path));
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  c->cap = 16u << 20;
  c->buf = malloc(c->cap);
  if (c->fd < 0 || c->buf == NULL)
    return -1;
  return connect(c->fd, (struct sockaddr *)&un, sizeof(un));
}

static inline void cl_close(cl *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->buf);
  c->buf = NULL;
}

static inline int cl_send(cl *c, const uint8_t *d, size_t n) {
  uint8_t pre[10];
  np_ssize p = np_lp_put_prefix(n, pre, sizeof(pre));
  if (write(c->fd, pre, (size_t)p) != p)
    return -1;
  while (n) {
    ssize_t w = write(c->fd, d, n);
    if (w <= 0)
      return -1;
    d += w;
    n -= (size_t)w;
  }
  return 0;
}

/* One delimited message, waiting at most |secs|. 0 ok, -1 timeout/EOF. */
static inline int cl_recv(cl *c, const uint8_t **msg, size_t *mlen,
                          double secs) {
  double end = mono() + secs;
  if (c->consumed) {
    memmove(c->buf, c->buf + c->consumed, c->len - c->consumed);
    c->len -= c->consumed;
    c->consumed = 0;
  }
  for (;;) {
    np_ssize n = np_lp_parse(c->buf, c->len, 64u << 20, msg, mlen);
    struct pollfd p = {c->fd, POLLIN, 0};
    ssize_t r;
    if (n >= 0) {
      c->consumed = (size_t)n;
      return 0;
    }
    if (n != NP_ETRUNC || mono() > end)
      return -1;
    if (poll(&p, 1, (int)((end - mono()) * 1000) + 1) <= 0)
      return -1;
    r = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (r <= 0)
      return -1;
    c->len += (size_t)r;
  }
}

static inline int cl_send_req(cl *c, const Np__P2pd__Request *rq) {
  size_t n = np__p2pd__request__get_packed_size(rq);
  uint8_t *buf = malloc(n ? n : 1);
  int rv;
  if (buf == NULL)
    return -1;
  np__p2pd__request__pack(rq, buf);
  rv = cl_send(c, buf, n);
  free(buf);
  return rv;
}

/* Send |rq| and wait up to |secs| for the Response (NULL on failure). */
static inline Np__P2pd__Response *request_within(cl *c,
                                                 const Np__P2pd__Request *rq,
                                                 double secs) {
  const uint8_t *m;
  size_t ml;
  if (cl_send_req(c, rq) != 0 || cl_recv(c, &m, &ml, secs) != 0)
    return NULL;
  return np__p2pd__response__unpack(NULL, ml, m);
}

static inline Np__P2pd__Response *request(cl *c, const Np__P2pd__Request *rq) {
  return request_within(c, rq, 5);
}

static inline int upgrade(cl *c) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *r;
  int ok;
  rq.type = NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE;
  r = request(c, &rq);
  ok = r && r->type == NP__P2PD__RESPONSE__TYPE__OK;
  if (r)
    np__p2pd__response__free_unpacked(r, NULL);
  return ok ? 0 : -1;
}

static inline void uuid4(uint8_t id[16]) {
  np_crypto_random(id, 16);
  id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);
  id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
}

static inline int psend(cl *c, const Np__P2pd__PersistentConnectionRequest *pr) {
  size_t n = np__p2pd__persistent_connection_request__get_packed_size(pr);
  uint8_t *b = malloc(n);
  int rv;
  if (b == NULL)
    return -1;
  np__p2pd__persistent_connection_request__pack(pr, b);
  rv = cl_send(c, b, n);
  free(b);
  return rv;
}

static inline Np__P2pd__PersistentConnectionResponse *precv(cl *c,
                                                            double secs) {
  const uint8_t *m;
  size_t ml;
  if (cl_recv(c, &m, &ml, secs) != 0)
    return NULL;
  return np__p2pd__persistent_connection_response__unpack(NULL, ml, m);
}

#endif
