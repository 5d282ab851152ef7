"""The apply engine: turn a resolved configuration into kernel state, transactionally.

Everything emptcp owns lives under one pin root (default /sys/fs/bpf/emptcp)::

    maps/emptcp_*          shared maps (prog arrays, tables, counters, events)
    links/<type>@<ifname>  one BPF link per hook (XDP link or TCX link) running the
                           entry (``.`` in an interface name becomes ``_``)
    gen<N>                 the description of generation N (a pinned array map of JSON)

An apply builds a *new* generation (prog-array slots, policy and parameter
tables, its description) while the old one keeps running, then flips the one
index in ``emptcp_state``. Until the flip nothing a packet can see has changed;
a failure (or SIGKILL) before it leaves the previous configuration running and
the next command cleans up what the failed one left. A lock serialises applies.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import DEFAULT_PIN_ROOT, builtin_object
from ..abi import ENTRY_PROGRAMS, HOOK_KEY, KINDS, MAX_GEN, MAX_HOOKS, SHARED_MAPS, prog_key
from ..chain.sets import SetParam
from ..errors import ConfigError, EmptcpError, VerifierError
from ..bpf.links import Link, attach_tcx, attach_xdp
from ..bpf.maps import Map, MapType
from ..bpf.objects import Object, ObjectSpec
from ..bpf.pinning import MapPin, ObjectDescription, PinPolicy, open_object
from ..bpf.programs import Program
from .generation import PROG_ARRAYS, GenerationWriter, Written
from . import instances
from .pinroot import locked, unpin
from . import features, tcattach
from .rcu import wait_grace_period
from .status import StatusReader, read_meta
from ..chain.stages import HOOK_TYPE, StageSpec

log = logging.getLogger("emptcp.engine")

if TYPE_CHECKING:  # the configuration layer is needed to apply, not to read status
    from ..chain.config import Resolved, ResolvedStage

__all__ = ["DEFAULT_PIN_ROOT", "Engine", "ApplyResult", "StageLoadError"]

KIND = KINDS
#: a generation deactivated longer ago than this has certainly seen an RCU grace
#: period (they take milliseconds); a more recent one is retired by waiting for one
SETTLED_S = 1.0
#: fallback when the kernel cannot wait for a grace period (no membarrier)
GRACE_S = 0.05
_META_CHUNK = 4096


@dataclass
class ApplyResult:
    changed: bool
    generation: int
    summary: list[str]


# ---- generation descriptions: JSON in a pinned array map (read_meta: runtime.status)
def write_meta(path: str, doc: dict[str, Any]) -> None:
    raw = json.dumps(doc, sort_keys=True).encode()
    chunks = [raw[i:i + _META_CHUNK] for i in range(0, len(raw), _META_CHUNK)] or [b""]
    with Map.create(MapType.ARRAY, 4, _META_CHUNK, len(chunks) + 1, name="emptcp_meta",
                    key=int) as m:
        m.update_batch([(0, struct.pack("I", len(raw)).ljust(_META_CHUNK, b"\0"))]
                       + [(i + 1, c.ljust(_META_CHUNK, b"\0")) for i, c in enumerate(chunks)])
        tmp = f"{path}-tmp"
        unpin(tmp)
        m.pin(tmp)
        os.replace(tmp, path)


class Engine(StatusReader):
    """Apply, inspect and remove emptcp configurations under one pin root (reading
    them -- ``state()``, ``status()`` -- is :class:`~emptcp.runtime.status.StatusReader`'s)."""

    def __init__(self, pin_root: str = DEFAULT_PIN_ROOT,
                 progress: Callable[[str], None] | None = None) -> None:
        super().__init__(pin_root)
        self._progress = progress or (lambda step: None)

    # ---- shared maps ---------------------------------------------------------
    def _open_entry(self, created: list[str]) -> Object:
        """Load the entry object with the shared maps: reuse the pinned ones, create and
        pin the missing ones (recorded in ``created``) -- the users' object loader."""
        desc = ObjectDescription(builtin_object("entry"), pin_maps={
            name: MapPin(self.pins.map(name), PinPolicy.PIN_IF_NOT_EXISTS)
            for name in SHARED_MAPS})
        obj, pinned = open_object(desc)
        created.extend(pinned)
        return obj

    def _writer(self, stack: contextlib.ExitStack) -> GenerationWriter:
        """The generation writer over the pinned shared maps (closed with ``stack``)."""
        return GenerationWriter({name: stack.enter_context(Map.from_pin(self.pins.map(name)))
                                 for name in SHARED_MAPS})

    # ---- apply -------------------------------------------------------------
    def apply(self, resolved: Resolved, *, dry_run: bool = False) -> ApplyResult:
        with locked(self.pins):
            return self._apply(resolved, dry_run)

    def _apply(self, resolved: Resolved, dry_run: bool) -> ApplyResult:
        objects = self._stage_objects(resolved)
        hashes = {p: instances.file_sha256(p) for p in objects}
        digest = resolved.digest(hashes)
        current = self.state()
        old = current[1] if current else None
        summary = diff_summary(old, resolved)
        same = old is not None and old.get("digest") == digest
        repair = self._hooks_to_repair(old) if same else {}   # type: ignore[arg-type]
        if same and not repair:
            self._cleanup_stale(old)
            return ApplyResult(False, current[0], ["no changes: this configuration is "  # type: ignore[index]
                                                   "already applied"])
        summary += [f"~ hook {name}: {why}" for name, why in repair.items()]
        if dry_run:
            try:
                self._preflight(resolved, objects)
            finally:
                if current is None:
                    self._remove_empty_dirs()
            return ApplyResult(bool(summary), current[0] if current else -1, summary)
        # how TC hooks attach (TCX link or cls_bpf filter): recorded, so that the other
        # kind's attachments of a previous apply (EMPTCP_TC_ATTACH changed) become stale
        tc_attach = tcattach.mechanism() if any(
            h.type != "xdp" for h in resolved.hooks.values()) else None
        created: list[str] = []      # pins this apply made; removed if it fails
        attached: list[str] = []     # link pins this apply made
        moved: list[tuple[str, str]] = []  # (link pin, previous position) re-placed links
        new_hook_keys: list[bytes] = []
        new_instances: list[tuple[str, int]] = []   # prog-array entries this apply wrote
        loaded: list[Object] = []
        stack = contextlib.ExitStack()
        try:
            self._progress("load")
            entry = self._open_entry(created)
            loaded.append(entry)
            writer = self._writer(stack)
            gen = self._next_generation(current)
            # the action instances every generation still described uses (gen's own too:
            # what it shares with this configuration is reused, not loaded again)
            known = instances.merge(self._generation_instances())
            self._progress("clear")
            self._clear_generation(writer, gen)
            self._progress("programs")
            slots = self._install_programs(writer, gen, resolved, objects, loaded,
                                           self._reusable(current, hashes))
            hook_ids = self._assign_hook_ids(writer, resolved, old, new_hook_keys)
            carry = self._carried(writer, old) if old else {}
            hooks = self._hook_policies(resolved, hook_ids, carry)
            plan = instances.plan_instances(hooks, self._action_sources(objects, hashes), known)
            new_instances += instances.install_instances(
                plan, writer.maps, known, lambda inst: _instance_context(resolved, objects, inst))
            self._progress("tables")
            written = writer.write(gen, hooks, slots, plan.first).as_dict()
            stage_objects = {f"{t}:{st.name}": path for path, uses in objects.items()
                             for t, st in uses}
            doc = {"committed": True, "written": written, "objects": hashes,
                   "instances": plan.keys(),
                   "stage_objects": stage_objects, "digest": digest, "generation": gen,
                   "applied_at": time.time(), "config": resolved.config.to_dict(),
                   "resolved": resolved.describe(), "hook_ids": hook_ids,
                   "slots": {f"{t}:{n}": s for (t, n), s in slots.items()},
                   "pin_root": self.pins.root, "tc_attach": tc_attach}
            write_meta(self.pins.gen(gen), doc)
            created.append(self.pins.gen(gen))
            # counters of new or changed policy positions start at zero *before* packets
            # run the new policy: zeroed later, its first packets (a backup flag's
            # MP_PRIO, say) would be lost. A first apply writes generation 0, which is
            # already the active one, so its packets run it as soon as a hook is attached
            # (seen under emulation: the whole effect happened during a 25 s apply and was
            # then zeroed): zero before attaching. Otherwise the running generation keeps
            # counting until the flip: zero just before it; nothing else may fail between
            # there and the flip.
            if old is None:
                self._reset_stats(writer, old, resolved, hook_ids)
            self._progress("attach")
            self._attach(resolved, entry, attached, old, moved)
            if old is not None:
                self._reset_stats(writer, old, resolved, hook_ids)
            self._progress("flip")
            writer.flip(gen)
        except BaseException:
            if new_instances:
                with contextlib.suppress(EmptcpError):
                    instances.remove(writer.maps, new_instances)
            stack.close()
            self._rollback(created, attached, new_hook_keys, old)
            self._unmove(moved)
            raise
        finally:
            for o in loaded:
                o.close()
        with stack:
            self._progress("cleanup")
            self._cleanup_stale(doc, writer)
            # instances only the overwritten generation used: its packets finished before
            # it was cleared (grace period), so nothing can jump there any more
            instances.sweep(writer.maps, self._generation_instances())
        return ApplyResult(True, gen, summary)

    def _stage_objects(self, resolved: Resolved) -> dict[str, list[tuple[str, StageSpec]]]:
        """object path -> [(hook program type, spec)] needed by this configuration."""
        need: dict[str, dict[tuple[str, str], StageSpec]] = {}
        for hook in resolved.hooks.values():
            for p in hook.policies:
                for s in p.selectors + p.actions:
                    if isinstance(s.encoded, SetParam):
                        continue   # classified by the entry program: nothing to load
                    t = HOOK_TYPE[hook.type]
                    need.setdefault(s.spec.object, {})[(t, s.spec.name)] = s.spec
        return {path: [(t, spec) for (t, _), spec in sorted(d.items())]
                for path, d in sorted(need.items())}

    def _preflight(self, resolved: Resolved,
                   objects: dict[str, list[tuple[str, StageSpec]]]) -> None:
        """Verifier preflight: load every stage object (and the entry) without attaching."""
        ObjectSpec(builtin_object("entry")).load().close()
        for path, uses in objects.items():
            with stage_context(resolved, path, uses):
                ObjectSpec(path).load().close()

    def _next_generation(self, current: tuple[int, dict[str, Any]] | None) -> int:
        if current is None:
            return 0
        gen = (current[0] + 1) % MAX_GEN
        # the generation we overwrite stopped being active when its successor was
        # flipped in; packets that snapshotted it run inside RCU read-side sections,
        # so one grace period after that flip none of them is left
        successor = read_meta(self.pins.gen((gen + 1) % MAX_GEN))
        if successor and successor.get("committed"):
            since = time.time() - successor.get("applied_at", 0)
            if since < SETTLED_S and not wait_grace_period() and since < GRACE_S:
                time.sleep(GRACE_S - since)
        return gen

    def _clear_generation(self, writer: GenerationWriter, gen: int) -> None:
        """Empty generation ``gen`` before it is rebuilt: exactly the entries its last
        description says it wrote, or every entry of the generation if that is unknown."""
        meta = read_meta(self.pins.gen(gen))
        written = (meta or {}).get("written")
        writer.clear(gen, None if written is None else Written.from_dict(written))
        unpin(self.pins.gen(gen))

    def _reusable(self, current: tuple[int, dict[str, Any]] | None,
                  hashes: dict[str, str]) -> dict[tuple[str, str], int]:
        """(hook type, stage) -> id of the program the running generation already has
        for it, when its object file is unchanged: no need to load and verify again."""
        if current is None:
            return {}
        gen, doc = current
        same = {p for p, h in doc.get("objects", {}).items() if hashes.get(p) == h}
        ids: dict[tuple[str, str], int] = {}
        for key, slot in doc.get("slots", {}).items():
            t, name = key.split(":", 1)
            if doc.get("stage_objects", {}).get(key) not in same:
                continue
            with contextlib.suppress(EmptcpError), \
                    self._shared(PROG_ARRAYS[t], key=int, value=int) as pa:
                ids[(t, name)] = pa[prog_key(gen, slot)]
        return ids

    def _install_programs(self, writer: GenerationWriter, gen: int, resolved: Resolved,
                          objects: dict[str, list[tuple[str, StageSpec]]], loaded: list[Object],
                          reuse: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        """Put every stage's program in a slot of ``gen``'s prog array: the running
        generation's program where ``reuse`` has it, else a freshly loaded one."""
        fds: dict[tuple[str, str], int] = {}
        order = []
        for path, uses in objects.items():
            uses = [(t, st) for t, st in uses if st.kind != "action"]   # actions: instances
            order += [(t, st.name) for t, st in uses]
            todo = []
            for t, st in uses:
                prog_id = reuse.get((t, st.name))
                if prog_id is not None:
                    with contextlib.suppress(EmptcpError):
                        prog = Program.from_id(prog_id)
                        loaded.append(prog)  # type: ignore[arg-type]
                        fds[(t, st.name)] = prog.fd
                        continue
                todo.append((t, st))
            if todo:
                with stage_context(resolved, path, todo):
                    obj = self._load_stage_object(writer, path, {st.programs[t] for t, st in todo})
                loaded.append(obj)
                for t, st in todo:
                    fds[(t, st.name)] = obj.programs[st.programs[t]].fd
        return writer.install(gen, {key: fds[key] for key in order})

    @staticmethod
    def _action_sources(objects: dict[str, list[tuple[str, StageSpec]]],
                        hashes: dict[str, str]) -> dict[tuple[str, str], instances.ActionSource]:
        out = {(st.name, t): instances.ActionSource(path, st.programs[t], hashes[path])
               for path, uses in objects.items() for t, st in uses if st.kind == "action"}
        out.update({(instances.FUSED, t): instances.fused_source(t) for t in ("xdp", "tc")})
        return out

    def _generation_instances(self) -> list[dict[str, Any]]:
        """The action instance tables of every generation description pinned now."""
        out = []
        for g in range(MAX_GEN):
            meta = read_meta(self.pins.gen(g))
            if meta and meta.get("committed"):
                out.append(meta.get("instances", {}))
        return out

    def _load_stage_object(self, writer: GenerationWriter, path: str,
                           wanted: set[str]) -> Object:
        """Load only the ``wanted`` programs of a stage object, every shared map reused
        (the events ring too: a stage given a private ring would emit into nothing)."""
        obj, _ = open_object(ObjectDescription(path), maps=writer.maps, autoload=wanted)
        return obj

    def _assign_hook_ids(self, writer: GenerationWriter, resolved: Resolved,
                         old: dict[str, Any] | None, new_keys: list[bytes]) -> dict[str, int]:
        """Stable ids: a hook keeps its id; new hooks never take an id the running
        generation still uses (its packets would run the old hook's policies)."""
        taken = {}
        if old:
            for h in old["resolved"]["hooks"]:
                taken[(h["ifindex"], h["type"])] = old["hook_ids"][h["name"]]
        used = set(taken.values())
        ids: dict[str, int] = {}
        for h in resolved.hooks.values():
            key = (h.ifindex, h.type)
            if key in taken:
                ids[h.name] = taken[key]
                continue
            free = next((i for i in range(MAX_HOOKS) if i not in used), None)
            if free is None:
                raise EmptcpError(f"no free hook id (at most {MAX_HOOKS} hooks)")
            used.add(free)
            ids[h.name] = free
            new_keys.append(writer.set_hook(h.ifindex, h.type, free))
        return ids

    def _carried(self, writer: GenerationWriter, doc: dict[str, Any]
                 ) -> dict[tuple[str, int, str], dict[str, set]]:
        """Run-time entries of the running generation (emptcp.runtime.flows), to be kept
        by the policies this apply keeps."""
        from ..plugins.builtin import builtin_specs
        from .entries import RUNTIME_STAGES, carried
        specs = {s.name: s for s in builtin_specs() if s.name in RUNTIME_STAGES}
        static = {}
        for h in doc["resolved"]["hooks"]:
            for p in h["policies"]:
                for si, s in enumerate(p["selectors"]):
                    if s["use"] not in specs:
                        continue
                    try:     # its static entries as applied (an entries file may be gone)
                        static[(p["name"], si)] = specs[s["use"]].encode(s["params"])
                    except ConfigError as e:
                        log.warning("run-time entries of policy %r selector %d are not "
                                    "carried over: %s", p["name"], si, e)
        return carried(doc, writer.maps, static)

    def _hook_policies(self, resolved: Resolved, hook_ids: dict[str, int],
                       carry: dict[tuple[str, int, str], dict[str, set]] | None = None
                       ) -> list[Any]:
        """The configuration as the compiler's HookPolicies (encoded parameters), with
        the run-time entries ``carry`` holds for the policies this apply keeps."""
        from ..chain.compiler import HookPolicies, PolicySpec, StageRef
        carry = carry or {}

        def ref(s: ResolvedStage, policy: str = "", j: int = -1) -> StageRef:
            extra = carry.get((policy, j, s.spec.name))
            enc = s.encoded.extended(extra) if extra and isinstance(s.encoded, SetParam) \
                else s.encoded
            return StageRef(s.spec.name, enc, s.op)
        uid = iter(range(1, 1 << 16))
        hooks = [HookPolicies(hook_ids[h.name], h.type,
                              [PolicySpec([ref(s, p.name, j) for j, s in enumerate(p.selectors)],
                                          [ref(a) for a in p.actions], next(uid))
                               for p in h.policies])
                 for h in resolved.hooks.values()]
        return hooks

    def _attach(self, resolved: Resolved, entry: Object, attached: list[str],
                old: dict[str, Any] | None = None,
                moved: list[tuple[str, str]] | None = None) -> None:
        was = {(h["ifindex"], h["type"]): h.get("position") or "last"
               for h in (old or {}).get("resolved", {}).get("hooks", []) if h["type"] != "xdp"}
        os.makedirs(self.pins.links, exist_ok=True)
        tc_mech = None
        for h in resolved.hooks.values():
            if h.type != "xdp":
                tc_mech = tc_mech or tcattach.mechanism()
                if tc_mech == "cls_bpf":
                    self._attach_cls(h, entry, attached, was, moved)
                    continue
            path = self.pins.link(h.type, h.interface)
            if os.path.exists(path):
                with Link.from_pin(path) as link:
                    info = link.info
                if info.ifindex == h.ifindex:
                    before = was.get((h.ifindex, h.type), h.position)
                    if h.type != "xdp" and before != h.position:
                        self._place_tcx(path, h.type, h.position)  # type: ignore[arg-type]
                        if moved is not None:
                            moved.append((path, before))  # type: ignore[arg-type]
                    continue
                os.unlink(path)  # a defunct link (interface gone or renamed)
            prog = entry.programs[ENTRY_PROGRAMS[h.type]]
            if h.type == "xdp":
                link = attach_xdp(prog, h.ifindex, h.mode)
            else:
                link = attach_tcx(prog, h.ifindex, h.type.split("-", 1)[1],
                                  h.position or "last")
            with link:
                link.pin(path)
            attached.append(path)

    def _attach_cls(self, h: Any, entry: Object, attached: list[str],
                    was: dict[tuple[int, str], str],
                    moved: list[tuple[str, str]] | None) -> None:
        """A TC hook without TCX: emptcp's cls_bpf filter. An existing one stays; one at
        another position is re-placed (recorded in ``moved`` for the rollback, as a TCX
        link's move is); a marker whose filter is gone gets its filter back."""
        path = os.path.join(self.pins.links, tcattach.cls_pin_name(h.type, h.ifindex))
        position = h.position or "last"
        if os.path.lexists(path + tcattach.CLS_TMP_SUFFIX):   # an earlier version's
            tcattach.detach_cls(path + tcattach.CLS_TMP_SUFFIX)
        if not os.path.exists(path):
            tcattach.attach_cls(entry.programs[ENTRY_PROGRAMS[h.type]], h.ifindex, h.type,
                                position, path)
            attached.append(path)
            return
        info = tcattach.cls_info(path)
        if info and info["priority"] == tcattach.CLS_PRIORITY[position]:
            return
        before = was.get((h.ifindex, h.type))
        if info and info["priority"] is not None and before is not None and moved is not None:
            moved.append((path, before))
        tcattach.place_cls(h.ifindex, h.type, position, path)

    def _unattach(self, path: str) -> None:
        """Undo one attachment pin: a link goes with its pin; a cls_bpf filter is removed."""
        if tcattach.parse_cls_pin(os.path.basename(path)):
            tcattach.detach_cls(path)
        else:
            os.unlink(path)

    def _place_tcx(self, path: str, hook_type: str, position: str) -> None:
        """Move emptcp's TCX link to the front or the end of the hook's programs.

        A link cannot move: it is detached and the same entry program attached
        again at the new place. Between the two, for microseconds, packets do
        not run emptcp; the other order would run every packet through emptcp
        twice (actions applied twice), which is worse.
        """
        with Link.from_pin(path) as link:
            prog = Program.from_id(link.info.prog_id)
            with prog:
                ifindex = link.info.ifindex
                link.detach()
                unpin(path)
                new = attach_tcx(prog, ifindex, hook_type.split("-", 1)[1], position)
                with new:
                    new.pin(path)

    def _unmove(self, moved: list[tuple[str, str]]) -> None:
        """Rollback of :meth:`_place_tcx` and of a cls_bpf re-placement: put re-placed
        attachments back where they were."""
        for path, position in reversed(moved):
            with contextlib.suppress(EmptcpError, OSError):
                parsed = tcattach.parse_cls_pin(os.path.basename(path))
                if parsed:
                    tcattach.place_cls(parsed[1], parsed[0], position, path)
                    continue
                hook_type = os.path.basename(path).split("@", 1)[0]
                self._place_tcx(path, hook_type, position)

    def _rollback(self, created: list[str], attached: list[str], new_hook_keys: list[bytes],
                  old: dict[str, Any] | None) -> None:
        for path in attached:
            with contextlib.suppress(OSError, EmptcpError):
                self._unattach(path)
        if new_hook_keys:
            with contextlib.suppress(EmptcpError, OSError), contextlib.ExitStack() as st:
                writer = self._writer(st)
                for k in new_hook_keys:
                    writer.delete_hook(*HOOK_KEY.unpack(k))
        for path in reversed(created):
            with contextlib.suppress(OSError):
                os.unlink(path)
        if old is None:  # nothing was running before: leave no directories either
            self._remove_empty_dirs()

    def _reset_stats(self, writer: GenerationWriter, old: dict[str, Any] | None,
                     resolved: Resolved, hook_ids: dict[str, int]) -> None:
        """Zero the counters of policies that are new or whose chain changed.

        Counters live per (hook id, policy position, stage). A policy that keeps
        its name, position and stages keeps counting across applies, even when
        its parameters change (like ``tc filter change``); anything else at that
        position starts from zero.
        """
        def shape(p: dict[str, Any]) -> tuple[Any, ...]:
            return (p["name"], tuple(s["use"] for s in p["selectors"]),
                    tuple(a["use"] for a in p["actions"]))
        before = {h["name"]: [shape(p) for p in h["policies"]]
                  for h in (old or {}).get("resolved", {}).get("hooks", [])}
        zero_rows: list[tuple[int, int]] = []
        new_hooks = []
        for h in resolved.describe()["hooks"]:
            hid = hook_ids[h["name"]]
            was = before.get(h["name"])
            if was is None:
                new_hooks.append(hid)
                was = []
            now = [shape(p) for p in h["policies"]]
            for pi in range(max(len(now), len(was))):
                if pi >= len(now) or pi >= len(was) or now[pi] != was[pi]:
                    zero_rows.append((hid, pi))
        writer.zero_policy_stats(zero_rows)
        writer.zero_hook_stats(new_hooks)

    def _cleanup_stale(self, doc: dict[str, Any], writer: GenerationWriter | None = None) -> None:
        """Detach links and hook ids that the active configuration does not have
        (left by a removed hook or by an apply killed midway)."""
        keep = self._owned_pins(doc)
        if os.path.isdir(self.pins.links):
            for name in os.listdir(self.pins.links):
                if name not in keep:
                    with contextlib.suppress(OSError, EmptcpError):
                        self._unattach(os.path.join(self.pins.links, name))
        live = {(h["ifindex"], KIND[h["type"]]) for h in doc["resolved"]["hooks"]}
        with contextlib.ExitStack() as stack:
            writer = writer or self._writer(stack)
            for key in writer.hook_keys():
                if key not in live:
                    writer.delete_hook(*key)
        for g in range(MAX_GEN):  # half-written generation descriptions
            unpin(self.pins.gen(g) + "-tmp")

    def _remove_empty_dirs(self) -> None:
        for d in (self.pins.links, self.pins.maps, self.pins.root):
            with contextlib.suppress(OSError):
                os.rmdir(d)

    def _hooks_to_repair(self, doc: dict[str, Any]) -> dict[str, str]:
        """{hook name: why} for the hooks of ``doc`` whose attachment is not what ``doc``
        says: none at all (an apply killed while it re-placed one, a filter removed by
        hand), or a cls_bpf filter at another position's priority (killed mid-move)."""
        out = {}
        hooks = doc.get("resolved", {}).get("hooks", [])
        mech = tcattach.mechanism() if any(h["type"] != "xdp" for h in hooks) else None
        for h in hooks:
            try:
                att = self._attachment(h, doc.get("tc_attach"))
            except (EmptcpError, OSError) as e:
                out[h["name"]] = f"its attachment cannot be read ({e})"
                continue
            if att is None:
                out[h["name"]] = "attached again (its attachment was gone)"
            elif h["type"] != "xdp" and att.get("mode") != mech:
                out[h["name"]] = f"attached as {mech} (was {att.get('mode')}: {tcattach.ENV})"
            elif att.get("mode") == "cls_bpf" and att.get("priority") is not None and \
                    att["priority"] != tcattach.CLS_PRIORITY[h.get("position") or "last"]:
                out[h["name"]] = (f"filter moved back to position {h.get('position') or 'last'}"
                                  f" (found at priority {att['priority']})")
        return out

    # ---- detach -------------------------------------------------------------
    def detach_all(self) -> list[str]:
        """Remove every attachment and pin under the root. Returns what was removed."""
        with locked(self.pins):
            removed = []
            if os.path.isdir(self.pins.links):  # links first: traffic stops using emptcp
                for name in sorted(os.listdir(self.pins.links)):
                    self._unattach(os.path.join(self.pins.links, name))
                    removed.append(f"links/{name}")
            if os.path.isdir(self.pins.root):
                for name in sorted(os.listdir(self.pins.root)):
                    path = os.path.join(self.pins.root, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                    removed.append(name)
            self._remove_empty_dirs()
            if os.path.lexists(self.pins.root):
                left = sorted(os.listdir(self.pins.root)) if os.path.isdir(self.pins.root) else []
                raise EmptcpError(f"could not remove everything under {self.pins.root}: "
                                  f"{', '.join(left) or 'the directory itself'}")
            return removed


class StageLoadError(EmptcpError):
    """A stage's object failed to load; the message names the stage, its plugin and the
    policies using it, then the kernel's reason (the verifier log's last lines)."""

    def __init__(self, message: str, cause: EmptcpError) -> None:
        super().__init__(message)
        self.cause = cause
        self.log = getattr(cause, "log", "")


def _instance_context(resolved: Resolved, objects: dict[str, list[tuple[str, StageSpec]]],
                      inst: "instances.InstanceSpec"):
    """The error context of loading an action instance: its stage's, or for a fused
    instance (a run of built-in actions, "count+set_recv_win") the first stage's."""
    names = inst.stage.split("+")
    for path, uses in objects.items():
        mine = [(inst.htype, s) for t, s in uses if s.name == names[0]]
        if mine and (len(names) > 1 or path == inst.source.path):
            return stage_context(resolved, path, mine)
    return contextlib.nullcontext()


@contextlib.contextmanager
def stage_context(resolved: Resolved, path: str, uses: list[tuple[str, StageSpec]]):
    """Re-raise a load failure of the stage object ``path`` naming who needs it."""
    try:
        yield
    except EmptcpError as e:
        program = getattr(e, "program", None)
        spec = next((st for t, st in uses if st.programs.get(t) == program), uses[0][1])
        users = [f"'{p.name}' on hook '{h.name}'" for h in resolved.hooks.values()
                 for p in h.policies if any(s.spec.name == spec.name
                                            for s in p.selectors + p.actions)]
        origin = f"plugin '{spec.plugin}'" + (f", distribution {spec.distribution}"
                                              if spec.distribution else "")
        head = (f"{spec.kind} '{spec.name}' ({origin}), used by policy "
                f"{', '.join(users) or '-'}")
        # a feature this kernel lacks (a helper, a kfunc): name it and the first kernel
        # that has it, not the verifier's log (a load that failed before any program was
        # verified -- an unresolved kfunc -- names no program: every one used is asked)
        progs = [(t, st.programs[t]) for t, st in uses if st.programs.get(t)
                 and (program is None or st.programs[t] == program)]
        for ptype, prog in progs:
            lacking = features.missing(path, prog, ptype)
            if lacking:
                last = features.last_word(getattr(e, "log", "")) or \
                    (str(e).splitlines() or [""])[0]
                raise StageLoadError(f"{head}: cannot run on this kernel: program '{prog}' "
                                     f"{features.describe(lacking, ptype)}\n(the kernel's "
                                     f"last word: {last})", e) from e
        what = (f"the verifier rejected program '{program}'" if isinstance(e, VerifierError)
                else f"loading {path} failed")
        tail = "\n".join(getattr(e, "log", "").strip().splitlines()[-12:]) or str(e)
        raise StageLoadError(f"{head}: {what}:\n{tail}", e) from e


def diff_summary(old: dict[str, Any] | None, new: Resolved) -> list[str]:
    """Human lines saying what an apply changes, hook by hook and policy by policy."""
    before = {h["name"]: h for h in (old or {}).get("resolved", {}).get("hooks", [])}
    after = {h["name"]: h for h in new.describe()["hooks"]}
    lines = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b is None:
            lines.append(f"+ hook {name}: {a['type']} on {a['interface']}")  # type: ignore[index]
        elif a is None:
            lines.append(f"- hook {name}: {b['type']} on {b['interface']}")
            continue
        elif a["type"] != "xdp" and (b.get("position") or "last") != a["position"]:
            lines.append(f"~ hook {name}: position {b.get('position') or 'last'} -> "
                         f"{a['position']} among the TCX programs on {a['interface']}")
        bp = {p["name"]: p for p in (b or {}).get("policies", [])}
        ap = {p["name"]: p for p in a["policies"]}  # type: ignore[index]
        for pname in [p["name"] for p in a["policies"]] + sorted(set(bp) - set(ap)):  # type: ignore[index]
            if pname not in bp:
                lines.append(f"  + policy {pname} on {name}: {_chain_text(ap[pname])}")
            elif pname not in ap:
                lines.append(f"  - policy {pname} on {name}")
            elif bp[pname] != ap[pname]:
                lines.append(f"  ~ policy {pname} on {name}: {_chain_text(ap[pname])}")
    return lines


def _chain_text(p: dict[str, Any]) -> str:
    sel = " ".join(f"{'' if i == 0 else s['op'] + ' '}{s['use']}" for i, s in
                   enumerate(p["selectors"])) or "all packets"
    act = " -> ".join(a["use"] for a in p["actions"])
    return f"[{sel}] => {act}"
