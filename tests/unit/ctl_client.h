/* A minimal blocking control-socket client for tests that talk to a real
 * natpeer-host process: uvarint-delimited p2pd messages over a unix socket,
 * every wait bounded; and th_*, a natpeer-host child process to talk to.
 * Shared by test_ctl, test_ctl_life and test_hardening. */
#ifndef NP_TEST_CTL_CLIENT_H
#define NP_TEST_CTL_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_lp.h"
#include "np_peerid.h"
#include "proto/natpeer_ctl.pb-c.h"
#include "proto/p2pd.pb-c.h"
#include "test_util.h"

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
  if (write(c->fd, pre, (size_t)p) != p) /* 10 bytes: never partial */
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

/* Raw bytes after the last message (a spliced stream): up to |want| bytes
 * within |secs|. Returns the count, 0 at EOF with nothing, -1 on timeout
 * with nothing. */
static inline ssize_t cl_read_raw(cl *c, uint8_t *out, size_t want,
                                  double secs) {
  double end = mono() + secs;
  size_t got = 0;
  if (c->consumed < c->len) {
    size_t n = c->len - c->consumed;
    if (n > want)
      n = want;
    memcpy(out, c->buf + c->consumed, n);
    c->consumed += n;
    got = n;
  }
  while (got < want) {
    struct pollfd p = {c->fd, POLLIN, 0};
    ssize_t r;
    if (mono() > end || poll(&p, 1, (int)((end - mono()) * 1000) + 1) <= 0)
      return got ? (ssize_t)got : -1;
    r = read(c->fd, out + got, want - got);
    if (r <= 0)
      return (ssize_t)got;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* IDENTIFY: 0 and the peer ID, or -1. */
static inline int cl_identify(cl *c, np_peerid *id) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *r;
  int rv = -1;
  rq.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
  r = request(c, &rq);
  if (r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->identify &&
      (id == NULL || np_peerid_from_bytes(id, r->identify->id.data,
                                          r->identify->id.len) == 0))
    rv = 0;
  if (r)
    np__p2pd__response__free_unpacked(r, NULL);
  return rv;
}

/* AddUnaryHandler: 0 ok, -1 daemonError (its text in |err| if given),
 * -100 no answer. */
static inline int add_handler_err(cl *c, const char *proto, int balanced,
                                  char *err, size_t errlen) {
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__AddUnaryHandlerRequest a = NP__P2PD__ADD_UNARY_HANDLER_REQUEST__INIT;
  Np__P2pd__PersistentConnectionResponse *r;
  uint8_t id[16];
  int rv;
  uuid4(id);
  pr.callid.data = id;
  pr.callid.len = 16;
  a.proto = (char *)proto;
  a.balanced = balanced;
  pr.message_case =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_ADD_UNARY_HANDLER;
  pr.addunaryhandler = &a;
  if (psend(c, &pr) != 0 || (r = precv(c, 5)) == NULL)
    return -100;
  rv = r->message_case ==
               NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE__NOT_SET
           ? 0
           : -1;
  if (err && errlen)
    snprintf(err, errlen, "%s",
             rv && r->daemonerror && r->daemonerror->message
                 ? r->daemonerror->message
                 : "");
  np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  return rv;
}

static inline int add_handler(cl *c, const char *proto, int balanced) {
  return add_handler_err(c, proto, balanced, NULL, 0);
}

static inline int send_call_to(cl *c, const np_peerid *peer,
                               const uint8_t id[16], const char *proto,
                               const uint8_t *data, size_t len) {
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryRequest cu = NP__P2PD__CALL_UNARY_REQUEST__INIT;
  pr.callid.data = (uint8_t *)id;
  pr.callid.len = 16;
  cu.peer.data = (uint8_t *)peer->bytes;
  cu.peer.len = peer->len;
  cu.proto = (char *)proto;
  cu.data.data = (uint8_t *)data;
  cu.data.len = len;
  pr.message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY;
  pr.callunary = &cu;
  return psend(c, &pr);
}

/* CONNECT to |peer| at one binary multiaddr; sends only. */
static inline int cl_send_connect(cl *c, const np_peerid *peer,
                                  const uint8_t *addr, size_t alen,
                                  int64_t timeout) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__ConnectRequest cr = NP__P2PD__CONNECT_REQUEST__INIT;
  ProtobufCBinaryData ad = {alen, (uint8_t *)addr};
  cr.peer.data = (uint8_t *)peer->bytes;
  cr.peer.len = peer->len;
  cr.n_addrs = 1;
  cr.addrs = &ad;
  cr.has_timeout = 1;
  cr.timeout = timeout;
  rq.type = NP__P2PD__REQUEST__TYPE__CONNECT;
  rq.connect = &cr;
  return cl_send_req(c, &rq);
}

/* ---- a natpeer-host child process ---------------------------------------- */

typedef struct th {
  pid_t pid;
  char dir[600], sock[700], log[700], out[700];
  np_peerid id;
  char addr[512]; /* first "Peer Addrs:" line: /ip4/…/udp/…/quic-v1 */
} th;

/* Start natpeer-host in |dir| (created by the caller) with a unix control
 * socket, QUIC on 127.0.0.1 port 0 and |extra| appended to the ini (its
 * own [sections]). |plugins|: install hello and echo. 0 once the socket
 * answers IDENTIFY (at most 5 s). */
static inline int th_start(th *h, const char *dir, const char *extra,
                           int plugins) {
  char ini[800], text[4096], path[1024];
  memset(h, 0, sizeof(*h));
  snprintf(h->dir, sizeof(h->dir), "%s", dir);
  snprintf(ini, sizeof(ini), "%s/h.ini", dir);
  snprintf(h->sock, sizeof(h->sock), "%s/ctl.sock", dir);
  snprintf(h->log, sizeof(h->log), "%s/host.log", dir);
  snprintf(h->out, sizeof(h->out), "%s/host.out", dir);
  snprintf(path, sizeof(path), "%s/plugins", dir);
  mkdir(path, 0755);
  if (plugins) {
    static const char *const names[] = {"hello", "echo"};
    for (int i = 0; i < 2; i++) {
      char src[1024], dst[1024];
      snprintf(src, sizeof(src), "%s/plugins/.libs/%s.so", tu_builddir(),
               names[i]);
      snprintf(dst, sizeof(dst), "%s/plugins/%s.so", dir, names[i]);
      tu_install(src, dst);
    }
  }
  snprintf(text, sizeof(text),
           "[host]\ndata_dir = %s\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
           "control = %s\nlog_level = debug\n[plugins]\ndir = %s/plugins\n%s",
           dir, h->sock, dir, extra ? extra : "");
  tu_write(ini, text, 0644);
  snprintf(path, sizeof(path), "%s/host/natpeer-host", tu_builddir());
  h->pid = fork();
  if (h->pid == 0) {
    int fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int fo = open(h->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    dup2(fo, 1);
    execl(path, path, "--config", ini, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 500; i++) {
    cl c;
    if (cl_open(&c, h->sock) == 0 && cl_identify(&c, &h->id) == 0) {
      FILE *f;
      cl_close(&c);
      if ((f = fopen(h->out, "r")) != NULL) {
        char line[512];
        int next = 0; /* the addresses follow "Peer Addrs:", one a line */
        while (fgets(line, sizeof(line), f)) {
          line[strcspn(line, "\n")] = '\0';
          if (next && h->addr[0] == 0 && line[0] == '/')
            snprintf(h->addr, sizeof(h->addr), "%s", line);
          if (strcmp(line, "Peer Addrs:") == 0)
            next = 1;
        }
        fclose(f);
      }
      return 0;
    }
    cl_close(&c);
    usleep(10000);
  }
  return -1;
}

/* The host process is still running. */
static inline int th_alive(th *h) {
  int st;
  return h->pid > 0 && waitpid(h->pid, &st, WNOHANG) == 0;
}

/* SIGTERM and wait (bounded); the exit status, or -1. */
static inline int th_stop(th *h) {
  int st = 0;
  if (h->pid <= 0)
    return -1;
  kill(h->pid, SIGCONT);
  kill(h->pid, SIGTERM);
  for (int i = 0; i < 500; i++) {
    if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
      h->pid = 0;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    usleep(10000);
  }
  kill(h->pid, SIGKILL);
  waitpid(h->pid, &st, 0);
  h->pid = 0;
  return -1;
}

/* Occurrences of |needle| in the host's log. */
static inline int th_log_count(const th *h, const char *needle) {
  FILE *f = fopen(h->log, "r");
  char line[4096];
  int n = 0;
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f))
    if (strstr(line, needle))
      n++;
  fclose(f);
  return n;
}

/* The log shows no sanitizer report. */
static inline int th_log_clean(const th *h) {
  return th_log_count(h, "AddressSanitizer") == 0 &&
         th_log_count(h, "runtime error:") == 0 &&
         th_log_count(h, "LeakSanitizer") == 0;
}

#endif
