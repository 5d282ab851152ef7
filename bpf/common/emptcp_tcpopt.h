/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_tcpopt.h - bounded TCP option scanning and option insert/remove.
 *
 * Option bytes are first copied into a 64-byte buffer (EMPTCP_TCP_BUF); every
 * index is masked with EMPTCP_TCP_BUF - 1 (EMPTCP_IDX) so the verifier sees
 * bounded accesses, and every loop is
 * bounded by the 40-byte option area.  One byte-wise state machine walks the
 * options (kind, len) and refuses malformed areas (len < 2, len past the end)
 * instead of guessing.
 *
 * Insert/remove rebuild the whole TCP header in a second buffer and fix IPv4
 * tot_len + header checksum / IPv6 payload_len, TCP doff, and the TCP
 * checksum over the header bytes plus the pseudo-header length.  The option
 * area is always padded to a multiple of 4 with NOPs, so the payload moves by
 * a multiple of 4 and its contribution to the checksum is unchanged.  On any
 * failure before the first write the packet is left untouched.
 *
 * XDP: the L2/L3 headers move (bpf_xdp_adjust_head); frames carry complete
 * checksums, fixed with ones'-complement arithmetic.
 *
 * TC: the TCP header stays where it is and the bytes after it move instead
 * (bpf_skb_change_tail + a copy loop).  The TCP header must not move: at TC
 * egress every locally sent TCP skb is CHECKSUM_PARTIAL, and csum_start and
 * transport_header (offsets from skb->head) keep pointing at the old TCP
 * header position -- bpf_skb_adjust_room(BPF_ADJ_ROOM_NET) opens/closes room
 * by moving the L2/L3 headers and adjusts neither (it treats the room as an
 * encapsulation header).  The checksum would then be computed from the wrong
 * offset and stored 16 bytes after it, i.e. into the options (grow) or doff /
 * flags (shrink).  Checksums are updated with bpf_l4/l3_csum_replace, which
 * handle CHECKSUM_PARTIAL (header bytes not folded in, pseudo-header length
 * with BPF_F_PSEUDO_HDR) and CHECKSUM_NONE/COMPLETE alike.  A resize must
 * keep the frame within the device MTU (bpf_check_mtu), and GSO skbs are
 * never resized (bpf_skb_change_tail would drop their GSO state): an insert
 * is refused, a remove overwrites the option with NOPs in place.
 */
#ifndef EMPTCP_TCPOPT_H
#define EMPTCP_TCPOPT_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "emptcp_parse.h"
#include "emptcp_csum.h"
#include "emptcp_maps.h"
#include "emptcp_params.h"	/* EMPTCP_SUBTYPE_ANY */

#define EMPTCP_TCPOPT_EOL		0
#define EMPTCP_TCPOPT_NOP		1
#define EMPTCP_TCPOPT_MPTCP		30
#define EMPTCP_TCP_OPT_MAX	40	/* bytes of TCP options: a header is at most 60 */
#define EMPTCP_TCP_HDR_MAX	60
#define EMPTCP_TCP_BUF		64	/* buffer for a TCP header: a power of two >= 60 */

/* MPTCP subtypes (RFC 8684) */
#define EMPTCP_MPTCPOPT_MP_CAPABLE	0
#define EMPTCP_MPTCPOPT_MP_JOIN	1
#define EMPTCP_MPTCPOPT_DSS		2
#define EMPTCP_MPTCPOPT_ADD_ADDR	3
#define EMPTCP_MPTCPOPT_RM_ADDR	4
#define EMPTCP_MPTCPOPT_MP_PRIO	5
#define EMPTCP_MPTCPOPT_MP_FAIL	6
#define EMPTCP_MPTCPOPT_MP_FASTCLOSE	7
#define EMPTCP_MPTCPOPT_MP_TCPRST	8

/* Index into an EMPTCP_TCP_BUF-byte buffer: x & (EMPTCP_TCP_BUF - 1).  The
 * mask is done in asm so that clang cannot drop it on the grounds that it
 * "knows" the range: the verifier needs to see it. */
#define EMPTCP_IDX(x) ({ __u32 __v = (x); \
	asm volatile("%0 &= %1" : "+r"(__v) : "i"(EMPTCP_TCP_BUF - 1)); __v; })

/* Copy the options of a parsed TCP header into buf, 4 bytes at a time (the
 * option area is a multiple of 4; emptcp_parse_tcphdr proved it is in the packet).
 * Returns the option length or -1. */
static __always_inline int emptcp_tcp_opts_copy(struct tcphdr *tcph, void *data_end,
						__u8 buf[EMPTCP_TCP_BUF])
{
	__u8 *opts = (__u8 *)(tcph + 1);
	__u32 len = tcph->doff * 4, w;

	if (len < 20)
		return -1;
	len -= 20;
#pragma unroll
	for (w = 0; w < EMPTCP_TCP_OPT_MAX / 4; w++) {
		if (w * 4 >= len)
			break;
		if ((void *)(opts + w * 4 + 4) > data_end)
			return -1;
		__builtin_memcpy(&buf[w * 4], opts + w * 4, 4);
	}
	return len;
}

static __always_inline int emptcp_opt_matches(__u8 k, __u8 l, __u8 b2, int kind, int subtype)
{
	if (k != kind)
		return 0;
	if (subtype == EMPTCP_SUBTYPE_ANY)
		return 1;
	return l >= 3 && (b2 >> 4) == subtype;
}

/*
 * Option walks run as bpf_loop() callbacks: the verifier checks a callback
 * once instead of once per iteration and per path, which keeps the option
 * state machines (kind, len, skip/keep) far below the complexity limit.
 */

/* state of a walk; buffers live inside so the callback only needs one pointer */
struct emptcp_walk {
	__u8 in[EMPTCP_TCP_BUF];	/* input bytes; options start at in_off */
	__u8 out[EMPTCP_TCP_BUF];	/* output bytes; options start at out_off */
	__u8 src[EMPTCP_TCP_OPT_MAX];	/* INSERT: the option to append */
	__u32 in_off, len;	/* option area of in[] */
	__u32 out_off, n;	/* bytes written to out[] after out_off */
	__u32 rem;		/* bytes left of the current option */
	__u32 next;		/* find: offset of the next option */
	__u32 srclen;
	__s32 kind, subtype;	/* option to drop / find; kind -1: none */
	__s32 found;		/* offset of the first match or -1 */
	__u32 olen;		/* length of the found option */
	__u8 keep, err, copy;
	__u8 nopfill;		/* REMOVE: overwrite matches with NOPs (same length) */
};

/* The walk state lives at the start of the per-CPU emptcp_scratch value
 * (bpf_loop's context must be on the stack, which is too small for it). */
static __always_inline struct emptcp_walk *emptcp_walk_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&emptcp_scratch, &zero);
}

/* byte-wise walk: copy the options except matches; stop at EOL */
static long emptcp_walk_cb(__u32 i, void *unused)
{
	struct emptcp_walk *w = emptcp_walk_state();
	__u8 k, l;

	if (!w)
		return 1;
	if (i >= w->len || i >= EMPTCP_TCP_OPT_MAX)
		return 1;
	if (w->rem == 0) {
		k = w->in[EMPTCP_IDX(w->in_off + i)];
		if (k == EMPTCP_TCPOPT_EOL)
			return 1;
		if (k == EMPTCP_TCPOPT_NOP) {
			w->rem = 1;
			w->keep = 1;
		} else {
			if (i + 1 >= w->len)
				goto bad;
			l = w->in[EMPTCP_IDX(w->in_off + i + 1)];
			if (l < 2 || i + l > w->len)
				goto bad;
			w->rem = l;
			w->keep = !emptcp_opt_matches(k, l, w->in[EMPTCP_IDX(w->in_off + i + 2)],
						      w->kind, w->subtype);
			if (!w->keep && w->found < 0) {
				w->found = i;
				w->olen = l;
			}
		}
	}
	if (w->keep) {
		if (w->copy)
			w->out[EMPTCP_IDX(w->out_off + w->n)] = w->in[EMPTCP_IDX(w->in_off + i)];
		w->n++;
	} else if (w->nopfill) {
		if (w->copy)
			w->out[EMPTCP_IDX(w->out_off + w->n)] = EMPTCP_TCPOPT_NOP;
		w->n++;
	}
	w->rem--;
	return 0;
bad:
	w->err = 1;
	return 1;
}

/* append src[i] to out[] */
static long emptcp_append_cb(__u32 i, void *unused)
{
	struct emptcp_walk *w = emptcp_walk_state();

	if (!w)
		return 1;
	if (i >= w->srclen || i >= sizeof(w->src))
		return 1;
	w->out[EMPTCP_IDX(w->out_off + w->n)] = w->src[EMPTCP_IDX(i)];
	w->n++;
	return 0;
}

/* run the walk over w->in; 0 or -1 (malformed) */
static __always_inline int emptcp_opts_walk(struct emptcp_walk *w)
{
	w->n = 0;
	w->rem = 0;
	w->keep = 1;
	w->err = 0;
	w->found = -1;
	__u32 dummy = 0;

	if (w->len > EMPTCP_TCP_OPT_MAX)
		return -1;
	bpf_loop(EMPTCP_TCP_OPT_MAX, emptcp_walk_cb, &dummy, 0);
	return w->err ? -1 : 0;
}

/* offset inside the option area of the first option (kind, subtype), -1 if
 * absent or the area is malformed; *olen gets its length */
static __always_inline int emptcp_opt_find(struct emptcp_walk *w, int kind, int subtype,
					   __u32 *olen)
{
	w->kind = kind;
	w->subtype = subtype;
	w->copy = 0;
	if (emptcp_opts_walk(w) < 0 || w->found < 0)
		return -1;
	*olen = w->olen;
	return w->found;
}

/* does the TCP header carry MPTCP option `subtype` (direct packet access) */
static __always_inline int emptcp_has_mptcp_subtype(struct tcphdr *tcph, void *data_end,
						    int subtype)
{
	struct emptcp_walk *w = emptcp_walk_state();
	__u32 olen;
	int len;

	if (!w)
		return 0;
	__builtin_memset(w, 0, sizeof(*w));
	len = emptcp_tcp_opts_copy(tcph, data_end, w->in);
	if (len <= 0)
		return 0;
	w->in_off = 0;
	w->len = len;
	return emptcp_opt_find(w, EMPTCP_TCPOPT_MPTCP, subtype, &olen) >= 0;
}

/* The first option (kind, subtype) of a parsed TCP header; subtype is an
 * MPTCP subtype 0..15 or EMPTCP_SUBTYPE_ANY (any option of that kind).
 * Returns its offset from the start of the TCP header (20..59) and its length
 * in *olen, or -1 when it is absent or the option area is malformed.  Its
 * bytes stay readable in the packet at (__u8 *)tcph + offset (check them
 * against data_end) and, as copied, in emptcp_walk_state()->in[EMPTCP_IDX(
 * offset - 20 + i)] until the next option helper runs. */
static __always_inline int emptcp_tcp_opt_find(struct tcphdr *tcph, void *data_end,
					       int kind, int subtype, __u32 *olen)
{
	struct emptcp_walk *w = emptcp_walk_state();
	int len, off;

	if (!w)
		return -1;
	__builtin_memset(w, 0, sizeof(*w));
	len = emptcp_tcp_opts_copy(tcph, data_end, w->in);
	if (len <= 0)
		return -1;
	w->len = len;
	off = emptcp_opt_find(w, kind, subtype, olen);
	return off < 0 ? -1 : off + (int)sizeof(struct tcphdr);
}

/* ---------------------- header rebuild (both hooks) --------------------- */

struct emptcp_tcp_rewrite {
	struct emptcp_walk w;	/* w.in: current TCP header; w.out: rebuilt one */
	__u32 oldlen, newlen;	/* header lengths, multiples of 4 */
	__u16 old_seg, new_seg;	/* TCP segment length (pseudo-header), host order */
	__u32 diff;		/* csum_diff(old, new) with check fields zeroed */
};
#define EMPTCP_RW_OLD(rw) ((rw)->w.in)
#define EMPTCP_RW_NEW(rw) ((rw)->w.out)

#define EMPTCP_OP_INSERT 1
#define EMPTCP_OP_REMOVE 2

/*
 * Build the new header from the old one.  INSERT appends opt[0..optlen)
 * after the last option (before EOL); REMOVE drops every option matching
 * (kind, subtype) (with w.nopfill: overwrites it with NOPs, same length).  Returns 0 when there is a change to apply, 1 when there
 * is nothing to do (REMOVE found nothing), -1 on error (malformed options,
 * more than 40 bytes).
 */
static __always_inline int emptcp_tcp_rebuild(struct emptcp_tcp_rewrite *rw, int op,
					      const __u8 *opt, __u32 optlen,
					      int kind, int subtype)
{
	struct emptcp_walk *w = &rw->w;
	__u32 i, n;

	if (rw->oldlen < 20 || rw->oldlen > EMPTCP_TCP_HDR_MAX)
		return -1;
	__builtin_memcpy(w->out, w->in, 20);
	w->in_off = 20;
	w->len = rw->oldlen - 20;
	w->out_off = 20;
	w->copy = 1;
	if (op == EMPTCP_OP_INSERT) {
		if (!opt || optlen == 0 || optlen > EMPTCP_TCP_OPT_MAX)
			return -1;
		w->kind = -1;		/* matches nothing: copy up to EOL */
		w->subtype = -1;
		if (emptcp_opts_walk(w) < 0)
			return -1;
		if (w->n + optlen > EMPTCP_TCP_OPT_MAX)
			return -1;	/* would not fit: leave the packet alone */
		__builtin_memcpy(w->src, opt, sizeof(w->src));
		w->srclen = optlen;
		bpf_loop(EMPTCP_TCP_OPT_MAX, emptcp_append_cb, &i, 0);
	} else {
		w->kind = kind;
		w->subtype = subtype;
		if (w->nopfill)		/* keep what follows an EOL: same length */
			__builtin_memcpy(w->out + 20, w->in + 20, EMPTCP_TCP_OPT_MAX);
		if (emptcp_opts_walk(w) < 0)
			return -1;
		if (w->found < 0)
			return 1;
		if (w->nopfill)
			w->n = w->len;
	}
	n = w->n;
	if (n > EMPTCP_TCP_OPT_MAX)
		return -1;
	/* pad with NOPs to a multiple of 4 (straight-line code: clang turns a
	 * loop into "while (n & 3)", which the verifier cannot bound) */
	i = (4 - (n & 3)) & 3;
	asm volatile("" : "+r"(i));
	if (i > 0)
		w->out[EMPTCP_IDX(20 + n)] = EMPTCP_TCPOPT_NOP;
	if (i > 1)
		w->out[EMPTCP_IDX(21 + n)] = EMPTCP_TCPOPT_NOP;
	if (i > 2)
		w->out[EMPTCP_IDX(22 + n)] = EMPTCP_TCPOPT_NOP;
	n += i;
	if (n > EMPTCP_TCP_OPT_MAX)
		return -1;
	rw->newlen = 20 + n;
	/* doff lives in the high nibble of byte 12 */
	w->out[12] = (rw->newlen / 4) << 4 | (w->in[12] & 0x0f);
	w->out[16] = 0;
	w->out[17] = 0;
	return 0;
}

_Static_assert(sizeof(struct emptcp_tcp_rewrite) <= sizeof(struct emptcp_scratch), "scratch");

/* the rewrite state, zeroed, in emptcp_scratch (too big for the stack) */
static __always_inline struct emptcp_tcp_rewrite *emptcp_rewrite_state(void)
{
	__u32 zero = 0;
	/* w is the first member: the bpf_loop callbacks find it there */
	struct emptcp_tcp_rewrite *rw = bpf_map_lookup_elem(&emptcp_scratch, &zero);

	if (rw)
		__builtin_memset(rw, 0, sizeof(*rw));
	return rw;
}

/* checksum difference of the header bytes; the check field is zeroed in both
 * copies so the diff covers everything except the checksum itself */
static __always_inline int emptcp_tcp_hdr_diff(struct emptcp_tcp_rewrite *rw)
{
	__u8 c0 = EMPTCP_RW_OLD(rw)[16], c1 = EMPTCP_RW_OLD(rw)[17];
	/* multiples of 4 up to 60, as the verifier must see them */
	__u32 ol = rw->oldlen & (EMPTCP_TCP_BUF - 4), nl = rw->newlen & (EMPTCP_TCP_BUF - 4);
	__s64 d;

	EMPTCP_RW_OLD(rw)[16] = 0;
	EMPTCP_RW_OLD(rw)[17] = 0;
	d = bpf_csum_diff((__be32 *)EMPTCP_RW_OLD(rw), ol, (__be32 *)EMPTCP_RW_NEW(rw), nl, 0);
	EMPTCP_RW_OLD(rw)[16] = c0;
	EMPTCP_RW_OLD(rw)[17] = c1;
	if (d < 0)
		return -1;
	rw->diff = (__u32)d;
	return 0;
}

/* Rebuild the header and its checksum difference, then hand back the new
 * header length with bounds the verifier can see (20..60).  Returns what
 * emptcp_tcp_rebuild returns (0 change, 1 nothing to do, <0 refused). */
static __always_inline int emptcp_tcp_rebuild_bounded(struct emptcp_tcp_rewrite *rw, int op,
						      const __u8 *opt, __u32 optlen,
						      int kind, int subtype, __u64 *newlen)
{
	__u64 nl;
	int r;

	r = emptcp_tcp_rebuild(rw, op, opt, optlen, kind, subtype);
	if (r != 0)
		return r;
	if (emptcp_tcp_hdr_diff(rw) < 0)
		return -1;
	nl = rw->newlen;
	asm volatile("%0 &= %1" : "+r"(nl) : "i"(EMPTCP_TCP_BUF - 1));
	if (nl > EMPTCP_TCP_HDR_MAX)
		return -1;
	asm volatile("" : "+r"(nl));
	if (nl < 20)
		return -1;
	*newlen = nl;
	return 0;
}

/* the complete new TCP checksum (XDP: packets carry full checksums) */
static __always_inline __u16 emptcp_tcp_new_check(struct emptcp_tcp_rewrite *rw)
{
	__u16 oldcheck = EMPTCP_RW_OLD(rw)[16] | (EMPTCP_RW_OLD(rw)[17] << 8);	/* packet order */
	__u64 s = (__u16)~oldcheck;

	s += rw->diff;
	s += (__u16)~bpf_htons(rw->old_seg);
	s += bpf_htons(rw->new_seg);
	return ~emptcp_csum_fold_raw(s);
}

/* ------------------------------- XDP ----------------------------------- */

#define EMPTCP_L2L3_MAX 96	/* >= Ethernet + 2 VLAN + IPv4 with options (82) */
#define EMPTCP_L2L3_MASK 127	/* a power of two minus 1, >= EMPTCP_L2L3_MAX */

/* update IPv4 tot_len + checksum or IPv6 payload_len after a resize */
static __always_inline int emptcp_xdp_fix_l3(struct xdp_md *ctx, int delta)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct emptcp_tcp_pkt p;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return -1;
	if (p.iph) {
		__u16 old = p.iph->tot_len;

		p.iph->tot_len = bpf_htons(bpf_ntohs(old) + delta);
		emptcp_csum_replace2(&p.iph->check, old, p.iph->tot_len);
	} else if (p.ip6h) {
		p.ip6h->payload_len = bpf_htons(bpf_ntohs(p.ip6h->payload_len) + delta);
	}
	return 0;
}

static __always_inline int emptcp_xdp_tcp_opts_edit(struct xdp_md *ctx, int op,
						    const __u8 *opt, __u32 optlen,
						    int kind, int subtype)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct emptcp_tcp_rewrite *rw;
	__u8 l2l3[EMPTCP_L2L3_MAX] = {};
	struct emptcp_tcp_pkt p;
	__u64 pre, ol, nl;
	__u16 check;
	int delta, r;

	rw = emptcp_rewrite_state();
	if (!rw)
		return -1;
	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return -1;
	if (p.iph) {
		__u32 tot = bpf_ntohs(p.iph->tot_len), ihl = p.iph->ihl * 4;

		/* bounds the verifier keeps: 6.1/6.12 lose them through the byte swap and
		 * then refuse the pointer add ("unbounded min value") */
		asm volatile("%0 &= 0xffff" : "+r"(tot));
		if (tot < ihl + p.tcp_len || (void *)p.iph + tot > data_end)
			return -1;	/* lengths disagree with the frame */
		rw->old_seg = tot - ihl;
	} else if (p.ip6h) {
		__u32 plen = bpf_ntohs(p.ip6h->payload_len);

		asm volatile("%0 &= 0xffff" : "+r"(plen));	/* as tot_len above */
		if (plen < p.tcp_len || (void *)(p.ip6h + 1) + plen > data_end)
			return -1;	/* lengths disagree with the frame */
		rw->old_seg = plen;
	} else {
		return -1;
	}
	pre = p.l4_off;
	ol = p.tcp_len;
	/* bounds the verifier keeps (clang may not reload a checked value) */
	asm volatile("%0 &= %1" : "+r"(pre) : "i"(EMPTCP_L2L3_MASK));
	asm volatile("%0 &= %1" : "+r"(ol) : "i"(EMPTCP_TCP_BUF - 1));
	if (pre > EMPTCP_L2L3_MAX)
		return -1;
	/* separate barriers keep clang from merging a < x < b into one
	 * unsigned compare of a temporary, which the verifier cannot use */
	asm volatile("" : "+r"(pre));
	if (pre < ETH_HLEN)
		return -1;
	if (ol > EMPTCP_TCP_HDR_MAX)
		return -1;
	asm volatile("" : "+r"(ol));
	if (ol < 20)
		return -1;
	rw->oldlen = ol;
	/* 1 <= len <= 64 computed next to the call: clang may spill ol before the checks
	 * above and reload it here, and 6.1's verifier does not carry the bounds to the
	 * spilled copy ("R3 min value is outside of the allowed memory range", size 0) */
	{
		__u64 len = ol;

		len -= 1;
		asm volatile("%0 &= %1" : "+r"(len) : "i"(EMPTCP_TCP_BUF - 1));
		len += 1;
		if (bpf_xdp_load_bytes(ctx, pre, EMPTCP_RW_OLD(rw), len) < 0)
			return -1;
	}
	r = emptcp_tcp_rebuild_bounded(rw, op, opt, optlen, kind, subtype, &nl);
	if (r != 0)
		return r;
	delta = (int)nl - (int)ol;
	rw->new_seg = rw->old_seg + delta;
	check = emptcp_tcp_new_check(rw);
	EMPTCP_RW_NEW(rw)[16] = check & 0xff;
	EMPTCP_RW_NEW(rw)[17] = check >> 8;

	if (bpf_xdp_load_bytes(ctx, 0, l2l3, pre) < 0)
		return -1;
	if (delta > 0) {
		if (bpf_xdp_adjust_head(ctx, -delta) < 0)
			return -1;
		if (bpf_xdp_store_bytes(ctx, 0, l2l3, pre) < 0)
			return -2;	/* cannot happen after a successful grow */
		if (bpf_xdp_store_bytes(ctx, pre, EMPTCP_RW_NEW(rw), nl) < 0)
			return -2;
	} else if (delta < 0) {
		/* new header ends where the old one ended; then slide L2/L3 */
		if (bpf_xdp_store_bytes(ctx, pre - delta, EMPTCP_RW_NEW(rw), nl) < 0)
			return -1;
		if (bpf_xdp_store_bytes(ctx, -delta, l2l3, pre) < 0)
			return -2;
		if (bpf_xdp_adjust_head(ctx, -delta) < 0)
			return -2;
	} else {
		if (bpf_xdp_store_bytes(ctx, pre, EMPTCP_RW_NEW(rw), nl) < 0)
			return -1;
	}
	if (delta && emptcp_xdp_fix_l3(ctx, delta) < 0)
		return -2;
	return 0;
}

/* ------------------------------- TC ------------------------------------ */

#define EMPTCP_TC_MOVE_MAX	4096	/* bytes after the TCP header a resize may move */
#define EMPTCP_TC_CHUNK		64

/* bpf_loop context of a move: bytes [from, from + len) go to from + delta */
struct emptcp_tc_move {
	struct __sk_buff *skb;
	__u32 from, len;
	__s32 delta, err;
};

static long emptcp_tc_move_cb(__u32 i, void *ctx)
{
	struct emptcp_tc_move *m = ctx;
	/* initialised: 6.1 does not count a variable-size helper write as initialising the
	 * stack, so passing buf on to bpf_skb_store_bytes would read "uninitialised" bytes */
	__u8 buf[EMPTCP_TC_CHUNK] = {};
	__u32 done = i * EMPTCP_TC_CHUNK, start;
	__u64 n;	/* 64-bit: no zero-extending copies the verifier loses */

	if (done >= m->len)
		return 1;
	n = m->len - done;
	if (n > EMPTCP_TC_CHUNK)
		n = EMPTCP_TC_CHUNK;
	/* growing: back to front (the destination lies after the source);
	 * shrinking: front to back */
	start = m->delta > 0 ? m->from + m->len - done - n : m->from + done;
	if (n < 1)
		return 1;
	/* the verifier must see 1 <= n <= 64 on the register passed to the helpers:
	 * n = (n - 1 masked to 0..63) + 1. A "n != 0" branch does not raise the lower
	 * bound to 1 on 6.1's verifier ("invalid zero-sized read"); an add does. */
	n -= 1;
	asm volatile("%0 &= %1" : "+r"(n) : "i"(EMPTCP_TC_CHUNK - 1));
	n += 1;
	if (bpf_skb_load_bytes(m->skb, start, buf, n) < 0 ||
	    bpf_skb_store_bytes(m->skb, start + m->delta, buf, n, 0) < 0) {
		m->err = 1;
		return 1;
	}
	return 0;
}

static __always_inline int emptcp_tc_move(struct __sk_buff *skb, __u32 from, __u32 len,
					  int delta)
{
	struct emptcp_tc_move m = { .skb = skb, .from = from, .len = len, .delta = delta };

	if (len == 0)
		return 0;
	if (len > EMPTCP_TC_MOVE_MAX)
		return -1;
	bpf_loop((EMPTCP_TC_MOVE_MAX + EMPTCP_TC_CHUNK - 1) / EMPTCP_TC_CHUNK,
		 emptcp_tc_move_cb, &m, 0);
	return m.err ? -1 : 0;
}

static __always_inline int emptcp_tc_tcp_opts_edit(struct __sk_buff *skb, int op,
						   const __u8 *opt, __u32 optlen,
						   int kind, int subtype)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct emptcp_tcp_rewrite *rw;
	struct emptcp_tcp_pkt p;
	__u64 pre, l3, ol, nl, off;
	__u32 skblen, tail, move, mtu = 0;
	__u16 oldlen16, newlen16;
	int delta, r, v4;

	rw = emptcp_rewrite_state();
	if (!rw)
		return -1;
	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return -1;
	/* the IPv4 header is assumed to be 20 bytes below */
	if (p.l3_off != ETH_HLEN)
		return -1;
	if (skb->gso_size) {
		/* GSO: resizing the header would need gso_size, csum_start and
		 * transport_header to follow, which no helper does safely */
		if (op == EMPTCP_OP_INSERT)
			return -1;
		rw->w.nopfill = 1;
	}
	v4 = p.iph != NULL;
	if (v4) {
		__u32 tot = bpf_ntohs(p.iph->tot_len);

		if (p.iph->ihl != 5 || tot < 20 + p.tcp_len || tot + ETH_HLEN > skb->len)
			return -1;
		rw->old_seg = tot - 20;
		oldlen16 = p.iph->tot_len;
	} else if (p.ip6h) {
		rw->old_seg = bpf_ntohs(p.ip6h->payload_len);
		if (rw->old_seg < p.tcp_len || rw->old_seg + 40 + ETH_HLEN > skb->len)
			return -1;
		oldlen16 = p.ip6h->payload_len;
	} else {
		return -1;
	}
	l3 = p.l3_off;
	pre = p.l4_off;
	ol = p.tcp_len;
	asm volatile("%0 &= %1" : "+r"(ol) : "i"(EMPTCP_TCP_BUF - 1));
	if (ol > EMPTCP_TCP_HDR_MAX)
		return -1;
	asm volatile("" : "+r"(ol));
	if (ol < 20)
		return -1;
	rw->oldlen = ol;
	if (bpf_skb_load_bytes(skb, pre, EMPTCP_RW_OLD(rw), ol) < 0)
		return -1;
	r = emptcp_tcp_rebuild_bounded(rw, op, opt, optlen, kind, subtype, &nl);
	if (r != 0)
		return r;
	delta = (int)nl - (int)ol;
	rw->new_seg = rw->old_seg + delta;
	/* keep the old checksum in the new header; the csum helpers fix it */
	EMPTCP_RW_NEW(rw)[16] = EMPTCP_RW_OLD(rw)[16];
	EMPTCP_RW_NEW(rw)[17] = EMPTCP_RW_OLD(rw)[17];

	/* everything after the old TCP header (payload, any trailer) moves */
	skblen = skb->len;
	tail = pre + ol;
	if (skblen < tail)
		return -1;
	move = skblen - tail;
	if (delta != 0 && move > EMPTCP_TC_MOVE_MAX)
		return -1;
	if (delta > 0) {
		/* the grown frame must fit the MTU or it is dropped on its way out */
		if (bpf_check_mtu(skb, 0, &mtu, delta, 0) != BPF_MTU_CHK_RET_SUCCESS)
			return -1;
		if (bpf_skb_change_tail(skb, skblen + delta, 0) < 0)
			return -1;	/* only the (zeroed) new tail changed */
		if (emptcp_tc_move(skb, tail, move, delta) < 0)
			return -2;
		if (bpf_skb_store_bytes(skb, pre, EMPTCP_RW_NEW(rw), nl, 0) < 0)
			return -2;
	} else if (delta < 0) {
		if (bpf_skb_store_bytes(skb, pre, EMPTCP_RW_NEW(rw), nl, 0) < 0)
			return -1;
		if (emptcp_tc_move(skb, tail, move, delta) < 0)
			return -2;
		if (bpf_skb_change_tail(skb, skblen + delta, 0) < 0)
			return -2;
	} else {
		if (bpf_skb_store_bytes(skb, pre, EMPTCP_RW_NEW(rw), nl, 0) < 0)
			return -1;
	}
	/* header bytes: folded into a full checksum, left out of a partial one
	 * (the device/skb_checksum_help sums the header later) */
	off = pre + 16;
	if (bpf_l4_csum_replace(skb, off, 0, rw->diff, 0) < 0)
		return -2;
	if (delta == 0)
		return 0;
	/* segment length: part of the pseudo-header, so of both kinds */
	newlen16 = bpf_htons(bpf_ntohs(oldlen16) + delta);
	if (bpf_l4_csum_replace(skb, off, bpf_htons(rw->old_seg), bpf_htons(rw->new_seg),
				BPF_F_PSEUDO_HDR | sizeof(__u16)) < 0)
		return -2;
	if (v4) {
		if (bpf_skb_store_bytes(skb, l3 + 2, &newlen16, 2, 0) < 0)
			return -2;
		if (bpf_l3_csum_replace(skb, l3 + 10, oldlen16, newlen16, sizeof(__u16)) < 0)
			return -2;
	} else {
		if (bpf_skb_store_bytes(skb, l3 + 4, &newlen16, 2, 0) < 0)
			return -2;
	}
	return 0;
}

/* ------------------- rewrite an option in place ------------------------ */

/* what emptcp_tcp_opt_write needs from the packet, computed before any write */
struct emptcp_opt_patch {
	__u64 l4_off;		/* TCP header offset from data */
	__u64 len;		/* option area length, a multiple of 4 (4..40) */
	__u32 diff;		/* csum_diff(old option area, new option area) */
	__u16 check;		/* the TCP checksum field as it is in the packet */
};

/* Build the new option area in w->out: the first option (kind, subtype) with
 * bytes [at, at + n) replaced.  0: ready; 1: no such option; -1: refused. */
static __always_inline int emptcp_opt_patch(void *data, void *data_end, int kind,
					    int subtype, __u32 at, const __u8 *bytes,
					    __u32 n, struct emptcp_opt_patch *pp)
{
	struct emptcp_walk *w = emptcp_walk_state();
	struct emptcp_tcp_pkt p;
	__u32 olen = 0, i;
	__u64 len;
	__s64 d;
	int off;

	if (!w || emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return -1;
	__builtin_memset(w, 0, sizeof(*w));
	off = emptcp_tcp_opts_copy(p.tcph, data_end, w->in);
	if (off <= 0)
		return off < 0 ? -1 : 1;
	w->len = off;
	off = emptcp_opt_find(w, kind, subtype, &olen);
	if (off < 0)
		return w->err ? -1 : 1;
	if (n == 0 || n > EMPTCP_TCP_OPT_MAX || at >= olen || n > olen - at)
		return -1;	/* would write past the option */
	__builtin_memcpy(w->out, w->in, EMPTCP_TCP_BUF);
#pragma unroll
	for (i = 0; i < EMPTCP_TCP_OPT_MAX; i++) {
		if (i >= n)
			break;
		w->out[EMPTCP_IDX(off + at + i)] = bytes[i];
	}
	/* the diff covers whole 32-bit words from the start of the options
	 * (4-byte aligned in the TCP header): right for any field offset */
	len = w->len;
	asm volatile("%0 &= %1" : "+r"(len) : "i"(EMPTCP_TCP_BUF - 4));
	if (len == 0)
		return -1;
	d = bpf_csum_diff((__be32 *)w->in, len, (__be32 *)w->out, len, 0);
	if (d < 0)
		return -1;
	pp->diff = (__u32)d;
	pp->len = len;
	pp->l4_off = p.l4_off;
	pp->check = p.tcph->check;
	return 0;
}

static __always_inline int emptcp_xdp_tcp_opt_write(struct xdp_md *ctx, int kind, int subtype,
						    __u32 at, const __u8 *bytes, __u32 n)
{
	struct emptcp_walk *w = emptcp_walk_state();
	struct emptcp_opt_patch pp = {};
	__u16 check;
	int r;

	r = emptcp_opt_patch((void *)(long)ctx->data, (void *)(long)ctx->data_end, kind, subtype,
			     at, bytes, n, &pp);
	if (r != 0 || !w)
		return r ? r : -1;
	/* XDP frames carry complete checksums: fold the diff in */
	check = ~emptcp_csum_fold_raw((__u64)(__u16)~pp.check + pp.diff);
	if (bpf_xdp_store_bytes(ctx, pp.l4_off + sizeof(struct tcphdr), w->out, pp.len) < 0)
		return -1;
	if (bpf_xdp_store_bytes(ctx, pp.l4_off + offsetof(struct tcphdr, check), &check, 2) < 0)
		return -2;
	return 0;
}

static __always_inline int emptcp_tc_tcp_opt_write(struct __sk_buff *ctx, int kind, int subtype,
						   __u32 at, const __u8 *bytes, __u32 n)
{
	struct emptcp_walk *w = emptcp_walk_state();
	struct emptcp_opt_patch pp = {};
	int r;

	r = emptcp_opt_patch((void *)(long)ctx->data, (void *)(long)ctx->data_end, kind, subtype,
			     at, bytes, n, &pp);
	if (r != 0 || !w)
		return r ? r : -1;
	if (bpf_skb_store_bytes(ctx, pp.l4_off + sizeof(struct tcphdr), w->out, pp.len, 0) < 0)
		return -1;
	/* header bytes: folded into a full checksum, left out of a partial one */
	if (bpf_l4_csum_replace(ctx, pp.l4_off + offsetof(struct tcphdr, check), 0, pp.diff, 0) < 0)
		return -2;
	return 0;
}

/*
 * Hook-generic API.  0: packet changed; 1: nothing to do (remove: option not
 * present); -1: refused, packet unchanged (not TCP, malformed options, would
 * exceed 40 bytes or, on TC, the MTU; IPv4 options, GSO insert or more than
 * EMPTCP_TC_MOVE_MAX bytes to move on TC); -2: failed half way (should not
 * happen; the caller should drop).  Packet pointers are invalid afterwards.
 */
#define emptcp_tcp_opt_insert(ctx, opt, optlen) \
	_Generic((ctx), struct xdp_md *: emptcp_xdp_tcp_opts_edit, \
		 struct __sk_buff *: emptcp_tc_tcp_opts_edit)(ctx, EMPTCP_OP_INSERT, opt, optlen, -1, -1)
#define emptcp_tcp_opt_remove(ctx, kind, subtype) \
	_Generic((ctx), struct xdp_md *: emptcp_xdp_tcp_opts_edit, \
		 struct __sk_buff *: emptcp_tc_tcp_opts_edit)(ctx, EMPTCP_OP_REMOVE, NULL, 0, kind, subtype)

/*
 * Overwrite bytes [at, at + n) of the first option (kind, subtype) in place
 * (the option keeps its length; e.g. at 2, n 2 = the MSS value) and fix the
 * TCP checksum, whatever the field's offset (XDP: complete checksum; TC:
 * bpf_l4_csum_replace, so CHECKSUM_PARTIAL skbs stay right).  `bytes` must
 * hold n bytes; keep n a constant.  0: changed; 1: no such option; -1:
 * refused, packet unchanged (not TCP, malformed options, at + n beyond the
 * option); -2: failed half way (drop).  Packet pointers are invalid afterwards.
 */
#define emptcp_tcp_opt_write(ctx, kind, subtype, at, bytes, n) \
	_Generic((ctx), struct xdp_md *: emptcp_xdp_tcp_opt_write, \
		 struct __sk_buff *: emptcp_tc_tcp_opt_write)(ctx, kind, subtype, at, bytes, n)

#endif /* EMPTCP_TCPOPT_H */
