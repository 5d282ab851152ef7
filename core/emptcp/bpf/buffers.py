"""Ring buffer and perf buffer consumers.

Callbacks run inside ``poll()``; an exception a callback raises stops the
consumption and is re-raised from ``poll()`` (libbpf would otherwise swallow it).
Callbacks get ``bytes`` copies, so they may keep them.
"""
from __future__ import annotations

from typing import Any, Callable

from .fdobject import Closable
from .libbpf import check, check_ptr, ffi, lib
from .maps import Map

__all__ = ["RingBuffer", "PerfBuffer"]


@ffi.def_extern()
def emptcp_py_ringbuf(ctx, data, size):
    self: RingBuffer = ffi.from_handle(ctx)
    try:
        rc = self._callback(ffi.buffer(data, size)[:])
        return int(rc) if isinstance(rc, int) else 0
    except BaseException as e:  # noqa: BLE001 - re-raised from poll()
        self._error = e
        return -1


@ffi.def_extern()
def emptcp_py_perf_sample(ctx, cpu, data, size):
    self: PerfBuffer = ffi.from_handle(ctx)
    if self._error is not None:
        return
    try:
        self._callback(cpu, ffi.buffer(data, size)[:])
    except BaseException as e:  # noqa: BLE001
        self._error = e


@ffi.def_extern()
def emptcp_py_perf_lost(ctx, cpu, cnt):
    self: PerfBuffer = ffi.from_handle(ctx)
    self.lost += cnt
    if self._lost_callback is not None and self._error is None:
        try:
            self._lost_callback(cpu, cnt)
        except BaseException as e:  # noqa: BLE001
            self._error = e


class _Consumer(Closable):
    _error: BaseException | None = None

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err


class RingBuffer(_Consumer):
    """Consume a ``BPF_MAP_TYPE_RINGBUF``; ``callback(data: bytes)`` per record."""

    def __init__(self, ringbuf: Map | int, callback: Callable[[bytes], Any]) -> None:
        self._callback = callback
        self._handle = ffi.new_handle(self)
        fd = ringbuf.fd if isinstance(ringbuf, Map) else ringbuf
        self._ptr = check_ptr("ring_buffer__new",
                              lib.ring_buffer__new(fd, lib.emptcp_py_ringbuf, self._handle, ffi.NULL))

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for records; returns how many were consumed."""
        rc = lib.ring_buffer__poll(self._ptr, timeout_ms)
        self._raise_pending()
        return check("ring_buffer__poll", rc) if rc != -4 else 0  # EINTR: nothing consumed

    def consume(self) -> int:
        rc = lib.ring_buffer__consume(self._ptr)
        self._raise_pending()
        return check("ring_buffer__consume", rc)

    def fileno(self) -> int:
        return lib.ring_buffer__epoll_fd(self._ptr)

    def close(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            lib.ring_buffer__free(self._ptr)
            self._ptr = None


class PerfBuffer(_Consumer):
    """Consume a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``; ``callback(cpu, data)`` per sample."""

    def __init__(self, perf_map: Map | int, callback: Callable[[int, bytes], Any],
                 lost_callback: Callable[[int, int], Any] | None = None, page_cnt: int = 8) -> None:
        self._callback = callback
        self._lost_callback = lost_callback
        self.lost = 0
        self._handle = ffi.new_handle(self)
        fd = perf_map.fd if isinstance(perf_map, Map) else perf_map
        self._ptr = check_ptr("perf_buffer__new",
                              lib.perf_buffer__new(fd, page_cnt, lib.emptcp_py_perf_sample,
                                                   lib.emptcp_py_perf_lost, self._handle, ffi.NULL),
                              privilege=("CAP_PERFMON", "CAP_SYS_ADMIN"))

    def poll(self, timeout_ms: int = 100) -> int:
        rc = lib.perf_buffer__poll(self._ptr, timeout_ms)
        self._raise_pending()
        return check("perf_buffer__poll", rc) if rc != -4 else 0

    def consume(self) -> int:
        rc = lib.perf_buffer__consume(self._ptr)
        self._raise_pending()
        return check("perf_buffer__consume", rc)

    def fileno(self) -> int:
        return lib.perf_buffer__epoll_fd(self._ptr)

    def close(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            lib.perf_buffer__free(self._ptr)
            self._ptr = None
