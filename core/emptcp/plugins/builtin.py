"""The built-in selectors and actions (bpf/actions), registered like any plugin.

Objects live in :func:`emptcp.object_dir` (``<name>.o``, programs
``emptcp_<name>_xdp`` / ``emptcp_<name>_tc``). Parameter blobs follow
bpf/common/emptcp_params.h and are produced by ``emptcp.chain.compiler``'s
encoders, which the adapters below call with the validated parameters.
"""
from __future__ import annotations

import socket
from typing import Any, Callable

from .. import object_dir
from ..errors import ConfigError
from ..chain.sets import (SetParam, ip_pair_set, read_entries, service_set, tcp2tuple_set,
                          tcp4tuple_set)
from ..chain.stages import HOOKS, Param, StageSpec
from .hookspec import hookimpl


# Adapters from the validated TOML/Python parameters (a dict) to the
# data-path's encoders in emptcp.chain.compiler, the one place that knows the
# blob layouts of bpf/common/emptcp_params.h.

def _cc():
    from ..chain import compiler as chain_compiler
    return chain_compiler


def enc_ip_pair(p: dict[str, Any]) -> SetParam:
    local, remote = p.get("local_addr"), p.get("remote_addr")
    if not local and not remote:
        raise ConfigError("ip_pair needs local_addr and/or remote_addr")
    return ip_pair_set(local, remote)


_TUPLE_KEYS = ("local_addr", "local_port", "remote_addr", "remote_port")


def _entries(stage: str, p: dict[str, Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The entries of a set-valued selector: the single-entry parameters, or
    ``entries`` (a list of tables with the same keys) -- not both."""
    single = {k: p.get(k) for k in keys if p.get(k) is not None}
    listed = p.get("entries")
    if listed is not None and single:
        raise ConfigError(f"{stage}: give either {', '.join(single)} or entries, not both")
    if listed is None:
        return [single]
    if isinstance(listed, str):
        return _entries_file(stage, listed)
    for i, e in enumerate(listed):
        if not isinstance(e, dict):
            raise ConfigError(f"{stage}: entries[{i}] is not a table like "
                              f"{{ {', '.join(f'{k} = ...' for k in keys)} }}")
        extra = sorted(set(e) - set(keys))
        if extra:
            raise ConfigError(f"{stage}: entries[{i}] has unknown keys {extra} "
                              f"(expected {', '.join(keys)})")
    return listed


def _entries_file(stage: str, ref: str) -> list[dict[str, Any]]:
    """Entries from ``PATH#sha256=DIGEST`` (the form resolution gives a file name): the
    digest makes a changed file a changed configuration, and a file changed since
    resolution an error rather than silently different entries."""
    import hashlib
    path, _, digest = ref.partition("#sha256=")
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise ConfigError(f"{stage}: entries file {path}: {e.strerror}") from None
    if digest and hashlib.sha256(data).hexdigest() != digest:
        raise ConfigError(f"{stage}: entries file {path} changed since it was read")
    try:
        return read_entries(stage, path)
    except ValueError as e:
        raise ConfigError(f"{stage}: {e}") from None


def enc_tcp4tuple(p: dict[str, Any]) -> SetParam:
    rows = _entries("tcp4tuple", p, _TUPLE_KEYS)
    for i, e in enumerate(rows):
        missing = [k for k in _TUPLE_KEYS if e.get(k) is None]
        if missing:
            raise ConfigError(f"tcp4tuple: entry {i} lacks {', '.join(missing)}")
    # `entries = []` (written, not a file that turned out empty): a set of connections
    # that only run-time entries fill (emptcp flow add, AppliedPolicy.select, handlers)
    return tcp4tuple_set([tuple(e[k] for k in _TUPLE_KEYS) for e in rows],
                         allow_empty=p.get("entries") == [])


def enc_tcp2tuple(p: dict[str, Any]) -> SetParam:
    rows = _entries("tcp2tuple", p, _TUPLE_KEYS)
    ports, addrs = [], []
    for e in rows:
        pr = (e.get("local_port"), e.get("remote_port"))
        ad = (e.get("local_addr"), e.get("remote_addr"))
        has_p, has_a = any(x is not None for x in pr), any(x is not None for x in ad)
        if has_p == has_a or None in (pr if has_p else ad):
            raise ConfigError("tcp2tuple takes either local_port and remote_port, or "
                              "local_addr and remote_addr")
        (ports if has_p else addrs).append(pr if has_p else ad)
    if ports and addrs:
        raise ConfigError("tcp2tuple: one selector holds port pairs or address pairs, not both")
    return tcp2tuple_set(ports=ports) if ports else tcp2tuple_set(addrs=addrs)


def enc_service(p: dict[str, Any]) -> SetParam:
    return service_set(p["ports"], p.get("mode", "either"))


def enc_redirect(p: dict[str, Any]) -> bytes:
    try:
        idx = socket.if_nametoindex(p["iface"])
    except OSError:
        raise ConfigError(f"redirect: no interface named {p['iface']!r}") from None
    return _cc().encode_redirect(idx)


def enc_set_recv_win(p: dict[str, Any]) -> int | bytes:
    return _cc().encode_set_recv_win(p["window"])


def enc_tcp_opt_add(p: dict[str, Any]) -> bytes:
    try:
        raw = bytes.fromhex(p["option"])
    except ValueError:
        raise ConfigError(f"tcp_opt_add: option {p['option']!r} is not hex bytes") from None
    return _cc().encode_tcp_opt_add(raw)


def enc_tcp_opt_del(p: dict[str, Any]) -> int | bytes:
    return _cc().encode_tcp_opt_del(p["kind"], None if p["subtype"] < 0 else p["subtype"])


def enc_mptcp_subtype(p: dict[str, Any]) -> int:
    return _cc().encode_mptcp_subtype(p["subtype"])


def _none(p: dict[str, Any]) -> int:
    return 0


def _encoder(name: str, fn: Callable[[dict[str, Any]], Any]):
    """Turn the encoders' ValueError into a ConfigError naming the stage."""
    def encode(params: dict[str, Any]) -> Any:
        try:
            return fn(params)
        except ValueError as e:
            raise ConfigError(str(e)) from None
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
     (Param("kind", "int", default=30, min=2, max=255, description="TCP option kind"),
      Param("subtype", "int", default=-1, min=-1, max=15,
            description="MPTCP subtype (kind 30), -1 for any")),
     enc_tcp_opt_del, "remove matching TCP options, shrinking the header"),
    ("ip_pair", "selector", False,
     (Param("local_addr", "cidrs", default=None, description="local address/prefix (or a list)"),
      Param("remote_addr", "cidrs", default=None,
            description="remote address/prefix (or a list)")),
     enc_ip_pair, "local and remote addresses in sets of prefixes (TCP)"),
    ("tcp4tuple", "selector", False,
     (Param("local_addr", "ip", default=None), Param("local_port", "port", default=None),
      Param("remote_addr", "ip", default=None), Param("remote_port", "port", default=None),
      Param("entries", "entries", default=None,
            description="many connections: [{local_addr, local_port, remote_addr, remote_port}]"
                        " or a file, one 'LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT' per line")),
     enc_tcp4tuple, "TCP connections seen from this host (one, or a set: hash lookup)"),
    ("tcp2tuple", "selector", False,
     (Param("local_addr", "ip", default=None), Param("remote_addr", "ip", default=None),
      Param("local_port", "port", default=None), Param("remote_port", "port", default=None),
      Param("entries", "entries", default=None,
            description="many pairs: [{local_port, remote_port}] or [{local_addr, remote_addr}],"
                        " or a file of such pairs, one per line")),
     enc_tcp2tuple, "two ports or two addresses of a TCP connection (one pair or a set)"),
    ("service", "selector", False,
     (Param("ports", "ports", description="ports and 'lo-hi' ranges"),
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
