"""Attaching programs to network hooks.

BPF links (preferred: pinnable, detached by unpinning/closing, nothing left behind):
``attach_xdp`` and ``attach_tcx`` return a :class:`Link`. Netlink-style
attachments that persist until detached: ``xdp_attach``/``xdp_detach`` and TC
clsact filters (:mod:`emptcp.bpf.tc`).

Tracing attachments (what eMPTCP used to catch events) go through libbpf's own
attach functions and also return a pinnable :class:`Link`: ``attach_kprobe``
(kprobe/kretprobe), ``attach_tracepoint``, ``attach_raw_tracepoint``,
``attach_trace`` (fentry/fexit/fmod_ret/tp_btf, target from the section or
``ProgramSpec.set_attach_target``) and ``attach`` (whatever the ELF section says).
They need a program of a loaded :class:`emptcp.Object` (libbpf's
``struct bpf_program``), not a bare fd.
"""
from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import BpfError, NotFoundError, error_from_errno
from .fdobject import FdObject
from .info import LinkInfo, fd_by_id, link_info
from .libbpf import capture_log, check, ffi, lib
from .programs import Program

__all__ = ["Link", "XdpMode", "attach_xdp", "attach_tcx", "tcx_query", "TcxEntry",
           "TCX_POSITIONS", "xdp_attach", "xdp_detach", "xdp_query", "ifindex",
           "attach_kprobe", "attach_tracepoint", "attach_raw_tracepoint", "attach_trace",
           "attach", "TRACEFS"]

BPF_XDP = 37
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47
BPF_PROG_QUERY, BPF_LINK_CREATE = 16, 28
BPF_F_BEFORE, BPF_F_AFTER = 1 << 3, 1 << 4
#: where a TCX program goes among the hook's programs: attach flags (no anchor =
#: the very front / the very end of the list)
TCX_POSITIONS = {"first": BPF_F_BEFORE, "last": BPF_F_AFTER}
_TCX = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}
_NET = ("CAP_NET_ADMIN",)


class XdpMode:
    """XDP attach flags (``XDP_FLAGS_*``)."""
    UPDATE_IF_NOEXIST = 1 << 0
    SKB = GENERIC = 1 << 1
    DRV = NATIVE = 1 << 2
    HW = 1 << 3
    REPLACE = 1 << 4

    @classmethod
    def parse(cls, mode: str | int | None) -> int:
        if mode is None or mode == "auto":
            return 0
        if isinstance(mode, int):
            return mode
        try:
            return {"native": cls.DRV, "drv": cls.DRV, "generic": cls.SKB, "skb": cls.SKB,
                    "hw": cls.HW, "offload": cls.HW}[mode]
        except KeyError:
            raise ValueError(f"unknown XDP mode {mode!r}: use native, generic or hw") from None


def ifindex(iface: str | int) -> int:
    """Interface index of a name (in this process's network namespace)."""
    if isinstance(iface, int):
        return iface
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise NotFoundError("if_nametoindex", 19, f"no interface named '{iface}' "
                            "in this network namespace") from None


class Link(FdObject):
    """A BPF link fd. Closing it detaches the program unless the link is pinned."""
    _kind = "link"
    #: libbpf's ``struct bpf_link *`` for links made by libbpf's attach functions: it
    #: also owns the perf event fd of kprobe/tracepoint links, freed on close
    _libbpf_link: Any = None

    @classmethod
    def _from_libbpf(cls, ptr: Any) -> "Link":
        fd = lib.bpf_link__fd(ptr)
        link = cls(fd)
        link._libbpf_link = ptr
        return link

    def close(self) -> None:
        ptr, self._libbpf_link = self._libbpf_link, None
        if ptr is not None and ptr != ffi.NULL:
            lib.bpf_link__destroy(ptr)  # closes the link fd (and a perf event fd)
            self._fd = -1
            return
        super().close()

    @classmethod
    def from_pin(cls, path: str) -> "Link":
        return cls(cls._fd_from_pin(path, "link"))

    @classmethod
    def from_id(cls, link_id: int) -> "Link":
        return cls(fd_by_id("link", link_id))

    @property
    def info(self) -> LinkInfo:
        return link_info(self.fd)

    def update(self, prog: Program) -> None:
        """Atomically replace the program behind the link."""
        check("bpf_link_update", lib.bpf_link_update(self.fd, prog.fd, ffi.NULL))

    def detach(self) -> None:
        """Detach now, even if the link is pinned elsewhere (the pin becomes defunct)."""
        check("bpf_link_detach", lib.bpf_link_detach(self.fd), privilege=_NET)

    def __repr__(self) -> str:
        try:
            i = self.info
            return f"<Link id={i.id} type={i.type_name} prog={i.prog_id} ifindex={i.ifindex}>"
        except Exception:
            return "<Link closed>"


def _link_create(prog: Program, target: int, attach_type: int, flags: int, what: str) -> Link:
    opts = ffi.new("struct bpf_link_create_opts *")
    opts.sz = ffi.sizeof("struct bpf_link_create_opts")
    opts.flags = flags
    rc = lib.bpf_link_create(prog.fd, target, attach_type, opts)
    if rc < 0:
        raise error_from_errno("bpf_link_create", rc, f"{what} of program '{prog.name}' on "
                               f"ifindex {target}", privilege=("CAP_NET_ADMIN", "CAP_BPF"))
    return Link(rc)


def attach_xdp(prog: Program, iface: str | int, mode: str | int | None = None) -> Link:
    """Attach an XDP program through a BPF link (``mode``: native, generic, hw or auto)."""
    return _link_create(prog, ifindex(iface), BPF_XDP, XdpMode.parse(mode), "XDP attach")


def _tcx_kind(direction: str) -> int:
    try:
        return _TCX[direction]
    except KeyError:
        raise ValueError(f"TCX direction must be 'ingress' or 'egress', not {direction!r}") \
            from None


def attach_tcx(prog: Program, iface: str | int, direction: str = "ingress",
               position: str = "last") -> Link:
    """Attach a SCHED_CLS program to TC ingress/egress through a TCX link (kernel >= 6.6).

    ``position`` places it among the programs already on that hook: ``"first"``
    (``BPF_F_BEFORE``, no anchor) or ``"last"`` (``BPF_F_AFTER``). A program
    returning ``TC_ACT_UNSPEC`` (TCX_NEXT) hands the packet to the next one;
    any other verdict ends the list.
    """
    kind = _tcx_kind(direction)
    if position not in TCX_POSITIONS:
        raise ValueError(f"TCX position must be 'first' or 'last', not {position!r}")
    target = ifindex(iface)
    # libbpf 1.1 predates the tcx fields of bpf_link_create_opts: build the
    # bpf_attr ourselves (link_create: prog_fd, target_ifindex, attach_type,
    # flags, tcx.relative_fd, pad, tcx.expected_revision)
    attr = ffi.new("char[]", 32)
    struct.pack_into("IIIIIIQ", ffi.buffer(attr), 0, prog.fd, target, kind,
                     TCX_POSITIONS[position], 0, 0, 0)
    rc = lib.emptcp_bpf_syscall(BPF_LINK_CREATE, attr, 32)
    if rc < 0:
        raise error_from_errno("bpf_link_create", rc, f"TCX {direction} attach ({position}) of "
                               f"program '{prog.name}' on ifindex {target}",
                               privilege=("CAP_NET_ADMIN", "CAP_BPF"))
    return Link(rc)


@dataclass(frozen=True)
class TcxEntry:
    """One program on a TCX hook, in run order: its id and its link's (0 = no link)."""
    prog_id: int
    link_id: int


def tcx_query(iface: str | int, direction: str = "ingress") -> list[TcxEntry]:
    """The programs on an interface's TCX ingress/egress hook, in the order they run."""
    kind = _tcx_kind(direction)
    target = ifindex(iface)
    count = 0
    for _ in range(4):  # the list may grow between the two calls
        progs = ffi.new("__u32[]", max(count, 1))
        links = ffi.new("__u32[]", max(count, 1))
        attr = ffi.new("char[]", 64)
        # query: target_ifindex, attach_type, query_flags, attach_flags, prog_ids,
        # count, pad, prog_attach_flags, link_ids, link_attach_flags, revision
        struct.pack_into("IIIIQIIQQQQ", ffi.buffer(attr), 0, target, kind, 0, 0,
                         int(ffi.cast("uintptr_t", progs)) if count else 0, count, 0, 0,
                         int(ffi.cast("uintptr_t", links)) if count else 0, 0, 0)
        rc = lib.emptcp_bpf_syscall(BPF_PROG_QUERY, attr, 64)
        if rc == -28 or (rc == 0 and count == 0):  # ENOSPC: grew meanwhile; or sizing call
            got = struct.unpack_from("I", ffi.buffer(attr), 24)[0]
            if got == 0:
                return []
            count = got + 4
            continue
        if rc == -2:  # ENOENT: nothing was ever attached there
            return []
        check("bpf_prog_query", rc, f"TCX {direction} of ifindex {target}", privilege=_NET)
        n = struct.unpack_from("I", ffi.buffer(attr), 24)[0]
        return [TcxEntry(progs[i], links[i]) for i in range(n)]
    raise error_from_errno("bpf_prog_query", 28, f"TCX {direction} of ifindex {target} keeps "
                           "changing")


def xdp_attach(iface: str | int, prog: Program, mode: str | int | None = None,
               replace: Program | None = None) -> None:
    """Netlink XDP attach; persists until :func:`xdp_detach`."""
    opts = ffi.new("struct bpf_xdp_attach_opts *")
    opts.sz = ffi.sizeof("struct bpf_xdp_attach_opts")
    flags = XdpMode.parse(mode)
    if replace is not None:
        opts.old_prog_fd = replace.fd
        flags |= XdpMode.REPLACE
    check("bpf_xdp_attach", lib.bpf_xdp_attach(ifindex(iface), prog.fd, flags, opts),
          f"program '{prog.name}' on {iface}", privilege=_NET)


def xdp_detach(iface: str | int, mode: str | int | None = None) -> None:
    check("bpf_xdp_detach", lib.bpf_xdp_detach(ifindex(iface), XdpMode.parse(mode), ffi.NULL),
          str(iface), privilege=_NET)


def xdp_query(iface: str | int, mode: str | int | None = None) -> int:
    """Id of the XDP program on ``iface`` (0 if none)."""
    out = ffi.new("__u32 *")
    check("bpf_xdp_query_id", lib.bpf_xdp_query_id(ifindex(iface), XdpMode.parse(mode), out),
          str(iface))
    return out[0]


# ---- tracing attachments through libbpf ------------------------------------------
#: where libbpf looks for tracepoint ids (``events/<category>/<name>/id``)
TRACEFS = "/sys/kernel/tracing"
_TRACE = ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN")


def _bpf_program(prog: Program) -> Any:
    ptr = getattr(prog, "_libbpf_prog", None)
    if ptr is None or ptr == ffi.NULL:
        raise ValueError(f"program '{prog.name}' is not part of a loaded emptcp.Object "
                         "(libbpf's attach functions need its struct bpf_program; a program "
                         "opened from a pin or an id cannot be attached this way)")
    return ptr


def _libbpf_attach(op: str, prog: Program, what: str, call: Any) -> Link:
    with capture_log() as lines:
        ptr = call(_bpf_program(prog))
    if ptr == ffi.NULL:
        err = ffi.errno or 22
        said = "; ".join(line for line in lines[-3:] if line)
        raise error_from_errno(op, err, f"{what} of program '{prog.name}'"
                               + (f": {said}" if said else ""), privilege=_TRACE)
    return Link._from_libbpf(ptr)


def attach_kprobe(prog: Program, func: str, *, retprobe: bool = False, offset: int = 0,
                  cookie: int = 0) -> Link:
    """Attach a kprobe (``retprobe=True``: kretprobe) program to kernel function ``func``
    (``bpf_program__attach_kprobe_opts``; a BPF perf-event link on kernels >= 5.15)."""
    opts = ffi.new("struct bpf_kprobe_opts *")
    opts.sz = ffi.sizeof("struct bpf_kprobe_opts")
    opts.retprobe = retprobe
    opts.offset = offset
    opts.bpf_cookie = cookie
    kind = "kretprobe" if retprobe else "kprobe"
    return _libbpf_attach("bpf_program__attach_kprobe_opts", prog, f"{kind} on {func}+{offset}",
                          lambda p: lib.bpf_program__attach_kprobe_opts(p, func.encode(), opts))


def attach_tracepoint(prog: Program, category: str, name: str) -> Link:
    """Attach a tracepoint program to ``category:name`` (e.g. ``"mptcp",
    "mptcp_subflow_get_send"``). libbpf reads the tracepoint's id from tracefs
    (:data:`TRACEFS`, or debugfs' tracing dir): mount it first if it is not."""
    where = f"tracepoint {category}:{name}"
    if not os.path.isdir(os.path.join(TRACEFS, "events")) and \
            not os.path.isdir("/sys/kernel/debug/tracing/events"):
        raise BpfError("bpf_program__attach_tracepoint", 2,
                       f"{where} of program '{prog.name}': tracefs is not mounted at {TRACEFS} "
                       f"(mount -t tracefs nodev {TRACEFS})")
    if not os.path.isdir(os.path.join(TRACEFS, "events", category, name)) and \
            not os.path.isdir(f"/sys/kernel/debug/tracing/events/{category}/{name}"):
        raise NotFoundError("bpf_program__attach_tracepoint", 2,
                            f"{where}: no such tracepoint in {TRACEFS}/events (kernel built "
                            "without it, or its module is not loaded)")
    return _libbpf_attach("bpf_program__attach_tracepoint", prog, where,
                          lambda p: lib.bpf_program__attach_tracepoint(p, category.encode(),
                                                                       name.encode()))


def attach_raw_tracepoint(prog: Program, name: str) -> Link:
    """Attach a raw tracepoint program (``SEC("raw_tp/...")``) to tracepoint ``name``."""
    return _libbpf_attach("bpf_program__attach_raw_tracepoint", prog, f"raw tracepoint {name}",
                          lambda p: lib.bpf_program__attach_raw_tracepoint(p, name.encode()))


def attach_trace(prog: Program) -> Link:
    """Attach a BTF tracing program (fentry, fexit, fmod_ret, tp_btf) to the target it was
    loaded for (its section name, or :meth:`ProgramSpec.set_attach_target`)."""
    return _libbpf_attach("bpf_program__attach_trace", prog, "tracing attach",
                          lambda p: lib.bpf_program__attach_trace(p))


def attach(prog: Program) -> Link:
    """Attach as the program's ELF section says (``SEC("kprobe/f")``,
    ``SEC("tracepoint/cat/name")``, ``SEC("fentry/f")``…: ``bpf_program__attach``)."""
    return _libbpf_attach("bpf_program__attach", prog, "section-derived attach",
                          lambda p: lib.bpf_program__attach(p))
