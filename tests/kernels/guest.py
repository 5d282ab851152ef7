"""Guest side of the kernel matrix: run the named checks on the running kernel and
print one result line per check (``results.PREFIX`` + JSON) on stdout.

    python -m tests.kernels.guest --check stage-load --check demo-backup

Run from the repository root with the checkout's venv python. Everything else the
checks print (pytest, demo output) goes to stderr, so stdout carries only result
lines. pytest checks share one in-process pytest session; demos run
``emptcp demo NAME --json``. Needs root and bpffs (the host's vm.py mounts it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

from pytest import hookimpl as pytest_hookimpl

from .checks import Check, select
from .results import encode, first_line, headline

#: a scenario's time limit in the guest: `emptcp demo` holds each to 30 s natively; TCG
#: runs ~10x slower (more on a loaded host), which would make every scenario a timeout
DEMO_TIME_LIMIT = 360.0     # 6.1 full run: backup took 229 s, recv-win over 255 s
DEMO_TIMEOUT = DEMO_TIME_LIMIT + 120.0   # backstop; the scenario stops itself at limit + 15 s
#: `emptcp demo NAME --json` with another time limit (same scenario code, same JSON)
DEMO_CODE = ("import json, sys; from emptcp.cli import demo; "
             "r = demo.run_scenario(sys.argv[1], float(sys.argv[2])); "
             "print(json.dumps(r.as_dict(), indent=1, default=str)); sys.exit(0 if r.ok else 1)")


class Recorder:
    """pytest plugin: the final outcome, first failure message and duration of each test;
    with ``checks`` and ``emit``, a check's result is emitted as soon as its last test ended
    (a guest killed later still reported what it finished)."""

    def __init__(self, checks: list[Check] = (), emit: Callable[..., None] | None = None
                 ) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        self.collect_errors: dict[str, str] = {}
        self.checks, self.emit = list(checks), emit
        self.last: dict[str, list[Check]] = {}     # nodeid -> checks that end with it
        self.emitted: set[str] = set()

    def pytest_collection_finish(self, session: Any) -> None:
        for c in self.checks:
            mine = [it.nodeid for it in session.items if c.owns(it.nodeid)]
            if mine:
                self.last.setdefault(mine[-1], []).append(c)

    @pytest_hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Any:
        yield                                       # every phase and rerun of this test
        for c in self.last.get(item.nodeid, []):
            self.report(c)

    def report(self, c: Check) -> None:
        if self.emit is not None and c.name not in self.emitted:
            self.emitted.add(c.name)
            self.emit("result", check=c.name, **summarize(c, self))

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors[report.nodeid] = _message(report)

    def pytest_runtest_logreport(self, report: Any) -> None:
        t = self.tests.setdefault(report.nodeid, {"outcome": "passed", "message": "",
                                                  "seconds": 0.0, "reruns": 0})
        t["seconds"] += report.duration
        if report.outcome == "rerun":          # pytest-rerunfailures: the next try decides
            t.update(outcome="passed", message="", reruns=t["reruns"] + 1)
        elif report.failed and t["outcome"] != "failed":
            t.update(outcome="failed", message=f"{report.when}: {headline(_message(report))}")
        elif report.skipped and t["outcome"] == "passed":
            t.update(outcome="skipped", message=_message(report))


def _message(report: Any) -> str:
    lr = report.longrepr
    crash = getattr(lr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    if isinstance(lr, tuple) and len(lr) == 3:  # a skip: (file, line, reason)
        return str(lr[2])
    return str(lr)


def short_id(nodeid: str) -> str:
    """``tests/x/test_y.py::test_z[p]`` -> ``test_z[p]``."""
    return nodeid.rsplit("::", 1)[-1]


def summarize(check: Check, rec: Recorder) -> dict[str, Any]:
    """The result event fields of one pytest check from what the session recorded."""
    errs = [f"{n}: {first_line(m, 300)}" for n, m in rec.collect_errors.items()
            if check.owns(n) or any(node.startswith(n) for node in check.nodes)]
    owned = {n: t for n, t in rec.tests.items() if check.owns(n)}
    seconds = round(sum(t["seconds"] for t in owned.values()), 2)
    if errs:
        return dict(status="fail", reason=f"collection error: {errs[0]}", details=errs,
                    seconds=seconds)
    if not owned:
        return dict(status="fail", seconds=seconds,
                    reason=f"no test ran (not collected?): {', '.join(check.nodes)}")
    bad = [(n, t) for n, t in owned.items() if t["outcome"] != "passed"]
    details = [f"{short_id(n)}: {t['outcome']}: {first_line(t['message'], 400)}"
               for n, t in bad[:40]]
    if not bad:
        return dict(status="pass", seconds=seconds, reason="",
                    details=[f"{len(owned)} passed"])
    n0, t0 = bad[0]
    return dict(status="fail", seconds=seconds, details=details,
                reason=f"{len(bad)}/{len(owned)} failed; {short_id(n0)}: "
                       f"{first_line(t0['message'], 300)}")


def run_pytest(checks: list[Check], emit: Callable[..., None]) -> None:
    """One pytest session for all ``checks``; one result event per check."""
    import pytest
    rec = Recorder(checks, emit)
    nodes = [n for c in checks for n in c.nodes]
    rc = pytest.main(["-p", "no:cacheprovider", "--tb=short", "-q", "--durations=15", *nodes],
                     plugins=[rec])
    print(f"[guest] pytest exit code {int(rc)}", file=sys.stderr, flush=True)
    for c in checks:                # checks that collected nothing, or the session's end
        rec.report(c)


def run_demo(check: Check) -> dict[str, Any]:
    """The scenario of ``emptcp demo NAME --json`` (time limit DEMO_TIME_LIMIT) as result
    event fields."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", DEMO_CODE, str(check.demo),
                            str(DEMO_TIME_LIMIT)], capture_output=True, text=True,
                           timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        return dict(status="fail", seconds=round(time.monotonic() - t0, 2),
                    reason=f"emptcp demo {check.demo} did not end within {DEMO_TIMEOUT:.0f} s")
    seconds = round(time.monotonic() - t0, 2)
    sys.stderr.write(f"[guest] emptcp demo {check.demo} -> {p.returncode}\n{p.stdout}\n{p.stderr}\n")
    try:
        res = json.loads(p.stdout)
    except json.JSONDecodeError:
        return dict(status="fail", seconds=seconds,
                    reason=f"emptcp demo {check.demo} exit {p.returncode}, no JSON: "
                           f"{first_line(p.stderr or p.stdout, 300)}")
    bad = [f"{c['what']}: {c.get('detail', '')}" for c in res.get("checks", []) if not c["ok"]]
    if res.get("ok") and p.returncode == 0:
        return dict(status="pass", seconds=seconds, reason="",
                    details=[f"{len(res.get('checks', []))} checks ok"])
    reason = f"error: {res['error']}" if res.get("error") else (bad[0] if bad else
                                                              f"exit {p.returncode}")
    return dict(status="fail", seconds=seconds, reason=first_line(reason, 400), details=bad[:20])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.kernels.guest")
    ap.add_argument("--check", action="append", help="check name (repeatable; default all)")
    args = ap.parse_args(argv)
    checks = select(args.check)
    out = os.fdopen(os.dup(1), "w", buffering=1)   # result lines only
    os.dup2(2, 1)                                  # everything else goes to stderr

    def emit(event: str, **fields: Any) -> None:
        out.write(encode(event, **fields) + "\n")
        out.flush()

    emit("start", release=os.uname().release, checks=[c.name for c in checks])
    tests = [c for c in checks if c.kind == "pytest"]
    if tests:
        run_pytest(tests, emit)
    for c in checks:
        if c.kind == "demo":
            emit("result", check=c.name, **run_demo(c))
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
