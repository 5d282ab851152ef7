"""High-level Python API: the same operations as the CLI, on a Config or a TOML file.

    from emptcp.api import apply, status, detach
    apply("policy.toml")                       # or apply(config_object)
    status()["hooks"][0]["policies"][0]["actions"][0]["counters"]["packets"]
    detach(all=True)

Run-time entries of an applied policy's set-valued selector (no reload)::

    from emptcp.api import policy
    conns = policy("spark-backup")
    conns.select(0, local_addr="10.0.0.1", local_port=7077,
                 remote_addr="10.0.1.2", remote_port=40000)
    conns.unselect(0, local_addr="10.0.0.1", local_port=7077,
                   remote_addr="10.0.1.2", remote_port=40000)
    conns.entries(0)
"""
from __future__ import annotations

from typing import Any, Callable

from ..chain.config import Resolved, load_file, resolve
from .engine import DEFAULT_PIN_ROOT, ApplyResult, Engine
from ..errors import ConfigError, EmptcpError
from ..chain.model import Config

__all__ = ["load", "apply", "plan", "status", "detach", "stages", "policy", "AppliedPolicy"]


def stages(plugins: Any = None) -> dict[str, Any]:
    """Installed stages by name (built-ins and plugins)."""
    if plugins is None:
        from ..plugins.manager import PluginManager
        plugins = PluginManager()
    return plugins.stages()


def load(source: Config | str, plugins: Any = None) -> Resolved:
    """Parse (if a path) and validate a configuration against the installed stages."""
    if isinstance(source, str):
        cfg, loc = load_file(source)
        return resolve(cfg, stages(plugins), loc)
    return resolve(source, stages(plugins))


def apply(source: Config | str, pin_root: str = DEFAULT_PIN_ROOT, *, dry_run: bool = False,
          plugins: Any = None, progress: Callable[[str], None] | None = None) -> ApplyResult:
    """Apply a configuration transactionally (``dry_run``: plan and preflight only)."""
    return Engine(pin_root, progress).apply(load(source, plugins), dry_run=dry_run)


def plan(source: Config | str, pin_root: str = DEFAULT_PIN_ROOT,
         plugins: Any = None) -> ApplyResult:
    return apply(source, pin_root, dry_run=True, plugins=plugins)


def status(pin_root: str = DEFAULT_PIN_ROOT) -> dict[str, Any]:
    """What ``emptcp status --json`` prints: the engine's status plus ``"mptcp"``, the
    MPTCP connections on hooked interfaces in this process's namespace (from ``ss``)."""
    from ..mptcp.status import policy_connections
    st = Engine(pin_root).status()
    st["mptcp"] = policy_connections(st)
    return st


def detach(interface: str | None = None, pin_root: str = DEFAULT_PIN_ROOT, *,
           all: bool = False, plugins: Any = None) -> list[str]:
    """Remove everything (``all=True``), or the hooks on one interface (a new generation
    without them, applied like any other change)."""
    engine = Engine(pin_root)
    if all or interface is None:
        return engine.detach_all()
    current = engine.state()
    if current is None:
        raise EmptcpError(f"nothing is applied under {pin_root}")
    from ..chain.config import from_dict, _Locator
    cfg = from_dict(current[1]["config"], _Locator("<applied configuration>", ""))
    gone = [n for n, h in cfg.hooks.items() if h.interface == interface]
    if not gone:
        raise ConfigError(f"no hook is attached to {interface!r} under {pin_root}")
    for n in gone:
        del cfg.hooks[n]
    cfg.policies = [p for p in cfg.policies if p.hook not in gone]
    if not cfg.hooks:
        return engine.detach_all()
    engine.apply(resolve(cfg, stages(plugins)))
    return [f"hook {n}" for n in gone]


class AppliedPolicy:
    """An applied policy by name: add and remove entries of its tcp4tuple / tcp2tuple /
    service selectors at run time (:class:`emptcp.runtime.flows.Flows`)."""

    def __init__(self, name: str, pin_root: str = DEFAULT_PIN_ROOT) -> None:
        from .flows import Flows
        self.name = name
        self.flows = Flows(pin_root)

    @staticmethod
    def _entries(entries: tuple[dict[str, Any], ...], params: dict[str, Any]) -> list[dict[str, Any]]:
        if entries and params:
            raise TypeError("give entries (dicts) or one entry as keyword arguments, not both")
        return list(entries) if entries else [params]

    def select(self, index: int, *entries: dict[str, Any], **params: Any) -> "AppliedPolicy":
        """Add entries to selector ``index`` (one entry as keywords, or dicts)."""
        self.flows.add(self.name, self._entries(entries, params), index)
        return self

    def unselect(self, index: int, *entries: dict[str, Any], **params: Any) -> "AppliedPolicy":
        """Remove entries from selector ``index``."""
        self.flows.delete(self.name, self._entries(entries, params), index)
        return self

    def entries(self, index: int | None = None) -> list[dict[str, Any]]:
        """Every entry of selector ``index`` (static and run-time)."""
        return self.flows.list(self.name, index)


def policy(name: str, pin_root: str = DEFAULT_PIN_ROOT) -> AppliedPolicy:
    """The applied policy ``name``, to change its selectors' entries at run time."""
    return AppliedPolicy(name, pin_root)
