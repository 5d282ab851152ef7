// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fused.bpf.c - a run of built-in actions in one program (a "fused instance").
 *
 * The control plane loads this program once per run of two or more consecutive
 * built-in actions of a chain (count, set_recv_win, drop, pass, redirect) with
 * the run in its frozen .rodata (struct emptcp_fused).  The verifier reads those
 * constants, follows only the operations present and removes the rest, so
 * what runs is the run's bodies one after the other -- no tail call and no
 * context check between them -- then one tail call to the action after the
 * run (a constant key: a direct jump).  Each operation counts on its own stage
 * row, as its own program would, so status is the same either way.
 */
#include "emptcp.h"
#include "emptcp_ops.h"

const volatile struct emptcp_fused emptcp_fused = {};

/* the stage-counter row of action stage 0 of the word's (hook, policy) */
static __always_inline __u32 emptcp_fused_base(__u32 w0)
{
	return EMPTCP_STAGE_STAT_IDX((w0 >> 8) & EMPTCP_B1_HOOK_MASK,
				     (w0 >> 16) & (EMPTCP_MAX_POLICIES - 1), EMPTCP_PHASE_ACT, 0);
}

static __always_inline void emptcp_fused_count(__u32 base, __u32 stage, __u64 len)
{
	__u32 idx = base + (stage & (EMPTCP_MAX_STAGES - 1));
	struct emptcp_stage_stat *s = bpf_map_lookup_elem(&emptcp_stage_stats, &idx);

	if (s) {
		s->packets++;
		s->bytes += len;
	}
}

/* the word for the action after the run: cur + n (< EMPTCP_MAX_STAGES when
 * there is one, so no carry out of the byte) */
static __always_inline __u32 emptcp_fused_next_word(__u32 w0)
{
	return w0 + ((__u32)emptcp_fused.n << EMPTCP_W0_CUR_SHIFT);
}

/* the run's operations, in order, each counted on its own position; a terminal
 * one returns its verdict (XDP or TC, by the type of ctx).  Unrolled: each
 * position reads its own constants, so the verifier follows one case each */
#define EMPTCP_FUSED_RUN(ctx, base, stage, len) \
	_Pragma("unroll") \
	for (i = 0; i < EMPTCP_MAX_STAGES; i++) { \
		if (i >= emptcp_fused.n) \
			break; \
		emptcp_fused_count(base, (stage) + i, len); \
		switch (emptcp_fused.ops[i]) { \
		case EMPTCP_OP_SET_RECV_WIN: \
			emptcp_op_set_recv_win(ctx, emptcp_fused.args[i]); \
			break; \
		case EMPTCP_OP_DROP: \
			return EMPTCP_DROP(ctx); \
		case EMPTCP_OP_PASS: \
			return EMPTCP_PASS(ctx); \
		case EMPTCP_OP_REDIRECT: \
			if (emptcp_fused.args[i]) \
				return bpf_redirect(emptcp_fused.args[i], 0); \
			break; \
		default:	/* count: the counters above */ \
			break; \
		} \
	}

SEC("xdp")
int emptcp_fused_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *meta = (void *)(long)ctx->data_meta;
	__u32 w0, base, stage, i;
	__u64 len;

	if (meta + sizeof(struct emptcp_ctx) > data) {
		emptcp_hook_count(EMPTCP_MAX_HOOKS, EMPTCP_HS_ERRORS);	/* no hook known */
		return XDP_PASS;
	}
	w0 = *(__u32 *)meta;
	if ((w0 & EMPTCP_W0_ACT_MASK) != EMPTCP_W0_ACT_CHECK) {
		emptcp_hook_count((w0 >> 8) & EMPTCP_B1_HOOK_MASK, EMPTCP_HS_ERRORS);
		return XDP_PASS;
	}
	base = emptcp_fused_base(w0);
	stage = w0 >> EMPTCP_W0_CUR_SHIFT;
	len = ctx->data_end - ctx->data;	/* none of the operations resizes */
	EMPTCP_FUSED_RUN(ctx, base, stage, len);
	if (emptcp_fused.next_key == 0)
		return XDP_PASS;	/* end of the chain: no verdict */
	w0 = emptcp_fused_next_word(w0);
	data = (void *)(long)ctx->data;
	meta = (void *)(long)ctx->data_meta;
	if (meta + sizeof(struct emptcp_ctx) <= data) {
		*(__u32 *)meta = w0;
		bpf_tail_call(ctx, &emptcp_xdp_progs, emptcp_fused.next_key);
	}
	emptcp_word_missed(w0);
	return XDP_PASS;
}

SEC("tc")
int emptcp_fused_tc(struct __sk_buff *skb)
{
	__u64 want = skb->len < EMPTCP_TC_PULL_LEN ? skb->len : EMPTCP_TC_PULL_LEN;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 w0 = skb->cb[0], base, stage, i;
	__u64 len;

	if ((w0 & EMPTCP_W0_ACT_MASK) != EMPTCP_W0_ACT_CHECK ||
	    (data + want > data_end && bpf_skb_pull_data(skb, want) < 0)) {
		emptcp_hook_count((w0 >> 8) & EMPTCP_B1_HOOK_MASK, EMPTCP_HS_ERRORS);
		return TC_ACT_UNSPEC;
	}
	base = emptcp_fused_base(w0);
	stage = w0 >> EMPTCP_W0_CUR_SHIFT;
	len = skb->len;
	EMPTCP_FUSED_RUN(skb, base, stage, len);
	if (emptcp_fused.next_key == 0)
		return TC_ACT_UNSPEC;	/* end of the chain: no decision */
	w0 = emptcp_fused_next_word(w0);
	skb->cb[0] = w0;
	bpf_tail_call(skb, &emptcp_tc_progs, emptcp_fused.next_key);
	emptcp_word_missed(w0);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
