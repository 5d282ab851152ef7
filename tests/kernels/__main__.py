"""python -m tests.kernels — the kernel matrix (see tests/kernels/__init__.py).

Profiles: the full one (default: every check, 1200 s per kernel, no overall limit) and
``--ci`` (``checks.CI_CHECKS``, hard limits of budget.CI_PER_KERNEL per kernel and
budget.CI_TOTAL overall, skips count as failures, a JSON report in build/kernels).

Exit codes: 0 every check passed or failed as tests/kernels/expected.toml says (or was
skipped outside CI), 1 a check failed unexpectedly or passed while listed as failing,
2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import budget as budget_mod
from . import checks as checks_mod
from . import images, vm
from .results import (CheckResult, failed, first_line, judge, load_expected,
                      missing_results, per_kernel, report, table)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IN_CI = os.environ.get("CI", "").lower() == "true"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the profile's defaults filled in (``--ci`` or full)."""
    ap = argparse.ArgumentParser(prog="python -m tests.kernels",
                                 description="Boot other kernels with virtme-ng (TCG) and run "
                                             "emptcp's matrix checks inside each.")
    ap.add_argument("--kernel", action="append", metavar="NAME",
                    help="kernel to boot (repeatable; default: every kernel but the host's "
                         f"series): {', '.join(images.BY_NAME)}")
    ap.add_argument("--check", action="append", metavar="NAME",
                    help="check to run (repeatable; default: all, or the CI subset with "
                         "--ci; see --list)")
    ap.add_argument("--ci", action="store_true",
                    help="the CI profile: the checks " + ", ".join(checks_mod.CI_CHECKS)
                         + f"; at most {budget_mod.CI_PER_KERNEL:.0f} s per kernel and "
                         f"{budget_mod.CI_TOTAL:.0f} s overall; skips fail; "
                         "report in build/kernels/report.json")
    ap.add_argument("--list", action="store_true", help="list kernels and checks, then exit")
    ap.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    ap.add_argument("--report", metavar="FILE",
                    help="also write the report (JSON) to FILE (--ci: "
                         "build/kernels/report.json)")
    ap.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="hard limit per kernel, boot included (default "
                         f"{budget_mod.FULL_PER_KERNEL:.0f}; --ci: "
                         f"{budget_mod.CI_PER_KERNEL:.0f})")
    ap.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                    help="hard limit for the whole run: a kernel starts only with enough of "
                         "it left, and gets at most what is left (default: none; --ci: "
                         f"{budget_mod.CI_TOTAL:.0f})")
    ap.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default 2)")
    ap.add_argument("--memory", default="2G", help="guest memory (default 2G)")
    ap.add_argument("--log-dir", default=os.path.join(REPO, "build", "kernels"),
                    help="where each kernel's full log goes (default build/kernels)")
    args = ap.parse_args(argv)
    if args.timeout is None:
        args.timeout = budget_mod.CI_PER_KERNEL if args.ci else budget_mod.FULL_PER_KERNEL
    if args.budget is None and args.ci:
        args.budget = budget_mod.CI_TOTAL
    if args.timeout <= 0 or (args.budget is not None and args.budget <= 0):
        ap.error("--timeout and --budget take a positive number of seconds")
    if args.report is None and args.ci:
        args.report = os.path.join(args.log_dir, "report.json")
    if args.check is None and args.ci:
        args.check = list(checks_mod.CI_CHECKS)
    args.profile = "ci" if args.ci else "full"
    #: a skip (no qemu, kernel not downloadable) is a failure in CI
    args.strict = args.ci or IN_CI
    return args


def list_all() -> None:
    print("kernels:")
    for k in images.KERNELS:
        default = "" if k in images.default_kernels() else "  (host series: not by default)"
        print(f"  {k.name:<6} {k.package}{default}")
    print("checks:")
    for c in checks_mod.CHECKS:
        what = f"emptcp demo {c.demo}" if c.demo else " ".join(c.nodes)
        ci = "  (--ci)" if c.name in checks_mod.CI_CHECKS else ""
        print(f"  {c.name:<22} {c.what}{ci}\n  {'':<22} [{what}]")


def unbootable(kernel: str, names: list[str], why: str, strict: bool = IN_CI
               ) -> list[CheckResult]:
    """Results for a kernel that could not be booted: failures under CI, skips elsewhere."""
    say(f"[{kernel}] cannot boot: {why}")
    return missing_results(kernel, names, [], f"kernel not booted: {why}",
                           status="fail" if strict else "skip")


def over_budget(kernel: str, names: list[str], b: budget_mod.Budget) -> list[CheckResult]:
    """Results for a kernel the overall budget left no time for: failures (the budget is
    there to keep CI within its limit, and a kernel not run proves nothing)."""
    left = b.remaining() or 0.0
    say(f"[{kernel}] not started: {left:.0f} s left of the overall budget")
    return missing_results(kernel, names, [], f"not run: overall time budget exhausted "
                           f"({left:.0f} s of {b.total:.0f} s left, a kernel needs "
                           f"{b.min_start:.0f} s to start)")


def run_kernel(k: images.Kernel, names: list[str], args: argparse.Namespace
               ) -> tuple[list[CheckResult], dict]:
    """Fetch, boot and run one kernel; its results and timing."""
    t0 = budget_mod.now()
    try:
        vmlinuz = images.fetch(k)
    except images.ImageError as e:
        return (unbootable(k.name, names, str(e), args.strict),
                {"kernel": k.name, "error": str(e)})
    timeout = min(args.timeout, max(1.0, args.timeout - (budget_mod.now() - t0)))
    fetch_s = round(budget_mod.now() - t0, 1)
    os.makedirs(args.log_dir, exist_ok=True)
    log_path = os.path.join(args.log_dir, f"{k.name}.log")
    say(f"[{k.name}] booting {vmlinuz} (TCG, log: {log_path})")

    def progress(what: str, b: vm.Boot) -> None:
        if what == "start":
            say(f"[{k.name}] guest {b.release} up after {b.boot_seconds:.0f} s")
        else:
            r = b.results[-1]
            say(f"[{k.name}] {r.check}: {r.status.upper()} ({r.seconds:.0f} s)"
                + (f" {first_line(r.reason)}" if r.reason else ""))
    with open(log_path, "w") as log:
        b = vm.run(k.name, vmlinuz, REPO, names, log, timeout=timeout, cpus=args.cpus,
                   memory=args.memory, objdir=args.objdir, on_event=progress)
    results = list(b.results)
    if b.boot_seconds is None:
        results = unbootable(k.name, names, f"{b.error} — see {log_path}", args.strict)
    elif not b.done or b.error:
        results += missing_results(k.name, names, results, f"{b.error} — see {log_path}")
    timing = {"kernel": k.name, "release": b.release, "fetch_s": fetch_s,
              "boot_s": b.boot_seconds, "total_s": b.seconds, "limit_s": round(timeout, 1),
              "log": log_path, "error": b.error}
    say(f"[{k.name}] done in {b.seconds:.0f} s (boot {b.boot_seconds} s)"
        + (f": {b.error}" if b.error else ""))
    return results, timing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        list_all()
        return 0
    try:
        kernels = images.select(args.kernel)
        selected = checks_mod.select(args.check)
        names = [c.name for c in selected]
        expected = load_expected()
    except ValueError as e:
        say(f"python -m tests.kernels: error: {e}")
        return 2
    if os.geteuid() != 0:
        say("python -m tests.kernels: error: run as root (apt-get download, qemu, BPF in the guest)")
        return 2
    if not os.path.exists(os.path.join(REPO, ".venv", "bin", "python")):
        say(f"python -m tests.kernels: error: {REPO}/.venv is missing: run ./install.sh first")
        return 2
    b = budget_mod.Budget(per_kernel=args.timeout, total=args.budget, clock=budget_mod.now)
    say(f"python -m tests.kernels: profile {args.profile}: {len(kernels)} kernel(s) "
        f"({', '.join(k.name for k in kernels)}), checks {', '.join(names)}; "
        f"budget {b.describe()}")
    results: list[CheckResult] = []
    timings: list[dict] = []
    missing = vm.missing_prereqs(os.path.join(REPO, ".venv", "bin"))
    args.objdir = ""
    if checks_mod.needs_objects(selected) and not missing:
        try:
            args.objdir = vm.build_objects(REPO)
        except RuntimeError as e:
            say(f"python -m tests.kernels: error: {e}")
            return 1
    for k in kernels:
        if missing:
            results += unbootable(k.name, names, "missing " + "; ".join(missing), args.strict)
            timings.append({"kernel": k.name, "error": "missing prerequisites"})
            continue
        limit = b.for_kernel()
        if limit is None:
            results += over_budget(k.name, names, b)
            timings.append({"kernel": k.name, "error": "overall time budget exhausted"})
            continue
        args_k = argparse.Namespace(**{**vars(args), "timeout": limit})
        r, t = run_kernel(k, names, args_k)
        results += r
        timings.append(t)
    results = judge(results, expected)
    knames = [k.name for k in kernels]
    doc = report(results, timings, profile=args.profile,
                 budget={"per_kernel_s": args.timeout, "total_s": args.budget,
                         "elapsed_s": round(b.elapsed(), 1)})
    if args.report:
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report, "w") as f:
            json.dump(doc, f, indent=1)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(table(results, knames, names))
        print()
        for line in per_kernel(results, knames):
            print(line)
        for t in timings:
            if "total_s" in t:
                print(f"kernel {t['kernel']} ({t['release'] or '?'}): boot {t['boot_s']} s, "
                      f"total {t['total_s']} s of {t['limit_s']} s, fetch {t['fetch_s']} s; "
                      f"log {t['log']}")
        print(f"matrix ({args.profile}): {b.elapsed():.0f} s; budget {b.describe()}"
              + (f"; report {args.report}" if args.report else ""))
    return 1 if failed(results) else 0


if __name__ == "__main__":
    sys.exit(main())
