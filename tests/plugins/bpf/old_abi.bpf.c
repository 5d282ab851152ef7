// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A stage built against "another emptcp": its emptcp_hook_stats map has a
 * different shape from the installed emptcp's, so it can never share it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
} emptcp_hook_stats SEC(".maps");

SEC("xdp")
int emptcp_old_abi_xdp(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&emptcp_hook_stats, &k);

	if (v)
		(*v)++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
