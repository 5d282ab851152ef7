// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* pass (terminal action): XDP_PASS / TC_ACT_OK, the rest of the chain is skipped.
 * On a TCX hook TC_ACT_OK is a decision: it also ends the hook's program list
 * (programs attached after emptcp do not see the packet).  A chain that just
 * ends, without pass, hands the packet on (TC_ACT_UNSPEC). */
#include "emptcp.h"

SEC("xdp")
int emptcp_pass_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	return XDP_PASS;
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_pass_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	return EMPTCP_PASS(ctx);
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
