// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* redirect (terminal action; REF emptcp_p_redirect, or immediate ifindex
 * 1..63): bpf_redirect to the interface's egress (XDP_REDIRECT /
 * TC_ACT_REDIRECT).  Without a valid ifindex the chain just continues. */
#include "emptcp.h"

static __always_inline __u32 redirect_ifindex(const struct emptcp_env *e)
{
	if (e->blob)
		return ((const struct emptcp_p_redirect *)e->blob)->ifindex;
	return e->imm;
}

SEC("xdp")
int emptcp_redirect_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	__u32 ifindex = redirect_ifindex(&EMPTCP_ENV);

	if (ifindex)
		return bpf_redirect(ifindex, 0);
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_redirect_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	__u32 ifindex = redirect_ifindex(&EMPTCP_ENV);

	if (ifindex)
		return bpf_redirect(ifindex, 0);
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
