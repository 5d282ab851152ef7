"""Which kernel features a BPF program needs, and which of them this kernel lacks.

When a stage fails to load, the engine asks :func:`missing` before showing the verifier
log: a program that calls a helper this kernel does not offer to its program type, or a
kfunc this kernel does not export, is refused with one message naming the feature and
the first Linux release that has it (issue 13: "never a raw verifier log as the first
thing a user sees"). Runs at ``plan`` (its preflight loads every stage) and ``apply``.

What a program uses is read from its object file (pure Python, ELF64 little-endian):
helper calls (``call <id>``) in the program's own function and in ``.text`` (its
subprograms), and undefined symbols (kfuncs and kernel variables, resolved against the
kernel's BTF). Helpers are probed with libbpf's ``libbpf_probe_bpf_helper`` (a tiny
program per helper, through the verifier); kfuncs by name in /sys/kernel/btf/*.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import struct
from dataclasses import dataclass
from typing import Callable

__all__ = ["Missing", "HELPERS", "KFUNCS", "PROG_TYPES", "program_calls", "missing",
           "describe", "last_word", "helper_supported", "kernel_symbol"]

#: enum bpf_prog_type of the hook program types emptcp loads stages as
PROG_TYPES = {"xdp": 6, "tc": 3}           # BPF_PROG_TYPE_XDP, BPF_PROG_TYPE_SCHED_CLS

#: helper id (UAPI enum bpf_func_id) -> (name, first Linux release that has it), for the
#: helpers of the last kernel series: the ones a stage may use that a supported kernel
#: (6.1 and later, or older ones a user runs) may lack
HELPERS: dict[int, tuple[str, str]] = {
    163: ("bpf_check_mtu", "5.12"),
    164: ("bpf_for_each_map_elem", "5.13"),
    165: ("bpf_snprintf", "5.13"),
    169: ("bpf_timer_init", "5.15"),
    170: ("bpf_timer_set_callback", "5.15"),
    171: ("bpf_timer_start", "5.15"),
    172: ("bpf_timer_cancel", "5.15"),
    173: ("bpf_get_func_ip", "5.15"),
    174: ("bpf_get_attach_cookie", "5.15"),
    181: ("bpf_loop", "5.17"),
    182: ("bpf_strncmp", "5.17"),
    188: ("bpf_xdp_get_buff_len", "5.18"),
    189: ("bpf_xdp_load_bytes", "5.18"),
    190: ("bpf_xdp_store_bytes", "5.18"),
    192: ("bpf_skb_set_tstamp", "5.18"),
    197: ("bpf_dynptr_from_mem", "5.19"),
    198: ("bpf_ringbuf_reserve_dynptr", "5.19"),
    199: ("bpf_ringbuf_submit_dynptr", "5.19"),
    200: ("bpf_ringbuf_discard_dynptr", "5.19"),
    201: ("bpf_dynptr_read", "5.19"),
    202: ("bpf_dynptr_write", "5.19"),
    203: ("bpf_dynptr_data", "5.19"),
    204: ("bpf_tcp_raw_gen_syncookie_ipv4", "6.0"),
    205: ("bpf_tcp_raw_gen_syncookie_ipv6", "6.0"),
    206: ("bpf_tcp_raw_check_syncookie_ipv4", "6.0"),
    207: ("bpf_tcp_raw_check_syncookie_ipv6", "6.0"),
    208: ("bpf_ktime_get_tai_ns", "6.1"),
    209: ("bpf_user_ringbuf_drain", "6.1"),
    210: ("bpf_cgrp_storage_get", "6.2"),
    211: ("bpf_cgrp_storage_delete", "6.2"),
}

#: kfuncs a packet program may call -> first Linux release that has them
KFUNCS: dict[str, str] = {
    "bpf_xdp_ct_lookup": "5.18", "bpf_skb_ct_lookup": "5.18", "bpf_ct_release": "5.18",
    "bpf_xdp_ct_alloc": "6.0", "bpf_skb_ct_alloc": "6.0", "bpf_ct_insert_entry": "6.0",
    "bpf_ct_set_timeout": "6.0", "bpf_ct_change_timeout": "6.0",
    "bpf_ct_set_status": "6.0", "bpf_ct_change_status": "6.0",
    "bpf_obj_new_impl": "6.2", "bpf_obj_drop_impl": "6.2", "bpf_cast_to_kern_ctx": "6.2",
    "bpf_rdonly_cast": "6.2", "bpf_rcu_read_lock": "6.2", "bpf_rcu_read_unlock": "6.2",
    "bpf_xdp_metadata_rx_timestamp": "6.3", "bpf_xdp_metadata_rx_hash": "6.3",
    "bpf_dynptr_from_skb": "6.4", "bpf_dynptr_from_xdp": "6.4", "bpf_dynptr_slice": "6.4",
    "bpf_dynptr_slice_rdwr": "6.4", "bpf_iter_num_new": "6.4", "bpf_iter_num_next": "6.4",
    "bpf_iter_num_destroy": "6.4", "bpf_dynptr_adjust": "6.5", "bpf_dynptr_clone": "6.5",
    "bpf_dynptr_is_null": "6.5", "bpf_dynptr_is_rdonly": "6.5", "bpf_dynptr_size": "6.5",
    "bpf_sock_destroy": "6.5", "bpf_xdp_metadata_rx_vlan_tag": "6.8",
}

_SHF_EXECINSTR = 0x4
_SHT_SYMTAB = 2
_STT_FUNC = 2
_BPF_CALL = 0x85                     # BPF_JMP | BPF_CALL
_PSEUDO_NONE = 0                     # src_reg 0: a helper call, imm = helper id
_PSEUDO_CALL = 1                     # src_reg 1: a call of a subprogram (BPF-to-BPF)
_SHT_REL = 9


@dataclass(frozen=True)
class Missing:
    """A feature a program needs that this kernel does not offer to it."""
    kind: str            # "helper" | "kfunc"
    name: str            # bpf_loop, #250 (an id no table here names), bpf_dynptr_from_skb
    since: str | None    # first Linux release that has it, when known

    def text(self, prog_type: str) -> str:
        where = f" to {prog_type.upper()} programs" if self.kind == "helper" else ""
        first = f" (Linux {self.since} and later have it)" if self.since else ""
        return f"the BPF {self.kind} {self.name}, which this kernel does not offer{where}{first}"


class _Elf:
    """The sections and symbols of an ELF64 little-endian object file."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ValueError("not an ELF64 little-endian object")
        self.data = data
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        self.sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                         for i in range(shnum)]
        names = self.sections[shstrndx]
        self.names = [self._str(names[4], s[0]) for s in self.sections]

    def _str(self, table_off: int, off: int) -> str:
        end = self.data.index(b"\0", table_off + off)
        return self.data[table_off + off:end].decode(errors="replace")

    def body(self, idx: int, start: int = 0, size: int | None = None) -> bytes:
        s = self.sections[idx]
        size = s[5] - start if size is None else size
        return self.data[s[4] + start:s[4] + start + size]

    def symbols(self) -> list[tuple[str, int, int, int, int]]:
        """(name, info, section index, value, size) of every symbol."""
        out = []
        for s in self.sections:
            if s[1] != _SHT_SYMTAB:
                continue
            strtab = self.sections[s[6]][4]
            for off in range(s[4], s[4] + s[5], 24):
                name, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ",
                                                                            self.data, off)
                out.append((self._str(strtab, name), info, shndx, value, size))
        return out


def _helper_ids(code: bytes) -> set[int]:
    ids = set()
    for off in range(0, len(code) - 7, 8):
        if code[off] == _BPF_CALL and (code[off + 1] >> 4) == _PSEUDO_NONE:
            ids.add(struct.unpack_from("<i", code, off + 4)[0])
    return ids


def _subprogram_calls(code: bytes) -> list[tuple[int, int]]:
    """(byte offset, imm) of every BPF-to-BPF call in ``code``."""
    return [(off, struct.unpack_from("<i", code, off + 4)[0])
            for off in range(0, len(code) - 7, 8)
            if code[off] == _BPF_CALL and (code[off + 1] >> 4) == _PSEUDO_CALL]


def program_calls(obj_path: str, program: str) -> tuple[set[int], set[str]]:
    """(helper ids, external symbols) that ``program`` of the object may use: the helper
    calls of its function and of the subprograms it reaches (BPF-to-BPF calls followed
    through the relocations, as libbpf links them: not every function of ``.text`` --
    an XDP program must not be charged with the skb helpers of a TC-only subprogram),
    and the object's undefined symbols (kfuncs, ksyms; libbpf's own
    ``CONFIG_*``/``LINUX_*`` externs left out)."""
    with open(obj_path, "rb") as f:
        elf = _Elf(f.read())
    symbols = elf.symbols()
    externs = {name for name, info, shndx, _v, _s in symbols
               if shndx == 0 and name and (info >> 4) in (1, 2)
               and not name.startswith(("CONFIG_", "LINUX_"))}
    funcs = {(shndx, value): size for _n, info, shndx, value, size in symbols
             if (info & 0xF) == _STT_FUNC}
    start = next(((shndx, value, size) for name, info, shndx, value, size in symbols
                  if name == program and (info & 0xF) == _STT_FUNC
                  and 0 < shndx < len(elf.sections)), None)
    if start is None:
        raise ValueError(f"{obj_path}: no program function '{program}'")
    relocs: dict[tuple[int, int], int] = {}       # (section, offset) -> symbol index
    for sec in elf.sections:
        if sec[1] == _SHT_REL:
            for off in range(sec[4], sec[4] + sec[5], 16):
                r_offset, r_info = struct.unpack_from("<QQ", elf.data, off)
                relocs[(sec[7], r_offset)] = r_info >> 32
    helpers: set[int] = set()
    todo, seen = [start], set()
    while todo:
        shndx, value, size = todo.pop()
        if (shndx, value) in seen or not 0 < shndx < len(elf.sections):
            continue
        seen.add((shndx, value))
        code = elf.body(shndx, value, size)
        helpers |= _helper_ids(code)
        for off, imm in _subprogram_calls(code):
            sym = relocs.get((shndx, value + off))
            # the callee's instruction: symbol value / 8 + imm + 1 (relocated call), else
            # relative to the call itself
            tsec, base = (symbols[sym][2], symbols[sym][3]) if sym is not None \
                else (shndx, value + off)
            target = base + (imm + 1) * 8
            if not 0 < tsec < len(elf.sections):
                continue
            tsize = funcs.get((tsec, target)) or elf.sections[tsec][5] - target
            todo.append((tsec, target, tsize))
    return helpers, externs


@functools.lru_cache(maxsize=None)
def helper_supported(prog_type: int, helper_id: int) -> bool | None:
    """libbpf's probe: whether this kernel lets ``prog_type`` programs call the helper
    (None: the probe itself failed, e.g. without CAP_BPF)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
        probe = lib.libbpf_probe_bpf_helper
    except (OSError, AttributeError):
        return None
    probe.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    probe.restype = ctypes.c_int
    rc = probe(prog_type, helper_id, None)
    return None if rc < 0 else rc == 1


@functools.lru_cache(maxsize=1)
def _kernel_btf() -> bytes:
    """The string sections of the kernel's BTF (vmlinux and modules), concatenated."""
    out = []
    base = "/sys/kernel/btf"
    try:
        names = ["vmlinux"] + sorted(n for n in os.listdir(base) if n != "vmlinux")
    except OSError:
        return b""
    for n in names:
        try:
            with open(os.path.join(base, n), "rb") as f:
                out.append(f.read())
        except OSError:
            pass
    return b"\0".join(out)


def kernel_symbol(name: str) -> bool | None:
    """Whether the kernel's BTF names ``name`` (None: no BTF to ask)."""
    btf = _kernel_btf()
    if not btf:
        return None
    return b"\0" + name.encode() + b"\0" in btf


def missing(obj_path: str, program: str, prog_type: str, *,
            probe: Callable[[int, int], bool | None] | None = None,
            symbol: Callable[[str], bool | None] | None = None) -> list[Missing]:
    """The features ``program`` (loaded as ``prog_type``: "xdp" | "tc") needs that this
    kernel lacks; empty when all are there or nothing can be told (no BTF, no probe)."""
    probe = probe or helper_supported
    symbol = symbol or kernel_symbol
    try:
        helpers, externs = program_calls(obj_path, program)
    except (OSError, ValueError, struct.error):
        return []
    out = []
    ptype = PROG_TYPES[prog_type]
    for hid in sorted(helpers):
        if probe(ptype, hid) is False:
            name, since = HELPERS.get(hid, (f"#{hid}", None))
            out.append(Missing("helper", name, since))
    for name in sorted(externs):
        if symbol(name) is False:
            out.append(Missing("kfunc", name, KFUNCS.get(name)))
    return out


_NOISE = ("processed ", "verification time", "stack depth", "-- END", "libbpf:",
          "max_states_per_insn", "mark_read")


def last_word(log: str) -> str:
    """The verifier's complaint: the last line of its log that is not statistics."""
    for ln in reversed(log.splitlines()):
        ln = ln.strip()
        if ln and not ln.startswith(_NOISE) and not ln[:1].isdigit() \
                and not ln.startswith(";"):
            return ln
    return ""


def describe(found: list[Missing], prog_type: str) -> str:
    """One line for the features of :func:`missing`: 'needs X (...); and Y (...)'."""
    release = os.uname().release
    return (f"needs {'; and '.join(m.text(prog_type) for m in found)} -- this kernel is "
            f"{release}")
