/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_csum.h - ones'-complement checksum arithmetic for incremental
 * updates (RFC 1624).  Used on XDP, where the packet carries complete
 * checksums.  TC code uses bpf_l3/l4_csum_replace instead, because those
 * also keep CHECKSUM_PARTIAL / CHECKSUM_COMPLETE skbs right.
 */
#ifndef EMPTCP_CSUM_H
#define EMPTCP_CSUM_H

#include <linux/types.h>

/* fold a 64-bit partial sum to 16 bits (not complemented) */
static __always_inline __u16 emptcp_csum_fold_raw(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* the checksum field after the 16-bit word `old` became `new` (all three in
 * the byte order they have in the packet) */
static __always_inline __u16 emptcp_csum_replace2_val(__u16 check, __u16 old, __u16 new)
{
	__u64 s = (__u16)~check;

	s += (__u16)~old;
	s += new;
	return ~emptcp_csum_fold_raw(s);
}

/* in place, like the kernel's csum_replace2(): *sum after one 16-bit word of
 * the covered data changed from `old` to `new` (packet byte order) */
static __always_inline void emptcp_csum_replace2(__sum16 *sum, __be16 old, __be16 new)
{
	*sum = emptcp_csum_replace2_val(*sum, old, new);
}

#endif /* EMPTCP_CSUM_H */
