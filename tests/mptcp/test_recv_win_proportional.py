"""Acceptance: ``set_recv_win`` on one path -> the sender's throughput on that path drops
in proportion, with valid checksums in the capture.

veth RTTs are microseconds (flows are CPU-bound, never window-limited), and the kernel
has no netem/fq, so the path gets a userspace delay line (emptcp.rig.delay: AF_PACKET in a
middle namespace, 20 ms each way, RTT ~41 ms), shaped to 60 Mbit/s, offloads off so the
kernel validates every checksum.  Linux MPTCP shares one receive window per connection
(a one-path clamp on a two-path connection is overridden: MPTcpExtSndWndShared), so the
connection has a single path: MPTCP, and plain TCP as control.  emptcp on the server's
(receiver's) TC egress advertises W = 128 KiB (raw field = W >> wscale), then W/2; the
sender's rate (client tx bytes on the path) must halve: ratio in 1.6..2.5.
"""
from __future__ import annotations

import json

import pytest


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("proto", ["mptcp", "tcp"])
def test_recv_win_throughput_proportional(demo, proto):
    if proto == "mptcp":
        res = demo.run_scenario("recv-win-delay")
    else:
        import time
        res = demo.Result("recv-win-delay-tcp")
        t0 = time.monotonic()
        try:
            demo._recv_win_delay(res, tcp=True)
        except Exception as e:   # same contract as run_scenario
            res.error = f"{type(e).__name__}: {e}"
        res.runtime = time.monotonic() - t0
    print(json.dumps(res.as_dict(), indent=1, default=str))
    failed = [c for c in res.checks if not c["ok"]]
    assert res.error is None, res.error
    assert not failed, failed
    assert res.runtime < 30
    ev = res.evidence
    assert 1.6 <= ev["ratio_W_over_half"] <= 2.5
    assert ev["capture"]["bad_checksums"] == 0
    assert ev["client_delta"]["TcpInCsumErrors"] == 0
    assert ev["server_delta"]["TcpInCsumErrors"] == 0
    assert ev["transfer"]["intact"]
