"""emptcp-mptcp: Multipath TCP actions for emptcp (eMPTCP).

Actions (XDP, tc-ingress, tc-egress):

- ``set_flow_priority`` (backup: bool = true): insert MP_PRIO (RFC 8684, 3 bytes
  + NOP) into packets of MPTCP connections, growing the TCP header.
- ``rm_add_addr``: strip ADD_ADDR options (shrink the header).
- ``rm_mp_capable`` (all_packets: bool = false): strip MP_CAPABLE from SYN /
  SYN-ACK so the connection falls back to TCP.
- ``add_subflow`` (local_addr: ip, remote_port: port = 0): report each new
  MPTCP connection once; :func:`emptcp_handle_event` asks the kernel's
  userspace path manager to open a subflow from ``local_addr`` -- as backup,
  promoted once established (see :func:`emptcp_mptcp.pm.open_subflow`).
- ``record`` (subtype: int = -1): emit an event with the MPTCP option of that
  subtype (-1: any) of every packet that carries one.

Policies driven by the path manager's events under ``emptcp run``:

- ``metered`` (``[plugins.mptcp.metered] interfaces = [...]``): subflows joining over
  a metered interface become backup (their 4-tuple is added to a ``tcp4tuple`` selector
  in front of ``set_flow_priority``), see :mod:`emptcp_mptcp.metered`.
"""
from __future__ import annotations

import ipaddress
import os
import struct
from typing import Any

from emptcp.errors import ConfigError
from emptcp.plugins import hookimpl
from emptcp.stages import HOOKS, Param, StageSpec

__version__ = "0.1.0"
BPF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf")
RECORD_ANY = 63


def _obj(name: str) -> str:
    return os.path.join(BPF_DIR, f"{name}.o")


def enc_add_subflow(p: dict[str, Any]) -> bytes:
    a = ipaddress.ip_address(p["local_addr"])
    return struct.pack("=BB2s16s", a.version, 0, int(p["remote_port"]).to_bytes(2, "big"),
                       a.packed.ljust(16, b"\0"))


def enc_record(p: dict[str, Any]) -> int:
    return RECORD_ANY if p["subtype"] < 0 else p["subtype"]


def _spec(name: str, params: tuple[Param, ...], encode, description: str) -> StageSpec:
    return StageSpec(name=name, kind="action", hooks=HOOKS, object=_obj(name),
                     programs={"xdp": f"emptcp_mptcp_{name}_xdp", "tc": f"emptcp_mptcp_{name}_tc"},
                     params=params, encode=encode, description=description,
                     plugin="mptcp", distribution="emptcp-mptcp")


def stage_specs() -> list[StageSpec]:
    return [
        _spec("set_flow_priority",
              (Param("backup", "bool", default=True,
                     description="MP_PRIO backup flag (B bit)"),),
              lambda p: 1 if p["backup"] else 0,
              "insert MP_PRIO (RFC 8684) into MPTCP packets"),
        _spec("rm_add_addr", (), lambda p: 0, "strip MPTCP ADD_ADDR options"),
        _spec("rm_mp_capable",
              (Param("all_packets", "bool", default=False,
                     description="strip from every packet, not only SYN/SYN-ACK"),),
              lambda p: 1 if p["all_packets"] else 0,
              "strip MP_CAPABLE so the connection falls back to TCP"),
        _spec("add_subflow",
              (Param("local_addr", "ip", description="local address of the new subflow"),
               Param("remote_port", "port", default=0,
                     description="remote port of the new subflow (0: the connection's)")),
              enc_add_subflow, "ask the path manager to open a subflow for new connections"),
        _spec("record",
              (Param("subtype", "int", default=-1, min=-1, max=15,
                     description="MPTCP subtype to record, -1 for any"),),
              enc_record, "emit an event with the packet's MPTCP option"),
    ]


@hookimpl
def emptcp_stages() -> list[StageSpec]:
    return stage_specs()


@hookimpl
def emptcp_handle_event(event):
    if getattr(event, "name", None) != "add_subflow":
        return None
    from .pm import open_subflow
    return open_subflow(event)


@hookimpl
def emptcp_handle_mptcp_event(event, run):
    """The ``metered`` policy (:mod:`emptcp_mptcp.metered`, configured by
    ``[plugins.mptcp.metered]``): subflows joining over metered interfaces are added to
    its selector, removed when they close. Otherwise report the path manager's events
    (``emptcp -v run`` logs them at INFO): the event, its token and the subflow's ends."""
    if not getattr(event, "type", "").startswith(("created", "established", "closed",
                                                  "announced", "removed", "sub_",
                                                  "listener_")):
        return None
    from .metered import handle
    done = handle(event, run)
    return f"mptcp event {event}" + (f"; {done}" if done else "")


@hookimpl
def emptcp_add_commands(subparsers):
    from .pm import add_commands
    add_commands(subparsers)


__all__ = ["stage_specs", "enc_add_subflow", "ConfigError"]
