/* Control socket, driven the way hivemind's P2P client drives p2pd: a
 * persistent connection (upgrade first), uuid4 callIds, unary handlers
 * registered by one client and called by another, errors as errors, the
 * 4 MiB cap, Cancel on timeout, handler cleanup when a client leaves. The
 * host runs as a real natpeer-host process on a unix socket. */
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
#include "ctl_client.h"
#include "tap.h"
#include "test_util.h"

static char dir[512], sock[700];
static pid_t host_pid;
static np_peerid self;

static int send_call(cl *c, const uint8_t id[16], const char *proto,
                     const uint8_t *data, size_t len) {
  return send_call_to(c, &self, id, proto, data, len);
}

/* Handler side: wait for a requestHandling and answer it. */
static int serve_one(cl *c, const char *prefix, int as_error) {
  Np__P2pd__PersistentConnectionResponse *r = precv(c, 5);
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryResponse u = NP__P2PD__CALL_UNARY_RESPONSE__INIT;
  uint8_t out[256];
  size_t n;
  int rv;
  if (r == NULL || r->message_case !=
                       NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_REQUEST_HANDLING)
    return -1;
  n = (size_t)snprintf((char *)out, sizeof(out), "%s%.*s", prefix,
                       (int)r->requesthandling->data.len,
                       (const char *)r->requesthandling->data.data);
  pr.callid = r->callid;
  if (as_error) {
    u.has_error = 1;
    u.error.data = out;
    u.error.len = n;
  } else {
    u.has_response = 1;
    u.response.data = out;
    u.response.len = n;
  }
  pr.message_case =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_UNARY_RESPONSE;
  pr.unaryresponse = &u;
  rv = psend(c, &pr);
  np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  return rv;
}

static int start_host(void) {
  char ini[800], path[4096], logp[800];
  snprintf(ini, sizeof(ini), "%s/h.ini", dir);
  snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
  snprintf(logp, sizeof(logp), "%s/host.log", dir);
  snprintf(path, sizeof(path),
           "[host]\ndata_dir = %s\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
           "control = %s\nlog_level = debug\n[plugins]\ndir = %s/plugins\n"
           "[limits]\nmax_message = 4M\n",
           dir, sock, dir);
  tu_write(ini, path, 0644);
  snprintf(path, sizeof(path), "%s/host/natpeer-host", tu_builddir());
  host_pid = fork();
  if (host_pid == 0) {
    int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    execl(path, path, "--config", ini, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    struct stat st;
    if (stat(sock, &st) == 0)
      return 0;
    usleep(10000);
  }
  return -1;
}

int main(void) {
  cl a, b, d;
  uint8_t id[16];
  Np__P2pd__PersistentConnectionResponse *r;
  char hello[1024];

  signal(SIGPIPE, SIG_IGN);
  tu_tmpdir(dir, sizeof(dir));
  {
    char p[800];
    snprintf(p, sizeof(p), "%s/plugins", dir);
    mkdir(p, 0755);
    snprintf(hello, sizeof(hello), "%s/plugins/.libs/hello.so", tu_builddir());
    snprintf(p, sizeof(p), "%s/plugins/hello.so", dir);
    tu_install(hello, p);
    snprintf(hello, sizeof(hello), "%s/plugins/.libs/echo.so", tu_builddir());
    snprintf(p, sizeof(p), "%s/plugins/echo.so", dir);
    tu_install(hello, p);
  }
  ok(start_host() == 0, "natpeer-host starts with a control socket");
  {
    struct stat st;
    ok(stat(sock, &st) == 0 && (st.st_mode & 0777) == 0600,
       "the control socket is created 0600");
  }

  /* IDENTIFY on a plain connection. */
  ok(cl_open(&a, sock) == 0, "client connects");
  {
    Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
    Np__P2pd__Response *rs;
    rq.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
    rs = request(&a, &rq);
    ok(rs && rs->type == NP__P2PD__RESPONSE__TYPE__OK && rs->identify,
       "IDENTIFY answers OK with identify");
    if (rs && rs->identify)
      np_peerid_from_bytes(&self, rs->identify->id.data,
                           rs->identify->id.len);
    ok(self.len == 38, "the host's peer ID is an Ed25519 identity multihash");
    if (rs)
      np__p2pd__response__free_unpacked(rs, NULL);
    rq.type = NP__P2PD__REQUEST__TYPE__DHT;
    rs = request(&a, &rq);
    ok(rs && rs->type == NP__P2PD__RESPONSE__TYPE__ERROR && rs->error &&
           strcmp(rs->error->msg, "DHT request without its dht field") == 0,
       "a DHT request without its dht field answers a clear ERROR");
    if (rs)
      np__p2pd__response__free_unpacked(rs, NULL);
    rq.type = NP__P2PD__REQUEST__TYPE__PUBSUB;
    rs = request(&a, &rq);
    ok(rs && rs->type == NP__P2PD__RESPONSE__TYPE__ERROR,
       "PUBSUB answers ERROR");
    if (rs)
      np__p2pd__response__free_unpacked(rs, NULL);
  }
  cl_close(&a);

  /* hivemind: handler client A, caller client B, both persistent. */
  cl_open(&a, sock);
  cl_open(&b, sock);
  ok(upgrade(&a) == 0 && upgrade(&b) == 0, "PERSISTENT_CONN_UPGRADE answers OK");
  is_int(add_handler(&a, "DHTProtocol.rpc_ping", 0), 0,
         "AddUnaryHandler succeeds with an empty response");
  is_int(add_handler(&b, "DHTProtocol.rpc_ping", 0), -1,
         "a second, unbalanced registration gets a daemonError");
  is_int(add_handler(&b, "hello", 1), -1,
         "a name held by a plugin cannot be taken by a client");

  uuid4(id);
  send_call(&b, id, "DHTProtocol.rpc_ping", (const uint8_t *)"abc", 3);
  ok(serve_one(&a, "pong:", 0) == 0,
     "the handler client receives requestHandling");
  r = precv(&b, 5);
  ok(r && r->message_case ==
                 NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CALL_UNARY_RESPONSE &&
         r->callid.len == 16 && memcmp(r->callid.data, id, 16) == 0,
     "the caller gets callUnaryResponse with its callId");
  ok(r && r->callunaryresponse->has_response &&
         r->callunaryresponse->response.len == 8 &&
         memcmp(r->callunaryresponse->response.data, "pong:abc", 8) == 0,
     "carrying the handler's bytes");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);

  uuid4(id);
  send_call(&b, id, "DHTProtocol.rpc_ping", (const uint8_t *)"x", 1);
  serve_one(&a, "bad request ", 1);
  r = precv(&b, 5);
  ok(r && r->message_case ==
                 NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CALL_UNARY_RESPONSE &&
         r->callunaryresponse->has_error &&
         memcmp(r->callunaryresponse->error.data, "bad request x", 13) == 0,
     "a handler's error arrives as an error, not as bytes");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);

  uuid4(id);
  send_call(&b, id, "hello", NULL, 0);
  r = precv(&b, 5);
  ok(r && r->callunaryresponse && r->callunaryresponse->has_response &&
         r->callunaryresponse->response.len == 13 &&
         memcmp(r->callunaryresponse->response.data, "Hello, World!", 13) == 0,
     "a client calls a plugin's handler");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);

  uuid4(id);
  send_call(&b, id, "no.such.handler", NULL, 0);
  r = precv(&b, 5);
  ok(r && r->message_case ==
                 NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_DAEMON_ERROR &&
         strstr(r->daemonerror->message, "protocol not supported") != NULL,
     "an unknown handler gives daemonError \"protocol not supported\"");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);

  /* 4 MiB cap: exactly 4 MiB echoes, one byte more is refused. */
  {
    size_t big = 4u << 20;
    uint8_t *p = malloc(big + 1);
    for (size_t i = 0; i <= big; i++)
      p[i] = (uint8_t)(i * 7 + 3);
    uuid4(id);
    send_call(&b, id, "echo", p, big);
    r = precv(&b, 10);
    ok(r && r->callunaryresponse && r->callunaryresponse->has_response &&
           r->callunaryresponse->response.len == big &&
           memcmp(r->callunaryresponse->response.data, p, big) == 0,
       "a 4 MiB payload echoes back intact");
    if (r)
      np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
    uuid4(id);
    send_call(&b, id, "echo", p, big + 1);
    r = precv(&b, 10);
    ok(r && r->message_case ==
                   NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_DAEMON_ERROR &&
           strstr(r->daemonerror->message, "max_message") != NULL,
       "4 MiB + 1 is refused with an error naming the limit (%s)",
       r && r->daemonerror ? r->daemonerror->message : "?");
    if (r)
      np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
    free(p);
  }

  /* Cancel on timeout: the handler client is told. */
  uuid4(id);
  send_call(&b, id, "DHTProtocol.rpc_ping", (const uint8_t *)"slow", 4);
  r = precv(&a, 5);
  ok(r && r->message_case ==
              NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_REQUEST_HANDLING,
     "the slow call reaches the handler");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  {
    Np__P2pd__PersistentConnectionRequest pr =
        NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
    Np__P2pd__Cancel cn = NP__P2PD__CANCEL__INIT;
    pr.callid.data = id;
    pr.callid.len = 16;
    pr.message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CANCEL;
    pr.cancel = &cn;
    psend(&b, &pr);
  }
  r = precv(&b, 5);
  ok(r && r->message_case ==
              NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CANCEL,
     "Cancel is acknowledged with cancel");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  r = precv(&a, 5);
  ok(r && r->message_case ==
              NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CANCEL &&
         memcmp(r->callid.data, id, 16) == 0,
     "the handler client gets cancel for that callId");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);

  /* Handler client leaves: its handler goes, pending calls fail. */
  uuid4(id);
  send_call(&b, id, "DHTProtocol.rpc_ping", (const uint8_t *)"orphan", 6);
  r = precv(&a, 5);
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  cl_close(&a);
  r = precv(&b, 5);
  ok(r && r->callunaryresponse && r->callunaryresponse->has_error,
     "a call pending on a client that disconnects fails promptly");
  if (r)
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  cl_open(&d, sock);
  upgrade(&d);
  is_int(add_handler(&d, "DHTProtocol.rpc_ping", 0), 0,
         "the name is free again after its client left");
  cl_close(&d);
  cl_close(&b);

  /* Garbage on the socket closes that connection only. */
  cl_open(&a, sock);
  if (write(a.fd, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10) != 10)
    ok(0, "write garbage");
  {
    const uint8_t *m;
    size_t ml;
    ok(cl_recv(&a, &m, &ml, 2) != 0, "a malformed length prefix closes the connection");
  }
  cl_close(&a);
  ok(cl_open(&a, sock) == 0, "the host still accepts clients");
  cl_close(&a);

  kill(host_pid, SIGTERM);
  {
    int st = 0;
    waitpid(host_pid, &st, 0);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "host exits 0 on SIGTERM");
  }
  ok(access(sock, F_OK) != 0, "the control socket file is removed on stop");
  np_crypto_cleanup();
  tu_rmrf(dir);
  return done_testing();
}
