"""Prometheus metrics: `emptcp exporter` and `emptcp run --metrics`.

Scraped over HTTP, parsed with prometheus_client's own text parser, and
compared with `emptcp status --json` read between two scrapes of an idle
hook: the numbers must be exactly equal (one source, no second counting).
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from emptcp.netns import enter

from .conftest import A_ADDR0, Host, nsrun, ping, tc_mode, tcp_exchange

pytestmark = pytest.mark.slow

POLICY = """\
[hooks.in]
interface = "veth0"
type = "xdp"

[hooks.out]
interface = "veth0"
type = "tc-egress"

[[policy]]
name = "web"
hook = "in"
selectors = [ { use = "service", ports = [5201] }, { use = "ip_pair", remote_addr = "10.77.0.0/24" } ]
actions = [ { use = "count" }, { use = "set_recv_win", window = 4000 } ]

[[policy]]
name = "count-out"
hook = "out"
actions = [ { use = "count" } ]
"""
PINGS = 5


def quiet(host: Host) -> None:
    """No IPv6 autoconfiguration chatter: the hooks see only the test's packets."""
    for ns in (host.ns, host.peer):
        nsrun(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        nsrun(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")


def start(host: Host, *args: str) -> tuple[subprocess.Popen, str]:
    """Start a serving command in namespace A; return it and its metrics URL."""
    proc = subprocess.Popen(host.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if "serving metrics on " in line:
            return proc, line.split("serving metrics on ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no metrics URL: {proc.stderr.read()}")  # type: ignore[union-attr]


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def scrape(host: Host, url: str) -> dict[tuple[str, frozenset], float]:
    with enter(host.ns):
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def expected(st: dict) -> dict[tuple[str, frozenset], float]:
    """What the metrics must say, derived from one `status --json` reading."""
    out: dict[tuple[str, frozenset], float] = {}
    for h in st["hooks"]:
        hl = {"hook": h["name"], "interface": h["interface"], "type": h["type"]}
        for k, v in h["counters"].items():
            out[(f"emptcp_hook_{k}_total", frozenset(hl.items()))] = v
        out[("emptcp_hook_attached", frozenset(hl.items()))] = 1 if h["attached"] else 0
        for p in h["policies"]:
            for phase in ("selectors", "actions"):
                for i, s in enumerate(p[phase]):
                    sl = {"hook": h["name"], "interface": h["interface"], "policy": p["name"],
                          "phase": phase[:-1], "stage": str(i), "use": s["use"]}
                    for k, v in s["counters"].items():
                        out[(f"emptcp_stage_{k}_total", frozenset(sl.items()))] = v
    out[("emptcp_active_generation", frozenset())] = st["generation"]
    out[("emptcp_generation_applied_timestamp_seconds", frozenset())] = st["applied_at"]
    out[("emptcp_config_info", frozenset({"digest": st["digest"],
                                          "pin_root": st["pin_root"]}.items()))] = 1
    out[("emptcp_applied", frozenset())] = 1
    out[("emptcp_up", frozenset())] = 1
    return out


def consistent_reading(host: Host, url: str) -> tuple[dict, dict, dict]:
    """scrape, status, scrape -- until the two scrapes agree (the hooks were idle)."""
    for _ in range(5):
        before = scrape(host, url)
        st = host.status()
        after = scrape(host, url)
        emptcp_only = {k: v for k, v in before.items() if k[0].startswith("emptcp_")}
        if emptcp_only == {k: v for k, v in after.items() if k[0].startswith("emptcp_")}:
            return emptcp_only, st, after
        time.sleep(0.5)
    raise AssertionError("the hooks never stayed idle for one status read")


def traffic(host: Host) -> None:
    ping(host.peer, A_ADDR0, PINGS)              # into veth0 (xdp), replies out (tc-egress)
    assert tcp_exchange(host.ns, host.peer, A_ADDR0, 5201, payload=50_000)


def check_equal(metrics: dict, st: dict) -> None:
    want = expected(st)
    missing = [k for k in want if k not in metrics]
    assert not missing, f"metrics lack {missing[:5]}"
    wrong = {k: (metrics[k], v) for k, v in want.items() if metrics[k] != v}
    assert not wrong, f"metric != status: {wrong}"
    # nothing counted twice: every hook/stage series is one that status has
    extra = [k for k in metrics if k[0].startswith(("emptcp_hook_", "emptcp_stage_"))
             and k[0] not in ("emptcp_hook_tcx_index", "emptcp_hook_tcx_programs")
             and k not in want]
    assert not extra, f"series status does not know: {extra[:5]}"


def test_exporter_equals_status(host: Host, tmp_path) -> None:
    quiet(host)
    cfg = tmp_path / "policy.toml"
    cfg.write_text(POLICY)
    host.apply(str(cfg))
    traffic(host)
    proc, url = start(host, "exporter", "--listen", "127.0.0.1:0")
    try:
        metrics, st, _ = consistent_reading(host, url)
        check_equal(metrics, st)
        web = {"hook": "in", "interface": "veth0", "policy": "web", "phase": "action",
               "stage": "1", "use": "set_recv_win"}
        assert metrics[("emptcp_stage_packets_total", frozenset(web.items()))] > 10
        out = {"hook": "out", "interface": "veth0", "type": "tc-egress"}
        assert metrics[("emptcp_hook_packets_total", frozenset(out.items()))] >= PINGS
        if tc_mode() == "tcx":       # where emptcp runs among the hook's TCX programs
            assert metrics[("emptcp_hook_tcx_index", frozenset(out.items()))] == 0
        else:                         # a cls_bpf filter has no TCX index
            assert ("emptcp_hook_tcx_index", frozenset(out.items())) not in metrics
            assert metrics[("emptcp_hook_attached", frozenset(out.items()))] == 1
        # the standalone exporter knows no applies of its own
        assert not any(k[0].startswith(("emptcp_applies", "emptcp_apply_")) for k in metrics)
        # counters move with traffic, between scrapes
        ping(host.peer, A_ADDR0, 2)
        again = scrape(host, url)
        assert again[("emptcp_hook_packets_total", frozenset(out.items()))] >= \
            metrics[("emptcp_hook_packets_total", frozenset(out.items()))] + 2
    finally:
        stop(proc)
    host.detach_all()
    # nothing applied: the exporter still answers, and says so
    proc, url = start(host, "exporter", "--listen", "127.0.0.1:0")
    try:
        m = scrape(host, url)
        assert m[("emptcp_applied", frozenset())] == 0 and m[("emptcp_up", frozenset())] == 1
        assert not any(k[0].startswith("emptcp_hook_") for k in m)
    finally:
        stop(proc)


def test_run_metrics_adds_applies(host: Host, tmp_path) -> None:
    quiet(host)
    cfg = tmp_path / "policy.toml"
    cfg.write_text(POLICY)
    proc, url = start(host, "run", str(cfg), "--metrics", "127.0.0.1:0")
    try:
        traffic(host)
        metrics, st, full = consistent_reading(host, url)
        check_equal(metrics, st)
        assert metrics[("emptcp_applies_total", frozenset({("result", "changed")}))] == 1
        assert metrics[("emptcp_applies_total", frozenset({("result", "unchanged")}))] == 0
        assert metrics[("emptcp_apply_failures_total", frozenset({("reason", "config")}))] == 0
        assert metrics[("emptcp_apply_duration_seconds_count", frozenset())] == 1
        assert 0 < metrics[("emptcp_apply_duration_seconds_sum", frozenset())] < 60
        assert metrics[("emptcp_config_last_reload_successful", frozenset())] == 1
        assert ("process_resident_memory_bytes", frozenset()) in full
    finally:
        out = stop(proc)
    assert "detached" in out


def test_bad_listen_address_is_bad_input(host: Host, tmp_path) -> None:
    cfg = tmp_path / "policy.toml"
    cfg.write_text(POLICY)
    for args in (("exporter", "--listen", "localhost"), ("run", str(cfg), "--metrics", "x:y")):
        p = host.cli(*args)
        assert p.returncode == 2, p.stderr
        assert "ADDR:PORT" in p.stderr and "Traceback" not in p.stderr
    assert host.tree() == []        # run refused before applying anything
    p = host.cli("status", "--json")
    assert json.loads(p.stdout)["applied"] is False
