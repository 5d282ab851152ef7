"""Fixtures for the data-path tests: compiled entry + built-in objects, a
loaded Datapath with shared maps, scapy packet builders.

Everything runs in the real kernel through BPF_PROG_TEST_RUN.
"""
from __future__ import annotations

import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BPF = os.path.join(REPO, "bpf")

from emptcp import abi  # noqa: E402
from emptcp.runtime.datapath import Datapath  # noqa: E402


BUILTINS = ["ip_pair", "tcp4tuple", "tcp2tuple", "service", "mptcp_subtype", "pass", "drop",
            "count", "redirect", "set_recv_win", "tcp_opt_add", "tcp_opt_del"]

XDP_PASS, XDP_DROP, XDP_REDIRECT = 2, 1, 4
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
#: TC_ACT_UNSPEC = TCX_NEXT: emptcp's "no verdict" on TC (the next TCX program runs)
TC_NEXT = -1
LO = 1  # test_run runs on the loopback device
HOOK_XDP, HOOK_TC_IN, HOOK_TC_EG = 0, 1, 2


@pytest.fixture(scope="session")
def objdir(root, tmp_path_factory):
    """The entry and built-in objects compiled from this checkout's bpf/, with the same
    compiler and flags that build the shipped package (emptcp.build.compile)."""
    prebuilt = os.environ.get("EMPTCP_TEST_BPF_OBJDIR")
    if prebuilt:  # built on the host by the kernel matrix (clang is slow under TCG)
        assert os.path.isfile(os.path.join(prebuilt, "entry.o")), f"{prebuilt}: no entry.o"
        return prebuilt
    from emptcp.build.compile import build_core_data
    out = str(tmp_path_factory.mktemp("bpfobj"))
    build_core_data(REPO, out)
    return os.path.join(out, "bpf")


@pytest.fixture(scope="session")
def datapath(objdir):
    dp = Datapath(os.path.join(objdir, "entry.o"))
    dp.load_dir(objdir, BUILTINS)
    for gen in range(abi.MAX_GEN):
        slots = dp.install(gen)
    dp.slots = slots
    dp.set_hook(LO, "xdp", HOOK_XDP)
    dp.set_hook(LO, "tc-ingress", HOOK_TC_IN)
    dp.set_hook(LO, "tc-egress", HOOK_TC_EG)
    yield dp
    dp.close()


@pytest.fixture
def unfused(dp):
    """The data path with one instance per action, no fused runs of built-in actions
    (tests of how instances chain and are shared; test_fused.py: fused runs)."""
    dp.fuse = False
    yield dp
    dp.fuse = True


@pytest.fixture
def dp(datapath):
    datapath.clear_stats()
    return datapath
