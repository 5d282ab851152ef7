"""The kernel chooses the policy the semantics say (issue 9, equivalence).

Hypothesis generates configurations (1-5 policies of built-in selectors joined by
and/or, in priority order) and packets (IPv4/IPv6, VLAN or not, TCP or UDP, ports and
addresses from small pools so sets hit, MPTCP options or none); the pure-Python
reference (emptcp.chain.classify.reference: the left fold with short-circuit, first
policy wins) is computed from the packet as scapy describes it, the kernel's choice is
read from the stage counters of each policy's action, on XDP, tc-ingress and tc-egress
(where "local" is the source). The same test holds the data-path rewrite to the same
semantics.
"""
from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from emptcp.chain.classify import Policy as RefPolicy
from emptcp.chain.classify import Selector, Term, reference
from emptcp.chain.compiler import (HookPolicies, PolicySpec, StageRef, encode_ip_pair,
                                   encode_service, encode_tcp2tuple, encode_tcp4tuple)

from .conftest import HOOK_TC_EG, HOOK_TC_IN, HOOK_XDP
from .helpers import ACT, apply, run, stat

HOOKS = (("xdp", HOOK_XDP), ("tc-ingress", HOOK_TC_IN), ("tc-egress", HOOK_TC_EG))
ADDRS4 = ["10.0.0.1", "10.0.0.2", "10.0.1.7"]
ADDRS6 = ["fd00::1", "fd00::2", "fd00:1::7"]
PORTS = [22, 80, 443, 40000]
PREFIXES4 = ["10.0.0.0/24", "10.0.0.1/32", "10.0.0.0/16", "10.0.1.0/24"]
PREFIXES6 = ["fd00::/64", "fd00::1/128", "fd00::/16", "fd00:1::/64"]


class Sel:
    """One generated selector: the StageRef the kernel runs and the terms the
    reference evaluates (dimension -> membership predicate)."""

    def __init__(self, ref: StageRef, alternatives: list[list[tuple[str, object]]]) -> None:
        self.ref = ref
        self.alternatives = alternatives


@st.composite
def selectors(draw) -> Sel:
    kind = draw(st.sampled_from(["service", "ip_pair", "tcp4tuple", "tcp2tuple_ports",
                                 "tcp2tuple_addrs", "mptcp_subtype"]))
    v6 = draw(st.booleans())
    addrs, prefixes = (ADDRS6, PREFIXES6) if v6 else (ADDRS4, PREFIXES4)
    if kind == "service":
        ranges = draw(st.lists(st.sampled_from([(22, 22), (80, 80), (400, 500), (443, 443),
                                                (30000, 50000)]), min_size=1, max_size=3))
        mode = draw(st.sampled_from(["either", "local"]))
        inside = (lambda rs: lambda p: any(lo <= p <= hi for lo, hi in rs))(ranges)
        alts = [[("lport", inside)]] + ([[("rport", inside)]] if mode == "either" else [])
        return Sel(StageRef("service", encode_service(ranges, mode)), alts)
    if kind == "ip_pair":
        local = draw(st.sampled_from(prefixes + [None]))
        remote = draw(st.sampled_from(prefixes + ([None] if local else [])))
        anyn = "::/0" if v6 else "0.0.0.0/0"
        net = (lambda n: lambda a: a is not None and
               ipaddress.ip_address(a).version == n.version and ipaddress.ip_address(a) in n)
        # a side left open is the whole address family (0.0.0.0/0 or ::/0), not "any"
        terms = [(d, net(ipaddress.ip_network(p or anyn))) for d, p in (("laddr", local),
                                                                        ("raddr", remote))]
        return Sel(StageRef("ip_pair", encode_ip_pair(local or anyn, remote or anyn)), [terms])
    if kind == "tcp4tuple":
        t = (draw(st.sampled_from(addrs)), draw(st.sampled_from(PORTS)),
             draw(st.sampled_from(addrs)), draw(st.sampled_from(PORTS)))
        return Sel(StageRef("tcp4tuple", encode_tcp4tuple(*t)),
                   [[("flow", (lambda t: lambda k: k == t)(t))]])
    if kind == "tcp2tuple_ports":
        ports = (draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS)))
        return Sel(StageRef("tcp2tuple", encode_tcp2tuple(ports=ports)),
                   [[("ports", (lambda t: lambda k: k == t)(ports))]])
    if kind == "tcp2tuple_addrs":
        pair = (draw(st.sampled_from(addrs)), draw(st.sampled_from(addrs)))
        return Sel(StageRef("tcp2tuple", encode_tcp2tuple(addrs=pair)),
                   [[("addrs", (lambda t: lambda k: k == t)(pair))]])
    sub = draw(st.sampled_from([0, 2, 3, 5]))
    return Sel(StageRef("mptcp_subtype", sub),
               [[("subtypes", (lambda s: lambda k: s in k)(sub))]])


@st.composite
def configs(draw) -> list[list[tuple[str, Sel]]]:
    return [[(draw(st.sampled_from(["and", "or"])), s)
             for s in draw(st.lists(selectors(), min_size=0, max_size=3))]
            for _ in range(draw(st.integers(1, 5)))]


MPTCP_OPTS = {0: bytes([30, 12, 0x01, 0x81]) + bytes(8),   # MP_CAPABLE (v1)
              2: bytes([30, 4, 0x20, 0x00]),                # DSS, no mapping
              3: bytes([30, 8, 0x30, 0x01, 10, 0, 0, 9]),   # ADD_ADDR (echo, v4)
              5: bytes([30, 3, 0x51])}                      # MP_PRIO backup


@st.composite
def packets(draw) -> bytes:
    v6 = draw(st.booleans())
    addrs = ADDRS6 if v6 else ADDRS4
    src, dst = draw(st.sampled_from(addrs)), draw(st.sampled_from(addrs))
    sport, dport = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
    l3 = (IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst))
    if draw(st.integers(0, 9)) == 0:
        l4 = UDP(sport=sport, dport=dport)
    else:
        subs = draw(st.lists(st.sampled_from(sorted(MPTCP_OPTS)), max_size=2, unique=True))
        raw = b"".join(MPTCP_OPTS[s] for s in subs)
        raw += b"\x01" * (-len(raw) % 4)
        l4 = TCP(bytes(TCP(sport=sport, dport=dport, flags="A", dataofs=5 + len(raw) // 4))[:20]
                 + raw)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if draw(st.booleans()):
        eth = eth / Dot1Q(vlan=7)
    return bytes(eth / l3 / l4 / Raw(b"payload"))


def keys_of(frame: bytes, kind: str) -> dict[str, object]:
    """The packet as the semantics see it, from this hook's point of view."""
    pkt = Ether(frame)
    l3 = pkt[IPv6] if IPv6 in pkt else pkt[IP]
    if TCP not in pkt:
        return {}
    tcp = pkt[TCP]
    egress = kind == "tc-egress"
    la, ra = (l3.src, l3.dst) if egress else (l3.dst, l3.src)
    lp, rp = (tcp.sport, tcp.dport) if egress else (tcp.dport, tcp.sport)
    subtypes = set()
    opts = bytes(tcp)[20:tcp.dataofs * 4]
    i = 0
    while i < len(opts):
        if opts[i] in (0, 1):
            i += 1 if opts[i] == 1 else len(opts)
            continue
        ln = opts[i + 1]
        if opts[i] == 30:
            subtypes.add(opts[i + 2] >> 4)
        i += ln
    return {"lport": lp, "rport": rp, "laddr": la, "raddr": ra, "flow": (la, lp, ra, rp),
            "ports": (lp, rp), "addrs": (la, ra), "subtypes": frozenset(subtypes)}


def reference_choice(config, keys) -> int | None:
    """emptcp.chain.classify.reference, each generated predicate being one set."""
    member, policies = {}, []
    for pol in config:
        sels = []
        for op, s in pol:
            alts = []
            for alt in s.alternatives:
                terms = []
                for dim, pred in alt:
                    member[len(member)] = pred
                    terms.append(Term(dim, len(member) - 1))
                alts.append(tuple(terms))
            sels.append(Selector(tuple(alts), op))
        policies.append(RefPolicy(tuple(sels)))
    return reference(policies, keys, member)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(configs(), st.lists(packets(), min_size=4, max_size=4))
def test_kernel_chooses_the_reference_policy(dp, config, frames):
    for kind, hook in HOOKS:
        policies = [PolicySpec([StageRef(s.ref.name, s.ref.param, op) for op, s in pol],
                               [StageRef("count")]) for pol in config]
        apply(dp, 1, [HookPolicies(hook, kind, policies)])
        for frame in frames:
            dp.clear_stats()
            run(dp, kind, frame)
            chosen = [i for i in range(len(config))
                      if stat(dp, hook, i, ACT, 0)["packets"] == 1]
            expected = reference_choice(config, keys_of(frame, kind))
            assert chosen == ([] if expected is None else [expected]), \
                (kind, Ether(frame).summary(), expected, chosen)
