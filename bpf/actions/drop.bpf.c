// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* drop (terminal action): XDP_DROP / TC_ACT_SHOT */
#include "emptcp.h"

SEC("xdp")
int emptcp_drop_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	return EMPTCP_DROP(ctx);
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_drop_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	return EMPTCP_DROP(ctx);
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
