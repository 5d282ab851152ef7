/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_parse.h - header cursor parsing (after xdp-tutorial's
 * parsing_helpers.h, with every name prefixed emptcp_ so both can be
 * included together).  Each emptcp_parse_* checks bounds against data_end, advances
 * the cursor and returns the next protocol (or -1).  Works on XDP and on TC
 * (direct packet access of the linear part; TC stages call
 * bpf_skb_pull_data first, see emptcp_chain.h).
 */
#ifndef EMPTCP_PARSE_H
#define EMPTCP_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#define EMPTCP_VLAN_MAX_DEPTH 2

struct emptcp_hdr_cursor {
	void *pos;
};

struct emptcp_vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

static __always_inline int emptcp_proto_is_vlan(__u16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD);
}

/* returns the EtherType (network order) after up to two VLAN tags */
static __always_inline int emptcp_parse_ethhdr(struct emptcp_hdr_cursor *nh, void *data_end,
					struct ethhdr **ethhdr)
{
	struct ethhdr *eth = nh->pos;
	struct emptcp_vlan_hdr *vlh;
	__u16 h_proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	*ethhdr = eth;
	vlh = nh->pos;
	h_proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < EMPTCP_VLAN_MAX_DEPTH; i++) {
		if (!emptcp_proto_is_vlan(h_proto))
			break;
		if ((void *)(vlh + 1) > data_end)
			return -1;
		h_proto = vlh->h_vlan_encapsulated_proto;
		vlh++;
	}
	nh->pos = vlh;
	return h_proto;
}

/* returns the L4 protocol; rejects ihl < 5 and fragments after the first
 * (their "TCP header" is payload) */
static __always_inline int emptcp_parse_iphdr(struct emptcp_hdr_cursor *nh, void *data_end,
				       struct iphdr **iphdr)
{
	struct iphdr *iph = nh->pos;
	int hdrsize;

	if ((void *)(iph + 1) > data_end)
		return -1;
	hdrsize = iph->ihl * 4;
	if (hdrsize < (int)sizeof(*iph))
		return -1;
	if (nh->pos + hdrsize > data_end)
		return -1;
	if (iph->frag_off & bpf_htons(0x1fff))	/* non-first fragment */
		return -1;
	nh->pos += hdrsize;
	*iphdr = iph;
	return iph->protocol;
}

/* extension headers are not walked: the next header must be the L4 one */
static __always_inline int emptcp_parse_ip6hdr(struct emptcp_hdr_cursor *nh, void *data_end,
					struct ipv6hdr **ip6hdr)
{
	struct ipv6hdr *ip6h = nh->pos;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	nh->pos = ip6h + 1;
	*ip6hdr = ip6h;
	return ip6h->nexthdr;
}

/* returns the TCP header length (20..60) or -1; the cursor ends after the
 * options, which are guaranteed to be inside the packet */
static __always_inline int emptcp_parse_tcphdr(struct emptcp_hdr_cursor *nh, void *data_end,
					struct tcphdr **tcphdr)
{
	struct tcphdr *h = nh->pos;
	int len;

	if ((void *)(h + 1) > data_end)
		return -1;
	len = h->doff * 4;
	if (len < (int)sizeof(*h))
		return -1;
	if (nh->pos + len > data_end)
		return -1;
	nh->pos += len;
	*tcphdr = h;
	return len;
}

static __always_inline int emptcp_parse_udphdr(struct emptcp_hdr_cursor *nh, void *data_end,
					struct udphdr **udphdr)
{
	struct udphdr *h = nh->pos;
	int len;

	if ((void *)(h + 1) > data_end)
		return -1;
	nh->pos = h + 1;
	*udphdr = h;
	len = bpf_ntohs(h->len) - sizeof(struct udphdr);
	if (len < 0)
		return -1;
	return len;
}

/* Everything a TCP stage wants, parsed once: family 4 or 6 (iph or ip6h
 * set), l3_off/l4_off as offsets from data (the option helpers need offsets
 * because pointers die when the packet is resized). */
struct emptcp_tcp_pkt {
	struct ethhdr *eth;
	struct iphdr *iph;
	struct ipv6hdr *ip6h;
	struct tcphdr *tcph;
	__u32 l3_off;
	__u32 l4_off;
	__u32 tcp_len;		/* header length incl. options, 20..60 */
	__u8 family;
};

/* 0 if the packet is Ethernet (+VLAN) / IPv4|IPv6 / TCP, -1 otherwise */
static __always_inline int emptcp_parse_tcp_packet(void *data, void *data_end,
					    struct emptcp_tcp_pkt *p)
{
	struct emptcp_hdr_cursor nh = { .pos = data };
	int proto, len;

	p->iph = NULL;
	p->ip6h = NULL;
	proto = emptcp_parse_ethhdr(&nh, data_end, &p->eth);
	p->l3_off = nh.pos - data;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (emptcp_parse_iphdr(&nh, data_end, &p->iph) != IPPROTO_TCP)
			return -1;
		p->family = 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (emptcp_parse_ip6hdr(&nh, data_end, &p->ip6h) != IPPROTO_TCP)
			return -1;
		p->family = 6;
	} else {
		return -1;
	}
	p->l4_off = nh.pos - data;
	len = emptcp_parse_tcphdr(&nh, data_end, &p->tcph);
	if (len < 0)
		return -1;
	p->tcp_len = len;
	return 0;
}

#endif /* EMPTCP_PARSE_H */
