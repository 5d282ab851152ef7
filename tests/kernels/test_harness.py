"""The kernel matrix harness's pure parts (no VM): result lines, tables, the check
list (its node ids must collect, its demos must exist), guest-side summaries."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from . import checks, images, vm
from .guest import Recorder, summarize
from .results import (PREFIX, CheckResult, encode, failed, first_line, missing_results,
                      parse_line, table, to_result)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- result lines ----------------------------------------------------------------
def test_result_line_round_trip():
    line = encode("result", check="cli-xdp", status="fail", reason="boom\nmore", seconds=1.5,
                  details=["a"])
    assert line.startswith(PREFIX) and "\n" not in line
    ev = parse_line(line + "\n")
    assert ev == {"event": "result", "check": "cli-xdp", "status": "fail",
                  "reason": "boom\nmore", "seconds": 1.5, "details": ["a"]}
    r = to_result("6.1", ev)
    assert r == CheckResult("6.1", "cli-xdp", "fail", "boom\nmore", 1.5, ["a"])


def test_other_lines_are_log_text():
    assert parse_line("[    6.3] virtme initramfs: loading 9p.ko...\n") is None
    assert parse_line("") is None


def test_console_noise_before_the_prefix_is_tolerated():
    ev = parse_line("\r[  22.1] random: crng init done" + encode("done"))
    assert ev == {"event": "done"}


@pytest.mark.parametrize("bad", [
    PREFIX + "{not json",
    PREFIX + '{"event": "bogus"}',
    PREFIX + '["result"]',
    PREFIX + '{"event": "result", "check": "x"}',                    # no status
    PREFIX + '{"event": "result", "check": "x", "status": "meh"}',   # unknown status
])
def test_malformed_result_lines_raise(bad):
    with pytest.raises(ValueError):
        parse_line(bad)


# ---- tables -------------------------------------------------------------------------
def test_table_grid_and_reasons():
    rs = [CheckResult("6.1", "a", "pass"),
          CheckResult("6.1", "b", "fail", "3/9 failed; test_x: verifier: R1 invalid mem access\n"
                                          "second line"),
          CheckResult("6.12", "a", "pass"),
          CheckResult("6.12", "b", "skip", "kernel not booted: no qemu")]
    t = table(rs, ["6.1", "6.12"], ["a", "b", "c"])
    lines = t.splitlines()
    assert lines[0].split() == ["check", "6.1", "6.12"]
    assert lines[2].split() == ["a", "pass", "pass"]
    assert lines[3].split() == ["b", "FAIL", "SKIP"]
    assert lines[4].split() == ["c", "-", "-"]
    assert lines[6].split() == "6.1 b FAIL: 3/9 failed; test_x: verifier: R1 invalid mem access".split()
    assert lines[7].split() == "6.12 b SKIP: kernel not booted: no qemu".split()
    assert "second line" not in t and len(lines) == 8
    assert failed(rs) and not failed([rs[0], rs[3]])


def test_first_line_skips_blank_lines_and_cuts():
    assert first_line("\n\n  hello  \nworld") == "hello"
    assert first_line("x" * 200, width=10) == "x" * 9 + "…"


def test_missing_results_fill_what_the_guest_did_not_report():
    got = [CheckResult("6.1", "a", "pass")]
    miss = missing_results("6.1", ["a", "b", "c"], got, "guest ended early")
    assert [(r.check, r.status, r.reason) for r in miss] == \
        [("b", "fail", "guest ended early"), ("c", "fail", "guest ended early")]


# ---- the check list -----------------------------------------------------------------
def test_checks_are_named_once_and_well_formed():
    names = [c.name for c in checks.CHECKS]
    assert len(names) == len(set(names))
    for c in checks.CHECKS:
        assert bool(c.nodes) != bool(c.demo), c
    required = {"backup", "backup-xdp", "recv-win", "rm-add-addr", "no-mptcp"}
    assert required <= {c.demo for c in checks.CHECKS}
    with pytest.raises(ValueError, match="unknown check"):
        checks.select(["nope"])
    assert [c.name for c in checks.select(["demo-backup", "stage-load"])] == \
        ["stage-load", "demo-backup"]            # matrix order, not argument order


def test_no_test_belongs_to_two_checks():
    nodes = [(c.name, n) for c in checks.CHECKS for n in c.nodes]
    for name, n in nodes:
        owners = [c.name for c in checks.CHECKS if c.owns(n)]
        assert owners == [name], (n, owners)


def test_owns_matches_files_tests_and_parameters():
    c = checks.Check("x", "", nodes=("tests/a.py", "tests/b.py::test_b"))
    assert c.owns("tests/a.py::test_one[p]") and c.owns("tests/b.py::test_b[1]")
    assert c.owns("tests/b.py::test_b")
    assert not c.owns("tests/a.pyx::t") and not c.owns("tests/b.py::test_bb")


def test_demo_checks_name_existing_scenarios():
    from emptcp.cli import demo
    known = {name for name, _ in demo.list_scenarios()}
    for c in checks.CHECKS:
        if c.demo:
            assert c.demo in known, c


def test_check_node_ids_collect():
    """Every pytest node id of the matrix collects at least one test (and no errors)."""
    nodes = [n for c in checks.CHECKS for n in c.nodes]
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                        "-p", "no:cacheprovider", *nodes],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    collected = [ln for ln in p.stdout.splitlines() if "::" in ln]
    for c in checks.CHECKS:
        for n in c.nodes:
            assert any(ln == n or ln.startswith((n + "::", n + "[")) for ln in collected), \
                f"check {c.name}: node id {n} collects nothing"


# ---- guest-side summaries --------------------------------------------------------------
def _rec(tests: dict, errors: dict | None = None) -> Recorder:
    r = Recorder()
    r.tests = {n: {"outcome": o, "message": m, "seconds": 1.0, "reruns": 0}
               for n, (o, m) in tests.items()}
    r.collect_errors = errors or {}
    return r


def test_summarize_pass_fail_and_nothing_ran():
    c = checks.Check("x", "", nodes=("tests/a.py",))
    ok = summarize(c, _rec({"tests/a.py::t1": ("passed", ""), "tests/b.py::t": ("failed", "no")}))
    assert ok["status"] == "pass" and ok["seconds"] == 1.0
    bad = summarize(c, _rec({"tests/a.py::t1": ("passed", ""),
                             "tests/a.py::t2[v]": ("failed", "call: VerifierError: x\ny"),
                             "tests/a.py::t3": ("skipped", "no tshark")}))
    assert bad["status"] == "fail"
    assert bad["reason"] == "2/3 failed; t2[v]: call: VerifierError: x"
    assert bad["details"] == ["t2[v]: failed: call: VerifierError: x", "t3: skipped: no tshark"]
    none = summarize(c, _rec({"tests/b.py::t": ("passed", "")}))
    assert none["status"] == "fail" and "no test ran" in none["reason"]


def test_summarize_collection_error_of_the_file_fails_a_narrower_check():
    c = checks.Check("x", "", nodes=("tests/a.py::test_one[p]",))
    s = summarize(c, _rec({}, {"tests/a.py": "ImportError: no scapy"}))
    assert s["status"] == "fail" and s["reason"] == "collection error: tests/a.py: ImportError: no scapy"


# ---- kernels and the guest command ------------------------------------------------------
def test_default_kernels_leave_out_the_host_series(monkeypatch):
    monkeypatch.setattr(images, "host_series", lambda: "6.12")
    assert [k.name for k in images.default_kernels()] == \
        [k.name for k in images.KERNELS if k.name != "6.12"]
    with pytest.raises(ValueError, match="unknown kernel"):
        images.select(["2.6"])
    for k in images.KERNELS:
        assert k.vmlinuz.endswith(f"/{k.package}/boot/vmlinuz-{k.release}")


def test_guest_script_mounts_bpffs_and_uses_the_checkout_venv():
    s = vm.guest_script("/work/x y", ["stage-load", "demo-backup"])
    assert "mount -t bpf bpf /sys/fs/bpf" in s
    assert "'/work/x y/.venv/bin/python' -m tests.kernels.guest" in s
    assert s.endswith("--check stage-load --check demo-backup")
    cmd = vm.vng_command("/k/vmlinuz", "/r", ["a"], 2, "2G")
    assert cmd[:3] == ["vng", "--run", "/k/vmlinuz"] and "--disable-kvm" in cmd


# ---- verifier messages -------------------------------------------------------------------
LOG = """\
; if (tot < ihl + p.tcp_len || (void *)p.iph + tot > data_end) @ emptcp_tcpopt.h:443
441: (0f) r1 += r3                    ; R1_w=pkt(off=14,r=34,imm=0)
math between pkt pointer and register with unbounded min value is not allowed
processed 812 insns (limit 1000000) max_states_per_insn 2 total_states 51 peak_states 51
"""


def test_verifier_complaint_and_source_line():
    from .results import complaint, headline
    what, src = complaint(LOG)
    assert what == "math between pkt pointer and register with unbounded min value is not allowed"
    assert src.startswith("if (tot < ihl + p.tcp_len")
    msg = "VerifierError: bpf_object__load: Invalid argument (errno 22): program 'p' " \
          "rejected by the verifier:\n" + LOG
    assert headline(msg) == "VerifierError: bpf_object__load: Invalid argument (errno 22): " \
        "program 'p' rejected by the verifier: math between pkt pointer and register with " \
        "unbounded min value is not allowed (at: " + src + ")"
    assert headline("AssertionError: x\ny") == "AssertionError: x"


def test_expected_failures_are_judged():
    from tests.kernels.results import CheckResult, failed, judge
    exp = {("6.1", "demo-backup"): "verifier: set_flow_priority"}
    res = judge([CheckResult("6.1", "demo-backup", "fail", "boom"),
                 CheckResult("6.1", "cli-xdp", "pass"),
                 CheckResult("6.12", "demo-backup", "fail", "boom")], exp)
    assert [r.status for r in res] == ["xfail", "pass", "fail"]
    assert "set_flow_priority" in res[0].reason and failed(res)
    stale = judge([CheckResult("6.1", "demo-backup", "pass")], exp)
    assert stale[0].status == "xpass" and failed(stale)
    assert not failed(judge([CheckResult("6.1", "demo-backup", "fail", "x")], exp))


def test_expected_file_names_known_kernels_and_checks_and_readme_agrees():
    """expected.toml only names kernels and checks that exist, and README's Kernels
    section lists every kernel with each of its expected failures."""
    import os
    from tests.kernels import checks, images
    from tests.kernels.results import load_expected
    exp = load_expected()
    for kernel, check in exp:
        assert kernel in images.BY_NAME, kernel
        assert check in checks.BY_NAME, check
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    section = readme.split("## Kernels", 1)[1].split("\n## ", 1)[0]
    for k in images.KERNELS:
        assert f"| {k.name} " in section, f"README's Kernels table has no row for {k.name}"
    for kernel, check in exp:
        row = next(ln for ln in section.splitlines() if ln.startswith(f"| {kernel} "))
        assert check in row, f"README's row for {kernel} does not name {check}"
    # the CI profile as the README describes it: its command, checks and limits
    from tests.kernels import budget
    text = " ".join(section.split())
    assert "python -m tests.kernels --ci" in text
    for check in checks.CI_CHECKS:
        assert f"`{check}`" in text, f"README's Kernels section does not name CI check {check}"
    assert f"{budget.CI_PER_KERNEL:.0f} s per kernel" in text
    assert f"{budget.CI_TOTAL:.0f} s overall" in text


# ---- the CI profile: arguments, budget, report, gating -------------------------------------
def test_ci_profile_arguments():
    from . import budget
    from .__main__ import parse_args
    a = parse_args(["--ci"])
    assert a.profile == "ci" and a.strict
    assert a.check == list(checks.CI_CHECKS)
    assert (a.timeout, a.budget) == (budget.CI_PER_KERNEL, budget.CI_TOTAL)
    assert a.report.endswith(os.path.join("build", "kernels", "report.json"))
    # explicit values win over the profile's
    a = parse_args(["--ci", "--timeout", "600", "--budget", "1000", "--check", "stage-load",
                    "--report", "/tmp/r.json"])
    assert (a.timeout, a.budget, a.check, a.report) == (600, 1000, ["stage-load"], "/tmp/r.json")
    full = parse_args([])
    assert full.profile == "full" and full.check is None and full.budget is None
    assert full.timeout == budget.FULL_PER_KERNEL and full.report is None
    for bad in (["--timeout", "0"], ["--ci", "--budget", "-5"], ["--timeout", "x"]):
        with pytest.raises(SystemExit) as e:
            parse_args(bad)
        assert e.value.code == 2, bad


def test_ci_checks_cover_the_three_hooks_and_a_demo():
    """The CI subset: stage-load, apply/status/detach with XDP, tc-ingress and tc-egress
    hooks (the examples its CLI checks apply), one demo; nothing needing host-built objects."""
    import tomllib
    ci = checks.select(list(checks.CI_CHECKS))
    assert [c.name for c in ci] == list(checks.CI_CHECKS)      # known names, matrix order
    assert "stage-load" in checks.CI_CHECKS
    assert any(c.demo for c in ci)
    types = set()
    for c in ci:
        for n in c.nodes:
            if "test_example[" in n:
                example = n.split("[", 1)[1].rstrip("]")
                with open(os.path.join(REPO, "examples", example), "rb") as f:
                    types |= {h["type"] for h in tomllib.load(f)["hooks"].values()}
    assert {"xdp", "tc-ingress", "tc-egress"} <= types, types
    assert not checks.needs_objects(ci)
    assert checks.needs_objects(list(checks.CHECKS))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_budget_per_kernel_and_overall():
    from .budget import Budget
    clock = Clock()
    unbounded = Budget(per_kernel=900, clock=clock)
    clock.t += 10_000
    assert unbounded.for_kernel() == 900 and unbounded.remaining() is None
    clock = Clock()
    b = Budget(per_kernel=900, total=2100, min_start=180, clock=clock)
    assert b.for_kernel() == 900                    # the kernel's own limit
    clock.t += 900
    assert b.for_kernel() == 900 and b.remaining() == 1200
    clock.t += 1000                                 # 200 s left: what is left
    assert b.for_kernel() == 200
    clock.t += 50                                   # 150 s left: too little to boot
    assert b.for_kernel() is None and b.elapsed() == 1950
    clock.t += 1000
    assert b.remaining() == 0.0 and b.for_kernel() is None
    small = Budget(per_kernel=60, total=100, min_start=180, clock=Clock())
    assert small.for_kernel() == 60                 # a tiny --timeout still runs
    for bad in ({"per_kernel": 0}, {"per_kernel": 10, "total": 0}):
        with pytest.raises(ValueError):
            Budget(**bad)


def test_ci_budget_fits_ci():
    """CI's 90 minutes hold the install and demo (~10 min), the host suite (~10 min)
    and the matrix's overall limit; every default kernel fits its own limit in it, and a
    kernel's limit holds its measured cost under TCG with room."""
    from . import budget
    assert budget.CI_TOTAL / 60 + 10 + 10 <= 90 - 15          # 15 min to spare
    assert len(images.KERNELS) * budget.CI_PER_KERNEL <= budget.CI_TOTAL
    boot, stage_load, cli, demo = 100, 55, 40, 60              # seconds, worst seen/estimated
    n_cli = sum(1 for c in checks.CI_CHECKS if c.startswith("cli-"))
    assert boot + stage_load + n_cli * cli + demo <= budget.CI_PER_KERNEL / 2


def test_over_budget_and_unbootable_results():
    from .__main__ import over_budget, unbootable
    from .budget import Budget
    clock = Clock()
    b = Budget(per_kernel=900, total=2100, clock=clock)
    clock.t += 2000
    rs = over_budget("6.12", ["stage-load", "demo-backup"], b)
    assert [(r.check, r.status) for r in rs] == [("stage-load", "fail"), ("demo-backup", "fail")]
    assert "overall time budget exhausted" in rs[0].reason and "100 s of 2100 s" in rs[0].reason
    assert {r.status for r in unbootable("6.1", ["a"], "no qemu", strict=False)} == {"skip"}
    assert {r.status for r in unbootable("6.1", ["a"], "no qemu", strict=True)} == {"fail"}


def test_report_round_trip_counts_and_kernel_lines():
    import json
    from .results import counts, load_report, per_kernel, report
    rs = [CheckResult("6.1", "stage-load", "pass", seconds=40.0),
          CheckResult("6.1", "demo-backup", "xfail", "expected: x -- got: y"),
          CheckResult("6.12", "stage-load", "fail", "timed out after 900 s (guest killed)")]
    doc = report(rs, [{"kernel": "6.1", "boot_s": 90.0}], profile="ci",
                 budget={"per_kernel_s": 900, "total_s": 2100})
    assert doc["failed"] and doc["counts"]["xfail"] == 1 and doc["counts"]["fail"] == 1
    back, got = load_report(json.dumps(doc))
    assert got == rs and back["profile"] == "ci" and back["kernels"][0]["boot_s"] == 90.0
    assert counts([]) == {"pass": 0, "fail": 0, "skip": 0, "xfail": 0, "xpass": 0}
    assert per_kernel(rs, ["6.1", "6.12", "6.18"]) == [
        "kernel 6.1: ok (1 pass, 1 xfail)", "kernel 6.12: FAIL (1 fail)",
        "kernel 6.18: ok (no results)"]
    for bad in ("{", "[]", '{"results": 3}', '{"results": [{"kernel": "6.1"}]}',
                '{"results": [{"kernel": "6.1", "check": "x", "status": "meh"}]}'):
        with pytest.raises(ValueError, match="not a matrix report"):
            load_report(bad)


def test_expected_file_gates_ci(tmp_path):
    """Under --ci the exit status follows expected.toml: listed failures (XFAIL) pass,
    any other failure -- a timeout, a kernel not run in time -- fails, and so does a listed
    check that passed (XPASS: the list must be updated). A reason is required."""
    from .results import judge, load_expected
    f = tmp_path / "expected.toml"
    f.write_text('[kernel."6.1"]\n"demo-backup" = "6.1 verifier: set_flow_priority"\n'
                 '[kernel."6.12"]\n')
    exp = load_expected(str(f))
    assert exp == {("6.1", "demo-backup"): "6.1 verifier: set_flow_priority"}
    ok = judge([CheckResult("6.1", "demo-backup", "fail", "boom"),
                CheckResult("6.1", "stage-load", "pass")], exp)
    assert [r.status for r in ok] == ["xfail", "pass"] and not failed(ok)
    timeout = judge([CheckResult("6.12", "demo-backup", "fail", "timed out")], exp)
    assert failed(timeout)
    assert failed(judge([CheckResult("6.1", "demo-backup", "pass")], exp))
    f.write_text('[kernel."6.1"]\n"demo-backup" = ""\n')
    with pytest.raises(ValueError, match="give the reason"):
        load_expected(str(f))


def test_ci_script_runs_the_ci_profile_after_the_host_suite():
    """.ci/run runs the matrix's CI profile after the host's pytest (set -e: its exit
    status gates CI), and the limits its comment states are the profile's."""
    from . import budget
    with open(os.path.join(REPO, ".ci", "run")) as f:
        text = f.read()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "set -euo pipefail" in lines
    host = lines.index(".venv/bin/python -m pytest")
    matrix = lines.index(".venv/bin/python -m tests.kernels --ci")
    assert matrix > host
    assert f"{budget.CI_PER_KERNEL:.0f} s per kernel" in text
    assert f"{budget.CI_TOTAL:.0f} s overall" in text


def test_main_ci_flow_with_a_fake_vm(tmp_path, monkeypatch, capsys):
    """The whole --ci run without a VM: each kernel gets min(its limit, what is left), a
    kernel killed at its limit fails what it did not report, a kernel with too little
    budget left is not started and fails, a listed failure is XFAIL; report and exit
    status follow."""
    import json
    from . import __main__ as main_mod
    from . import budget
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").touch()
    clock = Clock()
    calls = []

    def fake_run(kernel, vmlinuz, repo_, names, log, *, timeout, on_event, **kw):
        calls.append((kernel, names, timeout))
        b = vm.Boot(kernel, release=f"{kernel}.0-test", boot_seconds=90.0)
        if kernel == "6.1":
            clock.t += 400
            b.results = [CheckResult(kernel, n, "fail" if n == "demo-backup" else "pass",
                                     "verifier said no" if n == "demo-backup" else "")
                         for n in names]
            b.done, b.seconds = True, 400.0
        else:                                       # killed at its limit after stage-load
            clock.t += timeout
            b.results = [CheckResult(kernel, "stage-load", "pass")]
            b.error, b.seconds = f"timed out after {timeout:.0f} s (guest killed)", timeout
        for _ in b.results:
            on_event("result", b)
        return b

    monkeypatch.setattr(main_mod, "REPO", str(repo))
    monkeypatch.setattr(main_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(budget, "now", clock)
    monkeypatch.setattr(vm, "missing_prereqs", lambda venv_bin: [])
    monkeypatch.setattr(vm, "build_objects", lambda repo_: pytest.fail("not needed by --ci"))
    monkeypatch.setattr(vm, "run", fake_run)
    monkeypatch.setattr(images, "fetch", lambda k: f"/cache/{k.package}/vmlinuz")
    monkeypatch.setattr(images, "KERNELS", images.KERNELS + (
        images.Kernel("7.0", "linux-image-7.0-test", "7.0-test"),))
    monkeypatch.setattr(images, "BY_NAME", {k.name: k for k in images.KERNELS})
    monkeypatch.setattr(main_mod, "load_expected",
                        lambda: {("6.1", "demo-backup"): "6.1 verifier: set_flow_priority"})
    report = tmp_path / "report.json"
    rc = main_mod.main(["--ci", "--kernel", "6.1", "--kernel", "6.12", "--kernel", "7.0",
                        "--budget", "1400", "--log-dir", str(tmp_path / "logs"),
                        "--report", str(report)])
    out = capsys.readouterr().out
    assert rc == 1                                              # 6.12 timed out, 7.0 not run
    assert [(k, t) for k, _, t in calls] == [("6.1", 900), ("6.12", 900)]   # 7.0: 100 s left
    assert all(n == list(checks.CI_CHECKS) for _, n, _ in calls)
    doc = json.loads(report.read_text())
    status = {(r["kernel"], r["check"]): r["status"] for r in doc["results"]}
    assert status[("6.1", "demo-backup")] == "xfail" and status[("6.1", "stage-load")] == "pass"
    assert status[("6.12", "stage-load")] == "pass" and status[("6.12", "cli-xdp")] == "fail"
    assert {s for (k, _), s in status.items() if k == "7.0"} == {"fail"}
    assert doc["profile"] == "ci" and doc["budget"]["total_s"] == 1400 and doc["failed"]
    assert "kernel 6.1: ok (4 pass, 1 xfail)" in out and "kernel 6.12: FAIL" in out
    assert "overall time budget exhausted" in out
    # the same run with only the expected failure: exit 0
    calls.clear()
    clock.t = 1000.0
    rc = main_mod.main(["--ci", "--kernel", "6.1", "--log-dir", str(tmp_path / "logs"),
                        "--report", str(report)])
    assert rc == 0 and calls == [("6.1", list(checks.CI_CHECKS), 900)]
