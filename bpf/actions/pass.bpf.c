// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* pass (terminal action): XDP_PASS / TC_ACT_OK, the rest of the chain is skipped */
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
	return TC_ACT_OK;
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
