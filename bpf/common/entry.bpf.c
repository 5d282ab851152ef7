// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * entry.bpf.c - the programs attached to interfaces.  Each one maps its
 * attachment to a hook id, snapshots the active generation (so a packet runs
 * one generation start to finish), classifies the packet by its built-in
 * selectors (emptcp_classify.h: lookups, no tail calls), writes the chain
 * context of the winning rule and tail-calls its first stage: a program
 * selector of that rule, or the policy's first action.  What emptcp does not decide (not our hook, no
 * policy matched, anything unexpected, counted) gets no verdict: XDP_PASS, or
 * on TC TC_ACT_UNSPEC = TCX_NEXT so the programs after emptcp still run.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "emptcp_classify.h"

/* hook id of (ifindex, kind) or -1: an array slot, the hash only when the slot
 * belongs to another interface */
static __always_inline int emptcp_hook_of(__u32 ifindex, __u32 kind)
{
	struct emptcp_hook_key key = { .ifindex = ifindex, .kind = kind };
	struct emptcp_hook_slot *slot;
	struct emptcp_hook_val *v;
	__u32 idx = ifindex & (EMPTCP_HOOK_SLOTS - 1);

	slot = bpf_map_lookup_elem(&emptcp_hook_slots, &idx);
	if (slot && slot->ifindex == ifindex) {
		__u8 h = slot->hook[kind & 3];

		return h && h <= EMPTCP_MAX_HOOKS ? h - 1 : -1;
	}
	v = bpf_map_lookup_elem(&emptcp_hooks, &key);
	if (!v || v->hook_id >= EMPTCP_MAX_HOOKS)
		return -1;
	return v->hook_id;
}

static __always_inline __u32 emptcp_active_gen(void)
{
	__u32 zero = 0;
	struct emptcp_state *st = bpf_map_lookup_elem(&emptcp_state, &zero);

	return st ? (st->active_gen & (EMPTCP_MAX_GEN - 1)) : 0;
}

/* 1: tail-call the context's first stage; 0: no verdict */
static __always_inline int emptcp_start(struct emptcp_ctx *c, void *data, void *data_end,
					__u32 hook, __u32 kind)
{
	const struct emptcp_hook_rules *hr;
	struct emptcp_hook_stat *hs;
	struct emptcp_rules cand;
	__u32 gen = emptcp_active_gen(), idx;
	int r = 0;

	hook &= EMPTCP_MAX_HOOKS - 1;
	hs = bpf_map_lookup_elem(&emptcp_hook_stats, &hook);	/* one lookup, every counter */
	if (hs)
		hs->packets++;
	idx = gen * EMPTCP_MAX_HOOKS + hook;
	hr = bpf_map_lookup_elem(&emptcp_hook_rules, &idx);
	if (hr && hr->n_rules) {
		emptcp_classify(data, data_end, gen, hook, kind, hr, &cand);
		r = emptcp_enter_rule(c, gen, hook, kind, hr, &cand, emptcp_first_rule(&cand));
	}
	if (hs) {
		if (r == 0)
			hs->unmatched++;
		else if (r >= 2)
			hs->matched++;
	}
	return r == 1 || r == 2;
}

SEC("xdp")
int emptcp_xdp_entry(struct xdp_md *ctx)
{
	struct emptcp_ctx c = {};
	int hook = emptcp_hook_of(ctx->ingress_ifindex, EMPTCP_KIND_XDP);
	void *data, *meta;

	if (hook < 0)
		return XDP_PASS;
	/* Reuse metadata that is already big enough: BPF_PROG_TEST_RUN with
	 * repeat > 1 hands us the same buffer again, and growing it each time
	 * would fail once it reaches 32 bytes. */
	data = (void *)(long)ctx->data;
	meta = (void *)(long)ctx->data_meta;
	if (meta + sizeof(c) > data &&
	    bpf_xdp_adjust_meta(ctx, -(int)sizeof(c)) < 0) {
		emptcp_hook_count(hook, EMPTCP_HS_ERRORS);
		return XDP_PASS;
	}
	if (!emptcp_start(&c, (void *)(long)ctx->data, (void *)(long)ctx->data_end, hook,
			  EMPTCP_KIND_XDP))
		return XDP_PASS;
	return emptcp_xdp_tail(ctx, &c);
}

static __always_inline int emptcp_tc_entry(struct __sk_buff *skb, __u32 kind)
{
	struct emptcp_ctx c = {};
	int hook = emptcp_hook_of(skb->ifindex, kind);

	if (hook < 0)
		return TC_ACT_UNSPEC;
	if (emptcp_tc_pull(skb) < 0) {
		emptcp_hook_count(hook, EMPTCP_HS_ERRORS);
		return TC_ACT_UNSPEC;
	}
	if (!emptcp_start(&c, (void *)(long)skb->data, (void *)(long)skb->data_end, hook, kind))
		return TC_ACT_UNSPEC;
	return emptcp_tc_tail(skb, &c);
}

SEC("tc")
int emptcp_tc_ingress_entry(struct __sk_buff *skb)
{
	return emptcp_tc_entry(skb, EMPTCP_KIND_TC_INGRESS);
}

SEC("tc")
int emptcp_tc_egress_entry(struct __sk_buff *skb)
{
	return emptcp_tc_entry(skb, EMPTCP_KIND_TC_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
