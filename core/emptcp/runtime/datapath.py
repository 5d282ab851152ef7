"""Data-path plumbing: load the entry and stage objects around one set of
shared maps, install stage programs in a generation's slots, write compiled
tables, flip the active generation, read counters.

Uses only the bindings' public API (ObjectSpec / MapSpec.reuse / Map).  The
shared maps are created by the first object loaded (the entry) and reused by
every later object, exactly what the pinning loader does with pinned maps.
"""
from __future__ import annotations

import os
from typing import Iterable

from .. import abi
from ..chain.compiler import CompiledTables, hook_type
from ..bpf.maps import Map
from ..bpf.objects import Object, ObjectSpec
from ..bpf.programs import Program

__all__ = ["Datapath"]


class Datapath:
    """Owns the loaded objects; close() (or ``with``) releases everything."""

    def __init__(self, entry_obj: str, maps: dict[str, Map] | None = None) -> None:
        self.objects: list[Object] = []
        self.stages: dict[tuple[str, str], Program] = {}
        self.maps: dict[str, Map] = {}
        entry = self._load(entry_obj, maps or {})
        for name in abi.SHARED_MAPS:
            self.maps[name] = (maps or {}).get(name) or entry.maps[name]
        self.entry = {
            "xdp": entry.programs["emptcp_xdp_entry"],
            "tc-ingress": entry.programs["emptcp_tc_ingress_entry"],
            "tc-egress": entry.programs["emptcp_tc_egress_entry"],
        }

    def _load(self, path: str, maps: dict[str, Map]) -> Object:
        spec = ObjectSpec(path)
        try:
            for name, m in maps.items():
                if name in spec.maps:
                    spec.maps[name].reuse(m)
            obj = spec.load()
        except BaseException:
            spec.close()
            raise
        self.objects.append(obj)
        return obj

    # ---- stages ---------------------------------------------------------
    def load_stage(self, name: str, path: str) -> dict[str, Program]:
        """Load a stage object; its programs emptcp_<name>_xdp/_tc become installable."""
        obj = self._load(path, self.maps)
        found = {}
        for htype in ("xdp", "tc"):
            prog = obj.programs.get(f"emptcp_{name}_{htype}")
            if prog is not None:
                self.stages[(name, htype)] = found[htype] = prog
        if not found:
            raise ValueError(f"{path}: no program emptcp_{name}_xdp or emptcp_{name}_tc")
        return found

    def load_dir(self, directory: str, names: Iterable[str]) -> None:
        for n in names:
            self.load_stage(n, os.path.join(directory, f"{n}.o"))

    def install(self, gen: int, assignments: dict[tuple[str, str], int]) -> None:
        """Put programs in generation ``gen``: {(stage, "xdp"|"tc"): slot}."""
        for (name, htype), slot in assignments.items():
            table = self.maps["emptcp_xdp_progs" if htype == "xdp" else "emptcp_tc_progs"]
            table.put(abi.prog_key(gen, slot).to_bytes(4, "little"),
                      self.stages[(name, htype)].fd.to_bytes(4, "little"))

    def uninstall(self, gen: int, htype: str, slot: int) -> None:
        table = self.maps["emptcp_xdp_progs" if htype == "xdp" else "emptcp_tc_progs"]
        table.delete(abi.prog_key(gen, slot).to_bytes(4, "little"))

    def auto_slots(self) -> dict[tuple[str, str], int]:
        """One slot per loaded (stage, hook type), numbered from 1 in load order."""
        out, nxt = {}, {"xdp": 1, "tc": 1}
        for (name, htype) in self.stages:
            out[(name, htype)] = nxt[htype]
            nxt[htype] += 1
        return out

    # ---- tables ---------------------------------------------------------
    def set_hook(self, ifindex: int, kind: str, hook_id: int) -> None:
        hook_type(kind)
        self.maps["emptcp_hooks"].put(abi.HOOK_KEY.pack(ifindex, abi.KINDS[kind]),
                                      abi.HOOK_VAL.pack(hook_id))

    def write_tables(self, tables: CompiledTables, clear_gen: bool = True) -> None:
        pol, par = self.maps["emptcp_policies"], self.maps["emptcp_params"]
        if clear_gen:  # a generation is rewritten as a whole, never merged
            empty = abi.Policy().pack()
            base = abi.policy_index(tables.gen, 0, 0)
            for i in range(abi.MAX_HOOKS * abi.MAX_POLICIES):
                if base + i not in tables.policies:
                    pol.put((base + i).to_bytes(4, "little"), empty)
            lo = abi.param_key(tables.gen, 0, 0, 0, 0)
            hi = abi.param_key(tables.gen + 1, 0, 0, 0, 0)
            for k in [k for k in par.raw_keys() if lo <= int.from_bytes(k, "little") < hi]:
                par.delete(k)
        for idx, raw in tables.policies.items():
            pol.put(idx.to_bytes(4, "little"), raw)
        for key, blob in tables.params.items():
            par.put(key.to_bytes(4, "little"), blob)

    def flip(self, gen: int) -> None:
        self.maps["emptcp_state"].put((0).to_bytes(4, "little"),
                                      abi.STATE.pack(gen, abi.ABI_VERSION))

    @property
    def active_gen(self) -> int:
        return abi.STATE.unpack(self.maps["emptcp_state"].lookup((0).to_bytes(4, "little")))[0]

    # ---- counters -------------------------------------------------------
    def stage_stats(self, hook: int, policy: int, phase: int, stage: int) -> dict[str, int]:
        raw = self.maps["emptcp_stage_stats"].lookup(
            abi.stage_stat_index(hook, policy, phase, stage).to_bytes(4, "little"))
        return abi.sum_percpu(raw, abi.SS_FIELDS)

    def hook_stats(self, hook: int) -> dict[str, int]:
        raw = self.maps["emptcp_hook_stats"].lookup(hook.to_bytes(4, "little"))
        return abi.sum_percpu(raw, abi.HS_FIELDS)

    def clear_stats(self) -> None:
        for name, size in (("emptcp_stage_stats", abi.STAGE_STAT.size),
                           ("emptcp_hook_stats", abi.HOOK_STAT.size)):
            m = self.maps[name]
            for i in range(m.info.max_entries):
                m.put(i.to_bytes(4, "little"), b"\0" * size)

    # ---- lifetime -------------------------------------------------------
    def close(self) -> None:
        for obj in reversed(self.objects):
            obj.close()
        self.objects.clear()

    def __enter__(self) -> "Datapath":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
