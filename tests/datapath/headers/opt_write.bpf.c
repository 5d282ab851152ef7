// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test stages for emptcp_tcp_opt_find / emptcp_tcp_opt_write.
 * opt_at (selector, immediate = option kind): the packet has an option of
 *   that kind, and the offset emptcp_tcp_opt_find returns points at its kind
 *   byte in the packet.
 * set_mss (action, REF {__be16 mss}): overwrite the MSS value (kind 2, bytes
 *   2..3) in place; a refused rewrite (-1) drops, so the test sees it. */
#include "emptcp.h"

struct set_mss_param {
	__be16 mss;
};

static __always_inline int opt_at(void *data, void *data_end, struct emptcp_env *env)
{
	struct emptcp_tcp_pkt pkt;
	__u32 olen;
	__u8 *k;
	int off;

	if (emptcp_parse_tcp_packet(data, data_end, &pkt) < 0)
		return 0;
	off = emptcp_tcp_opt_find(pkt.tcph, data_end, env->imm, EMPTCP_SUBTYPE_ANY, &olen);
	if (off < 0)
		return 0;
	k = (__u8 *)pkt.tcph + EMPTCP_IDX(off);	/* 0..63 as the verifier sees it */
	if ((void *)(k + 1) > data_end)
		return 0;
	return *k == env->imm && olen >= 2;
}

EMPTCP_SELECTOR(opt_at, opt_at)

SEC("xdp")
int emptcp_set_mss_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	const struct set_mss_param *prm = (const void *)BLOB;
	__be16 v;

	if (!prm)
		EMPTCP_NEXT;
	v = prm->mss;
	if (emptcp_tcp_opt_write(ctx, 2, EMPTCP_SUBTYPE_ANY, 2, (const __u8 *)&v, 2) < 0)
		return XDP_DROP;
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_set_mss_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	const struct set_mss_param *prm = (const void *)BLOB;
	__be16 v;

	if (!prm)
		EMPTCP_NEXT;
	v = prm->mss;
	if (emptcp_tcp_opt_write(ctx, 2, EMPTCP_SUBTYPE_ANY, 2, (const __u8 *)&v, 2) < 0)
		return TC_ACT_SHOT;
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
