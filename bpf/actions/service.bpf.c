// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* service (selector, REF emptcp_p_service): a TCP port in one of up to 15
 * inclusive ranges; mode EITHER tests source and destination port, mode
 * LOCAL only the local port (destination on ingress, source on egress). */
#include "emptcp.h"

static __always_inline int service(void *data, void *data_end, struct emptcp_env *e)
{
	const struct emptcp_p_service *p = (const void *)e->blob;
	struct emptcp_view v;
	__u16 lp, rp;
	__u32 i;

	if (!p || emptcp_view_tcp(data, data_end, e, &v) < 0)
		return 0;
	lp = bpf_ntohs(v.lport);
	rp = bpf_ntohs(v.rport);
#pragma unroll
	for (i = 0; i < EMPTCP_SERVICE_MAX; i++) {
		if (i >= p->n)
			break;
		if (lp >= p->r[i].lo && lp <= p->r[i].hi)
			return 1;
		if (p->mode == EMPTCP_SERVICE_EITHER && rp >= p->r[i].lo && rp <= p->r[i].hi)
			return 1;
	}
	return 0;
}

EMPTCP_SELECTOR(service, service)
char LICENSE[] SEC("license") = "Dual BSD/GPL";
