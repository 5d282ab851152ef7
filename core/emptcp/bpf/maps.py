"""A live BPF map as a Python mutable mapping with typed keys and values.

>>> with Map.from_pin("/sys/fs/bpf/emptcp/maps/emptcp_state", key=int, value=int) as m:
...     m[0] = 1
...     dict(m.items())

Per-CPU maps return a list with one value per possible CPU and accept either
such a list or one value (written to every CPU). Batch operations move many
elements per syscall (``lookup_batch``/``update_batch``/``delete_batch``).
"""
from __future__ import annotations

import errno
from collections.abc import MutableMapping
from typing import Any, Iterable, Iterator

from .codecs import Codec, make_codec
from ..errors import BpfError, KeyNotFoundError, MapKeyError, NotFoundError
from .fdobject import FdObject
from .info import MapInfo, fd_by_id, map_info
from .libbpf import check, ffi, lib, num_possible_cpus

__all__ = ["Map", "MapType", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST"]

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


class MapType:
    HASH, ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY = 1, 2, 3, 4
    PERCPU_HASH, PERCPU_ARRAY = 5, 6
    LRU_HASH, LRU_PERCPU_HASH, LPM_TRIE = 9, 10, 11
    RINGBUF = 27
    PERCPU = {PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, 21}  # 21: PERCPU_CGROUP_STORAGE
    ARRAYS = {ARRAY, PERCPU_ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY}


#: map types whose elements can be read with BPF_MAP_LOOKUP_BATCH
_BATCHABLE = {MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
              MapType.LRU_HASH, MapType.LRU_PERCPU_HASH}


class Map(FdObject, MutableMapping):
    """A map fd with codecs. Owns (and closes) its fd unless ``owned=False``."""
    _kind = "map"

    def __init__(self, fd: int, *, key: Any = None, value: Any = None, owned: bool = True,
                 name: str | None = None) -> None:
        super().__init__(fd, owned)
        self.info: MapInfo = map_info(fd)
        self.name = name or self.info.name
        self.percpu = self.info.type in MapType.PERCPU
        self.ncpu = num_possible_cpus() if self.percpu else 1
        self._slot = (self.info.value_size + 7) & ~7 if self.percpu else self.info.value_size
        self.key_codec: Codec = make_codec(key, self.info.key_size, "key")
        self.value_codec: Codec = make_codec(value, self.info.value_size, "value")
        self._kbuf = ffi.new("char[]", max(self.info.key_size, 1))
        self._vbuf = ffi.new("char[]", max(self._slot * self.ncpu, 1))

    # ---- construction -------------------------------------------------
    @classmethod
    def from_pin(cls, path: str, **kw: Any) -> "Map":
        return cls(cls._fd_from_pin(path, "map"), **kw)

    @classmethod
    def from_id(cls, map_id: int, **kw: Any) -> "Map":
        return cls(fd_by_id("map", map_id), **kw)

    @classmethod
    def create(cls, map_type: int, key_size: int, value_size: int, max_entries: int,
               name: str = "", flags: int = 0, **kw: Any) -> "Map":
        """Create a map directly (``bpf_map_create``), outside any object."""
        opts = ffi.new("struct bpf_map_create_opts *")
        opts.sz = ffi.sizeof("struct bpf_map_create_opts")
        opts.map_flags = flags
        fd = check("bpf_map_create", lib.bpf_map_create(map_type, name.encode() or ffi.NULL,
                                                         key_size, value_size, max_entries, opts),
                   f"map '{name}'")
        return cls(fd, **kw)

    def typed(self, key: Any = None, value: Any = None) -> "Map":
        """A view of the same map (same fd, not owned) with other codecs."""
        return Map(self._fd, key=key, value=value, owned=False, name=self.name)

    def freeze(self) -> None:
        check("bpf_map_freeze", lib.bpf_map_freeze(self.fd))

    def __repr__(self) -> str:
        i = self.info
        return (f"<Map {self.name!r} id={i.id} type={i.type_name} key={i.key_size} "
                f"value={i.value_size} max_entries={i.max_entries}>")

    # ---- encoding -----------------------------------------------------
    def _key(self, key: Any) -> bytes:
        raw = self.key_codec.encode(key)
        if len(raw) != self.info.key_size:
            raise MapKeyError(f"map '{self.name}': key is {len(raw)} bytes, map expects "
                              f"{self.info.key_size}")
        return raw

    def _value(self, value: Any) -> bytes:
        size = self.info.value_size
        if self.percpu:
            values = value if isinstance(value, list) else [value] * self.ncpu
            if len(values) != self.ncpu:
                raise MapKeyError(f"map '{self.name}': per-CPU value needs {self.ncpu} entries, "
                                  f"got {len(values)}")
            parts = [self.value_codec.encode(v) for v in values]
            if any(len(p) != size for p in parts):
                raise MapKeyError(f"map '{self.name}': value must be {size} bytes")
            pad = b"\0" * (self._slot - size)
            return b"".join(p + pad for p in parts)
        raw = self.value_codec.encode(value)
        if len(raw) != size:
            raise MapKeyError(f"map '{self.name}': value is {len(raw)} bytes, map expects {size}")
        return raw

    def _decode_value(self, raw: bytes) -> Any:
        if not self.percpu:
            return self.value_codec.decode(raw)
        size, slot = self.info.value_size, self._slot
        return [self.value_codec.decode(raw[i * slot:i * slot + size]) for i in range(self.ncpu)]

    # ---- element operations --------------------------------------------
    def lookup(self, key: Any) -> Any:
        """The value at ``key``; raises KeyNotFoundError when absent."""
        k = self._key(key)
        ffi.memmove(self._kbuf, k, len(k))
        rc = lib.bpf_map_lookup_elem(self.fd, self._kbuf, self._vbuf)
        if rc < 0:
            if -rc == errno.ENOENT:
                raise KeyNotFoundError("bpf_map_lookup_elem", rc, f"map '{self.name}': key {key!r}")
            check("bpf_map_lookup_elem", rc, f"map '{self.name}'")
        return self._decode_value(ffi.buffer(self._vbuf, self._slot * self.ncpu)[:])

    def lookup_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """Raw values of raw ``keys`` (None where absent), one syscall each and no
        exception per miss: for control planes that check many keys at once."""
        out: list[bytes | None] = []
        size = self._slot * self.ncpu
        for k in keys:
            ffi.memmove(self._kbuf, k, len(k))
            rc = lib.bpf_map_lookup_elem(self.fd, self._kbuf, self._vbuf)
            if rc < 0:
                if -rc != errno.ENOENT:
                    check("bpf_map_lookup_elem", rc, f"map '{self.name}'")
                out.append(None)
            else:
                out.append(ffi.buffer(self._vbuf, size)[:])
        return out

    def put(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Insert or update (``flags``: BPF_ANY, BPF_NOEXIST, BPF_EXIST)."""
        k, v = self._key(key), self._value(value)
        rc = lib.bpf_map_update_elem(self.fd, k, v, flags)
        if rc < 0:
            if -rc == errno.ENOENT:
                raise KeyNotFoundError("bpf_map_update_elem", rc, f"map '{self.name}': key {key!r}")
            check("bpf_map_update_elem", rc, f"map '{self.name}'")

    def delete(self, key: Any) -> None:
        rc = lib.bpf_map_delete_elem(self.fd, self._key(key))
        if rc < 0:
            if -rc == errno.ENOENT:
                raise KeyNotFoundError("bpf_map_delete_elem", rc, f"map '{self.name}': key {key!r}")
            check("bpf_map_delete_elem", rc, f"map '{self.name}'")

    def discard(self, key: Any) -> bool:
        """Delete ``key`` if present: False when it was absent. No exception for the
        common "absent" case, which makes sweeping a large key range cheap."""
        rc = lib.bpf_map_delete_elem(self.fd, self._key(key))
        if rc < 0:
            if -rc == errno.ENOENT:
                return False
            check("bpf_map_delete_elem", rc, f"map '{self.name}'")
        return True

    def pop(self, key: Any, *default: Any) -> Any:  # type: ignore[override]
        k = self._key(key)
        rc = lib.bpf_map_lookup_and_delete_elem(self.fd, k, self._vbuf)
        if rc == 0:
            return self._decode_value(ffi.buffer(self._vbuf, self._slot * self.ncpu)[:])
        if -rc in (errno.ENOENT,) and default:
            return default[0]
        if -rc in (errno.EINVAL, errno.ENOTSUPP if hasattr(errno, "ENOTSUPP") else 524, 524):
            value = self.lookup(key)   # older kernels: no lookup_and_delete for this type
            self.delete(key)
            return value
        if -rc == errno.ENOENT:
            raise KeyNotFoundError("bpf_map_lookup_and_delete_elem", rc, f"key {key!r}")
        return check("bpf_map_lookup_and_delete_elem", rc)

    __getitem__ = lookup

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        try:
            self.lookup(key)
            return True
        except KeyNotFoundError:
            return False

    def raw_keys(self) -> Iterator[bytes]:
        """Walk keys with get_next_key. A key deleted mid-walk makes the kernel restart
        from the first key; keys already seen are skipped so none is yielded twice."""
        size = self.info.key_size
        cur = ffi.new("char[]", size)
        nxt = ffi.new("char[]", size)
        seen: set[bytes] = set()
        prev = ffi.NULL
        while True:
            rc = lib.bpf_map_get_next_key(self.fd, prev, nxt)
            if rc < 0:
                if -rc == errno.ENOENT:
                    return
                check("bpf_map_get_next_key", rc, f"map '{self.name}'")
            key = ffi.buffer(nxt, size)[:]
            ffi.memmove(cur, nxt, size)
            prev = cur
            if key in seen:
                if len(seen) > self.info.max_entries:
                    return
                continue
            seen.add(key)
            yield key

    def __iter__(self) -> Iterator[Any]:
        for raw in self.raw_keys():
            yield self.key_codec.decode(raw)

    def __len__(self) -> int:
        return sum(1 for _ in self.raw_keys())

    def items(self):  # type: ignore[override]
        """(key, value) pairs; keys that vanish between walk and lookup are skipped."""
        if self.info.type in _BATCHABLE:
            try:
                return self.lookup_batch()
            except BpfError as e:
                if e.errno not in (errno.EINVAL, 524, errno.EOPNOTSUPP):
                    raise
        out = []
        for raw in self.raw_keys():
            try:
                out.append((self.key_codec.decode(raw), self.lookup(raw)))
            except KeyNotFoundError:
                continue
        return out

    def values(self):  # type: ignore[override]
        return [v for _, v in self.items()]

    def clear(self) -> None:
        if self.info.type in MapType.ARRAYS and self.info.type != MapType.PROG_ARRAY:
            zero = bytes(self.info.value_size)
            for k in list(self.raw_keys()):
                self.put(k, [zero] * self.ncpu if self.percpu else zero)
            return
        keys = list(self.raw_keys())
        if keys:
            try:
                self.delete_batch([self.key_codec.decode(k) for k in keys])
            except NotFoundError:
                pass

    # ---- batch operations ---------------------------------------------
    def _batch_opts(self, elem_flags: int = 0):
        opts = ffi.new("struct bpf_map_batch_opts *")
        opts.sz = ffi.sizeof("struct bpf_map_batch_opts")
        opts.elem_flags = elem_flags
        return opts

    def update_batch(self, items: Iterable[tuple[Any, Any]], flags: int = BPF_ANY) -> int:
        pairs = list(items)
        if not pairs:
            return 0
        keys = b"".join(self._key(k) for k, _ in pairs)
        values = b"".join(self._value(v) for _, v in pairs)
        count = ffi.new("__u32 *", len(pairs))
        check("bpf_map_update_batch",
              lib.bpf_map_update_batch(self.fd, keys, values, count, self._batch_opts(flags)),
              f"map '{self.name}', {count[0]} of {len(pairs)} updated")
        return count[0]

    def update_batch_packed(self, keys: bytes, values: bytes, flags: int = BPF_ANY) -> int:
        """``update_batch`` for keys and values already laid out back to back
        (per-CPU values: one padded slot per CPU), skipping per-element encoding."""
        n, rem = divmod(len(keys), self.info.key_size)
        if rem or len(values) != n * self._slot * self.ncpu:
            raise MapKeyError(f"map '{self.name}': {len(keys)} key bytes and {len(values)} value "
                              "bytes do not make whole elements")
        if n == 0:
            return 0
        count = ffi.new("__u32 *", n)
        check("bpf_map_update_batch",
              lib.bpf_map_update_batch(self.fd, keys, values, count, self._batch_opts(flags)),
              f"map '{self.name}', {count[0]} of {n} updated")
        return count[0]

    def delete_batch(self, keys: Iterable[Any]) -> int:
        raw = [self._key(k) for k in keys]
        if not raw:
            return 0
        count = ffi.new("__u32 *", len(raw))
        rc = lib.bpf_map_delete_batch(self.fd, b"".join(raw), count, self._batch_opts())
        if rc < 0:
            if -rc == errno.ENOENT:
                raise KeyNotFoundError("bpf_map_delete_batch", rc,
                                       f"map '{self.name}': {count[0]} deleted before a missing key")
            check("bpf_map_delete_batch", rc, f"map '{self.name}'")
        return count[0]

    def lookup_batch(self, chunk: int = 1024) -> list[tuple[Any, Any]]:
        """Every element, ``chunk`` per syscall."""
        ksize, vsize = self.info.key_size, self._slot * self.ncpu
        keys = ffi.new("char[]", ksize * chunk)
        values = ffi.new("char[]", vsize * chunk)
        token_size = max(ksize, 8)
        in_b, out_b = ffi.new("char[]", token_size), ffi.new("char[]", token_size)
        first = True
        result: list[tuple[Any, Any]] = []
        opts = self._batch_opts()
        while True:
            count = ffi.new("__u32 *", chunk)
            rc = lib.bpf_map_lookup_batch(self.fd, ffi.NULL if first else in_b, out_b,
                                          keys, values, count, opts)
            done = rc < 0 and -rc == errno.ENOENT
            if rc < 0 and not done:
                check("bpf_map_lookup_batch", rc, f"map '{self.name}'")
            kb = ffi.buffer(keys, ksize * count[0])[:]
            vb = ffi.buffer(values, vsize * count[0])[:]
            for i in range(count[0]):
                result.append((self.key_codec.decode(kb[i * ksize:(i + 1) * ksize]),
                               self._decode_value(vb[i * vsize:(i + 1) * vsize])))
            if done:
                return result
            ffi.memmove(in_b, out_b, token_size)
            first = False

