"""TC clsact hooks and cls_bpf filters (libbpf's ``bpf_tc_*``).

A :class:`TcHook` remembers whether it created the clsact qdisc, and only then
removes it: destroying a qdisc someone else made would drop their filters too.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from .libbpf import check, ffi, lib
from .links import ifindex
from .programs import Program

__all__ = ["TcHook", "TcFilter", "INGRESS", "EGRESS"]

INGRESS, EGRESS = 1, 2
_NET = ("CAP_NET_ADMIN",)


@dataclass(frozen=True)
class TcFilter:
    ifindex: int
    direction: int
    handle: int
    priority: int
    prog_id: int


class TcHook:
    """The clsact qdisc of one interface, one direction."""

    def __init__(self, iface: str | int, direction: str | int = "ingress") -> None:
        self.ifindex = ifindex(iface)
        self.direction = direction if isinstance(direction, int) else \
            {"ingress": INGRESS, "egress": EGRESS}[direction]
        self._hook = ffi.new("struct bpf_tc_hook *")
        self._hook.sz = ffi.sizeof("struct bpf_tc_hook")
        self._hook.ifindex = self.ifindex
        self._hook.attach_point = self.direction
        self.created = False

    def create(self) -> "TcHook":
        """Make sure the clsact qdisc exists (an existing one is fine)."""
        hook = ffi.new("struct bpf_tc_hook *")
        hook.sz = ffi.sizeof("struct bpf_tc_hook")
        hook.ifindex = self.ifindex
        hook.attach_point = INGRESS | EGRESS
        rc = lib.bpf_tc_hook_create(hook)
        if rc == -errno.EEXIST:
            return self
        check("bpf_tc_hook_create", rc, f"clsact on ifindex {self.ifindex}", privilege=_NET)
        self.created = True
        return self

    def _opts(self, prog_fd: int = 0, handle: int = 0, priority: int = 0):
        o = ffi.new("struct bpf_tc_opts *")
        o.sz = ffi.sizeof("struct bpf_tc_opts")
        o.prog_fd = prog_fd
        o.handle = handle
        o.priority = priority
        return o

    def attach(self, prog: Program, handle: int = 1, priority: int = 1,
               replace: bool = False) -> TcFilter:
        """Add a direct-action cls_bpf filter running ``prog``."""
        o = self._opts(prog.fd, handle, priority)
        o.flags = 1 if replace else 0  # BPF_TC_F_REPLACE
        check("bpf_tc_attach", lib.bpf_tc_attach(self._hook, o),
              f"program '{prog.name}' on ifindex {self.ifindex}", privilege=_NET)
        return TcFilter(self.ifindex, self.direction, o.handle, o.priority, o.prog_id)

    def detach(self, handle: int = 1, priority: int = 1) -> None:
        check("bpf_tc_detach", lib.bpf_tc_detach(self._hook, self._opts(0, handle, priority)),
              f"filter {handle}:{priority} on ifindex {self.ifindex}", privilege=_NET)

    def query(self, handle: int = 1, priority: int = 1) -> TcFilter | None:
        o = self._opts(0, handle, priority)
        rc = lib.bpf_tc_query(self._hook, o)
        if rc in (-errno.ENOENT, -errno.EINVAL):  # EINVAL: the filter chain itself is gone
            return None
        check("bpf_tc_query", rc, privilege=_NET)
        return TcFilter(self.ifindex, self.direction, o.handle, o.priority, o.prog_id)

    def destroy(self) -> None:
        """Remove the clsact qdisc, but only if this hook created it."""
        if not self.created:
            return
        hook = ffi.new("struct bpf_tc_hook *")
        hook.sz = ffi.sizeof("struct bpf_tc_hook")
        hook.ifindex = self.ifindex
        hook.attach_point = INGRESS | EGRESS
        rc = lib.bpf_tc_hook_destroy(hook)
        if rc not in (0, -errno.ENOENT, -errno.ENODEV):
            check("bpf_tc_hook_destroy", rc, privilege=_NET)
        self.created = False

    def __enter__(self) -> "TcHook":
        return self.create()

    def __exit__(self, *exc: Any) -> None:
        self.destroy()
