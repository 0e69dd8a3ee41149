/* Plugin loader and the host API table. Each loaded .so is an np_plugin that
 * owns every registration, timer, call and stream it created; unloading
 * releases them all (timers stopped, streams reset, calls failed) before
 * the plugin's shutdown and dlclose. */
#ifndef NP_PLUGIN_H
#define NP_PLUGIN_H

#include <stddef.h>

#include "natpeer/plugin.h"
#include "np_conf.h"

typedef struct np_host np_host;
typedef struct np_plugins np_plugins;

int np_plugins_new(np_plugins **pm, np_host *host);
/* Unload every plugin (reason "shutdown"), then free. */
void np_plugins_del(np_plugins *pm);

typedef struct np_plugins_result {
  unsigned loaded, unloaded, reloaded, refused, kept;
} np_plugins_result;

/* Bring the loaded set in line with |conf|: every *.so in [plugins] dir
 * (when autoload) plus `load =` entries, minus `deny =`. New files are
 * loaded, vanished ones unloaded, changed ones (file replaced, or their
 * [plugin.NAME] section changed) reloaded. A refused plugin is logged with
 * its file and reason; the others are unaffected. */
int np_plugins_sync(np_plugins *pm, const np_conf *conf, np_plugins_result *r);

/* Load one .so outside of the configured set (tests). Returns 0 or the
 * reason code; |why| gets the one-line reason. */
int np_plugins_load_file(np_plugins *pm, const np_conf *conf, const char *path,
                         char *why, size_t whylen);

typedef struct np_plugin_info {
  const char *name, *version, *file, *description;
  unsigned abi_major, abi_minor;
} np_plugin_info;
size_t np_plugins_count(const np_plugins *pm);
int np_plugins_info(const np_plugins *pm, size_t i, np_plugin_info *out);

/* The DHT behind the table's dht_* entries (ABI 1.3); NULL when the host
 * runs none (they then fail with NP_ENOTSUP). Setting another one, or
 * NULL, first ends every plugin's pending DHT operation: |done| with
 * NP_ECANCELED. The daemon sets it once the modules run and clears it
 * before they stop. */
typedef struct np_kad np_kad;
void np_plugins_set_dht(np_plugins *pm, np_kad *kad);

/* The host API table handed to plugins. */
const np_host_api *np_plugin_api(void);

#endif
