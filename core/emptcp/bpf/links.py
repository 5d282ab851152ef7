"""Attaching programs to network hooks.

BPF links (preferred: pinnable, detached by unpinning/closing, nothing left behind):
``attach_xdp`` and ``attach_tcx`` return a :class:`Link`. Netlink-style
attachments that persist until detached: ``xdp_attach``/``xdp_detach`` and TC
clsact filters (:mod:`emptcp.bpf.tc`).
"""
from __future__ import annotations

import socket

from ..errors import NotFoundError, error_from_errno
from .fdobject import FdObject
from .info import LinkInfo, fd_by_id, link_info
from .libbpf import check, ffi, lib
from .programs import Program

__all__ = ["Link", "XdpMode", "attach_xdp", "attach_tcx", "xdp_attach", "xdp_detach",
           "xdp_query", "ifindex"]

BPF_XDP = 37
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47
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


def attach_tcx(prog: Program, iface: str | int, direction: str = "ingress") -> Link:
    """Attach a SCHED_CLS program to TC ingress/egress through a TCX link (kernel >= 6.6)."""
    kind = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}[direction]
    return _link_create(prog, ifindex(iface), kind, 0, f"TCX {direction} attach")


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
