/* The layout of the frozen ABI 1.2 header (see abi_layout.h). */
#include "../plugins/abi_1_2/natpeer/plugin.h"
#include "abi_layout.h"

NP_ABI_LAYOUT(np_abi_frozen_1_2, NP_API_1_2, NP_DESC_1_1, NP_CBS_1_1);
