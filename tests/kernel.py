"""The tests' own readers of kernel state in a network namespace -- oracles that share
no code with emptcp (nor with emptcp.mptcp.stats, which the product uses at run time):

* :func:`nstat` -- ``nstat -asz --json`` (absolute counters: MPTcpExt*, TcpExt*, Tcp*);
* :func:`tcp_sockets` / :func:`mptcp_sockets` -- ``ss -tinH`` / ``ss -MinH`` parsed here;
* :func:`link` -- ``ip -s -j link`` byte/packet counters of one interface;
* :func:`wait_for` -- poll a condition with a deadline (no fixed sleeps).

Run through ``nsenter --net=`` (``ip netns exec`` would remount /sys).
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


def run(ns: str, *cmd: str, timeout: float = 20) -> str:
    p = subprocess.run(["nsenter", f"--net=/var/run/netns/{ns}", "--", *cmd],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"[{ns}] {' '.join(cmd)}: exit {p.returncode}: {p.stderr}")
    return p.stdout


def nstat(ns: str) -> dict[str, int]:
    """Absolute SNMP/netstat counters of namespace ``ns`` (history untouched)."""
    return {k: int(v) for k, v in json.loads(run(ns, "nstat", "-asz", "--json"))["kernel"].items()}


def delta(before: dict[str, int], after: dict[str, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def wait_for(cond: Callable[[], T], timeout: float, what: str, step: float = 0.05) -> T:
    """``cond()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(step)


_ADDR = re.compile(r"^\[?(.*?)\]?:(\d+|\*)$")


def _addr(s: str) -> tuple[str, int]:
    m = _ADDR.match(s)
    host, port = (m.group(1), m.group(2)) if m else (s, "0")
    host = host.split("%", 1)[0]          # "10.77.1.1%eth1": bound to a device
    if host.startswith("::ffff:"):
        host = host[7:]
    return host, int(port) if port.isdigit() else 0


@dataclass
class Sock:
    state: str
    local: str
    lport: int
    remote: str
    rport: int
    info: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def mptcp_flags(self) -> Optional[str]:
        """The subflow flags of ``tcp-ulp-mptcp flags:...`` (None: not an MPTCP subflow)."""
        m = re.search(r"tcp-ulp-mptcp flags:(\S+)", self.info)
        return m.group(1) if m else None

    def num(self, key: str) -> int:
        v = self.fields.get(key, "0")
        return int(re.match(r"\d+", v).group(0)) if re.match(r"\d+", v) else 0


def _parse_ss(text: str) -> list[Sock]:
    out: list[Sock] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if out:
                out[-1].info += " " + line.strip()
                for tok in line.split():
                    if ":" in tok:
                        k, v = tok.split(":", 1)
                        out[-1].fields.setdefault(k, v)
            continue
        parts = line.split()
        if len(parts) < 5:
            continue
        (la, lp), (ra, rp) = _addr(parts[3]), _addr(parts[4])
        out.append(Sock(parts[0], la, lp, ra, rp))
    return out


def tcp_sockets(ns: str) -> list[Sock]:
    """Established TCP sockets (MPTCP subflows included) with their ``ss -i`` info."""
    return [s for s in _parse_ss(run(ns, "ss", "-tinH")) if s.state == "ESTAB"]


def subflows(ns: str, port: Optional[int] = None) -> list[Sock]:
    """MPTCP subflows (optionally of connections to/from ``port``)."""
    return [s for s in tcp_sockets(ns) if s.mptcp_flags is not None
            and (port is None or port in (s.lport, s.rport))]


def mptcp_sockets(ns: str) -> list[Sock]:
    """MPTCP connections (``ss -M``): one per connection, whatever its subflows; a
    connection that fell back to TCP is listed too, with ``fallback`` in its info."""
    return [s for s in _parse_ss(run(ns, "ss", "-MinH")) if s.state == "ESTAB"]


def link(ns: str, dev: str) -> dict[str, int]:
    """rx/tx bytes, packets and drops of ``dev`` in ``ns``."""
    j = json.loads(run(ns, "ip", "-s", "-j", "link", "show", "dev", dev))[0]["stats64"]
    return {f"{d}_{k}": j[d][k] for d in ("rx", "tx") for k in ("bytes", "packets", "dropped")}


def link_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def emptcp_status(ns: str, pin_root: str) -> dict[str, Any]:
    import os
    import sys
    exe = os.path.join(os.path.dirname(sys.executable), "emptcp")
    return json.loads(run(ns, exe, "status", "--json", "--pin-root", pin_root))


def rate(counter: Callable[[], int], seconds: float) -> float:
    """Growth per second of ``counter()`` over a measurement interval of ``seconds``."""
    a, t0 = counter(), time.monotonic()
    time.sleep(seconds)   # the measurement interval itself, not a wait for a condition
    b, t1 = counter(), time.monotonic()
    return (b - a) / (t1 - t0)
