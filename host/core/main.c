/* natpeer-host: argv -> np_conf_load -> identity -> np_host -> ev_run. */
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

static void usage(FILE *f) {
  fprintf(f,
          "Usage: natpeer-host [--config FILE] [OPTION]...\n"
          "Run a natpeer host: a libp2p peer (QUIC with libp2p TLS, TCP "
          "with Noise and\n"
          "yamux; identify, ping, unary calls, raw streams and the Kademlia "
          "DHT) whose\n"
          "protocol handlers are plugins, driven through a p2pd-compatible "
          "control socket.\n"
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
