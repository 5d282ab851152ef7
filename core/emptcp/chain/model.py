"""The policy model shared by the Python API and TOML files.

    sc = SelectorChain().add("ip_pair", AND).add("service", AND)
    ac = ActionChain().add("set_flow_priority", backup=True).add("count")
    pc = PolicyChain(sc, ac).select(0, local_addr="10.200.0.2", remote_addr="10.200.1.2") \\
                            .select(1, service="spark")
    cfg = Config().hook("wan", interface="eth0", type="xdp").service("spark", [7077])
    cfg.add(pc, name="spark-backup", hook="wan", priority=10)
    cfg.to_toml()            # the same configuration as a TOML file

A :class:`Config` is plain data: validation against the installed stages and
the kernel happens in :mod:`emptcp.chain.config` / :mod:`emptcp.runtime.engine`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import tomli_w

__all__ = ["AND", "OR", "Stage", "SelectorChain", "ActionChain", "PolicyChain", "Hook",
           "Policy", "Config"]

AND, OR = "and", "or"


@dataclass
class Stage:
    """One selector or action of a chain: its name, parameters and (selectors) join op."""
    use: str
    params: dict[str, Any] = field(default_factory=dict)
    op: str = AND


class _Chain:
    def __init__(self) -> None:
        self.stages: list[Stage] = []

    def __len__(self) -> int:
        return len(self.stages)

    def __iter__(self):
        return iter(self.stages)

    def _at(self, index: int) -> Stage:
        try:
            return self.stages[index]
        except IndexError:
            raise IndexError(f"chain has {len(self.stages)} stages, no stage {index}") from None


class SelectorChain(_Chain):
    """Selectors evaluated left to right; ``op`` joins a selector to those before it."""

    def add(self, name: str, op: str = AND, **params: Any) -> "SelectorChain":
        op = op.lower() if isinstance(op, str) else op
        if op not in (AND, OR):
            raise ValueError(f"selector op must be 'and' or 'or', not {op!r}")
        self.stages.append(Stage(name, dict(params), op))
        return self


class ActionChain(_Chain):
    """Actions run in order on every packet the selectors match."""

    def add(self, name: str, **params: Any) -> "ActionChain":
        self.stages.append(Stage(name, dict(params)))
        return self


class PolicyChain:
    """A selector chain and an action chain; ``select``/``set`` fill in parameters."""

    def __init__(self, selectors: SelectorChain | None = None,
                 actions: ActionChain | None = None) -> None:
        self.selectors = selectors or SelectorChain()
        self.actions = actions or ActionChain()

    def select(self, index: int, *value: Any, **params: Any) -> "PolicyChain":
        """Parameters of selector ``index`` (one positional value = its first parameter)."""
        _assign(self.selectors._at(index), value, params)
        return self

    def set(self, index: int, *value: Any, **params: Any) -> "PolicyChain":
        """Parameters of action ``index`` (one positional value = its first parameter)."""
        _assign(self.actions._at(index), value, params)
        return self


def _assign(stage: Stage, value: tuple[Any, ...], params: dict[str, Any]) -> None:
    if len(value) > 1:
        raise TypeError("give at most one positional value; name the others")
    if value:
        stage.params[_FIRST_PARAM] = value[0]  # resolved to the stage's first parameter later
    stage.params.update(params)


#: placeholder key for a positional parameter, resolved against the stage's schema
_FIRST_PARAM = "_"


def _toml_value(v: Any) -> str:
    """One TOML value on one line (inline tables and arrays)."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip()


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else tomli_w.dumps({k: 0}).split("=")[0].strip()


def _named(stage: Stage) -> dict[str, Any]:
    if _FIRST_PARAM not in stage.params:
        return dict(stage.params)
    try:  # the process-wide manager: plugins are discovered once, not per call
        from ..plugins.manager import get_plugin_manager
        spec = get_plugin_manager().stage(stage.use)
    except Exception:  # no plugins available: keep the placeholder, resolve() names it
        spec = None
    if spec is None or not spec.params:
        return dict(stage.params)
    params = {k: v for k, v in stage.params.items() if k != _FIRST_PARAM}
    return {spec.params[0].name: stage.params[_FIRST_PARAM], **params}


@dataclass
class Hook:
    name: str
    interface: str
    type: str                      # xdp | tc-ingress | tc-egress
    mode: str | None = None        # xdp: native | generic
    position: str | None = None    # tc: first | last among the hook's TCX programs


@dataclass
class Policy:
    name: str
    hook: str
    selectors: list[Stage]
    actions: list[Stage]
    priority: int = 0


class Config:
    """Hooks, named services and policies: one configuration to apply; ``plugins``: the
    ``[plugins.NAME]`` tables (settings of installed plugins, kept as written, read by
    their handlers under ``emptcp run`` through :class:`emptcp.plugins.context.RunContext`)."""

    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self.services: dict[str, list[Any]] = {}
        self.policies: list[Policy] = []
        self.plugins: dict[str, dict[str, Any]] = {}

    def hook(self, name: str, interface: str, type: str = "xdp",
             mode: str | None = None, position: str | None = None) -> "Config":
        """Add a named hook (``position``: tc hooks only, ``"first"`` or ``"last"``)."""
        self.hooks[name] = Hook(name, interface, type, mode, position)
        return self

    def service(self, name: str, ports: list[Any]) -> "Config":
        self.services[name] = list(ports)
        return self

    def add(self, chain: PolicyChain, *, name: str, hook: str, priority: int = 0) -> "Config":
        self.policies.append(Policy(name, hook, copy.deepcopy(chain.selectors.stages),
                                    copy.deepcopy(chain.actions.stages), priority))
        return self

    # ---- serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data, as in a TOML file. A positional parameter given with
        ``select(i, value)`` / ``set(i, value)`` is named after the stage's first
        parameter when the stage is installed."""
        out: dict[str, Any] = {}
        if self.hooks:
            out["hooks"] = {h.name: {k: v for k, v in (("interface", h.interface),
                                                       ("type", h.type), ("mode", h.mode),
                                                       ("position", h.position))
                                     if v is not None}
                            for h in self.hooks.values()}
        if self.services:
            out["services"] = {k: list(v) for k, v in self.services.items()}
        if self.plugins:
            out["plugins"] = copy.deepcopy(self.plugins)
        out["policy"] = []
        for p in self.policies:
            entry: dict[str, Any] = {"name": p.name, "hook": p.hook, "priority": p.priority}
            entry["selectors"] = [{"use": s.use, **({"op": s.op} if s.op != AND else {}),
                                   **_named(s)} for s in p.selectors]
            entry["actions"] = [{"use": a.use, **_named(a)} for a in p.actions]
            out["policy"].append(entry)
        return out

    def to_toml(self) -> str:
        """The configuration as a TOML file, in the style of the documentation:
        named hook tables, then one ``[[policy]]`` table per policy with its
        selectors and actions as lists of inline tables."""
        d = self.to_dict()
        policies = d.pop("policy")
        parts = [tomli_w.dumps(d)] if d else []
        for p in policies:
            lines = ["[[policy]]"]
            for key in ("name", "hook", "priority"):
                lines.append(f"{key} = {_toml_value(p[key])}")
            for key in ("selectors", "actions"):
                if p[key]:
                    lines.append(f"{key} = [")
                    lines += [f"  {_toml_value(stage)}," for stage in p[key]]
                    lines.append("]")
            parts.append("\n".join(lines) + "\n")
        return "\n".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.to_dict() == other.to_dict()
