"""JIT image size and verifier work of a loaded program (helper, not a benchmark).

``emptcp.Program.info`` has ``jited_len`` but not ``verified_insns`` (the
"processed N insns" of the verifier log), and bpftool 7.1 does not print it,
so this reads ``struct bpf_prog_info`` through libbpf directly (ctypes:
independent of emptcp's module layout).  Offsets are the UAPI's
(<linux/bpf.h>, kernel >= 5.16 for verified_insns).
"""
from __future__ import annotations

import ctypes
import struct

_INFO_SIZE = 232          # sizeof(struct bpf_prog_info) on 6.x UAPI
_JITED_LEN_OFF = 16       # __u32 jited_prog_len
_VERIFIED_INSNS_OFF = 216  # __u32 verified_insns

_lib = None


def _libbpf():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    return _lib


def jit_and_verifier(fd: int) -> tuple[int, int]:
    """(bytes of JIT'd image, instructions processed by the verifier) of program ``fd``."""
    buf = ctypes.create_string_buffer(_INFO_SIZE)
    size = ctypes.c_uint32(_INFO_SIZE)
    rc = _libbpf().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(size))
    if rc != 0:
        raise OSError(-rc, f"bpf_obj_get_info_by_fd(prog fd {fd}) failed")
    if size.value < _VERIFIED_INSNS_OFF + 4:
        raise RuntimeError(f"kernel returned {size.value} bytes of bpf_prog_info: "
                           "no verified_insns (kernel < 5.16)")
    jited, = struct.unpack_from("I", buf.raw, _JITED_LEN_OFF)
    verified, = struct.unpack_from("I", buf.raw, _VERIFIED_INSNS_OFF)
    if jited <= 0 or verified <= 0:
        raise RuntimeError(f"program fd {fd}: jited {jited} bytes, {verified} insns verified")
    return jited, verified
