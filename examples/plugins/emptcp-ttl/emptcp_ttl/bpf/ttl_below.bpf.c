// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* ttl_below (selector, REF struct emptcp_ttl_param): IPv4 packets whose TTL,
 * or IPv6 packets whose hop limit, is below param->ttl.  Anything else
 * (ARP, truncated headers) does not match. */
#include "emptcp.h"
#include "emptcp_ttl.h"

static __always_inline int ttl_below_match(void *data, void *data_end,
					   struct emptcp_env *env)
{
	const struct emptcp_ttl_param *p = (const void *)env->blob;
	struct emptcp_ttl_l3 l3;

	if (!p || emptcp_ttl_parse(data, data_end, &l3) < 0)
		return 0;
	if (l3.iph)
		return l3.iph->ttl < p->ttl;
	if (l3.ip6h)
		return l3.ip6h->hop_limit < p->ttl;
	return 0;
}

/* defines emptcp_ttl_below_xdp (SEC "xdp") and emptcp_ttl_below_tc (SEC "tc") */
EMPTCP_SELECTOR(ttl_below, ttl_below_match)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
