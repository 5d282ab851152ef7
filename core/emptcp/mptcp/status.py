"""The MPTCP connections the applied policies act on, for ``emptcp status``.

A connection counts when one of its subflows runs over an interface that carries an
emptcp hook (its packets go through that hook's policies). Read from the kernel
(``ss -tinHM``, ``ip addr``) in the namespace emptcp runs in, never from emptcp's
own records.
"""
from __future__ import annotations

import subprocess
from typing import Any, Optional

from .stats import connections

__all__ = ["policy_connections"]


def policy_connections(status: dict[str, Any], ns: Optional[str] = None) -> dict[str, Any]:
    """``{"connections": [...], "other_connections": N}`` for a ``status()`` document.

    Each connection: token (hex, as ``ss -M``), its four-tuple, ``hooks`` and
    ``policies`` that see its packets, and its subflows (addresses, interface, ids,
    ``backup``: this side asked for backup, ``peer_backup``: the peer did, byte counters,
    and the hooks on the subflow's interface). ``error`` says why nothing could be read.
    """
    by_ifindex: dict[int, list[dict[str, Any]]] = {}
    for h in status.get("hooks", []):
        if h.get("ifindex") is not None:
            by_ifindex.setdefault(h["ifindex"], []).append(h)
    try:
        conns = connections(ns)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return {"connections": [], "other_connections": 0,
                "error": f"cannot read MPTCP connections (ss -tinHM): {e}"}
    shown, other = [], 0
    for c in conns:
        d = c.as_dict()
        hooks: set[str] = set()
        policies: set[str] = set()
        for sf in d["subflows"]:
            on = by_ifindex.get(sf["ifindex"], [])
            sf["hooks"] = sorted(h["name"] for h in on)
            hooks.update(sf["hooks"])
            policies.update(p["name"] for h in on for p in h.get("policies", []))
        if not hooks:
            other += 1
            continue
        d["hooks"], d["policies"] = sorted(hooks), sorted(policies)
        shown.append(d)
    return {"connections": shown, "other_connections": other}


def format_text(view: dict[str, Any]) -> list[str]:
    """The lines ``emptcp status`` prints for :func:`policy_connections`."""
    lines = []
    if view.get("error"):
        return [f"\nMPTCP connections: {view['error']}"]
    conns = view["connections"]
    extra = f" ({view['other_connections']} other(s) not on a hooked interface)" \
        if view.get("other_connections") else ""
    lines.append(f"\nMPTCP connections under policy: {len(conns)}{extra}")
    for c in conns:
        nb = sum(1 for s in c["subflows"] if s["backup"] or s["peer_backup"])
        lines.append(f"  token {c['token']}  {c['local']}:{c['lport']} -> {c['remote']}:{c['rport']}"
                     f"  {len(c['subflows'])} subflow(s), {nb} backup  policies "
                     f"{', '.join(c['policies'])}")
        for s in c["subflows"]:
            bk = "backup" if s["backup"] else ("peer-backup" if s["peer_backup"] else "active")
            sched = f"  picked {s['scheduler_picks']}" if "scheduler_picks" in s else ""
            lines.append(f"    {s['local']}:{s['lport']} -> {s['remote']}:{s['rport']}  "
                         f"dev {s['iface']}  id {s['loc_id']}/{s['rem_id']}  {bk:<11} "
                         f"sent {s['bytes_sent']} acked {s['bytes_acked']} "
                         f"received {s['bytes_received']}{sched}")
    return lines
