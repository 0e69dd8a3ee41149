/* Test plugin whose descriptor name is invalid (built three times: NULL,
 * empty, "bad name"): the host must refuse it with one log line, without
 * reading the descriptor after dlclose, and run on. */
#include <natpeer/plugin.h>
#include <stdlib.h>

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  (void)p, (void)api, (void)ud;
  abort(); /* never called for a refused descriptor */
}

NP_PLUGIN_DEFINE(TP_NAME, "1.0", init, NULL)
