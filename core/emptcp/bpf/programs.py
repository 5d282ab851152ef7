"""A live BPF program: fd, info, pinning, and ``BPF_PROG_TEST_RUN``."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .fdobject import FdObject
from .info import ProgInfo, fd_by_id, prog_info
from .libbpf import check, ffi, lib

__all__ = ["Program", "ProgType", "TestRunResult", "XDP_MD", "XdpAction", "TcAction"]


class ProgType:
    SOCKET_FILTER, KPROBE, SCHED_CLS, SCHED_ACT, TRACEPOINT, XDP = 1, 2, 3, 4, 5, 6


class XdpAction:
    ABORTED, DROP, PASS, TX, REDIRECT = 0, 1, 2, 3, 4


class TcAction:
    UNSPEC, OK, RECLASSIFY, SHOT, PIPE, STOLEN, QUEUED, REPEAT, REDIRECT = -1, 0, 1, 2, 3, 4, 5, 6, 7


# struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
XDP_MD = struct.Struct("6I")
SKB_CTX_SIZE = 192  # sizeof(struct __sk_buff) on 6.x
_HEADROOM = 4096    # room for programs that grow the packet (adjust_head/adjust_room)


@dataclass
class TestRunResult:
    """What one ``BPF_PROG_TEST_RUN`` returned.

    ``retval`` is the verdict; ``data`` the output packet (without metadata);
    ``meta`` the XDP ``data_meta`` area in front of it; ``ctx`` the raw output
    context (``struct xdp_md`` / ``struct __sk_buff``); ``duration_ns`` the
    kernel's average per repetition.
    """
    retval: int
    data: bytes
    meta: bytes
    ctx: bytes
    duration_ns: int

    @property
    def cb(self) -> bytes:
        """TC only: the 20 bytes of ``skb->cb`` after the run."""
        return self.ctx[48:68] if len(self.ctx) >= 68 else b""


class Program(FdObject):
    """A loaded program's fd. Owns (and closes) the fd unless ``owned=False``."""
    _kind = "program"
    #: libbpf's ``struct bpf_program *`` when the program belongs to a loaded
    #: :class:`emptcp.Object` (needed by the kprobe/tracepoint/fentry attach calls)
    _libbpf_prog = None

    def __init__(self, fd: int, *, name: str | None = None, owned: bool = True) -> None:
        super().__init__(fd, owned)
        self.info: ProgInfo = prog_info(fd)
        self.name = name or self.info.name

    @classmethod
    def from_pin(cls, path: str) -> "Program":
        return cls(cls._fd_from_pin(path, "program"))

    @classmethod
    def from_id(cls, prog_id: int) -> "Program":
        return cls(fd_by_id("prog", prog_id))

    @property
    def type(self) -> int:
        return self.info.type

    @property
    def id(self) -> int:
        return self.info.id

    def __repr__(self) -> str:
        return f"<Program {self.name!r} id={self.info.id} type={self.info.type_name}>"

    def test_run(self, data: bytes, *, ctx: bytes | None = None, meta: bytes = b"",
                 repeat: int = 1, flags: int = 0, out_size: int | None = None) -> TestRunResult:
        """Run the program on ``data`` in the kernel (``BPF_PROG_TEST_RUN``).

        For XDP, ``meta`` is placed in ``data_meta`` in front of the packet (a
        multiple of 4, at most 32 bytes) and the output metadata comes back in
        ``result.meta``; the ``xdp_md`` context is built for you unless ``ctx``
        is given. For TC, ``ctx`` may be a ``struct __sk_buff`` (e.g. to set
        ``cb``); the output ``__sk_buff`` is returned either way.
        """
        is_xdp = self.info.type == ProgType.XDP
        payload = meta + data if is_xdp else data
        if is_xdp and ctx is None:
            ctx = XDP_MD.pack(len(meta), len(payload), 0, 0, 0, 0)
        ctx_out_size = XDP_MD.size if is_xdp else SKB_CTX_SIZE
        opts = ffi.new("struct bpf_test_run_opts *")
        opts.sz = ffi.sizeof("struct bpf_test_run_opts")
        data_in = ffi.from_buffer(payload) if payload else ffi.NULL
        opts.data_in = data_in
        opts.data_size_in = len(payload)
        out_len = out_size if out_size is not None else len(payload) + _HEADROOM
        data_out = ffi.new("char[]", out_len)
        opts.data_out = data_out
        opts.data_size_out = out_len
        ctx_in = ffi.from_buffer(ctx) if ctx else ffi.NULL
        if ctx:
            opts.ctx_in = ctx_in
            opts.ctx_size_in = len(ctx)
        ctx_out = ffi.new("char[]", ctx_out_size)
        opts.ctx_out = ctx_out
        opts.ctx_size_out = ctx_out_size
        opts.repeat = repeat
        opts.flags = flags
        check("bpf_prog_test_run_opts", lib.bpf_prog_test_run_opts(self.fd, opts),
              f"program '{self.name}', {len(payload)} bytes in")
        out = ffi.buffer(data_out, opts.data_size_out)[:]
        ctx_bytes = ffi.buffer(ctx_out, opts.ctx_size_out)[:]
        meta_out = b""
        if is_xdp and len(ctx_bytes) >= 4:
            meta_len = XDP_MD.unpack_from(ctx_bytes)[0]
            meta_out, out = out[:meta_len], out[meta_len:]
        retval = opts.retval
        if not is_xdp and retval >= 0x80000000:
            retval -= 1 << 32  # TC verdicts are signed (TC_ACT_UNSPEC = -1)
        return TestRunResult(retval, out, meta_out, ctx_bytes, opts.duration)
