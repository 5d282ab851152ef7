// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tcp_opt_del (action; immediate = MPTCP subtype 0..15 to strip, or REF
 * emptcp_p_opt_del {kind, subtype}): remove every matching option and shrink
 * the header (remaining options NOP padded to a multiple of 4). */
#include "emptcp.h"

static __always_inline void opt_del_param(const struct emptcp_env *e, int *kind, int *sub)
{
	const struct emptcp_p_opt_del *p = (const void *)e->blob;

	if (p) {
		*kind = p->kind;
		*sub = p->subtype;
	} else {
		*kind = EMPTCP_TCPOPT_MPTCP;
		*sub = e->imm;
	}
}

SEC("xdp")
int emptcp_tcp_opt_del_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	int kind, sub;

	opt_del_param(&EMPTCP_ENV, &kind, &sub);
	if (emptcp_tcp_opt_remove(ctx, kind, sub) == -2)
		return XDP_DROP;
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_tcp_opt_del_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	int kind, sub;

	opt_del_param(&EMPTCP_ENV, &kind, &sub);
	if (emptcp_tcp_opt_remove(ctx, kind, sub) == -2)
		return TC_ACT_SHOT;
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
