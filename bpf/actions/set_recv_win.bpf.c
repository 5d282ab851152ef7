// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* set_recv_win (action; REF emptcp_p_window or immediate 0..63): rewrite the
 * raw 16-bit TCP window and update the TCP checksum incrementally.
 * Non-TCP packets pass through unchanged.  Body: emptcp_ops.h (shared with
 * the fused program). */
#include "emptcp.h"
#include "emptcp_ops.h"

static __always_inline __u16 recv_win(const struct emptcp_env *e)
{
	if (e->blob)
		return ((const struct emptcp_p_window *)e->blob)->window;
	return e->imm;
}

SEC("xdp")
int emptcp_set_recv_win_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	emptcp_op_set_recv_win_xdp(ctx, recv_win(&EMPTCP_ENV));
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_set_recv_win_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	emptcp_op_set_recv_win_tc(ctx, recv_win(&EMPTCP_ENV));
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
