"""What the scenario tests share: the shipped policy templates (emptcp/cli/scenarios,
the ones ``emptcp demo`` uses) applied with emptcp's API inside a rig namespace, and a
ledger that checks, outside any retried test, the transfers that timing tests made.

The verdicts are the tests' own: the kernel (tests/kernel.py: nstat, ss, ip link) and
the wire (tcpdump + tshark through emptcp.rig.capture). Nothing here reads
emptcp.cli.demo's checks.
"""
from __future__ import annotations

import os
import string
import uuid
from typing import Any

import emptcp.cli

from .. import kernel

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(emptcp.cli.__file__)), "scenarios")


def render(name: str, rig: Any, **extra: Any) -> str:
    with open(os.path.join(SCENARIOS, f"{name}.toml")) as f:
        text = f.read()
    v: dict[str, Any] = {}
    for p in rig.paths:
        v.update({f"client_if{p.index}": p.client_if, f"server_if{p.index}": p.server_if,
                  f"client_addr{p.index}": p.client_addr, f"server_addr{p.index}": p.server_addr})
    v.update({k: (str(x).lower() if isinstance(x, bool) else x) for k, x in extra.items()})
    return string.Template(text).substitute(v)


class Policy:
    """Scenario templates applied in one rig namespace under a private pin root."""

    def __init__(self, side: Any, tmp_path: Any) -> None:
        self.side, self.tmp = side, tmp_path
        self.pin_root = f"/sys/fs/bpf/emptcp-sc-{uuid.uuid4().hex[:8]}"
        self.n = 0

    def apply(self, name: str, rig: Any, **extra: Any) -> None:
        from emptcp import api
        self.n += 1
        path = self.tmp / f"{name}-{self.n}.toml"
        path.write_text(render(name, rig, **extra))
        with self.side.enter():   # interface names resolve in the rig namespace
            api.apply(str(path), self.pin_root)

    def stage_packets(self) -> dict[str, dict[str, int]]:
        """{policy: {"a1:set_flow_priority": packets, "s0:service": ...}} (emptcp status)."""
        st = kernel.emptcp_status(self.side.ns, self.pin_root)
        out: dict[str, dict[str, int]] = {}
        for h in st.get("hooks", []):
            for p in h["policies"]:
                d = out.setdefault(p["name"], {})
                for kind in ("selectors", "actions"):
                    for i, s in enumerate(p[kind]):
                        d[f"{kind[0]}{i}:{s['use']}"] = s["counters"]["packets"]
        return out

    def detach(self) -> None:
        from emptcp import api
        if os.path.exists(self.pin_root):
            api.detach(pin_root=self.pin_root, all=True)

    def __enter__(self) -> "Policy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.detach()


def rig(**kw: Any):
    from emptcp.rig import Rig
    return Rig(prefix="emptcp-sc", **kw)


def both_paths_carry(rig: Any, side: str, key: str, since: list[dict[str, int]],
                     nbytes: int) -> bool:
    """True once every path's ``key`` (e.g. "tx_bytes") on ``side`` grew by ``nbytes``."""
    now = path_links(rig, side)
    return all(n[key] - b[key] >= nbytes for n, b in zip(now, since))


def path_links(rig: Any, side: str) -> list[dict[str, int]]:
    s = getattr(rig, side)
    return [kernel.link(s.ns, p.client_if if side == "client" else p.server_if)
            for p in rig.paths]
