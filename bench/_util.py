"""Helpers shared by the benchmarks (not a benchmark module: the name starts with ``_``)."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from typing import Any, Callable

from .registry import Context

BPF_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf", "bench.bpf.c")


def bench_object_path(ctx: Context) -> str:
    """bench/bpf/bench.bpf.c compiled (once per run) into the run's temp dir."""
    if "bench.o" not in ctx.cache:
        from emptcp.build.compile import compile_bpf
        ctx.cache["bench.o"] = compile_bpf(BPF_SRC, os.path.join(ctx.tmpdir, "bench.o"))
    return ctx.cache["bench.o"]


def bpftool_path() -> str:
    path = shutil.which("bpftool") or next(
        (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if os.path.exists(p)), None)
    if not path:
        raise RuntimeError("bpftool not found (Debian: apt-get install bpftool)")
    return path


def bpftool(*args: Any) -> str:
    """Run bpftool once (one process); raise with its stderr on failure; return stdout.

    Callers time this call and parse/verify the output afterwards, outside the
    timed region.
    """
    cmd = [bpftool_path(), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:8])} ... failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()[-300:]}")
    return proc.stdout


def parse_json(text: str) -> Any:
    return json.loads(text)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, return value) of one call."""
    t0 = time.perf_counter_ns()
    out = fn()
    return (time.perf_counter_ns() - t0) / 1e9, out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def hexbytes(b: bytes) -> list[str]:
    return [f"{x:02x}" for x in b]
