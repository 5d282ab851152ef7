"""Fixtures for the data-path tests: compiled entry + built-in objects, a
loaded Datapath with shared maps, scapy packet builders.

Everything runs in the real kernel through BPF_PROG_TEST_RUN.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BPF = os.path.join(REPO, "bpf")

from emptcp import abi  # noqa: E402
from emptcp.datapath import Datapath  # noqa: E402

from ..conftest import require  # noqa: E402

BUILTINS = ["ip_pair", "tcp4tuple", "tcp2tuple", "service", "mptcp_subtype", "pass", "drop",
            "count", "redirect", "set_recv_win", "tcp_opt_add", "tcp_opt_del"]

XDP_PASS, XDP_DROP, XDP_REDIRECT = 2, 1, 4
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
LO = 1  # test_run runs on the loopback device
HOOK_XDP, HOOK_TC_IN, HOOK_TC_EG = 0, 1, 2


@pytest.fixture(scope="session")
def objdir(tmp_path_factory):
    require(os.geteuid() == 0, "needs root")
    prebuilt = os.environ.get("EMPTCP_TEST_BPF_OBJDIR")
    if prebuilt:  # built by the same make on the host (kernel matrix: clang is slow in TCG)
        assert os.path.isfile(os.path.join(prebuilt, "entry.o")), f"{prebuilt}: no entry.o"
        return prebuilt
    out = str(tmp_path_factory.mktemp("bpfobj"))
    proc = subprocess.run(["make", "-s", "-C", os.path.join(BPF, "actions"), f"OUT={out}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def datapath(objdir):
    dp = Datapath(os.path.join(objdir, "entry.o"))
    dp.load_dir(objdir, BUILTINS)
    slots = dp.auto_slots()
    for gen in range(abi.MAX_GEN):
        dp.install(gen, slots)
    dp.slots = slots
    dp.set_hook(LO, "xdp", HOOK_XDP)
    dp.set_hook(LO, "tc-ingress", HOOK_TC_IN)
    dp.set_hook(LO, "tc-egress", HOOK_TC_EG)
    yield dp
    dp.close()


@pytest.fixture
def dp(datapath):
    datapath.clear_stats()
    return datapath
