/* Test plugin registering "hello", normally taken by the hello plugin. */
#include <natpeer/plugin.h>

static void on_call(np_call *c, const uint8_t *req, size_t len, void *ud) {
  (void)req, (void)len, (void)c, (void)ud;
}

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  (void)ud;
  return api->register_unary(p, "hello", on_call, NULL);
}

static void fini(np_plugin *p, void *ud) { (void)p, (void)ud; }

NP_PLUGIN_DEFINE("tp_dup", "1.0", init, fini)
