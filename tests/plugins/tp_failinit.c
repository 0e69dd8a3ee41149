/* Test plugin that registers a protocol, then fails init: the host must
 * refuse it and roll the registration back (no shutdown call). */
#include <natpeer/plugin.h>
#include <stdlib.h>

static void on_call(np_call *c, const uint8_t *req, size_t len, void *ud) {
  (void)req, (void)len, (void)c, (void)ud;
}

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  (void)ud;
  if (api->register_unary(p, "tp.failinit", on_call, NULL) != 0)
    return NP_EINVAL;
  return NP_EINVAL;
}

static void fini(np_plugin *p, void *ud) {
  (void)p, (void)ud;
  abort(); /* must never run after a failed init */
}

NP_PLUGIN_DEFINE("tp_failinit", "1.0", init, fini)
