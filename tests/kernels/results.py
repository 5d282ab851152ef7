"""Result lines between guest and host, and the tables built from them (pure code).

The guest prints one line per event on stdout: ``PREFIX`` + a JSON object with
``event`` = ``start`` (kernel release), ``result`` (one check) or ``done``.
Every other line (console, pytest output) is log text.
"""
from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

PREFIX = "@@emptcp-matrix@@ "
STATUSES = ("pass", "fail", "skip")
#: after judging against tests/kernels/expected.toml: a listed failure, and a listed
#: check that passed (the list is stale: the run fails until it is updated)
JUDGED = ("xfail", "xpass")
EXPECTED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected.toml")


@dataclass
class CheckResult:
    """The outcome of one check on one kernel. ``reason`` is empty on a pass."""
    kernel: str
    check: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode(event: str, **fields: Any) -> str:
    """One result line (no newline)."""
    return PREFIX + json.dumps({"event": event, **fields}, sort_keys=True, default=str)


def parse_line(line: str) -> dict[str, Any] | None:
    """The event of a result line, None for any other line.

    A line that carries the prefix but no valid event raises ValueError: the
    guest and host disagree, which must not pass silently."""
    at = line.find(PREFIX)
    if at < 0:
        return None
    payload = line[at + len(PREFIX):].strip()
    try:
        ev = json.loads(payload)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed result line ({e}): {payload[:200]!r}") from None
    if not isinstance(ev, dict) or ev.get("event") not in ("start", "result", "done"):
        raise ValueError(f"result line without a known event: {payload[:200]!r}")
    if ev["event"] == "result":
        missing = [k for k in ("check", "status") if k not in ev]
        if missing or ev["status"] not in STATUSES:
            raise ValueError(f"result line lacks {missing or 'a valid status'}: {payload[:200]!r}")
    return ev


def to_result(kernel: str, ev: dict[str, Any]) -> CheckResult:
    """A ``result`` event as the CheckResult of ``kernel``."""
    return CheckResult(kernel=kernel, check=ev["check"], status=ev["status"],
                       reason=str(ev.get("reason", "")), seconds=float(ev.get("seconds", 0.0)),
                       details=[str(d) for d in ev.get("details", [])])


def first_line(text: str, width: int = 110) -> str:
    """The first non-empty line of ``text``, cut to ``width`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[:width - 1] + "…"


def missing_results(kernel: str, expected: Iterable[str], got: Iterable[CheckResult],
                    reason: str, status: str = "fail") -> list[CheckResult]:
    """A result for every expected check the guest did not report (crash, timeout, no boot)."""
    seen = {r.check for r in got}
    return [CheckResult(kernel, c, status, reason) for c in expected if c not in seen]


def table(results: list[CheckResult], kernels: list[str], checks: list[str]) -> str:
    """A check × kernel grid, then one line per result that is not a pass (first line of
    the reason)."""
    by = {(r.kernel, r.check): r for r in results}
    w = max([len("check")] + [len(c) for c in checks])
    cols = [max(len(k), 6) for k in kernels]
    out = ["check".ljust(w) + "  " + "  ".join(k.ljust(c) for k, c in zip(kernels, cols))]
    out.append("-" * len(out[0]))
    for c in checks:
        cells = []
        for k, cw in zip(kernels, cols):
            r = by.get((k, c))
            cell = "-" if r is None else (r.status.upper() if r.status != "pass" else "pass")
            cells.append(cell.ljust(cw))
        out.append(c.ljust(w) + "  " + "  ".join(cells))
    bad = [by[(k, c)] for k in kernels for c in checks
           if (k, c) in by and by[(k, c)].status != "pass"]
    if bad:
        out.append("")
        kw = max(len(r.kernel) for r in bad)
        for r in bad:
            out.append(f"{r.kernel.ljust(kw)}  {r.check.ljust(w)}  {r.status.upper()}: "
                       f"{first_line(r.reason) or '(no reason given)'}")
    return "\n".join(out)


def load_expected(path: str = EXPECTED_FILE) -> dict[tuple[str, str], str]:
    """{(kernel, check): why} of the failures known and accepted on each kernel."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    out = {}
    for kernel, checks in data.get("kernel", {}).items():
        for check, why in checks.items():
            if not isinstance(why, str) or not why.strip():
                raise ValueError(f"{path}: kernel.{kernel}.{check}: give the reason as a string")
            out[(kernel, check)] = why
    return out


def judge(results: Iterable[CheckResult],
          expected: dict[tuple[str, str], str]) -> list[CheckResult]:
    """A failure listed for its kernel becomes XFAIL (it does not fail the run); a listed
    check that passed becomes XPASS, which does: the list must say what fails, no more."""
    out = []
    for r in results:
        why = expected.get((r.kernel, r.check))
        if why is not None and r.status == "fail":
            r = CheckResult(r.kernel, r.check, "xfail", f"expected: {why} -- got: {r.reason}",
                            r.seconds, r.details)
        elif why is not None and r.status == "pass":
            r = CheckResult(r.kernel, r.check, "xpass", f"listed as failing ({why}) but passed: "
                            "remove it from tests/kernels/expected.toml", r.seconds, r.details)
        out.append(r)
    return out


def failed(results: Iterable[CheckResult]) -> bool:
    """True when a check failed unexpectedly or passed while listed as failing (skips
    are not failures here; CI turns them into fails)."""
    return any(r.status in ("fail", "xpass") for r in results)


_INSN = re.compile(r"^\d+: \(")       # "123: (bf) r1 = r6"
_NOISE = ("processed ", "verification time", "stack depth", "max_states_per_insn",
          "mark_precise", "last_idx", "parent ", "regs=", "from ")


def complaint(log: str) -> tuple[str, str]:
    """(the verifier's complaint, the last source line it showed before it) from a
    verifier log: the last line that is not an instruction, a source line or statistics."""
    lines = [ln.rstrip() for ln in log.splitlines() if ln.strip()]
    idx, what = len(lines), ""
    for i in range(len(lines) - 1, -1, -1):
        ln = lines[i].strip()
        if ln.startswith(";") or _INSN.match(ln) or ln.startswith(_NOISE) or ln[:1].isdigit():
            continue
        idx, what = i, ln
        break
    src = next((ln.strip().lstrip("; ").strip() for ln in reversed(lines[:idx])
                if ln.strip().startswith(";")), "")
    return what, src


def headline(message: str) -> str:
    """The first line of a failure message; for a verifier rejection (whose first line only
    names the program) with the verifier's complaint and source line appended."""
    first = first_line(message, 10_000)
    if "rejected by the verifier" in first:
        what, src = complaint(message.split("rejected by the verifier", 1)[1])
        if what:
            first += f" {what}" + (f" (at: {src})" if src else "")
    return first


ALL_STATUSES = STATUSES + JUDGED


def counts(results: Iterable[CheckResult]) -> dict[str, int]:
    """How many results have each status (every status named, zeros included)."""
    out = {s: 0 for s in ALL_STATUSES}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def per_kernel(results: Iterable[CheckResult], kernels: list[str]) -> list[str]:
    """One line per kernel: its verdict (FAIL when a check failed unexpectedly or passed
    while listed as failing) and its counts."""
    rs = list(results)
    out = []
    for k in kernels:
        mine = [r for r in rs if r.kernel == k]
        c = counts(mine)
        verdict = "FAIL" if failed(mine) else ("SKIP" if mine and c["skip"] == len(mine)
                                               else "ok")
        parts = ", ".join(f"{n} {s}" for s, n in c.items() if n)
        out.append(f"kernel {k}: {verdict} ({parts or 'no results'})")
    return out


def report(results: list[CheckResult], kernels: list[dict[str, Any]], *, profile: str,
           budget: dict[str, Any]) -> dict[str, Any]:
    """The run as one JSON document (``--report``; ``--json`` prints it)."""
    return {"profile": profile, "budget": budget, "kernels": kernels,
            "counts": counts(results), "failed": failed(results),
            "results": [r.to_dict() for r in results]}


def load_report(text: str) -> tuple[dict[str, Any], list[CheckResult]]:
    """A report written by :func:`report`, and its results; ValueError when it is not one."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a matrix report: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ValueError("not a matrix report: no results list")
    out = []
    for d in doc["results"]:
        if not isinstance(d, dict) or d.get("status") not in ALL_STATUSES \
                or not {"kernel", "check"} <= set(d):
            raise ValueError(f"not a matrix report: bad result {str(d)[:200]!r}")
        out.append(CheckResult(kernel=str(d["kernel"]), check=str(d["check"]),
                               status=d["status"], reason=str(d.get("reason", "")),
                               seconds=float(d.get("seconds", 0.0)),
                               details=[str(x) for x in d.get("details", [])]))
    return doc, out
