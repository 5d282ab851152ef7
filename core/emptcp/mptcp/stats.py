"""Evidence readers: per-subflow ``ss`` info, interface byte counters, ``nstat`` counters.

All take a netns name (None = current namespace) and run the tools via nsenter.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..netns import out

_ENDPOINT = re.compile(r"^\[?(?P<addr>[^\]%]*?)(?:%(?P<dev>[^\]:]+))?\]?:(?P<port>\d+|\*)$")


def _split_endpoint(s: str):
    # forms: 10.0.0.1:80  10.0.0.1%veth0:80  [::1]:80  [fe80::1%veth0]:80  *:80
    m = _ENDPOINT.match(s)
    if not m:
        return s, None, None
    port = m.group("port")
    addr = m.group("addr")
    if addr.lower().startswith("::ffff:") and "." in addr:
        addr = addr[7:]  # v4-mapped (sockets of a dual-stack "::" listener)
    return addr, m.group("dev"), (int(port) if port.isdigit() else None)


@dataclass
class SsEntry:
    """One socket from ``ss -tinHM``: netid 'tcp' (a subflow or plain TCP) or 'mptcp'."""
    netid: str
    state: str
    local: str
    lport: Optional[int]
    remote: str
    rport: Optional[int]
    dev: Optional[str]
    info: Dict[str, str] = field(default_factory=dict)
    raw: str = ""

    def _int(self, key) -> int:
        try:
            return int(self.info.get(key, 0))
        except ValueError:
            return 0

    @property
    def bytes_acked(self) -> int:
        return self._int("bytes_acked")

    @property
    def bytes_sent(self) -> int:
        return self._int("bytes_sent")

    @property
    def bytes_received(self) -> int:
        return self._int("bytes_received")

    @property
    def is_subflow(self) -> bool:
        return self.netid == "tcp" and "tcp-ulp-mptcp" in self.raw

    @property
    def sf_flags(self) -> str:
        """Subflow flags from ss: M/m MP_CAPABLE rem/loc, J/j MP_JOIN rem/loc,
        B/b backup rem/loc, e fully established, c connected, v map valid."""
        return self.info.get("flags", "") if self.is_subflow else ""

    @property
    def backup(self) -> bool:
        """This end marked the subflow backup (local flag 'b')."""
        return "b" in self.sf_flags

    @property
    def peer_backup(self) -> bool:
        """The peer marked the subflow backup (remote flag 'B', e.g. via MP_JOIN/MP_PRIO)."""
        return "B" in self.sf_flags

    @property
    def is_join(self) -> bool:
        return "j" in self.sf_flags or "J" in self.sf_flags

    @property
    def token(self) -> Optional[str]:
        return self.info.get("token")


def ss(ns: Optional[str], extra: str = "") -> List[SsEntry]:
    """Parse ``ss -tinHM`` (TCP incl. MPTCP subflows, plus MPTCP sockets) in ``ns``;
    ``extra``: more arguments (a filter), split on whitespace. Run without a shell."""
    txt = out(ns, ["ss", "-tinHM", *extra.split()])
    entries: List[SsEntry] = []
    cur: Optional[SsEntry] = None
    for line in txt.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if cur is None:
                continue
            cur.raw += " " + line.strip()
            toks = line.split()
            i = 0
            while i < len(toks):
                t = toks[i]
                if ":" in t and not t.startswith("("):
                    k, _, v = t.partition(":")
                    cur.info[k] = v
                elif t in ("send", "pacing_rate", "delivery_rate") and i + 1 < len(toks):
                    cur.info[t] = toks[i + 1]
                    i += 1
                else:
                    cur.info.setdefault(t, "")
                i += 1
            continue
        f = line.split()
        if len(f) < 6:
            continue
        la, dev, lp = _split_endpoint(f[4])
        ra, _, rp = _split_endpoint(f[5])
        cur = SsEntry(f[0], f[1], la, lp, ra, rp, dev, raw=line.strip())
        entries.append(cur)
    return entries


def subflows(ns: Optional[str], port: Optional[int] = None) -> List[SsEntry]:
    """MPTCP subflows (tcp sockets with the mptcp ULP) in ``ns``, optionally on a port."""
    r = [e for e in ss(ns) if e.is_subflow and e.state == "ESTAB"]
    if port is not None:
        r = [e for e in r if port in (e.lport, e.rport)]
    return r


def link_stats(ns: Optional[str], dev: Optional[str] = None) -> Dict[str, Dict[str, int]]:
    """{ifname: {rx_bytes, tx_bytes, rx_packets, tx_packets, rx_dropped, tx_dropped}} from ``ip -s -j link``."""
    cmd = ["ip", "-s", "-j", "link", "show"] + (["dev", dev] if dev else [])
    res = {}
    for l in json.loads(out(ns, cmd) or "[]"):
        st = l.get("stats64", l.get("stats", {}))
        rx, tx = st.get("rx", {}), st.get("tx", {})
        res[l["ifname"]] = {"rx_bytes": rx.get("bytes", 0), "tx_bytes": tx.get("bytes", 0),
                            "rx_packets": rx.get("packets", 0), "tx_packets": tx.get("packets", 0),
                            "rx_dropped": rx.get("dropped", 0), "tx_dropped": tx.get("dropped", 0),
                            "ifindex": l.get("ifindex")}
    return res


def nstat(ns: Optional[str]) -> Dict[str, int]:
    """Absolute kernel counters in ``ns`` (``nstat -azsj``: no history read or written).

    Keys as nstat prints them: ``MPTcpExtMPJoinSynRx``, ``TcpInCsumErrors``,
    ``TcpExtTCPOFOQueue``..."""
    data = json.loads(out(ns, ["nstat", "-azsj"]))
    return {k: int(v) for k, v in data.get("kernel", {}).items()}


def nstat_delta(before: Dict[str, int], after: Dict[str, int], prefix: str = "") -> Dict[str, int]:
    """Non-zero differences ``after - before`` (keys starting with ``prefix``)."""
    return {k: after[k] - before.get(k, 0) for k in after
            if k.startswith(prefix) and after[k] != before.get(k, 0)}


# ---- MPTCP connections and their subflows (``emptcp status``) ----------------------
_SF_TOKEN = re.compile(r"^(?P<rem>[0-9a-f]+)\(id:(?P<rid>\d+)\)/(?P<loc>[0-9a-f]+)\(id:(?P<lid>\d+)\)$")


@dataclass
class MptcpSubflow:
    """One subflow of an MPTCP connection, as ``ss -tinHM`` shows it."""
    local: str
    lport: Optional[int]
    remote: str
    rport: Optional[int]
    state: str
    iface: Optional[str]
    ifindex: Optional[int]
    loc_id: Optional[int]
    rem_id: Optional[int]
    backup: bool          # this side asked for backup (ss flag 'b')
    peer_backup: bool     # the peer marked it backup (ss flag 'B'): the scheduler's view
    flags: str
    bytes_sent: int
    bytes_acked: int
    bytes_received: int

    def as_dict(self) -> Dict[str, object]:
        return dict(self.__dict__)


@dataclass
class MptcpConnection:
    """An MPTCP socket (``ss -M``) with its subflows; ``token`` is the local token in hex."""
    token: str
    local: str
    lport: Optional[int]
    remote: str
    rport: Optional[int]
    state: str
    subflows: List[MptcpSubflow] = field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        return {"token": self.token, "local": self.local, "lport": self.lport,
                "remote": self.remote, "rport": self.rport, "state": self.state,
                "subflows": [s.as_dict() for s in self.subflows]}


def _addr_ifaces(ns: Optional[str]) -> Dict[str, tuple]:
    """{local address: (ifname, ifindex)} in ``ns``."""
    res = {}
    for link in json.loads(out(ns, ["ip", "-j", "addr", "show"]) or "[]"):
        for a in link.get("addr_info", []):
            res[a.get("local")] = (link.get("ifname"), link.get("ifindex"))
    return res


def connections(ns: Optional[str] = None) -> List[MptcpConnection]:
    """The MPTCP connections in ``ns`` (None: this process's namespace) with their subflows,
    from ``ss -tinHM``: subflows are matched to their connection by the local token
    (``tcp-ulp-mptcp ... token:<remote>(id:R)/<local>(id:L)``); a subflow's interface is
    the one it is bound to, else the one that holds its local address (``ip addr`` is
    read only when there is a subflow to place: no subflow, no second process)."""
    entries = ss(ns)
    ifaces: Optional[Dict[str, tuple]] = None
    conns: Dict[str, MptcpConnection] = {}
    for e in entries:
        if e.netid == "mptcp" and e.token:
            conns[e.token] = MptcpConnection(e.token, e.local, e.lport, e.remote, e.rport, e.state)
    for e in entries:
        if not e.is_subflow:
            continue
        m = _SF_TOKEN.match(e.info.get("token", ""))
        if not m or m.group("loc") not in conns:
            continue
        if ifaces is None:
            ifaces = _addr_ifaces(ns)
        name, index = ifaces.get(e.local, (None, None))
        if e.dev:
            name = e.dev
            index = next((i for n, i in ifaces.values() if n == e.dev), index)
        conns[m.group("loc")].subflows.append(MptcpSubflow(
            e.local, e.lport, e.remote, e.rport, e.state, name, index, int(m.group("lid")),
            int(m.group("rid")), e.backup, e.peer_backup, e.sf_flags, e.bytes_sent,
            e.bytes_acked, e.bytes_received))
    return list(conns.values())
