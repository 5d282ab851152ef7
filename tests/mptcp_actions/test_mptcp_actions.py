"""emptcp-mptcp actions on crafted packets through the real chain (BPF_PROG_TEST_RUN).

scapy is the oracle: the output must parse with the expected options and
lengths, and IPv4/TCP checksums recomputed by scapy must equal the packet's.
Needs the emptcp-mptcp plugin installed (pip install ./plugins/emptcp-mptcp).
"""
from __future__ import annotations

import os
import struct

import pytest

from ..conftest import require

scapy_all = pytest.importorskip("scapy.all")
from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from ..datapath.helpers import checksums_ok, tcp_len_consistent  # noqa: E402

emptcp_mptcp = pytest.importorskip("emptcp_mptcp")

KINDS = ["xdp", "tc-ingress", "tc-egress"]
# a chain without a terminal action decides nothing: XDP_PASS, TCX_NEXT (-1) on TC
PASS = {"xdp": 2, "tc-ingress": -1, "tc-egress": -1}
DSS = (30, bytes([0x20, 0x01]) + b"\0" * 4)                    # DSS, DATA_ACK (4 bytes): 8 bytes
ADD_ADDR_ECHO = (30, bytes([0x31, 0x02]) + bytes([10, 0, 1, 2]))  # ADD_ADDR, E=1, id 2
MP_CAPABLE_SYN = (30, bytes([0x01, 0x81]))                    # MP_CAPABLE v1 on a SYN


def frame(v6=False, options=(), flags="A", payload=b"hello mptcp"):
    l3 = IPv6(src="fd00::2", dst="fd00::1") if v6 else IP(src="10.0.0.2", dst="10.0.0.1")
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3 /
                 TCP(sport=40000, dport=80, flags=flags, options=list(options)) / Raw(payload))


def mptcp_opts(pkt):
    """[(subtype, raw bytes after kind/len)] of the MPTCP options of a parsed packet."""
    out = []
    for o in pkt[TCP].options:
        if o[0] == 30 or o[0] == "MPTCP":
            raw = bytes(o[1]) if not isinstance(o[1], bytes) else o[1]
            out.append((raw[0] >> 4, raw))
    return out


def raw_options(frame_bytes):
    pkt = Ether(frame_bytes)
    t = bytes(pkt[TCP])
    return t[20:pkt[TCP].dataofs * 4]


def valid(out: bytes, payload=b"hello mptcp"):
    pkt = Ether(out)
    assert checksums_ok(out), pkt.show(dump=True)
    assert tcp_len_consistent(out)
    assert bytes(pkt[TCP].payload) == payload
    return pkt


@pytest.fixture(scope="module")
def harness(root):
    from emptcp.plugins.testing import ChainHarness
    with ChainHarness(emptcp_mptcp.stage_specs()) as h:
        yield h


@pytest.fixture
def h(harness):
    harness.clear()
    return harness


# ---- set_flow_priority ----------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("backup", [True, False])
def test_set_flow_priority_inserts_mp_prio(h, kind, v6, backup):
    h.policy(kind, actions=[("set_flow_priority", {"backup": backup})])
    f = frame(v6, [DSS])
    r = h.run(kind, f)
    assert r.retval == PASS[kind]
    assert len(r.data) == len(f) + 4
    pkt = valid(r.data)
    assert pkt[TCP].dataofs == Ether(f)[TCP].dataofs + 1
    opts = raw_options(r.data)
    # DSS kept, then MP_PRIO in the 3-byte RFC 8684 form + one NOP
    assert opts.endswith(bytes([30, 3, 0x50 | int(backup), 1]))
    assert [s for s, _ in mptcp_opts(pkt)] == [2, 5]
    if v6:
        assert pkt[IPv6].plen == len(bytes(pkt[IPv6].payload))
    else:
        assert pkt[IP].len == len(bytes(pkt[IP]))


@pytest.mark.parametrize("kind", ["xdp", "tc-ingress"])
def test_set_flow_priority_leaves_non_mptcp_syn_and_full_packets(h, kind):
    h.policy(kind, actions=[("set_flow_priority", {})])
    plain = frame(options=[("MSS", 1460), ("NOP", None), ("NOP", None)])
    assert h.run(kind, plain).data == plain                     # not MPTCP
    syn = frame(options=[MP_CAPABLE_SYN], flags="S")
    assert h.run(kind, syn).data == syn                         # SYN
    # DSS (8) + 28 bytes of NOP/timestamps = 36: 36 + 4 = 40 fits; 40 does not
    full = frame(options=[DSS] + [("NOP", None)] * 32)
    assert len(raw_options(full)) == 40
    assert h.run(kind, full).data == full
    fits = frame(options=[DSS] + [("NOP", None)] * 28)
    r = h.run(kind, fits)
    assert len(r.data) == len(fits) + 4 and len(raw_options(r.data)) == 40
    valid(r.data)
    already = frame(options=[DSS, (30, bytes([0x51])), ("NOP", None)])
    assert h.run(kind, already).data == already                 # MP_PRIO already there


# ---- rm_add_addr ----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("v6", [False, True])
def test_rm_add_addr_strips_and_shrinks(h, kind, v6):
    h.policy(kind, actions=["rm_add_addr"])
    f = frame(v6, [DSS, ADD_ADDR_ECHO])
    r = h.run(kind, f)
    assert r.retval == PASS[kind]
    pkt = valid(r.data)
    assert [s for s, _ in mptcp_opts(pkt)] == [2]
    assert len(r.data) == len(f) - 8
    # nothing to strip: unchanged
    g = frame(v6, [DSS])
    assert h.run(kind, g).data == g


# ---- rm_mp_capable --------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flags", ["S", "SA"])
def test_rm_mp_capable_on_syn(h, kind, flags):
    h.policy(kind, actions=["rm_mp_capable"])
    f = frame(False, [("MSS", 1460), MP_CAPABLE_SYN], flags=flags, payload=b"")
    r = h.run(kind, f)
    pkt = valid(r.data, b"")
    assert mptcp_opts(pkt) == []
    assert ("MSS", 1460) in pkt[TCP].options
    assert len(r.data) == len(f) - 4


def test_rm_mp_capable_only_syn_unless_all_packets(h):
    third_ack = frame(False, [(30, bytes([0x01, 0x81]) + b"\1" * 16)])   # MP_CAPABLE on the ACK
    h.policy("xdp", actions=["rm_mp_capable"])
    assert h.run("xdp", third_ack).data == third_ack
    h.clear()
    h.policy("xdp", actions=[("rm_mp_capable", {"all_packets": True})])
    r = h.run("xdp", third_ack)
    assert mptcp_opts(valid(r.data)) == []


# ---- add_subflow / record: events -----------------------------------------
def drain(h):
    from emptcp import RingBuffer
    from emptcp.runtime.events import decode
    got = []
    with RingBuffer(h.events, lambda raw: got.append(decode(raw))) as rb:
        rb.consume()
    return got


@pytest.mark.parametrize("kind", ["xdp", "tc-ingress"])
def test_add_subflow_event_once_per_connection(h, kind):
    from emptcp_mptcp.pm import request_of
    drain(h)
    h.policy(kind, actions=[("add_subflow", {"local_addr": "10.0.1.1", "remote_port": 0})])
    f = frame(False, [DSS])
    for _ in range(3):
        assert h.run(kind, f).data == f                          # packet untouched
    assert h.run(kind, frame(False, [MP_CAPABLE_SYN], flags="S")).retval == PASS[kind]
    assert h.run(kind, frame(False, [])).retval == PASS[kind]  # not MPTCP
    evs = drain(h)
    assert len(evs) == 1, evs
    ev = evs[0]
    assert ev.name == "add_subflow" and ev.phase == 1
    t = ev.tuple
    assert (t.saddr, t.sport, t.daddr, t.dport) == ("10.0.0.2", 40000, "10.0.0.1", 80)
    req = request_of(ev)
    assert (req.local_addr, req.remote_addr, req.remote_port) == ("10.0.1.1", "10.0.0.2", 40000)
    # a different connection is reported too
    other = Ether(frame(False, [DSS]))
    other[TCP].sport, other[TCP].chksum = 40001, None
    h.run(kind, bytes(other))
    assert len(drain(h)) == 1


def test_record_emits_option(h):
    drain(h)
    h.policy("xdp", actions=[("record", {"subtype": 3})])
    f = frame(False, [DSS, ADD_ADDR_ECHO])
    assert h.run("xdp", f).data == f
    assert h.run("xdp", frame(False, [DSS])).retval == 2        # no ADD_ADDR: no event
    evs = drain(h)
    assert len(evs) == 1
    opt = evs[0].payload
    assert opt.subtype == 3 and opt.subtype_name == "ADD_ADDR"
    assert opt.raw == bytes([30, 8]) + ADD_ADDR_ECHO[1]
    h.clear()
    h.policy("xdp", actions=["record"])                         # any subtype: the first
    h.run("xdp", f)
    (ev,) = drain(h)
    assert ev.payload.subtype == 2 and ev.as_dict()["subtype"] == "DSS"


def test_stage_specs_validate():
    from emptcp.plugins.manager import PluginManager
    pm = PluginManager()
    assert not [e for e in pm.errors if e.plugin == "mptcp"], pm.errors
    for n in ("set_flow_priority", "rm_add_addr", "rm_mp_capable", "add_subflow", "record"):
        s = pm.stage(n)
        assert s.plugin == "mptcp" and s.distribution == "emptcp-mptcp" and s.kind == "action"
