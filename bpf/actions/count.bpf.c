// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* count (action): nothing but the stage counters that PRE already bumped */
#include "emptcp.h"

SEC("xdp")
int emptcp_count_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_count_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
