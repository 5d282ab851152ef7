// Diagnostic probe (not product code) used to find the MP_JOIN race of tests/kernel/mptcp_join_race.py:
// tp_btf programs on sk_data_ready, subflow_check_data_avail, tcp_probe and tcp_send_reset print, for
// every MP_JOIN subflow, its DSS map state, the msk ack_seq, whether the msk is owned by user and
// whether the subflow still sits on the msk join_list. Build:
//   bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h
//   clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I. -c mptcp_join_probe.bpf.c -o probe.o
//   gcc -O2 loader.c -o loader -lbpf && ./loader probe.o   (the reads of the skb ext contents are not reliable)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

struct ev {
	u64 ts;
	u32 kind, ret;
	u64 map_seq;
	u32 map_subflow_seq, map_data_len, map_valid, data_avail;
	u32 copied_seq, ssn_offset, rcv_nxt, qlen;
	u32 hseq, hlen, hend, hext;
	u64 e_dseq; u32 e_sseq, e_len;
	u64 msk_ack;
	u32 rmem, rcvbuf;
	u32 sport, dport;
	u64 ssk;
	u32 xseq, xlen, xext, xsseq, xelen; u64 xdseq;
	u32 owned, on_join_list, in_list;
};
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 22); } rb SEC(".maps");

static __always_inline void emit(struct sock *ssk, u32 kind, u32 ret, struct sk_buff *x)
{
	struct mptcp_subflow_context *sf;
	struct inet_connection_sock *icsk = (void *)ssk;
	struct tcp_sock *tp = (void *)ssk;
	struct sk_buff *skb, *head;
	struct ev *e;
	struct sock *msk;

	sf = BPF_CORE_READ(icsk, icsk_ulp_data);
	if (!sf || !BPF_CORE_READ_BITFIELD_PROBED(sf, mp_join))
		return;
	if (kind != 5 && BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(sf, ssn_offset) > 1000000)
		return;
	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->kind = kind; e->ret = ret;
	e->ssk = (u64)ssk;
	e->map_seq = BPF_CORE_READ(sf, map_seq);
	e->map_subflow_seq = BPF_CORE_READ(sf, map_subflow_seq);
	e->map_data_len = BPF_CORE_READ(sf, map_data_len);
	e->map_valid = BPF_CORE_READ_BITFIELD_PROBED(sf, map_valid);
	e->data_avail = BPF_CORE_READ(sf, data_avail);
	e->ssn_offset = BPF_CORE_READ(sf, ssn_offset);
	e->copied_seq = BPF_CORE_READ(tp, copied_seq);
	e->rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
	e->qlen = BPF_CORE_READ(ssk, sk_receive_queue.qlen);
	e->sport = BPF_CORE_READ(ssk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(ssk, __sk_common.skc_dport));
	head = BPF_CORE_READ(ssk, sk_receive_queue.next);
	if (head && (void *)head != (void *)&ssk->sk_receive_queue) {
		struct tcp_skb_cb *cb = (void *)head->cb;
		e->hseq = BPF_CORE_READ(cb, seq);
		e->hend = BPF_CORE_READ(cb, end_seq);
		e->hlen = BPF_CORE_READ(head, len);
		u8 act = BPF_CORE_READ(head, active_extensions);
		if (act & (1 << SKB_EXT_MPTCP)) {
			struct skb_ext *x = BPF_CORE_READ(head, extensions);
			u8 off = BPF_CORE_READ(x, offset[SKB_EXT_MPTCP]);
			struct mptcp_ext *m = (void *)((char *)x + sizeof(struct skb_ext) + off * 8);
			e->hext = 1;
			e->e_dseq = BPF_CORE_READ(m, data_seq);
			e->e_sseq = BPF_CORE_READ(m, subflow_seq);
			e->e_len = BPF_CORE_READ(m, data_len);
		}
	}
	if (x) {
		struct tcp_skb_cb *cb = (void *)x->cb;
		e->xseq = BPF_CORE_READ(cb, seq);
		e->xlen = BPF_CORE_READ(x, len);
		u8 act = BPF_CORE_READ(x, active_extensions);
		if (act & (1 << SKB_EXT_MPTCP)) {
			struct skb_ext *xx = BPF_CORE_READ(x, extensions);
			u8 off = BPF_CORE_READ(xx, offset[SKB_EXT_MPTCP]);
			struct mptcp_ext *m = (void *)((char *)xx + sizeof(struct skb_ext) + off * 8);
			e->xext = 1 | (BPF_CORE_READ_BITFIELD_PROBED(m, use_map) << 1);
			e->xdseq = BPF_CORE_READ(m, data_seq);
			e->xsseq = BPF_CORE_READ(m, subflow_seq);
			e->xelen = BPF_CORE_READ(m, data_len);
		}
	}
	msk = BPF_CORE_READ(sf, conn);
	if (msk) {
		struct mptcp_sock *m = (void *)msk;
		e->msk_ack = BPF_CORE_READ(m, ack_seq);
		e->rmem = BPF_CORE_READ(msk, sk_backlog.rmem_alloc.counter);
		e->rcvbuf = BPF_CORE_READ(msk, sk_rcvbuf);
		e->owned = BPF_CORE_READ(msk, sk_lock.owned);
		struct list_head *jl = &m->join_list;
		e->on_join_list = BPF_CORE_READ(jl, next) == &sf->node;
		struct list_head *nd = &sf->node;
		e->in_list = BPF_CORE_READ(nd, next) != nd;
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(dr, struct sock *sk) { emit(sk, 1, 0, 0); return 0; }
SEC("tp_btf/subflow_check_data_avail")
int BPF_PROG(cda, __u8 status, struct sk_buff *skb) { if (skb) emit(BPF_CORE_READ(skb, sk), 2, status, skb); return 0; }
SEC("tp_btf/tcp_probe")
int BPF_PROG(prb, struct sock *sk, struct sk_buff *skb) { emit(sk, 3, 0, skb); return 0; }
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(rst, struct sock *sk, struct sk_buff *skb, int reason) { if (sk) emit((struct sock *)sk, 5, reason, skb); return 0; }
char LICENSE[] SEC("license") = "GPL";
