// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* rm_add_addr (action, no parameter): remove every MPTCP ADD_ADDR option
 * (subtype 3) and shrink the TCP header; the remaining options are NOP padded
 * to a multiple of 4 and lengths/checksums are fixed by emptcp_tcp_opt_remove.
 * The peer never learns the announced address. */
#include "mptcp_common.h"

#define RM_ADD_ADDR(ctx, env, data, data_end) \
	emptcp_tcp_opt_remove(ctx, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCPOPT_ADD_ADDR)

MPTCP_ACTION(rm_add_addr, RM_ADD_ADDR)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
