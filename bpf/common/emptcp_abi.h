/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_abi.h - the chain context and table layouts shared by every emptcp
 * BPF object and mirrored (and checked) by core/emptcp/abi.py.
 *
 * This header has one job: define bytes.  No maps, no helpers.  Bit fields
 * are spelled as explicit masks (not C bit fields) because C leaves bit-field
 * order to the compiler and Python must agree with it.  See docs/abi.md.
 */
#ifndef EMPTCP_ABI_H
#define EMPTCP_ABI_H

#include <linux/types.h>

#define EMPTCP_ABI_VERSION	2

#define EMPTCP_MAX_GEN		4	/* generations of tables; one is active */
#define EMPTCP_MAX_HOOKS	32	/* (ifindex, kind) attachments */
#define EMPTCP_MAX_POLICIES	128	/* per hook, priority ordered */
#define EMPTCP_MAX_STAGES	8	/* selectors per policy, and actions per policy */
#define EMPTCP_SLOTS_PER_GEN	256	/* prog-array slots per generation; slot 0 = end */
/* action program instances (one per chain suffix, docs/abi.md 1.1) live in
 * the prog arrays after the generations' slots, shared by all generations */
#define EMPTCP_INSTANCE_BASE	(EMPTCP_MAX_GEN * EMPTCP_SLOTS_PER_GEN)
#define EMPTCP_MAX_INSTANCES	1024	/* per program type */
#define EMPTCP_PROG_ARRAY_SIZE	(EMPTCP_INSTANCE_BASE + EMPTCP_MAX_INSTANCES)
#define EMPTCP_PARAM_SIZE	64	/* by-reference parameter blob */
#define EMPTCP_MAX_PARAMS	4096	/* entries of emptcp_params */
/* the kernel allows 33 tail calls; entry->stage0 is the first one, so the
 * stages a packet runs (selectors evaluated + actions) must be <= 32 */
#define EMPTCP_MAX_TAIL_CALLS	32
/* stage-counter rows and parameter keys per policy: two phases of MAX_STAGES */
#define EMPTCP_STAGES_PER_POLICY	(2 * EMPTCP_MAX_STAGES)
#define EMPTCP_EVENTS_BYTES	(256 * 1024)	/* emptcp_events ring buffer */

/* ---- classification of built-in selectors (docs/datapath-v2.md) ----
 * Built-in selectors are sets of keys over *dimensions*; a key's value is its
 * *class* (the sets that contain it, numbered per generation); a class's *row*
 * is the bitmap of the hook's *rules* (DNF clauses of the policies, priority
 * ordered) that the class satisfies in that dimension. */
#define EMPTCP_MAX_RULES	256	/* per hook and generation: 4 words of 64 bits */
#define EMPTCP_RULE_WORDS	(EMPTCP_MAX_RULES / 64)
#define EMPTCP_MAX_CLASSES	16384	/* per generation; class 0 = "no class" */
#define EMPTCP_MAX_KEYS		(1 << 21)	/* exact-match keys, all hooks and generations */
#define EMPTCP_MAX_PREFIXES	65536	/* prefix keys, all generations */

#define EMPTCP_PORT_TABLES_PER_GEN 8	/* hooks per generation using port selectors */
#define EMPTCP_HOOK_SLOTS	4096	/* emptcp_hook_slots: ifindex & (SLOTS - 1) */

#define EMPTCP_DIM_FLOW		0	/* tcp4tuple: family, local/remote addr and port */
#define EMPTCP_DIM_PORTS	1	/* tcp2tuple ports: local and remote port */
#define EMPTCP_DIM_ADDRS	2	/* tcp2tuple addrs: family, local and remote addr */
#define EMPTCP_DIM_LADDR	3	/* ip_pair local prefixes */
#define EMPTCP_DIM_RADDR	4	/* ip_pair remote prefixes */
#define EMPTCP_DIM_LPORT	5	/* service: local port */
#define EMPTCP_DIM_RPORT	6	/* service (mode either): remote port */
#define EMPTCP_NUM_DIMS		7

/* hook kinds (key of emptcp_hooks, and ctx byte1 bits 5-6) */
#define EMPTCP_KIND_XDP		0
#define EMPTCP_KIND_TC_INGRESS	1
#define EMPTCP_KIND_TC_EGRESS	2

/* phases (ctx byte0 bit 1) */
#define EMPTCP_PHASE_SEL	0
#define EMPTCP_PHASE_ACT	1

/* ---- the chain context: 20 bytes, XDP data_meta or TC skb->cb[0..4] ---- */

/* byte0: abi:4 (bits 7-4) | gen:2 (bits 3-2) | phase:1 (bit 1) | acc:1 (bit 0) */
#define EMPTCP_B0_ABI_SHIFT	4
#define EMPTCP_B0_GEN_SHIFT	2
#define EMPTCP_B0_GEN_MASK	0x0c
#define EMPTCP_B0_PHASE		0x02
#define EMPTCP_B0_ACC		0x01
/* byte1: hook_id:5 (bits 4-0) | kind:2 (bits 6-5) | reserved:1 (bit 7).
 * The kind is in the context because a stage shared by TC ingress and egress
 * must know the direction to tell "local" from "remote" addresses. */
#define EMPTCP_B1_HOOK_MASK	0x1f
#define EMPTCP_B1_KIND_SHIFT	5
#define EMPTCP_B1_KIND_MASK	0x60

/* stage param byte: REF:1 (bit 7) | OR:1 (bit 6) | imm:6 (bits 5-0) */
#define EMPTCP_P_REF		0x80	/* parameter is the 64-byte blob in emptcp_params */
#define EMPTCP_P_OR		0x40	/* selectors: acc = acc OR this (else AND) */
#define EMPTCP_P_IMM_MASK	0x3f

struct emptcp_stage {
	__u8 slot;	/* 0 = end of chain; 1..255 = slot in this generation */
	__u8 param;	/* EMPTCP_P_* */
};

struct emptcp_ctx {
	__u8 b0;	/* abi | gen | phase | acc */
	__u8 hook;	/* hook_id | kind */
	__u8 policy;	/* index of the current policy in the hook's list */
	__u8 cur;	/* index of the current stage in stages[] */
	struct emptcp_stage stages[EMPTCP_MAX_STAGES];
};

/* ---- tables (map values and keys) ---- */

struct emptcp_state {
	__u32 active_gen;	/* the one index flipped by an apply */
	__u32 abi_version;	/* EMPTCP_ABI_VERSION of the control plane that wrote it */
};

struct emptcp_hook_key {
	__u32 ifindex;
	__u32 kind;		/* EMPTCP_KIND_* */
};

struct emptcp_hook_val {
	__u32 hook_id;		/* 0..EMPTCP_MAX_HOOKS-1 */
};

/* emptcp_hook_slots (ARRAY, ifindex & (EMPTCP_HOOK_SLOTS - 1)): the hook ids of
 * one interface, found without hashing.  Authoritative when ifindex matches;
 * otherwise (empty, or another interface in the slot) emptcp_hooks decides. */
struct emptcp_hook_slot {
	__u32 ifindex;
	__u8 hook[4];		/* per EMPTCP_KIND_*: hook id + 1, 0 = not a hook */
};

/* n_sel == 0 && n_act == 0: no policy here, end of the hook's list */
struct emptcp_policy {
	__u8 n_sel;
	__u8 n_act;
	__u16 policy_uid;	/* control plane's id, copied into events */
	__u8 sel_slot[EMPTCP_MAX_STAGES];
	__u8 sel_param[EMPTCP_MAX_STAGES];
	__u32 act_key;		/* prog-array key of the first action's instance; 0 = none */
};

/* The .rodata constants of one action program instance (the variable
 * emptcp_inst, declared by emptcp_chain.h): the loader sets them before load
 * and libbpf freezes .rodata, so the verifier sees constants -- the tail call
 * to next_key becomes a direct jump, and dead parameter branches vanish. */
struct emptcp_instance {
	__u32 next_key;		/* prog-array key of the successor instance; 0 = end of chain */
	__u8 ref;		/* 1: the parameter is blob[] (BLOB), 0: imm (PARAM) */
	__u8 imm;		/* immediate parameter 0..63 */
	__u8 pad[2];
	__u8 blob[EMPTCP_PARAM_SIZE];	/* by-reference parameter, zero-padded */
};

/* The .rodata of a fused instance (fused.bpf.c, variable emptcp_fused): a run
 * of built-in actions executed one after the other in one program, each with
 * its operand, then a tail call to next_key (0 = end of chain).  The verifier
 * sees constants and removes the code of the operations not used, so the run
 * costs what the same work costs in one hand-written program. */
#define EMPTCP_OP_COUNT		1	/* the stage counters only */
#define EMPTCP_OP_SET_RECV_WIN	2	/* args: the raw 16-bit window */
#define EMPTCP_OP_DROP		3
#define EMPTCP_OP_PASS		4
#define EMPTCP_OP_REDIRECT	5	/* args: ifindex (0: continue) */
struct emptcp_fused {
	__u32 next_key;
	__u8 n;				/* operations, 2..EMPTCP_MAX_STAGES */
	__u8 ops[EMPTCP_MAX_STAGES];	/* EMPTCP_OP_* */
	__u8 pad[3];
	__u32 args[EMPTCP_MAX_STAGES];
};

struct emptcp_param {
	__u8 data[EMPTCP_PARAM_SIZE];
};

struct emptcp_stage_stat {
	__u64 packets;
	__u64 bytes;
	__u64 missed_tail_calls;
};

struct emptcp_hook_stat {
	__u64 packets;		/* seen by the entry with a known hook */
	__u64 matched;		/* a policy matched, its actions started */
	__u64 unmatched;	/* the policy list ended without a match */
	__u64 missed_tail_calls;/* any failed bpf_tail_call on this hook */
	__u64 errors;		/* bad context, missing parameter blob, ... */
};

#define EMPTCP_SCRATCH_SIZE 512
struct emptcp_scratch {
	__u8 bytes[EMPTCP_SCRATCH_SIZE];
};

/* table indices (the same formulas live in abi.py) */
#define EMPTCP_POLICY_IDX(gen, hook, pol) \
	((((__u32)(gen)) * EMPTCP_MAX_HOOKS + (hook)) * EMPTCP_MAX_POLICIES + (pol))
#define EMPTCP_PARAM_KEY(gen, hook, pol, phase, stage) \
	(EMPTCP_POLICY_IDX(gen, hook, pol) * EMPTCP_STAGES_PER_POLICY + \
	 (phase) * EMPTCP_MAX_STAGES + (stage))
#define EMPTCP_STAGE_STAT_IDX(hook, pol, phase, stage) \
	((((__u32)(hook)) * EMPTCP_MAX_POLICIES + (pol)) * EMPTCP_STAGES_PER_POLICY + \
	 (phase) * EMPTCP_MAX_STAGES + (stage))
#define EMPTCP_PROG_KEY(gen, slot) (((__u32)(gen)) * EMPTCP_SLOTS_PER_GEN + (slot))

/* rule bitmap: bit r = rule r of (generation, hook) */
struct emptcp_rules {
	__u64 w[EMPTCP_RULE_WORDS];
};

/* emptcp_ports (ARRAY, (table * 65536) + port in host order): the classes of a
 * port in the LPORT and RPORT dimensions of the hook that owns the table */
struct emptcp_port_class {
	__u16 lclass;
	__u16 rclass;
};

/* emptcp_keys (HASH): an exact-match key of one dimension -> __u32 class.
 * Fields a dimension does not use are zero; ports in network order. */
struct emptcp_key {
	__u8 gen;
	__u8 hook;
	__u8 dim;		/* EMPTCP_DIM_* */
	__u8 family;		/* 4 or 6; 0 for the port dimensions */
	__be16 lport;
	__be16 rport;
	__u8 laddr[16];		/* IPv4 in the first 4 bytes */
	__u8 raddr[16];
};

/* emptcp_prefixes (LPM_TRIE): one address prefix of LADDR/RADDR -> __u32 class
 * (the sets of every prefix that contains this one).  prefixlen counts the
 * 32 bits of gen/hook/dim/family, then the address bits. */
#define EMPTCP_PREFIX_HDR_BITS	32
struct emptcp_prefix_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 hook;
	__u8 dim;
	__u8 family;
	__u8 addr[16];
};

/* emptcp_hook_rules (ARRAY, gen * MAX_HOOKS + hook): a hook's rules */
struct emptcp_hook_rules {
	__u32 used;		/* bit (1 << EMPTCP_DIM_*) per dimension with terms */
	__u32 n_rules;		/* 0: no policy on this hook */
	__u32 port_table;	/* table of emptcp_ports when LPORT/RPORT are used */
	__u32 pad;
	struct emptcp_rules all;	/* rules 0..n_rules-1 */
	struct emptcp_rules plugin;	/* rules with selectors that run as programs */
	struct emptcp_rules absent[EMPTCP_NUM_DIMS];	/* row of a key in no set */
	__u8 rule_policy[EMPTCP_MAX_RULES];	/* policy position of each rule */
};

/* emptcp_rule_terms (ARRAY, EMPTCP_RULE_IDX): the program selectors of one
 * rule, at their positions in the policy's selector list (slot 0 = not a term
 * of this rule) */
struct emptcp_rule_terms {
	struct emptcp_stage sel[EMPTCP_MAX_STAGES];
};

/* emptcp_cls_state (PERCPU_ARRAY, 1): the candidate rules of the packet being
 * classified, kept across the tail calls into program selectors (one packet
 * runs start to finish on one CPU) */
struct emptcp_cls_state {
	struct emptcp_rules cand;
	__u32 rule;		/* the candidate whose selectors are running */
	__u8 gen;
	__u8 hook;
	__u8 pad[2];
};

#define EMPTCP_RULE_IDX(gen, hook, rule) \
	((((__u32)(gen)) * EMPTCP_MAX_HOOKS + (hook)) * EMPTCP_MAX_RULES + (rule))
#define EMPTCP_ROW_IDX(gen, cls) (((__u32)(gen)) * EMPTCP_MAX_CLASSES + (cls))

/* ---- events (ring buffer emptcp_events) ---- */

#define EMPTCP_EV_ADD_SUBFLOW	1	/* payload: struct emptcp_ev_tuple */
#define EMPTCP_EV_MPTCP_OPT	2	/* payload: struct emptcp_ev_mptcp_opt */
#define EMPTCP_EV_LOG		3	/* payload: struct emptcp_ev_log */

struct emptcp_event_hdr {
	__u32 type;		/* EMPTCP_EV_* */
	__u32 hook_id;
	__u16 policy;		/* policy index in the hook's list */
	__u8 stage;
	__u8 phase;
	__u32 len;		/* payload bytes after this header */
};

/* a connection as seen in the packet (not "local/remote": src/dst) */
struct emptcp_ev_tuple {
	__u8 family;		/* 4 or 6 */
	__u8 proto;		/* IPPROTO_TCP */
	__u16 sport;		/* network order */
	__u16 dport;		/* network order */
	__u8 kind;		/* EMPTCP_KIND_* of the hook */
	__u8 pad;
	__u8 saddr[16];		/* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

struct emptcp_ev_mptcp_opt {
	struct emptcp_ev_tuple tuple;
	__u8 subtype;
	__u8 len;		/* bytes valid in opt[] */
	__u8 pad[2];
	__u8 opt[40];		/* the option, kind byte first */
};

struct emptcp_ev_log {
	__u64 value[4];
};

#endif /* EMPTCP_ABI_H */
