/* Test plugin built against the frozen ABI 1.0 header: smaller descriptor,
 * smaller host table. It must load and work on a newer-minor host. */
#include "abi_1_0/natpeer/plugin.h"
#include <stdlib.h>

static const np_host_api *g_api;

static void on_call(np_call *c, const uint8_t *req, size_t len, void *ud) {
  static const char msg[] = "old:";
  uint8_t buf[300];
  size_t n = sizeof(msg) - 1;
  (void)ud;
  for (size_t i = 0; i < n; i++)
    buf[i] = (uint8_t)msg[i];
  for (size_t i = 0; i < len && n < sizeof(buf); i++)
    buf[n++] = req[i];
  g_api->call_reply(c, buf, n);
}

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  (void)ud;
  /* The host's table may be longer than ours, never shorter. */
  if (api->struct_size < sizeof(np_host_api) || api->abi_major != 1)
    return NP_ENOTSUP;
  g_api = api;
  return api->register_unary(p, "tp.old", on_call, NULL);
}

static void fini(np_plugin *p, void *ud) { (void)p, (void)ud; }

NP_PLUGIN_DEFINE("tp_old_minor", "0.9.0", init, fini)
