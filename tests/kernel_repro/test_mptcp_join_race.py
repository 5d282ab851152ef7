"""The Linux MP_JOIN race that add_subflow works around, reproduced with no emptcp code.

tests/kernel_repro/mptcp_join_race.py builds its own namespaces with ip(8), streams data over a
plain IPPROTO_MPTCP socket and opens a second subflow through the userspace path
manager (its own generic-netlink client).  The oracle is the server's kernel: nstat
MPTcpExtDSSNotMatching / MPTcpExtMPRstTx, and the bytes the server verified.

- ``plain``: the join carries data at once; on 6.18 about 1 attempt in 40 is reset by
  the server (too rare to assert in a short test: the count is printed, and when a
  reset happens it must have the race's signature).
- ``backup-first`` (what emptcp_mptcp.pm.open_subflow does): no reset, the join carries
  data, every byte intact.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require

pytestmark = pytest.mark.slow
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mptcp_join_race.py")


def _run(mode: str, attempts: int) -> tuple[list[dict], dict]:
    require(os.geteuid() == 0, "needs root (network namespaces)")
    require(os.path.exists("/proc/sys/net/mptcp/enabled"), "kernel without MPTCP")
    for tool in ("ip", "nstat", "ethtool", "ping"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    p = subprocess.run([sys.executable, SCRIPT, "--mode", mode, "--attempts", str(attempts)],
                       capture_output=True, text=True, timeout=120)
    print(p.stdout[-4000:], p.stderr[-2000:])
    assert p.returncode == 0, p.stderr
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return [l for l in lines if not l.get("summary")], lines[-1]


def test_plain_join_reports_the_race_signature():
    # not asserted: every byte intact -- the race can also re-map bytes already received
    # (see the script's docstring); the count is in the printed summary
    runs, summary = _run("plain", 6)
    assert summary["attempts"] == 6 and len(runs) == 6
    for r in runs:
        d = r["server_delta"]
        assert d["MPTcpExtMPJoinAckRx"] == 1, r          # the join happened
        if d["MPTcpExtMPRstTx"]:                          # the race: mapping clobbered
            assert d["MPTcpExtDSSNotMatching"] >= 1, r


def test_backup_first_join_is_never_reset():
    runs, summary = _run("backup-first", 8)
    assert summary["resets"] == 0, runs
    assert summary["join_carried_data"] == 8 and summary["intact"] == 8, runs
