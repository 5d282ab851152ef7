"""emptcp_tcp_opt_find / emptcp_tcp_opt_write (emptcp_tcpopt.h) through the real
chain (ChainHarness, BPF_PROG_TEST_RUN) on every hook; scapy is the independent
checksum oracle. MSS after a NOP sits at an odd offset (its value at TCP
bytes 23-24): the case an incremental 16-bit update gets wrong."""
from __future__ import annotations

import os
import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from emptcp.build.compile import compile_bpf
from emptcp.stages import HOOKS, Param, StageSpec

from .conftest import BPF

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "headers")
DROP = {"xdp": 1, "tc-ingress": 2, "tc-egress": 2}
KINDS = ("xdp", "tc-ingress", "tc-egress")


@pytest.fixture(scope="module")
def harness(root, tmp_path_factory):
    from emptcp.plugins.testing import ChainHarness
    obj = compile_bpf(os.path.join(HERE, "opt_write.bpf.c"),
                      str(tmp_path_factory.mktemp("optw") / "opt_write.o"),
                      include_dirs=[os.path.join(BPF, "common")])
    specs = [
        StageSpec(name="opt_at", kind="selector", hooks=HOOKS, object=obj,
                  programs={"xdp": "emptcp_opt_at_xdp", "tc": "emptcp_opt_at_tc"},
                  params=(Param("kind", "int", min=0, max=63),), encode=lambda p: p["kind"]),
        StageSpec(name="set_mss", kind="action", hooks=HOOKS, object=obj,
                  programs={"xdp": "emptcp_set_mss_xdp", "tc": "emptcp_set_mss_tc"},
                  params=(Param("mss", "port"),), encode=lambda p: struct.pack("!H", p["mss"])),
    ]
    with ChainHarness(specs, builtins=("drop",)) as h:
        yield h


def syn(opts, v6=False):
    ip = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2")
    return bytes(Ether() / ip / TCP(sport=40000, dport=80, flags="S", seq=7, options=opts)
                 / (b"p" * 11))


def checksum_ok(frame: bytes) -> bool:
    p = Ether(frame)
    want = p[TCP].chksum
    del p[TCP].chksum
    if IP in p:
        want_ip = p[IP].chksum
        del p[IP].chksum
        if Ether(bytes(p))[IP].chksum != want_ip:
            return False
    return Ether(bytes(p))[TCP].chksum == want


ODD = [("NOP", None), ("MSS", 1460), ("WScale", 7), ("SAckOK", b""), ("NOP", None),
       ("NOP", None)]                          # MSS kind at TCP byte 21, value at 23-24
EVEN = [("MSS", 1460), ("NOP", None), ("WScale", 7)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("opts,v6", [(ODD, False), (EVEN, False), (ODD, True)],
                         ids=["odd-v4", "even-v4", "odd-v6"])
def test_write_mss_in_place(harness, kind, opts, v6):
    harness.clear()
    harness.policy(kind, actions=[("set_mss", {"mss": 1200})])
    frame = syn(opts, v6)
    r = harness.run(kind, frame)
    assert r.retval != DROP[kind]
    out = Ether(r.data)
    assert dict((k, v) for k, v in out[TCP].options)["MSS"] == 1200
    assert len(r.data) == len(frame)
    assert checksum_ok(r.data), "TCP checksum wrong after the rewrite"
    # only the MSS value and the checksum changed
    diff = [i for i in range(len(frame)) if frame[i] != r.data[i]]
    l4 = 14 + (40 if v6 else 20)
    assert set(diff) <= {l4 + 16, l4 + 17, l4 + 20 + opts.index(("MSS", 1460)) + 2,
                         l4 + 20 + opts.index(("MSS", 1460)) + 3}, diff
    assert harness.hook_stats(kind)["errors"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_write_without_the_option_or_beyond_it(harness, kind):
    harness.clear()
    harness.policy(kind, actions=[("set_mss", {"mss": 1200})])
    no_mss = syn([("NOP", None), ("WScale", 7), ("NOP", None), ("NOP", None)])
    r = harness.run(kind, no_mss)
    assert r.retval != DROP[kind] and r.data == no_mss          # 1: nothing to do
    # an MSS option of length 3 has no room for 2 bytes at offset 2: refused (-1)
    short = bytearray(syn([("NOP", None), ("WScale", 7)]))
    l4 = 14 + 20
    short[l4 + 20:l4 + 24] = bytes([2, 3, 5, 1])                # kind 2, len 3, NOP
    assert harness.run(kind, bytes(short)).retval == DROP[kind]
    # malformed option area (length 0): refused
    bad = bytearray(short)
    bad[l4 + 21] = 0
    assert harness.run(kind, bytes(bad)).retval == DROP[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_find_returns_the_offset_in_the_packet(harness, kind):
    harness.clear()
    harness.policy(kind, selectors=[("opt_at", {"kind": 3})], actions=["drop"])   # WScale
    assert harness.run(kind, syn(ODD)).retval == DROP[kind]
    assert harness.run(kind, syn(EVEN)).retval == DROP[kind]
    assert harness.run(kind, syn([("MSS", 1400)])).retval != DROP[kind]
    st = harness.hook_stats(kind)
    assert (st["matched"], st["unmatched"], st["errors"]) == (2, 1, 0)
