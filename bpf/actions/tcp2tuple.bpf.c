// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tcp2tuple (selector, REF emptcp_p_tuple): half of tcp4tuple - either the
 * two ports (mode PORTS: local_port, remote_port) or the two addresses (mode
 * ADDRS: local, remote, exact) of a TCP packet. */
#include "emptcp.h"

static __always_inline int tcp2tuple(void *data, void *data_end, struct emptcp_env *e)
{
	const struct emptcp_p_tuple *p = (const void *)e->blob;
	struct emptcp_view v;

	if (!p || emptcp_view_tcp(data, data_end, e, &v) < 0)
		return 0;
	if (p->mode == EMPTCP_TUPLE_PORTS)
		return v.lport == p->local_port && v.rport == p->remote_port;
	if (p->mode == EMPTCP_TUPLE_ADDRS)
		return v.family == p->family && emptcp_addr_eq(v.local, p->local, v.family) &&
		       emptcp_addr_eq(v.remote, p->remote, v.family);
	return 0;
}

EMPTCP_SELECTOR(tcp2tuple, tcp2tuple)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
