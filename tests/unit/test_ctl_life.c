/* Control-client lifecycle matrix: for every control request type the
 * client goes away (a) right after sending, (b) while the answer is
 * pending, (c) halfway through reading a big or streamed answer. After
 * each case host A must still run and answer IDENTIFY from a fresh client.
 *
 * Host A (under test) and host B (its peer) are real natpeer-host
 * processes on 127.0.0.1 (QUIC), each with a unix control socket. A UDP
 * socket that never reads stands for a dial target that never answers; B
 * is SIGSTOPped for the cases where a peer stops answering. A host that
 * dies is reported (with its sanitizer report, if any) and restarted, so
 * one run lists every failing case. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include "np_multiaddr.h"
#include "np_peerid.h"
#include "proto/natpeer_ctl.pb-c.h"
#include "proto/p2pd.pb-c.h"
#include "ctl_client.h"
#include "tap.h"
#include "test_util.h"

#define ECHO_STREAM "/natpeer/echo/1.0.0"
#define FLOOD_PROTO "/life/flood/1.0.0"
#define BIG (4u << 20)
#define MANY 3000

typedef struct host {
  const char *name;
  char dir[600], sock[700], log[700], out[700], ini[700];
  volatile pid_t pid;
  int gen; /* incremented at every (re)start */
  np_peerid id;
  uint8_t addr[256];
  size_t addr_len;
  int stopped;
} host;

static char top[512];
static host A = {.name = "A"}, B = {.name = "B"};
static int silent_fd = -1;
static uint8_t silent_addr[64];
static size_t silent_len;
static np_peerid fake;           /* a peer ID nobody has */
static char cb_a[800], cb_b[800]; /* stream handler callback sockets */
static char failed[4096];        /* labels of the cases that killed A */
static double t_start;

/* ---- child processes: never leave one behind ---------------------------- */

static void kill_kids(void) {
  pid_t p;
  if ((p = A.pid) > 0) {
    kill(p, SIGKILL);
  }
  if ((p = B.pid) > 0) {
    kill(p, SIGCONT);
    kill(p, SIGKILL);
  }
}

static void at_exit(void) {
  kill_kids();
  if (A.pid > 0)
    waitpid(A.pid, NULL, 0);
  if (B.pid > 0)
    waitpid(B.pid, NULL, 0);
  A.pid = B.pid = 0;
  if (top[0] && getenv("NP_TEST_KEEP") == NULL)
    tu_rmrf(top);
}

static void on_fatal(int sig) {
  static const char msg[] = "Bail out! test_ctl_life: fatal signal or timeout\n";
  kill_kids();
  if (write(1, msg, sizeof(msg) - 1) < 0) {
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- hosts ---------------------------------------------------------------- */

static int identify(const char *sock, double secs, np_peerid *id,
                    uint8_t *addr, size_t *addr_len) {
  cl c;
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__Response *r;
  int rv = -1;
  if (cl_open(&c, sock) != 0) {
    cl_close(&c);
    return -1;
  }
  rq.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
  r = request_within(&c, &rq, secs);
  if (r && r->type == NP__P2PD__RESPONSE__TYPE__OK && r->identify) {
    rv = 0;
    if (id)
      rv = np_peerid_from_bytes(id, r->identify->id.data, r->identify->id.len);
    if (addr && rv == 0) {
      rv = -1;
      if (r->identify->n_addrs > 0 &&
          r->identify->addrs[0].len <= sizeof(A.addr)) {
        memcpy(addr, r->identify->addrs[0].data, r->identify->addrs[0].len);
        *addr_len = r->identify->addrs[0].len;
        rv = 0;
      }
    }
  }
  if (r)
    np__p2pd__response__free_unpacked(r, NULL);
  cl_close(&c);
  return rv;
}

static void install_plugin(const host *h, const char *name) {
  char src[1200], dst[1200];
  snprintf(src, sizeof(src), "%s/plugins/.libs/%s.so", tu_builddir(), name);
  snprintf(dst, sizeof(dst), "%s/plugins/%s.so", h->dir, name);
  if (tu_install(src, dst) != 0)
    printf("# cannot install %s into %s\n", src, dst);
}

static int host_start(host *h) {
  char text[3000], path[1200], sub[800];
  if (h->gen == 0) {
    snprintf(h->dir, sizeof(h->dir), "%s/%s", top, h->name);
    mkdir(h->dir, 0755);
    snprintf(sub, sizeof(sub), "%s/plugins", h->dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof(sub), "%s/data", h->dir);
    mkdir(sub, 0700);
    install_plugin(h, "hello");
    install_plugin(h, "echo");
    snprintf(h->sock, sizeof(h->sock), "%s/ctl.sock", h->dir);
    snprintf(h->log, sizeof(h->log), "%s/host.log", h->dir);
    snprintf(h->out, sizeof(h->out), "%s/host.out", h->dir);
    snprintf(h->ini, sizeof(h->ini), "%s/host.ini", h->dir);
    snprintf(text, sizeof(text),
             "[host]\ndata_dir = %s/data\n"
             "listen = /ip4/127.0.0.1/udp/0/quic-v1\n"
             "control = %s\nlog_level = debug\n"
             "[limits]\nmax_message = 4M\ncall_timeout = 2s\n"
             "[plugins]\ndir = %s/plugins\n",
             h->dir, h->sock, h->dir);
    if (tu_write(h->ini, text, 0644) != 0)
      return -1;
  }
  h->gen++;
  snprintf(path, sizeof(path), "%s/host/natpeer-host", tu_builddir());
  h->pid = fork();
  if (h->pid < 0)
    return -1;
  if (h->pid == 0) {
    /* Appending: a crash report survives a restart for the final check. */
    int out = open(h->out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out, 1);
    dup2(err, 2);
    execl(path, path, "--config", h->ini, (char *)NULL);
    _exit(127);
  }
  /* Ready once a fresh client's IDENTIFY answers (a stale socket file of
   * a crashed run refuses connections until the new host binds). */
  for (double end = mono() + 15; mono() < end; sleep_ms(20)) {
    if (waitpid(h->pid, NULL, WNOHANG) == h->pid) {
      h->pid = 0;
      return -1;
    }
    if (identify(h->sock, 2, &h->id, h->addr, &h->addr_len) == 0)
      return 0;
  }
  return -1;
}

/* Print the sanitizer report (or the last lines) of |h|'s log as TAP
 * diagnostics. */
static void dump_log(const host *h, long from) {
  FILE *f = fopen(h->log, "r");
  char line[1024];
  int printing = 0, n = 0, tail = 0;
  long pos = 0, last_err = -1;
  if (f == NULL)
    return;
  if (from > 0)
    fseek(f, from, SEEK_SET);
  /* First pass: where the (first) sanitizer report starts. */
  while ((pos = ftell(f)), fgets(line, sizeof(line), f)) {
    if (strstr(line, "AddressSanitizer") || strstr(line, "runtime error:") ||
        strstr(line, "LeakSanitizer")) {
      last_err = pos;
      break;
    }
    tail++;
  }
  if (last_err >= 0) {
    fseek(f, last_err, SEEK_SET);
    printing = 1;
  } else {
    /* No report: the last 15 lines. */
    fseek(f, from > 0 ? from : 0, SEEK_SET);
    n = 0;
    while (fgets(line, sizeof(line), f)) {
      if (++n > tail - 15)
        printf("#   %s: %s", h->name, line);
    }
    fclose(f);
    return;
  }
  n = 0;
  while (printing && n < 40 && fgets(line, sizeof(line), f)) {
    printf("#   %s: %s", h->name, line);
    n++;
  }
  fclose(f);
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Is |h| still running? Reaps it if not, describing how it ended. */
static int host_running(host *h, char *how, size_t cap) {
  int st = 0;
  pid_t p = h->pid;
  if (p <= 0) {
    snprintf(how, cap, "not running");
    return 0;
  }
  if (waitpid(p, &st, WNOHANG) == p) {
    h->pid = 0;
    if (WIFSIGNALED(st))
      snprintf(how, cap, "killed by signal %d (%s)", WTERMSIG(st),
               strsignal(WTERMSIG(st)));
    else
      snprintf(how, cap, "exited with status %d", WEXITSTATUS(st));
    return 0;
  }
  return kill(p, 0) == 0;
}

static long a_log_mark;

/* After each case: A runs and a fresh client's IDENTIFY answers within 2 s.
 * A dead A is reported and restarted. */
static void check_alive(const char *label) {
  char how[200] = "";
  int alive = host_running(&A, how, sizeof(how));
  int answered = alive && identify(A.sock, 2, NULL, NULL, NULL) == 0;
  if (alive && !answered) {
    sleep_ms(200); /* dying right now? */
    alive = host_running(&A, how, sizeof(how));
  }
  ok(alive && answered, "host A survives %s%s%s", label,
     alive ? (answered ? "" : " (but IDENTIFY got no answer in 2 s)") : ": ",
     alive ? "" : how);
  if (!(alive && answered)) {
    if (strlen(failed) + strlen(label) + 4 < sizeof(failed)) {
      strcat(failed, failed[0] ? "; " : "");
      strcat(failed, label);
    }
    dump_log(&A, a_log_mark);
  }
  if (!alive) {
    ok(host_start(&A) == 0, "host A restarts after dying in %s", label);
  }
  a_log_mark = file_size(A.log);
}

/* ---- requests ------------------------------------------------------------- */

typedef int (*sender)(cl *c);

static int send_type(cl *c, int type) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  rq.type = (Np__P2pd__Request__Type)type;
  return cl_send_req(c, &rq);
}

static int send_connect(cl *c, const np_peerid *peer, const uint8_t *addr,
                        size_t alen, int64_t timeout) {
  return cl_send_connect(c, peer, addr, alen, timeout);
}

static int send_stream_open(cl *c, const np_peerid *peer, const char *proto,
                            int64_t timeout) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__StreamOpenRequest so = NP__P2PD__STREAM_OPEN_REQUEST__INIT;
  char *protos[1] = {(char *)proto};
  so.peer.data = (uint8_t *)peer->bytes;
  so.peer.len = peer->len;
  so.n_proto = 1;
  so.proto = protos;
  so.has_timeout = 1;
  so.timeout = timeout;
  rq.type = NP__P2PD__REQUEST__TYPE__STREAM_OPEN;
  rq.streamopen = &so;
  return cl_send_req(c, &rq);
}

static int unix_maddr(const char *path, uint8_t *bin, size_t cap) {
  char text[900];
  snprintf(text, sizeof(text), "/unix%s", path);
  return (int)np_maddr_parse(text, strlen(text), bin, cap);
}

static int send_stream_handler(cl *c, const char *cbpath, const char *proto) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__StreamHandlerRequest sh = NP__P2PD__STREAM_HANDLER_REQUEST__INIT;
  uint8_t bin[1024];
  char *protos[1] = {(char *)proto};
  int n = unix_maddr(cbpath, bin, sizeof(bin));
  if (n < 0)
    return -1;
  sh.addr.data = bin;
  sh.addr.len = (size_t)n;
  sh.n_proto = 1;
  sh.proto = protos;
  rq.type = NP__P2PD__REQUEST__TYPE__STREAM_HANDLER;
  rq.streamhandler = &sh;
  return cl_send_req(c, &rq);
}

static int send_np(cl *c, int type, const np_peerid *peer, int64_t tmo_ms) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__Ctl__NpRequest nq = NP__CTL__NP_REQUEST__INIT;
  uint8_t buf[256];
  if (peer) {
    nq.has_peer = 1;
    nq.peer.data = (uint8_t *)peer->bytes;
    nq.peer.len = peer->len;
  }
  if (tmo_ms > 0) {
    nq.has_timeout_ms = 1;
    nq.timeout_ms = tmo_ms;
  }
  rq.type = (Np__P2pd__Request__Type)type;
  rq.has_natpeer = 1;
  rq.natpeer.len = np__ctl__np_request__pack(&nq, buf);
  rq.natpeer.data = buf;
  return cl_send_req(c, &rq);
}

static int p_send_call(cl *c, const np_peerid *peer, const char *proto,
                       const uint8_t *data, size_t len) {
  uint8_t id[16];
  uuid4(id);
  return send_call_to(c, peer, id, proto, data, len);
}

static int p_send_add(cl *c, const char *proto) {
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__AddUnaryHandlerRequest a = NP__P2PD__ADD_UNARY_HANDLER_REQUEST__INIT;
  uint8_t id[16];
  uuid4(id);
  pr.callid.data = id;
  pr.callid.len = 16;
  a.proto = (char *)proto;
  pr.message_case =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_ADD_UNARY_HANDLER;
  pr.addunaryhandler = &a;
  return psend(c, &pr);
}

/* The upgrade request, not waiting for its answer (pipelined). */
static int send_upgrade(cl *c) {
  return send_type(c, NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE);
}

static int s_identify(cl *c) {
  return send_type(c, NP__P2PD__REQUEST__TYPE__IDENTIFY);
}
static int s_connect_b(cl *c) {
  return send_connect(c, &B.id, B.addr, B.addr_len, 5);
}
static int s_connect_silent(cl *c) {
  return send_connect(c, &fake, silent_addr, silent_len, 1);
}
static int s_stream_open_b(cl *c) {
  return send_stream_open(c, &B.id, ECHO_STREAM, 1);
}
static int s_stream_handler(cl *c) {
  return send_stream_handler(c, cb_a, "/life/sh/1.0.0");
}
static int s_remove_stream_handler(cl *c) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__RemoveStreamHandlerRequest rs =
      NP__P2PD__REMOVE_STREAM_HANDLER_REQUEST__INIT;
  uint8_t bin[1024], f9[1200];
  char *protos[1] = {(char *)"/life/sh/1.0.0"};
  int n = unix_maddr(cb_a, bin, sizeof(bin));
  if (n < 0)
    return -1;
  rs.addr.data = bin;
  rs.addr.len = (size_t)n;
  rs.n_proto = 1;
  rs.proto = protos;
  rq.type = NP__P2PD__REQUEST__TYPE__REMOVE_STREAM_HANDLER;
  rq.has_field9 = 1;
  rq.field9.len = np__p2pd__remove_stream_handler_request__pack(&rs, f9);
  rq.field9.data = f9;
  return cl_send_req(c, &rq);
}
static int s_dht(cl *c) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__DHTRequest d = NP__P2PD__DHTREQUEST__INIT;
  d.type = NP__P2PD__DHTREQUEST__TYPE__FIND_PEER;
  d.has_peer = 1;
  d.peer.data = B.id.bytes;
  d.peer.len = B.id.len;
  rq.type = NP__P2PD__REQUEST__TYPE__DHT;
  rq.dht = &d;
  return cl_send_req(c, &rq);
}
static int s_list_peers(cl *c) {
  return send_type(c, NP__P2PD__REQUEST__TYPE__LIST_PEERS);
}
static int s_connmanager(cl *c) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__ConnManagerRequest cm = NP__P2PD__CONN_MANAGER_REQUEST__INIT;
  cm.type = NP__P2PD__CONN_MANAGER_REQUEST__TYPE__TAG_PEER;
  cm.has_peer = 1;
  cm.peer.data = B.id.bytes;
  cm.peer.len = B.id.len;
  cm.tag = (char *)"life";
  cm.has_weight = 1;
  cm.weight = 1;
  rq.type = NP__P2PD__REQUEST__TYPE__CONNMANAGER;
  rq.connmanager = &cm;
  return cl_send_req(c, &rq);
}
static int s_disconnect(cl *c) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__DisconnectRequest d = NP__P2PD__DISCONNECT_REQUEST__INIT;
  d.peer.data = B.id.bytes;
  d.peer.len = B.id.len;
  rq.type = NP__P2PD__REQUEST__TYPE__DISCONNECT;
  rq.disconnect = &d;
  return cl_send_req(c, &rq);
}
static int s_pubsub(cl *c) {
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__PSRequest ps = NP__P2PD__PSREQUEST__INIT;
  ps.type = NP__P2PD__PSREQUEST__TYPE__GET_TOPICS;
  rq.type = NP__P2PD__REQUEST__TYPE__PUBSUB;
  rq.pubsub = &ps;
  return cl_send_req(c, &rq);
}
static int s_upgrade(cl *c) { return send_upgrade(c); }
static int s_p_add(cl *c) {
  char name[64];
  static int n;
  snprintf(name, sizeof(name), "life.add.%d", n++);
  return send_upgrade(c) || p_send_add(c, name);
}
static int s_p_remove(cl *c) {
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__RemoveUnaryHandlerRequest rm =
      NP__P2PD__REMOVE_UNARY_HANDLER_REQUEST__INIT;
  uint8_t id[16];
  char name[64];
  static int n;
  snprintf(name, sizeof(name), "life.rm.%d", n++);
  if (send_upgrade(c) || p_send_add(c, name))
    return -1;
  uuid4(id);
  pr.callid.data = id;
  pr.callid.len = 16;
  rm.proto = name;
  pr.message_case =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_REMOVE_UNARY_HANDLER;
  pr.removeunaryhandler = &rm;
  return psend(c, &pr);
}
static int s_p_call_self(cl *c) {
  return send_upgrade(c) || p_send_call(c, &A.id, "hello", NULL, 0);
}
static int s_p_call_b(cl *c) {
  return send_upgrade(c) ||
         p_send_call(c, &B.id, "echo", (const uint8_t *)"life", 4);
}
static int s_p_call_never(cl *c) {
  return send_upgrade(c) || p_send_call(c, &A.id, "life.never", NULL, 0);
}
static int s_p_unary_response(cl *c) {
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__CallUnaryResponse u = NP__P2PD__CALL_UNARY_RESPONSE__INIT;
  uint8_t id[16];
  uuid4(id);
  pr.callid.data = id;
  pr.callid.len = 16;
  u.has_response = 1;
  u.response.data = id;
  u.response.len = 16;
  pr.message_case =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_UNARY_RESPONSE;
  pr.unaryresponse = &u;
  return send_upgrade(c) || psend(c, &pr);
}
static int s_p_cancel(cl *c) {
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__Cancel cn = NP__P2PD__CANCEL__INIT;
  uint8_t id[16];
  uuid4(id);
  pr.callid.data = id;
  pr.callid.len = 16;
  pr.message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CANCEL;
  pr.cancel = &cn;
  return send_upgrade(c) || psend(c, &pr);
}
static int s_np_ping_b(cl *c) {
  return send_np(c, NP__CTL__NP_TYPE__NP_PING, &B.id, 1000);
}
static int s_np_protocols(cl *c) {
  return send_np(c, NP__CTL__NP_TYPE__NP_PROTOCOLS, NULL, 0);
}
static int s_np_conns(cl *c) {
  return send_np(c, NP__CTL__NP_TYPE__NP_CONNS, NULL, 0);
}
static int s_np_version(cl *c) {
  return send_np(c, NP__CTL__NP_TYPE__NP_VERSION, NULL, 0);
}

typedef struct kind {
  const char *name;
  sender send;
  int dangerous; /* an answer that waits on the network: repeat 3 times */
  int settle_ms; /* how long until any timeout it started has fired */
} kind;

static const kind kinds[] = {
    {"IDENTIFY", s_identify, 0, 0},
    {"CONNECT to B", s_connect_b, 1, 300},
    {"CONNECT to a silent UDP port (timeout 1 s)", s_connect_silent, 1, 2000},
    {"STREAM_OPEN to B's echo", s_stream_open_b, 1, 300},
    {"STREAM_HANDLER", s_stream_handler, 0, 0},
    {"REMOVE_STREAM_HANDLER", s_remove_stream_handler, 0, 0},
    {"DHT", s_dht, 0, 0},
    {"LIST_PEERS", s_list_peers, 0, 0},
    {"CONNMANAGER", s_connmanager, 0, 0},
    {"DISCONNECT B", s_disconnect, 0, 100},
    {"PUBSUB", s_pubsub, 0, 0},
    {"PERSISTENT_CONN_UPGRADE", s_upgrade, 0, 0},
    {"AddUnaryHandler", s_p_add, 0, 0},
    {"RemoveUnaryHandler", s_p_remove, 0, 0},
    {"CallUnary to A's hello plugin", s_p_call_self, 1, 100},
    {"CallUnary to B's echo plugin", s_p_call_b, 1, 300},
    {"CallUnary to a client handler that never answers", s_p_call_never, 1,
     300},
    {"UnaryResponse (unknown callId)", s_p_unary_response, 0, 0},
    {"Cancel (unknown callId)", s_p_cancel, 0, 0},
    {"NP_PING to B", s_np_ping_b, 1, 300},
    {"NP_PROTOCOLS", s_np_protocols, 0, 0},
    {"NP_CONNS", s_np_conns, 0, 0},
    {"NP_VERSION", s_np_version, 0, 0},
};

/* ---- helpers for the cases -------------------------------------------------- */

/* A connects to B (waits for the answer). */
static int a_connect_b(void) {
  cl c;
  const uint8_t *m;
  size_t ml;
  int rv = -1;
  if (cl_open(&c, A.sock) == 0 &&
      send_connect(&c, &B.id, B.addr, B.addr_len, 5) == 0 &&
      cl_recv(&c, &m, &ml, 6) == 0) {
    Np__P2pd__Response *r = np__p2pd__response__unpack(NULL, ml, m);
    rv = r && r->type == NP__P2PD__RESPONSE__TYPE__OK ? 0 : -1;
    if (r)
      np__p2pd__response__free_unpacked(r, NULL);
  }
  cl_close(&c);
  return rv;
}

/* The client that serves "life.never" and never answers. */
static cl never_h = {.fd = -1};
static int never_gen;

static int add_handler_wait(cl *c, const char *proto) {
  Np__P2pd__PersistentConnectionResponse *r;
  int rv;
  if (p_send_add(c, proto) != 0 || (r = precv(c, 5)) == NULL)
    return -1;
  rv = r->message_case ==
               NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE__NOT_SET
           ? 0
           : -1;
  np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  return rv;
}

static void ensure_never_handler(void) {
  if (never_h.fd >= 0 && never_gen == A.gen)
    return;
  if (never_h.buf)
    cl_close(&never_h);
  never_gen = A.gen;
  if (cl_open(&never_h, A.sock) != 0 || upgrade(&never_h) != 0 ||
      add_handler_wait(&never_h, "life.never") != 0)
    printf("# could not register the never-answering handler\n");
}

/* Count what the never-answering handler has been sent so far. */
static void drain_never(int *handling, int *cancels, double secs) {
  Np__P2pd__PersistentConnectionResponse *r;
  while ((r = precv(&never_h, secs)) != NULL) {
    if (r->message_case ==
        NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_REQUEST_HANDLING)
      (*handling)++;
    else if (r->message_case ==
             NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CANCEL)
      (*cancels)++;
    np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  }
}

/* Read and discard up to |want| bytes of |c| (counting what it buffered). */
static size_t read_some(cl *c, size_t want, double secs) {
  size_t got = c->len - c->consumed;
  uint8_t buf[65536];
  double end = mono() + secs;
  while (got < want && mono() < end) {
    struct pollfd p = {c->fd, POLLIN, 0};
    size_t room = want - got < sizeof(buf) ? want - got : sizeof(buf);
    ssize_t n;
    if (poll(&p, 1, 50) <= 0)
      continue;
    n = recv(c->fd, buf, room, MSG_DONTWAIT);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  return got;
}

/* Write into |wfd| (up to |max_write| bytes, never blocking) and read |c|
 * until |want| bytes came back or |secs| passed. Returns the bytes read. */
static size_t pump(cl *c, int wfd, size_t want, size_t max_write,
                   double secs) {
  static uint8_t chunk[65536];
  uint8_t buf[65536];
  size_t got = c->len - c->consumed, sent = 0;
  double end = mono() + secs;
  while (got < want && mono() < end) {
    short wev = sent < max_write ? POLLOUT : 0;
    struct pollfd p[2] = {{c->fd, (short)(POLLIN | (wfd == c->fd ? wev : 0)), 0},
                          {wfd, wev, 0}};
    ssize_t n;
    if (poll(p, wfd == c->fd ? 1 : 2, 50) <= 0)
      continue;
    if (sent < max_write) {
      n = send(wfd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0)
        sent += (size_t)n;
    }
    n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0)
      break;
    if (n > 0)
      got += (size_t)n;
  }
  return got;
}

static int expect_ok(cl *c, double secs) {
  const uint8_t *m;
  size_t ml;
  Np__P2pd__Response *r;
  int rv;
  if (cl_recv(c, &m, &ml, secs) != 0 ||
      (r = np__p2pd__response__unpack(NULL, ml, m)) == NULL)
    return -1;
  rv = r->type == NP__P2PD__RESPONSE__TYPE__OK ? 0 : -1;
  if (rv != 0 && r->error)
    printf("#   ERROR answer: %s\n", r->error->msg);
  np__p2pd__response__free_unpacked(r, NULL);
  return rv;
}

/* ---- the cases -------------------------------------------------------------- */

/* (a) send, close at once. */
static void case_a(const kind *k) {
  char label[300];
  int reps = k->dangerous ? 3 : 1;
  if (strstr(k->name, "CallUnary to a client") != NULL)
    ensure_never_handler();
  for (int i = 0; i < reps; i++) {
    cl c;
    if (cl_open(&c, A.sock) == 0)
      k->send(&c);
    cl_close(&c);
  }
  sleep_ms(k->settle_ms + 50);
  snprintf(label, sizeof(label), "(a) %s, closed right after sending%s",
           k->name, reps > 1 ? " (x3)" : "");
  check_alive(label);
}

/* (b) send, wait for the answer to be pending, close; then wait until the
 * operation's own timeout has fired. |upgrade_first| waits for the upgrade
 * answer before sending (persistent sub-requests). */
static void case_b(const char *name, sender send, int upgrade_first,
                   int settle_ms) {
  char label[300];
  for (int i = 0; i < 3; i++) {
    cl c;
    if (cl_open(&c, A.sock) == 0 && (!upgrade_first || upgrade(&c) == 0))
      send(&c);
    sleep_ms(200);
    cl_close(&c);
  }
  sleep_ms(settle_ms);
  snprintf(label, sizeof(label), "(b) %s, closed while the answer waits (x3)",
           name);
  check_alive(label);
}

static int p_call_b_only(cl *c) {
  return p_send_call(c, &B.id, "echo", (const uint8_t *)"life", 4);
}
static int p_call_never_only(cl *c) {
  return p_send_call(c, &A.id, "life.never", NULL, 0);
}
static int s_connect_b_1s(cl *c) {
  return send_connect(c, &B.id, B.addr, B.addr_len, 1);
}

/* (c) STREAM_OPEN to B's echo: write a lot, read part of the echo, close. */
static void case_c_echo(void) {
  int opened = 0;
  size_t got = 0;
  for (int i = 0; i < 3; i++) {
    cl c;
    if (cl_open(&c, A.sock) == 0 &&
        send_stream_open(&c, &B.id, ECHO_STREAM, 5) == 0 &&
        expect_ok(&c, 6) == 0) {
      opened++;
      got += pump(&c, c.fd, 256u << 10, 4u << 20, 3);
    }
    cl_close(&c);
  }
  ok(opened == 3 && got >= 3 * (256u << 10),
     "(c) STREAM_OPEN to B's echo streams back (%d opened, %zu bytes read)",
     opened, got);
  sleep_ms(200);
  check_alive("(c) STREAM_OPEN to B's echo, closed halfway through the echo "
              "(x3)");
}

/* (c) STREAM_OPEN to a stream handler B's control client serves (the test
 * itself, at a callback socket): the handler floods, A's client reads a
 * little and closes. */
static void case_c_flood(void) {
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_un un;
  int opened = 0, registered = 0;
  size_t got = 0;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  if (strlen(cb_b) < sizeof(un.sun_path))
    memcpy(un.sun_path, cb_b, strlen(cb_b));
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&un, sizeof(un)) != 0 ||
      listen(lfd, 8) != 0) {
    ok(0, "listen on the callback socket %s: %s", cb_b, strerror(errno));
    if (lfd >= 0)
      close(lfd);
    return;
  }
  {
    cl c;
    registered = cl_open(&c, B.sock) == 0 &&
                 send_stream_handler(&c, cb_b, FLOOD_PROTO) == 0 &&
                 expect_ok(&c, 3) == 0;
    cl_close(&c);
  }
  ok(registered, "B's control client registers a STREAM_HANDLER for %s",
     FLOOD_PROTO);
  for (int i = 0; i < 3 && registered; i++) {
    cl c;
    int cfd = -1;
    if (cl_open(&c, A.sock) == 0 &&
        send_stream_open(&c, &B.id, FLOOD_PROTO, 5) == 0) {
      struct pollfd p = {lfd, POLLIN, 0};
      if (poll(&p, 1, 5000) == 1)
        cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd >= 0 && expect_ok(&c, 5) == 0) {
        opened++;
        got += pump(&c, cfd, 128u << 10, 8u << 20, 3);
      }
    }
    cl_close(&c);
    sleep_ms(100);
    if (cfd >= 0)
      close(cfd);
  }
  ok(opened == 3 && got >= 3 * (128u << 10),
     "(c) a handler on B floods A's client (%d opened, %zu bytes read)",
     opened, got);
  close(lfd);
  unlink(cb_b);
  sleep_ms(200);
  check_alive("(c) STREAM_OPEN to a flooding handler on B, closed halfway "
              "(x3)");
}

/* (c) CallUnary with a 4 MiB answer from an echo plugin: read a little of
 * the answer, close. */
static void case_c_big_call(const char *who, const np_peerid *peer) {
  uint8_t *p = malloc(BIG);
  char label[300];
  size_t got = 0;
  for (size_t i = 0; i < BIG; i++)
    p[i] = (uint8_t)(i * 7 + 3);
  for (int i = 0; i < 3; i++) {
    cl c;
    if (cl_open(&c, A.sock) == 0 && upgrade(&c) == 0 &&
        p_send_call(&c, peer, "echo", p, BIG) == 0)
      got += read_some(&c, 128u << 10, 10);
    cl_close(&c);
  }
  free(p);
  ok(got >= 3 * (128u << 10),
     "(c) the 4 MiB answer of %s's echo starts arriving (%zu bytes read)",
     who, got);
  sleep_ms(200);
  snprintf(label, sizeof(label),
           "(c) CallUnary with a 4 MiB answer from %s's echo, closed "
           "halfway (x3)",
           who);
  check_alive(label);
}

/* (c) NP_PROTOCOLS with thousands of handlers: read 4 KiB, close. */
static void case_c_protocols(void) {
  cl m;
  int acks = 0;
  size_t got = 0;
  char name[200];
  if (cl_open(&m, A.sock) == 0 && upgrade(&m) == 0) {
    for (int i = 0; i < MANY; i++) {
      snprintf(name, sizeof(name),
               "/life/many/%04d/a-rather-long-protocol-name-to-make-the-"
               "protocol-table-answer-big/1.0.0",
               i);
      if (p_send_add(&m, name) != 0)
        break;
    }
    for (Np__P2pd__PersistentConnectionResponse *r;
         acks < MANY && (r = precv(&m, 5)) != NULL; acks++)
      np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
  }
  is_int(acks, MANY, "a client registers %d unary handlers", MANY);
  for (int i = 0; i < 3; i++) {
    cl c;
    if (cl_open(&c, A.sock) == 0 &&
        send_np(&c, NP__CTL__NP_TYPE__NP_PROTOCOLS, NULL, 0) == 0)
      got += read_some(&c, 4096, 5);
    cl_close(&c);
  }
  ok(got >= 3 * 4096, "(c) NP_PROTOCOLS answers start arriving (%zu bytes)",
     got);
  sleep_ms(100);
  check_alive("(c) NP_PROTOCOLS with 3000 handlers, closed after 4 KiB (x3)");
  cl_close(&m);
  sleep_ms(100);
  check_alive("the client holding 3000 handlers leaves");
}

/* ---- main --------------------------------------------------------------------- */

int main(void) {
  struct sigaction sa;
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGSEGV, SIGABRT, SIGBUS};

  signal(SIGPIPE, SIG_IGN);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_fatal;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
    sigaction(sigs[i], &sa, NULL);
  atexit(at_exit);
  alarm(170); /* hard bound; the run takes well under a minute */
  t_start = mono();

  if (tu_tmpdir(top, sizeof(top)) == NULL) {
    printf("Bail out! mkdtemp\n");
    return 1;
  }
  snprintf(cb_a, sizeof(cb_a), "%s/cb-a.sock", top);
  snprintf(cb_b, sizeof(cb_b), "%s/cb-b.sock", top);

  ok(host_start(&B) == 0, "host B starts (%s)", B.dir);
  ok(host_start(&A) == 0, "host A starts (%s)", A.dir);
  if (A.pid <= 0 || B.pid <= 0) {
    dump_log(&A, 0);
    dump_log(&B, 0);
    return done_testing();
  }
  a_log_mark = file_size(A.log);

  /* A UDP socket that never reads: a dial target that never answers. */
  {
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    char text[100];
    np_ssize n = -1;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    silent_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (silent_fd >= 0 &&
        bind(silent_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(silent_fd, (struct sockaddr *)&sin, &sl) == 0) {
      snprintf(text, sizeof(text), "/ip4/127.0.0.1/udp/%u/quic-v1",
               ntohs(sin.sin_port));
      n = np_maddr_parse(text, strlen(text), silent_addr, sizeof(silent_addr));
    }
    ok(n > 0, "a silent UDP port is bound");
    silent_len = n > 0 ? (size_t)n : 0;
  }
  {
    uint8_t pk[36] = {0x08, 0x01, 0x12, 0x20};
    np_crypto_random(pk + 4, 32);
    ok(np_peerid_from_pubkey(&fake, pk, sizeof(pk)) == 0,
       "a peer ID nobody has");
  }
  ok(a_connect_b() == 0, "A connects to B");

  /* (a) every request type, the client closes right after sending. */
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    if (strncmp(kinds[i].name, "STREAM_OPEN", 11) == 0 ||
        strstr(kinds[i].name, "B's echo") || strstr(kinds[i].name, "to B"))
      a_connect_b(); /* after DISCONNECT or a restart */
    case_a(&kinds[i]);
  }

  /* (b) the answer waits on the network, B running. */
  case_b("CONNECT to a silent UDP port (timeout 1 s)", s_connect_silent, 0,
         2000);
  ensure_never_handler();
  {
    int handling = 0, cancels = 0;
    drain_never(&handling, &cancels, 0.05);
    handling = cancels = 0;
    case_b("CallUnary to a client handler that never answers",
           p_call_never_only, 1, 2200);
    ensure_never_handler();
    drain_never(&handling, &cancels, 0.3);
    printf("# the never-answering handler saw %d requestHandling, %d cancel\n",
           handling, cancels);
  }

  /* (b) B stopped: the answers wait until their timeouts. */
  a_connect_b();
  if (kill(B.pid, SIGSTOP) == 0)
    B.stopped = 1;
  ok(B.stopped, "B is stopped (SIGSTOP)");
  case_b("NP_PING to stopped B (timeout 1 s)", s_np_ping_b, 0, 1800);
  case_b("STREAM_OPEN to stopped B (timeout 1 s)", s_stream_open_b, 0, 1800);
  case_b("CallUnary to stopped B (call_timeout 2 s)", p_call_b_only, 1, 2500);
  case_b("CONNECT to stopped B (timeout 1 s)", s_connect_b_1s, 0, 1800);
  kill(B.pid, SIGCONT);
  B.stopped = 0;
  {
    char how[200];
    ok(host_running(&B, how, sizeof(how)), "B runs again after SIGCONT");
  }

  /* (c) big or streamed answers, read halfway. */
  ok(a_connect_b() == 0, "A connects to B again");
  case_c_echo();
  a_connect_b();
  case_c_flood();
  case_c_big_call("A", &A.id);
  a_connect_b();
  case_c_big_call("B", &B.id);
  /* No peer while 3000 protocols come and go (no identify/push storm). */
  {
    cl c;
    if (cl_open(&c, A.sock) == 0 && s_disconnect(&c) == 0)
      expect_ok(&c, 3);
    cl_close(&c);
  }
  case_c_protocols();

  if (failed[0])
    printf("# cases that killed host A: %s\n", failed);

  /* The end: both stop cleanly on SIGTERM, no sanitizer report anywhere. */
  if (never_h.buf)
    cl_close(&never_h);
  {
    host *hs[2] = {&A, &B};
    for (int i = 0; i < 2; i++) {
      host *h = hs[i];
      int st = -1;
      pid_t p = h->pid;
      if (p > 0) {
        kill(p, SIGCONT);
        kill(p, SIGTERM);
        for (double end = mono() + 10; mono() < end; sleep_ms(20))
          if (waitpid(p, &st, WNOHANG) == p) {
            h->pid = 0;
            break;
          }
      }
      ok(h->pid == 0 && st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
         "host %s exits 0 on SIGTERM (status %d)", h->name, st);
    }
    for (int i = 0; i < 2; i++) {
      FILE *f = fopen(hs[i]->log, "r");
      char line[1024];
      int bad = 0;
      while (f && fgets(line, sizeof(line), f))
        if (strstr(line, "AddressSanitizer") ||
            strstr(line, "runtime error:") || strstr(line, "LeakSanitizer"))
          bad++;
      if (f)
        fclose(f);
      ok(f && bad == 0, "host %s's log has no sanitizer report (%d lines)",
         hs[i]->name, bad);
      if (bad)
        dump_log(hs[i], 0);
    }
  }
  if (silent_fd >= 0)
    close(silent_fd);
  printf("# ran %.1f s\n", mono() - t_start);
  np_crypto_cleanup();
  return done_testing();
}
