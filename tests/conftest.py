"""Shared fixtures: kernel requirements, compiled test objects, bpffs pin dirs, namespaces.

Under ``CI=true`` a test that would skip (no root, no clang, missing kernel
feature) fails instead: a skip is not a pass.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
HERE = os.path.dirname(os.path.abspath(__file__))


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false -- or fail under CI=true."""
    if not condition:
        if IN_CI:
            pytest.fail(f"requirement not met under CI=true: {reason}")
        pytest.skip(reason)


#: tests that move real traffic between namespaces on a shared 2-vCPU machine:
#: scheduling noise can starve one run, so each gets one more try (it must pass
#: then; a rerun is reported in the summary, never silent)
LIVE_TRAFFIC = ("tests/rig/", "tests/mptcp/", "tests/cli/", "tests/datapath/test_tc_live.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(LIVE_TRAFFIC) and not item.get_closest_marker("no_retry"):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=1))


def pytest_runtest_logreport(report):
    """A failure that gets retried still leaves its reason in the log (tail of it)."""
    if report.outcome == "rerun":
        sys.__stderr__.write(f"\n[retried] {report.nodeid} failed first:\n"
                             f"{report.longreprtext[-2500:]}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (a skip is a failure here): {report.longrepr}"


@pytest.fixture(scope="session", autouse=True)
def tshark_agrees():
    """After the session: tshark must find good checksums in every frame scapy passed."""
    from . import tshark
    yield
    if not tshark.FRAMES:
        return
    require(tshark.available(), "tshark is not installed (second checksum oracle)")
    problems = tshark.verify(tshark.FRAMES)
    assert not problems, f"tshark disagrees with scapy on {len(problems)} of " \
        f"{len(tshark.FRAMES)} frames:\n" + "\n".join(problems[:20])


@pytest.fixture(scope="session")
def root() -> None:
    require(os.geteuid() == 0, "needs root (CAP_BPF, CAP_NET_ADMIN)")
    if not os.path.ismount("/sys/fs/bpf"):
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=False)
    require(os.path.ismount("/sys/fs/bpf"), "bpffs is not mounted at /sys/fs/bpf")


@pytest.fixture(scope="session")
def compile_objects(tmp_path_factory):
    """``compile_objects(dir)`` builds every ``*.bpf.c`` of a test dir; returns name -> path."""
    from emptcp.bpfbuild import compile_bpf, object_name
    require(shutil.which("clang") is not None, "clang is not installed")
    out = tmp_path_factory.mktemp("bpf")
    cache: dict[str, dict[str, str]] = {}

    def build(src_dir: str) -> dict[str, str]:
        if src_dir not in cache:
            objs = {}
            for f in sorted(os.listdir(src_dir)):
                if f.endswith(".bpf.c"):
                    name = object_name(f)
                    objs[name] = compile_bpf(os.path.join(src_dir, f), str(out / f"{name}.o"))
            cache[src_dir] = objs
        return cache[src_dir]
    return build


@pytest.fixture
def pin_dir(root):
    """A fresh directory in bpffs, removed (with anything pinned in it) afterwards."""
    path = f"/sys/fs/bpf/emptcp-test-{uuid.uuid4().hex[:8]}"
    os.makedirs(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@pytest.fixture
def veth_ns(root):
    """Two namespaces joined by one veth pair: (ns_a, 'va', 10.99.0.1) <-> (ns_b, 'vb', 10.99.0.2).

    Yields a dict; everything is deleted afterwards even if the test fails.
    """
    tag = uuid.uuid4().hex[:6]
    a, b = f"et-a-{tag}", f"et-b-{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", "name",
           f"vb{tag}", "netns", b)
        sh("ip", "-n", a, "link", "set", f"va{tag}", "name", "va")
        sh("ip", "-n", b, "link", "set", f"vb{tag}", "name", "vb")
        sh("ip", "-n", a, "addr", "add", "10.99.0.1/24", "dev", "va")
        sh("ip", "-n", b, "addr", "add", "10.99.0.2/24", "dev", "vb")
        for ns, dev in ((a, "va"), (b, "vb")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield {"a": a, "b": b, "a_if": "va", "b_if": "vb", "a_addr": "10.99.0.1",
               "b_addr": "10.99.0.2"}
    finally:
        sh("ip", "netns", "del", a, check=False)
        sh("ip", "netns", "del", b, check=False)
