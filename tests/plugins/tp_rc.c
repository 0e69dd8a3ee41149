/* Test plugin whose init returns a code that is not an NP_E* value. */
#include <natpeer/plugin.h>

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  (void)p, (void)api, (void)ud;
  return -999;
}

NP_PLUGIN_DEFINE("tp_rc", "1.0", init, NULL)
