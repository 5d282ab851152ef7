"""What a selector or an action *is*, to the control plane: :class:`StageSpec`.

Built-in stages and plugin stages are described the same way (plugins return
StageSpecs from their ``emptcp_stages`` hook). A spec names the compiled object
and its program per hook type, declares a typed parameter schema, and knows how
to encode validated parameters into the chain context: a small immediate
(0..63) or a 64-byte blob stored by reference in the parameter table.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..abi import ABI_VERSION, KINDS
from ..errors import ConfigError

__all__ = ["Param", "StageSpec", "HOOKS", "HOOK_TYPE", "REQUIRED", "ABI_VERSION",
           "validate_params"]

HOOKS = tuple(KINDS)
#: program type needed by each hook: both TC directions run SCHED_CLS programs
HOOK_TYPE = {"xdp": "xdp", "tc-ingress": "tc", "tc-egress": "tc"}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_TYPES = ("int", "bool", "str", "port", "ports", "cidr", "cidrs", "ip", "iface", "list",
          "entries")


@dataclass(frozen=True)
class Param:
    """One parameter of a stage.

    ``type``: int | bool | str | port (0..65535) | ports (list of ports or
    "lo-hi" ranges) | cidr (IPv4/IPv6 prefix) | cidrs (one prefix or a list) | ip |
    iface (an interface name) | list | entries (a list of tables, or the name of a
    file of entries, one per line -- resolved against the policy file's directory). ``min``/``max`` bound ints; ``choices`` restricts values.
    """
    name: str
    type: str = "int"
    default: Any = REQUIRED
    min: int | None = None
    max: int | None = None
    choices: tuple[Any, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"parameter '{self.name}': unknown type {self.type!r} "
                             f"(one of {', '.join(_TYPES)})")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any, where: str) -> Any:
        """Validate and normalise one value; raise ConfigError naming ``where``."""
        t = self.type
        bad = lambda why: ConfigError(why, f"{where}.{self.name}")  # noqa: E731
        if t == "bool":
            if not isinstance(value, bool):
                raise bad(f"expected true or false, got {value!r}")
        elif t in ("int", "port"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(f"expected an integer, got {value!r}")
            lo, hi = (0, 65535) if t == "port" else (self.min, self.max)
            lo = self.min if self.min is not None else lo
            hi = self.max if self.max is not None else hi
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise bad(f"{value} is out of range [{lo}, {hi}]")
        elif t == "ports":
            value = _ports(value, bad)
        elif t == "cidr":
            try:
                value = str(ipaddress.ip_network(str(value), strict=False))
            except ValueError:
                raise bad(f"{value!r} is not an IPv4/IPv6 address or prefix") from None
        elif t == "cidrs":
            items = value if isinstance(value, list) else [value]
            if not items:
                raise bad("expected an address/prefix or a non-empty list of them")
            out = []
            for v in items:
                try:
                    out.append(str(ipaddress.ip_network(str(v), strict=False)))
                except ValueError:
                    raise bad(f"{v!r} is not an IPv4/IPv6 address or prefix") from None
            value = out if isinstance(value, list) else out[0]
        elif t == "ip":
            try:
                value = str(ipaddress.ip_address(str(value)))
            except ValueError:
                raise bad(f"{value!r} is not an IPv4/IPv6 address") from None
        elif t in ("str", "iface"):
            if not isinstance(value, str) or not value:
                raise bad(f"expected a non-empty string, got {value!r}")
        elif t == "list":
            if not isinstance(value, list):
                raise bad(f"expected a list, got {value!r}")
        elif t == "entries":
            if not isinstance(value, (list, str)) or value == "":
                raise bad(f"expected a list of tables or a file name, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise bad(f"{value!r} is not one of {list(self.choices)}")
        return value


def _ports(value: Any, bad: Callable[[str], ConfigError]) -> list[tuple[int, int]]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            raise bad(f"port {item!r} is not a number")
        if isinstance(item, int):
            lo = hi = item
        elif isinstance(item, str) and "-" in item:
            try:
                lo, hi = (int(x) for x in item.split("-", 1))
            except ValueError:
                raise bad(f"port range {item!r} is not 'lo-hi'") from None
        elif isinstance(item, str) and item.isdigit():
            lo = hi = int(item)
        else:
            raise bad(f"port {item!r} is not a number or 'lo-hi' range")
        if not (0 <= lo <= 65535 and 0 <= hi <= 65535):
            raise bad(f"port {item!r} is out of range [0, 65535]")
        if lo > hi:
            raise bad(f"port range {item!r} is empty (write it low-high)")
        out.append((lo, hi))
    if not out:
        raise bad("empty port set")
    return out


@dataclass(frozen=True)
class StageSpec:
    """A selector or action as the control plane sees it.

    ``programs`` maps a program type ("xdp", "tc") to the program's name in
    ``object``; the stage supports each hook in ``hooks`` (a subset of
    xdp, tc-ingress, tc-egress). ``encode(params)`` receives validated
    parameters with defaults filled in and returns an ``int`` immediate
    (0..63) or ``bytes`` (at most 64, stored by reference).
    """
    name: str
    kind: str                                   # "action" | "selector"
    hooks: tuple[str, ...]
    object: str
    programs: Mapping[str, str]
    params: tuple[Param, ...] = ()
    encode: Callable[[dict[str, Any]], int | bytes] = lambda p: 0
    abi_version: int = ABI_VERSION
    description: str = ""
    plugin: str = "builtin"
    distribution: str | None = None
    terminal: bool = False                      # ends the chain (drop, pass, redirect)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("action", "selector"):
            raise ValueError(f"stage '{self.name}': kind must be 'action' or 'selector'")
        unknown = set(self.hooks) - set(HOOKS)
        if unknown:
            raise ValueError(f"stage '{self.name}': unknown hooks {sorted(unknown)}")

    def program_for(self, hook: str) -> str:
        return self.programs[HOOK_TYPE[hook]]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params if not p.required}


def validate_params(spec: StageSpec, given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check ``given`` against the spec's schema; return it with defaults filled in."""
    schema = {p.name: p for p in spec.params}
    unknown = set(given) - set(schema)
    if unknown:
        known = ", ".join(schema) or "none"
        raise ConfigError(f"unknown parameter(s) {', '.join(sorted(unknown))} for "
                          f"{spec.kind} '{spec.name}' (parameters: {known})", where)
    out = {}
    for name, p in schema.items():
        if name in given:
            out[name] = p.check(given[name], where)
        elif p.required:
            raise ConfigError(f"{spec.kind} '{spec.name}' needs parameter '{name}'"
                              + (f" ({p.description})" if p.description else ""), where)
        else:
            out[name] = p.default
    return out
