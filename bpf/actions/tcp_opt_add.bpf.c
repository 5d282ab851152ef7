// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tcp_opt_add (action; REF emptcp_p_opt_add): append a TCP option after the
 * existing ones (NOP padded), growing the header; refused (packet unchanged)
 * when the 40-byte option area would overflow or the options are malformed. */
#include "emptcp.h"

SEC("xdp")
int emptcp_tcp_opt_add_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	const struct emptcp_p_opt_add *p = (const void *)BLOB;

	if (p && emptcp_tcp_opt_insert(ctx, p->bytes, p->len) == -2)
		return XDP_DROP;	/* half-written packet: never forward it */
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_tcp_opt_add_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	const struct emptcp_p_opt_add *p = (const void *)BLOB;

	if (p && emptcp_tcp_opt_insert(ctx, p->bytes, p->len) == -2)
		return TC_ACT_SHOT;
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
