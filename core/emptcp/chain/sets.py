"""Built-in selectors as sets of keys over dimensions (docs/datapath-v2.md, section 1).

Pure Python. A built-in selector (``tcp4tuple``, ``tcp2tuple``, ``ip_pair``,
``service``) is not a program: its parameters become a :class:`SetParam`, the
entries the entry program looks up (hash or LPM trie) to classify a packet::

    service_set([80, (8000, 8080)], mode="either")   # lport in S OR rport in S
    ip_pair_set(["10.0.0.0/8", "fd00::/8"], ["10.1.0.0/16"])
    tcp4tuple_set([("10.0.0.1", 80, "10.0.0.2", 40000), ...])

Keys, per dimension (addresses as 16 bytes, IPv4 in the first 4; ports host order):

    flow    (family, laddr, lport, raddr, rport)
    ports   (lport, rport)
    addrs   (family, laddr, raddr)
    laddr   (family, prefix length, network address)    -- prefix dimensions
    raddr   (family, prefix length, network address)
    lport   port
    rport   port
"""
from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["parse_entry", "format_entry", "read_entries", "SetParam", "CLASSIFIED", "PREFIX_DIMS", "DIM_NUMBERS", "tcp4tuple_set",
           "tcp2tuple_set", "ip_pair_set", "service_set", "addr16", "prefix_contains"]

#: the built-in selectors that are classified by the entry instead of run as programs
CLASSIFIED = ("tcp4tuple", "tcp2tuple", "ip_pair", "service")
#: dimension name -> EMPTCP_DIM_* (bpf/common/emptcp_abi.h)
DIM_NUMBERS = {"flow": 0, "ports": 1, "addrs": 2, "laddr": 3, "raddr": 4, "lport": 5, "rport": 6}
PREFIX_DIMS = ("laddr", "raddr")


@dataclass(frozen=True)
class SetParam:
    """The entries of one built-in selector: ``alternatives`` is its own DNF, each
    alternative a conjunction of (dimension, entries) terms (``service`` in mode
    either is lport-term OR rport-term; ``ip_pair`` with both sides is laddr AND raddr)."""
    stage: str
    alternatives: tuple[tuple[tuple[str, frozenset], ...], ...]

    def __len__(self) -> int:
        return sum(len(e) for alt in self.alternatives for _, e in alt)

    def extended(self, extra: dict[str, Iterable]) -> "SetParam":
        """The same selector with more entries in some dimensions (run-time entries
        carried into a new generation)."""
        return SetParam(self.stage, tuple(tuple((d, e | frozenset(extra.get(d, ()))) for d, e in alt)
                                          for alt in self.alternatives))


def addr16(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return a.packed.ljust(16, b"\0")


def _addr(stage: str, what: str, text: Any):
    try:
        return ipaddress.ip_address(str(text))
    except ValueError as e:
        raise ValueError(f"{stage}: {what} {text!r} is not an address: {e}") from None


def _net(stage: str, what: str, text: Any):
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError as e:
        raise ValueError(f"{stage}: {what} {text!r} is not an address/prefix: {e}") from None


def _port(stage: str, what: str, p: Any) -> int:
    if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
        raise ValueError(f"{stage}: {what} {p!r} is not a port (0..65535)")
    return p


def _listed(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple, set, frozenset)) else [v]


def _packed(stage: str, what: str, text: Any) -> tuple[int, bytes]:
    """(4 or 6, 16 address bytes): inet_pton first (run-time entries come by the
    hundred thousand), ipaddress for the error message."""
    s = str(text)
    try:
        return 4, socket.inet_pton(socket.AF_INET, s) + bytes(12)
    except OSError:
        pass
    try:
        return 6, socket.inet_pton(socket.AF_INET6, s)
    except OSError:
        a = _addr(stage, what, s)          # raises with ipaddress's reason
        return a.version, addr16(a)


def tcp4tuple_set(entries: Iterable[tuple[str, int, str, int]],
                  allow_empty: bool = False) -> SetParam:
    """Connections (local addr, local port, remote addr, remote port), seen from this host.
    ``allow_empty``: a set that only run-time entries fill (TOML ``entries = []``); it
    selects nothing until :meth:`emptcp.runtime.flows.Flows.add` gives it keys."""
    keys = set()
    for i, e in enumerate(entries):
        try:
            la, lp, ra, rp = e
        except (TypeError, ValueError):
            raise ValueError(f"tcp4tuple: entry {i} {e!r} is not (local_addr, local_port, "
                             "remote_addr, remote_port)") from None
        (lf, la), (rf, ra) = _packed("tcp4tuple", "local", la), _packed("tcp4tuple", "remote", ra)
        if lf != rf:
            raise ValueError(f"tcp4tuple: entry {i}: local and remote addresses are different "
                             "families")
        if not (type(lp) is int and 0 <= lp <= 65535):
            _port("tcp4tuple", "local_port", lp)          # raises, naming the value
        if not (type(rp) is int and 0 <= rp <= 65535):
            _port("tcp4tuple", "remote_port", rp)
        keys.add((lf, la, lp, ra, rp))
    if not keys and not allow_empty:
        raise ValueError("tcp4tuple: needs at least one connection (entries = [] for a set "
                         "that only run-time entries fill)")
    return SetParam("tcp4tuple", ((("flow", frozenset(keys)),),))


def tcp2tuple_set(*, ports: Iterable[tuple[int, int]] | None = None,
                  addrs: Iterable[tuple[str, str]] | None = None) -> SetParam:
    """Either port pairs (local, remote) or address pairs (local, remote), exact."""
    if (ports is None) == (addrs is None):
        raise ValueError("tcp2tuple: give exactly one of ports=(local, remote) or "
                         "addrs=(local, remote)")
    keys: set = set()
    if ports is not None:
        for lp, rp in ports:
            keys.add((_port("tcp2tuple", "local port", lp), _port("tcp2tuple", "remote port", rp)))
        dim = "ports"
    else:
        for la, ra in addrs:  # type: ignore[union-attr]
            (lf, a), (rf, b) = _packed("tcp2tuple", "local", la), _packed("tcp2tuple", "remote", ra)
            if lf != rf:
                raise ValueError("tcp2tuple: local and remote addresses are different families")
            keys.add((lf, a, b))
        dim = "addrs"
    if not keys:
        raise ValueError("tcp2tuple: needs at least one entry")
    return SetParam("tcp2tuple", (((dim, frozenset(keys)),),))


def _prefixes(side: str, texts: Iterable[Any]) -> frozenset:
    out = set()
    for t in texts:
        n = _net("ip_pair", side, t)
        out.add((n.version, n.prefixlen, addr16(n.network_address)))
    return frozenset(out)


def ip_pair_set(local: Any = None, remote: Any = None) -> SetParam:
    """Local address in one of ``local`` AND remote address in one of ``remote``
    (prefixes, IPv4 and/or IPv6; a missing side matches any address of the families
    the other side names)."""
    lo = _prefixes("local", _listed(local)) if local not in (None, [], ()) else frozenset()
    re_ = _prefixes("remote", _listed(remote)) if remote not in (None, [], ()) else frozenset()
    if not lo and not re_:
        raise ValueError("ip_pair: needs local_addr and/or remote_addr")
    if lo and re_ and not {f for f, _, _ in lo} & {f for f, _, _ in re_}:
        raise ValueError(f"ip_pair: local {local!r} and remote {remote!r} are different families")
    if not lo:   # "any address of the other side's families"
        lo = frozenset((f, 0, bytes(16)) for f in {f for f, _, _ in re_})
    if not re_:
        re_ = frozenset((f, 0, bytes(16)) for f in {f for f, _, _ in lo})
    return SetParam("ip_pair", ((("laddr", lo), ("raddr", re_)),))


def service_set(ranges: Iterable[Any], mode: str = "either") -> SetParam:
    """Ports or (lo, hi) inclusive ranges; mode "either" (source or destination port)
    or "local" (the local port only)."""
    if mode not in ("either", "local"):
        raise ValueError(f"service: mode must be 'either' or 'local', not {mode!r}")
    ports: set[int] = set()
    n = 0
    for r in ranges:
        lo, hi = (r, r) if isinstance(r, int) else tuple(r)
        lo, hi = _port("service", "range start", lo), _port("service", "range end", hi)
        if lo > hi:
            raise ValueError(f"service: range {lo}-{hi} is empty")
        ports.update(range(lo, hi + 1))
        n += 1
    if not n:
        raise ValueError("service: needs at least one port or port range")
    fs = frozenset(ports)
    alts = ((("lport", fs),),) if mode == "local" else ((("lport", fs),), (("rport", fs),))
    return SetParam("service", alts)


def prefix_contains(outer: tuple[int, int, bytes], inner: tuple[int, int, bytes]) -> bool:
    """Prefix ``outer`` contains prefix ``inner`` (same family, shorter or equal, same bits)."""
    fo, po, ao = outer
    fi, pi, ai = inner
    if fo != fi or po > pi:
        return False
    full, rest = divmod(po, 8)
    if ao[:full] != ai[:full]:
        return False
    if rest:
        mask = (0xFF << (8 - rest)) & 0xFF
        return (ao[full] & mask) == (ai[full] & mask)
    return True


# ---- entries as text (emptcp flow, and `entries = "FILE"` in a policy file) ----------
ENTRY_FORMS = {"tcp4tuple": "LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT",
               "tcp2tuple": "LOCAL_PORT REMOTE_PORT or LOCAL_ADDR REMOTE_ADDR",
               "service": "PORT or LO-HI"}


def _int_port(text: str) -> int:
    return int(text, 10)


def parse_entry(stage: str, text: str) -> dict[str, Any]:
    """One entry of ``stage`` from its text form (fields or a JSON object)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            e = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"entry {text!r}: not JSON: {err}") from None
        if not isinstance(e, dict):
            raise ValueError(f"entry {text!r}: a JSON entry must be an object")
        return e
    f = text.replace(",", " ").split()
    try:
        if stage == "tcp4tuple" and len(f) == 4:
            return {"local_addr": f[0], "local_port": _int_port(f[1]), "remote_addr": f[2],
                    "remote_port": _int_port(f[3])}
        if stage == "tcp2tuple" and len(f) == 2:
            if all(x.isdigit() for x in f):
                return {"local_port": _int_port(f[0]), "remote_port": _int_port(f[1])}
            return {"local_addr": str(ipaddress.ip_address(f[0])),
                    "remote_addr": str(ipaddress.ip_address(f[1]))}
        if stage == "service" and len(f) == 1:
            if "-" in f[0]:
                lo, hi = f[0].split("-", 1)
                return {"port": [_int_port(lo), _int_port(hi)]}
            return {"port": _int_port(f[0])}
    except ValueError as err:
        raise ValueError(f"{stage} entry {text!r}: {err}") from None
    raise ValueError(f"{stage} entry {text!r}: expected {ENTRY_FORMS.get(stage, 'a JSON object')}")


def format_entry(e: dict[str, Any]) -> str:
    if "port" in e:
        return str(e["port"])
    order = ("local_addr", "local_port", "remote_addr", "remote_port")
    return " ".join(str(e[k]) for k in order if k in e)


def read_entries(stage: str, path: str) -> list[dict[str, Any]]:
    """Entries of ``stage`` from a file, one per line ('#' starts a comment); a bad line
    raises ValueError naming path:line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                out.append(parse_entry(stage, line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from None
    return out
