/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_match.h - "local" vs "remote" and prefix matching for selectors.
 * local = the host this hook protects: destination on ingress (XDP,
 * tc-ingress), source on egress (tc-egress).
 */
#ifndef EMPTCP_MATCH_H
#define EMPTCP_MATCH_H

#include "emptcp_chain.h"
#include "emptcp_parse.h"

struct emptcp_view {
	__u8 family;
	__u8 local[16];
	__u8 remote[16];
	__be16 lport, rport;
};

static __always_inline int emptcp_view_tcp(void *data, void *data_end,
					   const struct emptcp_env *e, struct emptcp_view *v)
{
	struct emptcp_tcp_pkt p;
	int egress = e->kind == EMPTCP_KIND_TC_EGRESS;

	__builtin_memset(v, 0, sizeof(*v));
	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return -1;
	v->family = p.family;
	v->lport = egress ? p.tcph->source : p.tcph->dest;
	v->rport = egress ? p.tcph->dest : p.tcph->source;
	/* one branch per case: a pointer picked by ?: loses its type for
	 * the verifier */
	if (p.iph && egress) {
		__builtin_memcpy(v->local, &p.iph->saddr, 4);
		__builtin_memcpy(v->remote, &p.iph->daddr, 4);
	} else if (p.iph) {
		__builtin_memcpy(v->local, &p.iph->daddr, 4);
		__builtin_memcpy(v->remote, &p.iph->saddr, 4);
	} else if (p.ip6h && egress) {
		__builtin_memcpy(v->local, &p.ip6h->saddr, 16);
		__builtin_memcpy(v->remote, &p.ip6h->daddr, 16);
	} else if (p.ip6h) {
		__builtin_memcpy(v->local, &p.ip6h->daddr, 16);
		__builtin_memcpy(v->remote, &p.ip6h->saddr, 16);
	}
	return 0;
}

/* first plen bits of a and b equal (plen 0 matches anything) */
static __always_inline int emptcp_prefix_eq(const __u8 *a, const __u8 *b, __u32 plen)
{
	__u32 i;

	if (plen > 128)
		return 0;
#pragma unroll
	for (i = 0; i < 16; i++) {
		__u32 bits = plen > i * 8 ? plen - i * 8 : 0;
		__u8 mask;

		if (bits == 0)
			break;
		mask = bits >= 8 ? 0xff : (__u8)(0xff << (8 - bits));
		if ((a[i] ^ b[i]) & mask)
			return 0;
	}
	return 1;
}

static __always_inline int emptcp_addr_eq(const __u8 *a, const __u8 *b, __u32 family)
{
	return emptcp_prefix_eq(a, b, family == 4 ? 32 : 128);
}

#endif /* EMPTCP_MATCH_H */
