"""The multipath test rig: client and server namespaces joined by N veth pairs."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from .. import netns as _ns
from ..mptcp import stats as _stats
from .capture import Capture

TRAFFIC_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "traffic.py")
DELAY_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "delay.py")
CORE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3,
               "mbps": 8e6, "gbps": 8e9}


def parse_rate(rate: Union[str, int, float]) -> int:
    """'50mbit' / '2gbit' / 1e6 -> bits per second (tc units: mbit = 1e6 bit/s, mbps = MB/s)."""
    if isinstance(rate, (int, float)):
        return int(rate)
    m = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", rate)
    if not m:
        raise ValueError(f"bad rate {rate!r}")
    unit = m.group(2).lower() or "bit"
    if unit not in _RATE_UNITS:
        raise ValueError(f"bad rate unit in {rate!r}")
    return int(float(m.group(1)) * _RATE_UNITS[unit])


@dataclass
class PathSpec:
    """Options of one path. ``rate`` shapes the egress of *both* ends (so uploads and
    downloads are limited) with ``qdisc`` "tbf" or "htb"; ``offload=False`` (the default)
    runs ``ethtool -K dev tx off rx off`` on both ends, so the kernel validates TCP
    checksums. It is the default for a second reason: with veth offloads on, this kernel
    (6.18) now and then hands an MPTCP receiver wrong bytes, with no BPF program attached
    — seen in 1 of 25 two-path 1 MiB transfers in one session, in 1 of 200 in another,
    and in none of 400 with offloads off; tests/rig/test_kernel_baseline.py measures it
    (``pytest --kernel-baseline``);
    ``backup`` makes the client's subflow endpoint on this path a backup endpoint;
    ``endpoint=False`` adds no MPTCP endpoint on this path; ``delay_ms`` puts a "middle"
    namespace on the path whose userspace delay line (:mod:`emptcp.rig.delay`, AF_PACKET,
    no netem needed) forwards every frame ``delay_ms`` later in each direction (RTT =
    2 x delay_ms); use it with ``offload=False`` and low rates (< ~30 Mbit/s)."""
    rate: Optional[Union[str, int]] = None
    qdisc: str = "tbf"
    offload: bool = False
    backup: bool = False
    endpoint: bool = True
    mtu: Optional[int] = None
    delay_ms: Optional[float] = None


class Side:
    """One namespace of the rig (``rig.client`` / ``rig.server``)."""

    def __init__(self, rig: "Rig", role: str, ns: str):
        self.rig, self.role, self.ns = rig, role, ns

    @property
    def path(self) -> str:
        return _ns.ns_path(self.ns)

    def run(self, cmd, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run via ``nsenter --net=`` (does not remount /sys: root bpffs pins stay visible)."""
        return _ns.run(self.ns, cmd, check=check, timeout=timeout)

    def out(self, cmd, **kw) -> str:
        return _ns.out(self.ns, cmd, **kw)

    def popen(self, cmd, **kw) -> subprocess.Popen:
        """Background process in this namespace, killed at rig teardown."""
        return self.rig._track(_ns.popen(self.ns, cmd, **kw))

    def enter(self):
        """Context manager: setns() the current thread into this namespace."""
        return _ns.enter(self.ns)

    def ifindex(self, ifname: str) -> int:
        return _ns.ifindex(self.ns, ifname)

    def sysctl(self, key: str, value=None) -> str:
        return _ns.sysctl(self.ns, key, value)

    def nstat(self) -> Dict[str, int]:
        return _stats.nstat(self.ns)

    def ss(self) -> List[_stats.SsEntry]:
        return _stats.ss(self.ns)

    def subflows(self, port: Optional[int] = None) -> List[_stats.SsEntry]:
        return _stats.subflows(self.ns, port)

    def link_stats(self, dev: Optional[str] = None) -> Dict[str, Dict[str, int]]:
        return _stats.link_stats(self.ns, dev)

    def mptcp(self, *args: str) -> str:
        return self.out(["ip", "mptcp", *args])

    def capture(self, dev: str, bpf_filter: str = "tcp", **kw) -> Capture:
        cap = Capture(self.ns, dev, bpf_filter, **kw)
        self.rig._captures.append(cap)
        return cap

    def __repr__(self):
        return f"<Side {self.role} ns={self.ns}>"


@dataclass
class Path:
    index: int
    spec: PathSpec
    client_if: str
    server_if: str
    client_addr: str
    server_addr: str
    client_addr6: Optional[str] = None
    server_addr6: Optional[str] = None
    rig: Optional["Rig"] = field(default=None, repr=False)

    @property
    def client_ifindex(self) -> int:
        return self.rig.client.ifindex(self.client_if)

    @property
    def server_ifindex(self) -> int:
        return self.rig.server.ifindex(self.server_if)

    def bytes(self) -> Dict[str, int]:
        """Interface byte counters of this path: client tx/rx and server tx/rx."""
        c = self.rig.client.link_stats(self.client_if)[self.client_if]
        s = self.rig.server.link_stats(self.server_if)[self.server_if]
        return {"client_tx": c["tx_bytes"], "client_rx": c["rx_bytes"],
                "server_tx": s["tx_bytes"], "server_rx": s["rx_bytes"]}


class TrafficServer:
    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc, self.port = proc, port
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"traffic server did not start: {proc.stderr.read()}")
        self.ready = json.loads(line)

    def results(self, timeout: float = 30) -> List[dict]:
        """Wait for the server to exit (after ``count`` connections) and return its reports."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            out, _ = self.proc.communicate()
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def stop(self) -> List[dict]:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.results(timeout=10) if self.proc.stdout and not self.proc.stdout.closed else []


class TrafficClient:
    """A background (e.g. ``forever``) client; :meth:`stop` signals it and returns its report."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def stop(self, timeout: float = 30) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nsenter forwards signals to the child
        return self.result(timeout)

    def result(self, timeout: float = 30) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        lines = [l for l in out.splitlines() if l.strip()]
        if not lines:
            raise RuntimeError(f"traffic client produced no report (rc={self.proc.returncode}): {err}")
        return json.loads(lines[-1])


def cleanup_stale(prefix: str = "emptcp") -> List[str]:
    """Remove namespaces named ``prefix*`` (and kill the processes inside) left by killed runs."""
    removed = []
    if not os.path.isdir(_ns.NETNS_RUN_DIR):
        return removed
    for name in sorted(os.listdir(_ns.NETNS_RUN_DIR)):
        if name.startswith(prefix):
            _delete_ns(name)
            removed.append(name)
    return removed


def _delete_ns(name: str) -> None:
    p = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in p.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Rig:
    """Client and server namespaces joined by ``len(paths)`` veth pairs, MPTCP configured.

    Path i: client ``10.<base>.<i>.1/24`` (+ ``fd00:<base>:<i>::1/64`` with ipv6) on
    ``<name>c<i>``, server ``.2`` on ``<name>s<i>``.  Path 0 carries the initial subflow;
    the client gets a ``subflow`` endpoint on each other path (kernel PM), the server a
    ``signal`` endpoint on each other path when ``server_signal``.

    Exception-safe: any failure during set-up, in the ``with`` body (including
    KeyboardInterrupt) or teardown of one object still removes everything created.
    """

    def __init__(self, paths: Union[int, Sequence[PathSpec]] = 2, prefix: str = "emptcp",
                 base: int = 77, ipv6: bool = False, offload: bool = False,
                 rate: Optional[Union[str, int]] = None, qdisc: str = "tbf",
                 limits: Optional[tuple] = (8, 8), client_pm: int = 0, server_pm: int = 0,
                 client_subflow: bool = True, server_signal: bool = False,
                 mptcp_enabled: bool = True, checksum: Optional[bool] = None):
        if isinstance(paths, int):
            paths = [PathSpec(rate=rate, qdisc=qdisc, offload=offload) for _ in range(paths)]
        self.specs = list(paths)
        if len(self.specs) < 1:
            raise ValueError("need at least one path")
        self.prefix = prefix
        self.tag = f"e{os.getpid() % 10000:04d}{secrets.token_hex(2)}"  # 9 chars, unique
        self.name = f"{prefix}-{self.tag}"
        self.base, self.ipv6 = base, ipv6
        self.limits, self.client_pm, self.server_pm = limits, client_pm, server_pm
        self.client_subflow, self.server_signal = client_subflow, server_signal
        self.mptcp_enabled, self.checksum = mptcp_enabled, checksum
        self.client = Side(self, "client", f"{self.name}-c")
        self.server = Side(self, "server", f"{self.name}-s")
        self.paths: List[Path] = []
        self._procs: List[subprocess.Popen] = []
        self._captures: List[Capture] = []
        self._created_ns: List[str] = []
        self._next_port = 5000
        self.middles: Dict[int, Side] = {}       # path index -> middle namespace (delay_ms)
        self.delay_procs: Dict[int, subprocess.Popen] = {}
        self.up = False

    # ---- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> "Rig":
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def setup(self) -> "Rig":
        for side in (self.client, self.server):
            subprocess.run(["ip", "netns", "add", side.ns], check=True, capture_output=True, text=True)
            self._created_ns.append(side.ns)
            side.run(["ip", "link", "set", "lo", "up"])
        b = self.base
        for i, spec in enumerate(self.specs):
            # veth names only need to be unique in the netns they live in; the rig
            # creates them directly inside (never in the root netns).
            cif, sif = f"{self.tag}c{i}", f"{self.tag}s{i}"
            p = Path(i, spec, cif, sif, f"10.{b}.{i}.1", f"10.{b}.{i}.2", rig=self)
            if self.ipv6:
                p.client_addr6, p.server_addr6 = f"fd00:{b}:{i}::1", f"fd00:{b}:{i}::2"
            if spec.delay_ms:
                self._delay_line(i, cif, sif, spec.delay_ms)
            else:
                self.client.run(["ip", "link", "add", cif, "type", "veth", "peer", "name", sif,
                                 "netns", self.server.path])
            for side, dev, a4, a6 in ((self.client, cif, p.client_addr, p.client_addr6),
                                      (self.server, sif, p.server_addr, p.server_addr6)):
                if spec.mtu:
                    side.run(["ip", "link", "set", dev, "mtu", str(spec.mtu)])
                side.run(["ip", "addr", "add", f"{a4}/24", "dev", dev])
                if a6:
                    side.run(["ip", "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad"])
                if not spec.offload:
                    side.run(["ethtool", "-K", dev, "tx", "off", "rx", "off"])
                if spec.rate is not None:
                    self._shape(side, dev, spec)
                side.run(["ip", "link", "set", dev, "up"])
            self.paths.append(p)
        self._config_mptcp()
        self.wait_ready()
        self.up = True
        return self

    def _delay_line(self, i: int, cif: str, sif: str, delay_ms: float) -> None:
        """client cif <-> mc (middle ns) ~delay~ ms (middle ns) <-> server sif."""
        mid = Side(self, f"middle{i}", f"{self.name}-m{i}")
        subprocess.run(["ip", "netns", "add", mid.ns], check=True, capture_output=True, text=True)
        self._created_ns.append(mid.ns)
        self.middles[i] = mid
        mid.run(["ip", "link", "set", "lo", "up"])
        mc, ms = f"{self.tag}m{i}c", f"{self.tag}m{i}s"
        self.client.run(["ip", "link", "add", cif, "type", "veth", "peer", "name", mc,
                         "netns", mid.path])
        self.server.run(["ip", "link", "add", sif, "type", "veth", "peer", "name", ms,
                         "netns", mid.path])
        for dev in (mc, ms):
            mid.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
            mid.run(["ethtool", "-K", dev, "tx", "off", "rx", "off"])
            mid.run(["ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off"], check=False)
            mid.run(["ip", "link", "set", dev, "up"])
        proc = mid.popen([sys.executable, DELAY_SCRIPT, "--a", mc, "--b", ms,
                          "--delay-ms", str(delay_ms)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"delay line on path {i} did not start: {proc.stderr.read()}")
        self.delay_procs[i] = proc

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Ping every path (v4, and v6 if configured) from the client until it answers:
        right after 'link up' the first IPv6 packets can be lost (neighbour discovery)."""
        deadline = time.monotonic() + timeout
        for p in self.paths:
            for addr in filter(None, (p.server_addr, p.server_addr6)):
                while True:
                    r = self.client.run(["ping", "-c1", "-W1", "-I", p.client_if, addr], check=False)
                    if r.returncode == 0:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"path {p.index} ({addr}) not reachable: {r.stdout}{r.stderr}")
                    time.sleep(0.05)

    def _shape(self, side: Side, dev: str, spec: PathSpec) -> None:
        bps = parse_rate(spec.rate)
        if spec.qdisc == "tbf":
            burst = max(bps // 8 // 100, 16 * 1514)  # >= rate/HZ(100) and several MTUs
            side.run(["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf",
                      "rate", f"{bps}bit", "burst", str(burst), "latency", "50ms"])
        elif spec.qdisc == "htb":
            side.run(["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"])
            side.run(["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
                      "rate", f"{bps}bit", "ceil", f"{bps}bit"])
        else:
            raise ValueError(f"unknown qdisc {spec.qdisc!r} (tbf|htb)")

    def _config_mptcp(self) -> None:
        for side, pm in ((self.client, self.client_pm), (self.server, self.server_pm)):
            side.sysctl("net.mptcp.enabled", int(self.mptcp_enabled))
            side.sysctl("net.mptcp.pm_type", pm)
            if self.checksum is not None:
                side.sysctl("net.mptcp.checksum_enabled", int(self.checksum))
            if self.limits and pm == 0:
                side.run(["ip", "mptcp", "limits", "set", "subflows", str(self.limits[0]),
                          "add_addr_accepted", str(self.limits[1])])
        for p in self.paths[1:]:
            if not p.spec.endpoint:
                continue
            if self.client_subflow and self.client_pm == 0:
                flags = ["subflow"] + (["backup"] if p.spec.backup else [])
                self.client.run(["ip", "mptcp", "endpoint", "add", p.client_addr, "dev",
                                 p.client_if, "id", str(p.index + 1)] + flags)
            if self.server_signal and self.server_pm == 0:
                self.server.run(["ip", "mptcp", "endpoint", "add", p.server_addr, "dev",
                                 p.server_if, "id", str(p.index + 1), "signal"])

    def teardown(self) -> None:
        errors = []
        for cap in self._captures:
            try:
                cap.remove()
            except Exception as e:  # keep going
                errors.append(e)
        self._captures.clear()
        for proc in self._procs:
            try:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(2)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(2)
            except (ProcessLookupError, subprocess.TimeoutExpired, PermissionError) as e:
                errors.append(e)
            for f in (proc.stdout, proc.stderr, proc.stdin):
                try:
                    if f:
                        f.close()
                except Exception:
                    pass
        self._procs.clear()
        for ns in reversed(self._created_ns):
            try:
                _delete_ns(ns)
            except Exception as e:
                errors.append(e)
        self._created_ns.clear()
        self.middles.clear()
        self.delay_procs.clear()
        self.up = False

    def _track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self._procs.append(proc)
        return proc

    # ---- traffic ---------------------------------------------------------------------
    def port(self) -> int:
        self._next_port += 1
        return self._next_port

    def _traffic_argv(self, *args: str) -> List[str]:
        # run traffic.py as a standalone script: it imports nothing from emptcp, so it
        # neither depends on nor pays for the package's (cffi/libbpf) import.
        return [sys.executable, TRAFFIC_SCRIPT, *args]

    def start_server(self, port: Optional[int] = None, tcp: bool = False, count: int = 1) -> TrafficServer:
        """Verified-stream server in the server namespace (listens on all addresses)."""
        port = port or self.port()
        args = ["server", "--port", str(port), "--count", str(count)] + (["--tcp"] if tcp else [])
        proc = self.server.popen(self._traffic_argv(*args), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        return TrafficServer(proc, port)

    def _client_args(self, port, path, nbytes, duration, forever, reverse, tcp, v6, timeout):
        p = self.paths[path]
        addr = f"[{p.server_addr6}]" if v6 else p.server_addr
        args = ["client", "--connect", f"{addr}:{port}", "--timeout", str(timeout)]
        if nbytes:
            args += ["--bytes", str(nbytes)]
        if duration:
            args += ["--duration", str(duration)]
        if forever:
            args.append("--forever")
        if reverse:
            args.append("--reverse")
        if tcp:
            args.append("--tcp")
        return args

    def start_client(self, port: int, path: int = 0, nbytes: int = 0, duration: float = 0,
                     forever: bool = False, reverse: bool = False, tcp: bool = False,
                     v6: bool = False, timeout: float = 30) -> TrafficClient:
        args = self._client_args(port, path, nbytes, duration, forever, reverse, tcp, v6, timeout)
        proc = self.client.popen(self._traffic_argv(*args), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        return TrafficClient(proc)

    def transfer(self, nbytes: int = 0, duration: float = 0, path: int = 0, reverse: bool = False,
                 tcp: bool = False, v6: bool = False, timeout: float = 30) -> dict:
        """One verified transfer (server + client); returns the client report with the
        server's report under ``"server"``.  ``report["intact"]`` is the end-to-end verdict."""
        srv = self.start_server(tcp=tcp)
        cli = self.start_client(srv.port, path, nbytes, duration, False, reverse, tcp, v6, timeout)
        rep = cli.result(timeout + duration + 5)
        res = srv.results(timeout=10)
        rep["server"] = res[0] if res else None
        return rep

    def path_bytes(self) -> List[Dict[str, int]]:
        return [p.bytes() for p in self.paths]

    def __repr__(self):
        return f"<Rig {self.name} paths={len(self.paths)} up={self.up}>"
