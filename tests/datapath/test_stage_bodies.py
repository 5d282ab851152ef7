"""Stage macros verify whatever the body does (issue 9).

A plain action -- parse, copy the TCP options with ``emptcp_tcp_opts_copy``,
write 4 bytes -- used to be rejected inside ``emptcp_chain.h`` ("invalid
variable-offset read from stack"): clang 14 bounds-checked ``stage + 1`` on
one register and indexed ``stages[]`` from another.  The bodies in
``stage_bodies/`` are compiled here with emptcp's own build flags against the
repository's headers, loaded into the real chain (ChainHarness: installed
entry + shared maps) and run on packets, at stage positions > 0 so the
run-time stage index matters.
"""
from __future__ import annotations

import os

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(os.path.dirname(os.path.dirname(HERE)), "bpf", "common")
SOURCE = os.path.join(HERE, "stage_bodies", "optbodies.bpf.c")

KINDS = ("xdp", "tc-ingress", "tc-egress")
# undecided: XDP_PASS on XDP, TC_ACT_UNSPEC (TCX_NEXT) on TC
PASS = {"xdp": 2, "tc-ingress": -1, "tc-egress": -1}
# MSS (02 04 05 b4), NOP, WScale (03 03 07): two option words
OPTIONS = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
WORD0, WORD1 = bytes.fromhex("020405b4"), bytes.fromhex("01030307")


def frame() -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="10.0.0.1", dst="10.0.0.2")
                 / TCP(sport=40000, dport=80, flags="A", options=OPTIONS) / b"payload")


def options_of(pkt: bytes) -> bytes:
    return pkt[14 + 20 + 20:14 + 20 + 28]


@pytest.fixture(scope="module")
def specs(root, tmp_path_factory):
    from emptcp.bpfbuild import compile_bpf
    from emptcp.stages import Param, StageSpec
    obj = compile_bpf(SOURCE, str(tmp_path_factory.mktemp("bodies") / "optbodies.o"), [COMMON])
    hooks = ("xdp", "tc-ingress", "tc-egress")
    return [
        StageSpec("optshift", "action", hooks, obj,
                  {"xdp": "emptcp_optshift_xdp", "tc": "emptcp_optshift_tc"}),
        StageSpec("optkind", "selector", hooks, obj,
                  {"xdp": "emptcp_optkind_xdp", "tc": "emptcp_optkind_tc"},
                  params=(Param("kind", "int", min=0, max=63),),
                  encode=lambda p: p["kind"]),
    ]


@pytest.fixture(scope="module")
def harness(specs):
    from emptcp.plugins.testing import ChainHarness
    # loading runs every program through the verifier: the bug failed here
    with ChainHarness(specs, builtins=("count",)) as h:
        yield h


@pytest.fixture
def h(harness):
    harness.clear()
    return harness


@pytest.mark.parametrize("kind", KINDS)
def test_body_runs_as_second_selector_and_second_action(h, kind):
    # selector 0 fails (first option is not kind 9), selector 1 is OR-ed in
    # and matches; the action body runs at stage 1, then count at stage 2
    h.policy(kind, selectors=[("optkind", {"kind": 9}), ("optkind", {"kind": 2}, "or")],
             actions=["count", "optshift", "count"])
    f = frame()
    assert options_of(f) == WORD0 + WORD1
    r = h.run(kind, f)
    assert r.retval == PASS[kind]
    assert options_of(r.data) == WORD1 + WORD1          # the body wrote its 4 bytes
    assert r.data[:54] == f[:54] and r.data[62:] == f[62:]
    for stage in (0, 1):
        assert h.stage_stats(kind, 0, stage, "selectors")["packets"] == 1
    for stage in (0, 1, 2):                              # the chain went on after it
        assert h.stage_stats(kind, 0, stage, "actions")["packets"] == 1
    stats = h.hook_stats(kind)
    assert (stats["matched"], stats["missed_tail_calls"], stats["errors"]) == (1, 0, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_body_selector_no_match_leaves_packet(h, kind):
    h.policy(kind, selectors=[("optkind", {"kind": 3})], actions=["optshift"])
    f = frame()
    r = h.run(kind, f)
    assert r.retval == PASS[kind] and r.data == f
    stats = h.hook_stats(kind)
    assert (stats["unmatched"], stats["errors"]) == (1, 0)
    assert h.stage_stats(kind, 0, 0, "actions")["packets"] == 0
