"""emptcp: policy chains of small eBPF programs on XDP and TC hooks.

The bindings (``ObjectSpec``, ``Object``, ``Program``, ``Map``, ``Link``...) wrap
the system libbpf through cffi; the chain engine, configuration, plugins and CLI
build on them.
"""
from __future__ import annotations

import os

__version__ = "0.1.0"

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def include_dir() -> str:
    """Directory of emptcp's BPF headers, for ``clang -I`` (like numpy.get_include())."""
    return os.path.join(_DATA, "include")


def object_dir() -> str:
    """Directory of the compiled built-in BPF objects shipped with the package."""
    return os.path.join(_DATA, "bpf")


def builtin_object(name: str) -> str:
    """Path of a built-in object, e.g. ``builtin_object("entry")``."""
    return os.path.join(object_dir(), f"{name}.o")


from .errors import *  # noqa: E402,F401,F403
from .objects import Object, ObjectSpec, MapSpec, ProgramSpec, load_object  # noqa: E402,F401
from .maps import Map, MapType, BPF_ANY, BPF_EXIST, BPF_NOEXIST  # noqa: E402,F401
from .programs import Program, ProgType, TestRunResult, XdpAction, TcAction  # noqa: E402,F401
from .links import Link, attach_xdp, attach_tcx, xdp_attach, xdp_detach, xdp_query  # noqa: E402,F401
from .tc import TcHook  # noqa: E402,F401
from .buffers import RingBuffer, PerfBuffer  # noqa: E402,F401
from .pinning import ObjectDescription, PinPolicy, MapPin, load  # noqa: E402,F401
