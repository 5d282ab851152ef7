/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_ops.h - bodies of built-in actions shared by their own programs
 * (bpf/actions/*.bpf.c) and the fused program (fused.bpf.c), so that a run of
 * built-in actions does in one program exactly what the chain of their
 * programs does.
 */
#ifndef EMPTCP_OPS_H
#define EMPTCP_OPS_H

#include "emptcp.h"

/* set_recv_win: the raw 16-bit TCP window, checksum updated incrementally;
 * a packet that is not TCP is left alone */
static __always_inline void emptcp_op_set_recv_win_xdp(struct xdp_md *ctx, __u16 window)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__be16 win = bpf_htons(window);
	struct emptcp_tcp_pkt p;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return;
	emptcp_csum_replace2(&p.tcph->check, p.tcph->window, win);
	p.tcph->window = win;
}

static __always_inline void emptcp_op_set_recv_win_tc(struct __sk_buff *skb, __u16 window)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__be16 win = bpf_htons(window), old;
	struct emptcp_tcp_pkt p;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return;
	old = p.tcph->window;
	/* the helpers keep CHECKSUM_PARTIAL skbs right, a manual update would not */
	bpf_skb_store_bytes(skb, p.l4_off + offsetof(struct tcphdr, window), &win, 2, 0);
	bpf_l4_csum_replace(skb, p.l4_off + offsetof(struct tcphdr, check), old, win, 2);
}

#define emptcp_op_set_recv_win(ctx, window) \
	_Generic((ctx), struct xdp_md *: emptcp_op_set_recv_win_xdp, \
		 struct __sk_buff *: emptcp_op_set_recv_win_tc)(ctx, window)

#endif /* EMPTCP_OPS_H */
