"""MPTCP path-manager control over generic netlink (family ``mptcp_pm``), no pyroute2 needed.

pyroute2 0.9.7's ``pyroute2.netlink.generic.mptcp`` only knows commands 1..7
(ADD/DEL/GET/FLUSH addr, SET/GET limits, SET_FLAGS): no ANNOUNCE / SUBFLOW_CREATE /
SUBFLOW_DESTROY and no events.  iproute2 6.1's ``ip mptcp`` has no ``subflow``
sub-command either.  So this module speaks the genl protocol itself.

Userspace PM (``net.mptcp.pm_type=1`` / ``net.mptcp.path_manager=userspace``, both
per-netns on 6.18) message layout (include/uapi/linux/mptcp_pm.h)::

    family "mptcp_pm", version 1, multicast group "mptcp_pm_events"
    MPTCP_PM_CMD_SUBFLOW_CREATE (10):
        MPTCP_PM_ATTR_TOKEN (4, u32)              connection token (MPTCP_INFO.mptcpi_token,
                                                  or ``ss -M`` "token:")
        MPTCP_PM_ATTR_ADDR (1, nested)            local: FAMILY(1,u16) ID(2,u8) ADDR4(3,be32)
                                                  | ADDR6(4,16B) [IF_IDX(7,s32)] [FLAGS(6,u32)]
        MPTCP_PM_ATTR_ADDR_REMOTE (6, nested)     remote: FAMILY, ADDR4/6, PORT(5,u16 host order)
    MPTCP_PM_CMD_SUBFLOW_DESTROY (11): same attrs (local needs PORT too)
    MPTCP_PM_CMD_ANNOUNCE (8): TOKEN + ADDR(with ID)
    MPTCP_PM_CMD_REMOVE (9): TOKEN + LOC_ID (5, u8)
    MPTCP_PM_CMD_SET_FLAGS (7): TOKEN + ADDR + ADDR_REMOTE + ADDR.FLAGS(BACKUP=4) -> sends MP_PRIO

Must run with CAP_NET_ADMIN *in the namespace of the connection*: the genl socket
belongs to the netns it was created in; pass ``ns=`` to create it there via setns.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Dict, Iterator, List, Optional, Tuple

from ..netns import enter

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 1, 2, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1

MPTCP_PM_NAME = "mptcp_pm"
MPTCP_PM_EV_GRP_NAME = "mptcp_pm_events"
MPTCP_PM_VER = 1

CMD = dict(ADD_ADDR=1, DEL_ADDR=2, GET_ADDR=3, FLUSH_ADDRS=4, SET_LIMITS=5, GET_LIMITS=6,
           SET_FLAGS=7, ANNOUNCE=8, REMOVE=9, SUBFLOW_CREATE=10, SUBFLOW_DESTROY=11)
ATTR_ADDR, ATTR_RCV_ADD_ADDRS, ATTR_SUBFLOWS, ATTR_TOKEN, ATTR_LOC_ID, ATTR_ADDR_REMOTE = 1, 2, 3, 4, 5, 6
ADDR_FAMILY, ADDR_ID, ADDR_ADDR4, ADDR_ADDR6, ADDR_PORT, ADDR_FLAGS, ADDR_IF_IDX = 1, 2, 3, 4, 5, 6, 7
FLAG_SIGNAL, FLAG_SUBFLOW, FLAG_BACKUP, FLAG_FULLMESH, FLAG_IMPLICIT = 1, 2, 4, 8, 16

# events of the group MPTCP_PM_EV_GRP_NAME: emptcp.mptcp.events.MptcpEventMonitor


class NetlinkError(OSError):
    pass


def _nla(atype: int, payload: bytes) -> bytes:
    ln = 4 + len(payload)
    return struct.pack("=HH", ln, atype) + payload + b"\0" * ((4 - ln % 4) % 4)


def _parse_nlas(buf: bytes) -> Iterator[Tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(buf):
        ln, at = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            break
        yield at & 0x3FFF, buf[off + 4:off + ln]
        off += (ln + 3) & ~3


def _addr_nest(atype: int, addr: str, port: Optional[int] = None, id: Optional[int] = None,
               flags: Optional[int] = None, ifindex: Optional[int] = None) -> bytes:
    ip = ipaddress.ip_address(addr)
    body = _nla(ADDR_FAMILY, struct.pack("=H", socket.AF_INET if ip.version == 4 else socket.AF_INET6))
    if id is not None:
        body += _nla(ADDR_ID, struct.pack("=B", id))
    body += _nla(ADDR_ADDR4 if ip.version == 4 else ADDR_ADDR6, ip.packed)
    if port:
        body += _nla(ADDR_PORT, struct.pack("=H", port))
    if flags is not None:
        body += _nla(ADDR_FLAGS, struct.pack("=I", flags))
    if ifindex:
        body += _nla(ADDR_IF_IDX, struct.pack("=i", ifindex))
    return _nla(atype | NLA_F_NESTED, body)


class GenlSocket:
    def __init__(self, ns: Optional[str] = None):
        with enter(ns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.bind((0, 0))
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            pass
        self.seq = 1
        self.pending: List[bytes] = []  # multicast messages read while waiting for an ACK

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def request(self, family: int, cmd: int, attrs: bytes, version: int = 1,
                flags: int = NLM_F_REQUEST | NLM_F_ACK) -> List[Tuple[int, bytes]]:
        """Send one genl request; return list of (genl cmd, attr bytes) replies; raise on error."""
        self.seq += 1
        seq = self.seq
        self.sock.settimeout(5)
        payload = struct.pack("=BBH", cmd, version, 0) + attrs
        hdr = struct.pack("=IHHII", 16 + len(payload), family, flags, seq, 0)
        self.sock.send(hdr + payload)
        replies = []
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                ln, typ, fl, s, _pid = struct.unpack_from("=IHHII", data, off)
                msg = data[off + 16:off + ln]
                off += (ln + 3) & ~3
                if s != seq:
                    if s == 0:  # a multicast event: keep it for events()
                        self.pending.append(data[off - ((ln + 3) & ~3):off])
                    continue
                if typ == NLMSG_ERROR:
                    err = struct.unpack_from("=i", msg)[0]
                    if err == 0:
                        return replies
                    ext = ""
                    # ext-ack TLVs after the echoed header (capped: header only, 16 bytes)
                    olen = struct.unpack_from("=I", msg, 4)[0]
                    tlv_off = 4 + (16 if fl & 0x100 else olen)  # NLM_F_CAPPED = 0x100
                    for at, val in _parse_nlas(msg[tlv_off:]):
                        if at == NLMSGERR_ATTR_MSG:
                            ext = val.rstrip(b"\0").decode(errors="replace")
                    raise NetlinkError(-err, f"{os.strerror(-err)}" + (f": {ext}" if ext else ""))
                if typ == NLMSG_DONE:
                    return replies
                replies.append((msg[0], msg[4:]))
                if not (fl & NLM_F_MULTI) and not (flags & NLM_F_ACK):
                    return replies

    def resolve(self, name: str) -> Tuple[int, Dict[str, int]]:
        """(family id, {mcast group name: id}) of a genl family."""
        r = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                         _nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"), flags=NLM_F_REQUEST)
        fid, groups = None, {}
        for at, val in _parse_nlas(r[0][1]):
            if at == CTRL_ATTR_FAMILY_ID:
                fid = struct.unpack("=H", val[:2])[0]
            elif at == CTRL_ATTR_MCAST_GROUPS:
                for _, grp in _parse_nlas(val):
                    g = dict(_parse_nlas(grp))
                    groups[g[CTRL_ATTR_MCAST_GRP_NAME].rstrip(b"\0").decode()] = \
                        struct.unpack("=I", g[CTRL_ATTR_MCAST_GRP_ID])[0]
        return fid, groups


class MptcpPM:
    """Client of the ``mptcp_pm`` genl family in netns ``ns`` (None: current netns).

    >>> with MptcpPM("client-ns") as pm:
    ...     pm.subflow_create(token, "10.1.1.1", "10.1.0.2", 5000, local_id=1)
    """

    def __init__(self, ns: Optional[str] = None):
        self.ns = ns
        self.g = GenlSocket(ns)
        self.family, self.groups = self.g.resolve(MPTCP_PM_NAME)

    def close(self):
        self.g.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _req(self, cmd: str, attrs: bytes, dump: bool = False):
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        return self.g.request(self.family, CMD[cmd], attrs, MPTCP_PM_VER, flags)

    # ---- userspace PM (pm_type=1) -------------------------------------------------
    def subflow_create(self, token: int, local_addr: str, remote_addr: str, remote_port: int,
                       local_id: int = 1, ifindex: Optional[int] = None, backup: bool = False):
        """MPTCP_PM_CMD_SUBFLOW_CREATE: open a subflow local_addr -> remote_addr:remote_port."""
        attrs = (_nla(ATTR_TOKEN, struct.pack("=I", token))
                 + _addr_nest(ATTR_ADDR, local_addr, id=local_id, ifindex=ifindex,
                              flags=FLAG_BACKUP if backup else None)
                 + _addr_nest(ATTR_ADDR_REMOTE, remote_addr, port=remote_port))
        return self._req("SUBFLOW_CREATE", attrs)

    def subflow_destroy(self, token: int, local_addr: str, local_port: int,
                        remote_addr: str, remote_port: int):
        attrs = (_nla(ATTR_TOKEN, struct.pack("=I", token))
                 + _addr_nest(ATTR_ADDR, local_addr, port=local_port)
                 + _addr_nest(ATTR_ADDR_REMOTE, remote_addr, port=remote_port))
        return self._req("SUBFLOW_DESTROY", attrs)

    def announce(self, token: int, addr: str, id: int, port: Optional[int] = None):
        attrs = (_nla(ATTR_TOKEN, struct.pack("=I", token))
                 + _addr_nest(ATTR_ADDR, addr, id=id, port=port, flags=FLAG_SIGNAL))
        return self._req("ANNOUNCE", attrs)

    def remove(self, token: int, local_id: int):
        attrs = _nla(ATTR_TOKEN, struct.pack("=I", token)) + _nla(ATTR_LOC_ID, struct.pack("=B", local_id))
        return self._req("REMOVE", attrs)

    def set_backup(self, token: int, local_addr: str, local_port: int, remote_addr: str,
                   remote_port: int, backup: bool = True):
        """SET_FLAGS on one subflow of a userspace-PM connection (sends MP_PRIO)."""
        attrs = (_nla(ATTR_TOKEN, struct.pack("=I", token))
                 + _addr_nest(ATTR_ADDR, local_addr, port=local_port,
                              flags=FLAG_BACKUP if backup else 0)
                 + _addr_nest(ATTR_ADDR_REMOTE, remote_addr, port=remote_port))
        return self._req("SET_FLAGS", attrs)

    # ---- kernel PM (pm_type=0) --------------------------------------------------------
    def limits(self) -> Dict[str, int]:
        r = self._req("GET_LIMITS", b"")
        d = {}
        for _, attrs in r:
            for at, val in _parse_nlas(attrs):
                if at == ATTR_SUBFLOWS:
                    d["subflows"] = struct.unpack("=I", val)[0]
                elif at == ATTR_RCV_ADD_ADDRS:
                    d["add_addr_accepted"] = struct.unpack("=I", val)[0]
        return d

    def set_limits(self, subflows: Optional[int] = None, add_addr_accepted: Optional[int] = None):
        attrs = b""
        if add_addr_accepted is not None:
            attrs += _nla(ATTR_RCV_ADD_ADDRS, struct.pack("=I", add_addr_accepted))
        if subflows is not None:
            attrs += _nla(ATTR_SUBFLOWS, struct.pack("=I", subflows))
        return self._req("SET_LIMITS", attrs)
