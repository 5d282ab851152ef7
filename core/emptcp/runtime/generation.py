"""The one writer of generations: everything a packet reads, written into the shared maps.

An apply (:class:`emptcp.runtime.engine.Engine`, maps opened from their pins) and the
test harness (:class:`emptcp.plugins.testing.ChainHarness`, maps of a freshly loaded
entry object) both go through :class:`GenerationWriter`, so ``BPF_PROG_TEST_RUN``
tests exercise the same table writing as ``emptcp apply``.

A generation is written while another one is active and becomes visible with one
map update (:meth:`GenerationWriter.flip`); see docs/abi.md sections 4-5::

    w = GenerationWriter(maps)                 # {name: emptcp.Map} of abi.SHARED_MAPS
    w.clear(gen, previous_written)             # exactly what the last writer of gen wrote
    slots = w.install(gen, {("xdp", "mptcp_subtype"): prog_fd, ...})   # program selectors
    # actions: program instances (emptcp.runtime.instances), shared by generations
    written = w.write(gen, hooks, slots, first_action_keys)  # policies, blobs, classification
    w.flip(gen)
"""
from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .. import abi
from ..bpf.maps import Map
from ..errors import EmptcpError, NotFoundError

if TYPE_CHECKING:
    from ..chain.compiler import HookPolicies

__all__ = ["GenerationWriter", "Written", "PROG_ARRAYS"]

#: program type ("xdp" | "tc") -> its prog array (the kernel ties a prog array to one type)
PROG_ARRAYS = {"xdp": "emptcp_xdp_progs", "tc": "emptcp_tc_progs"}


def _u32(i: int) -> bytes:
    return i.to_bytes(4, "little")


@dataclass
class Written:
    """The table entries one write of a generation made: the next clear removes
    exactly these (they are stored in the generation's description)."""
    policies: list[int] = field(default_factory=list)
    params: list[int] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)   # program type -> highest slot
    #: classification: hook-rules and rule-terms indices, rows written (classes 1..rows);
    #: keys and prefixes carry their generation and are found by scanning
    hook_rules: list[int] = field(default_factory=list)
    rule_terms: list[int] = field(default_factory=list)
    rows: int = 0
    port_tables: list[int] = field(default_factory=list)
    classify: dict[str, Any] = field(default_factory=dict)   # CompiledTables.classify

    def as_dict(self) -> dict[str, Any]:
        return {"policies": self.policies, "params": self.params, "slots": self.slots,
                "hook_rules": self.hook_rules, "rule_terms": self.rule_terms, "rows": self.rows,
                "port_tables": self.port_tables, "classify": self.classify}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Written":
        return cls(list(d.get("policies", [])), list(d.get("params", [])),
                   dict(d.get("slots", {})), list(d.get("hook_rules", [])),
                   list(d.get("rule_terms", [])), int(d.get("rows", 0)),
                   list(d.get("port_tables", [])), dict(d.get("classify", {})))


class GenerationWriter:
    """Writes generations, hook ids and counters into one set of shared maps.

    ``maps`` holds at least the tables named in :data:`emptcp.abi.SHARED_MAPS`
    that the writer touches; the caller owns them (and closes them).
    """

    def __init__(self, maps: Mapping[str, Map]) -> None:
        missing = [n for n in ("emptcp_policies", "emptcp_params", "emptcp_state",
                               *PROG_ARRAYS.values()) if n not in maps]
        if missing:
            raise EmptcpError(f"generation writer needs the shared maps {', '.join(missing)}")
        self.maps = maps

    # ---- one generation ------------------------------------------------------
    def clear(self, gen: int, written: Written | None, *, programs: bool = True) -> None:
        """Empty generation ``gen`` before it is rebuilt: exactly the entries ``written``
        lists, or every entry of the generation when that is unknown. ``programs=False``
        keeps its prog-array slots (a caller that installs programs once, then rewrites
        tables)."""
        if written is None:
            written = Written(
                [abi.policy_index(gen, 0, 0) + i for i in range(abi.MAX_HOOKS * abi.MAX_POLICIES)],
                self._param_keys_of(gen), {t: abi.SLOTS_PER_GEN - 1 for t in PROG_ARRAYS},
                [abi.hook_rules_index(gen, h) for h in range(abi.MAX_HOOKS)], [],
                abi.MAX_CLASSES - 1,
                [gen * abi.PORT_TABLES_PER_GEN + t for t in range(abi.PORT_TABLES_PER_GEN)])
        if not programs:
            written = Written(written.policies, written.params, {}, written.hook_rules,
                              written.rule_terms, written.rows, written.port_tables)
        # the hook headers first: from here on no packet of this generation classifies
        self._zero("emptcp_hook_rules", written.hook_rules, abi.HOOK_RULES.size)
        self._zero("emptcp_rule_terms", written.rule_terms, abi.RULE_TERMS.size)
        self._zero("emptcp_rows", [abi.row_index(gen, c) for c in range(1, written.rows + 1)],
                   abi.RULES.size)
        for t in written.port_tables:
            self._zero("emptcp_ports", list(range(t << 16, (t + 1) << 16)), abi.PORT_CLASS.size)
        stale = [k for k in self.maps["emptcp_keys"].raw_keys() if k[0] == gen]
        if stale:
            self.maps["emptcp_keys"].delete_batch(stale)
        prefixes = self.maps["emptcp_prefixes"]   # LPM tries have no batch operations
        for k in [k for k in prefixes.raw_keys() if k[4] == gen]:
            with contextlib.suppress(NotFoundError):
                prefixes.delete(k)
        for htype, top in written.slots.items():
            table = self.maps[PROG_ARRAYS[htype]]
            for slot in range(1, top + 1):
                with contextlib.suppress(NotFoundError):
                    table.delete(_u32(abi.prog_key(gen, slot)))
        if written.policies:
            self.maps["emptcp_policies"].update_batch_packed(
                struct.pack(f"{len(written.policies)}I", *written.policies),
                bytes(abi.POLICY.size * len(written.policies)))
        if written.params:
            with contextlib.suppress(NotFoundError):
                self.maps["emptcp_params"].delete_batch([_u32(k) for k in written.params])

    def _zero(self, name: str, indices: list[int], size: int) -> None:
        if indices:
            self.maps[name].update_batch_packed(struct.pack(f"{len(indices)}I", *indices),
                                                bytes(size * len(indices)))

    def _param_keys_of(self, gen: int) -> list[int]:
        lo, hi = abi.param_key(gen, 0, 0, 0, 0), abi.param_key(gen + 1, 0, 0, 0, 0)
        keys = (int.from_bytes(k, "little") for k in self.maps["emptcp_params"].raw_keys())
        return [k for k in keys if lo <= k < hi]

    def install(self, gen: int, programs: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        """Put programs in ``gen``'s prog-array slots: ``{(type, stage): prog fd}`` ->
        ``{(type, stage): slot}``, slots numbered from 1 per program type in order."""
        slots: dict[tuple[str, str], int] = {}
        nxt = dict.fromkeys(PROG_ARRAYS, 1)
        for (htype, name), fd in programs.items():
            slot = nxt[htype]
            if slot >= abi.SLOTS_PER_GEN:
                raise EmptcpError(f"more than {abi.SLOTS_PER_GEN - 1} {htype} stages in one "
                                  "configuration")
            nxt[htype] += 1
            self.maps[PROG_ARRAYS[htype]].put(_u32(abi.prog_key(gen, slot)), _u32(fd))
            slots[(htype, name)] = slot
        return slots

    def write(self, gen: int, hooks: Iterable[HookPolicies],
              slots: Mapping[tuple[str, str], int],
              act_keys: Mapping[tuple[int, int], int] | None = None) -> Written:
        """Compile ``hooks`` (:mod:`emptcp.chain.compiler`, the one place that knows the
        table bytes) and write ``gen``'s policies and parameter blobs; return what was
        written. ``slots`` is what :meth:`install` returned, ``act_keys`` the first
        action instance of each (hook id, policy) (:class:`InstancePlan.first`)."""
        from ..chain.compiler import compile_generation   # not needed to read counters
        tables = compile_generation(gen, list(hooks), {(n, t): s for (t, n), s in slots.items()},
                                    act_keys)
        if tables.params:
            self.maps["emptcp_params"].update_batch([(_u32(k), v) for k, v in tables.params.items()])
        if tables.policies:
            self.maps["emptcp_policies"].update_batch(
                [(_u32(k), v) for k, v in tables.policies.items()])
        # classification: rows and rule terms before the keys that lead to them, the
        # hook headers last (they make the hook's rules live for this generation)
        for name, entries in (("emptcp_rows", tables.rows), ("emptcp_rule_terms", tables.rule_terms),
                              ("emptcp_ports", tables.ports)):
            if entries:
                self.maps[name].update_batch([(_u32(k), v) for k, v in entries.items()])
        for name, entries in (("emptcp_keys", tables.keys), ("emptcp_prefixes", tables.prefixes)):
            if entries:
                self._put_keys(name, entries)
        if tables.hook_rules:
            self.maps["emptcp_hook_rules"].update_batch(
                [(_u32(k), v) for k, v in tables.hook_rules.items()])
        top = {t: max([s for (tt, _), s in slots.items() if tt == t], default=0)
               for t in PROG_ARRAYS}
        base = abi.row_index(gen, 0)
        return Written(sorted(tables.policies), sorted(tables.params), top,
                       sorted(tables.hook_rules), sorted(tables.rule_terms),
                       max((k - base for k in tables.rows), default=0), list(tables.port_tables),
                       {str(h): doc for h, doc in tables.classify.items()})

    def _put_keys(self, name: str, entries: Mapping[bytes, bytes]) -> None:
        """Keys into a hash / LPM trie, refusing clearly when the map is full."""
        try:
            if name == "emptcp_prefixes":   # LPM tries have no batch operations
                table = self.maps[name]
                for k, v in entries.items():
                    table.put(k, v)
            else:
                self.maps[name].update_batch(list(entries.items()))
        except EmptcpError as e:
            cap = abi.MAPS[name][3]
            raise EmptcpError(f"writing {len(entries)} selector entries into {name} "
                              f"(capacity {cap} over all generations) failed: {e}") from e

    def flip(self, gen: int) -> None:
        """Make ``gen`` the active generation: the one map update that commits an apply."""
        self.maps["emptcp_state"].put(_u32(0), abi.STATE.pack(gen, abi.ABI_VERSION))

    def active(self) -> tuple[int, int]:
        """(active generation, ABI version of its writer; 0 = never flipped)."""
        return abi.STATE.unpack(self.maps["emptcp_state"].lookup(_u32(0)))

    # ---- hooks -----------------------------------------------------------------
    def set_hook(self, ifindex: int, kind: str, hook_id: int) -> bytes:
        """Route (ifindex, kind) to ``hook_id``; returns the raw key (to delete it)."""
        if kind not in abi.KINDS:
            raise ValueError(f"unknown hook kind {kind!r} (expected one of {', '.join(abi.KINDS)})")
        key = abi.HOOK_KEY.pack(ifindex, abi.KINDS[kind])
        self.maps["emptcp_hooks"].put(key, abi.HOOK_VAL.pack(hook_id))
        self._slot(ifindex, abi.KINDS[kind], hook_id + 1)
        return key

    def _slot(self, ifindex: int, kind: int, value: int) -> None:
        """Mirror one (ifindex, kind) of emptcp_hooks into its emptcp_hook_slots slot when
        the slot is free or already this interface's (else the hash alone serves it)."""
        slots = self.maps["emptcp_hook_slots"]
        idx = _u32(ifindex & (abi.HOOK_SLOTS - 1))
        owner, hooks = abi.HOOK_SLOT.unpack(slots.lookup(idx))
        if owner not in (0, ifindex):
            return
        hooks = bytearray(hooks)
        hooks[kind] = value
        slots.put(idx, abi.HOOK_SLOT.pack(ifindex if any(hooks) else 0, bytes(hooks)))

    def hook_keys(self) -> list[tuple[int, int]]:
        """(ifindex, kind number) of every routed hook."""
        return [abi.HOOK_KEY.unpack(k) for k in self.maps["emptcp_hooks"].raw_keys()]

    def delete_hook(self, ifindex: int, kind: int) -> None:
        with contextlib.suppress(NotFoundError):
            self.maps["emptcp_hooks"].delete(abi.HOOK_KEY.pack(ifindex, kind))
        self._slot(ifindex, kind, 0)

    # ---- counters --------------------------------------------------------------
    def stage_stats(self, hook: int, policy: int, phase: int, stage: int) -> dict[str, int]:
        raw = self.maps["emptcp_stage_stats"].lookup(
            _u32(abi.stage_stat_index(hook, policy, phase, stage)))
        return abi.sum_percpu(raw, abi.SS_FIELDS)

    def hook_stats(self, hook: int) -> dict[str, int]:
        return abi.sum_percpu(self.maps["emptcp_hook_stats"].lookup(_u32(hook)), abi.HS_FIELDS)

    def zero_policy_stats(self, rows: Iterable[tuple[int, int]]) -> None:
        """Zero the stage counters of (hook id, policy position) rows."""
        stats = self.maps["emptcp_stage_stats"]
        keys = [abi.stage_stat_index(h, p, 0, 0) + i for h, p in rows
                for i in range(abi.STAGES_PER_POLICY)]
        if keys:
            stats.update_batch_packed(struct.pack(f"{len(keys)}I", *keys),
                                      bytes(abi.STAGE_STAT.size * stats.ncpu * len(keys)))

    def zero_hook_stats(self, hooks: Iterable[int]) -> None:
        hstats = self.maps["emptcp_hook_stats"]
        for hid in hooks:
            hstats.put(_u32(hid), bytes(abi.HOOK_STAT.size))  # replicated per CPU

    def zero_all_stats(self) -> None:
        self.zero_policy_stats((h, p) for h in range(abi.MAX_HOOKS) for p in range(abi.MAX_POLICIES))
        self.zero_hook_stats(range(abi.MAX_HOOKS))
