"""How emptcp's entry program runs on a TC hook: a TCX link where the kernel has TCX
(6.6 and later), else a direct-action cls_bpf filter on the interface's clsact qdisc.

Both keep the same semantics: an undecided packet leaves with ``TC_ACT_UNSPEC``, which
TCX hands to the next program and cls_bpf to the next filter. A TCX link is pinned as
``links/<type>@<ifname>``; a cls_bpf filter is not a BPF object, so the entry *program*
is pinned as ``links/cls-<type>@if<ifindex>``: it marks the attachment (status, stale
detection, detach) and the filter is found again by emptcp's fixed handle and the
priority of its position, and removed only when it still runs that program.

``EMPTCP_TC_ATTACH=tcx|cls_bpf`` overrides the probe (tests of the fallback on new
kernels; operators who want cls_bpf).
"""
from __future__ import annotations

import functools
import os
from typing import Any

from ..bpf.programs import Program
from ..bpf.tc import EGRESS, INGRESS, TcHook
from ..errors import EmptcpError

__all__ = ["MECHANISMS", "ENV", "mechanism", "tcx_supported", "CLS_HANDLE", "CLS_PRIORITY",
           "cls_pin_name", "attach_cls", "detach_cls", "cls_info"]

MECHANISMS = ("tcx", "cls_bpf")
ENV = "EMPTCP_TC_ATTACH"
#: emptcp's cls_bpf filter handle, and the filter priority of each position
#: (lower runs first; "last" leaves room for filters others add after emptcp)
CLS_HANDLE = 0xE3B7
CLS_PRIORITY = {"first": 1, "last": 0xC000}
_DIRECTION = {"tc-ingress": INGRESS, "tc-egress": EGRESS}


@functools.lru_cache(maxsize=1)
def tcx_supported() -> bool:
    """Whether this kernel has TCX links: its BTF names ``BPF_TCX_INGRESS`` (an enum
    value added with TCX in 6.6); without BTF, by the kernel version."""
    try:
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            return b"\0BPF_TCX_INGRESS\0" in f.read()
    except OSError:
        release = os.uname().release.split("-", 1)[0].split(".")
        try:
            return (int(release[0]), int(release[1])) >= (6, 6)
        except (IndexError, ValueError):
            return False


def mechanism() -> str:
    """"tcx" or "cls_bpf": the environment's choice, else what the kernel supports."""
    forced = os.environ.get(ENV, "").strip()
    if forced:
        if forced not in MECHANISMS:
            raise EmptcpError(f"{ENV}={forced!r}: expected one of {', '.join(MECHANISMS)}")
        if forced == "tcx" and not tcx_supported():
            raise EmptcpError(f"{ENV}=tcx: this kernel ({os.uname().release}) has no TCX "
                              "links (Linux 6.6 and later); unset it to use cls_bpf")
        return forced
    return "tcx" if tcx_supported() else "cls_bpf"


def _netns_id() -> int:
    """This process's network namespace (its nsfs inode): ifindexes are per namespace."""
    return os.stat("/proc/self/ns/net").st_ino


def cls_pin_name(hook_type: str, ifindex: int) -> str:
    return f"cls-{hook_type}@if{ifindex}-ns{_netns_id()}"


def parse_cls_pin(name: str) -> tuple[str, int, int] | None:
    """(hook type, ifindex, netns id) of a cls_bpf marker pin name, or None for others."""
    if not name.startswith("cls-") or "@if" not in name or "-ns" not in name:
        return None
    hook_type, _, rest = name[4:].partition("@if")
    idx, _, ns = rest.partition("-ns")
    if hook_type not in _DIRECTION or not idx.isdigit() or not ns.isdigit():
        return None
    return hook_type, int(idx), int(ns)


def attach_cls(prog: Program, ifindex: int, hook_type: str, position: str, pin: str) -> None:
    """Add emptcp's direct-action filter running ``prog`` and pin ``prog`` at ``pin``."""
    hook = TcHook(ifindex, _DIRECTION[hook_type]).create()
    hook.attach(prog, handle=CLS_HANDLE, priority=CLS_PRIORITY[position])
    try:
        prog.pin(pin)
    except BaseException:
        hook.detach(CLS_HANDLE, CLS_PRIORITY[position])
        raise


def _ours(hook: TcHook, prog_id: int) -> list[int]:
    """Priorities at which emptcp's handle runs ``prog_id`` on this hook."""
    found = []
    for prio in CLS_PRIORITY.values():
        f = hook.query(CLS_HANDLE, prio)
        if f is not None and f.prog_id == prog_id:
            found.append(prio)
    return found


def detach_cls(pin: str) -> None:
    """Remove the filter the marker ``pin`` stands for (if the interface and the filter
    still exist and run the pinned program), then the pin."""
    parsed = parse_cls_pin(os.path.basename(pin))
    if parsed is None:
        raise EmptcpError(f"{pin} is not an emptcp cls_bpf attachment")
    hook_type, ifindex, ns = parsed
    if ns != _netns_id():
        raise EmptcpError(f"{pin}: emptcp's cls_bpf filter on ifindex {ifindex} lives in "
                          f"another network namespace (nsfs inode {ns}); run the command in "
                          "that namespace (nsenter --net=...) so the filter is removed with "
                          "its pin")
    try:
        with Program.from_pin(pin) as prog:
            prog_id = prog.info.id
        hook = TcHook(ifindex, _DIRECTION[hook_type])
        for prio in _ours(hook, prog_id):
            hook.detach(CLS_HANDLE, prio)
    except (EmptcpError, OSError):
        pass   # interface gone (its filters with it) or pin unreadable: nothing to detach
    os.unlink(pin)


def cls_info(pin: str) -> dict[str, Any] | None:
    """What status shows for a cls_bpf attachment: program, ifindex, handle, priority."""
    parsed = parse_cls_pin(os.path.basename(pin))
    if parsed is None or not os.path.exists(pin):
        return None
    hook_type, ifindex, _ = parsed
    with Program.from_pin(pin) as prog:
        prog_id = prog.info.id
    try:
        prios = _ours(TcHook(ifindex, _DIRECTION[hook_type]), prog_id)
    except (EmptcpError, OSError):
        prios = []
    return {"mode": "cls_bpf", "prog_id": prog_id, "ifindex": ifindex, "handle": CLS_HANDLE,
            "priority": prios[0] if prios else None}
