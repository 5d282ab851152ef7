/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * emptcp_events.h - typed events to user space over the emptcp_events ring
 * buffer: struct emptcp_event_hdr followed by one payload (emptcp_abi.h).
 * A full ring drops the event (and counts an error on the hook) rather than
 * stalling the packet.
 */
#ifndef EMPTCP_EVENTS_H
#define EMPTCP_EVENTS_H

#include "emptcp_chain.h"
#include "emptcp_parse.h"

/* reserve hdr+payload and fill the header from the stage's environment;
 * returns a pointer to the payload or NULL (ring full, counted) */
#define emptcp_event_reserve(env, evtype, payload_type) \
	((payload_type *)__emptcp_event_reserve(env, evtype, sizeof(payload_type)))

struct __emptcp_ev_any {
	struct emptcp_event_hdr hdr;
	__u8 payload[];
};

static __always_inline void *__emptcp_event_reserve(const struct emptcp_env *e, __u32 type,
						    __u32 len)
{
	struct __emptcp_ev_any *ev;

	ev = bpf_ringbuf_reserve(&emptcp_events, sizeof(struct emptcp_event_hdr) + len, 0);
	if (!ev) {
		emptcp_hook_count(e->hook, EMPTCP_HS_ERRORS);
		return NULL;
	}
	ev->hdr.type = type;
	ev->hdr.hook_id = e->hook;
	ev->hdr.policy = e->policy;
	ev->hdr.stage = e->stage;
	ev->hdr.phase = e->phase;
	ev->hdr.len = len;
	return ev->payload;
}

/* submit a payload returned by emptcp_event_reserve */
static __always_inline void emptcp_event_submit(void *payload)
{
	bpf_ringbuf_submit((__u8 *)payload - sizeof(struct emptcp_event_hdr), 0);
}

static __always_inline void emptcp_tuple_fill(struct emptcp_ev_tuple *t,
					      const struct emptcp_tcp_pkt *p, __u32 kind)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->proto = IPPROTO_TCP;
	t->kind = kind;
	t->sport = p->tcph->source;
	t->dport = p->tcph->dest;
	if (p->iph) {
		t->family = 4;
		__builtin_memcpy(t->saddr, &p->iph->saddr, 4);
		__builtin_memcpy(t->daddr, &p->iph->daddr, 4);
	} else if (p->ip6h) {
		t->family = 6;
		__builtin_memcpy(t->saddr, &p->ip6h->saddr, 16);
		__builtin_memcpy(t->daddr, &p->ip6h->daddr, 16);
	}
}

#endif /* EMPTCP_EVENTS_H */
