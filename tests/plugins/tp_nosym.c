/* Test plugin without the np_plugin_entry symbol: must be refused. */
#include <natpeer/plugin.h>

NP_PLUGIN_EXPORT_ int not_the_entry(void);
int not_the_entry(void) { return 42; }
