"""Object descriptions (the seed's JSON descriptions, as dicts or TOML) and a loader
that pins maps by policy and, on failure, removes only the pins it made itself.

    desc = ObjectDescription.from_dict({
        "path": "xdp_count.o",
        "programs": {"xdp_count": {"type": "xdp"}},
        "pin_maps": {"counts": {"path": "/sys/fs/bpf/demo/counts", "policy": "pin-if-not-exists"}},
    })
    with load(desc) as obj:            # unpin_only_fail=True: pins survive a clean exit
        attach_xdp(obj.programs["xdp_count"], "eth0").pin("/sys/fs/bpf/demo/link")

Pin policies:
  ``pin-if-not-exists``  reuse the map pinned there; if none, create it and pin it.
  ``reuse-if-exists``    reuse the map pinned there; if none, create a private (unpinned) map.
  ``replace``            always create a new map and pin it in place of any existing pin.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Iterator, Mapping

from ..errors import ConfigError
from .maps import Map
from .objects import Object, ObjectSpec
from .programs import ProgType

__all__ = ["PinPolicy", "MapPin", "ObjectDescription", "load", "open_object", "unpin_all",
           "ensure_dir"]

_PROG_TYPES = {"xdp": ProgType.XDP, "tc": ProgType.SCHED_CLS, "sched_cls": ProgType.SCHED_CLS,
               "sched_act": ProgType.SCHED_ACT, "socket_filter": ProgType.SOCKET_FILTER}


class PinPolicy(Enum):
    PIN_IF_NOT_EXISTS = "pin-if-not-exists"
    REUSE_IF_EXISTS = "reuse-if-exists"
    REPLACE = "replace"


@dataclass
class MapPin:
    path: str
    policy: PinPolicy = PinPolicy.PIN_IF_NOT_EXISTS


@dataclass
class ObjectDescription:
    path: str
    programs: dict[str, int | None] = field(default_factory=dict)  # name -> prog type (None: ELF's)
    pin_maps: dict[str, MapPin] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "description") -> "ObjectDescription":
        unknown = set(d) - {"path", "programs", "pin_maps"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)}", where)
        if "path" not in d:
            raise ConfigError("missing 'path' (the object file)", where)
        progs: dict[str, int | None] = {}
        for name, p in (d.get("programs") or {}).items():
            t = (p or {}).get("type")
            if t is not None and t not in _PROG_TYPES:
                raise ConfigError(f"unknown program type {t!r} (one of {sorted(_PROG_TYPES)})",
                                  f"{where}: programs.{name}.type")
            progs[name] = _PROG_TYPES[t] if t else None
        pins = {}
        for name, m in (d.get("pin_maps") or {}).items():
            try:
                pins[name] = MapPin(m["path"], PinPolicy(m.get("policy", "pin-if-not-exists")))
            except KeyError:
                raise ConfigError("needs 'path'", f"{where}: pin_maps.{name}") from None
            except ValueError:
                raise ConfigError(f"unknown policy {m.get('policy')!r} (one of "
                                  f"{[p.value for p in PinPolicy]})",
                                  f"{where}: pin_maps.{name}.policy") from None
        return cls(d["path"], progs, pins)

    @classmethod
    def from_toml(cls, path: str) -> "ObjectDescription":
        import tomllib   # only descriptions read from files need the TOML parser
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(str(e), path) from None
        desc = cls.from_dict(data, path)
        if not os.path.isabs(desc.path):
            desc.path = os.path.join(os.path.dirname(os.path.abspath(path)), desc.path)
        return desc


def ensure_dir(path: str) -> None:
    os.makedirs(path, exist_ok=True)


def open_object(desc: ObjectDescription, *, maps: Mapping[str, Map] | None = None,
                autoload: Iterable[str] | None = None,
                consts: Mapping[str, bytes | int] | None = None) -> tuple[Object, list[str]]:
    """Open ``desc``'s object, reuse or pin its maps by policy, load it.

    ``maps`` hands live maps to reuse by name (shared maps held in memory, e.g.
    by a test harness); ``autoload`` restricts loading to those programs (the
    others are not verified); ``consts`` sets ``.rodata`` variables
    (:meth:`ObjectSpec.set_const`). Returns the live object and the pins this call
    created; on failure nothing it pinned is left behind. The caller closes the
    object (``load()`` is the context-managed form).
    """
    spec = ObjectSpec(desc.path)
    created: list[str] = []
    try:
        for name, prog_type in desc.programs.items():
            if name not in spec.programs:
                raise ConfigError(f"object has no program '{name}' (has: {sorted(spec.programs)})",
                                  desc.path)
            if prog_type is not None:
                spec.programs[name].type = prog_type
        if autoload is not None:
            wanted = set(autoload)
            unknown = wanted - set(spec.programs)
            if unknown:
                raise ConfigError(f"object has no program(s) {sorted(unknown)} "
                                  f"(has: {sorted(spec.programs)})", desc.path)
            for name, prog in spec.programs.items():
                prog.autoload = name in wanted
        for name, value in (consts or {}).items():
            spec.set_const(name, value)
        for name, m in (maps or {}).items():
            if name in spec.maps:
                spec.maps[name].reuse(m)
        fresh: dict[str, MapPin] = {}
        for name, pin in desc.pin_maps.items():
            if name not in spec.maps:
                raise ConfigError(f"object has no map '{name}' (has: {sorted(spec.maps)})",
                                  desc.path)
            exists = os.path.exists(pin.path)
            if exists and pin.policy is not PinPolicy.REPLACE:
                spec.maps[name].reuse(pin.path)
            elif pin.policy is not PinPolicy.REUSE_IF_EXISTS:
                fresh[name] = pin
        obj = spec.load()
    except BaseException:
        spec.close()
        raise
    try:
        for name, pin in fresh.items():
            ensure_dir(os.path.dirname(pin.path))
            if os.path.exists(pin.path):  # REPLACE: pin beside, then rename over atomically
                tmp = f"{pin.path}-new-{os.getpid()}"  # bpffs names cannot hold "."
                obj.maps[name].pin(tmp)
                os.rename(tmp, pin.path)
            else:
                obj.maps[name].pin(pin.path)
                created.append(pin.path)
    except BaseException:
        unpin_all(created)
        obj.close()
        raise
    return obj, created


def unpin_all(paths: Iterable[str]) -> None:
    """Remove pins (in reverse order of creation); missing ones are fine."""
    for path in reversed(list(paths)):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.unlink(path)


@contextlib.contextmanager
def load(desc: ObjectDescription, *, unpin_only_fail: bool = True,
         maps: Mapping[str, Map] | None = None,
         autoload: Iterable[str] | None = None) -> Iterator[Object]:
    """Open, pin/reuse maps by policy, load; yield the live object (see :func:`open_object`).

    On any failure (load or inside the block) the pins this call created are
    removed and pre-existing pins are left untouched. With
    ``unpin_only_fail=False`` they are also removed on a clean exit.
    """
    obj, created = open_object(desc, maps=maps, autoload=autoload)
    ok = False
    try:
        yield obj
        ok = True
    finally:
        obj.close()
        if not ok or not unpin_only_fail:
            unpin_all(created)
