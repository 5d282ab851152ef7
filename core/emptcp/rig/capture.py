"""Packet capture in a namespace (tcpdump -w) and independent decoding with tshark.

tshark 4.0 (Debian 12) preference names: ``tcp.check_checksum`` and ``ip.check_checksum``
(both FALSE by default).  Field names used: ``tcp.checksum.status`` / ``ip.checksum.status``
(values "0" bad, "1" good, "2" unverified), ``tcp.options.mptcp.subtype``,
``tcp.options.mptcp.backup.flag``, ``tcp.options.mptcp.addrid``,
``tcp.options.mptcp.ipv4`` (ADD_ADDR address), ``tcp.options.mptcp.echo``.
With checksum offload ON a capture of locally sent packets shows *partial* checksums
(tshark calls them bad): turn offloads off (``PathSpec(offload=False)``) first.
"""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import List, Optional

from ..netns import popen

from ..abi import MPTCP_SUBTYPES  # noqa: F401  (re-exported by emptcp.rig)

FIELDS = ["frame.number", "frame.time_relative", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
          "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
          "tcp.window_size_value", "tcp.checksum.status", "ip.checksum.status",
          "tcp.options.mptcp.subtype", "tcp.options.mptcp.backup.flag",
          "tcp.options.mptcp.addrid", "tcp.options.mptcp.ipv4", "tcp.options.mptcp.echo",
          "tcp.option_kind", "tcp.option_len", "tcp.checksum", "tcp.checksum_calculated"]


def tcp_checksum_status(status: int | None, field: int | None, calculated: int | None) -> int | None:
    """tshark's TCP checksum status, except that 0xffff where 0x0000 was computed is good:
    the two are the same number in one's complement (RFC 1624), and Linux writes 0xffff
    for a zero checksum (skb_checksum_help's CSUM_MANGLED_0), emptcp or not."""
    if status == 0 and field == 0xFFFF and calculated == 0:
        return 1
    return status


@dataclass
class Packet:
    number: int
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    tcp_flags: int
    seq: int
    ack: int
    length: int
    window: int
    tcp_csum_status: Optional[int]   # 1 good, 0 bad, 2 unverified, None absent
    ip_csum_status: Optional[int]
    mptcp_subtypes: List[int] = field(default_factory=list)
    mptcp_backup: List[int] = field(default_factory=list)   # one per option that has the B bit
    mptcp_addr_ids: List[int] = field(default_factory=list)
    add_addr_ipv4: List[str] = field(default_factory=list)
    add_addr_echo: List[int] = field(default_factory=list)
    option_kinds: List[int] = field(default_factory=list)

    @property
    def mptcp(self) -> List[str]:
        return [MPTCP_SUBTYPES.get(s, str(s)) for s in self.mptcp_subtypes]

    @property
    def checksums_ok(self) -> bool:
        return self.tcp_csum_status in (1, None) and self.ip_csum_status in (1, None)


def _ints(v: str, base: int = 0) -> List[int]:
    r = []
    for x in v.split(",") if v else []:
        x = x.strip()
        if not x:
            continue
        try:
            r.append(int(x, base))
        except ValueError:
            r.append(1 if x.lower() == "true" else 0 if x.lower() == "false" else -1)
    return r


def decode(pcap: str, display_filter: str = "tcp") -> List[Packet]:
    """Decode a pcap with tshark (checksum validation ON) into :class:`Packet` records."""
    cmd = ["tshark", "-n", "-r", pcap, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
           "-o", "tcp.analyze_sequence_numbers:FALSE", "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in FIELDS:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"tshark failed: {p.stderr.strip()}")
    pkts = []
    for line in p.stdout.splitlines():
        v = line.split("\t")
        v += [""] * (len(FIELDS) - len(v))
        d = dict(zip(FIELDS, v))
        one = lambda k, base=0: (_ints(d[k], base) or [None])[0]
        pkts.append(Packet(
            number=int(d["frame.number"]), time=float(d["frame.time_relative"] or 0),
            src=d["ip.src"] or d["ipv6.src"], dst=d["ip.dst"] or d["ipv6.dst"],
            sport=one("tcp.srcport") or 0, dport=one("tcp.dstport") or 0,
            tcp_flags=one("tcp.flags") or 0, seq=one("tcp.seq_raw") or 0,
            ack=one("tcp.ack_raw") or 0, length=one("tcp.len") or 0,
            window=one("tcp.window_size_value") or 0,
            tcp_csum_status=tcp_checksum_status(one("tcp.checksum.status"), one("tcp.checksum", 16),
                                                one("tcp.checksum_calculated", 16)),
            ip_csum_status=one("ip.checksum.status"),
            mptcp_subtypes=_ints(d["tcp.options.mptcp.subtype"]),
            mptcp_backup=_ints(d["tcp.options.mptcp.backup.flag"]),
            mptcp_addr_ids=_ints(d["tcp.options.mptcp.addrid"]),
            add_addr_ipv4=[x for x in d["tcp.options.mptcp.ipv4"].split(",") if x],
            add_addr_echo=_ints(d["tcp.options.mptcp.echo"]),
            option_kinds=_ints(d["tcp.option_kind"])))
    return pkts


class Capture:
    """``tcpdump -w`` on ``dev`` inside netns ``ns``; use as a context manager or start()/stop().

    >>> with Capture("rig-c", "veth0", "tcp") as cap: ...
    >>> pkts = cap.packets()
    """

    def __init__(self, ns: Optional[str], dev: str, bpf_filter: str = "tcp",
                 path: Optional[str] = None, snaplen: int = 256):
        self.ns, self.dev, self.filter, self.snaplen = ns, dev, bpf_filter, snaplen
        if path is None:
            fd, path = tempfile.mkstemp(prefix=f"emptcp-{dev}-", suffix=".pcap")
            os.close(fd)
            self._tmp = True
        else:
            self._tmp = False
        self.path = path
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 5.0) -> "Capture":
        self.proc = popen(self.ns, ["tcpdump", "-i", self.dev, "-n", "-U", "--immediate-mode", "-s", str(self.snaplen),
                                    "-w", self.path] + (self.filter.split() if self.filter else []),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump prints "listening on DEV" on stderr once the socket is open
        os.set_blocking(self.proc.stderr.fileno(), False)
        buf = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                buf += os.read(self.proc.stderr.fileno(), 4096).decode(errors="replace")
            except BlockingIOError:
                pass
            if "listening on" in buf:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {buf.strip()}")
            time.sleep(0.02)
        raise RuntimeError(f"tcpdump did not start: {buf.strip()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            time.sleep(0.1)  # let the last packets hit the ring
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def packets(self, display_filter: str = "tcp") -> List[Packet]:
        self.stop()
        return decode(self.path, display_filter)

    def remove(self) -> None:
        self.stop()
        if self._tmp and os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
