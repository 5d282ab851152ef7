"""Action program instances: one loaded program per chain suffix.

An action's program is loaded once per (object, program, parameter, successor):
its ``.rodata`` (``struct emptcp_instance``, frozen by libbpf at load) holds the
parameter and the prog-array key of the next action, so the verifier knows the
tail call's key as a constant and the JIT turns it into a direct jump (a run-time
key costs ~20 ns on a retpoline kernel). docs/abi.md section 1.1.

An instance is named by the digest of the chain suffix it starts (object sha256,
program, parameter, the successor's digest), so policies and hooks whose chains
end alike share instances, and generations share them too: a chain that did not
change is never loaded again. Instances live at ``INSTANCE_BASE + i`` of their
program type's prog array, outside the per-generation slots; a key keeps its
digest for as long as a committed generation refers to it (the allocator never
hands out a key some generation still uses), and :func:`sweep` empties the keys
no generation refers to.

    plan = plan_instances(hooks, sources, known)      # pure: digests, keys, constants
    new = install_instances(plan, maps, known)        # load + put what is missing
    writer.write(gen, hooks, slots, plan.first)       # policies point at first actions
    sweep(maps, live)                                 # after the flip: drop the unused
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import Callable, ContextManager, Iterable, Mapping

from .. import abi
from ..bpf.maps import Map
from ..bpf.pinning import ObjectDescription, open_object
from ..chain.compiler import HookPolicies, action_constants, hook_type
from ..errors import EmptcpError, NotFoundError
from .generation import PROG_ARRAYS

__all__ = ["ActionSource", "InstanceSpec", "InstancePlan", "plan_instances", "FUSED",
           "fusable", "fused_source", "file_sha256",
           "install_instances", "remove", "sweep", "merge", "Keys"]

#: program type -> {digest: instance number}, what a generation's description stores
Keys = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class ActionSource:
    """Where an action's program comes from: its object file, program, file digest."""
    path: str
    program: str
    sha256: str


@dataclass(frozen=True)
class InstanceSpec:
    htype: str               # "xdp" | "tc"
    digest: str
    number: int              # prog-array key = abi.instance_key(number)
    stage: str
    source: ActionSource
    consts: abi.Instance | abi.Fused     # the .rodata it is loaded with

    @property
    def key(self) -> int:
        return abi.instance_key(self.number)


@dataclass
class InstancePlan:
    """The instances one generation uses, and each policy's first action key."""
    instances: dict[str, dict[str, InstanceSpec]] = field(default_factory=dict)
    first: dict[tuple[int, int], int] = field(default_factory=dict)   # (hook id, policy)

    def keys(self) -> dict[str, dict[str, int]]:
        return {t: {d: i.number for d, i in sorted(by.items())}
                for t, by in sorted(self.instances.items())}


def _digest(src: ActionSource, consts: abi.Instance, successor: str) -> str:
    h = hashlib.sha256()
    for part in (src.sha256, src.program, consts.pack().hex(), successor):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def plan_instances(hooks: Iterable[HookPolicies],
                   sources: Mapping[tuple[str, str], ActionSource],
                   known: Keys | None = None, fuse: bool = True) -> InstancePlan:
    """Name, number and parametrise every action instance ``hooks`` need.

    ``sources`` maps (stage name, "xdp"|"tc") to the action's program, and
    (FUSED, "xdp"|"tc") to the fused program: with it (and ``fuse``), every run of
    two or more consecutive built-in actions it can run becomes one fused instance
    (:func:`fusable`). ``known``
    holds the instances committed generations use (digest -> number): those keep
    their number, new ones get a number no generation uses. First actions take the
    lowest numbers (the entry's switch covers ENTER_CASES of them with direct jumps),
    the others numbers from ENTER_CASES up: every program with a jump to a key pays
    an RCU grace period when that key is emptied, and the entry and the selectors
    have one to each of the low keys.
    """
    known = known or {}
    plan = InstancePlan()
    # pass 1: the suffixes (digest -> what to load, the successor's digest)
    nodes: dict[str, dict[str, tuple[str, ActionSource, abi.Instance, str]]] = {}
    starts: dict[str, set[str]] = {}
    first: dict[tuple[int, int], tuple[str, str]] = {}
    for h in hooks:
        htype = hook_type(h.kind)
        mine = nodes.setdefault(htype, {})
        fused = sources.get((FUSED, htype)) if fuse else None
        for pi, pol in enumerate(h.policies):
            succ = ""
            steps = []      # (stage label, source, constants), first action first
            for si, ref in enumerate(pol.actions):
                where = f"hook {h.hook_id} policy {pi} act {si} ({ref.name})"
                src = sources.get((ref.name, htype))
                if src is None:
                    raise ValueError(f"{where}: no {htype} program for action {ref.name!r}")
                steps.append((ref.name, src, action_constants(where, ref)))
            for stage, src, consts in reversed(_fuse(steps, htype, fused) if fused else steps):
                digest = _digest(src, consts, succ)
                mine.setdefault(digest, (stage, src, consts, succ))
                succ = digest
            if pol.actions:
                starts.setdefault(htype, set()).add(succ)
                first[(h.hook_id, pi)] = (htype, succ)
    # pass 2: numbers (known ones kept), then the constants with the successor's key
    for htype, mine in nodes.items():
        have = known.get(htype, {})
        numbers = {d: have[d] for d in mine if d in have}
        used = set(have.values())
        for d in mine:
            if d not in numbers:
                low = d in starts.get(htype, ())
                numbers[d] = _free(used, htype, ENTER_CASES if not low else 0)
                used.add(numbers[d])
        out = plan.instances.setdefault(htype, {})
        for d, (stage, src, consts, succ) in mine.items():
            next_key = abi.instance_key(numbers[succ]) if succ else 0
            out[d] = InstanceSpec(htype, d, numbers[d], stage, src, replace(consts, next_key=next_key))
    plan.first = {hp: plan.instances[t][d].key for hp, (t, d) in first.items()}
    return plan


#: the key of the fused program in the ``sources`` of :func:`plan_instances`
FUSED = "@fused"

#: built-in actions a fused instance runs: name -> (operation, operand from the constants)
_OPS: dict[str, tuple[int, Callable[[abi.Instance], int]]] = {
    "count": (abi.OP_COUNT, lambda c: 0),
    "set_recv_win": (abi.OP_SET_RECV_WIN,
                     lambda c: int.from_bytes(c.blob[:2], "little") if c.ref else c.imm),
    "drop": (abi.OP_DROP, lambda c: 0),
    "pass": (abi.OP_PASS, lambda c: 0),
    "redirect": (abi.OP_REDIRECT,
                 lambda c: int.from_bytes(c.blob[:4], "little") if c.ref else c.imm),
}


def fusable(stage: str, src: ActionSource, htype: str, fused: ActionSource) -> bool:
    """Whether the fused program can run this action: one of the built-in actions
    it knows, from the same build as the fused program (its object sits beside
    fused.o: a plugin's stage of the same name does not)."""
    return (stage in _OPS and src.program == f"emptcp_{stage}_{htype}"
            and os.path.realpath(src.path) == os.path.realpath(
                os.path.join(os.path.dirname(fused.path), f"{stage}.o")))


def _fuse(steps: list[tuple[str, ActionSource, abi.Instance]], htype: str,
          fused: ActionSource) -> list[tuple[str, ActionSource, "abi.Instance | abi.Fused"]]:
    """``steps`` with every run of two or more fusable actions as one fused step."""
    out: list = []
    run: list[tuple[str, ActionSource, abi.Instance]] = []

    def flush() -> None:
        if len(run) >= 2:
            out.append(("+".join(st for st, _, _ in run), fused,
                        abi.Fused(ops=tuple((_OPS[st][0], _OPS[st][1](c)) for st, _, c in run))))
        else:
            out.extend(run)
        run.clear()

    for step in steps:
        if fusable(step[0], step[1], htype, fused):
            run.append(step)
        else:
            flush()
            out.append(step)
    flush()
    return out


def fused_source(htype: str, path: str | None = None) -> ActionSource:
    """The fused program of ``htype`` ("xdp"|"tc") -- the installed one, or ``path`` --
    for the ``sources`` of :func:`plan_instances` under (FUSED, htype)."""
    from .. import builtin_object
    path = path or builtin_object("fused")
    return ActionSource(path, f"emptcp_fused_{htype}", file_sha256(path))


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_sha256(path: str) -> str:
    """SHA-256 of an object file, read once per (path, mtime, size): what names its
    programs' instances and lets an apply reuse verified programs."""
    st = os.stat(path)
    return _sha256_of(path, st.st_mtime_ns, st.st_size)


#: first actions the entry reaches with a direct jump (EMPTCP_ENTER_CASES in emptcp_chain.h)
ENTER_CASES = 256


def _free(used: set[int], htype: str, start: int) -> int:
    """The lowest number not in ``used`` from ``start`` on, else the lowest at all."""
    for rng in (range(start, abi.MAX_INSTANCES), range(0, start)):
        for i in rng:
            if i not in used:
                return i
    raise EmptcpError(f"more than {abi.MAX_INSTANCES} {htype} action instances "
                      "(distinct action chain suffixes over the generations kept)")


def install_instances(plan: InstancePlan, maps: Mapping[str, Map], known: Keys | None = None,
                      context: Callable[[InstanceSpec], ContextManager] | None = None
                      ) -> list[tuple[str, int]]:
    """Load and install the instances of ``plan`` that are not in place yet.

    An instance ``known`` with the same number whose prog-array entry exists is
    reused as is. Returns (type, key) of every entry written, for a rollback
    (:func:`remove`). ``context(inst)`` wraps each load (error messages).
    """
    known = known or {}
    written: list[tuple[str, int]] = []
    try:
        for htype, by in plan.instances.items():
            table = maps[PROG_ARRAYS[htype]]
            for inst in by.values():
                if known.get(htype, {}).get(inst.digest) == inst.number and _present(table, inst.key):
                    continue
                with (context(inst) if context else contextlib.nullcontext()):
                    obj, _ = open_object(ObjectDescription(inst.source.path), maps=maps,
                                         autoload=[inst.source.program],
                                         consts={inst.consts.var: inst.consts.pack()})
                with obj:
                    table.put(_u32(inst.key), _u32(obj.programs[inst.source.program].fd))
                written.append((htype, inst.key))
    except BaseException:
        remove(maps, written)
        raise
    return written


def remove(maps: Mapping[str, Map], entries: Iterable[tuple[str, int]]) -> None:
    """Delete prog-array entries (type, key); missing ones are fine."""
    for htype, key in entries:
        with contextlib.suppress(NotFoundError):
            maps[PROG_ARRAYS[htype]].delete(_u32(key))


def sweep(maps: Mapping[str, Map], live: Iterable[Keys],
          candidates: Keys | None = None) -> int:
    """Empty every instance entry no generation in ``live`` refers to; returns how many
    were removed. By default every instance key is tried (also catches what an
    interrupted apply left, ~8 ms); ``candidates`` limits the sweep to the instances a
    caller knows it installed. Call it only when no packet can still run a generation
    left out of ``live`` (after its grace period)."""
    keep: dict[str, set[int]] = {t: set() for t in PROG_ARRAYS}
    for keys in live:
        for t, by in keys.items():
            keep.setdefault(t, set()).update(by.values())
    removed = 0
    for htype, table_name in PROG_ARRAYS.items():
        table = maps[table_name]
        tried = (range(abi.MAX_INSTANCES) if candidates is None
                 else sorted(set(candidates.get(htype, {}).values())))
        for i in tried:
            if i not in keep[htype] and table.discard(_u32(abi.instance_key(i))):
                removed += 1
    return removed


def merge(keys: Iterable[Keys]) -> dict[str, dict[str, int]]:
    """The union of several generations' instance tables."""
    out: dict[str, dict[str, int]] = {}
    for k in keys:
        for t, by in k.items():
            out.setdefault(t, {}).update(by)
    return out


def _present(table: Map, key: int) -> bool:
    try:
        table.lookup(_u32(key))
        return True
    except NotFoundError:
        return False


def _u32(i: int) -> bytes:
    return i.to_bytes(4, "little")
