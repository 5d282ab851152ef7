// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Plain stage bodies that once failed the verifier inside emptcp_chain.h
 * (issue 9): parse, copy the TCP options with emptcp_tcp_opts_copy, write 4
 * bytes.  The stage macros must verify whatever the body does, so these are
 * written as a plugin author would, with no workaround (__noinline...). */
#include "emptcp.h"

/* action: the first option word becomes the second one (observable) */
#define OPT_SHIFT_BODY \
	struct emptcp_tcp_pkt p; \
	__u8 buf[64]; \
	int len; \
	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0) \
		EMPTCP_NEXT; \
	len = emptcp_tcp_opts_copy(p.tcph, data_end, buf); \
	if (len < 8) \
		EMPTCP_NEXT; \
	if ((void *)(p.tcph + 1) + 4 > data_end) \
		EMPTCP_NEXT; \
	__builtin_memcpy((void *)(p.tcph + 1), &buf[4], 4);

SEC("xdp")
int emptcp_optshift_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	OPT_SHIFT_BODY
	ACTION_POST_SEC
}

SEC("tc")
int emptcp_optshift_tc(struct __sk_buff *ctx)
{
	ACTION_PRE_SEC
	OPT_SHIFT_BODY
	ACTION_POST_SEC
}

/* selector: the first option's kind equals the immediate parameter; it also
 * writes 4 bytes (the last option word, unchanged) so the same shape of body
 * runs through the selector macros */
#define OPT_KIND_BODY \
	struct emptcp_tcp_pkt p; \
	__u8 buf[64]; \
	int len; \
	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0) \
		EMPTCP_NEXT; \
	len = emptcp_tcp_opts_copy(p.tcph, data_end, buf); \
	if (len < 4) \
		EMPTCP_NEXT; \
	if ((void *)(p.tcph + 1) + 4 > data_end) \
		EMPTCP_NEXT; \
	__builtin_memcpy((void *)(p.tcph + 1), buf, 4); \
	MATCH = buf[0] == PARAM;

SEC("xdp")
int emptcp_optkind_xdp(struct xdp_md *ctx)
{
	SELECTOR_PRE_SEC
	OPT_KIND_BODY
	SELECTOR_POST_SEC
}

SEC("tc")
int emptcp_optkind_tc(struct __sk_buff *ctx)
{
	SELECTOR_PRE_SEC
	OPT_KIND_BODY
	SELECTOR_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
