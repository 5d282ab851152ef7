"""Events from the data path: the ``emptcp_events`` ring buffer, decoded.

A stage emits ``struct emptcp_event_hdr`` followed by one payload
(bpf/common/emptcp_abi.h, emitted with emptcp_events.h's
``emptcp_event_reserve``/``emptcp_event_submit``). :func:`decode` turns the raw
bytes of one ring-buffer record into an :class:`Event`; the control plane then
hands it to every plugin's ``emptcp_handle_event`` hook.

Layouts (little-endian host order unless noted)::

    emptcp_event_hdr   type:u32 hook_id:u32 policy:u16 stage:u8 phase:u8 len:u32   (16 B)
    emptcp_ev_tuple    family:u8 proto:u8 sport:be16 dport:be16 kind:u8 pad:u8
                       saddr[16] daddr[16]                                          (40 B)
    emptcp_ev_mptcp_opt tuple subtype:u8 len:u8 pad[2] opt[40]                      (84 B)
    emptcp_ev_log      value[4]:u64                                                 (32 B)
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Tuple", "MptcpOption", "decode", "EV_ADD_SUBFLOW", "EV_MPTCP_OPT",
           "EV_LOG", "EVENT_TYPES", "KIND_NAMES", "MPTCP_SUBTYPES"]

from ..abi import (EV_ADD_SUBFLOW, EV_LOG, EV_MPTCP_OPT, EVENT_TYPES, KIND_NAMES,
                   MPTCP_SUBTYPES)
from ..abi import EV_LOG_VALUES as _LOG, EV_OPT_TAIL as _OPT_TAIL, EV_TUPLE as _TUPLE
from ..abi import EVENT_HDR as _HDR

HDR_SIZE = _HDR.size          # 16
TUPLE_SIZE = _TUPLE.size      # 40



@dataclass(frozen=True)
class Tuple:
    """A TCP connection as seen in the packet (source/destination, not local/remote)."""
    family: int          # 4 or 6
    saddr: str
    daddr: str
    sport: int           # host order
    dport: int
    proto: int = 6
    kind: str = "xdp"    # hook kind the packet was seen on

    @property
    def local_remote(self) -> tuple[str, int, str, int]:
        """(local addr, local port, remote addr, remote port) from this host's view:
        on ingress hooks the destination is local, on tc-egress the source."""
        if self.kind == "tc-egress":
            return self.saddr, self.sport, self.daddr, self.dport
        return self.daddr, self.dport, self.saddr, self.sport

    @classmethod
    def unpack(cls, buf: bytes) -> "Tuple":
        fam, proto, sp, dp, kind, _pad, sa, da = _TUPLE.unpack_from(buf)
        n = 4 if fam == 4 else 16
        ctor = ipaddress.IPv4Address if fam == 4 else ipaddress.IPv6Address
        return cls(family=fam, proto=proto, sport=int.from_bytes(sp, "big"),
                   dport=int.from_bytes(dp, "big"), kind=KIND_NAMES.get(kind, str(kind)),
                   saddr=str(ctor(sa[:n])), daddr=str(ctor(da[:n])))

    def pack(self) -> bytes:
        """The C layout (used by tests and by tools that replay events)."""
        ip_s, ip_d = ipaddress.ip_address(self.saddr), ipaddress.ip_address(self.daddr)
        kind = {v: k for k, v in KIND_NAMES.items()}.get(self.kind, 0)
        return _TUPLE.pack(self.family, self.proto, self.sport.to_bytes(2, "big"),
                           self.dport.to_bytes(2, "big"), kind, 0,
                           ip_s.packed.ljust(16, b"\0"), ip_d.packed.ljust(16, b"\0"))


@dataclass(frozen=True)
class MptcpOption:
    """Payload of an ``EMPTCP_EV_MPTCP_OPT`` event: one MPTCP option seen in a packet."""
    tuple: Tuple
    subtype: int
    raw: bytes           # the option, kind byte (30) first

    @property
    def subtype_name(self) -> str:
        return MPTCP_SUBTYPES.get(self.subtype, f"subtype {self.subtype}")


@dataclass(frozen=True)
class Event:
    """One decoded data-path event.

    ``type`` is the numeric EMPTCP_EV_* code and ``name`` its name
    ("add_subflow", "mptcp_opt", "log", or "type N" for unknown types);
    ``hook_id``/``policy``/``stage``/``phase`` say which stage emitted it;
    ``payload`` is a :class:`Tuple` (add_subflow), :class:`MptcpOption`
    (mptcp_opt), a 4-tuple of ints (log) or the raw bytes (unknown types).
    The control plane may fill ``hook`` (e.g. "eth0:xdp") and ``policy_name``
    from its pinned state; they are None when unknown.
    """
    type: int
    hook_id: int
    policy: int
    stage: int
    phase: int
    payload: Any
    raw: bytes = b""
    hook: str | None = None
    policy_name: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return EVENT_TYPES.get(self.type, f"type {self.type}")

    @property
    def tuple(self) -> Tuple | None:
        """The connection tuple of add_subflow and mptcp_opt events."""
        if isinstance(self.payload, Tuple):
            return self.payload
        if isinstance(self.payload, MptcpOption):
            return self.payload.tuple
        return None

    def as_dict(self) -> dict:
        d: dict[str, Any] = {"type": self.name, "hook_id": self.hook_id, "hook": self.hook,
                             "policy": self.policy, "policy_name": self.policy_name,
                             "stage": self.stage,
                             "phase": "action" if self.phase else "selector"}
        t = self.tuple
        if t is not None:
            d.update(family=t.family, saddr=t.saddr, daddr=t.daddr, sport=t.sport,
                     dport=t.dport, kind=t.kind)
        if isinstance(self.payload, MptcpOption):
            d.update(subtype=self.payload.subtype_name, option=self.payload.raw.hex())
        elif self.type == EV_LOG:
            d["values"] = list(self.payload)
        elif self.tuple is None:
            d["payload"] = bytes(self.payload).hex()
        return d


def decode(buf: bytes) -> Event:
    """Decode one ring-buffer record; raise ValueError when it is shorter than it says."""
    buf = bytes(buf)
    if len(buf) < HDR_SIZE:
        raise ValueError(f"event of {len(buf)} bytes is shorter than its 16-byte header")
    etype, hook_id, policy, stage, phase, ln = _HDR.unpack_from(buf)
    body = buf[HDR_SIZE:HDR_SIZE + ln]
    if len(body) < ln:
        raise ValueError(f"event type {etype}: header says {ln} payload bytes, got {len(body)}")
    payload: Any = body
    if etype == EV_ADD_SUBFLOW and ln >= TUPLE_SIZE:
        payload = Tuple.unpack(body)
    elif etype == EV_MPTCP_OPT and ln >= TUPLE_SIZE + _OPT_TAIL.size:
        t = Tuple.unpack(body)
        subtype, olen, opt = _OPT_TAIL.unpack_from(body, TUPLE_SIZE)
        payload = MptcpOption(t, subtype, opt[:min(olen, 40)])
    elif etype == EV_LOG and ln >= _LOG.size:
        payload = _LOG.unpack_from(body)
    return Event(etype, hook_id, policy, stage, phase, payload, buf)


def encode(etype: int, payload: bytes, *, hook_id: int = 0, policy: int = 0, stage: int = 0,
           phase: int = 1) -> bytes:
    """The bytes a stage would submit (for tests and replay tools)."""
    return _HDR.pack(etype, hook_id, policy, stage, phase, len(payload)) + payload
