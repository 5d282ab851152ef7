"""The pin root: the one bpffs directory holding everything emptcp owns (docs/abi.md 5.1),
its layout, the lock that serialises commands changing it, and the checks that turn a
wrong place into a clear message (not on bpffs, ``ip netns exec``, missing privilege).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import time
from typing import Iterator

from ..errors import EmptcpError, MissingPrivilegeError

__all__ = ["PinRoot", "PinRootError", "BPF_FS_MAGIC", "fs_magic", "check_on_bpffs", "locked",
           "unpin"]

BPF_FS_MAGIC = 0xCAFE4A11         # include/uapi/linux/magic.h
#: the privileges reading or changing emptcp's pins needs
PRIVILEGE = ("CAP_BPF", "CAP_SYS_ADMIN")


class PinRootError(EmptcpError):
    """The pin root cannot hold BPF pins (not on bpffs, or bpffs hidden here)."""


class PinRoot:
    """Paths under one pin root."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self.maps = os.path.join(self.root, "maps")
        self.links = os.path.join(self.root, "links")

    def map(self, name: str) -> str:
        return os.path.join(self.maps, name)

    def link(self, hook_type: str, iface: str) -> str:
        # bpffs refuses names with '.', so "eth0.100" becomes "eth0_100"
        return os.path.join(self.links, f"{hook_type}@{iface.replace('.', '_')}")

    def gen(self, g: int) -> str:
        return os.path.join(self.root, f"gen{g}")

    def exists(self) -> bool:
        """Whether the pin root exists; a directory this process may not look into is
        a missing privilege, not an absent configuration."""
        try:
            os.stat(self.root)
        except FileNotFoundError:
            return False
        except PermissionError:
            raise MissingPrivilegeError(f"open pin root {self.root}", errno.EACCES,
                                        PRIVILEGE) from None
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise MissingPrivilegeError(f"open pin root {self.root}", errno.EACCES, PRIVILEGE)
        return True


class _Statfs(ctypes.Structure):
    # struct statfs starts with f_type (__fsword_t: a C long on Linux); the rest is room
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def fs_magic(path: str) -> int:
    """The filesystem type (statfs f_type) of ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)   # the C library already loaded in this process
    buf = _Statfs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return buf.f_type & 0xFFFFFFFF


def _named_netns() -> str | None:
    """The name (under /var/run/netns) of the network namespace this process is in, if
    any -- the one ``ip netns exec NAME`` entered."""
    try:
        me = os.stat("/proc/self/ns/net")
        names = os.listdir("/var/run/netns")
    except OSError:
        return None
    for name in sorted(names):
        try:
            st = os.stat(os.path.join("/var/run/netns", name))
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (me.st_ino, me.st_dev):
            return name
    return None


def check_on_bpffs(root: str) -> None:
    """Raise :class:`PinRootError` unless ``root`` (or, while it does not exist yet, its
    nearest existing parent) is on a BPF filesystem."""
    probe = os.path.abspath(root)
    while not os.path.lexists(probe) and probe != "/":
        probe = os.path.dirname(probe)
    try:
        magic = fs_magic(probe)
    except PermissionError:
        raise MissingPrivilegeError(f"open pin root {root}", errno.EACCES, PRIVILEGE) from None
    if magic == BPF_FS_MAGIC:
        return
    hint = ("mount bpffs (`mount -t bpf bpf /sys/fs/bpf`) or choose a --pin-root "
            "under a bpffs mount")
    netns = _named_netns() if probe.startswith("/sys") else None
    if netns is not None:
        hint = (f"this process runs in network namespace {netns!r} with a /sys of its own, "
                f"as `ip netns exec {netns}` sets up: that hides the host's bpffs and its pins. "
                f"Enter only the network namespace instead: `nsenter --net=/var/run/netns/"
                f"{netns} emptcp ...`")
    raise PinRootError(f"pin root {root} is not on a BPF filesystem ({probe} is not bpffs): "
                       f"{hint}")


@contextlib.contextmanager
def locked(pins: PinRoot, timeout: float | None = None) -> Iterator[None]:
    """Serialise commands that change one pin root: ``flock`` on the pin root directory
    itself (created 0700 if missing), so no lock file is left behind and the kernel
    drops the lock if the process dies."""
    check_on_bpffs(pins.root)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            os.makedirs(pins.root, mode=0o700, exist_ok=True)
            fd = os.open(pins.root, os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            raise MissingPrivilegeError(f"lock pin root {pins.root}", errno.EACCES,
                                        PRIVILEGE) from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline else 0))
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:  # type: ignore[operator]
                        raise EmptcpError(f"{pins.root} is locked by another emptcp "
                                          "command") from None
                    time.sleep(0.05)
            # a detach may have removed the directory while we waited: lock the new one
            try:
                same = os.stat(pins.root).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield
                return
        finally:
            os.close(fd)


def unpin(path: str) -> None:
    """Remove a pin if present (bpffs answers EPERM, not ENOENT, for a missing name)."""
    if os.path.lexists(path):
        os.unlink(path)
