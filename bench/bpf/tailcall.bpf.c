// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tailcall.bpf.c - what one tail call costs, by how its index is known
 * (bench/tailcall.py, rows datapath.tailcall.*).  Issue 9: the redesign must
 * pick a tail-call mechanism; this measures the candidates on this kernel.
 *
 * A variant is COPIES distinct XDP programs in slots 1..COPIES of its own
 * prog array (key = gen * 256 + slot, as emptcp_xdp_progs); copy j tail-calls
 * copy (j + 1) % COPIES, so a packet cycles through distinct images.  The
 * chain length is kept in the packet: every hop adds 1 to a u32 (bytes 0..3,
 * volatile, so repeat R must leave R * HOPS there: the buffer is reused
 * between repetitions) and advances a position byte; the hop at position
 * HOPS - 1 resets it and returns XDP_TX.  A failed tail call returns
 * XDP_ABORTED.  `mono` runs the same HOPS hop bodies in one program.
 *
 * Run-time inputs in the packet: byte 6 = generation (0..3), byte 8 + j =
 * slot of copy j's successor.
 *
 *   rt      key computed at run time, gen * 256 + slot (today's stages)
 *   cst     constant key at the call site (bpf_tail_call_static)
 *   swN     run-time key, then a switch over N possible keys whose every case
 *           is bpf_tail_call_static(ctx, &map, CASE) ("per-slot call sites";
 *           N = 64, 256, 1024 = every gen * 256 + slot); clang emits a
 *           binary compare tree (BPF has no jump tables)
 *   gen     one prog array per generation chosen by a switch on the run-time
 *           generation, constant slot
 *   ro      key read from .rodata (const volatile): frozen by libbpf at load,
 *           so the verifier knows it as a constant -- a successor key set per
 *           program instance at load time (bpf_map__set_initial_value)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define HOPS 32		/* 31 tail calls; the kernel allows 33 */
#define COPIES 4
#define CNT_OFF 0
#define POS_OFF 4
#define GEN_OFF 6
#define SLOT_OFF 8
#define MIN_LEN (SLOT_OFF + COPIES)

#define PROG_ARRAY(name) \
struct { \
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY); \
	__uint(max_entries, 1024); \
	__type(key, __u32); \
	__type(value, __u32); \
} name SEC(".maps")

PROG_ARRAY(progs_rt);
PROG_ARRAY(progs_cst);
PROG_ARRAY(progs_sw64);
PROG_ARRAY(progs_sw256);
PROG_ARRAY(progs_sw1024);
PROG_ARRAY(progs_gen0);
PROG_ARRAY(progs_gen1);
PROG_ARRAY(progs_gen2);
PROG_ARRAY(progs_gen3);
PROG_ARRAY(progs_ro);

/* one hop's work: count, advance the position.
 * 1: last hop (position reset); 0: go on; -1: packet too short */
static __always_inline int hop(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	volatile __u32 *cnt = (void *)(data + CNT_OFF);
	volatile __u8 *pos = data + POS_OFF;
	__u8 p;

	if ((void *)(data + MIN_LEN) > data_end)
		return -1;
	*cnt += 1;
	p = *pos;
	if (p >= HOPS - 1) {
		*pos = 0;
		return 1;
	}
	*pos = p + 1;
	return 0;
}

/* run-time key of copy j's successor, from the packet */
static __always_inline __u32 next_key(struct xdp_md *ctx, __u32 j)
{
	__u8 *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if ((void *)(data + MIN_LEN) > data_end)
		return 0;
	return (data[GEN_OFF] & 3) * 256 + data[SLOT_OFF + j];
}

static __always_inline __u32 run_gen(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if ((void *)(data + GEN_OFF + 1) > data_end)
		return 0;
	return data[GEN_OFF] & 3;
}

#define NEXT_SLOT(j) ((((j) + 1) % COPIES) + 1)

/* successor keys of the `ro` copies, as a loader would set them per instance */
const volatile __u32 ro_next[COPIES] = { NEXT_SLOT(0), NEXT_SLOT(1), NEXT_SLOT(2), NEXT_SLOT(3) };

/* per-slot call sites: every case a constant-key tail call */
#define C1(m, k) case (k): bpf_tail_call_static(ctx, &m, (k)); break;
#define C4(m, k) C1(m, k) C1(m, (k) + 1) C1(m, (k) + 2) C1(m, (k) + 3)
#define C16(m, k) C4(m, k) C4(m, (k) + 4) C4(m, (k) + 8) C4(m, (k) + 12)
#define C64(m, k) C16(m, k) C16(m, (k) + 16) C16(m, (k) + 32) C16(m, (k) + 48)
#define C256(m, k) C64(m, k) C64(m, (k) + 64) C64(m, (k) + 128) C64(m, (k) + 192)
#define C1024(m, k) C256(m, k) C256(m, (k) + 256) C256(m, (k) + 512) C256(m, (k) + 768)

#define HOP_OR_END(ctx) \
	switch (hop(ctx)) { \
	case 0: break; \
	case 1: return XDP_TX; \
	default: return XDP_ABORTED; \
	}

#define HOP_RT(j) SEC("xdp") int rt_##j(struct xdp_md *ctx) { \
	HOP_OR_END(ctx) \
	bpf_tail_call(ctx, &progs_rt, next_key(ctx, j)); \
	return XDP_ABORTED; }

#define HOP_CST(j) SEC("xdp") int cst_##j(struct xdp_md *ctx) { \
	HOP_OR_END(ctx) \
	bpf_tail_call_static(ctx, &progs_cst, NEXT_SLOT(j)); \
	return XDP_ABORTED; }

#define HOP_SW(n, j) SEC("xdp") int sw##n##_##j(struct xdp_md *ctx) { \
	HOP_OR_END(ctx) \
	switch (next_key(ctx, j)) { C##n(progs_sw##n, 0) } \
	return XDP_ABORTED; }

#define HOP_GEN(j) SEC("xdp") int gen_##j(struct xdp_md *ctx) { \
	HOP_OR_END(ctx) \
	switch (run_gen(ctx)) { \
	case 0: bpf_tail_call_static(ctx, &progs_gen0, NEXT_SLOT(j)); break; \
	case 1: bpf_tail_call_static(ctx, &progs_gen1, NEXT_SLOT(j)); break; \
	case 2: bpf_tail_call_static(ctx, &progs_gen2, NEXT_SLOT(j)); break; \
	case 3: bpf_tail_call_static(ctx, &progs_gen3, NEXT_SLOT(j)); break; \
	} \
	return XDP_ABORTED; }

#define HOP_RO(j) SEC("xdp") int ro_##j(struct xdp_md *ctx) { \
	HOP_OR_END(ctx) \
	bpf_tail_call(ctx, &progs_ro, ro_next[j]); \
	return XDP_ABORTED; }

#define VARIANT(j) HOP_RT(j) HOP_CST(j) HOP_SW(64, j) HOP_SW(256, j) HOP_SW(1024, j) HOP_GEN(j) \
	HOP_RO(j)
VARIANT(0) VARIANT(1) VARIANT(2) VARIANT(3)
_Static_assert(COPIES == 4, "one VARIANT(j) line per copy");

/* the same HOPS hop bodies in one program, no tail call */
SEC("xdp")
int mono(struct xdp_md *ctx)
{
	__u32 i;
	int r;

#pragma unroll
	for (i = 0; i < HOPS; i++) {
		r = hop(ctx);
		if (r < 0)
			return XDP_ABORTED;
		if (r)
			return XDP_TX;
	}
	return XDP_ABORTED;	/* HOPS bodies without reaching the last: broken */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
