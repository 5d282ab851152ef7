"""Shared fixtures and rules of the suite.

* Requirements: :func:`require` skips when a requirement (root, clang, a kernel
  feature) is missing -- and fails under ``CI=true``: a skip is not a pass.
* ``root`` marker: every test that needs root (directly or through any fixture that
  depends on the ``root`` fixture) is marked ``root`` at collection, so
  ``python -m pytest -m "not root"`` runs the pure-Python tests on any machine.
* Retries: none, except one rerun for a test marked
  ``@pytest.mark.live_timing(reason="...")`` -- a test whose only timing-dependent
  part is a timing check (a rate, a ratio, a duration) on live traffic. Integrity,
  checksum and state assertions never live in such a test. A rerun is listed in the
  summary with its reason and the first failure.
* ``kernel_baseline`` marker: a test that documents a behaviour of the kernel itself
  (no emptcp code involved); never retried, deselected unless ``--kernel-baseline``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() == "true"
#: names of what shared fixtures create: pin roots /sys/fs/bpf/<prefix>-test-*,
#: namespaces <prefix>-t-* (set EMPTCP_TEST_PREFIX to keep concurrent runs apart)
TEST_PREFIX = os.environ.get("EMPTCP_TEST_PREFIX", "").strip() or "emptcp"
HERE = os.path.dirname(os.path.abspath(__file__))

#: one rerun, after a short pause, for a test marked live_timing (see module doc)
LIVE_TIMING_RERUNS = 1
_TIMING_REASON: dict[str, str] = {}             # nodeid -> what its live_timing mark times
_RERUNS: list[tuple[str, str, str]] = []        # (nodeid, reason, first failure)


def require(condition: object, reason: str) -> None:
    """Skip when ``condition`` is false -- or fail under CI=true."""
    if not condition:
        if IN_CI:
            pytest.fail(f"requirement not met under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


# ---- markers: root, live_timing, kernel_baseline -----------------------------------
def pytest_addoption(parser):
    parser.addoption("--kernel-baseline", action="store_true", default=False,
                     help="also run the kernel_baseline tests (minutes of traffic each; "
                          "deselected otherwise)")


def pytest_configure(config):
    if config.pluginmanager.hasplugin("rerunfailures") and (
            config.getoption("reruns", None) or config.getoption("force_reruns", None)):
        raise pytest.UsageError("global --reruns/--force-reruns are refused here: only tests "
                                "marked live_timing(reason=...) get one rerun (tests/conftest.py)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--kernel-baseline"):
        baseline = [i for i in items if i.get_closest_marker("kernel_baseline")]
        if baseline:
            config.hook.pytest_deselected(items=baseline)
            items[:] = [i for i in items if not i.get_closest_marker("kernel_baseline")]
    errors = []
    for item in items:
        if "root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.root)
        if item.get_closest_marker("flaky") is not None:
            errors.append(f"{item.nodeid}: uses 'flaky' directly; mark it "
                          "live_timing(reason=...) if it is a timing check, else fix it")
        timing = item.get_closest_marker("live_timing")
        if timing is not None and item.get_closest_marker("kernel_baseline"):
            errors.append(f"{item.nodeid}: a kernel_baseline test is never retried")
        elif timing is not None:
            if not str(timing.kwargs.get("reason", "")).strip():
                errors.append(f"{item.nodeid}: live_timing needs reason=\"what is timed\"")
                continue
            item.add_marker(pytest.mark.flaky(reruns=LIVE_TIMING_RERUNS, reruns_delay=1))
            _TIMING_REASON[item.nodeid] = str(timing.kwargs["reason"])
    if errors:
        raise pytest.UsageError("\n".join(errors))


def pytest_runtest_logreport(report):
    """A retried failure still leaves its reason in the log, and in the summary."""
    if report.outcome == "rerun":
        reason = _TIMING_REASON.get(report.nodeid, "?")
        sys.__stderr__.write(f"\n[retried: live_timing ({reason})] {report.nodeid} failed "
                             f"first:\n{report.longreprtext[-2500:]}\n")
        last = [ln for ln in report.longreprtext.strip().splitlines() if ln.startswith("E ")]
        _RERUNS.append((report.nodeid, reason, (last or [""])[0][:300]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (a skip is a failure here): {report.longrepr}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _RERUNS:
        terminalreporter.section("live_timing reruns (timing checks retried once)")
        for nodeid, reason, first in _RERUNS:
            terminalreporter.write_line(f"RERUN {nodeid}\n    timed: {reason}\n"
                                        f"    first failure: {first}")


# ---- session checks ---------------------------------------------------------------
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


class TransferLedger:
    """Transfers made inside retried (live_timing) tests, checked outside them."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, dict]] = []
        self.current = "?"

    def add(self, report: dict) -> dict:
        self.reports.append((self.current, report))
        return report


_LEDGER = TransferLedger()


@pytest.fixture
def transfer_ledger(request) -> TransferLedger:
    """Record a traffic report made in a live_timing test: its integrity is asserted at
    the end of the session (never retried), every attempt included."""
    _LEDGER.current = request.node.nodeid
    return _LEDGER


@pytest.fixture(scope="session", autouse=True)
def transfers_in_timing_tests_were_intact():
    yield
    bad = [(n, {k: r.get(k) for k in ("intact", "bytes_sent", "bytes_received", "error")})
           for n, r in _LEDGER.reports if not r.get("intact")]
    assert not bad, f"transfers made in timing tests were not intact: {bad}"


# ---- requirements -------------------------------------------------------------------
@pytest.fixture(scope="session")
def root() -> None:
    """Root with bpffs mounted. Any test using this fixture (even indirectly) is marked root."""
    require(os.geteuid() == 0, "needs root (CAP_BPF, CAP_NET_ADMIN)")
    if not os.path.ismount("/sys/fs/bpf"):
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=False)
    require(os.path.ismount("/sys/fs/bpf"), "bpffs is not mounted at /sys/fs/bpf")


@pytest.fixture(scope="session")
def mptcp_kernel(root) -> None:
    """Root, a kernel with MPTCP, and the tools the rig and the oracles use."""
    require(os.path.exists("/proc/sys/net/mptcp/enabled"),
            "kernel without MPTCP (/proc/sys/net/mptcp missing)")
    for tool in ("ip", "nsenter", "tc", "ss", "nstat", "ethtool", "tcpdump", "tshark", "ping"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")


@pytest.fixture(scope="session")
def mptcp_plugin(root) -> None:
    from emptcp.plugins.manager import PluginManager
    require("set_flow_priority" in PluginManager().stages(),
            "emptcp-mptcp plugin not installed (pip install plugins/emptcp-mptcp)")


@pytest.fixture(scope="session")
def compile_objects(tmp_path_factory):
    """``compile_objects(dir)`` builds every ``*.bpf.c`` of a test dir; returns name -> path."""
    from emptcp.build.compile import compile_bpf, object_name
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
    path = f"/sys/fs/bpf/{TEST_PREFIX}-test-{uuid.uuid4().hex[:8]}"
    os.makedirs(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- namespaces: emptcp.rig is the one builder ---------------------------------------
@pytest.fixture
def veth_ns(root):
    """Two namespaces joined by one veth pair (an :class:`emptcp.rig.Rig` with one path,
    default offloads, no MPTCP endpoints): a dict with ``a``/``b`` (namespace names),
    ``a_if``/``b_if``, ``a_addr``/``b_addr`` and the ``rig``. Removed afterwards."""
    from emptcp.rig import PathSpec, Rig
    with Rig(paths=[PathSpec(offload=True)], prefix=f"{TEST_PREFIX}-t", base=99, limits=None,
             client_subflow=False) as rig:
        p = rig.paths[0]
        yield {"a": rig.client.ns, "b": rig.server.ns, "a_if": p.client_if, "b_if": p.server_if,
               "a_addr": p.client_addr, "b_addr": p.server_addr, "rig": rig}
