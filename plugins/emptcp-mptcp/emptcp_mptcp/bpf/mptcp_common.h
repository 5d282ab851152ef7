/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* mptcp_common.h - shared bits of the emptcp-mptcp actions */
#ifndef EMPTCP_MPTCP_COMMON_H
#define EMPTCP_MPTCP_COMMON_H

#include "emptcp.h"

/* Define the XDP and TC programs of an action whose body is hook-generic:
 * BODY(ctx, env) is a statement-expression-free macro body that may use
 * data/data_end and returns -2 when the packet must be dropped. */
#define MPTCP_ACTION(name, fn) \
SEC("xdp") int emptcp_mptcp_##name##_xdp(struct xdp_md *ctx) \
{ \
	ACTION_PRE_SEC \
	if (fn(ctx, &EMPTCP_ENV, data, data_end) == -2) \
		return XDP_DROP;	/* half-rewritten packet: never forward it */ \
	ACTION_POST_SEC \
} \
SEC("tc") int emptcp_mptcp_##name##_tc(struct __sk_buff *ctx) \
{ \
	ACTION_PRE_SEC \
	if (fn(ctx, &EMPTCP_ENV, data, data_end) == -2) \
		return TC_ACT_SHOT; \
	ACTION_POST_SEC \
}

/* the TCP header carries an MPTCP option (any subtype) */
static __always_inline int mptcp_packet(struct emptcp_tcp_pkt *p, void *data_end)
{
	return emptcp_has_mptcp_subtype(p->tcph, data_end, EMPTCP_SUBTYPE_ANY);
}

#endif
