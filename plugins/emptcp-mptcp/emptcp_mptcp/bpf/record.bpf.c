// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* record (action, immediate = MPTCP subtype 0..15, 63 = any): emit an
 * EMPTCP_EV_MPTCP_OPT event with the first MPTCP option of that subtype in
 * the packet (tuple, subtype, option bytes).  The packet is not changed. */
#include "mptcp_common.h"

#define RECORD_ANY 63

static __always_inline void record(void *data, void *data_end, const struct emptcp_env *e)
{
	struct emptcp_walk *w = emptcp_walk_state();
	struct emptcp_ev_mptcp_opt *ev;
	struct emptcp_tcp_pkt p;
	__u32 olen = 0, i;
	int len, off, sub = e->imm == RECORD_ANY ? EMPTCP_SUBTYPE_ANY : e->imm;

	if (!w || emptcp_parse_tcp_packet(data, data_end, &p) < 0)
		return;
	__builtin_memset(w, 0, sizeof(*w));
	len = emptcp_tcp_opts_copy(p.tcph, data_end, w->in);
	if (len <= 0)
		return;
	w->len = len;
	off = emptcp_opt_find(w, EMPTCP_TCPOPT_MPTCP, sub, &olen);
	if (off < 0 || olen > 40)
		return;
	ev = emptcp_event_reserve(e, EMPTCP_EV_MPTCP_OPT, struct emptcp_ev_mptcp_opt);
	if (!ev)
		return;
	emptcp_tuple_fill(&ev->tuple, &p, e->kind);
	ev->subtype = olen >= 3 ? w->in[EMPTCP_IDX(off + 2)] >> 4 : 0;
	ev->len = olen;
	ev->pad[0] = 0;
	ev->pad[1] = 0;
	/* branch-free: a data-dependent branch in each of 40 iterations exceeded 6.1's
	 * budget of 1M verified instructions */
	for (i = 0; i < 40; i++) {
		/* all ones while i < olen, else 0: an arithmetic shift, no branch */
		__u8 keep = ~(__u8)((__s32)(olen - i - 1) >> 31);

		ev->opt[i] = w->in[EMPTCP_IDX(off + i)] & keep;
	}
	emptcp_event_submit(ev);
}

#define RECORD(ctx, env, data, data_end) ({ record(data, data_end, env); 0; })

MPTCP_ACTION(record, RECORD)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
