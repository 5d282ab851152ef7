#!/usr/bin/env python3
"""Run one `emptcp demo` scenario N times in a row, no retry, and print the count.

    .venv/bin/python tests/mptcp/loop_scenario.py add-subflow 50
    .venv/bin/python tests/mptcp/loop_scenario.py no-mptcp 50 [--keep DIR]

Each run is judged by the scenario's own checks (kernel and wire evidence: nstat, ss,
link counters).  A failed run's full result (checks + evidence) is written to --keep.
Exit status 0 only if every run passed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from emptcp import demo

KEYS = ("MPTcpExtDSSNotMatching", "MPTcpExtMPRstTx", "MPTcpExtMPRstRx")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("runs", type=int, nargs="?", default=50)
    ap.add_argument("--keep", default="/tmp/emptcp-loop")
    ap.add_argument("--show", action="append", default=[], metavar="KEY",
                    help="also print this evidence item of every run")
    a = ap.parse_args()
    os.makedirs(a.keep, exist_ok=True)
    passed = streak = best = 0
    t0 = time.monotonic()
    for i in range(1, a.runs + 1):
        r = demo.run_scenario(a.scenario)
        ev = r.evidence
        extra = {}
        if "client_delta" in ev:
            extra = {k[len("MPTcpExt"):]: (ev["client_delta"].get(k, 0), ev["server_delta"].get(k, 0))
                     for k in KEYS}
        failed = [c["what"] for c in r.checks if not c["ok"]] + ([r.error] if r.error else [])
        passed += r.ok
        streak = streak + 1 if r.ok else 0
        best = max(best, streak)
        print(f"run {i:3d}/{a.runs}: {'PASS' if r.ok else 'FAIL'} {r.runtime:5.1f} s"
              + (f" (client, server) {extra}" if extra else "")
              + "".join(f" {k}={ev.get(k)}" for k in a.show)
              + (f" failed: {failed}" if failed else ""), flush=True)
        if not r.ok:
            with open(os.path.join(a.keep, f"{a.scenario}-{i}.json"), "w") as f:
                json.dump(r.as_dict(), f, indent=1, default=str)
    print(f"{a.scenario}: {passed}/{a.runs} runs passed, longest streak {best}, no retry "
          f"({time.monotonic() - t0:.0f} s, kernel {os.uname().release})", flush=True)
    return 0 if passed == a.runs else 1


if __name__ == "__main__":
    sys.exit(main())
