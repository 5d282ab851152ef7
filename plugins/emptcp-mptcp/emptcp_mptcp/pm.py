"""User-space side of ``add_subflow``: from the event to a netlink SUBFLOW_CREATE.

The event (emptcp.runtime.events.Event, type add_subflow) carries the connection's
tuple and, after it, this plugin's extension::

    family:u8 pad:u8 remote_port:be16 local[16]

The MPTCP connection token is looked up with ``ss -tinHM`` (the MPTCP socket
whose addresses match the tuple); then ``MPTCP_PM_CMD_SUBFLOW_CREATE`` is sent
to the ``mptcp_pm`` genl family. That command belongs to the *userspace* path
manager: set ``sysctl net.mptcp.pm_type=1`` (or ``net.mptcp.path_manager=
userspace``) in the namespace of the connections.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from emptcp.runtime.events import HDR_SIZE, TUPLE_SIZE

_EXT = struct.Struct("=BB2s16s")


@dataclass(frozen=True)
class SubflowRequest:
    local_addr: str
    remote_addr: str
    remote_port: int
    conn_local: str
    conn_lport: int
    conn_remote: str
    conn_rport: int


def request_of(event) -> SubflowRequest | None:
    t = event.tuple
    ext = event.raw[HDR_SIZE + TUPLE_SIZE:HDR_SIZE + TUPLE_SIZE + _EXT.size]
    if t is None or len(ext) < _EXT.size:
        return None
    fam, _, rport, local = _EXT.unpack(ext)
    laddr = str(ipaddress.IPv4Address(local[:4]) if fam == 4 else ipaddress.IPv6Address(local))
    cl, clp, cr, crp = t.local_remote
    return SubflowRequest(laddr, cr, int.from_bytes(rport, "big") or crp, cl, clp, cr, crp)


def find_token(req: SubflowRequest, ns: str | None = None) -> int | None:
    """Token of the MPTCP connection (local, lport) <-> (remote, rport), from ``ss -M``,
    once its first subflow is fully established (ss flag ``e``): a subflow created
    before that was seen reset by the peer on kernel 6.18 (MPTcpExtDSSNotMatching)."""
    from emptcp.mptcp.stats import ss
    entries = ss(ns, "-M")
    conn = (req.conn_local, req.conn_lport, req.conn_remote, req.conn_rport)
    settled = any(e.is_subflow and "e" in e.sf_flags and (e.local, e.lport, e.remote, e.rport)
                  == conn for e in entries)
    for e in entries:
        if e.netid != "mptcp" or not e.token:
            continue
        if (e.local, e.lport, e.remote, e.rport) == conn and settled:
            return int(e.token, 16)
    return None


def ifindex_of(addr: str) -> int | None:
    """The interface that holds ``addr`` in this network namespace. A subflow bound to
    it leaves through its own path; left to routing, a source address of path 1
    toward a server address of path 0 would leave through path 0."""
    import json
    import subprocess
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True).stdout
    for link in json.loads(out or "[]"):
        if any(a.get("local") == addr for a in link.get("addr_info", [])):
            return link.get("ifindex")
    return None


#: How long a new subflow stays backup after it is established (see :func:`open_subflow`).
JOIN_SETTLE_S = 0.25


def find_join(req: SubflowRequest, token: int, ns: str | None = None):
    """The established MP_JOIN subflow ``req.local_addr -> remote`` of connection ``token``
    (ss flags ``j`` and ``e``; the subflow's ss token names the connection's local token)."""
    from emptcp.mptcp.stats import ss
    for e in ss(ns):
        if (e.is_subflow and e.state == "ESTAB" and "j" in e.sf_flags and "e" in e.sf_flags
                and e.local == req.local_addr and e.remote == req.remote_addr
                and e.rport == req.remote_port and f"/{token:x}(" in (e.token or "")):
            return e
    return None


def open_subflow(event, ns: str | None = None, patience: float = 2.0,
                 settle: float = JOIN_SETTLE_S) -> str:
    """Ask the userspace path manager for the subflow the event names.

    The event fires on one of the connection's first packets, when the kernel may
    not list the connection yet or may refuse a subflow until the connection is
    fully established (ENOTCONN); both are retried for up to ``patience`` seconds.

    The subflow is opened as *backup* (this host's scheduler sends no data on it),
    and made a regular subflow (SET_FLAGS: MP_PRIO to the peer) ``settle`` seconds
    after it is established.  Linux (seen on 6.18, reproduced without emptcp by
    tests/kernel/mptcp_join_race.py) attaches an MP_JOIN that arrives while the
    accepting MPTCP socket is owned by its application (a recvmsg in progress) only
    at the socket's next lock release, and then overwrites the subflow's current DSS
    mapping with the connection's ack_seq: data that reached the subflow in between
    is mapped wrongly and the next segment makes the peer reset the subflow
    (MPTcpExtDSSNotMatching, MP_RST) -- about 1 join in 20-40 during a bulk upload.
    The peer's lock release cannot be observed from here; ``settle`` is a margin
    over the few milliseconds it took there.
    """
    import errno
    import time
    req = request_of(event)
    if req is None:
        return "add_subflow: event without connection tuple/extension, ignored"
    conn = f"{req.conn_local}:{req.conn_lport} <-> {req.conn_remote}:{req.conn_rport}"
    from emptcp.mptcp.pm import MptcpPM
    deadline = time.monotonic() + patience
    while True:
        token = find_token(req, ns)
        if token is not None:
            try:
                with MptcpPM(ns) as pm:
                    pm.subflow_create(token, req.local_addr, req.remote_addr, req.remote_port,
                                      ifindex=ifindex_of(req.local_addr), backup=True)
            except OSError as e:
                if e.errno not in (errno.ENOTCONN, errno.EINVAL) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
                continue
            what = (f"add_subflow: subflow {req.local_addr} -> {req.remote_addr}:"
                    f"{req.remote_port} for {conn} (token {token:08x})")
            deadline = time.monotonic() + patience
            join = find_join(req, token, ns)
            while join is None and time.monotonic() < deadline:
                time.sleep(0.01)
                join = find_join(req, token, ns)
            if join is None:
                return f"{what}: requested, not established within {patience:.1f} s (left backup)"
            time.sleep(settle)
            try:
                with MptcpPM(ns) as pm:
                    pm.set_backup(token, req.local_addr, join.lport, req.remote_addr,
                                  req.remote_port, backup=False)
            except OSError as e:     # e.g. the connection closed meanwhile
                return f"{what}: established; promotion refused: {e}"
            return f"{what}: established, in use after {settle:.2f} s as backup"
        elif time.monotonic() > deadline:
            return f"add_subflow: no MPTCP connection {conn} found (ss -M)"
        time.sleep(0.02)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("mptcp-subflow", help="open an MPTCP subflow now (userspace PM)")
    p.add_argument("token", help="connection token (hex, from ss -M)")
    p.add_argument("local_addr")
    p.add_argument("remote_addr")
    p.add_argument("remote_port", type=int)

    def run(args) -> int:
        from emptcp.mptcp.pm import MptcpPM
        try:
            with MptcpPM() as pm:
                pm.subflow_create(int(args.token, 16), args.local_addr, args.remote_addr,
                                  args.remote_port)
        except OSError as e:
            print(f"emptcp mptcp-subflow: {e}")
            return 1
        return 0
    p.set_defaults(func=run)
