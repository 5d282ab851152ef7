"""A data path held in memory: the entry and stage objects loaded around one set of
shared maps, without pins or attachments -- what ``BPF_PROG_TEST_RUN`` tests and
:class:`emptcp.plugins.testing.ChainHarness` run packets through.

Objects are loaded with the same loader users get (:func:`emptcp.bpf.pinning.open_object`)
and tables are written by the same :class:`~emptcp.runtime.generation.GenerationWriter`
as ``emptcp apply``; the engine differs only in opening the maps from their pins.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from .. import abi
from ..bpf.maps import Map
from ..bpf.objects import Object
from ..bpf.pinning import ObjectDescription, open_object
from ..bpf.programs import Program
from ..chain.compiler import HookPolicies
from .generation import GenerationWriter, Written
from .instances import (FUSED, ActionSource, InstancePlan, file_sha256, fused_source,
                        install_instances, merge, plan_instances, sweep)

__all__ = ["Datapath"]


class Datapath:
    """Owns the loaded objects; :meth:`close` (or ``with``) releases everything.

    ``maps`` reuses existing shared maps; by default the entry object creates them.
    """

    def __init__(self, entry_obj: str, maps: Mapping[str, Map] | None = None) -> None:
        self.objects: list[Object] = []
        self.stages: dict[tuple[str, str], Program] = {}     # (stage, "xdp"|"tc") -> program
        #: (stage, "xdp"|"tc") -> where its program comes from (action instances load it)
        self.sources: dict[tuple[str, str], ActionSource] = {}
        #: runs of built-in actions as fused instances (False: one instance per action):
        #: the fused program of the entry's build (beside it), built-in actions from there
        self.fuse = True
        fused = os.path.join(os.path.dirname(entry_obj), "fused.o")
        if os.path.isfile(fused):
            self.sources.update({(FUSED, t): fused_source(t, fused) for t in ("xdp", "tc")})
        #: generation -> its action instances (InstancePlan.first/instances)
        self.plans: dict[int, InstancePlan] = {}
        entry = self.load_object(entry_obj, maps=maps or {})
        self.maps: dict[str, Map] = {n: (maps or {}).get(n) or entry.maps[n]
                                     for n in abi.SHARED_MAPS}
        self.writer = GenerationWriter(self.maps)
        self.entry = {kind: entry.programs[name] for kind, name in abi.ENTRY_PROGRAMS.items()}
        self._written: dict[int, Written] = {}

    def load_object(self, path: str, maps: Mapping[str, Map] | None = None,
                    programs: Iterable[str] | None = None) -> Object:
        """Load an object with the shared maps reused (all programs, or only ``programs``)."""
        obj, _ = open_object(ObjectDescription(path),
                             maps=self.maps if maps is None else maps, autoload=programs)
        self.objects.append(obj)
        return obj

    # ---- stages ---------------------------------------------------------
    def load_stage(self, name: str, path: str,
                   programs: Mapping[str, str] | None = None) -> dict[str, Program]:
        """Load a stage object; ``programs`` maps "xdp"/"tc" to program names
        (default ``emptcp_<name>_xdp`` / ``emptcp_<name>_tc``, those present)."""
        obj = self.load_object(path, programs=None if programs is None else programs.values())
        names = programs or {t: f"emptcp_{name}_{t}" for t in ("xdp", "tc")}
        found = {t: obj.programs[p] for t, p in names.items() if p in obj.programs}
        if not found:
            raise ValueError(f"{path}: no program {' or '.join(names.values())}")
        digest = file_sha256(path)
        for t, prog in found.items():
            self.stages[(name, t)] = prog
            self.sources[(name, t)] = ActionSource(path, names[t], digest)
        return found

    def load_dir(self, directory: str, names: Iterable[str]) -> None:
        for n in names:
            self.load_stage(n, os.path.join(directory, f"{n}.o"))

    def install(self, gen: int, order: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], int]:
        """Install the loaded stages (or ``order``: (stage, type) pairs) in ``gen``'s slots;
        returns {(stage, type): slot}."""
        keys = list(order) if order is not None else list(self.stages)
        slots = self.writer.install(gen, {(t, n): self.stages[(n, t)].fd for n, t in keys})
        return {(n, t): s for (t, n), s in slots.items()}

    # ---- tables ---------------------------------------------------------
    def set_hook(self, ifindex: int, kind: str, hook_id: int) -> None:
        self.writer.set_hook(ifindex, kind, hook_id)

    def write(self, gen: int, hooks: Iterable[HookPolicies],
              slots: Mapping[tuple[str, str], int]) -> None:
        """Rebuild generation ``gen``'s tables from ``hooks`` (a generation is rewritten as
        a whole, never merged): clear what was written there last, write anew. The
        installed selector programs stay (:meth:`install` put them there); action
        instances are loaded as needed, and those no written generation uses freed."""
        hooks = list(hooks)
        known = merge(p.keys() for p in self.plans.values())
        plan = plan_instances(hooks, self.sources, known, fuse=self.fuse)
        install_instances(plan, self.maps, known)
        self.writer.clear(gen, self._written.get(gen), programs=False)
        self._written[gen] = self.writer.write(gen, hooks, {(t, n): s for (n, t), s in slots.items()},
                                               plan.first)
        self.plans[gen] = plan
        sweep(self.maps, [p.keys() for p in self.plans.values()], candidates=known)

    def flip(self, gen: int) -> None:
        self.writer.flip(gen)

    @property
    def active_gen(self) -> int:
        return self.writer.active()[0]

    # ---- counters -------------------------------------------------------
    def stage_stats(self, hook: int, policy: int, phase: int, stage: int) -> dict[str, int]:
        return self.writer.stage_stats(hook, policy, phase, stage)

    def hook_stats(self, hook: int) -> dict[str, int]:
        return self.writer.hook_stats(hook)

    def clear_stats(self) -> None:
        self.writer.zero_all_stats()

    # ---- lifetime -------------------------------------------------------
    def close(self) -> None:
        for obj in reversed(self.objects):
            obj.close()
        self.objects.clear()

    def __enter__(self) -> "Datapath":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
