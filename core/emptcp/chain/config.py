"""TOML policy files: parse into a :class:`~emptcp.model.Config`, then validate it
against the installed stages into a :class:`Resolved` configuration.

Everything here happens before the kernel is touched; every error is one
:class:`~emptcp.errors.ConfigError` naming file, line (best effort: tomllib
keeps no positions, so lines are found in the text) and key path.

File format (see README "Configuration")::

    [hooks.wan]                 # a named attachment point
    interface = "veth0"
    type = "xdp"                # xdp | tc-ingress | tc-egress
    mode = "native"             # xdp only: native | generic
    position = "first"          # tc hooks only: first | last (default) among TCX programs

    [services]
    web = [80, 443, "8000-8080"]

    [plugins.mptcp.metered]     # settings of an installed plugin, kept as written; the
    interfaces = ["wwan0"]      # plugin's run-time handlers read them (RunContext.settings)

    [[policy]]
    name = "web-backup"
    hook = "wan"
    priority = 10               # lower runs first; ties keep file order
    selectors = [ { use = "ip_pair", remote_addr = "10.0.1.0/24" },
                  { use = "service", ports = "web", op = "and" } ]
    actions = [ { use = "count" }, { use = "set_recv_win", window = 1024 } ]
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..abi import LIMITS, P_IMM_MASK, PARAM_SIZE
from ..errors import ConfigError, PluginError
from .model import AND, OR, Config, Hook, Policy, Stage, _FIRST_PARAM
from .sets import SetParam
from .stages import HOOKS, StageSpec, validate_params

__all__ = ["load_file", "parse_text", "resolve", "Resolved", "ResolvedHook", "ResolvedPolicy",
           "ResolvedStage", "LIMITS"]

_TOP = {"hooks", "services", "policy", "plugins"}
_HOOK_KEYS = {"interface", "type", "mode", "position"}
_POLICY_KEYS = {"name", "hook", "priority", "selectors", "actions"}
_XDP_MODES = ("native", "generic")
_TC_POSITIONS = ("first", "last")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# ---- locating keys in the text -------------------------------------------
class _Locator:
    """Best-effort line numbers for key paths (tomllib does not keep positions)."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def _find(self, pattern: str, start: int = 0, stop: int | None = None) -> int | None:
        rx = re.compile(pattern)
        for i in range(start, stop if stop is not None else len(self.lines)):
            if rx.search(self.lines[i]):
                return i
        return None

    def _next_table(self, start: int) -> int:
        nxt = self._find(r"^\s*\[", start + 1)
        return nxt if nxt is not None else len(self.lines)

    def policy(self, index: int) -> int | None:
        count = -1
        for i, line in enumerate(self.lines):
            if re.match(r"^\s*\[\[\s*policy\s*\]\]", line):
                count += 1
                if count == index:
                    return i
        return None

    def line_of(self, keys: tuple[Any, ...]) -> int | None:
        if not keys:
            return None
        head = keys[0]
        if head == "policy" and len(keys) > 1 and isinstance(keys[1], int):
            start = self.policy(keys[1])
            if start is None:
                return self._find(r"^\s*policy\s*=")
            stop = self._next_table(start)
            if len(keys) == 2:
                return start
            key = keys[2]
            line = self._find(rf"^\s*{re.escape(str(key))}\s*=", start, stop)
            if line is None:
                return start
            if len(keys) >= 4 and isinstance(keys[3], int):  # the n-th inline table of a chain
                found = self._nth_use(line, stop, keys[3])
                if found is not None:
                    line = found
                    if len(keys) >= 5:
                        same = self._find(rf"\b{re.escape(str(keys[4]))}\s*=", line, stop)
                        line = same if same is not None else line
            return line
        if head in ("hooks", "services"):
            start = self._find(rf"^\s*\[\s*{head}(\.\"?{re.escape(str(keys[1]))}\"?)?\s*\]"
                               if len(keys) > 1 and head == "hooks" else rf"^\s*\[\s*{head}[\s.\]]")
            if start is None:
                return None
            if len(keys) > 2 or (head == "services" and len(keys) > 1):
                key = keys[2] if head == "hooks" else keys[1]
                line = self._find(rf"^\s*\"?{re.escape(str(key))}\"?\s*=", start + 1,
                                  self._next_table(start))
                return line if line is not None else start
            return start
        return self._find(rf"^\s*\[*\s*{re.escape(str(head))}\b")

    def _nth_use(self, start: int, stop: int, n: int) -> int | None:
        count = -1
        for i in range(start, stop):
            for _ in re.finditer(r"\{", self.lines[i]):
                count += 1
                if count == n:
                    return i
        return None

    def where(self, *keys: Any) -> str:
        line = self.line_of(keys)
        dotted = ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in keys)
        dotted = dotted.replace(".[", "[")
        loc = f"{self.path}:{line + 1}" if line is not None else self.path
        return f"{loc}: {dotted}" if dotted else loc


# ---- parsing ---------------------------------------------------------------
def load_file(path: str) -> tuple[Config, "_Locator"]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path) from None
    return parse_text(raw.decode("utf-8", errors="replace"), path)


def parse_text(text: str, path: str = "<config>") -> tuple[Config, "_Locator"]:
    loc = _Locator(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        where = f"{path}:{m.group(1)}" if m else path
        raise ConfigError(f"TOML syntax error: {e}", where) from None
    return from_dict(data, loc), loc


def _expect(cond: bool, loc: _Locator, msg: str, *keys: Any) -> None:
    if not cond:
        raise ConfigError(msg, loc.where(*keys))


def from_dict(data: dict[str, Any], loc: _Locator) -> Config:
    cfg = Config()
    unknown = set(data) - _TOP
    _expect(not unknown, loc, f"unknown top-level key(s): {', '.join(sorted(unknown))} "
            f"(expected: hooks, services, policy, plugins)", sorted(unknown)[0] if unknown else "")
    hooks = data.get("hooks", {})
    _expect(isinstance(hooks, dict), loc, "must be a table of named hooks", "hooks")
    for name, h in hooks.items():
        _expect(isinstance(h, dict), loc, "a hook must be a table", "hooks", name)
        _expect(bool(_NAME.match(name)), loc, f"bad hook name {name!r}", "hooks", name)
        bad = set(h) - _HOOK_KEYS
        _expect(not bad, loc, f"unknown key(s) {', '.join(sorted(bad))} (expected: interface, "
                "type, mode, position)", "hooks", name, sorted(bad)[0] if bad else "")
        _expect(isinstance(h.get("interface"), str) and h.get("interface") != "", loc,
                "needs 'interface' (a network interface name)", "hooks", name, "interface")
        htype = h.get("type", "xdp")
        _expect(htype in HOOKS, loc, f"unknown hook type {htype!r} (one of {', '.join(HOOKS)})",
                "hooks", name, "type")
        mode = h.get("mode")
        if mode is not None:
            _expect(htype == "xdp", loc, "'mode' applies to xdp hooks only", "hooks", name, "mode")
            _expect(mode in _XDP_MODES, loc, f"unknown XDP mode {mode!r} (native or generic)",
                    "hooks", name, "mode")
        position = h.get("position")
        if position is not None:
            _expect(htype != "xdp", loc, "'position' applies to tc-ingress and tc-egress hooks "
                    "only (an XDP hook has one program per interface)", "hooks", name, "position")
            _expect(position in _TC_POSITIONS, loc, f"unknown position {position!r}: 'first' "
                    "(before every TCX program on the hook) or 'last' (after them; default)",
                    "hooks", name, "position")
        cfg.hooks[name] = Hook(name, h["interface"], htype, mode, position)
    services = data.get("services", {})
    _expect(isinstance(services, dict), loc, "must be a table of name = [ports]", "services")
    for name, ports in services.items():
        _expect(isinstance(ports, list) and len(ports) > 0, loc,
                "a service is a non-empty list of ports or 'lo-hi' ranges", "services", name)
        cfg.services[name] = ports
    settings = data.get("plugins", {})
    _expect(isinstance(settings, dict), loc, "must be a table of [plugins.NAME] tables", "plugins")
    for name, table in settings.items():
        _expect(isinstance(table, dict), loc, f"[plugins.{name}] must be a table (the settings "
                f"of the plugin {name!r})", "plugins", name)
        cfg.plugins[name] = table
    policies = data.get("policy", [])
    _expect(isinstance(policies, list), loc, "use [[policy]] tables", "policy")
    names: set[str] = set()
    for i, p in enumerate(policies):
        _expect(isinstance(p, dict), loc, "a policy must be a table", "policy", i)
        bad = set(p) - _POLICY_KEYS
        _expect(not bad, loc, f"unknown key(s) {', '.join(sorted(bad))} (expected: "
                f"{', '.join(sorted(_POLICY_KEYS))})", "policy", i, sorted(bad)[0] if bad else "")
        name = p.get("name")
        _expect(isinstance(name, str) and bool(_NAME.match(name or "")), loc,
                "needs 'name' (letters, digits, '-', '_', '.'; at most 64)", "policy", i, "name")
        _expect(name not in names, loc, f"duplicate policy name {name!r}", "policy", i, "name")
        names.add(name)
        hook = p.get("hook")
        _expect(isinstance(hook, str), loc, "needs 'hook' (a name from [hooks])", "policy", i,
                "hook")
        _expect(hook in cfg.hooks, loc, f"unknown hook {hook!r} (defined: "
                f"{', '.join(cfg.hooks) or 'none'})", "policy", i, "hook")
        prio = p.get("priority", 0)
        _expect(isinstance(prio, int) and not isinstance(prio, bool), loc,
                f"priority must be an integer, got {prio!r}", "policy", i, "priority")
        sels = _stages(p.get("selectors", []), loc, i, "selectors")
        acts = _stages(p.get("actions", []), loc, i, "actions")
        _expect(len(acts) > 0, loc, "a policy needs at least one action", "policy", i, "actions")
        cfg.policies.append(Policy(name, hook, sels, acts, prio))
    return cfg


def _stages(items: Any, loc: _Locator, i: int, key: str) -> list[Stage]:
    _expect(isinstance(items, list), loc, f"'{key}' must be a list of tables", "policy", i, key)
    _expect(len(items) <= LIMITS["stages"], loc,
            f"{len(items)} {key} is more than the limit of {LIMITS['stages']} per policy",
            "policy", i, key)
    out = []
    for j, s in enumerate(items):
        _expect(isinstance(s, dict), loc, "each stage is a table like { use = \"count\" }",
                "policy", i, key, j)
        use = s.get("use")
        _expect(isinstance(use, str) and use != "", loc, "needs 'use' (the stage name)",
                "policy", i, key, j)
        op = s.get("op", AND)
        if key == "selectors":
            _expect(op in (AND, OR), loc, f"op must be 'and' or 'or', got {op!r}", "policy", i,
                    key, j, "op")
        else:
            _expect("op" not in s, loc, "'op' applies to selectors only", "policy", i, key, j, "op")
        params = {k: v for k, v in s.items() if k not in ("use", "op")}
        out.append(Stage(use, params, op))
    return out


# ---- resolution against installed stages and interfaces ------------------------
@dataclass
class ResolvedStage:
    spec: StageSpec
    params: dict[str, Any]
    encoded: int | bytes
    op: str = AND

    def describe(self) -> dict[str, Any]:
        return {"use": self.spec.name, "op": self.op, "params": _jsonable(self.params),
                "plugin": self.spec.plugin}


@dataclass
class ResolvedPolicy:
    name: str
    priority: int
    selectors: list[ResolvedStage]
    actions: list[ResolvedStage]


@dataclass
class ResolvedHook:
    name: str
    interface: str
    ifindex: int
    type: str
    mode: str | None
    policies: list[ResolvedPolicy] = field(default_factory=list)
    position: str | None = None   # tc hooks: "first" | "last"; None on xdp


@dataclass
class Resolved:
    hooks: dict[str, ResolvedHook]
    config: Config

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: what status shows and what re-apply compares."""
        return {"hooks": [
            {"name": h.name, "interface": h.interface, "ifindex": h.ifindex, "type": h.type,
             "mode": h.mode, "position": h.position,
             "policies": [{"name": p.name, "priority": p.priority,
                           "selectors": [s.describe() for s in p.selectors],
                           "actions": [a.describe() for a in p.actions]} for p in h.policies]}
            for h in self.hooks.values()]}

    def digest(self, objects: Mapping[str, str] | None = None) -> str:
        """Identity of this configuration (plus the content of the objects it loads)."""
        h = hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode())
        if self.config.plugins:   # a changed [plugins.*] table is a changed configuration
            h.update(json.dumps(self.config.plugins, sort_keys=True, default=str).encode())
        for path in sorted(objects or {}):
            h.update(objects[path].encode())  # type: ignore[index]
        return h.hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def resolve(cfg: Config, stages: Mapping[str, StageSpec], loc: _Locator | None = None,
            *, check_interfaces: bool = True) -> Resolved:
    """Validate ``cfg`` against the installed ``stages`` and this namespace's interfaces."""
    loc = loc or _Locator("<config>", "")
    _expect(len(cfg.hooks) <= LIMITS["hooks"], loc,
            f"{len(cfg.hooks)} hooks is more than the limit of {LIMITS['hooks']}", "hooks")
    hooks: dict[str, ResolvedHook] = {}
    seen: dict[tuple[str, str], str] = {}
    for h in cfg.hooks.values():
        ifindex = 0
        if check_interfaces:
            try:
                ifindex = socket.if_nametoindex(h.interface)
            except OSError:
                raise ConfigError(f"interface {h.interface!r} does not exist in this network "
                                  "namespace", loc.where("hooks", h.name, "interface")) from None
        other = seen.get((h.interface, h.type))
        _expect(other is None, loc, f"hook '{other}' already attaches {h.type} to "
                f"{h.interface}", "hooks", h.name)
        seen[(h.interface, h.type)] = h.name
        position = getattr(h, "position", None)
        if h.type != "xdp":
            _expect(position in (None, *_TC_POSITIONS), loc, f"unknown position {position!r}: "
                    "'first' or 'last'", "hooks", h.name, "position")
            position = position or "last"
        else:
            _expect(position is None, loc, "'position' applies to tc-ingress and tc-egress "
                    "hooks only", "hooks", h.name, "position")
        hooks[h.name] = ResolvedHook(h.name, h.interface, ifindex, h.type, h.mode,
                                     position=position)
    order = sorted(range(len(cfg.policies)), key=lambda i: cfg.policies[i].priority)
    for i in order:
        p = cfg.policies[i]
        hook = hooks[p.hook]
        sels = [_resolve_stage(s, "selector", hook, cfg, stages, loc, i, "selectors", j)
                for j, s in enumerate(p.selectors)]
        acts = [_resolve_stage(a, "action", hook, cfg, stages, loc, i, "actions", j)
                for j, a in enumerate(p.actions)]
        hook.policies.append(ResolvedPolicy(p.name, p.priority, sels, acts))
    for hook in hooks.values():
        _expect(len(hook.policies) <= LIMITS["policies_per_hook"], loc,
                f"{len(hook.policies)} policies on hook '{hook.name}' is more than the limit of "
                f"{LIMITS['policies_per_hook']}", "hooks", hook.name)
        _check_tail_calls(hook, loc, cfg)
    return Resolved(hooks, cfg)


def _check_tail_calls(hook: ResolvedHook, loc: _Locator, cfg: Config) -> None:
    """Program selectors of the rules a packet may try, plus the winner's actions,
    within the kernel's tail-call limit; rules within EMPTCP_MAX_RULES."""
    from .compiler import PolicySpec, StageRef, worst_case_stages

    def spec(p: ResolvedPolicy) -> PolicySpec:
        return PolicySpec([StageRef(s.spec.name, s.encoded, s.op) for s in p.selectors],
                          [StageRef(a.spec.name, a.encoded) for a in p.actions])
    specs: list[PolicySpec] = []
    for p in hook.policies:
        specs.append(spec(p))
        idx = next(i for i, q in enumerate(cfg.policies) if q.name == p.name)
        try:
            worst = worst_case_stages(specs)
        except ValueError as e:      # more rules than a hook holds
            raise ConfigError(f"on hook '{hook.name}' policy '{p.name}': {e}",
                              loc.where("policy", idx)) from None
        if worst > LIMITS["tail_calls"]:
            raise ConfigError(
                f"on hook '{hook.name}' a packet reaching policy '{p.name}' may need {worst} "
                f"tail calls (program selectors of every rule tried before + this chain); the "
                f"kernel allows {LIMITS['tail_calls']}: move policies to another hook or use "
                "built-in selectors (classified without tail calls)", loc.where("policy", idx))


def _entries_ref(name: str, loc: _Locator, where: str) -> str:
    """``PATH#sha256=DIGEST`` of an entries file: absolute (relative names are the policy
    file's neighbours), with its content's digest so that editing the file changes the
    configuration (and its digest) like editing the TOML does."""
    base = os.path.dirname(os.path.abspath(loc.path)) if not loc.path.startswith("<") else os.getcwd()
    path = os.path.join(base, os.path.expanduser(name))
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise ConfigError(f"entries file {path}: {e.strerror}", where) from None
    return f"{path}#sha256={hashlib.sha256(data).hexdigest()}"


def _resolve_stage(stage: Stage, kind: str, hook: ResolvedHook, cfg: Config,
                   stages: Mapping[str, StageSpec], loc: _Locator, i: int, key: str,
                   j: int) -> ResolvedStage:
    where = loc.where("policy", i, key, j)
    spec = stages.get(stage.use)
    if spec is None:
        same_kind = sorted(n for n, s in stages.items() if s.kind == kind)
        raise ConfigError(f"unknown {kind} {stage.use!r} (installed: {', '.join(same_kind)}; "
                          "see `emptcp plugins`)", where)
    if spec.kind != kind:
        raise ConfigError(f"{stage.use!r} is {'an' if spec.kind == 'action' else 'a'} "
                          f"{spec.kind}, not {'an' if kind == 'action' else 'a'} {kind}", where)
    if hook.type not in spec.hooks:
        raise ConfigError(f"{kind} {stage.use!r} does not support {hook.type} hooks "
                          f"(supports: {', '.join(spec.hooks)})", where)
    params = dict(stage.params)
    if _FIRST_PARAM in params:
        if not spec.params:
            raise ConfigError(f"{kind} {stage.use!r} takes no parameters", where)
        params[spec.params[0].name] = params.pop(_FIRST_PARAM)
    for p in spec.params:  # a port set may name a [services] entry
        v = params.get(p.name)
        if p.type == "ports" and isinstance(v, str) and not re.match(r"^\d+(-\d+)?$", v):
            if v not in cfg.services:
                raise ConfigError(f"unknown service {v!r} (defined: "
                                  f"{', '.join(cfg.services) or 'none'})",
                                  loc.where("policy", i, key, j, p.name))
            params[p.name] = cfg.services[v]
    for p in spec.params:  # a file of entries, named relative to the policy file
        v = params.get(p.name)
        if p.type == "entries" and isinstance(v, str) and "#sha256=" not in v:
            params[p.name] = _entries_ref(v, loc, loc.where("policy", i, key, j, p.name))
    first_bad = next((k for k in params if k not in {p.name for p in spec.params}), None)
    values = validate_params(spec, params,
                             loc.where("policy", i, key, j, first_bad) if first_bad else where)
    for p in spec.params:
        if p.type == "iface" and values.get(p.name):
            try:
                socket.if_nametoindex(values[p.name])
            except OSError:
                raise ConfigError(f"interface {values[p.name]!r} does not exist",
                                  loc.where("policy", i, key, j, p.name)) from None
    try:
        encoded = spec.encode(values)
    except ConfigError as e:
        raise ConfigError(e.message, e.where or where) from None
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e), where) from None
    except Exception as e:  # a plugin's encoder failing is the plugin's fault
        raise PluginError(spec.plugin, f"encoding parameters of '{spec.name}' raised "
                          f"{type(e).__name__}: {e}", spec.distribution) from None
    if isinstance(encoded, SetParam) and spec.plugin == "builtin":
        pass    # a built-in selector's entries, classified by the entry program
    elif isinstance(encoded, int) and not isinstance(encoded, bool):
        if not 0 <= encoded <= P_IMM_MASK:
            raise PluginError(spec.plugin, f"stage '{spec.name}' encoded an immediate "
                              f"{encoded} outside 0..{P_IMM_MASK}", spec.distribution)
    elif isinstance(encoded, (bytes, bytearray)):
        if len(encoded) > PARAM_SIZE:
            raise PluginError(spec.plugin, f"stage '{spec.name}' encoded {len(encoded)} bytes "
                              f"(at most {PARAM_SIZE})", spec.distribution)
        encoded = bytes(encoded)
    else:
        raise PluginError(spec.plugin, f"stage '{spec.name}' encoder returned "
                          f"{type(encoded).__name__}, not int or bytes", spec.distribution)
    return ResolvedStage(spec, values, encoded, stage.op)
