"""The MPTCP path manager's events (genl family ``mptcp_pm``, group ``mptcp_pm_events``).

The kernel multicasts one message per connection/subflow/address change in the
network namespace of the connection. :class:`MptcpEventMonitor` joins the group
(in a given namespace, or the current one) and yields :class:`MptcpEvent`\\ s,
decoded by the kernel's uapi (include/uapi/linux/mptcp_pm.h, ``enum
mptcp_event_type`` / ``enum mptcp_event_attr``)::

    event             attributes (kernel 6.18)
    created           token family saddr daddr sport dport [server_side] [flags]
    established       token family saddr daddr sport dport [server_side] [flags]
    closed            token
    announced         token rem_id family daddr [dport]
    removed           token rem_id
    sub_established   token family loc_id rem_id saddr daddr sport dport backup ifindex [error]
    sub_closed        same as sub_established (error: the subflow's sk_err)
    sub_priority      same as sub_established
    listener_created  family sport saddr
    listener_closed   family sport saddr

Addresses are the local (``saddr``/``sport``) and remote (``daddr``/``dport``)
ends as the namespace that receives the event sees them; the v4-mapped addresses of
a dual-stack (``::``) socket are shown as IPv4, as :func:`emptcp.mptcp.stats.ss`
does (``family`` stays what the kernel sent, 6). ``backup`` is the kernel's
``MPTCP_ATTR_BACKUP``: the subflow's backup bit as set by the *peer* (MP_JOIN or
MP_PRIO; ``ss`` flag ``B``), not this side's own request (``ss`` flag ``b``).

    with MptcpEventMonitor("client-ns") as mon:
        for ev in mon.events(timeout=5):
            print(ev.type, ev.token, ev.saddr, ev.sport, "->", ev.daddr, ev.dport)

This is emptcp's one implementation of the event group (commands go through
:class:`emptcp.mptcp.pm.MptcpPM`, on its own socket).
"""
from __future__ import annotations

import errno
import ipaddress
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from .pm import (MPTCP_PM_EV_GRP_NAME, MPTCP_PM_NAME, NETLINK_ADD_MEMBERSHIP, SOL_NETLINK,
                 GenlSocket, NetlinkError, _parse_nlas)

__all__ = ["MptcpEvent", "MptcpEventMonitor", "EVENT_NAMES", "decode_event", "EventsLost"]

#: enum mptcp_event_type
EVENT_NAMES = {1: "created", 2: "established", 3: "closed", 6: "announced", 7: "removed",
               10: "sub_established", 11: "sub_closed", 13: "sub_priority",
               15: "listener_created", 16: "listener_closed"}

# enum mptcp_event_attr: number -> (field, wire type)
_ATTRS = {1: ("token", "u32"), 2: ("family", "u16"), 3: ("loc_id", "u8"), 4: ("rem_id", "u8"),
          5: ("saddr", "ip4"), 6: ("saddr", "ip6"), 7: ("daddr", "ip4"), 8: ("daddr", "ip6"),
          9: ("sport", "be16"), 10: ("dport", "be16"), 11: ("backup", "u8"),
          12: ("error", "u8"), 13: ("flags", "u16"), 14: ("timeout", "u32"),
          15: ("ifindex", "u32"), 16: ("reset_reason", "u32"), 17: ("reset_flags", "u32"),
          18: ("server_side", "u8")}
#: MPTCP_PM_EV_FLAG_* bits of the ``flags`` attribute (created/established)
EV_FLAG_SERVER_SIDE, EV_FLAG_DENY_JOIN_ID0 = 1 << 0, 1 << 1

_NLMSG = struct.Struct("=IHHII")
_RCVBUF = 4 << 20


class EventsLost(OSError):
    """The kernel dropped events because the socket's receive buffer was full (ENOBUFS)."""


@dataclass(frozen=True)
class MptcpEvent:
    """One path-manager event. Fields the kernel did not send are ``None``.

    ``type`` is the event's name (``"created"``, ``"sub_established"``…, or
    ``"event N"`` for a type this emptcp does not know), ``code`` its number;
    ``family`` is 4 or 6; ``token`` the connection token (``ss -M`` prints it in
    hex); ``backup`` the subflow's backup bit as the peer set it (``ss`` ``B``);
    ``error`` the subflow's socket error; ``netns`` the namespace the monitor
    listened in (None: the process's); ``time`` when it was received (epoch s).
    """
    type: str
    code: int
    token: Optional[int] = None
    family: Optional[int] = None
    saddr: Optional[str] = None
    daddr: Optional[str] = None
    sport: Optional[int] = None
    dport: Optional[int] = None
    loc_id: Optional[int] = None
    rem_id: Optional[int] = None
    ifindex: Optional[int] = None
    backup: Optional[bool] = None
    error: Optional[int] = None
    flags: Optional[int] = None
    timeout: Optional[int] = None
    reset_reason: Optional[int] = None
    reset_flags: Optional[int] = None
    server_side: Optional[bool] = None
    netns: Optional[str] = None
    time: float = 0.0
    unknown: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        """Same as ``type`` (data-path events are named by ``.name`` too)."""
        return self.type

    @property
    def is_subflow(self) -> bool:
        return self.code in (10, 11, 13)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``source`` "mptcp_pm", ``type``, then the fields the kernel sent."""
        d: dict[str, Any] = {"source": "mptcp_pm", "type": self.type}
        for k in ("token", "family", "saddr", "sport", "daddr", "dport", "loc_id", "rem_id",
                  "ifindex", "backup", "error", "flags", "timeout", "reset_reason",
                  "reset_flags", "server_side"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.token is not None:
            d["token_hex"] = f"{self.token:x}"
        if self.netns:
            d["netns"] = self.netns
        d["time"] = round(self.time, 6)
        return d

    def __str__(self) -> str:
        parts = [self.type]
        if self.token is not None:
            parts.append(f"token={self.token:x}")
        if self.saddr or self.sport:
            parts.append(f"local={_ep(self.saddr, self.sport)}")
        if self.daddr or self.dport:
            parts.append(f"remote={_ep(self.daddr, self.dport)}")
        for k in ("loc_id", "rem_id", "ifindex", "backup", "error", "reset_reason"):
            v = getattr(self, k)
            if v is not None:
                parts.append(f"{k}={int(v) if isinstance(v, bool) else v}")
        return " ".join(parts)


def _ep(addr: Optional[str], port: Optional[int]) -> str:
    a = addr or "*"
    return f"[{a}]:{port}" if ":" in a else f"{a}:{port if port is not None else '*'}"


def decode_event(genl: bytes, *, netns: Optional[str] = None,
                 received: Optional[float] = None) -> MptcpEvent:
    """Decode one event from its generic-netlink payload (genl header first)."""
    if len(genl) < 4:
        raise ValueError(f"mptcp_pm event of {len(genl)} bytes has no genl header")
    code = genl[0]
    values: dict[str, Any] = {}
    unknown: dict[int, str] = {}
    for at, val in _parse_nlas(genl[4:]):
        spec = _ATTRS.get(at)
        if spec is None:
            unknown[at] = val.hex()
            continue
        name, kind = spec
        if kind == "u8":
            v: Any = val[0]
        elif kind == "u16":
            v = struct.unpack_from("=H", val)[0]
        elif kind == "be16":
            v = struct.unpack_from("!H", val)[0]
        elif kind == "u32":
            v = struct.unpack_from("=I", val)[0]
        elif kind == "ip4":
            v = str(ipaddress.IPv4Address(val[:4]))
        else:
            a6 = ipaddress.IPv6Address(val[:16])
            v = str(a6.ipv4_mapped or a6)
        values[name] = v
    if "family" in values:
        values["family"] = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(values["family"],
                                                                        values["family"])
    for k in ("backup", "server_side"):
        if k in values:
            values[k] = bool(values[k])
    if values.get("flags") is not None and values["flags"] & EV_FLAG_SERVER_SIDE:
        values.setdefault("server_side", True)
    return MptcpEvent(type=EVENT_NAMES.get(code, f"event {code}"), code=code, netns=netns,
                      time=time.time() if received is None else received, unknown=unknown,
                      **values)


class MptcpEventMonitor:
    """A socket subscribed to ``mptcp_pm_events`` in netns ``ns`` (None: the current one).

    Events of connections in that namespace only. ``fileno()`` lets a caller wait
    on it together with other fds (``emptcp run`` does, with the ring buffer);
    :meth:`read` drains what is queued, :meth:`events` iterates with a timeout.
    Needs CAP_NET_ADMIN in the namespace. Raises ``FileNotFoundError`` when the
    kernel has no ``mptcp_pm`` family (MPTCP not built in).
    """

    def __init__(self, ns: Optional[str] = None, *, sock: Optional[GenlSocket] = None) -> None:
        self.ns = ns
        self._own = sock is None
        self.g = sock or GenlSocket(ns)
        try:
            self.family, groups = self.g.resolve(MPTCP_PM_NAME)
        except NetlinkError as e:
            self.close()
            raise FileNotFoundError(e.errno, f"generic netlink family '{MPTCP_PM_NAME}' not "
                                    f"found in netns {ns or '(current)'}: is MPTCP built "
                                    f"in (CONFIG_MPTCP)? ({e.strerror})") from None
        if MPTCP_PM_EV_GRP_NAME not in groups:
            self.close()
            raise FileNotFoundError(errno.ENOENT, f"'{MPTCP_PM_NAME}' has no multicast group "
                                    f"'{MPTCP_PM_EV_GRP_NAME}' (groups: {sorted(groups)})")
        try:
            self.g.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        except OSError:
            pass
        self.g.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, groups[MPTCP_PM_EV_GRP_NAME])

    def fileno(self) -> int:
        return self.g.sock.fileno()

    def close(self) -> None:
        if self._own and self.g is not None:
            self.g.close()
        self.g = None

    def __enter__(self) -> "MptcpEventMonitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _decode(self, data: bytes) -> list[MptcpEvent]:
        now = time.time()
        out, off = [], 0
        while off + _NLMSG.size <= len(data):
            ln, typ, _fl, _seq, _pid = _NLMSG.unpack_from(data, off)
            if ln < _NLMSG.size:
                break
            if typ == self.family:
                out.append(decode_event(data[off + _NLMSG.size:off + ln], netns=self.ns,
                                        received=now))
            off += (ln + 3) & ~3
        return out

    def read(self, timeout: Optional[float] = 0) -> list[MptcpEvent]:
        """Events queued now (waiting up to ``timeout`` s for the first; None: forever).

        Raises :class:`EventsLost` when the kernel dropped events (receive buffer full)."""
        out: list[MptcpEvent] = []
        while self.g.pending:  # multicast read by a request() on the same socket
            out += self._decode(self.g.pending.pop(0))
        wait = timeout if not out else 0
        sock = self.g.sock
        while True:
            r, _, _ = select.select([sock], [], [], wait)
            if not r:
                return out
            try:
                data = sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    raise EventsLost(e.errno, "the kernel dropped MPTCP events: receive buffer "
                                     f"full (netns {self.ns or '(current)'})") from None
                raise
            out += self._decode(data)
            wait = 0

    def events(self, timeout: Optional[float] = None) -> Iterator[MptcpEvent]:
        """Yield events until ``timeout`` seconds pass without one (None: forever)."""
        while True:
            batch = self.read(timeout)
            if not batch:
                return
            yield from batch
