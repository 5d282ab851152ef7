"""Kernel baseline, no emptcp code involved: with veth checksum offloads ON, this kernel
(6.18) now and then delivers wrong bytes to an MPTCP receiver; with them OFF it does not.

This is why emptcp.rig turns offloads off by default (PathSpec(offload=False)) and why a
test that checks byte integrity on MPTCP with offloads on is testing the kernel.

Each setting gets N two-path 1 MiB MPTCP transfers between two fresh namespaces with
no BPF program attached anywhere; every byte is verified by the receiver (the rig's
traffic generator: a position-dependent pattern). The measured rates are printed (and
recorded as junit properties). Asserted: no transfer fails with offloads off, and a bad
transfer with offloads on is wrong *bytes* (all of them arrived), not a lost connection.

Seen here (2026-11-30, loaded 2-vCPU machine): offloads on 1 of 100 (first_bad_offset
90176, all bytes arrived) and then 0 of 100 with this test, off 0 of 100 twice; an
earlier session saw about 1 in 25 on, 0 in 200 off. So the effect is real but rare
(~0.5 %, 95 % CI roughly 0.01..2.8 % from 1 of 200): N = 200 per setting can miss it.

Deselected by default (minutes of traffic): run it with
``python -m pytest --kernel-baseline tests/rig/test_kernel_baseline.py -s``;
``EMPTCP_BASELINE_TRANSFERS`` (default 200) sets N. Never retried.
"""
from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from emptcp.rig import PathSpec, Rig

N = int(os.environ.get("EMPTCP_BASELINE_TRANSFERS", "200"))


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _no_bpf_attached(rig: Rig) -> None:
    for side in (rig.client, rig.server):
        net = json.loads(subprocess.run(["nsenter", f"--net=/var/run/netns/{side.ns}", "--",
                                         "bpftool", "-j", "net"], capture_output=True,
                                        text=True, check=True).stdout)[0]
        assert not net.get("xdp") and not net.get("tc"), (side.ns, net)


@pytest.mark.kernel_baseline
def test_veth_checksum_offloads_and_mptcp_byte_integrity(record_property):
    summary = {}
    for offload in (True, False):
        bad, lost = [], []
        with Rig(prefix="emptcp-base", paths=[PathSpec(offload=offload),
                                                PathSpec(offload=offload)]) as rig:
            _no_bpf_attached(rig)
            for i in range(N):
                rep = rig.transfer(nbytes=1 << 20, timeout=30)
                srv = rep.get("server") or {}
                if not rep.get("intact"):
                    entry = {"i": i, "received": srv.get("bytes_received"),
                             "first_bad_offset": srv.get("first_bad_offset"),
                             "subflows": (rep.get("mptcp") or {}).get("subflows")}
                    (bad if srv.get("bytes_received") == 1 << 20 else lost).append(entry)
            _no_bpf_attached(rig)
        k = len(bad) + len(lost)
        lo, hi = _wilson(k, N)
        key = "on" if offload else "off"
        summary[key] = {"transfers": N, "not_intact": k, "rate": round(k / N, 4),
                        "ci95": [round(lo, 4), round(hi, 4)], "wrong_bytes": bad, "lost": lost}
        record_property(f"offload_{key}_not_intact", f"{k}/{N}")
        print(f"veth checksum offloads {key}: {k} of {N} two-path 1 MiB MPTCP transfers not "
              f"intact (rate {k / N:.3f}, 95% CI {lo:.3f}..{hi:.3f}); details {bad + lost}")
    print(json.dumps(summary))
    assert summary["off"]["not_intact"] == 0, summary["off"]
    assert summary["on"]["lost"] == [], summary["on"]
