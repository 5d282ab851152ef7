"""Kernel object info by fd or id (``BPF_OBJ_GET_INFO_BY_FD``), and id enumeration.

libbpf 1.1 only has the untyped ``bpf_obj_get_info_by_fd``; the layouts below
are the stable prefixes of ``struct bpf_{map,prog,link}_info`` from the UAPI.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Callable, Iterator

from .libbpf import check, ffi, lib, type_str

__all__ = ["MapInfo", "ProgInfo", "LinkInfo", "map_info", "prog_info", "link_info",
           "prog_ids", "map_ids", "link_ids", "fd_by_id"]


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str

    @property
    def type_name(self) -> str:
        return type_str(lib.libbpf_bpf_map_type_str, self.type)


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    tag: str
    name: str
    xlated_len: int
    jited_len: int
    nr_map_ids: int

    @property
    def type_name(self) -> str:
        return type_str(lib.libbpf_bpf_prog_type_str, self.type)


_NEW_LINK_TYPES = {11: "tcx", 12: "uprobe_multi", 13: "netkit"}


@dataclass(frozen=True)
class LinkInfo:
    id: int
    type: int
    prog_id: int
    ifindex: int  # for XDP and TCX links; 0 otherwise

    @property
    def type_name(self) -> str:
        # libbpf 1.1 predates TCX (11), uprobe_multi (12) and netkit (13)
        return _NEW_LINK_TYPES.get(self.type) or type_str(lib.libbpf_bpf_link_type_str, self.type)


def _raw_info(fd: int, size: int, op: str) -> bytes:
    buf = ffi.new("char[]", size)
    length = ffi.new("__u32 *", size)
    check(op, lib.bpf_obj_get_info_by_fd(fd, buf, length))
    return ffi.buffer(buf, size)[:]


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def map_info(fd: int) -> MapInfo:
    raw = _raw_info(fd, 88, "bpf_obj_get_info_by_fd(map)")
    t, i, k, v, m, f = struct.unpack_from("6I", raw)
    return MapInfo(i, t, k, v, m, f, _cstr(raw[24:40]))


def prog_info(fd: int) -> ProgInfo:
    raw = _raw_info(fd, 232, "bpf_obj_get_info_by_fd(prog)")
    t, i = struct.unpack_from("2I", raw)
    tag = raw[8:16].hex()
    jited, xlated = struct.unpack_from("2I", raw, 16)
    nr_maps = struct.unpack_from("I", raw, 52)[0]
    return ProgInfo(i, t, tag, _cstr(raw[64:80]), xlated, jited, nr_maps)


def link_info(fd: int) -> LinkInfo:
    raw = _raw_info(fd, 64, "bpf_obj_get_info_by_fd(link)")
    t, i, p = struct.unpack_from("3I", raw)
    ifindex = struct.unpack_from("I", raw, 16)[0] if t in (6, 11, 13) else 0  # XDP, TCX, netkit
    return LinkInfo(i, t, p, ifindex)


def _ids(next_id: Callable) -> Iterator[int]:
    cur = 0
    nxt = ffi.new("__u32 *")
    while next_id(cur, nxt) == 0:
        cur = nxt[0]
        yield cur


def prog_ids() -> Iterator[int]:
    return _ids(lib.bpf_prog_get_next_id)


def map_ids() -> Iterator[int]:
    return _ids(lib.bpf_map_get_next_id)


def link_ids() -> Iterator[int]:
    return _ids(lib.bpf_link_get_next_id)


def fd_by_id(kind: str, obj_id: int) -> int:
    """A new fd for the program/map/link ``obj_id``; the caller closes it."""
    fn = {"prog": lib.bpf_prog_get_fd_by_id, "map": lib.bpf_map_get_fd_by_id,
          "link": lib.bpf_link_get_fd_by_id}[kind]
    return check(f"bpf_{kind}_get_fd_by_id({obj_id})", fn(obj_id))


def close_fd(fd: int) -> None:
    if fd >= 0:
        os.close(fd)
