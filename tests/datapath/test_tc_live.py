"""TCP option insert/remove and set_recv_win on TC egress, on real traffic.

BPF_PROG_TEST_RUN builds CHECKSUM_NONE skbs, but every TCP skb a local socket
sends is CHECKSUM_PARTIAL at TC egress (the checksum is filled in later, by
skb_checksum_help in validate_xmit_skb with ``tx off`` or by the "device"):
csum_start / transport_header must still point at the TCP header after the
action ran, and the checksum field must hold the pseudo-header sum for the new
length.  These tests run actions on a rig (emptcp.rig) and let the receiving
kernel judge: with ``PathSpec(offload=False)`` it validates every checksum
(TcpInCsumErrors must stay 0), with offloads on the PARTIAL skbs cross the veth
as they are.  Regressions covered:

* set_flow_priority (+ set_recv_win) on the ACKs of a download: the checksum was
  written 4 bytes too late (into the options) -> TcpInCsumErrors on the server;
* set_flow_priority on the data of an upload: full-size frames grew past the MTU;
* rm_mp_capable on the client's SYN: the checksum landed on doff/flags, the SYN
  was lost and MPTCP fell back only through SYN-retransmit blackhole detection.
"""
from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from .. import kernel
from ..kernel import wait_for

pytestmark = pytest.mark.slow

OFFLOAD = [pytest.param(False, id="offload-off"), pytest.param(True, id="offload-on")]
INTACT_HINT = ("offloads on: this kernel itself now and then hands an MPTCP receiver wrong "
               "bytes with no BPF attached -- see tests/rig/test_kernel_baseline.py "
               "(python -m pytest --kernel-baseline) before blaming the action")


@pytest.fixture(scope="module")
def live(mptcp_kernel, mptcp_plugin):
    pass


class Policy:
    """A policy text applied inside one rig namespace under a private pin root."""

    def __init__(self, side, text: str):
        self.side, self.text = side, text
        self.pin_root = f"/sys/fs/bpf/emptcp-tclive-{uuid.uuid4().hex[:8]}"

    def __enter__(self):
        from emptcp import api
        self.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(self.tmp.name, "policy.toml")
        with open(path, "w") as f:
            f.write(self.text)
        with self.side.enter():
            api.apply(path, self.pin_root)
        return self

    def counters(self):
        from emptcp import api
        out = {}
        for h in api.status(self.pin_root).get("hooks", []):
            for p in h["policies"]:
                for i, s in enumerate(p["actions"]):
                    out[f"a{i}:{s['use']}"] = s["counters"]["packets"]
        return out

    def __exit__(self, *a):
        from emptcp import api
        api.detach(pin_root=self.pin_root, all=True)
        self.tmp.cleanup()


def policy(ifname: str, actions: str, selectors: str = "[]") -> str:
    return f"""[hooks.h]
interface = "{ifname}"
type = "tc-egress"

[[policy]]
name = "p"
hook = "h"
selectors = {selectors}
actions = {actions}
"""


def delta(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


def rig(offload: bool, **kw):
    from emptcp.rig import PathSpec, Rig
    return Rig(prefix="emptcp-tclive", paths=[PathSpec(offload=offload), PathSpec(offload=offload)],
               **kw)


@pytest.mark.parametrize("offload", OFFLOAD)
def test_mp_prio_and_window_on_download_acks(live, offload):
    """ip_pair -> count -> set_flow_priority(backup) -> set_recv_win on the client's
    path-1 egress (the ACKs of a download): every rewritten ACK reaches the server
    with a valid checksum and the server applies MP_PRIO."""
    with rig(offload) as r:
        p1 = r.paths[1]
        text = policy(p1.client_if,
                      '[ { use = "count" }, { use = "set_flow_priority", backup = true }, '
                      '{ use = "set_recv_win", window = 4096 } ]',
                      f'[ {{ use = "ip_pair", local_addr = "{p1.client_addr}/32" }} ]')
        cap = r.server.capture(p1.server_if, "tcp", snaplen=128).start()
        with Policy(r.client, text) as pol:
            n0 = r.server.nstat()
            rep = r.transfer(duration=2.0, reverse=True, timeout=15)
            # every packet of the connection has been through both stacks: it is gone
            wait_for(lambda: not kernel.tcp_sockets(r.server.ns), 10,
                     "no established connection left on the server")
            n1 = r.server.nstat()
            counters = pol.counters()
        pkts = cap.packets("tcp")
    assert rep["intact"], (rep, INTACT_HINT if offload else "")
    assert counters["a1:set_flow_priority"] > 0 and counters["a2:set_recv_win"] > 0, counters
    assert delta(n0, n1, "TcpInCsumErrors") == 0
    assert delta(n0, n1, "MPTcpExtMPPrioRx") > 0
    sent = [p for p in pkts if p.src == p1.client_addr]
    assert any("MP_PRIO" in p.mptcp for p in sent), "no MP_PRIO on the wire"
    assert sent and all(p.window == 4096 for p in sent), sorted({p.window for p in sent})
    # the options arrive intact (a misplaced checksum overwrote the first option bytes)
    assert all(8 in p.option_kinds for p in sent), [p.option_kinds for p in sent][:5]
    if not offload:   # complete checksums on the wire: tshark can check them too
        assert all(p.checksums_ok for p in pkts), [p.number for p in pkts if not p.checksums_ok][:10]


@pytest.mark.parametrize("offload", OFFLOAD)
def test_mp_prio_on_upload_data(live, offload):
    """set_flow_priority on the client's path-1 egress during an upload: data segments
    (GSO, full-size, short) must not grow past the MTU nor lose their checksum."""
    with rig(offload) as r:
        p1 = r.paths[1]
        text = policy(p1.client_if,
                      '[ { use = "count" }, { use = "set_flow_priority", backup = true } ]',
                      f'[ {{ use = "ip_pair", local_addr = "{p1.client_addr}/32" }} ]')
        with Policy(r.client, text) as pol:
            n0c, n0s = r.client.nstat(), r.server.nstat()
            l0c, l0s = r.client.link_stats(p1.client_if), r.server.link_stats(p1.server_if)
            rep = r.transfer(duration=2.0, timeout=15)
            n1c, n1s = r.client.nstat(), r.server.nstat()
            l1c, l1s = r.client.link_stats(p1.client_if), r.server.link_stats(p1.server_if)
            counters = pol.counters()
    assert rep["intact"], (rep, INTACT_HINT if offload else "")
    assert counters["a1:set_flow_priority"] > 0, counters
    assert delta(n0s, n1s, "TcpInCsumErrors") == 0
    assert delta(n0s, n1s, "MPTcpExtMPPrioRx") > 0
    assert delta(n0c, n1c, "MPTcpExtSubflowStale") == 0
    drops = (l1c[p1.client_if]["tx_dropped"] - l0c[p1.client_if]["tx_dropped"]
             + l1s[p1.server_if]["rx_dropped"] - l0s[p1.server_if]["rx_dropped"])
    assert drops == 0, "frames grown past the MTU were dropped"
    tx1 = l1c[p1.client_if]["tx_bytes"] - l0c[p1.client_if]["tx_bytes"]
    assert tx1 > 1_000_000, f"path 1 carried only {tx1} bytes"


@pytest.mark.parametrize("offload", OFFLOAD)
def test_rm_mp_capable_first_syn_arrives_stripped(live, offload):
    """rm_mp_capable on the client's path-0 egress: the very first SYN reaches the
    server without MP_CAPABLE and valid, so the connection falls back at once."""
    with rig(offload) as r:
        p0 = r.paths[0]
        text = policy(p0.client_if, '[ { use = "count" }, { use = "rm_mp_capable" } ]')
        cap = r.server.capture(p0.server_if, "tcp[tcpflags] & tcp-syn != 0", snaplen=128).start()
        with Policy(r.client, text) as pol:
            n0c, n0s = r.client.nstat(), r.server.nstat()
            rep = r.transfer(nbytes=1 << 20, timeout=15)
            n1c, n1s = r.client.nstat(), r.server.nstat()
            counters = pol.counters()
        pkts = cap.packets("tcp")
    assert rep["intact"], (rep, INTACT_HINT if offload else "")
    assert not rep.get("mptcp", {}).get("is_mptcp"), rep.get("mptcp")
    assert counters["a1:rm_mp_capable"] >= 1, counters
    syns = [p for p in pkts if p.tcp_flags & 0x12 == 0x02]
    assert len(syns) == 1, f"{len(syns)} SYNs: the first one was lost"
    assert syns[0].mptcp == [] and 30 not in syns[0].option_kinds, syns[0]
    assert delta(n0c, n1c, "MPTcpExtMPCapableSYNTXDrop") == 0
    assert delta(n0c, n1c, "MPTcpExtBlackhole") == 0
    assert delta(n0c, n1c, "MPTcpExtMPCapableFallbackSYNACK") == 1
    assert delta(n0s, n1s, "TcpInCsumErrors") == 0
    if not offload:
        assert syns[0].checksums_ok
