"""The emptcp exception hierarchy: every error the library raises derives from EmptcpError.

Kernel/libbpf failures are :class:`BpfError` with the errno preserved; the more
specific subclasses exist so callers can catch the cases they can act on.
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "EmptcpError", "BpfError", "NotFoundError", "KeyNotFoundError", "ObjectFileError",
    "VerifierError", "MissingPrivilegeError", "MapCompatibilityError", "MapKeyError",
    "ConfigError", "PluginError", "error_from_errno",
]


class EmptcpError(Exception):
    """Root of all emptcp errors."""


class BpfError(EmptcpError):
    """A libbpf call or bpf() syscall failed. ``errno`` and ``op`` say which and why."""

    def __init__(self, op: str, err: int, detail: str = "") -> None:
        self.op = op
        self.errno = abs(err)
        self.detail = detail
        text = _strerror(self.errno)
        msg = f"{op}: {text} (errno {self.errno})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class NotFoundError(BpfError):
    """A pin, program, map, link or interface does not exist."""


class KeyNotFoundError(NotFoundError, KeyError):
    """A map lookup or delete found no such key."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return Exception.__str__(self)


class ObjectFileError(BpfError):
    """An ELF object could not be opened or parsed."""


class VerifierError(BpfError):
    """The kernel verifier rejected a program; ``log`` holds the verifier's own words."""

    def __init__(self, op: str, err: int, program: str, log: str) -> None:
        self.program = program
        self.log = log
        tail = "\n".join(log.strip().splitlines()[-20:])
        super().__init__(op, err, f"program '{program}' rejected by the verifier:\n{tail}")


class MissingPrivilegeError(BpfError, PermissionError):
    """The operation needs a capability this process lacks; ``missing`` names them."""

    def __init__(self, op: str, err: int, needed: tuple[str, ...]) -> None:
        self.needed = needed
        self.missing = tuple(c for c in needed if not has_capability(c))
        lacking = ", ".join(self.missing) or "none (blocked by another policy, e.g. LSM or sysctl)"
        super().__init__(op, err, f"needs {' or '.join(needed)}; this process lacks: {lacking}")


class MapCompatibilityError(EmptcpError):
    """A map to be shared (pinned or reused by fd) differs from the object's definition."""


class MapKeyError(EmptcpError, ValueError):
    """A key or value has the wrong size or type for the map."""


class ConfigError(EmptcpError):
    """Bad configuration: ``where`` is file:line (or a key path), ``message`` says why."""

    def __init__(self, message: str, where: str = "") -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class PluginError(EmptcpError):
    """A plugin was refused; the message names the plugin, its distribution and the reason."""

    def __init__(self, plugin: str, reason: str, distribution: str | None = None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.reason = reason
        dist = f" (distribution {distribution})" if distribution else ""
        super().__init__(f"plugin '{plugin}'{dist}: {reason}")


# Linux capability numbers (include/uapi/linux/capability.h)
_CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39,
         "CAP_NET_RAW": 13}


def has_capability(name: str) -> bool:
    """Whether the effective capability set of this process has ``name``."""
    bit = _CAPS[name]
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except OSError:
        pass
    return os.geteuid() == 0


#: libbpf's own error codes (LIBBPF_ERRNO__*, libbpf.h), as libbpf_strerror words them
_LIBBPF_ERRORS = {
    4000: "Something wrong in libelf", 4001: "BPF object format invalid",
    4002: "'version' section incorrect or lost", 4003: "Endian mismatch",
    4004: "Internal error in libbpf", 4005: "Relocation failed",
    4007: "Kernel verifier blocks program loading",
    4008: "Program too big", 4009: "Incorrect kernel version",
    4010: "Kernel doesn't support this program type", 4011: "Wrong pid in netlink message",
    4012: "Invalid netlink sequence", 4013: "Incorrect netlink message parsing",
}


def _strerror(err: int) -> str:
    if 4000 <= err < 4100:
        return _LIBBPF_ERRORS.get(err, f"Unknown libbpf error {err}")
    return os.strerror(err)


def error_from_errno(op: str, err: int, detail: str = "", *,
                     privilege: tuple[str, ...] = ("CAP_BPF", "CAP_SYS_ADMIN")) -> BpfError:
    """Map an errno to the most specific emptcp exception."""
    err = abs(err)
    if err == _errno.EPERM or (err == _errno.EACCES and privilege and
                               not any(has_capability(c) for c in privilege)):
        return MissingPrivilegeError(op, err, privilege)
    if err == _errno.ENOENT:
        return NotFoundError(op, err, detail)
    return BpfError(op, err, detail)
