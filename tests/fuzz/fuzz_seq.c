/* Lifecycle sequences against in-process hosts. The input is a program:
 * each op byte (and the bytes after it) picks an event - a control client
 * connects, sends a request or a persistent-connection message, reads part
 * of its answers, hangs up; the loop runs a few steps; the clock jumps so
 * timers expire; the peer host disconnects, freezes, dies or comes back;
 * the host reloads its config; plugins appear in, change in or vanish from
 * its plugin folder - in any order.
 *
 * Set-up, per input (nothing carries over from one input to the next):
 *   host A  the subject: control socket (unix, in a temp dir), QUIC on
 *           127.0.0.1 UDP port 0, plugin folder and config file in the
 *           temp dir (np_daemon_reload re-reads it), its own ev loop;
 *   host B  a peer on 127.0.0.1 with the echo plugin (unary "echo",
 *           stream "/natpeer/echo/1.0.0") and, when built, tp_good
 *           ("tp.good", "tp.selfcall", "tp.never"), on a second ev loop
 *           (so it can be frozen: it stops answering without closing);
 *   C       a UDP socket that never reads: dials to it wait (per process);
 *   a unix callback listener for STREAM_HANDLER registrations.
 * Time is virtual: the harness defines clock_gettime, so CLOCK_MONOTONIC
 * (libev, ngtcp2) moves only by 1 ms per loop step and by the jumps the
 * program asks for. Timers therefore fire at the same point of a program
 * on every run, and "expire timers" costs no wall time. EVRUN_NOWAIT
 * steps never block; loopback UDP and unix sockets deliver synchronously.
 *
 * Plugins come from the build tree (NP_FUZZ_BUILDDIR, or $top_builddir):
 * plugins/.libs/{hello,echo}.so and tests/plugins/.libs/tp_*.so; missing
 * ones are skipped. Set NP_FUZZ_LOG=debug|info|warn to see host logs. */

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "np_conf.h"
#include "np_err.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_lp.h"
#include "np_multiaddr.h"
#include "np_peerid.h"
#include "np_plugin.h"
#include "np_stream.h"
#include "proto/natpeer_ctl.pb-c.h"
#include "proto/p2pd.pb-c.h"

#ifndef NP_FUZZ_BUILDDIR
#define NP_FUZZ_BUILDDIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 64
#define NCL 8
#define NBCALL 4
#define NBSTREAM 2

/* ---- virtual monotonic clock ----------------------------------------------- */

static int g_virtual;
static int64_t g_vclock_ns = 1000LL * 1000000000LL;

__attribute__((visibility("default"))) int clock_gettime(clockid_t id,
                                                         struct timespec *ts);
__attribute__((visibility("default"))) int clock_gettime(clockid_t id,
                                                         struct timespec *ts) {
  if (g_virtual &&
      (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_RAW ||
       id == CLOCK_MONOTONIC_COARSE || id == CLOCK_BOOTTIME)) {
    ts->tv_sec = (time_t)(g_vclock_ns / 1000000000LL);
    ts->tv_nsec = (long)(g_vclock_ns % 1000000000LL);
    return 0;
  }
  return (int)syscall(SYS_clock_gettime, id, ts);
}

/* ---- process-wide state ------------------------------------------------------ */

static int g_ready, g_trace;
static char g_dir[256], g_plugdir[300], g_ini[300], g_ctl[300], g_cb[300];
static np_identity g_idA, g_idB, g_idC;
static np_peerid g_idD; /* a peer nobody knows an address of */
static int g_hole = -1;  /* C: bound, never read */
static uint8_t g_holeaddr[64];
static size_t g_holeaddr_len;

/* Plugins the program can drop into A's folder (index = op argument). */
#ifdef NP_FUZZ_SEQPLUG
/* The libFuzzer binary: uninstrumented copies (see tests/fuzz/fuzz.am). */
static const char *const plug_src[] = {
    "tests/fuzz/seqplug/.libs/hello.so",
    "tests/fuzz/seqplug/.libs/echo.so",
    "tests/fuzz/seqplug/.libs/tp_good.so",
    "tests/fuzz/seqplug/.libs/tp_good_v2.so",
    "tests/fuzz/seqplug/.libs/tp_dup.so",
    "tests/fuzz/seqplug/.libs/tp_failinit.so",
    "tests/fuzz/seqplug/.libs/tp_old_minor.so"};
#else
static const char *const plug_src[] = {
    "plugins/.libs/hello.so",          "plugins/.libs/echo.so",
    "tests/plugins/.libs/tp_good.so",  "tests/plugins/.libs/tp_good_v2.so",
    "tests/plugins/.libs/tp_dup.so",   "tests/plugins/.libs/tp_failinit.so",
    "tests/plugins/.libs/tp_old_minor.so"};
#endif
#define NPLUG (sizeof(plug_src) / sizeof(plug_src[0]))
static char g_plug_path[NPLUG][4096]; /* "" when not built */

static const char *const protos[] = {
    "hello",   "echo",  "tp.good", "tp.selfcall", "tp.never",
    "fz.a",    "fz.b",  "/natpeer/echo/1.0.0", "/ipfs/ping/1.0.0",
    "/ipfs/id/1.0.0"};
#define NPROTO (sizeof(protos) / sizeof(protos[0]))

/* ---- per-input state ------------------------------------------------------------- */

typedef struct fcl {
  int fd; /* -1: free */
  uint8_t buf[16384];
  size_t len;
  uint8_t seen[8][16]; /* callIds of calls routed to this client */
  int nseen;
  uint8_t mine[8][16]; /* callIds this client used */
  int nmine;
} fcl;

typedef struct fhost {
  struct ev_loop *ev;
  np_daemon *d;
  np_host *h;
  int frozen;
} fhost;

static fhost A, B;
static fcl cl[NCL];
static int g_cblisten = -1;
static np_outgoing *bcall[NBCALL];
static int bcall_live[NBCALL];
static np_stream *bstream[NBSTREAM];
static int g_conf_variant;
static uint8_t g_plug_on[NPLUG];
static unsigned g_counter;

/* ---- input reader ----------------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p;
  size_t n;
} rd;

static uint8_t u8(rd *r) {
  if (r->n == 0)
    return 0;
  r->n--;
  return *r->p++;
}

/* Up to |max| bytes of the input, copied. */
static size_t bytes(rd *r, uint8_t *out, size_t max) {
  size_t n = u8(r) % (max + 1);
  if (n > r->n)
    n = r->n;
  memcpy(out, r->p, n);
  r->p += n;
  r->n -= n;
  return n;
}

/* ---- config ------------------------------------------------------------------------ */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    abort();
  fputs(text, f);
  fclose(f);
}

static const char *log_level(void) {
  const char *l = getenv("NP_FUZZ_LOG");
  return l ? l : "error";
}

static void write_ini(int variant) {
  char text[4096];
  int n = snprintf(text, sizeof(text),
                   "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
                   "control = %s\ndata_dir = %s\nidentity_file = %s/id.key\n"
                   "log_level = %s\n[dht]\nmode = server\n"
                   "[plugins]\ndir = %s\n",
                   g_ctl, g_dir, g_dir, log_level(), g_plugdir);
  switch (variant % 6) {
  case 1: /* the hello plugin refused */
    n += snprintf(text + n, sizeof(text) - (size_t)n, "deny = hello\n");
    break;
  case 2: /* its section changed: reloaded */
    n += snprintf(text + n, sizeof(text) - (size_t)n,
                  "[plugin.hello]\nmessage = changed\n"
                  "[plugin.tp_good]\ngreeting = yo\n");
    break;
  case 3: /* no folder scan: only an explicit load */
    n += snprintf(text + n, sizeof(text) - (size_t)n,
                  "autoload = no\nload = %s\n",
                  g_plug_path[1][0] ? g_plug_path[1] : "/nonexistent.so");
    break;
  case 4: /* a broken file: the reload is rejected */
    n += snprintf(text + n, sizeof(text) - (size_t)n, "bogus key here\n");
    break;
  case 5: /* small limits */
    n += snprintf(text + n, sizeof(text) - (size_t)n,
                  "[limits]\nmax_pending_calls = 2\nmax_message = 16\n"
                  "call_timeout = 2s\n[plugin.echo]\nprotocol = fz.a\n");
    break;
  default:
    break;
  }
  (void)n;
  write_file(g_ini, text);
}

/* ---- one-time set-up ---------------------------------------------------------- */

static void make_peerid_d(void) {
  np_identity t;
  if (np_identity_generate(&t) != 0)
    abort();
  g_idD = t.id;
  np_identity_clear(&t);
}

static void cleanup_dir(void) {
  DIR *d;
  struct dirent *e;
  char p[700];
  if (!g_dir[0])
    return;
  if ((d = opendir(g_plugdir)) != NULL) {
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      snprintf(p, sizeof(p), "%s/%s", g_plugdir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(g_plugdir);
  unlink(g_ini);
  unlink(g_ctl);
  unlink(g_cb);
  snprintf(p, sizeof(p), "%s/id.key", g_dir);
  unlink(p);
  rmdir(g_dir);
}

static void at_exit(void) {
  cleanup_dir();
  if (g_hole >= 0)
    close(g_hole);
  np_identity_clear(&g_idA);
  np_identity_clear(&g_idB);
  np_identity_clear(&g_idC);
}

static void init_once(void) {
  const char *bd = getenv("NP_FUZZ_BUILDDIR");
  const char *tmp = getenv("TMPDIR");
  struct sockaddr_in sin;
  socklen_t sl = sizeof(sin);
  char text[128];
  np_ssize n;
  if (g_ready)
    return;
  g_ready = 1;
  g_trace = getenv("NP_FUZZ_TRACE") != NULL;
  if (bd == NULL)
    bd = getenv("top_builddir");
  if (bd == NULL)
    bd = NP_FUZZ_BUILDDIR;
  for (size_t i = 0; i < NPLUG; i++) {
    snprintf(g_plug_path[i], sizeof(g_plug_path[i]), "%s/%s", bd, plug_src[i]);
    if (access(g_plug_path[i], R_OK) != 0)
      g_plug_path[i][0] = '\0';
    else if (g_plug_path[i][0] != '/') {
      char abs[4096];
      if (realpath(g_plug_path[i], abs) != NULL)
        snprintf(g_plug_path[i], sizeof(g_plug_path[i]), "%s", abs);
    }
  }
  snprintf(g_dir, sizeof(g_dir), "%s/np-fseq-XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp(g_dir) == NULL)
    abort();
  snprintf(g_plugdir, sizeof(g_plugdir), "%s/plugins", g_dir);
  snprintf(g_ini, sizeof(g_ini), "%s/a.ini", g_dir);
  snprintf(g_ctl, sizeof(g_ctl), "%s/ctl.sock", g_dir);
  snprintf(g_cb, sizeof(g_cb), "%s/cb.sock", g_dir);
  mkdir(g_plugdir, 0700);
  if (np_identity_generate(&g_idA) != 0 || np_identity_generate(&g_idB) != 0 ||
      np_identity_generate(&g_idC) != 0)
    abort();
  make_peerid_d();
  /* C: a UDP socket nobody reads. */
  g_hole = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (g_hole < 0 || bind(g_hole, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
      getsockname(g_hole, (struct sockaddr *)&sin, &sl) != 0)
    abort();
  snprintf(text, sizeof(text), "/ip4/127.0.0.1/udp/%u/quic-v1",
           ntohs(sin.sin_port));
  n = np_maddr_parse(text, strlen(text), g_holeaddr, sizeof(g_holeaddr));
  if (n < 0)
    abort();
  g_holeaddr_len = (size_t)n;
  for (size_t i = 0; i < NCL; i++)
    cl[i].fd = -1;
  signal(SIGPIPE, SIG_IGN);
  atexit(at_exit);
}

/* ---- hosts ------------------------------------------------------------------------ */

static int host_a_start(void) {
  np_conf *conf = NULL;
  char err[1024];
  if ((A.ev = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK)) == NULL)
    abort();
  if (np_conf_load(&conf, g_ini, err, sizeof(err)) != 0) {
    fprintf(stderr, "fuzz_seq: %s\n", err);
    abort();
  }
  if (np_daemon_new(&A.d, A.ev, conf, &g_idA) != 0)
    abort();
  A.h = np_daemon_host(A.d);
  if (np_daemon_start(A.d, NP_DAEMON_CONTROL | NP_DAEMON_NET) != 0)
    abort();
  return 0;
}

static void host_b_start(void) {
  static const char fmt[] = "[host]\nlisten = /ip4/127.0.0.1/udp/0/quic-v1\n"
                            "control = %s/unused.sock\nlog_level = %s\n"
                            "[dht]\nmode = server\n"
                            "[plugins]\nautoload = no\n";
  char text[1024], err[1024];
  np_conf *conf = NULL;
  int n = snprintf(text, sizeof(text), fmt, g_dir, log_level());
  if (B.h != NULL)
    return;
  if (B.ev == NULL && (B.ev = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK)) ==
                          NULL)
    abort();
  if (np_conf_load_string(&conf, "b.ini", text, (size_t)n, err, sizeof(err)) !=
      0) {
    fprintf(stderr, "fuzz_seq: %s\n", err);
    abort();
  }
  if (np_daemon_new(&B.d, B.ev, conf, &g_idB) != 0)
    abort();
  B.h = np_daemon_host(B.d);
  if (np_daemon_start(B.d, NP_DAEMON_NET) != 0)
    abort();
  if (g_plug_path[1][0])
    np_plugins_load_file(np_daemon_plugins(B.d), np_host_conf(B.h),
                         g_plug_path[1], NULL, 0);
  if (g_plug_path[2][0])
    np_plugins_load_file(np_daemon_plugins(B.d), np_host_conf(B.h),
                         g_plug_path[2], NULL, 0);
  B.frozen = 0;
}

static void host_b_kill(void) {
  if (B.h == NULL)
    return;
  np_daemon_del(B.d);
  B.h = NULL;
  /* Whatever B still held is gone with it. */
  for (int i = 0; i < NBCALL; i++) {
    bcall[i] = NULL;
    bcall_live[i] = 0;
  }
  for (int i = 0; i < NBSTREAM; i++)
    bstream[i] = NULL;
}

static void step(int n) {
  for (int i = 0; i < n; i++) {
    g_vclock_ns += 1000000; /* 1 ms */
    if (A.h)
      ev_run(A.ev, EVRUN_NOWAIT);
    if (B.h && !B.frozen)
      ev_run(B.ev, EVRUN_NOWAIT);
  }
}

/* ---- helpers: peers and addresses ------------------------------------------------ */

static size_t host_addrs(fhost *x, const uint8_t **bins, size_t *lens,
                         size_t max) {
  void *net;
  const np_net_ops *ops;
  if (x->h == NULL || (ops = np_host_net(x->h, &net)) == NULL)
    return 0;
  return ops->addrs(net, bins, lens, max);
}

/* A peer ID (binary) chosen by |sel| (0,5,6,7: B; 1: C, the hole; 2: A
 * itself; 3: D, no address; 4: invalid); returns its length. */
static size_t pick_peer(uint8_t sel, uint8_t *out) {
  const np_peerid *p;
  switch (sel % 8) {
  case 1:
    p = &g_idC.id;
    break;
  case 2:
    p = &g_idA.id;
    break;
  case 3:
    p = &g_idD;
    break;
  case 4:
    memcpy(out, "\x00\x03" "abc", 5); /* not a valid peer ID */
    return 5;
  default:
    p = &g_idB.id;
    break;
  }
  memcpy(out, p->bytes, p->len);
  return p->len;
}

/* Up to 4 addresses chosen by |sel| into bins/lens (storage in |store|). */
static size_t pick_addrs(uint8_t sel, ProtobufCBinaryData *out,
                         uint8_t store[4][64]) {
  const uint8_t *bins[4];
  size_t lens[4], n = 0, k;
  switch (sel % 6) {
  case 0:
    return 0;
  case 1:
    k = host_addrs(&B, bins, lens, 1);
    if (k >= 1 && lens[0] <= 64) {
      memcpy(store[n], bins[0], lens[0]);
      out[n].data = store[n];
      out[n].len = lens[0];
      n++;
    }
    return n;
  case 2:
    memcpy(store[0], g_holeaddr, g_holeaddr_len);
    out[0].data = store[0];
    out[0].len = g_holeaddr_len;
    return 1;
  case 3: /* the hole first, then B */
    memcpy(store[0], g_holeaddr, g_holeaddr_len);
    out[0].data = store[0];
    out[0].len = g_holeaddr_len;
    n = 1;
    k = host_addrs(&B, bins, lens, 1);
    if (k >= 1 && lens[0] <= 64) {
      memcpy(store[n], bins[0], lens[0]);
      out[n].data = store[n];
      out[n].len = lens[0];
      n++;
    }
    return n;
  case 4:
    memcpy(store[0], "\x04\x7f\x00\x00\x01\x91", 6); /* truncated */
    out[0].data = store[0];
    out[0].len = 6;
    return 1;
  default:
    k = host_addrs(&A, bins, lens, 1);
    if (k >= 1 && lens[0] <= 64) {
      memcpy(store[n], bins[0], lens[0]);
      out[n].data = store[n];
      out[n].len = lens[0];
      n++;
    }
    return n;
  }
}

static void set_sun(struct sockaddr_un *un, const char *path) {
  size_t n = strlen(path);
  if (n >= sizeof(un->sun_path))
    abort(); /* TMPDIR too long for a unix socket path */
  memcpy(un->sun_path, path, n + 1);
}

/* ---- control clients -------------------------------------------------------------- */

static void cl_send(fcl *c, const uint8_t *msg, size_t len) {
  uint8_t pre[10];
  np_ssize p;
  if (c->fd < 0)
    return;
  p = np_lp_put_prefix(len, pre, sizeof(pre));
  if (p > 0)
    (void)!send(c->fd, pre, (size_t)p, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (len)
    (void)!send(c->fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void cl_close(fcl *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  c->len = 0;
  c->nseen = c->nmine = 0;
}

static fcl *cl_free_slot(uint8_t sel) {
  for (int i = 0; i < NCL; i++) {
    fcl *c = &cl[(sel + i) % NCL];
    if (c->fd < 0)
      return c;
  }
  return NULL;
}

static fcl *cl_pick(uint8_t sel) {
  for (int i = 0; i < NCL; i++) {
    fcl *c = &cl[(sel + i) % NCL];
    if (c->fd >= 0)
      return c;
  }
  return NULL;
}

static void cl_open(uint8_t sel) {
  fcl *c = cl_free_slot(sel);
  struct sockaddr_un un;
  if (c == NULL || A.h == NULL)
    return;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  set_sun(&un, g_ctl);
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    abort();
  if (connect(c->fd, (struct sockaddr *)&un, sizeof(un)) != 0 &&
      errno != EINPROGRESS && errno != EAGAIN)
    cl_close(c);
  c->len = 0;
  c->nseen = c->nmine = 0;
}

/* Accept a connection the host made to our stream-handler callback. */
static void cl_accept_cb(uint8_t sel) {
  fcl *c = cl_free_slot(sel);
  int fd;
  if (c == NULL || g_cblisten < 0)
    return;
  fd = accept4(g_cblisten, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0)
    return;
  c->fd = fd;
  c->len = 0;
  c->nseen = c->nmine = 0;
}

/* Read up to |max| bytes; remember the callIds of calls routed to us. */
static void cl_read(fcl *c, size_t max) {
  ssize_t r;
  size_t off = 0;
  if (c->fd < 0)
    return;
  if (max > sizeof(c->buf) - c->len)
    max = sizeof(c->buf) - c->len;
  if (max == 0) { /* never answered in a parseable way: drop it */
    c->len = 0;
    return;
  }
  r = recv(c->fd, c->buf + c->len, max, MSG_DONTWAIT);
  if (g_trace)
    fprintf(stderr, "fuzz_seq: client %d read %zd\n", (int)(c - cl), r);
  if (r <= 0)
    return;
  c->len += (size_t)r;
  for (;;) {
    const uint8_t *msg;
    size_t mlen;
    np_ssize k = np_lp_parse(c->buf + off, c->len - off, sizeof(c->buf), &msg,
                             &mlen);
    Np__P2pd__PersistentConnectionResponse *pr;
    if (k < 0) {
      if (k != NP_ETRUNC)
        off = c->len; /* not framing we understand: drop it */
      break;
    }
    off += (size_t)k;
    if (g_trace) {
      Np__P2pd__Response *rr = np__p2pd__response__unpack(NULL, mlen, msg);
      fprintf(stderr, "fuzz_seq: client %d msg %zu bytes%s%s\n",
              (int)(c - cl), mlen, rr && rr->error ? " error: " : "",
              rr && rr->error ? rr->error->msg : "");
      if (rr)
        np__p2pd__response__free_unpacked(rr, NULL);
    }
    pr = np__p2pd__persistent_connection_response__unpack(NULL, mlen, msg);
    if (pr != NULL) {
      if (pr->message_case ==
              NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_REQUEST_HANDLING &&
          pr->callid.len == 16) {
        memcpy(c->seen[c->nseen % 8], pr->callid.data, 16);
        c->nseen++;
      }
      np__p2pd__persistent_connection_response__free_unpacked(pr, NULL);
    }
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
}

static void send_request(fcl *c, Np__P2pd__Request *rq) {
  uint8_t buf[8192];
  size_t n = np__p2pd__request__get_packed_size(rq);
  if (n > sizeof(buf))
    return;
  np__p2pd__request__pack(rq, buf);
  cl_send(c, buf, n);
}

static void send_persist(fcl *c, Np__P2pd__PersistentConnectionRequest *pr) {
  uint8_t buf[8192];
  size_t n = np__p2pd__persistent_connection_request__get_packed_size(pr);
  if (n > sizeof(buf))
    return;
  np__p2pd__persistent_connection_request__pack(pr, buf);
  cl_send(c, buf, n);
}

/* A p2pd request of a type the program picks, fields from the input. */
static void op_request(rd *r) {
  fcl *c = cl_pick(u8(r));
  uint8_t t = u8(r), a = u8(r), b = u8(r);
  Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
  Np__P2pd__ConnectRequest cr = NP__P2PD__CONNECT_REQUEST__INIT;
  Np__P2pd__StreamOpenRequest so = NP__P2PD__STREAM_OPEN_REQUEST__INIT;
  Np__P2pd__StreamHandlerRequest sh = NP__P2PD__STREAM_HANDLER_REQUEST__INIT;
  Np__P2pd__DisconnectRequest dr = NP__P2PD__DISCONNECT_REQUEST__INIT;
  Np__P2pd__RemoveStreamHandlerRequest rs =
      NP__P2PD__REMOVE_STREAM_HANDLER_REQUEST__INIT;
  Np__Ctl__NpRequest nq = NP__CTL__NP_REQUEST__INIT;
  Np__P2pd__DHTRequest dq = NP__P2PD__DHTREQUEST__INIT;
  uint8_t peer[64], store[4][64], nbuf[256], f9[512], cbaddr[300];
  uint8_t dkey[80], dval[64];
  ProtobufCBinaryData addrs[4];
  char *pl[3];
  np_ssize cbl;
  char cbtext[400];
  if (c == NULL)
    return;
  snprintf(cbtext, sizeof(cbtext), "/unix%s", g_cb);
  cbl = np_maddr_parse(cbtext, strlen(cbtext), cbaddr, sizeof(cbaddr));
  pl[0] = (char *)protos[b % NPROTO];
  pl[1] = (char *)protos[(b >> 4) % NPROTO];
  pl[2] = (char *)protos[(a >> 3) % NPROTO];
  switch (t % 18) {
  case 0:
    rq.type = NP__P2PD__REQUEST__TYPE__IDENTIFY;
    break;
  case 1: /* CONNECT peer addrs timeout */
    rq.type = NP__P2PD__REQUEST__TYPE__CONNECT;
    cr.peer.len = pick_peer(a & 7, peer);
    cr.peer.data = peer;
    cr.n_addrs = pick_addrs(a >> 3, addrs, store);
    cr.addrs = addrs;
    if (b & 7) {
      cr.has_timeout = 1;
      cr.timeout = (b & 7) - 1; /* 0 = default 60 s */
    }
    rq.connect = &cr;
    break;
  case 2: /* STREAM_OPEN peer protos timeout */
    rq.type = NP__P2PD__REQUEST__TYPE__STREAM_OPEN;
    so.peer.len = pick_peer(a & 7, peer);
    so.peer.data = peer;
    so.n_proto = 1 + ((a >> 6) % 3);
    so.proto = pl;
    if (a & 8) {
      so.has_timeout = 1;
      so.timeout = 1 + (a >> 4) % 3;
    }
    rq.streamopen = &so;
    break;
  case 3: /* STREAM_HANDLER at our callback address */
    rq.type = NP__P2PD__REQUEST__TYPE__STREAM_HANDLER;
    if (cbl > 0 && !(a & 1)) {
      sh.addr.data = cbaddr;
      sh.addr.len = (size_t)cbl;
    } else {
      sh.addr.data = g_holeaddr; /* udp: refused */
      sh.addr.len = g_holeaddr_len;
    }
    sh.n_proto = 1 + ((a >> 1) % 2);
    sh.proto = pl;
    sh.has_balanced = (a >> 2) & 1;
    sh.balanced = (a >> 3) & 1;
    rq.streamhandler = &sh;
    break;
  case 4: { /* REMOVE_STREAM_HANDLER (fork: body in field 9) */
    size_t n;
    rq.type = NP__P2PD__REQUEST__TYPE__REMOVE_STREAM_HANDLER;
    if (cbl > 0) {
      rs.addr.data = cbaddr;
      rs.addr.len = (size_t)cbl;
    }
    rs.n_proto = 1 + (a % 3);
    rs.proto = pl;
    n = np__p2pd__remove_stream_handler_request__get_packed_size(&rs);
    if (n <= sizeof(f9)) {
      np__p2pd__remove_stream_handler_request__pack(&rs, f9);
      rq.has_field9 = 1;
      rq.field9.data = f9;
      rq.field9.len = n;
    }
    break;
  }
  case 5:
    rq.type = NP__P2PD__REQUEST__TYPE__LIST_PEERS;
    break;
  case 6:
    rq.type = NP__P2PD__REQUEST__TYPE__DISCONNECT;
    dr.peer.len = pick_peer(a & 7, peer);
    dr.peer.data = peer;
    rq.disconnect = &dr;
    break;
  case 7:
  case 8:
    rq.type = NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE;
    break;
  case 9: /* NP_PING peer timeout_ms */
    rq.type = (Np__P2pd__Request__Type)NP__CTL__NP_TYPE__NP_PING;
    if (a & 1) {
      nq.has_peer = 1;
      nq.peer.len = pick_peer(a >> 1, peer);
      nq.peer.data = peer;
    }
    if (b) {
      nq.has_timeout_ms = 1;
      nq.timeout_ms = (int64_t)b * 40 - 2000; /* some <= 0: default */
    }
    goto natpeer;
  case 10:
    rq.type = (Np__P2pd__Request__Type)NP__CTL__NP_TYPE__NP_PROTOCOLS;
    goto natpeer;
  case 11:
    rq.type = (Np__P2pd__Request__Type)NP__CTL__NP_TYPE__NP_CONNS;
    goto natpeer;
  case 12:
    rq.type = (Np__P2pd__Request__Type)NP__CTL__NP_TYPE__NP_VERSION;
  natpeer: {
    size_t n = np__ctl__np_request__get_packed_size(&nq);
    if (n && n <= sizeof(nbuf)) {
      np__ctl__np_request__pack(&nq, nbuf);
      rq.has_natpeer = 1;
      rq.natpeer.data = nbuf;
      rq.natpeer.len = n;
    }
    break;
  }
  case 13: /* DHT, CONNMANAGER, PUBSUB, unknown */
    rq.type = (Np__P2pd__Request__Type)((uint8_t[]){4, 6, 8, 11, 63, 68, 200,
                                                    9}[a % 8]);
    if (a % 8 == 7) { /* PEERSTORE (js): refused */
      rq.has_field9 = 1;
      rq.field9.data = (uint8_t *)"\x08\x01";
      rq.field9.len = 2;
    }
    if (a % 8 == 0 && !(b & 1)) { /* a DHT request (else: without one) */
      uint8_t k = u8(r), v = u8(r);
      dq.type = (Np__P2pd__DHTRequest__Type)(k % 10); /* 9: unknown */
      dq.has_peer = 1;
      dq.peer.len = pick_peer(k >> 4, peer);
      dq.peer.data = peer;
      dq.has_key = 1;
      if (v & 1) { /* the open namespace, or a /pk/ key of the peer */
        memcpy(dkey, "/natpeer/fz", 11);
        dq.key.len = 11;
      } else {
        memcpy(dkey, "/pk/", 4);
        memcpy(dkey + 4, peer, dq.peer.len);
        dq.key.len = 4 + dq.peer.len;
      }
      dq.key.data = dkey;
      if (v & 2) { /* host A's public key, or input bytes */
        dq.has_value = 1;
        dq.value.data = dval;
        if (v & 16) {
          dq.value.len = bytes(r, dval, sizeof(dval));
        } else {
          memcpy(dval, g_idA.pub_pb, g_idA.pub_pb_len);
          dq.value.len = g_idA.pub_pb_len;
        }
      }
      dq.has_cid = 1; /* CIDv1 raw, or cut short */
      dq.cid.data = (uint8_t *)"\x01\x55\x12\x20" "0123456789abcdef"
                               "0123456789abcdef";
      dq.cid.len = (v & 4) ? 20 : 36;
      if (v & 8) {
        dq.has_count = 1;
        dq.count = (int32_t)(v >> 5) - 2;
      }
      if (b & 6) {
        dq.has_timeout = 1;
        dq.timeout = ((b >> 1) & 3) - 1;
      }
      rq.dht = &dq;
    }
    break;
  case 14: { /* raw bytes: malformed requests, partial frames */
    uint8_t raw[64];
    size_t n = bytes(r, raw, sizeof(raw));
    if (c->fd >= 0 && n)
      (void)!send(c->fd, raw, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return;
  }
  default: /* the common ones again: IDENTIFY / CONNECT B / PING B */
    if (a & 1) {
      rq.type = NP__P2PD__REQUEST__TYPE__CONNECT;
      cr.peer.len = pick_peer(0, peer);
      cr.peer.data = peer;
      cr.n_addrs = pick_addrs(1, addrs, store);
      cr.addrs = addrs;
      rq.connect = &cr;
    } else {
      rq.type = (Np__P2pd__Request__Type)NP__CTL__NP_TYPE__NP_PING;
      nq.has_peer = 1;
      nq.peer.len = pick_peer(0, peer);
      nq.peer.data = peer;
      nq.has_timeout_ms = 1;
      nq.timeout_ms = 500;
      goto natpeer;
    }
    break;
  }
  send_request(c, &rq);
}

/* A PersistentConnectionRequest (the client should have upgraded). */
static void op_persist(rd *r) {
  fcl *c = cl_pick(u8(r));
  uint8_t t = u8(r), a = u8(r), b = u8(r);
  Np__P2pd__PersistentConnectionRequest pr =
      NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
  Np__P2pd__AddUnaryHandlerRequest au = NP__P2PD__ADD_UNARY_HANDLER_REQUEST__INIT;
  Np__P2pd__RemoveUnaryHandlerRequest ru =
      NP__P2PD__REMOVE_UNARY_HANDLER_REQUEST__INIT;
  Np__P2pd__CallUnaryRequest cu = NP__P2PD__CALL_UNARY_REQUEST__INIT;
  Np__P2pd__CallUnaryResponse ur = NP__P2PD__CALL_UNARY_RESPONSE__INIT;
  Np__P2pd__Cancel cn = NP__P2PD__CANCEL__INIT;
  uint8_t id[16], peer[64], payload[64];
  size_t plen;
  if (c == NULL)
    return;
  memset(id, 0, sizeof(id));
  id[0] = (uint8_t)(g_counter++);
  id[1] = (uint8_t)(c - cl);
  id[6] = 0x40;
  id[8] = 0x80;
  pr.callid.data = id;
  pr.callid.len = 16;
  plen = bytes(r, payload, sizeof(payload));
  switch (t % 8) {
  case 0:
    pr.message_case =
        NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_ADD_UNARY_HANDLER;
    au.proto = (char *)protos[a % NPROTO];
    au.balanced = b & 1;
    pr.addunaryhandler = &au;
    break;
  case 1:
    pr.message_case =
        NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_REMOVE_UNARY_HANDLER;
    ru.proto = (char *)protos[a % NPROTO];
    pr.removeunaryhandler = &ru;
    break;
  case 2:
  case 3: /* CallUnary to A itself, B, C, garbage */
    pr.message_case =
        NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY;
    cu.peer.len = pick_peer((uint8_t)(b % 4 == 0 ? 2 : b % 4 == 3 ? 1 : b),
                            peer);
    cu.peer.data = peer;
    cu.proto = (char *)protos[a % NPROTO];
    cu.data.data = payload;
    cu.data.len = plen;
    pr.callunary = &cu;
    memcpy(c->mine[c->nmine % 8], id, 16);
    c->nmine++;
    break;
  case 4:
  case 5: /* UnaryResponse to a call routed to us (or an unknown one) */
    pr.message_case =
        NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_UNARY_RESPONSE;
    if (c->nseen > 0 && !(b & 0x80))
      memcpy(id, c->seen[(b % (c->nseen < 8 ? c->nseen : 8))], 16);
    if (a & 1) {
      ur.has_error = 1;
      ur.error.data = payload;
      ur.error.len = plen;
    } else if (a & 2) {
      ur.has_response = 1;
      ur.response.data = payload;
      ur.response.len = plen;
    }
    pr.unaryresponse = &ur;
    break;
  case 6: /* Cancel one of our calls (or an unknown one) */
    pr.message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CANCEL;
    if (c->nmine > 0 && !(b & 0x80))
      memcpy(id, c->mine[(b % (c->nmine < 8 ? c->nmine : 8))], 16);
    pr.cancel = &cn;
    break;
  default: /* empty message; or a short callId (dropped) */
    if (a & 1)
      pr.callid.len = a % 16;
    break;
  }
  send_persist(c, &pr);
}

/* ---- host B acting on A ------------------------------------------------------------ */

static void b_call_done(void *ud, int err, const uint8_t *data, size_t len) {
  int i = (int)(intptr_t)ud;
  (void)err, (void)data, (void)len;
  bcall[i] = NULL;
  bcall_live[i] = 0;
}

static void b_net_done(void *ud, int err) { (void)ud, (void)err; }

static void bs_on_data(np_stream *s, const uint8_t *d, size_t n, void *ud) {
  (void)s, (void)d, (void)n, (void)ud;
}

static void bs_on_close(np_stream *s, int err, void *ud) {
  int i = (int)(intptr_t)ud;
  (void)err;
  if (i >= 0 && i < NBSTREAM && bstream[i] == s)
    bstream[i] = NULL;
}

static const np_stream_cbs bs_cbs = {sizeof(np_stream_cbs), NULL, bs_on_data,
                                     bs_on_close, NULL};

static void b_stream_opened(void *ud, int err, np_stream *s,
                            const char *proto) {
  int i = (int)(intptr_t)ud;
  (void)proto;
  if (err != 0 || s == NULL)
    return;
  if (bstream[i] != NULL || B.h == NULL) {
    s->ops->reset(s);
    return;
  }
  np_stream_set_cbs(s, &bs_cbs, ud);
  bstream[i] = s;
}

static void op_b(rd *r) {
  uint8_t t = u8(r), a = u8(r);
  void *net;
  const np_net_ops *ops;
  if (B.h == NULL) {
    if (t % 8 == 7)
      host_b_start();
    return;
  }
  ops = np_host_net(B.h, &net);
  switch (t % 8) {
  case 0: { /* B connects to A */
    const uint8_t *bins[2];
    size_t lens[2], n = host_addrs(&A, bins, lens, 2);
    void *hd;
    if (ops && n)
      ops->connect(net, &g_idA.id, bins, lens, n, 5000, b_net_done, NULL, &hd);
    break;
  }
  case 1: { /* B calls A (a control client's or a plugin's handler) */
    int i = a % NBCALL;
    uint8_t req[8] = {a, 1, 2, 3};
    if (bcall_live[i])
      break;
    if (np_host_call(B.h, g_idA.id_str, protos[(a >> 2) % NPROTO], req,
                     (a >> 5) % 8, b_call_done, (void *)(intptr_t)i,
                     &bcall[i]) == 0)
      bcall_live[i] = 1;
    break;
  }
  case 2: { /* B withdraws a call */
    int i = a % NBCALL;
    if (bcall_live[i]) {
      np_outgoing *o = bcall[i];
      bcall[i] = NULL;
      bcall_live[i] = 0;
      np_host_call_cancel(B.h, o);
    }
    break;
  }
  case 3: { /* B opens a stream to A */
    const char *p = protos[(a >> 1) % NPROTO];
    void *hd;
    int i = a % NBSTREAM;
    if (ops && bstream[i] == NULL)
      ops->open_stream(net, &g_idA.id, &p, 1, (a & 0x80) ? NP_NET_LAZY : 0,
                       3000, b_stream_opened, (void *)(intptr_t)i, &hd);
    break;
  }
  case 4: { /* B writes to / closes / resets its stream */
    int i = a % NBSTREAM;
    np_stream *s = bstream[i];
    if (s == NULL || s->closed)
      break;
    if ((a >> 1) % 4 == 0) {
      bstream[i] = NULL;
      s->ops->reset(s);
    } else if ((a >> 1) % 4 == 1) {
      s->ops->close(s);
    } else {
      s->ops->write(s, (const uint8_t *)"fuzzdata", 1 + (a >> 3) % 8);
    }
    break;
  }
  case 5: /* B hangs up on A */
    if (ops)
      ops->disconnect(net, &g_idA.id);
    break;
  case 6: /* B stops (or resumes) answering: packets pile up unread */
    B.frozen = !B.frozen;
    break;
  default: /* B goes away (graceful close of its connections) */
    host_b_kill();
    break;
  }
}

/* ---- plugins and reloads -------------------------------------------------------- */

static void plug_toggle(uint8_t a) {
  size_t i = a % NPLUG;
  char dst[700];
  const char *base = strrchr(plug_src[i], '/') + 1;
  if (!g_plug_path[i][0])
    return;
  /* tp_good and tp_good_v2 share one file name in the folder: v2 replaces
   * it (the "changed on disk" path). */
  if (i == 3)
    base = "tp_good.so";
  snprintf(dst, sizeof(dst), "%s/%s", g_plugdir, base);
  if ((a >> 3) & 1 || !g_plug_on[i]) {
    unlink(dst);
    if (symlink(g_plug_path[i], dst) != 0)
      return;
    g_plug_on[i] = 1;
    if (i == 2)
      g_plug_on[3] = 0;
    if (i == 3)
      g_plug_on[2] = 0;
  } else {
    unlink(dst);
    g_plug_on[i] = 0;
  }
}

static void op_plugin(rd *r) {
  uint8_t t = u8(r), a = u8(r);
  switch (t % 4) {
  case 0:
  case 1: /* add/remove/replace a plugin file, reload (SIGHUP) or not */
    plug_toggle(a);
    if (t & 4 && A.h)
      np_daemon_reload(A.d);
    break;
  case 2: /* new config text, then reload */
    g_conf_variant = a % 6;
    write_ini(g_conf_variant);
    if (A.h)
      np_daemon_reload(A.d);
    break;
  default: /* SIGHUP */
    if (A.h)
      np_daemon_reload(A.d);
    break;
  }
}

/* ---- the program -------------------------------------------------------------------- */

static const int64_t jumps_ms[] = {5,    20,   100,   250,   1000,
                                   2100, 5100, 10100, 31000, 61000};

static void begin(void) {
  g_virtual = 1;
  g_conf_variant = 0;
  write_ini(0);
  memset(g_plug_on, 0, sizeof(g_plug_on));
  host_a_start();
  host_b_start();
  {
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    set_sun(&un, g_cb);
    unlink(g_cb);
    g_cblisten = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g_cblisten < 0 ||
        bind(g_cblisten, (struct sockaddr *)&un, sizeof(un)) != 0 ||
        listen(g_cblisten, 16) != 0)
      abort();
  }
}

static void end(void) {
  DIR *d;
  struct dirent *e;
  char p[700];
  for (int i = 0; i < NCL; i++)
    cl_close(&cl[i]);
  B.frozen = 0;
  step(4);
  np_daemon_del(A.d);
  A.h = NULL;
  host_b_kill();
  ev_loop_destroy(A.ev);
  A.ev = NULL;
  if (B.ev)
    ev_loop_destroy(B.ev);
  B.ev = NULL;
  close(g_cblisten);
  g_cblisten = -1;
  unlink(g_cb);
  if ((d = opendir(g_plugdir)) != NULL) {
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      snprintf(p, sizeof(p), "%s/%s", g_plugdir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  g_virtual = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rd r = {data, size};
  init_once();
  {
    const char *l = getenv("NP_FUZZ_LOG");
    np_log_set_level(l ? np_log_level_parse(l) : NP_LOG_ERROR);
  }
  begin();
  for (int ops = 0; ops < MAX_OPS && r.n > 0; ops++) {
    uint8_t op = u8(&r);
    if (g_trace)
      fprintf(stderr, "fuzz_seq: op %d (%u)\n", op % 16, op);
    switch (op % 16) {
    case 0:
      cl_open(u8(&r));
      break;
    case 1:
    case 2:
    case 3:
      op_request(&r);
      break;
    case 4:
    case 5:
      op_persist(&r);
      break;
    case 6: { /* read part of the answers */
      fcl *c = cl_pick(u8(&r));
      size_t n = (size_t)u8(&r) * 16 + 1;
      if (c)
        cl_read(c, n);
      break;
    }
    case 7: { /* hang up: close, or shutdown one direction */
      fcl *c = cl_pick(u8(&r));
      uint8_t how = u8(&r);
      if (c == NULL)
        break;
      if (how % 3 == 0)
        cl_close(c);
      else if (how % 3 == 1)
        shutdown(c->fd, SHUT_WR);
      else
        shutdown(c->fd, SHUT_RD);
      break;
    }
    case 8:
    case 9: /* run the loops */
      step(1 + u8(&r) % 16);
      break;
    case 10: { /* time passes: timers expire */
      uint8_t j = u8(&r);
      g_vclock_ns += jumps_ms[j % 10] * 1000000LL;
      step(1 + (j >> 4));
      break;
    }
    case 11:
      op_b(&r);
      break;
    case 12:
      op_plugin(&r);
      break;
    case 13: { /* spliced / callback connections: raw bytes, accept */
      uint8_t a = u8(&r);
      if (a & 1) {
        cl_accept_cb(a >> 1);
      } else {
        fcl *c = cl_pick(a >> 1);
        uint8_t raw[32];
        size_t n = bytes(&r, raw, sizeof(raw));
        if (c && n)
          (void)!send(c->fd, raw, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      break;
    }
    default: /* a plain step, the most common event */
      step(2);
      break;
    }
  }
  end();
  return 0;
}
