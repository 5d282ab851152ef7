"""Low-level access to the compiled cffi module: ``ffi``, ``lib`` and error checking.

libbpf's own messages are routed into the ``emptcp.bpf.libbpf`` logger
(warn → WARNING, info → INFO, debug → DEBUG). While :func:`capture_log` is
active on a thread, messages are also collected, so loaders can attach them to
the exception they raise.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
from typing import Iterator

from ._libbpf import ffi, lib  # type: ignore[import-not-found]
from ..errors import error_from_errno

__all__ = ["ffi", "lib", "check", "check_ptr", "strerror", "num_possible_cpus", "capture_log",
           "version"]

log = logging.getLogger("emptcp.bpf.libbpf")
_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_capture = threading.local()


@ffi.def_extern()
def emptcp_py_print(level: int, msg) -> None:  # called from libbpf, under the GIL
    text = ffi.string(msg).decode(errors="replace").rstrip("\n")
    sink = getattr(_capture, "lines", None)
    if sink is not None:
        sink.append(text)
    log.log(_LEVELS.get(level, logging.DEBUG), "%s", text)


lib.emptcp_install_print()


def set_print_level(level: int) -> None:
    """Forward libbpf messages up to ``level`` (0 warn, 1 info, 2 debug) to logging."""
    lib.emptcp_set_print_level(level)


def sync_print_level() -> None:
    set_print_level(2 if log.isEnabledFor(logging.DEBUG) else 1)


sync_print_level()


@contextlib.contextmanager
def capture_log() -> Iterator[list[str]]:
    """Collect libbpf's messages printed on this thread inside the block."""
    previous = getattr(_capture, "lines", None)
    _capture.lines = lines = []
    try:
        yield lines
    finally:
        _capture.lines = previous


def strerror(err: int) -> str:
    buf = ffi.new("char[]", 256)
    lib.libbpf_strerror(abs(err), buf, 256)
    return ffi.string(buf).decode()


def check(op: str, rc: int, detail: str = "", **kw) -> int:
    """Raise for a negative libbpf return (``-errno``); return ``rc`` otherwise."""
    if rc < 0:
        raise error_from_errno(op, rc, detail, **kw)
    return rc


def check_ptr(op: str, ptr, detail: str = "", **kw):
    """Raise for a NULL pointer from libbpf (errno holds the reason)."""
    if ptr == ffi.NULL:
        raise error_from_errno(op, ffi.errno or 22, detail, **kw)
    return ptr


@functools.cache
def num_possible_cpus() -> int:
    return check("libbpf_num_possible_cpus", lib.libbpf_num_possible_cpus())


def version() -> str:
    return f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"


def type_str(fn, value: int) -> str:
    s = fn(value)
    return ffi.string(s).decode() if s != ffi.NULL else f"unknown({value})"
