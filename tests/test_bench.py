"""The benchmark harness (bench/): output schema, ratios derived from measured values, failures."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.__main__ import run  # noqa: E402
from bench.registry import UNITS, Context, Registry, Result  # noqa: E402

KEYS = {"name", "value", "unit", "baseline", "baseline_value", "ratio"}
EXPECTED = {"map.lookup:process", "map.lookup:batchfile", "map.update:process",
            "map.update:batchfile", "map.update_batch:batchfile",
            "map.read_all.lookup_batch:dump", "map.read_all.items:dump",
            "prog.test_run.kernel", "prog.test_run.call"}


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_json(root):
    proc = _bench("--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_schema(quick_json):
    assert isinstance(quick_json, list) and quick_json
    names = [r["name"] for r in quick_json]
    assert len(names) == len(set(names))
    assert EXPECTED <= set(names)
    for r in quick_json:
        assert KEYS <= set(r), r
        assert r["unit"] in UNITS
        assert isinstance(r["value"], float) and math.isfinite(r["value"]) and r["value"] > 0
        assert r["ops_per_s"] == pytest.approx(UNITS[r["unit"]] / r["value"], rel=1e-12)
        if r["baseline"] is None:
            assert r["baseline_value"] is None and r["ratio"] is None
        else:
            assert isinstance(r["baseline"], str) and r["baseline"]
            assert r["baseline_value"] > 0


def test_every_ratio_is_baseline_over_value(quick_json):
    with_baseline = [r for r in quick_json if r["baseline"] is not None]
    assert len(with_baseline) >= len(EXPECTED)
    for r in with_baseline:
        assert r["ratio"] == pytest.approx(r["baseline_value"] / r["value"], rel=1e-12), r


def test_figures_are_measured_not_constant(root):
    """Two runs of the same benchmark must not print identical wall-clock figures."""
    a, b = (json.loads(_bench("--quick", "--json", "--only", r"^map\.update_batch").stdout)
            for _ in range(2))
    assert [r["name"] for r in a] == [r["name"] for r in b] == ["map.update_batch:batchfile"]
    assert (a[0]["value"], a[0]["baseline_value"]) != (b[0]["value"], b[0]["baseline_value"])


def test_only_filters_and_unknown_pattern_fails(root):
    proc = _bench("--list", "--only", r"^prog\.")
    assert proc.returncode == 0
    assert proc.stdout.split() == ["prog.test_run.call", "prog.test_run.kernel"]
    assert _bench("--quick", "--only", "no-such-benchmark").returncode == 2


def test_table_header_says_what_ratio_means(root):
    proc = _bench("--quick", "--only", r"^prog\.test_run\.kernel$")
    assert proc.returncode == 0, proc.stderr
    assert "> 1 means emptcp is faster" in proc.stdout
    assert "prog.test_run.kernel" in proc.stdout


def test_failing_benchmark_is_reported(tmp_path):
    reg = Registry()

    @reg.benchmark("ok")
    def ok(ctx):
        return Result("ok", 2.0, "µs/op", "something", 4.0)

    @reg.benchmark("broken")
    def broken(ctx):
        raise RuntimeError("boom")

    with open(os.devnull, "w") as log:
        results, failures = run(reg, ["ok", "broken"], Context(True, str(tmp_path)), log=log)
    assert [r.name for r in results] == ["ok"] and results[0].ratio == 2.0
    assert failures and failures[0][0] == "broken" and "boom" in failures[0][1]


def test_result_rejects_dishonest_figures():
    with pytest.raises(ValueError):
        Result("x", 1.0, "ops/s")             # throughput units are not costs
    with pytest.raises(ValueError):
        Result("x", 0.0, "µs/op")
    with pytest.raises(ValueError):
        Result("x", 1.0, "µs/op", "baseline without value")
    with pytest.raises(TypeError):
        Result("x", 1.0, "µs/op", "b", 2.0, "d", ratio=9.9)  # type: ignore[call-arg]
