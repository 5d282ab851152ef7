"""BPF ELF objects: an opened spec you can adjust, then the loaded, live object.

    spec = ObjectSpec("prog.o")              # parse ELF/BTF, nothing in the kernel yet
    spec.maps["counters"].max_entries = 4096
    spec.maps["shared"].reuse(pinned_map)    # share a map (checked for compatibility)
    with spec.load() as obj:                 # verify + load; VerifierError on rejection
        obj.programs["xdp_main"].test_run(packet)

Modelled on cilium/ebpf's CollectionSpec/Collection split.
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import (BpfError, MapCompatibilityError, ObjectFileError, VerifierError,
                     error_from_errno)
from .fdobject import Closable
from .info import map_info
from .libbpf import capture_log, check, ffi, lib
from .maps import Map
from .programs import Program

__all__ = ["ObjectSpec", "MapSpec", "ProgramSpec", "Object"]

_BTF_KIND_DATASEC = 15

class MapSpec:
    """A map of an opened object, before load. Setters map onto libbpf's."""

    def __init__(self, owner: "ObjectSpec", ptr: Any) -> None:
        self._owner = owner
        self._ptr = ptr
        self.name: str = ffi.string(lib.bpf_map__name(ptr)).decode()
        self.reused_from: str | None = None

    type = property(lambda self: lib.bpf_map__type(self._ptr))
    key_size = property(lambda self: lib.bpf_map__key_size(self._ptr))
    value_size = property(lambda self: lib.bpf_map__value_size(self._ptr))
    flags = property(lambda self: lib.bpf_map__map_flags(self._ptr))
    internal = property(lambda self: bool(lib.bpf_map__is_internal(self._ptr)))

    @property
    def max_entries(self) -> int:
        return lib.bpf_map__max_entries(self._ptr)

    @max_entries.setter
    def max_entries(self, n: int) -> None:
        check("bpf_map__set_max_entries", lib.bpf_map__set_max_entries(self._ptr, n), self.name)

    @property
    def pin_path(self) -> str | None:
        p = lib.bpf_map__pin_path(self._ptr)
        return ffi.string(p).decode() if p != ffi.NULL else None

    @pin_path.setter
    def pin_path(self, path: str | None) -> None:
        """Pin on load, or reuse the map already pinned there (libbpf checks compatibility)."""
        arg = os.fsencode(path) if path else ffi.NULL
        check("bpf_map__set_pin_path", lib.bpf_map__set_pin_path(self._ptr, arg), self.name)

    def compatibility_problems(self, other_fd: int) -> list[str]:
        info = map_info(other_fd)
        problems = []
        for field, mine, theirs in (("type", self.type, info.type),
                                    ("key_size", self.key_size, info.key_size),
                                    ("value_size", self.value_size, info.value_size),
                                    ("max_entries", self.max_entries, info.max_entries),
                                    ("flags", self.flags, info.flags)):
            if mine != theirs:
                problems.append(f"{field} {mine} != {theirs}")
        return problems

    def reuse(self, source: "Map | int | str") -> None:
        """Use an existing map (a Map, an fd or a pin path) instead of creating one.

        Unlike ``bpf_map__reuse_fd``, this checks type, sizes, max_entries and
        flags first and says what differs.
        """
        if isinstance(source, str):
            fd = lib.bpf_obj_get(os.fsencode(source))
            if fd < 0:
                raise error_from_errno("bpf_obj_get", fd, f"map to reuse pinned at {source}")
            where = source
        else:
            fd = source.fd if isinstance(source, Map) else int(source)
            where = f"fd {fd}"
        try:
            problems = self.compatibility_problems(fd)
            if problems:
                raise MapCompatibilityError(
                    f"{self._owner.path}: map '{self.name}' cannot reuse {where}: "
                    + ", ".join(problems))
            check("bpf_map__reuse_fd", lib.bpf_map__reuse_fd(self._ptr, fd), self.name)
            self.reused_from = where
        finally:
            if isinstance(source, str):
                os.close(fd)  # reuse_fd dup()ed it

    @property
    def initial_value(self) -> bytes:
        """The bytes the map starts with (global data sections: .rodata, .data, .bss)."""
        size = ffi.new("size_t *")
        ptr = lib.bpf_map__initial_value(self._ptr, size)
        if ptr == ffi.NULL:
            raise ValueError(f"map '{self.name}' has no initial value (not a data section)")
        return bytes(ffi.buffer(ptr, size[0]))

    @initial_value.setter
    def initial_value(self, data: bytes) -> None:
        check("bpf_map__set_initial_value",
              lib.bpf_map__set_initial_value(self._ptr, data, len(data)), self.name)

    def variables(self) -> dict[str, tuple[int, int]]:
        """The variables of a data section map: name -> (offset, size), from BTF."""
        if not self.internal:
            raise ValueError(f"map '{self.name}' is not a global data section")
        btf = lib.bpf_object__btf(self._owner._ptr)
        section = "." + self.name.split(".", 1)[1] if "." in self.name else self.name
        tid = lib.btf__find_by_name_kind(btf, section.encode(), _BTF_KIND_DATASEC)
        if btf == ffi.NULL or tid < 0:
            raise ValueError(f"map '{self.name}': no BTF for section {section}")
        sec = lib.btf__type_by_id(btf, tid)
        infos = lib.btf_var_secinfos(sec)
        out = {}
        for i in range(lib.btf_vlen(sec)):
            var = lib.btf__type_by_id(btf, infos[i].type)
            name = ffi.string(lib.btf__name_by_offset(btf, var.name_off)).decode()
            out[name] = (infos[i].offset, infos[i].size)
        return out

    def set_variable(self, name: str, value: bytes | int) -> None:
        """Set one variable of a data section before load -- e.g. a ``const volatile``
        in .rodata, which the verifier then treats as a known constant. An int is
        written little-endian in the variable's size."""
        where = self.variables().get(name)
        if where is None:
            raise KeyError(f"map '{self.name}' has no variable {name!r} "
                           f"(has: {', '.join(sorted(self.variables())) or 'none'})")
        off, size = where
        raw = value.to_bytes(size, "little") if isinstance(value, int) else bytes(value)
        if len(raw) != size:
            raise ValueError(f"variable {name!r} is {size} bytes, got {len(raw)}")
        data = bytearray(self.initial_value)
        data[off:off + size] = raw
        self.initial_value = bytes(data)

    def __repr__(self) -> str:
        return (f"<MapSpec {self.name!r} type={self.type} key={self.key_size} "
                f"value={self.value_size} max_entries={self.max_entries}>")


class ProgramSpec:
    """A program of an opened object, before load."""

    def __init__(self, ptr: Any) -> None:
        self._ptr = ptr
        self.name: str = ffi.string(lib.bpf_program__name(ptr)).decode()
        self.section: str = ffi.string(lib.bpf_program__section_name(ptr)).decode()

    @property
    def type(self) -> int:
        return lib.bpf_program__type(self._ptr)

    @type.setter
    def type(self, prog_type: int) -> None:
        check("bpf_program__set_type", lib.bpf_program__set_type(self._ptr, prog_type), self.name)

    @property
    def autoload(self) -> bool:
        return bool(lib.bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, on: bool) -> None:
        check("bpf_program__set_autoload", lib.bpf_program__set_autoload(self._ptr, on), self.name)

    @property
    def insn_count(self) -> int:
        return lib.bpf_program__insn_cnt(self._ptr)

    def set_attach_target(self, func: str, target_prog_fd: int = 0) -> None:
        """Before load: the kernel function (fentry/fexit/fmod_ret, tp_btf) or, with
        ``target_prog_fd``, the BPF program function (freplace) this program attaches to."""
        check("bpf_program__set_attach_target",
              lib.bpf_program__set_attach_target(self._ptr, target_prog_fd, func.encode()),
              f"program '{self.name}' -> '{func}'")

    def __repr__(self) -> str:
        return f"<ProgramSpec {self.name!r} section={self.section!r} type={self.type}>"


class ObjectSpec(Closable):
    """An opened (parsed, not loaded) BPF object file."""

    def __init__(self, path: str, *, name: str | None = None) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ObjectFileError("bpf_object__open_file", 2, f"{self.path}: no such object file")
        opts = ffi.new("struct bpf_object_open_opts *")
        opts.sz = ffi.sizeof("struct bpf_object_open_opts")
        self._name = ffi.new("char[]", name.encode()) if name else ffi.NULL
        opts.object_name = self._name
        with capture_log() as lines:
            ptr = lib.bpf_object__open_file(os.fsencode(self.path), opts)
        if ptr == ffi.NULL:
            err = ffi.errno or 22
            raise ObjectFileError("bpf_object__open_file", err,
                                  f"{self.path}: " + ("; ".join(lines[-3:]) or "cannot parse"))
        self._ptr = ptr
        self.programs: dict[str, ProgramSpec] = {}
        p = lib.bpf_object__next_program(ptr, ffi.NULL)
        while p != ffi.NULL:
            spec = ProgramSpec(p)
            self.programs[spec.name] = spec
            p = lib.bpf_object__next_program(ptr, p)
        self.maps: dict[str, MapSpec] = {}
        m = lib.bpf_object__next_map(ptr, ffi.NULL)
        while m != ffi.NULL:
            mspec = MapSpec(self, m)
            self.maps[mspec.name] = mspec
            m = lib.bpf_object__next_map(ptr, m)
        self._loaded = False

    def set_const(self, name: str, value: bytes | int) -> None:
        """Set the ``const volatile`` variable ``name`` of the object's .rodata before
        load: the verifier sees its value as a constant (dead branches pruned; a tail-call
        key read from it becomes a direct jump)."""
        for m in self.maps.values():
            if m.internal and m.name.endswith(".rodata") and name in m.variables():
                m.set_variable(name, value)
                return
        raise KeyError(f"{self.path}: no .rodata variable {name!r}")

    def load(self) -> "Object":
        """Load every autoloaded program and create/reuse every map.

        Raises VerifierError (with the log and the program's name) when the
        verifier refuses a program. The spec is consumed either way.
        """
        if self._ptr is None or self._loaded:
            raise ValueError(f"{self.path}: object already loaded or closed")
        with capture_log() as lines:
            rc = lib.bpf_object__load(self._ptr)
        if rc < 0:
            err = self._load_error(rc, lines)
            self.close()
            raise err
        self._loaded = True
        obj = Object(self)
        self._ptr = None  # ownership moved to the Object
        return obj

    def _load_error(self, rc: int, lines: list[str]) -> BpfError:
        """The most specific error for a failed load, from what libbpf printed: the
        verifier's log arrives as one message between BEGIN/END PROG LOAD LOG."""
        for line in lines:
            if "-- BEGIN PROG LOAD LOG --" in line and "prog '" in line:
                name = line.split("prog '", 1)[1].split("'", 1)[0]
                log = line.split("-- BEGIN PROG LOAD LOG --", 1)[1]
                log = log.split("-- END PROG LOAD LOG --", 1)[0].strip("\n")
                return VerifierError("bpf_object__load", rc, name, log)
        for line in lines:  # rejected without a log (e.g. a bad helper for this type)
            if "prog '" in line and "failed to load" in line:
                name = line.split("prog '", 1)[1].split("'", 1)[0]
                return VerifierError("bpf_object__load", rc, name, "\n".join(lines))
        detail = f"{self.path}: " + "; ".join(line for line in lines[-4:] if line)
        return error_from_errno("bpf_object__load", rc, detail)

    def close(self) -> None:
        if self._ptr is not None:
            lib.bpf_object__close(self._ptr)
            self._ptr = None


class Object(Closable):
    """A loaded object. Its programs and maps are views whose fds close with it."""

    def __init__(self, spec: ObjectSpec) -> None:
        self.path = spec.path
        self._ptr = spec._ptr
        self.programs: dict[str, Program] = {}
        for name, pspec in spec.programs.items():
            fd = lib.bpf_program__fd(pspec._ptr)
            if fd >= 0:
                self.programs[name] = Program(fd, name=name, owned=False)
                self.programs[name]._libbpf_prog = pspec._ptr  # for libbpf's attach_* calls
        self.maps: dict[str, Map] = {}
        for name, mspec in spec.maps.items():
            fd = lib.bpf_map__fd(mspec._ptr)
            if fd >= 0:
                self.maps[name] = Map(fd, name=name, owned=False)
        self._map_ptrs = {name: m._ptr for name, m in spec.maps.items()}

    def map(self, name: str, key: Any = None, value: Any = None) -> Map:
        """A typed view of one of the object's maps."""
        return self.maps[name].typed(key, value)

    def pin_map(self, name: str, path: str) -> None:
        self.maps[name].pin(path)

    def close(self) -> None:
        if self._ptr is not None:
            for m in self.maps.values():
                m._fd = -1
            for p in self.programs.values():
                p._fd = -1
                p._libbpf_prog = None
            lib.bpf_object__close(self._ptr)
            self._ptr = None


    def __repr__(self) -> str:
        return f"<Object {self.path} programs={list(self.programs)} maps={list(self.maps)}>"


def load_object(path: str, **reuse: "Map | int | str") -> Object:
    """Open and load ``path`` in one step, reusing maps by name (``name=Map|fd|pin path``)."""
    spec = ObjectSpec(path)
    try:
        for name, source in reuse.items():
            spec.maps[name].reuse(source)
        return spec.load()
    except BaseException:
        spec.close()
        raise
