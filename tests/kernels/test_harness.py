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
