"""Packet and byte rates from two ``Engine.status()`` readings (``emptcp top``).

Rates are differences of the same counters status shows, divided by the
time between the two readings; nothing is counted a second time. A counter
that went down (a policy changed and its counters were zeroed, or the hook
was re-created) has no rate for that interval: ``None``, not a negative or a
made-up number.
"""
from __future__ import annotations

from typing import Any

__all__ = ["rates"]

HOOK_KEYS = ("packets", "matched", "unmatched", "missed_tail_calls", "errors")


def _rate(a: int | None, b: int | None, seconds: float) -> float | None:
    if a is None or b is None or b < a or seconds <= 0:
        return None
    return (b - a) / seconds


def rates(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Per hook, policy and stage rates (per second) between two status readings."""
    out: dict[str, Any] = {"interval_s": seconds, "applied": after.get("applied", False),
                           "generation": after.get("generation"),
                           "generation_changed": before.get("generation")
                           != after.get("generation"), "hooks": []}
    old = {(h["name"], h["interface"], h["type"]): h for h in before.get("hooks", [])}
    for h in after.get("hooks", []):
        prev = old.get((h["name"], h["interface"], h["type"]))
        pc = prev["counters"] if prev else {}
        hook = {"name": h["name"], "interface": h["interface"], "type": h["type"],
                "counters": h["counters"], "policies": []}
        for k in HOOK_KEYS:
            hook[f"{k}_per_s"] = _rate(pc.get(k), h["counters"][k], seconds)
        prev_pol = {p["name"]: p for p in (prev or {}).get("policies", [])}
        for p in h["policies"]:
            pp = prev_pol.get(p["name"])
            stages = []
            for phase in ("selectors", "actions"):
                prev_stages = (pp or {}).get(phase, [])
                for i, s in enumerate(p[phase]):
                    ps = prev_stages[i]["counters"] if (i < len(prev_stages) and
                                                        prev_stages[i]["use"] == s["use"]) else {}
                    stages.append({"phase": phase[:-1], "index": i, "use": s["use"],
                                   "packets_per_s": _rate(ps.get("packets"),
                                                          s["counters"]["packets"], seconds),
                                   "bytes_per_s": _rate(ps.get("bytes"), s["counters"]["bytes"],
                                                        seconds)})
            first_action = next(s for s in stages if s["phase"] == "action")
            first = stages[0]
            hook["policies"].append({
                "name": p["name"], "priority": p["priority"],
                # every packet the policy looked at ran its first stage; every packet
                # it matched ran its first action
                "evaluated_per_s": first["packets_per_s"],
                "matched_per_s": first_action["packets_per_s"],
                "matched_bytes_per_s": first_action["bytes_per_s"],
                "stages": stages})
        out["hooks"].append(hook)
    return out
