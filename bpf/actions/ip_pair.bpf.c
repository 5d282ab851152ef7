// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* ip_pair (selector, REF emptcp_p_ip_pair): local address in local/plen and
 * remote address in remote/plen; TCP packets of the blob's family only. */
#include "emptcp.h"

static __always_inline int ip_pair(void *data, void *data_end, struct emptcp_env *e)
{
	const struct emptcp_p_ip_pair *p = (const void *)e->blob;
	struct emptcp_view v;

	if (!p || emptcp_view_tcp(data, data_end, e, &v) < 0 || v.family != p->family)
		return 0;
	return emptcp_prefix_eq(v.local, p->local, p->local_plen) &&
	       emptcp_prefix_eq(v.remote, p->remote, p->remote_plen);
}

EMPTCP_SELECTOR(ip_pair, ip_pair)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
