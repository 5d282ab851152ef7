// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A verdict and a tail-call key taken from .rodata: set by the loader before load, seen
 * by the verifier as constants (tests/bindings/test_rodata.py). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 verdict = XDP_PASS;
const volatile __u32 next_key = 0;
const volatile __u8 tag[4] = {0};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} hops SEC(".maps");

SEC("xdp")
int rodata_verdict(struct xdp_md *ctx)
{
	return verdict;
}

SEC("xdp")
int rodata_hop(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &hops, next_key);
	return XDP_ABORTED;	/* the key's slot was empty */
}

SEC("xdp")
int rodata_target(struct xdp_md *ctx)
{
	return XDP_DROP + tag[0];
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
