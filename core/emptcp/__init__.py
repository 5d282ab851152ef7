"""emptcp: policy chains of small eBPF programs on XDP and TC hooks.

Layers (docs/architecture.md): ``emptcp.bpf`` binds the system libbpf through cffi
(``ObjectSpec``, ``Object``, ``Program``, ``Map``, ``Link``... re-exported here);
``emptcp.chain`` is the pure chain model, configuration and compiler;
``emptcp.runtime`` writes generations and applies them; ``emptcp.plugins``,
``emptcp.cli`` and ``emptcp.mptcp`` build on those; ``emptcp.rig`` is the test rig.
"""
from __future__ import annotations

import os

__version__ = "0.1.0"

#: where everything emptcp owns is pinned unless --pin-root / EMPTCP_PIN_ROOT says otherwise
#: (defined here, not in :mod:`emptcp.abi`: the CLI shows it in ``--help`` without
#: importing the ABI mirror and its dataclasses)
DEFAULT_PIN_ROOT = "/sys/fs/bpf/emptcp"

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


from .errors import *  # noqa: E402,F401,F403  (pure Python, cheap)

#: public names of the bindings (emptcp.bpf), imported on first use so that a
#: command such as ``emptcp --help`` does not load libbpf through cffi
_BINDINGS = {
    "objects": ("Object", "ObjectSpec", "MapSpec", "ProgramSpec", "load_object"),
    "maps": ("Map", "MapType", "BPF_ANY", "BPF_EXIST", "BPF_NOEXIST"),
    "programs": ("Program", "ProgType", "TestRunResult", "XdpAction", "TcAction"),
    "links": ("Link", "attach_xdp", "attach_tcx", "xdp_attach", "xdp_detach", "xdp_query",
              "attach_kprobe", "attach_tracepoint", "attach_raw_tracepoint", "attach_trace",
              "attach"),
    "tc": ("TcHook",),
    "buffers": ("RingBuffer", "PerfBuffer"),
    "pinning": ("ObjectDescription", "PinPolicy", "MapPin", "load"),
}
_WHERE = {name: mod for mod, names in _BINDINGS.items() for name in names}


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'emptcp' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".bpf.{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_WHERE))
