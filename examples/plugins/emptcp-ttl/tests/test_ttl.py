"""ttl_below and set_ttl through the real chain (BPF_PROG_TEST_RUN, needs root).

Rewritten packets are checked with an independent decoder (scapy): the IPv4
header checksum the stage left is compared with the one scapy computes after
the field is deleted and the packet rebuilt.
"""
import os

import pytest

scapy = pytest.importorskip("scapy.all")
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, Raw  # noqa: E402

from emptcp.errors import ConfigError  # noqa: E402
from emptcp.plugins.manager import PluginManager  # noqa: E402
from emptcp.stages import validate_params  # noqa: E402

import emptcp_ttl  # noqa: E402

# keep: a chain that ends without a terminal action decides nothing -- XDP_PASS,
# and TC_ACT_UNSPEC (TCX_NEXT: the next program on the hook runs) on TC
XDP_DROP, XDP_PASS, TC_ACT_UNSPEC, TC_ACT_SHOT = 1, 2, -1, 2
KINDS = [("xdp", XDP_DROP, XDP_PASS),
         ("tc-ingress", TC_ACT_SHOT, TC_ACT_UNSPEC),
         ("tc-egress", TC_ACT_SHOT, TC_ACT_UNSPEC)]


def v4(ttl, l4="icmp", options=False):
    ip = IP(src="10.0.0.2", dst="10.0.0.1", ttl=ttl, id=0x1234)
    if options:
        ip.options = [b"\x01\x01\x01\x00"]      # NOP NOP NOP EOL: ihl = 6
    body = {"icmp": ICMP(id=7, seq=1), "udp": UDP(sport=5000, dport=53),
            "tcp": TCP(sport=40000, dport=80, flags="A")}[l4]
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / ip / body / Raw(b"x" * 16))


def v6(hlim):
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") /
                 IPv6(src="fd00::2", dst="fd00::1", hlim=hlim) / ICMPv6EchoRequest(id=7) / Raw(b"y" * 16))


def arp():
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.2", pdst="10.0.0.1"))


def assert_ipv4_csum_ok(data):
    pkt = Ether(data)
    got = pkt[IP].chksum
    del pkt[IP].chksum
    assert Ether(bytes(pkt))[IP].chksum == got, f"IPv4 checksum {got:#06x} is wrong"


def same_except_ttl(before, after, ttl):
    """`after` is `before` with TTL/hop limit `ttl` (and, IPv4, a new checksum)."""
    b, a = Ether(before), Ether(after)
    if IP in b:
        b[IP].ttl = ttl
        del b[IP].chksum
    else:
        b[IPv6].hlim = ttl
    return bytes(Ether(bytes(b))) == after


def test_plugin_is_registered():
    pm = PluginManager()
    assert not [e for e in pm.errors if e.plugin == "ttl"], pm.errors
    assert pm.stage("ttl_below").kind == "selector"
    assert pm.stage("set_ttl").kind == "action"


@pytest.mark.parametrize("name", ["ttl_below", "set_ttl"])
def test_parameter_schema(name):
    spec = {s.name: s for s in emptcp_ttl.stage_specs()}[name]
    assert spec.encode(validate_params(spec, {"ttl": 1}, "t")) == b"\x01"
    assert spec.encode(validate_params(spec, {"ttl": 255}, "t")) == b"\xff"
    for bad in (0, 256, -1):
        with pytest.raises(ConfigError):
            validate_params(spec, {"ttl": bad}, "t")
    with pytest.raises(ConfigError):
        validate_params(spec, {}, "t")          # required


@pytest.fixture
def harness():
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF_PROG_TEST_RUN)")
    from emptcp.plugins.testing import ChainHarness
    with ChainHarness(emptcp_ttl.stage_specs(), builtins=("drop", "pass", "count")) as h:
        yield h


@pytest.mark.parametrize("kind,drop,keep", KINDS)
def test_ttl_below_selects(harness, kind, drop, keep):
    harness.policy(kind, selectors=[("ttl_below", {"ttl": 10})], actions=["count", "drop"])
    matched = [v4(1), v4(9), v4(9, "tcp"), v4(9, "udp", options=True), v6(0), v6(9)]
    unmatched = [v4(10), v4(64), v4(255, "tcp"), v6(10), v6(255), arp()]
    for f in matched:
        assert harness.run(kind, f).retval == drop, Ether(f).summary()
    for f in unmatched:
        assert harness.run(kind, f).retval == keep, Ether(f).summary()
    stats = harness.hook_stats(kind)
    assert stats["packets"] == len(matched) + len(unmatched)
    assert stats["matched"] == len(matched)
    assert stats["unmatched"] == len(unmatched)
    assert stats["errors"] == 0 and stats["missed_tail_calls"] == 0


@pytest.mark.parametrize("kind,drop,keep", KINDS)
@pytest.mark.parametrize("frame", [v4(64), v4(64, "tcp"), v4(64, "udp"), v4(3, options=True),
                                   v4(255), v4(1, "tcp")], ids=lambda f: Ether(f).summary())
def test_set_ttl_ipv4_checksum(harness, kind, drop, keep, frame):
    harness.policy(kind, actions=[("set_ttl", {"ttl": 7}), "count"])
    r = harness.run(kind, frame)
    assert r.retval == keep
    assert Ether(r.data)[IP].ttl == 7
    assert_ipv4_csum_ok(r.data)
    assert same_except_ttl(frame, r.data, 7)
    stats = harness.hook_stats(kind)
    assert stats["matched"] == 1 and stats["errors"] == 0 and stats["missed_tail_calls"] == 0


@pytest.mark.parametrize("kind,drop,keep", KINDS)
def test_set_ttl_ipv6_hop_limit(harness, kind, drop, keep):
    harness.policy(kind, actions=[("set_ttl", {"ttl": 200}), "count"])
    frame = v6(64)
    r = harness.run(kind, frame)
    assert r.retval == keep
    assert Ether(r.data)[IPv6].hlim == 200
    assert same_except_ttl(frame, r.data, 200)


@pytest.mark.parametrize("kind,drop,keep", KINDS)
def test_set_ttl_continues_the_chain(harness, kind, drop, keep):
    # the action after set_ttl runs: a drop there decides the verdict
    harness.policy(kind, actions=[("set_ttl", {"ttl": 9}), "count", "drop"])
    r = harness.run(kind, v4(64))
    assert r.retval == drop
    assert Ether(r.data)[IP].ttl == 9
    assert_ipv4_csum_ok(r.data)


@pytest.mark.parametrize("kind,drop,keep", KINDS)
def test_set_ttl_leaves_non_ip_and_equal_ttl_alone(harness, kind, drop, keep):
    harness.policy(kind, actions=[("set_ttl", {"ttl": 64}), "count"])
    for f in (arp(), v4(64), v6(64)):
        r = harness.run(kind, f)
        assert r.retval == keep
        assert r.data == f


@pytest.mark.parametrize("kind,drop,keep", KINDS)
def test_selector_and_action_together(harness, kind, drop, keep):
    # raise low TTLs to 128, leave the others; a second policy counts the rest
    harness.policy(kind, selectors=[("ttl_below", {"ttl": 32})],
                   actions=[("set_ttl", {"ttl": 128}), "count"])
    harness.policy(kind, actions=["count"])
    low, high = v4(5, "tcp"), v4(100, "tcp")
    r = harness.run(kind, low)
    assert r.retval == keep and Ether(r.data)[IP].ttl == 128
    assert_ipv4_csum_ok(r.data)
    r = harness.run(kind, high)
    assert r.retval == keep and r.data == high
    r = harness.run(kind, v6(2))
    assert r.retval == keep and Ether(r.data)[IPv6].hlim == 128
    stats = harness.hook_stats(kind)
    assert stats["matched"] == 3 and stats["unmatched"] == 0
