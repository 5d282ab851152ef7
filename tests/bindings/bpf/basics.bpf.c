// Test object for the bindings: typed maps, counters, tail calls with data_meta,
// ring buffer and perf buffer events, XDP and TC programs.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct pair { __u32 a; __u16 b; __u16 c; };
struct lpm_v4 { __u32 prefixlen; __u32 addr; };

struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, struct pair); __type(value, __u64);
         __uint(max_entries, 4096); } hash_map SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64);
         __uint(max_entries, 16); } counters SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __type(key, __u32); __type(value, __u64);
         __uint(max_entries, 4); } percpu SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __type(key, struct lpm_v4); __type(value, __u32);
         __uint(max_entries, 64); __uint(map_flags, BPF_F_NO_PREALLOC); } lpm SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __type(key, __u32); __type(value, __u32);
         __uint(max_entries, 4); } jump SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, sizeof(__u32));
         __uint(value_size, sizeof(__u32)); } perf SEC(".maps");

static __always_inline void bump(__u32 idx)
{
    __u64 *v = bpf_map_lookup_elem(&counters, &idx);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
    bump(0);
    __u32 k = 0;
    __u64 *p = bpf_map_lookup_elem(&percpu, &k);
    if (p)
        *p += 1;
    return XDP_PASS;
}

/* Writes a 4-byte marker into data_meta, then tail-calls jump[0]. */
SEC("xdp")
int xdp_entry(struct xdp_md *ctx)
{
    if (bpf_xdp_adjust_meta(ctx, -4))
        return XDP_ABORTED;
    void *data = (void *)(long)ctx->data;
    __u32 *meta = (void *)(long)ctx->data_meta;
    if ((void *)(meta + 1) > data)
        return XDP_ABORTED;
    *meta = 0x11111111;
    bpf_tail_call(ctx, &jump, 0);
    bump(1);   /* missed tail call */
    return XDP_DROP;
}

/* Tail-call target: reads the marker and rewrites it, proving it ran after the entry. */
SEC("xdp")
int xdp_target(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    __u32 *meta = (void *)(long)ctx->data_meta;
    if ((void *)(meta + 1) > data)
        return XDP_ABORTED;
    if (*meta == 0x11111111)
        *meta = 0x22222222;
    bump(2);
    return XDP_TX;
}

struct event { __u32 seq; __u32 len; };

SEC("xdp")
int xdp_events(struct xdp_md *ctx)
{
    __u32 k = 3;
    __u64 *seq = bpf_map_lookup_elem(&counters, &k);
    if (!seq)
        return XDP_PASS;
    __u64 n = __sync_fetch_and_add(seq, 1);
    struct event e = { .seq = (__u32)n, .len = ctx->data_end - ctx->data };
    bpf_ringbuf_output(&events, &e, sizeof(e), 0);
    bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &e, sizeof(e));
    return XDP_PASS;
}

SEC("tc")
int tc_count_ingress(struct __sk_buff *skb)
{
    bump(4);
    return TC_ACT_OK;
}

SEC("tc")
int tc_count_egress(struct __sk_buff *skb)
{
    bump(5);
    skb->cb[0] = 0xabcd;
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
