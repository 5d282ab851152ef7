"""What is applied under a pin root, read without the apply machinery.

:class:`StatusReader` reads the active generation's description, the hook and stage
counters, how each hook is attached now and the stale attachments an interrupted apply
left -- what ``emptcp status``, ``emptcp top``, the exporter and ``emptcp events`` need.
It imports only the bindings it reads with (maps, links, the cls_bpf markers), not the
configuration layer, the compiler or the loader, so that those commands start quickly.
:class:`emptcp.runtime.engine.Engine` (apply, detach) is a ``StatusReader`` too.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
from typing import Any

from .. import DEFAULT_PIN_ROOT
from ..abi import HOOK_STAT, STAGE_STAT, STATE, stage_stat_index
from ..bpf.links import Link, tcx_query
from ..bpf.maps import Map
from ..chain.sets import CLASSIFIED
from ..errors import EmptcpError, NotFoundError
from . import tcattach
from .pinroot import PinRoot, check_on_bpffs

__all__ = ["StatusReader", "read_meta", "tcx_order"]


def read_meta(path: str) -> dict[str, Any] | None:
    """The generation description pinned at ``path`` (written by
    :func:`emptcp.runtime.engine.write_meta`: the length, then JSON in 4 KiB values), or
    None when there is none."""
    try:
        m = Map.from_pin(path, key=int)
    except NotFoundError:
        return None
    with m:
        length = struct.unpack_from("I", m[0])[0]
        raw = b"".join(m[i] for i in range(1, m.info.max_entries))[:length]
    return json.loads(raw)


class StatusReader:
    """Read (never change) the emptcp state under one pin root."""

    def __init__(self, pin_root: str = DEFAULT_PIN_ROOT) -> None:
        self.pins = PinRoot(pin_root)

    def _shared(self, name: str, **codec: Any) -> Map:
        return Map.from_pin(self.pins.map(name), **codec)

    def state(self) -> tuple[int, dict[str, Any]] | None:
        """(active generation, its description) or None when nothing is applied."""
        if not self.pins.exists() or not os.path.exists(self.pins.map("emptcp_state")):
            return None
        with self._shared("emptcp_state", key=int, value=STATE.format) as st:
            gen, abi = st[0]
        if abi == 0:  # never flipped: a first apply was interrupted before committing
            return None
        meta = read_meta(self.pins.gen(gen))
        if meta is None or not meta.get("committed"):
            return None
        return gen, meta

    def _owned_pins(self, doc: dict[str, Any] | None) -> set[str]:
        """Names under links/ the configuration ``doc`` owns (a TC hook: the TCX link or
        the cls_bpf marker, as ``doc`` attached it; either when ``doc`` does not say)."""
        keep = set()
        mech = (doc or {}).get("tc_attach")
        for h in (doc or {}).get("resolved", {}).get("hooks", []):
            if h["type"] == "xdp" or mech != "cls_bpf":
                keep.add(os.path.basename(self.pins.link(h["type"], h["interface"])))
            if h["type"] != "xdp" and mech != "tcx":
                keep.add(tcattach.cls_pin_name(h["type"], h["ifindex"]))
        return keep

    def _stale_links(self, doc: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Attachment pins the active configuration does not own (an interrupted apply's)."""
        stale = []
        if os.path.isdir(self.pins.links):
            for name in sorted(set(os.listdir(self.pins.links)) - self._owned_pins(doc)):
                path = os.path.join(self.pins.links, name)
                entry: dict[str, Any] = {"pin": path}
                with contextlib.suppress(EmptcpError, OSError):
                    if tcattach.parse_cls_pin(name):
                        entry.update(tcattach.cls_info(path) or {})
                    else:
                        with Link.from_pin(path) as link:
                            i = link.info
                            entry.update(link_id=i.id, prog_id=i.prog_id, ifindex=i.ifindex)
                stale.append(entry)
        return stale

    def status(self) -> dict[str, Any]:
        """The hooks, policies and per-stage counters of the active generation, how each
        hook is attached now, and stale attachments (what ``emptcp status --json`` prints
        before its ``"mptcp"`` part)."""
        check_on_bpffs(self.pins.root)
        current = self.state()
        out: dict[str, Any] = {"pin_root": self.pins.root, "applied": current is not None}
        out["stale"] = self._stale_links(current[1] if current else None)
        if current is None:
            out["hooks"] = []
            return out
        gen, doc = current
        out.update(generation=gen, applied_at=doc["applied_at"], digest=doc["digest"])
        stage_stats = self._shared("emptcp_stage_stats", key=int, value=STAGE_STAT.format)
        hook_stats = self._shared("emptcp_hook_stats", key=int, value=HOOK_STAT.format)
        hooks = []
        with stage_stats, hook_stats:
            for h in doc["resolved"]["hooks"]:
                hid = doc["hook_ids"][h["name"]]
                hs = [sum(col) for col in zip(*hook_stats[hid])]
                attached = self._attachment(h, doc.get("tc_attach"))
                entry = dict(h, hook_id=hid, attached=attached,
                             counters=dict(zip(("packets", "matched", "unmatched",
                                                "missed_tail_calls", "errors"), hs)))
                for pi, p in enumerate(entry["policies"]):
                    for phase, key in ((0, "selectors"), (1, "actions")):
                        for si, s in enumerate(p[key]):
                            per_cpu = stage_stats[stage_stat_index(hid, pi, phase, si)]
                            pk, by, missed = (sum(c) for c in zip(*per_cpu))
                            s["counters"] = {"packets": pk, "bytes": by,
                                             "missed_tail_calls": missed}
                            # built-in set selectors are lookups in the entry, not stages:
                            # they have no counters of their own (the hook's matched and
                            # unmatched count their outcome)
                            s["classified"] = phase == 0 and s.get("plugin") == "builtin" \
                                and s["use"] in CLASSIFIED
                hooks.append(entry)
        out["hooks"] = hooks
        return out

    def _attachment(self, h: dict[str, Any], mech: str | None = None) -> dict[str, Any] | None:
        """How the hook ``h`` (a resolved hook of a generation description) is attached
        now: its pinned XDP/TCX link, or its cls_bpf filter (looked at first when ``mech``,
        the description's ``tc_attach``, says cls_bpf); None when it is not (a cls_bpf
        marker whose filter is gone is not an attachment)."""
        def link() -> dict[str, Any] | None:
            link_path = self.pins.link(h["type"], h["interface"])
            if not os.path.exists(link_path):
                return None
            with Link.from_pin(link_path) as lk:
                i = lk.info
                attached = {"mode": "xdp" if h["type"] == "xdp" else "tcx",
                            "link_id": i.id, "prog_id": i.prog_id, "ifindex": i.ifindex}
            if h["type"] != "xdp":
                attached["tcx"] = tcx_order(h["ifindex"], h["type"], i.id)
            return attached

        def cls() -> dict[str, Any] | None:
            path = os.path.join(self.pins.links, tcattach.cls_pin_name(h["type"], h["ifindex"]))
            if h["type"] == "xdp" or not os.path.exists(path):
                return None
            info = tcattach.cls_info(path)
            return info if tcattach.cls_running(info) else None
        first, second = (cls, link) if mech == "cls_bpf" else (link, cls)
        return first() or second()


def tcx_order(ifindex: int, hook_type: str, link_id: int) -> dict[str, Any] | None:
    """Where emptcp's link runs among the TCX programs of its hook (0 = first)."""
    try:
        progs = tcx_query(ifindex, hook_type.split("-", 1)[1])
    except (EmptcpError, OSError):
        return None
    index = next((n for n, p in enumerate(progs) if p.link_id == link_id), None)
    return {"index": index, "count": len(progs), "prog_ids": [p.prog_id for p in progs]}
