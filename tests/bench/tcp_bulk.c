/* tcp_bulk: TCP + Noise + yamux bulk throughput between two processes on
 * loopback, with np_ttcp alone (no swarm, no plugins): the transport's
 * own ceiling, to set against iperf3 and the js baseline.
 *
 *   tcp_bulk [--bytes MiB] [--chunk KiB] [--streams N]
 *
 * A child process listens and reads; the parent dials, writes --bytes
 * MiB split over --streams streams in --chunk KiB writes, and prints one
 * JSON line when the receiver has all of it (its FIN comes back). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "np_identity.h"
#include "np_log.h"
#include "np_loop.h"
#include "np_multiaddr.h"
#include "np_ttcp.h"

typedef struct bstream {
  np_cstream *s;
  uint64_t left;
  int done, fin_sent;
} bstream;

static size_t g_chunk = 64 * 1024;
static uint8_t *g_buf;
static int g_done, g_up;
static bstream g_streams[64];
static int g_nstreams = 1;
static np_conn *g_conn;

static void pump(bstream *b) {
  while (b->left > 0) {
    size_t n = b->left < g_chunk ? (size_t)b->left : g_chunk;
    int rv = np_cstream_write(b->s, g_buf, n);
    if (rv == NP_ELIMIT)
      return;
    if (rv < 0) {
      fprintf(stderr, "write: %s\n", np_errname(rv));
      exit(1);
    }
    b->left -= n;
  }
  if (!b->fin_sent) {
    b->fin_sent = 1;
    np_cstream_shutdown(b->s);
  }
}

static void conn_up(np_conn *c, void *ud) {
  (void)ud;
  g_conn = c;
  g_up = 1;
}
static void conn_down(np_conn *c, int err, void *ud) {
  (void)c, (void)ud;
  if (!g_done)
    fprintf(stderr, "conn_down: %s\n", np_errname(err));
  g_done = 1;
}
static void stream_open(np_cstream *s, void *ud) {
  (void)ud;
  s->ud = NULL; /* server side: a sink */
}
static void stream_data(np_cstream *s, const uint8_t *d, size_t len, int fin,
                        void *ud) {
  (void)d, (void)len, (void)ud;
  if (fin && s->ud == NULL)
    np_cstream_shutdown(s);
}
static void stream_close(np_cstream *s, int err, void *ud) {
  bstream *b = s->ud;
  (void)ud;
  if (b != NULL) {
    b->done = 1;
    if (err != 0)
      fprintf(stderr, "stream_close: %s\n", np_errname(err));
  }
}
static void stream_writable(np_cstream *s, void *ud) {
  (void)ud;
  if (s->ud != NULL)
    pump(s->ud);
}

static const np_conn_cbs cbs = {conn_up,     conn_down,    stream_open,
                                stream_data, stream_close, stream_writable,
                                NULL};

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  uint64_t mib = 256;
  struct ev_loop *ev = ev_default_loop(0);
  np_loop *loop;
  np_identity id;
  np_transport *t;
  uint8_t addr[128];
  np_ssize n;
  int pfd[2];
  pid_t pid;
  double t0, c0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--bytes") == 0)
      mib = strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--chunk") == 0)
      g_chunk = strtoull(argv[i + 1], NULL, 10) * 1024;
    else if (strcmp(argv[i], "--streams") == 0)
      g_nstreams = atoi(argv[i + 1]);
  }
  if (g_nstreams < 1 || g_nstreams > 64 || g_chunk == 0)
    return 2;
  signal(SIGPIPE, SIG_IGN);
  np_log_set_level(NP_LOG_WARN);
  if (pipe(pfd) != 0)
    return 1;
  pid = fork();
  np_loop_new(&loop, ev);
  np_identity_generate(&id);
  if (np_ttcp_new(&t, loop, &id, NULL, &cbs, NULL) != 0)
    return 1;
  if (pid == 0) { /* receiver */
    n = np_maddr_parse("/ip4/127.0.0.1/tcp/0", 20, addr, sizeof(addr));
    t->ops->listen(t, addr, (size_t)n);
    n = t->ops->listen_addr(t, 0, addr, sizeof(addr));
    n = np_maddr_append_p2p(addr, (size_t)n, sizeof(addr), &id.id);
    if (write(pfd[1], addr, (size_t)n) != n)
      return 1;
    while (!g_done)
      ev_run(ev, EVRUN_ONCE);
    t->ops->del(t);
    return 0;
  }
  n = read(pfd[0], addr, sizeof(addr));
  g_buf = calloc(1, g_chunk);
  if (n <= 0 || t->ops->dial(t, addr, (size_t)n, NULL, &g_conn) != 0)
    return 1;
  while (!g_up && !g_done)
    ev_run(ev, EVRUN_ONCE);
  t0 = ev_time();
  c0 = cpu_s();
  for (int i = 0; i < g_nstreams; i++) {
    bstream *b = &g_streams[i];
    b->left = (mib << 20) / (uint64_t)g_nstreams;
    if (np_cstream_open(g_conn, b, &b->s) != 0)
      return 1;
    pump(b);
  }
  for (;;) {
    int all = 1;
    for (int i = 0; i < g_nstreams; i++)
      all &= g_streams[i].done;
    if (all || g_done)
      break;
    ev_run(ev, EVRUN_ONCE);
  }
  {
    double dt = ev_time() - t0, cpu = cpu_s() - c0;
    printf("{\"MiB\": %llu, \"streams\": %d, \"chunk\": %zu, \"s\": %.3f, "
           "\"MBps\": %.1f, \"sender_cpu_s\": %.3f}\n",
           (unsigned long long)mib, g_nstreams, g_chunk, dt,
           (double)(mib << 20) / dt / 1e6, cpu);
  }
  t->ops->del(t);
  waitpid(pid, NULL, 0);
  np_loop_del(loop);
  free(g_buf);
  return 0;
}
