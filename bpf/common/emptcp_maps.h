/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_maps.h - the shared maps.  Every emptcp object (entry, built-ins,
 * plugins) includes this header so that each object *declares* every map;
 * the Python loader creates them once, pins them under its pin root and hands
 * the same fds to every object with bpf_map__reuse_fd.  Hence: no libbpf
 * pinning attribute here, and never change a definition without bumping
 * EMPTCP_ABI_VERSION (reuse_fd does not check compatibility).
 */
#ifndef EMPTCP_MAPS_H
#define EMPTCP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "emptcp_abi.h"

/* tail-call tables, key = gen * 256 + slot (selectors), or
 * EMPTCP_INSTANCE_BASE + i (action instances); XDP and TC programs cannot
 * share one prog array (the kernel pins a prog array to one program type) */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, EMPTCP_PROG_ARRAY_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} emptcp_xdp_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, EMPTCP_PROG_ARRAY_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} emptcp_tc_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emptcp_state);
} emptcp_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMPTCP_MAX_HOOKS);
	__type(key, struct emptcp_hook_key);
	__type(value, struct emptcp_hook_val);
} emptcp_hooks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_MAX_GEN * EMPTCP_MAX_HOOKS * EMPTCP_MAX_POLICIES);
	__type(key, __u32);
	__type(value, struct emptcp_policy);
} emptcp_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EMPTCP_MAX_PARAMS);
	__type(key, __u32);
	__type(value, struct emptcp_param);
} emptcp_params SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_MAX_HOOKS * EMPTCP_MAX_POLICIES * EMPTCP_STAGES_PER_POLICY);
	__type(key, __u32);
	__type(value, struct emptcp_stage_stat);
} emptcp_stage_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct emptcp_hook_stat);
} emptcp_hook_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EMPTCP_EVENTS_BYTES);
} emptcp_events SEC(".maps");

/* classification of built-in selectors (emptcp_abi.h, docs/datapath-v2.md) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, EMPTCP_MAX_KEYS);
	__type(key, struct emptcp_key);
	__type(value, __u32);
} emptcp_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, EMPTCP_MAX_PREFIXES);
	__type(key, struct emptcp_prefix_key);
	__type(value, __u32);
} emptcp_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_MAX_GEN * EMPTCP_PORT_TABLES_PER_GEN * 65536);
	__type(key, __u32);
	__type(value, struct emptcp_port_class);
} emptcp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_HOOK_SLOTS);
	__type(key, __u32);
	__type(value, struct emptcp_hook_slot);
} emptcp_hook_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_MAX_GEN * EMPTCP_MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct emptcp_rules);
} emptcp_rows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_MAX_GEN * EMPTCP_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct emptcp_hook_rules);
} emptcp_hook_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EMPTCP_MAX_GEN * EMPTCP_MAX_HOOKS * EMPTCP_MAX_RULES);
	__type(key, __u32);
	__type(value, struct emptcp_rule_terms);
} emptcp_rule_terms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emptcp_cls_state);
} emptcp_cls_state SEC(".maps");

/* per-CPU scratch space for helpers whose state does not fit the 512-byte
 * BPF stack (TCP option rewrite); valid only within one program run */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emptcp_scratch);
} emptcp_scratch SEC(".maps");

#endif /* EMPTCP_MAPS_H */
