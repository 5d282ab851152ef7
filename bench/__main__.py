"""``python -m bench [--quick] [--json] [--only PATTERN] [--list]`` (see bench/README.md)."""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import traceback

from .registry import REGISTRY, Context, Registry, Result, discover


def run(registry: Registry, names: list[str], ctx: Context,
        log=sys.stderr) -> tuple[list[Result], list[tuple[str, str]]]:
    """Run the named benchmarks; return (results, [(name, error), ...])."""
    results: list[Result] = []
    failures: list[tuple[str, str]] = []
    for name in names:
        t0 = time.monotonic()
        try:
            out = registry.benchmarks[name](ctx)
            out = [out] if isinstance(out, Result) else list(out)
            if not out or not all(isinstance(r, Result) for r in out):
                raise TypeError(f"benchmark {name!r} must return Result objects, got {out!r}")
            results.extend(out)
            print(f"[bench] {name}: {len(out)} result(s) in {time.monotonic() - t0:.1f}s",
                  file=log)
        except Exception as e:  # noqa: BLE001 -- reported, and the exit status says so
            failures.append((name, f"{type(e).__name__}: {e}"))
            print(f"[bench] {name}: FAILED\n{traceback.format_exc()}", file=log)
    return results, failures


def format_table(results: list[Result]) -> str:
    head = ("benchmark", "emptcp", "unit", "emptcp ops/s", "baseline", "baseline value",
            "ratio")
    rows = []
    for r in results:
        rows.append((r.name, f"{r.value:.3g}", r.unit, f"{r.ops_per_s:,.0f}",
                     r.baseline or "-",
                     f"{r.baseline_value:.3g}" if r.baseline_value is not None else "-",
                     f"{r.ratio:.2f}x" if r.ratio is not None else "-"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = ["ratio = baseline cost / emptcp cost (same unit): > 1 means emptcp is faster",
           line(head), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench",
                                 description="emptcp benchmarks, each beside a baseline "
                                             "measured in the same run.")
    ap.add_argument("--json", action="store_true", help="print results as a JSON list")
    ap.add_argument("--quick", action="store_true", help="small sizes, one round (smoke run)")
    ap.add_argument("--only", metavar="PATTERN", action="append", default=[],
                    help="run benchmarks whose name matches this regex (re.search); repeatable")
    ap.add_argument("--list", action="store_true", help="list benchmark names and exit")
    args = ap.parse_args(argv)

    discover()
    names = sorted(REGISTRY.benchmarks)
    if args.only:
        pats = [re.compile(p) for p in args.only]
        names = [n for n in names if any(p.search(n) for p in pats)]
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"no benchmark matches {args.only} (have: {', '.join(sorted(REGISTRY.benchmarks))})",
              file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="emptcp-bench-") as tmp:
        results, failures = run(REGISTRY, names, Context(args.quick, tmp))

    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2, ensure_ascii=False))
    else:
        print(format_table(results))
    for name, err in failures:
        print(f"FAILED {name}: {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
