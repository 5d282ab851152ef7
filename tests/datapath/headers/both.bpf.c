// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A stage that uses xdp-tutorial-style helpers and emptcp's side by side.
 * TUTORIAL_FIRST picks the include order (both must compile).
 * Selector both_sel: IPv4 TCP whose destination port is the immediate
 * parameter + 8000 (found with the tutorial's parsers) and that
 * emptcp_parse_tcp_packet parses too. */
#ifdef TUTORIAL_FIRST
#include "tutorial_style.h"
#include "emptcp.h"
#else
#include "emptcp.h"
#include "tutorial_style.h"
#endif

static __always_inline int both_match(void *data, void *data_end, struct emptcp_env *env)
{
	struct hdr_cursor nh = { .pos = data };
	struct emptcp_tcp_pkt pkt;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct tcphdr *tcph;

	if (parse_ethhdr(&nh, data_end, &eth) != bpf_htons(ETH_P_IP))
		return 0;
	if (parse_iphdr(&nh, data_end, &iph) != IPPROTO_TCP)
		return 0;
	if (parse_tcphdr(&nh, data_end, &tcph) < 0)
		return 0;
	if (emptcp_parse_tcp_packet(data, data_end, &pkt) < 0)
		return 0;
	return bpf_ntohs(tcph->dest) == 8000 + env->imm && pkt.tcph == tcph;
}

EMPTCP_SELECTOR(both_sel, both_match)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
