// Object for `python -m bench`: a hash map for element/batch throughput and a
// tiny XDP program for BPF_PROG_TEST_RUN. Compiled at run time into a temp dir.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* max_entries is raised/lowered by the benchmarks before load (MapSpec.max_entries). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 16384);
} bench_hash SEC(".maps");

/* Bounds-checks an Ethernet header and passes the frame: the smallest program
 * that still touches the packet. */
SEC("xdp")
int xdp_tiny(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + 14 > data_end)
        return XDP_ABORTED;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
