/* Test plugin claiming ABI major 2: must be refused. */
#include <natpeer/plugin.h>

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  (void)p, (void)api, (void)ud;
  return 0;
}

NP_PLUGIN_EXPORT_ const np_plugin_desc *np_plugin_entry(void);
const np_plugin_desc *np_plugin_entry(void) {
  static const np_plugin_desc d = {sizeof(np_plugin_desc), 2, 0, "tp_wrong_abi",
                                   "1.0", init, NULL, NULL};
  return &d;
}
