// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* rm_mp_capable (action, immediate bit 0 = any packet): remove MP_CAPABLE
 * (subtype 0) from SYN and SYN-ACK packets (or, with bit 0, from every
 * packet), so that the connection falls back to regular TCP. */
#include "mptcp_common.h"

static __always_inline int is_syn(void *data, void *data_end)
{
	struct emptcp_tcp_pkt p;

	if (emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return -1;
	return p.tcph->syn;
}

#define RM_MP_CAPABLE(ctx, env, data, data_end) ({ \
	int __s = is_syn(data, data_end), __r = 0; \
	if (__s > 0 || (__s == 0 && ((env)->imm & 1))) \
		__r = emptcp_tcp_opt_remove(ctx, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCPOPT_MP_CAPABLE); \
	__r; })

MPTCP_ACTION(rm_mp_capable, RM_MP_CAPABLE)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
