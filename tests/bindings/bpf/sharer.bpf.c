// A second object declaring the same `counters` map, to be shared with basics.o.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64);
         __uint(max_entries, 16); } counters SEC(".maps");

SEC("xdp")
int xdp_sharer(struct xdp_md *ctx)
{
    __u32 k = 7;
    __u64 *v = bpf_map_lookup_elem(&counters, &k);
    if (v)
        __sync_fetch_and_add(v, 100);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
