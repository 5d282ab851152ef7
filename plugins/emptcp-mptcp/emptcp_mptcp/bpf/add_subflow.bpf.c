// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* add_subflow (action; REF struct mptcp_p_add_subflow): for the first
 * established packet (not SYN, carrying an MPTCP option) of each connection,
 * emit EMPTCP_EV_ADD_SUBFLOW: the connection's tuple followed by the local
 * address and remote port the new subflow should use.  User space
 * (emptcp_mptcp.emptcp_handle_event) asks the kernel's MPTCP path manager to
 * open the subflow.  An LRU map remembers the connections already reported. */
#include "mptcp_common.h"

struct mptcp_p_add_subflow {
	__u8 family;		/* 4 or 6 */
	__u8 pad;
	__be16 remote_port;	/* 0: the connection's remote port */
	__u8 local[16];		/* local address of the new subflow */
};

/* event payload: the ABI's tuple first, then this extension */
struct mptcp_ev_add_subflow {
	struct emptcp_ev_tuple t;
	__u8 family;
	__u8 pad;
	__be16 remote_port;
	__u8 local[16];
};

struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport, dport;
	__u32 hook;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, __u8);
} mptcp_add_subflow_seen SEC(".maps");

static __always_inline void add_subflow(void *data, void *data_end, const struct emptcp_env *e)
{
	const struct mptcp_p_add_subflow *prm = (const void *)e->blob;
	struct mptcp_ev_add_subflow *ev;
	struct emptcp_tcp_pkt p;
	struct flow_key k = {};
	__u8 one = 1;

	if (!prm || emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return;
	if (p.tcph->syn || p.tcph->rst || p.tcph->fin || !mptcp_packet(&p, data_end))
		return;
	if (p.iph) {
		__builtin_memcpy(k.saddr, &p.iph->saddr, 4);
		__builtin_memcpy(k.daddr, &p.iph->daddr, 4);
	} else if (p.ip6h) {
		__builtin_memcpy(k.saddr, &p.ip6h->saddr, 16);
		__builtin_memcpy(k.daddr, &p.ip6h->daddr, 16);
	}
	k.sport = p.tcph->source;
	k.dport = p.tcph->dest;
	k.hook = e->hook;
	if (bpf_map_update_elem(&mptcp_add_subflow_seen, &k, &one, BPF_NOEXIST) != 0)
		return;		/* already reported */
	ev = emptcp_event_reserve(e, EMPTCP_EV_ADD_SUBFLOW, struct mptcp_ev_add_subflow);
	if (!ev)
		return;
	emptcp_tuple_fill(&ev->t, &p, e->kind);
	ev->family = prm->family;
	ev->pad = 0;
	ev->remote_port = prm->remote_port;
	__builtin_memcpy(ev->local, prm->local, 16);
	emptcp_event_submit(ev);
}

#define ADD_SUBFLOW(ctx, env, data, data_end) ({ add_subflow(data, data_end, env); 0; })

MPTCP_ACTION(add_subflow, ADD_SUBFLOW)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
