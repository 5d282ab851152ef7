/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_chain.h - the policy-chain runtime: reading/writing the 20-byte
 * context (XDP data_meta / TC skb->cb), walking stages with tail calls,
 * counting, and the plugin-facing macros:
 *
 *   SELECTOR_PRE_SEC / SELECTOR_POST_SEC   a selector sets MATCH (0/1)
 *   ACTION_PRE_SEC   / ACTION_POST_SEC     an action edits the packet
 *
 * The macros are hook-generic: they dispatch on the C type of the program's
 * argument, which must be called `ctx` (struct xdp_md * or struct __sk_buff *).
 * Between PRE and POST the body sees:
 *   data, data_end    packet pointers (re-read them after resizing)
 *   PARAM             the stage's immediate parameter (0..63)
 *   BLOB              const __u8 * to the 64-byte parameter blob, or NULL
 *                     when the parameter is immediate
 *   EMPTCP_ENV        struct emptcp_env: gen, hook, kind, policy, stage, ...
 *   MATCH             (selectors) set to non-zero when the packet matches
 *   EMPTCP_NEXT       statement: leave the body, continue the chain
 * A terminal action just returns a verdict (EMPTCP_DROP(ctx), ...).
 *
 * Verdicts (docs/abi.md "Verdicts"): what emptcp does not decide -- no policy
 * matched, a chain that ends without a terminal action, a missed tail call, a
 * bad context -- returns EMPTCP_NO_VERDICT: XDP_PASS on XDP, TC_ACT_UNSPEC
 * (TCX_NEXT) on TC, so the programs after emptcp on a TCX hook still run.
 * EMPTCP_PASS / EMPTCP_DROP / EMPTCP_REDIRECT are decisions (TC_ACT_OK ends
 * the hook's program list).
 */
#ifndef EMPTCP_CHAIN_H
#define EMPTCP_CHAIN_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "emptcp_abi.h"
#include "emptcp_maps.h"

_Static_assert(sizeof(struct emptcp_ctx) == 20, "context must fit skb->cb (20 bytes)");
_Static_assert(sizeof(struct emptcp_ctx) <= 32, "context must fit XDP data_meta");
_Static_assert(sizeof(struct emptcp_ctx) % 4 == 0, "XDP metadata grows in 4-byte steps");

/* Index of stages[] for a run-time stage number, in 0..7.  A plain
 * `i & (EMPTCP_MAX_STAGES - 1)` is not enough: clang drops the AND when it can prove i < 8 from a check it
 * made on *another* register (e.g. the 32-bit copy of `stage + 1`, while the
 * 64-bit sum is used to index), and the verifier then rejects a stack read
 * at a variable offset ("invalid variable-offset read from stack", issue 9).
 * An AND in inline asm is always emitted, on the register that indexes. */
static __always_inline __u64 emptcp_stage_idx(__u64 i)
{
	asm volatile("%0 &= %1" : "+r"(i) : "i"(EMPTCP_MAX_STAGES - 1));
	return i;
}

/* This action program instance's constants (struct emptcp_instance): set by
 * the loader per instance, frozen by libbpf at load.  Selectors and the entry
 * ignore it.  Not static, so that every object keeps it in .rodata. */
const volatile struct emptcp_instance emptcp_inst = {};

/* Action phase: the context's stages[] carry no slots (actions are instances
 * that know their successor); bytes 4-7 hold the first action's instance key
 * from the policy record until the tail call that enters the actions. */
static __always_inline void emptcp_ctx_set_act_key(struct emptcp_ctx *c, __u32 key)
{
	c->stages[0].slot = key;
	c->stages[0].param = key >> 8;
	c->stages[1].slot = key >> 16;
	c->stages[1].param = key >> 24;
}

static __always_inline __u32 emptcp_ctx_act_key(const struct emptcp_ctx *c)
{
	return c->stages[0].slot | ((__u32)c->stages[0].param << 8) |
	       ((__u32)c->stages[1].slot << 16) | ((__u32)c->stages[1].param << 24);
}

/* decoded view of the context plus the stage's parameter */
struct emptcp_env {
	struct emptcp_ctx c;
	const __u8 *blob;	/* NULL unless the parameter is REF */
	__u32 gen, hook, kind, policy, phase, stage;
	__u8 param;		/* raw param byte */
	__u8 imm;		/* param & EMPTCP_P_IMM_MASK */
};

static __always_inline __u8 emptcp_b0(__u32 gen, __u32 phase, __u32 acc)
{
	return (EMPTCP_ABI_VERSION << EMPTCP_B0_ABI_SHIFT) |
	       ((gen << EMPTCP_B0_GEN_SHIFT) & EMPTCP_B0_GEN_MASK) |
	       (phase ? EMPTCP_B0_PHASE : 0) | (acc ? EMPTCP_B0_ACC : 0);
}

static __always_inline void emptcp_hook_count(__u32 hook, int field)
{
	struct emptcp_hook_stat *s;

	if (hook >= EMPTCP_MAX_HOOKS)
		return;
	s = bpf_map_lookup_elem(&emptcp_hook_stats, &hook);
	if (!s)
		return;
	/* per-CPU values: plain increments are enough */
	switch (field) {
	case 0: s->packets++; break;
	case 1: s->matched++; break;
	case 2: s->unmatched++; break;
	case 3: s->missed_tail_calls++; break;
	default: s->errors++; break;
	}
}
#define EMPTCP_HS_PACKETS	0
#define EMPTCP_HS_MATCHED	1
#define EMPTCP_HS_UNMATCHED	2
#define EMPTCP_HS_MISSED	3
#define EMPTCP_HS_ERRORS	4

static __always_inline struct emptcp_stage_stat *
emptcp_stage_stat(__u32 hook, __u32 pol, __u32 phase, __u32 stage)
{
	__u32 idx = EMPTCP_STAGE_STAT_IDX(hook & (EMPTCP_MAX_HOOKS - 1),
					  pol & (EMPTCP_MAX_POLICIES - 1),
					  phase & 1, stage & (EMPTCP_MAX_STAGES - 1));

	return bpf_map_lookup_elem(&emptcp_stage_stats, &idx);
}

/* A failed tail call is never silent: count it on the stage that should
 * have run and on the hook.  The caller then returns "no verdict". */
static __always_inline void emptcp_count_missed(const struct emptcp_ctx *c)
{
	__u32 hook = c->hook & EMPTCP_B1_HOOK_MASK;
	__u32 phase = (c->b0 & EMPTCP_B0_PHASE) ? 1 : 0;
	struct emptcp_stage_stat *s;

	s = emptcp_stage_stat(hook, c->policy, phase, c->cur);
	if (s)
		s->missed_tail_calls++;
	emptcp_hook_count(hook, EMPTCP_HS_MISSED);
}

/* Switch the context of a matched policy to its action stages.
 * Returns 0 when the policy has no actions (chain ends with pass). */
static __always_inline int emptcp_enter_actions(struct emptcp_ctx *c, __u32 gen,
						__u32 hook, __u32 pol)
{
	struct emptcp_policy *p;
	__u32 idx;

	idx = EMPTCP_POLICY_IDX(gen & (EMPTCP_MAX_GEN - 1), hook & (EMPTCP_MAX_HOOKS - 1),
				pol & (EMPTCP_MAX_POLICIES - 1));
	p = bpf_map_lookup_elem(&emptcp_policies, &idx);
	if (!p || p->n_act == 0 || p->act_key == 0)
		return 0;
	c->b0 = emptcp_b0(gen, 1, 0);
	c->cur = 0;
	emptcp_ctx_set_act_key(c, p->act_key);
	return 1;
}

/* ---- rules: the classification result (docs/datapath-v2.md) ---- */

static __always_inline void emptcp_rules_and(struct emptcp_rules *acc, const struct emptcp_rules *row)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < EMPTCP_RULE_WORDS; i++)
		acc->w[i] &= row->w[i];
}

/* index of the lowest set bit of a non-zero word (BPF has no ctz instruction) */
static __always_inline __u32 emptcp_ctz64(__u64 x)
{
	__u32 n = 0;

	if (!(x & 0xffffffffULL)) { n += 32; x >>= 32; }
	if (!(x & 0xffffULL)) { n += 16; x >>= 16; }
	if (!(x & 0xffULL)) { n += 8; x >>= 8; }
	if (!(x & 0xfULL)) { n += 4; x >>= 4; }
	if (!(x & 0x3ULL)) { n += 2; x >>= 2; }
	if (!(x & 0x1ULL)) n += 1;
	return n;
}

/* the first (highest priority) rule in acc, or -1 */
static __always_inline int emptcp_first_rule(const struct emptcp_rules *acc)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < EMPTCP_RULE_WORDS; i++)
		if (acc->w[i])
			return i * 64 + emptcp_ctz64(acc->w[i]);
	return -1;
}

static __always_inline int emptcp_rule_has(const struct emptcp_rules *r, __u32 rule)
{
	return (r->w[(rule >> 6) & (EMPTCP_RULE_WORDS - 1)] >> (rule & 63)) & 1;
}

/* Start the candidate rules of a packet (cand, rule = its first): a rule
 * without program selectors wins and its policy's actions are loaded; a rule
 * with some loads them (cand is kept per CPU for emptcp_rule_failed).
 * Returns 0: no rule left (unmatched); 1: selector stages loaded;
 *         2: action stages loaded (matched); 3: matched, no actions. */
static __always_inline int emptcp_enter_rule(struct emptcp_ctx *c, __u32 gen, __u32 hook,
					     __u32 kind, const struct emptcp_hook_rules *hr,
					     const struct emptcp_rules *cand, int rule)
{
	const struct emptcp_rule_terms *t;
	struct emptcp_cls_state *st;
	__u32 r, idx, i, first = EMPTCP_MAX_STAGES, zero = 0;

	if (rule < 0)
		return 0;
	r = rule & (EMPTCP_MAX_RULES - 1);
	c->hook = (hook & EMPTCP_B1_HOOK_MASK) | ((kind << EMPTCP_B1_KIND_SHIFT) & EMPTCP_B1_KIND_MASK);
	c->policy = hr->rule_policy[r];
	if (!emptcp_rule_has(&hr->plugin, r)) {
		return emptcp_enter_actions(c, gen, hook, c->policy) ? 2 : 3;
	}
	idx = EMPTCP_RULE_IDX(gen & (EMPTCP_MAX_GEN - 1), hook & (EMPTCP_MAX_HOOKS - 1), r);
	t = bpf_map_lookup_elem(&emptcp_rule_terms, &idx);
	st = bpf_map_lookup_elem(&emptcp_cls_state, &zero);
	if (!t || !st)
		return 0;
	st->cand = *cand;
	st->rule = r;
	st->gen = gen;
	st->hook = hook;
	c->b0 = emptcp_b0(gen, EMPTCP_PHASE_SEL, 0);
#pragma unroll
	for (i = EMPTCP_MAX_STAGES; i-- > 0;) {
		c->stages[i] = t->sel[i];
		if (t->sel[i].slot)
			first = i;
	}
	if (first >= EMPTCP_MAX_STAGES)
		return 0;	/* control-plane bug: a plugin rule without terms */
	c->cur = first;
	return 1;
}

/* A program selector of the running candidate said no: drop that rule and
 * start the next candidate.  Same returns as emptcp_enter_rule. */
static __always_inline int emptcp_rule_failed(struct emptcp_ctx *c, __u32 gen, __u32 hook,
					      __u32 kind)
{
	const struct emptcp_hook_rules *hr;
	struct emptcp_cls_state *st;
	struct emptcp_rules cand;
	__u32 zero = 0, idx, r;

	st = bpf_map_lookup_elem(&emptcp_cls_state, &zero);
	if (!st || st->gen != gen || st->hook != hook)
		return -1;
	idx = (gen & (EMPTCP_MAX_GEN - 1)) * EMPTCP_MAX_HOOKS + (hook & (EMPTCP_MAX_HOOKS - 1));
	hr = bpf_map_lookup_elem(&emptcp_hook_rules, &idx);
	if (!hr)
		return -1;
	cand = st->cand;
	r = st->rule & (EMPTCP_MAX_RULES - 1);
	cand.w[(r >> 6) & (EMPTCP_RULE_WORDS - 1)] &= ~(1ULL << (r & 63));
	return emptcp_enter_rule(c, gen, hook, kind, hr, &cand, emptcp_first_rule(&cand));
}

/* Decode + validate the context, fetch the parameter, count the stage.
 * 0 on success, -1 when the stage must bail out with the pass verdict. */
static __always_inline int emptcp_env_init(struct emptcp_env *e, __u32 phase, __u64 bytes)
{
	struct emptcp_ctx *c = &e->c;
	struct emptcp_stage_stat *s;
	__u32 key;

	e->hook = c->hook & EMPTCP_B1_HOOK_MASK;
	if ((c->b0 >> EMPTCP_B0_ABI_SHIFT) != EMPTCP_ABI_VERSION)
		goto bad;
	e->gen = (c->b0 & EMPTCP_B0_GEN_MASK) >> EMPTCP_B0_GEN_SHIFT;
	e->phase = (c->b0 & EMPTCP_B0_PHASE) ? 1 : 0;
	e->kind = (c->hook & EMPTCP_B1_KIND_MASK) >> EMPTCP_B1_KIND_SHIFT;
	e->policy = c->policy;
	e->stage = c->cur;
	if (e->phase != phase || e->stage >= EMPTCP_MAX_STAGES ||
	    e->policy >= EMPTCP_MAX_POLICIES)
		goto bad;
	e->param = c->stages[emptcp_stage_idx(e->stage)].param;
	e->imm = e->param & EMPTCP_P_IMM_MASK;
	e->blob = NULL;
	if (e->param & EMPTCP_P_REF) {
		key = EMPTCP_PARAM_KEY(e->gen, e->hook, e->policy, e->phase, e->stage);
		e->blob = bpf_map_lookup_elem(&emptcp_params, &key);
		if (!e->blob)
			goto bad;	/* control-plane bug: count it, don't guess */
	}
	s = emptcp_stage_stat(e->hook, e->policy, e->phase, e->stage);
	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
	return 0;
bad:
	emptcp_hook_count(e->hook, EMPTCP_HS_ERRORS);
	return -1;
}

/* what a selector's POST does next; shared by XDP and TC */
#define EMPTCP_GO_TAIL	1	/* tail-call c->stages[c->cur] */
#define EMPTCP_GO_PASS	0	/* end: no verdict */

/* After a program selector of the candidate rule: on a match, run the rule's
 * next program selector, or -- the last one matched -- the policy's actions;
 * otherwise go on with the next candidate rule. */
static __always_inline int emptcp_sel_next(struct emptcp_env *e, int match)
{
	struct emptcp_ctx *c = &e->c;
	int r;
	__u32 i;

	if (match) {
#pragma unroll
		for (i = 1; i < EMPTCP_MAX_STAGES; i++) {
			if (i <= e->stage || c->stages[i].slot == 0)
				continue;
			c->cur = i;
			return EMPTCP_GO_TAIL;
		}
		emptcp_hook_count(e->hook, EMPTCP_HS_MATCHED);
		return emptcp_enter_actions(c, e->gen, e->hook, e->policy) ? EMPTCP_GO_TAIL
									   : EMPTCP_GO_PASS;
	}
	r = emptcp_rule_failed(c, e->gen, e->hook, e->kind);
	if (r < 0) {
		emptcp_hook_count(e->hook, EMPTCP_HS_ERRORS);
		return EMPTCP_GO_PASS;
	}
	if (r == 0) {
		emptcp_hook_count(e->hook, EMPTCP_HS_UNMATCHED);
		return EMPTCP_GO_PASS;
	}
	if (r >= 2)
		emptcp_hook_count(e->hook, EMPTCP_HS_MATCHED);
	return r == 3 ? EMPTCP_GO_PASS : EMPTCP_GO_TAIL;
}

/* ---------------------------- actions ---------------------------------- */
/* An action instance reads only the context's first word -- b0, hook, policy,
 * cur -- and writes it back with cur + 1 (as one u32: a byte store followed by
 * the next program's u32 load defeats store forwarding, ~5 ns per action);
 * its parameter and successor are constants (emptcp_inst).  The word, as a
 * little-endian u32 (XDP data_meta[0..3], TC cb[0]): */
#define EMPTCP_W0_CUR_SHIFT	24
#define EMPTCP_W0_ACT_CHECK	((EMPTCP_ABI_VERSION << EMPTCP_B0_ABI_SHIFT) | EMPTCP_B0_PHASE)
/* abi, phase, hook byte bit 7 (reserved), policy < 128, cur < 8: one test */
#define EMPTCP_W0_ACT_MASK	(0xf0 | EMPTCP_B0_PHASE | (0x80u << 8) | \
				 ((0xffu & ~(EMPTCP_MAX_POLICIES - 1)) << 16) | \
				 ((0xffu & ~(EMPTCP_MAX_STAGES - 1)) << EMPTCP_W0_CUR_SHIFT))

/* Decode + check the context word and take the parameter from the instance.
 * 0 on success, -1: bail out with no verdict (counted). */
static __always_inline int emptcp_act_env_init(struct emptcp_env *e, __u32 w0)
{
	const struct emptcp_instance *inst = (const struct emptcp_instance *)&emptcp_inst;

	__builtin_memcpy(&e->c, &w0, sizeof(w0));	/* b0, hook, policy, cur */
	__builtin_memset(e->c.stages, 0, sizeof(e->c.stages));	/* none: dropped unless read */
	e->hook = (w0 >> 8) & EMPTCP_B1_HOOK_MASK;
	if ((w0 & EMPTCP_W0_ACT_MASK) != EMPTCP_W0_ACT_CHECK) {
		emptcp_hook_count(e->hook, EMPTCP_HS_ERRORS);
		return -1;
	}
	e->gen = (w0 & EMPTCP_B0_GEN_MASK) >> EMPTCP_B0_GEN_SHIFT;
	e->phase = EMPTCP_PHASE_ACT;
	e->kind = ((w0 >> 8) & EMPTCP_B1_KIND_MASK) >> EMPTCP_B1_KIND_SHIFT;
	e->policy = (w0 >> 16) & (EMPTCP_MAX_POLICIES - 1);
	e->stage = (w0 >> EMPTCP_W0_CUR_SHIFT) & (EMPTCP_MAX_STAGES - 1);
	/* Read the parameter through a pointer clang cannot see through: through
	 * the volatile object every field would be loaded even when the stage
	 * never reads PARAM/BLOB, and through a plain pointer to it clang would
	 * fold the all-zero initializer.  The verifier still sees constants
	 * (a frozen read-only map value), so the branch not taken is pruned. */
	asm volatile("" : "+r"(inst));
	e->imm = inst->imm;
	e->blob = inst->ref ? inst->blob : NULL;
	e->param = (inst->ref ? EMPTCP_P_REF : 0) | e->imm;
	return 0;
}

/* the stage's counters (one per-CPU row: packets and bytes), or NULL */
static __always_inline struct emptcp_stage_stat *emptcp_act_stat(const struct emptcp_env *e)
{
	__u32 idx = EMPTCP_STAGE_STAT_IDX(e->hook, e->policy, EMPTCP_PHASE_ACT, e->stage);

	return bpf_map_lookup_elem(&emptcp_stage_stats, &idx);
}

/* the context word for the successor: cur + 1 */
static __always_inline __u32 emptcp_act_next_word(const struct emptcp_env *e)
{
	__u32 w0;

	__builtin_memcpy(&w0, &e->c, sizeof(w0));
	return w0 + (1u << EMPTCP_W0_CUR_SHIFT);	/* cur < EMPTCP_MAX_STAGES: no carry out */
}

/* a failed tail call to the action whose context word is w: counted on the
 * stage that should have run, from the word only (nothing else kept alive
 * across the tail call) */
static __always_inline void emptcp_word_missed(__u32 w)
{
	struct emptcp_stage_stat *s;
	__u32 idx;

	idx = EMPTCP_STAGE_STAT_IDX((w >> 8) & EMPTCP_B1_HOOK_MASK, (w >> 16) & (EMPTCP_MAX_POLICIES - 1),
				    EMPTCP_PHASE_ACT, (w >> EMPTCP_W0_CUR_SHIFT) & (EMPTCP_MAX_STAGES - 1));
	s = bpf_map_lookup_elem(&emptcp_stage_stats, &idx);
	if (s)
		s->missed_tail_calls++;
	emptcp_hook_count((w >> 8) & EMPTCP_B1_HOOK_MASK, EMPTCP_HS_MISSED);
}

static __always_inline void emptcp_act_missed(const struct emptcp_env *e)
{
	emptcp_word_missed(emptcp_act_next_word(e));
}

/* ------------------------------ XDP ------------------------------------ */

static __always_inline int emptcp_xdp_ctx_load(struct xdp_md *ctx, struct emptcp_ctx *c)
{
	void *data = (void *)(long)ctx->data;
	void *meta = (void *)(long)ctx->data_meta;

	if (meta + sizeof(*c) > data)
		return -1;
	__builtin_memcpy(c, meta, sizeof(*c));
	return 0;
}

static __always_inline int emptcp_xdp_ctx_store(struct xdp_md *ctx, const struct emptcp_ctx *c)
{
	void *data = (void *)(long)ctx->data;
	void *meta = (void *)(long)ctx->data_meta;

	if (meta + sizeof(*c) > data)
		return -1;
	__builtin_memcpy(meta, c, sizeof(*c));
	return 0;
}

/* Entering the actions: the first action's key comes from the policy record,
 * at run time.  A switch over the first EMPTCP_ENTER_CASES instance keys makes
 * that tail call a direct jump too (a compare tree + patched jump, ~7 ns,
 * instead of ~20 ns through a retpoline); the control plane hands out the
 * lowest free instance numbers, so keys beyond (more than 256 instances of one
 * program type) are rare and take the run-time call.  bpf_tail_call_static
 * keeps clang from merging the cases back into one call with a computed key. */
#define EMPTCP_ENTER_CASES	256
#define __EMPTCP_CASE(m, x, n) \
	case (n): bpf_tail_call_static(x, m, EMPTCP_INSTANCE_BASE + (n)); break;
#define __EMPTCP_CASE4(m, x, n) __EMPTCP_CASE(m, x, n) __EMPTCP_CASE(m, x, (n) + 1) \
	__EMPTCP_CASE(m, x, (n) + 2) __EMPTCP_CASE(m, x, (n) + 3)
#define __EMPTCP_CASE16(m, x, n) __EMPTCP_CASE4(m, x, n) __EMPTCP_CASE4(m, x, (n) + 4) \
	__EMPTCP_CASE4(m, x, (n) + 8) __EMPTCP_CASE4(m, x, (n) + 12)
#define __EMPTCP_CASE64(m, x, n) __EMPTCP_CASE16(m, x, n) __EMPTCP_CASE16(m, x, (n) + 16) \
	__EMPTCP_CASE16(m, x, (n) + 32) __EMPTCP_CASE16(m, x, (n) + 48)
#define __EMPTCP_CASE256(m, x) __EMPTCP_CASE64(m, x, 0) __EMPTCP_CASE64(m, x, 64) \
	__EMPTCP_CASE64(m, x, 128) __EMPTCP_CASE64(m, x, 192)
_Static_assert(EMPTCP_ENTER_CASES <= EMPTCP_MAX_INSTANCES, "switch beyond the instance keys");

/* tail-call the context's current stage: a selector's slot, or (action phase,
 * entering the actions) the first action's instance; returns only on failure */
#define EMPTCP_TAIL_CALL(x, map, c) do { \
	if ((c)->b0 & EMPTCP_B0_PHASE) { \
		__u32 __key = emptcp_ctx_act_key(c); \
		switch (__key - EMPTCP_INSTANCE_BASE) { \
		__EMPTCP_CASE256(map, x) \
		default: bpf_tail_call(x, map, __key); \
		} \
	} else { \
		__u32 __gen = ((c)->b0 & EMPTCP_B0_GEN_MASK) >> EMPTCP_B0_GEN_SHIFT; \
		bpf_tail_call(x, map, EMPTCP_PROG_KEY(__gen, \
			      (c)->stages[emptcp_stage_idx((c)->cur)].slot)); \
	} \
} while (0)

/* store the context and tail-call its current stage; returns only on failure */
static __always_inline int emptcp_xdp_tail(struct xdp_md *ctx, struct emptcp_ctx *c)
{
	if (emptcp_xdp_ctx_store(ctx, c) == 0)
		EMPTCP_TAIL_CALL(ctx, &emptcp_xdp_progs, c);
	emptcp_count_missed(c);
	return XDP_PASS;
}

static __always_inline int emptcp_xdp_pre(struct xdp_md *ctx, struct emptcp_env *e, __u32 phase)
{
	if (emptcp_xdp_ctx_load(ctx, &e->c) < 0) {
		emptcp_hook_count(EMPTCP_MAX_HOOKS, EMPTCP_HS_ERRORS);	/* no hook known */
		return -1;
	}
	return emptcp_env_init(e, phase, ctx->data_end - ctx->data);
}

static __always_inline int emptcp_xdp_sel_post(struct xdp_md *ctx, struct emptcp_env *e, int match)
{
	if (emptcp_sel_next(e, match) == EMPTCP_GO_TAIL)
		return emptcp_xdp_tail(ctx, &e->c);
	return XDP_PASS;
}

static __always_inline int emptcp_xdp_act_pre(struct xdp_md *ctx, struct emptcp_env *e)
{
	struct emptcp_stage_stat *s;
	void *data = (void *)(long)ctx->data;
	void *meta = (void *)(long)ctx->data_meta;

	if (meta + sizeof(struct emptcp_ctx) > data) {
		emptcp_hook_count(EMPTCP_MAX_HOOKS, EMPTCP_HS_ERRORS);	/* no hook known */
		return -1;
	}
	if (emptcp_act_env_init(e, *(__u32 *)meta) < 0)
		return -1;
	s = emptcp_act_stat(e);
	if (s) {	/* the length read after the lookup: one value less kept across it */
		s->packets++;
		s->bytes += ctx->data_end - ctx->data;
	}
	return 0;
}

/* next action: store cur + 1, tail-call the successor instance (a constant key) */
static __always_inline int emptcp_xdp_act_post(struct xdp_md *ctx, struct emptcp_env *e)
{
	void *data, *meta;

	if (emptcp_inst.next_key == 0)
		return XDP_PASS;	/* end of the chain: no verdict */
	data = (void *)(long)ctx->data;	/* re-read: the body may have moved the packet */
	meta = (void *)(long)ctx->data_meta;
	if (meta + sizeof(struct emptcp_ctx) <= data) {
		*(__u32 *)meta = emptcp_act_next_word(e);
		bpf_tail_call(ctx, &emptcp_xdp_progs, emptcp_inst.next_key);
	}
	emptcp_act_missed(e);
	return XDP_PASS;
}

/* ------------------------------ TC ------------------------------------- */

static __always_inline void emptcp_tc_ctx_load(struct __sk_buff *skb, struct emptcp_ctx *c)
{
	__u32 *w = (__u32 *)c;

	w[0] = skb->cb[0];
	w[1] = skb->cb[1];
	w[2] = skb->cb[2];
	w[3] = skb->cb[3];
	w[4] = skb->cb[4];
}

static __always_inline void emptcp_tc_ctx_store(struct __sk_buff *skb, const struct emptcp_ctx *c)
{
	const __u32 *w = (const __u32 *)c;

	skb->cb[0] = w[0];
	skb->cb[1] = w[1];
	skb->cb[2] = w[2];
	skb->cb[3] = w[3];
	skb->cb[4] = w[4];
}

static __always_inline int emptcp_tc_tail(struct __sk_buff *skb, struct emptcp_ctx *c)
{
	emptcp_tc_ctx_store(skb, c);
	EMPTCP_TAIL_CALL(skb, &emptcp_tc_progs, c);
	emptcp_count_missed(c);
	return TC_ACT_UNSPEC;	/* no decision: the next TCX program runs */
}

/* TC stages parse with direct packet access: make sure the headers are in
 * the linear part (a no-op for the usual case) */
#define EMPTCP_TC_PULL_LEN 128
static __always_inline int emptcp_tc_pull(struct __sk_buff *skb)
{
	__u64 want = skb->len < EMPTCP_TC_PULL_LEN ? skb->len : EMPTCP_TC_PULL_LEN;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + want > data_end && bpf_skb_pull_data(skb, want) < 0)
		return -1;
	return 0;
}

static __always_inline int emptcp_tc_pre(struct __sk_buff *skb, struct emptcp_env *e, __u32 phase)
{
	emptcp_tc_ctx_load(skb, &e->c);
	if (emptcp_tc_pull(skb) < 0) {
		/* the headers cannot be made linear (no memory): count it, no verdict */
		emptcp_hook_count(e->c.hook & EMPTCP_B1_HOOK_MASK, EMPTCP_HS_ERRORS);
		return -1;
	}
	return emptcp_env_init(e, phase, skb->len);
}

static __always_inline int emptcp_tc_act_pre(struct __sk_buff *skb, struct emptcp_env *e)
{
	__u64 want = skb->len < EMPTCP_TC_PULL_LEN ? skb->len : EMPTCP_TC_PULL_LEN;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct emptcp_stage_stat *s;
	__u32 w0 = skb->cb[0];

	if (data + want > data_end && bpf_skb_pull_data(skb, want) < 0) {
		emptcp_hook_count((w0 >> 8) & EMPTCP_B1_HOOK_MASK, EMPTCP_HS_ERRORS);
		return -1;
	}
	if (emptcp_act_env_init(e, w0) < 0)
		return -1;
	s = emptcp_act_stat(e);
	if (s) {
		s->packets++;
		s->bytes += skb->len;
	}
	return 0;
}

static __always_inline int emptcp_tc_sel_post(struct __sk_buff *skb, struct emptcp_env *e, int match)
{
	if (emptcp_sel_next(e, match) == EMPTCP_GO_TAIL)
		return emptcp_tc_tail(skb, &e->c);
	return TC_ACT_UNSPEC;
}

static __always_inline int emptcp_tc_act_post(struct __sk_buff *skb, struct emptcp_env *e)
{
	if (emptcp_inst.next_key == 0)
		return TC_ACT_UNSPEC;	/* end of the chain: no decision, the next TCX program runs */
	skb->cb[0] = emptcp_act_next_word(e);
	bpf_tail_call(skb, &emptcp_tc_progs, emptcp_inst.next_key);
	emptcp_act_missed(e);
	return TC_ACT_UNSPEC;
}

/* --------------------- hook-generic plugin macros ---------------------- */

#define EMPTCP_IS_XDP(ctx) _Generic((ctx), struct xdp_md *: 1, struct __sk_buff *: 0)
/* a decision: deliver the packet (on TC, TC_ACT_OK ends the TCX program list) */
#define EMPTCP_PASS(ctx) _Generic((ctx), struct xdp_md *: XDP_PASS, struct __sk_buff *: TC_ACT_OK)
/* no decision: XDP_PASS / TC_ACT_UNSPEC (TCX_NEXT: the next program on the hook runs) */
#define EMPTCP_NO_VERDICT(ctx) \
	_Generic((ctx), struct xdp_md *: XDP_PASS, struct __sk_buff *: TC_ACT_UNSPEC)
#define EMPTCP_DROP(ctx) _Generic((ctx), struct xdp_md *: XDP_DROP, struct __sk_buff *: TC_ACT_SHOT)
#define EMPTCP_REDIRECT(ctx, ifindex) bpf_redirect((ifindex), 0)	/* XDP_REDIRECT / TC_ACT_REDIRECT */
#define EMPTCP_PRE(ctx, e, phase) \
	_Generic((ctx), struct xdp_md *: emptcp_xdp_pre, struct __sk_buff *: emptcp_tc_pre)(ctx, e, phase)
#define EMPTCP_SEL_POST(ctx, e, m) \
	_Generic((ctx), struct xdp_md *: emptcp_xdp_sel_post, struct __sk_buff *: emptcp_tc_sel_post)(ctx, e, m)
#define EMPTCP_ACT_PRE(ctx, e) \
	_Generic((ctx), struct xdp_md *: emptcp_xdp_act_pre, struct __sk_buff *: emptcp_tc_act_pre)(ctx, e)
#define EMPTCP_ACT_POST(ctx, e) \
	_Generic((ctx), struct xdp_md *: emptcp_xdp_act_post, struct __sk_buff *: emptcp_tc_act_post)(ctx, e)
#define EMPTCP_DATA(ctx) ((void *)(long)(ctx)->data)
#define EMPTCP_DATA_END(ctx) ((void *)(long)(ctx)->data_end)
/* "local" side of the packet: destination on ingress (XDP, tc-ingress),
 * source on egress */
#define EMPTCP_IS_EGRESS(env) ((env).kind == EMPTCP_KIND_TC_EGRESS)

/* pre: EMPTCP_PRE(ctx, &EMPTCP_ENV, phase) (selectors) or EMPTCP_ACT_PRE(ctx, &EMPTCP_ENV) */
#define __EMPTCP_STAGE_PRE(pre) \
	struct emptcp_env EMPTCP_ENV; \
	if (pre < 0) \
		return EMPTCP_NO_VERDICT(ctx); \
	const __u8 PARAM __attribute__((unused)) = EMPTCP_ENV.imm; \
	const __u8 *BLOB __attribute__((unused)) = EMPTCP_ENV.blob; \
	void *data __attribute__((unused)) = EMPTCP_DATA(ctx); \
	void *data_end __attribute__((unused)) = EMPTCP_DATA_END(ctx);

#define EMPTCP_NEXT goto emptcp_post

#define SELECTOR_PRE_SEC \
	int MATCH = 0; \
	__EMPTCP_STAGE_PRE(EMPTCP_PRE(ctx, &EMPTCP_ENV, EMPTCP_PHASE_SEL))

#define SELECTOR_POST_SEC \
emptcp_post: __attribute__((unused)); \
	return EMPTCP_SEL_POST(ctx, &EMPTCP_ENV, MATCH);

#define ACTION_PRE_SEC __EMPTCP_STAGE_PRE(EMPTCP_ACT_PRE(ctx, &EMPTCP_ENV))

#define ACTION_POST_SEC \
emptcp_post: __attribute__((unused)); \
	return EMPTCP_ACT_POST(ctx, &EMPTCP_ENV);

/* Define the XDP and TC programs of a selector whose body does not depend on
 * the hook: `static __always_inline int fn(void *data, void *data_end,
 * struct emptcp_env *env)` returns non-zero on match. */
#define EMPTCP_SELECTOR(name, fn) \
SEC("xdp") int emptcp_##name##_xdp(struct xdp_md *ctx) \
{ \
	SELECTOR_PRE_SEC \
	MATCH = fn(data, data_end, &EMPTCP_ENV); \
	SELECTOR_POST_SEC \
} \
SEC("tc") int emptcp_##name##_tc(struct __sk_buff *ctx) \
{ \
	SELECTOR_PRE_SEC \
	MATCH = fn(data, data_end, &EMPTCP_ENV); \
	SELECTOR_POST_SEC \
}

#endif /* EMPTCP_CHAIN_H */
