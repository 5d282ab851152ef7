"""Find, register and validate emptcp plugins; collect their stages.

:class:`PluginManager` wraps :class:`pluggy.PluginManager`. It registers the
built-in stages through the same hooks as any plugin, then every entry point
of the ``emptcp`` group. Each plugin is validated on its own: a plugin that
fails to import, raises in a hook, declares the wrong ABI, ships a broken
object or reuses a stage name is *refused* -- unregistered and reported as one
:class:`emptcp.errors.PluginError` naming the plugin and its distribution --
and the others carry on. Nothing here touches the kernel: objects are opened
(parsed) with :class:`emptcp.ObjectSpec`, never loaded.
"""
from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from ..errors import EmptcpError, PluginError
from ..chain.stages import ABI_VERSION, HOOK_TYPE, StageSpec
from . import hookspec as _hookspec_module  # noqa: F401
from .hookspec import PROJECT
import importlib
_specs = importlib.import_module(__package__ + ".hookspec")

__all__ = ["PluginManager", "PluginInfo", "get_plugin_manager", "validate_stage"]

BUILTIN = "builtin"

# BPF program types (linux/bpf.h) a stage's program must have per program kind
_PROG_TYPES = {"xdp": (6,), "tc": (3, 4)}   # XDP; SCHED_CLS/SCHED_ACT


@dataclass
class PluginInfo:
    """What ``emptcp plugins`` shows about one plugin."""
    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    stages: list[StageSpec] = field(default_factory=list)
    error: PluginError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "module": self.module, "hooks": self.hooks, "ok": self.ok,
                "error": str(self.error) if self.error else None,
                "stages": [stage_dict(s) for s in self.stages]}


def stage_dict(s: StageSpec) -> dict[str, Any]:
    from ..chain.stages import REQUIRED
    return {"name": s.name, "kind": s.kind, "hooks": list(s.hooks), "object": s.object,
            "programs": dict(s.programs), "terminal": s.terminal,
            "description": s.description, "abi_version": s.abi_version,
            "params": [{"name": p.name, "type": p.type,
                        "default": None if p.default is REQUIRED else p.default,
                        "required": p.required, "min": p.min, "max": p.max,
                        "choices": list(p.choices) if p.choices is not None else None,
                        "description": p.description} for p in s.params]}


def validate_stage(spec: Any, *, open_object: bool = True) -> list[str]:
    """Problems of one spec (empty when it is usable). Opens the object; needs no privilege."""
    if not isinstance(spec, StageSpec):
        return [f"returned {type(spec).__name__} {spec!r}, not an emptcp.stages.StageSpec"]
    where = f"{spec.kind} '{spec.name}'"
    problems = []
    if spec.abi_version != ABI_VERSION:
        problems.append(f"{where} was built for context ABI {spec.abi_version}, this emptcp "
                        f"speaks ABI {ABI_VERSION}: rebuild the plugin against this emptcp")
    if not spec.hooks:
        problems.append(f"{where} declares no hooks")
    if not callable(spec.encode):
        problems.append(f"{where}: encode is not callable")
    needed = sorted({HOOK_TYPE[h] for h in spec.hooks})
    for ptype in needed:
        if not spec.programs.get(ptype):
            problems.append(f"{where} supports {'/'.join(h for h in spec.hooks if HOOK_TYPE[h] == ptype)}"
                            f" but names no '{ptype}' program")
    if problems or not open_object:
        return problems
    if not spec.object or not os.path.isfile(spec.object):
        return [f"{where}: object file {spec.object} does not exist (was the plugin built? "
                f"reinstall it: pip install --no-build-isolation <plugin>)"]
    from ..bpf.objects import ObjectSpec
    try:
        with ObjectSpec(spec.object) as obj:
            for ptype in needed:
                prog = spec.programs[ptype]
                pspec = obj.programs.get(prog)
                if pspec is None:
                    have = ", ".join(sorted(obj.programs)) or "none"
                    problems.append(f"{where}: program '{prog}' ({ptype}) is not in "
                                    f"{spec.object} (programs there: {have})")
                elif pspec.type not in _PROG_TYPES[ptype]:
                    problems.append(f"{where}: program '{prog}' is in section "
                                    f"'{pspec.section}', not a {ptype} program")
    except EmptcpError as e:
        problems.append(f"{where}: cannot open object {spec.object}: {e}")
    return problems


def _entry_points(group: str) -> list[tuple[md.EntryPoint, md.Distribution | None]]:
    out, seen = [], set()
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group != group:
                continue
            key = (ep.name, ep.value)
            if key in seen:   # the same dist visible twice on sys.path
                continue
            seen.add(key)
            out.append((ep, dist))
    out.sort(key=lambda x: ((x[1].metadata["name"] or "") if x[1] else "", x[0].name))
    return out


class PluginManager:
    """emptcp's plugin manager.

    >>> pm = PluginManager()            # built-ins + installed plugins
    >>> pm.stages()["count"].kind
    'action'
    >>> [str(e) for e in pm.errors]     # refused plugins, one message each

    ``builtins=False`` / ``entrypoints=False`` leave either out (tests);
    :meth:`register` adds a plugin object directly.
    """

    def __init__(self, *, builtins: bool = True, entrypoints: bool = True) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(_specs)
        self.infos: dict[str, PluginInfo] = {}
        self._stages: dict[str, StageSpec] | None = None
        if builtins:
            from . import builtin
            self.register(builtin, BUILTIN, distribution="emptcp", version=_version("emptcp"))
        if entrypoints:
            self.load_setuptools_entrypoints(PROJECT)

    # ---- registration -----------------------------------------------------
    def register(self, plugin: Any, name: str, *, distribution: str | None = None,
                 version: str | None = None) -> PluginInfo:
        """Register one plugin object under ``name``; a refusal is recorded, not raised."""
        info = PluginInfo(name, distribution, version,
                          getattr(plugin, "__name__", type(plugin).__name__))
        if name in self.infos:
            info.error = PluginError(name, f"a plugin named '{name}' is already registered "
                                     f"(from {self.infos[name].distribution})", distribution)
            self.infos[f"{name}@{distribution}"] = info
            return info
        self.infos[name] = info
        try:
            self.pm.register(plugin, name)
            callers = self.pm.get_hookcallers(plugin) or ()
            info.hooks = sorted(c.name for c in callers)
            unknown = sorted(c.name for c in callers if c.spec is None)
            if unknown:
                self.pm.unregister(plugin, name)
                known = ", ".join(sorted(n for n in dir(self.pm.hook) if n.startswith("emptcp_")))
                info.error = PluginError(name, f"implements unknown hook(s) {', '.join(unknown)} "
                                         f"(emptcp hooks: {known})", distribution)
        except Exception as e:  # pluggy validation: unknown hook names, bad signatures
            info.error = PluginError(name, f"cannot register: {_oneline(e)}", distribution)
        self._stages = None
        return info

    def load_setuptools_entrypoints(self, group: str = PROJECT) -> int:
        """Import and register every entry point of ``group``; return how many were accepted."""
        n = 0
        for ep, dist in _entry_points(group):
            dname = dist.metadata["name"] if dist else None
            dver = dist.version if dist else None
            if ep.name in self.infos or self.pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as e:
                self.infos[ep.name] = PluginInfo(
                    ep.name, dname, dver, ep.value,
                    error=PluginError(ep.name, f"cannot import {ep.value}: {_oneline(e)}", dname))
                continue
            if self.register(plugin, ep.name, distribution=dname, version=dver).ok:
                n += 1
        return n

    def _refuse(self, name: str, reason: str) -> None:
        info = self.infos[name]
        info.error = PluginError(name, reason, info.distribution)
        info.stages = []
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name)

    # ---- stages -----------------------------------------------------------
    def _collect(self) -> dict[str, StageSpec]:
        owner: dict[str, str] = {}
        accepted: dict[str, StageSpec] = {}
        for name in list(self.infos):
            info = self.infos[name]
            if not info.ok:
                continue
            plugin = self.pm.get_plugin(name)
            impl = getattr(plugin, "emptcp_stages", None)
            if impl is None or "emptcp_stages" not in info.hooks:
                continue
            try:
                specs = impl() or []
                specs = list(specs)
            except Exception as e:
                self._refuse(name, f"hook emptcp_stages raised {_oneline(e)}")
                continue
            problems: list[str] = []
            mine: list[StageSpec] = []
            local: set[str] = set()
            for spec in specs:
                p = validate_stage(spec)
                if p:
                    problems += p
                    continue
                if spec.name in owner or spec.name in local:
                    other = owner.get(spec.name, name)
                    problems.append(f"{spec.kind} '{spec.name}' is already provided by plugin "
                                    f"'{other}' ({self.infos[other].distribution})")
                    continue
                local.add(spec.name)
                mine.append(_with_origin(spec, name, info.distribution))
            if problems:
                self._refuse(name, "; ".join(problems))
                continue
            info.stages = mine
            for spec in mine:
                owner[spec.name] = name
                accepted[spec.name] = spec
        return accepted

    def stages(self) -> dict[str, StageSpec]:
        """All accepted stages by name (built-ins and plugins); computed once."""
        if self._stages is None:
            self._stages = self._collect()
        return dict(self._stages)

    def stage(self, name: str) -> StageSpec | None:
        return self.stages().get(name)

    def actions(self) -> dict[str, StageSpec]:
        return {n: s for n, s in self.stages().items() if s.kind == "action"}

    def selectors(self) -> dict[str, StageSpec]:
        return {n: s for n, s in self.stages().items() if s.kind == "selector"}

    @property
    def errors(self) -> list[PluginError]:
        """The refused plugins (validation runs first)."""
        self.stages()
        return [i.error for i in self.infos.values() if i.error is not None]

    def plugins(self) -> list[PluginInfo]:
        self.stages()
        return list(self.infos.values())

    def check(self, names: Iterable[str] | None = None) -> None:
        """Raise the first PluginError (of the plugins in ``names``, default all)."""
        for info in self.plugins():
            if info.error and (names is None or info.name in names):
                raise info.error

    def plugin_of(self, stage: str) -> PluginInfo | None:
        s = self.stage(stage)
        return self.infos.get(s.plugin) if s else None

    # ---- the other hooks, one plugin at a time ----------------------------
    def _impls(self, hook: str) -> list[tuple[str, Callable[..., Any]]]:
        out = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            out.append((impl.plugin_name, impl.function, impl.argnames))
        return out

    def handle_event(self, event: Any,
                     on_error: Callable[[PluginError], None] | None = None,
                     run: Any = None) -> list[tuple[str, Any]]:
        """Give ``event`` to every plugin's emptcp_handle_event; return (plugin, result) pairs.

        ``run`` (an :class:`emptcp.plugins.context.RunContext`) goes to the handlers that
        take an argument named ``run``. A plugin that raises is reported through
        ``on_error`` (default: ignored) and the others still run.
        """
        return self._dispatch("emptcp_handle_event", event, on_error, run)

    def handle_mptcp_event(self, event: Any, on_error: Callable[[PluginError], None] | None = None,
                           run: Any = None) -> list[tuple[str, Any]]:
        """Give a path-manager event (:class:`emptcp.mptcp.events.MptcpEvent`) to every
        plugin's emptcp_handle_mptcp_event; same contract as :meth:`handle_event`."""
        return self._dispatch("emptcp_handle_mptcp_event", event, on_error, run)

    def wants(self, hook: str) -> bool:
        """Whether any registered plugin implements ``hook``."""
        return bool(self._impls(hook))

    def _dispatch(self, hook: str, event: Any, on_error: Callable[[PluginError], None] | None,
                  run: Any = None) -> list[tuple[str, Any]]:
        results = []
        given = {"event": event, "run": run}
        for name, fn, argnames in self._impls(hook):
            try:
                r = fn(**{a: given[a] for a in argnames if a in given})
            except Exception as e:
                if on_error:
                    info = self.infos.get(name)
                    on_error(PluginError(name, f"{hook} raised {_oneline(e)}",
                                         info.distribution if info else None))
                continue
            if r is not None:
                results.append((name, r))
        return results

    def load_problems(self, *, load: bool = True) -> dict[str, str]:
        """Stages whose objects cannot be loaded into this emptcp's data path.

        Validation only parses objects; this goes further, object by object:
        its shared ``emptcp_*`` maps must match the running emptcp's (same
        type, key/value size, entries -- else the object was built against
        another emptcp's headers and every apply using it fails), and with
        ``load`` (root) every program is loaded through the verifier, not
        attached, with throw-away maps, as ``emptcp build`` does.

        :return: ``{stage name: reason}`` for the stages that fail; empty when
            all load.
        """
        from .. import builtin_object
        from ..bpf.objects import ObjectSpec
        from ..errors import VerifierError

        def maps(path: str) -> dict[str, tuple[int, int, int, int]]:
            with ObjectSpec(path) as spec:
                return {n: (m.type, m.key_size, m.value_size, m.max_entries)
                        for n, m in spec.maps.items() if n.startswith("emptcp_")}

        core = maps(builtin_object("entry"))
        by_object: dict[str, list[str]] = {}
        for name, spec in self.stages().items():
            by_object.setdefault(spec.object, []).append(name)
        problems: dict[str, str] = {}
        for path, names in by_object.items():
            reason = None
            try:
                bad = sorted(n for n, m in maps(path).items() if n in core and core[n] != m)
                if bad:
                    reason = (f"its shared maps {', '.join(bad)} differ from this emptcp's: "
                              "it was built against another emptcp; rebuild it "
                              "(pip install --force-reinstall <plugin>)")
                elif load:
                    with ObjectSpec(path) as spec:
                        spec.load().close()
            except VerifierError as e:
                reason = (f"the verifier rejects program '{e.program}' of {path}; "
                          f"`emptcp build <its .bpf.c>` shows where and why")
            except EmptcpError as e:
                reason = f"cannot load {path}: {_oneline(e)}"
            if reason:
                problems.update({n: reason for n in names})
        return problems

    def add_commands(self, subparsers: Any) -> list[PluginError]:
        """Let every plugin add CLI commands; a plugin that raises adds none (returned)."""
        errors = []
        for name, fn, argnames in self._impls("emptcp_add_commands"):
            before = dict(getattr(subparsers, "choices", {}))
            try:
                fn(**{a: subparsers for a in argnames if a == "subparsers"})
            except Exception as e:
                # drop what the plugin added before failing
                for k in set(getattr(subparsers, "choices", {})) - set(before):
                    subparsers.choices.pop(k, None)
                info = self.infos.get(name)
                errors.append(PluginError(name, f"emptcp_add_commands raised {_oneline(e)}",
                                          info.distribution if info else None))
        return errors


def _with_origin(spec: StageSpec, plugin: str, distribution: str | None) -> StageSpec:
    import dataclasses
    if spec.plugin == plugin and spec.distribution == distribution:
        return spec
    return dataclasses.replace(spec, plugin=plugin, distribution=distribution)


def _oneline(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


_default: PluginManager | None = None


def get_plugin_manager(*, reload: bool = False) -> PluginManager:
    """The process-wide manager (built-ins + installed plugins), created on first use."""
    global _default
    if _default is None or reload:
        _default = PluginManager()
    return _default
