/* Test plugin whose descriptor is smaller than ABI 1.0's: must be refused. */
#include <natpeer/plugin.h>

NP_PLUGIN_EXPORT_ const np_plugin_desc *np_plugin_entry(void);
const np_plugin_desc *np_plugin_entry(void) {
  static const np_plugin_desc d = {offsetof(np_plugin_desc, init), 1, 0,
                                   "tp_small", "1.0", NULL, NULL, NULL};
  return &d;
}
