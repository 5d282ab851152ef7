/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_params.h - layouts of the 64-byte parameter blobs of the built-in
 * stages (encoded by core/emptcp/chain_compiler.py, checked against this
 * file).  Multi-byte fields are in network order unless noted.
 */
#ifndef EMPTCP_PARAMS_H
#define EMPTCP_PARAMS_H

#include <linux/types.h>

/* ip_pair: a prefix of 0 is a wildcard */
struct emptcp_p_ip_pair {
	__u8 family;		/* 4 or 6 */
	__u8 local_plen;
	__u8 remote_plen;
	__u8 pad;
	__u8 local[16];		/* IPv4 in the first 4 bytes */
	__u8 remote[16];
};

/* tcp4tuple (all four fields) and tcp2tuple (mode picks two) */
#define EMPTCP_TUPLE_PORTS 1
#define EMPTCP_TUPLE_ADDRS 2
struct emptcp_p_tuple {
	__u8 family;		/* 4 or 6 */
	__u8 mode;		/* tcp2tuple: EMPTCP_TUPLE_PORTS or _ADDRS */
	__be16 local_port;
	__be16 remote_port;
	__u8 pad[2];
	__u8 local[16];
	__u8 remote[16];
};

/* service: up to 15 inclusive port ranges (host order) */
#define EMPTCP_SERVICE_MAX 15
#define EMPTCP_SERVICE_EITHER 0	/* source or destination port in a range */
#define EMPTCP_SERVICE_LOCAL 1	/* the local port in a range */
struct emptcp_p_service {
	__u8 n;
	__u8 mode;
	__u8 pad[2];
	struct {
		__u16 lo, hi;
	} r[EMPTCP_SERVICE_MAX];
};

/* redirect */
struct emptcp_p_redirect {
	__u32 ifindex;		/* host order */
};

/* set_recv_win */
struct emptcp_p_window {
	__u16 window;		/* host order, the raw 16-bit field (unscaled) */
};

/* tcp_opt_add: the option bytes, kind first (padded with NOPs on insert) */
struct emptcp_p_opt_add {
	__u8 len;		/* 1..40 */
	__u8 bytes[40];
};

/* tcp_opt_del */
#define EMPTCP_SUBTYPE_ANY 0xff
struct emptcp_p_opt_del {
	__u8 kind;
	__u8 subtype;		/* MPTCP subtype, EMPTCP_SUBTYPE_ANY for all */
};

_Static_assert(sizeof(struct emptcp_p_ip_pair) <= 64, "param blob");
_Static_assert(sizeof(struct emptcp_p_tuple) <= 64, "param blob");
_Static_assert(sizeof(struct emptcp_p_service) <= 64, "param blob");
_Static_assert(sizeof(struct emptcp_p_opt_add) <= 64, "param blob");

#endif /* EMPTCP_PARAMS_H */
