/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* emptcp.h - the one include for stage (selector/action) authors */
#ifndef EMPTCP_H
#define EMPTCP_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "emptcp_abi.h"
#include "emptcp_maps.h"
#include "emptcp_parse.h"
#include "emptcp_csum.h"
#include "emptcp_tcpopt.h"
#include "emptcp_chain.h"
#include "emptcp_events.h"
#include "emptcp_params.h"
#include "emptcp_match.h"

#endif /* EMPTCP_H */
