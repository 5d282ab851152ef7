// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A stage the verifier rejects *inside* an emptcp helper: the TCP header
 * pointer handed to emptcp_tcp_opts_copy was never checked against data_end. */
#include "emptcp.h"

SEC("xdp")
int emptcp_rejected_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	__u8 buf[EMPTCP_TCP_BUF];
	struct tcphdr *tcph = data + 34;        /* no bounds check */

	if (emptcp_tcp_opts_copy(tcph, data_end, buf) > 0 && buf[0] == 2)
		return XDP_DROP;
	ACTION_POST_SEC
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
