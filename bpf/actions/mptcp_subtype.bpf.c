// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* mptcp_subtype (selector, immediate 0..15): the TCP header carries an MPTCP
 * option (kind 30) of this subtype.  Malformed option areas never match. */
#include "emptcp.h"

static __always_inline int mptcp_subtype(void *data, void *data_end, struct emptcp_env *e)
{
	struct emptcp_tcp_pkt p;

	if (e->imm > 15 || emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return 0;
	return emptcp_has_mptcp_subtype(p.tcph, data_end, e->imm);
}

EMPTCP_SELECTOR(mptcp_subtype, mptcp_subtype)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
