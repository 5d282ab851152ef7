// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tcp4tuple (selector, REF emptcp_p_tuple): exactly this connection seen
 * from this host: local addr, local port, remote addr, remote port. */
#include "emptcp.h"

static __always_inline int tcp4tuple(void *data, void *data_end, struct emptcp_env *e)
{
	const struct emptcp_p_tuple *p = (const void *)e->blob;
	struct emptcp_view v;

	if (!p || emptcp_view_tcp(data, data_end, e, &v) < 0 || v.family != p->family)
		return 0;
	return v.lport == p->local_port && v.rport == p->remote_port &&
	       emptcp_addr_eq(v.local, p->local, v.family) &&
	       emptcp_addr_eq(v.remote, p->remote, v.family);
}

EMPTCP_SELECTOR(tcp4tuple, tcp4tuple)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
