// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* set_flow_priority (action, immediate bit 0 = backup): insert MP_PRIO
 * (RFC 8684 subtype 5, the 3-byte form Linux accepts, plus one NOP) into
 * packets of an MPTCP connection that are not SYN/RST, carry an MPTCP option
 * and have room (options + 4 <= 40) and no MP_PRIO yet.  The TCP header
 * grows by 4 bytes; doff, IP lengths and IPv4/TCP checksums are fixed by
 * emptcp_tcp_opt_insert. */
#include "mptcp_common.h"

static __always_inline int prio_wanted(void *data, void *data_end)
{
	struct emptcp_walk *w = emptcp_walk_state();
	struct emptcp_tcp_pkt p;
	__u32 olen;
	int len;

	if (!w || emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return 0;
	if (p.tcph->syn || p.tcph->rst)
		return 0;
	__builtin_memset(w, 0, sizeof(*w));
	len = emptcp_tcp_opts_copy(p.tcph, data_end, w->in);
	if (len <= 0 || len + 4 > EMPTCP_TCP_OPT_MAX)
		return 0;
	w->len = len;
	if (emptcp_opt_find(w, EMPTCP_TCPOPT_MPTCP, EMPTCP_SUBTYPE_ANY, &olen) < 0)
		return 0;
	return emptcp_opt_find(w, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCPOPT_MP_PRIO, &olen) < 0;
}

#define SET_PRIO(ctx, env, data, data_end) ({ \
	int __r = 0; \
	if (prio_wanted(data, data_end)) { \
		__u8 opt[4] = { EMPTCP_TCPOPT_MPTCP, 3, \
				(EMPTCP_MPTCPOPT_MP_PRIO << 4) | ((env)->imm & 1), EMPTCP_TCPOPT_NOP }; \
		__r = emptcp_tcp_opt_insert(ctx, opt, 4); \
	} \
	__r; })

MPTCP_ACTION(set_flow_priority, SET_PRIO)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
