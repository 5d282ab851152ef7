"""How emptcp's entry program runs on a TC hook: a TCX link where the kernel has TCX
(6.6 and later), else a direct-action cls_bpf filter on the interface's clsact qdisc.

Both keep the same semantics: an undecided packet leaves with ``TC_ACT_UNSPEC``, which
TCX hands to the next program and cls_bpf to the next filter. A TCX link is pinned as
``links/<type>@<ifname>``; a cls_bpf filter is not a BPF object, so the entry *program*
is pinned as ``links/cls-<type>@if<ifindex>``: it marks the attachment (status, stale
detection, detach) and the filter is found again by emptcp's fixed handle and the
priority of its position, and removed only when it still runs that program.

Unlike a TCX link, a filter outlives the process that added it, so the marker is pinned
*before* the filter is added: an apply killed at any moment leaves no filter that a
marker does not name (a marker without a filter is harmless: status shows the hook not
attached, or lists the marker as stale, and the next apply or detach removes it).
Re-placing the filter (a position change, :func:`place_cls`) keeps the marker and its
program. (Markers ending in :data:`CLS_TMP_SUFFIX` were made by an earlier version while
it re-placed a filter; they are recognised so that they are listed and removed.)

``EMPTCP_TC_ATTACH=tcx|cls_bpf`` overrides the probe (tests of the fallback on new
kernels; operators who want cls_bpf).
"""
from __future__ import annotations

import errno
import functools
import os
from typing import Any

from ..bpf.programs import Program
from ..bpf.tc import EGRESS, INGRESS, TcHook
from ..errors import EmptcpError

__all__ = ["MECHANISMS", "ENV", "mechanism", "tcx_supported", "CLS_HANDLE", "CLS_PRIORITY",
           "CLS_TMP_SUFFIX", "cls_pin_name", "parse_cls_pin", "attach_cls", "place_cls",
           "detach_cls", "cls_info", "cls_running"]

MECHANISMS = ("tcx", "cls_bpf")
ENV = "EMPTCP_TC_ATTACH"
#: emptcp's cls_bpf filter handle, and the filter priority of each position
#: (lower runs first; "last" leaves room for filters others add after emptcp)
CLS_HANDLE = 0xE3B7
CLS_PRIORITY = {"first": 1, "last": 0xC000}
#: a temporary marker an earlier version pinned while it re-placed a filter
CLS_TMP_SUFFIX = "-new"
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
    """(hook type, ifindex, netns id) of a cls_bpf marker pin name (also of a temporary
    one, ending in :data:`CLS_TMP_SUFFIX`), or None for others."""
    if name.endswith(CLS_TMP_SUFFIX):
        name = name[:-len(CLS_TMP_SUFFIX)]
    if not name.startswith("cls-") or "@if" not in name or "-ns" not in name:
        return None
    hook_type, _, rest = name[4:].partition("@if")
    idx, _, ns = rest.partition("-ns")
    if hook_type not in _DIRECTION or not idx.isdigit() or not ns.isdigit():
        return None
    return hook_type, int(idx), int(ns)


def attach_cls(prog: Program, ifindex: int, hook_type: str, position: str, pin: str) -> None:
    """Pin ``prog`` at ``pin`` (the marker), then add emptcp's direct-action filter
    running it. Marker first: see the module doc."""
    prio = CLS_PRIORITY[position]
    prog.pin(pin)
    try:
        hook = TcHook(ifindex, _DIRECTION[hook_type]).create()
        try:
            hook.attach(prog, handle=CLS_HANDLE, priority=prio)
        except EmptcpError as e:
            if getattr(e, "errno", None) != errno.EEXIST:
                raise
            held = hook.query(CLS_HANDLE, prio)
            direction = hook_type.split("-", 1)[1]
            raise EmptcpError(
                f"{hook_type} on ifindex {ifindex}: a filter with emptcp's handle "
                f"{CLS_HANDLE:#x} already sits at priority {prio} (program "
                f"{held.prog_id if held else '?'}): another emptcp pin root attaches this "
                "hook (without TCX, one per hook and position), or a filter was left by "
                "an older emptcp. Detach it there, or remove it: tc filter del dev "
                f"<interface> {direction} protocol all prio {prio} handle {CLS_HANDLE:#x} "
                "bpf") from None
    except BaseException:
        os.unlink(pin)
        raise


def place_cls(ifindex: int, hook_type: str, position: str, pin: str) -> None:
    """Move the filter the marker ``pin`` stands for to ``position``, running the marker's
    own program (as a re-placed TCX link keeps its program); a marker whose filter is gone
    gets its filter back. The old filter goes first: for microseconds packets do not run
    emptcp; the other order would run a packet through both filters -- the same tables
    twice, every action applied twice (an option added twice), which is worse. The marker
    stays throughout, so a kill in between leaves a marker without a filter (status: not
    attached; the next apply attaches it again), never a filter no marker names."""
    prio = CLS_PRIORITY[position]
    hook = TcHook(ifindex, _DIRECTION[hook_type])
    with Program.from_pin(pin) as prog:
        prios = _ours(hook, prog.info.id)
        if prios == [prio]:
            return
        for p in prios:
            if p != prio:
                hook.detach(CLS_HANDLE, p)
        if prio not in prios:
            hook.create().attach(prog, handle=CLS_HANDLE, priority=prio)


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
    """What status shows for a cls_bpf attachment: program, ifindex, handle, priority
    (None when no filter of emptcp's runs the marker's program: removed by hand, or an
    interrupted apply's marker). From another network namespace the filter cannot be
    looked up: ``netns`` then names the marker's namespace and priority is None."""
    parsed = parse_cls_pin(os.path.basename(pin))
    if parsed is None or not os.path.exists(pin):
        return None
    hook_type, ifindex, ns = parsed
    with Program.from_pin(pin) as prog:
        prog_id = prog.info.id
    out: dict[str, Any] = {"mode": "cls_bpf", "prog_id": prog_id, "ifindex": ifindex,
                           "handle": CLS_HANDLE, "priority": None}
    if ns != _netns_id():
        out["netns"] = ns
        return out
    try:
        prios = _ours(TcHook(ifindex, _DIRECTION[hook_type]), prog_id)
    except (EmptcpError, OSError):
        prios = []
    out["priority"] = prios[0] if prios else None
    return out


def cls_running(info: dict[str, Any] | None) -> bool:
    """Whether :func:`cls_info` found the marker's filter (or cannot tell: another
    network namespace)."""
    return bool(info) and (info["priority"] is not None or "netns" in info)
