"""emptcp shares TCX hooks with other programs (issue 12, coexistence).

A veth pair between two namespaces; emptcp on tc-ingress of the receiver (or
tc-egress of the sender) with three policies: port 9 -> drop, port 7 -> pass
(an explicit verdict), port 5001 -> count (a chain that ends without one);
pings match nothing. Two copies of a tiny counting program, compiled here,
sit on the same hook: ``before`` at the front of the list, ``after`` behind
emptcp. The oracles are outside emptcp: the counters' own maps and the
interface's link counters.

* ``after`` sees every packet emptcp did not decide: all pings, every segment
  of the TCP transfer; nothing of the dropped port or of the explicit pass.
* ``before`` sees everything the link counted (ingress: rx; egress: tx + drops).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import uuid

import pytest

from emptcp import netns
from emptcp.bpf.links import attach_tcx, tcx_query
from emptcp.bpf.objects import ObjectSpec

from ..cli.conftest import sh
from ..conftest import require

pytestmark = pytest.mark.slow
#: pin roots /sys/fs/bpf/<EMPTCP_TEST_PREFIX or emptcp>-ops-tcx-<random>
PREFIX = os.environ.get("EMPTCP_TEST_PREFIX", "").strip() or "emptcp"

COUNTER_C = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* 0 all, 1 ICMP, 2 TCP dport 5001, 3 TCP dport 9, 4 TCP dport 7, 5 other */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 6);
         __type(key, __u32); __type(value, __u64); } counts SEC(".maps");

static __always_inline void bump(__u32 k)
{
    __u64 *v = bpf_map_lookup_elem(&counts, &k);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("tc")
int count_next(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    struct tcphdr *tcp;
    __u32 k = 5;

    bump(0);
    if ((void *)(ip + 1) <= end && eth->h_proto == bpf_htons(ETH_P_IP)) {
        if (ip->protocol == IPPROTO_ICMP) {
            k = 1;
        } else if (ip->protocol == IPPROTO_TCP) {
            tcp = (void *)ip + ip->ihl * 4;
            if ((void *)(tcp + 1) <= end) {
                __u16 d = bpf_ntohs(tcp->dest);
                k = d == 5001 ? 2 : d == 9 ? 3 : d == 7 ? 4 : 5;
            }
        }
    }
    bump(k);
    return TC_ACT_UNSPEC;   /* TCX_NEXT */
}

char LICENSE[] SEC("license") = "GPL";
"""
KEYS = ("all", "icmp", "tcp5001", "tcp9", "tcp7", "other")
PINGS = 7
TRANSFER = 300_000

POLICY = """[hooks.h]
interface = "{ifname}"
type = "{type}"
{position}
[[policy]]
name = "refuse-9"
hook = "h"
selectors = [ {{ use = "service", ports = [9] }} ]
actions = [ {{ use = "drop" }} ]

[[policy]]
name = "accept-7"
hook = "h"
selectors = [ {{ use = "service", ports = [7] }} ]
actions = [ {{ use = "count" }}, {{ use = "pass" }} ]

[[policy]]
name = "watch-5001"
hook = "h"
selectors = [ {{ use = "service", ports = [5001] }} ]
actions = [ {{ use = "count" }} ]
"""


@pytest.fixture(scope="module")
def counter_obj(root, tmp_path_factory):
    from emptcp.build.compile import compile_bpf
    require(subprocess.run(["which", "clang"], capture_output=True).returncode == 0,
            "clang is not installed")
    d = tmp_path_factory.mktemp("tcxcount")
    src = d / "count_next.bpf.c"
    src.write_text(COUNTER_C)
    return compile_bpf(str(src), str(d / "count_next.o"))


class Counter:
    """One loaded copy of the counting program, attached by a TCX link."""

    def __init__(self, obj_path: str) -> None:
        self.obj = ObjectSpec(obj_path).load()
        self.prog = self.obj.programs["count_next"]
        self.map = self.obj.map("counts", key=int, value=int)
        self.link = None

    def attach(self, ns: str, ifname: str, direction: str, position: str) -> "Counter":
        with netns.enter(ns):
            self.link = attach_tcx(self.prog, ifname, direction, position)
        return self

    def counts(self) -> dict[str, int]:
        return {k: self.map[i] for i, k in enumerate(KEYS)}

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        self.obj.close()


def link_stats(ns: str, ifname: str) -> dict[str, int]:
    out = sh("ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname).stdout
    st = json.loads(out)[0]["stats64"]
    return {"rx": st["rx"]["packets"], "tx": st["tx"]["packets"]}


def quiet(ns: str) -> None:
    """No IPv6 autoconfiguration chatter on the link: every packet is the test's."""
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")


def traffic(v: dict) -> dict[str, int]:
    """Pings, a refused and an accepted-then-reset connection, one TCP transfer."""
    out = sh("ip", "netns", "exec", v["a"], "ping", "-n", "-q", "-c", str(PINGS), "-i", "0.05",
             "-W", "2", v["b_addr"], check=False).stdout
    received = int(out.split(" received")[0].rsplit(" ", 1)[1])
    with netns.enter(v["b"]):
        srv = socket.create_server((v["b_addr"], 5001))
    got = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            while (chunk := conn.recv(65536)):
                got.append(len(chunk))
    t = threading.Thread(target=serve)
    t.start()
    with netns.enter(v["a"]):
        for port in (9, 7):  # 9: SYN dropped (timeout); 7: SYN passed, RST back
            s = socket.socket()
            s.settimeout(0.5)
            with pytest.raises(OSError):
                s.connect((v["b_addr"], port))
            s.close()
        c = socket.create_connection((v["b_addr"], 5001), timeout=10)
    with c:
        c.sendall(b"x" * TRANSFER)
    t.join(10)
    srv.close()
    assert sum(got) == TRANSFER
    return {"pings_received": received}


def apply_policy(v: dict, ns: str, ifname: str, hook_type: str, position: str | None,
                 pin_root: str) -> None:
    from emptcp import api
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "policy.toml")
        with open(path, "w") as f:
            f.write(POLICY.format(ifname=ifname, type=hook_type,
                                  position=f'position = "{position}"\n' if position else ""))
        with netns.enter(ns):
            api.apply(path, pin_root)


def emptcp_link(pin_root: str, ns: str) -> dict:
    from emptcp import api
    with netns.enter(ns):
        st = api.status(pin_root)
    return st["hooks"][0]


# direction, emptcp position, whether the "after" counter is attached before
# emptcp is applied (position first must then jump in front of it)
CASES = [("ingress", "last", False), ("ingress", "first", True),
         ("egress", "last", False), ("egress", "first", True)]


@pytest.mark.parametrize("direction,position,counter_first", CASES,
                         ids=[f"{d}-{p}" for d, p, _ in CASES])
def test_program_after_emptcp_sees_every_undecided_packet(veth_ns, counter_obj, direction,
                                                          position, counter_first):
    v = veth_ns
    quiet(v["a"]), quiet(v["b"])
    # ingress: emptcp on the receiver's vb; egress: on the sender's va
    ns, ifname = (v["b"], v["b_if"]) if direction == "ingress" else (v["a"], v["a_if"])
    pin_root = f"/sys/fs/bpf/{PREFIX}-ops-tcx-{uuid.uuid4().hex[:8]}"
    after, before = Counter(counter_obj), Counter(counter_obj)
    try:
        if counter_first:
            after.attach(ns, ifname, direction, "last")
        apply_policy(v, ns, ifname, f"tc-{direction}", position, pin_root)
        if not counter_first:
            after.attach(ns, ifname, direction, "last")
        hook = emptcp_link(pin_root, ns)
        assert hook["position"] == position
        tcx = hook["attached"]["tcx"]
        assert (tcx["index"], tcx["count"]) == (0, 2), tcx   # emptcp runs before "after"
        with netns.enter(ns):
            order = [e.link_id for e in tcx_query(ifname, direction)]
        assert order == [hook["attached"]["link_id"], after.link.info.id]
        before.attach(ns, ifname, direction, "first")
        link0 = link_stats(ns, ifname)

        sent = traffic(v)

        link1 = link_stats(ns, ifname)
        b, a = before.counts(), after.counts()
        assert sent["pings_received"] == PINGS
        # every ping and every segment of the transfer: emptcp decided nothing for them
        assert a["icmp"] == b["icmp"] == PINGS   # echo requests, a -> b
        assert a["tcp5001"] == b["tcp5001"] > TRANSFER // 65536
        # the explicit verdicts keep their meaning: drop and pass end the list
        assert b["tcp9"] >= 1 and a["tcp9"] == 0
        assert b["tcp7"] >= 1 and a["tcp7"] == 0
        assert a["all"] == b["all"] - b["tcp9"] - b["tcp7"]
        # link counters: ingress counts rx before TC; egress counts tx after it (no drops)
        if direction == "ingress":
            assert link1["rx"] - link0["rx"] == b["all"]
        else:
            assert link1["tx"] - link0["tx"] == b["all"] - b["tcp9"]
        counters = emptcp_link(pin_root, ns)["counters"]
        assert counters["packets"] == b["all"]
        assert counters["missed_tail_calls"] == 0 and counters["errors"] == 0
    finally:
        from emptcp import api
        api.detach(pin_root=pin_root, all=True)
        after.close()
        before.close()
    assert not os.path.exists(pin_root)


def test_position_change_moves_the_link(veth_ns, counter_obj):
    """Re-applying with another position re-places emptcp; the plan says so."""
    from emptcp import api
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = f"/sys/fs/bpf/{PREFIX}-ops-tcx-{uuid.uuid4().hex[:8]}"
    other = Counter(counter_obj)
    try:
        apply_policy(v, ns, ifname, "tc-ingress", None, pin_root)   # default: last
        other.attach(ns, ifname, "ingress", "first")
        assert emptcp_link(pin_root, ns)["attached"]["tcx"]["index"] == 1
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.toml")
            with open(path, "w") as f:
                f.write(POLICY.format(ifname=ifname, type="tc-ingress",
                                      position='position = "first"\n'))
            with netns.enter(ns):
                plan = api.plan(path, pin_root)
                assert any("position last -> first" in line for line in plan.summary), plan
                api.apply(path, pin_root)
                again = api.apply(path, pin_root)
        assert not again.changed
        hook = emptcp_link(pin_root, ns)
        assert hook["attached"]["tcx"]["index"] == 0 and hook["attached"]["tcx"]["count"] == 2
        sh("ip", "netns", "exec", v["a"], "ping", "-n", "-q", "-c", "3", "-i", "0.05",
           v["b_addr"])
        assert emptcp_link(pin_root, ns)["counters"]["packets"] >= 3
        assert other.counts()["icmp"] == 3      # the counter behind emptcp sees them
    finally:
        api.detach(pin_root=pin_root, all=True)
        other.close()
