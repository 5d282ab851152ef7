/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_classify.h - the entry's classifier for built-in selectors: parse the
 * packet once, look up one key per dimension the hook uses (hash or LPM
 * trie), AND the rows of their classes; the first rule left wins (or runs its
 * program selectors first).  No tail calls, so the cost does not grow with
 * the number of policies or keys.  docs/datapath-v2.md, section 1.
 */
#ifndef EMPTCP_CLASSIFY_H
#define EMPTCP_CLASSIFY_H

#include "emptcp_chain.h"
#include "emptcp_parse.h"

/* acc &= the row of `cls` in dimension `dim` (the absent row for class 0) */
static __always_inline void emptcp_and_class(struct emptcp_rules *acc,
					     const struct emptcp_hook_rules *hr,
					     __u32 gen, __u32 dim, const __u32 *cls)
{
	const struct emptcp_rules *row = NULL;
	__u32 idx;

	if (cls && *cls) {
		idx = EMPTCP_ROW_IDX(gen, *cls & (EMPTCP_MAX_CLASSES - 1));
		row = bpf_map_lookup_elem(&emptcp_rows, &idx);
	}
	if (!row)
		row = &hr->absent[dim];
	emptcp_rules_and(acc, row);
}

#define EMPTCP_USES(hr, dim) ((hr)->used & (1U << (dim)))
#define EMPTCP_ADDR_DIMS ((1U << EMPTCP_DIM_FLOW) | (1U << EMPTCP_DIM_ADDRS) | \
			  (1U << EMPTCP_DIM_LADDR) | (1U << EMPTCP_DIM_RADDR))

static __always_inline void emptcp_exact(struct emptcp_rules *acc,
					 const struct emptcp_hook_rules *hr, __u32 gen,
					 struct emptcp_key *k, __u32 dim)
{
	k->dim = dim;
	emptcp_and_class(acc, hr, gen, dim, bpf_map_lookup_elem(&emptcp_keys, k));
}

/* The candidate rules of this packet on (gen, hook): *acc.  0, or -1 when the
 * hook has no rules in this generation. */
static __always_inline int emptcp_classify(void *data, void *data_end, __u32 gen, __u32 hook,
					   __u32 kind, const struct emptcp_hook_rules *hr,
					   struct emptcp_rules *acc)
{
	struct emptcp_tcp_pkt p;
	struct emptcp_key k;
	struct emptcp_prefix_key pk;
	int egress = kind == EMPTCP_KIND_TC_EGRESS;
	__u32 d;

	*acc = hr->all;
	if (!hr->used)
		return 0;
	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0) {
		/* not TCP: no built-in selector matches */
#pragma unroll
		for (d = 0; d < EMPTCP_NUM_DIMS; d++)
			if (EMPTCP_USES(hr, d))
				emptcp_rules_and(acc, &hr->absent[d]);
		return 0;
	}
	__builtin_memset(&k, 0, sizeof(k));
	k.gen = gen;
	k.hook = hook;
	k.family = p.family;
	k.lport = egress ? p.tcph->source : p.tcph->dest;
	k.rport = egress ? p.tcph->dest : p.tcph->source;
	/* addresses only for the dimensions that use them (a port-only hook skips this);
	 * one branch per case: a pointer picked by ?: loses its type for the verifier */
	if (!(hr->used & EMPTCP_ADDR_DIMS))
		goto ports;
	if (p.iph && egress) {
		__builtin_memcpy(k.laddr, &p.iph->saddr, 4);
		__builtin_memcpy(k.raddr, &p.iph->daddr, 4);
	} else if (p.iph) {
		__builtin_memcpy(k.laddr, &p.iph->daddr, 4);
		__builtin_memcpy(k.raddr, &p.iph->saddr, 4);
	} else if (p.ip6h && egress) {
		__builtin_memcpy(k.laddr, &p.ip6h->saddr, 16);
		__builtin_memcpy(k.raddr, &p.ip6h->daddr, 16);
	} else if (p.ip6h) {
		__builtin_memcpy(k.laddr, &p.ip6h->daddr, 16);
		__builtin_memcpy(k.raddr, &p.ip6h->saddr, 16);
	}
	pk.prefixlen = EMPTCP_PREFIX_HDR_BITS + 128;
	pk.gen = gen;
	pk.hook = hook;
	pk.family = p.family;
	if (EMPTCP_USES(hr, EMPTCP_DIM_LADDR)) {
		pk.dim = EMPTCP_DIM_LADDR;
		__builtin_memcpy(pk.addr, k.laddr, 16);
		emptcp_and_class(acc, hr, gen, EMPTCP_DIM_LADDR,
				 bpf_map_lookup_elem(&emptcp_prefixes, &pk));
	}
	if (EMPTCP_USES(hr, EMPTCP_DIM_RADDR)) {
		pk.dim = EMPTCP_DIM_RADDR;
		__builtin_memcpy(pk.addr, k.raddr, 16);
		emptcp_and_class(acc, hr, gen, EMPTCP_DIM_RADDR,
				 bpf_map_lookup_elem(&emptcp_prefixes, &pk));
	}
	if (EMPTCP_USES(hr, EMPTCP_DIM_FLOW))
		emptcp_exact(acc, hr, gen, &k, EMPTCP_DIM_FLOW);
	/* the remaining dimensions use parts of the key: clear the others */
	if (EMPTCP_USES(hr, EMPTCP_DIM_ADDRS)) {
		__be16 lp = k.lport, rp = k.rport;

		k.lport = k.rport = 0;
		emptcp_exact(acc, hr, gen, &k, EMPTCP_DIM_ADDRS);
		k.lport = lp;
		k.rport = rp;
	}
	__builtin_memset(k.laddr, 0, 16);
	__builtin_memset(k.raddr, 0, 16);
ports:	/* the port dimensions: no family, no addresses */
	if (EMPTCP_USES(hr, EMPTCP_DIM_PORTS)) {
		k.family = 0;
		emptcp_exact(acc, hr, gen, &k, EMPTCP_DIM_PORTS);
	}
	if (hr->used & ((1U << EMPTCP_DIM_LPORT) | (1U << EMPTCP_DIM_RPORT))) {
		const struct emptcp_port_class *pc;
		__u32 base = (hr->port_table % (EMPTCP_MAX_GEN * EMPTCP_PORT_TABLES_PER_GEN)) << 16;
		__u32 i, cls;

		if (EMPTCP_USES(hr, EMPTCP_DIM_LPORT)) {
			i = base + bpf_ntohs(k.lport);
			pc = bpf_map_lookup_elem(&emptcp_ports, &i);
			cls = pc ? pc->lclass : 0;
			emptcp_and_class(acc, hr, gen, EMPTCP_DIM_LPORT, &cls);
		}
		if (EMPTCP_USES(hr, EMPTCP_DIM_RPORT)) {
			i = base + bpf_ntohs(k.rport);
			pc = bpf_map_lookup_elem(&emptcp_ports, &i);
			cls = pc ? pc->rclass : 0;
			emptcp_and_class(acc, hr, gen, EMPTCP_DIM_RPORT, &cls);
		}
	}
	return 0;
}

#endif /* EMPTCP_CLASSIFY_H */
