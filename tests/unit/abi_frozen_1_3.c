/* The layout of the frozen ABI 1.3 header (see abi_layout.h). */
#include "../plugins/abi_1_3/natpeer/plugin.h"
#include "abi_layout.h"

NP_ABI_LAYOUT(np_abi_frozen_1_3, NP_API_1_3, NP_DESC_1_1, NP_CBS_1_1);
