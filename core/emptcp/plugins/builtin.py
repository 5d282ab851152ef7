"""The built-in selectors and actions (bpf/actions), registered like any plugin.

Objects live in :func:`emptcp.object_dir` (``<name>.o``, programs
``emptcp_<name>_xdp`` / ``emptcp_<name>_tc``). Parameter blobs follow
bpf/common/emptcp_params.h. When the data-path's ``emptcp.chain_compiler``
provides an encoder for a stage (``ENCODERS[name]`` or ``encode_<name>``) it is
used; the local encoders below are the fallback and implement the same layouts.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, Callable

from .. import object_dir
from ..errors import ConfigError
from ..stages import HOOKS, Param, StageSpec
from .hookspec import hookimpl

P_ANY_SUBTYPE = 0xFF
TUPLE_PORTS, TUPLE_ADDRS = 1, 2
SERVICE_EITHER, SERVICE_LOCAL = 0, 1


def _blob(b: bytes) -> bytes:
    assert len(b) <= 64
    return b


def _addr(ip: str) -> tuple[int, bytes]:
    a = ipaddress.ip_address(ip)
    return a.version, a.packed.ljust(16, b"\0")


def _net(cidr: str | None) -> tuple[int | None, int, bytes]:
    if not cidr:
        return None, 0, b"\0" * 16
    n = ipaddress.ip_network(cidr, strict=False)
    return n.version, n.prefixlen, n.network_address.packed.ljust(16, b"\0")


def enc_ip_pair(p: dict[str, Any]) -> bytes:
    f1, l1, a1 = _net(p.get("local_addr"))
    f2, l2, a2 = _net(p.get("remote_addr"))
    fams = {f for f in (f1, f2) if f}
    if not fams:
        raise ConfigError("ip_pair needs local_addr and/or remote_addr")
    if len(fams) > 1:
        raise ConfigError("ip_pair: local_addr and remote_addr are of different IP families")
    return _blob(struct.pack("=BBBx16s16s", fams.pop(), l1, l2, a1, a2))


def enc_tcp4tuple(p: dict[str, Any]) -> bytes:
    f1, a1 = _addr(p["local_addr"])
    f2, a2 = _addr(p["remote_addr"])
    if f1 != f2:
        raise ConfigError("tcp4tuple: local_addr and remote_addr are of different IP families")
    return _blob(struct.pack("=BB2s2s2x16s16s", f1, 0, p["local_port"].to_bytes(2, "big"),
                             p["remote_port"].to_bytes(2, "big"), a1, a2))


def enc_tcp2tuple(p: dict[str, Any]) -> bytes:
    ports = p.get("local_port") is not None or p.get("remote_port") is not None
    addrs = p.get("local_addr") is not None or p.get("remote_addr") is not None
    if ports == addrs:
        raise ConfigError("tcp2tuple takes either local_port+remote_port or "
                          "local_addr+remote_addr")
    if ports:
        if p.get("local_port") is None or p.get("remote_port") is None:
            raise ConfigError("tcp2tuple needs both local_port and remote_port")
        return _blob(struct.pack("=BB2s2s2x16s16s", 0, TUPLE_PORTS,
                                 p["local_port"].to_bytes(2, "big"),
                                 p["remote_port"].to_bytes(2, "big"), b"", b""))
    if p.get("local_addr") is None or p.get("remote_addr") is None:
        raise ConfigError("tcp2tuple needs both local_addr and remote_addr")
    f1, a1 = _addr(p["local_addr"])
    f2, a2 = _addr(p["remote_addr"])
    if f1 != f2:
        raise ConfigError("tcp2tuple: addresses of different IP families")
    return _blob(struct.pack("=BB2x2x2x16s16s", f1, TUPLE_ADDRS, a1, a2))


def enc_service(p: dict[str, Any]) -> bytes:
    ranges = p["ports"]
    if len(ranges) > 15:
        raise ConfigError(f"service: {len(ranges)} port ranges, at most 15")
    mode = SERVICE_LOCAL if p.get("mode") == "local" else SERVICE_EITHER
    body = b"".join(struct.pack("=HH", lo, hi) for lo, hi in ranges)
    return _blob(struct.pack("=BB2x", len(ranges), mode) + body)


def enc_redirect(p: dict[str, Any]) -> bytes:
    try:
        idx = socket.if_nametoindex(p["iface"])
    except OSError:
        raise ConfigError(f"redirect: no interface named {p['iface']!r}") from None
    return _blob(struct.pack("=I", idx))


def enc_set_recv_win(p: dict[str, Any]) -> bytes:
    return _blob(struct.pack("=H", p["window"]))


def enc_tcp_opt_add(p: dict[str, Any]) -> bytes:
    try:
        raw = bytes.fromhex(p["option"])
    except ValueError:
        raise ConfigError(f"tcp_opt_add: option {p['option']!r} is not hex bytes") from None
    if not 1 <= len(raw) <= 40:
        raise ConfigError(f"tcp_opt_add: option of {len(raw)} bytes, must be 1..40")
    return _blob(struct.pack("=B40s", len(raw), raw))


def enc_tcp_opt_del(p: dict[str, Any]) -> int | bytes:
    kind, sub = p["kind"], p["subtype"]
    if kind == 30 and 0 <= sub <= 15:
        return sub                       # immediate: MPTCP subtype
    return _blob(struct.pack("=BB", kind, P_ANY_SUBTYPE if sub < 0 else sub))


def enc_mptcp_subtype(p: dict[str, Any]) -> int:
    return p["subtype"]


def _none(p: dict[str, Any]) -> int:
    return 0


def _encoder(name: str, local: Callable[[dict[str, Any]], int | bytes]):
    """Prefer chain_compiler's encoder for ``name`` (looked up at call time)."""
    def encode(params: dict[str, Any]) -> int | bytes:
        try:
            from .. import chain_compiler as cc  # type: ignore[attr-defined]
        except ImportError:
            cc = None
        fn = None
        if cc is not None:
            fn = getattr(cc, "ENCODERS", {}).get(name) or getattr(cc, f"encode_{name}", None)
        return (fn or local)(params)
    encode.__name__ = f"encode_{name}"
    return encode


_PORT = dict(type="port")
_STAGES: list[tuple[str, str, bool, tuple[Param, ...], Callable, str]] = [
    # name, kind, terminal, params, local encoder, description
    ("count", "action", False, (), _none, "count packets and bytes (per-stage counters)"),
    ("drop", "action", True, (), _none, "drop the packet (XDP_DROP / TC_ACT_SHOT)"),
    ("pass", "action", True, (), _none, "let the packet through, skip the rest of the chain"),
    ("redirect", "action", True, (Param("iface", "iface", description="egress interface"),),
     enc_redirect, "redirect to another interface's egress"),
    ("set_recv_win", "action", False,
     (Param("window", "int", min=0, max=65535, description="raw 16-bit TCP window"),),
     enc_set_recv_win, "rewrite the TCP receive window (checksum fixed incrementally)"),
    ("tcp_opt_add", "action", False,
     (Param("option", "str", description="option bytes in hex, kind first"),),
     enc_tcp_opt_add, "append a TCP option, growing the header"),
    ("tcp_opt_del", "action", False,
     (Param("kind", "int", default=30, min=1, max=255, description="TCP option kind"),
      Param("subtype", "int", default=-1, min=-1, max=15,
            description="MPTCP subtype (kind 30), -1 for any")),
     enc_tcp_opt_del, "remove matching TCP options, shrinking the header"),
    ("ip_pair", "selector", False,
     (Param("local_addr", "cidr", default=None, description="local address/prefix"),
      Param("remote_addr", "cidr", default=None, description="remote address/prefix")),
     enc_ip_pair, "local and remote addresses in prefixes (TCP)"),
    ("tcp4tuple", "selector", False,
     (Param("local_addr", "ip"), Param("local_port", **_PORT),
      Param("remote_addr", "ip"), Param("remote_port", **_PORT)),
     enc_tcp4tuple, "exactly one TCP connection, seen from this host"),
    ("tcp2tuple", "selector", False,
     (Param("local_addr", "ip", default=None), Param("remote_addr", "ip", default=None),
      Param("local_port", "port", default=None), Param("remote_port", "port", default=None)),
     enc_tcp2tuple, "two ports or two addresses of a TCP connection"),
    ("service", "selector", False,
     (Param("ports", "ports", description="ports and 'lo-hi' ranges (at most 15)"),
      Param("mode", "str", default="either", choices=("either", "local"),
            description="either: source or destination port; local: the local port")),
     enc_service, "TCP port in a set of ranges"),
    ("mptcp_subtype", "selector", False,
     (Param("subtype", "int", min=0, max=15, description="MPTCP option subtype"),),
     enc_mptcp_subtype, "packets carrying an MPTCP option of this subtype"),
]


def builtin_specs() -> list[StageSpec]:
    import os
    out = []
    for name, kind, terminal, params, enc, desc in _STAGES:
        out.append(StageSpec(
            name=name, kind=kind, hooks=HOOKS, object=os.path.join(object_dir(), f"{name}.o"),
            programs={"xdp": f"emptcp_{name}_xdp", "tc": f"emptcp_{name}_tc"},
            params=params, encode=_encoder(name, enc), description=desc,
            plugin="builtin", distribution="emptcp", terminal=terminal))
    return out


@hookimpl
def emptcp_stages() -> list[StageSpec]:
    return builtin_specs()
