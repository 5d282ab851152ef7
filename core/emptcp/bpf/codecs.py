"""Typed keys and values for maps: bytes <-> Python objects.

A codec can be given as: ``None`` (raw bytes), a ctypes type (``c_uint32``, a
``Structure``), a :mod:`struct` format (``"I"``, ``"<4sH"``), ``int`` (unsigned,
native byte order, the map's own size), or any object with ``size``/``encode``/
``decode``. Sizes are checked against the map before any syscall.
"""
from __future__ import annotations

import ctypes
import struct
import sys
from typing import Any, Protocol

from ..errors import MapKeyError

__all__ = ["Codec", "make_codec"]


class Codec(Protocol):
    size: int

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class RawCodec:
    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        if isinstance(obj, ctypes.Structure | ctypes.Array | ctypes._SimpleCData):  # type: ignore[attr-defined]
            return bytes(obj)
        raise MapKeyError(f"expected {self.size} bytes, got {type(obj).__name__}")

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


class IntCodec:
    def __init__(self, size: int, signed: bool = False) -> None:
        self.size = size
        self.signed = signed

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, (bytes, bytearray)):
            return bytes(obj)
        try:
            return int(obj).to_bytes(self.size, sys.byteorder, signed=self.signed)
        except OverflowError:
            raise MapKeyError(f"{obj} does not fit in {self.size} bytes") from None

    def decode(self, data: bytes) -> int:
        return int.from_bytes(data, sys.byteorder, signed=self.signed)


class StructCodec:
    def __init__(self, fmt: str) -> None:
        self._s = struct.Struct(fmt)
        self.size = self._s.size

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, (bytes, bytearray)):
            return bytes(obj)
        try:
            return self._s.pack(*obj) if isinstance(obj, tuple) else self._s.pack(obj)
        except struct.error as e:
            raise MapKeyError(f"cannot pack {obj!r} as '{self._s.format}': {e}") from None

    def decode(self, data: bytes) -> Any:
        values = self._s.unpack(data)
        return values[0] if len(values) == 1 else values


class CtypesCodec:
    def __init__(self, ctype: type) -> None:
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)
        self._simple = issubclass(ctype, ctypes._SimpleCData)  # type: ignore[attr-defined]

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, (bytes, bytearray)):
            return bytes(obj)
        if isinstance(obj, self.ctype):
            return bytes(obj)
        if self._simple:
            return bytes(self.ctype(obj))
        if isinstance(obj, dict):
            return bytes(self.ctype(**obj))
        if isinstance(obj, tuple):
            return bytes(self.ctype(*obj))
        raise MapKeyError(f"expected {self.ctype.__name__}, got {type(obj).__name__}")

    def decode(self, data: bytes) -> Any:
        value = self.ctype.from_buffer_copy(data)
        return value.value if self._simple else value


def make_codec(spec: Any, size: int, what: str) -> Codec:
    """Build a codec for ``spec`` and check it is ``size`` bytes (the map's own size)."""
    if spec is None:
        codec: Codec = RawCodec(size)
    elif spec is int:
        codec = IntCodec(size)
    elif isinstance(spec, str):
        codec = StructCodec(spec)
    elif isinstance(spec, type) and issubclass(spec, (ctypes.Structure, ctypes.Union, ctypes.Array,
                                                       ctypes._SimpleCData)):  # type: ignore[attr-defined]
        codec = CtypesCodec(spec)
    elif hasattr(spec, "encode") and hasattr(spec, "decode") and hasattr(spec, "size"):
        codec = spec
    else:
        raise MapKeyError(f"cannot make a {what} type from {spec!r}")
    if codec.size != size:
        raise MapKeyError(f"{what} type is {codec.size} bytes but the map's {what} size is {size}")
    return codec
