// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* set_ttl (action, REF struct emptcp_ttl_param): rewrite the IPv4 TTL
 * (header checksum updated incrementally, RFC 1624) or the IPv6 hop limit,
 * then continue the chain.  Non-IP packets pass through unchanged. */
#include "emptcp.h"
#include "emptcp_ttl.h"

#define IP_TTL_OFF	__builtin_offsetof(struct iphdr, ttl)
#define IP_CSUM_OFF	__builtin_offsetof(struct iphdr, check)
#define IP6_HLIM_OFF	__builtin_offsetof(struct ipv6hdr, hop_limit)

SEC("xdp")
int emptcp_set_ttl_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	const struct emptcp_ttl_param *p = (const void *)BLOB;
	struct emptcp_ttl_l3 l3;

	if (!p || emptcp_ttl_parse(data, data_end, &l3) < 0)
		EMPTCP_NEXT;
	if (l3.iph) {
		/* TTL shares a 16-bit checksum word with the protocol byte */
		__be16 *word = (__be16 *)&l3.iph->ttl;
		__be16 old = *word;

		l3.iph->ttl = p->ttl;
		emptcp_csum_replace2(&l3.iph->check, old, *word);
	} else if (l3.ip6h) {
		l3.ip6h->hop_limit = p->ttl;
	}
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_set_ttl_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	const struct emptcp_ttl_param *p = (const void *)BLOB;
	struct emptcp_ttl_l3 l3;
	__u8 ttl;

	if (!p || emptcp_ttl_parse(data, data_end, &l3) < 0)
		EMPTCP_NEXT;
	ttl = p->ttl;
	if (l3.iph) {
		__u32 off = l3.l3_off;
		__be16 old = *(__be16 *)&l3.iph->ttl;
		__be16 new;

		if (l3.iph->ttl == ttl)
			EMPTCP_NEXT;
		((__u8 *)&new)[0] = ttl;
		((__u8 *)&new)[1] = l3.iph->protocol;
		/* TTL + checksum together leave the header's ones'-complement
		 * sum unchanged, so skb->csum (CHECKSUM_COMPLETE) stays right:
		 * no BPF_F_RECOMPUTE_CSUM here. Packet pointers die below. */
		if (bpf_skb_store_bytes(ctx, off + IP_TTL_OFF, &ttl, 1, 0) < 0)
			EMPTCP_NEXT;
		if (bpf_l3_csum_replace(ctx, off + IP_CSUM_OFF, old, new, 2) < 0)
			return EMPTCP_DROP(ctx);	/* TTL written, checksum not: half-done */
	} else if (l3.ip6h) {
		if (l3.ip6h->hop_limit == ttl)
			EMPTCP_NEXT;
		/* no IPv6 header checksum; keep skb->csum right on ingress */
		bpf_skb_store_bytes(ctx, l3.l3_off + IP6_HLIM_OFF, &ttl, 1,
				    BPF_F_RECOMPUTE_CSUM);
	}
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
