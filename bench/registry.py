"""The benchmark registry: ``@benchmark("name")`` and the ``Result`` it returns.

A benchmark is a function ``fn(ctx) -> Result | list[Result]`` in any module
under ``bench/`` whose name does not start with ``_`` (those are helpers).
Modules are imported by :func:`discover`; importing registers them.

    from .registry import Result, benchmark

    @benchmark("apply.chain")
    def apply_chain(ctx):
        n = ctx.pick(full=1000, quick=50)
        ours = ...   # measured now, in this run
        theirs = ... # the baseline, measured now, in this run
        return Result("apply.chain", ours, "ms/op", "tc filter add, 1 process per filter", theirs,
                      description="what one op is")

Conventions (checked when a Result is built):
- ``value`` and ``baseline_value`` are **costs per operation** in ``unit``
  (one of ``UNITS``): lower is better. ``ratio = baseline_value / value``, so a
  ratio > 1 means emptcp is faster. Ratios are computed here, never passed in.
- ``baseline`` names the baseline precisely ("bpftool batch file, 1 process").
  A figure without a baseline has ``baseline = baseline_value = ratio = None``.
- Every figure is measured in the current run; nothing is cached or hard-coded.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from typing import Any, Callable

__all__ = ["Result", "Context", "Registry", "REGISTRY", "benchmark", "discover", "UNITS"]

# unit -> operations per second when value == 1 (ops/s = UNITS[unit] / value)
UNITS = {"ns/op": 1e9, "µs/op": 1e6, "ms/op": 1e3, "s/op": 1.0}


@dataclasses.dataclass
class Result:
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"{self.name}: unit {self.unit!r} is not one of {sorted(UNITS)} "
                             "(report a cost per operation)")
        for what, v in (("value", self.value), ("baseline_value", self.baseline_value)):
            if v is None and what == "baseline_value":
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{self.name}: {what} must be a positive finite number, got {v!r}")
        if (self.baseline is None) != (self.baseline_value is None):
            raise ValueError(f"{self.name}: baseline and baseline_value go together")
        self.value = float(self.value)
        if self.baseline_value is not None:
            self.baseline_value = float(self.baseline_value)

    @property
    def ratio(self) -> float | None:
        """Baseline cost / emptcp cost: > 1 means emptcp is faster."""
        return None if self.baseline_value is None else self.baseline_value / self.value

    @property
    def ops_per_s(self) -> float:
        return UNITS[self.unit] / self.value

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "baseline": self.baseline, "baseline_value": self.baseline_value,
                "ratio": self.ratio, "ops_per_s": self.ops_per_s,
                "description": self.description}


class Context:
    """What a benchmark gets: the mode, a scratch directory, a per-run cache."""

    def __init__(self, quick: bool, tmpdir: str) -> None:
        self.quick = quick
        self.tmpdir = tmpdir
        self.cache: dict[str, Any] = {}

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


Bench = Callable[[Context], "Result | list[Result]"]


class Registry:
    def __init__(self) -> None:
        self.benchmarks: dict[str, Bench] = {}

    def benchmark(self, name: str) -> Callable[[Bench], Bench]:
        def register(fn: Bench) -> Bench:
            if name in self.benchmarks and self.benchmarks[name] is not fn:
                raise ValueError(f"benchmark {name!r} registered twice")
            self.benchmarks[name] = fn
            return fn
        return register


REGISTRY = Registry()
benchmark = REGISTRY.benchmark


def discover(package: str = "bench") -> list[str]:
    """Import every module of ``package`` not starting with ``_`` (and not this one)."""
    pkg = importlib.import_module(package)
    names = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "registry":
            continue
        importlib.import_module(f"{package}.{info.name}")
        names.append(info.name)
    return names
