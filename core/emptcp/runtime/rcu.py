"""Wait for an RCU grace period from user space.

XDP and TC programs, tail calls included, run inside RCU read-side critical
sections. ``membarrier(MEMBARRIER_CMD_GLOBAL)`` calls ``synchronize_rcu()``, so
when it returns, every packet that started before the call has left its chain:
a generation deactivated before it can be cleared and rebuilt safely.
"""
from __future__ import annotations

import ctypes
import platform

__all__ = ["wait_grace_period"]

_SYS_MEMBARRIER = {"x86_64": 324, "aarch64": 283, "armv7l": 389, "ppc64le": 365,
                   "s390x": 356, "riscv64": 283}
_MEMBARRIER_CMD_GLOBAL = 1


def wait_grace_period() -> bool:
    """Block until an RCU grace period has elapsed; False if the kernel can't say
    (no membarrier, or nohz_full CPUs) and the caller must fall back to waiting."""
    nr = _SYS_MEMBARRIER.get(platform.machine())
    if nr is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(nr, _MEMBARRIER_CMD_GLOBAL, 0, 0) == 0
