// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* set_recv_win (action; REF emptcp_p_window or immediate 0..63): rewrite the
 * raw 16-bit TCP window and update the TCP checksum incrementally.
 * Non-TCP packets pass through unchanged. */
#include "emptcp.h"

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
	struct emptcp_tcp_pkt p;
	__be16 win = bpf_htons(recv_win(&EMPTCP_ENV));

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		EMPTCP_NEXT;
	emptcp_csum_replace2(&p.tcph->check, p.tcph->window, win);
	p.tcph->window = win;
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_set_recv_win_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	struct emptcp_tcp_pkt p;
	__be16 win = bpf_htons(recv_win(&EMPTCP_ENV));
	__be16 old;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		EMPTCP_NEXT;
	old = p.tcph->window;
	/* the helper keeps CHECKSUM_PARTIAL skbs right, a manual update would not */
	bpf_skb_store_bytes(ctx, p.l4_off + offsetof(struct tcphdr, window), &win, 2, 0);
	bpf_l4_csum_replace(ctx, p.l4_off + offsetof(struct tcphdr, check), old, win, 2);
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
