"""The `demo` fixture: emptcp.cli.demo, once the tools and kernel support it needs are here."""
import os
import shutil

import pytest

from tests.conftest import require


@pytest.fixture(scope="module")
def demo(root):
    for tool in ("ip", "tc", "ss", "nstat", "ethtool", "tcpdump", "tshark", "nsenter"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    require(os.path.exists("/proc/sys/net/mptcp/enabled"), "kernel without MPTCP")
    from emptcp.cli import demo as d
    return d
