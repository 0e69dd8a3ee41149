/* natpeer-host: argv -> np_conf_load -> identity -> np_host -> ev_run. */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "np_conf.h"
#include "np_crypto.h"
#include "np_err.h"
#include "np_daemon.h"
#include "np_host.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_ctl.h"
#include "np_p2pdflags.h"
#include "np_multiaddr.h"

static void usage(FILE *f) {
  fprintf(f,
          "Usage: natpeer-host [--config FILE] [OPTION]...\n"
          "Run a natpeer host: a libp2p peer (QUIC with libp2p TLS, TCP "
          "with Noise or\n"
          "TLS and yamux; identify, ping, unary calls, raw streams, the "
          "Kademlia DHT,\n"
          "AutoNAT, circuit relay v2 and DCUtR hole punching) whose "
          "protocol handlers\n"
          "are plugins, driven through a p2pd-compatible control socket. "
          "Started as\n"
          "natpeer-p2pd (or p2pd) it takes go-libp2p-daemon's flags instead "
          "(-h).\n"
          "\n"
          "  -c, --config FILE     read FILE (INI; every key is documented in\n"
          "                        " NP_SYSCONFDIR "/natpeer.ini); without it,\n"
          "                        the built-in defaults apply\n"
          "      --check-config    validate the config and exit (0 ok, 2 "
          "error)\n"
          "      --print-peer-id   print this host's peer ID and exit (creates "
          "the\n"
          "                        identity file if missing)\n"
          "      --call PROTO      start, call handler PROTO of this host "
          "in-process,\n"
          "                        print the reply and exit\n"
          "      --data STRING     request bytes for --call (default empty)\n"
          "  -l, --log-level LVL   error, warn, info or debug (overrides the "
          "config)\n"
          "  -V, --version         print the version and exit\n"
          "  -h, --help            show this help and exit\n"
          "\n"
          "Signals: SIGINT/SIGTERM stop gracefully; SIGHUP re-reads the config "
          "and\n"
          "re-scans the plugin folder (a bad config is rejected, the running "
          "one kept).\n"
          "Exit status: 0 ok, 1 runtime error, 2 usage or configuration "
          "error.\n");
}

typedef struct call_ctx {
  np_daemon *d;
  int rc;
} call_ctx;

static void call_done(void *ud, int err, const uint8_t *data, size_t len) {
  call_ctx *c = ud;
  if (err == 0) {
    fwrite(data, 1, len, stdout);
    if (len == 0 || data[len - 1] != '\n')
      fputc('\n', stdout);
    fflush(stdout);
    c->rc = 0;
  } else {
    fprintf(stderr, "natpeer-host: call failed: %s", np_strerror(err));
    if (len)
      fprintf(stderr, ": %.*s", (int)len, (const char *)data);
    fputc('\n', stderr);
    c->rc = 1;
  }
  np_daemon_stop(c->d);
}

static void print_unbuilt(const char *section, const char *name, int line,
                          void *ud) {
  fprintf(stderr,
          "%s:%d: [%s] %s: warning: ignored, [%s] is not built yet in this "
          "version\n",
          (const char *)ud, line, section, name, section);
}

/* ---- natpeer-p2pd: go-libp2p-daemon's command line and lifetime --------- */

typedef struct p2pd_life {
  np_daemon *d;
  struct ev_loop *ev;
  ev_timer idle_w;   /* -idleTimeout: no persistent connection yet */
  ev_timer last_w;   /* the last persistent connection closed */
  ev_timer parent_w; /* the parent process is gone */
  ev_signal sig[3];  /* INT, TERM, HUP */
  pid_t ppid;
  int had_persist;
  const char *why;
  int rc;           /* exit status */
  int quiet;        /* -q */
  int bannered;
  struct p2pd_boot *boot; /* -b connects in flight */
} p2pd_life;

static void boot_cancel(struct p2pd_boot *b);

/* p2pd's start-up lines, once the daemon is up (after -b connected). */
static void p2pd_banner(p2pd_life *l) {
  const char *a, *me = np_host_identity(np_daemon_host(l->d))->id_str;
  size_t ml = strlen(me);
  if (l->quiet || l->bannered || l->why)
    return;
  l->bannered = 1;
  printf("Control socket: %s\nPeer ID: %s\nPeer Addrs:\n",
         np_daemon_control_addr(l->d), me);
  /* p2pd's lines exactly: its addresses carry no /p2p/ID suffix. */
  for (size_t i = 0; (a = np_daemon_addr_text(l->d, i)) != NULL; i++) {
    size_t al = strlen(a);
    if (al > ml + 5 && strcmp(a + al - ml, me) == 0 &&
        memcmp(a + al - ml - 5, "/p2p/", 5) == 0)
      al -= ml + 5;
    printf("%.*s\n", (int)al, a);
  }
  fflush(stdout);
}

static void life_stop(p2pd_life *l, const char *why) {
  if (l->why)
    return;
  l->why = why;
  np_info("p2pd", "exiting reason=\"%s\"", why);
  ev_timer_stop(l->ev, &l->idle_w);
  ev_timer_stop(l->ev, &l->parent_w);
  ev_timer_stop(l->ev, &l->last_w);
  for (int i = 0; i < 3; i++)
    ev_signal_stop(l->ev, &l->sig[i]);
  if (l->boot)
    boot_cancel(l->boot); /* before the network goes */
  np_daemon_stop(l->d);
}

static void on_idle_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  p2pd_life *l = np_container_of(w, p2pd_life, idle_w);
  (void)ev, (void)revents;
  life_stop(l, "no persistent control connection within -idleTimeout");
}

static void on_last_closed(struct ev_loop *ev, ev_timer *w, int revents) {
  p2pd_life *l = np_container_of(w, p2pd_life, last_w);
  (void)ev, (void)revents;
  life_stop(l, "the last persistent control connection closed");
}

/* getppid() rather than PR_SET_PDEATHSIG: the death signal follows the
 * parent *thread*, and hivemind may spawn the daemon from a thread that
 * ends long before its process does. */
static void on_parent_check(struct ev_loop *ev, ev_timer *w, int revents) {
  p2pd_life *l = np_container_of(w, p2pd_life, parent_w);
  (void)ev, (void)revents;
  if (getppid() != l->ppid)
    life_stop(l, "the parent process exited");
}

/* p2pd has no reload: SIGHUP ends it as it ends a Go program (natpeer's
 * reload would re-read natpeer.ini without the command line). */
static void on_p2pd_signal(struct ev_loop *ev, ev_signal *w, int revents) {
  p2pd_life *l = w->data;
  (void)ev, (void)revents;
  life_stop(l, w->signum == SIGHUP  ? "signal HUP"
               : w->signum == SIGINT ? "signal INT"
                                     : "signal TERM");
}

/* np_ctl's hook: count changes only arm timers (see np_ctl.h). */
static void on_persist(void *ud, unsigned n) {
  p2pd_life *l = ud;
  if (n > 0) {
    l->had_persist = 1;
    ev_timer_stop(l->ev, &l->idle_w); /* the fork: once one opened */
    ev_timer_stop(l->ev, &l->last_w);
  } else if (l->had_persist) {
    ev_timer_set(&l->last_w, 0., 0.);
    ev_timer_start(l->ev, &l->last_w);
  }
}

/* -b: p2pd connects to its bootstrap peers at start and exits when none
 * answers ("failed to connect to bootstrap peers"); natpeer's DHT keeps
 * retrying, which is natpeer-host's behaviour. */
#define BOOT_MAX 64
typedef struct p2pd_boot {
  p2pd_life *life;
  const np_net_ops *ops;
  void *net;
  void *h[BOOT_MAX];
  unsigned pending, ok;
  struct p2pd_boot_one {
    struct p2pd_boot *b;
    unsigned i;
  } one[BOOT_MAX];
} p2pd_boot;

static void boot_done(void *ud, int err) {
  struct p2pd_boot_one *o = ud;
  p2pd_boot *b = o->b;
  b->h[o->i] = NULL;
  b->pending--;
  if (err == 0 && b->ok++ == 0)
    p2pd_banner(b->life);
  else
    np_warn("p2pd", "bootstrap-connect-failed error=%s", np_errname(err));
  if (b->pending == 0 && b->ok == 0) {
    b->life->rc = 1; /* the message is the last line, after the logs */
    life_stop(b->life, "failed to connect to bootstrap peers");
  }
}

/* Connect to every peer of |peers| (text multiaddrs with /p2p/). */
static void boot_start(p2pd_boot *b, np_host *h, const np_strv *peers,
                       uint64_t timeout_ms) {
  uint8_t bin[NP_MADDR_MAX];
  b->ops = np_host_net(h, &b->net);
  for (size_t i = 0; b->ops && i < peers->n && i < BOOT_MAX; i++) {
    const uint8_t *addrs[1];
    size_t lens[1], off = 0, cut = 0;
    np_maddr_comp c;
    np_peerid id;
    np_ssize n = np_maddr_parse(peers->v[i], strlen(peers->v[i]), bin,
                                sizeof(bin));
    if (n < 0 || np_maddr_get_p2p(bin, (size_t)n, &id) != 0)
      continue; /* np_conf checked them */
    /* the address up to its /p2p/ component */
    for (size_t prev = 0; np_maddr_next(bin, (size_t)n, &off, &c) == 1;
         prev = off) {
      if (c.code == NP_MADDR_P2P) {
        cut = prev;
        break;
      }
    }
    if (np_peerid_equal(&id, &np_host_identity(h)->id))
      continue; /* our own address in a shared list */
    addrs[0] = bin;
    lens[0] = cut;
    b->one[i].b = b;
    b->one[i].i = (unsigned)i;
    b->pending++;
    if (b->ops->connect(b->net, &id, addrs, lens, cut ? 1 : 0, timeout_ms,
                        boot_done, &b->one[i], &b->h[i]) != 0) {
      b->pending--;
      b->h[i] = NULL;
    }
  }
  if (b->pending == 0 && peers->n > 0) {
    b->life->rc = 1; /* the message is the last line, after the logs */
    life_stop(b->life, "failed to connect to bootstrap peers");
  }
}

static void boot_cancel(p2pd_boot *b) {
  if (b->ops == NULL)
    return;
  for (size_t i = 0; i < BOOT_MAX; i++)
    if (b->h[i]) {
      b->ops->cancel(b->net, b->h[i]);
      b->h[i] = NULL;
    }
}

static const char *prog_base(const char *argv0) {
  const char *b = strrchr(argv0, '/');
  return b ? b + 1 : argv0;
}

/* A throw-away data directory (p2pd keeps no state): removed at exit. */
static void rm_flat_dir(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[4096];
  if (d != NULL) {
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
      unlink(path);
    }
    closedir(d);
  }
  rmdir(dir);
}

/* -id FILE as p2pd reads it: any libp2p PrivateKey np_identity decodes.
 * hivemind writes its key files with the default umask (0644): p2pd takes
 * them, so a loose mode is a warning here, not natpeer-host's refusal. */
static int p2pd_load_id(np_identity *id, const char *prog, const char *path,
                        char *err, size_t errlen) {
  uint8_t buf[4097];
  struct stat st;
  size_t n;
  int rv;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, errlen, "-id %s: %s", path, strerror(errno));
    return NP_ESYS;
  }
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    snprintf(err, errlen, "-id %s: not a regular file", path);
    return NP_EINVAL;
  }
  n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  if (st.st_mode & 077)
    fprintf(stderr,
            "%s: warning: -id %s: key file is accessible by group or others "
            "(mode %04o); chmod 600 it\n",
            prog, path, (unsigned)(st.st_mode & 07777));
  rv = n >= sizeof(buf) ? NP_ELIMIT : np_identity_decode_private(id, buf, n);
  memset(buf, 0, sizeof(buf));
  if (rv != 0)
    snprintf(err, errlen, "-id %s: %s", path,
             rv == NP_ENOTSUP  ? "key type not supported"
             : rv == NP_ELIMIT ? "larger than 4 KiB: not a libp2p PrivateKey"
                               : "not a libp2p PrivateKey (protobuf)");
  return rv;
}

static int p2pd_main(int argc, char **argv) {
  const char *prog = prog_base(argv[0]);
  np_p2pd_opts o;
  np_conf *conf = NULL;
  np_identity id;
  np_daemon *daemon = NULL;
  struct ev_loop *ev;
  p2pd_life life;
  p2pd_boot boot;
  char err[1024], tmpdir[] = "/tmp/natpeer-p2pd-XXXXXX";
  int rv, tmp = 0, created = 0;

  memset(&life, 0, sizeof(life));
  memset(&boot, 0, sizeof(boot));
  life.ppid = getppid();
  rv = np_p2pd_parse(&o, prog, argc - 1, argv + 1, stderr);
  if (rv == NP_P2PD_EXIT_OK)
    return 0;
  if (rv != NP_P2PD_RUN)
    return 2;
  if ((rv = np_p2pd_conf(&o, &conf, err, sizeof(err))) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    np_p2pd_opts_free(&o);
    return 2;
  }
  np_log_set_level(conf->host.log_level);
  np_log_set_timestamps(conf->host.log_timestamps);
  np_daemon_conf_warnings(conf);
  if (np_conf_key_line(conf, "host", "data_dir") == 0) {
    if (mkdtemp(tmpdir) == NULL) {
      fprintf(stderr, "%s: mkdtemp %s: failed\n", prog, tmpdir);
      goto fail2;
    }
    tmp = 1;
    free(conf->host.data_dir);
    if ((conf->host.data_dir = strdup(tmpdir)) == NULL)
      goto fail2;
  }

  /* Identity: -id, else -config's identity_file, else a new one per run
   * (as p2pd without -id). */
  if (o.id_file)
    rv = p2pd_load_id(&id, prog, o.id_file, err, sizeof(err));
  else if (np_conf_key_line(conf, "host", "identity_file"))
    rv = np_identity_load(&id, conf->host.identity_file, &created, err,
                          sizeof(err));
  else if ((rv = np_identity_generate(&id)) != 0)
    snprintf(err, sizeof(err), "identity: %s", np_strerror(rv));
  if (rv != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    goto fail2;
  }

  signal(SIGPIPE, SIG_IGN);
  ev = ev_default_loop(EVFLAG_AUTO);
  rv = np_daemon_new(&daemon, ev, conf, &id);
  np_identity_clear(&id);
  if (rv != 0) {
    fprintf(stderr, "%s: %s\n", prog, np_strerror(rv));
    goto fail2;
  }
  conf = NULL; /* the daemon's now */
  rv = np_daemon_start(daemon, NP_DAEMON_CONTROL | NP_DAEMON_NET);
  if (rv != 0) {
    fprintf(stderr, "%s: start failed: %s\n", prog, np_strerror(rv));
    goto fail;
  }

  /* Lifetime, in this mode only: the fork's -idleTimeout, exit with the
   * last persistent control connection, and with the parent. */
  life.d = daemon;
  life.ev = ev;
  ev_timer_init(&life.idle_w, on_idle_timeout, 0., 0.);
  ev_timer_init(&life.last_w, on_last_closed, 0., 0.);
  ev_timer_init(&life.parent_w, on_parent_check, 1., 1.);
  {
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
      ev_signal_init(&life.sig[i], on_p2pd_signal, sigs[i]);
      life.sig[i].data = &life;
      ev_signal_start(ev, &life.sig[i]);
    }
  }
  np_ctl_p2pd_mode(np_daemon_ctl(daemon), on_persist, &life);
  if (o.idle_timeout_ns > 0) {
    ev_timer_set(&life.idle_w, (double)o.idle_timeout_ns / 1e9, 0.);
    ev_timer_start(ev, &life.idle_w);
  }
  if (life.ppid > 1) {
    if (getppid() != life.ppid) {
      life_stop(&life, "the parent process exited");
    } else {
      ev_timer_start(ev, &life.parent_w);
    }
  }

  life.quiet = o.quiet;
  if (o.bootstrap && np_host_conf(np_daemon_host(daemon))->bootstrap.peers.n) {
    const np_conf *hc = np_host_conf(np_daemon_host(daemon));
    boot.life = &life;
    life.boot = &boot;
    boot_start(&boot, np_daemon_host(daemon), &hc->bootstrap.peers,
               hc->bootstrap.connect_timeout_ms);
  } else {
    p2pd_banner(&life);
  }
  if (!life.why) /* an ev_break before ev_run would be lost */
    ev_run(ev, 0);
  ev_timer_stop(ev, &life.parent_w);
  for (int i = 0; i < 3; i++)
    ev_signal_stop(ev, &life.sig[i]);
  ev_timer_stop(ev, &life.idle_w);
  ev_timer_stop(ev, &life.last_w);
  np_daemon_del(daemon);
  np_crypto_cleanup();
  ev_loop_destroy(ev);
  if (tmp)
    rm_flat_dir(tmpdir);
  np_p2pd_opts_free(&o);
  /* p2pd's message is the last line: hivemind's P2P.create reports the
   * daemon's last line when it exits early. */
  if (life.why && strcmp(life.why, "failed to connect to bootstrap peers") == 0)
    fprintf(stderr, "%s\n", life.why);
  return life.rc;
fail:
  np_daemon_del(daemon);
  np_crypto_cleanup();
  if (tmp)
    rm_flat_dir(tmpdir);
  np_p2pd_opts_free(&o);
  return 1;
fail2:
  np_conf_del(conf);
  if (tmp)
    rm_flat_dir(tmpdir);
  np_p2pd_opts_free(&o);
  return 2;
}

int main(int argc, char **argv) {
  enum { OPT_CHECK = 256, OPT_PRINT_ID, OPT_CALL, OPT_DATA };
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"check-config", no_argument, NULL, OPT_CHECK},
      {"print-peer-id", no_argument, NULL, OPT_PRINT_ID},
      {"call", required_argument, NULL, OPT_CALL},
      {"data", required_argument, NULL, OPT_DATA},
      {"log-level", required_argument, NULL, 'l'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config = NULL, *call = NULL, *data = "";
  int check = 0, print_id = 0, level = -1, o, rv, created = 0;
  char err[1024];
  np_conf *conf = NULL;
  np_identity id;
  np_daemon *daemon = NULL;
  np_host *host = NULL;
  struct ev_loop *ev;
  call_ctx cc;

  if (argc > 0 && (strcmp(prog_base(argv[0]), "p2pd") == 0 ||
                   strcmp(prog_base(argv[0]), "natpeer-p2pd") == 0))
    return p2pd_main(argc, argv);
  while ((o = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
    switch (o) {
    case 'c':
      config = optarg;
      break;
    case OPT_CHECK:
      check = 1;
      break;
    case OPT_PRINT_ID:
      print_id = 1;
      break;
    case OPT_CALL:
      call = optarg;
      break;
    case OPT_DATA:
      data = optarg;
      break;
    case 'l':
      if ((level = np_log_level_parse(optarg)) < 0) {
        fprintf(stderr,
                "natpeer-host: --log-level: invalid value \"%s\" (expected "
                "error, warn, info or debug)\n",
                optarg);
        return 2;
      }
      break;
    case 'V':
      printf("natpeer-host %s (plugin ABI %d.%d)\n", PACKAGE_VERSION,
             NP_ABI_MAJOR, NP_ABI_MINOR);
      return 0;
    case 'h':
      usage(stdout);
      return 0;
    default:
      fprintf(stderr, "Try 'natpeer-host --help'.\n");
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr,
            "natpeer-host: unexpected argument \"%s\"\nTry 'natpeer-host "
            "--help'.\n",
            argv[optind]);
    return 2;
  }

  /* 1. The whole config is valid before anything is bound or written. */
  rv = config ? np_conf_load(&conf, config, err, sizeof(err))
              : np_conf_new_default(&conf);
  if (rv != 0) {
    fprintf(stderr, "%s\n", config ? err : np_strerror(rv));
    return 2;
  }
  np_log_set_level(level >= 0 ? level : conf->host.log_level);
  np_log_set_timestamps(conf->host.log_timestamps);
  if (check) {
    /* Valid, but say what this build will ignore, in the errors' form. */
    np_conf_foreach_set(conf, NP_KEY_UNBUILT, print_unbuilt, (void *)config);
    printf("%s: ok\n", config ? config : "(built-in defaults)");
    np_conf_del(conf);
    return 0;
  }

  np_daemon_conf_warnings(conf);

  /* 2. Identity. */
  rv = np_identity_load(&id, conf->host.identity_file, &created, err,
                        sizeof(err));
  if (rv != 0) {
    fprintf(stderr, "natpeer-host: %s\n", err);
    np_conf_del(conf);
    return 2;
  }
  if (created)
    np_info("host", "identity-created file=%s peer=%s",
            conf->host.identity_file, id.id_str);
  if (print_id) {
    printf("%s\n", id.id_str);
    np_identity_clear(&id);
    np_conf_del(conf);
    np_crypto_cleanup();
    return 0;
  }

  /* 3. Host. */
  signal(SIGPIPE, SIG_IGN);
  ev = ev_default_loop(EVFLAG_AUTO);
  rv = np_daemon_new(&daemon, ev, conf, &id);
  np_identity_clear(&id);
  if (rv != 0) {
    fprintf(stderr, "natpeer-host: %s\n", np_strerror(rv));
    np_conf_del(conf);
    return 1;
  }
  host = np_daemon_host(daemon);
  rv = np_daemon_start(daemon, call ? NP_DAEMON_SIGNALS
                                    : NP_DAEMON_SIGNALS | NP_DAEMON_CONTROL |
                                          NP_DAEMON_NET);
  if (rv != 0) {
    fprintf(stderr, "natpeer-host: start failed: %s\n", np_strerror(rv));
    np_daemon_del(daemon);
    return 1;
  }
  if (!call) {
    /* Start-up banner on stdout, in the libp2p daemon's form: scripts and
     * test harnesses read the control address and dialable addresses. */
    const char *a;
    printf("Control socket: %s\nPeer ID: %s\nPeer Addrs:\n",
           np_daemon_control_addr(daemon), np_host_identity(host)->id_str);
    for (size_t i = 0; (a = np_daemon_addr_text(daemon, i)) != NULL; i++)
      printf("%s\n", a);
    fflush(stdout);
  }
  cc.d = daemon;
  cc.rc = 0;
  if (call) {
    cc.rc = 1;
    rv = np_host_call(host, np_host_identity(host)->id_str, call,
                      (const uint8_t *)data, strlen(data), call_done, &cc,
                      NULL);
    if (rv != 0) {
      fprintf(stderr, "natpeer-host: call %s: %s\n", call, np_strerror(rv));
      np_daemon_del(daemon);
      np_crypto_cleanup();
      return rv == NP_ENOPROTO ? 1 : 1;
    }
  }
  ev_run(ev, 0);
  np_daemon_del(daemon);
  np_crypto_cleanup();
  ev_loop_destroy(ev);
  return cc.rc;
}
