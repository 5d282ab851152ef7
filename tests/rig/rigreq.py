"""require(): skip locally, FAIL under CI=true, when root or a kernel feature is missing."""
import os
import subprocess

import pytest


def require(cond, reason: str) -> None:
    if cond:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"requirement missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def have_mptcp() -> bool:
    try:
        with open("/proc/sys/net/mptcp/enabled") as f:
            return f.read().strip() in ("0", "1")
    except OSError:
        return False


def have_tool(name: str) -> bool:
    return subprocess.run(["sh", "-c", f"command -v {name}"], capture_output=True).returncode == 0


def require_rig() -> None:
    require(os.geteuid() == 0, "needs root (netns, veth, tc)")
    require(have_mptcp(), "kernel without MPTCP (/proc/sys/net/mptcp missing)")
    for t in ("ip", "nsenter", "tc", "ss", "nstat", "ethtool"):
        require(have_tool(t), f"missing tool {t}")
