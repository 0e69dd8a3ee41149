/* A protocol module of the host: identify (np_idsvc), ping (np_ping),
 * unary calls (np_unarysvc), and the ones to come (Kademlia, AutoNAT,
 * relay, DCUtR). A module is a file pair and one row in np_host.c's module
 * list; it reaches the network only through what plugins and the control
 * socket use (the protocol table, np_stream, np_net_ops), the host's event
 * bus and peerstore, and the few np_swarm_* hooks. */
#ifndef NP_MODULE_H
#define NP_MODULE_H

typedef struct np_host np_host;

typedef struct np_module {
  const char *name;
  /* Register protocols (NP_OWNER_HOST), subscribe to events, install
   * hooks. Runs in np_daemon_start once the network is up. Returns 0 and
   * *state, or an error (the host does not start). */
  int (*start)(np_host *h, void **state);
  /* Undo all of it: streams reset (their on_close runs), pending work
   * withdrawn or completed with NP_ECANCELED, registrations, hooks and
   * subscriptions removed, |state| freed. Runs before the network goes,
   * in reverse order of start. */
  void (*stop)(void *state);
} np_module;

#endif
