"""set_recv_win and TCP option insert/remove on XDP and TC: checksums are
checked by scapy recomputing them, never by our own code."""
from __future__ import annotations

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from emptcp.chain.compiler import (HookPolicies, PolicySpec, StageRef, encode_set_recv_win,
                                   encode_tcp_opt_add, encode_tcp_opt_del)

from .conftest import HOOK_TC_EG, HOOK_TC_IN, HOOK_XDP
from .helpers import apply, checksums_ok, run, tcp4, tcp6, tcp_len_consistent

HOOKS = [("xdp", HOOK_XDP), ("tc-ingress", HOOK_TC_IN), ("tc-egress", HOOK_TC_EG)]
MP_PRIO = bytes([30, 3, 0x51])                     # MP_PRIO, backup
TS = ("Timestamp", (123456, 654321))
SACK = ("SAck", (1000, 2000, 3000, 4000))
OPTION_SETS = {
    "none": [],
    "mss": [("MSS", 1460)],
    "ts": [("NOP", None), ("NOP", None), TS],
    "odd_wscale": [("WScale", 7)],                    # 3 bytes: odd, NOP padded by scapy
    "sack_ts": [("NOP", None), ("NOP", None), TS, ("NOP", None), ("NOP", None), SACK],
    "mptcp_dss": [(30, bytes([0x20, 0x01, 0, 0, 0, 1]))],
    "eol": [("MSS", 1460), ("EOL", None)],
}


def opts_of(frame):
    return Ether(frame)[TCP].options


def single(hook, kind, action):
    return [HookPolicies(hook, kind, [PolicySpec([], [action])])]


@pytest.mark.parametrize("kind,hook", HOOKS)
@pytest.mark.parametrize("win", [0, 63, 5000, 65535])
@pytest.mark.parametrize("v6", [False, True])
def test_set_recv_win(dp, kind, hook, win, v6):
    apply(dp, 1, single(hook, kind, StageRef("set_recv_win", encode_set_recv_win(win))))
    frame = (tcp6 if v6 else tcp4)(options=OPTION_SETS["sack_ts"])
    res = run(dp, kind, frame)
    assert Ether(res.data)[TCP].window == win
    assert checksums_ok(res.data)


@pytest.mark.parametrize("kind,hook", HOOKS)
@pytest.mark.parametrize("optset", list(OPTION_SETS))
@pytest.mark.parametrize("v6", [False, True])
def test_insert_mp_prio(dp, kind, hook, optset, v6):
    apply(dp, 1, single(hook, kind, StageRef("tcp_opt_add", encode_tcp_opt_add(MP_PRIO))))
    frame = (tcp6 if v6 else tcp4)(options=OPTION_SETS[optset], payload=b"x" * 33)
    assert checksums_ok(frame)
    res = run(dp, kind, frame)
    out = Ether(res.data)
    # grows by a multiple of 4 (or not at all when EOL padding had room)
    assert len(res.data) >= len(frame) and (len(res.data) - len(frame)) % 4 == 0
    assert any(o[0] == 30 and bytes(o[1])[:1] == b"\x51" for o in out[TCP].options
               if isinstance(o[0], int)), out[TCP].options
    assert bytes(out[TCP].payload) == b"x" * 33
    assert checksums_ok(res.data) and tcp_len_consistent(res.data)


@pytest.mark.parametrize("kind,hook", HOOKS)
def test_insert_beyond_40_bytes_leaves_packet_unchanged(dp, kind, hook):
    apply(dp, 1, single(hook, kind, StageRef("tcp_opt_add", encode_tcp_opt_add(MP_PRIO))))
    full = [("NOP", None), ("NOP", None), TS, ("NOP", None), ("NOP", None),
            ("SAck", (1, 2, 3, 4, 5, 6))]                # 12 + 2 + 26 = 40... scapy pads
    frame = tcp4(options=full)
    assert len(Ether(frame)[TCP].options) and Ether(frame)[TCP].dataofs == 15
    assert run(dp, kind, frame).data == frame
    # 38 bytes + 3 would be 41: unchanged too
    frame = tcp4(options=[(253, b"\0" * 36)])
    assert Ether(frame)[TCP].dataofs == 15
    assert run(dp, kind, frame).data == frame


@pytest.mark.parametrize("kind,hook", HOOKS)
@pytest.mark.parametrize("v6", [False, True])
def test_remove_mptcp_options(dp, kind, hook, v6):
    apply(dp, 1, single(hook, kind, StageRef("tcp_opt_del", encode_tcp_opt_del(30, "mp_capable"))))
    mpc = (30, bytes([0x01, 0x81]) + b"\x11" * 8)          # MP_CAPABLE with key: 12 bytes
    frame = (tcp6 if v6 else tcp4)(options=[("MSS", 1460), mpc, ("NOP", None), ("WScale", 7)],
                                   payload=b"abc")
    res = run(dp, kind, frame)
    out = Ether(res.data)
    assert len(res.data) == len(frame) - 12
    assert not any(o[0] == 30 for o in out[TCP].options)
    assert ("MSS", 1460) in out[TCP].options and ("WScale", 7) in out[TCP].options
    assert bytes(out[TCP].payload) == b"abc"
    assert checksums_ok(res.data) and tcp_len_consistent(res.data)
    # nothing to remove: unchanged
    plain = (tcp6 if v6 else tcp4)(options=[("MSS", 1460)])
    assert run(dp, kind, plain).data == plain


@pytest.mark.parametrize("kind,hook", HOOKS)
def test_remove_odd_length_option(dp, kind, hook):
    apply(dp, 1, single(hook, kind, StageRef("tcp_opt_del", encode_tcp_opt_del(3))))  # wscale
    frame = tcp4(options=[("WScale", 7), ("NOP", None), ("MSS", 1400), ("SAckOK", b"")])
    res = run(dp, kind, frame)
    out = Ether(res.data)
    assert not any(o[0] == "WScale" for o in out[TCP].options)
    assert ("MSS", 1400) in out[TCP].options
    assert checksums_ok(res.data) and tcp_len_consistent(res.data)
