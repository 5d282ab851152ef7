// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * monolithic.bpf.c - the baselines of `python -m bench --only datapath`: one
 * hand-written program per case doing the work of an emptcp chain, without
 * tail calls, parsing the packet once (bench/datapath.py).  Same parser as
 * emptcp's stages (emptcp_parse.h), same per-CPU counters ({packets, bytes}).
 *
 *   mono_chain<K>   port check against a range table (emptcp `service`,
 *                   mode either) + K per-CPU counter increments
 *                   (`service` -> K x `count`)
 *   mono_conn       4-tuple (local/remote as emptcp's tcp4tuple: local =
 *                   destination on ingress) looked up in one hash map of N
 *                   connections, + one counter increment
 *   mono_rules      up to 128 port rules tried in order, first match counts
 *                   (P policies of one built-in selector each)
 *
 * Each exists for XDP (`_xdp`) and TC (`_tc`).  All pass the packet.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "emptcp_parse.h"

#define SVC_MAX 15
#define MAX_RULES 128
#define CONN_COUNTER 8
#define RULE_COUNTER0 16

struct counter { __u64 packets, bytes; };
struct range { __u16 lo, hi; };
struct svc { __u32 n; struct range r[SVC_MAX]; };
struct conn_key {		/* as emptcp's view: family, local/remote */
	__u8 family, pad[3];
	__be16 lport, rport;
	__u8 local[16], remote[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RULE_COUNTER0 + MAX_RULES);
	__type(key, __u32);
	__type(value, struct counter);
} mono_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct svc);
} mono_svc SEC(".maps");

/* max_entries is set to N by the benchmark before load */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct conn_key);
	__type(value, __u32);		/* counter index */
} mono_conns SEC(".maps");

struct rules { __u32 n; struct range r[MAX_RULES]; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rules);
} mono_rules SEC(".maps");

static __always_inline void count(__u32 idx, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(&mono_counts, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline int in_range(__u16 port, const struct range *r)
{
	return port >= r->lo && port <= r->hi;
}

/* K counters after a `service`-like check of either port */
static __always_inline void chain(void *data, void *data_end, __u64 len, __u32 k)
{
	struct emptcp_tcp_pkt p;
	struct svc *s;
	__u32 zero = 0, i;
	__u16 sp, dp;
	int hit = 0;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return;
	s = bpf_map_lookup_elem(&mono_svc, &zero);
	if (!s)
		return;
	sp = bpf_ntohs(p.tcph->source);
	dp = bpf_ntohs(p.tcph->dest);
#pragma unroll
	for (i = 0; i < SVC_MAX; i++) {
		if (i >= s->n)
			break;
		if (in_range(dp, &s->r[i]) || in_range(sp, &s->r[i])) {
			hit = 1;
			break;
		}
	}
	if (!hit)
		return;
#pragma unroll
	for (i = 0; i < 8; i++)
		if (i < k)
			count(i, len);
}

/* ingress view (XDP, tc-ingress): local = destination */
static __always_inline void conn(void *data, void *data_end, __u64 len)
{
	struct emptcp_tcp_pkt p;
	struct conn_key key = {};
	__u32 *idx;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return;
	key.family = p.family;
	key.lport = p.tcph->dest;
	key.rport = p.tcph->source;
	if (p.iph) {
		__builtin_memcpy(key.local, &p.iph->daddr, 4);
		__builtin_memcpy(key.remote, &p.iph->saddr, 4);
	} else if (p.ip6h) {
		__builtin_memcpy(key.local, &p.ip6h->daddr, 16);
		__builtin_memcpy(key.remote, &p.ip6h->saddr, 16);
	}
	idx = bpf_map_lookup_elem(&mono_conns, &key);
	if (idx)
		count(*idx, len);
}

/* first of n rules (either port in [lo, hi]) counts */
static __always_inline void rules(void *data, void *data_end, __u64 len)
{
	struct emptcp_tcp_pkt p;
	struct rules *rs;
	__u32 zero = 0, i, n;
	__u16 sp, dp;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return;
	rs = bpf_map_lookup_elem(&mono_rules, &zero);
	if (!rs)
		return;
	n = rs->n;
	sp = bpf_ntohs(p.tcph->source);
	dp = bpf_ntohs(p.tcph->dest);
	for (i = 0; i < MAX_RULES; i++) {
		if (i >= n)
			return;
		if (in_range(dp, &rs->r[i]) || in_range(sp, &rs->r[i])) {
			count(RULE_COUNTER0 + i, len);
			return;
		}
	}
}

#define XDP_ARGS (void *)(long)ctx->data, (void *)(long)ctx->data_end, ctx->data_end - ctx->data
#define TC_ARGS (void *)(long)ctx->data, (void *)(long)ctx->data_end, ctx->len

#define CHAIN(k) \
SEC("xdp") int mono_chain##k##_xdp(struct xdp_md *ctx) { chain(XDP_ARGS, k); return XDP_PASS; } \
SEC("tc") int mono_chain##k##_tc(struct __sk_buff *ctx) { chain(TC_ARGS, k); return TC_ACT_UNSPEC; }
CHAIN(1) CHAIN(2) CHAIN(4) CHAIN(8)

SEC("xdp") int mono_conn_xdp(struct xdp_md *ctx) { conn(XDP_ARGS); return XDP_PASS; }
SEC("tc") int mono_conn_tc(struct __sk_buff *ctx) { conn(TC_ARGS); return TC_ACT_UNSPEC; }
SEC("xdp") int mono_rules_xdp(struct xdp_md *ctx) { rules(XDP_ARGS); return XDP_PASS; }
SEC("tc") int mono_rules_tc(struct __sk_buff *ctx) { rules(TC_ARGS); return TC_ACT_UNSPEC; }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
