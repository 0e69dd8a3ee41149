/* Test plugin built against a frozen older header (ABI 1.0 unless the
 * build says otherwise): smaller descriptor, smaller host table. It must
 * load and work on a newer-minor host. */
#ifndef TP_ABI_HEADER
#define TP_ABI_HEADER "abi_1_0/natpeer/plugin.h"
#define TP_NAME "tp_old_minor"
#define TP_PROTO "tp.old"
#endif
#include TP_ABI_HEADER
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
  return api->register_unary(p, TP_PROTO, on_call, NULL);
}

static void fini(np_plugin *p, void *ud) { (void)p, (void)ud; }

NP_PLUGIN_DEFINE(TP_NAME, "0.9.0", init, fini)
