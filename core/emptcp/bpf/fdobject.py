"""The lifecycle every kernel-object handle shares: an fd, owned or borrowed,
closed by ``close()``, by leaving a ``with`` block, or when garbage-collected."""
from __future__ import annotations

import os
from typing import Any, TypeVar

from ..errors import error_from_errno
from .libbpf import check, lib

__all__ = ["Closable", "FdObject"]

T = TypeVar("T", bound="Closable")


class Closable:
    """``close()`` on leaving a ``with`` block and when garbage-collected."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class FdObject(Closable):
    _fd: int = -1
    _owned: bool = True
    _kind = "object"

    def __init__(self, fd: int, owned: bool = True) -> None:
        self._fd = fd
        self._owned = owned

    @staticmethod
    def _fd_from_pin(path: str, what: str) -> int:
        fd = lib.bpf_obj_get(os.fsencode(path))
        if fd < 0:
            raise error_from_errno("bpf_obj_get", fd, f"{what} pinned at {path}")
        return fd

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{self._kind} '{getattr(self, 'name', '?')}' is closed")
        return self._fd

    def pin(self, path: str) -> None:
        """Pin in bpffs (names may not contain '.')."""
        check("bpf_obj_pin", lib.bpf_obj_pin(self.fd, os.fsencode(path)), path)

    def close(self) -> None:
        if self._fd >= 0 and self._owned:
            os.close(self._fd)
        self._fd = -1
