"""Network-namespace helpers that do NOT remount /sys (keeps root bpffs pins visible).

* :func:`run` / :func:`popen` run a command via ``nsenter --net=/var/run/netns/NS``
  (``ip netns exec`` would remount /sys and hide /sys/fs/bpf pins).
* :func:`enter` is a context manager that ``setns()``-es the *current thread* into
  a netns and back.  Sockets created inside stay in that netns after leaving.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from typing import Iterator, Optional, Sequence, Union

NETNS_RUN_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def ns_path(ns: Optional[str]) -> Optional[str]:
    if ns is None:
        return None
    return ns if ns.startswith("/") else os.path.join(NETNS_RUN_DIR, ns)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


@contextlib.contextmanager
def enter(ns: Optional[str]) -> Iterator[None]:
    """Enter netns ``ns`` (name or path) in the current thread; restore on exit.

    ``ns=None`` is a no-op (stay in the current namespace)."""
    if ns is None:
        yield
        return
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(ns_path(ns), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(orig)
    finally:
        os.close(orig)


Cmd = Union[str, Sequence[str]]


def _argv(ns: Optional[str], cmd: Cmd) -> list:
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    if ns is None:
        return argv
    return ["nsenter", f"--net={ns_path(ns)}", "--"] + argv


def run(ns: Optional[str], cmd: Cmd, check: bool = True, timeout: float = 30,
        input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (argv list, or a shell string) in netns ``ns``; capture text output."""
    p = subprocess.run(_argv(ns, cmd), capture_output=True, text=True,
                       timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, p.args, p.stdout, p.stderr)
    return p


def out(ns: Optional[str], cmd: Cmd, **kw) -> str:
    return run(ns, cmd, **kw).stdout


def popen(ns: Optional[str], cmd: Cmd, **kw) -> subprocess.Popen:
    """Start ``cmd`` in netns ``ns`` in its own process group (so it can be killed as a group)."""
    kw.setdefault("start_new_session", True)
    return subprocess.Popen(_argv(ns, cmd), **kw)


def ifindex(ns: Optional[str], ifname: str) -> int:
    """ifindex of ``ifname`` as seen inside ``ns``."""
    if ns is None:
        return socket_if_nametoindex(ifname)
    with enter(ns):
        return socket_if_nametoindex(ifname)


def socket_if_nametoindex(name: str) -> int:
    import socket
    return socket.if_nametoindex(name)


def sysctl(ns: Optional[str], key: str, value=None) -> str:
    """Read (or write, when ``value`` is given) a sysctl inside ``ns`` via /proc/sys."""
    path = "/proc/sys/" + key.replace(".", "/")
    # /proc/sys/net reflects the netns of the *opening* thread's process... use nsenter
    # to be exact (procfs net entries follow the reader's netns).
    if value is None:
        return out(ns, ["cat", path]).strip()
    run(ns, ["sysctl", "-q", "-w", f"{key}={value}"])
    return str(value)
