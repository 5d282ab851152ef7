"""python -m tests.kernels — the kernel matrix (see tests/kernels/__init__.py).

Exit codes: 0 every check passed or failed as tests/kernels/expected.toml says (or was
skipped outside CI), 1 a check failed unexpectedly or passed while listed as failing,
2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import checks as checks_mod
from . import images, vm
from .results import (CheckResult, failed, first_line, judge, load_expected,
                      missing_results, table)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IN_CI = os.environ.get("CI", "").lower() == "true"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.kernels",
                                 description="Boot other kernels with virtme-ng (TCG) and run "
                                             "emptcp's matrix checks inside each.")
    ap.add_argument("--kernel", action="append", metavar="NAME",
                    help="kernel to boot (repeatable; default: every kernel but the host's "
                         f"series): {', '.join(images.BY_NAME)}")
    ap.add_argument("--check", action="append", metavar="NAME",
                    help="check to run (repeatable; default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="list kernels and checks, then exit")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--timeout", type=float, default=1200.0,
                    help="seconds per kernel, boot included (default 1200)")
    ap.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default 2)")
    ap.add_argument("--memory", default="2G", help="guest memory (default 2G)")
    ap.add_argument("--log-dir", default=os.path.join(REPO, "build", "kernels"),
                    help="where each kernel's full log goes (default build/kernels)")
    return ap.parse_args(argv)


def list_all() -> None:
    print("kernels:")
    for k in images.KERNELS:
        default = "" if k in images.default_kernels() else "  (host series: not by default)"
        print(f"  {k.name:<6} {k.package}{default}")
    print("checks:")
    for c in checks_mod.CHECKS:
        what = f"emptcp demo {c.demo}" if c.demo else " ".join(c.nodes)
        print(f"  {c.name:<22} {c.what}\n  {'':<22} [{what}]")


def unbootable(kernel: str, names: list[str], why: str) -> list[CheckResult]:
    """Results for a kernel that could not be booted: failures under CI, skips elsewhere."""
    say(f"[{kernel}] cannot boot: {why}")
    return missing_results(kernel, names, [], f"kernel not booted: {why}",
                           status="fail" if IN_CI else "skip")


def run_kernel(k: images.Kernel, names: list[str], args: argparse.Namespace
               ) -> tuple[list[CheckResult], dict]:
    """Fetch, boot and run one kernel; its results and timing."""
    t0 = time.monotonic()
    try:
        vmlinuz = images.fetch(k)
    except images.ImageError as e:
        return unbootable(k.name, names, str(e)), {"kernel": k.name, "error": str(e)}
    fetch_s = round(time.monotonic() - t0, 1)
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
        b = vm.run(k.name, vmlinuz, REPO, names, log, timeout=args.timeout, cpus=args.cpus,
                   memory=args.memory, objdir=args.objdir, on_event=progress)
    results = list(b.results)
    if b.boot_seconds is None:
        results = unbootable(k.name, names, f"{b.error} — see {log_path}")
    elif not b.done or b.error:
        results += missing_results(k.name, names, results, f"{b.error} — see {log_path}")
    timing = {"kernel": k.name, "release": b.release, "fetch_s": fetch_s,
              "boot_s": b.boot_seconds, "total_s": b.seconds, "log": log_path,
              "error": b.error}
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
        names = [c.name for c in checks_mod.select(args.check)]
    except ValueError as e:
        say(f"python -m tests.kernels: error: {e}")
        return 2
    if os.geteuid() != 0:
        say("python -m tests.kernels: error: run as root (apt-get download, qemu, BPF in the guest)")
        return 2
    if not os.path.exists(os.path.join(REPO, ".venv", "bin", "python")):
        say(f"python -m tests.kernels: error: {REPO}/.venv is missing: run ./install.sh first")
        return 2
    results: list[CheckResult] = []
    timings = []
    missing = vm.missing_prereqs(os.path.join(REPO, ".venv", "bin"))
    try:
        args.objdir = vm.build_objects(REPO)
    except RuntimeError as e:
        say(f"python -m tests.kernels: error: {e}")
        return 1
    for k in kernels:
        if missing:
            results += unbootable(k.name, names, "missing " + "; ".join(missing))
            timings.append({"kernel": k.name, "error": "missing prerequisites"})
            continue
        r, t = run_kernel(k, names, args)
        results += r
        timings.append(t)
    results = judge(results, load_expected())
    knames = [k.name for k in kernels]
    if args.json:
        print(json.dumps({"kernels": timings, "results": [r.to_dict() for r in results]},
                         indent=1))
    else:
        print(table(results, knames, names))
        print()
        for t in timings:
            if "total_s" in t:
                print(f"kernel {t['kernel']} ({t['release'] or '?'}): boot {t['boot_s']} s, "
                      f"total {t['total_s']} s, fetch {t['fetch_s']} s; log {t['log']}")
    return 1 if failed(results) else 0


if __name__ == "__main__":
    sys.exit(main())
