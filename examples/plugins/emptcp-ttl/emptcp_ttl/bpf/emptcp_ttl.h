/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* emptcp_ttl.h - shared by ttl_below and set_ttl: the parameter blob and
 * locating the IPv4 / IPv6 header (any L4 protocol, fragments included). */
#ifndef EMPTCP_TTL_H
#define EMPTCP_TTL_H

#include "emptcp.h"

/* parameter blob of both stages (encoded in Python as bytes([ttl])) */
struct emptcp_ttl_param {
	__u8 ttl;	/* 1..255 */
};

struct emptcp_ttl_l3 {
	struct iphdr *iph;	/* set for IPv4 */
	struct ipv6hdr *ip6h;	/* set for IPv6 */
	__u32 l3_off;		/* offset of the IP header from data */
};

/* 0 when the packet is Ethernet (+ up to two VLAN tags) / IPv4 or IPv6 with
 * the base header inside the packet, -1 otherwise */
static __always_inline int emptcp_ttl_parse(void *data, void *data_end,
					    struct emptcp_ttl_l3 *l3)
{
	struct emptcp_hdr_cursor nh = { .pos = data };
	struct ethhdr *eth;
	int proto;

	l3->iph = NULL;
	l3->ip6h = NULL;
	proto = emptcp_parse_ethhdr(&nh, data_end, &eth);
	l3->l3_off = nh.pos - data;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = nh.pos;

		if ((void *)(iph + 1) > data_end || iph->version != 4 || iph->ihl < 5)
			return -1;
		l3->iph = iph;
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = nh.pos;

		if ((void *)(ip6h + 1) > data_end || ip6h->version != 6)
			return -1;
		l3->ip6h = ip6h;
		return 0;
	}
	return -1;
}

#endif /* EMPTCP_TTL_H */
